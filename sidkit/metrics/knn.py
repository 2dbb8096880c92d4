"""Nearest-neighbour results: the one rule for leaving the query item out of its own list."""

from __future__ import annotations

import numpy as np


def drop_self(nbrs: np.ndarray, sims: np.ndarray, queries: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The (Q, kk) neighbour lists of rows ``queries`` (searched with one neighbour more than
    wanted) without the query item: its own column where the search returned it, else the last
    column (exact duplicates can push an item out of its own list). Returns (nbrs, sims), each
    (Q, kk - 1), in the search's order."""
    q, kk = nbrs.shape
    is_self = nbrs == np.asarray(queries)[:, None]
    keep = ~is_self
    keep[~is_self.any(axis=1), -1] = False
    return nbrs[keep].reshape(q, kk - 1), sims[keep].reshape(q, kk - 1)
