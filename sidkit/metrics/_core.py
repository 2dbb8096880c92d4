"""Shared bucket arithmetic for the core SID metrics.

Everything is computed from one pass over the codes: each row is packed into one mixed-radix
int64 key, the distinct keys and their counts are found once (a dense ``np.bincount`` when the key
space is small enough, else one sort), and every prefix / leave-one-level-out grouping afterwards
works on the distinct keys only (size ``U <= N``), never on pairs.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from sidkit.errors import DataError

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
    n, L = codes.shape
    if n == 0:
        raise DataError(f"{name}: the SID table is empty; give at least one item")
    if L == 0:
        raise DataError(f"{name}: SIDs have no levels; give at least one code per item")
    mins = codes.min(axis=0)
    maxs = codes.max(axis=0)
    if codebook_sizes is None:
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
        if mins[l] < 0:
            row = int(np.flatnonzero(codes[:, l] < 0)[0])
            raise DataError(f"{name}: negative code {int(codes[row, l])} at row {row}, level {l}; codes must be >= 0")
        if maxs[l] >= sizes[l]:
            row = int(np.flatnonzero(codes[:, l] >= sizes[l])[0])
            raise DataError(
                f"{name}: code {int(codes[row, l])} at row {row}, level {l} is >= the codebook size {sizes[l]}; "
                "fix the codes or pass the right --codebook-size"
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


@dataclass
class Buckets:
    """Distinct core SIDs of a code table and the groupings derived from them.

    Attributes
    ----------
    n, L, sizes : table size, number of levels, codebook size per level.
    key : (n,) int64 per-item bucket key (equal keys <=> equal core SIDs).
    ukeys, counts : the distinct keys (sorted) and their sizes.
    prefix_counts : ``prefix_counts[l]`` = group sizes of the distinct prefixes of length ``l+1``.
    packed : True when ``key`` is the exact mixed-radix packing (then ``ukeys`` decode to codes).
    """

    n: int
    L: int
    sizes: list[int]
    key: np.ndarray
    ukeys: np.ndarray
    counts: np.ndarray
    prefix_counts: list[np.ndarray]
    packed: bool
    mults: list[int] = field(default_factory=list)
    _codes: np.ndarray | None = None

    def leave_one_out_counts(self, level: int) -> np.ndarray:
        """Group sizes of the SIDs with ``level`` removed (bucket table B1[level])."""
        L = self.L
        if L == 1:
            return np.array([self.n], dtype=np.int64)
        if level == L - 1:
            return self.prefix_counts[L - 2]
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
        key, space = _compact_key(self._codes[:, cols], [self.sizes[l] for l in cols])
        return group_counts(key, space)


def _compact_key(codes: np.ndarray, sizes: list[int]) -> tuple[np.ndarray, int]:
    """Dense per-row ids for tables whose mixed-radix key would overflow int64."""
    n = codes.shape[0]
    key = np.zeros(n, dtype=np.int64)
    space = 1
    for l in range(codes.shape[1]):
        if space * sizes[l] >= 2**62:
            _, inv = np.unique(key, return_inverse=True)
            key = inv.ravel().astype(np.int64)
            space = int(key.max()) + 1 if n else 1
        key = key * sizes[l] + codes[:, l].astype(np.int64)
        space *= sizes[l]
    return key, space


def build_buckets(codes: np.ndarray, sizes: list[int]) -> Buckets:
    """Count the distinct core SIDs of ``codes`` (validated) in one pass."""
    n, L = codes.shape
    total = 1
    for s in sizes:
        total *= s
    packed = total < 2**62
    if packed:
        mults = [1] * L
        for l in range(L - 2, -1, -1):
            mults[l] = mults[l + 1] * sizes[l + 1]
        key = codes[:, 0].astype(np.int64)
        for l in range(1, L):
            key *= sizes[l]
            key += codes[:, l]
        space = total
    else:
        mults = []
        key, space = _compact_key(codes, sizes)
    if _dense_ok(space, n):
        bc = np.bincount(key, minlength=0)
        ukeys = np.flatnonzero(bc)
        counts = bc[ukeys].astype(np.int64)
        del bc
    else:
        ukeys, counts = np.unique(key, return_counts=True)
        counts = counts.astype(np.int64)
    prefix_counts: list[np.ndarray] = []
    if packed:
        for l in range(1, L):
            pk = ukeys // mults[l - 1]
            if pk.size:
                starts = np.flatnonzero(np.concatenate(([True], pk[1:] != pk[:-1])))
                prefix_counts.append(np.add.reduceat(counts, starts))
            else:
                prefix_counts.append(np.zeros(0, np.int64))
        prefix_counts.append(counts)
    else:
        for l in range(1, L):
            pkey, pspace = _compact_key(codes[:, :l], sizes[:l])
            prefix_counts.append(group_counts(pkey, pspace))
        prefix_counts.append(counts)
    return Buckets(n=n, L=L, sizes=list(sizes), key=key, ukeys=ukeys, counts=counts,
                   prefix_counts=prefix_counts, packed=packed, mults=mults,
                   _codes=None if packed else codes)
