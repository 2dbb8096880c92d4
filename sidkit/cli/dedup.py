"""Typer command ``sidkit dedup`` (registered in :mod:`sidkit.cli`)."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from sidkit.cli._tools import emit_json, fail
from sidkit.errors import SidkitError
from sidkit.report.text import dedup_line


def dedup_command(
    codes: Path = typer.Argument(..., help="A sidkit SID table (codes.parquet of 'sidkit fit', or a 'sidkit encode' output file)."),
    out: Path = typer.Option(..., "--out", "-o", help="SID table to write (replaced atomically; never one of the inputs)."),
    method: str = typer.Option("zcr", "--method", help="zcr (reassign last-level codes inside each prefix group: distinct SIDs of the same length), suffix (0, 1, ... per shared SID) or none."),
    model: Optional[Path] = typer.Option(None, "--model", help="The model directory the table came from (zcr)."),
    items: Optional[Path] = typer.Option(None, "--items", help="The catalog with the embeddings (zcr; only colliding rows are read)."),
    id_col: Optional[str] = typer.Option(None, "--id-col", help="Id column of --items. [default: the model's]"),
    json_out: bool = typer.Option(False, "--json", help="Print the summary as JSON."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No summary line."),
) -> None:
    """Resolve a SID table's collisions again: ZCR (collision-free SIDs of the same length), suffixes, or none."""
    from sidkit.dedup.table import dedup

    try:
        info = dedup(codes, model, items, out, method=method, id_col=id_col)
    except SidkitError as e:
        fail(e)
    if json_out:
        emit_json(info)
        return
    if quiet:
        return
    typer.echo(dedup_line(info, out, method))
