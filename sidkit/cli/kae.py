"""Typer commands ``sidkit kae-plan``, ``bind-slot``, ``unbind-slot`` and ``slots`` (registered in
:mod:`sidkit.cli`). Exit 0 ok, 2 bad input (one ``error: ...`` line on stderr, nothing changed).
``--json`` prints exactly one JSON document on stdout. ``--model`` defaults to ``$SIDKIT_MODEL``,
else the current directory.
"""

from __future__ import annotations

from pathlib import Path
from typing import List, Optional

import typer

from sidkit.cli._tools import emit_json as _emit
from sidkit.cli._tools import fail as _fail
from sidkit.errors import SidkitError
from sidkit.kae.defaults import MAX_ROUTE_SHARE, PLAN_DEFAULTS
from sidkit.report.console import visible
from sidkit.report.text import bind_line, print_plan, print_slots, unbind_line

ModelOpt = typer.Option(None, "--model", "-m", help="KAE model directory. [default: $SIDKIT_MODEL, else the current directory]")


def kae_plan_command(
    items: Path = typer.Argument(..., help="Catalog (a Parquet file, a directory of shards or a glob) with attribute columns (string or list<string>)."),
    attributes: Optional[str] = typer.Option(None, "--attributes", "-a", help="Comma list of categories: columns, or list-column levels such as categories[2]. [default: repeating string columns]"),
    groups: int = typer.Option(PLAN_DEFAULTS["groups"], "--groups", "-g", help="Number of codebook groups (fewer when there are fewer categories).", min=1),
    out: Path = typer.Option(Path("kae.toml"), "--out", "-o", help="Plan file to write (TOML, editable)."),
    id_col: str = typer.Option("item_id", "--id-col", help="Id column (never used as an attribute)."),
    reserved_min: Optional[int] = typer.Option(None, "--reserved-min", help=f"Minimum reserved slots per group. [default: {PLAN_DEFAULTS['reserved_min']}]"),
    reserved_ratio: Optional[float] = typer.Option(None, "--reserved-ratio", help=f"Reserved slots as a share of kept words. [default: {PLAN_DEFAULTS['reserved_ratio']}]"),
    seed: int = typer.Option(0, "--seed", min=0, max=2**32 - 1, help="Seed of the item sample (catalogs over 2M items)."),
    as_json: bool = typer.Option(False, "--json", help="Print the plan as one JSON document."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No summary."),
) -> None:
    """Group attribute categories into codebooks (information-theoretic merge), size them and write a TOML plan."""
    from sidkit.kae.model import read_attribute_table, string_columns
    from sidkit.kae.plan import DEFAULTS, CategorySpec, make_plan, write_plan

    try:
        attrs = [a.strip() for a in attributes.split(",") if a.strip()] if attributes else None
        cols = [CategorySpec.parse(a).column for a in attrs] if attrs else [c for c in string_columns(items) if c != id_col]
        from sidkit.io.artifacts import check_output

        check_output(out, "--out", {"ITEMS": items})
        table = read_attribute_table(items, list(dict.fromkeys(cols)), id_col=id_col)
        plan, notes = make_plan(table, attrs, groups=groups, seed=seed, exclude_columns=[id_col],
                                reserved_min=reserved_min if reserved_min is not None else DEFAULTS["reserved_min"],
                                reserved_ratio=reserved_ratio if reserved_ratio is not None else DEFAULTS["reserved_ratio"])
        write_plan(plan, out)
    except SidkitError as e:
        _fail(e)
    d = plan.to_dict()
    d["plan_file"] = str(out)
    d["notes"] = notes
    if as_json:
        _emit(d)
        return
    for n in notes:
        typer.echo(visible(n), err=True)
    if not quiet:
        print_plan(d)




def bind_slot_command(
    category: str = typer.Argument(..., help="Attribute category that owns the word (e.g. color)."),
    word: str = typer.Argument(..., help="The word, exactly as typed (normalized: NFKC, lower-case)."),
    model: Optional[Path] = ModelOpt,
    alias: Optional[List[str]] = typer.Option(None, "--alias", help="Another spelling that also matches (repeatable)."),
    items: Optional[Path] = typer.Option(None, "--items", help="Catalog whose items carrying the word give the slot's routing scorer."),
    id_col: Optional[str] = typer.Option(None, "--id-col", help="Id column of --items. [default: the model's]"),
    max_route_share: float = typer.Option(MAX_ROUTE_SHARE, "--max-route-share", help="With --items: at most this share of the fit items carrying another word of the group (true negatives) may be routed to the new slot; the attribute-less items that would move are reported."),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON document."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No message."),
) -> None:
    """Bind a new word to the first free reserved slot of its group (no retraining; safe under concurrency)."""
    from sidkit.kae.slots import bind_slot

    try:
        r = bind_slot(category, word, model_dir=model, aliases=alias or [], items=items, id_col=id_col,
                      max_route_share=max_route_share)
    except SidkitError as e:
        _fail(e)
    if as_json:
        _emit(r)
        return
    if not quiet:
        for n in r["notes"]:
            typer.echo(f"note: {visible(n)}", err=True)
        typer.echo(bind_line(r))


def unbind_slot_command(
    category: str = typer.Argument(..., help="Attribute category of the binding."),
    word: str = typer.Argument(..., help="The bound word (or one of its aliases)."),
    model: Optional[Path] = ModelOpt,
    as_json: bool = typer.Option(False, "--json", help="Print one JSON document."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No message."),
) -> None:
    """Remove a binding: items return to their previous codes and the slot becomes free."""
    from sidkit.kae.slots import unbind_slot

    try:
        r = unbind_slot(category, word, model_dir=model)
    except SidkitError as e:
        _fail(e)
    if as_json:
        _emit(r)
    elif not quiet:
        typer.echo(unbind_line(r))


def slots_command(
    model: Optional[Path] = ModelOpt,
    as_json: bool = typer.Option(False, "--json", help="Print one JSON document."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="Only the per-group table."),
) -> None:
    """List groups, positions, capacities, bound and free reserved slots, and the history."""
    from sidkit.kae.slots import list_slots

    try:
        r = list_slots(model)
    except SidkitError as e:
        _fail(e)
    if as_json:
        _emit(r)
        return
    print_slots(r, quiet)
