"""QuaSID: Hamming-guided margin repulsion (HMR) with severity-scaled margins and
conflict-aware valid-pair masking (CAVPM), plus collaborative alignment (METHODS.md §3).

L = L_RQ + lambda_HMR(t) * L_HMR + lambda_DT * L_DT, where for every batch pair (i, j) whose
current codes are within Hamming distance h_max:

    d_ij = || z_i/|z_i| - z_j/|z_j| ||,   m_ij = sigma(h_ij) * m_max,   m_max = alpha_m * median r_nn
    L_HMR = sum M_ij * [m_ij - d_ij]_+^2 / max(1, sum M_ij)

M_ij = 0 when a benign rule fires: ``dup_content`` (cos(x_i, x_j) >= 0.98), ``dup_text_hash``
(equal normalised title + description), ``same_group`` (equal group id), ``degenerate_input``
(missing text, or an input within cos 0.99 of the catalog's most frequent vector).
Only the encoder output z receives the HMR gradient.
"""

from __future__ import annotations

import hashlib
from typing import Any, Mapping

import numpy as np
import torch
import torch.nn.functional as F

from sidkit.regularizers.mining import CollisionRegularizer, code_switch_loss


def _norm_text(t) -> str:
    if t is None:
        return ""
    return " ".join(str(t).lower().split())


def text_hashes(texts) -> tuple[np.ndarray, np.ndarray]:
    """(int64 hash per item, empty flag per item) of normalised texts."""
    h = np.zeros(len(texts), np.int64)
    empty = np.zeros(len(texts), bool)
    for i, t in enumerate(texts):
        s = _norm_text(t)
        if not s:
            empty[i] = True
            h[i] = -1 - i  # unique: empty texts never match by hash
        else:
            h[i] = int.from_bytes(hashlib.blake2b(s.encode(), digest_size=8).digest(), "little", signed=True)
    return h, empty


def default_vector(Xn: np.ndarray, min_count: int = 3) -> np.ndarray | None:
    """The catalog's most frequent (exactly repeated) input vector, when it occurs at least
    ``min_count`` times (a placeholder embedding); else None."""
    if len(Xn) == 0:
        return None
    rows = np.ascontiguousarray(np.round(Xn, 5)).view(np.dtype((np.void, Xn.dtype.itemsize * Xn.shape[1]))).ravel()
    _, first, cnt = np.unique(rows, return_index=True, return_counts=True)
    b = int(np.argmax(cnt))
    return Xn[first[b]] if cnt[b] >= min_count else None


def pair_distance(z: torch.Tensor, i: torch.Tensor, j: torch.Tensor) -> torch.Tensor:
    """||z_i/|z_i| - z_j/|z_j||| for pairs (i, j) of batch rows."""
    zn = F.normalize(z, dim=-1)
    g = (zn.index_select(0, i) * zn.index_select(0, j)).sum(1)
    return (2.0 - 2.0 * g).clamp(min=0.0).add(1e-12).sqrt()


def hmr_loss(z: torch.Tensor, i: torch.Tensor, j: torch.Tensor, h: torch.Tensor, mask: torch.Tensor, m_max: float,
             h_max: int, gamma_s: float = 1.0, severity: bool = True, severity_weight: bool = False,
             weight: torch.Tensor | None = None, normalize: str = "valid") -> torch.Tensor:
    """L_HMR over pairs (i, j) with Hamming distances h and a validity mask (bool or 0/1).
    ``weight``: optional per-pair weights; ``normalize``: divide by the number of qualified pairs
    (``valid``, METHODS.md §3.3) or of qualified pairs inside their margin (``active``)."""
    d = pair_distance(z, i, j)
    if severity:
        sig = ((h_max + 1 - h.float()) / (h_max + 1)).clamp(min=0) ** gamma_s
    else:
        sig = torch.ones_like(d)
    m = sig * m_max
    ell = F.relu(m - d).pow(2)
    if severity_weight:
        ell = ell * sig
    if weight is not None:
        ell = ell * weight
    M = mask.to(ell.dtype)
    if normalize == "active":
        return (M * ell).sum() / (M * (d.detach() < m).to(ell.dtype)).sum().clamp(min=1.0)
    return (M * ell).sum() / M.sum().clamp(min=1.0)


class QuaSID(CollisionRegularizer):
    """QuaSID regularizer (a :class:`~sidkit.quantizers.rqvae.Regularizer`)."""

    name = "quasid"

    def __init__(self, blocks: Mapping[str, Mapping[str, Any]], **kw):
        super().__init__(blocks, **kw)
        self.cfg = self.blocks["quasid"]

    def setup_extra(self, X: np.ndarray, seed: int) -> None:
        c = self.cfg
        n = self.n
        dev = self.device
        self.rules: dict[str, Any] = {}
        if not c["mask"]:
            return
        if c["dup_content"] is not None:
            self.rules["dup_content"] = float(c["dup_content"])
        texts = self.catalog_info.get("texts")
        deg = np.zeros(n, bool)
        if texts is not None and len(texts) == n:
            th, empty = text_hashes(texts)
            if c["dup_text_hash"]:
                self.rules["dup_text_hash"] = torch.from_numpy(th).to(dev)
            deg |= empty
        groups = self.catalog_info.get("groups")
        if c["same_group"] and groups is not None and len(groups) == n:
            g = np.array([None if v is None or v == "" else str(v) for v in groups], dtype=object)
            gid = np.full(n, -1, np.int64)
            known = np.array([v is not None for v in g])
            if known.any():
                _, inv = np.unique(g[known].astype(str), return_inverse=True)
                gid[known] = inv
            gid[~known] = -2 - np.flatnonzero(~known)  # unique: unknown groups never match
            self.rules["same_group"] = torch.from_numpy(gid).to(dev)
        if c["degenerate_input"] is not None:
            xn = self.Xn.cpu().numpy()
            v = default_vector(xn)
            if v is not None:
                deg |= xn @ v >= float(c["degenerate_input"])
            self.rules["degenerate_input"] = torch.from_numpy(deg).to(dev)

    def weights(self, step: int) -> tuple[float, float]:
        a, b = self.cfg["warmup"]
        t = step / self.total
        ramp = 0.0 if t < a else (1.0 if t >= b or b <= a else (t - a) / (b - a))
        return float(self.cfg["lambda_hmr"]) * ramp, float(self.align_cfg["weight"])

    def valid_mask(self, gi: torch.Tensor, gj: torch.Tensor, log: dict | None = None) -> torch.Tensor:
        """M_ij (bool) for global item indices gi, gj; logs each rule's firing rate."""
        fired = torch.zeros(len(gi), dtype=torch.bool, device=gi.device)
        for name, r in self.rules.items():
            if name == "dup_content":
                f = self.pair_cos(gi, gj) >= r
            elif name == "degenerate_input":
                f = r[gi] | r[gj]
            else:
                f = r[gi] == r[gj]
            if log is not None:
                log[f"mask_{name}"] = float(f.float().mean()) if len(f) else 0.0
            fired |= f
        if log is not None:
            log["mask_rate"] = float(fired.float().mean()) if len(fired) else 0.0
        return ~fired

    def benign(self, gi: torch.Tensor, gj: torch.Tensor) -> torch.Tensor:
        return ~self.valid_mask(gi, gj)

    def pair_loss(self, step, idx, z, codes, i, j, h, log):
        gi, gj = idx[i], idx[j]
        M = self.valid_mask(gi, gj, log)
        log["qualified_pairs"] = float(M.sum())
        if self.cfg["kernel"] == "code_switch":
            ell = code_switch_loss(self.model, z, codes, i, j, h, float(self.cfg["switch_margin"]))
            if self.cfg["severity"]:
                ell = ell * ((self.h_max + 1 - h.float()) / (self.h_max + 1)).clamp(min=0) ** float(self.cfg["gamma_s"])
            Mf = M.to(ell.dtype)
            return (Mf * ell).sum() / Mf.sum().clamp(min=1.0)
        m_max = self.margin(float(self.cfg["alpha_m"]), float(self.cfg["margin_fallback"]))
        log["m_max"] = m_max
        w = self.semantic_weight(gi, gj, float(self.cfg["semantic_weight"]))
        return hmr_loss(z, i, j, h, M, m_max, self.h_max, float(self.cfg["gamma_s"]), bool(self.cfg["severity"]),
                        bool(self.cfg["severity_weight"]), w, self.cfg["normalize"])

    def params(self) -> dict:
        return {"name": self.name, **self.blocks, "rules": sorted(getattr(self, "rules", {}))}
