"""Collaborative block: do co-interacted items share SID prefixes more than random pairs?"""

from __future__ import annotations

import numpy as np

from sidkit.io.ids import map_ids
from sidkit.metrics.buckets import check_codes
from sidkit.metrics.hamming import common_prefix_length, sample_pairs


def _col(inter, name):
    if hasattr(inter, "column_names"):  # pyarrow table
        return inter.column(name).to_numpy(zero_copy_only=False) if name in inter.column_names else None
    if isinstance(inter, dict):
        v = inter.get(name)
        return None if v is None else np.asarray(v)
    try:  # polars / pandas
        return np.asarray(inter[name]) if name in inter.columns else None
    except Exception:  # noqa: BLE001
        return None


def collaborative_metrics(codes, item_ids, interactions, *, codebook_sizes=None, seed: int = 0,
                          n_random: int = 100_000) -> dict:
    """Prefix sharing of co-interaction pairs (consecutive items of a user's sequence, ordered by
    ``position`` or ``timestamp`` when present, else by row order) against random item pairs.

    ``interactions`` is a pyarrow Table, a dict of arrays or a DataFrame with ``user_id`` and
    ``item_id``. Returns ``co_interaction_prefix_share`` (share of pairs with the same first token),
    ``random_prefix_share``, ``prefix_share_lift``, mean common-prefix lengths, per-length shares,
    ``n_pairs`` and ``n_unmatched_interactions`` (rows whose item is not in the SID table).
    """
    codes, _ = check_codes(codes, codebook_sizes)
    n, L = codes.shape
    users = _col(interactions, "user_id")
    items = _col(interactions, "item_id")
    if users is None or items is None:
        from sidkit.errors import SchemaError

        raise SchemaError("interactions need columns 'user_id' and 'item_id'")
    order_col = _col(interactions, "position")
    if order_col is None:
        order_col = _col(interactions, "timestamp")
    rows = map_ids(items, item_ids)
    m = len(rows)
    # sort by user, then order
    _, uinv = np.unique(np.asarray(users).astype(str) if np.asarray(users).dtype == object else np.asarray(users), return_inverse=True)
    uinv = uinv.ravel()
    keys = [np.arange(m)] if order_col is None else [np.arange(m), np.asarray(order_col)]
    order = np.lexsort(tuple(keys) + (uinv,))
    u_s, r_s = uinv[order], rows[order]
    ok = (u_s[1:] == u_s[:-1]) & (r_s[1:] >= 0) & (r_s[:-1] >= 0) & (r_s[1:] != r_s[:-1])
    i, j = r_s[:-1][ok], r_s[1:][ok]
    out: dict = {"n_pairs": int(i.size), "n_unmatched_interactions": int((rows < 0).sum())}
    rng = np.random.default_rng(seed)
    if i.size:
        p = common_prefix_length(codes, i, j)
        out["co_interaction_mean_common_prefix"] = float(p.mean())
        out["co_interaction_prefix_share_by_length"] = [float((p >= l).mean()) for l in range(1, L + 1)]
    else:
        out["co_interaction_mean_common_prefix"] = 0.0
        out["co_interaction_prefix_share_by_length"] = [0.0] * L
    if n >= 2:
        ri, rj = sample_pairs(n, n_random, rng)
        pr = common_prefix_length(codes, ri, rj)
        out["random_mean_common_prefix"] = float(pr.mean())
        out["random_prefix_share_by_length"] = [float((pr >= l).mean()) for l in range(1, L + 1)]
    else:
        out["random_mean_common_prefix"] = 0.0
        out["random_prefix_share_by_length"] = [0.0] * L
    out["co_interaction_prefix_share"] = out["co_interaction_prefix_share_by_length"][0]
    out["random_prefix_share"] = out["random_prefix_share_by_length"][0]
    out["prefix_share_lift"] = (out["co_interaction_prefix_share"] / out["random_prefix_share"]
                                if out["random_prefix_share"] > 0 else None)
    return out
