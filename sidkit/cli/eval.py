"""Typer command ``sidkit eval`` (registered in :mod:`sidkit.cli`): downstream Recall@K / NDCG@K.

Exit codes: 0 ok, 2 bad input or usage (one ``error: ...`` line on stderr). ``--json`` prints
exactly one JSON document on stdout.
"""

from __future__ import annotations

from pathlib import Path
from typing import List, Optional

import typer

from sidkit.cli._tools import emit_json, fail
from sidkit.errors import ConfigError, SidkitError
from sidkit.eval.defaults import EVAL_EPOCHS, TIGER_EPOCHS
from sidkit.report.console import visible
from sidkit.report.text import print_eval_table


def eval_command(
    codes: List[Path] = typer.Argument(..., help="SID tables (codes.parquet, model directory, Parquet/CSV, index JSON); the first is the reference of the deltas."),
    interactions: Path = typer.Option(..., "--interactions", help="Interactions Parquet (a file, a directory of shards or a glob): user_id, item_id and split and/or timestamp/position (leave-one-out)."),
    model: str = typer.Option("sasrec-sid", "--model", help="Downstream model: sasrec-sid (SASRec over summed SID token embeddings) or tiger (generative, trie-constrained beam search)."),
    name: Optional[List[str]] = typer.Option(None, "--name", help="Display name of a table (repeatable, one per table, in order)."),
    seeds: int = typer.Option(3, "--seeds", help="Number of downstream training seeds (--seed, --seed+1, ...).", min=1),
    epochs: Optional[int] = typer.Option(None, "--epochs", help=f"sasrec-sid: maximum training epochs (early stopping on validation Recall@10); tiger: the epochs of its one-cycle schedule. [default: {EVAL_EPOCHS}; tiger {TIGER_EPOCHS}]"),
    baselines: bool = typer.Option(True, "--baselines/--no-baselines", help="Also evaluate most-popular and sasrec-id."),
    id_col: Optional[str] = typer.Option(None, "--id-col", help="Id column of the SID tables."),
    beam: int = typer.Option(20, "--beam", min=1, help="Beam width of --model tiger (validation and test)."),
    collisions: str = typer.Option("group", "--collisions", help="tiger: group (generate the table's SIDs as given; a SID shared by G items is worth 1/G in ItemHit/ItemNDCG) or suffix (compute a de-dup suffix first)."),
    suffix: str = typer.Option("auto", "--suffix", help="Last token as de-dup suffix: auto | last | none."),
    bootstrap: int = typer.Option(10000, "--bootstrap", help="Paired bootstrap resamples over users.", min=100),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON document on stdout and nothing else."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress bars, warnings or table."),
    seed: int = typer.Option(0, "--seed", min=0, max=2**32 - 1, help="First downstream seed (also seeds the bootstrap)."),
) -> None:
    """Downstream check of SID quality: train a recommender on each SID table, report Recall@K / NDCG@K."""
    from sidkit._progress import progress_bar

    try:
        if model not in ("sasrec-sid", "tiger"):
            raise ConfigError(f"--model '{model}' is not known; choose sasrec-sid or tiger")
        from sidkit.eval.run import evaluate

        with progress_bar(not (quiet or as_json)) as cb:
            res = evaluate([str(c) for c in codes], interactions, model=model, names=name or None,
                           seeds=tuple(range(seed, seed + seeds)), epochs=epochs,
                           baselines=("most-popular", "sasrec-id") if baselines else (), id_col=id_col,
                           suffix=suffix, n_bootstrap=bootstrap, beam=beam, collisions=collisions,
                           progress=cb)
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
