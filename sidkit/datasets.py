"""Synthetic catalogs and interaction logs with planted structure, for tests, examples and benchmarks.

Everything here is deterministic for a given ``seed`` (numpy ``Generator``), needs only numpy and
pyarrow (no torch), and produces tables in the input format of DESIGN.md §3.

- :func:`make_catalog`: an item catalog with a 3-level category hierarchy, hierarchical-Gaussian
  embeddings, attribute columns (brand, color, material, categories) and planted near-duplicates.
- :func:`make_interactions`: user sequences with planted co-interaction structure and a
  leave-one-out split.
- :func:`write_large_catalog`: streams a large clustered catalog (millions of rows) to Parquet with
  bounded memory, for the speed and memory benchmarks.
- :func:`write_catalog`: atomic Parquet write of any table.

The planted structure is known, so tests can check it: items of one leaf category are close,
items of different top categories are not, every ``duplicate_of`` pair has cosine above 0.98.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from sidkit.errors import ConfigError
from sidkit.io.artifacts import atomic_path

__all__ = ["make_catalog", "make_interactions", "write_large_catalog", "write_catalog"]

#: Key of the schema metadata entry that records how a table was generated.
META_KEY = b"sidkit.datasets"

# Spread of the hierarchical Gaussian, as the expected norm of each offset (top centroids are unit
# vectors). Expected cosines: same leaf ~0.75, same mid ~0.6, same top ~0.45, across tops ~0.
_MID_SPREAD = 0.6
_LEAF_SPREAD = 0.45
_ITEM_SPREAD = (0.55, 0.85)  # per-leaf item noise norm, drawn uniformly from this range
_DUP_SPREAD = 0.06  # near-duplicate noise norm: cosine to the original ~0.998

_TOP_NAMES = [
    "Office", "Kitchen", "Garden", "Toys", "Sports", "Beauty", "Tools", "Books",
    "Electronics", "Pets", "Music", "Automotive", "Baby", "Health", "Crafts", "Travel",
]  # fmt: skip
_ADJECTIVES = [
    "Classic", "Premium", "Deluxe", "Compact", "Pro", "Ultra", "Essential", "Heavy-Duty",
    "Portable", "Mini", "Max", "Eco", "Smart", "Basic", "Plus", "Original",
]  # fmt: skip
_COLORS = [
    "black", "white", "gray", "silver", "red", "blue", "navy", "green", "sage green",
    "yellow", "orange", "pink", "purple", "brown", "beige", "gold",
]  # fmt: skip
_MATERIALS = [
    "plastic", "steel", "aluminum", "wood", "bamboo", "cotton", "polyester", "leather",
    "glass", "ceramic", "paper", "rubber", "silicone", "wool",
]  # fmt: skip
_DUP_SUFFIXES = [" (2-pack)", " (3-pack)", " - Renewed", ", Pack of 2", " (Bulk)", " - Value Size"]
_ONSETS = ["b", "c", "d", "f", "g", "k", "l", "m", "n", "p", "r", "s", "t", "v", "z",
           "br", "cr", "dr", "fl", "gr", "pl", "st", "tr"]  # fmt: skip
_VOWELS = ["a", "e", "i", "o", "u", "a", "e", "o", "ai", "ea", "io", "ou"]
_CODAS = ["", "", "", "", "n", "r", "s", "l", "x", "m"]

_COLOR_NULL = 0.12
_MATERIAL_NULL = 0.25
_OWN_BRAND = 0.85  # probability that an item's brand comes from its top category's pool
_POP_EXPONENT = 0.8  # Zipf exponent of item popularity in make_interactions
_BASE_TIME = 1_672_531_200  # 2023-01-01T00:00:00Z


# --------------------------------------------------------------------------------------------
# helpers


def _check_int(name: str, value: object, low: int) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < low:
        raise ConfigError(f"{name} must be an integer >= {low}, got {value!r}")
    return int(value)


def _streams(seed: int, n: int) -> list[np.random.Generator]:
    """``n`` independent generators derived from ``seed`` (one per concern, so that e.g. the
    category hierarchy does not change when ``n_items`` does)."""
    seed = _check_int("seed", seed, 0)
    return [np.random.default_rng(s) for s in np.random.SeedSequence(seed).spawn(n)]


def _words(
    rng: np.random.Generator, n: int, taken: set[str], syllables: tuple[int, int] = (2, 3)
) -> list[str]:
    """``n`` distinct capitalised pseudo-words not in ``taken`` (which is updated)."""
    out: list[str] = []
    while len(out) < n:
        k = int(rng.integers(syllables[0], syllables[1] + 1))
        parts = []
        for _ in range(k):
            parts.append(_ONSETS[rng.integers(len(_ONSETS))])
            parts.append(_VOWELS[rng.integers(len(_VOWELS))])
        parts.append(_CODAS[rng.integers(len(_CODAS))])
        word = "".join(parts).capitalize()
        if word.lower() not in taken:
            taken.add(word.lower())
            out.append(word)
    return out


def _offsets(rng: np.random.Generator, shape: tuple[int, ...], spread: float | np.ndarray) -> np.ndarray:
    """Gaussian offsets whose expected norm (over the last axis) is ``spread``."""
    dim = shape[-1]
    return rng.standard_normal(shape) * (np.asarray(spread, dtype=np.float64) / np.sqrt(dim))


def _normalize(x: np.ndarray) -> np.ndarray:
    norms = np.sqrt(np.sum(x * x, axis=1, keepdims=True))
    return x / np.maximum(norms, 1e-12)


def _zipf(n: int, a: float) -> np.ndarray:
    w = 1.0 / np.arange(1, n + 1, dtype=np.float64) ** a
    return w / w.sum()


def _fixed_size_list(x: np.ndarray) -> pa.FixedSizeListArray:
    x = np.ascontiguousarray(x, dtype=np.float32)
    return pa.FixedSizeListArray.from_arrays(pa.array(x.reshape(-1), type=pa.float32()), x.shape[1])


def _meta(kind: str, **params: object) -> dict[bytes, bytes]:
    return {META_KEY: json.dumps({"generator": kind, **params}, sort_keys=True).encode()}


# --------------------------------------------------------------------------------------------
# catalog


def make_catalog(  # long for its docstring; the code is ~50 lines of named steps
    n_items: int = 2000,
    dim: int = 64,
    *,
    n_categories: tuple[int, int, int] = (8, 4, 4),
    near_duplicate_frac: float = 0.03,
    image_dim: int = 0,
    seed: int = 0,
) -> pa.Table:
    """Make a synthetic item catalog with a planted category hierarchy and near-duplicates.

    Parameters
    ----------
    n_items : int
        Number of rows (near-duplicates included).
    dim : int
        Width of the ``embedding`` column.
    n_categories : (int, int, int)
        Branching of the hierarchy: top categories, mid categories per top, leaves per mid.
        The default gives 8 x 4 x 4 = 128 leaves.
    near_duplicate_frac : float
        Fraction of the rows (in ``[0, 0.5]``) that are near-duplicates of another row.
    image_dim : int
        When > 0, add an ``image_embedding`` column of this width, correlated with ``embedding``
        (same leaf structure, partly shared item noise, its own noise and a random projection).
    seed : int
        Seed; the same arguments give an identical table.

    Returns
    -------
    pyarrow.Table
        Columns, in order:

        ``item_id`` string ("item_000001", ...), unique;
        ``title`` string (brand, adjective, a token shared by the leaf, the leaf name, a model
        number; near-duplicates add a pack-size suffix to their original's title);
        ``brand`` string (Zipf-distributed, each top category has its own brand pool plus a few
        brands shared by all);
        ``categories`` list<string> (path: top, mid, leaf); ``category_leaf`` string (leaf names
        are unique in the catalog);
        ``color`` string, ``material`` string (nullable; concentrated per leaf / per mid category);
        ``duplicate_of`` string (nullable: item_id of the original for a planted near-duplicate);
        ``embedding`` fixed_size_list<float32, dim> (L2-normalised);
        ``image_embedding`` fixed_size_list<float32, image_dim> (only when ``image_dim > 0``).

        The schema metadata key ``sidkit.datasets`` records the generator's arguments.

    Notes
    -----
    Embeddings follow a hierarchical Gaussian: top centroids are random unit vectors; each mid
    centroid is its top's plus an offset of norm ~0.6, each leaf centroid its mid's plus ~0.45,
    each item its leaf's plus noise of norm 0.55-0.85 (per leaf), then L2-normalised. A planted
    duplicate's embedding is its original's plus noise of norm ~0.06 (cosine ~0.998).
    """
    n_items = _check_int("n_items", n_items, 1)
    dim = _check_int("dim", dim, 2)
    image_dim = _check_int("image_dim", image_dim, 0)
    if len(tuple(n_categories)) != 3:
        raise ConfigError(f"n_categories must be 3 integers (top, mid, leaf), got {n_categories!r}")
    n_top, n_mid, n_leaf = (_check_int("n_categories", v, 1) for v in n_categories)
    if not (0.0 <= float(near_duplicate_frac) <= 0.5):
        raise ConfigError(f"near_duplicate_frac must be in [0, 0.5], got {near_duplicate_frac!r}")
    r_names, r_cent, r_items, r_attr, r_dup, r_img = _streams(seed, 6)
    tree = _category_tree(r_names, n_top, n_mid, n_leaf)
    cent = _category_centroids(r_cent, tree, dim)

    # ---- items
    leaf = r_items.choice(tree.n_leaves, size=n_items, p=cent.leaf_share)
    noise = _offsets(r_items, (n_items, dim), cent.leaf_noise[leaf][:, None])
    emb = _normalize(cent.leaf_c[leaf] + noise)
    brand, colors, materials, titles = _item_attributes(r_attr, tree, cent, leaf)
    width = max(6, len(str(n_items)))
    item_ids = [f"item_{i + 1:0{width}d}" for i in range(n_items)]
    duplicate_of: list[str | None] = [None] * n_items
    img = None
    if image_dim:
        # shared leaf structure + part of the text item noise + own noise, through a fixed projection
        own = _offsets(r_img, (n_items, dim), cent.leaf_noise[leaf][:, None])
        img_latent = cent.leaf_c[leaf] + 0.6 * noise + 0.8 * own
        proj = r_img.standard_normal((dim, image_dim)) / np.sqrt(dim)
        img = _normalize(img_latent @ proj)
    n_dup = int(round(float(near_duplicate_frac) * n_items))
    if n_dup:
        _plant_duplicates(r_dup, n_dup, emb=emb, img=img, leaf=leaf, brand=brand, titles=titles, colors=colors,
                          materials=materials, duplicate_of=duplicate_of, item_ids=item_ids)

    columns = {
        "item_id": pa.array(item_ids, type=pa.string()),
        "title": pa.array(titles, type=pa.string()),
        "brand": pa.array(brand.tolist(), type=pa.string()),
        "categories": pa.array([tree.paths[j] for j in leaf], type=pa.list_(pa.string())),
        "category_leaf": pa.array([tree.leaf_names[j] for j in leaf], type=pa.string()),
        "color": pa.array(colors, type=pa.string()),
        "material": pa.array(materials, type=pa.string()),
        "duplicate_of": pa.array(duplicate_of, type=pa.string()),
        "embedding": _fixed_size_list(emb),
    }
    if image_dim:
        columns["image_embedding"] = _fixed_size_list(img)
    meta = _meta(
        "make_catalog", n_items=n_items, dim=dim, n_categories=[n_top, n_mid, n_leaf],
        near_duplicate_frac=float(near_duplicate_frac), image_dim=image_dim, seed=int(seed),
    )  # fmt: skip
    return pa.table(columns).replace_schema_metadata(meta)


def _category_tree(r_names: np.random.Generator, n_top: int, n_mid: int, n_leaf: int) -> SimpleNamespace:
    """Names: categories (unique across the catalog), per-leaf title tokens, brands (own per top + shared)."""
    taken = {w.lower() for w in _TOP_NAMES + _ADJECTIVES + _COLORS + _MATERIALS}
    top_names = _TOP_NAMES[:n_top] + _words(r_names, max(0, n_top - len(_TOP_NAMES)), taken)
    mid_names = _words(r_names, n_top * n_mid, taken)
    leaf_names = _words(r_names, n_top * n_mid * n_leaf, taken)
    n_leaves = len(leaf_names)
    leaf_tokens = np.array(_words(r_names, 3 * n_leaves, taken, (1, 2)), dtype=object).reshape(n_leaves, 3)
    n_own, n_shared = 10, 6
    brand_pool = _words(r_names, n_top * n_own + n_shared, taken)
    own_brands = np.array(brand_pool[: n_top * n_own], dtype=object).reshape(n_top, n_own)
    shared_brands = np.array(brand_pool[n_top * n_own :], dtype=object)
    leaf_mid = np.arange(n_leaves) // n_leaf  # global mid index of each leaf
    leaf_top = leaf_mid // n_mid
    paths = [
        [top_names[leaf_top[j]], mid_names[leaf_mid[j]], leaf_names[j]] for j in range(n_leaves)
    ]
    return SimpleNamespace(n_top=n_top, n_mid=n_mid, n_leaves=n_leaves, leaf_names=leaf_names, leaf_tokens=leaf_tokens,
                           n_own=n_own, n_shared=n_shared, own_brands=own_brands, shared_brands=shared_brands,
                           leaf_mid=leaf_mid, leaf_top=leaf_top, paths=paths)


def _category_centroids(r_cent: np.random.Generator, tree: SimpleNamespace, dim: int) -> SimpleNamespace:
    """Centroids (hierarchical Gaussian), leaf sizes and noise, per-category attribute preferences."""
    n_top, n_mid, n_leaves = tree.n_top, tree.n_mid, tree.n_leaves
    top_c = _normalize(r_cent.standard_normal((n_top, dim)))
    mid_c = top_c[np.arange(n_top * n_mid) // n_mid] + _offsets(r_cent, (n_top * n_mid, dim), _MID_SPREAD)
    leaf_c = mid_c[tree.leaf_mid] + _offsets(r_cent, (n_leaves, dim), _LEAF_SPREAD)
    leaf_noise = r_cent.uniform(*_ITEM_SPREAD, size=n_leaves)
    leaf_share = r_cent.dirichlet(np.full(n_leaves, 2.0))  # uneven leaf sizes
    leaf_color_p = r_cent.dirichlet(np.full(len(_COLORS), 0.3), size=n_leaves)
    mid_material_p = r_cent.dirichlet(np.full(len(_MATERIALS), 0.3), size=n_top * n_mid)
    return SimpleNamespace(leaf_c=leaf_c, leaf_noise=leaf_noise, leaf_share=leaf_share, leaf_color_p=leaf_color_p,
                           mid_material_p=mid_material_p)


def _item_attributes(r_attr: np.random.Generator, tree: SimpleNamespace, cent: SimpleNamespace, leaf: np.ndarray):
    """Brand, color, material (nullable) and title of every item; returns (brand array, colors, materials, titles)."""
    n_items = leaf.size
    own_w, shared_w = _zipf(tree.n_own, 1.1), _zipf(tree.n_shared, 1.1)
    use_own = r_attr.random(n_items) < _OWN_BRAND
    own_pick = r_attr.choice(tree.n_own, size=n_items, p=own_w)
    shared_pick = r_attr.choice(tree.n_shared, size=n_items, p=shared_w)
    brand = np.where(use_own, tree.own_brands[tree.leaf_top[leaf], own_pick], tree.shared_brands[shared_pick])

    u_color = r_attr.random(n_items)
    color_idx = (cent.leaf_color_p[leaf].cumsum(axis=1) < u_color[:, None]).sum(axis=1)
    color_idx = np.minimum(color_idx, len(_COLORS) - 1)
    color_null = r_attr.random(n_items) < _COLOR_NULL
    u_mat = r_attr.random(n_items)
    mat_idx = (cent.mid_material_p[tree.leaf_mid[leaf]].cumsum(axis=1) < u_mat[:, None]).sum(axis=1)
    mat_idx = np.minimum(mat_idx, len(_MATERIALS) - 1)
    mat_null = r_attr.random(n_items) < _MATERIAL_NULL
    adj = r_attr.integers(len(_ADJECTIVES), size=n_items)
    tok = r_attr.integers(3, size=n_items)
    model_letter = r_attr.integers(26, size=n_items)
    model_num = r_attr.integers(10, 1000, size=n_items)
    say_color = r_attr.random(n_items) < 0.5

    colors: list[str | None] = [None if color_null[i] else _COLORS[color_idx[i]] for i in range(n_items)]
    materials: list[str | None] = [None if mat_null[i] else _MATERIALS[mat_idx[i]] for i in range(n_items)]
    titles = []
    for i in range(n_items):
        j = leaf[i]
        t = f"{brand[i]} {_ADJECTIVES[adj[i]]} {tree.leaf_tokens[j, tok[i]]} {tree.leaf_names[j]}"
        if colors[i] is not None and say_color[i]:
            t += f", {colors[i].title()}"
        titles.append(f"{t} {chr(65 + model_letter[i])}-{model_num[i]}")
    return brand, colors, materials, titles


def _plant_duplicates(r_dup: np.random.Generator, n_dup: int, *, emb, img, leaf, brand, titles, colors, materials,
                      duplicate_of, item_ids) -> None:
    """Planted near-duplicates, in place: copy an original's attributes, suffix its title, jitter its vector(s)."""
    n_items, dim = emb.shape
    perm = r_dup.permutation(n_items)
    dups, origs = perm[:n_dup], perm[n_dup : 2 * n_dup]
    suffix = r_dup.integers(len(_DUP_SUFFIXES), size=n_dup)
    emb[dups] = _normalize(emb[origs] + _offsets(r_dup, (n_dup, dim), _DUP_SPREAD))
    if img is not None:
        img[dups] = _normalize(img[origs] + _offsets(r_dup, (n_dup, img.shape[1]), _DUP_SPREAD))
    leaf[dups] = leaf[origs]
    brand[dups] = brand[origs]
    for d, o, s in zip(dups.tolist(), origs.tolist(), suffix.tolist()):
        titles[d] = titles[o] + _DUP_SUFFIXES[s]
        colors[d], materials[d] = colors[o], materials[o]
        duplicate_of[d] = item_ids[o]


# --------------------------------------------------------------------------------------------
# interactions


def make_interactions(
    catalog: pa.Table,
    n_users: int = 1000,
    *,
    min_len: int = 5,
    max_len: int = 30,
    seed: int = 0,
) -> pa.Table:
    """Make user interaction sequences over ``catalog`` with planted co-interaction structure.

    Each user has 1 or 2 preferred leaf categories (chosen by category popularity) and a sequence
    length drawn uniformly from ``[min_len, max_len]``. At each step the user picks an item from
    the current preferred leaf (78%; switching between preferred leaves now and then), from a
    sibling leaf under the same mid category (12%), or from the whole catalog (10%). Items are
    drawn by a Zipf popularity (exponent 0.8, random item ranks); a user does not repeat an item.

    Parameters
    ----------
    catalog : pyarrow.Table
        Needs ``item_id``; uses ``category_leaf`` and ``categories`` (as made by
        :func:`make_catalog`) when present, else treats the catalog as one category.
    n_users : int
    min_len, max_len : int
        Sequence length bounds, ``3 <= min_len <= max_len <= catalog rows``.
    seed : int

    Returns
    -------
    pyarrow.Table
        ``user_id`` string ("user_00001", ...), ``item_id`` (the catalog's id type),
        ``position`` int32 (0-based, contiguous per user), ``timestamp`` int64 (Unix seconds,
        strictly increasing per user), ``split`` string: leave-one-out, the last interaction of
        each user is "test", the second-last "valid", the rest "train". Rows are ordered by user,
        then position.
    """
    n_users = _check_int("n_users", n_users, 1)
    min_len = _check_int("min_len", min_len, 3)
    max_len = _check_int("max_len", max_len, min_len)
    if "item_id" not in catalog.column_names:
        raise ConfigError("catalog has no 'item_id' column; make it with sidkit.datasets.make_catalog")
    n = catalog.num_rows
    if max_len > n:
        raise ConfigError(f"max_len ({max_len}) is larger than the catalog ({n} items)")
    r_pop, r_users = _streams(seed, 2)
    leaf, n_leaves, leaf_mid = _leaf_structure(catalog)
    pick = _ItemPicker(r_pop, r_users, leaf, n_leaves, leaf_mid)

    users, items_out, positions, times = [], [], [], []
    uwidth = max(5, len(str(n_users)))
    for u in range(n_users):
        seq = pick.sequence(min_len, max_len)
        length = len(seq)
        start = _BASE_TIME + int(r_users.integers(0, 180 * 86400))
        gaps = 60 + np.floor(r_users.exponential(6 * 3600, size=length)).astype(np.int64)
        gaps[0] = 0
        users.extend([f"user_{u + 1:0{uwidth}d}"] * length)
        items_out.extend(seq)
        positions.append(np.arange(length, dtype=np.int32))
        times.append(start + np.cumsum(gaps))

    pos = np.concatenate(positions)
    lengths = np.array([len(p) for p in positions])
    last = np.repeat(lengths - 1, lengths)
    split = np.where(pos == last, "test", np.where(pos == last - 1, "valid", "train"))
    meta = _meta("make_interactions", n_users=n_users, min_len=min_len, max_len=max_len, seed=int(seed))
    return pa.table(
        {
            "user_id": pa.array(users, type=pa.string()),
            "item_id": catalog.column("item_id").take(pa.array(items_out, type=pa.int64())),
            "position": pa.array(pos, type=pa.int32()),
            "timestamp": pa.array(np.concatenate(times).astype(np.int64), type=pa.int64()),
            "split": pa.array(split.tolist(), type=pa.string()),
        }
    ).replace_schema_metadata(meta)


def _leaf_structure(catalog: pa.Table) -> tuple[np.ndarray, int, np.ndarray]:
    """Each item's leaf index, the number of leaves and each leaf's mid index (one category when the
    catalog has no ``category_leaf``; one mid when it has no ``categories``)."""
    n = catalog.num_rows
    if "category_leaf" in catalog.column_names:
        leaf_names = np.array(catalog.column("category_leaf").to_pylist(), dtype=object)
        leaf_names[leaf_names == None] = ""  # noqa: E711  (object array elementwise compare)
        uniq, leaf = np.unique(leaf_names.astype(str), return_inverse=True)
    else:
        uniq, leaf = np.array([""]), np.zeros(n, dtype=np.int64)
    n_leaves = len(uniq)
    leaf_mid = np.zeros(n_leaves, dtype=np.int64)
    if "categories" in catalog.column_names:
        mids = [" > ".join((p or [])[:2]) for p in catalog.column("categories").to_pylist()]
        _, mid_of_item = np.unique(np.array(mids, dtype=str), return_inverse=True)
        leaf_mid[leaf] = mid_of_item  # every item of a leaf shares its mid
    return leaf, n_leaves, leaf_mid


class _ItemPicker:
    """The users' item choices of :func:`make_interactions`: Zipf item popularity (random ranks, from
    ``r_pop``), preferred leaves by flattened leaf popularity; every choice draws from ``r_users``."""

    def __init__(self, r_pop, r_users, leaf, n_leaves, leaf_mid):
        n = leaf.size
        self.r, self.n, self.n_leaves, self.leaf_mid = r_users, n, n_leaves, leaf_mid
        self.pop = pop = 1.0 / (1.0 + r_pop.permutation(n)) ** _POP_EXPONENT
        self.all_items = np.arange(n)
        self.global_cum = np.cumsum(pop) / pop.sum()
        order = np.argsort(leaf, kind="stable")
        bounds = np.searchsorted(leaf[order], np.arange(n_leaves + 1))
        self.leaf_items = leaf_items = [order[bounds[j] : bounds[j + 1]] for j in range(n_leaves)]
        self.leaf_cum = []
        for items in leaf_items:
            c = np.cumsum(pop[items])
            self.leaf_cum.append(c / c[-1])
        leaf_pop = np.array([pop[items].sum() for items in leaf_items])
        self.leaf_p = np.sqrt(leaf_pop) / np.sqrt(leaf_pop).sum()  # flatter than item popularity
        self.mid_leaves = {m: np.flatnonzero(leaf_mid == m) for m in np.unique(leaf_mid)}

    def draw(self, j: int | None, seen: set[int]) -> int:
        """An unseen item of leaf ``j`` (whole catalog when None), by popularity."""
        items, cum = (self.all_items, self.global_cum) if j is None else (self.leaf_items[j], self.leaf_cum[j])
        i = int(items[min(int(np.searchsorted(cum, self.r.random())), len(items) - 1)])
        if i not in seen:
            return i
        rest = np.array([k for k in items.tolist() if k not in seen], dtype=np.int64)
        if len(rest) == 0:  # leaf exhausted: any unseen item (max_len <= n, so one exists)
            rest = np.array([k for k in range(self.n) if k not in seen], dtype=np.int64)
        c = np.cumsum(self.pop[rest])
        return int(rest[min(int(np.searchsorted(c, self.r.random() * c[-1])), len(rest) - 1)])

    def sequence(self, min_len: int, max_len: int) -> list[int]:
        """One user's items: 1 or 2 preferred leaves, then per step the current preferred leaf (78%,
        switching now and then), a sibling leaf (12%) or the whole catalog (10%); no repeats."""
        r = self.r
        k = min(self.n_leaves, 1 + int(r.random() < 0.5))
        prefs = r.choice(self.n_leaves, size=k, replace=False, p=self.leaf_p)
        length = int(r.integers(min_len, max_len + 1))
        cur = int(prefs[0])
        seen: set[int] = set()
        seq = []
        for _ in range(length):
            x = r.random()
            if x < 0.78:
                if k > 1 and r.random() < 0.25:
                    cur = int(prefs[1]) if cur == int(prefs[0]) else int(prefs[0])
                i = self.draw(cur, seen)
            elif x < 0.90:
                sib = self.mid_leaves[self.leaf_mid[cur]]
                j = int(sib[r.integers(len(sib))])
                i = self.draw(j, seen)
            else:
                i = self.draw(None, seen)
            seen.add(i)
            seq.append(i)
        return seq


# --------------------------------------------------------------------------------------------
# writing


def write_catalog(table: pa.Table, path: str | os.PathLike, *, compression: str = "zstd") -> Path:
    """Write ``table`` to Parquet at ``path`` atomically (temp file beside it, then rename)."""
    path = Path(path)
    with atomic_path(path, suffix=".parquet") as tmp:
        pq.write_table(table, tmp, compression=compression)
    return path


#: Rows per generation block of :func:`write_large_catalog`. Each block has its own random stream
#: (derived from ``seed`` and the block index), so the rows do not depend on ``batch_size``.
_LARGE_BLOCK = 16384
_LARGE_SUB = 8  # sub-clusters per cluster
_LARGE_SUB_SPREAD = 0.5
_LARGE_ITEM_SPREAD = 0.5
_LARGE_BRANDS = 64  # attributes=True: brand = cluster % 64
_LARGE_COLORS = ["black", "white", "red", "blue", "green", "yellow", "grey", "brown", "pink", "purple",
                 "orange", "silver"]  # color = (7 * sub-cluster + cluster) % 12
_LARGE_COLOR_MISSING = 0.05


def write_large_catalog(
    path: str | os.PathLike,
    n_items: int,
    dim: int = 384,
    *,
    n_clusters: int = 1024,
    batch_size: int = 65536,
    seed: int = 0,
    attributes: bool = False,
) -> Path:
    """Stream a large clustered catalog to Parquet with bounded memory (for benchmarks).

    Columns: ``item_id`` int64 (0 .. n_items-1) and ``embedding`` fixed_size_list<float32, dim>
    (L2-normalised). The data is a two-level mixture of Gaussians: ``n_clusters`` random unit
    centres with uneven weights, 8 sub-clusters per cluster (offset norm ~0.5), item noise of
    norm ~0.5, so k-means and residual levels both have structure to find.

    Rows are generated in blocks of 16,384 with a random stream per block, so the file's content
    depends on ``seed`` only, not on ``batch_size`` (which sets the record batch / row group size
    and the memory: about ``batch_size * dim * 4`` bytes plus one block). A 1M x 384 file takes a
    few seconds to write. The write is atomic.

    ``attributes=True`` adds two string columns for KAE, drawn from the mixture's labels:
    ``brand`` (one of 64, a function of the cluster) and ``color`` (one of 12, a function of the
    sub-cluster; null for about 5% of the rows, from a separate random stream, so that some items
    need routing). The other columns are the same with or without them.
    """
    n_items = _check_int("n_items", n_items, 1)
    dim = _check_int("dim", dim, 2)
    n_clusters = _check_int("n_clusters", n_clusters, 1)
    batch_size = _check_int("batch_size", batch_size, 1)
    seed = _check_int("seed", seed, 0)
    gen = _LargeMixture(n_items, dim, n_clusters, seed, attributes)
    fields = [("item_id", pa.int64()), ("embedding", pa.list_(pa.float32(), dim))]
    extra = {}
    if attributes:
        fields += [("brand", pa.string()), ("color", pa.string())]
        extra["attributes"] = True
    schema = pa.schema(
        fields,
        metadata=_meta("write_large_catalog", n_items=n_items, dim=dim, n_clusters=n_clusters, seed=seed, **extra),
    )
    path = Path(path)
    with atomic_path(path, suffix=".parquet") as tmp:
        with pq.ParquetWriter(
            tmp, schema, compression="none", use_dictionary=["brand", "color"] if attributes else False,
            write_statistics=["item_id"],
        ) as writer:
            for a in range(0, n_items, batch_size):
                batch = pa.record_batch(gen.rows(a, min(a + batch_size, n_items)), schema=schema)
                writer.write_batch(batch, row_group_size=batch_size)
    return path


class _LargeMixture:
    """The two-level Gaussian mixture of :func:`write_large_catalog`, generated in blocks of
    ``_LARGE_BLOCK`` rows with a random stream per block (the last block is kept for the next rows)."""

    def __init__(self, n_items: int, dim: int, n_clusters: int, seed: int, attributes: bool):
        self.n_items, self.dim, self.n_clusters, self.seed, self.attributes = n_items, dim, n_clusters, seed, attributes
        rng = np.random.default_rng([seed, 0])
        centers = _normalize(rng.standard_normal((n_clusters, dim))).astype(np.float32)
        subs = np.repeat(centers, _LARGE_SUB, axis=0) + _offsets(
            rng, (n_clusters * _LARGE_SUB, dim), _LARGE_SUB_SPREAD
        )
        self.subs = subs.astype(np.float32)
        self.cum = np.cumsum(rng.dirichlet(np.full(n_clusters, 2.0)))
        self.scale = np.float32(_LARGE_ITEM_SPREAD / np.sqrt(dim))
        if attributes:
            self.brands = pa.array([f"brand-{i:02d}" for i in range(_LARGE_BRANDS)])
            self.colors = pa.array(_LARGE_COLORS)
        self._cache: tuple[int, tuple] | None = None

    def block(self, b: int) -> tuple:
        """Block ``b``: its unit vectors and, with attributes, (brand index, color index with nulls)."""
        start = b * _LARGE_BLOCK
        m = min(_LARGE_BLOCK, self.n_items - start)
        seed = self.seed
        r = np.random.default_rng([seed, 1, b])
        cl = np.minimum(np.searchsorted(self.cum, r.random(m), side="right"), self.n_clusters - 1)
        sub = cl * _LARGE_SUB + r.integers(_LARGE_SUB, size=m)
        x = r.standard_normal((m, self.dim), dtype=np.float32)
        x *= self.scale
        x += self.subs[sub]
        x /= np.sqrt(np.einsum("ij,ij->i", x, x))[:, None]
        if not self.attributes:
            return x, None
        brand = (cl % _LARGE_BRANDS).astype(np.int32)
        color = pa.array((sub * 7 + cl) % len(_LARGE_COLORS), type=pa.int32(),
                         mask=np.random.default_rng([seed, 2, b]).random(m) < _LARGE_COLOR_MISSING)
        return x, (brand, color)

    def rows(self, a: int, b: int) -> list:
        """The columns of rows ``a`` .. ``b``-1 (item_id, embedding[, brand, color])."""
        pieces, attrs = [], []
        for k in range(a // _LARGE_BLOCK, (b - 1) // _LARGE_BLOCK + 1):
            if self._cache is None or self._cache[0] != k:
                self._cache = (k, self.block(k))
            blk = self._cache[1]
            lo = k * _LARGE_BLOCK
            sl = slice(max(a, lo) - lo, min(b, lo + _LARGE_BLOCK) - lo)
            pieces.append(blk[0][sl])
            if self.attributes:
                attrs.append((blk[1][0][sl], blk[1][1][sl]))
        x = pieces[0] if len(pieces) == 1 else np.concatenate(pieces)
        cols = [pa.array(np.arange(a, b, dtype=np.int64)), _fixed_size_list(x)]
        if self.attributes:
            cols.append(self.brands.take(pa.array(np.concatenate([p[0] for p in attrs]))))
            cols.append(self.colors.take(pa.concat_arrays([p[1] for p in attrs])))
        return cols
