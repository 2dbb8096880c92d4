"""Typer command ``sidkit audit`` (registered in :mod:`sidkit.cli`).

Exit codes: 0 ok, 1 a ``--fail-on`` gate tripped, 2 bad input or usage (one ``error: ...`` line
on stderr, nothing written). ``--json`` prints exactly one JSON document on stdout.
"""

from __future__ import annotations

from pathlib import Path
from typing import List, Optional

import typer

from sidkit.cli._tools import emit_json, fail, print_warnings, summary_console, visible
from sidkit.errors import GateFailed, SidkitError


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
                print_summary(rep)
        typer.echo(f"gate failed: {visible(e)}", err=True)
        raise typer.Exit(1)
    except SidkitError as e:
        fail(e)
    print_warnings(rep.get("warnings"), quiet)
    if json_out:
        emit_json(rep)
    elif not quiet:
        print_summary(rep)


def print_summary(rep: dict, file=None) -> None:
    """Readable rich summary of a report on stdout: headline numbers, per-level table, buckets."""
    from rich.table import Table
    from rich.text import Text

    con = summary_console(file)
    col = rep["collision"]
    ham = rep.get("hamming", {})
    con.print(f"[bold]SID audit[/bold]  {rep['n_items']:,} items, {rep['n_levels']} levels, codebook sizes "
              f"{', '.join(map(str, rep['codebook_sizes']))}", markup=True)
    head = Table(show_header=False, box=None, pad_edge=False)
    head.add_column(style="cyan")
    head.add_column(justify="right")
    from sidkit.report.labels import label

    head.add_column(style="dim")
    from sidkit.report.labels import meaning

    def row(key, value):
        head.add_row(label(key), value, meaning(key))

    row("collision.collision_rate", f"{100 * col['collision_rate']:.2f}%")
    row("collision.unique_sid_ratio", f"{100 * col['unique_sid_ratio']:.2f}%")
    row("collision.collided_item_fraction", f"{100 * col['collided_item_fraction']:.2f}%")
    row("collision.n_colliding_buckets", f"{col['n_colliding_buckets']:,}")
    row("collision.max_bucket_size", f"{col['max_bucket_size']:,}")
    row("diversity.sid_entropy_ratio", f"{rep['diversity']['sid_entropy_ratio']:.4f}")
    dd = rep.get("dedup")
    if dd and dd.get("method") == "zcr" and "items_moved" in dd:
        mse = ""
        if dd.get("reconstruction_mse_before") is not None and dd.get("reconstruction_mse_after") is not None:
            mse = f", reconstruction MSE {dd['reconstruction_mse_before']:.4g} -> {dd['reconstruction_mse_after']:.4g}"
        head.add_row("dedup: zcr", f"{dd['items_moved']:,} moved",
                     visible(f"items whose last code ZCR reassigned (collision rate before {100 * dd['collision_rate_before']:.2f}%), "
                             f"mean cost {dd['mean_cost']:.4g}{mse}; {dd['groups_unresolved']:,} groups too large for the last "
                             f"codebook ({dd['items_unresolved']:,} items keep suffixes)"))
    elif dd:
        head.add_row("dedup", visible(str(dd.get("method"))))
    if ham:
        head.add_row("pairs h=0 / h<=1", f"{ham['pairs_h0']:,} / {ham['pairs_h_le1']:,}")
    sem = rep.get("semantic")
    if sem:
        row("semantic.locality_gap", f"{sem['locality_gap']:.3f}")
        if "sample_size" in sem:
            lo, hi = sem["locality_gap_ci95"]
            head.add_row("semantic sample", visible(f"{sem['sample_size']:,} of {sem['n_items']:,} items (gap 95% CI {lo:.3f}..{hi:.3f}), "
                                                    f"{sem['index']}, recall@{sem['k']} {sem.get('knn_recall', float('nan')):.3f}"))
        row("semantic.conflict_collision_rate", f"{100 * sem['conflict_collision_rate']:.1f}%")
        row("semantic.benign_collision_rate", f"{100 * sem['benign_collision_rate']:.1f}%")
    colb = rep.get("collaborative")
    if colb:
        head.add_row("co-interaction vs random first-token share",
                     f"{100 * colb['co_interaction_prefix_share']:.1f}% vs {100 * colb['random_prefix_share']:.1f}%")
    cmp_ = rep.get("compare")
    if cmp_ and cmp_.get("churn_rate") is not None:
        row("compare.churn_rate", f"{100 * cmp_['churn_rate']:.2f}%")
        row("compare.collision_rate_delta", f"{100 * cmp_['collision_rate_delta']:+.2f} pt")
    con.print(head)
    lv = Table(title="per level", title_justify="left")
    for c in ("level", "utilization", "dead_codes", "entropy_bits", "perplexity", "normalized_perplexity"):
        lv.add_column(label(f"levels.{c}"), justify="right")
    for x in rep["levels"]:
        lv.add_row(str(x["level"]), f"{100 * x['utilization']:.1f}%", f"{x['dead_codes']:,}", f"{x['entropy_bits']:.2f}",
                   f"{x['perplexity']:.1f}", f"{x['normalized_perplexity']:.3f}")
    con.print(lv)
    pre = rep.get("prefix") or []
    if pre and "fanout_median" in pre[0]:
        ft = Table(title="prefix fan-out (children per used prefix one token shorter)", title_justify="left")
        for c in ("length", "n_distinct", "fanout_min", "fanout_median", "fanout_max"):
            ft.add_column(label(f"prefix.{c}"), justify="right")
        for p in pre:
            ft.add_row(str(p["length"]), f"{p['n_distinct']:,}", str(p["fanout_min"]), f"{p['fanout_median']:g}", str(p["fanout_max"]))
        con.print(ft)
    pop = rep.get("popularity")
    if pop and pop.get("deciles"):
        pt = Table(title="allocation by popularity (decile 0 = head)", title_justify="left")
        for c in ("decile", "n_items", "interactions", "collided_fraction", "mean_bucket_size"):
            pt.add_column(label(f"popularity.{c}"), justify="right")
        pt.add_column("distinct prefixes / items")
        for d in pop["deciles"]:
            pt.add_row(str(d["decile"]), f"{d['n_items']:,}", f"{d['interactions']:,}", f"{100 * d['collided_fraction']:.1f}%",
                       f"{d['mean_bucket_size']:.2f}", " ".join(f"{x:.2f}" for x in d["distinct_prefix_ratio"]))
        con.print(pt)
    tb = rep.get("top_buckets") or []
    if tb:
        bt = Table(title="largest collision buckets", title_justify="left")
        bt.add_column("size", justify="right")
        bt.add_column("SID")
        bt.add_column("item")
        cols = list((tb[0].get("display") or {}).keys())
        for c in cols:
            bt.add_column(visible(c), overflow="fold")
        for b in tb[:10]:
            ids = b.get("item_ids", b.get("rows", []))
            disp = b.get("display") or {}
            if not cols:
                shown = ", ".join(visible(i) for i in ids[:8]) + (", ..." if b["size"] > 8 else "")
                bt.add_row(str(b["size"]), Text(" ".join(map(str, b["sid"]))), Text(shown))
                continue
            for i, x in enumerate(ids[:5]):
                vals = [Text(visible("" if c not in disp or i >= len(disp[c]) or disp[c][i] is None else str(disp[c][i]))[:80]) for c in cols]
                bt.add_row(str(b["size"]) if i == 0 else "", Text(" ".join(map(str, b["sid"]))) if i == 0 else Text(""),
                           Text(visible(x)), *vals)
            if len(ids) > 5:
                bt.add_row("", Text(""), Text(f"... {b['size'] - 5} more"), *[Text("") for _ in cols])
        con.print(bt)
    for g in rep.get("gates") or []:
        con.print(visible(f"gate {g['gate']}: value {g['value']:.6g} -> {'TRIPPED' if g['tripped'] else 'ok'}"), markup=False)
