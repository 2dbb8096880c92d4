"""fit / encode end to end through the library: model files, stable codes, suffixes, config."""

import json

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from safetensors.numpy import load_file

import sidkit
from sidkit.errors import ConfigError
from sidkit.dedup.suffix import assign_suffix
from sidkit.io.codes import pack_keys, read_codes

from conftest import planted, write_items

FAST_VAE = dict(method="rqvae", levels=2, codebook_size="16,8", max_steps=40, batch_size=64, epochs=100)


def test_assign_suffix_by_item_id():
    codes = np.array([[1, 2], [1, 2], [0, 0], [1, 2], [0, 1]])
    ids = np.array(["b", "a", "c", "0", "d"])
    assert assign_suffix(codes, ids).tolist() == [2, 1, 0, 0, 0]
    full = np.column_stack([codes, assign_suffix(codes, ids)])
    assert len(np.unique(full, axis=0)) == len(codes)


def test_pack_keys_equal_iff_codes_equal():
    rng = np.random.default_rng(0)
    codes = rng.integers(0, 4, size=(500, 3))
    keys = pack_keys(codes, [4, 4, 4])
    for i in range(0, 500, 37):
        for j in range(0, 500, 41):
            assert (keys[i] == keys[j]) == bool((codes[i] == codes[j]).all())
    wide = rng.integers(0, 60000, size=(50, 5))  # 5 x 16 bits does not fit one int64
    kw = pack_keys(wide, [65536] * 5)
    assert len(np.unique(kw)) == len(np.unique(wide, axis=0))


@pytest.mark.parametrize("method", ["rqkmeans", "rqvae"])
def test_fit_writes_model_dir_and_encode_reproduces_codes(tmp_path, small_catalog, method):
    opts = dict(FAST_VAE) if method == "rqvae" else dict(method="rqkmeans", levels=2, codebook_size="16,8")
    res = sidkit.fit(small_catalog, out=tmp_path / "m", **opts)
    m = tmp_path / "m"
    for f in ("model.safetensors", "sidkit.json", "codes.parquet", "codebooks.parquet", "report.json", "report.html"):
        assert (m / f).is_file(), f
    meta = json.loads((m / "sidkit.json").read_text())
    assert meta["method"] == method and meta["codebook_sizes"] == [16, 8]
    assert meta["input"]["rows"] == 320 and meta["fusion"]["columns"] == ["embedding"]
    tensors = load_file(str(m / "model.safetensors"))
    assert tensors["rq.codebook.0"].shape[0] == 16 and tensors["rq.codebook.1"].shape[0] == 8
    cb = pq.read_table(m / "codebooks.parquet")
    assert cb.num_rows == 24 and cb.column("count").to_numpy().sum() == 2 * 320
    report = json.loads((m / "report.json").read_text())
    assert report["collision"]["collision_rate"] == pytest.approx(res.summary["collision_rate"])
    assert [lv["level"] for lv in report["levels"]] == [0, 1]
    ids, codes, suffix, md = read_codes(m / "codes.parquet")
    assert md["method"] == method and md["codebook_sizes"] == [16, 8]
    assert (codes == res.codes).all()
    assert len(np.unique(np.column_stack([codes, suffix]), axis=0)) == len(codes)
    # encode the fitted items again: exactly the codes and suffixes fit wrote
    summary = sidkit.encode(m, small_catalog, tmp_path / "again.parquet", batch_size=50)
    ids2, codes2, suffix2, _ = read_codes(tmp_path / "again.parquet")
    assert (ids2 == ids).all() and (codes2 == codes).all() and (suffix2 == suffix).all()
    assert summary["n_kept"] == 320 and summary["n_new_or_changed"] == 0


def test_same_seed_identical_codes_different_seed_differs(tmp_path, small_catalog):
    a = sidkit.fit(small_catalog, out=tmp_path / "a", seed=3, **FAST_VAE)
    b = sidkit.fit(small_catalog, out=tmp_path / "b", seed=3, **FAST_VAE)
    c = sidkit.fit(small_catalog, out=tmp_path / "c", seed=4, **FAST_VAE)
    assert (a.codes == b.codes).all()
    assert (tmp_path / "a" / "codes.parquet").read_bytes() == (tmp_path / "b" / "codes.parquet").read_bytes()
    assert (a.codes != c.codes).any()


def test_encode_new_items_get_fresh_suffixes_and_old_keep_theirs(tmp_path):
    X, _, _ = planted(n_clusters=4, n_sub=2, per=10, dim=8)
    ids = [f"a{i:03d}" for i in range(len(X))]
    items = write_items(tmp_path / "items.parquet", ids, X)
    sidkit.fit(items, out=tmp_path / "m", method="rqkmeans", levels=2, codebook_size="4,2")
    old_ids, old_codes, old_suffix, _ = read_codes(tmp_path / "m" / "codes.parquet")
    # planted sub-clusters are tight: 8 buckets of 10 items each, suffixes 0..9 by id
    assert sorted(np.bincount(old_suffix).tolist()) == [8] * 10
    # refresh: the first 5 old items (one moved to another cluster) + 3 copies of item a000
    X2 = np.concatenate([X[:5], X[[0, 0, 0]]])
    X2[1] = X[40]  # a001 changed: now in another bucket
    ids2 = ids[:5] + ["new2", "new1", "new3"]
    write_items(tmp_path / "refresh.parquet", ids2, X2)
    s = sidkit.encode(tmp_path / "m", tmp_path / "refresh.parquet", tmp_path / "out.parquet")
    new_ids, new_codes, new_suffix, _ = read_codes(tmp_path / "out.parquet")
    assert s["n_kept"] == 4 and s["n_new_or_changed"] == 4
    pos = {k: i for i, k in enumerate(old_ids.tolist())}
    for i in (0, 2, 3, 4):  # unchanged items keep code and suffix
        assert (new_codes[i] == old_codes[pos[ids2[i]]]).all() and new_suffix[i] == old_suffix[pos[ids2[i]]]
    bucket_max = old_suffix[[pos[k] for k in ids if (old_codes[pos[k]] == new_codes[5]).all()]].max()
    assert new_suffix[5:].tolist() == [bucket_max + 2, bucket_max + 1, bucket_max + 3]  # item-id order: new1, new2, new3
    assert new_suffix[1] == 10  # a001 moved into a bucket whose suffixes go to 9
    # sid + [suffix] is unique over the model's codes and the refresh together
    allc = np.concatenate([np.column_stack([old_codes, old_suffix]), np.column_stack([new_codes, new_suffix])[[1, 5, 6, 7]]])
    assert len(np.unique(allc, axis=0)) == len(allc)


def test_multiple_embedding_columns_are_fused(tmp_path):
    rng = np.random.default_rng(0)
    X, _, _ = planted(n_clusters=4, n_sub=2, per=10, dim=8)
    img = rng.normal(size=(len(X), 5)).astype(np.float32)
    from conftest import emb_array

    pq.write_table(pa.table({"item_id": pa.array(range(len(X))), "text": emb_array(X), "image": emb_array(img, fixed=False)}),
                   tmp_path / "items.parquet")
    r = sidkit.fit(tmp_path / "items.parquet", out=tmp_path / "m", method="rqkmeans", levels=2, codebook_size=8,
                   embedding_weights=[3.0, 1.0])
    meta = json.loads((tmp_path / "m" / "sidkit.json").read_text())
    assert meta["fusion"] == {"columns": ["text", "image"], "dims": [8, 5], "weights": [3.0, 1.0], "normalize": True}
    assert load_file(str(tmp_path / "m" / "model.safetensors"))["rq.codebook.0"].shape == (8, 13)
    sidkit.encode(tmp_path / "m", tmp_path / "items.parquet", tmp_path / "c.parquet")
    assert (read_codes(tmp_path / "c.parquet")[1] == r.codes).all()
    r1 = sidkit.fit(tmp_path / "items.parquet", out=tmp_path / "m1", method="rqkmeans", levels=2, codebook_size=8, embedding=["image"])
    assert json.loads((tmp_path / "m1" / "sidkit.json").read_text())["fusion"]["columns"] == ["image"]
    assert r1.codes.shape == (80, 2)


def test_config_file_and_precedence(tmp_path, small_catalog):
    cfg = tmp_path / "fit.toml"
    cfg.write_text('[fit]\nmethod = "rqkmeans"\nlevels = 2\ncodebook-size = [8, 4]\nseed = 5\n')
    sidkit.fit(small_catalog, out=tmp_path / "m", config=cfg, levels=None)
    meta = json.loads((tmp_path / "m" / "sidkit.json").read_text())
    assert meta["config"]["levels"] == 2 and meta["codebook_sizes"] == [8, 4] and meta["config"]["seed"] == 5
    sidkit.fit(small_catalog, out=tmp_path / "m2", config=cfg, codebook_size="16,16")
    assert json.loads((tmp_path / "m2" / "sidkit.json").read_text())["codebook_sizes"] == [16, 16]
    bad = tmp_path / "bad.toml"
    bad.write_text("levls = 3\n")
    with pytest.raises(ConfigError, match="unknown option 'levls'"):
        sidkit.fit(small_catalog, out=tmp_path / "m3", config=bad)
    assert not (tmp_path / "m3").exists()


def test_refit_replaces_model_dir_and_failed_fit_leaves_it(tmp_path, small_catalog):
    m = tmp_path / "m"
    sidkit.fit(small_catalog, out=m, method="rqkmeans", levels=2, codebook_size=8)
    before = {p.name: p.read_bytes() for p in m.iterdir()}
    with pytest.raises(sidkit.SidkitError):
        sidkit.fit(small_catalog, out=m, method="rqkmeans", levels=2, codebook_size=4096)
    assert {p.name: p.read_bytes() for p in m.iterdir()} == before
    sidkit.fit(small_catalog, out=m, method="rqkmeans", levels=3, codebook_size=8)
    assert json.loads((m / "sidkit.json").read_text())["n_levels"] == 3
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []


def test_import_is_cheap():
    import subprocess
    import sys

    code = "import sys, sidkit; print(int(any(m in sys.modules for m in ('torch', 'faiss', 'polars'))))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()
    assert out == "0"


def test_fit_report_and_audit_items_agree(tmp_path):
    """fit's report.json and 'audit MODEL --items CATALOG' compute the same semantic block."""
    from sidkit.datasets import make_catalog

    t = make_catalog(400, 8, seed=4)
    pq.write_table(t, tmp_path / "items.parquet")
    sidkit.fit(tmp_path / "items.parquet", out=tmp_path / "m", method="rqkmeans", levels=2, codebook_size=8)
    fitted = json.loads((tmp_path / "m" / "report.json").read_text())
    from sidkit.report.audit import audit  # (sidkit.audit is the module once something imported it)

    audited = audit(tmp_path / "m", items=tmp_path / "items.parquet")
    assert fitted["semantic"] == json.loads(json.dumps(audited["semantic"]))
    assert "attribute_purity" in fitted["semantic"]
