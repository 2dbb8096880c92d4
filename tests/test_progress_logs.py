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


def test_log_lines_first_periodic_and_end():
    clock, out = Clock(), []
    log = LogLines(out.append, every=30, clock=clock)
    log("train", 0, 100, {"collision_rate": 0.5})
    clock.t = 10
    log("train", 10, 100, {})
    assert len(out) == 1  # within the period: nothing
    clock.t = 31
    log("train", 31, 100, {"loss": 0.25})
    assert len(out) == 2 and "train: 31/100 (31%)" in out[1] and "1/s" in out[1] and "ETA 0:01:09" in out[1]
    assert "loss=0.25" in out[1]
    clock.t = 40
    log("train", 100, 100, {})
    log("train", 100, 100, {})  # the end is written once
    assert len(out) == 3 and "100/100 (100%)" in out[2] and "ETA" not in out[2]
    log("encode", 0, 5, {})  # a new stage starts with a line
    assert len(out) == 4 and out[3].startswith("sidkit: encode: 0/5")


def test_heartbeat_repeats_a_slow_stage():
    clock, out = Clock(), []
    log = LogLines(out.append, every=30, clock=clock)
    log("tiger seed 0", 1, 8, {"valid_recall@10": 0.07})
    clock.t = 20
    log.heartbeat()
    assert len(out) == 1
    clock.t = 31
    log.heartbeat()  # no update for 31 s: the last state again
    assert len(out) == 2 and "tiger seed 0: 1/8" in out[1]
    clock.t = 32
    log.heartbeat()
    assert len(out) == 2
    log("tiger seed 0", 8, 8, {})
    clock.t = 100
    log.heartbeat()  # an ended stage stays quiet
    assert len(out) == 3


def test_log_every_sources(monkeypatch):
    monkeypatch.delenv("SIDKIT_LOG_EVERY", raising=False)
    assert log_every() == 30 and log_every(5) == 5
    monkeypatch.setenv("SIDKIT_LOG_EVERY", "2.5")
    assert log_every() == 2.5


def test_library_logs_through_the_sidkit_logger(tmp_path, caplog):
    import sidkit

    assert library_progress(None) is None or logging.getLogger("sidkit").isEnabledFor(logging.INFO)
    with caplog.at_level(logging.INFO, logger="sidkit"):
        assert isinstance(library_progress(None), LogLines)
        sidkit.fit(EXAMPLES / "items.parquet", out=tmp_path / "m", method="rqvae", max_steps=20, eval_every=10,
                   codebook_size=[16, 8, 8])
    lines = [r.getMessage() for r in caplog.records if r.name == "sidkit"]
    assert any(m.startswith("sidkit: train: ") for m in lines), lines
    assert any(m.startswith("sidkit: encode: ") or "encode" in m for m in lines) or len(lines) >= 2


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
