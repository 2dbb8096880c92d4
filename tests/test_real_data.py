"""End-to-end checks on the real Amazon catalogs in ../shared/data.

Marked ``slow``. By default they run on a slice (the first 1,200 items) so CI stays fast;
``SIDKIT_FULL=1 pytest -m slow`` runs them on the whole catalogs with the default 3 x 256.
"""

import json
import os

import numpy as np
import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

import sidkit
from sidkit.cli import app
from sidkit.io.codes import read_codes

from conftest import shared_items

pytestmark = pytest.mark.slow
FULL = os.environ.get("SIDKIT_FULL") == "1"


def _slice(tmp_path, name, n=1200):
    src = shared_items(name)
    if FULL:
        return src
    t = pq.read_table(src).slice(0, n)
    pq.write_table(t, tmp_path / "slice.parquet")
    return tmp_path / "slice.parquet"


@pytest.mark.parametrize("name", ["amazon18_scientific", "amazon14_office"])
def test_rqkmeans_real_catalog(tmp_path, name):
    items = _slice(tmp_path, name)
    r = sidkit.fit(items, out=tmp_path / "m", method="rqkmeans")
    n = r.summary["n_items"]
    assert r.summary["utilization"][0] > 0.9
    # far below random-code collisions, and below the published RQ-KMeans reference (27.8% on Scientific)
    # (measured: 23% on the full Scientific catalog, 30% / 22% on the 1,200-item slices)
    assert r.summary["collision_rate"] < (0.27 if FULL else 0.35)
    # balanced k-means (the default) trades some locality for fewer collisions: measured 0.29 on
    # the Scientific slice (0.71 on the full catalog, 0.86 unbalanced)
    assert r.report["semantic"]["locality_gap"] > 0.2
    sidkit.encode(tmp_path / "m", items, tmp_path / "c.parquet", batch_size=500)
    _, codes, suffix, _ = read_codes(tmp_path / "c.parquet")
    assert (codes == r.codes).all() and (suffix == r.suffix).all()
    assert len(np.unique(np.column_stack([codes, suffix]), axis=0)) == n


def test_rqvae_real_catalog_cli(tmp_path):
    items = _slice(tmp_path, "amazon18_scientific")
    args = ["fit", str(items), "--out", str(tmp_path / "m"), "--method", "rqvae", "--json"]
    if not FULL:
        args += ["-K", "64", "--max-steps", "150"]
    res = CliRunner().invoke(app, args)
    assert res.exit_code == 0, res.output
    s = json.loads(res.stdout)
    # the published RQ-VAE index for Scientific has a 22.9% 3-token collision rate
    assert s["collision_rate"] < (0.10 if FULL else 0.15)
    assert min(s["utilization"]) > 0.5
    meta = json.loads((tmp_path / "m" / "sidkit.json").read_text())
    assert meta["training"]["best_step"] <= meta["training"]["steps"]
    res = CliRunner().invoke(app, ["encode", str(tmp_path / "m"), str(items), "-o", str(tmp_path / "c.parquet"), "--json"])
    assert res.exit_code == 0 and json.loads(res.stdout)["n_new_or_changed"] == 0
