"""Read and check interaction logs (``user_id``, ``item_id``, and ``split`` and/or
``timestamp``/``position``) and split them into train / valid / test, shared by ``eval``, the
collaborative alignment of QuaSID/AdaSID, ``audit`` and anything else that takes
``--interactions``."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Sequence

import numpy as np

from sidkit.errors import DataError, InputFileError, SchemaError, opt

SPLIT_CODES = {"train": 0, "valid": 1, "val": 1, "validation": 1, "test": 2}
TRAIN, VALID, TEST = 0, 1, 2
MIN_LEAVE_ONE_OUT = 3  # a user needs a training, a validation and a test interaction


def read_interactions(path: str | os.PathLike, *, for_split: bool = True,
                      order_cols: Sequence[str] = ("timestamp", "position")) -> dict:
    """Read and check an interactions Parquet file, a directory of Parquet shards or a glob.

    ``order_cols``: the first of these columns that the file has orders the rows inside a user.
    With ``for_split`` (``eval``, the alignment of ``fit``) the ``split`` column is read too, and
    the file needs it or an order column for the leave-one-out split; without it (``audit``)
    ``split`` is not read and no order column is required (rows then keep their file order).

    Returns ``{"user_id", "item_id", "order", "split", "order_col", "path"}``: ``user_id`` and
    ``order`` (float64) as numpy arrays, ``item_id`` as a pyarrow array; ``order``/``split`` may
    be None, ``split`` is coded 0/1/2.

    Raises InputFileError, SchemaError or DataError with one line that names the file.
    """
    import pyarrow as pa

    from sidkit.io.source import open_source

    p = Path(path)
    if not p.exists() and not any(c in str(path) for c in "*?["):
        raise InputFileError(f"{p}: interactions file not found; check {opt('interactions')}")
    src = open_source(path, "interactions")  # a file, a directory of shards or a glob; one schema
    names = src.names
    missing = [c for c in ("user_id", "item_id") if c not in names]
    if missing:
        raise SchemaError(f"{p}: interactions need columns user_id and item_id (missing: {', '.join(missing)}; "
                          f"columns: {', '.join(names[:12])})")
    order_col = next((c for c in order_cols if c in names), None)
    has_split = for_split and "split" in names
    if for_split and not has_split and order_col is None:
        raise SchemaError(f"{p}: interactions need a 'split' column or a 'timestamp'/'position' column for the leave-one-out split")
    cols = ["user_id", "item_id"] + (["split"] if has_split else []) + ([order_col] if order_col else [])
    t = src.read(cols)
    if src.is_sharded:  # name the shard that holds a null
        for i, shard in enumerate(src.shards):
            lo, hi = int(src.offsets[i]), int(src.offsets[i + 1])
            for c in cols:
                part = t.column(c).slice(lo, hi - lo)
                if part.null_count:
                    row = int(np.flatnonzero(part.is_null().to_numpy(zero_copy_only=False))[0])
                    raise DataError(f"{shard}: column '{c}' is null at row {row}; fill or drop those rows")
    if t.num_rows == 0:
        raise InputFileError(f"{p}: no interactions; give a non-empty file")
    for c in cols:
        nulls = t.column(c).null_count
        if nulls:
            raise DataError(f"{p}: column '{c}' has {nulls} null values; fill or drop those rows")
    out = {"path": str(p), "order_col": order_col}
    out["user_id"] = t.column("user_id").combine_chunks().to_numpy(zero_copy_only=False)
    out["item_id"] = t.column("item_id").combine_chunks()
    if order_col:
        oc = t.column(order_col).combine_chunks()
        if pa.types.is_timestamp(oc.type) or pa.types.is_date(oc.type):
            oc = oc.cast(pa.int64())
        try:
            out["order"] = np.asarray(oc.to_numpy(zero_copy_only=False), dtype=np.float64)
        except (TypeError, ValueError):
            raise SchemaError(f"{p}: column '{order_col}' must be numeric or a timestamp (got {oc.type})") from None
    else:
        out["order"] = None
    if has_split:
        raw = np.asarray(t.column("split").combine_chunks().cast(pa.string()).to_pylist(), dtype=object)
        uniq = sorted(set(raw.tolist()))
        bad = [s for s in uniq if str(s).lower() not in SPLIT_CODES]
        if bad:
            raise DataError(f"{p}: column 'split' has values {', '.join(repr(b) for b in bad[:3])}; use train, valid and test")
        lut = {s: SPLIT_CODES[str(s).lower()] for s in uniq}
        out["split"] = np.fromiter((lut[s] for s in raw), dtype=np.int8, count=len(raw))
    else:
        out["split"] = None
    return out


def split_interactions(users, *, order=None, split=None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Sort interactions by user and time and say which part each one is in (METHODS.md §6.2).

    ``users``: the user of each row (any values; object arrays are compared as strings);
    ``order``: a sort key inside each user (timestamp or position), None for the given order;
    ``split``: codes ``TRAIN``/``VALID``/``TEST`` (a ``split`` column), or None for leave-one-out:
    each user's last interaction is the test target, the second-to-last the validation target,
    the rest is training. A user with fewer than 3 interactions has no target: all of theirs are
    training.

    Returns ``(perm, user, part)``: ``perm`` sorts the rows by user (ascending ids), then
    ``order``, then row; ``user[k]`` (0 .. n_users - 1) and ``part[k]`` (int8) belong to row
    ``perm[k]``. ``eval`` and the collaborative alignment of QuaSID/AdaSID both take their
    training part from here.
    """
    uvals = np.asarray(users)
    n = len(uvals)
    if uvals.dtype == object:
        uvals = uvals.astype(str)
    _, uinv = np.unique(uvals, return_inverse=True)
    uinv = uinv.reshape(-1).astype(np.int64)
    ordv = np.arange(n, dtype=np.float64) if order is None else np.asarray(order, np.float64)
    perm = np.lexsort((np.arange(n), ordv, uinv))
    uinv = uinv[perm]
    if split is not None:
        return perm, uinv, np.asarray(split, np.int8)[perm]
    cnt = np.bincount(uinv)[uinv] if n else np.zeros(0, np.int64)
    first = np.concatenate(([True], uinv[1:] != uinv[:-1])) if n else np.zeros(0, bool)
    starts = np.flatnonzero(first)
    rank = np.arange(n) - np.repeat(starts, np.diff(np.append(starts, n)))
    from_end = cnt - rank  # 1 for the last interaction of a user
    part = np.full(n, TRAIN, np.int8)
    loo = cnt >= MIN_LEAVE_ONE_OUT
    part[loo & (from_end == 1)] = TEST
    part[loo & (from_end == 2)] = VALID
    return perm, uinv, part
