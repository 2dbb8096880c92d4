"""Typer command ``sidkit eval`` (registered in :mod:`sidkit.cli`): downstream Recall@K / NDCG@K.

Exit codes: 0 ok, 2 bad input or usage (one ``error: ...`` line on stderr). ``--json`` prints
exactly one JSON document on stdout.
"""

from __future__ import annotations

from pathlib import Path
from typing import List, Optional

import typer

from sidkit.cli._tools import LogEveryOpt, emit_json, fail
from sidkit.errors import ConfigError, SidkitError
from sidkit.eval.defaults import EVAL_EPOCHS, TIGER_EPOCHS
from sidkit.report.console import visible
from sidkit.report.text import print_eval_table


def expand_tables(args: List[str], names: Optional[List[str]]) -> tuple[List[str], Optional[List[str]], Optional[List[str]]]:
    """The SID table arguments with quoted globs expanded (sorted). When a glob matched, every
    argument is a group (labelled by its ``--name`` when one is given per argument) and the
    tables keep their own names; else the tables are as given. Returns (paths, groups, names)."""
    import glob

    paths: List[str] = []
    labels: List[str] = []
    globbed = False
    for a in args:
        if any(ch in a for ch in "*?[") and not Path(a).exists():
            hits = sorted(glob.glob(a))
            if not hits:
                raise ConfigError(f"{a}: no SID table matches this pattern; check the path")
            globbed = True
        else:
            hits = [a]
        paths += hits
        labels += [a] * len(hits)
    if not globbed:
        return paths, None, names
    if names is not None:
        if len(names) != len(args):
            raise ConfigError(f"got {len(names)} --name values for {len(args)} SID table arguments; with a pattern give one per argument (its group's name)")
        relabel = dict(zip(args, names))
        labels = [relabel[lab] for lab in labels]
    return paths, labels, None


def eval_command(
    codes: List[str] = typer.Argument(..., help="SID tables (codes.parquet, model directory, Parquet/CSV, index JSON); the first is the reference of the deltas. A quoted glob ('fits/rqvae_s*') is one group: its tables (e.g. fits of several seeds) are also pooled, with the fit-to-fit spread in the interval."),
    interactions: Path = typer.Option(..., "--interactions", help="Interactions Parquet (a file, a directory of shards or a glob): user_id, item_id and split and/or timestamp/position (leave-one-out)."),
    recommender: Optional[str] = typer.Option(None, "--recommender", help="Downstream recommender: sasrec-sid (SASRec over summed SID token embeddings) or tiger (generative, trie-constrained beam search). [default: sasrec-sid]"),
    model: Optional[str] = typer.Option(None, "--model", hidden=True, help="Deprecated spelling of --recommender (--model names a model directory elsewhere)."),
    name: Optional[List[str]] = typer.Option(None, "--name", help="Display name of a table (repeatable, one per table, in order)."),
    seeds: int = typer.Option(3, "--seeds", help="Number of downstream training seeds (--seed, --seed+1, ...).", min=1),
    epochs: Optional[int] = typer.Option(None, "--epochs", help=f"sasrec-sid: maximum training epochs (early stopping on validation Recall@10); tiger: the epochs of its one-cycle schedule. [default: {EVAL_EPOCHS}; tiger {TIGER_EPOCHS}]"),
    baselines: bool = typer.Option(True, "--baselines/--no-baselines", help="Also evaluate most-popular and sasrec-id."),
    tune_id: bool = typer.Option(False, "--tune-id", help="Tune the sasrec-id baseline on validation first (hidden size, dropout, lr, history length, epochs; one axis at a time, 6 trainings); the chosen setting is in --json."),
    id_col: Optional[str] = typer.Option(None, "--id-col", help="Id column of the SID tables."),
    beam: int = typer.Option(20, "--beam", min=1, help="Beam width of --recommender tiger (validation and test)."),
    collisions: str = typer.Option("group", "--collisions", help="tiger: group (generate the table's SIDs as given; a SID shared by G items is worth 1/G in ItemHit/ItemNDCG) or suffix (compute a de-dup suffix first)."),
    suffix: str = typer.Option("auto", "--suffix", help="Last token as de-dup suffix: auto | last | none."),
    bootstrap: int = typer.Option(10000, "--bootstrap", help="Paired bootstrap resamples over users.", min=100),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON document on stdout and nothing else."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress bars, warnings or table."),
    seed: int = typer.Option(0, "--seed", min=0, max=2**32 - 1, help="First downstream seed (also seeds the bootstrap and the held-out items)."),
    cold_items: Optional[float] = typer.Option(None, "--cold-items", help="Hold this fraction of the items (e.g. 0.1) out of the recommender's training, encode them from content as new items, and report Recall/NDCG@K on the test users whose target is one of them. Every table must be a model directory."),
    log_every: Optional[float] = LogEveryOpt,
    items: Optional[Path] = typer.Option(None, "--items", help="--cold-items: the catalog to encode the held-out items from. [default: the one each model was fitted on]"),
) -> None:
    """Downstream check of SID quality: train a recommender on each SID table, report Recall@K / NDCG@K."""
    from sidkit._progress import progress_bar

    try:
        if model is not None:
            if recommender is not None:
                raise ConfigError("give --recommender only (--model is its deprecated spelling)")
            typer.echo("warning: 'sidkit eval --model' is deprecated and will be removed in the next release; use --recommender", err=True)
        model = recommender or model or "sasrec-sid"
        if model not in ("sasrec-sid", "tiger"):
            flag = "--recommender" if recommender is not None else "--model"
            raise ConfigError(f"{flag} '{model}' is not known; choose sasrec-sid or tiger")
        from sidkit.eval.run import evaluate

        paths, groups, names = expand_tables(codes, name or None)
        with progress_bar(not (quiet or as_json), log=not quiet, every=log_every) as cb:
            res = evaluate(paths, interactions, model=model, names=names, groups=groups,
                           seeds=tuple(range(seed, seed + seeds)), epochs=epochs,
                           baselines=("most-popular", "sasrec-id") if baselines else (), id_col=id_col,
                           suffix=suffix, n_bootstrap=bootstrap, beam=beam, collisions=collisions,
                           progress=cb, cold_items=cold_items, items=items, tune_id=tune_id)
    except SidkitError as e:
        fail(e)
    if as_json:
        emit_json(res)
        return
    if quiet:
        return
    for w in res.get("warnings", []):
        typer.echo(f"warning: {visible(w)}", err=True)
    print_eval_table(res)
