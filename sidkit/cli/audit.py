"""Typer command ``sidkit audit`` (registered in :mod:`sidkit.cli`).

Exit codes: 0 ok, 1 a ``--fail-on`` gate tripped, 2 bad input or usage (one ``error: ...`` line
on stderr, nothing written). ``--json`` prints exactly one JSON document on stdout.
"""

from __future__ import annotations

from pathlib import Path
from typing import List, Optional

import typer

from sidkit.cli._tools import emit_json, fail, print_warnings
from sidkit.errors import GateFailed, SidkitError
from sidkit.report.console import visible
from sidkit.report.text import print_audit_summary


def audit_command(
    codes: Path = typer.Argument(..., help="SID table: codes.parquet, Parquet/CSV with an id and SID columns, index JSON, a model directory, or a directory / glob of Parquet shards."),
    items: Optional[Path] = typer.Option(None, "--items", help="Catalog Parquet (file, directory of shards or glob; embeddings, attributes): adds the semantic block."),
    interactions: Optional[Path] = typer.Option(None, "--interactions", help="Interactions Parquet (file, directory of shards or glob; user_id, item_id[, position]): adds the collaborative block."),
    baseline: Optional[Path] = typer.Option(None, "--baseline", help="Another SID table to compare with (churn)."),
    html: Optional[Path] = typer.Option(None, "--html", help="Write a self-contained HTML report here."),
    fail_on: Optional[List[str]] = typer.Option(None, "--fail-on", help="Gate such as 'collision_rate>0.02' (repeatable); exit 1 when one trips."),
    codebook_size: Optional[str] = typer.Option(None, "--codebook-size", help="Codebook size K, or a comma list per level. [default: the file metadata, else the largest code + 1]"),
    id_col: Optional[str] = typer.Option(None, "--id-col", help="Id column of the SID table / catalog."),
    suffix: str = typer.Option("auto", "--suffix", help="Last token as de-dup suffix: auto | last | none."),
    json_out: bool = typer.Option(False, "--json", help="Print the report as one JSON document."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No warnings or summary."),
    seed: int = typer.Option(0, "--seed", min=0, max=2**32 - 1, help="Seed of the sampled estimates."),
    display_cols: Optional[str] = typer.Option(None, "--display-cols", help="With --items: catalog columns listed next to bucket members, comma separated. [default: title and the category column when present]"),
    semantic_sample: int = typer.Option(100_000, "--semantic-sample", min=0, help="Catalogs over 100k items: seeded query items of the semantic block, searched in an approximate index over all items (0: every item)."),
) -> None:
    """Collision report and diversity metrics for any SID table."""
    from sidkit.report.audit import audit

    try:
        rep = audit(codes, items=items, interactions=interactions, baseline=baseline, codebook_size=codebook_size,
                    html=html, fail_on=fail_on, id_col=id_col, seed=seed, suffix=suffix, semantic_sample=semantic_sample,
                    display_cols=display_cols)
    except GateFailed as e:
        rep = getattr(e, "report", None)
        if rep is not None:
            print_warnings(rep.get("warnings"), quiet)
            if json_out:
                emit_json(rep)
            elif not quiet:
                print_audit_summary(rep)
        typer.echo(f"gate failed: {visible(e)}", err=True)
        raise typer.Exit(1)
    except SidkitError as e:
        fail(e)
    print_warnings(rep.get("warnings"), quiet)
    if json_out:
        emit_json(rep)
    elif not quiet:
        print_audit_summary(rep)
