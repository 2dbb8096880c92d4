"""Audit at scale: wall time and peak RSS of ``audit`` (core blocks) on generated SID tables and of
``audit --items`` on a generated catalog, each run in a fresh child process.

    python benchmarks/audit_scale.py [--rows 10000000] [--rows 100000000] [--items-rows 1000000]
                                     [--workdir /tmp/auditscale] [--modes stream,memory]

SID tables: ``item_id`` int64 (a seeded permutation, so ids are not sorted), ``sid``
list<int32> of 3 levels drawn from K = 256 with a skew (many collisions), ``suffix`` int32,
codebook sizes in the ``sidkit`` metadata; written in shards of 5M rows. ``--modes memory`` runs
the in-memory reference (``read_sid_table`` + ``core_report``) next to the streaming path, in the
same run, so the table shows the ratio. ``audit --items``: a
:func:`sidkit.datasets.write_large_catalog` catalog (d = 128) with random codes.
Peak RSS comes from ``resource.getrusage(RUSAGE_CHILDREN)`` of each child (its ``ru_maxrss``).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

SHARD_ROWS = 5_000_000


def write_sid_table(path: Path, n: int, *, levels: int = 3, k: int = 256, seed: int = 0,
                    shard_rows: int = SHARD_ROWS, id_seed: int | None = 1) -> Path:
    """A directory of SID shards (``part-00000.parquet`` ...), written batch by batch."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    path = Path(path)
    if (path / "_done").exists():
        return path
    path.mkdir(parents=True, exist_ok=True)
    meta = {b"sidkit": json.dumps({"codebook_sizes": [k] * levels}).encode()}
    rng = np.random.default_rng(seed)
    # unsorted ids without an n-sized permutation: an affine bijection of 0..n-1 (mod a prime)
    prime = 2_147_483_647 if n < 2_147_483_647 else (1 << 61) - 1
    mult = 48271 if id_seed else 1
    block = 1 << 20
    w = None
    shard = -1
    for start in range(0, n, block):
        m = min(block, n - start)
        if start // shard_rows != shard:
            if w is not None:
                w.close()
            shard = start // shard_rows
            w = None
        # skewed codes: level 0 from a Zipf-ish distribution, the rest uniform
        c0 = np.minimum((rng.pareto(1.2, m) * 8).astype(np.int64), k - 1)
        rest = rng.integers(0, k, size=(m, levels - 1))
        codes = np.column_stack([c0, rest]).astype(np.int32)
        ids = (np.arange(start, start + m, dtype=np.int64) * mult) % prime if id_seed else np.arange(start, start + m, dtype=np.int64)
        sid = pa.ListArray.from_arrays(pa.array(np.arange(0, m * levels + 1, levels, dtype=np.int32)), pa.array(codes.ravel()))
        t = pa.table({"item_id": ids, "sid": sid, "suffix": pa.array(np.zeros(m, np.int32))}).replace_schema_metadata(meta)
        if w is None:
            w = pq.ParquetWriter(path / f"part-{shard:05d}.parquet", t.schema)
        w.write_table(t, row_group_size=block)
    if w is not None:
        w.close()
    (path / "_done").write_text("")
    return path


def child(kind: str, args: list[str]) -> dict:
    """Run one measurement in a fresh interpreter; returns its JSON line plus peak RSS."""
    code = f"import sys; sys.path.insert(0, {str(REPO)!r}); import benchmarks.audit_scale as b; b._child_main()"
    env = dict(os.environ, PYTHONPATH=str(REPO))
    t = time.perf_counter()
    p = subprocess.run([sys.executable, "-c", code, kind, *args], capture_output=True, text=True, env=env)
    wall = time.perf_counter() - t
    if p.returncode != 0:
        raise SystemExit(f"{kind} {args} failed:\n{p.stderr[-3000:]}")
    out = json.loads(p.stdout.strip().splitlines()[-1])
    out["wall_s"] = wall
    return out


def _child_main() -> None:
    kind, *args = sys.argv[1:]
    t = time.perf_counter()
    if kind == "memory":
        from sidkit.io.sidtable import read_sid_table
        from sidkit.metrics import core_report

        ids, codes, sfx, sizes, _ = read_sid_table(args[0])
        rep = core_report(codes, sizes, item_ids=ids)
        n = rep["n_items"]
    elif kind == "stream":
        from sidkit.report.audit import audit

        rep = audit(args[0])
        n = rep["n_items"]
    elif kind == "items":
        from sidkit.report.audit import audit

        rep = audit(args[0], items=args[1])
        n = rep["n_items"]
        sem = rep["semantic"]
        extra = {k: sem.get(k) for k in ("sample_size", "index", "knn_recall", "knn_mean_common_prefix",
                                          "knn_mean_common_prefix_ci95", "locality_gap")}
        extra["phases"] = sem.get("seconds")
    else:
        raise SystemExit(kind)
    res = {"n": n, "seconds": time.perf_counter() - t, "collision_rate": rep["collision"]["collision_rate"],
           "peak_rss_gib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20}
    if kind == "items":
        res.update(extra)
    print(json.dumps(res))


def write_items_codes(workdir: Path, n: int, dim: int = 128) -> tuple[Path, Path]:
    from sidkit.datasets import write_large_catalog
    from sidkit.dedup.suffix import assign_suffix
    from sidkit.io.codes import write_codes

    cat = workdir / f"catalog_{n}_{dim}.parquet"
    if not cat.exists():
        write_large_catalog(cat, n, dim, seed=0)
    codes_path = workdir / f"codes_{n}.parquet"
    if not codes_path.exists():
        rng = np.random.default_rng(0)
        codes = rng.integers(0, 256, size=(n, 3)).astype(np.int32)
        ids = np.arange(n, dtype=np.int64)
        write_codes(codes_path, ids, codes, assign_suffix(codes, ids), {"codebook_sizes": [256] * 3})
    return cat, codes_path


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rows", type=int, action="append", help="SID table sizes for audit core (repeatable)")
    ap.add_argument("--items-rows", type=int, action="append", help="catalog sizes for audit --items (repeatable)")
    ap.add_argument("--modes", default="stream,memory")
    ap.add_argument("--workdir", type=Path, default=Path("/tmp/auditscale"))
    a = ap.parse_args()
    a.workdir.mkdir(parents=True, exist_ok=True)
    rows = a.rows if a.rows is not None else [10_000_000]
    items_rows = a.items_rows if a.items_rows is not None else [1_000_000]
    lines = []
    for n in [r for r in rows if r > 0]:
        t = time.perf_counter()
        path = write_sid_table(a.workdir / f"sids_{n}", n)
        print(f"table {n:,} rows ready ({time.perf_counter() - t:.0f} s)", file=sys.stderr, flush=True)
        base = None
        for mode in a.modes.split(","):
            r = child(mode, [str(path)])
            if base is None:
                base = r
            lines.append((f"audit core ({mode})", n, r, r["peak_rss_gib"] / base["peak_rss_gib"]))
            print(lines[-1], file=sys.stderr, flush=True)
    for n in [r for r in items_rows if r > 0]:
        cat, codes = write_items_codes(a.workdir, n)
        r = child("items", [str(codes), str(cat)])
        lines.append(("audit --items", n, r, 1.0))
        print(lines[-1], file=sys.stderr, flush=True)
    print("\n| what | rows | wall s | in-process s | peak RSS GiB | RSS ratio | GiB per 10M rows | notes |")
    print("|---|---|---|---|---|---|---|---|")
    for what, n, r, ratio in lines:
        notes = ""
        if what == "audit --items":
            notes = (f"sample {r.get('sample_size')}, index {r.get('index')}, recall@10 {r.get('knn_recall')}, "
                     f"knn prefix {r.get('knn_mean_common_prefix'):.4f} ci95 {r.get('knn_mean_common_prefix_ci95')}")
        print(f"| {what} | {n:,} | {r['wall_s']:.1f} | {r['seconds']:.1f} | {r['peak_rss_gib']:.2f} | {ratio:.2f} | "
              f"{r['peak_rss_gib'] / n * 1e7:.2f} | {notes} |")


if __name__ == "__main__":
    main()
