"""Prefix (branching) metrics (METHODS.md §6.1)."""

from __future__ import annotations

import numpy as np

from sidkit.metrics.buckets import (
    Buckets,
    build_buckets,
    check_codes,
    entropy_nats,
    hist_entropy_nats,
)


def prefix_metrics(codes=None, codebook_sizes=None, *, buckets: Buckets | None = None) -> list[dict]:
    """One dict per prefix length ``length`` = 1..L: ``n_distinct`` prefixes, ``collision_rate``
    (N - n_distinct) / N, ``mean_branching`` (mean number of distinct children per observed prefix
    of length ``length - 1``; for length 1 the number of distinct first codes),
    ``conditional_entropy_bits`` H(s^l | s^{<l}), plus ``diversity`` (n_distinct / min(N, prod K)),
    ``entropy_bits`` H(prefix) and the prefix fan-out ``fanout_min`` / ``fanout_median`` /
    ``fanout_max``: children (distinct codes at this level) per used prefix of length
    ``length - 1``. Fan-out is computed from the distinct SIDs only (bounded by U, not N)."""
    if buckets is None:
        codes, sizes = check_codes(codes, codebook_sizes)
        buckets = build_buckets(codes, sizes)
    n = buckets.n
    out = []
    prev_distinct = 1
    fan = fanout_per_level(buckets)
    prev_h = 0.0
    space = 1
    for l in range(buckets.L):
        space *= buckets.sizes[l]
        if l < buckets.L - 1:
            c = buckets.short_prefix_counts[l]
            nd = int(c.size)
            h = entropy_nats(c, n)
        else:  # the full SID: from the bucket-size histogram
            nd = buckets.n_distinct
            h = hist_entropy_nats(buckets.size_hist, n)
        out.append({
            "length": l + 1,
            "n_distinct": nd,
            "collision_rate": (n - nd) / n,
            "mean_branching": nd / prev_distinct,
            "conditional_entropy_bits": max(0.0, (h - prev_h) / np.log(2)),
            "diversity": nd / min(n, space),
            "entropy_bits": h / np.log(2),
        })
        if fan[l] is not None:
            f = fan[l]
            out[-1].update(fanout_min=int(f.min()) if f.size else 0, fanout_median=float(np.median(f)) if f.size else 0.0,
                           fanout_max=int(f.max()) if f.size else 0)
        prev_distinct, prev_h = nd, h
    return out


def fanout_per_level(buckets: Buckets) -> list[np.ndarray | None]:
    """``out[l]``: for every used prefix of length ``l`` (l = 0..L-1), its number of distinct
    children at level ``l`` (l = 0: one entry, the number of distinct first codes). From the
    distinct SID keys (or the dense count table), so memory is O(distinct SIDs); None per level
    when the table is neither packed nor dense and no codes are kept."""
    L = buckets.L
    if buckets.dense is not None:
        out = []
        for l in range(L):
            space = int(np.prod(buckets.sizes[:l], dtype=np.int64)) if l else 1
            used = buckets.dense.reshape(space, buckets.sizes[l], -1).sum(axis=2) > 0
            ch = used.sum(axis=1)
            out.append(ch[ch > 0].astype(np.int64))
        return out
    if buckets.packed:
        ukeys = buckets.ukeys
        out = []
        for l in range(L):
            child = ukeys // buckets.mults[l] if l < L - 1 else ukeys
            child = child[np.concatenate(([True], child[1:] != child[:-1]))] if child.size else child
            parent = child // buckets.sizes[l]
            if parent.size:
                starts = np.flatnonzero(np.concatenate(([True], parent[1:] != parent[:-1])))
                out.append(np.diff(np.append(starts, parent.size)).astype(np.int64))
            else:
                out.append(np.zeros(0, np.int64))
        return out
    codes = getattr(buckets, "_codes", None)
    if codes is None:
        return [None] * L
    out = []
    for l in range(L):
        u = np.unique(codes[:, : l + 1], axis=0)
        if l == 0:
            out.append(np.array([u.shape[0]], np.int64))
        else:
            _, cnt = np.unique(u[:, :l], axis=0, return_counts=True)
            out.append(cnt.astype(np.int64))
    return out
