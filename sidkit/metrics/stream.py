"""The core blocks of a SID report from a SID table streamed in record batches (bounded memory).

:func:`core_report_stream` gives the same dict as :func:`sidkit.metrics.core.core_report` on the
whole table (every number identical; tests compare them), from one pass over the batches plus a
second one over the rows of the largest buckets:

* per-level code counts are summed batch by batch;
* the bucket sizes are counted in a dense table over every possible SID when
  :func:`sidkit.metrics.buckets._dense_ok` holds (the same rule as in memory: the product of the
  codebook sizes is at most ``max(2^22, 2N)``): memory is 8 bytes per possible SID, flat in rows
  (134 MB for 256^3);
* otherwise (large codebooks) the packed 64-bit key of every row is kept, 8 bytes per row, sorted
  in place and compacted to the distinct keys and their counts (16 bytes per distinct SID);
* the item pairs of the sampled Hamming distribution are drawn up front (they depend only on N
  and the seed) and their rows' codes gathered during the pass;
* the members of the ``top_k`` largest buckets are found by a second pass that recomputes keys.

Item-id uniqueness is checked by :class:`sidkit.io.ids.UniqueIdCheck` (spilling 8 bytes per
row to disk unless the ids increase).
"""

from __future__ import annotations

import numpy as np

from sidkit.io.codes import key_space, pack_keys
from sidkit.metrics.buckets import Buckets, _dense_ok
from sidkit.metrics.collision import bucket_entries, collision_metrics, rows_with_keys, top_bucket_keys
from sidkit.metrics.diversity import diversity_metrics
from sidkit.metrics.hamming import hamming_metrics, pair_rows
from sidkit.metrics.levels import level_metrics_from_counts
from sidkit.metrics.prefix import prefix_metrics

_LEVEL_DENSE_MAX = 1 << 26


def can_stream(sizes) -> bool:
    """True when the SIDs pack into one int64 key (the streaming path needs that)."""
    return sizes is not None and key_space(sizes) is not None


def core_report_stream(stream, sizes=None, *, seed: int = 0, n_pairs: int = 1_000_000, top_k: int = 10,
                       batch_size: int = 1 << 20, spill_dir=None, check_ids: bool = True) -> dict:
    """The core report of a :class:`~sidkit.io.sidtable.SidStream` (see the module docstring).

    ``sizes``: codebook sizes (default ``stream.sizes``; one pass finds them when unknown).
    ``batch_size``: rows per record batch (memory: about 60 bytes per row of a batch).
    """
    from sidkit.io.ids import UniqueIdCheck

    sizes = list(sizes if sizes is not None else (stream.sizes or stream.scan_sizes(batch_size)))
    n, L = stream.n, stream.L
    space = key_space(sizes)
    if space is None:
        raise ValueError("the SIDs do not pack into an int64 key; use core_report on the table in memory")
    mults = [1] * L
    for l in range(L - 2, -1, -1):
        mults[l] = mults[l + 1] * sizes[l + 1]
    sid_counts = _SidCounts(n, space)
    level_counts = _LevelCounts(sizes)
    # rows whose codes the Hamming sample needs (only for L > 2)
    if L > 2 and n >= 2:
        ii, jj, exact = pair_rows(n, n_pairs, seed)
        need = np.unique(np.concatenate([ii, jj]))
        sub = np.zeros((need.size, L), np.int64)
    else:
        need = None
    ids_check = UniqueIdCheck(stream.path, n, id_col=stream.id_col, spill_dir=spill_dir) if check_ids else None
    seen = 0
    for b in stream.batches(batch_size, ids=check_ids):
        codes = b.codes
        m = codes.shape[0]
        if b.offset != seen:  # pragma: no cover - the source yields every row in order
            raise AssertionError("batches out of order")
        sid_counts.add(pack_keys(codes, sizes), b.offset)
        level_counts.add(codes)
        if need is not None:
            a, z = np.searchsorted(need, [b.offset, b.offset + m])
            sub[a:z] = codes[need[a:z] - b.offset]
        if ids_check is not None:
            ids_check.add(b.ids, b.offset)
        seen += m
    if ids_check is not None:
        ids_check.finish(stream, batch_size)
    buckets = sid_counts.buckets(L, sizes, mults)
    used = level_counts.used()
    rep: dict = {"n_items": int(n), "n_levels": int(L), "codebook_sizes": [int(s) for s in sizes]}
    col = collision_metrics(buckets=buckets, top_k=0)
    col.pop("top_buckets")
    rep["collision"] = col
    rep["levels"] = level_metrics_from_counts(used, sizes, n)
    rep["prefix"] = prefix_metrics(buckets=buckets)
    rep["diversity"] = diversity_metrics(buckets=buckets)
    pc = None
    if need is not None:
        pc = (np.searchsorted(need, ii), np.searchsorted(need, jj), exact, sub)
    rep["hamming"] = hamming_metrics(None, sizes, buckets=buckets, seed=seed, n_pairs=n_pairs, pair_codes=pc)
    rep["top_buckets"] = _top_buckets(stream, buckets, sizes, top_k, batch_size)
    return rep


class _SidCounts:
    """Items per full SID over the batches: a dense count array when the key space is small enough
    for ``n`` items, else every row's key (sorted and compacted at the end)."""

    def __init__(self, n: int, space: int):
        self.n, self.space = n, space
        self.dense_mode = _dense_ok(space, n)
        self.dense = np.zeros(space, np.int64) if self.dense_mode else None
        self.keys = None if self.dense_mode else np.empty(n, np.int64)

    def add(self, key: np.ndarray, offset: int) -> None:
        m = key.shape[0]
        if self.dense_mode:
            if self.space <= 4 * m:
                self.dense += np.bincount(key, minlength=self.space)
            else:
                u, c = np.unique(key, return_counts=True)
                self.dense[u] += c
        else:
            self.keys[offset:offset + m] = key

    def buckets(self, L: int, sizes, mults) -> Buckets:
        if self.dense_mode:
            return Buckets(self.n, L, sizes, None, True, mults, dense=self.dense)
        ukeys, counts = _compact(self.keys)
        self.keys = None
        return Buckets(self.n, L, sizes, None, True, mults, ukeys=ukeys, counts=counts)


class _LevelCounts:
    """Items per code at each level over the batches: dense counts for small codebooks, else the
    (codes, counts) of the codes seen."""

    def __init__(self, sizes):
        self.sizes = sizes
        self.level_dense = [int(k) <= _LEVEL_DENSE_MAX for k in sizes]
        self.lv = [np.zeros(int(k), np.int64) if d else (np.zeros(0, np.int64), np.zeros(0, np.int64))
                   for k, d in zip(sizes, self.level_dense)]

    def add(self, codes: np.ndarray) -> None:
        m, lv, sizes = codes.shape[0], self.lv, self.sizes
        for l in range(codes.shape[1]):
            col = codes[:, l]
            if self.level_dense[l]:
                if int(sizes[l]) <= 4 * m:
                    lv[l] += np.bincount(col, minlength=int(sizes[l]))
                else:
                    u, c = np.unique(col, return_counts=True)
                    lv[l][u] += c
            else:
                u, c = np.unique(col, return_counts=True)
                pu, pc_ = lv[l]
                allu = np.concatenate([pu, u.astype(np.int64)])
                uu, inv = np.unique(allu, return_inverse=True)
                lv[l] = (uu, np.bincount(inv.ravel(), weights=np.concatenate([pc_, c]).astype(np.float64), minlength=uu.size).astype(np.int64))

    def used(self) -> list[np.ndarray]:
        """Per level the counts of the codes in use."""
        return [c[c > 0] if d else c[1] for c, d in zip(self.lv, self.level_dense)]


def _compact(keys: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Sort ``keys`` in place and shrink it to the distinct keys; returns (ukeys, counts)."""
    n = keys.size
    keys.sort()
    first = np.empty(n, bool)
    first[0] = True
    np.not_equal(keys[1:], keys[:-1], out=first[1:])
    starts = np.flatnonzero(first)
    del first
    U = starts.size
    chunk = 1 << 22
    for a in range(0, U, chunk):  # reads lie at or after the writes: safe in place, chunk by chunk
        b = min(U, a + chunk)
        keys[a:b] = keys[starts[a:b]]
    counts = np.diff(np.append(starts, n)).astype(np.int64)
    del starts
    try:
        keys.resize(U, refcheck=False)
        ukeys = keys
    except ValueError:  # pragma: no cover - another view holds the buffer
        ukeys = keys[:U].copy()
    return ukeys, counts


def _top_buckets(stream, buckets: Buckets, sizes, top_k: int, batch_size: int, max_members: int = 20) -> list[dict]:
    keys, sizes_k = top_bucket_keys(buckets, top_k)
    if keys.size == 0:
        return []
    rows, rk, ids = [], [], []
    for b in stream.batches(batch_size):
        key = pack_keys(b.codes, sizes)
        r = rows_with_keys(key, keys)
        if r.size:
            rows.append(r + b.offset)
            rk.append(key[r])
            ids.append(np.asarray(b.ids)[r])
    rows_a = np.concatenate(rows)
    return bucket_entries(buckets, None, keys, sizes_k, rows_a, np.concatenate(rk), np.concatenate(ids),
                          max_members=max_members, ids_of_rows=True)
