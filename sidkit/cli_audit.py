"""Typer commands ``sidkit audit`` and ``sidkit export`` (registered in :mod:`sidkit.cli`).

Exit codes: 0 ok, 1 a ``--fail-on`` gate tripped, 2 bad input or usage (one ``error: ...`` line
on stderr, nothing written). ``--json`` prints exactly one JSON document on stdout.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import List, Optional

import typer

from sidkit._clitools import emit_json, fail, summary_console, visible
from sidkit.errors import GateFailed, SidkitError


def _warn(warnings, quiet: bool) -> None:
    if quiet:
        return
    for w in warnings or []:
        typer.echo(f"warning: {visible(w)}", err=True)


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
    from sidkit.audit import audit

    try:
        rep = audit(codes, items=items, interactions=interactions, baseline=baseline, codebook_size=codebook_size,
                    html=html, fail_on=fail_on, id_col=id_col, seed=seed, suffix=suffix, semantic_sample=semantic_sample,
                    display_cols=display_cols)
    except GateFailed as e:
        rep = getattr(e, "report", None)
        if rep is not None:
            _warn(rep.get("warnings"), quiet)
            if json_out:
                emit_json(rep)
            elif not quiet:
                print_summary(rep)
        typer.echo(f"gate failed: {visible(e)}", err=True)
        raise typer.Exit(1)
    except SidkitError as e:
        fail(e)
    _warn(rep.get("warnings"), quiet)
    if json_out:
        emit_json(rep)
    elif not quiet:
        print_summary(rep)


def export_command(
    codes: Path = typer.Argument(..., help="SID table to export (any format audit reads)."),
    fmt: str = typer.Option("tokens", "--format", "-f", help="tokens | index-json | csv (one file), or a folder for a "
                            "recommender stack: lcrec (LC-Rec, LETTER) | minionerec | openonerec | hf-tokenizer."),
    out: Optional[Path] = typer.Option(None, "--out", "-o", help="Output file; the output folder for the stack formats (replaced as a whole). [default: stdout]"),
    id_col: Optional[str] = typer.Option(None, "--id-col", help="Id column of the SID table."),
    suffix: str = typer.Option("auto", "--suffix", help="Last token as de-dup suffix: auto | last | none."),
    raw: bool = typer.Option(False, "--raw", help="tokens/csv: write ids exactly as they are, also those that begin with = + - @ tab or CR (by default such a cell gets a leading ' so that spreadsheets do not run it as a formula)."),
    name: Optional[str] = typer.Option(None, "--name", help="Stack formats: the dataset name of the files (NAME.index.json, ...); no dots. [default: items; pid2sid for openonerec]"),
    interactions: Optional[Path] = typer.Option(None, "--interactions", help="lcrec/minionerec: interactions Parquet (user_id, item_id, timestamp or position) for NAME.inter.json / the train, valid and test CSVs."),
    items: Optional[Path] = typer.Option(None, "--items", help="lcrec/minionerec: the catalog, for the titles and descriptions of NAME.item.json and the info file."),
    title_col: str = typer.Option("title", "--title-col", help="Catalog column of the item titles."),
    text_cols: Optional[str] = typer.Option(None, "--text-cols", help="Catalog columns joined into the description (comma list; '' for none). [default: description, where the catalog has it]"),
    token_format: Optional[str] = typer.Option(None, "--token-format", help="Token template with {level} and {code}, or an example: "
                                               "'<a_12>' = '<{level}_{code}>', '<s_a_12>' = '<s_{level}_{code}>' (openonerec's). [default: <a_12>; openonerec: <s_a_12>]"),
    tokens_file: Optional[Path] = typer.Option(None, "--tokens-file", help="Also write the full level-major token grid (every code of every level, the suffix level "
                                               "unless a --dedup zcr/none table has no suffix in use, begin/end markers for openonerec), "
                                               "one token a line; fixed for a model's codebook sizes."),
    codebook_size: Optional[str] = typer.Option(None, "--codebook-size", help="Codebook sizes for the token grid when the table does not record them (one, or one per level)."),
    suffix_size: Optional[int] = typer.Option(None, "--suffix-size", min=1, help="Tokens of the suffix level in the grid. [default: the last codebook size]"),
    base: Optional[Path] = typer.Option(None, "--base", help="hf-tokenizer: local Hugging Face model directory (tokenizer files + safetensors weights); nothing is downloaded."),
    json_out: bool = typer.Option(False, "--json", help="Print a JSON summary (needs -o, except for index-json)."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No warnings or summary."),
) -> None:
    """Export SIDs as token strings, index JSON or a sid_0.. CSV, or as the files LC-Rec, LETTER, MiniOneRec, OpenOneRec or a Hugging Face tokenizer read."""
    from sidkit.errors import ConfigError
    from sidkit.export import FILE_FORMATS, export_with_info

    try:
        if json_out and out is None and fmt != "index-json":
            raise ConfigError("--json prints a summary, so give the output file with -o (or use --format index-json)")
        stack = {}
        if fmt not in FILE_FORMATS:
            stack = dict(name=name, interactions=interactions, items=items, title_col=title_col,
                         text_cols=None if text_cols is None else [c.strip() for c in text_cols.split(",") if c.strip()],
                         base=base)
        else:
            for flag, v in (("--name", name), ("--interactions", interactions), ("--items", items), ("--base", base)):
                if v is not None:
                    raise ConfigError(f"{flag} is for the folder formats (lcrec, minionerec, openonerec, hf-tokenizer), not --format {fmt}")
        res, info = export_with_info(codes, fmt, out, id_col=id_col, suffix=suffix, raw=raw, token_format=token_format,
                                     tokens_file=tokens_file, codebook_size=codebook_size, suffix_size=suffix_size, **stack)
    except SidkitError as e:
        fail(e)
    _warn(info.get("warnings"), quiet)
    if out is None:
        sys.stdout.write(res)
        sys.stdout.flush()
        return
    if json_out:
        emit_json(info)
    elif not quiet:
        if fmt in FILE_FORMATS:
            typer.echo(visible(f"wrote {info['n_items']:,} SIDs ({info['n_levels']} levels{' + suffix token' if info['suffix_token'] else ''}) as {fmt} to {out}"))
        else:
            typer.echo(visible(f"wrote {info['n_items']:,} SIDs as {fmt} to {out}/: {', '.join(info['files'])}"))
        if info.get("tokens_file"):
            typer.echo(visible(f"wrote {info['n_grid_tokens']:,} grid tokens to {info['tokens_file']}"))


def lookup_command(
    codes: Path = typer.Argument(..., help="SID table the strings come from (any format audit reads)."),
    sids: Optional[List[str]] = typer.Argument(None, help="Generated SID strings, e.g. '<a_12><b_3><c_77><d_0>' (a core SID without its suffix token gives all its items). '-' or none: one per line on stdin."),
    token_format: Optional[str] = typer.Option(None, "--token-format", help="Token template of the strings ({level}, {code}): '<a_12>' or '<s_a_12>'. [default: <a_12>]"),
    id_col: Optional[str] = typer.Option(None, "--id-col", help="Id column of the SID table."),
    suffix: str = typer.Option("auto", "--suffix", help="Last token as de-dup suffix: auto | last | none."),
    json_out: bool = typer.Option(False, "--json", help="Print one JSON document: [{sid, item_ids}, ...]."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No warnings."),
) -> None:
    """Map generated SID strings back to item ids: one line per string, its ids separated by spaces (empty for an invalid or unknown SID)."""
    from sidkit.sidlookup import SidIndex

    strings = list(sids or [])
    if not strings or strings == ["-"]:
        strings = [line.rstrip("\n") for line in sys.stdin if line.strip()]
    try:
        idx = SidIndex.from_table(codes, token_format=token_format, id_col=id_col, suffix=suffix)
        res = idx.lookup(strings)
    except SidkitError as e:
        fail(e)
    if json_out:
        emit_json([{"sid": s, "item_ids": r} for s, r in zip(strings, res)])
        return
    for s, r in zip(strings, res):
        typer.echo(visible(s) + "\t" + " ".join(visible(str(v)) for v in r))


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
    from sidkit.dedup import dedup

    try:
        info = dedup(codes, model, items, out, method=method, id_col=id_col)
    except SidkitError as e:
        fail(e)
    if json_out:
        emit_json(info)
        return
    if quiet:
        return
    d = info["dedup"]
    line = f"{info['n_items']:,} SIDs -> {out} ({method}; collision rate {info['collision_rate']:.4f}"
    if method == "zcr":
        line += (f", {d['items_moved']:,} items moved, mean cost {d['mean_cost']:.4g}, "
                 f"{d['groups_unresolved']:,} groups too large for the last codebook ({d['items_unresolved']:,} items keep suffixes)")
    typer.echo(visible(line + ")"))
