"""Semantic block: does the SID space follow the embedding space? (METHODS.md §6.1)

Needs the item embeddings (row-aligned with the codes). Uses faiss (imported lazily) for the
k nearest neighbours; falls back to numpy for small tables when faiss is missing.
"""

from __future__ import annotations

import numpy as np

from sidkit.metrics.buckets import build_buckets, check_codes
from sidkit.metrics.hamming import common_prefix_length, hamming_distance, sample_pairs
from sidkit.metrics.knn import drop_self

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
    return drop_self(nbrs, sims, queries)


LEAF_COLUMNS = ("category_leaf", "leaf", "leaf_category")
PATH_COLUMNS = ("categories", "category_path")
RELATED_COS = 0.9  # a pair of the same or of sibling leaves is benign at or above this cosine
CONFLICT_COS_MARGIN = 0.1  # conflict below median random-pair cosine + this margin


def path_column(attributes):
    """The category paths (lists, root first) of a catalog's attributes: the first of
    :data:`PATH_COLUMNS` present, or None."""
    if not attributes or attributes is True:
        return None
    for name in PATH_COLUMNS:
        if name in attributes:
            return attributes[name]
    return None


def category_relation(a, b, leaf_a=None, leaf_b=None) -> str | None:
    """How two items' categories relate: ``"same"`` (same path, or same leaf), ``"related"``
    (the paths part at the leaf only, or one stops at the other's parent: sibling leaves),
    ``"unrelated"`` (the paths part above the leaf's parent), None when unknown.

    With paths missing the leaf decides: same leaf is ``"same"``, different leaves
    ``"unrelated"`` (siblings cannot be told apart without the path)."""
    pa = _as_path(a)
    pb = _as_path(b)
    if pa and pb:
        if pa == pb:
            return "same"
        c = 0
        for x, y in zip(pa, pb):
            if x != y:
                break
            c += 1
        return "unrelated" if c < min(len(pa), len(pb)) - 1 else "related"
    if leaf_a is None or leaf_b is None or leaf_a == "" or leaf_b == "":
        return None
    return "same" if str(leaf_a) == str(leaf_b) else "unrelated"


def _as_path(v):
    if v is None or isinstance(v, str):
        return [v] if isinstance(v, str) and v else None
    try:
        p = [str(x) for x in v if x is not None and x != ""]
    except TypeError:
        return None
    return p or None


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


#: up to this many items the semantic block is exact (a flat index, as before); above it it
#: evaluates a seeded sample of queries against an approximate index over every item.
EXACT_MAX_ITEMS = 100_000


def semantic_metrics(codes, embeddings, *, leaf=None, attributes=None, titles=None, item_ids=None,
                     codebook_sizes=None, seed: int = 0, k: int = 10, max_queries: int = 20000,
                     n_random: int = 100_000, pair_cap: int = 64, max_buckets: int = 50_000,
                     n_worst: int = 20, sample: int = 100_000, exact_max_items: int | None = None,
                     index: str = "auto", recall_queries: int = 500, batch_size: int = 65536) -> dict:
    """Semantic metrics of ``codes`` (n, L) against the item embeddings, row-aligned.

    ``embeddings``: an (n, d) matrix, or a :class:`VectorSource` (batches of ``(rows, vectors,
    attributes)``, e.g. :class:`CatalogVectors` over a catalog streamed from Parquet); ``leaf``,
    ``titles`` and ``attributes`` are then read from the source (``attributes`` True: every
    string column it has).

    Up to ``exact_max_items`` items (default :data:`EXACT_MAX_ITEMS`): the exact block below (:func:`semantic_metrics_exact`;
    a source is read into memory first). Above: :func:`semantic_metrics_sampled`, ``sample``
    seeded query items (0: all) against an approximate faiss index over all items (``index``:
    ``"auto"`` = ``IVF{nlist},SQ8``, or any faiss factory string), with 95% confidence intervals,
    the sample size and the index's recall@k against exact search on ``recall_queries`` queries.
    """
    n = codes.shape[0] if hasattr(codes, "shape") else len(codes)
    if n > (EXACT_MAX_ITEMS if exact_max_items is None else exact_max_items):
        return semantic_metrics_sampled(codes, embeddings, leaf=leaf, attributes=attributes, titles=titles,
                                        item_ids=item_ids, codebook_sizes=codebook_sizes, seed=seed, k=k,
                                        n_random=n_random, pair_cap=pair_cap, max_buckets=max_buckets, n_worst=n_worst,
                                        sample=sample, index=index, recall_queries=recall_queries, batch_size=batch_size)
    if isinstance(embeddings, VectorSource):
        embeddings, gathered = embeddings.gather(np.arange(n), attributes=attributes)
        attributes = gathered if attributes is not None else None
        leaf = leaf_column(gathered) if leaf is None else leaf
        titles = gathered.get("title") if titles is None else titles
    return semantic_metrics_exact(codes, embeddings, leaf=leaf, attributes=attributes, titles=titles, item_ids=item_ids,
                                  codebook_sizes=codebook_sizes, seed=seed, k=k, max_queries=max_queries,
                                  n_random=n_random, pair_cap=pair_cap, max_buckets=max_buckets, n_worst=n_worst)


def _item_collisions(codes: np.ndarray, sizes, pair_cap: int, max_buckets: int, rng):
    """The colliding pairs (h = 0) of a table: ``_colliding_pairs`` over its buckets."""
    b = build_buckets(codes, sizes)
    count_by_item = b.counts[np.searchsorted(b.ukeys, b.key)]
    return _colliding_pairs(b.key, count_by_item, pair_cap, max_buckets, rng)


def _knn_pairs(out: dict, codes: np.ndarray, all_q: np.ndarray, q: np.ndarray, nbrs: np.ndarray, kq: int, L: int) -> np.ndarray:
    """The kNN-pair keys of the semantic block (mean common prefix, Hamming distribution, prefix
    shares) for the queries ``q`` among the searched rows ``all_q``; returns the prefix lengths."""
    in_q = np.isin(all_q, q)
    qi = np.repeat(all_q[in_q], kq)
    qj = nbrs[in_q].ravel()
    p_knn = common_prefix_length(codes, qi, qj)
    h_knn = hamming_distance(codes, qi, qj)
    out["knn_mean_common_prefix"] = float(p_knn.mean())
    out["knn_hamming_distribution"] = (np.bincount(h_knn, minlength=L + 1) / h_knn.size).tolist()
    out["knn_prefix_share"] = [float((p_knn >= l).mean()) for l in range(1, L + 1)]
    return p_knn


def semantic_metrics_exact(codes, embeddings, *, leaf=None, attributes=None, titles=None, item_ids=None,
                           codebook_sizes=None, seed: int = 0, k: int = 10, max_queries: int = 20000,
                           n_random: int = 100_000, pair_cap: int = 64, max_buckets: int = 50_000,
                           n_worst: int = 20) -> dict:
    """Semantic metrics of ``codes`` (n, L) against ``embeddings`` (n, d), row-aligned (exact
    k-NN over a flat index).

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
    # colliding pairs (h = 0)
    I, J, W, pairs_sampled = _item_collisions(codes, sizes, pair_cap, max_buckets, rng)

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
        _knn_pairs(out, codes, all_q, q, nbrs, kq, L)
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
    if leaf is None and attributes:
        leaf = leaf_column(attributes)
    rules = _collision_rules(out, I, J, W, X, tau, med, leaf, titles, codes, item_ids, n, n_worst,
                             paths=path_column(attributes))
    out["n_colliding_pairs_examined"] = int(I.size)
    out["colliding_pairs_sampled"] = bool(pairs_sampled)
    out["benign_rule_pairs"] = rules
    if attributes:
        out["attribute_purity"] = attribute_purity(codes, attributes)
    return out


def _collision_rules(out, I, J, W, X, tau, med, leaf, titles, codes, item_ids, n, n_worst, rows=None, paths=None):
    """The conflict / benign split of the colliding pairs ``I``, ``J`` (weights ``W``) into
    ``out``. ``X``, ``tau``, ``leaf``, ``paths``, ``titles``, ``codes`` and ``item_ids`` are
    indexed like ``I``/``J``; ``rows`` maps those indices to table rows (for ``worst_conflicts``);
    ``n`` is the number of items (the denominator of the item rates).

    Categories (:func:`category_relation`): a pair of the same or of sibling leaves with
    cos >= :data:`RELATED_COS` is benign; a pair whose category paths part above the leaf's parent
    is a conflict (unless a benign rule fires), as is any pair with cos < median random-pair
    cos + :data:`CONFLICT_COS_MARGIN` (``conflict_cos_threshold``)."""
    leaf_arr = None
    if leaf is not None:
        leaf_arr = np.array([None if (v is None or v == "") else str(v) for v in leaf], dtype=object)
    title_arr = None
    if titles is not None:
        title_arr = np.array([_norm_title(t) for t in titles], dtype=object)
    total_pairs = float(W.sum())
    rules = {"dup_content": 0.0, "dup_title": 0.0, "degenerate_input": 0.0, "local_threshold": 0.0, "same_leaf_close": 0.0,
             "related_leaf_close": 0.0}
    out["conflict_cos_threshold"] = float(med + CONFLICT_COS_MARGIN)
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
        rel = np.array([category_relation(None if paths is None else paths[i], None if paths is None else paths[j],
                                          None if leaf_arr is None else leaf_arr[i], None if leaf_arr is None else leaf_arr[j])
                        for i, j in zip(I.tolist(), J.tolist())], dtype=object)
        same, related, unrelated = rel == "same", rel == "related", rel == "unrelated"
        r_leaf = same & (cos >= RELATED_COS)
        r_rel = related & (cos >= RELATED_COS)
        for name, r in (("dup_content", r_dup), ("dup_title", r_title), ("degenerate_input", r_deg),
                        ("local_threshold", r_local), ("same_leaf_close", r_leaf), ("related_leaf_close", r_rel)):
            rules[name] = float(W[r].sum())
        benign = r_dup | r_title | r_deg | r_local | r_leaf | r_rel
        conflict = ~benign & ((cos < med + CONFLICT_COS_MARGIN) | unrelated)
        out["related_collision_rate"] = float(W[~benign & ~conflict & related].sum() / total_pairs)
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
            e = {"rows": [i, j] if rows is None else [int(rows[i]), int(rows[j])], "cosine": float(cos[w]), "sid": [int(c) for c in codes[i]]}
            if ids is not None:
                e["item_ids"] = [_py(ids[i]), _py(ids[j])]
            if titles is not None:
                e["titles"] = [None if titles[i] is None else str(titles[i]), None if titles[j] is None else str(titles[j])]
            if leaf_arr is not None:
                e["leaf"] = [leaf_arr[i], leaf_arr[j]]
            if paths is not None:
                e["category_path"] = [_as_path(paths[i]), _as_path(paths[j])]
            wl.append(e)
        out["worst_conflicts"] = wl
    else:
        out.update(conflict_collision_rate=0.0, benign_collision_rate=0.0, ambiguous_collision_rate=0.0,
                   related_collision_rate=0.0, conflict_item_rate=0.0, benign_item_rate=0.0, worst_conflicts=[])
    return rules


def _expand_paths(attributes: dict, n: int) -> dict:
    """Attributes with each category-path column (:data:`PATH_COLUMNS`) replaced by one column
    per depth, ``categories[d]`` (0 = root), skipping the depths where every item with a path
    has the same value (they would be pure at every prefix length and say nothing)."""
    out = {}
    for name, values in attributes.items():
        if name not in PATH_COLUMNS or values is None or len(values) != n:
            out[name] = values
            continue
        paths = [_as_path(v) for v in values]
        depth = max((len(p) for p in paths if p), default=0)
        for d in range(depth):
            col = [p[d] if p and len(p) > d else None for p in paths]
            present = [v for v in col if v is not None]
            if len(present) == sum(1 for p in paths if p) and len(set(present)) <= 1:
                continue  # every item shares this level
            out[f"{name}[{d}]"] = col
    return out


def attribute_purity(codes: np.ndarray, attributes: dict, *, max_distinct_share: float = 0.5) -> dict:
    """Purity of each attribute inside the prefix groups of every length 0..L.

    Category paths are scored per depth (``categories[1]``, ...), skipping depths every item
    shares (see :func:`_expand_paths`).

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
    for name, values in _expand_paths(attributes, n).items():
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


# --- the scalable path: a seeded query sample against an approximate index ----------------------

class VectorSource:
    """Item vectors row-aligned with the codes, read in batches (so that no (n, d) matrix needs to
    exist). Subclasses give ``n``, ``dim``, ``attribute_names`` and :meth:`batches`."""

    n: int
    dim: int
    attribute_names: tuple = ()

    def batches(self, attributes=()):
        """Yield ``(rows, X, attrs)``: item rows (int64, each row once over the whole pass), their
        raw vectors (float32, normalised later) and ``{name: values}`` (lists) of ``attributes``."""
        raise NotImplementedError

    def gather(self, rows, attributes=None):
        """Vectors (len(rows), d) and ``{name: list}`` of the given sorted distinct rows.
        ``attributes``: names, or True for all of :attr:`attribute_names`, or None."""
        rows = np.asarray(rows, np.int64)
        names = list(self.attribute_names) if attributes is True else list(attributes or [])
        out = np.zeros((rows.size, self.dim), np.float32)
        vals = {a: [None] * rows.size for a in names}
        for r, x, attrs in self.batches(names):
            pos = np.searchsorted(rows, r)
            hit = np.flatnonzero((pos < rows.size) & (rows[np.minimum(pos, rows.size - 1)] == r))
            if hit.size == 0:
                continue
            out[pos[hit]] = x[hit]
            for a in names:
                col = attrs[a]
                for h in hit:
                    vals[a][pos[h]] = col[h]
        return out, vals


class MatrixVectors(VectorSource):
    """A :class:`VectorSource` over an in-memory (n, d) matrix (e.g. ``fit``'s fused embeddings)
    and optional attribute lists of length n."""

    def __init__(self, X, attributes=None, batch_size: int = 65536):
        self.X = X
        self.n, self.dim = int(X.shape[0]), int(X.shape[1])
        self.attrs = dict(attributes or {})
        self.attribute_names = tuple(self.attrs)
        self.batch_size = batch_size

    def batches(self, attributes=()):
        for a in range(0, self.n, self.batch_size):
            b = min(self.n, a + self.batch_size)
            yield (np.arange(a, b, dtype=np.int64), np.asarray(self.X[a:b], dtype=np.float32),
                   {c: list(self.attrs[c][a:b]) for c in attributes})

    def gather(self, rows, attributes=None):
        names = list(self.attribute_names) if attributes is True else list(attributes or [])
        rows = np.asarray(rows, np.int64)
        return np.asarray(self.X[rows], np.float32), {c: [self.attrs[c][i] for i in rows] for c in names}


class CatalogVectors(VectorSource):
    """A catalog Parquet (file, directory of shards or glob) as a :class:`VectorSource` aligned
    with a SID table's ids: item ``i`` is the ``i``-th of ``code_rows`` (the rows of the SID table
    whose id the catalog has). Vectors are the fused embedding columns (as ``fit`` fuses them);
    attributes are the catalog's string and list<string> columns. One pass over the id column
    at construction (ids checked unique), then a pass per :meth:`batches`.

    Memory: the SID-table ids sorted once (8 bytes per row for integer ids) and a row map (4-8
    bytes per row); a batch of the catalog at a time.
    """

    def __init__(self, path, code_ids, *, id_col: str = "item_id", batch_size: int = 65536):
        import pyarrow as pa

        from sidkit.io.catalog import _is_list_type, resolve_columns
        from sidkit.io.ids import UniqueIdCheck, check_no_null_ids
        from sidkit.io.source import open_source

        self.path, self.id_col, self.batch_size = path, id_col, batch_size
        src = open_source(path)
        self.source = src
        schema = src.schema_arrow
        emb = resolve_columns(schema, src.path, id_col, None)
        self.attribute_names = tuple(
            f.name for f in schema if f.name not in emb and f.name != id_col
            and (pa.types.is_string(f.type) or pa.types.is_large_string(f.type)
                 or (_is_list_type(f.type) and pa.types.is_string(f.type.value_type))))
        code_ids = np.asarray(code_ids)
        self._numeric = code_ids.dtype.kind in "iu" and pa.types.is_integer(schema.field(id_col).type)
        if self._numeric:
            self._order = np.argsort(code_ids, kind="stable")
            self._sorted = code_ids[self._order]
        self._code_ids = code_ids
        present = np.zeros(code_ids.shape[0], bool)
        chk = UniqueIdCheck(src.path, src.num_rows, id_col=id_col)

        class _Ids:  # re-reads for the id check
            def batches(s, bs):
                for b in src.iter_batches(batch_size=bs, columns=[id_col]):
                    yield type("B", (), {"offset": b.offset, "ids": b.data.column(0).to_numpy(zero_copy_only=False)})

        for b in src.iter_batches(batch_size=batch_size, columns=[id_col]):
            col = b.data.column(0)
            check_no_null_ids(col, b.shard, id_col, b.local)
            ids = col.to_numpy(zero_copy_only=False)
            chk.add(ids, b.offset)
            r = self._code_rows(ids)
            present[r[r >= 0]] = True
        chk.finish(_Ids(), batch_size)
        self.code_rows = np.flatnonzero(present)
        self.n = int(self.code_rows.size)
        pos = np.cumsum(present) - 1
        self._pos = pos.astype(np.int32 if pos.size < 2**31 else np.int64)
        self._spec = None
        self._emb_cols = emb
        self.dim = None
        for _, x, _ in self.batches(()):
            self.dim = int(x.shape[1])
            break

    def _code_rows(self, ids) -> np.ndarray:
        if self._numeric:
            ids = np.asarray(ids)
            p = np.searchsorted(self._sorted, ids)
            p = np.minimum(p, self._sorted.size - 1)
            ok = self._sorted[p] == ids
            return np.where(ok, self._order[p], -1)
        from sidkit.io.ids import map_ids

        return map_ids(ids, self._code_ids)

    def column_values(self, code_rows, columns) -> dict:
        """``{column: [value per row of code_rows]}`` of the catalog's ``columns`` for the given
        SID-table rows (None where the catalog lacks the item): one pass over the id column and
        those columns only, for the few rows a report lists (bucket members)."""
        import pyarrow as pa

        want = np.asarray(code_rows, np.int64)
        order = np.argsort(want, kind="stable")
        srt = want[order]
        out = {c: [None] * len(want) for c in columns}
        names = self.source.schema_arrow.names
        cols = [c for c in columns if c in names]
        if not cols or not len(want):
            return out
        for b in self.source.iter_batches(batch_size=self.batch_size, columns=[self.id_col, *cols]):
            r = self._code_rows(b.data.column(self.id_col).to_numpy(zero_copy_only=False))
            k = np.minimum(np.searchsorted(srt, r), len(srt) - 1)
            hit = np.flatnonzero((r >= 0) & (srt[k] == r))  # vectorised: the batch rows that are listed
            if not hit.size:
                continue
            take = pa.array(hit)
            dest = order[k[hit]].tolist()
            for c in cols:
                for i, v in zip(dest, b.data.column(c).take(take).to_pylist()):
                    out[c][i] = v
        return out

    def batches(self, attributes=()):
        from sidkit.features import fuse, make_spec
        from sidkit.io.catalog import iter_catalog_batches

        attributes = list(attributes)
        for ids, emb, _off, extra in iter_catalog_batches(self.path, id_col=self.id_col, embedding_cols=self._emb_cols,
                                                          batch_size=self.batch_size, extra_cols=attributes):
            if self._spec is None:
                self._spec = make_spec(emb)
            r = self._code_rows(ids.to_numpy(zero_copy_only=False))
            hit = np.flatnonzero(r >= 0)
            if hit.size == 0:
                continue
            x = fuse(emb, self._spec)
            import pyarrow as pa

            take = pa.array(hit)
            yield (self._pos[r[hit]].astype(np.int64), x[hit] if hit.size < x.shape[0] else x,
                   {c: (extra[c].take(take).to_pylist() if c in extra else [None] * hit.size) for c in attributes})


def _nlist(n: int) -> int:
    """IVF lists: a power of two near 2 sqrt(n), between 256 and 4096."""
    t = 2.0 * np.sqrt(max(n, 1))
    return int(min(4096, max(256, 2 ** int(round(np.log2(t))))))


def _drop_self(nbrs, sims, queries, kq):
    is_self = nbrs == queries[:, None]
    has_self = is_self.any(axis=1)
    keep = ~is_self
    keep[~has_self, -1] = False
    return nbrs[keep].reshape(queries.size, kq), sims[keep].reshape(queries.size, kq)


def _ci95(values) -> list[float]:
    v = np.asarray(values, np.float64)
    m = float(v.mean()) if v.size else 0.0
    h = 1.96 * float(v.std(ddof=1)) / np.sqrt(v.size) if v.size > 1 else float("inf")
    return [m - h, m + h]


def semantic_metrics_sampled(codes, embeddings, *, leaf=None, attributes=None, titles=None, item_ids=None,
                             codebook_sizes=None, seed: int = 0, k: int = 10, n_random: int = 100_000,
                             pair_cap: int = 64, max_buckets: int = 50_000, n_worst: int = 20,
                             sample: int = 100_000, index: str = "auto", recall_queries: int = 500,
                             nprobe: int = 16, max_coll_queries: int | None = None, batch_size: int = 65536) -> dict:
    """The semantic block of a large catalog (same keys as :func:`semantic_metrics_exact`, plus
    ``exact`` False, ``n_items``, ``sample_size``, ``index``, ``knn_recall`` (recall@k of the
    index against exact search on ``knn_recall_queries`` sampled queries), and 95% confidence
    intervals ``knn_mean_common_prefix_ci95``, ``random_mean_common_prefix_ci95``,
    ``locality_gap_ci95`` (normal approximation: per-query means and per-pair values are
    independent draws).

    ``sample`` seeded query items (0: every item) search an approximate faiss index over every
    item (``index="auto"``: ``IVF{nlist},SQ8``, 1 byte per dimension per item, ``nprobe`` lists
    searched). The index is trained on a seeded sample of ``40 nlist`` vectors and filled batch
    by batch from ``embeddings`` (a matrix or a :class:`VectorSource`), so memory is the index plus
    the vectors of the sampled rows (queries, random pairs, colliding pairs, training sample).
    Colliding pairs are classified as in the exact block (``tau`` of an item is the approximate
    similarity to its k-th neighbour; at most ``max_coll_queries`` colliding items are searched,
    by default 0.4 x a query sample within [1,000, 40,000], 40,000 when every item is a query).
    Attribute purity is computed over the sampled query items (``attribute_purity_sample_size``).
    """
    laps = _Laps()
    codes, sizes = check_codes(codes, codebook_sizes)
    n, L = codes.shape
    src, names = _vector_source(embeddings, n, attributes=attributes, leaf=leaf, titles=titles, batch_size=batch_size)
    p = _sample_plan(codes, sizes, seed=seed, k=k, sample=sample, pair_cap=pair_cap, max_buckets=max_buckets,
                     max_coll_queries=max_coll_queries, n_random=n_random, recall_queries=recall_queries)
    spec = f"IVF{_nlist(n)},SQ8" if index == "auto" else index
    laps("sample")
    V, gathered = src.gather(p.need, attributes=names)
    V = _norm(V)
    laps("read_sampled_rows")

    def at(rows):
        return np.searchsorted(p.need, rows)

    index_, spec_txt = _train_index(src.dim, spec, V[at(p.train)], nprobe)
    laps("train_index")
    best_s, best_i = _fill_index(index_, src, V[at(p.rq)], p.kq)
    laps("add_all_items")
    sims, nbrs = _search_all(index_, V[at(p.all_q)], p.kq)
    del index_
    laps("search")
    nbrs, sims = _drop_self(nbrs, sims, p.all_q, p.kq)
    out: dict = {"k": int(p.kq)}
    _locality(out, codes, p, nbrs, V[at(p.ri)], V[at(p.rj)])
    _sampled_collisions(out, codes, p, sims[:, -1], V, at, gathered, item_ids=item_ids, n_worst=n_worst)
    attr_names = [c for c in gathered if not c.startswith("__")]
    if attr_names:
        out["attribute_purity"] = attribute_purity(codes[p.q], {c: _gathered_values(gathered, at, c, p.q) for c in attr_names})
        out["attribute_purity_sample_size"] = int(p.S)
    if p.R:  # recall of the index against exact search
        ex, _ = _drop_self(best_i, best_s, p.rq, p.kq)
        ap = nbrs[np.searchsorted(p.all_q, p.rq)]
        hits = sum(len(set(a.tolist()) & set(e.tolist())) for a, e in zip(ap, ex))
        out["knn_recall"] = float(hits / (p.R * p.kq))
        out["knn_recall_queries"] = int(p.R)
    laps("metrics")
    out.update(exact=False, n_items=int(n), sample_size=int(p.S), index=spec_txt, seconds=laps.secs)
    return out


class _Laps:
    """Seconds per stage: ``laps(name)`` closes the stage that began at the previous call."""

    def __init__(self):
        import time

        self._now = time.perf_counter
        self._t = self._now()
        self.secs: dict = {}

    def __call__(self, name):
        now = self._now()
        self.secs[name] = round(now - self._t, 3)
        self._t = now


def _vector_source(embeddings, n: int, *, attributes, leaf, titles, batch_size):
    """``embeddings`` as a :class:`VectorSource` row-aligned with the n codes, and the attribute columns to read."""
    from sidkit.errors import DataError

    if isinstance(embeddings, VectorSource):
        src = embeddings
        if src.n != n:
            raise DataError(f"the vector source has {src.n} rows but the codes have {n}; they must be row-aligned")
        return src, (list(src.attribute_names) if (attributes is True or attributes is None) else list(attributes))
    if embeddings.shape[0] != n:
        raise DataError(f"embeddings have {embeddings.shape[0]} rows but the codes have {n}; they must be row-aligned")
    given = dict(attributes or {})
    if leaf is not None:
        given["__leaf"] = leaf
    if titles is not None:
        given["__title"] = titles
    return MatrixVectors(embeddings, given, batch_size=batch_size), list(given)


def _sample_plan(codes, sizes, *, seed, k, sample, pair_cap, max_buckets, max_coll_queries, n_random, recall_queries):
    """Every seeded sample of the sampled block, drawn in a fixed order: colliding pairs, query items,
    colliding items searched, random pairs, recall queries, index training rows; ``need`` = their union."""
    from types import SimpleNamespace

    from sidkit.io.source import sample_rows

    n = codes.shape[0]
    rng = np.random.default_rng(seed)
    I, J, W, pairs_sampled = _item_collisions(codes, sizes, pair_cap, max_buckets, rng)
    kq = min(k, n - 1)
    S = n if sample <= 0 or sample >= n else int(sample)
    q = sample_rows(n, S, seed)
    coll_items = np.unique(np.concatenate([I, J])) if I.size else np.zeros(0, np.int64)
    if max_coll_queries is None:
        max_coll_queries = 40_000 if sample <= 0 else min(40_000, max(1_000, int(0.4 * S)))
    if coll_items.size > max_coll_queries:
        coll_items = np.sort(rng.choice(coll_items, size=max_coll_queries, replace=False))
    all_q = np.union1d(q, coll_items).astype(np.int64)
    ri, rj = sample_pairs(n, n_random, rng)
    R = min(recall_queries, S)
    rq = np.sort(np.random.default_rng([seed, 7]).choice(q, size=R, replace=False)) if R else np.zeros(0, np.int64)
    train = sample_rows(n, min(n, 40 * _nlist(n)), seed + 1)
    pair_rows = np.unique(np.concatenate([I, J])) if I.size else np.zeros(0, np.int64)
    need = np.unique(np.concatenate([all_q, pair_rows, ri, rj, train]))
    return SimpleNamespace(I=I, J=J, W=W, pairs_sampled=pairs_sampled, kq=kq, S=S, q=q, all_q=all_q, ri=ri, rj=rj,
                           R=R, rq=rq, train=train, pair_rows=pair_rows, need=need)


def _train_index(d: int, spec: str, train_vectors, nprobe: int):
    """A faiss inner-product index of factory string ``spec`` trained on the sample; returns (index, spec text)."""
    import faiss

    index_ = faiss.index_factory(d, spec, faiss.METRIC_INNER_PRODUCT)
    index_.train(train_vectors)
    try:
        ivf = faiss.extract_index_ivf(index_)
        ivf.nprobe = min(nprobe, ivf.nlist)
        return index_, f"{spec} nprobe={ivf.nprobe}"
    except RuntimeError:  # not an IVF index (e.g. "HNSW32"): ids through a map
        return faiss.IndexIDMap(index_), spec


def _fill_index(index_, src, Qr, kq: int):
    """Add every item batch by batch; alongside, the exact top kq+1 of the recall queries ``Qr``."""
    R = Qr.shape[0]
    best_s = np.full((R, kq + 1), -np.inf, np.float32)
    best_i = np.full((R, kq + 1), -1, np.int64)
    for rows, x, _ in src.batches(()):
        xn = _norm(x)
        index_.add_with_ids(xn, rows)
        if R:
            sims = Qr @ xn.T
            kk = min(kq + 1, sims.shape[1])
            part = np.argpartition(-sims, kk - 1, axis=1)[:, :kk]
            cs = np.concatenate([best_s, np.take_along_axis(sims, part, 1)], axis=1)
            ci = np.concatenate([best_i, rows[part]], axis=1)
            o = np.argsort(-cs, axis=1, kind="stable")[:, :kq + 1]
            best_s, best_i = np.take_along_axis(cs, o, 1), np.take_along_axis(ci, o, 1)
    return best_s, best_i


def _search_all(index_, Vq, kq: int):
    """The kq+1 approximate neighbours of the queries; those with too few candidates in the probed
    lists are searched again over every list."""
    import faiss

    sims, nbrs = index_.search(Vq, kq + 1)
    short = np.flatnonzero((nbrs < 0).any(axis=1))
    if short.size:
        try:
            ivf = faiss.extract_index_ivf(index_)
            keep_probe, ivf.nprobe = ivf.nprobe, ivf.nlist
            s2, n2 = index_.search(Vq[short], kq + 1)
            sims[short], nbrs[short] = s2, n2
            ivf.nprobe = keep_probe
        except RuntimeError:
            pass
    return sims, nbrs


def _locality(out: dict, codes, p, nbrs, Vri, Vrj) -> None:
    """kNN vs random pairs: common prefix, locality gap and their 95% intervals."""
    L = codes.shape[1]
    p_knn = _knn_pairs(out, codes, p.all_q, p.q, nbrs, p.kq, L)
    out["n_queries"] = int(p.S)
    per_query = p_knn.reshape(-1, p.kq).mean(axis=1)
    p_rand = common_prefix_length(codes, p.ri, p.rj)
    cos_rand = np.einsum("ij,ij->i", Vri, Vrj)
    out["random_mean_common_prefix"] = float(p_rand.mean())
    out["random_prefix_share"] = [float((p_rand >= l).mean()) for l in range(1, L + 1)]
    out["locality_gap"] = out["knn_mean_common_prefix"] - out["random_mean_common_prefix"]
    out["random_pair_median_cos"] = float(np.median(cos_rand))
    ck, cr = _ci95(per_query), _ci95(p_rand)
    out["knn_mean_common_prefix_ci95"] = ck
    out["random_mean_common_prefix_ci95"] = cr
    half = np.hypot((ck[1] - ck[0]) / 2, (cr[1] - cr[0]) / 2)
    out["locality_gap_ci95"] = [out["locality_gap"] - half, out["locality_gap"] + half]


def _gathered_values(gathered: dict, at, name, rows):
    if name not in gathered:
        return None
    col = gathered[name]
    return [col[i] for i in at(rows)]


def _sampled_collisions(out: dict, codes, p, tau_q, V, at, gathered: dict, *, item_ids, n_worst) -> None:
    """Classify the colliding pairs, in the universe of their rows (``tau``: the searched items' k-th similarity)."""
    U = p.pair_rows
    il, jl = np.searchsorted(U, p.I), np.searchsorted(U, p.J)
    tau = np.full(U.size, np.inf, np.float32)
    inU = np.searchsorted(U, p.all_q)
    okU = (inU < U.size) & (U[np.minimum(inU, max(U.size - 1, 0))] == p.all_q) if U.size else np.zeros(p.all_q.size, bool)
    tau[inU[okU]] = tau_q[okU]

    def vals(name):
        return _gathered_values(gathered, at, name, U) if name else None

    leaf_name = "__leaf" if "__leaf" in gathered else next((c for c in LEAF_COLUMNS if c in gathered), None)
    title_name = "__title" if "__title" in gathered else ("title" if "title" in gathered else None)
    path_name = next((c for c in PATH_COLUMNS if c in gathered), None)
    ids_u = None if item_ids is None else np.asarray(item_ids)[U]
    rules = _collision_rules(out, il, jl, p.W, V[at(U)], tau, out["random_pair_median_cos"], vals(leaf_name),
                             vals(title_name), codes[U], ids_u, codes.shape[0], n_worst, rows=U, paths=vals(path_name))
    out["n_colliding_pairs_examined"] = int(p.I.size)
    out["colliding_pairs_sampled"] = bool(p.pairs_sampled)
    out["benign_rule_pairs"] = rules
