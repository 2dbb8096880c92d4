"""Audit core speed: sidkit's core report vs the bare numpy floor, same run, same codes.

    python benchmarks/audit_speed.py [--n 10000000] [--levels 3] [--k 256] [--repeats 3]

The floor is: pack the tokens into one int64 key, ``np.unique(return_counts=True)``, and one
``np.bincount`` per level. sidkit computes all core blocks (collision, levels, prefix, diversity,
exact Hamming h=0 / h<=1 counts, 1M sampled pairs for P(h=k>=2), top buckets).
Peak memory is measured with tracemalloc (numpy allocations are traced) per call.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
import tracemalloc
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from sidkit.metrics import core_report  # noqa: E402


def floor(codes, k):
    key = np.zeros(codes.shape[0], dtype=np.int64)
    for l in range(codes.shape[1]):
        key *= k
        key += codes[:, l]
    u, c = np.unique(key, return_counts=True)
    per_level = [np.bincount(codes[:, l], minlength=k) for l in range(codes.shape[1])]
    return (codes.shape[0] - u.size) / codes.shape[0], per_level


def sidkit_core(codes, k):
    return core_report(codes, [k] * codes.shape[1], seed=0)


def measure(fn, *args, repeats=3):
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn(*args)
        times.append(time.perf_counter() - t)
    tracemalloc.start()
    fn(*args)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    return statistics.median(times), peak


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=10_000_000)
    ap.add_argument("--levels", type=int, default=3)
    ap.add_argument("--k", type=int, default=256)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--skewed", action="store_true", help="Zipf-like codes (many collisions) instead of uniform")
    a = ap.parse_args()
    rng = np.random.default_rng(0)
    if a.skewed:
        p = 1.0 / np.arange(1, a.k + 1)
        p /= p.sum()
        codes = rng.choice(a.k, size=(a.n, a.levels), p=p).astype(np.int32)
    else:
        codes = rng.integers(0, a.k, size=(a.n, a.levels), dtype=np.int32)
    print(f"codes: {a.n:,} x {a.levels}, codebook {a.k}, int32, {codes.nbytes / 2**20:.0f} MiB")
    rows = []
    for name, fn in (("numpy floor", floor), ("sidkit core_report", sidkit_core)):
        t, peak = measure(fn, codes, a.k, repeats=a.repeats)
        rows.append((name, t, peak))
    base = rows[0][1]
    print(f"{'what':<22}{'median s':>10}{'ratio':>8}{'peak MiB':>10}{'peak / codes':>14}")
    for name, t, peak in rows:
        print(f"{name:<22}{t:>10.3f}{t / base:>8.2f}{peak / 2**20:>10.0f}{peak / codes.nbytes:>14.2f}")
    r = sidkit_core(codes, a.k)
    print(f"collision_rate {r['collision']['collision_rate']:.4f}  pairs_h0 {r['hamming']['pairs_h0']:,}  "
          f"pairs_h_le1 {r['hamming']['pairs_h_le1']:,}")


if __name__ == "__main__":
    main()
