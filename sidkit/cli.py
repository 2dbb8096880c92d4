"""The ``sidkit`` command line: a thin Typer layer over the library (one call per command)."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import List, Optional

import typer

from sidkit import __version__
from sidkit.errors import GateFailed, SidkitError

app = typer.Typer(
    name="sidkit",
    help="Semantic IDs for item catalogs: fit tokenizers, encode items, audit and export SID tables.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

JsonOpt = typer.Option(False, "--json", help="Print one JSON document on stdout and nothing else.")
QuietOpt = typer.Option(False, "--quiet", "-q", help="No progress bars or summary.")


def fail(err: Exception) -> None:
    """Print a one-line error on stderr and exit with the error's code (2 bad input, 1 gate)."""
    msg = str(err).splitlines()[0] if str(err) else type(err).__name__
    typer.echo(f"error: {msg}", err=True)
    raise typer.Exit(getattr(err, "exit_code", 2))


def emit_json(obj) -> None:
    from sidkit.io.artifacts import _json_default

    sys.stdout.write(json.dumps(obj, indent=2, default=_json_default) + "\n")


def _version(value: bool) -> None:
    if value:
        typer.echo(f"sidkit {__version__}")
        raise typer.Exit()


@app.callback()
def _main(version: bool = typer.Option(False, "--version", callback=_version, is_eager=True, help="Show the version and exit.")) -> None:
    """Semantic IDs for item catalogs."""


@app.command()
def fit(
    items: Path = typer.Argument(..., help="Catalog Parquet file: an id column and one or more float-list embedding columns."),
    method: Optional[str] = typer.Option(None, "--method", "-m", help="Tokenizer: rqvae or rqkmeans. [default: rqvae]"),
    out: Path = typer.Option(Path("sidkit-model"), "--out", "-o", help="Model directory to write (replaced atomically)."),
    id_col: Optional[str] = typer.Option(None, "--id-col", help="Id column. [default: item_id]"),
    embedding: Optional[List[str]] = typer.Option(None, "--embedding", "-e", help="Embedding column (repeatable). [default: every float-list column]"),
    embedding_weights: Optional[str] = typer.Option(None, "--embedding-weights", help="Comma list of weights, one per --embedding column, for fusion."),
    levels: Optional[int] = typer.Option(None, "--levels", "-L", help="Number of levels (SID length). [default: 3]"),
    codebook_size: Optional[str] = typer.Option(None, "--codebook-size", "-K", help="Codes per level: one int or a comma list per level. [default: 256]"),
    epochs: Optional[int] = typer.Option(None, "--epochs", help="rqvae: training epochs (capped by --max-steps). [default: 300]"),
    max_steps: Optional[int] = typer.Option(None, "--max-steps", help="rqvae: optimizer step budget. [default: 2000]"),
    batch_size: Optional[int] = typer.Option(None, "--batch-size", help="rqvae: batch size. [default: 1024]"),
    lr: Optional[float] = typer.Option(None, "--lr", help="rqvae: AdamW learning rate. [default: 0.001]"),
    train_sample: Optional[int] = typer.Option(None, "--train-sample", help="rqkmeans: fit k-means on at most this many sampled rows."),
    balanced: Optional[bool] = typer.Option(None, "--balanced/--no-balanced", help="rqkmeans: capacity-capped (balanced) k-means."),
    sinkhorn: Optional[bool] = typer.Option(None, "--sinkhorn/--no-sinkhorn", help="rqvae: Sinkhorn assignment on the last level during training (LC-Rec)."),
    device: Optional[str] = typer.Option(None, "--device", help="rqvae: cpu or cuda. [default: cpu]"),
    seed: Optional[int] = typer.Option(None, "--seed", help="Random seed; same seed and inputs give identical codes. [default: 0]"),
    config: Optional[Path] = typer.Option(None, "--config", help="TOML file with fit options; command-line flags win."),
    as_json: bool = JsonOpt,
    quiet: bool = QuietOpt,
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
                       batch_size=batch_size, lr=lr, train_sample=train_sample, balanced=balanced,
                       sinkhorn=sinkhorn, device=device, seed=seed)
        with progress_bar(not (quiet or as_json)) as cb:
            result = fit_fn(items, out=out, config=config, progress=cb, **options)
    except SidkitError as e:
        fail(e)
    if as_json:
        emit_json(result.summary)
    elif not quiet:
        _print_fit_summary(result.summary)


def _print_fit_summary(s: dict) -> None:
    from rich.console import Console
    from rich.table import Table

    c = Console()
    c.print(f"[bold]{s['method']}[/] on {s['n_items']:,} items -> [bold]{s['model_dir']}[/] "
            f"({s['fit_seconds']:.1f} s fit, {s['total_seconds']:.1f} s total)")
    c.print(f"collision rate [bold]{s['collision_rate']:.2%}[/]  unique SIDs {s['unique_sid_ratio']:.2%}  "
            f"largest bucket {s['max_bucket_size']}  reconstruction MSE {s['reconstruction_mse']:.3g}")
    t = Table("level", "codebook", "utilization", "normalized perplexity")
    for l, (k, u, p) in enumerate(zip(s["codebook_sizes"], s["utilization"], s["normalized_perplexity"])):
        t.add_row(str(l), str(k), f"{u:.1%}", f"{p:.3f}")
    c.print(t)


@app.command()
def encode(
    model: Path = typer.Argument(..., help="Model directory written by 'sidkit fit'."),
    items: Path = typer.Argument(..., help="Catalog Parquet file to encode (streamed in record batches)."),
    output: Path = typer.Option(..., "--output", "-o", help="Codes Parquet file to write."),
    id_col: Optional[str] = typer.Option(None, "--id-col", help="Id column. [default: the model's]"),
    batch_size: int = typer.Option(65536, "--batch-size", help="Rows per record batch.", min=1),
    as_json: bool = JsonOpt,
    quiet: bool = QuietOpt,
) -> None:
    """Encode new or changed items with a fitted model; known items keep their SIDs and suffixes."""
    from sidkit._progress import progress_bar
    from sidkit.pipeline import encode as encode_fn

    try:
        with progress_bar(not (quiet or as_json)) as cb:
            summary = encode_fn(model, items, output, id_col=id_col, batch_size=batch_size, progress=cb)
    except SidkitError as e:
        fail(e)
    if as_json:
        emit_json(summary)
    elif not quiet:
        typer.echo(f"encoded {summary['n_items']:,} items -> {summary['output']} "
                   f"({summary['n_kept']:,} kept, {summary['n_new_or_changed']:,} new or changed, {summary['seconds']:.1f} s)")


def _register_optional() -> None:
    try:  # TEMP until cli_audit lands
        from sidkit.cli_audit import audit_command, export_command
    except ImportError:
        return

    app.command("audit")(audit_command)
    app.command("export")(export_command)


_register_optional()


def main() -> None:
    app()


if __name__ == "__main__":
    main()
