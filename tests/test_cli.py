"""The CLI: every bad input gives one line, exit code 2 and no output; --json; summaries."""

import json

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

from sidkit.cli import app

from conftest import emb_array, planted, write_items

runner = CliRunner()


def run(*args):
    return runner.invoke(app, [str(a) for a in args])


def good_X(n=40, d=6, seed=0):
    return np.random.default_rng(seed).normal(size=(n, d)).astype(np.float32)


def _bad_catalogs(tmp):
    """name -> (path, expected message fragment)."""
    X = good_X()
    ids = [f"i{k}" for k in range(len(X))]
    cases = {}
    cases["missing"] = (tmp / "nope.parquet", "file not found")
    (tmp / "adir").mkdir()
    cases["directory"] = (tmp / "adir", "is a directory")
    (tmp / "empty.parquet").write_bytes(b"")
    cases["zero_bytes"] = (tmp / "empty.parquet", "empty (0 bytes)")
    (tmp / "text.parquet").write_text("item_id,embedding\n1,2\n")
    cases["not_parquet"] = (tmp / "text.parquet", "not a readable Parquet file")
    good = write_items(tmp / "good.parquet", ids, X)
    data = good.read_bytes()
    (tmp / "trunc.parquet").write_bytes(data[: len(data) // 2])
    cases["truncated"] = (tmp / "trunc.parquet", "Parquet")
    pq.write_table(pa.table({"item_id": pa.array([], pa.string()), "embedding": emb_array(np.zeros((0, 6)))}), tmp / "zero.parquet")
    cases["zero_rows"] = (tmp / "zero.parquet", "zero rows")
    pq.write_table(pa.table({"sku": ids, "embedding": emb_array(X)}), tmp / "noid.parquet")
    cases["no_id_column"] = (tmp / "noid.parquet", "no id column 'item_id'")
    write_items(tmp / "nullid.parquet", [None, None] + ids[2:], X)
    cases["null_ids"] = (tmp / "nullid.parquet", "2 null ids")
    write_items(tmp / "dupid.parquet", ["x", "x", "y", "y"] + ids[4:], X)
    cases["duplicate_ids"] = (tmp / "dupid.parquet", "2 duplicated ids")
    pq.write_table(pa.table({"item_id": ids, "title": ["t"] * len(ids)}), tmp / "noemb.parquet")
    cases["no_embedding"] = (tmp / "noemb.parquet", "no embedding column")
    pq.write_table(pa.table({"item_id": ids, "embedding": [["a", "b"]] * len(ids)}), tmp / "stremb.parquet")
    cases["string_embedding"] = (tmp / "stremb.parquet", "not a list of floats")
    emb = [list(map(float, r)) for r in X]
    emb[3] = None
    pq.write_table(pa.table({"item_id": ids, "embedding": pa.array(emb, pa.list_(pa.float32()))}), tmp / "nullemb.parquet")
    cases["null_embedding"] = (tmp / "nullemb.parquet", "1 null embedding rows (rows 3)")
    Xn = X.copy()
    Xn[7, 2] = np.nan
    write_items(tmp / "nan.parquet", ids, Xn)
    cases["nan"] = (tmp / "nan.parquet", "NaN or inf values (first at row 7)")
    Xi = X.copy()
    Xi[9, 0] = np.inf
    write_items(tmp / "inf.parquet", ids, Xi)
    cases["inf"] = (tmp / "inf.parquet", "first at row 9")
    emb = [list(map(float, r)) for r in X]
    emb[5] = emb[5][:3]
    pq.write_table(pa.table({"item_id": ids, "embedding": pa.array(emb, pa.list_(pa.float32()))}), tmp / "ragged.parquet")
    cases["ragged"] = (tmp / "ragged.parquet", "ragged embeddings (row 5 has length 3")
    cases["fewer_items_than_codes"] = (good, "fewer than the 256 codes per level")
    return cases


CASES = ["missing", "directory", "zero_bytes", "not_parquet", "truncated", "zero_rows", "no_id_column", "null_ids",
         "duplicate_ids", "no_embedding", "string_embedding", "null_embedding", "nan", "inf", "ragged",
         "fewer_items_than_codes"]


@pytest.mark.parametrize("case", CASES)
def test_fit_bad_input(tmp_path, case):
    path, fragment = _bad_catalogs(tmp_path)[case]
    out = tmp_path / "model"
    r = run("fit", path, "--out", out, "--method", "rqkmeans", "--quiet")
    assert r.exit_code == 2, r.output
    err = r.stderr.strip()
    assert err.startswith("error: ") and "\n" not in err, err
    assert fragment in err, err
    assert path.name in err
    assert "Traceback" not in r.output
    assert not out.exists()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".model")]


@pytest.mark.parametrize("case", ["null_ids", "nan", "ragged", "truncated"])
def test_bad_input_leaves_existing_model_untouched(tmp_path, case):
    X, _, _ = planted(n_clusters=4, n_sub=2, per=10, dim=6)
    good = write_items(tmp_path / "fitme.parquet", [f"i{k}" for k in range(len(X))], X)
    out = tmp_path / "model"
    assert run("fit", good, "--out", out, "--method", "rqkmeans", "-K", "8", "--quiet").exit_code == 0
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    path, _ = _bad_catalogs(tmp_path)[case]
    r = run("fit", path, "--out", out, "--method", "rqkmeans", "-K", "8", "--quiet")
    assert r.exit_code == 2
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before
    # encode with bad input: exit 2 and no output file
    r = run("encode", out, path, "-o", tmp_path / "codes.parquet", "--quiet")
    assert r.exit_code == 2 and r.stderr.startswith("error: ")
    assert not (tmp_path / "codes.parquet").exists()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".codes")]


def test_encode_width_mismatch_and_duplicates_across_batches(tmp_path):
    X, _, _ = planted(n_clusters=4, n_sub=2, per=10, dim=6)
    good = write_items(tmp_path / "fitme.parquet", [f"i{k}" for k in range(len(X))], X)
    out = tmp_path / "model"
    assert run("fit", good, "--out", out, "--method", "rqkmeans", "-K", "8", "--quiet").exit_code == 0
    wide = write_items(tmp_path / "wide.parquet", ["a", "b", "c"], good_X(3, 7))
    r = run("encode", out, wide, "-o", tmp_path / "c.parquet")
    assert r.exit_code == 2 and "width 7, the model expects 6" in r.stderr and "wide.parquet" in r.stderr
    dup = write_items(tmp_path / "dup.parquet", ["a"] + [f"z{k}" for k in range(10)] + ["a"], good_X(12, 6))
    r = run("encode", out, dup, "-o", tmp_path / "c.parquet", "--batch-size", "5")
    assert r.exit_code == 2 and "duplicated ids" in r.stderr and "'a'" in r.stderr
    assert not (tmp_path / "c.parquet").exists()
    r = run("encode", tmp_path / "nomodel", good, "-o", tmp_path / "c.parquet")
    assert r.exit_code == 2 and "model directory not found" in r.stderr


def test_bad_options(tmp_path):
    X, _, _ = planted(n_clusters=4, n_sub=2, per=10, dim=6)
    good = write_items(tmp_path / "fitme.parquet", [f"i{k}" for k in range(len(X))], X)
    for args, frag in [(["--method", "nope"], "--method 'nope'"), (["-K", "8,x"], "--codebook-size '8,x'"),
                       (["-L", "2", "-K", "8,8,8"], "3 sizes for --levels 2"), (["--levels", "0"], "--levels must be"),
                       (["--embedding", "nope"], "no embedding column 'nope'"), (["--id-col", "sku"], "no id column 'sku'"),
                       (["--config", tmp_path / "none.toml"], "config file not found")]:
        r = run("fit", good, "--out", tmp_path / "m", *args)
        assert r.exit_code == 2, (args, r.output)
        assert frag in r.stderr, (args, r.stderr)
        assert not (tmp_path / "m").exists()


def test_fit_and_encode_json_and_summary(tmp_path):
    X, _, _ = planted(n_clusters=4, n_sub=2, per=10, dim=6)
    good = write_items(tmp_path / "fitme.parquet", [f"i{k}" for k in range(len(X))], X)
    r = run("fit", good, "--out", tmp_path / "m", "--method", "rqkmeans", "-K", "8", "--json")
    assert r.exit_code == 0
    doc = json.loads(r.stdout)
    assert doc["n_items"] == 80 and doc["codebook_sizes"] == [8, 8, 8] and 0 <= doc["collision_rate"] <= 1
    r = run("encode", tmp_path / "m", good, "-o", tmp_path / "c.parquet", "--json")
    assert r.exit_code == 0 and json.loads(r.stdout)["n_kept"] == 80
    r = run("fit", good, "--out", tmp_path / "m", "--method", "rqkmeans", "-K", "8")
    assert r.exit_code == 0 and "collision rate" in r.stdout and "utilization" in r.stdout
    r = run("--version")
    assert r.exit_code == 0 and r.stdout.startswith("sidkit ")


def test_encode_out_and_output_are_one_option(tmp_path):
    X, _, _ = planted(n_clusters=4, n_sub=2, per=10, dim=6)
    good = write_items(tmp_path / "items.parquet", [f"i{k}" for k in range(len(X))], X)
    model = tmp_path / "model"
    assert run("fit", good, "--out", model, "--method", "rqkmeans", "-K", "8", "--quiet").exit_code == 0
    for flag in ("--out", "--output", "-o"):
        assert run("encode", model, good, flag, tmp_path / f"c{flag}.parquet", "--quiet").exit_code == 0
    a, b, c = (pq.read_table(tmp_path / f"c{f}.parquet") for f in ("--out", "--output", "-o"))
    assert a.equals(b) and a.equals(c)


def test_progress_keeps_counter_and_eta_at_80_columns():
    import io
    import re

    from rich.console import Console

    from sidkit._progress import fit_info, progress_bar

    buf = io.StringIO()
    con = Console(file=buf, width=80, force_terminal=True, color_system=None)
    many = {"loss": 0.123456, "recon": 0.0012345, "hmr": 0.5, "align": 0.25, "conflicts": 1234, "lr": 0.001}
    with progress_bar(True, console=con) as cb:
        for i in range(1, 4):
            cb("train", i * 100, 2000, many)
    text = re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "\n", buf.getvalue().replace("\r", "\n"))
    last = [ln for ln in text.splitlines() if ln.startswith("train")][-1]
    assert "300/2000" in last and re.search(r"\d:\d\d:\d\d \d:\d\d:\d\d", last), last  # counter, elapsed, ETA
    assert len(last) <= 80 and last.endswith("…")  # the metrics were cut, not the counter
    assert fit_info("a=1", 200, "train", 2000) == "a=1"
    assert fit_info("x" * 100, 30, "train", 2000) == ""


def test_summaries_do_not_wrap_at_80_columns_when_piped(tmp_path, monkeypatch):
    from sidkit.report.console import summary_console

    monkeypatch.delenv("COLUMNS", raising=False)
    import io

    assert summary_console(io.StringIO()).width == 200
    monkeypatch.setenv("COLUMNS", "120")
    assert summary_console(io.StringIO()).width == 120
    assert summary_console(io.StringIO(), min_width=130).width == 130


def test_help_shows_defaults_one_way():
    import re

    for cmd in ["fit", "encode", "audit", "export", "eval", "dedup", "lookup", "kae-plan", "bind-slot"]:
        res = runner.invoke(app, [cmd, "--help"], env={"COLUMNS": "250"})
        assert res.exit_code == 0
        assert not re.search(r"\(default[:)]", res.output), f"{cmd}: a default written '(default ...)' instead of '[default: ...]'"
