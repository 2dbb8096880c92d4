"""encode at scale: sharded inputs, directory outputs, and the out-of-core suffix pass checked
against a slow in-memory reference on catalogs with heavy buckets."""

import json

from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

import sidkit
from sidkit.encoding import finish as encoding
from sidkit.errors import DataError, InputFileError, SchemaError
from sidkit.io.codes import read_codes

from conftest import emb_array, planted, write_items


def _reference(model_rows, in_ids, in_codes):
    """Suffixes by the rule, one row at a time: an id of the model with the same core SID keeps
    its suffix; every other row gets (largest suffix taken in its bucket) + 1, in item-id order."""
    model = {i: (tuple(c), s) for i, c, s in model_rows}
    taken: dict = {}
    for _, c, s in model_rows:
        taken[tuple(c)] = max(taken.get(tuple(c), -1), s)
    out = [None] * len(in_ids)
    for r, (i, c) in enumerate(zip(in_ids, in_codes)):
        if i in model and model[i][0] == tuple(c):
            out[r] = model[i][1]
            taken[tuple(c)] = max(taken.get(tuple(c), -1), out[r])
    for r in sorted(range(len(in_ids)), key=lambda r: in_ids[r]):
        if out[r] is None:
            c = in_codes[r]
            out[r] = taken.get(tuple(c), -1) + 1
            taken[tuple(c)] = out[r]
    return out


@pytest.fixture(scope="module")
def heavy(tmp_path_factory):
    """A model with 8 buckets (4 x 2 codes) over 400 items, and a 3,000-row refresh catalog in 8
    shards of uneven row-group sizes: 300 of the model's items (100 of them moved), 2,700 new."""
    d = tmp_path_factory.mktemp("heavy")
    X, _, _ = planted(n_clusters=4, n_sub=2, per=50, dim=8, seed=3)
    ids = [f"m{i:04d}" for i in range(len(X))]
    write_items(d / "fit.parquet", ids, X)
    sidkit.fit(d / "fit.parquet", out=d / "m", method="rqkmeans", levels=2, codebook_size="4,2")
    rng = np.random.default_rng(7)
    old = rng.choice(len(X), 300, replace=False)
    X2 = np.concatenate([X[old], X[rng.integers(0, len(X), 2700)] + rng.normal(0, 0.01, (2700, X.shape[1]))]).astype(np.float32)
    X2[:100] = X[rng.integers(0, len(X), 100)]  # some old items move to other buckets
    ids2 = [ids[i] for i in old] + [f"n{i:05d}" for i in range(2700)]
    perm = rng.permutation(len(ids2))
    ids2 = [ids2[i] for i in perm]
    X2 = X2[perm]
    (d / "shards").mkdir()
    cuts = np.linspace(0, len(ids2), 9).astype(int)
    for k in range(8):
        a, b = cuts[k], cuts[k + 1]
        pq.write_table(pa.table({"item_id": pa.array(ids2[a:b]), "embedding": emb_array(X2[a:b])}),
                       d / "shards" / f"part-{k}.parquet", row_group_size=17 + 31 * k)
    write_items(d / "one.parquet", ids2, X2)
    return d, ids2


def test_out_of_core_suffixes_match_the_reference(heavy, tmp_path):
    d, ids2 = heavy
    m_ids, m_codes, m_suf, _ = read_codes(d / "m" / "codes.parquet")
    model_rows = list(zip(m_ids.tolist(), m_codes.tolist(), m_suf.tolist()))
    results = {}
    for name, rows in [("one", 10**9), ("p7", 450), ("p300", 10)]:  # 1, 7 and 300 partitions
        s = sidkit.encode(d / "m", d / "shards", tmp_path / f"{name}.parquet", partition_rows=rows, batch_size=97)
        got_ids, codes, suf, _ = read_codes(tmp_path / f"{name}.parquet")
        assert got_ids.tolist() == ids2  # input order over the shards
        assert suf.tolist() == _reference(model_rows, ids2, codes.tolist())
        results[name] = (codes, suf)
        assert s["n_items"] == 3000 and s["shards_in"] == 8
    assert all(np.array_equal(results["one"][1], v[1]) and np.array_equal(results["one"][0], v[0]) for v in results.values())
    buckets = np.unique(results["one"][0], axis=0, return_counts=True)[1]
    assert buckets.max() > 300  # heavy buckets: hundreds of items share a core SID
    # one file in gives the same table as the shards
    sidkit.encode(d / "m", d / "one.parquet", tmp_path / "file.parquet")
    assert pq.read_table(tmp_path / "file.parquet").equals(pq.read_table(tmp_path / "one.parquet"))


def test_without_model_codes_suffixes_count_from_zero_in_id_order(heavy, tmp_path):
    d, ids2 = heavy
    import shutil

    shutil.copytree(d / "m", tmp_path / "bare")
    (tmp_path / "bare" / "codes.parquet").unlink()
    s = sidkit.encode(tmp_path / "bare", d / "shards", tmp_path / "o.parquet", partition_rows=333)
    _, codes, suf, _ = read_codes(tmp_path / "o.parquet")
    assert suf.tolist() == _reference([], ids2, codes.tolist())
    assert "no codes.parquet" in s["warnings"][0]


def _shuffled_shards(src: Path, folder: Path, seed: int, cuts, row_group_size: int) -> Path:
    """``src``'s rows in a seeded random order, written as shards cut at ``cuts``."""
    t = pq.read_table(src)
    t = t.take(pa.array(np.random.default_rng(seed).permutation(t.num_rows)))
    folder.mkdir()
    for k, (a, b) in enumerate(cuts):
        pq.write_table(t.slice(a, b - a), folder / f"p{k}.parquet", row_group_size=row_group_size)
    return folder


def _mapping(p: Path) -> dict:
    """item id -> (core SID, suffix) of a codes file."""
    ids, codes, suf, _ = read_codes(p)
    return {i: (tuple(c), s) for i, c, s in zip(ids.tolist(), codes.tolist(), suf.tolist())}


def test_suffixes_do_not_depend_on_input_order_or_sharding(heavy, tmp_path):
    d, _ = heavy
    sidkit.encode(d / "m", d / "shards", tmp_path / "a.parquet", partition_rows=450)
    shards = _shuffled_shards(d / "one.parquet", tmp_path / "s", 1, [(0, 1000), (1000, 1100), (1100, 3000)], 64)
    sidkit.encode(d / "m", shards, tmp_path / "b.parquet", partition_rows=200, batch_size=77)
    a, b = _mapping(tmp_path / "a.parquet"), _mapping(tmp_path / "b.parquet")
    assert len(a) == 3000 and a == b


def test_directory_output_one_shard_per_input_shard(heavy, tmp_path):
    d, ids2 = heavy
    out = tmp_path / "codes"
    s = sidkit.encode(d / "m", str(d / "shards" / "*.parquet"), str(out) + "/")
    names = sorted(p.name for p in out.iterdir())
    assert names == [encoding.MANIFEST] + [f"part-{k:05d}.parquet" for k in range(8)]
    assert s["shards_out"] == 8
    man = json.loads((out / encoding.MANIFEST).read_text())
    assert man["rows"] == 3000 and man["codebook_sizes"] == [4, 2]
    sidkit.encode(d / "m", d / "shards", tmp_path / "file.parquet")
    whole = pq.read_table(tmp_path / "file.parquet")
    parts = pa.concat_tables([pq.read_table(out / f"part-{k:05d}.parquet") for k in range(8)])
    assert parts.equals(whole)
    for k in range(8):  # shard k of the output holds the rows of input shard k
        assert pq.read_table(out / f"part-{k:05d}.parquet").column("item_id").equals(
            pq.read_table(d / "shards" / f"part-{k}.parquet").column("item_id"))
    # a rerun replaces the directory without duplicating rows
    sidkit.encode(d / "m", d / "shards", out)  # an existing codes directory: replaced as a whole
    assert sum(pq.read_metadata(out / f"part-{k:05d}.parquet").num_rows for k in range(8)) == 3000


def test_directory_output_refuses_a_foreign_folder(heavy, tmp_path):
    d, _ = heavy
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("keep me")
    with pytest.raises(InputFileError, match="not a sidkit codes directory"):
        sidkit.encode(d / "m", d / "shards", tmp_path / "mine")
    assert (tmp_path / "mine" / "notes.txt").read_text() == "keep me"


def test_failed_run_leaves_the_old_output_and_no_temps(heavy, tmp_path, monkeypatch):
    d, _ = heavy
    out = tmp_path / "codes"
    sidkit.encode(d / "m", d / "shards", str(out) + "/")
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    calls = {"n": 0}
    real = encoding._with_suffix

    def boom(*a, **k):
        calls["n"] += 1
        if calls["n"] == 20:
            raise KeyboardInterrupt
        return real(*a, **k)

    monkeypatch.setattr(encoding, "_with_suffix", boom)
    with pytest.raises(KeyboardInterrupt):
        sidkit.encode(d / "m", d / "shards", str(out) + "/", batch_size=50)
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before
    assert [p.name for p in tmp_path.iterdir()] == ["codes"]  # scratch and temp folders are gone


def test_duplicate_ids_across_shards(heavy, tmp_path):
    d, ids2 = heavy
    X = np.random.default_rng(0).normal(size=(3, 8)).astype(np.float32)
    (tmp_path / "s").mkdir()
    for f in (d / "shards").iterdir():
        (tmp_path / "s" / f.name).write_bytes(f.read_bytes())
    write_items(tmp_path / "s" / "part-9.parquet", [ids2[5], "fresh", ids2[2000]], X)
    with pytest.raises(DataError, match=r"duplicated ids.*" + ids2[5]):
        sidkit.encode(d / "m", tmp_path / "s", tmp_path / "o.parquet", partition_rows=400)
    assert not (tmp_path / "o.parquet").exists()


def test_hash_collisions_are_checked_on_the_real_ids(heavy, tmp_path, monkeypatch):
    d, _ = heavy
    import sidkit.encoding.finish as finish

    monkeypatch.setattr(finish, "id_hash", lambda ids: np.zeros(len(ids), np.uint64))  # every id collides
    s = sidkit.encode(d / "m", d / "shards", tmp_path / "o.parquet", partition_rows=400)
    assert s["n_items"] == 3000


def test_shards_that_disagree(heavy, tmp_path):
    d, _ = heavy
    (tmp_path / "s").mkdir()
    for f in (d / "shards").iterdir():
        (tmp_path / "s" / f.name).write_bytes(f.read_bytes())
    pq.write_table(pa.table({"item_id": pa.array([1, 2]), "embedding": emb_array(np.ones((2, 8), np.float32))}),
                   tmp_path / "s" / "part-5b.parquet")
    with pytest.raises(SchemaError, match=r"part-5b\.parquet: this shard's schema disagrees.*item_id"):
        sidkit.encode(d / "m", tmp_path / "s", tmp_path / "o.parquet")
    bad = np.ones((2, 8), np.float32)
    bad[1, 3] = np.nan
    (tmp_path / "s" / "part-5b.parquet").unlink()
    write_items(tmp_path / "s" / "part-5b.parquet", ["x1", "x2"], bad)
    with pytest.raises(DataError, match=r"part-5b\.parquet: column 'embedding' has NaN or inf values \(first at row 1\)"):
        sidkit.encode(d / "m", tmp_path / "s", tmp_path / "o.parquet")
    with pytest.raises(InputFileError, match="no file matches"):
        sidkit.encode(d / "m", str(tmp_path / "nope" / "*.parquet"), tmp_path / "o.parquet")


def test_zcr_encode_does_not_depend_on_input_order_or_sharding(heavy, tmp_path):
    """New items of a ZCR model compete for free last codes in item-id order, so a shuffled,
    resharded input gives every item the same SID and suffix."""
    d, _ = heavy
    sidkit.fit(d / "fit.parquet", out=tmp_path / "z", method="rqkmeans", levels=2, codebook_size="4,4", dedup="zcr")
    sidkit.encode(tmp_path / "z", d / "shards", tmp_path / "a.parquet", partition_rows=450)
    shards = _shuffled_shards(d / "one.parquet", tmp_path / "s", 2, [(0, 700), (700, 2900), (2900, 3000)], 50)
    sidkit.encode(tmp_path / "z", shards, tmp_path / "b.parquet", partition_rows=300, batch_size=91)
    a, b = _mapping(tmp_path / "a.parquet"), _mapping(tmp_path / "b.parquet")
    assert len(a) == 3000 and a == b
    full = [c + (s,) for c, s in a.values()]
    assert len(set(full)) == len(full)  # sid + suffix stays unique
