"""audit / export: library functions and Typer commands (registered on a local app)."""

from __future__ import annotations

import json

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import typer
from typer.testing import CliRunner

from sidkit.cli._tools import OneLineErrors
from sidkit.report.audit import audit, check_gates, parse_gate
from sidkit.cli.audit import audit_command
from sidkit.cli.export import export_command
from sidkit.errors import ConfigError, GateFailed
from sidkit.formats.export import level_letter
from sidkit.dedup.suffix import assign_suffix
from sidkit.io.codes import write_codes
from sidkit.io.sidtable import read_sid_table

app = typer.Typer(cls=OneLineErrors)  # the sidkit app's group: errors name command-line flags
app.command("audit")(audit_command)
app.command("export")(export_command)
runner = CliRunner()

N = 120
RNG = np.random.default_rng(42)
CENTERS = RNG.normal(size=(6, 12))
CL = RNG.integers(0, 6, size=N)
X = (CENTERS[CL] + 0.1 * RNG.normal(size=(N, 12))).astype(np.float32)
CODES = np.stack([CL, RNG.integers(0, 4, N), RNG.integers(0, 3, N)], axis=1).astype(np.int32)
IDS = np.array([f"p{i}" for i in range(N)], dtype=object)
SIZES = [8, 4, 4]

CORE = ("n_items", "n_levels", "codebook_sizes", "collision", "levels", "prefix", "diversity", "hamming", "top_buckets")


@pytest.fixture()
def files(tmp_path):
    codes = tmp_path / "codes.parquet"
    write_codes(codes, IDS, CODES, assign_suffix(CODES, IDS), {"method": "test", "codebook_sizes": SIZES})
    items = tmp_path / "items.parquet"
    titles = [f"thing {i}" for i in range(N)]
    titles[0] = "<script>alert(1)</script>"
    pq.write_table(pa.table({
        "item_id": IDS.tolist(),
        "title": titles,
        "category_leaf": [f"cat{c}" for c in CL],
        "embedding": pa.FixedSizeListArray.from_arrays(pa.array(X.ravel()), 12),
    }), items)
    inter = tmp_path / "inter.parquet"
    users = np.repeat(np.arange(30), 4)
    pq.write_table(pa.table({"user_id": [f"u{u}" for u in users], "item_id": [IDS[i] for i in RNG.integers(0, N, users.size)],
                             "position": np.tile(np.arange(4), 30)}), inter)
    base = tmp_path / "base.parquet"
    bc = CODES.copy()
    bc[:10, 2] = (bc[:10, 2] + 1) % 4
    write_codes(base, IDS, bc, assign_suffix(bc, IDS), {"method": "test", "codebook_sizes": SIZES})
    return {"codes": codes, "items": items, "inter": inter, "base": base, "dir": tmp_path}


def core(rep):
    return {k: rep[k] for k in CORE}


def test_audit_json_has_design_keys(files):
    r = runner.invoke(app, ["audit", str(files["codes"]), "--json", "--items", str(files["items"]),
                            "--interactions", str(files["inter"]), "--baseline", str(files["base"])])
    assert r.exit_code == 0, r.output
    rep = json.loads(r.stdout)
    for k in ("n_items", "n_levels", "codebook_sizes", "collision", "levels", "prefix", "diversity", "hamming",
              "semantic", "collaborative", "compare"):
        assert k in rep
    assert set(rep["collision"]) >= {"collision_rate", "unique_sid_ratio", "collided_item_fraction", "n_colliding_buckets",
                                     "max_bucket_size", "bucket_size_histogram", "gini"}
    assert set(rep["levels"][0]) >= {"level", "utilization", "dead_codes", "entropy_bits", "perplexity", "normalized_perplexity"}
    assert set(rep["prefix"][0]) >= {"length", "n_distinct", "collision_rate", "mean_branching", "conditional_entropy_bits"}
    assert set(rep["hamming"]) >= {"pairs_h0", "pairs_h_le1", "distribution"}
    assert set(rep["semantic"]) >= {"knn_mean_common_prefix", "random_mean_common_prefix", "locality_gap",
                                    "conflict_collision_rate", "benign_collision_rate", "conflict_item_rate"}
    assert rep["semantic"]["locality_gap"] > 0
    assert "co_interaction_prefix_share" in rep["collaborative"]
    assert rep["compare"]["churn_rate"] == pytest.approx(10 / N)
    assert rep["codebook_sizes"] == SIZES and rep["warnings"] == []


def test_rich_summary_and_quiet(files):
    r = runner.invoke(app, ["audit", str(files["codes"])])
    assert r.exit_code == 0
    assert "collision rate" in r.stdout and "per level" in r.stdout and "largest collision buckets" in r.stdout
    top = audit(files["codes"])["top_buckets"][0]
    assert str(top["item_ids"][0]) in r.stdout
    r = runner.invoke(app, ["audit", str(files["codes"]), "--quiet"])
    assert r.exit_code == 0 and r.stdout == ""


@pytest.mark.parametrize("fmt,ext", [("tokens", "csv"), ("index-json", "json"), ("csv", "csv")])
def test_export_round_trip(files, fmt, ext):
    out = files["dir"] / f"export.{ext}"
    r = runner.invoke(app, ["export", str(files["codes"]), "--format", fmt, "-o", str(out), "--json"])
    assert r.exit_code == 0, r.output
    info = json.loads(r.stdout)
    assert info["n_items"] == N and info["suffix_token"] is True
    ids, codes, sfx, _, _ = read_sid_table(out, codebook_size=SIZES)
    assert np.array_equal(codes, CODES) and np.array_equal(sfx, assign_suffix(CODES, IDS))
    a = audit(files["codes"])
    b = audit(out, codebook_size=",".join(map(str, SIZES)))
    assert core(a) == core(b)
    r = runner.invoke(app, ["audit", str(out), "--json", "--codebook-size", "8,4,4"])
    assert core(json.loads(r.stdout)) == core(a)


def test_level_letters():
    assert level_letter(0) == "a" and level_letter(25) == "z" and level_letter(26) == "aa"


def test_export_stdout_and_tokens_shape(files):
    r = runner.invoke(app, ["export", str(files["codes"]), "--format", "tokens"])
    assert r.exit_code == 0
    lines = r.stdout.strip().splitlines()
    assert lines[0] == '"item_id","sid"' and len(lines) == N + 1
    i = int(np.flatnonzero(IDS == "p0")[0])
    assert f'"p0","<a_{CODES[i, 0]}><b_{CODES[i, 1]}><c_{CODES[i, 2]}><d_' in r.stdout
    r = runner.invoke(app, ["export", str(files["codes"]), "--format", "index-json"])
    obj = json.loads(r.stdout)
    assert len(obj) == N and len(obj["p0"]) == 4


def test_gates_trip_exit_1_and_write_html(files):
    html = files["dir"] / "r.html"
    r = runner.invoke(app, ["audit", str(files["codes"]), "--fail-on", "collision_rate>0.0001",
                            "--fail-on", "levels.0.utilization>=0.99", "--fail-on", "hamming.pairs_h0<0", "--html", str(html), "--json"])
    assert r.exit_code == 1
    rep = json.loads(r.stdout)
    assert [g["tripped"] for g in rep["gates"]] == [True, False, False]
    assert "collision_rate>0.0001" in r.stderr and "levels.0" not in r.stderr
    assert html.exists()
    r = runner.invoke(app, ["audit", str(files["codes"]), "--fail-on", "collision_rate>0.9"])
    assert r.exit_code == 0
    with pytest.raises(GateFailed) as e:
        audit(files["codes"], fail_on="collision.collision_rate > 1%")
    assert e.value.tripped[0]["key"] == "collision.collision_rate"


def test_gate_parsing():
    g = parse_gate(" collision_rate >= 2% ")
    assert (g.key, g.op, g.threshold) == ("collision_rate", ">=", 0.02)
    rep = {"collision": {"collision_rate": 0.1}, "prefix": [{"collision_rate": 0.5}], "levels": [{"utilization": 0.3}, {"utilization": 0.9}]}
    assert check_gates(rep, ["collision_rate>0.05"])[0]["tripped"] is True
    assert check_gates(rep, ["levels.1.utilization<0.5"])[0]["tripped"] is False
    for bad in ("collision_rate", "collision_rate=>0.1", "collision_rate>abc", "> 0.1", "a>1 or b<2"):
        with pytest.raises(ConfigError):
            parse_gate(bad)
    with pytest.raises(ConfigError, match="unknown report key"):
        check_gates(rep, ["nope>1"])
    with pytest.raises(ConfigError, match="ambiguous"):
        check_gates(rep, ["utilization>1"])


@pytest.mark.parametrize("case", ["missing", "malformed", "negative", "too_big", "ragged", "empty", "bad_gate", "unknown_gate",
                                  "bad_size", "missing_items"])
def test_bad_input_exit_2_nothing_written(files, case):
    d = files["dir"]
    html = d / "out.html"
    args = ["audit"]
    if case == "missing":
        args += [str(d / "nope.parquet")]
    elif case == "malformed":
        (d / "m.json").write_text('{"a": [')
        args += [str(d / "m.json")]
    elif case == "negative":
        (d / "n.csv").write_text("item_id,sid_0\na,-3\n")
        args += [str(d / "n.csv")]
    elif case == "too_big":
        (d / "t.csv").write_text("item_id,sid_0\na,3\nb,9\n")
        args += [str(d / "t.csv"), "--codebook-size", "8"]
    elif case == "ragged":
        (d / "r.json").write_text('{"a": [1, 2], "b": [1]}')
        args += [str(d / "r.json")]
    elif case == "empty":
        (d / "e.csv").write_text("item_id,sid_0\n")
        args += [str(d / "e.csv")]
    elif case == "bad_gate":
        args += [str(files["codes"]), "--fail-on", "collision_rate >> 2"]
    elif case == "unknown_gate":
        args += [str(files["codes"]), "--fail-on", "no_such_metric>2"]
    elif case == "bad_size":
        args += [str(files["codes"]), "--codebook-size", "eight"]
    elif case == "missing_items":
        args += [str(files["codes"]), "--items", str(d / "nope_items.parquet")]
    args += ["--html", str(html), "--json"]
    r = runner.invoke(app, args)
    assert r.exit_code == 2, r.output
    assert r.stdout == ""
    err = r.stderr.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: ")
    assert not html.exists()
    assert not [p for p in d.iterdir() if p.name.startswith(".out.html")]


def test_export_bad_input(files):
    out = files["dir"] / "x.csv"
    r = runner.invoke(app, ["export", str(files["dir"] / "nope.json"), "--format", "csv", "-o", str(out)])
    assert r.exit_code == 2 and r.stderr.startswith("error: ") and not out.exists()
    r = runner.invoke(app, ["export", str(files["codes"]), "--format", "yaml", "-o", str(out)])
    assert r.exit_code == 2 and "--format" in r.stderr and not out.exists()


def test_audit_interactions_order_without_split(files):
    """audit reads interactions with the shared reader: ``position`` (else ``timestamp``, else
    file order) orders each user's rows; no split column is needed and one is not read."""
    d = files["dir"]
    base = pq.read_table(files["inter"])  # 30 users x 4 rows, position 0..3 in file order
    want = audit(files["codes"], interactions=files["inter"])["collaborative"]
    assert want["n_pairs"] > 0
    pq.write_table(base.select(["user_id", "item_id"]), d / "plain.parquet")  # eval would refuse this file
    assert audit(files["codes"], interactions=d / "plain.parquet")["collaborative"] == want
    perm = np.random.default_rng(0).permutation(base.num_rows)
    shuffled = base.take(pa.array(perm))
    stamps = pa.array(np.random.default_rng(1).permutation(base.num_rows).astype(np.int64))
    pq.write_table(shuffled.append_column("timestamp", stamps).append_column("split", pa.array(["?"] * base.num_rows)),
                   d / "shuffled.parquet")
    assert audit(files["codes"], interactions=d / "shuffled.parquet")["collaborative"] == want
    pq.write_table(shuffled.drop(["position"]).append_column("timestamp", stamps), d / "by_time.parquet")
    assert audit(files["codes"], interactions=d / "by_time.parquet")["collaborative"] != want


@pytest.mark.parametrize("case,fragment", [("missing", "not found"), ("not_parquet", "not a readable Parquet file"),
                                           ("no_item_id", "item_id"), ("null_user", "null"),
                                           ("empty", "no interactions"), ("text_position", "numeric")])
def test_audit_bad_interactions_one_line_naming_the_file(files, case, fragment):
    d = files["dir"]
    p = d / f"inter_{case}.parquet"
    if case == "not_parquet":
        p.write_text("user_id,item_id\nu,p1\n")
    elif case == "no_item_id":
        pq.write_table(pa.table({"user_id": ["u"], "item": ["p1"]}), p)
    elif case == "null_user":
        pq.write_table(pa.table({"user_id": ["u", None], "item_id": ["p1", "p2"]}), p)
    elif case == "empty":
        pq.write_table(pa.table({"user_id": pa.array([], pa.string()), "item_id": pa.array([], pa.string())}), p)
    elif case == "text_position":
        pq.write_table(pa.table({"user_id": ["u", "u"], "item_id": ["p1", "p2"], "position": ["first", "second"]}), p)
    html = d / "out.html"
    r = runner.invoke(app, ["audit", str(files["codes"]), "--interactions", str(p), "--html", str(html), "--json"])
    assert r.exit_code == 2, r.output
    assert r.stdout == "" and "Traceback" not in r.output
    err = r.stderr.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: ") and str(p) in err[0] and fragment in err[0], err
    assert not html.exists()
