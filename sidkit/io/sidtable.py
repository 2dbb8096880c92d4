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
    path : file (``.parquet``, ``.csv``/``.tsv``, ``.json``) or a model directory.
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
    p = Path(path)
    if p.is_dir():
        if (p / "codes.parquet").exists():
            p = p / "codes.parquet"
        else:
            raise InputFileError(f"{path}: is a directory without codes.parquet; give a codes file or a model directory")
    if not p.exists():
        raise InputFileError(f"{path}: file not found; check the path")
    if p.stat().st_size == 0:
        raise InputFileError(f"{path}: file is empty; give a non-empty SID table")
    kind = _sniff(p)
    warnings: list[str] = []
    sizes_meta = None
    ids_arrow = None
    if kind == "json":
        ids, codes, sfx, token_cols = _read_index_json(p)
    else:
        table, sizes_meta = _read_table(p, kind, id_col)
        ids, codes, sfx, token_cols, ids_arrow = _table_codes(table, p, id_col)
        if kind in ("csv", "tsv") and ids.dtype == object and any(isinstance(v, str) and v[:1] == "'" for v in ids):
            ids = np.array([csv_uncell(v) for v in ids], dtype=object)
            ids_arrow = None
    n = len(ids)
    if n == 0:
        raise DataError(f"{path}: the SID table has no rows; give at least one item")
    if codes.shape[1] == 0:
        raise DataError(f"{path}: SIDs have no tokens; every item needs at least one code")
    _check_ids(ids_arrow if ids_arrow is not None else ids, p)
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
    _check_values(codes, sizes, p, token_cols)
    if sfx is not None:
        bad = np.flatnonzero(sfx < 0)
        if bad.size:
            raise DataError(f"{path}: column 'suffix' has a negative value at row {int(bad[0])}; suffixes must be >= 0")
    return ids, codes, sfx, (list(sizes) if sizes is not None else None), warnings


# ---------------------------------------------------------------------------------------------

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


def _table_codes(table, p: Path, id_col: str | None):
    import pyarrow as pa
    import pyarrow.compute as pc

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
    code_kind = None
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
    idarr = table.column(idc).combine_chunks()
    if idarr.null_count:
        row = int(np.flatnonzero(idarr.is_null().to_numpy(zero_copy_only=False))[0])
        raise DataError(f"{p}: id column {idc!r} is null at row {row}; every item needs an id")
    ids = idarr.to_numpy(zero_copy_only=False)
    if code_kind == "list":
        arr = table.column(list_col).combine_chunks()
        if isinstance(arr, pa.ExtensionArray):
            arr = arr.storage
        if arr.null_count:
            row = int(np.flatnonzero(arr.is_null().to_numpy(zero_copy_only=False))[0])
            raise DataError(f"{p}: column {list_col!r} is null at row {row}; every item needs a SID")
        vtype = arr.type.value_type
        if not pa.types.is_integer(vtype):
            raise DataError(f"{p}: column {list_col!r} holds {vtype} values; SID codes must be integers")
        lengths = pc.list_value_length(arr).to_numpy(zero_copy_only=False)
        L = int(lengths[0])
        if (lengths != L).any():
            bad = int(np.flatnonzero(lengths != L)[0])
            raise DataError(f"{p}: column {list_col!r} row {bad} has {int(lengths[bad])} codes but row 0 has {L}; all SIDs need the same length")
        flat = arr.flatten()
        if flat.null_count:
            bad = int(np.flatnonzero(flat.is_null().to_numpy(zero_copy_only=False))[0]) // max(L, 1)
            raise DataError(f"{p}: column {list_col!r} has a null code at row {bad}; every code must be an integer")
        codes = flat.to_numpy(zero_copy_only=False).reshape(len(ids), L)
        token_cols = [f"{list_col}[{l}]" for l in range(L)]
    elif code_kind == "levels":
        cols = [level_cols[l] for l in range(len(level_cols))]
        mats = []
        for c in cols:
            a = table.column(c).combine_chunks()
            mats.append(_int_column(a, p, c))
        codes = np.stack(mats, axis=1)
        token_cols = cols
    else:
        arr = table.column(list_col).combine_chunks()
        values = arr.to_pylist()
        codes = _parse_strings(values, p, list_col, ids)
        token_cols = [f"{list_col}[{l}]" for l in range(codes.shape[1])]
    sfx = None
    if sfx_name is not None and sfx_name not in (idc,) and code_kind is not None:
        a = table.column(sfx_name).combine_chunks()
        sfx = _int_column(a, p, sfx_name).astype(np.int32)
    return ids, codes, sfx, token_cols, idarr


def _is_list(t) -> bool:
    import pyarrow as pa

    return pa.types.is_list(t) or pa.types.is_large_list(t) or pa.types.is_fixed_size_list(t)


def _int_column(a, p: Path, name: str) -> np.ndarray:
    import pyarrow as pa

    if a.null_count:
        row = int(np.flatnonzero(a.is_null().to_numpy(zero_copy_only=False))[0])
        raise DataError(f"{p}: column {name!r} is empty at row {row}; every code must be an integer")
    if pa.types.is_integer(a.type):
        return a.to_numpy(zero_copy_only=False)
    if pa.types.is_floating(a.type):
        v = a.to_numpy(zero_copy_only=False)
        bad = np.flatnonzero(~np.isfinite(v) | (v != np.round(v)))
        if bad.size:
            raise DataError(f"{p}: column {name!r} row {int(bad[0])} holds {v[bad[0]]!r}, not an integer code; codes must be integers")
        return v.astype(np.int64)
    vals = a.to_pylist()
    for i, v in enumerate(vals):
        try:
            int(str(v).strip())
        except ValueError:
            raise DataError(f"{p}: column {name!r} row {i} holds {str(v)[:40]!r}, not an integer code; codes must be integers") from None
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


def _check_ids(ids, p: Path) -> None:
    import pyarrow as pa
    import pyarrow.compute as pc

    if isinstance(ids, (pa.Array, pa.ChunkedArray)):
        arr = ids
    else:
        arr = pa.array(ids.tolist() if ids.dtype == object else ids)
    if pa.types.is_integer(arr.type):
        v = np.asarray(arr)
        if v.size < 2 or bool(np.all(v[1:] > v[:-1])):  # sorted ids: unique without hashing
            return
    if len(pc.unique(arr)) != len(arr):
        vc = pc.value_counts(arr)
        cnt = vc.field("counts").to_numpy()
        dup = vc.field("values")[int(np.argmax(cnt))].as_py()
        raise DataError(f"{p}: item id {dup!r} appears more than once; item ids must be unique")


def _check_values(codes: np.ndarray, sizes, p: Path, token_cols) -> None:
    mins = codes.min(axis=0)
    for l in np.flatnonzero(mins < 0):
        row = int(np.flatnonzero(codes[:, l] < 0)[0])
        raise DataError(f"{p}: negative code {int(codes[row, l])} in {token_cols[l]} at row {row}; codes must be >= 0")
    for l in np.flatnonzero(codes.max(axis=0) > MAX_CODE):
        row = int(np.flatnonzero(codes[:, l] > MAX_CODE)[0])
        raise DataError(f"{p}: code {int(codes[row, l])} in {token_cols[l]} at row {row} is too large for a codebook (codes must be below 2^31); fix the codes")
    if sizes is not None:
        maxs = codes.max(axis=0)
        for l in range(codes.shape[1]):
            if maxs[l] >= sizes[l]:
                row = int(np.flatnonzero(codes[:, l] >= sizes[l])[0])
                raise DataError(
                    f"{p}: code {int(codes[row, l])} in {token_cols[l]} at row {row} is >= the codebook size {sizes[l]}; "
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

