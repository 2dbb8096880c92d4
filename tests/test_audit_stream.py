"""Sharded SID tables and interactions, and the streaming audit core against the in-memory one."""

from __future__ import annotations

import json

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from sidkit.errors import DataError, SchemaError
from sidkit.io.ids import UniqueIdCheck
from sidkit.io.sidtable import open_sid_stream, read_sid_table
from sidkit.metrics import core_report
from sidkit.metrics.stream import core_report_stream


def _table(ids, codes, sizes=None, suffix=True):
    codes = np.asarray(codes, np.int32)
    n, L = codes.shape
    sid = pa.ListArray.from_arrays(pa.array(np.arange(0, n * L + 1, L, dtype=np.int32)), pa.array(codes.ravel()))
    cols = {"item_id": pa.array(ids), "sid": sid}
    if suffix:
        cols["suffix"] = pa.array(np.zeros(n, np.int32))
    t = pa.table(cols)
    if sizes is not None:
        t = t.replace_schema_metadata({b"sidkit": json.dumps({"codebook_sizes": list(sizes)}).encode()})
    return t


def _codes(n, sizes, seed, planted=()):
    rng = np.random.default_rng(seed)
    c = np.column_stack([rng.integers(0, k, n) for k in sizes])
    for size, row in planted:  # a bucket of `size` items with the SID of `row`
        c[row + 1: row + size] = c[row]
    return c


def _write_shards(tmp, t, cuts, row_group=None):
    tmp.mkdir(parents=True, exist_ok=True)
    bounds = [0, *cuts, t.num_rows]
    for i, (a, b) in enumerate(zip(bounds[:-1], bounds[1:])):
        pq.write_table(t.slice(a, b - a), tmp / f"part-{i:03d}.parquet", row_group_size=row_group or max(1, b - a))
    return tmp


CASES = [
    # sizes, n, planted buckets (size, first row), ids unsorted
    ([8, 8, 8], 400, [(9, 10), (5, 200), (3, 350)], False),   # dense, exact Hamming (all pairs)
    ([16, 16, 16], 2500, [(30, 100), (12, 700), (4, 2000)], True),  # dense, sampled Hamming
    ([1 << 20, 1 << 20, 1 << 20], 3000, [(7, 5), (7, 1000), (3, 2500)], True),  # sparse keys
    ([5, 1 << 27], 900, [(4, 50)], True),  # L = 2, a sparse level count (K > 2^26)
    ([7], 300, [], False),  # one level
]


@pytest.mark.parametrize("sizes,n,planted,shuffle", CASES)
def test_stream_matches_in_memory(tmp_path, sizes, n, planted, shuffle):
    codes = _codes(n, sizes, 3, planted)
    ids = np.arange(n, dtype=np.int64) * 7 + 3
    if shuffle:
        ids = np.random.default_rng(1).permutation(ids)
    t = _table(ids, codes, sizes)
    d = _write_shards(tmp_path / "s", t, [n // 3, n // 3 + 17], row_group=50)
    want = core_report(codes, sizes, item_ids=ids, seed=5, n_pairs=20_000)
    for batch in (7, 64, 1 << 20):
        got = core_report_stream(open_sid_stream(d), seed=5, n_pairs=20_000, batch_size=batch)
        assert got == want
        assert json.dumps(got, sort_keys=True) == json.dumps(want, sort_keys=True)
    if planted:  # the planted buckets are found, with their members
        assert got["collision"]["max_bucket_size"] >= max(s for s, _ in planted)
        assert got["top_buckets"] and got["top_buckets"][0]["item_ids"]


def test_stream_sampled_hamming_is_seeded(tmp_path):
    sizes = [16, 16, 16]
    codes = _codes(3000, sizes, 0, [(20, 0)])
    p = tmp_path / "c.parquet"
    pq.write_table(_table(np.arange(3000), codes, sizes), p)
    a = core_report_stream(open_sid_stream(p), seed=1, n_pairs=5000, batch_size=100)
    b = core_report_stream(open_sid_stream(p), seed=1, n_pairs=5000, batch_size=999)
    c = core_report_stream(open_sid_stream(p), seed=2, n_pairs=5000, batch_size=100)
    assert a == b
    assert not a["hamming"]["distribution_exact"] and a["hamming"]["n_sampled_pairs"] == 5000
    assert a["hamming"]["distribution"] != c["hamming"]["distribution"]


def test_audit_streams_identically(tmp_path):
    from sidkit.report.audit import audit

    sizes = [8, 8, 8]
    codes = _codes(600, sizes, 2, [(6, 30), (4, 400)])
    ids = np.random.default_rng(0).permutation(600)
    t = _table(ids, codes, sizes)
    d = _write_shards(tmp_path / "s", t, [250])
    pq.write_table(t, tmp_path / "one.parquet")
    mem = audit(tmp_path / "one.parquet", streaming=False)
    for src in (d, tmp_path / "s" / "*.parquet", tmp_path / "one.parquet"):
        got = audit(src, batch_size=37)
        assert {k: v for k, v in got.items() if k != "source"} == {k: v for k, v in mem.items() if k != "source"}
    # with the blocks that need the codes in memory too (baseline = itself: no churn)
    got = audit(d, baseline=d, batch_size=50)
    assert got["compare"]["churn_rate"] == 0.0
    assert got["collision"] == mem["collision"]


def test_unknown_sizes_stream_warns_like_in_memory(tmp_path):
    from sidkit.report.audit import audit

    codes = _codes(200, [6, 6, 6], 0)
    pq.write_table(_table(np.arange(200), codes), tmp_path / "c.parquet")
    a = audit(tmp_path / "c.parquet", batch_size=30)
    b = audit(tmp_path / "c.parquet", streaming=False)
    assert a == b and any("codebook sizes unknown" in w for w in a["warnings"])


# --- errors while streaming name the shard and the row inside it -------------------------------

def test_stream_errors_name_the_shard(tmp_path):
    sizes = [8, 8]
    codes = _codes(100, sizes, 0)
    codes[70, 1] = 9  # >= codebook size, in the second shard (rows 60..99) at local row 10
    d = _write_shards(tmp_path / "s", _table(np.arange(100), codes, sizes), [60])
    with pytest.raises(DataError, match=r"part-001\.parquet: code 9 in sid\[1\] at row 10 is >= the codebook size 8"):
        core_report_stream(open_sid_stream(d), batch_size=16)
    with pytest.raises(DataError, match=r"part-001\.parquet: code 9 in sid\[1\] at row 10"):
        read_sid_table(d)


def test_duplicate_ids_across_shards(tmp_path):
    sizes = [8, 8]
    ids = np.arange(100)
    ids[90] = 12  # unsorted from row 90: rows before it are re-read
    d = _write_shards(tmp_path / "s", _table(ids, _codes(100, sizes, 0), sizes), [50])
    with pytest.raises(DataError, match="id column 'item_id' has duplicated ids, e.g. 12;"):
        core_report_stream(open_sid_stream(d), batch_size=16)
    with pytest.raises(DataError, match=r"id column 'item_id' has 1 duplicated ids \(2 rows\), e.g. 12;"):
        read_sid_table(d)


@pytest.mark.parametrize("strings", [False, True])
def test_unique_id_check_spills_and_finds_duplicates(tmp_path, strings):
    rng = np.random.default_rng(0)
    ids = rng.permutation(5000)
    vals = np.array([f"x{v}" for v in ids], dtype=object) if strings else ids
    # no duplicate: partitions on disk (part_rows forces 8 partitions)
    chk = UniqueIdCheck(tmp_path, len(vals), spill_dir=tmp_path, part_rows=700)
    assert chk.bits == 3
    for a in range(0, len(vals), 999):
        chk.add(vals[a:a + 999], a)

    class S:  # re-reads for the exact check of hashed ids
        def batches(self, bs):
            from types import SimpleNamespace
            for a in range(0, len(vals), 999):
                yield SimpleNamespace(offset=a, ids=vals[a:a + 999])

    chk.finish(S())
    vals[4321] = vals[17]
    chk = UniqueIdCheck(tmp_path, len(vals), spill_dir=tmp_path, part_rows=700)
    for a in range(0, len(vals), 999):
        chk.add(vals[a:a + 999], a)
    dup = vals[17].item() if isinstance(vals[17], np.generic) else vals[17]
    with pytest.raises(DataError, match=f"duplicated ids, e.g. {dup!r};"):
        chk.finish(S())
    assert not list(tmp_path.glob("sidkit-ids-*"))  # the spill directory is removed


def test_schema_disagreement_names_the_shard(tmp_path):
    sizes = [8, 8]
    t = _table(np.arange(40), _codes(40, sizes, 0), sizes)
    d = tmp_path / "s"
    d.mkdir()
    pq.write_table(t.slice(0, 20), d / "a.parquet")
    pq.write_table(t.slice(20).drop_columns(["suffix"]), d / "b.parquet")
    with pytest.raises(SchemaError, match=r"b\.parquet: this shard's schema disagrees with the first shard .*a\.parquet \(it has no column 'suffix'\)"):
        read_sid_table(d)
    with pytest.raises(SchemaError, match=r"b\.parquet: this shard's schema disagrees"):
        read_sid_table(tmp_path / "s" / "*.parquet")


def test_sharded_sid_table_reads_like_one_file(tmp_path):
    sizes = [8, 8, 8]
    codes = _codes(90, sizes, 4)
    t = _table(np.arange(90), codes, sizes)
    pq.write_table(t, tmp_path / "one.parquet")
    d = _write_shards(tmp_path / "s", t, [10, 11, 60])
    one = read_sid_table(tmp_path / "one.parquet")
    for src in (d, str(d / "part-*.parquet")):
        got = read_sid_table(src)
        assert np.array_equal(got[0], one[0]) and np.array_equal(got[1], one[1]) and got[3] == one[3]
    # a model directory (with codes.parquet) still reads that file only
    m = tmp_path / "model"
    m.mkdir()
    pq.write_table(t.slice(0, 5), m / "codes.parquet")
    pq.write_table(t, m / "other.parquet")
    assert len(read_sid_table(m)[0]) == 5


def test_sharded_metadata_must_agree(tmp_path):
    codes = _codes(20, [8, 8], 0)
    d = tmp_path / "s"
    d.mkdir()
    pq.write_table(_table(np.arange(10), codes[:10], [8, 8]), d / "a.parquet")
    pq.write_table(_table(np.arange(10, 20), codes[10:], [16, 16]), d / "b.parquet")
    with pytest.raises(DataError, match=r"b\.parquet: its sidkit metadata gives codebook sizes \[16, 16\]"):
        read_sid_table(d)
    with pytest.raises(DataError, match=r"b\.parquet: its sidkit metadata gives codebook sizes \[16, 16\]"):
        open_sid_stream(d)


def test_export_and_eval_accept_shards(tmp_path):
    from sidkit.formats.export import export_with_info

    sizes = [8, 8]
    t = _table(np.arange(30), _codes(30, sizes, 1), sizes)
    d = _write_shards(tmp_path / "s", t, [12])
    pq.write_table(t, tmp_path / "one.parquet")
    a, _ = export_with_info(d, "tokens", None)
    b, _ = export_with_info(tmp_path / "one.parquet", "tokens", None)
    assert a == b


def test_interactions_dir_and_glob(tmp_path):
    from sidkit.io.interactions import read_interactions

    t = pa.table({"user_id": np.repeat(np.arange(10), 4), "item_id": np.arange(40) % 13, "timestamp": np.arange(40)})
    pq.write_table(t, tmp_path / "one.parquet")
    d = _write_shards(tmp_path / "i", t, [7, 30])
    one = read_interactions(tmp_path / "one.parquet")
    for src in (d, str(d / "*.parquet")):
        got = read_interactions(src)
        assert np.array_equal(got["user_id"], one["user_id"]) and got["item_id"].equals(one["item_id"])
        assert np.array_equal(got["order"], one["order"])
    # a null in the second shard is named with its row there
    bad = t.set_column(1, "item_id", pa.array([None if i == 9 else int(v) for i, v in enumerate(np.arange(40) % 13)], pa.int64()))
    d2 = _write_shards(tmp_path / "j", bad, [7])
    with pytest.raises(DataError, match=r"part-001\.parquet: column 'item_id' is null at row 2"):
        read_interactions(d2)
    # schema disagreement
    d3 = tmp_path / "k"
    d3.mkdir()
    pq.write_table(t.slice(0, 10), d3 / "a.parquet")
    pq.write_table(t.slice(10).drop_columns(["timestamp"]), d3 / "b.parquet")
    with pytest.raises(SchemaError, match=r"b\.parquet: this shard's schema disagrees"):
        read_interactions(d3)


# --- the semantic block of large catalogs ----------------------------------------------------

def _catalog(tmp, n, d=16, seed=0, leaf=True):
    rng = np.random.default_rng(seed)
    centers = rng.standard_normal((20, d))
    lab = rng.integers(0, 20, n)
    X = (centers[lab] + 0.4 * rng.standard_normal((n, d))).astype(np.float32)
    cols = {"item_id": pa.array(np.arange(n, dtype=np.int64)),
            "embedding": pa.FixedSizeListArray.from_arrays(pa.array(X.ravel()), d)}
    if leaf:
        cols["category_leaf"] = pa.array([f"c{v % 7}" for v in lab])
        cols["title"] = pa.array([f"t{i // 3}" for i in range(n)])
    return X, lab, pa.table(cols)


def _sid_from(X, lab, rng):
    # level 0 follows the cluster (locality), then noise; plenty of collisions
    return np.column_stack([lab % 16, rng.integers(0, 4, len(lab)), rng.integers(0, 4, len(lab))])


def _untimed(block):
    return {k: v for k, v in block.items() if k != "seconds"}


def test_sampled_semantic_with_an_exhaustive_index_equals_exact():
    from sidkit.features import l2_normalize
    from sidkit.metrics.semantic import semantic_metrics, semantic_metrics_exact

    X, lab, t = _catalog(None, 3000)
    codes = _sid_from(X, lab, np.random.default_rng(0))
    leaf = t.column("category_leaf").to_pylist()
    titles = t.column("title").to_pylist()
    attrs = {"category_leaf": leaf, "title": titles}
    ids = np.arange(3000)
    Xn = l2_normalize(X)
    want = semantic_metrics_exact(codes, Xn, leaf=leaf, attributes=attrs, titles=titles, item_ids=ids, seed=3)
    # IVF8 with nprobe 16 >= 8 lists probes everything: exact neighbours
    got = semantic_metrics(codes, Xn, leaf=leaf, attributes=attrs, titles=titles, item_ids=ids, seed=3,
                           exact_max_items=1000, sample=0, index="IVF8,Flat", recall_queries=200)
    assert got["exact"] is False and got["sample_size"] == 3000 and got["n_items"] == 3000
    assert got["knn_recall"] == 1.0 and got["knn_recall_queries"] == 200
    for key in ("knn_mean_common_prefix", "knn_hamming_distribution", "knn_prefix_share", "random_mean_common_prefix",
                "random_prefix_share", "random_pair_median_cos", "locality_gap", "n_colliding_pairs_examined"):
        assert got[key] == want[key], key
    for key in ("conflict_collision_rate", "benign_collision_rate", "conflict_item_rate", "benign_item_rate"):
        assert abs(got[key] - want[key]) < 1e-3, key
    assert got["attribute_purity"] == want["attribute_purity"]  # sample = every item
    lo, hi = got["knn_mean_common_prefix_ci95"]
    assert lo < got["knn_mean_common_prefix"] < hi


def test_sampled_semantic_is_seeded_and_ci_covers_exact(tmp_path):
    from sidkit.features import l2_normalize
    from sidkit.metrics.semantic import MatrixVectors, semantic_metrics, semantic_metrics_exact

    X, lab, _ = _catalog(None, 6000, seed=1, leaf=False)
    codes = _sid_from(X, lab, np.random.default_rng(1))
    Xn = l2_normalize(X)
    exact = semantic_metrics_exact(codes, Xn, seed=0, max_queries=6000)
    kw = dict(seed=0, exact_max_items=1000, sample=800, recall_queries=100)
    a = semantic_metrics(codes, Xn, **kw)
    b = semantic_metrics(codes, MatrixVectors(Xn, batch_size=777), **kw)
    assert _untimed(a) == _untimed(b)  # a matrix or a source in batches: the same numbers
    assert a["sample_size"] == 800 and a["n_queries"] == 800 and a["index"].startswith("IVF256,SQ8")
    assert a["knn_recall"] > 0.8
    lo, hi = a["knn_mean_common_prefix_ci95"]
    assert lo <= exact["knn_mean_common_prefix"] <= hi
    c = semantic_metrics(codes, Xn, **{**kw, "seed": 1})
    assert c["knn_mean_common_prefix"] != a["knn_mean_common_prefix"]


def test_audit_items_streams_a_large_catalog(tmp_path, monkeypatch):
    import sidkit.metrics.semantic as sem
    from sidkit.report.audit import audit

    X, lab, t = _catalog(None, 4000, seed=2)
    d = _write_shards(tmp_path / "cat", t, [1500])
    codes = _sid_from(X, lab, np.random.default_rng(2))
    ids = np.random.default_rng(0).permutation(4000)[:3500]  # 500 catalog items without codes
    pq.write_table(_table(ids, codes[ids], [16, 4, 4]), tmp_path / "codes.parquet")
    small = audit(tmp_path / "codes.parquet", items=d, batch_size=1000)
    assert "sample_size" not in small["semantic"]
    monkeypatch.setattr(sem, "EXACT_MAX_ITEMS", 1000)
    big = audit(tmp_path / "codes.parquet", items=d, semantic_sample=500, batch_size=1000)
    s = big["semantic"]
    assert s["sample_size"] == 500 and s["n_items"] == 3500 and s["exact"] is False
    assert s["attribute_purity_sample_size"] == 500 and "category_leaf" in s["attribute_purity"]
    assert s["knn_recall"] > 0.8
    lo, hi = s["locality_gap_ci95"]
    assert lo < s["locality_gap"] < hi and s["locality_gap"] > 0.3  # level 0 follows the clusters
    assert abs(s["locality_gap"] - small["semantic"]["locality_gap"]) < 0.15
    for w in s["worst_conflicts"]:  # rows are SID-table rows, with their ids
        assert [int(ids[r]) for r in w["rows"]] == w["item_ids"]
    # the bucket tables list the members' display columns as for a small catalog (read in one pass)
    assert big["top_buckets"][0]["display"] == small["top_buckets"][0]["display"] and big["top_buckets"][0]["display"]
    again = audit(tmp_path / "codes.parquet", items=d, semantic_sample=500, batch_size=1000)["semantic"]
    assert _untimed(again) == _untimed(s) and set(s["seconds"]) >= {"train_index", "add_all_items", "search"}


def test_cli_audit_of_a_shard_glob_and_a_bad_schema(tmp_path):
    from typer.testing import CliRunner

    from sidkit.cli import app

    sizes = [8, 8, 8]
    t = _table(np.arange(300), _codes(300, sizes, 0, [(5, 3)]), sizes)
    d = _write_shards(tmp_path / "s", t, [100, 200])
    r = CliRunner().invoke(app, ["audit", str(d / "part-*.parquet"), "--json", "--semantic-sample", "10"])
    assert r.exit_code == 0, r.output
    assert json.loads(r.stdout)["n_items"] == 300
    pq.write_table(t.slice(0, 5).drop_columns(["suffix"]), d / "part-009.parquet")
    r = CliRunner().invoke(app, ["audit", str(d)])
    assert r.exit_code == 2 and "part-009.parquet: this shard's schema disagrees" in r.output
