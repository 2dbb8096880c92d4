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


def cce_at_k(beam_groups, target_groups, group_sizes, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Collision-corrected ItemHit@K and ItemNDCG@K per user (METHODS.md §6.5).

    Parameters
    ----------
    beam_groups : (n, beam) int, the SID group (an index into ``group_sizes``) returned at each
        beam rank, best first; -1 for an empty beam.
    target_groups : (n,) int, the group of each user's target item.
    group_sizes : (n_groups,) int, G = the number of catalog items that share each SID.
    k : the item-level cut-off.

    The beam is expanded into items: the SID at beam rank j stands for its G_j items. With the
    target's SID at beam rank r (group size G) and P = sum of G_j over j < r, the target is equally
    likely to be any of the item positions P+1 .. P+G, so with e = min(G, max(0, K - P)):
    ItemHit@K = e / G and ItemNDCG@K = (1/G) * sum_{i=1..e} 1/log2(P + i + 1); both 0 when the
    target's SID is not in the beam.
    """
    bg = np.asarray(beam_groups, np.int64)
    tg = np.asarray(target_groups, np.int64)
    gs = np.asarray(group_sizes, np.int64)
    n = len(tg)
    hit_arr = np.zeros(n)
    ndcg_arr = np.zeros(n)
    if n == 0 or bg.size == 0:
        return hit_arr, ndcg_arr
    sizes = np.where(bg >= 0, gs[bg.clip(0)], 0)  # (n, beam)
    is_t = bg == tg[:, None]
    found = is_t.any(1)
    r = np.argmax(is_t, axis=1)  # 0-based beam rank of the target's SID
    ahead = np.cumsum(sizes, axis=1) - sizes  # items ranked before each beam
    P = ahead[np.arange(n), r]
    G = np.maximum(gs[tg.clip(0)], 1)
    e = np.where(found, np.minimum(G, np.maximum(0, k - P)), 0)
    hit_arr = e / G
    # sum_{i=1..e} 1/log2(P+i+1) for e <= k: a cumulative table over positions 1..k
    disc = np.concatenate(([0.0], np.cumsum(1.0 / np.log2(np.arange(1, k + 1) + 1.0))))  # disc[m] = sum_{p=1..m}
    Pc = np.minimum(P, k)
    ndcg_arr = (disc[np.minimum(Pc + e, k)] - disc[Pc]) / G
    return hit_arr, ndcg_arr


def summarize_cce(beam_groups, target_groups, group_sizes, ks=KS) -> dict:
    """Mean ItemHit@K and ItemNDCG@K over users, keys ``itemhit@5``, ``itemndcg@5``, ..."""
    out = {}
    per = {k: cce_at_k(beam_groups, target_groups, group_sizes, k) for k in ks}
    for k in ks:
        out[f"itemhit@{k}"] = float(per[k][0].mean()) if len(target_groups) else float("nan")
    for k in ks:
        out[f"itemndcg@{k}"] = float(per[k][1].mean()) if len(target_groups) else float("nan")
    return out
