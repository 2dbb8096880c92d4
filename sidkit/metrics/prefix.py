"""Prefix (branching) metrics (METHODS.md §6.1)."""

from __future__ import annotations

import numpy as np

from sidkit.metrics._core import Buckets, build_buckets, check_codes, entropy_nats, hist_entropy_nats


def prefix_metrics(codes=None, codebook_sizes=None, *, buckets: Buckets | None = None) -> list[dict]:
    """One dict per prefix length ``length`` = 1..L: ``n_distinct`` prefixes, ``collision_rate``
    (N - n_distinct) / N, ``mean_branching`` (mean number of distinct children per observed prefix
    of length ``length - 1``; for length 1 the number of distinct first codes),
    ``conditional_entropy_bits`` H(s^l | s^{<l}), plus ``diversity`` (n_distinct / min(N, prod K))
    and ``entropy_bits`` H(prefix)."""
    if buckets is None:
        codes, sizes = check_codes(codes, codebook_sizes)
        buckets = build_buckets(codes, sizes)
    n = buckets.n
    out = []
    prev_distinct = 1
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
        prev_distinct, prev_h = nd, h
    return out
