"""The suffix rule: one, stable by item id, for fit, encode and eval alike.

Items that share a core SID (a *bucket*) are told apart by a suffix, so ``sid + [suffix]`` is
unique. The rule: an item that is *kept* (in the model with the same core SID) keeps its
suffix; every other item of a bucket gets the next free suffix, past the bucket's taken ones,
in item-id order. ``fit`` is the case with nothing kept (:func:`assign_suffix`); ``sidkit encode``
applies it per partition of its out-of-core pass (:func:`kept_suffixes`, :func:`fill_suffixes`).
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from sidkit.io.codes import pack_keys

__all__ = ["assign_suffix", "catalog_suffixes", "fill_suffixes", "in_id_order", "kept_rows", "kept_suffixes"]


def assign_suffix(codes: np.ndarray, item_ids: np.ndarray | list) -> np.ndarray:
    """Collision suffix: 0 for a unique core SID, else 0, 1, 2, ... inside each colliding group,
    ordered by item id (ascending), so ``sid + [suffix]`` is unique."""
    codes = np.asarray(codes)
    n = codes.shape[0]
    key = pack_keys(codes)
    ids = np.asarray(item_ids)
    # Sort by (key, item_id); ranks inside runs of equal keys are the suffixes.
    order = np.lexsort((ids, key)) if key.dtype != object else np.lexsort((ids, key.astype(str)))
    sk = key[order]
    start = np.ones(n, dtype=bool)
    if n > 1:
        start[1:] = sk[1:] != sk[:-1]
    run_start = np.maximum.accumulate(np.where(start, np.arange(n), 0))
    rank = np.arange(n) - run_start
    suffix = np.empty(n, dtype=np.int32)
    suffix[order] = rank
    return suffix


def catalog_suffixes(codes: np.ndarray, ids: pa.Array) -> np.ndarray:
    """:func:`~assign_suffix` of a whole catalog, converting only the ids of
    rows whose core SID collides (a suffix depends only on the ids inside its bucket)."""
    key = pack_keys(codes)
    if key.dtype != np.int64:
        return assign_suffix(codes, ids.to_numpy(zero_copy_only=False))
    order = np.argsort(key, kind="stable")
    sk = key[order]
    same = np.zeros(len(sk), bool)
    if len(sk) > 1:
        eq = sk[1:] == sk[:-1]
        same[1:] |= eq
        same[:-1] |= eq
    rows = np.sort(order[same])
    del order, sk, same
    suffix = np.zeros(len(codes), np.int32)
    if len(rows):
        suffix[rows] = assign_suffix(codes[rows], ids.take(pa.array(rows)).to_numpy(zero_copy_only=False))
    return suffix


def in_id_order(ids, rows: np.ndarray) -> np.ndarray:
    """``rows`` sorted by their ids, ascending: the order the suffix rule gives new items of a
    bucket. The same order as :func:`assign_suffix` (numbers numerically, strings by code point,
    which is UTF-8 byte order), for an Arrow array or a numpy array of ids. Only the ids of
    ``rows`` are sorted (a refresh encode keeps most rows)."""
    rows = np.asarray(rows, np.int64)
    if isinstance(ids, (pa.Array, pa.ChunkedArray)):
        order = pc.sort_indices(ids.take(pa.array(rows))).to_numpy(zero_copy_only=False)
    else:
        order = np.argsort(np.asarray(ids)[rows], kind="stable")
    return rows[order]


def fill_suffixes(keys: np.ndarray, suffix: np.ndarray, m_keys: np.ndarray, m_suffix: np.ndarray, ids) -> np.ndarray:
    """The suffix rule over rows that may already hold one: every row with suffix -1 gets the
    next free suffix of its key, past the model's largest suffix for that key (and past kept
    rows' suffixes), in item-id order (``ids``: the rows' ids, Arrow or numpy). With nothing
    taken this is :func:`assign_suffix`."""
    suffix = suffix.copy()
    pending = np.flatnonzero(suffix < 0)
    if not len(pending):
        return suffix
    taken_keys = np.concatenate([m_keys, keys[suffix >= 0]])
    taken_suf = np.concatenate([m_suffix, suffix[suffix >= 0]]).astype(np.int64)
    if len(taken_keys):
        order = np.argsort(taken_keys, kind="stable")
        tk, ts = taken_keys[order], taken_suf[order]
        uk, start = np.unique(tk, return_index=True)
        mx = np.maximum.reduceat(ts, start)
    else:
        uk, mx = np.zeros(0, keys.dtype), np.zeros(0, np.int64)
    pk = keys[pending]
    base = np.zeros(len(pk), np.int64)
    if len(uk):
        i = np.searchsorted(uk, pk)
        hit = (i < len(uk)) & (uk[np.minimum(i, len(uk) - 1)] == pk)
        base[hit] = mx[i[hit]] + 1
    by_id = np.searchsorted(pending, in_id_order(ids, pending))  # positions in pending, in id order
    o = by_id[np.argsort(pk[by_id], kind="stable")]  # then by key (stable)
    sk = pk[o]
    first = np.ones(len(sk), bool)
    first[1:] = sk[1:] != sk[:-1]
    run_start = np.maximum.accumulate(np.where(first, np.arange(len(sk)), 0))
    rank = np.empty(len(sk), np.int64)
    rank[o] = np.arange(len(sk)) - run_start
    suffix[pending] = (base + rank).astype(np.int32)
    return suffix


def kept_rows(keys: np.ndarray, ids: pa.Array, m_keys: np.ndarray, m_ids: pa.Array) -> tuple[np.ndarray, np.ndarray]:
    """The rows whose id is in the model with the same key (core SID, or prefix key for ZCR),
    and the model rows they match: (rows, model rows)."""
    if not len(m_ids) or not len(keys):
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    pos = pc.fill_null(pc.index_in(ids, value_set=m_ids), -1).to_numpy(zero_copy_only=False).astype(np.int64)
    found = np.flatnonzero(pos >= 0)
    same = found[m_keys[pos[found]] == keys[found]]
    return same, pos[same]


def kept_suffixes(keys: np.ndarray, ids: pa.Array, m_keys: np.ndarray, m_ids: pa.Array, m_suffix: np.ndarray) -> np.ndarray:
    """-1, or the model's suffix for rows whose id is in the model with the same key."""
    suf = np.full(len(keys), -1, np.int32)
    rows, at = kept_rows(keys, ids, m_keys, m_ids)
    suf[rows] = m_suffix[at]
    return suf
