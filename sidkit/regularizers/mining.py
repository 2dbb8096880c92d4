"""Global SID table, bucket tables, pair mining and the collision-aware batch sampler
(METHODS.md §1.7), plus :class:`CollisionRegularizer`, the base that QuaSID and AdaSID share.

Bucket tables use packed int64 keys: ``B0`` groups items by their full SID (members have
h = 0), ``B1[l]`` by the SID with position l removed (members have h <= 1). Exact pair counts
come from the bucket sizes, without enumerating pairs.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Callable, Mapping, Sequence

import numpy as np
import torch

from sidkit.metrics.knn import drop_self
from sidkit.quantizers.rqvae import Regularizer


def _packable(sizes: Sequence[int]) -> bool:
    """Whether the SID key over codebooks of these sizes is one int64."""
    from sidkit.io.codes import key_space

    return key_space(sizes) is not None


def _pack(codes: np.ndarray, sizes: Sequence[int]) -> np.ndarray:
    """Exact int64 key per row (sidkit.io.codes.table_keys)."""
    from sidkit.io.codes import table_keys

    codes = np.asarray(codes)
    if codes.shape[1] == 0:
        return np.zeros(codes.shape[0], np.int64)
    return table_keys(codes, [int(k) for k in sizes])[0]


@dataclass
class KeyGroups:
    """Items grouped by key: ``inv`` (bucket id per item), ``sizes`` (n_b), ``order`` (items sorted
    by bucket) and ``starts`` (offset of each bucket in ``order``)."""

    inv: np.ndarray
    sizes: np.ndarray
    order: np.ndarray
    starts: np.ndarray

    @classmethod
    def from_keys(cls, key: np.ndarray) -> "KeyGroups":
        t = torch.from_numpy(np.ascontiguousarray(key))
        _, inv, cnt = torch.unique(t, return_inverse=True, return_counts=True)
        inv = inv.numpy().astype(np.int64)
        sizes = cnt.numpy().astype(np.int64)
        order = np.argsort(inv, kind="stable")
        starts = np.concatenate(([0], np.cumsum(sizes)[:-1])).astype(np.int64)
        return cls(inv, sizes, order, starts)

    def members(self, b: int) -> np.ndarray:
        return self.order[self.starts[b]:self.starts[b] + self.sizes[b]]


def _c2(n: np.ndarray) -> int:
    n = np.asarray(n, dtype=np.int64)
    return int((n * (n - 1) // 2).sum())


class SIDTable:
    """The codes S (N, L) of the whole catalog with the bucket tables B0 and B1[l]."""

    def __init__(self, codes: np.ndarray, sizes: Sequence[int]):
        self.codes = np.ascontiguousarray(codes, dtype=np.int32)
        self.sizes = [int(k) for k in sizes]
        n, L = self.codes.shape
        self.L = L
        self.b0 = KeyGroups.from_keys(_pack(self.codes, self.sizes))
        self.b1 = []
        for l in range(L):
            keep = [m for m in range(L) if m != l]
            self.b1.append(KeyGroups.from_keys(_pack(self.codes[:, keep], [self.sizes[m] for m in keep])))

    # --- exact counts (no enumeration) -----------------------------------------------------
    def pair_counts(self) -> tuple[int, int]:
        """(#pairs with h = 0, #pairs with h <= 1) over the whole catalog."""
        h0 = _c2(self.b0.sizes)
        s1 = sum(_c2(b.sizes) for b in self.b1)
        return h0, s1 - (self.L - 1) * h0

    def collision_rate(self) -> float:
        from sidkit.metrics.collision import rate

        return rate(len(self.codes), len(self.b0.sizes))

    def n0(self) -> np.ndarray:
        """Size of each item's full-SID bucket."""
        return self.b0.sizes[self.b0.inv]

    def n1(self) -> np.ndarray:
        """(N, L): size of each item's B1[l] bucket."""
        return np.stack([b.sizes[b.inv] for b in self.b1], 1)

    # --- pair enumeration (capped) -----------------------------------------------------------
    def mine_pairs(self, h_max: int = 1, cap: int = 64, rng: np.random.Generator | None = None):
        """Sampled low-Hamming pairs (i, j, h): all pairs inside every B0 bucket (h = 0) and, when
        ``h_max >= 1``, inside every B1[l] bucket for members that differ at l (h = 1); at most
        ``cap`` pairs per bucket, drawn uniformly."""
        rng = rng or np.random.default_rng(0)
        I, J, H = [], [], []

        def from_buckets(bk: KeyGroups, level: int | None):
            for b in np.flatnonzero(bk.sizes >= 2):
                m = bk.members(b)
                s = len(m)
                if s * (s - 1) // 2 <= cap:
                    a, c = np.triu_indices(s, 1)
                else:
                    a = rng.integers(0, s, size=4 * cap)
                    c = (a + rng.integers(1, s, size=4 * cap)) % s
                    lo, hi = np.minimum(a, c), np.maximum(a, c)
                    u = np.unique(lo * s + hi)[:cap]
                    rng.shuffle(u)
                    a, c = u // s, u % s
                i, j = m[a], m[c]
                if level is not None:
                    diff = self.codes[i, level] != self.codes[j, level]
                    i, j = i[diff], j[diff]
                    if len(i) > cap:
                        i, j = i[:cap], j[:cap]
                I.append(i); J.append(j); H.append(np.full(len(i), 0 if level is None else 1))

        from_buckets(self.b0, None)
        if h_max >= 1:
            for l, bk in enumerate(self.b1):
                from_buckets(bk, l)
        if not I:
            z = np.zeros(0, np.int64)
            return z, z, z
        return np.concatenate(I), np.concatenate(J), np.concatenate(H)

    def collision_buckets(self, h_max: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Buckets with >= 2 members, as one flat list: (offsets into ``members``, sizes, members).
        B0 buckets, plus B1[l] buckets when ``h_max >= 1``."""
        tables = [self.b0] + (self.b1 if h_max >= 1 else [])
        offs, sizes, members = [], [], []
        base = 0
        for bk in tables:
            sel = np.flatnonzero(bk.sizes >= 2)
            if len(sel) == 0:
                continue
            sz = bk.sizes[sel]
            # members of the selected buckets, contiguous
            mem = np.concatenate([bk.order[bk.starts[b]:bk.starts[b] + bk.sizes[b]] for b in sel]) if len(sel) < 64 else \
                bk.order[np.repeat(bk.starts[sel], sz) + _ranks(sz)]
            offs.append(base + np.concatenate(([0], np.cumsum(sz)[:-1])))
            sizes.append(sz)
            members.append(mem)
            base += int(sz.sum())
        if not offs:
            z = np.zeros(0, np.int64)
            return z, z, z
        return np.concatenate(offs), np.concatenate(sizes), np.concatenate(members)


def _ranks(sizes: np.ndarray) -> np.ndarray:
    """0..s-1 for each size s, concatenated."""
    total = int(sizes.sum())
    starts = np.concatenate(([0], np.cumsum(sizes)[:-1]))
    return np.arange(total) - np.repeat(starts, sizes)


def brute_force_pair_counts(codes: np.ndarray) -> tuple[int, int]:
    """Reference O(N^2) counts of pairs with h = 0 and h <= 1 (tests)."""
    c = np.asarray(codes)
    h0 = h1 = 0
    for i in range(len(c) - 1):
        h = (c[i + 1:] != c[i]).sum(1)
        h0 += int((h == 0).sum())
        h1 += int((h <= 1).sum())
    return h0, h1


# ---------------------------------------------------------------------------------------------
def knn_ip(X: np.ndarray, k: int, queries: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Inner-product kNN of every row of X (or of the rows ``queries`` only) against X, self
    excluded: (sims (Q, k), nbrs (Q, k)). Flat index up to 2e6 rows, IVF beyond (METHODS.md §1.7d)."""
    import faiss

    X = np.ascontiguousarray(X, dtype=np.float32)
    n, d = X.shape
    k = min(k, n - 1)
    q = n if queries is None else len(queries)
    if k < 1:
        return np.zeros((q, 0), np.float32), np.zeros((q, 0), np.int64)
    if n <= 2_000_000:
        index = faiss.IndexFlatIP(d)
    else:  # pragma: no cover - large catalogs
        nlist = int(4 * math.sqrt(n))
        index = faiss.IndexIVFFlat(faiss.IndexFlatIP(d), d, nlist, faiss.METRIC_INNER_PRODUCT)
        index.train(X[np.random.default_rng(0).choice(n, min(n, 256 * nlist), replace=False)])
        index.nprobe = 32
    index.add(X)
    qrows = np.arange(n) if queries is None else np.asarray(queries, np.int64)
    sims, nbrs = index.search(X if queries is None else X[qrows], k + 1)
    nbrs, sims = drop_self(nbrs, sims, qrows)
    return sims, nbrs


def nearest_other_sid_distance(Zn: np.ndarray, table: SIDTable, k: int = 10,
                               queries: np.ndarray | None = None) -> np.ndarray:
    """r_nn(i): latent distance from i to its nearest item with a different SID among its k
    nearest latents (the k-th distance when all k share i's SID), for every row or for the rows
    ``queries`` (searched against every row)."""
    sims, nbrs = knn_ip(Zn, k, queries)
    if sims.shape[1] == 0:
        return np.zeros(len(Zn) if queries is None else len(queries), np.float32)
    d = np.sqrt(np.clip(2.0 - 2.0 * sims, 0.0, None))
    bid = table.b0.inv
    own = bid if queries is None else bid[np.asarray(queries, np.int64)]
    other = bid[nbrs] != own[:, None]
    first = np.where(other.any(1), other.argmax(1), other.shape[1] - 1)
    return d[np.arange(len(d)), first].astype(np.float32)


# ---------------------------------------------------------------------------------------------
def _pairs_in_groups(key: torch.Tensor, cap: int, gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor, int]:
    """Pairs (a, b) of batch rows with equal ``key``: all of them, or ``cap`` drawn uniformly (with
    replacement) when there are more. Returns (a, b, number of pairs there are)."""
    dev = key.device
    B = len(key)
    sk, order = torch.sort(key, stable=True)
    _, inv, cnt = torch.unique_consecutive(sk, return_inverse=True, return_counts=True)
    n_pairs = int((cnt * (cnt - 1) // 2).sum())
    if n_pairs == 0:
        e = torch.zeros(0, dtype=torch.long, device=dev)
        return e, e, 0
    starts = torch.cumsum(cnt, 0) - cnt
    if n_pairs <= cap:
        rank = torch.arange(B, device=dev) - starts[inv]
        partners = cnt[inv] - 1 - rank              # later members of the same group
        sel = torch.nonzero(partners > 0).flatten()
        rep = partners[sel]
        a = torch.repeat_interleave(sel, rep)
        first = torch.cumsum(rep, 0) - rep
        b = a + 1 + torch.arange(len(a), device=dev) - torch.repeat_interleave(first, rep)
    else:
        # a uniform sample of pairs: a group with probability C(n_g, 2) / total, then two
        # distinct members of it
        c2 = (cnt * (cnt - 1) // 2).double().cpu()
        g = torch.multinomial(c2, cap, replacement=True, generator=gen).to(dev)
        n = cnt[g]
        u = torch.rand(cap, generator=gen).to(dev)
        v = torch.rand(cap, generator=gen).to(dev)
        ra = (u * n).long().clamp(max=n - 1)
        rb = (ra + 1 + (v * (n - 1)).long().clamp(max=n - 2)) % n
        a, b = starts[g] + ra, starts[g] + rb
    return order[a], order[b], n_pairs


def batch_pairs(codes: torch.Tensor, sizes: Sequence[int], h_max: int, cap: int = 8192,
                gen: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, int]:
    """Batch pairs (i, j, h) with Hamming distance h <= h_max between their codes (B, L), i < j.

    Pairs come from sorting packed keys, per the bucket tables of METHODS.md §1.7: the full SID
    (h = 0) and, for h_max = 1, the SID with level l removed (pairs that differ exactly at l), so
    the cost is O(B log B + pairs) instead of a (B, B) Hamming matrix. For h_max >= 2 the
    Hamming matrix is used. When a key has more than ``cap`` pairs, ``cap`` of them are drawn
    uniformly (the losses are means over pairs, so the estimate stays unbiased).
    Returns (i, j, h, the number of pairs before capping)."""
    gen = gen if gen is not None else torch.Generator().manual_seed(0)
    B, L = codes.shape
    dev = codes.device
    codes = codes.long()
    if h_max >= 2 or not _packable(sizes) or L < 2:
        Hm = torch.zeros((B, B), dtype=torch.uint8, device=dev)
        for l in range(L):
            Hm += codes[:, l, None] != codes[None, :, l]
        i, j = torch.triu(Hm <= h_max, diagonal=1).nonzero(as_tuple=True)
        n_pairs = len(i)
        if n_pairs > cap:
            keep = torch.randperm(n_pairs, generator=gen)[:cap].to(dev)
            i, j = i[keep], j[keep]
        return i, j, Hm[i, j].long(), n_pairs

    def pack(levels):
        key = torch.zeros(B, dtype=torch.long, device=dev)
        for m in levels:
            key = key * int(sizes[m]) + codes[:, m]
        return key

    I, J, H, total = [], [], [], 0
    a, b, n0 = _pairs_in_groups(pack(range(L)), cap, gen)
    I.append(a); J.append(b); H.append(torch.zeros(len(a), dtype=torch.long, device=dev))
    total += n0
    if h_max >= 1:
        for l in range(L):
            a, b, n1 = _pairs_in_groups(pack([m for m in range(L) if m != l]), cap, gen)
            diff = codes[a, l] != codes[b, l]  # h = 1 exactly: the h = 0 pairs are counted once above
            I.append(a[diff]); J.append(b[diff]); H.append(torch.ones(int(diff.sum()), dtype=torch.long, device=dev))
            total += n1 - n0  # exact count with h <= 1: n0 + sum over l of (n1_l - n0)
    i, j, h = torch.cat(I), torch.cat(J), torch.cat(H)
    lo, hi = torch.minimum(i, j), torch.maximum(i, j)
    if len(lo) > cap:
        keep = torch.randperm(len(lo), generator=gen)[:cap].to(dev)
        lo, hi, h = lo[keep], hi[keep], h[keep]
    return lo, hi, h, total


# ---------------------------------------------------------------------------------------------
class CollisionRegularizer(Regularizer):
    """Shared machinery of QuaSID and AdaSID: periodic SID-table refresh, the collision-aware
    batch sampler, the in-batch Hamming matrix and the collaborative alignment term.

    Subclasses implement :meth:`pair_loss` (the repulsion on the batch overlap pairs) and
    :meth:`weights` (the repulsion and alignment weights at a step)."""

    name = "collision"

    def __init__(self, blocks: Mapping[str, Mapping[str, Any]], *, catalog_info: Mapping[str, Any] | None = None,
                 interactions=None):
        self.blocks = {k: dict(v) for k, v in blocks.items()}
        self.mining = self.blocks["mining"]
        self.align_cfg = self.blocks["align"]
        self.catalog_info = dict(catalog_info or {})
        self.interactions = interactions
        self.h_max = int(self.mining["h_max"])
        self.table: SIDTable | None = None
        self.rnn_median: float | None = None
        self.cr0: float | None = None
        self.cr: float | None = None
        self.last_refresh = -1
        self.refresh_count = 0
        self.align = None
        self._acc: dict[str, list[float]] = {}
        self._refresh_stats: dict[str, Any] = {}

    # --- hooks -----------------------------------------------------------------------------
    def setup(self, X, model, *, total_steps, batch_size, seed, device):
        self.model = model
        self.device = device
        self.total = max(1, int(total_steps))
        self.n = X.shape[0]
        self.sizes = [int(vq.codebook.shape[0]) for vq in model.rq.levels]
        self.seed = int(seed)
        self.rng = np.random.default_rng(seed + 7919)
        self.tgen = torch.Generator().manual_seed(seed + 104729)
        steps_per_epoch = max(1, math.ceil(self.n / batch_size))
        r = self.mining["refresh_every"]
        every = steps_per_epoch if r == "epoch" else max(steps_per_epoch, 50) if r == "auto" else int(r)
        self.refresh_every = min(every, 1000)
        self.Xn = torch.from_numpy(np.ascontiguousarray(X / np.maximum(np.linalg.norm(X, axis=1, keepdims=True), 1e-12),
                                                        dtype=np.float32)).to(device)
        self.zq_all = None
        # the refresh pool: with more training rows than mining.refresh_pool, the SID table (and
        # everything built from it: collision buckets, r_nn, AdaSID's tau and loads) covers a
        # seeded subset of that many rows, so a refresh costs the same at any row count
        cap = int(self.mining["refresh_pool"])
        self.pool = np.sort(np.random.default_rng(seed + 2_038_074_743).choice(self.n, cap, replace=False)) \
            if self.n > cap else None
        if self.interactions is not None and self.align_cfg["enabled"]:
            from sidkit.regularizers.align import DualTowerAlign

            self.align = DualTowerAlign(self.interactions, self.n, model.rq.levels[0].codebook.shape[1], self.align_cfg,
                                        seed=seed, device=device)
        self.setup_extra(X, seed)
        self._setup_conflicts(seed)

    def setup_extra(self, X: np.ndarray, seed: int) -> None:
        pass

    # --- checkpoint selection ----------------------------------------------------------------
    def _setup_conflicts(self, seed: int) -> None:
        """Leaf-category ids (-1 unknown) and the 'unrelated' cosine: the median cosine of random
        pairs + 0.1 (the conflict rule of METHODS.md §6.1)."""
        self.leaf_ids = self.leaf_tensor()
        from sidkit.metrics.hamming import sample_pairs

        if self.n < 2:
            self.unrelated_cos = -1.0
            return
        a, b = sample_pairs(self.n, 20_000, np.random.default_rng(seed + 15485863))
        cos = self.pair_cos(torch.from_numpy(a).to(self.device), torch.from_numpy(b).to(self.device))
        self.unrelated_cos = float(cos.median()) + 0.1

    def leaf_tensor(self) -> torch.Tensor | None:
        """Leaf-category id per item (-1 unknown) from ``catalog_info['leaf']``, or None."""
        leaf = self.catalog_info.get("leaf")
        if leaf is None or len(leaf) != self.n:
            return None
        arr = np.array(["" if v is None else str(v) for v in leaf], dtype=object)
        _, inv = np.unique(arr.astype(str), return_inverse=True)
        lid = inv.astype(np.int64)
        lid[arr == ""] = -1
        return torch.from_numpy(lid).to(self.device)

    def benign(self, gi: torch.Tensor, gj: torch.Tensor) -> torch.Tensor:
        """Pairs this method lets share a SID (QuaSID: a CAVPM rule fires; AdaSID: compatible)."""
        return torch.zeros(len(gi), dtype=torch.bool, device=gi.device)

    def checkpoint_conflicts(self, codes: np.ndarray, rows: np.ndarray | None) -> int:
        """Exact-collision pairs (at most ``cap_per_bucket`` per bucket) that are not benign by
        this method's rules and look unrelated: different leaf categories, or a cosine below the
        median of random pairs + 0.1. ``mining.checkpoint = "conflicts"`` selects the checkpoint
        with the fewest."""
        if self.mining["checkpoint"] != "conflicts" or len(codes) < 2:
            return 0
        i, j, _ = SIDTable(codes, self.sizes).mine_pairs(0, int(self.mining["cap_per_bucket"]), np.random.default_rng(0))
        if len(i) == 0:
            return 0
        if rows is not None:
            i, j = rows[i], rows[j]
        gi = torch.from_numpy(np.asarray(i, np.int64)).to(self.device)
        gj = torch.from_numpy(np.asarray(j, np.int64)).to(self.device)
        unrelated = self.pair_cos(gi, gj) < self.unrelated_cos
        if self.leaf_ids is not None:
            li, lj = self.leaf_ids[gi], self.leaf_ids[gj]
            unrelated |= (li >= 0) & (lj >= 0) & (li != lj)
        return int((unrelated & ~self.benign(gi, gj)).sum())

    def before_step(self, step: int, encode_all: Callable[..., tuple[np.ndarray, np.ndarray]]) -> None:
        if self.align is not None:
            self.align.optimizer_step()
        if self.last_refresh < 0 or step - self.last_refresh >= self.refresh_every:
            if self.pool is None:
                self.refresh(step, *encode_all())
            elif self.align is not None:  # the alignment term reads the codes of every row
                codes, z = encode_all()
                self.refresh(step, codes[self.pool], z[self.pool], all_codes=codes)
            else:
                self.refresh(step, *encode_all(self.pool))

    def to_global(self, rows: np.ndarray) -> np.ndarray:
        """Training-row numbers of SID-table rows (the same numbers without a refresh pool)."""
        return rows if self.pool is None else self.pool[rows]

    def refresh(self, step: int, codes: np.ndarray, z: np.ndarray, all_codes: np.ndarray | None = None) -> None:
        """Rebuild the SID table from the codes and latents of the table rows (every training
        row, or the refresh pool)."""
        self.last_refresh = step
        self.refresh_count += 1
        self.table = SIDTable(codes, self.sizes)
        zn = z / np.maximum(np.linalg.norm(z, axis=1, keepdims=True), 1e-12)
        nq = int(self.mining["rnn_queries"])
        queries = None if len(zn) <= nq else \
            np.sort(np.random.default_rng(self.seed + 1_000_003 * self.refresh_count).choice(len(zn), nq, replace=False))
        rnn = nearest_other_sid_distance(zn.astype(np.float32), self.table, int(self.mining["rnn_k"]), queries)
        self.rnn_median = float(np.median(rnn)) if len(rnn) else None
        self.cr = self.table.collision_rate()
        if self.cr0 is None:
            self.cr0 = self.cr
        h0, h1 = self.table.pair_counts()
        self.offs, self.bsizes, self.bmembers = self.table.collision_buckets(self.h_max)
        self.bmembers = self.to_global(self.bmembers)
        self.bucket_prob = self.bucket_weights()
        if self.align is not None:
            self.align.set_codes(codes if all_codes is None else all_codes)
        stats = {"refresh_step": step, "refresh_collision_rate": self.cr, "pairs_h0": h0, "pairs_h_le1": h1,
                 "r_nn_median": self.rnn_median if self.rnn_median is not None else float("nan")}
        if self.pool is not None:
            stats["refresh_rows"] = len(codes)
        for l, k in enumerate(self.sizes):
            cnt = np.bincount(codes[:, l], minlength=k)
            p = cnt[cnt > 0] / max(1, len(codes))
            stats[f"util_l{l}"] = float((cnt > 0).mean())
            stats[f"nppl_l{l}"] = float(np.exp(-(p * np.log(p)).sum()) / k)
        stats.update(self.refresh_extra())
        self._refresh_stats = stats

    def refresh_extra(self) -> dict:
        return {}

    def bucket_weights(self) -> np.ndarray:
        """Sampling weight of each collision bucket: n_b - 1 (QuaSID); AdaSID overrides."""
        return (self.bsizes - 1).astype(np.float64)

    def sample_batch(self, step: int, batch_size: int, gen: torch.Generator) -> torch.Tensor | None:
        psi = float(self.mining["collision_batch_frac"])
        n = self.n
        if psi <= 0 or self.table is None or len(self.bsizes) == 0:
            return None
        per = int(self.mining["members_per_bucket"])
        want = int(round(psi * batch_size))
        p = self.bucket_prob
        tot = p.sum()
        picked = np.zeros(0, np.int64)
        if tot > 0 and want > 0:
            nb = max(1, math.ceil(want / min(per, max(2.0, float(np.average(self.bsizes, weights=p))))))
            b = self.rng.choice(len(p), size=nb, p=p / tot)
            sz = self.bsizes[b]
            take = np.minimum(sz, per)
            # `take` distinct members per bucket: a random rotation of the bucket's member list
            start = self.rng.integers(0, sz)
            pos = np.repeat(self.offs[b], take) + (np.repeat(start, take) + _ranks(take)) % np.repeat(sz, take)
            picked = np.unique(self.bmembers[pos])[:want] if len(pos) else picked
        if len(picked) > want:
            picked = self.rng.choice(picked, size=want, replace=False)
        rest = batch_size - len(picked)
        if rest > 0 and self.pool is not None:
            # O(batch) uniform fill (the mask below is O(rows) per step): distinct rows in a random
            # order, minus the picked ones, are a uniform sample of the rest
            cand = self.rng.choice(n, size=min(n, rest + len(picked)), replace=False)
            fill = cand[~np.isin(cand, picked)][:rest]
            picked = np.concatenate([picked, fill])
        elif rest > 0:
            pool_mask = np.ones(n, bool)
            pool_mask[picked] = False
            pool = np.flatnonzero(pool_mask)
            fill = self.rng.choice(pool, size=min(rest, len(pool)), replace=False)
            picked = np.concatenate([picked, fill])
        return torch.from_numpy(np.sort(picked).astype(np.int64))

    # --- the loss ----------------------------------------------------------------------------
    def weights(self, step: int) -> tuple[float, float]:
        raise NotImplementedError

    def pair_loss(self, step: int, idx: torch.Tensor, z: torch.Tensor, codes: torch.Tensor, i: torch.Tensor,
                  j: torch.Tensor, h: torch.Tensor, log: dict) -> torch.Tensor | None:
        raise NotImplementedError

    def pair_cos(self, gi: torch.Tensor, gj: torch.Tensor) -> torch.Tensor:
        """cos(x_i, x_j) of the frozen inputs for pairs of global indices (row-wise dot products:
        the pair count per step is capped by ``mining.max_pairs``)."""
        return (self.Xn.index_select(0, gi) * self.Xn.index_select(0, gj)).sum(1)

    def semantic_weight(self, gi: torch.Tensor, gj: torch.Tensor, gamma: float) -> torch.Tensor | None:
        """Per-pair weight 1 + gamma (1 - cos(x_i, x_j)): unrelated collisions get more force
        (None when gamma is 0)."""
        return 1.0 + gamma * (1.0 - self.pair_cos(gi, gj)).clamp(min=0.0) if gamma > 0 else None

    def margin(self, alpha: float, fallback: float) -> float:
        return alpha * self.rnn_median if self.rnn_median else fallback

    def loss(self, step, idx, x, z, zq, codes):
        lam_rep, lam_align = self.weights(step)
        log: dict[str, float] = {"lambda_rep": lam_rep, "lambda_align": lam_align if self.align is not None else 0.0}
        total = None
        i, j, h, n_pairs = batch_pairs(codes, self.sizes, self.h_max, int(self.mining["max_pairs"]), self.tgen)
        log["batch_pairs"] = float(n_pairs)
        log["batch_pairs_h0"] = float((h == 0).sum()) if n_pairs == len(i) else float("nan")
        if lam_rep > 0 and len(i):
            rep = self.pair_loss(step, idx, z, codes, i, j, h, log)
            if rep is not None:
                log["loss_rep"] = float(rep.detach())
                total = lam_rep * rep
        if self.align is not None and lam_align > 0:
            al = self.align.loss(idx, zq, self.model)
            if al is not None:
                log["loss_align"] = float(al.detach())
                total = lam_align * al if total is None else total + lam_align * al
        for k, v in log.items():
            self._acc.setdefault(k, []).append(v)
        return total, {}

    def state(self) -> dict:
        out = dict(self._refresh_stats)
        for k, v in self._acc.items():
            out[k] = float(np.mean(v)) if v else float("nan")
        self._acc = {}
        return out


def code_switch_loss(model, z: torch.Tensor, codes: torch.Tensor, i: torch.Tensor, j: torch.Tensor,
                     h: torch.Tensor, delta: float = 0.05) -> torch.Tensor:
    """Per-pair 'code switch' kernel (sidkit variant, see the issue note): for an overlapping pair
    (i, j), the member that is cheaper to move is pulled across the boundary between its code and
    its second-nearest code at the finest level where the pair agrees, by a relative margin delta:
    ell = [ (||r - e_own||^2 - ||r - e_2nd||^2) / s + delta ]_+ with s the median squared distance
    of the batch to the own code. Codebooks are detached: only the encoder moves. Returns (P,)."""
    L = codes.shape[1]
    # the finest level where the pair shares its code
    same = codes[i] == codes[j]                                     # (P, L)
    lev = torch.where(same, torch.arange(L, device=z.device)[None], torch.full_like(same, -1, dtype=torch.long)).max(1).values
    r = z
    gaps, d_own_all = [], []
    for l, vq in enumerate(model.rq.levels):
        C = vq.codebook.detach()
        d2 = (r * r).sum(1, keepdim=True) - 2 * r @ C.t() + (C * C).sum(1)[None]
        own = d2.gather(1, codes[:, l:l + 1]).squeeze(1)
        masked = d2.scatter(1, codes[:, l:l + 1], float("inf"))
        second = masked.min(1).values
        gaps.append(own - second)                                   # <= 0; 0 at the boundary
        d_own_all.append(own)
        r = r - C.index_select(0, codes[:, l])
    G = torch.stack(gaps, 1)                                        # (B, L)
    scale = torch.stack(d_own_all, 1).detach().median().clamp(min=1e-8)
    lv = lev.clamp(min=0)
    gi = G[i, lv]
    gj = G[j, lv]
    move_i = gi.detach() >= gj.detach()                             # the cheaper one to move
    g = torch.where(move_i, gi, gj)
    ell = torch.relu(g / scale + delta)
    return torch.where(lev >= 0, ell, torch.zeros_like(ell))
