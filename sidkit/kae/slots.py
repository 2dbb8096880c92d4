"""The slot registry of a KAE model directory (``slots.json``) and ``bind_slot`` / ``unbind_slot``
(METHODS.md §5.6 steps 1-5 and 8).

The registry is read through the model directory's one reader
(:class:`~sidkit.model.layout.ModelDir`) and validated here. Every change runs under the model
directory's lock (:func:`sidkit.model.lock.model_lock`, the one ``fit`` takes to swap the
directory, so a refit and a bind never interleave) and is written atomically
(:func:`sidkit.model.layout.replace_file`) with a new registry version and one more entry in the
append-only history. Nothing else in the model directory changes: ``sidkit encode`` reads the
registry, so items that carry a bound word (or route to it) get the bound slot. A refit carries
the bindings over (:func:`carry_registry`).
"""

from __future__ import annotations

import datetime as _dt
import os
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np

from sidkit.errors import ConfigError, DataError, ModelError, SidkitError, opt
from sidkit.kae.codebook import Binding, GroupCodebook, table_carriers
from sidkit.kae.defaults import MAX_ROUTE_SHARE
from sidkit.kae.plan import CategorySpec, CategoryWords, normalize_word
from sidkit.model.layout import META, REGISTRY_FORMAT, SLOTS, TENSORS, ModelDir

LOCK_TIMEOUT_S = 120.0
REGISTRY_FIX = "restore it from a backup or re-run 'sidkit fit --method kae'"


class NoReservedSlot(SidkitError):
    """The group has no free reserved slot left."""


class SlotError(SidkitError):
    """A bind / unbind request that cannot be applied (unknown category, empty word, not bound...)."""


def _now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="milliseconds")


def token(group: int, slot: int, book: GroupCodebook) -> str:
    if slot in book.reserved_slots:
        return f"<g{group}_r{slot - book.reserved_slots.start}>"
    return f"<g{group}_w{slot}>"


def new_registry(est, fingerprint: str) -> dict:
    return {"format": REGISTRY_FORMAT, "version": 0, "model_fingerprint": fingerprint, "updated": _now(),
            "groups": [{"group": g, "name": b.name, "position": g, "categories": b.categories, "active": b.n_active,
                        "reserved": [b.reserved_slots.start, b.reserved_slots.stop], "capacity": b.size}
                       for g, b in enumerate(est.books_)],
            "bindings": [], "history": []}


def _int(v) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def check_registry(reg, p: Path, books: Sequence[GroupCodebook] | None = None,
                   scorer_dims: Sequence[int | None] | None = None, fingerprint: str | None = None) -> dict:
    """Validate a registry (structure; with ``books`` every binding's group, slot and category;
    with ``scorer_dims`` the routing rows' lengths; with ``fingerprint`` that it belongs to the
    model). Raises ModelError naming the file and the field."""
    fix = "restore slots.json from a backup, or re-run 'sidkit fit --method kae'"

    def bad(where: str, problem: str) -> ModelError:
        return ModelError(f"{p}: {where} {problem}; {fix}")

    if not isinstance(reg, dict) or "bindings" not in reg or "version" not in reg:
        raise ModelError(f"{p}: not a sidkit slot registry; {fix}")
    if reg.get("format", REGISTRY_FORMAT) != REGISTRY_FORMAT:
        raise bad("field 'format'", f"is {reg.get('format')!r}; this sidkit reads registry format {REGISTRY_FORMAT}")
    if not _int(reg["version"]) or reg["version"] < 0:
        raise bad("field 'version'", f"is {reg['version']!r}, not a non-negative integer")
    if not isinstance(reg["bindings"], list) or not isinstance(reg.get("history", []), list):
        raise bad("fields 'bindings' and 'history'", "must be lists")
    if fingerprint is not None and reg.get("model_fingerprint") not in (None, fingerprint):
        raise ModelError(f"{p}: this registry belongs to another fit (model_fingerprint {reg.get('model_fingerprint')}, "
                         f"the model's is {fingerprint}); {fix}")
    seen: dict[tuple[int, int], str] = {}
    for i, b in enumerate(reg["bindings"]):
        where = f"binding {i}"
        if not isinstance(b, dict):
            raise bad(where, "is not an object")
        for k in ("group", "slot", "version"):
            if not _int(b.get(k)):
                raise bad(f"{where} field '{k}'", f"is {b.get(k)!r}, not an integer")
        for k in ("category", "word"):
            if not isinstance(b.get(k), str) or not normalize_word(b[k]):
                raise bad(f"{where} field '{k}'", "is missing or empty")
        al = b.get("aliases", [])
        if not isinstance(al, list) or not all(isinstance(a, str) for a in al):
            raise bad(f"{where} field 'aliases'", "is not a list of strings")
        sc = b.get("scorer")
        if sc is not None:
            if (not isinstance(sc, dict) or not isinstance(sc.get("w"), list) or not sc["w"]
                    or not all(isinstance(x, (int, float)) and not isinstance(x, bool) and np.isfinite(x) for x in sc["w"])
                    or not isinstance(sc.get("b"), (int, float)) or isinstance(sc.get("b"), bool) or not np.isfinite(sc["b"])):
                raise bad(f"{where} field 'scorer'", "is not {\"w\": [numbers], \"b\": number}")
        if books is None:
            continue
        g, slot = b["group"], b["slot"]
        if not 0 <= g < len(books):
            raise bad(f"{where} field 'group'", f"is {g}; the model has groups 0..{len(books) - 1}")
        book = books[g]
        if slot not in book.reserved_slots:
            raise bad(f"{where} ({b['word']!r}) field 'slot'",
                      f"is {slot}; group '{book.name}' has reserved slots {book.reserved_slots.start}..{book.reserved_slots.stop - 1}")
        if (g, slot) in seen:
            raise bad(f"{where} ({b['word']!r})", f"takes slot {slot} of group '{book.name}', which {seen[(g, slot)]!r} holds too")
        seen[(g, slot)] = b["word"]
        cats = set(book.categories) | {CategorySpec.parse(c).column for c in book.categories}
        if b["category"] not in cats:
            raise bad(f"{where} field 'category'", f"is {b['category']!r}, not a category of group '{book.name}' ({', '.join(book.categories)})")
        if sc is not None and scorer_dims is not None:
            dim = scorer_dims[g] if g < len(scorer_dims) else None
            if dim is None:
                raise bad(f"{where} ({b['word']!r}) field 'scorer'", f"is set but group '{book.name}' has no routing scorer")
            if len(sc["w"]) != dim:
                raise bad(f"{where} ({b['word']!r}) field 'scorer'", f"has {len(sc['w'])} weights, the group's scorer takes {dim}")
    return reg


def read_registry(files: ModelDir, books: Sequence[GroupCodebook] | None = None, scorer_dims=None,
                  fingerprint: str | None = None, *, missing: str | None = None, fix: str = REGISTRY_FIX) -> dict:
    """Read ``slots.json`` of an opened model directory and validate it (see :func:`check_registry`).
    ``missing``: the message when the file is missing; ``fix``: the advice when it is unreadable."""
    from sidkit.model.layout import parse_json

    p = files.path / SLOTS
    raw = files.read_bytes(SLOTS, "slot registry", fix,
                           missing=missing or f"{p}: the slot registry is missing; this KAE model directory is incomplete, {REGISTRY_FIX}")
    reg = parse_json(raw, p, f"the slot registry is damaged, {REGISTRY_FIX}")
    return check_registry(reg, p, books, scorer_dims, fingerprint)


def old_registry(model_dir) -> dict | None:
    """The slot registry of the KAE model at ``model_dir`` (None when there is no KAE model
    with a registry there), for a refit. A damaged registry is a ModelError: a refit would lose
    its bindings."""
    d = Path(model_dir)
    if not d.is_dir():
        return None
    try:
        files = ModelDir(d)
        if not files.is_file(META) or not files.is_file(SLOTS):
            return None
        meta = files.read_json(META)
    except ModelError:
        return None
    if not isinstance(meta, dict) or meta.get("method") != "kae":
        return None
    try:
        return read_registry(files)
    except ModelError as e:
        raise ModelError(f"{e}; the refit would lose its bindings, so repair or remove {d / SLOTS} first") from None


def registry_bindings(reg: dict) -> list[Binding]:
    out = []
    for b in reg.get("bindings", []):
        sc = b.get("scorer")
        scorer = (np.asarray(sc["w"], np.float32), float(sc["b"])) if sc else None
        out.append(Binding(int(b["group"]), int(b["slot"]), str(b["category"]), str(b["word"]), list(b.get("aliases", [])),
                           int(b["version"]), scorer))
    return out


def scorer_dims_from_file(path: Path, n_groups: int) -> list[int | None]:
    """Feature width of each group's routing scorer, read from the safetensors header only."""
    from safetensors import SafetensorError, safe_open

    try:
        with safe_open(str(path), "np") as f:
            keys = set(f.keys())
            return [int(f.get_slice(f"route.{g}.W").get_shape()[1]) if f"route.{g}.W" in keys else None for g in range(n_groups)]
    except (SafetensorError, OSError, ValueError, IndexError) as e:
        raise ModelError(f"{path}: unreadable ({str(e).splitlines()[0]}); re-run 'sidkit fit --method kae'") from None


class _KaeDir:
    """A KAE model directory opened for slot operations (JSON only; tensors loaded on demand).
    ``sidkit.json`` and ``slots.json`` are read through one :class:`~sidkit.model.layout.ModelDir`."""

    def __init__(self, model_dir: str | os.PathLike | None):
        from sidkit.model.files import read_meta
        from sidkit.model.layout import recover_dir

        d = model_dir or os.environ.get("SIDKIT_MODEL") or "."
        self.shown = Path(d)
        try:
            self.path = Path(d).resolve()
        except FileNotFoundError:
            raise ModelError("the current directory no longer exists (a refit replaced the model directory?); "
                             "cd into the model directory again or pass --model DIR") from None
        if not self.path.exists():
            recover_dir(self.path)
        if not self.path.is_dir():
            raise ModelError(f"{d}: model directory not found; pass {opt('model_dir', '--model')} DIR, set $SIDKIT_MODEL or run inside a model directory")
        self.files = ModelDir(self.path)
        if not self.files.is_file(META):
            raise ModelError(f"{d}: not a sidkit model directory ({META} is missing); pass {opt('model_dir', '--model')} DIR or set $SIDKIT_MODEL")
        self.meta = read_meta(self.files)
        if self.meta.get("method") != "kae":
            raise ModelError(f"{d}: a '{self.meta.get('method')}' model has no attribute slots; fit one with 'sidkit fit ITEMS --method kae'")
        self.books = books_from_params(self.meta["estimator"]["params"], self.path / META)
        self.fingerprint = self.meta.get("model_fingerprint")
        self._scorer_dims: list[int | None] | None = None

    @property
    def scorer_dims(self) -> list[int | None]:
        if self._scorer_dims is None:
            self._scorer_dims = scorer_dims_from_file(self.path / TENSORS, len(self.books))
        return self._scorer_dims

    def read(self) -> dict:
        """The validated registry."""
        return read_registry(self.files, self.books, self.scorer_dims, self.fingerprint)

    def group_of(self, category: str) -> int:
        return group_of(self.books, category)

    def lock(self):
        from sidkit.model.lock import model_lock

        return model_lock(self.path, timeout=LOCK_TIMEOUT_S)

    def write(self, reg: dict) -> None:
        """Replace ``slots.json`` (the caller holds :meth:`lock`)."""
        from sidkit.model.layout import replace_file

        reg["updated"] = _now()
        replace_file(self.path, SLOTS, reg)


def books_from_params(params: dict, p: Path) -> list[GroupCodebook]:
    """The group codebooks recorded in ``sidkit.json``'s estimator params."""
    try:
        books = [GroupCodebook.from_dict(g) for g in params["groups"]]
    except (KeyError, TypeError, ValueError) as e:
        raise ModelError(f"{p}: field 'estimator.params.groups' is damaged ({type(e).__name__}: {e}); restore the file or re-run 'sidkit fit --method kae'") from None
    for b in books:
        if b.n_reserved < 0:
            raise ModelError(f"{p}: group '{b.name}' has a negative n_reserved; restore the file or re-run 'sidkit fit --method kae'")
    return books


def group_of(books: Sequence[GroupCodebook], category: str) -> int:
    """The group that owns a category (a plan category such as ``categories[2]`` or its column)."""
    if not category or not category.strip():
        raise SlotError("the category is empty; give one of the model's attribute categories")
    for g, b in enumerate(books):
        if category in b.categories:
            return g
    cols = {CategorySpec.parse(c).column: g for g, b in enumerate(books) for c in b.categories}
    if category in cols:
        return cols[category]
    known = [c for b in books for c in b.categories]
    raise SlotError(f"unknown category {category!r}; this model's categories are: {', '.join(known)}")




def _check_word(word: str) -> str:
    w = normalize_word(word)
    if not w:
        raise SlotError("the word is empty; give the word to bind, e.g. sidkit bind-slot color \"sage green\"")
    return w


def _find(reg: dict, group: int, w: str) -> dict | None:
    for b in reg["bindings"]:
        if b["group"] == group and (normalize_word(b["word"]) == w or w in [normalize_word(a) for a in b.get("aliases", [])]):
            return b
    return None


def _result(kd: _KaeDir, g: int, b: dict | None, *, state: str, slot: int, category: str, word: str, version: int,
            aliases=(), notes=(), created: bool = False, n_items: int | None = None) -> dict:
    return {"category": category, "word": word, "group": kd.books[g].name, "position": g, "slot": int(slot),
            "token": token(g, slot, kd.books[g]), "state": state, "version": int(version), "aliases": list(aliases),
            "routing": bool(b and b.get("scorer")), "created": created, "n_items": n_items, "notes": list(notes),
            **({"route": b["scorer"]["route"]} if b and isinstance(b.get("scorer"), dict) and "route" in b["scorer"] else {})}


def carrier_mask(words: Mapping[str, CategoryWords], categories: Sequence[str], terms: set[str], n: int) -> np.ndarray:
    """Items whose words in any of ``categories`` include one of ``terms``."""
    carry = np.zeros(n, bool)
    for c in categories:
        cw = words.get(c)
        if cw is None:
            continue
        hit = np.array([v in terms for v in cw.vocab] + [False])
        carry[cw.items[hit[cw.codes]]] = True
    return carry


def routing_row(sc, feats, Xr: np.ndarray, Sr: np.ndarray, X_pos: np.ndarray, extra_rows, max_route_share: float,
                nbr: np.ndarray | None = None, stats: dict | None = None, carriers: np.ndarray | None = None) -> tuple[np.ndarray, float]:
    """A bound word's routing row against the frozen rows of the group's scorer ``sc``:
    positives ``X_pos`` (fused embeddings of its carriers), negatives the reservoir ``Xr`` with
    its base slots ``Sr``, less the reservoir items that have the word too (``carriers``; see
    ``fit_new_row``). ``nbr``: the reservoir's saved neighbours, else searched; ``stats``:
    filled with the row's estimated recall, false-positive rate and precision."""
    from sidkit.kae.route import fit_new_row

    Fr = feats.from_neighbours(Xr, nbr) if feats.k > 0 and nbr is not None else feats(Xr)
    return fit_new_row(sc, feats(X_pos), Fr, Sr, extra_rows, max_null_share=max_route_share, carriers=carriers, stats=stats)


def _text_hits(cat, text_cols: Sequence[str], w: str, aliases: Sequence[str]) -> int:
    """How many items of ``cat`` mention the word (or an alias) in its text columns (§5.5 matches)."""
    from sidkit.kae.codebook import Binding, text_matches

    if not text_cols:
        return 0
    vals = [cat.attributes[c].to_pylist() if hasattr(cat.attributes[c], "to_pylist") else list(cat.attributes[c]) for c in text_cols]
    texts = [" ".join("" if v is None else str(v) for v in t) for t in zip(*vals)]
    return int((text_matches(texts, [Binding(0, 0, "", w, list(aliases), 0, None)]) >= 0).sum())


def _scorer_row(kd: _KaeDir, g: int, w: str, aliases: Sequence[str], items, vector, id_col: str | None, extra_rows,
                max_route_share: float = MAX_ROUTE_SHARE):
    """(scorer dict or None, number of carrier items, notes) for a new binding."""
    from safetensors import SafetensorError
    from safetensors.numpy import load_file

    from sidkit.model.files import check_tensors
    from sidkit.kae.route import IVF_NPROBE, GroupScorer, NeighbourFeatures

    notes: list[str] = []
    try:
        tensors = load_file(str(kd.path / TENSORS))
    except (SafetensorError, OSError, ValueError) as e:
        raise ModelError(f"{kd.path / TENSORS}: unreadable ({str(e).splitlines()[0]}); re-run 'sidkit fit --method kae'") from None
    check_tensors(tensors, kd.meta, kd.path)
    sc = GroupScorer.from_tensors(tensors, f"route.{g}")
    if sc is None:
        return None, None, [f"group '{kd.books[g].name}' has no routing scorer; the word binds for explicit matches only"]
    if "reservoir.X" not in tensors or "reservoir.slots" not in tensors:
        raise ModelError(f"{kd.path / TENSORS}: the routing reservoir is missing; re-run 'sidkit fit --method kae'")
    Xr, Sr = tensors["reservoir.X"], tensors["reservoir.slots"][:, g]
    kp = kd.meta["estimator"]["params"]
    ivf = (tensors["reservoir.ivf.centroids"], tensors["reservoir.ivf.lists"]) if "reservoir.ivf.centroids" in tensors else None
    if ivf is not None and (bad := NeighbourFeatures.check_ivf(ivf, Xr)):
        raise ModelError(f"{kd.path / TENSORS}: {bad}; re-run 'sidkit fit --method kae'")
    feats = NeighbourFeatures(Xr, int(kp.get("route_neighbours", 0)), ivf=ivf, nprobe=int(kp.get("route_nprobe", IVF_NPROBE)))
    terms = {w, *[normalize_word(a) for a in aliases if normalize_word(a)]}
    if vector is not None:
        v = np.asarray(vector, np.float32).reshape(1, -1)
        if v.shape[1] != Xr.shape[1]:
            raise DataError(f"the prototype vector has {v.shape[1]} values, the model's fused embeddings have {Xr.shape[1]}")
        from sidkit.features import l2_normalize

        X_pos, n = l2_normalize(v), 1
    else:
        from sidkit.features import FusionSpec, fuse
        from sidkit.io.catalog import read_catalog
        from sidkit.io.source import open_source
        from sidkit.kae.plan import extract_words

        fusion = FusionSpec.from_dict(kd.meta["fusion"])
        cats = kd.books[g].categories
        specs = [CategorySpec.parse(c) for c in cats]
        cols = list(dict.fromkeys(s.column for s in specs))
        have = set(open_source(items).names)
        text_cols = [c for c in kp.get("plan", {}).get("text_columns", ["title"]) if c in have and c not in cols]
        cat = read_catalog(items, id_col=id_col or kd.meta.get("input", {}).get("id_col", "item_id"),
                           embedding_cols=list(fusion.columns), attribute_cols=[c for c in cols if c in have] + text_cols)
        words = {s.name: extract_words(cat.attributes[s.column], s) for s in specs if s.column in have}
        carry = carrier_mask(words, [s.name for s in specs], terms, len(cat))
        n = int(carry.sum())
        if n == 0:
            n_text = _text_hits(cat, text_cols, w, aliases)
            how = (f"{n_text} item(s) of it whose {'/'.join(text_cols)} mention{'s' if n_text == 1 else ''} the word still get the slot by text matching, "
                   "other items only when they carry the word" if n_text else "items get the slot only when they carry the word or their text mentions it")
            notes.append(f"no item in {items} carries '{w}' in {', '.join(cats)}, so no routing row was fitted (no content routing); {how}")
            return None, 0, notes
        X_pos = fuse(cat.embeddings, fusion, source=str(items))[carry]
    stats: dict = {}
    res_carry = table_carriers(tensors.get(f"reservoir.words.{g}"), terms)  # None: a model written before the word hashes
    wv, bv = routing_row(sc, feats, Xr, Sr, X_pos, extra_rows, max_route_share, tensors.get("reservoir.neighbours"), stats,
                         carriers=res_carry)
    if stats.get("null_routed_share") is not None:
        notes.append(f"routing row: estimated recall {stats['cv_recall']:.0%} of '{w}' items, "
                     f"{stats['fp_rate'] if stats['fp_rate'] is not None else 0:.1%} of items with another {kd.books[g].name} word routed to it; "
                     f"{stats['null_routed_share']:.1%} of fit items without the attribute would move to the new slot"
                     + (f"; {stats['reservoir_carriers']} fit item(s) that have '{w}' beside a kept word were not counted as negatives"
                        if stats.get("reservoir_carriers") else ""))
    return {"w": [float(x) for x in wv], "b": float(bv), "n_items": n, "route": stats}, n, notes


def bind_slot(category: str, word: str, *, model_dir: str | os.PathLike | None = None, aliases: Sequence[str] = (),
              items: str | os.PathLike | None = None, vector=None, id_col: str | None = None,
              max_route_share: float = MAX_ROUTE_SHARE) -> dict:
    """Bind ``word`` to the first free reserved slot of the group that owns ``category``.

    Idempotent: a word already bound (or an alias of a binding, or a kept word of the group)
    returns its slot; new aliases are merged. ``items``: a catalog whose items carrying the word
    give the slot's routing row (else explicit matches only). Raises :class:`NoReservedSlot`
    when the group is full, :class:`SlotError` / :class:`ModelError` on bad input (registry untouched).
    ``max_route_share``: at most this share of the fit items that carry a *different* word of
    the group (true negatives) may be routed to the new slot (the routing row's bias is raised
    towards 95 % recall of the word's items only up to that point). Items that lacked the
    attribute are not counted as negatives (they may be the word's own items); the share of
    them that would move is reported in the result's ``route`` (with recall, false-positive rate
    and precision of the new row).
    """
    if isinstance(max_route_share, bool) or not (isinstance(max_route_share, (int, float)) and 0 <= max_route_share <= 1):
        raise ConfigError(f"--max-route-share must be a number in [0, 1] (got {max_route_share!r})")
    if items is not None and vector is not None:
        raise ConfigError("give either items or vector for the slot prototype, not both")
    w = _check_word(word)
    aliases = [a for a in dict.fromkeys(a.strip() for a in aliases) if normalize_word(a) and normalize_word(a) != w]

    def prepare(kd: _KaeDir, reg: dict):
        """(group, scorer, n_items, notes) of the binding, from the model as ``kd`` read it."""
        g = kd.group_of(category)
        if _find(reg, g, w) is not None or kd.books[g].active_slot_of_word(w) is not None:
            return g, None, None, []
        if items is None and vector is None:
            return g, None, None, ["no --items given: the word binds for explicit matches only (items that carry it); "
                                   "pass --items CATALOG to route items lacking the attribute"]
        extra = [(b.slot, b.scorer[0], b.scorer[1]) for b in sorted(registry_bindings(reg), key=lambda b: b.version)
                 if b.group == g and b.scorer is not None]
        return (g, *_scorer_row(kd, g, w, aliases, items, vector, id_col, extra, max_route_share))

    kd = _KaeDir(model_dir)
    g, scorer, n_items, notes = prepare(kd, kd.read())  # the slow part, outside the lock
    with kd.lock():
        now = _KaeDir(model_dir)  # a refit may have replaced the model meanwhile
        reg = now.read()
        if now.fingerprint != kd.fingerprint:
            kd = now
            g, scorer, n_items, notes = prepare(kd, reg)
        book = kd.books[g]
        act = book.active_slot_of_word(w)
        if act is not None:
            return _result(kd, g, None, state="active", slot=act, category=category, word=word, version=reg["version"],
                           notes=[f"'{w}' is a kept word of group '{book.name}' (an active slot); nothing to bind"])
        b = _find(reg, g, w)
        if b is not None:
            new_alias = [a for a in aliases if normalize_word(a) not in {normalize_word(x) for x in [b["word"], *b.get("aliases", [])]}]
            if new_alias:
                reg["version"] += 1
                b["aliases"] = list(b.get("aliases", [])) + new_alias
                reg["history"].append({"version": reg["version"], "op": "alias", "group": g, "slot": b["slot"],
                                       "category": b["category"], "word": b["word"], "aliases": new_alias, "time": _now()})
                kd.write(reg)
            return _result(kd, g, b, state="reserved-bound", slot=b["slot"], category=b["category"], word=b["word"],
                           version=b["version"], aliases=b.get("aliases", []), notes=["already bound; same slot returned"])
        used = {x["slot"] for x in reg["bindings"] if x["group"] == g}
        free = [s for s in book.reserved_slots if s not in used]
        if not free:
            raise NoReservedSlot(f"group '{book.name}' (category '{category}') has no free reserved slot "
                                 f"({book.n_reserved} reserved, all bound); unbind a word with 'sidkit unbind-slot', or refit with more "
                                 f"reserved slots (raise 'reserved' for this group in the plan, or reserved_min / reserved_ratio, then 'sidkit fit --method kae --plan PLAN')")
        reg["version"] += 1
        v = reg["version"]
        nb = {"group": g, "slot": free[0], "category": category, "word": w, "typed": word, "aliases": aliases,
              "state": "reserved-bound", "version": v, "time": _now(), "scorer": scorer}
        if scorer is not None:
            nb["max_route_share"] = float(max_route_share)
        reg["bindings"].append(nb)
        reg["history"].append({"version": v, "op": "bind", "group": g, "slot": free[0], "category": category, "word": w,
                               "aliases": aliases, "routing": scorer is not None, "time": nb["time"]})
        kd.write(reg)
    return _result(kd, g, nb, state="reserved-bound", slot=free[0], category=category, word=w, version=v, aliases=aliases,
                   notes=notes, created=True, n_items=n_items)


def unbind_slot(category: str, word: str, *, model_dir: str | os.PathLike | None = None) -> dict:
    """Remove a binding: its items return to their previous codes, the slot becomes free."""
    w = _check_word(word)
    kd = _KaeDir(model_dir)
    with kd.lock():
        kd = _KaeDir(model_dir)
        g = kd.group_of(category)
        reg = kd.read()
        b = _find(reg, g, w)
        if b is None:
            if kd.books[g].active_slot_of_word(w) is not None:
                raise SlotError(f"'{w}' is a kept word of group '{kd.books[g].name}', not a binding; only bound words can be unbound")
            raise SlotError(f"'{w}' is not bound in group '{kd.books[g].name}' (category '{category}'); see 'sidkit slots'")
        reg["bindings"].remove(b)
        reg["version"] += 1
        reg["history"].append({"version": reg["version"], "op": "unbind", "group": g, "slot": b["slot"],
                               "category": b["category"], "word": b["word"], "time": _now()})
        kd.write(reg)
    return _result(kd, g, None, state="reserved-free", slot=b["slot"], category=b["category"], word=b["word"],
                   version=reg["version"], aliases=b.get("aliases", []))


def carry_registry(old_reg: dict | None, est, words: Mapping[str, CategoryWords], X: np.ndarray, fingerprint: str) -> tuple[dict, dict]:
    """The registry of a refitted KAE model: the old model's bindings carried over.

    A binding is kept when its category is still in the plan and its group has a free reserved
    slot (the same reserved position when free, else the first free one). A word the refit
    keeps as a vocabulary word needs no slot (its items get the active slot). A routing row is
    refitted against the new scorer from the catalog items that carry the word (with the share
    cap it was bound with); without such items the binding stays, for explicit matches only.
    Returns (registry, {"kept": [...], "dropped": [...], "active": [...]}) for the report."""
    from sidkit.kae.route import fit_new_row

    reg = new_registry(est, fingerprint)
    outcome: dict[str, list] = {"kept": [], "dropped": [], "active": []}
    if not old_reg:
        return reg, outcome
    reg["version"] = int(old_reg["version"]) + 1
    reg["history"] = list(old_reg.get("history", []))
    old_books = {int(gr["group"]): gr for gr in old_reg.get("groups", []) if isinstance(gr, dict) and "group" in gr}
    used: dict[int, set[int]] = {}
    Xr, F_res = est._res_X, None
    for b in sorted(old_reg["bindings"], key=lambda b: b["version"]):
        entry = {"category": b["category"], "word": b["word"], "old_slot": b["slot"]}
        try:
            g = group_of(est.books_, b["category"])
        except SlotError:
            outcome["dropped"].append({**entry, "reason": f"category '{b['category']}' is not in the new plan"})
            continue
        book = est.books_[g]
        w = normalize_word(b["word"])
        if book.active_slot_of_word(w) is not None:
            outcome["active"].append({**entry, "slot": book.active_slot_of_word(w),
                                      "reason": f"the refit keeps '{w}' as a word of group '{book.name}' (an active slot)"})
            continue
        taken = used.setdefault(g, set())
        free = [s for s in book.reserved_slots if s not in taken]
        if not free:
            outcome["dropped"].append({**entry, "reason": f"group '{book.name}' has no free reserved slot left "
                                                          f"({book.n_reserved} reserved); raise 'reserved' in the plan"})
            continue
        ob = old_books.get(int(b["group"]))
        pos = int(b["slot"]) - int(ob["reserved"][0]) if ob and isinstance(ob.get("reserved"), list) and ob["reserved"] else -1
        slot = book.reserved_slots.start + pos if 0 <= pos < book.n_reserved and book.reserved_slots.start + pos not in taken else free[0]
        taken.add(slot)
        nb = {k: v for k, v in b.items() if k not in ("scorer", "n_items")}
        nb.update({"group": g, "slot": slot, "scorer": None})
        note = None
        sc = est.scorers_[g] if g < len(est.scorers_) else None
        if b.get("scorer") and sc is not None:
            terms = {w, *[normalize_word(a) for a in b.get("aliases", []) if normalize_word(a)]}
            carry = carrier_mask(words, book.categories, terms, len(X))
            if carry.any():
                if F_res is None:
                    F_res = est.route_features(Xr)
                extra = [(x["slot"], np.asarray(x["scorer"]["w"], np.float32), float(x["scorer"]["b"]))
                         for x in reg["bindings"] if x["group"] == g and x.get("scorer")]
                res_words = est._res_words[g] if g < len(est._res_words) else None
                wv, bv = fit_new_row(sc, est.route_features(X[carry]), F_res, est._res_slots[:, g], extra,
                                     max_null_share=float(b.get("max_route_share", MAX_ROUTE_SHARE)),
                                     carriers=table_carriers(res_words, terms))
                nb["scorer"] = {"w": [float(x) for x in wv], "b": float(bv), "n_items": int(carry.sum())}
            else:
                note = "no catalog item carries the word, so its routing row was dropped (explicit matches only); re-run bind-slot --items to route again"
        elif b.get("scorer"):
            note = f"group '{book.name}' has no routing scorer now (explicit matches only)"
        reg["bindings"].append(nb)
        outcome["kept"].append({**entry, "slot": slot, "routing": nb["scorer"] is not None, **({"note": note} if note else {})})
    reg["history"].append({"version": reg["version"], "op": "refit", "group": None, "slot": None, "category": None, "word": None,
                           "kept": len(outcome["kept"]), "dropped": len(outcome["dropped"]), "active": len(outcome["active"]),
                           "time": _now()})
    return reg, outcome


def list_slots(model_dir: str | os.PathLike | None = None) -> dict:
    """Groups, positions, capacities, bound and free reserved slots, and the registry history."""
    kd = _KaeDir(model_dir)
    reg = kd.read()
    groups = []
    for g, book in enumerate(kd.books):
        bound = [b for b in reg["bindings"] if b["group"] == g]
        groups.append({"group": book.name, "position": g, "categories": book.categories, "capacity": book.size,
                       "active": book.n_active, "reserved": book.n_reserved, "bound": len(bound),
                       "free": book.n_reserved - len(bound),
                       "bindings": [{"slot": b["slot"], "token": token(g, b["slot"], book), "category": b["category"],
                                     "word": b["word"], "aliases": b.get("aliases", []), "version": b["version"],
                                     "routing": bool(b.get("scorer")), "time": b.get("time")} for b in sorted(bound, key=lambda b: b["slot"])]})
    return {"model_dir": str(kd.shown), "version": reg["version"], "updated": reg.get("updated"), "groups": groups,
            "history": reg["history"]}


def describe_registry(reg: dict) -> dict[str, Any]:  # pragma: no cover - convenience
    return {"version": reg["version"], "bindings": len(reg["bindings"]), "history": len(reg["history"])}
