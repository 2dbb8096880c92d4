"""The core blocks of a SID report (collision, levels, prefix, diversity, hamming), from the
codes alone. :func:`sidkit.metrics.sid_report` adds the blocks that need more inputs."""

from __future__ import annotations

import numpy as np

from sidkit.metrics.buckets import build_buckets, check_codes
from sidkit.metrics.collision import collision_metrics
from sidkit.metrics.diversity import diversity_metrics
from sidkit.metrics.hamming import hamming_metrics
from sidkit.metrics.levels import level_metrics
from sidkit.metrics.prefix import prefix_metrics

CORE_KEYS = ("n_items", "n_levels", "codebook_sizes", "collision", "levels", "prefix", "diversity", "hamming")


def core_report(codes, codebook_sizes=None, *, item_ids=None, seed: int = 0, n_pairs: int = 1_000_000,
                top_k: int = 10, blocks=("collision", "levels", "prefix", "diversity", "hamming"),
                _checked: bool = False) -> dict:
    """The core blocks of the report for ``codes`` (n, L) with ``codebook_sizes`` (int or list).

    ``blocks`` restricts the work (``collision`` and ``levels`` are the cheapest).
    """
    if _checked:
        codes, sizes = np.asarray(codes), [int(s) for s in codebook_sizes]
    else:
        codes, sizes = check_codes(codes, codebook_sizes)
    n, L = codes.shape
    rep: dict = {"n_items": int(n), "n_levels": int(L), "codebook_sizes": [int(s) for s in sizes]}
    need_buckets = any(b in blocks for b in ("collision", "prefix", "diversity", "hamming"))
    b = build_buckets(codes, sizes) if need_buckets else None
    if "collision" in blocks:
        rep["collision"] = collision_metrics(buckets=b, codes=codes, item_ids=item_ids, top_k=top_k)
    if "levels" in blocks:
        rep["levels"] = level_metrics(codes, sizes, _checked=True)
    if "prefix" in blocks:
        rep["prefix"] = prefix_metrics(buckets=b)
    if "diversity" in blocks:
        rep["diversity"] = diversity_metrics(buckets=b)
    if "hamming" in blocks:
        rep["hamming"] = hamming_metrics(codes, sizes, buckets=b, seed=seed, n_pairs=n_pairs)
    if "collision" in rep:
        rep["top_buckets"] = rep["collision"].pop("top_buckets")
    return rep


