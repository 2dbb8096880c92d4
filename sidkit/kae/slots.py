"""The slot registry of a KAE model directory (``slots.json``) and ``bind_slot`` / ``unbind_slot``
(METHODS.md §5.6 steps 1-5 and 8).

Every change runs under an exclusive ``filelock.FileLock`` on ``slots.json.lock`` and is
written atomically (temp file + ``os.replace``) with a new registry version and one more entry
in the append-only history. Nothing else in the model directory changes: ``sidkit encode``
reads the registry, so items that carry a bound word (or route to it) get the bound slot.
"""

from __future__ import annotations

import datetime as _dt
import json
import os
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from sidkit.errors import ConfigError, DataError, ModelError, SidkitError
from sidkit.kae.codebook import Binding, GroupCodebook
from sidkit.kae.plan import CategorySpec, normalize_word

REGISTRY_FORMAT = 1
SLOTS_FILE = "slots.json"
LOCK_TIMEOUT_S = 120.0


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


def read_registry(path: str | Path) -> dict:
    p = Path(path)
    try:
        reg = json.loads(p.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ModelError(f"{p}: slot registry not found; this KAE model directory is incomplete, re-run 'sidkit fit --method kae'") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise ModelError(f"{p}: slot registry is not valid JSON ({e}); restore it from a backup or re-run 'sidkit fit --method kae'") from None
    if not isinstance(reg, dict) or "bindings" not in reg or "version" not in reg:
        raise ModelError(f"{p}: not a sidkit slot registry; re-run 'sidkit fit --method kae'")
    return reg


def registry_bindings(reg: dict) -> list[Binding]:
    out = []
    for b in reg.get("bindings", []):
        sc = b.get("scorer")
        scorer = (np.asarray(sc["w"], np.float32), float(sc["b"])) if sc else None
        out.append(Binding(int(b["group"]), int(b["slot"]), str(b["category"]), str(b["word"]), list(b.get("aliases", [])),
                           int(b["version"]), scorer))
    return out


class _KaeDir:
    """A KAE model directory opened for slot operations (JSON only; tensors loaded on demand)."""

    def __init__(self, model_dir: str | os.PathLike | None):
        d = model_dir or os.environ.get("SIDKIT_MODEL") or "."
        self.path = Path(d)
        if not self.path.is_dir():
            raise ModelError(f"{self.path}: model directory not found; pass --model DIR, set $SIDKIT_MODEL or run inside a model directory")
        mj = self.path / "sidkit.json"
        if not mj.is_file():
            raise ModelError(f"{self.path}: not a sidkit model directory (sidkit.json is missing); pass --model DIR or set $SIDKIT_MODEL")
        try:
            self.meta = json.loads(mj.read_text(encoding="utf-8"))
        except (json.JSONDecodeError, UnicodeDecodeError) as e:
            raise ModelError(f"{mj}: not valid JSON ({e}); re-run 'sidkit fit'") from None
        if self.meta.get("method") != "kae":
            raise ModelError(f"{self.path}: a '{self.meta.get('method')}' model has no attribute slots; fit one with 'sidkit fit ITEMS --method kae'")
        params = self.meta["estimator"]["params"]
        self.books = [GroupCodebook.from_dict(g) for g in params["groups"]]
        self.registry_path = self.path / SLOTS_FILE
        self.lock_path = self.path / (SLOTS_FILE + ".lock")

    def group_of(self, category: str) -> int:
        if not category or not category.strip():
            raise SlotError("the category is empty; give one of the model's attribute categories")
        for g, b in enumerate(self.books):
            if category in b.categories:
                return g
        cols = {CategorySpec.parse(c).column: g for g, b in enumerate(self.books) for c in b.categories}
        if category in cols:
            return cols[category]
        known = [c for b in self.books for c in b.categories]
        raise SlotError(f"unknown category '{category}'; this model's categories are: {', '.join(known)}")

    def lock(self):
        from filelock import FileLock

        return FileLock(str(self.lock_path), timeout=LOCK_TIMEOUT_S)

    def write(self, reg: dict) -> None:
        from sidkit.io.artifacts import write_json_atomic

        reg["updated"] = _now()
        write_json_atomic(self.registry_path, reg)


MAX_ROUTE_SHARE = 0.01  # default cap on attribute-less items routed to a new slot


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
            "routing": bool(b and b.get("scorer")), "created": created, "n_items": n_items, "notes": list(notes)}


def _scorer_row(kd: _KaeDir, g: int, w: str, aliases: Sequence[str], items, vector, id_col: str | None, extra_rows,
                max_route_share: float = MAX_ROUTE_SHARE):
    """(scorer dict or None, number of carrier items, notes) for a new binding."""
    from safetensors.numpy import load_file

    from sidkit.kae.route import GroupScorer, NeighbourFeatures, fit_new_row

    notes: list[str] = []
    tensors = load_file(str(kd.path / "model.safetensors"))
    sc = GroupScorer.from_tensors(tensors, f"route.{g}")
    if sc is None:
        return None, None, [f"group '{kd.books[g].name}' has no routing scorer; the word binds for explicit matches only"]
    Xr, Sr = tensors["reservoir.X"], tensors["reservoir.slots"][:, g]
    feats = NeighbourFeatures(Xr, int(kd.meta["estimator"]["params"].get("route_neighbours", 0)))
    if vector is not None:
        v = np.asarray(vector, np.float32).reshape(1, -1)
        if v.shape[1] != Xr.shape[1]:
            raise DataError(f"the prototype vector has {v.shape[1]} values, the model's fused embeddings have {Xr.shape[1]}")
        X_pos, n = v / max(float(np.linalg.norm(v)), 1e-12), 1
    else:
        from sidkit.features import FusionSpec, fuse
        from sidkit.io.catalog import read_catalog
        from sidkit.kae.plan import extract_words

        fusion = FusionSpec.from_dict(kd.meta["fusion"])
        cats = kd.books[g].categories
        specs = [CategorySpec.parse(c) for c in cats]
        cols = list(dict.fromkeys(s.column for s in specs))
        from sidkit.io.catalog import open_parquet

        have = set(open_parquet(items).schema_arrow.names)
        cat = read_catalog(items, id_col=id_col or kd.meta.get("input", {}).get("id_col", "item_id"),
                           embedding_cols=list(fusion.columns), attribute_cols=[c for c in cols if c in have])
        terms = {w, *[normalize_word(a) for a in aliases if normalize_word(a)]}
        carry = np.zeros(len(cat), bool)
        for s in specs:
            if s.column not in have:
                continue
            cw = extract_words(cat.attributes[s.column], s)
            hit = np.array([v in terms for v in cw.vocab] + [False])
            carry[cw.items[hit[cw.codes]]] = True
        n = int(carry.sum())
        if n == 0:
            notes.append(f"no item in {items} carries '{w}' in {', '.join(cats)}; the word binds for explicit matches only (no content routing)")
            return None, 0, notes
        X_pos = fuse(cat.embeddings, fusion, source=str(items))[carry]
    nbr = tensors.get("reservoir.neighbours")  # saved at fit: the reservoir's own features without a search
    Fr = feats.from_neighbours(Xr, nbr) if feats.k > 0 and nbr is not None else feats(Xr)
    wv, bv = fit_new_row(sc, feats(X_pos), Fr, Sr, extra_rows, max_null_share=max_route_share)
    return {"w": [float(x) for x in wv], "b": float(bv), "n_items": n}, n, notes


def bind_slot(category: str, word: str, *, model_dir: str | os.PathLike | None = None, aliases: Sequence[str] = (),
              items: str | os.PathLike | None = None, vector=None, id_col: str | None = None,
              max_route_share: float = MAX_ROUTE_SHARE) -> dict:
    """Bind ``word`` to the first free reserved slot of the group that owns ``category``.

    Idempotent: a word already bound (or an alias of a binding, or a kept word of the group)
    returns its slot; new aliases are merged. ``items``: a catalog whose items carrying the word
    give the slot's routing row (else explicit matches only). Raises :class:`NoReservedSlot`
    when the group is full, :class:`SlotError` / :class:`ModelError` on bad input (registry untouched).
    ``max_route_share``: at most this share of the fit items that lack the attribute may be
    routed to the new slot (the routing row's bias is raised towards 90 % recall of the word's
    items only up to that point).
    """
    if not (isinstance(max_route_share, (int, float)) and 0 <= max_route_share <= 1):
        raise ConfigError(f"--max-route-share must be a number in [0, 1] (got {max_route_share!r})")
    kd = _KaeDir(model_dir)
    g = kd.group_of(category)
    w = _check_word(word)
    aliases = [a for a in dict.fromkeys(a.strip() for a in aliases) if normalize_word(a) and normalize_word(a) != w]
    book = kd.books[g]
    act = book.active_slot_of_word(w)
    if act is not None:
        reg = read_registry(kd.registry_path)
        return _result(kd, g, None, state="active", slot=act, category=category, word=word, version=reg["version"],
                       notes=[f"'{w}' is a kept word of group '{book.name}' (an active slot); nothing to bind"])
    if items is not None and vector is not None:
        raise ConfigError("give either items or vector for the slot prototype, not both")
    reg0 = read_registry(kd.registry_path)
    existing = _find(reg0, g, w)
    scorer, n_items, notes = None, None, []
    if existing is None and (items is not None or vector is not None):
        extra = [(b.slot, b.scorer[0], b.scorer[1]) for b in sorted(registry_bindings(reg0), key=lambda b: b.version)
                 if b.group == g and b.scorer is not None]
        scorer, n_items, notes = _scorer_row(kd, g, w, aliases, items, vector, id_col, extra, max_route_share)
    elif existing is None:
        notes.append("no --items given: the word binds for explicit matches only (items that carry it); pass --items CATALOG to route items lacking the attribute")
    with kd.lock():
        reg = read_registry(kd.registry_path)
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
                           version=b["version"], aliases=b.get("aliases", []), notes=["already bound; same slot returned"] + notes)
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
        reg["bindings"].append(nb)
        reg["history"].append({"version": v, "op": "bind", "group": g, "slot": free[0], "category": category, "word": w,
                               "aliases": aliases, "routing": scorer is not None, "time": nb["time"]})
        kd.write(reg)
    return _result(kd, g, nb, state="reserved-bound", slot=free[0], category=category, word=w, version=v, aliases=aliases,
                   notes=notes, created=True, n_items=n_items)


def unbind_slot(category: str, word: str, *, model_dir: str | os.PathLike | None = None) -> dict:
    """Remove a binding: its items return to their previous codes, the slot becomes free."""
    kd = _KaeDir(model_dir)
    g = kd.group_of(category)
    w = _check_word(word)
    with kd.lock():
        reg = read_registry(kd.registry_path)
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


def list_slots(model_dir: str | os.PathLike | None = None) -> dict:
    """Groups, positions, capacities, bound and free reserved slots, and the registry history."""
    kd = _KaeDir(model_dir)
    reg = read_registry(kd.registry_path)
    groups = []
    for g, book in enumerate(kd.books):
        bound = [b for b in reg["bindings"] if b["group"] == g]
        groups.append({"group": book.name, "position": g, "categories": book.categories, "capacity": book.size,
                       "active": book.n_active, "reserved": book.n_reserved, "bound": len(bound),
                       "free": book.n_reserved - len(bound),
                       "bindings": [{"slot": b["slot"], "token": token(g, b["slot"], book), "category": b["category"],
                                     "word": b["word"], "aliases": b.get("aliases", []), "version": b["version"],
                                     "routing": bool(b.get("scorer")), "time": b.get("time")} for b in sorted(bound, key=lambda b: b["slot"])]})
    return {"model_dir": str(kd.path), "version": reg["version"], "updated": reg.get("updated"), "groups": groups,
            "history": reg["history"]}


def describe_registry(reg: dict) -> dict[str, Any]:  # pragma: no cover - convenience
    return {"version": reg["version"], "bindings": len(reg["bindings"]), "history": len(reg["history"])}
