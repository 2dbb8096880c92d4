"""sidkit.datasets: determinism, schema, planted structure, streaming writer, committed examples."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from collections import Counter, defaultdict
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from sidkit import datasets
from sidkit.errors import ConfigError

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = ROOT / "examples"


def _ipc_bytes(table: pa.Table) -> bytes:
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, table.schema) as writer:
        writer.write_table(table)
    return sink.getvalue().to_pybytes()


def _matrix(table: pa.Table, column: str = "embedding") -> np.ndarray:
    col = table.column(column).combine_chunks()
    return col.values.to_numpy(zero_copy_only=False).reshape(len(col), col.type.list_size)


@pytest.fixture(scope="module")
def catalog() -> pa.Table:
    return datasets.make_catalog(1500, 48, seed=7)


@pytest.fixture(scope="module")
def interactions(catalog: pa.Table) -> pa.Table:
    return datasets.make_interactions(catalog, 300, min_len=4, max_len=20, seed=7)


# ---------------------------------------------------------------------------------- determinism


def test_catalog_same_seed_is_byte_identical():
    a = datasets.make_catalog(400, 16, image_dim=8, seed=3)
    b = datasets.make_catalog(400, 16, image_dim=8, seed=3)
    assert _ipc_bytes(a) == _ipc_bytes(b)


def test_catalog_different_seed_differs():
    a = datasets.make_catalog(400, 16, seed=3)
    b = datasets.make_catalog(400, 16, seed=4)
    assert not np.allclose(_matrix(a), _matrix(b))
    assert a.column("title").to_pylist() != b.column("title").to_pylist()


def test_interactions_deterministic(catalog, interactions):
    again = datasets.make_interactions(catalog, 300, min_len=4, max_len=20, seed=7)
    assert _ipc_bytes(again) == _ipc_bytes(interactions)
    other = datasets.make_interactions(catalog, 300, min_len=4, max_len=20, seed=8)
    assert other.column("item_id").to_pylist() != interactions.column("item_id").to_pylist()


# --------------------------------------------------------------------------------------- schema


def test_catalog_schema(catalog):
    s = catalog.schema
    assert s.names == [
        "item_id", "title", "brand", "categories", "category_leaf", "color", "material",
        "duplicate_of", "embedding",
    ]  # fmt: skip
    for name in ("item_id", "title", "brand", "category_leaf", "color", "material", "duplicate_of"):
        assert s.field(name).type == pa.string(), name
    assert s.field("categories").type == pa.list_(pa.string())
    emb = s.field("embedding").type
    assert pa.types.is_fixed_size_list(emb) and emb.list_size == 48 and emb.value_type == pa.float32()
    assert b"sidkit.datasets" in s.metadata

    ids = catalog.column("item_id").to_pylist()
    assert ids[0] == "item_000001" and len(set(ids)) == len(ids) == 1500
    for name in ("item_id", "title", "brand", "categories", "category_leaf", "embedding"):
        assert catalog.column(name).null_count == 0, name
    assert 0 < catalog.column("color").null_count < 1500 * 0.3
    assert 0 < catalog.column("material").null_count < 1500 * 0.4
    paths = catalog.column("categories").to_pylist()
    assert all(len(p) == 3 for p in paths)
    assert [p[-1] for p in paths] == catalog.column("category_leaf").to_pylist()
    x = _matrix(catalog)
    assert x.dtype == np.float32 and np.isfinite(x).all()
    np.testing.assert_allclose(np.linalg.norm(x, axis=1), 1.0, atol=1e-5)


def test_image_embedding_column():
    t = datasets.make_catalog(600, 32, image_dim=24, seed=1)
    assert t.schema.names[-2:] == ["embedding", "image_embedding"]
    typ = t.schema.field("image_embedding").type
    assert pa.types.is_fixed_size_list(typ) and typ.list_size == 24 and typ.value_type == pa.float32()
    img = _matrix(t, "image_embedding")
    np.testing.assert_allclose(np.linalg.norm(img, axis=1), 1.0, atol=1e-5)
    # correlated with the text embedding: both see the leaf structure, and each item's text
    # neighbours are far more often its image neighbours than chance
    leaf = np.array(t.column("category_leaf").to_pylist())
    same = leaf[:, None] == leaf[None, :]
    off = ~np.eye(len(leaf), dtype=bool)
    s = img @ img.T
    assert s[same & off].mean() > s[~same].mean() + 0.4
    txt = _matrix(t)
    st = txt @ txt.T
    np.fill_diagonal(st, -np.inf)
    np.fill_diagonal(s, -np.inf)
    nn_t = np.argsort(-st, axis=1)[:, :10]
    nn_i = np.argsort(-s, axis=1)[:, :10]
    overlap = np.mean([len(set(a) & set(b)) / 10 for a, b in zip(nn_t, nn_i)])
    assert overlap > 0.2  # chance: 10 / 599


def test_interactions_schema(interactions, catalog):
    s = interactions.schema
    assert s.names == ["user_id", "item_id", "position", "timestamp", "split"]
    assert [f.type for f in s] == [pa.string(), pa.string(), pa.int32(), pa.int64(), pa.string()]
    for name in s.names:
        assert interactions.column(name).null_count == 0
    assert set(interactions.column("item_id").to_pylist()) <= set(catalog.column("item_id").to_pylist())
    assert len(set(interactions.column("user_id").to_pylist())) == 300


# ------------------------------------------------------------------------------ planted structure


def test_hierarchy_similarity_margins(catalog):
    x = _matrix(catalog).astype(np.float64)
    paths = catalog.column("categories").to_pylist()
    top = np.array([p[0] for p in paths])
    leaf = np.array([p[2] for p in paths])
    s = x @ x.T
    off = ~np.eye(len(x), dtype=bool)
    same_leaf = (leaf[:, None] == leaf[None, :]) & off
    other_top = top[:, None] != top[None, :]
    assert s[same_leaf].mean() > 0.6
    assert abs(s[other_top].mean()) < 0.1
    assert s[same_leaf].mean() - s[other_top].mean() > 0.5
    # the middle level sits in between
    mid = np.array([p[1] for p in paths])
    same_top_other_mid = (top[:, None] == top[None, :]) & (mid[:, None] != mid[None, :])
    assert s[other_top].mean() + 0.2 < s[same_top_other_mid].mean() < s[same_leaf].mean() - 0.1


def test_planted_duplicates(catalog):
    ids = catalog.column("item_id").to_pylist()
    index = {k: i for i, k in enumerate(ids)}
    dup_of = catalog.column("duplicate_of").to_pylist()
    pairs = [(i, index[o]) for i, o in enumerate(dup_of) if o is not None]
    assert len(pairs) == round(0.03 * 1500)
    x = _matrix(catalog)
    titles = catalog.column("title").to_pylist()
    leaves = catalog.column("category_leaf").to_pylist()
    brands = catalog.column("brand").to_pylist()
    dups = {i for i, _ in pairs}
    for d, o in pairs:
        assert d != o and o not in dups  # an original is never itself a duplicate
        assert float(x[d] @ x[o]) > 0.98
        assert titles[d].startswith(titles[o]) and titles[d] != titles[o]
        assert leaves[d] == leaves[o] and brands[d] == brands[o]
    none = datasets.make_catalog(200, 8, near_duplicate_frac=0.0, seed=0)
    assert none.column("duplicate_of").null_count == 200


def test_brands_follow_top_category(catalog):
    brands = catalog.column("brand").to_pylist()
    tops = [p[0] for p in catalog.column("categories").to_pylist()]
    by_brand: dict[str, Counter] = defaultdict(Counter)
    for b, t in zip(brands, tops):
        by_brand[b][t] += 1
    agree = sum(by_brand[b].most_common(1)[0][1] for b in by_brand) / len(brands)
    assert agree > 0.7
    counts = sorted(Counter(brands).values(), reverse=True)
    assert counts[0] > 5 * counts[len(counts) // 2]  # Zipf: a long tail


def test_interaction_splits_are_leave_one_out(interactions):
    users = interactions.column("user_id").to_pylist()
    pos = interactions.column("position").to_numpy()
    ts = interactions.column("timestamp").to_numpy()
    split = interactions.column("split").to_pylist()
    items = interactions.column("item_id").to_pylist()
    rows: dict[str, list[int]] = defaultdict(list)
    for r, u in enumerate(users):
        rows[u].append(r)
    for u, rs in rows.items():
        assert rs == list(range(rs[0], rs[-1] + 1))  # a user's rows are together
        assert pos[rs].tolist() == list(range(len(rs)))  # contiguous 0-based positions
        assert 4 <= len(rs) <= 20
        assert (np.diff(ts[rs]) > 0).all()
        assert [split[r] for r in rs] == ["train"] * (len(rs) - 2) + ["valid", "test"]
        assert len({items[r] for r in rs}) == len(rs)  # no repeats within a user


def test_interactions_have_co_interaction_structure(catalog, interactions):
    leaf_of = dict(zip(catalog.column("item_id").to_pylist(), catalog.column("category_leaf").to_pylist()))
    users = interactions.column("user_id").to_pylist()
    items = interactions.column("item_id").to_pylist()
    same = [
        leaf_of[items[k]] == leaf_of[items[k + 1]]
        for k in range(len(items) - 1)
        if users[k] == users[k + 1]
    ]
    n_leaves = len(set(leaf_of.values()))
    assert np.mean(same) > 0.3 > 10 / n_leaves  # chance is about 1 / n_leaves
    counts = sorted(Counter(items).values(), reverse=True)
    assert counts[0] > 10 * np.median(counts)  # popularity is skewed


def test_bad_arguments():
    with pytest.raises(ConfigError, match="n_items"):
        datasets.make_catalog(0)
    with pytest.raises(ConfigError, match="near_duplicate_frac"):
        datasets.make_catalog(10, near_duplicate_frac=0.9)
    with pytest.raises(ConfigError, match="n_categories"):
        datasets.make_catalog(10, n_categories=(2, 2))
    cat = datasets.make_catalog(20, 4)
    with pytest.raises(ConfigError, match="min_len"):
        datasets.make_interactions(cat, 5, min_len=2)
    with pytest.raises(ConfigError, match="max_len"):
        datasets.make_interactions(cat, 5, min_len=5, max_len=30)


# ------------------------------------------------------------------------------ writing files


def test_write_large_catalog(tmp_path):
    n, dim = 20_000, 8  # crosses the internal 16,384-row generation block
    a = datasets.write_large_catalog(tmp_path / "a.parquet", n, dim, n_clusters=16, batch_size=3000, seed=5)
    f = pq.ParquetFile(a)
    assert f.metadata.num_rows == n
    assert f.metadata.num_row_groups == 7  # one row group per record batch
    assert f.schema_arrow.names == ["item_id", "embedding"]
    assert f.schema_arrow.field("item_id").type == pa.int64()
    emb = f.schema_arrow.field("embedding").type
    assert pa.types.is_fixed_size_list(emb) and emb.list_size == dim and emb.value_type == pa.float32()
    ta = pq.read_table(a)
    assert ta.column("item_id").to_numpy().tolist() == list(range(n))
    x = _matrix(ta)
    np.testing.assert_allclose(np.linalg.norm(x, axis=1), 1.0, atol=1e-5)
    # the same rows whatever the batch size
    b = datasets.write_large_catalog(tmp_path / "b.parquet", n, dim, n_clusters=16, batch_size=n, seed=5)
    assert pq.read_table(b).equals(ta)
    c = datasets.write_large_catalog(tmp_path / "c.parquet", n, dim, n_clusters=16, batch_size=3000, seed=6)
    assert not np.allclose(_matrix(pq.read_table(c)), x)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.parquet", "b.parquet", "c.parquet"]
    # clustered: each point is far closer to its nearest neighbour than to a random point
    sample = x[:2000].astype(np.float64)
    s = sample @ sample.T
    np.fill_diagonal(s, -np.inf)
    assert s.max(axis=1).mean() > 0.8 and abs(s[np.isfinite(s)].mean()) < 0.2


def test_write_large_catalog_attributes(tmp_path):
    n, dim = 20_000, 8
    plain = pq.read_table(datasets.write_large_catalog(tmp_path / "p.parquet", n, dim, n_clusters=16, batch_size=3000, seed=5))
    path = datasets.write_large_catalog(tmp_path / "a.parquet", n, dim, n_clusters=16, batch_size=3000, seed=5,
                                        attributes=True)
    t = pq.read_table(path)
    assert t.schema.names == ["item_id", "embedding", "brand", "color"]
    assert t.schema.field("brand").type == pa.string() and t.schema.field("color").type == pa.string()
    # the existing columns are unchanged by the option
    assert t.select(["item_id", "embedding"]).equals(plain.select(["item_id", "embedding"]))
    assert json.loads(t.schema.metadata[b"sidkit.datasets"])["attributes"] is True
    assert "attributes" not in json.loads(plain.schema.metadata[b"sidkit.datasets"])
    # same rows whatever the batch size
    b = datasets.write_large_catalog(tmp_path / "b.parquet", n, dim, n_clusters=16, batch_size=n, seed=5, attributes=True)
    assert pq.read_table(b).equals(t)
    brand = t.column("brand").to_pylist()
    color = t.column("color").to_pylist()
    assert brand.count(None) == 0 and set(brand) <= {f"brand-{i:02d}" for i in range(64)}
    assert len(set(brand)) == 16  # brand = cluster % 64 with 16 clusters
    assert 0.03 < color.count(None) / n < 0.07
    assert len(set(color) - {None}) == 12
    # drawn from the mixture's labels: an item's nearest neighbour almost always shares its brand
    x = _matrix(t)[:2000].astype(np.float64)
    s = x @ x.T
    np.fill_diagonal(s, -np.inf)
    nn = s.argmax(axis=1)
    assert np.mean([brand[i] == brand[j] for i, j in enumerate(nn)]) > 0.9


def test_write_catalog_roundtrip_and_atomic(tmp_path, catalog):
    path = datasets.write_catalog(catalog, tmp_path / "items.parquet")
    back = pq.read_table(path)
    assert back.equals(catalog)
    assert back.schema.metadata[b"sidkit.datasets"] == catalog.schema.metadata[b"sidkit.datasets"]
    bad = pa.table({"x": pa.array([1, 2])})
    with pytest.raises(Exception):
        datasets.write_catalog(bad, tmp_path / "items.parquet", compression="no-such-codec")
    assert [p.name for p in tmp_path.iterdir()] == ["items.parquet"]  # untouched, no temp file left
    assert pq.read_table(path).equals(catalog)


def test_import_does_not_pull_torch():
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    code = "import sys, sidkit.datasets; sys.exit('torch' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code], env=env).returncode == 0


# ------------------------------------------------------------------------------ committed examples


def _load_example_script():
    spec = importlib.util.spec_from_file_location("make_example", EXAMPLES / "make_example.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _assert_tables_match(committed: pa.Table, fresh: pa.Table, what: str) -> None:
    hint = f"examples/{what} differs from what the generator makes now: python examples/make_example.py"
    assert committed.schema.names == fresh.schema.names, hint
    for name in fresh.schema.names:
        a, b = committed.column(name), fresh.column(name)
        assert a.type == b.type, f"{hint} (column {name} type)"
        if pa.types.is_fixed_size_list(b.type):
            np.testing.assert_allclose(_matrix(committed, name), _matrix(fresh, name), atol=1e-6, err_msg=hint)
        else:
            assert a.equals(b), f"{hint} (column {name})"


def test_committed_examples_match_generator(tmp_path):
    script = _load_example_script()
    items_path, inter_path = script.main(tmp_path)
    total = 0
    pairs = [(EXAMPLES / "items.parquet", items_path), (EXAMPLES / "interactions.parquet", inter_path)]
    for committed_path, fresh_path in pairs:
        assert committed_path.exists(), f"{committed_path} is missing; run python examples/make_example.py"
        total += committed_path.stat().st_size
        _assert_tables_match(pq.read_table(committed_path), pq.read_table(fresh_path), committed_path.name)
    assert total < 1.5 * 1024 * 1024
    items = pq.read_table(EXAMPLES / "items.parquet")
    assert items.num_rows == 2000 and items.schema.field("embedding").type.list_size == 64
