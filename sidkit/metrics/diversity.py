"""SID diversity (METHODS.md §6.1)."""

from __future__ import annotations

import numpy as np

from sidkit.metrics.buckets import Buckets, build_buckets, check_codes, hist_entropy_nats


def diversity_metrics(codes=None, codebook_sizes=None, *, buckets: Buckets | None = None) -> dict:
    """``sid_entropy_ratio`` = H(full tuple) / ln N in [0, 1] (1 when all SIDs are unique; 1 for
    N = 1), plus ``sid_entropy_bits``."""
    if buckets is None:
        codes, sizes = check_codes(codes, codebook_sizes)
        buckets = build_buckets(codes, sizes)
    n = buckets.n
    h = hist_entropy_nats(buckets.size_hist, n)
    return {
        "sid_entropy_ratio": (h / np.log(n)) if n > 1 else 1.0,
        "sid_entropy_bits": h / np.log(2),
    }
