"""HTML report: self-contained, escaped, renders in headless Chromium without console errors."""

from __future__ import annotations

import shutil
import subprocess

import numpy as np
import pytest

from sidkit.metrics import sid_report
from sidkit.report.html import render_html, render_html_text

EVIL = "<script>alert(1)</script>"


def evil_report():
    rng = np.random.default_rng(0)
    n = 40
    X = rng.normal(size=(n, 8)).astype(np.float32)
    codes = rng.integers(0, 3, size=(n, 2))
    codes[1] = codes[0]
    X[1] = -X[0]  # opposite items sharing a SID: a conflict
    titles = [f"t{i}" for i in range(n)]
    titles[0] = EVIL
    titles[1] = '"><img src=x onerror=alert(2)>'
    ids = np.array([EVIL if i == 0 else f"id&{i}" for i in range(n)], dtype=object)
    leaf = ["<b>leaf</b>" if i % 2 else "[bold]x[/bold]" for i in range(n)]
    rep = sid_report(codes, [3, 3], item_ids=ids, embeddings=X, titles=titles, leaf=leaf, attributes={"category_leaf": leaf})
    rep["warnings"] = [f"warning with {EVIL}"]
    rep["source"] = {"path": f"/tmp/{EVIL}.json"}
    return rep


def test_html_escapes_everything_and_has_no_script(tmp_path):
    rep = evil_report()
    assert rep["semantic"]["worst_conflicts"], "the planted conflict must be listed"
    text = render_html_text(rep)
    assert "<script" not in text.lower() and "onerror=alert" not in text.replace("onerror=alert(2)&gt;", "")
    assert "<img" not in text
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in text
    assert "http://" not in text.replace("http://www.w3.org/2000/svg", "") and "https://" not in text
    for title in ("Per-level code usage", "Buckets by size", "Hamming distance", "Prefix branching", "Worst conflict"):
        assert title in text
    p = tmp_path / "r.html"
    render_html(rep, p)
    assert p.read_text() == text


@pytest.mark.skipif(shutil.which("chromium") is None, reason="chromium not installed")
def test_renders_in_headless_chromium(tmp_path):
    p = tmp_path / "report.html"
    render_html(evil_report(), p)
    proc = subprocess.run(
        ["chromium", "--headless", "--no-sandbox", "--disable-gpu", "--enable-logging=stderr", "--v=0",
         "--user-data-dir=" + str(tmp_path / "profile"), "--dump-dom", p.as_uri()],
        capture_output=True, text=True, timeout=120,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    dom = proc.stdout
    console = [ln for ln in proc.stderr.splitlines() if ":CONSOLE" in ln]
    assert console == [], console
    assert "sidkit audit report" in dom and "<svg" in dom
    # the evil title is text, not an element
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in dom
    assert "<script" not in dom.lower() and "<img" not in dom.lower()
