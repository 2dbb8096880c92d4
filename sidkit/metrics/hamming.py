"""Hamming-distance statistics of all item pairs (METHODS.md §1.7b, §6.1)."""

from __future__ import annotations

import numpy as np

from sidkit.metrics.buckets import Buckets, build_buckets, check_codes, hist_pairs


def sample_pairs(n: int, n_pairs: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """``n_pairs`` uniformly random unordered pairs of distinct rows (with replacement)."""
    i = rng.integers(0, n, size=n_pairs)
    j = (i + rng.integers(1, n, size=n_pairs)) % n
    return i, j


def pair_rows(n: int, n_pairs: int, seed: int) -> tuple[np.ndarray, np.ndarray, bool]:
    """The pairs the Hamming distribution looks at: all pairs when there are at most ``n_pairs``
    (``exact``), else ``n_pairs`` seeded random ones."""
    if n * (n - 1) // 2 <= n_pairs:
        ii, jj = np.triu_indices(n, 1)
        return ii, jj, True
    ii, jj = sample_pairs(n, n_pairs, np.random.default_rng(seed))
    return ii, jj, False


def hamming_metrics(codes, codebook_sizes=None, *, buckets: Buckets | None = None, seed: int = 0,
                    n_pairs: int = 1_000_000, pair_codes=None) -> dict:
    """Pair counts by Hamming distance over all N(N-1)/2 item pairs.

    ``pairs_h0`` = sum_b C(n_b, 2) over full-SID buckets and ``pairs_h_le1`` =
    sum_l sum_{b in B1[l]} C(n_b, 2) - (L - 1) * pairs_h0 are exact (bucket arithmetic, no pair
    enumeration). ``distribution`` is P(h = k) for k = 0..L: exact for k <= 1 (and for k = L when
    L = 2); for k >= 2 the mass 1 - P(h <= 1) is split by the shares of h = k among ``n_pairs``
    seeded random pairs with h >= 2, or computed over all pairs when there are at most ``n_pairs``
    of them (``distribution_exact`` says which).

    ``pair_codes`` = ``(ii, jj, exact, sub)``: the pairs of :func:`pair_rows` renumbered into the
    rows of ``sub``, their codes (a streaming pass gathers them; ``codes`` is then unused).
    """
    if buckets is None:
        codes, codebook_sizes = check_codes(codes, codebook_sizes)
        buckets = build_buckets(codes, codebook_sizes)
    n, L = buckets.n, buckets.L
    total = n * (n - 1) // 2
    h0 = hist_pairs(buckets.size_hist)
    s = sum(buckets.leave_one_out_pairs(l) for l in range(L))
    h_le1 = s - (L - 1) * h0
    dist = [0.0] * (L + 1)
    exact = True
    sampled = 0
    if total > 0:
        dist[0] = h0 / total
        if L >= 1:
            dist[1] = (h_le1 - h0) / total
        rest = max(0.0, 1.0 - dist[0] - dist[1])
        if L == 2:
            dist[2] = (total - h_le1) / total
        elif L > 2 and total - h_le1 > 0:
            if pair_codes is not None:  # the rows' codes, gathered by a streaming pass
                ii, jj, exact, codes = pair_codes
            else:
                codes = np.asarray(codes)
                ii, jj, exact = pair_rows(n, n_pairs, seed)
            sampled = int(ii.size)
            h = np.zeros(ii.size, dtype=np.int8)
            for l in range(L):
                col = codes[:, l]
                h += col[ii] != col[jj]
            hist = np.bincount(h, minlength=L + 1)[2:].astype(np.float64)
            if exact:
                for k in range(2, L + 1):
                    dist[k] = hist[k - 2] / total
            elif hist.sum() > 0:
                for k in range(2, L + 1):
                    dist[k] = rest * hist[k - 2] / hist.sum()
            else:
                dist[L] = rest
    return {
        "pairs_h0": int(h0),
        "pairs_h_le1": int(h_le1),
        "distribution": dist,
        "n_pairs_total": int(total),
        "distribution_exact": exact,
        "n_sampled_pairs": sampled,
    }


def common_prefix_length(codes: np.ndarray, i: np.ndarray, j: np.ndarray) -> np.ndarray:
    """Common-prefix length p(i, j) for row index arrays ``i`` and ``j``."""
    codes = np.asarray(codes)
    L = codes.shape[1]
    p = np.zeros(np.asarray(i).shape, dtype=np.int64)
    alive = np.ones(p.shape, dtype=bool)
    for l in range(L):
        alive &= codes[i, l] == codes[j, l]
        p += alive
    return p


def hamming_distance(codes: np.ndarray, i: np.ndarray, j: np.ndarray) -> np.ndarray:
    codes = np.asarray(codes)
    h = np.zeros(np.asarray(i).shape, dtype=np.int64)
    for l in range(codes.shape[1]):
        h += codes[i, l] != codes[j, l]
    return h
