"""fit on a catalog bigger than its training sample (--train-sample): a seeded sample trains, every
row is encoded in a stream, ids are checked over the whole catalog, sharded input agrees."""

from __future__ import annotations

import hashlib
import json

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

import sidkit
from sidkit.errors import ConfigError, DataError
from sidkit.io.catalog import read_catalog_sample
from sidkit.dedup.suffix import assign_suffix
from sidkit.io.codes import read_codes
from sidkit.io.source import sample_rows

from conftest import emb_array, planted

N, SAMPLE = 3000, 1000
METHODS = {
    "rqkmeans": dict(method="rqkmeans", levels=2, codebook_size="16,8"),
    "rqvae": dict(method="rqvae", levels=2, codebook_size="16,8", max_steps=30, batch_size=128, hidden=[32]),
    "quasid": dict(method="quasid", levels=2, codebook_size="16,8", max_steps=30, batch_size=128, hidden=[32]),
    "kae": dict(method="kae", attributes="brand", residual_levels=1, codebook_size=8),
}


def _table(n: int = N, seed: int = 0) -> pa.Table:
    X, cl, _ = planted(n_clusters=10, n_sub=3, per=n // 30, dim=16, seed=seed)
    order = np.random.default_rng(seed).permutation(len(X))  # clusters spread over every shard
    X, cl = X[order], cl[order]
    ids = [f"it{i:05d}" for i in range(len(X))]
    brand = [None if i % 7 == 0 else f"brand{c}" for i, c in enumerate(cl)]
    return pa.table({"item_id": ids, "embedding": emb_array(X), "brand": pa.array(brand, pa.string()),
                     "title": pa.array([f"item {i} of brand {c}" for i, c in enumerate(cl)])})


@pytest.fixture(scope="module")
def catalog(tmp_path_factory):
    d = tmp_path_factory.mktemp("cat")
    t = _table()
    pq.write_table(t, d / "items.parquet", row_group_size=500)
    shards = d / "shards"
    shards.mkdir()
    step = -(-t.num_rows // 8)
    for i in range(8):
        pq.write_table(t.slice(i * step, step), shards / f"part-{i:02d}.parquet", row_group_size=128 + 37 * i)
    return d


def _codes(model):
    ids, codes, suffix, _ = read_codes(model / "codes.parquet")
    return list(ids), codes, suffix


@pytest.mark.parametrize("method", list(METHODS))
def test_fit_trains_on_the_sample_and_encodes_every_row(tmp_path, catalog, method):
    res = sidkit.fit(catalog / "items.parquet", out=tmp_path / "m", train_sample=SAMPLE, **METHODS[method])
    m = tmp_path / "m"
    ids, codes, suffix = _codes(m)
    assert len(ids) == N and ids == [f"it{i:05d}" for i in range(N)]
    assert len(np.unique(np.column_stack([codes, suffix]), axis=0)) == N
    assert res.summary["n_items"] == N and res.summary["train_rows"] == SAMPLE
    assert any("sample of 1,000" in n for n in res.summary["notes"])
    meta = json.loads((m / "sidkit.json").read_text())
    assert meta["input"]["rows"] == N and meta["input"]["train_rows"] == SAMPLE
    assert meta["training"]["train_rows"] == SAMPLE and meta["training"]["catalog_rows"] == N
    assert meta["training"]["sample_seed"] == 0
    report = json.loads((m / "report.json").read_text())
    assert report["n_items"] == N
    assert report["semantic"]["computed_on"] == "training_sample" and report["semantic"]["sample_size"] == SAMPLE
    # the model directory encodes every row as the fit did
    sidkit.encode(m, catalog / "items.parquet", tmp_path / "enc.parquet")
    e_ids, e_codes, e_suffix, _ = read_codes(tmp_path / "enc.parquet")
    assert list(e_ids) == ids and np.array_equal(e_codes, codes) and np.array_equal(e_suffix, suffix)
    model = sidkit.load_model(m)
    # the suffix rule of fit: 0, 1, 2 .. inside a bucket, by item id
    assert np.array_equal(suffix, assign_suffix(codes, np.array(ids)))
    # the fingerprint is the sha256 of the whole fused matrix, streamed
    from sidkit.features import fuse

    X = fuse({"embedding": np.array(pq.read_table(catalog / "items.parquet").column("embedding").to_pylist(), np.float32)},
             model.fusion)
    assert meta["input"]["embedding_sha256"] == hashlib.sha256(X.tobytes()).hexdigest()[:16]


@pytest.mark.parametrize("method", ["rqkmeans", "kae"])
def test_sample_fit_is_seeded_and_sharded_input_agrees(tmp_path, catalog, method):
    opts = dict(METHODS[method], train_sample=SAMPLE)
    sidkit.fit(catalog / "items.parquet", out=tmp_path / "a", **opts)
    sidkit.fit(catalog / "items.parquet", out=tmp_path / "b", **opts)
    sidkit.fit(catalog / "shards", out=tmp_path / "s", **opts)
    a, b, s = _codes(tmp_path / "a"), _codes(tmp_path / "b"), _codes(tmp_path / "s")
    assert a[0] == b[0] == s[0]
    assert np.array_equal(a[1], b[1]) and np.array_equal(a[1], s[1]) and np.array_equal(a[2], s[2])
    sidkit.fit(catalog / "items.parquet", out=tmp_path / "c", **dict(opts, seed=1))
    assert not np.array_equal(_codes(tmp_path / "c")[1], a[1])


def test_sample_reads_the_seeded_rows(catalog):
    t = pq.read_table(catalog / "items.parquet")
    for seed in (0, 1):
        cat = read_catalog_sample(catalog / "shards", SAMPLE, seed)
        rows = sample_rows(N, SAMPLE, seed)
        assert np.array_equal(cat.rows, rows)
        assert cat.ids.to_pylist() == t.column("item_id").take(pa.array(rows)).to_pylist()
        want = np.array(t.column("embedding").take(pa.array(rows)).to_pylist(), np.float32)
        assert np.array_equal(cat.embeddings["embedding"], want)
        assert cat.columns["brand"].to_pylist() == t.column("brand").take(pa.array(rows)).to_pylist()
        # columns not read up front come from the sampled rows only
        assert cat.arrow_columns(["title"]).column("title").to_pylist() == t.column("title").take(pa.array(rows)).to_pylist()
    assert not np.array_equal(read_catalog_sample(catalog / "items.parquet", SAMPLE, 0).rows,
                              read_catalog_sample(catalog / "items.parquet", SAMPLE, 1).rows)


def test_small_catalog_trains_on_every_row(tmp_path, small_catalog):
    res = sidkit.fit(small_catalog, out=tmp_path / "m", method="rqkmeans", levels=2, codebook_size="16,8")
    assert res.summary["train_rows"] == res.summary["n_items"] == 320
    report = json.loads((tmp_path / "m" / "report.json").read_text())
    assert "computed_on" not in report["semantic"]


def test_duplicate_ids_across_shards(tmp_path, catalog):
    d = tmp_path / "dup"
    d.mkdir()
    t = _table()
    pq.write_table(t.slice(0, 2000), d / "a.parquet")
    tail = t.slice(2000)
    ids = tail.column("item_id").to_pylist()
    ids[500] = "it00042"  # also in a.parquet
    pq.write_table(tail.set_column(0, "item_id", pa.array(ids)), d / "b.parquet")
    with pytest.raises(DataError, match=r"duplicated ids.*'it00042'.*row 42 of .*a\.parquet and row 500 of .*b\.parquet"):
        sidkit.fit(d, out=tmp_path / "m", train_sample=SAMPLE, **METHODS["rqkmeans"])
    assert not (tmp_path / "m").exists()


def test_equal_id_hashes_are_checked_against_the_ids(monkeypatch, catalog):
    import sidkit.io.catalog as c
    import sidkit.io.ids as ids_mod

    real = ids_mod.id_hash
    for m in (c, ids_mod):  # the catalog pass hashes, the check re-hashes the candidates
        monkeypatch.setattr(m, "id_hash", lambda ids: real(ids) % np.uint64(97))  # many hash collisions
    cat = read_catalog_sample(catalog / "shards", SAMPLE, 0)  # unique ids: no error
    assert len(cat) == SAMPLE


def test_bad_row_outside_the_sample_stops_the_fit_before_training(tmp_path):
    t = _table()
    rows = set(sample_rows(N, SAMPLE, 0).tolist())
    bad = next(i for i in range(N) if i not in rows)
    X = np.array(t.column("embedding").to_pylist(), np.float32)
    X[bad, 3] = np.nan
    pq.write_table(t.set_column(1, "embedding", emb_array(X)), tmp_path / "items.parquet")
    with pytest.raises(DataError, match=f"NaN or inf values \\(first at row {bad}\\)"):
        sidkit.fit(tmp_path / "items.parquet", out=tmp_path / "m", train_sample=SAMPLE, **METHODS["rqvae"])


def test_train_sample_below_the_codebook_size(tmp_path, catalog):
    with pytest.raises(ConfigError, match="train.sample 10 is smaller than the codebook size 16"):
        sidkit.fit(catalog / "items.parquet", out=tmp_path / "m", train_sample=10, **METHODS["rqkmeans"])


def test_interactions_outside_the_sample_are_dropped(tmp_path, catalog):
    rng = np.random.default_rng(0)
    users = np.repeat(np.arange(300), 8)
    items = rng.integers(0, N, size=len(users))
    inter = pa.table({"user_id": users, "item_id": [f"it{i:05d}" for i in items], "timestamp": np.arange(len(users))})
    pq.write_table(inter, tmp_path / "inter.parquet")
    res = sidkit.fit(catalog / "items.parquet", out=tmp_path / "m", train_sample=SAMPLE, interactions=str(tmp_path / "inter.parquet"),
                     **METHODS["quasid"])
    meta = json.loads((tmp_path / "m" / "sidkit.json").read_text())
    info = meta["training"]["regularizer"]["interactions"]
    in_sample = np.isin(items, sample_rows(N, SAMPLE, 0))
    train = np.ones(len(users), bool).reshape(300, 8)
    train[:, -2:] = False  # the last two per user are held out
    assert info["train_rows_outside_sample"] == int((train.ravel() & ~in_sample).sum())
    assert info["train_rows"] == int((train.ravel() & in_sample).sum())
    assert res.summary["regularizer"] == "quasid"
    bad = inter.set_column(1, "item_id", pa.array(["nope"] + inter.column("item_id").to_pylist()[1:]))
    pq.write_table(bad, tmp_path / "bad.parquet")
    with pytest.raises(DataError, match="not in the catalog, e.g. 'nope'"):
        sidkit.fit(catalog / "items.parquet", out=tmp_path / "m2", train_sample=SAMPLE, interactions=str(tmp_path / "bad.parquet"),
                   **METHODS["quasid"])


def test_suffixes_of_colliding_rows_match_the_reference():
    from sidkit.dedup.suffix import catalog_suffixes

    rng = np.random.default_rng(0)
    codes = rng.integers(0, 3, size=(5000, 2)).astype(np.int32)  # heavy buckets
    codes[:100] = rng.integers(0, 1000, size=(100, 2))  # and some singletons
    ids = pa.array([f"x{v}" for v in rng.permutation(5000)])
    assert np.array_equal(catalog_suffixes(codes, ids), assign_suffix(codes, np.array(ids.to_pylist())))
    int_ids = pa.array(rng.permutation(5000).astype(np.int64))
    assert np.array_equal(catalog_suffixes(codes, int_ids), assign_suffix(codes, int_ids.to_numpy()))


def test_report_sample_sets_the_query_sample_of_the_fit_report(tmp_path, catalog, monkeypatch):
    import sidkit.metrics.semantic as sem

    monkeypatch.setattr(sem, "EXACT_MAX_ITEMS", 500)  # the 1000-row training sample takes the sampled block
    kw = dict(METHODS["rqkmeans"], train_sample=SAMPLE)
    s = sidkit.fit(catalog / "items.parquet", out=tmp_path / "a", report_sample=200, **kw).report["semantic"]
    assert s["computed_on"] == "training_sample" and s["exact"] is False
    assert s["sample_size"] == 200 and s["attribute_purity_sample_size"] == 200
    lo, hi = s["locality_gap_ci95"]
    assert lo <= s["locality_gap"] <= hi
    default = sidkit.fit(catalog / "items.parquet", out=tmp_path / "b", **kw).report["semantic"]
    assert default["sample_size"] == SAMPLE  # the default (20,000) covers every row of a small sample
    for bad in (-1, 1.5, True):
        with pytest.raises(ConfigError, match="report_sample"):
            sidkit.fit(catalog / "items.parquet", out=tmp_path / "c", report_sample=bad, **kw)
    assert not (tmp_path / "c").exists()
