"""Fit cost of QuaSID / AdaSID against plain RQ-VAE (sidkit issue #13: quasid and adasid <= 1.5x
rqvae's fit time at 1M and 10M rows, same steps).

Runs ``sidkit fit`` for rqvae, quasid and adasid back to back on each catalog (one subprocess per
fit, same --max-steps), and prints wall time, the training seconds the fit reports, the collision
rate and the ratios to rqvae of the same run. ``--checkout DIR`` runs another sidkit checkout
(for a before/after table run both in one script).

    OMP_NUM_THREADS=1 nice -n 5 python benchmarks/regularizer_cost.py CAT.parquet [...] --max-steps 300
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def fit(path: str, method: str, steps: int, checkout: str, out: str, timeout: float) -> dict:
    env = dict(os.environ, PYTHONPATH=checkout)
    t0 = time.perf_counter()
    try:
        p = subprocess.run([sys.executable, "-m", "sidkit", "fit", path, "--method", method, "--max-steps", str(steps),
                            "-o", out, "--json", "-q"], env=env, capture_output=True, text=True, timeout=timeout,
                           cwd=os.path.dirname(out))  # not the checkout: `python -m` puts the cwd first on sys.path
    except subprocess.TimeoutExpired:
        return {"wall": float("inf"), "timeout": True}
    wall = time.perf_counter() - t0
    if p.returncode != 0:
        raise SystemExit(f"{method} on {path} failed:\n{p.stderr[-2000:]}")
    s = json.loads(p.stdout)
    return {"wall": wall, "fit": s["fit_seconds"], "cr": s["collision_rate"]}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("catalogs", nargs="+")
    ap.add_argument("--max-steps", type=int, default=300)
    ap.add_argument("--checkout", default=str(Path(__file__).resolve().parents[1]))
    ap.add_argument("--methods", default="rqvae,quasid,adasid")
    ap.add_argument("--timeout", type=float, default=3600)
    ap.add_argument("--json", default=None)
    a = ap.parse_args()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for cat in a.catalogs:
            res = {}
            for m in a.methods.split(","):
                res[m] = fit(cat, m, a.max_steps, a.checkout, os.path.join(tmp, m), a.timeout)
                print(f"{Path(cat).name} {m}: {res[m]}", file=sys.stderr, flush=True)
            rows.append((cat, res))
    print(f"checkout {a.checkout}, --max-steps {a.max_steps}")
    print("| catalog | method | wall s | fit s | collision rate | wall / rqvae | fit / rqvae |")
    print("|---|---|---|---|---|---|---|")
    for cat, res in rows:
        base = res.get("rqvae")
        for m, r in res.items():
            if r.get("timeout"):
                print(f"| {Path(cat).name} | {m} | > {a.timeout:.0f} (timeout) | | | | |")
                continue
            rw = f"{r['wall'] / base['wall']:.2f}x" if base and not base.get("timeout") else ""
            rf = f"{r['fit'] / base['fit']:.2f}x" if base and not base.get("timeout") else ""
            print(f"| {Path(cat).name} | {m} | {r['wall']:.1f} | {r['fit']:.1f} | {r['cr']:.4f} | {rw} | {rf} |")
    if a.json:
        Path(a.json).write_text(json.dumps([[c, r] for c, r in rows], indent=1))


if __name__ == "__main__":
    main()
