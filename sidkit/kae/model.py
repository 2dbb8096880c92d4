"""The KAE estimator and ``fit --method kae`` (METHODS.md §5.4-5.5 and the KAE scope note).

A KAE code is G attribute positions (one per plan group, in plan order), optionally followed by
residual levels from another tokenizer (composition: ``KAE(plan, residual=RQKMeans(...))``) on
the fused embeddings; ``codes.parquet``'s suffix makes ``sid + [suffix]`` unique. State: probe
rows, the routing reservoir and the residual tokenizer's tensors in ``model.safetensors``;
vocabulary and plan in ``sidkit.json``; bindings in ``slots.json`` (read at encode time, carried
over by a refit).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np
import pyarrow as pa

from sidkit.quantizers.base import Items, Tokenizer, as_items, check_codes, items_matrix
from sidkit.kae.codebook import NULL, OTHER, Binding, GroupCodebook, encode_group, text_matches, word_hash_table
from sidkit.kae.plan import CategorySpec, CategoryWords, Plan, extract_words, group_vocabulary, reserved_count
from sidkit.kae.route import IVF_NPROBE, GroupScorer, NeighbourFeatures, fit_ivf, fit_scorer, neighbour_mean
from sidkit.model.layout import KAE_PLAN, REFIT, SLOTS


class KAE(Tokenizer):
    """Keyword-aligned encoder: attribute codebooks with NULL / OTHER / kept-word / reserved slots.

    Parameters
    ----------
    plan : the grouping plan (:func:`sidkit.kae.make_plan` or :func:`sidkit.kae.read_plan`).
    route : fit a content-routing scorer per group for items that lack the group's attributes.
    reservoir : fit items kept (embeddings, slots and hashes of all their words) as negatives for
        bind-time scorers, and as the neighbour bank of the routing features.
    route_neighbours : k of the neighbour-centred routing features (0: the embeddings alone).
    route_nprobe : inverted lists scanned per neighbour search when the reservoir is large enough
        for an inverted file (:func:`sidkit.kae.route.fit_ivf`); 0: exact search always.
    random_state : seed.
    residual : an unfitted tokenizer for trailing semantic levels (fitted on the same items).
    residual_method : the method name of ``residual`` (recorded in the model).
    """

    class_name = "KAE"

    def __init__(self, plan: Plan, *, route: bool = True, reservoir: int = 8192, route_neighbours: int = 10,
                 route_nprobe: int = IVF_NPROBE, random_state: int = 0, residual: Tokenizer | None = None, residual_method: str | None = None):
        self.plan = plan
        self.route = route
        self.reservoir = reservoir
        self.route_neighbours = route_neighbours
        self.route_nprobe = route_nprobe
        self.random_state = random_state
        self.books_: list[GroupCodebook] = []
        self.scorers_: list[GroupScorer | None] = []
        self.route_stats_: list[dict] = []
        self.residual = residual
        self.residual_ = None
        self.residual_method_: str | None = residual_method if residual is not None else None
        self.bindings_: list[Binding] = []
        self.registry_: dict | None = None
        self.carried_: dict = {"kept": [], "dropped": [], "active": []}
        self._res_X = np.zeros((0, 0), np.float32)
        self._res_slots = np.zeros((0, 0), np.int32)
        self._res_words: list[np.ndarray | None] = []  # per group: the reservoir's word hashes (``word_hash_table``)
        self._ivf: tuple[np.ndarray, np.ndarray] | None = None  # the reservoir's inverted file (None: exact search)
        self._features: NeighbourFeatures | None = None
        self._fold_cache: dict = {}  # the routing scorers folded for encoding (``_folded_scorers``)

    @property
    def route_features(self) -> NeighbourFeatures:
        """The map from fused embeddings to the routing scorers' input."""
        if self._features is None:
            self._features = NeighbourFeatures(self._res_X, self.route_neighbours, ivf=self._ivf, nprobe=self.route_nprobe)
        return self._features

    # -- categories and words
    @property
    def category_specs(self) -> list[CategorySpec]:
        return [CategorySpec.parse(c) for c in self.plan.categories]

    @property
    def attribute_columns(self) -> list[str]:
        """The catalog columns encoding reads: the categories' columns and the plan's text columns."""
        return list(dict.fromkeys([*(s.column for s in self.category_specs), *self.plan.text_columns]))

    def texts_from_columns(self, columns: Mapping[str, Any], n: int) -> list[str] | None:
        """Normalized text per item (the plan's text columns joined), or None when none is given."""
        parts = []
        for c in self.plan.text_columns:
            col = columns.get(c)
            if col is None:
                continue
            vals = col.to_pylist() if hasattr(col, "to_pylist") else list(col)
            parts.append(["" if v is None else str(v) for v in vals])
        if not parts:
            return None
        return [" ".join(t) for t in zip(*parts)]

    def words_from_columns(self, columns: Mapping[str, Any], n: int) -> dict[str, CategoryWords]:
        """Category words from a dict column -> Arrow array / list; absent columns count as no words."""
        out = {}
        for s in self.category_specs:
            col = columns.get(s.column)
            if col is None:
                out[s.name] = CategoryWords(s.name, n, np.zeros(0, np.int64), np.zeros(0, np.int32), [])
            else:
                out[s.name] = extract_words(col, s)
        return out

    @property
    def n_groups(self) -> int:
        return len(self.books_)

    @property
    def codebook_sizes(self) -> list[int]:
        sizes = [b.size for b in self.books_]
        if self.residual_ is not None:
            sizes += [int(c.shape[0]) for c in self.residual_.codebooks_]
        return sizes

    # -- fitting
    def fit(self, items, *, progress=None) -> "KAE":
        """Fit on :class:`~sidkit.quantizers.base.Items`: fused embeddings and the plan's
        attribute columns (absent columns count as no words), then the residual tokenizer."""
        items = as_items(items)
        X = items_matrix(items)
        n = len(X)
        words = self.words_from_columns(items.columns, n)
        plan = self.plan
        excl = plan.excluded()
        names = [s.name for s in self.category_specs]
        cats = [words[c] for c in names]
        index = {c: i for i, c in enumerate(names)}
        self.books_ = []
        for gp in plan.groups:
            members = [index[c] for c in gp.categories]
            kept, cov = group_vocabulary(cats, members, eps=plan.eps, f_min=plan.f_min, k_max=plan.k_max,
                                         exclude=excl, max_words=gp.max_words)
            r = gp.reserved if gp.reserved is not None else reserved_count(len(kept), plan.reserved_ratio, plan.reserved_min)
            self.books_.append(GroupCodebook(gp.name, list(gp.categories), [(c, w) for c, w, _ in kept], [k for _, _, k in kept], int(r)))
        det = np.stack([encode_group(b, words, n)[0] for b in self.books_], axis=1) if self.books_ else np.zeros((n, 0), np.int32)
        rng = np.random.default_rng(self.random_state)
        rows = np.sort(rng.choice(n, min(n, self.reservoir), replace=False))
        self._res_X = X[rows].copy()
        self._res_slots = det[rows].astype(np.int32)
        # every word (kept or not) of the reservoir's items, hashed: a word bound later knows its own
        # items among the bind-time negatives (an item with two colours is labelled with the kept one)
        self._res_words = [word_hash_table(words, b.categories, rows) for b in self.books_]
        use_ivf = self.route and self.route_neighbours > 0 and self.route_nprobe > 0
        self._ivf = fit_ivf(self._res_X, seed=self.random_state) if use_ivf else None
        self._features = None
        self._fold_cache = {}
        self.scorers_, self.route_stats_ = [], []
        for g, book in enumerate(self.books_):
            if progress:
                progress("kae routing", g, len(self.books_), {})
            if not self.route:
                self.scorers_.append(None)
                self.route_stats_.append({"note": "routing off"})
                continue
            sc, st = fit_scorer(X, det[:, g], min_precision=plan.route_min_precision, seed=self.random_state + g,
                                features=self.route_features)
            self.scorers_.append(sc)
            self.route_stats_.append(st)
        if progress:
            progress("kae routing", len(self.books_), len(self.books_), {})
        if self.residual is not None:
            self.residual.fit(items, progress=progress)
            self.residual_ = self.residual
        self.det_codes_ = det
        self.n_features_in_ = X.shape[1]
        return self

    # -- encoding
    def encode_attributes(self, X: np.ndarray, words: Mapping[str, CategoryWords], n: int | None = None,
                          bindings: Sequence[Binding] | None = None, texts: Sequence[str] | None = None) -> np.ndarray:
        """(n, G) attribute codes: §5.5 with bindings; an item lacking the group's attributes gets a
        bound word found in its text (``texts``), else content routing."""
        n = len(X) if n is None else n
        bindings = self.bindings_ if bindings is None else bindings
        out = np.zeros((n, len(self.books_)), np.int32)
        todo = []
        for g, book in enumerate(self.books_):
            bg = [b for b in bindings if b.group == g]
            slots, missing = encode_group(book, words, n, bg)
            if bg and texts is not None and missing.any():
                rows = np.flatnonzero(missing)
                hit = text_matches([texts[i] for i in rows], bg)
                found = hit >= 0
                slots[rows[found]] = hit[found]
                missing[rows[found]] = False
            out[:, g] = slots
            sc = self.scorers_[g] if g < len(self.scorers_) else None
            if sc is not None and missing.any() and len(X):
                todo.append((g, sc, bg, missing))
        if todo:  # one neighbour search for the rows that some group routes
            need = np.flatnonzero(np.logical_or.reduce([m for _, _, _, m in todo]))
            pos = np.full(n, -1, np.int64)
            pos[need] = np.arange(len(need))
            Xn = np.ascontiguousarray(np.asarray(X, np.float32)[need])
            if self.route_features.k == 0:  # the embeddings alone: no neighbours to fold (and the codes of before)
                for g, sc, bg, missing in todo:
                    out[missing, g] = sc.route(Xn[pos[missing]], self._bound_rows(bg))
                return out
            nbr = self.route_features.neighbours(Xn)
            A, Z, c, span = self._folded_scorers(tuple(g for g, _, _, _ in todo))
            L = Xn @ A + c
            L -= neighbour_mean(Z, nbr)
            for g, sc, bg, missing in todo:
                rows = pos[missing]
                a, b = span[g]
                extra = self._bound_rows(bg)
                E = None
                if extra:
                    Ae, Ze, ce = self._fold_rows(sc, np.stack([w for _, w, _ in extra]))
                    E = Xn[rows] @ Ae + (ce + np.array([bb for _, _, bb in extra], np.float32))
                    E -= neighbour_mean(Ze, nbr[rows])
                out[missing, g] = sc.decide(L[rows, a:b], E, extra)
        return out

    @staticmethod
    def _bound_rows(bindings: Sequence[Binding]) -> list[tuple[int, np.ndarray, float]]:
        """(slot, w, b) of the bindings that have a routing row, by version."""
        return [(b.slot, b.scorer[0], b.scorer[1]) for b in sorted(bindings, key=lambda b: b.version) if b.scorer is not None]

    def _fold_rows(self, sc: GroupScorer, rows: np.ndarray | None = None):
        """Scorer rows folded onto the raw embedding and the reservoir (see ``_folded_scorers``)."""
        V, c = sc.folded(rows)
        d = V.shape[0] // 2
        return np.ascontiguousarray(V[:d] + V[d:]), self._res_X @ V[d:], c

    def _folded_scorers(self, groups: tuple[int, ...]):
        """The routing scorers of ``groups`` folded so that encoding needs neither the features
        nor the whitening: with features ``F = [x, x - m]`` (m: the mean of x's neighbours in the
        reservoir) and whitened logits ``((F - mu) @ P) @ W.T + b = F @ V + c``
        (:meth:`GroupScorer.folded`), the logits are ``x @ (V1 + V2) - mean of (R @ V2) over the
        neighbours' rows + c`` (V1, V2: V's halves; R: the reservoir), so the whitening matmul
        (width x width per item) and the gather of neighbour embeddings become one (d x classes)
        product and a gather of precomputed class scores. Same codes as the unfolded path up to
        float32 rounding (``benchmarks/kae_route.py`` counts the routed items whose codes change).
        Returns (A (d, R), Z (reservoir, R), c (R,), {group: (first, end) column})."""
        key = tuple((g, id(self.scorers_[g])) for g in groups)
        cache = self._fold_cache
        if key not in cache:
            parts = [self._fold_rows(self.scorers_[g]) for g in groups]
            span, at = {}, 0
            for g, (A, _, _) in zip(groups, parts):
                span[g] = (at, at + A.shape[1])
                at += A.shape[1]
            Z = np.ascontiguousarray(np.concatenate([p[1] for p in parts], axis=1))
            cache.clear()
            cache[key] = (np.ascontiguousarray(np.concatenate([p[0] for p in parts], axis=1)), Z,
                          np.concatenate([p[2] for p in parts]), span)
        return cache[key]

    def encode(self, items) -> np.ndarray:
        """Codes of items: the attribute positions from the items' columns (with the bindings;
        an item lacking a group's attributes gets a bound word its text names, else content
        routing), then the residual levels. A plain array encodes with every attribute missing."""
        self._require_fitted("encode")
        items = as_items(items)
        X = items_matrix(items, n_features=self.n_features_in_, min_rows=0)
        columns = items.columns or {}
        words = self.words_from_columns(columns, len(X))
        texts = self.texts_from_columns(columns, len(X)) if self.bindings_ else None  # only bound words are matched in text
        codes = self.encode_attributes(X, words, texts=texts)
        if self.residual_ is not None:
            codes = np.concatenate([codes, np.asarray(self.residual_.encode(Items(X, finite=True)), np.int32)], axis=1)
        return codes

    def decode(self, codes: np.ndarray) -> np.ndarray | None:
        """The residual levels' reconstruction of the embeddings (None without residual levels)."""
        self._require_fitted("decode")
        codes = check_codes(codes, self.codebook_sizes)
        if self.residual_ is None:
            return None
        return self.residual_.decode(codes[:, self.n_groups:])

    def words_of(self, codes: np.ndarray) -> list[list[str | None]]:
        """The word (or 'NULL' / 'OTHER' / None for a free slot) at each attribute position."""
        out = []
        for row in np.asarray(codes):
            words = []
            for g, book in enumerate(self.books_):
                kind, _, w = book.slot_label(int(row[g]), [b for b in self.bindings_ if b.group == g])
                words.append(w if w is not None else {"null": "NULL", "other": "OTHER"}.get(kind))
            out.append(words)
        return out

    def reconstruction_mse(self, items, codes: np.ndarray | None = None) -> float | None:
        if self.residual_ is None:
            return None
        return self.residual_.reconstruction_mse(items, None if codes is None else codes[:, self.n_groups:])

    def training_summary(self) -> dict:
        return {"routing": self.route_stats_}

    # -- what a refit keeps, and the files of the model directory
    def carry_over(self, previous: Path | None, items) -> None:
        """Carry the slot bindings of the KAE model at ``previous`` over to this fit (see
        :func:`sidkit.kae.slots.carry_registry`)."""
        from sidkit.kae.slots import carry_registry, old_registry, registry_bindings

        items = as_items(items)
        old = old_registry(previous) if previous is not None else None
        X = items_matrix(items, n_features=self.n_features_in_)
        self.registry_, self.carried_ = carry_registry(old, self, self.words_from_columns(items.columns, len(X)), X, "")
        self.bindings_ = registry_bindings(self.registry_)

    def extra_files(self, fingerprint: str) -> dict:
        from sidkit.kae.plan import plan_to_toml
        from sidkit.kae.slots import new_registry

        reg = dict(self.registry_) if self.registry_ is not None else new_registry(self, fingerprint)
        reg["model_fingerprint"] = fingerprint
        files = {SLOTS: reg, KAE_PLAN: plan_to_toml(self.plan)}
        if self.residual_ is not None:
            files.update(self.residual_.extra_files(fingerprint))
        return files

    def report_blocks(self, codes: np.ndarray) -> dict:
        G = self.n_groups
        det = self.det_codes_
        routed = (det == NULL) & (codes[:, :G] != NULL)
        return {"kae": {
            "groups": [{"name": b.name, "position": g, "categories": b.categories, "kept_words": b.n_active,
                        "reserved": b.n_reserved, "capacity": b.size,
                        "null_rate": float((codes[:, g] == NULL).mean()), "other_rate": float((codes[:, g] == OTHER).mean()),
                        "routed_rate": float(routed[:, g].mean()), "routing": self.route_stats_[g]}
                       for g, b in enumerate(self.books_)],
            "residual_levels": len(self.codebook_sizes) - G, "residual_method": self.residual_method_,
            "carried_bindings": self.carried_,
        }}

    def codes_metadata(self) -> dict:
        return {"kae_groups": self.n_groups}

    # -- state
    def params(self) -> dict:
        return {"plan": self.plan.to_dict(), "route": self.route, "reservoir": self.reservoir,
                "route_neighbours": self.route_neighbours,
                "route_nprobe": self.route_nprobe, "random_state": self.random_state, "groups": [b.to_dict() for b in self.books_],
                "route_stats": self.route_stats_, "residual_method": self.residual_method_,
                "residual": ({"class": type(self.residual_).__name__, "params": self.residual_.params()}
                             if self.residual_ is not None else None)}

    def state_dict(self) -> dict[str, np.ndarray]:
        t: dict[str, np.ndarray] = {"reservoir.X": self._res_X.astype(np.float32), "reservoir.slots": self._res_slots.astype(np.int32)}
        if self.route_features.k > 0:  # bind-time scorers need the reservoir's own features: keep its neighbours
            t["reservoir.neighbours"] = self.route_features.neighbours(self._res_X)
        if self._ivf is not None:
            t["reservoir.ivf.centroids"] = self._ivf[0].astype(np.float32)
            t["reservoir.ivf.lists"] = self._ivf[1].astype(np.int32)
        for g, h in enumerate(self._res_words):
            if h is not None:
                t[f"reservoir.words.{g}"] = np.ascontiguousarray(h, np.int64)
        for g, sc in enumerate(self.scorers_):
            if sc is not None:
                t.update(sc.tensors(f"route.{g}"))
        if self.residual_ is not None:
            for k, v in self.residual_.state_dict().items():
                t[f"residual.{k}"] = np.ascontiguousarray(v)
        return t

    @classmethod
    def from_state(cls, params: Mapping, tensors: Mapping[str, np.ndarray], *, load=None) -> "KAE":
        """``load(class_name, params, tensors)`` builds the residual tokenizer (the method
        registry's :func:`sidkit.methods.load_tokenizer`)."""
        plan = Plan.from_dict(params["plan"])
        est = cls(plan, route=bool(params.get("route", True)), reservoir=int(params.get("reservoir", 8192)),
                  route_neighbours=int(params.get("route_neighbours", 0)),
                  route_nprobe=int(params.get("route_nprobe", IVF_NPROBE)), random_state=int(params.get("random_state", 0)))
        est.books_ = [GroupCodebook.from_dict(d) for d in params["groups"]]
        est.scorers_ = [GroupScorer.from_tensors(tensors, f"route.{g}") for g in range(len(est.books_))]
        est.route_stats_ = list(params.get("route_stats", []))
        est._res_X = tensors["reservoir.X"]
        est._res_slots = tensors["reservoir.slots"]
        d = int(est._res_X.shape[1]) if est._res_X.ndim == 2 else 0
        if est._res_X.ndim != 2 or est._res_slots.ndim != 2 or est._res_slots.shape != (len(est._res_X), len(est.books_)):
            raise ValueError(f"reservoir tensors of shapes {est._res_X.shape} / {est._res_slots.shape} for {len(est.books_)} groups")
        est._res_words = [tensors.get(f"reservoir.words.{g}") for g in range(len(est.books_))]  # None: written before them
        for g, h in enumerate(est._res_words):
            if h is not None and (h.ndim != 2 or len(h) != len(est._res_X) or h.dtype != np.int64):
                raise ValueError(f"reservoir.words.{g} has shape {h.shape} ({h.dtype}), the reservoir has {len(est._res_X)} rows (int64 expected)")
        if ("reservoir.ivf.centroids" in tensors) != ("reservoir.ivf.lists" in tensors):
            raise ValueError("reservoir.ivf.centroids and reservoir.ivf.lists come together; one of them is missing")
        if "reservoir.ivf.centroids" in tensors:  # models written before the inverted file: exact search
            est._ivf = (tensors["reservoir.ivf.centroids"], tensors["reservoir.ivf.lists"])
            bad = NeighbourFeatures.check_ivf(est._ivf, est._res_X)
            if bad:
                raise ValueError(bad)
        width = d * (2 if est.route_features.k > 0 else 1)
        for g, sc in enumerate(est.scorers_):
            if sc is None:
                continue
            if sc.W.ndim != 2 or sc.W.shape[1] != width or sc.b.shape != (sc.W.shape[0],) or sc.classes.shape != (sc.W.shape[0],) \
                    or sc.mu.shape != (width,) or (sc.P is not None and sc.P.shape != (width, width)):
                raise ValueError(f"routing scorer of group {g} has shape {sc.W.shape}, the features have width {width}")
            if len(sc.classes) and (sc.classes.min() < 0 or sc.classes.max() >= est.books_[g].size):
                raise ValueError(f"routing scorer of group {g} names slots outside the group's {est.books_[g].size}")
        res = params.get("residual")
        if res:
            if load is None:
                raise ValueError("a KAE model with residual levels is loaded through sidkit.methods.load_tokenizer")
            sub = {k[len("residual."):]: v for k, v in tensors.items() if k.startswith("residual.")}
            est.residual_ = load(res["class"], res["params"], sub)
            est.residual = est.residual_
            est.residual_method_ = params.get("residual_method") or "rqkmeans"
            rd = getattr(est.residual_, "n_features_in_", d)
            if d and rd != d:
                raise ValueError(f"the residual levels take inputs of width {rd}, the reservoir has {d}")
        est.n_features_in_ = d
        return est

    def attach(self, files, meta: dict) -> "KAE":
        """Load and check the bindings of a model directory's slot registry (``slots.json``);
        ``files`` is the :class:`~sidkit.model.layout.ModelDir` the model was read from."""
        from sidkit.kae.slots import read_registry, registry_bindings

        dims = [int(sc.W.shape[1]) if sc is not None else None for sc in self.scorers_]
        reg = read_registry(files, self.books_, dims, meta.get("model_fingerprint"), fix=REFIT,
                            missing=f"{files.path / SLOTS}: the slot registry is missing; this KAE model directory is incomplete, "
                                    "restore it from a backup, or re-run 'sidkit fit --method kae' (bindings are then lost)")
        self.bindings_ = registry_bindings(reg)
        return self

    def codebooks_table(self, codes: np.ndarray) -> pa.Table:
        """One row per (group or residual level, code): level, code, kind, category, word, count, vector."""
        lv, code, kind, cat, word, cnt, vec = [], [], [], [], [], [], []
        for g, book in enumerate(self.books_):
            c = np.bincount(codes[:, g], minlength=book.size)
            sc = self.scorers_[g] if g < len(self.scorers_) else None
            rows = {int(s): i for i, s in enumerate(sc.classes)} if sc is not None else {}
            for s in range(book.size):
                k, ca, w = book.slot_label(s, [b for b in self.bindings_ if b.group == g])
                lv.append(g); code.append(s); kind.append(k); cat.append(ca); word.append(w); cnt.append(int(c[s]))
                vec.append(sc.W[rows[s]].tolist() if s in rows else None)
        if self.residual_ is not None:
            G = len(self.books_)
            for l, C in enumerate(self.residual_.codebooks_):
                c = np.bincount(codes[:, G + l], minlength=len(C))
                for s in range(len(C)):
                    lv.append(G + l); code.append(s); kind.append("residual"); cat.append(None); word.append(None)
                    cnt.append(int(c[s])); vec.append(np.asarray(C[s], np.float32).tolist())
        return pa.table({"level": pa.array(lv, pa.int32()), "code": pa.array(code, pa.int32()), "kind": pa.array(kind, pa.string()),
                         "category": pa.array(cat, pa.string()), "word": pa.array(word, pa.string()),
                         "count": pa.array(cnt, pa.int64()), "vector": pa.array(vec, pa.list_(pa.float32()))})


# --------------------------------------------------------------------------------------------
# fit --method kae: the model directory

def read_attribute_table(path, columns: Sequence[str], *, id_col: str | None = None, option: str = "--attributes") -> pa.Table:
    """The named attribute columns of a catalog. A column the catalog lacks is an error that lists
    the real columns and the closest name; with ``id_col`` (present in the catalog) its ids must be
    non-null and unique (an interactions log is not a catalog), checked in one streaming pass of
    the id column with 8 bytes a row."""
    import difflib

    from sidkit.errors import SchemaError
    from sidkit.io.ids import check_no_null_ids, check_unique_hashed, id_hash
    from sidkit.io.source import open_source

    src = open_source(path)
    names = list(src.names)
    for c in columns:
        if c not in names:
            close = difflib.get_close_matches(c, names, n=1, cutoff=0.6)
            hint = f"; did you mean '{close[0]}'?" if close else ""
            shown = ", ".join(names[:20]) + (", ..." if len(names) > 20 else "")
            raise SchemaError(f"{path}: no column '{c}' (columns: {shown}){hint} check {option}")
    if id_col is not None and id_col in names:
        hashes = np.empty(src.num_rows, np.uint64)
        for b in src.iter_batches(batch_size=1 << 18, columns=[id_col]):
            ids = b.data.column(0)
            check_no_null_ids(ids, b.shard, id_col, b.local)
            hashes[b.offset:b.offset + b.data.num_rows] = id_hash(ids)
        check_unique_hashed(src, id_col, hashes)
    return src.read(list(columns))


def string_columns(path) -> list[str]:
    """The string and list<string> columns of a catalog (a path, a directory of shards, a glob
    or a :class:`~sidkit.io.source.ParquetSource`)."""
    from sidkit.io.source import open_source

    out = []
    for f in open_source(path).schema_arrow:
        t = f.type
        if pa.types.is_string(t) or pa.types.is_large_string(t):
            out.append(f.name)
        elif (pa.types.is_list(t) or pa.types.is_large_list(t)) and (pa.types.is_string(t.value_type) or pa.types.is_large_string(t.value_type)):
            out.append(f.name)
    return out
