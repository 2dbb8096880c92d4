"""LC-Rec uniform semantic mapping (METHODS.md §1.5): Sinkhorn assignment of a batch to codes."""

from __future__ import annotations

import numpy as np


def sinkhorn_assign(dist, eps: float = 0.003, iters: int = 50):
    """Balanced assignment of B items to K codes from a (B, K) distance matrix (torch tensor).

    Distances are centred and scaled to [-1, 1], turned into Q = exp(-D'/eps) in float64, and
    alternately row- and column-normalised ``iters`` times; returns argmax_k Q[b, k] (torch long).
    """
    import torch

    D = dist.detach().double()
    mx, mn = D.max(), D.min()
    mid = (mx + mn) / 2
    amp = mx - mid + 1e-5
    D = (D - mid) / amp
    # Subtracting the row minimum keeps exp() finite for tiny eps; each row is rescaled anyway.
    logits = -D / eps
    logits = logits - logits.max()
    Q = torch.exp(logits)
    Q = Q / Q.sum().clamp_min(1e-300)
    B, K = Q.shape
    for _ in range(iters):
        Q = Q / Q.sum(dim=1, keepdim=True).clamp_min(1e-300) / B
        Q = Q / Q.sum(dim=0, keepdim=True).clamp_min(1e-300) / K
    Q = Q * B
    return Q.argmax(dim=1)


def sinkhorn_numpy(dist: np.ndarray, eps: float = 0.003, iters: int = 50) -> np.ndarray:
    import torch

    return sinkhorn_assign(torch.from_numpy(np.asarray(dist, dtype=np.float64)), eps, iters).numpy()
