"""Per-level codebook usage (METHODS.md §6.1)."""

from __future__ import annotations

import numpy as np

from sidkit.metrics._core import check_codes, entropy_nats


def level_metrics(codes, codebook_sizes=None, *, _checked: bool = False) -> list[dict]:
    """One dict per level: ``level``, ``utilization`` (used codes / K), ``dead_codes``,
    ``entropy_bits`` (token distribution entropy), ``perplexity`` (exp of the entropy in nats),
    ``normalized_perplexity`` (perplexity / K), plus ``used_codes``, ``codebook_size``, ``gini``
    (Gini of the usage counts over all K codes) and ``counts`` is not included (see
    :func:`level_counts`)."""
    from sidkit.metrics.collision import gini_from_sizes

    if not _checked:
        codes, codebook_sizes = check_codes(codes, codebook_sizes)
    n, L = codes.shape
    out = []
    for l, cnt in enumerate(level_counts(codes, codebook_sizes)):
        K = int(codebook_sizes[l])
        used = int((cnt > 0).sum())
        h = entropy_nats(cnt, n)
        ppl = float(np.exp(h))
        out.append({
            "level": l,
            "utilization": used / K,
            "dead_codes": K - used,
            "entropy_bits": h / np.log(2),
            "perplexity": ppl,
            "normalized_perplexity": ppl / K,
            "used_codes": used,
            "codebook_size": K,
            "gini": gini_from_sizes(cnt),
        })
    return out


def level_counts(codes, codebook_sizes) -> list[np.ndarray]:
    """Usage count of every code, per level (length K_l arrays)."""
    codes = np.asarray(codes)
    return [np.bincount(codes[:, l], minlength=int(codebook_sizes[l])) for l in range(codes.shape[1])]
