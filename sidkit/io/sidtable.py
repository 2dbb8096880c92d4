"""Read any SID table: sidkit codes.parquet, Parquet/CSV tables, and LC-Rec style index JSON.

Accepted layouts (DESIGN.md §3):

* sidkit ``codes.parquet`` (``item_id``, ``sid`` list<int>, ``suffix``; codebook sizes from the
  ``sidkit`` key-value metadata); a model directory holding ``codes.parquet`` also works;
* any Parquet or CSV table with an id column and either one list column of codes (a CSV list
  column is a string such as ``[1, 2, 3]``, ``1 2 3`` or ``<a_1><b_2><c_3>``) or integer columns
  ``sid_0..sid_{L-1}`` (also ``c0..``, ``code_0..``, ``level_0..``); an optional integer
  ``suffix`` column;
* an index JSON ``{item_id: ["<a_12>", "<b_3>", ...]}`` (LC-Rec, LETTER, MiniOneRec); the tokens
  may also be plain integers or one concatenated string.

De-duplication suffix: a ``suffix`` column is always taken as the suffix. Without one, and with
``suffix="auto"`` (the default), the last token is read as a suffix exactly when it behaves like
one: the full SIDs are all distinct and, inside every group of items sharing the first L-1
tokens, the last tokens are 0, 1, ..., n_b - 1 (this is what ``sidkit export`` writes, and what
TIGER's extra token is). A warning says so. ``suffix="last"`` forces it, ``suffix="none"`` never.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np

from sidkit.config import parse_codebook_size
from sidkit.errors import DataError, InputFileError, SchemaError, opt
from sidkit.io.ids import check_no_null_ids, check_unique_ids

_TOKEN = re.compile(r"<([A-Za-z]+)_(-?\d+)>")
_LEVEL_COL = re.compile(r"^(sid_|sid|c|code_|code|level_|l)(\d+)$")
_ID_NAMES = ("item_id", "id", "item", "itemid", "item_idx", "asin")


FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def csv_cell(text: str) -> str:
    """A string cell that spreadsheets will not run as a formula (OWASP's advice): a leading
    ``'`` before a cell that begins with ``= + - @``, tab or CR, and before a cell that begins
    with ``'`` followed by one of those or another ``'`` (so :func:`csv_uncell` inverts it
    exactly)."""
    if text.startswith(FORMULA_START) or (text[:1] == "'" and text[1:2] in (*FORMULA_START, "'")):
        return "'" + text
    return text


def csv_uncell(text: str) -> str:
    """The inverse of :func:`csv_cell` (applied when a CSV SID table is read back)."""
    if text[:1] == "'" and text[1:2] in (*FORMULA_START, "'"):
        return text[1:]
    return text


def read_sid_table(path, *, id_col: str | None = None, codebook_size=None, suffix: str = "auto"):
    """Read a SID table in any supported layout.

    Parameters
    ----------
    path : file (``.parquet``, ``.csv``/``.tsv``, ``.json``), a model directory (holding
        ``codes.parquet``), or a directory of Parquet shards or a glob (one checked schema; a
        message about a row names the shard and the row inside it).
    id_col : name of the id column (default: ``item_id``, else ``id``/``item``, else the first
        column that is not a code column).
    codebook_size : int or list (or comma string) of codebook sizes; overrides the file metadata.
    suffix : ``"auto"``, ``"last"`` or ``"none"``: how to treat the last token when the table has no
        ``suffix`` column (see the module docstring).

    Returns
    -------
    (item_ids, codes, suffix, codebook_sizes, warnings): ids (n,), codes (n, L) int, suffix (n,)
    int32 or None, codebook sizes (list) or None when unknown, and a list of warning strings.

    Raises
    ------
    InputFileError, SchemaError, DataError
        With a one-line message naming the file, column or row and the fix.
    """
    if suffix not in ("auto", "last", "none"):
        from sidkit.errors import ConfigError

        raise ConfigError(f"suffix={suffix!r}: use 'auto', 'last' or 'none'")
    p = resolve_sid_path(path)
    warnings: list[str] = []
    sizes_meta = None
    ids_arrow = None
    bounds = None  # (shard path, first row, end row) per shard of a sharded input
    if not isinstance(p, Path):  # a directory of Parquet shards or a glob
        ids, codes, sfx, token_cols, ids_arrow, sizes_meta, bounds, idc = _read_shards(p, id_col)
        p = p.path
        kind = "parquet"
    elif (kind := _sniff(p)) == "json":
        ids, codes, sfx, token_cols = _read_index_json(p)
        idc = "item_id"  # the JSON keys
    else:
        table, sizes_meta = _read_table(p, kind, id_col)
        ids, codes, sfx, token_cols, ids_arrow, idc = _table_codes(table, p, id_col)
        if kind in ("csv", "tsv") and ids.dtype == object and any(isinstance(v, str) and v[:1] == "'" for v in ids):
            ids = np.array([csv_uncell(v) for v in ids], dtype=object)
            ids_arrow = None
    n = len(ids)
    if n == 0:
        raise DataError(f"{path}: the SID table has no rows; give at least one item")
    if codes.shape[1] == 0:
        raise DataError(f"{path}: SIDs have no tokens; every item needs at least one code")
    check_unique_ids(ids_arrow if ids_arrow is not None else ids, p, idc)
    if sfx is None and suffix != "none" and codes.shape[1] >= 2:
        if suffix == "last" or _looks_like_suffix(codes):
            sfx = codes[:, -1].astype(np.int32)
            codes = np.ascontiguousarray(codes[:, :-1])
            token_cols = token_cols[:-1]
            if suffix == "auto":
                warnings.append(
                    f"{p.name}: the last token numbers the items that share the first {codes.shape[1]} tokens, so it is "
                    f"read as the de-duplication suffix and left out of the core metrics (pass {opt('suffix')} none to keep it as a level)"
                )
    sizes = parse_codebook_size(codebook_size)
    if sizes is None and sizes_meta is not None:
        sizes = sizes_meta
    L = codes.shape[1]
    if isinstance(sizes, int):
        sizes = [sizes] * L
    if sizes is not None and len(sizes) != L:
        src = opt("codebook_size") if codebook_size is not None else "the file metadata"
        raise DataError(f"{path}: {len(sizes)} codebook sizes from {src} but the SIDs have {L} levels; give one size or one per level")
    for where, a, b in (bounds or [(p, 0, n)]):
        _check_values(codes[a:b], sizes, where, token_cols)
        if sfx is not None:
            bad = np.flatnonzero(sfx[a:b] < 0)
            if bad.size:
                raise DataError(f"{where}: column 'suffix' has a negative value at row {int(bad[0])}; suffixes must be >= 0")
    return ids, codes, sfx, (list(sizes) if sizes is not None else None), warnings


# ---------------------------------------------------------------------------------------------

def resolve_sid_path(path):
    """What a SID-table argument names: a file's :class:`~pathlib.Path` (``codes.parquet`` for a
    model directory), or a :class:`~sidkit.io.source.ParquetSource` for a directory of Parquet
    shards (no ``codes.parquet`` in it) or a glob that matches several files."""
    from sidkit.io.source import _GLOB_CHARS, open_source

    p = Path(path)
    if p.is_dir():
        if (p / "codes.parquet").exists():
            return p / "codes.parquet"
        src = open_source(p, "SID table")
    elif not p.exists() and any(c in str(path) for c in _GLOB_CHARS):
        src = open_source(path, "SID table")
        if len(src.shards) == 1:
            p = src.shards[0]
            src = None
    else:
        src = None
    if src is None:
        if not p.exists():
            raise InputFileError(f"{path}: file not found; check the path")
        if p.stat().st_size == 0:
            raise InputFileError(f"{path}: file is empty; give a non-empty SID table")
        return p
    return src


def _read_shards(src, id_col):
    """Every shard of a sharded Parquet SID table, each checked on its own (messages name the
    shard and the row inside it), then concatenated. The codebook sizes come from the first
    shard's ``sidkit`` metadata; a shard whose metadata names other sizes is an error."""
    import pyarrow as pa

    parts = []
    sizes_meta = None
    L = None
    bounds = []
    start = 0
    for i, shard in enumerate(src.shards):
        if src.shard_rows[i] == 0:
            continue
        table, sm = _read_table(shard, "parquet", id_col)
        if parts and sm != sizes_meta:
            raise DataError(f"{shard}: its sidkit metadata gives codebook sizes {sm} but {parts[0][0]} gives {sizes_meta}; "
                            f"shards of one SID table need the same codebook sizes")
        if not parts:
            sizes_meta = sm
        ids, codes, sfx, token_cols, idarr, idc = _table_codes(table, shard, id_col)
        if L is not None and codes.shape[1] != L:
            raise DataError(f"{shard}: SIDs have {codes.shape[1]} codes here but {L} in {parts[0][0]}; all SIDs need the same length")
        L = codes.shape[1]
        parts.append((shard, ids, codes, sfx, token_cols, idarr))
        bounds.append((shard, start, start + len(ids)))
        start += len(ids)
    if not parts:
        raise DataError(f"{src.path}: the SID table has no rows; give at least one item")
    ids = np.concatenate([x[1] for x in parts]) if len(parts) > 1 else parts[0][1]
    codes = np.concatenate([x[2] for x in parts]) if len(parts) > 1 else parts[0][2]
    sfx = None if parts[0][3] is None else np.concatenate([x[3] for x in parts])
    idarr = pa.chunked_array([x[5] for x in parts]).combine_chunks() if len(parts) > 1 else parts[0][5]
    return ids, codes, sfx, parts[0][4], idarr, sizes_meta, bounds, idc


def _sniff(p: Path) -> str:
    ext = p.suffix.lower()
    if ext in (".parquet", ".pq"):
        return "parquet"
    if ext == ".json":
        return "json"
    if ext in (".csv", ".tsv", ".txt"):
        return "tsv" if ext == ".tsv" else "csv"
    with open(p, "rb") as f:
        head = f.read(4)
    if head == b"PAR1":
        return "parquet"
    if head.lstrip()[:1] == b"{":
        return "json"
    return "csv"


def _read_table(p: Path, kind: str, id_col: str | None = None):
    import pyarrow as pa

    sizes = None
    try:
        if kind == "parquet":
            import pyarrow.parquet as pq

            pf = pq.ParquetFile(p)
            md = pf.schema_arrow.metadata or {}
            if b"sidkit" in md:
                try:
                    meta = json.loads(md[b"sidkit"])
                    cs = meta.get("codebook_sizes")
                    if cs:
                        sizes = [int(x) for x in cs]
                except (ValueError, TypeError):
                    pass
            table = pf.read()
        else:
            import pyarrow.csv as pcsv

            opts = pcsv.ParseOptions(delimiter="\t" if kind == "tsv" else ",")
            table = pcsv.read_csv(p, parse_options=opts)
            # ids in CSV are text: keep them as strings ("007" stays "007")
            lower = {c.lower(): c for c in table.column_names}
            idc = id_col or next((lower[n] for n in _ID_NAMES if n in lower), None)
            if idc in table.column_names and not pa.types.is_string(table.schema.field(idc).type):
                table = pcsv.read_csv(p, parse_options=opts,
                                      convert_options=pcsv.ConvertOptions(column_types={idc: pa.string()}))
    except (pa.ArrowInvalid, pa.ArrowException, OSError) as e:
        msg = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise InputFileError(f"{p}: cannot read as {kind.upper()} ({msg}); give a valid Parquet, CSV or index JSON file") from None
    return table, sizes


def _table_codes(table, p: Path, id_col: str | None, row0: int = 0):
    """(ids, codes, suffix, token column names, id array, id column name) of one SID table (or one batch of it,
    whose first row is row ``row0`` of the file)."""
    idc, code_kind, code_col, level_cols, sfx_name = _code_layout(table, p, id_col)
    idarr = table.column(idc).combine_chunks()
    check_no_null_ids(idarr, p, idc, row0)
    ids = idarr.to_numpy(zero_copy_only=False)
    if code_kind == "list":
        codes = _list_codes(table.column(code_col).combine_chunks(), p, code_col, row0, len(ids))
        token_cols = [f"{code_col}[{l}]" for l in range(codes.shape[1])]
    elif code_kind == "levels":
        cols = [level_cols[l] for l in range(len(level_cols))]
        mats = []
        for c in cols:
            a = table.column(c).combine_chunks()
            mats.append(_int_column(a, p, c, row0))
        codes = np.stack(mats, axis=1)
        token_cols = cols
    else:
        arr = table.column(code_col).combine_chunks()
        values = arr.to_pylist()
        codes = _parse_strings(values, p, code_col, ids)
        token_cols = [f"{code_col}[{l}]" for l in range(codes.shape[1])]
    sfx = None
    if sfx_name is not None and sfx_name not in (idc,) and code_kind is not None:
        a = table.column(sfx_name).combine_chunks()
        sfx = _int_column(a, p, sfx_name, row0).astype(np.int32)
    return ids, codes, sfx, token_cols, idarr, idc


def _code_layout(table, p: Path, id_col: str | None):
    """Which columns hold what: (id column, code kind "list" / "levels" / "strings", the list or
    string column (None for levels), {level: column}, suffix column or None)."""
    import pyarrow as pa

    names = table.column_names
    if table.num_rows == 0:
        raise DataError(f"{p}: the SID table has no rows; give at least one item")
    if id_col is not None and id_col not in names:
        raise SchemaError(f"{p}: id column {id_col!r} not found (columns: {', '.join(names)}); pass {opt('id_col')}")
    lower = {c.lower(): c for c in names}
    idc = id_col or next((lower[n] for n in _ID_NAMES if n in lower), None)
    level_cols: dict[int, str] = {}
    for c in names:
        m = _LEVEL_COL.match(c.lower())
        if m and c != idc:
            level_cols.setdefault(int(m.group(2)), c)
    list_cols = [c for c in names if c != idc and _is_list(table.schema.field(c).type)]
    sfx_name = lower.get("suffix")
    code_kind, list_col = None, None
    if "sid" in names and _is_list(table.schema.field("sid").type):
        code_kind, list_col = "list", "sid"
    elif len(list_cols) == 1:
        code_kind, list_col = "list", list_cols[0]
    elif len(list_cols) > 1:
        raise SchemaError(f"{p}: several list columns ({', '.join(list_cols)}); keep one SID list column or name it 'sid'")
    elif level_cols:
        L = 0
        while L in level_cols:
            L += 1
        if L != len(level_cols):
            raise SchemaError(f"{p}: code columns {sorted(level_cols.values())} are not numbered 0..L-1 without gaps; rename them sid_0..sid_{{L-1}}")
        code_kind = "levels"
    else:
        cand = [c for c in names if c not in (idc, sfx_name)
                and (pa.types.is_string(table.schema.field(c).type) or pa.types.is_large_string(table.schema.field(c).type))]
        pref = [c for c in cand if c.lower() in ("sid", "sids", "tokens", "sid_tokens", "semantic_id", "semantic_ids", "code", "codes")]
        if pref:
            code_kind, list_col = "strings", pref[0]
        elif len(cand) == 1:
            code_kind, list_col = "strings", cand[0]
    if code_kind is None:
        raise SchemaError(f"{p}: no SID columns found (columns: {', '.join(names)}); give one list column 'sid' or columns sid_0..sid_{{L-1}}")
    if idc is None:
        used = {sfx_name} | set(level_cols.values()) | ({list_col} if code_kind != "levels" else set())
        rest = [c for c in names if c not in used]
        if not rest:
            raise SchemaError(f"{p}: no id column found (columns: {', '.join(names)}); add an 'item_id' column or pass {opt('id_col')}")
        idc = rest[0]
    return idc, code_kind, list_col, level_cols, sfx_name


def _list_codes(arr, p: Path, list_col: str, row0: int, n: int) -> np.ndarray:
    """The (n, L) codes of a list<int> column: no null SID, no null code, one length for all."""
    import pyarrow as pa
    import pyarrow.compute as pc

    if isinstance(arr, pa.ExtensionArray):
        arr = arr.storage
    if arr.null_count:
        row = int(np.flatnonzero(arr.is_null().to_numpy(zero_copy_only=False))[0])
        raise DataError(f"{p}: column {list_col!r} is null at row {row0 + row}; every item needs a SID")
    vtype = arr.type.value_type
    if not pa.types.is_integer(vtype):
        raise DataError(f"{p}: column {list_col!r} holds {vtype} values; SID codes must be integers")
    lengths = pc.list_value_length(arr).to_numpy(zero_copy_only=False)
    L = int(lengths[0])
    if (lengths != L).any():
        bad = int(np.flatnonzero(lengths != L)[0])
        raise DataError(f"{p}: column {list_col!r} row {row0 + bad} has {int(lengths[bad])} codes but row {row0} has {L}; all SIDs need the same length")
    flat = arr.flatten()
    if flat.null_count:
        bad = int(np.flatnonzero(flat.is_null().to_numpy(zero_copy_only=False))[0]) // max(L, 1)
        raise DataError(f"{p}: column {list_col!r} has a null code at row {row0 + bad}; every code must be an integer")
    return flat.to_numpy(zero_copy_only=False).reshape(n, L)


def _is_list(t) -> bool:
    import pyarrow as pa

    return pa.types.is_list(t) or pa.types.is_large_list(t) or pa.types.is_fixed_size_list(t)


def _int_column(a, p: Path, name: str, row0: int = 0) -> np.ndarray:
    import pyarrow as pa

    if a.null_count:
        row = int(np.flatnonzero(a.is_null().to_numpy(zero_copy_only=False))[0])
        raise DataError(f"{p}: column {name!r} is empty at row {row0 + row}; every code must be an integer")
    if pa.types.is_integer(a.type):
        return a.to_numpy(zero_copy_only=False)
    if pa.types.is_floating(a.type):
        v = a.to_numpy(zero_copy_only=False)
        bad = np.flatnonzero(~np.isfinite(v) | (v != np.round(v)))
        if bad.size:
            raise DataError(f"{p}: column {name!r} row {row0 + int(bad[0])} holds {v[bad[0]]!r}, not an integer code; codes must be integers")
        return v.astype(np.int64)
    vals = a.to_pylist()
    for i, v in enumerate(vals):
        try:
            int(str(v).strip())
        except ValueError:
            raise DataError(f"{p}: column {name!r} row {row0 + i} holds {str(v)[:40]!r}, not an integer code; codes must be integers") from None
    raise DataError(f"{p}: column {name!r} has type {a.type}; codes must be integers")


def _parse_strings(values, p: Path, col: str, ids) -> np.ndarray:
    rows = []
    for i, v in enumerate(values):
        rows.append(_parse_one(v, p, f"column {col!r} row {i}"))
    return _stack(rows, p, [f"row {i}" for i in range(len(rows))])


def _parse_one(v, p: Path, where: str) -> list[int]:
    if v is None:
        raise DataError(f"{p}: {where} has no SID; every item needs a SID")
    if isinstance(v, (list, tuple)):
        out = []
        for t in v:
            out.extend(_parse_one(t, p, where) if isinstance(t, str) else [_as_int(t, p, where)])
        return out
    if isinstance(v, bool):
        raise DataError(f"{p}: {where} holds {v!r}, not a code; codes must be integers or tokens like <a_12>")
    if isinstance(v, (int, float)):
        return [_as_int(v, p, where)]
    s = str(v).strip()
    if s.startswith("<"):
        toks = _TOKEN.findall(s)
        if not toks or "".join(f"<{a}_{b}>" for a, b in toks) != s.replace(" ", ""):
            raise DataError(f"{p}: {where} holds {s[:40]!r}, not tokens like <a_12><b_3>; fix the SID text")
        out = [int(b) for _, b in toks]
    else:
        parts = [t for t in re.split(r"[\s,;\[\]()]+", s) if t]
        try:
            out = [int(t) for t in parts]
        except ValueError:
            raise DataError(f"{p}: {where} holds {s[:40]!r}, not a list of integer codes; fix the SID text") from None
    if any(x < 0 for x in out):
        raise DataError(f"{p}: {where} holds a negative code ({min(out)}); codes must be >= 0")
    if any(x > MAX_CODE for x in out):
        raise DataError(f"{p}: {where} holds the code {max(out)}, too large for a codebook (codes must be below 2^31); fix the SID")
    return out


MAX_CODE = 2**31 - 1


def _as_int(t, p: Path, where: str) -> int:
    if isinstance(t, bool) or not isinstance(t, (int, float)) or (isinstance(t, float) and (not np.isfinite(t) or t != int(t))):
        raise DataError(f"{p}: {where} holds {t!r}, not an integer code; codes must be integers or tokens like <a_12>")
    if t < 0:
        raise DataError(f"{p}: {where} holds a negative code ({t}); codes must be >= 0")
    if t > MAX_CODE:
        raise DataError(f"{p}: {where} holds the code {t:.6g}, too large for a codebook (codes must be below 2^31); fix the SID")
    return int(t)


def _stack(rows: list[list[int]], p: Path, where: list[str]) -> np.ndarray:
    if not rows:
        return np.zeros((0, 0), dtype=np.int64)
    L = len(rows[0])
    for w, r in zip(where, rows):
        if len(r) != L:
            raise DataError(f"{p}: {w} has {len(r)} codes but the first SID has {L}; all SIDs need the same length")
    return np.asarray(rows, dtype=np.int64).reshape(len(rows), L)


def _read_index_json(p: Path):
    try:
        with open(p, encoding="utf-8") as f:
            obj = json.load(f)
    except json.JSONDecodeError as e:
        raise InputFileError(f"{p}: malformed JSON at line {e.lineno} column {e.colno} ({e.msg}); fix or regenerate the index file") from None
    except UnicodeDecodeError:
        raise InputFileError(f"{p}: not UTF-8 text; give an index JSON {{item_id: [tokens]}}") from None
    if not isinstance(obj, dict):
        raise InputFileError(f"{p}: expected a JSON object {{item_id: [\"<a_12>\", ...]}}, got a {type(obj).__name__}")
    if not obj:
        raise DataError(f"{p}: the index JSON has no items; give at least one item")
    keys = list(obj.keys())
    rows = [_parse_one(obj[k], p, f"item {k!r}") for k in keys]
    codes = _stack(rows, p, [f"item {k!r}" for k in keys])
    ids = np.array(keys, dtype=object)
    return ids, codes, None, [f"token {l}" for l in range(codes.shape[1])]


def _check_values(codes: np.ndarray, sizes, p: Path, token_cols, row0: int = 0) -> None:
    mins = codes.min(axis=0)
    for l in np.flatnonzero(mins < 0):
        row = int(np.flatnonzero(codes[:, l] < 0)[0])
        raise DataError(f"{p}: negative code {int(codes[row, l])} in {token_cols[l]} at row {row0 + row}; codes must be >= 0")
    for l in np.flatnonzero(codes.max(axis=0) > MAX_CODE):
        row = int(np.flatnonzero(codes[:, l] > MAX_CODE)[0])
        raise DataError(f"{p}: code {int(codes[row, l])} in {token_cols[l]} at row {row0 + row} is too large for a codebook (codes must be below 2^31); fix the codes")
    if sizes is not None:
        maxs = codes.max(axis=0)
        for l in range(codes.shape[1]):
            if maxs[l] >= sizes[l]:
                row = int(np.flatnonzero(codes[:, l] >= sizes[l])[0])
                raise DataError(
                    f"{p}: code {int(codes[row, l])} in {token_cols[l]} at row {row0 + row} is >= the codebook size {sizes[l]}; "
                    f"fix the codes or pass the right {opt('codebook_size')}"
                )


def _looks_like_suffix(codes: np.ndarray) -> bool:
    """True when the last column numbers the items inside each group of equal leading tokens."""
    from sidkit.io.codes import pack_keys

    last = codes[:, -1].astype(np.int64)
    n = codes.shape[0]
    if last.min() < 0 or last.max() >= n:
        return False
    # every group of size > k holds a k, so the value counts of a suffix never increase
    vc = np.bincount(last)
    if vc.size > 1 and (np.diff(vc) > 0).any():
        return False
    lead = pack_keys(codes[:, :-1])
    if lead.dtype == np.int64:
        lead_u, inv = np.unique(lead, return_inverse=True)
        inv = inv.ravel()
        size = np.bincount(inv)
        mx = np.full(size.size, -1, dtype=np.int64)
        np.maximum.at(mx, inv, last)
        if not np.array_equal(mx, size - 1):
            return False
        full = inv.astype(np.int64) * n + last
        return np.unique(full).size == n
    full = pack_keys(codes)
    if np.unique(full).size != n:
        return False
    _, inv = np.unique(lead, return_inverse=True)
    inv = inv.ravel()
    size = np.bincount(inv)
    mx = np.full(size.size, -1, dtype=np.int64)
    np.maximum.at(mx, inv, last)
    return bool(np.array_equal(mx, size - 1))



# --- streaming (bounded memory) ---------------------------------------------------------------

class SidBatch:
    """One validated record batch of a streamed SID table: where it is (``shard``, ``local`` row
    inside the shard, ``offset`` row in the whole table), its ids (numpy), codes (m, L) int and
    suffix (m,) int32 or None."""

    __slots__ = ("shard", "local", "offset", "ids", "codes", "suffix")

    def __init__(self, shard, local, offset, ids, codes, suffix):
        self.shard, self.local, self.offset, self.ids, self.codes, self.suffix = shard, local, offset, ids, codes, suffix


class SidStream:
    """A Parquet SID table (a file, a directory of shards or a glob) read in record batches, with
    the checks of :func:`read_sid_table` applied per batch (messages name the shard and the row
    inside it). Made by :func:`open_sid_stream`.

    Attributes: ``path``, ``source`` (the :class:`~sidkit.io.source.ParquetSource`), ``n`` rows,
    ``L`` levels, ``sizes`` (codebook sizes, or None when neither the option nor the metadata
    gives them), ``has_suffix``, ``warnings``, ``id_col`` and ``columns`` read.
    """

    def __init__(self, src, id_col, columns, L, sizes, split_last: bool, has_suffix: bool, warnings):
        self.source, self.path, self.id_col, self.columns = src, src.path, id_col, columns
        self.n, self.L, self.sizes, self.split_last, self.has_suffix = src.num_rows, L, sizes, split_last, has_suffix
        self.warnings = warnings

    def batches(self, batch_size: int = 1 << 20, ids: bool = True):
        """Validated :class:`SidBatch` es in file order (``ids=False`` skips the id column's
        conversion; it is still read, for the checks)."""
        import pyarrow as pa

        for b in self.source.iter_batches(batch_size=batch_size, columns=self.columns):
            if b.data.num_rows == 0:
                continue
            t = pa.Table.from_batches([b.data])
            i, codes, sfx, token_cols, _, _ = _table_codes(t, b.shard, self.id_col, row0=b.local)
            if self.split_last:
                sfx = codes[:, -1].astype(np.int32)
                codes = np.ascontiguousarray(codes[:, :-1])
                token_cols = token_cols[:-1]
            if codes.shape[1] != self.L:
                raise DataError(f"{b.shard}: row {b.local} has {codes.shape[1]} codes but the first row of the table has {self.L}; "
                                f"all SIDs need the same length")
            _check_values(codes, self.sizes, b.shard, token_cols, row0=b.local)
            if sfx is not None:
                bad = np.flatnonzero(sfx < 0)
                if bad.size:
                    raise DataError(f"{b.shard}: column 'suffix' has a negative value at row {b.local + int(bad[0])}; suffixes must be >= 0")
            yield SidBatch(b.shard, b.local, b.offset, i if ids else None, codes, sfx)

    def scan_sizes(self, batch_size: int = 1 << 20) -> list[int]:
        """The largest code + 1 per level (one pass; for tables without codebook sizes)."""
        mx = np.zeros(self.L, np.int64)
        for b in self.batches(batch_size, ids=False):
            np.maximum(mx, b.codes.max(axis=0), out=mx)
        return [int(m) + 1 for m in mx]


def open_sid_stream(path, *, id_col: str | None = None, codebook_size=None, suffix: str = "auto") -> SidStream | None:
    """A :class:`SidStream` over a Parquet SID table, or None when the table must be read whole
    (CSV, index JSON, string code columns, or ``suffix="auto"`` on a table without a ``suffix``
    column: telling a suffix token apart needs every row). Same arguments as
    :func:`read_sid_table`; the same errors, raised while streaming."""
    import pyarrow.parquet as pq

    from sidkit.io.source import ParquetSource, open_source

    if suffix not in ("auto", "last", "none"):
        from sidkit.errors import ConfigError

        raise ConfigError(f"suffix={suffix!r}: use 'auto', 'last' or 'none'")
    p = resolve_sid_path(path)
    if isinstance(p, Path):
        if _sniff(p) != "parquet":
            return None
        src = open_source(p, "SID table")
    else:
        src = p
    assert isinstance(src, ParquetSource)
    if src.num_rows == 0:
        raise DataError(f"{src.path}: the SID table has no rows; give at least one item")
    schema = src.schema_arrow
    names = schema.names
    lower = {c.lower(): c for c in names}
    if id_col is not None and id_col not in names:
        raise SchemaError(f"{src.shards[0]}: id column {id_col!r} not found (columns: {', '.join(names)}); pass {opt('id_col')}")
    idc = id_col or next((lower[n] for n in _ID_NAMES if n in lower), None)
    has_list = any(c != idc and _is_list(schema.field(c).type) for c in names)
    has_levels = any(_LEVEL_COL.match(c.lower()) and c != idc for c in names)
    if not (has_list or has_levels):
        return None  # string SIDs: parsed in memory
    # the first non-empty shard fixes L and the column layout (and raises its schema errors)
    first = next(i for i, r in enumerate(src.shard_rows) if r > 0)
    with src.open(first) as pf:
        head = next(pf.iter_batches(batch_size=1))
    import pyarrow as pa

    _, codes1, sfx1, _, _, idc = _table_codes(pa.Table.from_batches([head]), src.shards[first], id_col)
    has_suffix = sfx1 is not None
    L = codes1.shape[1]
    split_last = False
    if not has_suffix and suffix != "none" and L >= 2:
        if suffix == "auto":
            return None
        split_last = True
        L -= 1
    sizes = parse_codebook_size(codebook_size)
    if sizes is None:
        metas = []
        for s in src.shards:
            md = pq.read_schema(s).metadata or {}
            cs = None
            if b"sidkit" in md:
                try:
                    cs = json.loads(md[b"sidkit"]).get("codebook_sizes")
                    cs = [int(x) for x in cs] if cs else None
                except (ValueError, TypeError, AttributeError):
                    cs = None
            if metas and cs != metas[0]:
                raise DataError(f"{s}: its sidkit metadata gives codebook sizes {cs} but {src.shards[0]} gives {metas[0]}; "
                                f"shards of one SID table need the same codebook sizes")
            metas.append(cs)
        sizes = metas[0]
    if isinstance(sizes, int):
        sizes = [sizes] * L
    if sizes is not None and len(sizes) != L:
        srcname = opt("codebook_size") if codebook_size is not None else "the file metadata"
        raise DataError(f"{path}: {len(sizes)} codebook sizes from {srcname} but the SIDs have {L} levels; give one size or one per level")
    warnings: list[str] = []
    return SidStream(src, idc, None, L, list(sizes) if sizes is not None else None, split_last, has_suffix, warnings)
