"""sidkit info MODEL_DIR: one screen (or one JSON document) about a model directory."""

from __future__ import annotations

import json
from pathlib import Path

from typer.testing import CliRunner

import sidkit
from sidkit.cli import app

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
runner = CliRunner()


def test_info_of_a_model_and_of_a_kae_model_with_slots(tmp_path):
    res = sidkit.fit(EXAMPLES / "items.parquet", out=tmp_path / "m", method="rqkmeans", codebook_size=[16, 8, 8], seed=4)
    r = runner.invoke(app, ["info", str(tmp_path / "m"), "--json"])
    assert r.exit_code == 0, r.output
    info = json.loads(r.stdout)
    assert info["method"] == "rqkmeans" and info["codebook_sizes"] == [16, 8, 8] and info["n_items"] == 2000
    assert info["collision_rate"] == res.summary["collision_rate"] and info["seed"] == 4
    assert info["embedding"] == {"columns": ["embedding"], "dims": [64]} and "codes.parquet" in info["files"]
    assert "slots" not in info
    text = runner.invoke(app, ["info", str(tmp_path / "m")]).stdout
    assert "rqkmeans" in text and "2,000" in text and f"{res.summary['collision_rate']:.2%}" in text

    sidkit.fit(EXAMPLES / "items.parquet", out=tmp_path / "k", method="kae", attributes="color,brand")
    assert runner.invoke(app, ["bind-slot", "color", "mint haze", "--model", str(tmp_path / "k"), "-q"]).exit_code == 0
    kinfo = json.loads(runner.invoke(app, ["info", str(tmp_path / "k"), "--json"]).stdout)
    assert kinfo["slots"]["bindings"] == 1
    color = next(g for g in kinfo["slots"]["groups"] if g["name"] == "color")
    assert color["bound"] == 1 and color["free"] == color["reserved"] - 1
    assert "1 bound" in runner.invoke(app, ["info", str(tmp_path / "k")]).stdout


def test_info_errors_exit_2(tmp_path):
    r = runner.invoke(app, ["info", str(tmp_path / "nope")])
    assert r.exit_code == 2 and "model directory not found" in r.stderr
    (tmp_path / "empty").mkdir()
    r = runner.invoke(app, ["info", str(tmp_path / "empty")])
    assert r.exit_code == 2 and "sidkit.json is missing" in r.stderr
