"""Typer commands ``sidkit export`` and ``sidkit lookup`` (registered in :mod:`sidkit.cli`)."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import List, Optional

import typer

from sidkit.cli._tools import emit_json, fail, print_warnings
from sidkit.errors import SidkitError
from sidkit.report.text import export_lines, lookup_line


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
    from sidkit.formats.export import FILE_FORMATS, export_with_info

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
    print_warnings(info.get("warnings"), quiet)
    if out is None:
        sys.stdout.write(res)
        sys.stdout.flush()
        return
    if json_out:
        emit_json(info)
    elif not quiet:
        for line in export_lines(info, fmt, out, one_file=fmt in FILE_FORMATS):
            typer.echo(line)


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
    from sidkit.formats.lookup import SidIndex

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
        typer.echo(lookup_line(s, r))
