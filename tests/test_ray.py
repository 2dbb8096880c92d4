"""``sidkit encode --engine ray``: the Ray map stage writes the same staged files as
``encode_batch`` per shard, and the whole encode gives the local engine's codes and suffixes.

One local Ray cluster (2 CPUs) serves the whole module; CI installs the ``ray`` extra.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

import sidkit
from sidkit.errors import ConfigError, DataError
from sidkit.io.source import open_source
from sidkit.pipeline import encode_batch, load_model

REPO = Path(__file__).resolve().parents[1]
N_ROWS, N_SHARDS, DIM = 20_000, 8, 16


def read_out(p: Path) -> pa.Table:
    """A codes output, one file or a directory of shards, as one table (metadata dropped)."""
    return open_source(p, "codes").read().replace_schema_metadata(None)


@pytest.fixture(scope="module")
def ray():
    ray = pytest.importorskip("ray")
    pytest.importorskip("ray.data")
    if not ray.is_initialized():
        ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield ray
    ray.shutdown()


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    """A 20k-row catalog in 8 shards with different row-group sizes (and the same rows in one
    file); a model fitted on 3,000 of its items, 300 of them with moved embeddings (so they
    change SID), and a copy of the model without codes.parquet."""
    from sidkit.datasets import write_large_catalog

    d = tmp_path_factory.mktemp("raydata")
    one = write_large_catalog(d / "catalog.parquet", N_ROWS, DIM, n_clusters=32, batch_size=4096, seed=1)
    t = pq.read_table(one)
    t = t.set_column(0, "item_id", pa.array([f"it{i:06d}" for i in range(N_ROWS)]))  # string ids
    pq.write_table(t, one)
    shards = d / "shards"
    shards.mkdir()
    bounds = np.linspace(0, N_ROWS, N_SHARDS + 1).astype(int)
    for i in range(N_SHARDS):
        pq.write_table(t.slice(bounds[i], bounds[i + 1] - bounds[i]), shards / f"s{i}.parquet",
                       row_group_size=300 + 250 * i)
    fit_t = t.slice(0, 3000)
    emb = fit_t.column("embedding").combine_chunks()
    X = emb.flatten().to_numpy().reshape(-1, DIM).copy()
    X[:300] = X[::-1][:300]  # 300 fitted items whose embedding moves in the catalog
    fit_t = fit_t.set_column(1, "embedding", pa.FixedSizeListArray.from_arrays(pa.array(X.ravel()), DIM))
    pq.write_table(fit_t, d / "fit.parquet")
    sidkit.fit(d / "fit.parquet", out=d / "m", method="rqkmeans", levels=2, codebook_size=16, seed=0)
    sidkit.fit(d / "fit.parquet", out=d / "m_zcr", method="rqkmeans", levels=2, codebook_size=64, seed=0, dedup="zcr")
    import shutil

    shutil.copytree(d / "m", d / "m_nocodes")
    (d / "m_nocodes" / "codes.parquet").unlink()
    return {"dir": d, "one": one, "shards": shards, "model": d / "m", "model_nocodes": d / "m_nocodes", "model_zcr": d / "m_zcr"}


def test_staged_files_equal_encode_batch_per_shard(ray, data, tmp_path):
    from sidkit.encoding.ray_engine import ray_map_stage

    src = open_source(data["shards"])
    seen = []
    files = ray_map_stage(data["model"], src, tmp_path, id_col="item_id", workers=1, batch_size=1000,
                          progress=lambda stage, done, total, info: seen.append((done, total)))
    assert [f.name for f in files] == [f"part-{i:05d}.parquet" for i in range(N_SHARDS)]
    assert sorted(os.listdir(tmp_path)) == [f.name for f in files]  # no temp left
    model = load_model(data["model"])
    for i, f in enumerate(files):
        want = encode_batch(model, pq.read_table(src.shards[i]), id_col="item_id")
        got = pq.read_table(f)
        assert got.schema.names == ["item_id", "sid"] and got.schema.field("sid").type == pa.list_(pa.int32())
        assert got.replace_schema_metadata(None).equals(want), f"shard {i}"
    assert seen[-1] == (N_ROWS, N_ROWS) and len(seen) == N_SHARDS


def parts(d: Path) -> list[str]:
    return sorted(n for n in os.listdir(d) if n.startswith("part-"))


@pytest.mark.parametrize("which", ["model", "model_nocodes", "model_zcr"])
def test_codes_and_suffixes_equal_local_engine(ray, data, tmp_path, which):
    local = sidkit.encode(data[which], data["shards"], f"{tmp_path}/local/")
    s = sidkit.encode(data[which], data["shards"], f"{tmp_path}/ray/", engine="ray", workers=1, batch_size=2048)
    assert s["engine"] == "ray" and s["shards_out"] == N_SHARDS
    assert parts(tmp_path / "ray") == parts(tmp_path / "local") == [f"part-{i:05d}.parquet" for i in range(N_SHARDS)]
    for name in parts(tmp_path / "local"):  # shard for shard, metadata included
        assert pq.read_table(tmp_path / "ray" / name).equals(pq.read_table(tmp_path / "local" / name), check_metadata=True)
    got = read_out(tmp_path / "ray")
    assert got.num_rows == N_ROWS
    assert (s["n_kept"], s["n_new_or_changed"]) == (local["n_kept"], local["n_new_or_changed"])
    if which == "model":  # fitted items that did not move keep their suffix; the 300 moved ones mostly change
        assert 2000 < s["n_kept"] < 3000
    elif which == "model_zcr":  # new items were placed on free last-level codes, as with the local engine
        assert s["zcr"] == local["zcr"] and s["zcr"]["items_placed_elsewhere"] > 0 and s["n_kept"] > 2000
    else:
        assert s["n_kept"] == 0
    # heavy buckets: suffixes really are in play, and sid + [suffix] is unique
    full = {(tuple(a), b) for a, b in zip(got.column("sid").to_pylist(), got.column("suffix").to_pylist())}
    assert len(full) == N_ROWS and max(got.column("suffix").to_pylist()) > 10


def test_rerun_into_the_same_output_does_not_duplicate_rows(ray, data, tmp_path):
    out = f"{tmp_path}/out/"
    sidkit.encode(data["model"], data["shards"], out, engine="ray")
    first = read_out(tmp_path / "out")
    sidkit.encode(data["model"], data["shards"], out, engine="ray")
    assert read_out(tmp_path / "out").equals(first) and first.num_rows == N_ROWS
    assert os.listdir(tmp_path) == ["out"]  # no staging folder left beside it


def test_killed_run_leaves_the_old_output(ray, data, tmp_path):
    """A driver killed (SIGKILL) after its first shard leaves the previous output untouched; the
    next run removes the killed run's staging folder and writes the right result."""
    out = tmp_path / "codes.parquet"
    pq.write_table(pa.table({"item_id": ["old"], "sid": [[1, 2]], "suffix": [0]}), out)
    before = out.read_bytes()
    gcs = ray.get_runtime_context().gcs_address
    script = textwrap.dedent(f"""
        import os, signal
        import sidkit
        def die(stage, done, total, info):
            os.kill(os.getpid(), signal.SIGKILL)
        sidkit.encode({str(data['model'])!r}, {str(data['shards'])!r}, {str(out)!r}, engine="ray", address={gcs!r},
                      progress=die)
    """)
    env = dict(os.environ, PYTHONPATH=f"{REPO}{os.pathsep}{os.environ.get('PYTHONPATH', '')}")
    # generous: Ray's actor start-up took over 2 minutes on the 2-core dev machine under load
    r = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, timeout=600)
    assert r.returncode == -9, r.stderr.decode()[-2000:]
    assert out.read_bytes() == before
    assert any(n.endswith(".stage") for n in os.listdir(tmp_path))  # the killed run's staging folder
    sidkit.encode(data["model"], data["shards"], out, engine="ray")
    assert os.listdir(tmp_path) == ["codes.parquet"]
    sidkit.encode(data["model"], data["one"], tmp_path / "l.parquet")  # one output file: the local engine's
    assert pq.read_table(out).equals(pq.read_table(tmp_path / "l.parquet"), check_metadata=True)


def test_worker_error_is_the_one_line_error_naming_the_shard(ray, data, tmp_path):
    from sidkit.encoding.ray_engine import ray_map_stage

    shards = tmp_path / "shards"
    shards.mkdir()
    for i, width in enumerate([DIM, DIM - 1]):  # list<float> shards, the second one too narrow
        X = np.ones((10, width), np.float32)
        emb = pa.ListArray.from_arrays(pa.array(np.arange(0, X.size + 1, width, dtype=np.int32)), pa.array(X.ravel()))
        pq.write_table(pa.table({"item_id": [f"x{i}_{j}" for j in range(10)], "embedding": emb}), shards / f"p{i}.parquet")
    stage = tmp_path / "stage"
    stage.mkdir()
    with pytest.raises(DataError, match=r"p1\.parquet.*embedding width 15, the model expects 16"):
        ray_map_stage(data["model"], open_source(shards), stage, id_col="item_id")
    assert not any(n.startswith(".") for n in os.listdir(stage))


def test_cli_engine_ray(ray, data, tmp_path):
    from typer.testing import CliRunner

    from sidkit.cli import app

    out = tmp_path / "cli.parquet"
    r = CliRunner().invoke(app, ["encode", str(data["model"]), str(data["shards"]), "-o", str(out),
                                 "--engine", "ray", "--workers", "1", "-q"])
    assert r.exit_code == 0, r.output
    assert read_out(out).num_rows == N_ROWS
    r = CliRunner().invoke(app, ["encode", str(data["model"]), str(data["one"]), "-o", str(out), "--workers", "2"])
    assert r.exit_code == 2 and "--workers needs --engine ray" in r.output
    r = CliRunner().invoke(app, ["encode", str(data["model"]), str(data["one"]), "-o", str(out), "--engine", "spark"])
    assert r.exit_code == 2 and "--engine 'spark'" in r.output


def test_without_ray_the_error_says_how_to_install(data, tmp_path, monkeypatch):
    from sidkit.encoding.ray_engine import RAY_MISSING, ray_map_stage

    monkeypatch.setitem(sys.modules, "ray", None)  # import ray -> ImportError
    with pytest.raises(ConfigError) as e:
        ray_map_stage(data["model"], open_source(data["shards"]), tmp_path, id_col="item_id")
    assert str(e.value) == RAY_MISSING == "--engine ray needs Ray: pip install 'sidkit[ray]'"


def test_spark_map_in_arrow_function_equals_encode_batch(data):
    from sidkit.encoding.spark import encode_arrow_batches, spark_schema

    t = pq.read_table(data["shards"] / "s3.parquet")
    empty = pa.RecordBatch.from_arrays([pa.array([], f.type) for f in t.schema], schema=t.schema)
    batches = t.to_batches(max_chunksize=777) + [empty]
    got = pa.Table.from_batches(list(encode_arrow_batches(iter(batches), data["model"])))
    assert got.equals(encode_batch(load_model(data["model"]), t, id_col="item_id"))
    assert spark_schema("bigint") == "item_id bigint, sid array<int>"
    t = t.append_column("row", pa.array(np.arange(t.num_rows)))
    got = pa.Table.from_batches(list(encode_arrow_batches(t.to_batches(max_chunksize=500), data["model"], keep=["row"])))
    assert got.column_names == ["item_id", "sid", "row"] and got.column("row").to_pylist() == list(range(t.num_rows))
    assert spark_schema("string", "row bigint") == "item_id string, sid array<int>, row bigint"


def test_worker_cpus_share_the_cluster_and_every_actor_fits_on_a_node():
    from sidkit.encoding.ray_engine import _fits, worker_cpus

    assert worker_cpus([2], 1) == 2 and worker_cpus([2], 2) == 1 and worker_cpus([2], 4) == 0.5
    assert worker_cpus([8, 8], 1) == 8  # one actor lives on one node: not 16
    assert worker_cpus([8, 8], 3) == 4 and worker_cpus([16, 4], 2) == 8
    for nodes in ([2], [8, 8], [16, 4, 4], [3, 5]):
        for w in range(1, 12):
            c = worker_cpus(nodes, w)
            assert _fits(nodes, c, w) and not _fits(nodes, c * 1.01, w)


def test_shard_encoder_reports_errors_as_data(data, tmp_path):
    """The actor class alone (no Ray): a model or shard a node cannot see, and an unwritable stage
    folder, come back as one-line errors naming the path and the node."""
    from sidkit.encoding.ray_engine import _ShardEncoder

    shard = str(data["shards"] / "s0.parquet")
    r = _ShardEncoder(str(tmp_path / "nowhere"), str(tmp_path), "item_id", 1000)({"index": [0], "path": [shard]})
    assert r["error_class"] == ["ModelError"] and "not found on node" in r["error"][0] and r["rows"] == [-1]
    enc = _ShardEncoder(str(data["model"]), str(tmp_path), "item_id", 1000)
    r = enc({"index": [3], "path": [str(tmp_path / "gone.parquet")]})
    assert r["error_class"] == ["InputFileError"] and "gone.parquet: not found on node" in r["error"][0]
    enc.stage_dir = tmp_path / "missing_stage"
    r = enc({"index": [0], "path": [shard]})
    assert r["error_class"] == ["InputFileError"] and "could not write the staged codes" in r["error"][0]
    enc.stage_dir = tmp_path
    r = enc({"index": [0, 1], "path": [shard, str(data["shards"] / "s1.parquet")]})
    assert r["error_class"] == ["", ""] and r["rows"] == [2500, 2500]
    assert sorted(os.listdir(tmp_path)) == ["part-00000.parquet", "part-00001.parquet"]


def test_an_address_nobody_answers_is_a_one_line_error():
    import socket

    from sidkit.encoding.ray_engine import _check_reachable

    with socket.socket() as s:  # a port that was free a moment ago
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with pytest.raises(ConfigError, match=rf"address 127.0.0.1:{port}: no Ray cluster answers there"):
        _check_reachable(f"127.0.0.1:{port}")
    _check_reachable("auto")  # left to Ray
    _check_reachable(None)
