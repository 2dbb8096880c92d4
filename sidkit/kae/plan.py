"""KAE planning (METHODS.md §5.2-5.4): attribute words, information-theoretic grouping of the
categories, coverage capacities, reserved slots, group order; the editable TOML plan.

Categories are named by their column: ``brand`` (a string column), ``colors`` (a list<string>
column used as a word set), ``categories[2]`` (level 2 of a list column such as a category path).
A list column named without an index is expanded into its levels when it looks like a path
(each word sits at one position) and is used as a word set otherwise.
"""

from __future__ import annotations

import math
import re
import unicodedata
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Mapping, Sequence

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from sidkit.errors import ConfigError, SchemaError
from sidkit.kae.defaults import PLAN_DEFAULTS as DEFAULTS

PLAN_VERSION = 1
_LEVEL = re.compile(r"^(?P<col>.+)\[(?P<lvl>\d+|\*)\]$")


# --------------------------------------------------------------------------------------------
# words

def normalize_word(s: str | None) -> str:
    """NFKC, lower-case, trimmed, inner whitespace collapsed ('' for None)."""
    if s is None:
        return ""
    return " ".join(unicodedata.normalize("NFKC", str(s)).lower().split())


@dataclass(frozen=True)
class CategorySpec:
    """One attribute category: a string column, one level of a list column, or a list column as a set."""

    name: str
    column: str
    level: int | None = None  # None: the whole value (string) or the set of list values

    @classmethod
    def parse(cls, name: str) -> "CategorySpec":
        m = _LEVEL.match(name)
        if m and m.group("lvl") != "*":
            return cls(name, m.group("col"), int(m.group("lvl")))
        return cls(name, name, None)


@dataclass
class CategoryWords:
    """Words of one category over n items: deduplicated (item, word) pairs; ``vocab[code]`` is the word."""

    name: str
    n: int
    items: np.ndarray  # int64 item index per pair
    codes: np.ndarray  # int32 index into vocab per pair
    vocab: list[str]

    def counts(self) -> np.ndarray:
        return np.bincount(self.codes, minlength=len(self.vocab)).astype(np.int64)

    def present(self) -> np.ndarray:
        m = np.zeros(self.n, bool)
        m[self.items] = True
        return m


def _as_array(col) -> pa.Array:
    if isinstance(col, pa.ChunkedArray):
        return col.combine_chunks() if col.num_chunks != 1 else col.chunk(0)
    if isinstance(col, pa.Array):
        return col
    return pa.array(list(col))


def extract_words(col, spec: CategorySpec) -> CategoryWords:
    """(item, word) pairs of one category from a string or list<string> column (Arrow or a list)."""
    arr = _as_array(col)
    n = len(arr)
    t = arr.type
    if pa.types.is_null(t):
        return CategoryWords(spec.name, n, np.zeros(0, np.int64), np.zeros(0, np.int32), [])
    is_list = pa.types.is_list(t) or pa.types.is_large_list(t) or pa.types.is_fixed_size_list(t)
    if is_list:
        if pa.types.is_fixed_size_list(t):
            arr = arr.cast(pa.list_(t.value_type))
        lengths = pc.fill_null(pc.list_value_length(arr), 0).to_numpy(zero_copy_only=False).astype(np.int64)
        if spec.level is not None:
            items = np.flatnonzero(lengths > spec.level)
            offsets = arr.offsets.to_numpy(zero_copy_only=False).astype(np.int64)[:-1]
            vals = arr.values.take(pa.array(offsets[items] + spec.level))
        else:
            items = pc.list_parent_indices(arr).to_numpy(zero_copy_only=False).astype(np.int64)
            vals = pc.list_flatten(arr)
    else:
        if spec.level is not None:
            raise SchemaError(f"category '{spec.name}': column '{spec.column}' is not a list column, so it has no levels; use '{spec.column}'")
        items = np.arange(n, dtype=np.int64)
        vals = arr
    if not (pa.types.is_string(vals.type) or pa.types.is_large_string(vals.type)):
        vals = vals.cast(pa.string())
    denc = vals.dictionary_encode()
    uniq_raw = denc.dictionary.to_pylist()
    raw_idx = pc.fill_null(denc.indices, len(uniq_raw)).to_numpy(zero_copy_only=False).astype(np.int64)
    norm = [normalize_word(u) for u in uniq_raw]
    vocab = sorted({w for w in norm if w})
    pos = {w: i for i, w in enumerate(vocab)}
    remap = np.array([pos.get(w, -1) for w in norm] + [-1], np.int64)
    codes = remap[raw_idx]
    keep = codes >= 0
    items, codes = items[keep], codes[keep]
    if len(items):
        key = np.unique(items * max(1, len(vocab)) + codes)
        items, codes = key // max(1, len(vocab)), key % max(1, len(vocab))
    return CategoryWords(spec.name, n, items.astype(np.int64), codes.astype(np.int32), vocab)


def _looks_like_path(arr: pa.Array) -> bool:
    """A list column is path-like when each word sits (almost) always at one position."""
    arr = _as_array(arr)
    pairs = {}
    L = int(pc.max(pc.list_value_length(arr)).as_py() or 0)
    if L < 2:
        return False
    for lvl in range(min(L, 8)):
        cw = extract_words(arr, CategorySpec(f"x[{lvl}]", "x", lvl))
        for w, c in zip(cw.vocab, cw.counts()):
            pairs.setdefault(w, []).append(int(c))
    total = sum(sum(v) for v in pairs.values())
    dominant = sum(max(v) for v in pairs.values())
    return total > 0 and dominant / total >= 0.95


def choose_categories(table: pa.Table | Mapping[str, Sequence], names: Sequence[str] | None, *,
                      exclude: Iterable[str] = ()) -> tuple[list[CategorySpec], list[str]]:
    """Resolve ``--attributes`` names into categories; with ``names=None`` pick the string and
    list<string> columns whose values repeat (free text and id-like columns are skipped).
    Returns (categories, notes)."""
    cols = table.column_names if isinstance(table, pa.Table) else list(table)
    get = (lambda c: table.column(c)) if isinstance(table, pa.Table) else (lambda c: table[c])
    notes: list[str] = []
    auto = names is None
    if auto:
        names = [c for c in cols if c not in set(exclude)]
    out: list[CategorySpec] = []
    skipped = []
    for name in names:
        name = name.strip()
        if not name:
            continue
        spec = CategorySpec.parse(name)
        if spec.column not in cols:
            raise SchemaError(f"attribute '{name}': no column '{spec.column}' (columns: {', '.join(cols[:12])}); check --attributes")
        arr = _as_array(get(spec.column))
        t = arr.type
        is_list = pa.types.is_list(t) or pa.types.is_large_list(t) or pa.types.is_fixed_size_list(t)
        is_str = pa.types.is_string(t) or pa.types.is_large_string(t)
        if not (is_str or (is_list and (pa.types.is_string(t.value_type) or pa.types.is_large_string(t.value_type)))):
            if auto:
                continue
            raise SchemaError(f"attribute '{name}': column '{spec.column}' is {t}, not string or list<string>; pick attribute columns")
        if is_list and spec.level is None:
            levels = None
            if name.endswith("[*]") or _looks_like_path(arr):
                L = int(pc.max(pc.list_value_length(arr)).as_py() or 0)
                levels = [CategorySpec(f"{spec.column}[{k}]", spec.column, k) for k in range(L)]
            if levels is not None:
                kept = [s for s in levels if _repeats(extract_words(arr, s))]
                out.extend(kept)
                continue
        cw = extract_words(arr, spec)
        if auto and not _repeats(cw):
            skipped.append(name)
            continue
        if not auto and not len(cw.items):
            raise SchemaError(f"attribute '{name}': column '{spec.column}' has no values; pick attribute columns with values")
        out.append(spec)
    if auto:
        notes.append(f"kae: attributes chosen automatically: {', '.join(s.name for s in out) or 'none'}"
                     + (f" (skipped free text / id-like: {', '.join(skipped)})" if skipped else ""))
    if not out:
        raise SchemaError("no usable attribute columns (string or list<string> columns whose values repeat); pass --attributes")
    seen = set()
    uniq = []
    for s in out:
        if s.name not in seen:
            seen.add(s.name)
            uniq.append(s)
    return uniq, notes


def _repeats(cw: CategoryWords, f_min: int = 2) -> bool:
    """Values repeat: at least two distinct words, distinct words <= half the pairs, and some word seen f_min times."""
    if len(cw.items) == 0 or len(cw.vocab) < 2:
        return False
    c = cw.counts()
    return len(cw.vocab) <= 0.5 * len(cw.items) and int(c.max()) >= f_min


# --------------------------------------------------------------------------------------------
# information-theoretic statistics (§5.3)

def entropy(keys: np.ndarray, miller_madow: bool = True) -> float:
    """Plug-in entropy in nats of the values in ``keys`` (+ the Miller-Madow correction)."""
    n = len(keys)
    if n == 0:
        return 0.0
    _, c = np.unique(keys, return_counts=True)
    p = c / n
    h = float(-(p * np.log(p)).sum())
    if miller_madow:
        h += (len(c) - 1) / (2 * n)
    return max(h, 0.0)


class GroupStats:
    """A_a (most specific word of each category, 0 = absent) over a sample; H(A_g), H(Z_g) per group."""

    def __init__(self, cats: list[CategoryWords], rows: np.ndarray | None = None):
        self.names = [c.name for c in cats]
        n = cats[0].n
        rows = np.arange(n) if rows is None else rows
        self.n = len(rows)
        self.A = np.zeros((len(cats), self.n), np.int64)  # 1-based word code, 0 absent
        self.F = np.full((len(cats), self.n), np.inf)  # frequency of that word
        self.present = np.zeros((len(cats), self.n), bool)
        inv = np.full(n, -1, np.int64)
        inv[rows] = np.arange(len(rows))
        self.offsets = np.zeros(len(cats), np.int64)
        off = 0
        for a, cw in enumerate(cats):
            cnt = cw.counts()
            self.offsets[a] = off
            off += len(cw.vocab) + 1
            if not len(cw.items):
                continue
            r = inv[cw.items]
            ok = r >= 0
            r, codes = r[ok], cw.codes[ok]
            f = cnt[codes]
            # most specific word per item: lowest frequency, then lexicographic (= lowest code)
            order = np.lexsort((codes, f, r))
            first = np.ones(len(order), bool)
            first[1:] = r[order][1:] != r[order][:-1]
            sel = order[first]
            self.A[a, r[sel]] = codes[sel] + 1
            self.F[a, r[sel]] = f[sel]
            self.present[a, r[sel]] = True
        self._cache: dict[tuple, tuple[float, float, int]] = {}

    def joint_key(self, g: Sequence[int]) -> np.ndarray:
        key = np.zeros(self.n, np.int64)
        for a in g:
            _, key = np.unique(key * (int(self.A[a].max()) + 1) + self.A[a], return_inverse=True)
            key = key.astype(np.int64)
        return key

    def z_key(self, g: Sequence[int]) -> np.ndarray:
        g = list(g)
        F = self.F[g]
        best = np.argmin(F, axis=0)  # ties -> the category listed first (priority)
        rows = np.arange(self.n)
        a = np.asarray(g)[best]
        z = self.offsets[a] + self.A[a, rows]
        return np.where(np.isinf(F.min(axis=0)), -1, z)

    def stats(self, g: Sequence[int]) -> tuple[float, float, int]:
        """(H(A_g), H(Z_g), number of distinct Z words) in nats."""
        k = tuple(sorted(g))
        if k not in self._cache:
            z = self.z_key(g)
            self._cache[k] = (entropy(self.joint_key(g)), entropy(z), int(len(np.unique(z[z >= 0]))))
        return self._cache[k]

    def loss(self, g: Sequence[int]) -> float:
        ha, hz, _ = self.stats(g)
        return max(0.0, ha - hz)

    def merge_cost(self, g: Sequence[int], h: Sequence[int]) -> float:
        """Δ(g, h) = H(A_{g∪h}|Z_{g∪h}) - H(A_g|Z_g) - H(A_h|Z_h)."""
        return self.loss(list(g) + list(h)) - self.loss(g) - self.loss(h)

    def mutual_information(self, a: int, b: int) -> float:
        ha = entropy(self.A[a], False)
        hb = entropy(self.A[b], False)
        hab = entropy(self.A[a] * (int(self.A[b].max()) + 1) + self.A[b], False)
        return max(0.0, ha + hb - hab)

    def objective(self, groups: list[list[int]], mu_bal: float) -> float:
        hz = [self.stats(g)[1] for g in groups]
        return sum(self.loss(g) for g in groups) + mu_bal * float(np.var(hz))


def merge_categories(stats: GroupStats, n_groups: int, *, mu_bal: float = 0.1, k_max: int = 16384,
                     refine_passes: int = 3) -> tuple[list[list[int]], list[dict]]:
    """Agglomerative merge (§5.3): returns the groups (lists of category indices) and the merge log."""
    groups = [[a] for a in range(len(stats.names))]
    log: list[dict] = []
    while len(groups) > max(1, n_groups):
        hz = [stats.stats(g)[1] for g in groups]
        var0 = float(np.var(hz))
        best = None
        for i in range(len(groups)):
            for j in range(i + 1, len(groups)):
                u = groups[i] + groups[j]
                if stats.stats(u)[2] > k_max:
                    continue
                d = stats.merge_cost(groups[i], groups[j])
                hz2 = [h for k, h in enumerate(hz) if k not in (i, j)] + [stats.stats(u)[1]]
                cost = d + mu_bal * (float(np.var(hz2)) - var0)
                if best is None or cost < best[0] - 1e-12:
                    best = (cost, d, i, j)
        if best is None:
            break
        cost, d, i, j = best
        log.append({"merged": [[stats.names[a] for a in groups[i]], [stats.names[a] for a in groups[j]]],
                    "delta_nats": round(d, 6), "cost": round(cost, 6)})
        groups = [g for k, g in enumerate(groups) if k not in (i, j)] + [groups[i] + groups[j]]
    # local search: move single categories when J drops
    for _ in range(refine_passes):
        moved = False
        for gi in range(len(groups)):
            for a in list(groups[gi]):
                if len(groups[gi]) == 1:
                    continue
                base = stats.objective(groups, mu_bal)
                for gj in range(len(groups)):
                    if gj == gi:
                        continue
                    trial = [list(g) for g in groups]
                    trial[gi].remove(a)
                    trial[gj].append(a)
                    if stats.stats(trial[gj])[2] > k_max:
                        continue
                    if stats.objective(trial, mu_bal) < base - 1e-9:
                        log.append({"moved": stats.names[a], "to": [stats.names[x] for x in groups[gj]]})
                        groups = trial
                        moved = True
                        break
                if moved:
                    break
            if moved:
                break
        if not moved:
            break
    for g in groups:
        g.sort()
    return groups, log


# --------------------------------------------------------------------------------------------
# capacity (§5.4)

def group_vocabulary(cats: list[CategoryWords], members: Sequence[int], *, eps: float, f_min: int, k_max: int,
                     exclude: set[tuple[str, str]] = frozenset(), max_words: int | None = None) -> tuple[list[tuple[str, str, int]], float]:
    """Kept words of a group: the most frequent (category, word) pairs covering 1 - eps of the
    word occurrences, each seen >= f_min times, at most k_max (and max_words). Returns
    ([(category, word, count)], coverage of the kept words)."""
    rows = []
    for a in members:
        cw = cats[a]
        for w, c in zip(cw.vocab, cw.counts()):
            if c > 0:
                rows.append((cw.name, w, int(c)))
    rows.sort(key=lambda r: (-r[2], r[0], r[1]))
    total = sum(r[2] for r in rows)
    kept, mass = [], 0
    cap = min(k_max, max_words) if max_words is not None else k_max
    for cat, w, c in rows:
        if total and mass >= (1 - eps) * total:
            break
        if c < f_min or len(kept) >= cap:
            break
        if (cat, w) in exclude:
            continue
        kept.append((cat, w, c))
        mass += c
    return kept, (mass / total if total else 0.0)


def reserved_count(k_active: int, ratio: float, r_min: int) -> int:
    return max(int(r_min), int(math.ceil(ratio * k_active)))


# --------------------------------------------------------------------------------------------
# the plan

@dataclass
class GroupPlan:
    name: str
    categories: list[str]
    reserved: int | None = None  # None: max(reserved_min, ceil(reserved_ratio * kept))
    max_words: int | None = None
    stats: dict = field(default_factory=dict)  # informational (written as comments)


@dataclass
class Plan:
    groups: list[GroupPlan]
    eps: float = DEFAULTS["eps"]
    f_min: int = DEFAULTS["f_min"]
    k_max: int = DEFAULTS["k_max"]
    reserved_ratio: float = DEFAULTS["reserved_ratio"]
    reserved_min: int = DEFAULTS["reserved_min"]
    mu_bal: float = DEFAULTS["mu_bal"]
    route_min_precision: float = DEFAULTS["route_min_precision"]
    route_neighbours: int = DEFAULTS["route_neighbours"]  # k of the neighbour-centred routing features (0: off)
    exclude: list[str] = field(default_factory=list)  # "category:word" held out of the vocabulary
    text_columns: list[str] = field(default_factory=lambda: ["title"])  # matched for bound words (§5.5 matches())
    report: dict = field(default_factory=dict)  # merge log, mutual information (not read back)

    @property
    def categories(self) -> list[str]:
        return [c for g in self.groups for c in g.categories]

    def group_of(self, category: str) -> int | None:
        for i, g in enumerate(self.groups):
            if category in g.categories:
                return i
        return None

    def excluded(self) -> set[tuple[str, str]]:
        out = set()
        for e in self.exclude:
            cat, _, w = e.partition(":")
            out.add((cat, normalize_word(w)))
        return out

    def validate(self) -> "Plan":
        if not self.groups:
            raise ConfigError("the KAE plan has no groups; add [[group]] tables with categories")
        seen: set[str] = set()
        for g in self.groups:
            if not g.categories:
                raise ConfigError(f"KAE plan group '{g.name}' has no categories; give it categories or remove it")
            for c in g.categories:
                if c in seen:
                    raise ConfigError(f"KAE plan: category '{c}' is in two groups; keep it in one")
                seen.add(c)
            if g.reserved is not None and (not isinstance(g.reserved, int) or g.reserved < 0):
                raise ConfigError(f"KAE plan group '{g.name}': reserved must be a non-negative integer")
        if not (0 <= self.eps < 1):
            raise ConfigError(f"KAE plan: eps must be in [0, 1) (got {self.eps})")
        if self.f_min < 1 or self.k_max < 1 or self.reserved_min < 0 or self.reserved_ratio < 0:
            raise ConfigError("KAE plan: f_min and k_max must be >= 1, reserved_min and reserved_ratio >= 0")
        if isinstance(self.route_neighbours, bool) or not isinstance(self.route_neighbours, int) or self.route_neighbours < 0:
            raise ConfigError(f"KAE plan: route_neighbours must be a non-negative integer (got {self.route_neighbours!r}); 0 turns the neighbour features off")
        return self

    def to_dict(self) -> dict:
        return {"version": PLAN_VERSION, "eps": self.eps, "f_min": self.f_min, "k_max": self.k_max,
                "reserved_ratio": self.reserved_ratio, "reserved_min": self.reserved_min, "mu_bal": self.mu_bal,
                "route_min_precision": self.route_min_precision, "route_neighbours": self.route_neighbours,
                "exclude": list(self.exclude),
                "text_columns": list(self.text_columns),
                "groups": [{"name": g.name, "categories": list(g.categories), "reserved": g.reserved,
                            "max_words": g.max_words, "stats": g.stats} for g in self.groups],
                "report": self.report}

    @classmethod
    def from_dict(cls, d: Mapping) -> "Plan":
        groups = [GroupPlan(str(g.get("name", f"g{i}")), [str(c) for c in g.get("categories", [])], g.get("reserved"),
                            g.get("max_words"), dict(g.get("stats", {}))) for i, g in enumerate(d.get("groups", d.get("group", [])))]
        kw = {k: d[k] for k in ("eps", "f_min", "k_max", "reserved_ratio", "reserved_min", "mu_bal", "route_min_precision", "route_neighbours") if k in d}
        if "text_columns" in d:
            tc = d["text_columns"]
            if isinstance(tc, str) or not all(isinstance(x, str) for x in tc):
                raise ConfigError(f"KAE plan: text_columns must be a list of column names (got {tc!r})")
            kw["text_columns"] = list(tc)
        return cls(groups, exclude=[str(x) for x in d.get("exclude", [])], report=dict(d.get("report", {})), **kw).validate()


def _toml_str(s: str) -> str:
    return '"' + s.replace("\\", "\\\\").replace('"', '\\"') + '"'


def plan_to_toml(plan: Plan) -> str:
    """The editable TOML form of a plan (statistics as comments)."""
    lines = ["# sidkit KAE plan (METHODS.md §5.3-5.4). Edit the groups (order = SID position), the",
             "# reserved slots per group or the thresholds, then run: sidkit fit ITEMS --method kae --plan THIS_FILE",
             "[kae]", f"version = {PLAN_VERSION}", f"eps = {plan.eps}", f"f_min = {plan.f_min}", f"k_max = {plan.k_max}",
             f"reserved_ratio = {plan.reserved_ratio}", f"reserved_min = {plan.reserved_min}", f"mu_bal = {plan.mu_bal}",
             f"route_min_precision = {plan.route_min_precision}",
             f"route_neighbours = {plan.route_neighbours}  # k of the neighbour-centred routing features (0: embeddings alone)",
             "exclude = [" + ", ".join(_toml_str(e) for e in plan.exclude) + "]  # 'category:word' held out of the vocabulary",
             "text_columns = [" + ", ".join(_toml_str(c) for c in plan.text_columns) + "]  # text matched for bound words in items lacking the attribute", ""]
    for i, g in enumerate(plan.groups):
        s = g.stats
        lines.append("[[kae.group]]")
        if s:
            lines.append(f"# position {i}: H(Z) = {s.get('entropy_bits', 0):.3f} bits, H(A|Z) = {s.get('loss_bits', 0):.3f} bits, "
                         f"kept words {s.get('kept_words')}, coverage {s.get('coverage', 0):.3f}, capacity {s.get('capacity')}")
        lines.append(f"name = {_toml_str(g.name)}")
        lines.append("categories = [" + ", ".join(_toml_str(c) for c in g.categories) + "]")
        if g.reserved is not None:
            lines.append(f"reserved = {g.reserved}")
        else:
            lines.append(f"# reserved = {s.get('reserved', '')}  (default: max(reserved_min, ceil(reserved_ratio * kept words)))")
        if g.max_words is not None:
            lines.append(f"max_words = {g.max_words}")
        lines.append("")
    mi = plan.report.get("mutual_information")
    if mi:
        lines.append("# pairwise mutual information I(A_a; A_b) in bits (co-presence rate)")
        for r in mi:
            lines.append(f"#   {r['a']} ~ {r['b']}: {r['mi_bits']:.3f} ({r['co_presence']:.3f})")
    return "\n".join(lines) + "\n"


def read_plan(path: str | Path) -> Plan:
    from sidkit.config import read_toml

    p = Path(path)
    data = read_toml(p, what="plan",
                     missing=f"KAE plan not found; write one with 'sidkit kae-plan ITEMS --attributes ... -o {p.name}'")
    k = data.get("kae", data)
    if "group" not in k:
        raise ConfigError(f"{p}: no [[kae.group]] tables; is this a KAE plan written by 'sidkit kae-plan'?")
    try:
        return Plan.from_dict(k)
    except (TypeError, ValueError, AttributeError) as e:
        if isinstance(e, ConfigError):
            raise ConfigError(f"{p}: {e}") from None
        raise ConfigError(f"{p}: bad KAE plan ({e})") from None


def write_plan(plan: Plan, path: str | Path) -> None:
    from sidkit.io.artifacts import write_text_atomic

    write_text_atomic(path, plan_to_toml(plan))


# --------------------------------------------------------------------------------------------
# making a plan

def order_groups(members: list, entropies: Sequence[float], specs: Sequence[CategorySpec]) -> list:
    """Coarse to fine: ascending H(Z_g) (METHODS.md §5.3 step 4), with one constraint added: the
    levels of one category path come in path order (a group holding ``categories[1]`` before one
    holding only deeper levels of ``categories``), however the entropies fall. Groups holding
    levels of a path keep the positions the entropy order gave them and are re-dealt over those
    positions by their shallowest level; other groups keep their entropy positions."""
    order = sorted(range(len(members)), key=lambda i: (entropies[i], members[i]))
    out = [members[i] for i in order]
    for col in sorted({specs[a].column for g in out for a in g if specs[a].level is not None}):
        def depth(g):
            return min((specs[a].level for a in g if specs[a].column == col and specs[a].level is not None), default=None)

        slots = [k for k, g in enumerate(out) if depth(g) is not None]
        dealt = sorted((out[k] for k in slots), key=lambda g: (depth(g), g))
        for k, g in zip(slots, dealt):
            out[k] = g
    return out


def make_plan(table: pa.Table | Mapping[str, Sequence], attributes: Sequence[str] | None = None, *, groups: int = 6,
              mu_bal: float = DEFAULTS["mu_bal"], k_max: int = DEFAULTS["k_max"], eps: float = DEFAULTS["eps"],
              f_min: int = DEFAULTS["f_min"], reserved_ratio: float = DEFAULTS["reserved_ratio"],
              reserved_min: int = DEFAULTS["reserved_min"], refine_passes: int = DEFAULTS["refine_passes"],
              sample: int = DEFAULTS["sample"], exclude_columns: Iterable[str] = (), seed: int = 0) -> tuple[Plan, list[str]]:
    """Group the attribute categories of a catalog and size their codebooks. Returns (plan, notes)."""
    if not isinstance(groups, int) or groups < 1:
        raise ConfigError(f"--groups must be a positive integer (got {groups!r})")
    specs, notes = choose_categories(table, attributes, exclude=exclude_columns)
    get = (lambda c: table.column(c)) if isinstance(table, pa.Table) else (lambda c: table[c])
    cats = [extract_words(get(s.column), s) for s in specs]
    n = cats[0].n
    rows = None
    if n > sample:
        rows = np.sort(np.random.default_rng(seed).choice(n, sample, replace=False))
    st = GroupStats(cats, rows)
    G = min(groups, len(cats))
    members, log = merge_categories(st, G, mu_bal=mu_bal, k_max=k_max, refine_passes=refine_passes)
    members = order_groups(members, [st.stats(g)[1] for g in members], specs)
    ln2 = math.log(2)
    gplans = []
    for i, g in enumerate(members):
        ha, hz, _ = st.stats(g)
        kept, cov = group_vocabulary(cats, g, eps=eps, f_min=f_min, k_max=k_max)
        r = reserved_count(len(kept), reserved_ratio, reserved_min)
        pres = st.present[g].any(axis=0)
        name = "+".join(cats[a].name for a in g) if len(g) <= 3 else f"{cats[g[0]].name}+{len(g) - 1}"
        gplans.append(GroupPlan(name, [cats[a].name for a in g], None, None, {
            "entropy_bits": round(hz / ln2, 4), "joint_entropy_bits": round(ha / ln2, 4),
            "loss_bits": round(max(0.0, ha - hz) / ln2, 4), "kept_words": len(kept), "coverage": round(cov, 4),
            "reserved": r, "capacity": len(kept) + 2 + r, "present_rate": round(float(pres.mean()), 4),
            "entropy_per_category_bits": {cats[a].name: round(entropy(st.A[a]) / ln2, 4) for a in g}}))
    mi = []
    for a in range(len(cats)):
        for b in range(a + 1, len(cats)):
            mi.append({"a": cats[a].name, "b": cats[b].name, "mi_bits": round(st.mutual_information(a, b) / ln2, 4),
                       "co_presence": round(float((st.present[a] & st.present[b]).mean()), 4)})
    plan = Plan(gplans, eps=eps, f_min=f_min, k_max=k_max, reserved_ratio=reserved_ratio, reserved_min=reserved_min,
                mu_bal=mu_bal, report={"n_items": n, "n_sampled": st.n, "merge_log": log, "mutual_information": mi,
                                       "objective_bits": round(st.objective(members, mu_bal) / ln2, 4)})
    return plan.validate(), notes
