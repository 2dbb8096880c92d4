"""Collision block (METHODS.md §6.1): how many items share a core SID."""

from __future__ import annotations

import numpy as np

from sidkit.metrics.buckets import Buckets, build_buckets, check_codes


def gini_from_sizes(sizes: np.ndarray, n_zeros: int = 0) -> float:
    """Gini coefficient of non-negative values (0 = all equal), computed from their histogram;
    ``n_zeros`` more values equal to 0 are implied."""
    sizes = np.asarray(sizes, dtype=np.int64)
    if sizes.size + int(n_zeros) == 0:
        return 0.0
    hist = np.bincount(sizes, minlength=1)
    hist[0] += int(n_zeros)
    return gini_from_hist(hist)


def gini_from_hist(hist: np.ndarray) -> float:
    """Gini coefficient of values given as a histogram (``hist[v]`` = how many values equal v)."""
    hist = np.asarray(hist, dtype=np.int64)
    n = int(hist.sum())
    tot = int((np.arange(hist.size) * hist).sum())
    if n == 0 or tot == 0:
        return 0.0
    vals = np.flatnonzero(hist)
    m = hist[vals].astype(np.float64)
    a = np.concatenate(([0.0], np.cumsum(m)[:-1]))  # items of smaller value before each group
    num = float((vals * m * (2 * a + m - n)).sum())
    return num / (n * tot)


def rate(n: int, n_distinct: int) -> float:
    """The collision rate (N - U) / N of N items with U distinct SIDs (0 for no items)."""
    return (n - n_distinct) / n if n else 0.0


def collision_rate(codes, codebook_sizes=None) -> float:
    """The collision rate (N - U) / N of ``codes`` (n, L): the one definition (LC-Rec/LETTER)."""
    from sidkit.io.codes import pack_keys

    codes = np.asarray(codes)
    if len(codes) == 0:
        return 0.0
    return rate(len(codes), len(np.unique(pack_keys(codes, codebook_sizes))))


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
    hist = buckets.size_hist
    sizes_present = np.flatnonzero(hist)
    U = int(hist.sum())
    n_coll = int(hist[2:].sum())
    items_coll = int((np.arange(hist.size)[2:] * hist[2:]).sum())
    out = {
        "collision_rate": rate(n, U),
        "unique_sid_ratio": U / n,
        "collided_item_fraction": items_coll / n,
        "n_colliding_buckets": n_coll,
        "max_bucket_size": int(sizes_present[-1]) if sizes_present.size else 0,
        "bucket_size_histogram": {str(int(s)): int(hist[s]) for s in sizes_present},
        "gini": gini_from_hist(hist),
        "n_distinct_sids": U,
        "mean_collided_bucket_size": (items_coll / n_coll) if n_coll else 0.0,
    }
    out["top_buckets"] = top_buckets(buckets, codes, item_ids=item_ids, top_k=top_k, max_members=max_members)
    return out


def top_bucket_keys(buckets: Buckets, top_k: int = 10) -> tuple[np.ndarray, np.ndarray]:
    """Keys and sizes of the ``top_k`` largest colliding buckets (size >= 2), largest first, ties
    by key (= by SID)."""
    hist = buckets.size_hist
    n_coll = int(hist[2:].sum())
    if top_k <= 0 or n_coll == 0:
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    k = min(top_k, n_coll)
    # smallest size t such that at least k buckets have size >= t
    cum = np.cumsum(hist[::-1])[::-1]
    t = max(2, int(np.flatnonzero(cum >= k)[-1]))
    if buckets.dense is not None:
        cand_keys = np.flatnonzero(buckets.dense >= t)
        cand_counts = buckets.dense[cand_keys]
    else:
        sel = buckets.counts >= t
        cand_keys, cand_counts = buckets.ukeys[sel], buckets.counts[sel]
    order = np.lexsort((cand_keys, -cand_counts))[:k]
    return cand_keys[order], cand_counts[order]


def rows_with_keys(key: np.ndarray, keys: np.ndarray) -> np.ndarray:
    """Rows of ``key`` whose value is one of ``keys``."""
    if keys.size <= 16:
        mask = np.zeros(key.shape[0], dtype=bool)
        for kk in keys:
            mask |= key == kk
    else:
        mask = np.isin(key, keys)
    return np.flatnonzero(mask)


def top_buckets(buckets: Buckets, codes=None, *, item_ids=None, top_k: int = 10, max_members: int = 20) -> list[dict]:
    """The ``top_k`` largest colliding buckets (size >= 2), largest first, ties by SID."""
    keys, sizes_k = top_bucket_keys(buckets, top_k)
    if keys.size == 0:
        return []
    rows = rows_with_keys(buckets.key, keys)
    return bucket_entries(buckets, codes, keys, sizes_k, rows, buckets.key[rows],
                          None if item_ids is None else np.asarray(item_ids), max_members=max_members)


def bucket_entries(buckets: Buckets, codes, keys, sizes_k, rows, rk, ids, *, max_members: int = 20,
                   ids_of_rows: bool = False) -> list[dict]:
    """The ``top_buckets`` entries from the member ``rows`` (ascending) and their keys ``rk``;
    ``ids`` are per row of the table, or (``ids_of_rows``) one per entry of ``rows``."""
    out = []
    for size_b, kk in zip(sizes_k, keys):
        sel = np.flatnonzero(rk == kk)
        members = rows[sel]
        mid = None
        if ids is not None:
            mid = ids[sel] if ids_of_rows else ids[members]
            # members in item-id order when ids are given (matches the suffix order), else row order
            try:
                o = np.argsort(mid, kind="stable")
                members, mid = members[o], mid[o]
            except TypeError:
                pass
        members = members[:max_members]
        entry = {"size": int(size_b), "sid": _decode(buckets, codes, kk, members), "rows": [int(r) for r in members]}
        if mid is not None:
            entry["item_ids"] = [_py(v) for v in mid[:max_members]]
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
