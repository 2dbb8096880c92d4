"""Audit report UX (issue 16): category-path conflicts and purity, fan-out, popularity probe,
display columns in bucket tables (HTML and CLI), labels."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

from sidkit.report.audit import audit
from sidkit.metrics import sid_report
from sidkit.metrics.buckets import build_buckets
from sidkit.metrics.popularity import popularity_metrics
from sidkit.metrics.prefix import fanout_per_level
from sidkit.metrics.semantic import (
    _collision_rules,
    attribute_purity,
    category_relation,
    semantic_metrics_exact,
)
from sidkit.report.html import render_html_text
from sidkit.report.labels import LABELS, meaning

EVIL = "<script>alert(1)</script>[bold]x[/bold]"
ROOT, ELEC, PASS, FAST = "Industrial & Scientific", "Industrial Electrical", "Passive Components", "Fasteners"


def test_category_relation_rules():
    butt = [ROOT, ELEC, "Terminals", "Butt Terminals"]
    ring = [ROOT, ELEC, "Terminals", "Ring Terminals"]
    cap = [ROOT, ELEC, PASS, "Capacitors"]
    staple = [ROOT, FAST, "Collated", "Staples"]
    assert category_relation(butt, butt) == "same"
    assert category_relation(butt, ring) == "related"  # sibling leaves
    assert category_relation(butt, [ROOT, ELEC, "Terminals"]) == "related"  # stops at the parent
    assert category_relation(butt, cap) == "unrelated"  # parts above the leaf's parent
    assert category_relation(butt, staple) == "unrelated"
    assert category_relation(None, None, "a", "a") == "same"
    assert category_relation(None, None, "a", "b") == "unrelated"
    assert category_relation(None, None, None, "b") is None


def _vecs(cos_pairs):
    """Unit vectors: item 2k and 2k+1 at cosine cos_pairs[k], pairs mutually orthogonal."""
    d = 2 * len(cos_pairs) + 2
    X = np.zeros((2 * len(cos_pairs), d), np.float32)
    for k, c in enumerate(cos_pairs):
        X[2 * k, 2 * k] = 1
        X[2 * k + 1, 2 * k] = c
        X[2 * k + 1, 2 * k + 1] = np.sqrt(1 - c * c)
    return X


def test_siblings_are_related_and_divergent_paths_conflict():
    # pair 0: sibling leaves, cos 0.95 -> benign; pair 1: paths part above the parent, cos 0.95 -> conflict
    X = _vecs([0.95, 0.95])
    codes = np.array([[0, 0], [0, 0], [1, 1], [1, 1]])
    paths = [[ROOT, ELEC, "Terminals", "Butt"], [ROOT, ELEC, "Terminals", "Ring"],
             [ROOT, ELEC, PASS, "Capacitors"], [ROOT, FAST, "Collated", "Staples"]]
    leaf = [p[-1] for p in paths]
    I, J, W = np.array([0, 2]), np.array([1, 3]), np.ones(2)
    tau = np.full(4, np.inf, np.float32)  # no local-threshold rule

    def run(paths_):
        sem = {}
        rules = _collision_rules(sem, I, J, W, X, tau, 0.0, leaf, None, codes, None, 4, 5, paths=paths_)
        return sem, rules

    sem, rules = run(paths)
    assert sem["benign_collision_rate"] == pytest.approx(0.5)
    assert sem["conflict_collision_rate"] == pytest.approx(0.5)
    assert rules["related_leaf_close"] == 1.0
    assert sem["conflict_cos_threshold"] == pytest.approx(0.1)
    (w,) = sem["worst_conflicts"]
    assert w["category_path"][1][1] == FAST
    # a sibling pair under 0.9 (0.89: Butt vs Ring Terminals) is related, not a conflict
    X[1] = [0.89, np.sqrt(1 - 0.89 ** 2), 0, 0, 0, 0]
    sem, _ = run(paths)
    assert sem["related_collision_rate"] == pytest.approx(0.5) and sem["conflict_collision_rate"] == pytest.approx(0.5)
    # with the leaf only, siblings cannot be told apart: the sibling pair is a conflict too
    sem2, _ = run(None)
    assert sem2["conflict_collision_rate"] == pytest.approx(1.0)
    # the semantic block passes the path column through
    full = semantic_metrics_exact(codes, X, leaf=leaf, attributes={"categories": paths, "category_leaf": leaf}, k=2)
    assert "related_leaf_close" in full["benign_rule_pairs"] and "conflict_cos_threshold" in full


def test_purity_per_category_level_skips_shared_root():
    codes = np.array([[0], [0], [1], [1]] * 2)
    paths = [[ROOT, ELEC, "A"], [ROOT, ELEC, "B"], [ROOT, FAST, "C"], [ROOT, FAST, "C"]] * 2
    pur = attribute_purity(codes, {"categories": paths})
    assert "categories[0]" not in pur and "categories" not in pur  # the root every item shares
    assert pur["categories[1]"]["prefix_purity"] == [0.5, 1.0]
    assert pur["categories[2]"]["prefix_purity"] == [0.5, 0.75]


@pytest.mark.parametrize("sizes", [[3, 3, 3], [1 << 21, 1 << 21, 1 << 21]])  # dense table / sparse packed keys
def test_fanout_per_level(sizes):
    codes = np.array([[0, 0, 0], [0, 1, 0], [0, 1, 1], [2, 0, 0], [2, 0, 0]])
    fan = fanout_per_level(build_buckets(codes, sizes))
    assert [sorted(f.tolist()) for f in fan] == [[2], [1, 2], [1, 1, 2]]
    pre = sid_report(codes, sizes)["prefix"]
    assert [(p["fanout_min"], p["fanout_median"], p["fanout_max"]) for p in pre] == [(2, 2, 2), (1, 1.5, 2), (1, 1, 2)]


def test_popularity_probe_head_unique_tail_compressed():
    # 20 items: the 2 head items (10 interactions each) have unique SIDs, the 18 tail items share 2 SIDs
    n = 20
    ids = np.array([f"i{i}" for i in range(n)], dtype=object)
    codes = np.zeros((n, 2), np.int64)
    codes[0], codes[1] = [1, 1], [2, 2]
    codes[2:11] = [0, 0]
    codes[11:] = [0, 1]
    inter = ["i0"] * 10 + ["i1"] * 10 + [f"i{i}" for i in range(2, n)] + ["zzz"]
    pop = popularity_metrics(codes, ids, np.array(inter, dtype=object), [3, 3])
    d = pop["deciles"]
    assert len(d) == 10 and pop["n_unmatched_interactions"] == 1 and pop["n_items_with_interactions"] == n
    assert d[0]["interactions"] == 20 and d[0]["collided_fraction"] == 0.0 and d[0]["mean_bucket_size"] == 1.0
    assert d[0]["distinct_prefix_ratio"] == [1.0, 1.0]
    assert all(x["collided_fraction"] == 1.0 for x in d[1:])
    assert d[9]["distinct_prefix_ratio"][0] == 0.5


def _files(tmp_path, n=12):
    from sidkit.dedup.suffix import assign_suffix
    from sidkit.io.codes import write_codes

    ids = np.array([f"p{i}" for i in range(n)], dtype=object)
    codes = np.array([[i % 2, 0] for i in range(n)], np.int32)
    write_codes(tmp_path / "codes.parquet", ids, codes, assign_suffix(codes, ids), {"method": "test", "codebook_sizes": [4, 4]})
    rng = np.random.default_rng(0)
    X = rng.normal(size=(n, 8)).astype(np.float32)
    titles = [f"widget {i}" for i in range(n)]
    titles[0] = EVIL
    pq.write_table(pa.table({"item_id": ids.tolist(), "title": titles, "brand": ["b"] * n,
                             "categories": [[ROOT, ELEC if i < 6 else FAST, f"leaf{i % 3}"] for i in range(n)],
                             "category_leaf": [f"leaf{i % 3}" for i in range(n)],
                             "embedding": pa.FixedSizeListArray.from_arrays(pa.array(X.ravel()), 8)}), tmp_path / "items.parquet")
    pq.write_table(pa.table({"user_id": ["u0"] * n, "item_id": ids.tolist()}), tmp_path / "inter.parquet")
    return tmp_path / "codes.parquet", tmp_path / "items.parquet", tmp_path / "inter.parquet"


def test_bucket_tables_show_titles_and_category(tmp_path):
    codes, items, inter = _files(tmp_path)
    rep = audit(codes, items=items, interactions=inter)
    b = rep["top_buckets"][0]
    assert list(b["display"]) == ["title", "category_leaf"] and len(b["display"]["title"]) == len(b["item_ids"])
    assert EVIL in b["display"]["title"]
    assert len(rep["source"]["fingerprint"]) == 16 and rep["config"]["seed"] == 0
    assert "popularity" in rep
    text = render_html_text(rep)
    assert "widget 2" in text and "leaf2" in text and "<script" not in text.lower()
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in text
    assert "docs/metrics.md" in text and "METHODS.md" not in text
    assert "Allocation by popularity" in text and "fan-out median" in text
    rep2 = audit(codes, items=items, display_cols="brand,categories")
    assert rep2["top_buckets"][0]["display"]["categories"][0].startswith(ROOT + " > ")
    from sidkit.errors import ConfigError

    with pytest.raises(ConfigError, match="display.cols.*no catalog column 'nope'.*columns: "):
        audit(codes, items=items, display_cols="nope")


def test_cli_bucket_table_shows_titles_escaped(tmp_path):
    import typer

    from sidkit.cli._tools import OneLineErrors
    from sidkit.cli.audit import audit_command

    app = typer.Typer(cls=OneLineErrors)
    app.command("audit")(audit_command)
    app.command("x")(lambda: None)
    codes, items, inter = _files(tmp_path)
    r = CliRunner().invoke(app, ["audit", str(codes), "--items", str(items), "--interactions", str(inter)],
                           env={"COLUMNS": "200"})
    assert r.exit_code == 0, r.output
    out = r.output
    assert "widget 2" in out and "leaf2" in out and "[bold]x[/bold]" in out  # markup shown as text
    assert "collision rate" in out and "share of items" in out  # label + meaning
    assert "allocation by popularity" in out and "fan-out" in out
    r = CliRunner().invoke(app, ["audit", str(codes), "--items", str(items), "--display-cols", "nope"])
    assert r.exit_code == 2 and "--display-cols" in r.output


def test_every_shown_number_has_a_label(tmp_path):
    codes, items, inter = _files(tmp_path)
    rep = audit(codes, items=items, interactions=inter, baseline=codes)
    for blk in ("collaborative", "compare"):  # the HTML report lists every scalar of these blocks
        for k, v in rep[blk].items():
            if not isinstance(v, list):
                assert f"{blk}.{k}" in LABELS, f"{blk}.{k}"
    for lv in rep["levels"]:
        for k in ("utilization", "dead_codes", "normalized_perplexity"):
            assert meaning(f"levels.{k}") and f"levels.{k}" in LABELS


@pytest.mark.skipif(__import__("shutil").which("chromium") is None, reason="chromium not installed")
def test_bucket_titles_render_in_headless_chromium(tmp_path):
    import subprocess

    from sidkit.report.html import render_html

    codes, items, inter = _files(tmp_path)
    p = tmp_path / "report.html"
    audit(codes, items=items, interactions=inter, html=p)
    proc = subprocess.run(["chromium", "--headless", "--no-sandbox", "--disable-gpu", "--enable-logging=stderr", "--v=0",
                           "--user-data-dir=" + str(tmp_path / "profile"), "--dump-dom", p.as_uri()],
                          capture_output=True, text=True, timeout=120, check=False)
    assert proc.returncode == 0, proc.stderr[-2000:]
    dom = proc.stdout
    assert [ln for ln in proc.stderr.splitlines() if ":CONSOLE" in ln] == []
    assert "widget 2" in dom and "leaf2" in dom and "&lt;script&gt;alert(1)&lt;/script&gt;" in dom
    assert "<script" not in dom.lower()
    assert render_html is not None
