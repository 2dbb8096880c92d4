"""Crash safety of the model-directory swap: a child process that SIGKILLs itself before its k-th
filesystem step (every ``os.rename`` / ``os.replace`` / exchange / ``rmtree`` of a fit), for every
k. Afterwards ``--out`` always holds a complete old or new model, the next run cleans up what
the killed one left, and two fits racing for one ``--out`` both finish."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

import sidkit
from sidkit.io.artifacts import stale_temps

from conftest import write_items

CHILD = textwrap.dedent(
    """
    import os, shutil, signal, sys
    import sidkit.io.artifacts as A

    kill_at, exchange = int(sys.argv[1]), sys.argv[2] == "exchange"
    step = [0]

    def counted(fn):
        def wrapper(*a, **k):
            if step[0] == kill_at:
                os.kill(os.getpid(), signal.SIGKILL)
            step[0] += 1
            return fn(*a, **k)
        return wrapper

    os.rename, os.replace, shutil.rmtree = counted(os.rename), counted(os.replace), counted(shutil.rmtree)
    if exchange:
        A._exchange = counted(A._exchange)
    else:
        def no_exchange(a, b):
            raise A._NoExchange("test: fallback")
        A._exchange = no_exchange
    import sidkit
    sidkit.fit(sys.argv[3], out=sys.argv[4], method="rqkmeans", levels=int(sys.argv[5]), codebook_size=8, seed=0)
    print("steps", step[0])
    """
)


def _child(tmp: Path, kill_at: int, mode: str, items: Path, out: Path, levels: int) -> subprocess.CompletedProcess:
    script = tmp / "child.py"
    script.write_text(CHILD)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(Path(sidkit.__file__).parents[1]), os.environ.get("PYTHONPATH", "")])}
    return subprocess.run([sys.executable, str(script), str(kill_at), mode, str(items), str(out), str(levels)],
                          capture_output=True, text=True, env=env, timeout=300)


def _state(m: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in m.iterdir()} if m.is_dir() else {}


def _model_of(m: Path, old: dict, new: dict) -> str:
    """'old' or 'new' when ``m`` is exactly one complete model (timing fields aside)."""
    got = _state(m)
    for name, ref in (("old", old), ("new", new)):
        if set(got) == set(ref) and all(got[f] == ref[f] for f in ("model.safetensors", "codes.parquet", "codebooks.parquet")):
            sidkit.load_model(m)  # every file agrees with the others
            return name
    raise AssertionError(f"{m} holds neither the old nor the new model: {sorted(got)}")


@pytest.fixture(scope="module")
def ref(tmp_path_factory):
    d = tmp_path_factory.mktemp("crash")
    X = np.random.default_rng(0).normal(size=(64, 8)).astype(np.float32)
    items = write_items(d / "items.parquet", [f"i{k:03d}" for k in range(64)], X)
    sidkit.fit(items, out=d / "old", method="rqkmeans", levels=2, codebook_size=8, seed=0)
    sidkit.fit(items, out=d / "new", method="rqkmeans", levels=3, codebook_size=8, seed=0)
    return d, items, _state(d / "old"), _state(d / "new")


@pytest.mark.parametrize("mode", ["exchange", "fallback"])
def test_kill_at_every_filesystem_step_of_a_refit(ref, tmp_path, mode):
    d, items, old, new = ref
    import shutil

    m = tmp_path / "m"
    shutil.copytree(d / "old", m)
    full = _child(tmp_path, -1, mode, items, m, 3)
    assert full.returncode == 0, full.stderr
    n_steps = int(full.stdout.split()[-1])
    assert n_steps >= 3
    seen = set()
    for k in range(n_steps):
        shutil.rmtree(m)
        shutil.copytree(d / "old", m)
        r = _child(tmp_path, k, mode, items, m, 3)
        assert r.returncode == -9, (k, r.returncode, r.stderr)
        if not m.exists():  # the fallback's window between its two renames: the old model waits aside
            assert mode == "fallback", k
            assert [p.name.endswith(".old") for p in stale_temps(m)].count(True) == 1
            sidkit.load_model(m)  # any reader puts it back
            seen.add("restored")
        seen.add(_model_of(m, old, new))
        again = _child(tmp_path, -1, mode, items, m, 3)  # the next run cleans up and completes
        assert again.returncode == 0, again.stderr
        assert _model_of(m, old, new) == "new"
        assert stale_temps(m) == [], (k, stale_temps(m))
        assert not list(tmp_path.glob(".m.lock"))
    assert {"old", "new"} <= seen
    if mode == "fallback":
        assert "restored" in seen


def test_a_live_writers_temp_is_never_cleaned(ref, tmp_path):
    """Temps are held under flock: cleaning skips a live writer's and removes a dead one's."""
    from sidkit.io.artifacts import _hold, _new_temp_dir, clean_stale

    out = tmp_path / "m"
    live, fd = _new_temp_dir(out)
    dead = tmp_path / f".m.{'d' * 8}.tmp"
    dead.mkdir()
    (dead / "x").write_text("partial")
    clean_stale(out)
    assert live.exists() and not dead.exists()
    os.close(fd)
    clean_stale(out)
    assert not live.exists()
    assert _hold(tmp_path / "absent") is None


def test_racing_fits_both_finish(ref, tmp_path):
    d, items, old, new = ref
    import shutil

    m = tmp_path / "m"
    shutil.copytree(d / "old", m)
    code = ("import sidkit, sys; sidkit.fit(sys.argv[1], out=sys.argv[2], method='rqkmeans', levels=3, codebook_size=8, seed=0)")
    procs = [subprocess.Popen([sys.executable, "-c", code, str(items), str(m)], stderr=subprocess.PIPE, text=True) for _ in range(4)]
    errs = [p.communicate(timeout=300)[1] for p in procs]
    assert [p.returncode for p in procs] == [0] * 4, errs
    assert _model_of(m, old, new) == "new"
    assert stale_temps(m) == [] and not list(tmp_path.glob(".m.*"))
    assert json.loads((m / "sidkit.json").read_text())["n_levels"] == 3
