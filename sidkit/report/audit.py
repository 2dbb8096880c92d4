"""``sidkit audit`` as a library function: read any SID table, build the report, write HTML, gates.

Gates (``--fail-on``): ``KEY OP VALUE`` with OP one of ``> >= < <=``; KEY is a dotted path into
the report (``collision.collision_rate``, ``levels.0.utilization``) or any dotted tail of one that
is unique (``collision_rate``). VALUE is a number, optionally with ``%``. A gate *trips* when the
comparison is true (``collision_rate>0.02`` trips when the collision rate exceeds 2%).

:func:`audit` writes its outputs first and then raises :class:`~sidkit.errors.GateFailed` when a
gate trips; the exception carries ``.report`` and ``.tripped``. Bad gates (syntax or unknown
key) raise :class:`~sidkit.errors.ConfigError` before anything is written.
"""

from __future__ import annotations

import math
import operator
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable

import numpy as np

from sidkit.errors import ConfigError, DataError, GateFailed, opt

_GATE = re.compile(r"^\s*([A-Za-z_][A-Za-z0-9_.\-]*)\s*(>=|<=|>|<)\s*([-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?)\s*(%?)\s*$")
_OPS = {">": operator.gt, ">=": operator.ge, "<": operator.lt, "<=": operator.le}


@dataclass(frozen=True)
class Gate:
    """One parsed ``--fail-on`` gate."""

    expr: str
    key: str
    op: str
    threshold: float


def parse_gate(expr: str) -> Gate:
    """Parse ``'collision_rate>0.02'`` into a :class:`Gate`; raises ConfigError on bad syntax."""
    m = _GATE.match(expr or "")
    if not m:
        raise ConfigError(
            f"{opt('fail_on')} {expr!r}: expected KEY OP NUMBER with OP one of > >= < <= "
            "(e.g. 'collision.collision_rate>0.02' or 'levels.0.utilization<0.9')"
        )
    key, op, num, pct = m.groups()
    val = float(num) / (100.0 if pct else 1.0)
    return Gate(expr.strip(), key, op, val)


def _leaves(obj: Any, prefix: tuple = ()) -> Iterable[tuple[tuple, Any]]:
    if isinstance(obj, dict):
        for k, v in obj.items():
            yield from _leaves(v, prefix + (str(k),))
    elif isinstance(obj, list):
        for i, v in enumerate(obj):
            yield from _leaves(v, prefix + (str(i),))
    else:
        yield prefix, obj


def resolve_key(report: dict, key: str) -> tuple[str, float]:
    """The full dotted path and numeric value of a gate key in ``report``."""
    parts = tuple(key.split("."))
    matches = [(p, v) for p, v in _leaves(report)
               if len(p) >= len(parts) and p[-len(parts):] == parts
               and isinstance(v, (int, float)) and not isinstance(v, bool)]
    exact = [(p, v) for p, v in matches if p == parts]
    if exact:
        matches = exact
    elif len(matches) > 1:
        # prefer a block-level number (collision.collision_rate) over per-level/per-prefix ones
        flat = [(p, v) for p, v in matches if not any(x.isdigit() for x in p[: len(p) - len(parts)])]
        if len(flat) == 1:
            matches = flat
    if not matches:
        known = sorted({".".join(p) for p, v in _leaves(report)
                        if isinstance(v, (int, float)) and not isinstance(v, bool)
                        and p and p[0] in ("collision", "diversity", "hamming", "semantic", "collaborative", "compare")
                        and not any(x.isdigit() for x in p)})
        raise ConfigError(f"{opt('fail_on')}: unknown report key {key!r}; use a numeric key such as {', '.join(known[:8])} or levels.0.utilization")
    if len(matches) > 1:
        names = ", ".join(".".join(p) for p, _ in matches[:5])
        raise ConfigError(f"{opt('fail_on')}: key {key!r} is ambiguous ({names}{', ...' if len(matches) > 5 else ''}); give the dotted path")
    p, v = matches[0]
    return ".".join(p), float(v)


def check_gates(report: dict, gates: Iterable[Gate | str]) -> list[dict]:
    """Evaluate gates against a report.

    Returns one dict per gate: ``gate``, ``key`` (full path), ``value``, ``op``, ``threshold``,
    ``tripped``. Raises ConfigError for bad syntax or unknown / ambiguous keys.
    """
    out = []
    for g in gates:
        g = parse_gate(g) if isinstance(g, str) else g
        path, value = resolve_key(report, g.key)
        tripped = bool(_OPS[g.op](value, g.threshold)) if not math.isnan(value) else False
        out.append({"gate": g.expr, "key": path, "value": value, "op": g.op, "threshold": g.threshold, "tripped": tripped})
    return out


def gate_message(results: list[dict]) -> str:
    tripped = [r for r in results if r["tripped"]]
    parts = [f"{r['gate']} (value {r['value']:.6g})" for r in tripped]
    return f"{len(tripped)} gate{'s' if len(tripped) != 1 else ''} tripped: " + "; ".join(parts)


def _catalog_id(path, id_col: str | None) -> str:
    """The catalog's id column: ``id_col`` when the catalog has it, else ``item_id``."""
    if id_col is not None:
        from sidkit.io.source import open_source

        if id_col in open_source(path).names:
            return id_col
    return "item_id"


def _load_items(path, code_ids, id_col: str | None):
    """Embeddings, leaf, titles and attributes aligned to ``code_ids`` (rows absent from the
    catalog are dropped: returns the kept code rows too)."""
    from sidkit.features import fuse, make_spec
    from sidkit.io.catalog import read_catalog
    from sidkit.metrics.collaborative import map_ids

    cat_id = _catalog_id(path, id_col)
    cat = read_catalog(path, id_col=cat_id)
    X = fuse(cat.embeddings, make_spec(cat.embeddings))  # as fit fuses them: both reports see the same vectors
    rows = map_ids(code_ids, cat.ids_numpy)
    keep = np.flatnonzero(rows >= 0)
    r = rows[keep]
    attrs = {k: [v[i] for i in r] for k, v in cat.attributes.items()}
    from sidkit.metrics.semantic import leaf_column

    leaf = leaf_column(attrs)
    titles = attrs.get("title")
    return keep, np.asarray(X)[r], leaf, titles, attrs


def _display_columns(display_cols, names) -> list[str]:
    """The ``--display-cols`` list (a list or comma string), checked against the catalog's column
    ``names``; default ``title`` plus the category column when present."""
    if isinstance(display_cols, str):
        display_cols = [c.strip() for c in display_cols.split(",") if c.strip()]
    if display_cols is None:
        display_cols = [c for c in ("title",) if c in names]
        cat = next((c for c in ("category_leaf", "leaf", "categories", "category") if c in names), None)
        if cat:
            display_cols.append(cat)
    missing = [c for c in display_cols if c not in names]
    if missing:
        raise ConfigError(f"{opt('display_cols')}: no catalog column {missing[0]!r} (columns: {', '.join(sorted(names))})")
    return list(display_cols)


def _attach_display(buckets: list, keep, attrs: dict, display_cols) -> None:
    """Add ``display`` ({column: [value per listed member]}) to each bucket entry."""
    display_cols = _display_columns(display_cols, attrs)
    pos = {int(r): i for i, r in enumerate(keep)}
    for b in buckets:
        idx = [pos.get(int(r)) for r in b.get("rows", [])]
        b["display"] = {c: [_cell(attrs[c][i]) if i is not None else None for i in idx] for c in display_cols}


def _attach_display_large(buckets: list, src, display_cols) -> None:
    """:func:`_attach_display` for a catalog too large to read whole: the listed members' display
    columns are read in one pass over those columns (``src``: a
    :class:`~sidkit.metrics.semantic.CatalogVectors`)."""
    rows = sorted({int(r) for b in buckets for r in b.get("rows", [])})
    display_cols = _display_columns(display_cols, src.source.schema_arrow.names)
    if not rows or not display_cols:
        return
    vals = src.column_values(rows, display_cols)
    _attach_display(buckets, np.asarray(rows), vals, display_cols)


def _cell(v):
    if v is None:
        return None
    if isinstance(v, (list, tuple, np.ndarray)):
        return " > ".join(str(x) for x in v)
    return v if isinstance(v, (int, float, bool)) else str(v)


def fingerprint(path) -> str:
    """sha256 (first 16 hex digits) of the input: a file, or every file under a directory / glob
    in sorted order with its name. A Parquet file contributes its size and its footer (schema,
    row groups, column-chunk offsets and statistics), read from the end of the file, so the cost
    is O(shards), not a second read of a 10^9-row table; other files (CSV, JSON) their bytes, in
    1 MiB chunks."""
    import glob
    import hashlib

    p = Path(path)
    files = sorted(f for f in p.rglob("*") if f.is_file()) if p.is_dir() else (
        [p] if p.is_file() else sorted(Path(f) for f in glob.glob(str(path)) if Path(f).is_file()))
    h = hashlib.sha256()
    for f in files:
        h.update(f.name.encode() + b"\0")
        with open(f, "rb") as fh:
            size = fh.seek(0, 2)  # the end
            if size >= 12:
                fh.seek(size - 8)
                tail = fh.read(8)
                if tail[4:] == b"PAR1":  # Parquet: <footer><4-byte footer length>PAR1
                    n = min(int.from_bytes(tail[:4], "little"), size - 8)
                    fh.seek(size - 8 - n)
                    h.update(size.to_bytes(8, "little") + fh.read(n + 8))
                    continue
            fh.seek(0)
            for chunk in iter(lambda: fh.read(1 << 20), b""):
                h.update(chunk)
    return h.hexdigest()[:16]


def _unknown_sizes(warnings: list, sizes) -> None:
    warnings.append(f"codebook sizes unknown: using the largest code + 1 per level ({','.join(map(str, sizes))}), "
                    f"so utilization is a guess; pass {opt('codebook_size')}")


def _gather(stream, batch_size: int):
    """Ids and codes of every row of a streamed SID table (for the blocks that join on ids)."""
    ids, codes = [], []
    for b in stream.batches(batch_size):
        ids.append(np.asarray(b.ids))
        codes.append(b.codes.astype(np.int32, copy=False))
    return np.concatenate(ids), np.concatenate(codes)


def _read_interactions(path) -> dict:
    """The columns :func:`sidkit.metrics.collaborative.collaborative_metrics` uses: ``user_id``,
    ``item_id`` and the order column (``position``, else ``timestamp``, else file order)."""
    from sidkit.io.interactions import read_interactions

    d = read_interactions(path, for_split=False, order_cols=("position", "timestamp"))
    out = {"user_id": d["user_id"], "item_id": d["item_id"].to_numpy(zero_copy_only=False)}
    if d["order_col"] is not None:
        out[d["order_col"]] = d["order"]
    return out


def audit(codes_path, *, items=None, interactions=None, baseline=None, codebook_size=None, html=None,
          fail_on=None, id_col: str | None = None, seed: int = 0, suffix: str = "auto",
          n_pairs: int = 1_000_000, semantic_sample: int = 100_000, streaming: bool = True,
          batch_size: int = 1 << 20, display_cols=None) -> dict:
    """Audit a SID table file.

    Parameters
    ----------
    codes_path : codes.parquet, a Parquet/CSV SID table, an index JSON or a model directory.
    items : catalog Parquet (adds ``semantic``); interactions : Parquet (adds ``collaborative``);
    baseline : another SID table file (adds ``compare``).
    codebook_size : int, list or comma string; else the file metadata; else max code + 1 (warned).
    html : path of the HTML report to write (atomically).
    fail_on : gate expressions (see module docstring).
    id_col : id column of the SID table (and of the catalog).
    seed : seeds the sampled estimates. suffix : see :func:`sidkit.io.sidtable.read_sid_table`.
    display_cols : catalog columns shown next to the members of the largest buckets (list or
        comma string; default ``title`` plus the category column when present).
    semantic_sample : above :data:`sidkit.metrics.semantic.EXACT_MAX_ITEMS` items the semantic
        block evaluates this many seeded query items against an approximate index over all
        items (0: every item is a query); below it the block is exact, as before.
    streaming : read a Parquet SID table (file, directory of shards or glob) in record batches
        of ``batch_size`` rows with bounded memory (:mod:`sidkit.metrics.stream`; identical
        numbers); False reads it whole. CSV / index JSON tables, string SID columns and
        ``suffix='auto'`` on a table without a ``suffix`` column are always read whole.

    Returns
    -------
    The report dict (DESIGN.md §4 keys, plus ``source``, ``warnings`` and ``gates``).

    Raises
    ------
    SidkitError on bad input (nothing written); GateFailed after writing outputs when a gate trips.
    """
    from sidkit.io.artifacts import check_output
    from sidkit.metrics import sid_report, sid_report_blocks

    check_output(html, opt("html"), {"CODES": codes_path, opt("items"): items, opt("interactions"): interactions, opt("baseline"): baseline})
    gates = [parse_gate(g) for g in ([fail_on] if isinstance(fail_on, str) else (fail_on or []))]
    core, ids, codes, sfx, sizes, warnings = _read_codes(
        codes_path, id_col=id_col, codebook_size=codebook_size, suffix=suffix, streaming=streaming, seed=seed,
        n_pairs=n_pairs, batch_size=batch_size, need_rows=items is not None or interactions is not None or baseline is not None)
    kw: dict[str, Any] = {}
    if interactions is not None:
        kw["interactions"] = _read_interactions(interactions)
    if baseline is not None:
        kw["baseline"] = _read_baseline(baseline, codebook_size, suffix, sizes, warnings)
    if core is None:
        rep = sid_report(codes, sizes, item_ids=ids, seed=seed, n_pairs=n_pairs, **kw)
    else:
        rep = sid_report_blocks(core, codes, sizes, item_ids=ids, seed=seed, **kw)
    if items is not None:
        rep["semantic"] = _semantic_block(rep, items, ids, codes, sizes, warnings, id_col=id_col, seed=seed,
                                          semantic_sample=semantic_sample, display_cols=display_cols)
    if interactions is not None:
        from sidkit.metrics.popularity import popularity_metrics

        rep["popularity"] = popularity_metrics(codes, ids, kw["interactions"]["item_id"], sizes)
    _describe(rep, codes_path, sfx, warnings, {
        "seed": seed, "n_pairs": n_pairs, "semantic_sample": semantic_sample, "suffix": suffix,
        "codebook_size": None if codebook_size is None else str(codebook_size), "id_col": id_col,
        "items": None if items is None else str(items),
        "interactions": None if interactions is None else str(interactions),
        "baseline": None if baseline is None else str(baseline)})
    _gate_and_write(rep, gates, html)
    return rep


def _read_codes(codes_path, *, id_col, codebook_size, suffix, streaming: bool, seed: int, n_pairs: int,
                batch_size: int, need_rows: bool):
    """The SID table: ``(core, ids, codes, sfx, sizes, warnings)``. A streamable table gives its core
    blocks (``core``) in record batches, and ids / codes only when another block (``need_rows``)
    joins on them; otherwise (``core`` None) the table is read whole."""
    from sidkit.io.sidtable import open_sid_stream, read_sid_table
    from sidkit.metrics.stream import can_stream, core_report_stream

    stream = open_sid_stream(codes_path, id_col=id_col, codebook_size=codebook_size, suffix=suffix) if streaming else None
    if stream is not None:
        warnings = list(stream.warnings)
        sizes = stream.sizes
        if sizes is None:
            sizes = stream.scan_sizes(batch_size)
            _unknown_sizes(warnings, sizes)
        if can_stream(sizes):
            core = core_report_stream(stream, sizes, seed=seed, n_pairs=n_pairs, batch_size=batch_size)
            sfx = True if stream.has_suffix or stream.split_last else None
            ids, codes = _gather(stream, batch_size) if need_rows else (None, None)  # 8 + 4 L bytes per row
            return core, ids, codes, sfx, sizes, warnings
    ids, codes, sfx, sizes, warnings = read_sid_table(codes_path, id_col=id_col, codebook_size=codebook_size, suffix=suffix)
    if sizes is None:
        sizes = [int(m) + 1 for m in codes.max(axis=0)]
        _unknown_sizes(warnings, sizes)
    return None, ids, codes, sfx, sizes, warnings


def _read_baseline(baseline, codebook_size, suffix, sizes, warnings: list) -> dict:
    """The baseline table of the ``compare`` block (its warnings appended to ``warnings``)."""
    from sidkit.io.sidtable import read_sid_table

    b_ids, b_codes, _, b_sizes, b_warn = read_sid_table(baseline, codebook_size=codebook_size, suffix=suffix)
    if b_sizes is None:
        b_sizes = [max(int(m) + 1, s) for m, s in zip(b_codes.max(axis=0), sizes)] if b_codes.shape[1] == len(sizes) else None
    warnings.extend(f"baseline: {w}" for w in b_warn)
    return {"item_ids": b_ids, "codes": b_codes, "codebook_sizes": b_sizes}


def _semantic_block(rep: dict, items, ids, codes, sizes, warnings: list, *, id_col, seed: int, semantic_sample: int,
                    display_cols) -> dict:
    """The ``semantic`` block against the catalog ``items`` (read whole when small, streamed when
    large); also attaches the catalog's display columns to the largest buckets of ``rep``."""
    from sidkit.io.source import open_source
    from sidkit.metrics.semantic import (
        EXACT_MAX_ITEMS,
        CatalogVectors,
        semantic_metrics,
    )

    if semantic_sample < 0:
        raise ConfigError(f"{opt('semantic_sample')} must be >= 0 (0: every item is a query), got {semantic_sample}")
    if open_source(items).num_rows <= EXACT_MAX_ITEMS:  # small: read whole, exact block
        keep, X, leaf, titles, attrs = _load_items(items, ids, id_col)
        src = None
    else:  # large: stream the catalog (index + sampled rows only)
        src = CatalogVectors(items, ids, id_col=_catalog_id(items, id_col))
        keep = src.code_rows
    if keep.size == 0:
        raise DataError(f"{items}: none of the SID table's item ids are in the catalog; check {opt('id_col')} and the files")
    if keep.size < len(ids):
        warnings.append(f"{len(ids) - keep.size} items of the SID table are not in {Path(items).name}; the semantic block uses the other {keep.size}")
    if src is None:
        _attach_display(rep.get("top_buckets") or [], keep, attrs, display_cols)
        return semantic_metrics(codes[keep], X, leaf=leaf, attributes=attrs, titles=titles,
                                item_ids=np.asarray(ids)[keep], codebook_sizes=sizes, seed=seed,
                                sample=semantic_sample)
    _attach_display_large(rep.get("top_buckets") or [], src, display_cols)
    return semantic_metrics(codes[keep], src, attributes=True, item_ids=np.asarray(ids)[keep],
                            codebook_sizes=sizes, seed=seed, sample=semantic_sample)


def _gate_and_write(rep: dict, gates: list, html) -> None:
    """Check the gates (``rep["gates"]``), write the HTML report, then raise GateFailed (carrying
    the report) when a gate tripped."""
    results = check_gates(rep, gates) if gates else []
    rep["gates"] = results
    if html is not None:
        from sidkit.report.html import render_html

        render_html(rep, html)
    if any(r["tripped"] for r in results):
        err = GateFailed(gate_message(results))
        err.report = rep
        err.tripped = [r for r in results if r["tripped"]]
        raise err


def _describe(rep: dict, codes_path, sfx, warnings: list, config: dict) -> None:
    """The report's ``source``, ``dedup`` (from the table's metadata), ``config`` and ``warnings``."""
    from sidkit.io.codes import dedup_metadata
    from sidkit.metrics.levels import sink_warnings

    rep["source"] = {"path": str(codes_path), "has_suffix": sfx is not None, "fingerprint": fingerprint(codes_path)}
    dd = dedup_metadata(codes_path)
    if dd is not None:
        rep["dedup"] = dd
    rep["config"] = config
    rep["warnings"] = warnings + sink_warnings(rep.get("levels", []))
