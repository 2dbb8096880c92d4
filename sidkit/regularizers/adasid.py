"""AdaSID: semantic-adaptive relaxation, load-adaptive budget-preserving allocation and a
training-progress schedule (METHODS.md §4).

For every batch overlap pair (i, j) (h_ij <= h_max, current codes):

    kappa_ij = sigmoid((cos(x_i, x_j) - max(tau_i, tau_j)) / T_k)      (tau_i: k_c-th NN similarity)
    rho_ij   = 1 - kappa_ij
    g_ij     = (lambda_ij / mean lambda)^gamma_l,   lambda_i = log(1 + (n0_i - 1) + eta * sum_l (n1_li - n0_i))
    w_ij     = sum(rho) * rho_ij g_ij / sum(rho g)                       (so sum w = sum rho)
    L_rep    = sum w_ij * ell_ij / max(1, |P_b|)

with the margin kernel ell_ij = [m - d_ij]_+^2 (default) or the soft-overlap kernel, and
L = L_RQ + lambda_rep(t~) L_rep + lambda_align(t~) L_DT, t~ = max(step/T, 1 - CR_t/CR_0).
"""

from __future__ import annotations

import math
from typing import Any, Mapping

import numpy as np
import torch
import torch.nn.functional as F

from sidkit.regularizers.mining import CollisionRegularizer, code_switch_loss, knn_ip


def relaxation(s: torch.Tensor, tau: torch.Tensor, T_k: float, hard: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
    """(kappa, rho) from pair similarities s and pair thresholds tau."""
    kap = torch.sigmoid((s - tau) / T_k)
    rho = (kap < 0.5).to(s.dtype) if hard else 1.0 - kap
    return kap, rho


def budget_weights(rho: torch.Tensor, lam: torch.Tensor, gamma_l: float) -> torch.Tensor:
    """w = sum(rho) * rho * g / sum(rho * g), g = (lam / mean lam)^gamma_l; sum w = sum rho."""
    if gamma_l == 0:
        g = torch.ones_like(rho)
    else:
        g = (lam / lam.mean().clamp(min=1e-6)).clamp(min=0) ** gamma_l
    rg = rho * g
    return rho.sum() * rg / rg.sum().clamp(min=1e-12)


def item_load(n0: np.ndarray, n1: np.ndarray, eta: float) -> np.ndarray:
    """lambda_i = log(1 + (n0_i - 1) + eta * sum_l (n1_li - n0_i))."""
    return np.log1p((n0 - 1) + eta * (n1 - n0[:, None]).sum(1)).astype(np.float32)


def schedule(t: float, *, lambda_rep_max: float, lambda_align_max: float, warm=(0.05, 0.15), decay_start: float = 0.5,
             floor: float = 0.2, align_floor: float = 0.1, align_ramp_end: float = 0.7,
             constant: bool = False) -> tuple[float, float]:
    """(lambda_rep, lambda_align) at progress t in [0, 1] (METHODS.md §4.4). ``constant`` keeps
    the warm-up ramp of the repulsion and otherwise constant maximum weights."""
    t = min(1.0, max(0.0, t))
    a, b = warm
    w = 0.0 if t < a else (1.0 if t >= b or b <= a else (t - a) / (b - a))
    if constant:
        return lambda_rep_max * w, lambda_align_max
    if t < decay_start or decay_start >= 1:
        dec = 1.0
    else:
        u = (t - decay_start) / (1 - decay_start)
        dec = floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * u))
    al = lambda_align_max * (align_floor + (1 - align_floor) * min(1.0, t / align_ramp_end if align_ramp_end > 0 else 1.0))
    return lambda_rep_max * w * dec, al


class AdaSID(CollisionRegularizer):
    """AdaSID regularizer (a :class:`~sidkit.quantizers.rqvae.Regularizer`)."""

    name = "adasid"

    def __init__(self, blocks: Mapping[str, Mapping[str, Any]], **kw):
        super().__init__(blocks, **kw)
        self.cfg = self.blocks["adasid"]
        self.step_now = 0

    def setup_extra(self, X: np.ndarray, seed: int) -> None:
        c = self.cfg
        xn = self.Xn.cpu().numpy()
        k = max(int(c["k_c"]), 1)
        if self.pool is not None:  # tau_i within the refresh pool; other rows get the pool's median
            xn = xn[self.pool]
        sims, _ = knn_ip(xn, k)
        tau = sims[:, -1] if sims.shape[1] else np.ones(len(xn), np.float32)
        if self.pool is not None:
            full = np.full(self.n, float(np.median(tau)), np.float32)
            full[self.pool] = tau
            tau = full
        self.tau = torch.from_numpy(np.ascontiguousarray(tau, dtype=np.float32)).to(self.device)
        self.leaf = self.leaf_tensor() if c["taxonomy_gate"] else None
        self.load = torch.zeros(self.n, device=self.device)

    def refresh_extra(self) -> dict:
        lam = item_load(self.table.n0(), self.table.n1(), float(self.cfg["eta"]))
        if self.pool is not None:  # rows outside the refresh pool get the pool's mean load
            full = np.full(self.n, float(lam.mean()), np.float32)
            full[self.pool] = lam
            lam = full
        self.load = torch.from_numpy(lam).to(self.device)
        return {"load_mean": float(lam.mean())}

    def bucket_weights(self) -> np.ndarray:
        # n_b * exp(lambda_b), lambda_b the mean member load
        lam = self.load.cpu().numpy()
        csum = np.concatenate(([0.0], np.cumsum(lam[self.bmembers]))) if len(self.bmembers) else np.zeros(1)
        mean = (csum[self.offs + self.bsizes] - csum[self.offs]) / np.maximum(self.bsizes, 1)
        return self.bsizes * np.exp(np.minimum(mean, 30.0))

    def progress(self, step: int) -> float:
        t = step / self.total
        if self.cfg["progress"] != "steps" and self.cr0 and self.cr is not None:
            t = max(t, 1.0 - self.cr / self.cr0)
        return min(1.0, max(0.0, t))

    def weights(self, step: int) -> tuple[float, float]:
        c = self.cfg
        t = self.progress(step)
        self._t = t
        return schedule(t, lambda_rep_max=float(c["lambda_rep_max"]), lambda_align_max=float(c["lambda_align_max"]),
                        warm=c["warm"], decay_start=float(c["decay_start"]), floor=float(c["floor"]),
                        align_floor=float(c["align_floor"]), align_ramp_end=float(c["align_ramp_end"]),
                        constant=c["schedule"] == "constant")

    def pair_weights(self, gi: torch.Tensor, gj: torch.Tensor, log: dict | None = None) -> torch.Tensor:
        c = self.cfg
        if c["relax"]:
            s = self.pair_cos(gi, gj)
            tau = torch.maximum(self.tau[gi], self.tau[gj])
            kap, rho = relaxation(s, tau, float(c["T_k"]), bool(c["hard"]))
            if self.leaf is not None:
                li, lj = self.leaf[gi], self.leaf[gj]
                differ = (li >= 0) & (lj >= 0) & (li != lj)
                kap = torch.where(differ, torch.zeros_like(kap), kap)
                rho = torch.where(differ, torch.ones_like(rho), rho)
        else:
            kap = torch.zeros(len(gi), device=gi.device)
            rho = torch.ones(len(gi), device=gi.device)
        lam = 0.5 * (self.load[gi] + self.load[gj])
        w = budget_weights(rho, lam, float(c["gamma_l"]) if c["load"] else 0.0)
        if log is not None and len(gi):
            log["kappa_mean"] = float(kap.mean())
            log["rho_mean"] = float(rho.mean())
            log["progress"] = float(getattr(self, "_t", 0.0))
        return w

    def benign(self, gi: torch.Tensor, gj: torch.Tensor) -> torch.Tensor:
        if not self.cfg["relax"]:
            return torch.zeros(len(gi), dtype=torch.bool, device=gi.device)
        ok = self.pair_cos(gi, gj) >= torch.maximum(self.tau[gi], self.tau[gj])  # kappa >= 0.5
        if self.leaf is not None:  # the taxonomy gate: different leaves are never compatible
            li, lj = self.leaf[gi], self.leaf[gj]
            ok &= ~((li >= 0) & (lj >= 0) & (li != lj))
        return ok

    def pair_loss(self, step, idx, z, codes, i, j, h, log):
        gi, gj = idx[i], idx[j]
        w = self.pair_weights(gi, gj, log)
        if self.cfg["kernel"] == "soft_overlap":
            ell = self._soft_overlap(z, codes, i, j)
        elif self.cfg["kernel"] == "code_switch":
            ell = code_switch_loss(self.model, z, codes, i, j, h, float(self.cfg["switch_margin"]))
        else:
            m = self.margin(float(self.cfg["alpha_m"]), float(self.cfg["margin_fallback"]))
            log["m_max"] = m
            from sidkit.regularizers.quasid import pair_distance

            ell = F.relu(m - pair_distance(z, i, j)).pow(2)
        sw = self.semantic_weight(gi, gj, float(self.cfg["semantic_weight"]))
        if sw is not None:  # budget-preserving, like the load factor: sum(w) is unchanged
            ws = w * sw
            w = ws * (w.sum() / ws.sum().clamp(min=1e-12))
        return (w.detach() * ell).sum() / max(1, len(i))

    def _soft_overlap(self, z, codes, i, j):
        L = len(self.model.rq.levels)
        r = z
        ell = torch.zeros(len(i), device=z.device)
        for l, vq in enumerate(self.model.rq.levels):
            C = vq.codebook.detach()
            d2 = (r * r).sum(1, keepdim=True) - 2 * r @ C.t() + (C * C).sum(1)[None]
            Ta = 0.1 * d2.detach().median().clamp(min=1e-8)
            p = torch.softmax(-d2 / Ta, dim=1)
            same = (codes[i, l] == codes[j, l]).to(z.dtype)
            ell = ell + (l + 1) / L * same * (p[i] * p[j]).sum(1)
            r = r - C.index_select(0, codes[:, l])
        return ell

    def params(self) -> dict:
        return {"name": self.name, **self.blocks}
