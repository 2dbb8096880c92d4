"""Collaborative alignment (METHODS.md §1.8): :class:`DualTowerAlign` and the reader of the
training part of an interactions file.

``user2item`` (default): the user tower mean-pools sg[z_q] of the user's last ``hist_len`` TRAIN
items before the target; the positive is the target item's straight-through quantized latent
(a batch item, so gradients reach the encoder and the codebooks). ``item2item`` (also the
fallback when no example has a history): anchor and positive are items co-engaged within
``window`` positions. Loss: symmetric InfoNCE with temperature ``tau`` and in-batch negatives
(negatives that are the positive's own item are masked). The towers have their own Adam
optimizer, stepped before each trainer step with the gradients of the previous one.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

import numpy as np

from sidkit.errors import DataError


@dataclass
class TrainInteractions:
    """Training interactions as catalog row indices: ``users`` and ``items`` (int64), sorted by
    user then time; ``n_rows_total`` rows were read, ``n_rows_train`` kept."""

    users: np.ndarray
    items: np.ndarray
    n_rows_total: int
    n_rows_train: int
    source: str = ""
    n_rows_outside_sample: int | None = None  # training rows of items outside a fit's training sample (dropped)

    def summary(self) -> dict:
        out = {"path": self.source, "rows": self.n_rows_total, "train_rows": self.n_rows_train,
               "users": int(len(np.unique(self.users))) if len(self.users) else 0}
        if self.n_rows_outside_sample is not None:
            out["train_rows_outside_sample"] = self.n_rows_outside_sample
        return out


def read_train_interactions(path: str | os.PathLike, catalog_ids, in_catalog=None) -> TrainInteractions:
    """Read ``user_id``, ``item_id`` and ``split`` and/or ``timestamp``/``position``; keep the
    training part, as ``eval`` splits it (:func:`sidkit.io.interactions.split_interactions`):
    rows with split == "train"; without a split column, all but the last two interactions of each
    user by timestamp, else position, and all interactions of a user with fewer than 3. Item ids
    must all be in the catalog.

    ``in_catalog``: when ``catalog_ids`` are a fit's training sample, a function that tells which
    of some distinct ids are in the whole catalog (:func:`sidkit.io.catalog.ids_in_source`):
    ids in neither are an error; training rows of items outside the sample are dropped (the
    split is made first, on the whole log, so every user's held-out rows stay the same)."""
    import pyarrow as pa
    import pyarrow.compute as pc

    from sidkit.io.ids import map_ids
    from sidkit.io.interactions import TRAIN, read_interactions, split_interactions

    d = read_interactions(path)
    p = Path(d["path"])
    n_total = len(d["user_id"])
    items = map_ids(d["item_id"], catalog_ids)
    unknown = items < 0
    if unknown.any() and in_catalog is not None:
        outside = pc.unique(d["item_id"].filter(pa.array(unknown)))
        known = pc.is_in(d["item_id"], value_set=outside.filter(pa.array(in_catalog(outside)))).to_numpy(zero_copy_only=False)
        unknown &= ~known
    if unknown.any():
        bad = pc.unique(d["item_id"].filter(pa.array(unknown))).to_pylist()
        ex = ", ".join(repr(b) for b in bad[:3])
        raise DataError(f"{p}: {int(unknown.sum())} interaction rows ({len(bad)} distinct item ids) are not in the catalog, e.g. {ex}; "
                        "interactions must use the catalog's item ids")
    perm, users, part = split_interactions(d["user_id"], order=d["order"], split=d["split"])
    keep = part == TRAIN
    if in_catalog is None:
        return TrainInteractions(users[keep], items[perm][keep], n_total, int(keep.sum()), str(p))
    inside = items[perm] >= 0
    outside_rows = int((keep & ~inside).sum())
    keep &= inside
    return TrainInteractions(users[keep], items[perm][keep], n_total, int(keep.sum()), str(p), outside_rows)


def _examples(ti: TrainInteractions, hist_len: int):
    """user2item examples: target rows and (E, hist_len) histories (-1 padded), positions >= 1."""
    u, it = ti.users, ti.items
    n = len(u)
    if n == 0:
        return np.zeros(0, np.int64), np.zeros((0, hist_len), np.int64)
    first = np.concatenate(([True], u[1:] != u[:-1]))
    starts = np.flatnonzero(first)
    rank = np.arange(n) - np.repeat(starts, np.diff(np.append(starts, n)))
    ex = np.flatnonzero(rank >= 1)
    H = np.full((len(ex), hist_len), -1, np.int64)
    for k in range(1, hist_len + 1):
        ok = rank[ex] >= k
        H[ok, hist_len - k] = it[ex[ok] - k]
    return it[ex], H


def _cooc(ti: TrainInteractions, window: int):
    """item2item pairs (anchor, positive) within ``window`` positions of the same user, both ways."""
    u, it = ti.users, ti.items
    A, P = [], []
    for k in range(1, window + 1):
        same = u[k:] == u[:-k]
        A += [it[:-k][same], it[k:][same]]
        P += [it[k:][same], it[:-k][same]]
    if not A:
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    a, p = np.concatenate(A), np.concatenate(P)
    ok = a != p
    return a[ok], p[ok]


def _csr(keys: np.ndarray, n: int):
    order = np.argsort(keys, kind="stable")
    cnt = np.bincount(keys, minlength=n)
    offs = np.concatenate(([0], np.cumsum(cnt)[:-1]))
    return order, offs, cnt


class DualTowerAlign:
    """The alignment term L_DT (a helper of the collision regularizers, not a trainer hook)."""

    def __init__(self, ti: TrainInteractions, n_items: int, d_z: int, cfg: Mapping[str, Any], *, seed: int, device):
        import torch
        from torch import nn

        self.torch = torch
        self.cfg = dict(cfg)
        self.device = device
        self.rng = np.random.default_rng(seed + 104729)
        self.mode = cfg["mode"]
        H = int(cfg["hist_len"])
        if self.mode == "user2item":
            tgt, hist = _examples(ti, H)
            if len(tgt) == 0:
                self.mode = "item2item"
            else:
                self.hist = torch.from_numpy(hist).to(device)
                self.key, self.offs, self.cnt = _csr(tgt, n_items)
        if self.mode == "item2item":
            a, pos = _cooc(ti, int(cfg["window"]))
            self.pos = pos
            self.key, self.offs, self.cnt = _csr(a, n_items)
        self.empty = int(self.cnt.sum()) == 0
        g = torch.Generator().manual_seed(seed + 15485863)
        hid, out = int(cfg["hidden"]), int(cfg["proj_dim"])

        def tower():
            m = nn.Sequential(nn.Linear(d_z, hid), nn.ReLU(), nn.Linear(hid, out))
            with torch.no_grad():
                for p in m.parameters():
                    p.copy_(torch.randn(p.shape, generator=g) * (1.0 / max(1, p.shape[-1])) ** 0.5 if p.dim() > 1 else torch.zeros(p.shape))
            return m.to(device)

        self.item_tower = tower()
        self.user_tower = tower() if self.mode == "user2item" else None
        params = list(self.item_tower.parameters()) + (list(self.user_tower.parameters()) if self.user_tower else [])
        self.opt = torch.optim.Adam(params, lr=float(cfg["lr"]), fused=True)
        self.codes = None

    def set_codes(self, codes: np.ndarray) -> None:
        self.codes = self.torch.from_numpy(np.ascontiguousarray(codes, dtype=np.int64)).to(self.device)

    def optimizer_step(self) -> None:
        self.opt.step()
        self.opt.zero_grad(set_to_none=True)

    def _zq_of(self, rows, model):
        """sg[z_q] of catalog rows (any shape) from the refreshed codes and current codebooks."""
        flat = rows.reshape(-1).clamp(min=0)
        out = 0
        for l, vq in enumerate(model.rq.levels):
            out = out + vq.codebook.detach().index_select(0, self.codes[flat, l])
        return out.reshape(*rows.shape, -1)

    def loss(self, idx, zq, model):
        torch = self.torch
        if self.empty or self.codes is None:
            return None
        F = torch.nn.functional
        idx_np = idx.cpu().numpy()
        cnt = self.cnt[idx_np]
        rows = np.flatnonzero(cnt > 0)
        if len(rows) < 2:
            return None
        cap = int(self.cfg["batch"])
        if len(rows) > cap:
            rows = np.sort(self.rng.choice(rows, cap, replace=False))
        it = idx_np[rows]
        pick = self.key[self.offs[it] + (self.rng.random(len(rows)) * cnt[rows]).astype(np.int64)]
        rows_t = torch.from_numpy(rows).to(self.device)
        v = F.normalize(self.item_tower(zq.index_select(0, rows_t)), dim=-1)
        tau = float(self.cfg["tau"])
        if self.mode == "user2item":
            hist = self.hist[torch.from_numpy(pick).to(self.device)]
            valid = (hist >= 0).to(zq.dtype)
            hz = self._zq_of(hist, model)
            pooled = (hz * valid[..., None]).sum(1) / valid.sum(1, keepdim=True).clamp(min=1)
            a = F.normalize(self.user_tower(pooled), dim=-1)
            logits = a @ v.t() / tau  # positives are distinct batch items: no duplicate masking needed
        else:
            pos_items = torch.from_numpy(self.pos[pick]).to(self.device)
            a = F.normalize(self.item_tower(self._zq_of(pos_items, model)), dim=-1)
            logits = a @ v.t() / tau
            tgt_items = torch.from_numpy(it).to(self.device)
            dup = (pos_items[:, None] == pos_items[None, :]) | (pos_items[:, None] == tgt_items[None, :])
            eye = torch.eye(len(rows), dtype=torch.bool, device=self.device)
            logits = logits.masked_fill(dup & ~eye, float("-inf"))
        lab = torch.arange(len(rows), device=self.device)
        return 0.5 * (F.cross_entropy(logits, lab) + F.cross_entropy(logits.t(), lab))
