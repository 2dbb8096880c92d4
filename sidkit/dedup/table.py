"""``sidkit dedup``: resolve the collisions of an existing sidkit SID table again (ZCR,
:mod:`sidkit.dedup.zcr`; suffixes; or none)."""

from __future__ import annotations

import numpy as np

from sidkit.dedup.suffix import assign_suffix
from sidkit.io.codes import pack_keys


def dedup(codes_path, model_dir, items, out, *, method: str = "zcr", id_col: str | None = None) -> dict:
    """Resolve the collisions of a sidkit codes table again, with ``method`` ``zcr`` (reassign
    last-level codes; needs the model the table came from and the catalog's embeddings, read
    only for the colliding rows), ``suffix`` or ``none``. Writes ``out`` atomically (never over
    an input) and returns the summary (ZCR's statistics under ``dedup``)."""
    from pathlib import Path

    import pyarrow as pa

    from sidkit.dedup.zcr import DEDUP_METHODS
    from sidkit.errors import ConfigError, opt
    from sidkit.io.artifacts import check_output
    from sidkit.io.codes import write_codes

    if method not in DEDUP_METHODS:
        raise ConfigError(f"{opt('method')} '{method}' is not known; use one of {', '.join(DEDUP_METHODS)}")
    codes_path, out = Path(codes_path), Path(out)
    check_output(out, opt("out", "-o"), {"CODES": codes_path, opt("model"): model_dir, opt("items"): items})
    ids, codes, md = _read_table(codes_path)
    n = len(codes)
    stats: dict = {"method": method}
    if method == "zcr":
        codes, suffix, stats = _zcr(codes_path, ids, codes, md, model_dir, items, id_col)
    elif method == "suffix":
        suffix = assign_suffix(codes, ids)
    else:
        suffix = np.zeros(n, np.int32)
    md["dedup"] = stats
    write_codes(out, pa.array(ids.tolist() if ids.dtype == object else ids), codes, suffix, md)
    key = pack_keys(codes)
    n_distinct = len(np.unique(key)) if n else 0
    return {"output": str(out), "n_items": n, "method": method, "collision_rate": round(1 - n_distinct / n, 6) if n else 0.0,
            "max_suffix": int(suffix.max()) if n else 0, "dedup": stats}


def _read_table(codes_path):
    """(ids, codes, metadata) of a sidkit codes table."""
    import pyarrow as pa

    from sidkit.errors import InputFileError
    from sidkit.io.codes import read_codes

    if not codes_path.is_file():
        raise InputFileError(f"{codes_path}: not found (or not a file); give the codes.parquet of 'sidkit fit' or a 'sidkit encode' output file")
    try:
        ids, codes, _, md = read_codes(codes_path)
    except (pa.ArrowException, OSError, KeyError) as e:
        raise InputFileError(f"{codes_path}: not a sidkit codes table ({' '.join(str(e).split()).split('. ')[0][:120]}); "
                             "it needs columns item_id and sid") from None
    return ids, codes, dict(md or {})


def _zcr(codes_path, ids, codes, md, model_dir, items, id_col):
    """ZCR over the table: (codes, suffix, stats). The model must be the one that wrote the table."""
    from sidkit.dedup.zcr import zcr_reassign
    from sidkit.errors import ConfigError, ModelError, opt
    from sidkit.model.directory import load_model
    from sidkit.quantizers.base import Tokenizer

    if model_dir is None or items is None:
        raise ConfigError(f"{opt('method')} zcr needs {opt('model')} (the model the table came from) and {opt('items')} (the catalog's embeddings)")
    model = load_model(model_dir)
    sizes = list(model.codebook_sizes)
    if md.get("model_fingerprint") and model.meta.get("model_fingerprint") and md["model_fingerprint"] != model.meta["model_fingerprint"]:
        raise ModelError(f"{codes_path}: the table was written by another model than {model_dir} (fingerprints differ); "
                         f"give the {opt('model')} that made it")
    if codes.shape[1] != len(sizes) or (len(codes) and (codes.max(0) >= np.asarray(sizes)).any()):
        raise ModelError(f"{codes_path}: its SIDs do not fit {model_dir}'s codebooks ({'x'.join(map(str, sizes))}); "
                         f"give the {opt('model')} that made it")
    if type(model.tokenizer).zcr_space is Tokenizer.zcr_space:
        raise ConfigError(f"{model_dir}: a {model.meta.get('method')} model has no residual last level; use {opt('method')} suffix")
    res = zcr_reassign(codes, ids, sizes, _catalog_residuals(codes_path, ids, codes, model, items, id_col))
    return res.codes, res.suffix, res.stats


def _catalog_residuals(codes_path, ids, codes, model, items, id_col):
    """``residuals(rows)`` for :func:`~sidkit.dedup.zcr.zcr_reassign`: the last-level residuals
    of those table rows, from the catalog rows of only these items (one pass over the id
    column, O(batch + rows) memory). A catalog with another id type is refused before any work."""
    import pyarrow as pa
    import pyarrow.compute as pc

    from sidkit.errors import DataError
    from sidkit.features import fuse
    from sidkit.io.catalog import embedding_to_numpy, resolve_columns
    from sidkit.io.ids import check_same_id_kind
    from sidkit.io.source import open_source
    from sidkit.quantizers.base import Items

    src = open_source(items)
    id_col = id_col or model.meta.get("input", {}).get("id_col", "item_id")
    resolve_columns(src.schema_arrow, src.path, id_col, list(model.fusion.columns))
    id_type = src.schema_arrow.field(id_col).type

    def as_ids(a: np.ndarray) -> pa.Array:
        arr = pa.array(a.tolist() if a.dtype == object else a)
        if arr.type == id_type:
            return arr
        check_same_id_kind(id_type, arr.type, src.path, id_col, "the table's items", "give the catalog the table was encoded from")
        try:
            return arr.cast(id_type)
        except (pa.ArrowException, ValueError):  # same kind, values out of the column type's range
            raise DataError(f"{src.path}: id column '{id_col}' has type {id_type}, the table's item_id {arr.type}; "
                            "give the catalog the table was encoded from") from None

    as_ids(ids[:1])

    def residuals(rows: np.ndarray):
        want = as_ids(ids[rows])
        cat_rows = np.full(len(rows), -1, np.int64)
        for b in src.iter_batches(columns=[id_col]):
            pos = pc.fill_null(pc.index_in(b.data.column(0), value_set=want), -1).to_numpy(zero_copy_only=False)
            hit = np.flatnonzero(pos >= 0)
            cat_rows[pos[hit]] = b.offset + hit
        if (cat_rows < 0).any():
            bad = ids[rows[np.flatnonzero(cat_rows < 0)[0]]]
            raise DataError(f"{src.path}: item {bad!r} of {codes_path} is not in the catalog; give the catalog the table was encoded from")
        o = np.argsort(cat_rows, kind="stable")
        t = src.take_rows(cat_rows[o], list(model.fusion.columns))
        X = fuse({c: embedding_to_numpy(t.column(c), src.path, c) for c in model.fusion.columns}, model.fusion, source=str(src.path))
        R, C = model.tokenizer.zcr_space(Items(X, {}, finite=True), codes[rows[o]])
        back = np.empty_like(R)
        back[o] = R
        return back, C

    return residuals
