"""Per-level codebook usage (METHODS.md §6.1)."""

from __future__ import annotations

import numpy as np

from sidkit.config import RQVAE_METHODS
from sidkit.metrics.buckets import check_codes, entropy_nats


def level_metrics(codes, codebook_sizes=None, *, _checked: bool = False) -> list[dict]:
    """One dict per level: ``level``, ``utilization`` (used codes / K), ``dead_codes``,
    ``entropy_bits`` (token distribution entropy), ``perplexity`` (exp of the entropy in nats),
    ``normalized_perplexity`` (perplexity / K), plus ``used_codes``, ``codebook_size``, ``gini``
    (Gini of the usage counts over all K codes) and ``usage_sorted`` (usage counts sorted
    descending, at most 128 points, for plots)."""
    if not _checked:
        codes, codebook_sizes = check_codes(codes, codebook_sizes)
    n, L = codes.shape
    return level_metrics_from_counts([_used_counts(codes[:, l], int(codebook_sizes[l])) for l in range(L)], codebook_sizes, n)


def level_metrics_from_counts(used_counts, codebook_sizes, n: int) -> list[dict]:
    """:func:`level_metrics` from the usage counts of the codes that occur, per level, in code
    order (what a streaming pass accumulates)."""
    from sidkit.metrics.collision import gini_from_sizes

    out = []
    for l, cnt in enumerate(used_counts):
        K = int(codebook_sizes[l])
        used = int(cnt.size)
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
            "gini": gini_from_sizes(cnt, n_zeros=K - used),
            "usage_sorted": _sorted_profile(cnt, K),
        })
    return out


def _used_counts(col: np.ndarray, K: int) -> np.ndarray:
    """Usage counts of the codes that occur (order unspecified)."""
    if K <= max(1 << 24, 4 * col.size):
        bc = np.bincount(col, minlength=K)
        return bc[bc > 0]
    return np.unique(col, return_counts=True)[1]


def level_counts(codes, codebook_sizes) -> list[np.ndarray]:
    """Usage count of every code, per level (length K_l arrays)."""
    codes = np.asarray(codes)
    return [np.bincount(codes[:, l], minlength=int(codebook_sizes[l])) for l in range(codes.shape[1])]


def _sorted_profile(used_counts: np.ndarray, K: int, points: int = 128) -> list[int]:
    """Usage counts of all K codes sorted descending (dead codes are 0), down-sampled to at most
    ``points`` values (for plots)."""
    s = np.sort(used_counts)[::-1]
    if K <= points:
        pos = np.arange(K)
    else:
        pos = np.linspace(0, K - 1, points).round().astype(np.int64)
    return [int(s[p]) if p < s.size else 0 for p in pos]


#: a level whose normalized perplexity is below this is flagged: a few "sink" codes hold most items
LOW_PERPLEXITY = 0.25


def sink_warnings(levels: list[dict], *, method: str | None = None, balanced: bool = False,
                  threshold: float = LOW_PERPLEXITY) -> list[str]:
    """One warning per level of a report's ``levels`` block whose normalized perplexity is below
    ``threshold``, naming the largest code's share and the fix (``--balanced`` for an RQ-KMeans
    fit that was not balanced; a different tokenizer or more levels otherwise)."""
    if method == "kae":  # attribute positions follow the words' own frequencies: a skew there is the data
        return []
    out = []
    for i, lv in enumerate(levels):
        p = lv.get("normalized_perplexity")
        if p is None or p >= threshold:
            continue
        if method == "rqkmeans" and not balanced:
            fix = "refit with --balanced (capacity-capped k-means)"
        elif method == "rqkmeans":
            fix = "try --method rqvae, or fewer codes at this level"
        elif method in RQVAE_METHODS:
            fix = "train longer (--max-steps), or try --sinkhorn or --method quasid (collision-aware)"
        else:
            fix = "for an RQ-KMeans tokenizer refit with --balanced, or use --method rqvae"
        out.append(f"level {i + 1}: normalized perplexity {p:.2f} (below {threshold}): a few 'sink' codes take most "
                   f"items there, which drives collisions; {fix}")
    return out
