"""Shared bucket arithmetic for the core SID metrics.

Everything is computed from one pass over the codes: each row is packed into one mixed-radix
int64 key, the distinct keys and their counts are found once (a dense ``np.bincount`` when the key
space is small enough, else one sort), and every prefix / leave-one-level-out grouping afterwards
works on the distinct keys only (size ``U <= N``), never on pairs.
"""

from __future__ import annotations

import numpy as np

from sidkit.errors import DataError, opt
from sidkit.io.codes import table_keys

#: largest key space counted with a dense bincount is ``max(DENSE_MIN, DENSE_FACTOR * n)``.
DENSE_MIN = 1 << 22
DENSE_FACTOR = 2


def check_codes(codes, codebook_sizes=None, *, name: str = "codes") -> tuple[np.ndarray, list[int]]:
    """Validate ``codes`` (n, L) non-negative integers below ``codebook_sizes``.

    Returns the codes as an integer array and the codebook sizes as a list of ints (one per level;
    an int is broadcast). Raises :class:`~sidkit.errors.DataError` on bad values.
    """
    codes = np.asarray(codes)
    if codes.ndim != 2:
        raise DataError(f"{name}: expected a 2-d (items, levels) array of codes, got shape {codes.shape}")
    if codes.dtype.kind not in "iu":
        if codes.dtype.kind == "f" and codes.size and np.all(np.isfinite(codes)) and np.all(codes == np.round(codes)):
            codes = codes.astype(np.int64)
        elif codes.size == 0:
            codes = codes.astype(np.int64)
        else:
            raise DataError(f"{name}: codes must be integers, got dtype {codes.dtype}; convert the SID columns to integers")
    if codes.dtype.kind == "u" and codes.dtype.itemsize >= 8:
        codes = codes.astype(np.int64)  # bincount and the int64 keys need signed codes
    n, L = codes.shape
    if n == 0:
        raise DataError(f"{name}: the SID table is empty; give at least one item")
    if L == 0:
        raise DataError(f"{name}: SIDs have no levels; give at least one code per item")
    if codebook_sizes is None:
        maxs = codes.max(axis=0)
        if (codes.min(axis=0) < 0).any():
            l = int(np.flatnonzero(codes.min(axis=0) < 0)[0])
            row = int(np.flatnonzero(codes[:, l] < 0)[0])
            raise DataError(f"{name}: negative code {int(codes[row, l])} at row {row}, level {l}; codes must be >= 0")
        sizes = [int(m) + 1 for m in maxs]
    elif np.isscalar(codebook_sizes):
        sizes = [int(codebook_sizes)] * L
    else:
        sizes = [int(k) for k in codebook_sizes]
        if len(sizes) == 1 and L > 1:
            sizes = sizes * L
    if len(sizes) != L:
        raise DataError(f"{name}: {len(sizes)} codebook sizes given for {L} levels; give one size or one per level")
    for l in range(L):
        if sizes[l] < 1:
            raise DataError(f"{name}: codebook size of level {l} is {sizes[l]}; sizes must be >= 1")
        col = codes[:, l]
        if sizes[l] <= max(1 << 22, 4 * n):
            # one bincount checks both bounds (it raises on negatives; its length is max + 1)
            try:
                bad_hi = np.bincount(col).size > sizes[l]
                bad_lo = False
            except ValueError:
                bad_lo, bad_hi = True, False
        else:
            bad_lo, bad_hi = bool(col.min() < 0), bool(col.max() >= sizes[l])
        if bad_lo:
            row = int(np.flatnonzero(col < 0)[0])
            raise DataError(f"{name}: negative code {int(codes[row, l])} at row {row}, level {l}; codes must be >= 0")
        if bad_hi:
            row = int(np.flatnonzero(col >= sizes[l])[0])
            raise DataError(
                f"{name}: code {int(codes[row, l])} at row {row}, level {l} is >= the codebook size {sizes[l]}; "
                f"fix the codes or pass the right {opt('codebook_size')}"
            )
    return codes, sizes


def _dense_ok(space: int, n: int) -> bool:
    return space <= max(DENSE_MIN, DENSE_FACTOR * n)


def group_counts(keys: np.ndarray, space: int | None, weights: np.ndarray | None = None) -> np.ndarray:
    """Sizes of the groups of equal ``keys`` (int64 in ``[0, space)``), optionally weighted (int)."""
    if keys.size == 0:
        return np.zeros(0, dtype=np.int64)
    if space is not None and _dense_ok(space, keys.size):
        if weights is None:
            bc = np.bincount(keys, minlength=0)
        else:
            bc = np.bincount(keys, weights=weights)
        bc = bc[bc > 0]
        return bc.astype(np.int64)
    if weights is None:
        _, c = np.unique(keys, return_counts=True)
        return c.astype(np.int64)
    _, inv = np.unique(keys, return_inverse=True)
    return np.bincount(inv.ravel(), weights=weights).astype(np.int64)


def pairs_in(counts: np.ndarray) -> int:
    """Number of unordered pairs inside groups of the given sizes: sum C(n_b, 2)."""
    c = counts.astype(np.int64)
    return int((c * (c - 1) // 2).sum())


def entropy_nats(counts: np.ndarray, total: int | None = None) -> float:
    c = counts[counts > 0].astype(np.float64)
    if c.size == 0:
        return 0.0
    t = float(c.sum()) if total is None else float(total)
    p = c / t
    return float(-(p * np.log(p)).sum())


def hist_pairs(size_hist: np.ndarray) -> int:
    """sum_b C(n_b, 2) from a histogram of bucket sizes (index = size)."""
    s = np.arange(size_hist.size, dtype=np.int64)
    return int((size_hist.astype(np.int64) * (s * (s - 1) // 2)).sum())


def hist_entropy_nats(size_hist: np.ndarray, n: int) -> float:
    """Entropy of the distribution whose groups have the sizes in ``size_hist``."""
    s = np.flatnonzero(size_hist)
    s = s[s > 0]
    if s.size == 0 or n == 0:
        return 0.0
    p = s / float(n)
    return float(-(size_hist[s] * p * np.log(p)).sum())


class Buckets:
    """Distinct core SIDs of a code table and the groupings derived from them.

    Attributes
    ----------
    n, L, sizes : table size, number of levels, codebook size per level.
    key : (n,) int64 per-item bucket key (equal keys <=> equal core SIDs).
    size_hist : histogram of bucket sizes (index = size; index 0 unused).
    ukeys, counts : the distinct keys (sorted) and their sizes (computed on first use).
    prefix_counts : ``prefix_counts[l]`` = group sizes of the distinct prefixes of length ``l+1``.
    packed : True when ``key`` is the exact mixed-radix packing (then keys decode to codes).

    When the key space is small enough the full table of counts (``dense``, one slot per possible
    SID) is kept, and prefix and leave-one-level-out groupings are sums over its axes.
    """

    def __init__(self, n, L, sizes, key, packed, mults, dense=None, ukeys=None, counts=None, codes=None):
        self.n, self.L, self.sizes, self.key, self.packed, self.mults = n, L, list(sizes), key, packed, mults
        self.dense = dense
        self._ukeys, self._counts = ukeys, counts
        self._codes = codes
        if dense is not None:
            self.size_hist = np.bincount(dense)
        else:
            self.size_hist = np.bincount(counts)
        self.size_hist[0] = 0
        self._prefix: list[np.ndarray] | None = None

    @property
    def ukeys(self) -> np.ndarray:
        if self._ukeys is None:
            self._ukeys = np.flatnonzero(self.dense)
        return self._ukeys

    @property
    def counts(self) -> np.ndarray:
        if self._counts is None:
            self._counts = self.dense[self.ukeys]
        return self._counts

    @property
    def n_distinct(self) -> int:
        return int(self.size_hist.sum())

    @property
    def prefix_counts(self) -> list[np.ndarray]:
        """Group sizes of the distinct prefixes of every length 1..L (the last is ``counts``)."""
        return self.short_prefix_counts + [self.counts]

    @property
    def short_prefix_counts(self) -> list[np.ndarray]:
        """Group sizes of the distinct prefixes of lengths 1..L-1."""
        if self._prefix is None:
            self._prefix = self._build_prefix()
        return self._prefix

    def _build_prefix(self) -> list[np.ndarray]:
        L = self.L
        out: list[np.ndarray] = []
        if self.dense is not None:
            for l in range(1, L):
                space = 1
                for s in self.sizes[:l]:
                    space *= s
                c = self.dense.reshape(space, -1).sum(axis=1)
                out.append(c[c > 0])
        elif self.packed:
            ukeys, counts = self.ukeys, self.counts
            for l in range(1, L):
                pk = ukeys // self.mults[l - 1]
                if pk.size:
                    starts = np.flatnonzero(np.concatenate(([True], pk[1:] != pk[:-1])))
                    out.append(np.add.reduceat(counts, starts))
                else:
                    out.append(np.zeros(0, np.int64))
        else:
            for l in range(1, L):
                pkey, pspace, _ = table_keys(self._codes[:, :l], self.sizes[:l])
                out.append(group_counts(pkey, pspace))
        return out

    def leave_one_out_pairs(self, level: int) -> int:
        """sum_b C(n_b, 2) over the buckets of SIDs with ``level`` removed (table B1[level])."""
        if self.L == 1:
            return self.n * (self.n - 1) // 2
        if self.dense is not None:
            c = self.dense.reshape(self.sizes).sum(axis=level)
            return pairs_in(c.ravel())
        if self.packed and level < self.L - 1:
            got = self._sparse_loo_pairs(level)
            if got is not None:
                return got
        return pairs_in(self.leave_one_out_counts(level))

    def _sparse_loo_pairs(self, level: int) -> int | None:
        """Leave-one-out pair count on sorted distinct keys without a full re-sort."""
        ukeys, counts = self.ukeys, self.counts
        m = self.mults[level]
        k = self.sizes[level]
        lo = ukeys % m
        limit = max(DENSE_MIN, 1 << 22)
        if level > 0 and m <= limit:
            # the prefix before ``level`` is sorted: dense bincounts over slabs of prefix values
            hi = ukeys // (m * k)
            chunk = max(1, limit // m)
            first, last = int(hi[0]), int(hi[-1])
            n_slabs = (last - first) // chunk + 1
            if n_slabs <= 4096:
                edges = np.arange(first, last + chunk + 1, chunk, dtype=np.int64)
                pos = np.searchsorted(hi, edges)
                total = 0
                for a, b, e0 in zip(pos[:-1], pos[1:], edges[:-1]):
                    if a == b:
                        continue
                    local = (hi[a:b] - e0) * m + lo[a:b]
                    total += _pairs_from_float_counts(np.bincount(local, weights=counts[a:b]))
                return total
        if level == 0:
            return _slab_pairs(lo, counts, m, limit)
        return None

    def leave_one_out_counts(self, level: int) -> np.ndarray:
        """Group sizes of the SIDs with ``level`` removed (bucket table B1[level])."""
        L = self.L
        if L == 1:
            return np.array([self.n], dtype=np.int64)
        if self.dense is not None:
            c = self.dense.reshape(self.sizes).sum(axis=level).ravel()
            return c[c > 0]
        if level == L - 1:
            return self.short_prefix_counts[L - 2]
        if self.packed:
            m = self.mults[level]
            k = self.sizes[level]
            hi = self.ukeys // (m * k)
            lo = self.ukeys % m
            kw = hi * m + lo
            space = 1
            for i, s in enumerate(self.sizes):
                if i != level:
                    space *= s
            return group_counts(kw, space, weights=self.counts)
        cols = [l for l in range(L) if l != level]
        key, space, _ = table_keys(self._codes[:, cols], [self.sizes[l] for l in cols])
        return group_counts(key, space)


def _slab_pairs(kw: np.ndarray, weights: np.ndarray, space: int, limit: int) -> int | None:
    """sum over groups of equal ``kw`` (in ``[0, space)``) of C(sum of weights, 2), by a 16-bit radix
    partition into slabs of ``limit`` key values and one dense bincount per slab (no sort)."""
    n_slabs = -(-space // limit)
    if n_slabs > 65535:
        return None
    total = 0
    if n_slabs == 1:
        return _pairs_from_float_counts(np.bincount(kw, weights=weights))
    sid = (kw // limit).astype(np.uint16)
    order = np.argsort(sid, kind="stable")  # radix sort for 16-bit keys
    bounds = np.concatenate(([0], np.cumsum(np.bincount(sid, minlength=n_slabs))))
    del sid
    kw_s = kw[order]
    w_s = weights[order]
    del order
    for j in range(n_slabs):
        a, b = bounds[j], bounds[j + 1]
        if a == b:
            continue
        total += _pairs_from_float_counts(np.bincount(kw_s[a:b] - j * limit, weights=w_s[a:b]))
    return total


def _pairs_from_float_counts(bc: np.ndarray) -> int:
    """sum C(c, 2) for integral float64 counts: (c.c - sum c) / 2, exact while c.c < 2**53."""
    sq = float(np.dot(bc, bc))
    if sq < 2.0**52:
        return int(round((sq - float(bc.sum())) / 2))
    c = bc.astype(np.int64)
    return int((c * (c - 1) // 2).sum())


def build_buckets(codes: np.ndarray, sizes: list[int]) -> Buckets:
    """Count the distinct core SIDs of ``codes`` (validated) in one pass."""
    n, L = codes.shape
    key, space, packed = table_keys(codes, sizes)
    mults = []
    if packed:
        mults = [1] * L
        for l in range(L - 2, -1, -1):
            mults[l] = mults[l + 1] * sizes[l + 1]
    if packed and _dense_ok(space, n):
        dense = np.bincount(key, minlength=space)
        return Buckets(n, L, sizes, key, packed, mults, dense=dense)
    sk = np.sort(key)
    starts = np.flatnonzero(np.concatenate(([True], sk[1:] != sk[:-1])))
    ukeys = sk[starts]
    counts = np.diff(np.append(starts, n)).astype(np.int64)
    del sk
    return Buckets(n, L, sizes, key, packed, mults, ukeys=ukeys, counts=counts,
                   codes=None if packed else codes)
