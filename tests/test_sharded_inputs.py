"""Every command that reads a catalog takes a file, a directory of shards or a glob, and gives
the same result for each."""

import json

import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

from sidkit.cli import app
from sidkit.datasets import make_catalog

runner = CliRunner()


@pytest.fixture(scope="module")
def cat(tmp_path_factory):
    d = tmp_path_factory.mktemp("sharded")
    t = make_catalog(1200, seed=4)
    pq.write_table(t, d / "one.parquet")
    (d / "shards" / "sub").mkdir(parents=True)
    cuts = [0, 100, 450, 451, 800, 1200]
    for k in range(5):  # one shard in a subfolder; writers' marker files are skipped
        where = d / "shards" / ("sub" if k == 2 else "")
        pq.write_table(t.slice(cuts[k], cuts[k + 1] - cuts[k]), where / f"part-{k}.parquet", row_group_size=64 + 50 * k)
    (d / "shards" / "_SUCCESS").write_text("")
    (d / "shards" / ".part-0.parquet.crc").write_text("x")
    return d


def _ok(*args):
    res = runner.invoke(app, [*map(str, args)])
    assert res.exit_code == 0, res.output
    return res


def test_fit_on_shards_matches_the_file(cat, tmp_path):
    # sorted paths: part-0, part-1, part-3, part-4, sub/part-2 — the same rows in another order
    for name, src in [("one", cat / "one.parquet"), ("dir", cat / "shards"), ("glob", f"{cat}/shards/**/*.parquet")]:
        _ok("fit", src, "-o", tmp_path / name, "--method", "rqkmeans", "-L", "2", "-K", "8", "--quiet")
    one = pq.read_table(tmp_path / "one" / "codes.parquet").sort_by("item_id")
    for name in ("dir", "glob"):
        other = pq.read_table(tmp_path / name / "codes.parquet").sort_by("item_id")
        assert other.column("item_id").equals(one.column("item_id"))
        assert len(other) == 1200


def test_encode_and_kae_plan_on_shards(cat, tmp_path):
    _ok("fit", cat / "one.parquet", "-o", tmp_path / "m", "--method", "rqkmeans", "-L", "2", "-K", "8", "--quiet")
    _ok("encode", tmp_path / "m", cat / "shards", "-o", tmp_path / "a.parquet", "--quiet")
    _ok("encode", tmp_path / "m", cat / "one.parquet", "-o", tmp_path / "b.parquet", "--quiet")
    a = pq.read_table(tmp_path / "a.parquet").sort_by("item_id")
    b = pq.read_table(tmp_path / "b.parquet").sort_by("item_id")
    assert a.column("sid").equals(b.column("sid"))
    doc = json.loads(_ok("encode", tmp_path / "m", cat / "shards", "-o", f"{tmp_path}/dir/", "--json").stdout)
    assert doc["shards_in"] == 5 and doc["shards_out"] == 5
    _ok("kae-plan", cat / "shards", "--attributes", "brand,color", "-o", tmp_path / "p1.toml")
    _ok("kae-plan", cat / "one.parquet", "--attributes", "brand,color", "-o", tmp_path / "p2.toml")
    assert (tmp_path / "p1.toml").read_text() == (tmp_path / "p2.toml").read_text()


def test_bad_shards_name_the_shard(cat, tmp_path):
    d = tmp_path / "s"
    d.mkdir()
    t = make_catalog(60, seed=1)
    pq.write_table(t.slice(0, 30), d / "a.parquet")
    pq.write_table(t.slice(30, 30).drop(["brand"]), d / "b.parquet")
    res = runner.invoke(app, ["fit", str(d), "-o", str(tmp_path / "m"), "--method", "rqkmeans", "-L", "1", "-K", "4"])
    assert res.exit_code == 2 and "b.parquet: this shard's schema disagrees with the first shard" in res.output
    assert "no column 'brand'" in res.output and not (tmp_path / "m").exists()
    (d / "b.parquet").unlink()
    pq.write_table(t.slice(0, 5), d / "b.parquet")  # ids 0..4 again
    res = runner.invoke(app, ["fit", str(d), "-o", str(tmp_path / "m"), "--method", "rqkmeans", "-L", "1", "-K", "4"])
    assert res.exit_code == 2 and "duplicated ids" in res.output
    (tmp_path / "empty").mkdir()
    res = runner.invoke(app, ["fit", str(tmp_path / "empty"), "-o", str(tmp_path / "m")])
    assert res.exit_code == 2 and "no .parquet files" in res.output
    res = runner.invoke(app, ["encode", str(tmp_path), f"{tmp_path}/none-*.parquet", "-o", str(tmp_path / "x.parquet")])
    assert res.exit_code == 2 and "no file matches" in res.output


def test_eval_and_audit_on_sharded_codes_and_interactions(cat, tmp_path):
    from sidkit.datasets import make_interactions

    _ok("fit", cat / "one.parquet", "-o", tmp_path / "m", "--method", "rqkmeans", "-L", "2", "-K", "8", "--quiet")
    _ok("encode", tmp_path / "m", cat / "shards", "-o", f"{tmp_path}/codes/", "--quiet")
    inter = make_interactions(pq.read_table(cat / "one.parquet"), 200, min_len=4, max_len=10, seed=2)
    (tmp_path / "inter").mkdir()
    third = len(inter) // 3
    for k in range(3):
        pq.write_table(inter.slice(k * third, third if k < 2 else len(inter) - 2 * third), tmp_path / "inter" / f"p{k}.parquet")
    pq.write_table(inter, tmp_path / "inter.parquet")
    a = json.loads(_ok("audit", tmp_path / "codes", "--interactions", tmp_path / "inter", "--json").stdout)
    b = json.loads(_ok("audit", tmp_path / "m" / "codes.parquet", "--interactions", tmp_path / "inter.parquet", "--json").stdout)
    assert a["n_items"] == b["n_items"] == 1200
    # the rows come in another order (random pairs differ); what the interactions give is the same
    same = lambda d: {k: v for k, v in d.items() if "random" not in k and k != "prefix_share_lift"}  # noqa: E731
    assert same(a["collaborative"]) == same(b["collaborative"]) and a["collaborative"]["n_pairs"] > 0
    ev = [json.loads(_ok("eval", c, "--interactions", i, "--epochs", "1", "--seeds", "1", "--no-baselines", "--json").stdout)
          for c, i in [(tmp_path / "codes", tmp_path / "inter"), (tmp_path / "m", tmp_path / "inter.parquet")]]
    r0, r1 = ev[0]["rows"][0], ev[1]["rows"][0]
    assert r0["collision_rate"] == r1["collision_rate"] and r0["levels"] == r1["levels"] == 2
    assert ev[0]["n_items"] == ev[1]["n_items"] and 0 <= r0["recall@10"] <= 1
