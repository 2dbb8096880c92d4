"""Full-ranking Recall@K / NDCG@K from target ranks (METHODS.md §6.2).

Protocol: every catalog item is a candidate (no sampled negatives) and **no item is masked**, not
even the items already in the user's history; this is the usual full-ranking protocol and it is
applied to every model alike (SASRec, TIGER, most-popular). Ties in scores are broken by a fixed
random order of the items (so a constant scorer gets the expected rank of a random guess, not the
best or worst one).

With one target per user: Recall@K = 1[rank <= K] (= HR@K), NDCG@K = 1[rank <= K] / log2(rank + 1).
A target that is not retrieved at all (outside TIGER's beams) has rank ``inf``.
"""

from __future__ import annotations

import numpy as np

KS = (5, 10, 20)


def recall_at_k(ranks, k: int) -> np.ndarray:
    """Per-user Recall@K (0/1) from 1-based ranks (``inf`` = not retrieved)."""
    r = np.asarray(ranks, dtype=np.float64)
    return (r <= k).astype(np.float64)


def ndcg_at_k(ranks, k: int) -> np.ndarray:
    """Per-user NDCG@K with one relevant item: 1/log2(rank + 1) when rank <= K, else 0."""
    r = np.asarray(ranks, dtype=np.float64)
    out = np.zeros(r.shape, dtype=np.float64)
    hit = r <= k
    out[hit] = 1.0 / np.log2(r[hit] + 1.0)
    return out


def summarize(ranks, ks=KS) -> dict:
    """Mean Recall@K and NDCG@K over users, keys ``recall@5``, ``ndcg@5``, ..."""
    out = {}
    for k in ks:
        out[f"recall@{k}"] = float(recall_at_k(ranks, k).mean()) if len(ranks) else float("nan")
    for k in ks:
        out[f"ndcg@{k}"] = float(ndcg_at_k(ranks, k).mean()) if len(ranks) else float("nan")
    return out


def ranks_from_scores(scores, targets, tie_order=None) -> np.ndarray:
    """1-based rank of each target in its row of ``scores`` (n, n_items), higher score = better.

    ``tie_order``: a permutation rank of the items (n_items,); among equal scores the item with the
    smaller tie rank comes first. None: ties count against the target (pessimistic).
    """
    import torch

    s = torch.as_tensor(scores)
    t = torch.as_tensor(np.asarray(targets, np.int64))
    ts = s.gather(1, t[:, None])
    greater = (s > ts).sum(1)
    if tie_order is None:
        ties = (s == ts).sum(1) - 1
    else:
        to = torch.as_tensor(np.asarray(tie_order, np.int64))
        ties = ((s == ts) & (to[None, :] < to[t][:, None])).sum(1)
    return (1 + greater + ties).numpy().astype(np.float64)
