"""``sidkit encode`` local vs ``--engine ray`` (1 and 2 workers) on the same sharded catalog.

    python benchmarks/ray_encode.py [--n 1000000] [--dim 32] [--shards 8] [--workers 1,2]
                                    [--repeats 1] [--dir /tmp/sidkit-bench-ray] [--keep]

The catalog is ``sidkit.datasets.write_large_catalog`` (seed 0) split into ``--shards`` shards
(row groups of different sizes); the model is an ``rqkmeans`` 3 x 256 fitted on the first 100k
rows. Every encode writes a directory output (one codes shard per input shard) and the outputs are
checked identical to the local engine's. One local Ray cluster (all the machine's CPUs) is started
before the timings; its start-up is printed apart. Each Ray encode's wall time includes the actor
pool's start (every actor imports sidkit and loads the model), the map stage and the same finish
stage (global suffix pass + write) as the local engine; ``map s`` is the summary's map-stage time
(until every staged shard is written). On a shared machine compare the ratios, not the seconds.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq


def make_data(d: Path, n: int, dim: int, shards: int) -> tuple[Path, Path]:
    from sidkit.datasets import write_large_catalog

    one = d / f"catalog_{n}_{dim}.parquet"
    if not one.exists():
        write_large_catalog(one, n, dim, seed=0)
    sh = d / f"shards_{n}_{dim}_{shards}"
    if not sh.exists():
        tmp = d / (sh.name + ".tmp")
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir()
        bounds = np.linspace(0, n, shards + 1).astype(int)
        pf = pq.ParquetFile(one)
        i, w, row = 0, None, 0
        for b in pf.iter_batches(batch_size=16384):
            while b.num_rows:
                if w is None:
                    w = pq.ParquetWriter(tmp / f"s{i:04d}.parquet", b.schema)
                take = min(b.num_rows, int(bounds[i + 1]) - row)
                w.write_batch(b.slice(0, take), row_group_size=8192 + 4096 * (i % 4))
                b, row = b.slice(take), row + take
                if row == bounds[i + 1]:
                    w.close()
                    w, i = None, i + 1
        if w is not None:
            w.close()
        os.rename(tmp, sh)
    return one, sh


def fit_model(d: Path, one: Path, dim: int) -> Path:
    import sidkit

    m = d / f"model_{dim}"
    if not m.exists():
        fit_rows = d / f"fit_{dim}.parquet"
        first = next(pq.ParquetFile(one).iter_batches(batch_size=100_000))
        pq.write_table(pa.Table.from_batches([first]), fit_rows)
        sidkit.fit(fit_rows, out=m, method="rqkmeans", levels=3, codebook_size=256, seed=0)
    return m


def read_dir(p: Path):
    from sidkit.io.source import open_source

    return open_source(p, "codes").read().replace_schema_metadata(None)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=1_000_000)
    ap.add_argument("--dim", type=int, default=32)
    ap.add_argument("--shards", type=int, default=8)
    ap.add_argument("--workers", default="1,2")
    ap.add_argument("--repeats", type=int, default=1)
    ap.add_argument("--dir", type=Path, default=Path("/tmp/sidkit-bench-ray"))
    ap.add_argument("--keep", action="store_true")
    a = ap.parse_args(argv)
    try:
        import ray
    except ImportError:
        print("ray is not installed: pip install 'sidkit[ray]'")
        return 0
    import sidkit
    a.dir.mkdir(parents=True, exist_ok=True)
    t = time.perf_counter()
    one, shards = make_data(a.dir, a.n, a.dim, a.shards)
    model = fit_model(a.dir, one, a.dim)
    print(f"data + model: {time.perf_counter() - t:.1f} s ({a.n:,} rows x {a.dim}, {a.shards} shards)")
    t = time.perf_counter()
    ray.init(num_cpus=os.cpu_count(), include_dashboard=False, log_to_driver=False, logging_level="WARNING")
    print(f"ray.init (local cluster, {os.cpu_count()} CPUs): {time.perf_counter() - t:.1f} s")

    workers = [int(w) for w in a.workers.split(",") if w]
    configs = [("local", None)] + [("ray", w) for w in workers]
    rows = {c: [] for c in configs}
    ref = None
    try:
        for rep in range(a.repeats):
            for eng, w in configs:
                out = a.dir / f"out_{eng}_{w}"
                shutil.rmtree(out, ignore_errors=True)
                t0 = time.perf_counter()
                kw = {"engine": "ray", "workers": w} if eng == "ray" else {}
                s = sidkit.encode(model, shards, f"{out}/", **kw)
                wall = time.perf_counter() - t0
                rows[(eng, w)].append((wall, s.get("stage_seconds", {}).get("map", float("nan"))))
                got = read_dir(out)
                if ref is None:
                    ref = got
                elif not got.equals(ref):
                    print(f"MISMATCH: {eng} workers={w} differs from the local engine's output")
                    return 1
                shutil.rmtree(out, ignore_errors=True)
    finally:
        ray.shutdown()
    base = float(np.median([r[0] for r in rows[("local", None)]]))
    print(f"\nencode {a.n:,} x {a.dim} in {a.shards} shards, rqkmeans 3 x 256, median of {a.repeats}; "
          f"outputs identical to the local engine")
    print("| engine | workers | wall s | map s | rows/s | wall vs local |")
    print("| --- | --- | --- | --- | --- | --- |")
    for (eng, w), rs in rows.items():
        wall = float(np.median([r[0] for r in rs]))
        mp = float(np.median([r[1] for r in rs]))
        print(f"| {eng} | {w or '-'} | {wall:.1f} | {'-' if np.isnan(mp) else f'{mp:.1f}'} | {a.n / wall:,.0f} | "
              f"{wall / base:.2f}x |")
    if not a.keep:
        shutil.rmtree(a.dir, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
