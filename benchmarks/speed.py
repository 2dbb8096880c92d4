"""sidkit speed vs bare baselines, measured in the same invocation (report the ratios).

    python benchmarks/speed.py [--only encode,rqkmeans,rqvae,memory] [--n 1000000]
                               [--repeats 3] [--dir /tmp/sidkit-bench] [--keep] [--json out.json]

Sub-benchmarks (every number is a median over ``--repeats`` runs; sidkit and its baseline are
run alternately, so machine noise hits both):

encode    ``sidkit.quantizers.rq.residual_encode`` (3 x 256 codebooks of an RQKMeans fitted on a
          100k-row sample) on the 1M x 384 synthetic catalog, and on 1M x 64 "latents" (a fixed
          random Gaussian projection of the same rows to 64-d, RQKMeans refitted on them), vs
          the floor: the same per-level ``X_chunk @ C.T`` matmuls over the same 4,096-row chunks
          with no argmin and no residual update. Target: sidkit/floor >= 0.7 (items/s ratio).
          Also end to end: ``sidkit.encode`` of the 1M-row Parquet file with an rqkmeans model
          fitted (``sidkit.fit``) on a 100k-row synthetic catalog, vs reading the same file's
          embeddings to numpy plus ``residual_encode`` (the I/O + compute floor).
rqkmeans  ``RQKMeans(3, 256, niter=25, train_sample=100_000).fit(X)`` on 1M x 384, vs a bare faiss
          loop on the same 100k sample: ``faiss.Kmeans(d, 256, niter=25)`` per level on the
          residuals + ``index.search(R, 1)`` to assign. Both keep faiss's default
          ``max_points_per_centroid=256``, so each level's k-means sees 65,536 of the 100k sample
          rows. Target: sidkit/faiss <= 1.1 (time ratio). Relative error printed for both.
rqvae     RQ-VAE training throughput (items/s; 20 warm-up steps, then ``--steps`` timed steps,
          batch 1024, MLP 384-512-256-64, 3 x 256; k-means init excluded from timing; the data is
          a 100k x 384 synthetic catalog): sidkit's ``RQVAEModule`` + AdamW + cosine schedule
          with the per-step bookkeeping of ``RQVAE.fit`` (code-usage bincount, dead-code restart
          every 50 steps; the periodic evaluation/checkpoint is excluded) vs an identical MLP
          around ``vector_quantize_pytorch.ResidualVQ(dim=64, num_quantizers=3,
          codebook_size=256, kmeans_init=True, commitment_weight=0.25)`` + AdamW, same lr.
          vector-quantize-pytorch's defaults turn on the rotation trick; a second baseline row
          uses ``rotation_trick=False`` (plain straight-through, as sidkit). Target: >= 1.5x.
memory    peak RSS of ``sidkit.encode`` (rqkmeans model fitted on a 100k-row synthetic catalog)
          on 1M- and 5M-row files, each encode in a fresh subprocess
          (the kernel's high-water mark ``VmHWM`` of /proc/self/status at its end), next to a
          subprocess that only imports sidkit and loads the model. (``ru_maxrss``, self or
          children, is not used: Linux carries the parent's peak RSS over fork + exec into it,
          so a child of a big benchmark process reports the parent's peak.) The 5M file (~7.7 GB) is skipped when
          /tmp lacks space. Target: < 2 GiB and flat in row count.

Synthetic catalogs come from ``sidkit.datasets.write_large_catalog`` (seed 0) and are written to
``--dir`` (default /tmp/sidkit-bench), reused across runs, and deleted at the end unless --keep.
"""

from __future__ import annotations

import argparse
import gc
import json
import math
import os
import platform
import shutil
import statistics
import subprocess
import sys
import time
import warnings
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

CHUNK = 4096
RESULTS: dict = {}


# --------------------------------------------------------------------------------------------
# helpers
def log(*a):
    print(*a, flush=True)


def med(xs):
    return statistics.median(xs)


def timed(fn, *a, **k):
    gc.collect()
    t = time.perf_counter()
    out = fn(*a, **k)
    return time.perf_counter() - t, out


def alternate(fns: dict, repeats: int) -> dict:
    """Run each callable ``repeats`` times, interleaved; return {name: [seconds...]}."""
    times = {k: [] for k in fns}
    for _ in range(repeats):
        for k, f in fns.items():
            times[k].append(timed(f)[0])
    return times


def table(title, header, rows):
    log(f"\n## {title} [load avg {os.getloadavg()[0]:.1f}]")
    w = [max(len(str(h)), *(len(str(r[i])) for r in rows)) for i, h in enumerate(header)]
    log("  ".join(str(h).rjust(w[i]) if i else str(h).ljust(w[i]) for i, h in enumerate(header)))
    log("  ".join("-" * x for x in w))
    for r in rows:
        log("  ".join(str(c).rjust(w[i]) if i else str(c).ljust(w[i]) for i, c in enumerate(r)))


def catalog(args, n: int) -> Path:
    from sidkit.datasets import write_large_catalog

    p = Path(args.dir) / f"synthetic_{n}.parquet"
    if p.is_file():
        import pyarrow.parquet as pq

        if pq.ParquetFile(p).metadata.num_rows == n:
            return p
    t, _ = timed(write_large_catalog, p, n, 384, seed=0)
    log(f"(wrote {p.name}: {n:,} x 384 in {t:.1f} s)")
    return p


_X_CACHE: dict = {}


def load_X(path: Path) -> np.ndarray:
    """The embedding column as one (n, d) float32 array, filled batch by batch."""
    if path in _X_CACHE:
        return _X_CACHE[path]
    import pyarrow.parquet as pq

    pf = pq.ParquetFile(path)
    n = pf.metadata.num_rows
    X = None
    s = 0
    for b in pf.iter_batches(batch_size=65536, columns=["embedding"]):
        col = b.column(0)
        d = col.type.list_size
        if X is None:
            X = np.empty((n, d), np.float32)
        v = col.values.to_numpy(zero_copy_only=False).reshape(-1, d)
        X[s:s + len(v)] = v
        s += len(v)
    _X_CACHE.clear()
    _X_CACHE[path] = X
    return X


def model_100k(args) -> Path:
    """An rqkmeans model directory fitted with sidkit.fit on a 100k-row synthetic catalog."""
    import sidkit

    mdir = Path(args.dir) / "model_rqkmeans_100k"
    if (mdir / "sidkit.json").is_file():
        return mdir
    src = catalog(args, 100_000)
    t, _ = timed(sidkit.fit, src, out=mdir, method="rqkmeans", levels=3, codebook_size=256, seed=0)
    log(f"(fitted {mdir.name} with sidkit.fit in {t:.1f} s)")
    return mdir


# --------------------------------------------------------------------------------------------
# a. encode
def matmul_floor(X: np.ndarray, books) -> None:
    import torch

    CT = [torch.from_numpy(np.ascontiguousarray(C, np.float32)).t().contiguous() for C in books]
    Xt = torch.from_numpy(X)
    with torch.inference_mode():
        for s in range(0, X.shape[0], CHUNK):
            r = Xt[s:s + CHUNK]
            for ct in CT:
                torch.mm(r, ct)


def bench_encode(args):
    import torch
    import pyarrow.parquet as pq
    import sidkit
    from sidkit.quantizers.rq import residual_encode
    from sidkit.quantizers.rqkmeans import RQKMeans

    path = catalog(args, args.n)
    X = load_X(path)
    n = X.shape[0]
    rng = np.random.default_rng(0)
    P = (rng.standard_normal((X.shape[1], 64)) / 8.0).astype(np.float32)
    Z = np.empty((n, 64), np.float32)
    for s in range(0, n, 65536):
        np.matmul(X[s:s + 65536], P, out=Z[s:s + 65536])
    rows = []
    for name, data in ((f"{n // 1000}k x {X.shape[1]}", X), (f"{n // 1000}k x 64 (projected)", Z)):
        t_fit, km = timed(RQKMeans(3, 256, niter=25, train_sample=100_000, random_state=0).fit, data)
        books = km.codebooks_
        residual_encode(data[:CHUNK * 4], books)  # warm-up
        matmul_floor(data[:CHUNK * 4], books)
        ts = alternate({"sidkit": lambda: residual_encode(data, books), "floor": lambda: matmul_floor(data, books)},
                       args.repeats)
        s_sid, s_fl = med(ts["sidkit"]), med(ts["floor"])
        ratio = s_fl / s_sid
        rows.append([name, f"{n / s_sid:,.0f}", f"{n / s_fl:,.0f}", f"{s_sid:.2f}", f"{s_fl:.2f}",
                     f"{ratio:.2f}", "ok" if ratio >= 0.7 else "MISS"])
        RESULTS.setdefault("encode", {})[name] = {"sidkit_s": ts["sidkit"], "floor_s": ts["floor"], "ratio": ratio,
                                                  "rqkmeans_fit_s": t_fit}
    del Z
    table("encode: residual_encode (its default chunks) vs matmul floor (3 x 256, 4096-row chunks, torch "
          f"{torch.get_num_threads()} threads)",
          ["data", "sidkit items/s", "floor items/s", "sidkit s", "floor s", "ratio (>=0.7)", ""], rows)

    # End to end: sidkit.encode of the Parquet file vs reading it + residual_encode.
    mdir = model_100k(args)
    model = sidkit.load_model(mdir)
    books = model.estimator.codebooks_
    out = Path(args.dir) / "codes_e2e.parquet"
    _X_CACHE.clear()
    del X
    gc.collect()

    def read_and_encode():
        pf = pq.ParquetFile(path)
        for b in pf.iter_batches(batch_size=65536, columns=["item_id", "embedding"]):
            col = b.column(1)
            residual_encode(col.values.to_numpy(zero_copy_only=False).reshape(-1, col.type.list_size), books)

    def read_only():
        pf = pq.ParquetFile(path)
        for b in pf.iter_batches(batch_size=65536, columns=["item_id", "embedding"]):
            col = b.column(1)
            col.values.to_numpy(zero_copy_only=False).reshape(-1, col.type.list_size)

    ts = alternate({"sidkit.encode": lambda: sidkit.encode(mdir, path, out),
                    "read+residual_encode": read_and_encode, "read only": read_only}, args.repeats)
    out.unlink(missing_ok=True)
    base = med(ts["read+residual_encode"])
    rows = []
    for k, v in ts.items():
        rows.append([k, f"{n / med(v):,.0f}", f"{med(v):.2f}", f"{base / med(v):.2f}"])
    table(f"encode end to end: {path.name} ({n:,} rows), rqkmeans model fitted on 100k rows",
          ["what", "items/s", "seconds", "ratio to read+residual_encode"], rows)
    RESULTS.setdefault("encode", {})["end_to_end"] = {k: v for k, v in ts.items()}


# --------------------------------------------------------------------------------------------
# b. rqkmeans fit
def faiss_loop(X: np.ndarray, sample: int, k: int, levels: int, niter: int, seed: int):
    import faiss

    rng = np.random.default_rng(seed)
    R = X[np.sort(rng.choice(X.shape[0], sample, replace=False))].copy()
    books = []
    for l in range(levels):
        km = faiss.Kmeans(R.shape[1], k, niter=niter, seed=int(rng.integers(0, 2**31 - 1)), verbose=False)
        km.train(R)
        _, I = km.index.search(R, 1)
        R -= km.centroids[I[:, 0]]
        books.append(km.centroids.copy())
    return books, float((R * R).sum(1).mean())


def bench_rqkmeans(args):
    import faiss
    from sidkit.quantizers.rqkmeans import RQKMeans

    X = load_X(catalog(args, args.n))
    sample = min(100_000, X.shape[0])
    ref = float((X[:100_000] ** 2).sum(1).mean())
    res = {}

    def sid():
        res["sidkit"] = RQKMeans(3, 256, niter=25, train_sample=sample, random_state=0).fit(X).inertia_per_level_[-1]

    def bare():
        res["faiss"] = faiss_loop(X, sample, 256, 3, 25, 0)[1]

    ts = alternate({"sidkit": sid, "faiss": bare}, args.repeats)
    s_sid, s_fa = med(ts["sidkit"]), med(ts["faiss"])
    ratio = s_sid / s_fa
    rows = [["sidkit RQKMeans.fit", f"{s_sid:.2f}", f"{res['sidkit'] / ref:.4f}", f"{ratio:.2f}",
             "ok" if ratio <= 1.1 else "MISS"],
            ["bare faiss loop", f"{s_fa:.2f}", f"{res['faiss'] / ref:.4f}", "1.00", ""]]
    table(f"rqkmeans fit: {X.shape[0]:,} x {X.shape[1]}, 3 x 256, niter 25, train_sample {sample:,} "
          f"(faiss subsamples 65,536 per level), faiss {faiss.omp_get_max_threads()} threads",
          ["what", "seconds", "rel. error (train)", "time ratio (<=1.1)", ""], rows)
    RESULTS["rqkmeans"] = {"sidkit_s": ts["sidkit"], "faiss_s": ts["faiss"], "ratio": ratio,
                           "rel_err": {k: v / ref for k, v in res.items()}}


# --------------------------------------------------------------------------------------------
# c. RQ-VAE training throughput
def bench_rqvae(args):
    import torch
    from torch import nn
    from sidkit.quantizers.rqvae import RQVAE, RQVAEModule, mlp

    try:
        from vector_quantize_pytorch import ResidualVQ
    except ImportError:
        log("\n## rqvae: skipped: vector-quantize-pytorch is not installed (pip install -e '.[bench]')")
        return
    X = load_X(catalog(args, 100_000))
    n, d = X.shape
    bs, hidden, latent, sizes, lr, wd = 1024, (512, 256), 64, [256, 256, 256], 1e-3, 1e-4
    warm, steps, block = 20, args.steps, 25
    Xt = torch.from_numpy(X)

    # Each trainer is built (and, for sidkit, k-means initialised) outside the timing, warmed up
    # for ``warm`` steps (vqp's k-means init runs in its first step), then the timed steps run in
    # blocks of ``block`` steps, interleaved across the trainers so machine noise hits all alike.

    # --- sidkit: same loop as RQVAE.fit minus the periodic evaluation/checkpointing -------
    class SidkitTrainer:
        def __init__(self, precision="fp32"):
            from sidkit.quantizers.rqvae import _resolve_precision

            torch.manual_seed(0)
            self.gen = torch.Generator().manual_seed(0)
            est = RQVAE(3, 256, latent_dim=latent, hidden=hidden, batch_size=bs, lr=lr, weight_decay=wd, random_state=0)
            self.model = RQVAEModule(d, hidden, latent, sizes)
            self.model.mlp_dtype = _resolve_precision(precision, torch.device("cpu"))
            est._init_codebooks(self.model, X, np.random.default_rng(0), torch.device("cpu"))  # excluded from timing
            self.opt = torch.optim.AdamW(self.model.parameters(), lr=lr, weight_decay=wd, fused=True)  # as RQVAE.fit
            total = warm + steps
            self.sched = torch.optim.lr_scheduler.LambdaLR(
                self.opt, lambda s: 0.5 * (1 + math.cos(math.pi * min(s, total) / total)) * 0.95 + 0.05)
            self.usage = [torch.zeros(k, dtype=torch.long) for k in sizes]
            self.step = 0
            self.model.train()

        def run(self, k):
            model, opt = self.model, self.opt
            for _ in range(k):
                self.step += 1
                idx = torch.randint(0, n, (bs,), generator=self.gen)
                xb = Xt.index_select(0, idx)
                _, codes, loss, _ = model(xb, 0.25, None)
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                self.sched.step()
                for l in range(len(sizes)):
                    self.usage[l] += torch.bincount(codes[:, l], minlength=sizes[l])
                if self.step % 50 == 0:
                    RQVAE._restart_dead(model, xb, self.usage, self.gen)
                    self.usage = [torch.zeros_like(u) for u in self.usage]
            return float(loss.detach())

    # --- vector-quantize-pytorch ResidualVQ RQ-VAE of the same shape ----------------------
    class VQP(nn.Module):
        def __init__(self, **kw):
            super().__init__()
            self.encoder = mlp([d, *hidden, latent])
            self.decoder = mlp([latent, *reversed(hidden), d])
            self.rq = ResidualVQ(dim=latent, num_quantizers=3, codebook_size=256, kmeans_init=True,
                                 commitment_weight=0.25, **kw)

        def forward(self, x):
            z = self.encoder(x)
            zq, idx, commit = self.rq(z)
            x_hat = self.decoder(zq)
            return (x_hat - x).pow(2).mean() + commit.sum(), idx

    class VQPTrainer:
        def __init__(self, **kw):
            torch.manual_seed(0)
            self.gen = torch.Generator().manual_seed(0)
            self.model = VQP(**kw)
            self.opt = torch.optim.AdamW(self.model.parameters(), lr=lr, weight_decay=wd)
            self.model.train()

        def run(self, k):
            for _ in range(k):
                idx = torch.randint(0, n, (bs,), generator=self.gen)
                loss, _ = self.model(Xt.index_select(0, idx))
                self.opt.zero_grad(set_to_none=True)
                loss.backward()
                self.opt.step()
            return float(loss.detach())

    from sidkit.quantizers.rqvae import cpu_has_bf16

    makers = {"sidkit RQVAEModule (fp32, default)": SidkitTrainer}
    if cpu_has_bf16():
        makers["sidkit RQVAEModule (--precision bf16)"] = lambda: SidkitTrainer("bf16")
    makers.update({"vqp ResidualVQ (defaults)": VQPTrainer,
                   "vqp ResidualVQ (rotation_trick=False)": lambda: VQPTrainer(rotation_trick=False)})
    ts = {k: [] for k in makers}
    losses = {}
    for r in range(args.repeats):
        trainers = {k: f() for k, f in makers.items()}
        for k, tr in trainers.items():
            tr.run(warm)
        done = 0
        while done < steps:
            b = min(block, steps - done)
            for k, tr in trainers.items():
                gc.collect()
                t = time.perf_counter()
                losses[k] = tr.run(b)
                ts[k].append((b, time.perf_counter() - t))
            done += b
        del trainers
    # Throughput per block, then the median over blocks (robust to bursts of load on the machine).
    ips = {k: med([b * bs / t for b, t in v]) for k, v in ts.items()}
    total_s = {k: sum(t for _, t in v) for k, v in ts.items()}
    vqp = [k for k in makers if k.startswith("vqp")]
    rows = []
    for k in makers:
        if k.startswith("sidkit"):
            speed = " / ".join(f"{ips[k] / ips[b]:.2f}" for b in vqp)
            ok = "ok" if min(ips[k] / ips[b] for b in vqp) >= 1.5 else "MISS"
        else:
            speed, ok = "", ""
        rows.append([k, f"{ips[k]:,.0f}", f"{total_s[k]:.1f}", f"{losses[k]:.4f}", speed, ok])
    table(f"rqvae training: {args.repeats} x {steps} steps after {warm} warm-up (median over {block}-step blocks), "
          f"batch {bs}, MLP {d}-512-256-64, 3 x 256, torch {torch.get_num_threads()} threads",
          ["what", "items/s", "total s", "last loss", "speedup vs vqp defaults / no-rotation (>=1.5)", ""], rows)
    RESULTS["rqvae"] = {"items_per_s": ips, "blocks": ts}


# --------------------------------------------------------------------------------------------
# d. peak memory of encode
_CHILD = r"""
import resource, sys, time, json
import sidkit
mode, mdir, src, out = sys.argv[1:5]
t = time.perf_counter()
if mode == "encode":
    info = sidkit.encode(mdir, src, out)
else:
    sidkit.load_model(mdir); info = {}
hwm = [int(l.split()[1]) for l in open("/proc/self/status") if l.startswith("VmHWM:")]
print(json.dumps({"maxrss_kb": hwm[0] if hwm else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss,
                  "seconds": time.perf_counter() - t, "n_items": info.get("n_items", 0)}))
"""


def child(mode, mdir, src, out):
    r = subprocess.run([sys.executable, "-c", _CHILD, mode, str(mdir), str(src), str(out)],
                       capture_output=True, text=True)
    if r.returncode:
        raise RuntimeError(r.stderr[-2000:])
    return json.loads(r.stdout.strip().splitlines()[-1])


def bench_memory(args):
    import psutil

    mdir = model_100k(args)
    out = Path(args.dir) / "codes_mem.parquet"
    base = child("load", mdir, "-", "-")
    rows = [["import sidkit + load_model", "-", f"{base['maxrss_kb'] / 2**20:.2f}", "-", "-", ""]]
    res = {"load_only_kb": base["maxrss_kb"]}
    for n in args.memory_rows:
        p = Path(args.dir) / f"synthetic_{n}.parquet"
        need = n * 384 * 4 * 1.1 + 2**30
        free = shutil.disk_usage(args.dir).free
        if not p.is_file() and free < need:
            log(f"(skip {n:,} rows: {free / 2**30:.1f} GiB free in {args.dir}, need {need / 2**30:.1f} GiB)")
            continue
        # Guard for a leaky encode: extrapolate the peak seen so far linearly in the row count.
        worst = max([v["maxrss_kb"] * 1024 * n / k for k, v in res.items() if isinstance(k, int)] or [0])
        avail = psutil.virtual_memory().available
        if worst > 0.7 * avail:
            log(f"(skip {n:,} rows: the peak so far extrapolates to {worst / 2**30:.1f} GiB, "
                f"{avail / 2**30:.1f} GiB available)")
            continue
        p = catalog(args, n)
        r = child("encode", mdir, p, out)
        out.unlink(missing_ok=True)
        gib = r["maxrss_kb"] / 2**20
        rows.append([f"sidkit.encode {n:,} rows", f"{p.stat().st_size / 2**30:.2f}", f"{gib:.2f}",
                     f"{r['seconds']:.1f}", f"{n / r['seconds']:,.0f}", "ok" if gib < 2 else "MISS"])
        res[n] = r
        if n > args.n and not args.keep:  # the big file is not reused by the other parts
            p.unlink()
    table("encode peak memory (peak RSS of a fresh process; rqkmeans model fitted on 100k rows)",
          ["what", "file GiB", "peak RSS GiB (<2)", "seconds", "items/s", ""], rows)
    RESULTS["memory"] = res


# --------------------------------------------------------------------------------------------
BENCHES = {"encode": bench_encode, "rqkmeans": bench_rqkmeans, "rqvae": bench_rqvae, "memory": bench_memory}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--only", default=",".join(BENCHES), help=f"comma list of {', '.join(BENCHES)}")
    ap.add_argument("--n", type=int, default=1_000_000, help="rows of the synthetic catalog for encode/rqkmeans")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--steps", type=int, default=200, help="timed RQ-VAE training steps")
    ap.add_argument("--memory-rows", default="1000000,5000000", type=lambda v: [int(x) for x in v.split(",")],
                    help="row counts of the files encoded by the memory benchmark")
    ap.add_argument("--dir", default="/tmp/sidkit-bench")
    ap.add_argument("--keep", action="store_true", help="keep the synthetic files and model in --dir")
    ap.add_argument("--threads", type=int, default=0,
                    help="torch and faiss threads in this process (default: the libraries' default)")
    ap.add_argument("--json", help="also write the raw timings as JSON to this path")
    args = ap.parse_args()
    only = [s.strip() for s in args.only.split(",") if s.strip()]
    bad = [s for s in only if s not in BENCHES]
    if bad:
        ap.error(f"unknown benchmark(s) {bad}; choose from {', '.join(BENCHES)}")
    Path(args.dir).mkdir(parents=True, exist_ok=True)

    import faiss
    import torch
    import sidkit

    warnings.filterwarnings("ignore", message="The given NumPy array is not writable")
    if args.threads:
        torch.set_num_threads(args.threads)
        faiss.omp_set_num_threads(args.threads)
    log(f"# sidkit {sidkit.__version__}, torch {torch.__version__} ({torch.get_num_threads()} threads), "
        f"faiss {faiss.__version__}, {platform.machine()}, {os.cpu_count()} cpus, {time.strftime('%Y-%m-%d %H:%M')}")
    try:
        for name in only:
            t = time.perf_counter()
            BENCHES[name](args)
            log(f"({name}: {time.perf_counter() - t:.0f} s)")
    finally:
        if args.json:
            Path(args.json).write_text(json.dumps(RESULTS, indent=2, default=str))
        if not args.keep:
            for p in Path(args.dir).glob("synthetic_*.parquet"):
                p.unlink()
            shutil.rmtree(Path(args.dir) / "model_rqkmeans_100k", ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
