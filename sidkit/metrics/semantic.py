"""Semantic block: does the SID space follow the embedding space? (METHODS.md §6.1)

Needs the item embeddings (row-aligned with the codes). Uses faiss (imported lazily) for the
k nearest neighbours; falls back to numpy for small tables when faiss is missing.
"""

from __future__ import annotations

import numpy as np

from sidkit.metrics._core import build_buckets, check_codes
from sidkit.metrics.hamming import common_prefix_length, hamming_distance, sample_pairs

_SKIP_ATTRS = {"title", "description", "embed_text", "text", "name"}


def knn_search(X: np.ndarray, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Inner-product k nearest neighbours of rows ``queries`` of ``X`` (self excluded)."""
    n = X.shape[0]
    kk = min(k + 1, n)
    try:
        import faiss

        index = faiss.IndexFlatIP(X.shape[1])
        index.add(X)
        sims, nbrs = index.search(X[queries], kk)
    except ImportError:  # pragma: no cover - faiss is a dependency
        sims = np.empty((queries.size, kk), np.float32)
        nbrs = np.empty((queries.size, kk), np.int64)
        for s in range(0, queries.size, 1024):
            q = queries[s:s + 1024]
            S = X[q] @ X.T
            idx = np.argsort(-S, axis=1)[:, :kk]
            nbrs[s:s + 1024] = idx
            sims[s:s + 1024] = np.take_along_axis(S, idx, 1)
    # drop self (or the last neighbour when self is not returned, e.g. exact duplicates)
    is_self = nbrs == queries[:, None]
    has_self = is_self.any(axis=1)
    keep = ~is_self
    keep[~has_self, -1] = False
    out_n = nbrs[keep].reshape(queries.size, kk - 1)
    out_s = sims[keep].reshape(queries.size, kk - 1)
    return out_n, out_s


LEAF_COLUMNS = ("category_leaf", "leaf", "leaf_category")


def leaf_column(attributes):
    """The leaf-category values of a catalog's attributes (the first of :data:`LEAF_COLUMNS`
    present), or None. ``fit``'s report and ``audit --items`` both use this."""
    for name in LEAF_COLUMNS:
        if name in attributes:
            return attributes[name]
    return None


def _norm(X) -> np.ndarray:
    from sidkit.features import l2_normalize

    return np.ascontiguousarray(l2_normalize(np.ascontiguousarray(X, dtype=np.float32)))


def _norm_title(t) -> str:
    if t is None:
        return ""
    return " ".join(str(t).lower().split())


def _colliding_pairs(key: np.ndarray, counts_by_item: np.ndarray, cap: int, max_buckets: int, rng):
    """Pairs inside each full-SID bucket (all pairs, or ``cap`` sampled ones with weights)."""
    rows = np.flatnonzero(counts_by_item >= 2)
    if rows.size == 0:
        return np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0), False
    order = rows[np.argsort(key[rows], kind="stable")]
    sk = key[order]
    starts = np.flatnonzero(np.concatenate(([True], sk[1:] != sk[:-1])))
    ends = np.append(starts[1:], order.size)
    nb = starts.size
    sampled = False
    bucket_w = 1.0
    sel = np.arange(nb)
    if nb > max_buckets:
        sel = np.sort(rng.choice(nb, size=max_buckets, replace=False))
        bucket_w = nb / max_buckets
        sampled = True
    I, J, W = [], [], []
    for b in sel:
        m = order[starts[b]:ends[b]]
        s = m.size
        npairs = s * (s - 1) // 2
        if npairs <= cap:
            a, c = np.triu_indices(s, 1)
            I.append(m[a]); J.append(m[c]); W.append(np.full(a.size, bucket_w))
        else:
            a = rng.integers(0, s, size=cap)
            c = (a + rng.integers(1, s, size=cap)) % s
            I.append(m[a]); J.append(m[c]); W.append(np.full(cap, bucket_w * npairs / cap))
            sampled = True
    return np.concatenate(I), np.concatenate(J), np.concatenate(W), sampled


def semantic_metrics(codes, embeddings, *, leaf=None, attributes=None, titles=None, item_ids=None,
                     codebook_sizes=None, seed: int = 0, k: int = 10, max_queries: int = 20000,
                     n_random: int = 100_000, pair_cap: int = 64, max_buckets: int = 50_000,
                     n_worst: int = 20) -> dict:
    """Semantic metrics of ``codes`` (n, L) against ``embeddings`` (n, d), row-aligned.

    Returns ``knn_mean_common_prefix`` (mean common-prefix length of k-NN pairs),
    ``random_mean_common_prefix`` (same for random pairs), ``locality_gap`` (their difference),
    ``conflict_collision_rate``, ``benign_collision_rate`` (shares of the colliding pairs, h = 0),
    ``conflict_item_rate`` (items in >= 1 conflict pair / N), plus per-length prefix shares,
    the k-NN Hamming histogram, benign-rule counts, ``attribute_purity`` and ``worst_conflicts``.

    A colliding pair is *benign* when the items are near duplicates (cos >= 0.98), have the same
    normalised title, one of them has no title, cos >= max(tau_i, tau_j) (tau = similarity to the
    k-th neighbour), or they share a leaf category with cos >= 0.9; it is a *conflict* when it is
    not benign and cos < median random-pair cos + 0.1 or the leaf categories differ; else
    *ambiguous*. Large buckets contribute ``pair_cap`` sampled pairs, weighted.
    """
    codes, sizes = check_codes(codes, codebook_sizes)
    n, L = codes.shape
    X = _norm(embeddings)
    if X.shape[0] != n:
        from sidkit.errors import DataError

        raise DataError(f"embeddings have {X.shape[0]} rows but the codes have {n}; they must be row-aligned")
    rng = np.random.default_rng(seed)
    b = build_buckets(codes, sizes)
    inv = np.searchsorted(b.ukeys, b.key)
    count_by_item = b.counts[inv]
    del inv

    # colliding pairs (h = 0)
    I, J, W, pairs_sampled = _colliding_pairs(b.key, count_by_item, pair_cap, max_buckets, rng)

    # k-NN: a query sample plus the items of the colliding pairs (for tau)
    kq = min(k, n - 1)
    if n > max_queries:
        q = np.sort(rng.choice(n, size=max_queries, replace=False))
    else:
        q = np.arange(n)
    coll_items = np.unique(np.concatenate([I, J])) if I.size else np.zeros(0, np.int64)
    if coll_items.size > 2 * max_queries:
        coll_items = np.sort(rng.choice(coll_items, size=2 * max_queries, replace=False))
    all_q = np.union1d(q, coll_items).astype(np.int64)
    tau = np.full(n, np.inf, dtype=np.float32)
    out: dict = {"k": int(kq)}
    if kq >= 1:
        nbrs, sims = knn_search(X, all_q, kq)
        tau[all_q] = sims[:, -1]
        in_q = np.isin(all_q, q)
        qi = np.repeat(all_q[in_q], kq)
        qj = nbrs[in_q].ravel()
        p_knn = common_prefix_length(codes, qi, qj)
        h_knn = hamming_distance(codes, qi, qj)
        out["knn_mean_common_prefix"] = float(p_knn.mean())
        out["knn_hamming_distribution"] = (np.bincount(h_knn, minlength=L + 1) / h_knn.size).tolist()
        out["knn_prefix_share"] = [float((p_knn >= l).mean()) for l in range(1, L + 1)]
        out["n_queries"] = int(q.size)
    else:
        out["knn_mean_common_prefix"] = 0.0
    if n >= 2:
        ri, rj = sample_pairs(n, n_random, rng)
        p_rand = common_prefix_length(codes, ri, rj)
        cos_rand = np.einsum("ij,ij->i", X[ri], X[rj])
        med = float(np.median(cos_rand))
        out["random_mean_common_prefix"] = float(p_rand.mean())
        out["random_prefix_share"] = [float((p_rand >= l).mean()) for l in range(1, L + 1)]
    else:
        med = 0.0
        out["random_mean_common_prefix"] = 0.0
    out["locality_gap"] = out["knn_mean_common_prefix"] - out["random_mean_common_prefix"]
    out["random_pair_median_cos"] = med

    # conflict vs benign
    leaf_arr = None
    if leaf is None and attributes:
        leaf = leaf_column(attributes)
    if leaf is not None:
        leaf_arr = np.array([None if (v is None or v == "") else str(v) for v in leaf], dtype=object)
    title_arr = None
    if titles is not None:
        title_arr = np.array([_norm_title(t) for t in titles], dtype=object)
    total_pairs = float(W.sum())
    rules = {"dup_content": 0.0, "dup_title": 0.0, "degenerate_input": 0.0, "local_threshold": 0.0, "same_leaf_close": 0.0}
    if I.size:
        cos = np.einsum("ij,ij->i", X[I], X[J])
        r_dup = cos >= 0.98
        r_title = np.zeros(I.size, bool)
        r_deg = np.zeros(I.size, bool)
        if title_arr is not None:
            ti, tj = title_arr[I], title_arr[J]
            r_deg = (ti == "") | (tj == "")
            r_title = (ti == tj) & ~r_deg
        r_local = cos >= np.maximum(tau[I], tau[J])
        leaf_known = np.zeros(I.size, bool)
        leaf_same = np.zeros(I.size, bool)
        if leaf_arr is not None:
            li, lj = leaf_arr[I], leaf_arr[J]
            leaf_known = np.array([a is not None and c is not None for a, c in zip(li, lj)], dtype=bool)
            leaf_same = leaf_known & (li == lj)
        r_leaf = leaf_same & (cos >= 0.9)
        for name, r in (("dup_content", r_dup), ("dup_title", r_title), ("degenerate_input", r_deg),
                        ("local_threshold", r_local), ("same_leaf_close", r_leaf)):
            rules[name] = float(W[r].sum())
        benign = r_dup | r_title | r_deg | r_local | r_leaf
        conflict = ~benign & ((cos < med + 0.1) | (leaf_known & ~leaf_same))
        ambiguous = ~benign & ~conflict
        out["conflict_collision_rate"] = float(W[conflict].sum() / total_pairs)
        out["benign_collision_rate"] = float(W[benign].sum() / total_pairs)
        out["ambiguous_collision_rate"] = float(W[ambiguous].sum() / total_pairs)
        out["conflict_item_rate"] = float(np.unique(np.concatenate([I[conflict], J[conflict]])).size / n)
        out["benign_item_rate"] = float(np.unique(np.concatenate([I[benign], J[benign]])).size / n)
        worst = np.flatnonzero(conflict)
        worst = worst[np.argsort(cos[worst], kind="stable")][:n_worst]
        ids = None if item_ids is None else np.asarray(item_ids)
        wl = []
        for w in worst:
            i, j = int(I[w]), int(J[w])
            e = {"rows": [i, j], "cosine": float(cos[w]), "sid": [int(c) for c in codes[i]]}
            if ids is not None:
                e["item_ids"] = [_py(ids[i]), _py(ids[j])]
            if titles is not None:
                e["titles"] = [None if titles[i] is None else str(titles[i]), None if titles[j] is None else str(titles[j])]
            if leaf_arr is not None:
                e["leaf"] = [leaf_arr[i], leaf_arr[j]]
            wl.append(e)
        out["worst_conflicts"] = wl
    else:
        out.update(conflict_collision_rate=0.0, benign_collision_rate=0.0, ambiguous_collision_rate=0.0,
                   conflict_item_rate=0.0, benign_item_rate=0.0, worst_conflicts=[])
    out["n_colliding_pairs_examined"] = int(I.size)
    out["colliding_pairs_sampled"] = bool(pairs_sampled)
    out["benign_rule_pairs"] = rules
    if attributes:
        out["attribute_purity"] = attribute_purity(codes, attributes)
    return out


def attribute_purity(codes: np.ndarray, attributes: dict, *, max_distinct_share: float = 0.5) -> dict:
    """Purity of each attribute inside the prefix groups of every length 0..L.

    purity(l) = sum over distinct prefixes g of length l of max_v #items(g, v) / #items with a
    value (for list attributes, #items(g, v) counts items whose list holds v). l = 0 is the whole
    catalog (the baseline). Free-text columns (title, description, ...) and columns with more
    distinct values than half the items are skipped.
    """
    from sidkit.io.codes import pack_keys

    n, L = codes.shape
    prefix_ids = [np.zeros(n, dtype=np.int64)]
    for l in range(1, L + 1):
        _, inv = np.unique(pack_keys(codes[:, :l]), return_inverse=True)
        prefix_ids.append(inv.ravel().astype(np.int64))
    out = {}
    for name, values in attributes.items():
        if name.lower() in _SKIP_ATTRS or values is None or len(values) != n:
            continue
        rows, vals = [], []
        vocab: dict = {}
        for i, v in enumerate(values):
            if v is None:
                continue
            items = v if isinstance(v, (list, tuple, np.ndarray)) else [v]
            seen = set()
            for x in items:
                if x is None or x == "" or x in seen:
                    continue
                seen.add(x)
                rows.append(i)
                vals.append(vocab.setdefault(x, len(vocab)))
        if not rows:
            continue
        rows_a = np.asarray(rows, dtype=np.int64)
        vals_a = np.asarray(vals, dtype=np.int64)
        n_valid = int(np.unique(rows_a).size)
        V = len(vocab)
        if V > max_distinct_share * n_valid and V > 1:
            continue
        pur = []
        for l in range(L + 1):
            g = prefix_ids[l][rows_a]
            uk, cnt = np.unique(g * V + vals_a, return_counts=True)
            grp = uk // V
            starts = np.flatnonzero(np.concatenate(([True], grp[1:] != grp[:-1])))
            pur.append(float(np.maximum.reduceat(cnt, starts).sum() / n_valid))
        out[name] = {"prefix_purity": pur, "n_items": n_valid, "n_values": V}
    return out


def _py(v):
    return v.item() if isinstance(v, np.generic) else v
