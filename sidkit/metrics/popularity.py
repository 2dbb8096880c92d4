"""Popularity probe: how SIDs are allocated by popularity (do head items get unique codes, are
tail items compressed together). O(items) memory, from the interactions' item ids."""

from __future__ import annotations

import numpy as np


def popularity_metrics(codes, item_ids, interaction_item_ids, codebook_sizes=None, *, n_bins: int = 10) -> dict:
    """Per popularity decile (0 = the most interacted 10% of the table's items, ties by row):
    ``n_items``, ``interactions``, ``collided_fraction`` (share whose SID is shared with any item
    of the table), ``mean_bucket_size`` and ``distinct_prefix_ratio`` (per prefix length 1..L:
    distinct prefixes among the decile's items / its items)."""
    from sidkit.io.codes import pack_keys
    from sidkit.io.ids import map_ids

    codes = np.asarray(codes)
    n, L = codes.shape
    rows = map_ids(interaction_item_ids, item_ids)
    ok = rows >= 0
    cnt = np.bincount(rows[ok], minlength=n)
    order = np.lexsort((np.arange(n), -cnt))
    _, inv, bc = np.unique(pack_keys(codes, codebook_sizes), return_inverse=True, return_counts=True)
    bsize = bc[inv.ravel()]
    pkeys = [pack_keys(codes[:, :l], None if codebook_sizes is None else list(codebook_sizes)[:l]) for l in range(1, L + 1)]
    out = []
    for d, sel in enumerate(np.array_split(order, n_bins)):
        if sel.size == 0:
            continue
        out.append({"decile": d, "n_items": int(sel.size), "interactions": int(cnt[sel].sum()),
                    "collided_fraction": float((bsize[sel] > 1).mean()), "mean_bucket_size": float(bsize[sel].mean()),
                    "distinct_prefix_ratio": [float(np.unique(k[sel]).size / sel.size) for k in pkeys]})
    return {"n_interactions": int(rows.size), "n_unmatched_interactions": int((~ok).sum()),
            "n_items_with_interactions": int((cnt > 0).sum()), "deciles": out}
