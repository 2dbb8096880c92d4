"""``sidkit export``: SID tables as token strings, LC-Rec style index JSON, or a ``sid_0..`` CSV.

Token rule: level ``l`` is written ``<x_c>`` with ``x`` the l-th letter (a, b, c, ..., z, aa, ab,
...). When the source has a de-duplication suffix (sidkit codes always do), it is appended to
**every** item as one more token with the next letter (``<a_12><b_3><c_77><d_0>``), so the full
token strings are unique. Reading an exported file back (``audit``) recognises that last token
as the suffix (see :mod:`sidkit.io.sidtable`), so the core report is the same as the source's.
CSV and JSON carry no codebook sizes: pass ``--codebook-size`` when auditing an export of a
table whose sizes came from metadata.

Formats: ``tokens`` is a CSV ``item_id,sid`` with the token string; ``index-json`` is
``{item_id: [tokens]}``; ``csv`` is ``item_id,sid_0..sid_{L-1}[,suffix]``. The folder formats
``lcrec``, ``minionerec``, ``openonerec`` and ``hf-tokenizer`` (the files those stacks read) are
in :mod:`sidkit.formats.stacks`; the token format and the full token grid (``tokens_file``) in
:mod:`sidkit.formats.tokens`.
"""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np

from sidkit.errors import ConfigError, opt
from sidkit.formats.tokens import DEFAULT_FORMAT, level_letter  # noqa: F401  (level_letter: re-exported)

FILE_FORMATS = ("tokens", "index-json", "csv")
FORMATS = FILE_FORMATS + ("lcrec", "minionerec", "openonerec", "hf-tokenizer")


def token_rows(codes: np.ndarray, suffix: np.ndarray | None, fmt: str = DEFAULT_FORMAT) -> list[list[str]]:
    """Per item, the list of tokens (suffix token appended when ``suffix`` is given)."""
    from sidkit.formats.stacks import item_rows

    return item_rows(codes, suffix, fmt)


def _id_str(v) -> str:
    if isinstance(v, np.generic):
        v = v.item()
    if isinstance(v, bytes):
        v = v.decode("utf-8", "replace")
    return str(v)


def export(codes_path, fmt: str, out=None, *, id_col: str | None = None, suffix: str = "auto", raw: bool = False, **kwargs):
    """Export a SID table.

    Parameters
    ----------
    codes_path : any SID table :func:`~sidkit.io.sidtable.read_sid_table` reads.
    fmt : ``"tokens"``, ``"index-json"`` or ``"csv"``.
    out : output path (written atomically); None returns the text instead.
    raw : ``tokens``/``csv``: write ids verbatim; by default an id that a spreadsheet would run
        as a formula gets a leading ``'`` (see :func:`csv_cell`).
    kwargs : ``token_format``, ``tokens_file``, ``codebook_size``, ``suffix_size`` (every format);
        for the folder formats also ``name``, ``interactions``, ``items``, ``title_col``,
        ``text_cols`` and ``base`` (see :func:`sidkit.formats.stacks.stack_export`).

    Returns
    -------
    The output path, or the text when ``out`` is None.
    """
    return export_with_info(codes_path, fmt, out, id_col=id_col, suffix=suffix, raw=raw, **kwargs)[0]


def export_with_info(codes_path, fmt: str, out=None, *, id_col: str | None = None, suffix: str = "auto", raw: bool = False,
                     token_format: str | None = None, tokens_file=None, codebook_size=None, suffix_size: int | None = None,
                     **stack):
    """Like :func:`export`, also returning a summary dict (format, path, n_items, n_levels,
    suffix, warnings)."""
    from sidkit.io.artifacts import check_output
    from sidkit.io.codes import unused_suffix
    from sidkit.io.sidtable import read_sid_table
    from sidkit.formats.tokens import check_token_format, token_grid

    if fmt not in FORMATS:
        raise ConfigError(f"{opt('fmt', '--format')} {fmt!r}: use one of {', '.join(FORMATS)}")
    if fmt not in FILE_FORMATS:
        from sidkit.formats.stacks import stack_export

        info = stack_export(codes_path, fmt, out, id_col=id_col, suffix=suffix, token_format=token_format,
                            tokens_file=tokens_file, codebook_size=codebook_size, suffix_size=suffix_size, **stack)
        return Path(out), info
    if stack:
        raise ConfigError(f"{opt(next(iter(stack)))} is for the folder formats (lcrec, minionerec, openonerec, hf-tokenizer), not {fmt}")
    tf = check_token_format(token_format)
    check_output(out, opt("out", "-o"), {"CODES": codes_path})
    check_output(tokens_file, opt("tokens_file", "--tokens-file"), {"CODES": codes_path, opt("out", "-o"): out})
    ids, codes, sfx, sizes, warnings = read_sid_table(codes_path, id_col=id_col, suffix=suffix, codebook_size=codebook_size)
    sfx = unused_suffix(codes_path, sfx, suffix)
    grid = None
    if tokens_file is not None:
        from sidkit.formats.stacks import needs_sizes, suffix_grid_size

        sizes = needs_sizes(sizes, codes_path)
        grid = token_grid(sizes, suffix_size=suffix_grid_size(sizes, sfx, suffix_size), fmt=tf)
    text = render_export(ids, codes, sfx, fmt, raw=raw, token_format=tf)
    info = {"format": fmt, "path": None if out is None else str(out), "n_items": int(codes.shape[0]),
            "n_levels": int(codes.shape[1]), "suffix_token": sfx is not None, "codebook_sizes": sizes,
            "token_format": tf, "warnings": warnings}
    if grid is not None:
        from sidkit.formats.stacks import write_tokens_file

        write_tokens_file(tokens_file, grid)
        info["tokens_file"] = str(tokens_file)
        info["n_grid_tokens"] = len(grid)
    if out is None:
        return text, info
    from sidkit.io.artifacts import write_text_atomic

    write_text_atomic(out, text)
    return Path(out), info


def render_export(ids, codes: np.ndarray, suffix: np.ndarray | None, fmt: str, *, raw: bool = False,
                  token_format: str = DEFAULT_FORMAT) -> str:
    """The export text for in-memory ids/codes/suffix (``raw``: string ids verbatim in CSV)."""
    import pyarrow as pa
    import pyarrow.csv as pcsv

    if fmt not in FILE_FORMATS:
        raise ConfigError(f"{opt('fmt', '--format')} {fmt!r}: use one of {', '.join(FILE_FORMATS)}")
    ids_list = [_id_str(v) for v in np.asarray(ids)] if np.asarray(ids).dtype == object else np.asarray(ids).tolist()
    if fmt == "index-json":
        rows = token_rows(codes, suffix, token_format)
        return json.dumps({_id_str(i): t for i, t in zip(ids_list, rows)}, ensure_ascii=False) + "\n"
    if not raw and ids_list and isinstance(ids_list[0], str):
        from sidkit.io.sidtable import csv_cell

        ids_list = [csv_cell(i) for i in ids_list]
    if fmt == "tokens":
        rows = token_rows(codes, suffix, token_format)
        table = pa.table({"item_id": pa.array(ids_list), "sid": pa.array(["".join(t) for t in rows], pa.string())})
    else:
        cols = {"item_id": pa.array(ids_list)}
        for l in range(codes.shape[1]):
            cols[f"sid_{l}"] = pa.array(np.asarray(codes[:, l], dtype=np.int64))
        if suffix is not None:
            cols["suffix"] = pa.array(np.asarray(suffix, dtype=np.int64))
        table = pa.table(cols)
    buf = io.BytesIO()
    pcsv.write_csv(table, buf)
    return buf.getvalue().decode("utf-8")
