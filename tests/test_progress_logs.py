"""Plain progress lines when stderr is not a terminal, and through the ``sidkit`` logger."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
from pathlib import Path

from sidkit._progress import LogLines, library_progress, log_every

REPO = Path(__file__).resolve().parents[1]
EXAMPLES = REPO / "examples"


class Clock:
    def __init__(self):
        self.t = 0.0

    def __call__(self):
        return self.t


def test_log_lines_after_the_period_and_the_end_of_a_long_stage():
    clock, out = Clock(), []
    log = LogLines(out.append, every=30, clock=clock)
    log("train", 0, 100, {"collision_rate": 0.5})
    clock.t = 10
    log("train", 10, 100, {})
    assert out == []  # a stage writes nothing in its first period
    clock.t = 31
    log("train", 31, 100, {"loss": 0.25})
    assert len(out) == 1 and "train: 31/100 (31%)" in out[0] and "1/s" in out[0] and "ETA 0:01:09" in out[0]
    assert "loss=0.25" in out[0]
    clock.t = 40
    log("train", 40, 100, {})
    assert len(out) == 1  # within the period: nothing
    log("train", 100, 100, {})
    log("train", 100, 100, {})  # the end of a stage that wrote is written once
    assert len(out) == 2 and "100/100 (100%)" in out[1] and "ETA" not in out[1]
    log("encode", 0, 5, {})
    clock.t = 45
    log("encode", 5, 5, {})  # a short stage stays silent, its end too
    assert len(out) == 2


def test_heartbeat_repeats_a_slow_stage():
    clock, out = Clock(), []
    log = LogLines(out.append, every=30, clock=clock)
    clock.t = 35
    log("tiger seed 0", 1, 8, {"valid_recall@10": 0.07})  # its first epoch took 35 s
    assert out == []
    log.heartbeat()  # nothing written for 35 s: the state now
    assert len(out) == 1 and "tiger seed 0: 1/8" in out[0]
    clock.t = 50
    log.heartbeat()
    assert len(out) == 1
    clock.t = 66
    log.heartbeat()  # 31 s since the last line: again
    assert len(out) == 2
    log("tiger seed 0", 8, 8, {})
    assert len(out) == 3 and "8/8 (100%)" in out[2]
    clock.t = 200
    log.heartbeat()  # an ended stage stays quiet
    assert len(out) == 3


def test_log_every_sources(monkeypatch):
    monkeypatch.delenv("SIDKIT_LOG_EVERY", raising=False)
    assert log_every() == 30 and log_every(5) == 5
    monkeypatch.setenv("SIDKIT_LOG_EVERY", "2.5")
    assert log_every() == 2.5


def test_library_logs_through_the_sidkit_logger(tmp_path, caplog, monkeypatch):
    import sidkit

    monkeypatch.setenv("SIDKIT_LOG_EVERY", "0.001")  # the default 30 s would keep this short fit silent

    assert library_progress(None) is None or logging.getLogger("sidkit").isEnabledFor(logging.INFO)
    with caplog.at_level(logging.INFO, logger="sidkit"):
        assert isinstance(library_progress(None), LogLines)
        sidkit.fit(EXAMPLES / "items.parquet", out=tmp_path / "m", method="rqvae", max_steps=20, eval_every=10,
                   codebook_size=[16, 8, 8])
    lines = [r.getMessage() for r in caplog.records if r.name == "sidkit"]
    assert any(m.startswith("sidkit: train: ") for m in lines), lines
    assert all(m.startswith("sidkit: ") for m in lines)


def test_cli_writes_log_lines_when_piped(tmp_path):
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")])))
    cmd = [sys.executable, "-m", "sidkit", "fit", str(EXAMPLES / "items.parquet"), "--method", "rqvae", "--max-steps", "40",
           "-K", "16,8,8", "-o", str(tmp_path / "m"), "--json", "--log-every", "0.01"]
    r = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=300)
    assert r.returncode == 0, r.stderr
    json.loads(r.stdout)  # stdout stays one JSON document
    lines = [ln for ln in r.stderr.splitlines() if ln.startswith("sidkit: ")]
    assert any(ln.startswith("sidkit: train: ") for ln in lines), r.stderr
    assert any("/40 (100%)" in ln for ln in lines)
    quiet = subprocess.run(cmd[:-3] + ["--quiet", "--out", str(tmp_path / "q")], capture_output=True, text=True, env=env, timeout=300)
    assert quiet.returncode == 0 and "sidkit: train" not in quiet.stderr
