"""Typer commands ``sidkit fit`` and ``sidkit encode`` (registered in :mod:`sidkit.cli`)."""

from __future__ import annotations

from pathlib import Path
from typing import List, Optional

import typer

from sidkit.cli._tools import JsonOpt, LogEveryOpt, QuietOpt, emit_json, fail
from sidkit.config import help_for
from sidkit.errors import SidkitError
from sidkit.report.console import visible
from sidkit.report.text import encode_line, print_fit_summary


# fit_command is long because its signature is the option list (one typer.Option per fit setting).
def fit_command(
    items: Path = typer.Argument(..., help="Catalog: a Parquet file, a directory of Parquet shards or a glob, with an id column and one or more float-list embedding columns."),
    method: Optional[str] = typer.Option(None, "--method", "-m", help=help_for("method")),
    out: Path = typer.Option(Path("sidkit-model"), "--out", "-o", help="Model directory to write (replaced atomically)."),
    id_col: Optional[str] = typer.Option(None, "--id-col", help=help_for("id_col")),
    embedding: Optional[List[str]] = typer.Option(None, "--embedding", "-e", help=help_for("embedding")),
    embedding_weights: Optional[str] = typer.Option(None, "--embedding-weights", help=help_for("embedding_weights")),
    levels: Optional[int] = typer.Option(None, "--levels", "-L", help=help_for("levels")),
    codebook_size: Optional[str] = typer.Option(None, "--codebook-size", "-K", help=help_for("codebook_size")),
    epochs: Optional[int] = typer.Option(None, "--epochs", help=help_for("epochs")),
    max_steps: Optional[int] = typer.Option(None, "--max-steps", help=help_for("max_steps")),
    batch_size: Optional[int] = typer.Option(None, "--batch-size", help=help_for("batch_size")),
    lr: Optional[float] = typer.Option(None, "--lr", help=help_for("lr")),
    train_sample: Optional[int] = typer.Option(None, "--train-sample", help=help_for("train_sample")),
    report_sample: Optional[int] = typer.Option(None, "--report-sample", help=help_for("report_sample")),
    dedup: Optional[str] = typer.Option(None, "--dedup", help=help_for("dedup")),
    balanced: Optional[bool] = typer.Option(None, "--balanced/--no-balanced", help=help_for("balanced")),
    sinkhorn: Optional[bool] = typer.Option(None, "--sinkhorn/--no-sinkhorn", help=help_for("sinkhorn")),
    init: Optional[str] = typer.Option(None, "--init", help=help_for("init")),
    refine: Optional[str] = typer.Option(None, "--refine", help=help_for("refine")),
    latent_dim: Optional[int] = typer.Option(None, "--latent-dim", help=help_for("latent_dim")),
    device: Optional[str] = typer.Option(None, "--device", help=help_for("device")),
    precision: Optional[str] = typer.Option(None, "--precision", help=help_for("precision")),
    seed: Optional[int] = typer.Option(None, "--seed", min=0, max=2**32 - 1, help=help_for("seed")),
    regularizer: Optional[str] = typer.Option(None, "--regularizer", help=help_for("regularizer")),
    interactions: Optional[Path] = typer.Option(None, "--interactions", help=help_for("interactions")),
    lambda_hmr: Optional[float] = typer.Option(None, "--lambda-hmr", help=help_for("lambda_hmr")),
    lambda_rep: Optional[float] = typer.Option(None, "--lambda-rep", help=help_for("lambda_rep")),
    lambda_align: Optional[float] = typer.Option(None, "--lambda-align", help=help_for("lambda_align")),
    alpha_m: Optional[float] = typer.Option(None, "--alpha-m", help=help_for("alpha_m")),
    h_max: Optional[int] = typer.Option(None, "--h-max", help=help_for("h_max")),
    collision_batch_frac: Optional[float] = typer.Option(None, "--collision-batch-frac", help=help_for("collision_batch_frac")),
    refresh_every: Optional[int] = typer.Option(None, "--refresh-every", help=help_for("refresh_every")),
    align_mode: Optional[str] = typer.Option(None, "--align-mode", help=help_for("align_mode")),
    kernel: Optional[str] = typer.Option(None, "--kernel", help=help_for("kernel")),
    no_mask: bool = typer.Option(False, "--no-mask", help=help_for("no_mask")),
    no_severity: bool = typer.Option(False, "--no-severity", help=help_for("no_severity")),
    no_align: bool = typer.Option(False, "--no-align", help=help_for("no_align")),
    no_relax: bool = typer.Option(False, "--no-relax", help=help_for("no_relax")),
    no_load: bool = typer.Option(False, "--no-load", help=help_for("no_load")),
    constant_schedule: bool = typer.Option(False, "--constant-schedule", help=help_for("constant_schedule")),
    attributes: Optional[str] = typer.Option(None, "--attributes", help=help_for("attributes")),
    plan: Optional[Path] = typer.Option(None, "--plan", help=help_for("plan")),
    residual_levels: Optional[int] = typer.Option(None, "--residual-levels", help=help_for("residual_levels")),
    residual_method: Optional[str] = typer.Option(None, "--residual-method", help=help_for("residual_method")),
    config: Optional[Path] = typer.Option(None, "--config", help="TOML file with fit options (tables fit, fit.mining, fit.align, fit.quasid, fit.adasid); command-line flags win."),
    as_json: bool = JsonOpt,
    quiet: bool = QuietOpt,
    log_every: Optional[float] = LogEveryOpt,
) -> None:
    """Learn a tokenizer, encode every item, write the model directory and print a summary."""
    from sidkit._progress import progress_bar
    from sidkit.pipeline import fit as fit_fn

    try:
        weights = None
        if embedding_weights is not None:
            try:
                weights = [float(w) for w in embedding_weights.split(",")]
            except ValueError:
                raise SidkitError(f"--embedding-weights '{embedding_weights}' is not a comma list of numbers") from None
        options = dict(method=method, id_col=id_col, embedding=embedding or None, embedding_weights=weights,
                       levels=levels, codebook_size=codebook_size, epochs=epochs, max_steps=max_steps,
                       batch_size=batch_size, lr=lr, train_sample=train_sample, report_sample=report_sample,
                       balanced=balanced, dedup=dedup,
                       sinkhorn=sinkhorn, init=init, refine=refine, latent_dim=latent_dim, device=device, precision=precision, seed=seed, regularizer=regularizer,
                       interactions=str(interactions) if interactions is not None else None,
                       attributes=attributes, plan=str(plan) if plan is not None else None,
                       residual_levels=residual_levels, residual_method=residual_method,
                       lambda_hmr=lambda_hmr, lambda_rep=lambda_rep, lambda_align=lambda_align, alpha_m=alpha_m,
                       h_max=h_max, collision_batch_frac=collision_batch_frac, refresh_every=refresh_every,
                       align_mode=align_mode, kernel=kernel, no_mask=no_mask, no_severity=no_severity,
                       no_align=no_align, no_relax=no_relax, no_load=no_load, constant_schedule=constant_schedule)
        with progress_bar(not (quiet or as_json), log=not quiet, every=log_every) as cb:
            result = fit_fn(items, out=out, config=config, progress=cb, **options)
    except SidkitError as e:
        fail(e)
    if as_json:
        emit_json(result.summary)
    else:
        for n in result.summary.get("notes", []):
            typer.echo(visible(n), err=True)
        for w in result.summary.get("warnings", []):
            typer.echo(f"warning: {visible(w)}", err=True)
        if not quiet:
            print_fit_summary(result.summary)




def encode_command(
    model: Path = typer.Argument(..., help="Model directory written by 'sidkit fit'."),
    items: Path = typer.Argument(..., help="Catalog to encode: a Parquet file, a directory of Parquet shards or a glob (streamed in record batches)."),
    output: str = typer.Option(..., "--out", "--output", "-o", help="Codes Parquet file to write, or a folder ending in '/' for one codes shard per input shard (replaced as a whole). --output is the same option (its earlier name)."),
    id_col: Optional[str] = typer.Option(None, "--id-col", help="Id column. [default: the model's]"),
    batch_size: int = typer.Option(65536, "--batch-size", help="Rows per record batch.", min=1),
    engine: str = typer.Option("local", "--engine", help="Where the map stage runs: 'local' (this process) or "
                               "'ray' (a Ray Data actor pool; needs pip install 'sidkit[ray]')."),
    address: Optional[str] = typer.Option(None, "--address", help="Ray cluster to join with --engine ray ('auto' on "
                                          "a cluster node, 'ray://HOST:10001'). [default: a local one]"),
    workers: Optional[int] = typer.Option(None, "--workers", help="Ray actors, each loading the model once "
                                          "(--engine ray). [default: 1]", min=1),
    as_json: bool = JsonOpt,
    quiet: bool = QuietOpt,
    log_every: Optional[float] = LogEveryOpt,
) -> None:
    """Encode new or changed items with a fitted model; known items keep their SIDs and suffixes."""
    from sidkit._progress import progress_bar
    from sidkit.pipeline import encode as encode_fn

    try:
        with progress_bar(not (quiet or as_json), log=not quiet, every=log_every) as cb:
            summary = encode_fn(model, items, output, id_col=id_col, batch_size=batch_size, progress=cb,
                                engine=engine, address=address, workers=workers)
    except SidkitError as e:
        fail(e)
    if as_json:
        emit_json(summary)
        return
    if not quiet:
        for w in summary.get("warnings", []):
            typer.echo(f"warning: {visible(w)}", err=True)
        typer.echo(encode_line(summary))
