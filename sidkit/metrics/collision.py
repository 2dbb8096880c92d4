"""Collision block (METHODS.md §6.1): how many items share a core SID."""

from __future__ import annotations

import numpy as np

from sidkit.metrics._core import Buckets, build_buckets, check_codes


def gini_from_sizes(sizes: np.ndarray) -> float:
    """Gini coefficient of non-negative values (0 = all equal), computed from their histogram."""
    sizes = np.asarray(sizes, dtype=np.int64)
    n = sizes.size
    tot = int(sizes.sum())
    if n == 0 or tot == 0:
        return 0.0
    hist = np.bincount(sizes)
    vals = np.flatnonzero(hist)
    m = hist[vals].astype(np.float64)
    a = np.concatenate(([0.0], np.cumsum(m)[:-1]))  # items of smaller value before each group
    num = float((vals * m * (2 * a + m - n)).sum())
    return num / (n * tot)


def collision_metrics(codes=None, codebook_sizes=None, *, item_ids=None, top_k: int = 10,
                      max_members: int = 20, buckets: Buckets | None = None) -> dict:
    """Collision metrics of a code table.

    Parameters
    ----------
    codes : (n, L) int array of core SIDs (ignored when ``buckets`` is given).
    codebook_sizes : int or list of ints.
    item_ids : optional (n,) ids used to name the members of the largest buckets.
    top_k, max_members : how many of the largest colliding buckets to list, and members per bucket.

    Returns
    -------
    dict with ``collision_rate`` = (N - U) / N, ``unique_sid_ratio`` = U / N,
    ``collided_item_fraction`` = items in buckets of size >= 2 over N, ``n_colliding_buckets``,
    ``max_bucket_size``, ``bucket_size_histogram`` ({size: number of buckets}, sizes as strings),
    ``gini`` (Gini coefficient of the bucket sizes over the distinct SIDs; 0 when all SIDs are
    unique), plus ``n_distinct_sids``, ``mean_collided_bucket_size`` and ``top_buckets``
    (largest colliding buckets: ``size``, ``sid``, ``rows``, ``item_ids`` when ids are given).
    """
    if buckets is None:
        codes, sizes = check_codes(codes, codebook_sizes)
        buckets = build_buckets(codes, sizes)
    n = buckets.n
    counts = buckets.counts
    U = int(counts.size)
    coll = counts >= 2
    n_coll = int(coll.sum())
    items_coll = int(counts[coll].sum())
    hist = np.bincount(counts)
    sizes_present = np.flatnonzero(hist)
    out = {
        "collision_rate": (n - U) / n,
        "unique_sid_ratio": U / n,
        "collided_item_fraction": items_coll / n,
        "n_colliding_buckets": n_coll,
        "max_bucket_size": int(counts.max()) if U else 0,
        "bucket_size_histogram": {str(int(s)): int(hist[s]) for s in sizes_present},
        "gini": gini_from_sizes(counts),
        "n_distinct_sids": U,
        "mean_collided_bucket_size": (items_coll / n_coll) if n_coll else 0.0,
    }
    out["top_buckets"] = top_buckets(buckets, codes, item_ids=item_ids, top_k=top_k, max_members=max_members)
    return out


def top_buckets(buckets: Buckets, codes=None, *, item_ids=None, top_k: int = 10, max_members: int = 20) -> list[dict]:
    """The ``top_k`` largest colliding buckets (size >= 2), largest first, ties by SID."""
    counts = buckets.counts
    if top_k <= 0 or counts.size == 0 or counts.max() < 2:
        return []
    k = min(top_k, int((counts >= 2).sum()))
    idx = np.argpartition(-counts, k - 1)[:k] if k < counts.size else np.arange(counts.size)
    idx = idx[counts[idx] >= 2]
    idx = idx[np.lexsort((buckets.ukeys[idx], -counts[idx]))][:k]
    keys = buckets.ukeys[idx]
    key = buckets.key
    if keys.size <= 16:
        mask = np.zeros(key.shape[0], dtype=bool)
        for kk in keys:
            mask |= key == kk
    else:
        mask = np.isin(key, keys)
    rows = np.flatnonzero(mask)
    rk = key[rows]
    ids = None if item_ids is None else np.asarray(item_ids)
    out = []
    for b, kk in zip(idx, keys):
        members = rows[rk == kk]
        # members in item-id order when ids are given (matches the suffix order), else row order
        if ids is not None:
            try:
                members = members[np.argsort(ids[members], kind="stable")]
            except TypeError:
                pass
        members = members[:max_members]
        entry = {"size": int(counts[b]), "sid": _decode(buckets, codes, kk, members), "rows": [int(r) for r in members]}
        if ids is not None:
            entry["item_ids"] = [_py(ids[r]) for r in members]
        out.append(entry)
    return out


def _decode(buckets: Buckets, codes, key, members) -> list[int]:
    if codes is not None and len(members):
        return [int(c) for c in np.asarray(codes)[members[0]]]
    if buckets.packed:
        return [int((int(key) // buckets.mults[l]) % buckets.sizes[l]) for l in range(buckets.L)]
    return []


def _py(v):
    if isinstance(v, np.generic):
        return v.item()
    if isinstance(v, bytes):
        return v.decode("utf-8", "replace")
    return v
