"""sidkit at catalog scale (issue #13): fit, encode, audit and Ray encode on 1M-50M-row catalogs.

    python benchmarks/scale.py --data /work/bench-data                     # 1m,10m,50m, every step
    python benchmarks/scale.py --data /tmp/sk-small --sizes 20k,100k       # a quick end-to-end check
    python benchmarks/scale.py --data DIR --only encode,audit --out results.json
    python benchmarks/scale.py --data DIR --prepare-only                   # only write the input files

Every measured step is one ``sidkit`` CLI command run as a separate child process
(``python -m sidkit ...`` with this checkout first on PYTHONPATH), under ``/usr/bin/time -v``
where it exists: its "Maximum resident set size" is the child's own high-water mark (time(1) is
a small C program, so the benchmark's own RSS is not carried into the child over fork + exec,
unlike ``ru_maxrss`` of a child of this Python process). Without /usr/bin/time the child's
process tree is polled with psutil every 0.1 s. The tree (the child and all its descendants,
e.g. Ray's raylet and workers) is polled in both cases: "tree GiB" sums their RSS, which counts
shared memory (Ray's object store) once per process that maps it, so it is an upper bound.

Inputs (``sidkit.datasets.write_large_catalog``, seed 0, in ``--data``; written when missing or of
the wrong size, reused otherwise):
  cat_{S}_d128.parquet     every size S below 50M; with ``attributes=True`` (brand and colour
                           string columns, for KAE)
  cat_{S}_d32.parquet      the smallest and the largest size (d = 32 keeps 50M rows near 7 GB)
  cat_{S}_d128_shards/     the largest d = 128 file as 16 Parquet shards (row groups copied)

Steps (``--only``):
  fit     ``sidkit fit`` of every d = 128 file with each of ``--methods`` (rqkmeans, rqvae, quasid,
          adasid, kae; kae with ``--residual-levels 1``), RQ-VAE-family methods with
          ``--max-steps`` so every size trains the same steps; ``--train-sample`` only with
          ``--train-sample N`` here and only where ``sidkit fit --help`` says the method takes it.
  encode  ``sidkit encode`` of each d = 128 file with its rqkmeans, rqvae and kae models (the
          baseline of the fit's time outside training, and KAE routing vs rqvae); of the d = 32
          files with an rqkmeans model fitted on the smallest d = 32 file (memory flat in rows);
          the encode throughput against the matmul floor of benchmarks/speed.py (the same
          per-level ``X_chunk @ C.T`` over 4,096-row chunks, no argmin, no residual update; run in
          this process on the first <= 1M rows of the file, rqkmeans models, whose codebooks live
          in the input space).
  audit   ``sidkit audit CODES`` (the core blocks) of every encode output; ``sidkit audit CODES
          --items CATALOG`` of the rqvae codes of every d = 128 file (the semantic block; its
          query sample size is reported).
  ray     ``sidkit encode MODEL SHARDS/`` locally vs ``--engine ray --workers 1`` and ``2``
          (skipped with a note where ``sidkit encode --help`` has no ``--engine``); codes and
          suffixes compared with the local output.

Prints one markdown table of every step (rows x step -> wall s, peak GiB), a table of the ratios
measured in this run against the issue's targets, and a projection for 10^9 items on 100 nodes
from the measured per-core throughput, bytes read per row and the suffix pass's shuffle volume.
Models and outputs go to ``--work`` (default ``DATA/work``), deleted at the end unless ``--keep``.
Budget for the full run on a 2-core machine: several hours (see benchmarks/README.md).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from sidkit.config import METHODS, RQVAE_METHODS as RQVAE_FAMILY  # noqa: E402

GiB = 1024 ** 3
ALL_METHODS = tuple(METHODS)
ALL_STEPS = ("fit", "encode", "audit", "ray")
N_SHARDS = 16
BIG = 50_000_000  # sizes at or above this get no d = 128 file (encode/audit only, at d = 32)


def log(*a):
    print(*a, flush=True)


def parse_size(s: str) -> int:
    m = re.fullmatch(r"(\d+(?:\.\d+)?)([kmg]?)", s.strip().lower())
    if not m:
        raise SystemExit(f"--sizes: cannot read {s!r}; use e.g. 20k, 1m, 10m, 50m")
    return int(float(m.group(1)) * {"": 1, "k": 10 ** 3, "m": 10 ** 6, "g": 10 ** 9}[m.group(2)])


def label(n: int) -> str:
    for unit, v in (("g", 10 ** 9), ("m", 10 ** 6), ("k", 10 ** 3)):
        if n >= v and n % v == 0:
            return f"{n // v}{unit}"
    return str(n)


# --------------------------------------------------------------------------------------------
# inputs
def ensure_catalog(path: Path, n: int, dim: int, attributes: bool) -> Path:
    import pyarrow.parquet as pq
    from sidkit.datasets import write_large_catalog

    if path.is_file():
        f = pq.ParquetFile(path)
        names = f.schema_arrow.names
        if f.metadata.num_rows == n and ("brand" in names) == attributes:
            return path
        log(f"({path.name} has {f.metadata.num_rows:,} rows, columns {names}: rewriting)")
    t = time.perf_counter()
    write_large_catalog(path, n, dim, seed=0, attributes=attributes)
    log(f"(wrote {path.name}: {n:,} x {dim}{' + brand/color' if attributes else ''} in "
        f"{time.perf_counter() - t:.1f} s, {path.stat().st_size / GiB:.2f} GiB)")
    return path


def ensure_shards(src: Path, out: Path, n_shards: int = N_SHARDS) -> Path:
    """Stream ``src`` into ``n_shards`` files part-00000.parquet ... of contiguous rows (record
    batches of 65,536 rows copied, split at shard boundaries, so row-group sizes differ between
    shards; one batch in memory at a time); the directory appears atomically."""
    import pyarrow.parquet as pq
    from sidkit.io.artifacts import atomic_dir

    f = pq.ParquetFile(src)
    if out.is_dir():
        parts = sorted(out.glob("part-*.parquet"))
        if len(parts) == n_shards and sum(pq.ParquetFile(p).metadata.num_rows for p in parts) == f.metadata.num_rows:
            return out
        log(f"({out.name} is incomplete: rewriting)")
        shutil.rmtree(out)
    t = time.perf_counter()
    n = f.metadata.num_rows
    bounds = [i * n // n_shards for i in range(n_shards + 1)]  # shard s holds rows bounds[s]:bounds[s+1]
    with atomic_dir(out) as tmp:
        tmp = Path(tmp)
        writers = [None] * n_shards
        pos = 0
        try:
            for batch in f.iter_batches(batch_size=65536):
                a = 0
                while a < batch.num_rows:
                    s = next(i for i in range(n_shards) if bounds[i + 1] > pos + a)
                    b = min(batch.num_rows, bounds[s + 1] - pos)
                    if writers[s] is None:
                        writers[s] = pq.ParquetWriter(tmp / f"part-{s:05d}.parquet", f.schema_arrow, compression="none",
                                                      use_dictionary=False, write_statistics=["item_id"])
                    writers[s].write_batch(batch.slice(a, b - a))
                    a = b
                pos += batch.num_rows
        finally:
            for w in writers:
                if w is not None:
                    w.close()
    log(f"(wrote {out.name}: {n_shards} shards of {src.name} in {time.perf_counter() - t:.1f} s)")
    return out


def plan_inputs(sizes: list[int]) -> dict:
    d128 = [n for n in sizes if n < BIG]
    d32 = sorted({min(sizes), max(sizes)})
    return {"d128": d128, "d32": d32, "shards": max(d128) if d128 else None}


def prepare(data: Path, sizes: list[int]) -> dict:
    data.mkdir(parents=True, exist_ok=True)
    plan = plan_inputs(sizes)
    need = sum(n * (128 * 4 + 30) * (2 if n == plan["shards"] else 1) for n in plan["d128"]) + sum(
        n * (32 * 4 + 12) for n in plan["d32"])
    free = shutil.disk_usage(data).free
    files = {"d128": {}, "d32": {}, "shards": None}
    have = sum(p.stat().st_size for p in data.glob("cat_*.parquet"))
    if need > free + have:
        log(f"note: the inputs need ~{need / GiB:.1f} GiB and {data} has {free / GiB:.1f} GiB free")
    for n in plan["d32"]:
        p = data / f"cat_{label(n)}_d32.parquet"
        if n >= BIG and not p.is_file() and shutil.disk_usage(data).free < n * 140 * 1.1:
            log(f"note: skipping {p.name}: {shutil.disk_usage(data).free / GiB:.1f} GiB free")
            continue
        files["d32"][n] = ensure_catalog(p, n, 32, attributes=False)
    for n in plan["d128"]:
        files["d128"][n] = ensure_catalog(data / f"cat_{label(n)}_d128.parquet", n, 128, attributes=True)
    if plan["shards"]:
        n = plan["shards"]
        files["shards"] = (n, ensure_shards(files["d128"][n], data / f"cat_{label(n)}_d128_shards"))
    return files


# --------------------------------------------------------------------------------------------
# running one CLI step in a child process
TIME_V = Path("/usr/bin/time")


def _tree_rss(proc) -> int:
    try:
        procs = [proc] + proc.children(recursive=True)
    except Exception:
        return 0
    tot = 0
    for p in procs:
        try:
            tot += p.memory_info().rss
        except Exception:
            pass
    return tot


def run_cli(args_cli: list[str], *, env_extra: dict | None = None, timeout: float | None = None) -> dict:
    """Run ``python -m sidkit ARGS`` in a child; return wall, peak RSS (GiB), CPU s, the parsed JSON
    stdout (when the command printed JSON), the return code and the stderr tail."""
    cmd = [sys.executable, "-m", "sidkit", *args_cli]
    use_time = TIME_V.is_file() and os.access(TIME_V, os.X_OK)
    full = ([str(TIME_V), "-v"] if use_time else []) + cmd
    env = dict(os.environ)
    env["PYTHONPATH"] = str(ROOT) + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    env.update(env_extra or {})
    try:
        import psutil
    except ImportError:  # pragma: no cover
        psutil = None
    t0 = time.perf_counter()
    proc = subprocess.Popen(full, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env, text=True)
    peak_tree = [0]
    stop = threading.Event()

    def poll():
        if psutil is None:
            return
        try:
            pp = psutil.Process(proc.pid)
        except Exception:
            return
        while not stop.is_set():
            peak_tree[0] = max(peak_tree[0], _tree_rss(pp))
            stop.wait(0.1)

    th = threading.Thread(target=poll, daemon=True)
    th.start()
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        out, err = proc.communicate()
        err += f"\n(killed after {timeout} s)"
    wall = time.perf_counter() - t0
    stop.set()
    th.join()
    res = {"cmd": " ".join(["sidkit", *args_cli]), "rc": proc.returncode, "wall_s": round(wall, 2),
           "tree_peak_gib": round(peak_tree[0] / GiB, 3) if peak_tree[0] else None}
    if use_time:
        m = re.search(r"Maximum resident set size \(kbytes\): (\d+)", err)
        u = re.search(r"User time \(seconds\): ([\d.]+)", err)
        s = re.search(r"System time \(seconds\): ([\d.]+)", err)
        res["peak_gib"] = round(int(m.group(1)) * 1024 / GiB, 3) if m else None
        res["cpu_s"] = round(float(u.group(1)) + float(s.group(1)), 2) if u and s else None
        ex = re.search(r"Exit status: (\d+)", err)
        if ex:
            res["rc"] = int(ex.group(1))
        err = err.split("\tCommand being timed:")[0]
    else:
        res["peak_gib"] = res["tree_peak_gib"]
        res["cpu_s"] = None
    res["peak_source"] = "time -v" if use_time else "psutil poll"
    try:
        res["json"] = json.loads(out) if out.strip().startswith("{") else None
    except json.JSONDecodeError:
        res["json"] = None
    res["stderr_tail"] = err.strip()[-1500:]
    if res["rc"] != 0:
        log(f"  FAILED (rc {res['rc']}): {res['cmd']}\n    " + res["stderr_tail"].replace("\n", "\n    ")[-1200:])
    return res


def cli_help(sub: str) -> str:
    r = subprocess.run([sys.executable, "-m", "sidkit", sub, "--help"], capture_output=True, text=True,
                       env={**os.environ, "PYTHONPATH": str(ROOT), "COLUMNS": "200"})
    return r.stdout


def help_option(text: str, flag: str) -> str | None:
    """The help text of ``flag`` in a Typer/Click --help page (None when absent)."""
    lines = text.splitlines()
    for i, ln in enumerate(lines):
        if re.search(rf"(^|[\s,]){re.escape(flag)}([\s,=]|$)", ln):
            out = [ln]
            for nxt in lines[i + 1:]:
                if re.match(r"^\s+-", nxt) or not nxt.strip():
                    break
                out.append(nxt)
            return " ".join(x.strip() for x in out)
    return None


def takes_train_sample(fit_help: str, method: str) -> bool:
    """Whether ``sidkit fit --help`` offers --train-sample to ``method``: its help text starts with
    the methods it applies to ("rqkmeans: fit k-means on ...") or names none (every method)."""
    h = help_option(fit_help, "--train-sample")
    if h is None:
        return False
    m = re.match(r"--train-sample\s+<\S+>\s+([a-z, /-]+):", h)
    if m:
        named = set(re.findall(r"[a-z]+", m.group(1)))
        if named <= set(ALL_METHODS):
            return method in named or (method in RQVAE_FAMILY and "rqvae" in named)
    return True


# --------------------------------------------------------------------------------------------
# the floor (same definition as benchmarks/speed.py)
def floor_rows_per_s(catalog: Path, model_dir: Path, max_rows: int = 1_000_000) -> dict | None:
    """speed.py's matmul floor (per-level X_chunk @ C.T, 4,096-row chunks) on the first rows of
    ``catalog`` against the rqkmeans model's codebooks; median of 3, in this process."""
    import pyarrow.parquet as pq

    sys.path.insert(0, str(ROOT / "benchmarks"))
    from speed import matmul_floor  # noqa: E402
    import sidkit

    model = sidkit.load_model(model_dir)
    books = getattr(model.estimator, "codebooks_", None)
    if books is None:
        return None
    pf = pq.ParquetFile(catalog)
    parts, n = [], 0
    for b in pf.iter_batches(batch_size=65536, columns=["embedding"]):
        col = b.column(0)
        parts.append(col.values.to_numpy(zero_copy_only=False).reshape(-1, col.type.list_size).copy())
        n += len(parts[-1])
        if n >= max_rows:
            break
    X = np.concatenate(parts)[:max_rows]
    del parts
    matmul_floor(X[:16384], books)
    ts = []
    for _ in range(3):
        t = time.perf_counter()
        matmul_floor(X, books)
        ts.append(time.perf_counter() - t)
    import torch

    return {"rows": len(X), "seconds": sorted(ts)[1], "rows_per_s": len(X) / sorted(ts)[1],
            "torch_threads": torch.get_num_threads()}


# --------------------------------------------------------------------------------------------
class Bench:
    def __init__(self, args, files):
        self.a = args
        self.files = files
        self.work = Path(args.work)
        self.work.mkdir(parents=True, exist_ok=True)
        self.rows: list[dict] = []  # one per step
        self.notes: list[str] = []
        self.fit_help = cli_help("fit")
        self.encode_help = cli_help("encode")

    # one measured step
    def step(self, kind: str, name: str, n: int, dim: int, argv: list[str], **extra) -> dict:
        log(f"- {kind} {name} {label(n)} x {dim}: sidkit {' '.join(argv)}")
        r = run_cli(argv, timeout=self.a.step_timeout)
        r.update(kind=kind, name=name, n=n, dim=dim, **extra)
        j = r.get("json") or {}
        secs = j.get("seconds") or j.get("total_seconds")
        r["inproc_s"] = secs
        r["rows_per_s"] = round(n / secs) if secs else round(n / r["wall_s"])
        log(f"  {r['wall_s']:.1f} s wall, peak {r['peak_gib']} GiB" + (f", {secs} s in-process" if secs else ""))
        self.rows.append(r)
        self.save()
        return r

    def find(self, kind, name=None, n=None, dim=None, ok=True):
        for r in self.rows:
            if r["kind"] == kind and (name is None or r["name"] == name) and (n is None or r["n"] == n) \
                    and (dim is None or r["dim"] == dim) and (not ok or r["rc"] == 0):
                return r
        return None

    def save(self):
        out = {"machine": {"platform": platform.platform(), "cpus": os.cpu_count(), "python": sys.version.split()[0],
                           "load_avg": os.getloadavg()}, "args": {k: str(v) for k, v in vars(self.a).items()},
               "steps": [{k: v for k, v in r.items() if k != "json"} | {"summary": _slim(r.get("json"))}
                         for r in self.rows], "notes": self.notes}
        Path(self.a.out).write_text(json.dumps(out, indent=1, default=str))

    # models
    def model(self, method: str, n: int, dim: int, catalog: Path, *, measured: bool) -> Path | None:
        mdir = self.work / f"model_{method}_{label(n)}_d{dim}"
        if self.find("fit", method, n, dim) or self.find("fit (prereq)", method, n, dim):
            return mdir
        if (mdir / "sidkit.json").is_file() and not measured and self.a.reuse_models:
            return mdir
        argv = ["fit", str(catalog), "-m", method, "-o", str(mdir), "--json", "-q", "--seed", "0"]
        if method in RQVAE_FAMILY:
            argv += ["--max-steps", str(self.a.max_steps)]
        if method == "kae":
            argv += ["--residual-levels", "1"]
        if self.a.train_sample and takes_train_sample(self.fit_help, method):
            argv += ["--train-sample", str(self.a.train_sample)]
        r = self.step("fit" if measured else "fit (prereq)", method, n, dim, argv)
        return mdir if r["rc"] == 0 else None

    # steps
    def run_fit(self):
        for n, cat in self.files["d128"].items():
            for m in self.a.methods:
                self.model(m, n, 128, cat, measured=True)

    def run_encode(self):
        for n, cat in self.files["d128"].items():
            for m in ("rqkmeans", "rqvae", "kae"):
                if m not in self.a.methods:
                    continue
                mdir = self.model(m, n, 128, cat, measured="fit" in self.a.only)
                if mdir is None:
                    continue
                out = self.work / f"codes_{m}_{label(n)}_d128.parquet"
                self.step("encode", m, n, 128, ["encode", str(mdir), str(cat), "-o", str(out), "--json", "-q"],
                          output=str(out))
        d32 = self.files["d32"]
        if d32:
            n0 = min(d32)
            mdir = self.model("rqkmeans", n0, 32, d32[n0], measured=False)
            if mdir is not None:
                for n, cat in sorted(d32.items()):
                    out = self.work / f"codes_rqkmeans_{label(n)}_d32.parquet"
                    self.step("encode", "rqkmeans", n, 32, ["encode", str(mdir), str(cat), "-o", str(out), "--json", "-q"],
                              output=str(out), model=str(mdir))
        # floors (in this process, after the children, so they do not share the machine)
        self.floors = {}
        for dim, n, cat, mdir in self._floor_cases():
            f = floor_rows_per_s(cat, mdir)
            if f:
                self.floors[(dim, n)] = f
                log(f"  matmul floor d={dim}: {f['rows_per_s']:,.0f} rows/s ({f['rows']:,} rows, torch {f['torch_threads']} threads)")
                self.rows.append({"kind": "floor", "name": "matmul", "n": f["rows"], "dim": dim, "rc": 0,
                                  "wall_s": round(f["seconds"], 2), "peak_gib": None, "rows_per_s": round(f["rows_per_s"]),
                                  "cmd": f"speed.matmul_floor on {cat.name} (first {f['rows']:,} rows)", "floor_for": n})

    def _floor_cases(self):
        """(dim, rows, catalog, rqkmeans model) of the largest rqkmeans encode of each dimension."""
        best = {}
        for r in self.rows:
            if r["kind"] == "encode" and r["name"] == "rqkmeans" and r["rc"] == 0:
                if r["dim"] not in best or r["n"] > best[r["dim"]]["n"]:
                    best[r["dim"]] = r
        out = []
        for dim, r in sorted(best.items()):
            mdir = r.get("model") or str(self.work / f"model_rqkmeans_{label(r['n'])}_d{dim}")
            cat = self.files["d32"].get(r["n"]) if dim == 32 else self.files["d128"].get(r["n"])
            if cat:
                out.append((dim, r["n"], cat, Path(mdir)))
        return out

    def run_audit(self):
        for r in [r for r in self.rows if r["kind"] == "encode" and r["rc"] == 0]:
            if r["dim"] == 32 or r["name"] == "rqvae":
                self.step("audit", "core", r["n"], r["dim"], ["audit", r["output"], "--json", "-q"], codes=r["name"])
        for n, cat in self.files["d128"].items():
            enc = self.find("encode", "rqvae", n, 128)
            if enc is None:
                self.notes.append(f"audit --items {label(n)}: no rqvae codes (run with encode)")
                continue
            r = self.step("audit", "--items", n, 128, ["audit", enc["output"], "--items", str(cat), "--json", "-q"],
                          codes="rqvae")
            sem = (r.get("json") or {}).get("semantic") or {}
            r["n_queries"] = sem.get("n_queries")
            r["sample_info"] = {k: v for k, v in sem.items() if any(s in k for s in ("sample", "n_queries", "ci", "index"))}

    def run_ray(self):
        if not self.files["shards"]:
            self.notes.append("ray: no sharded input (needs a size below 50M)")
            return
        n, shards = self.files["shards"]
        if help_option(self.encode_help, "--engine") is None:
            self.notes.append("ray: skipped: `sidkit encode --help` has no --engine")
            log("- ray: skipped (`sidkit encode --help` has no --engine)")
            return
        has_workers = help_option(self.encode_help, "--workers") is not None
        mdir = self.model("rqvae", n, 128, self.files["d128"][n], measured=False)
        if mdir is None:
            return
        # a folder of codes shards (one per input shard) where encode writes one ("-o out/"), else a file
        folder = "ending in '/'" in (help_option(self.encode_help, "--output") or "")
        local = f"{self.work / f'codes_rqvae_{label(n)}_shards_local'}" + ("/" if folder else ".parquet")
        self.step("ray", "local", n, 128, ["encode", str(mdir), str(shards), "-o", local, "--json", "-q"],
                  output=local.rstrip("/"), workers=None)
        for w in (1, 2) if has_workers else (None,):
            out = f"{self.work / f'codes_rqvae_{label(n)}_ray_w{w}'}" + ("/" if folder else ".parquet")
            argv = ["encode", str(mdir), str(shards), "-o", out, "--engine", "ray", "--json", "-q"]
            if w:
                argv += ["--workers", str(w)]
            r = self.step("ray", f"ray w={w}", n, 128, argv, output=out.rstrip("/"), workers=w)
            if r["rc"] == 0 and Path(local.rstrip("/")).exists():
                r["same_as_local"] = same_codes(local.rstrip("/"), out.rstrip("/"))
                log(f"  codes and suffixes identical to local: {r['same_as_local']}")
        if not has_workers:
            self.notes.append("ray: `sidkit encode --help` has no --workers; ran with Ray's default")


def _slim(j):
    if not isinstance(j, dict):
        return j
    keep = ("n_items", "seconds", "fit_seconds", "total_seconds", "collision_rate", "n_new_or_changed", "n_kept",
            "reconstruction_mse", "train_sample", "notes", "output", "stage_seconds")
    out = {k: j[k] for k in keep if k in j}
    if isinstance(j.get("semantic"), dict):
        out["semantic"] = {k: v for k, v in j["semantic"].items() if not isinstance(v, (dict, list))}
    if isinstance(j.get("collision"), dict):
        out["collision_rate"] = j["collision"].get("collision_rate")
    return out


def same_codes(a, b) -> bool | str:
    """Whether two codes outputs (a file or a directory of shards) hold the same (id, sid, suffix)
    rows, compared after sorting by id."""
    import pyarrow.compute as pc
    from sidkit.io.source import open_source

    def load(p):
        t = open_source(p).read(None)
        idc = "item_id" if "item_id" in t.column_names else t.column_names[0]
        return t.take(pc.sort_indices(t.column(idc))), idc

    try:
        ta, ida = load(a)
        tb, idb = load(b)
    except Exception as e:  # pragma: no cover
        return f"not compared ({type(e).__name__}: {e})"
    if ta.num_rows != tb.num_rows:
        return f"no: {ta.num_rows} vs {tb.num_rows} rows"
    common = [c for c in ta.column_names if c in tb.column_names]
    for c in common:
        if not ta.column(c).combine_chunks().equals(tb.column(c).combine_chunks().cast(ta.column(c).type)):
            return f"no: column {c} differs"
    return True


# --------------------------------------------------------------------------------------------
# report
def fmt(x, nd=1):
    if x is None:
        return ""
    if isinstance(x, float):
        return f"{x:,.{nd}f}"
    return f"{x:,}" if isinstance(x, int) else str(x)


def ok(v, target, le=True):
    if v is None:
        return ""
    return "ok" if (v <= target if le else v >= target) else "MISS"


def report(b: Bench) -> str:
    L = []
    p = L.append
    p(f"\n## Steps [{os.cpu_count()} CPUs, load avg {os.getloadavg()[0]:.1f}; peak = "
      f"{b.rows[0]['peak_source'] if b.rows else ''} max RSS of the CLI child; tree = psutil sum over its process tree]\n")
    p("| step | method / what | rows | d | wall s | in-process s | peak GiB | tree GiB | rows/s | notes |")
    p("|---|---|---|---|---|---|---|---|---|---|")
    for r in b.rows:
        j = r.get("json") or {}
        note = []
        if r["rc"] != 0:
            note.append(f"FAILED rc {r['rc']}")
        if r["kind"].startswith("fit") and j:
            note.append(f"fit_seconds {j.get('fit_seconds')}, outside training "
                        f"{_outside(j):.1f} s" if _outside(j) is not None else "")
        if r.get("n_queries"):
            note.append(f"{r['n_queries']:,} queries")
        if "same_as_local" in r:
            note.append(f"same as local: {r['same_as_local']}")
        if r["kind"] == "floor":
            note.append(r["cmd"])
        p(f"| {r['kind']} | {r['name']} | {label(r['n'])} | {r['dim']} | {fmt(r['wall_s'])} | {fmt(r.get('inproc_s'))} | "
          f"{fmt(r.get('peak_gib'), 2)} | {fmt(r.get('tree_peak_gib'), 2)} | {fmt(r.get('rows_per_s'))} | "
          f"{'; '.join(x for x in note if x)} |")
    p("\n## Ratios (same run) vs the issue's targets\n")
    p("(Below 1M rows the fixed costs of a command (imports, model load: a few seconds) dominate the "
      "throughput ratios; the targets are meant at 1M rows and more.)\n")
    p("| measure | value | target | |")
    p("|---|---|---|---|")
    for name, v, tgt, verdict in ratios(b):
        p(f"| {name} | {v} | {tgt} | {verdict} |")
    if b.notes:
        p("\nNotes:")
        for x in b.notes:
            p(f"- {x}")
    p(projection(b))
    return "\n".join(L)


def _outside(j):
    if j and j.get("total_seconds") is not None and j.get("fit_seconds") is not None:
        return j["total_seconds"] - j["fit_seconds"]
    return None


def ratios(b: Bench):
    out = []
    sizes = sorted(b.files["d128"])
    for n in sizes:
        base = b.find("fit", "rqvae", n, 128)
        for m in ("quasid", "adasid"):
            r = b.find("fit", m, n, 128)
            if base and r:
                v = r["wall_s"] / base["wall_s"]
                fs = (r["json"] or {}).get("fit_seconds"), (base["json"] or {}).get("fit_seconds")
                extra = f" (training alone {fs[0] / fs[1]:.2f})" if all(fs) else ""
                out.append((f"fit time {m} / rqvae, {label(n)}", f"{v:.2f}{extra}", "<= 1.5", ok(v, 1.5)))
    for n in sizes:
        for m in b.a.methods:
            r = b.find("fit", m, n, 128)
            if not r:
                continue
            out.append((f"fit peak RSS {m}, {label(n)}", f"{r['peak_gib']} GiB", "<= 4 GiB (at 10M)",
                        ok(r["peak_gib"], 4.0) if r["peak_gib"] is not None else ""))
            enc = b.find("encode", m if m in ("rqkmeans", "rqvae", "kae") else "rqvae", n, 128)
            o = _outside(r.get("json"))
            if enc and o is not None:
                e = enc.get("inproc_s") or enc["wall_s"]
                v = o / e
                out.append((f"fit time outside training / encode ({enc['name']} model), {m}, {label(n)}",
                            f"{o:.1f} s / {e:.1f} s = {v:.2f}", "<= 2", ok(v, 2.0)))
    for n in sizes:
        k, q = b.find("encode", "kae", n, 128), b.find("encode", "rqvae", n, 128)
        if k and q:
            v = k["rows_per_s"] / q["rows_per_s"]
            out.append((f"encode throughput kae / rqvae model, {label(n)}", f"{v:.2f}", ">= 0.5", ok(v, 0.5, le=False)))
    d32 = [r for r in b.rows if r["kind"] == "encode" and r["dim"] == 32 and r["rc"] == 0]
    if len(d32) >= 2:
        lo, hi = min(d32, key=lambda r: r["n"]), max(d32, key=lambda r: r["n"])
        if lo["peak_gib"] is not None and hi["peak_gib"] is not None:
            g = (hi["peak_gib"] - lo["peak_gib"]) / ((hi["n"] - lo["n"]) / 1e6)
            out.append((f"encode peak RSS growth per 1M rows, {label(lo['n'])} -> {label(hi['n'])} (d 32)",
                        f"{g:.4f} GiB ({lo['peak_gib']} -> {hi['peak_gib']} GiB)", "<= 0.02 GiB", ok(g, 0.02)))
            v = hi["peak_gib"] / lo["peak_gib"]
            out.append((f"encode peak RSS {label(hi['n'])} / {label(lo['n'])} (d 32)", f"{v:.2f}", "<= 1.2", ok(v, 1.2)))
        v = hi["rows_per_s"] / lo["rows_per_s"]
        out.append((f"encode throughput {label(hi['n'])} / {label(lo['n'])} (d 32, rows/s)", f"{v:.2f}", "~1 (>= 0.9)",
                    ok(v, 0.9, le=False)))
    for (dim, nf), f in getattr(b, "floors", {}).items():
        for r in b.rows:
            if r["kind"] == "encode" and r["name"] == "rqkmeans" and r["dim"] == dim and r["rc"] == 0:
                v = r["rows_per_s"] / f["rows_per_s"]
                out.append((f"sidkit encode (rqkmeans, end to end) / matmul floor, {label(r['n'])} x {dim}",
                            f"{r['rows_per_s']:,} / {f['rows_per_s']:,.0f} = {v:.2f}", ">= 0.7", ok(v, 0.7, le=False)))
                t_map = ((r.get("json") or {}).get("stage_seconds") or {}).get("map")
                if t_map:
                    v = r["n"] / t_map / f["rows_per_s"]
                    out.append((f"sidkit encode map stage (read + encode) / matmul floor, {label(r['n'])} x {dim}",
                                f"{r['n'] / t_map:,.0f} / {f['rows_per_s']:,.0f} = {v:.2f}", ">= 0.7",
                                ok(v, 0.7, le=False)))
    ac = [r for r in b.rows if r["kind"] == "audit" and r["name"] == "core" and r["rc"] == 0 and r["dim"] == 32]
    if len(ac) >= 2:
        lo, hi = min(ac, key=lambda r: r["n"]), max(ac, key=lambda r: r["n"])
        if lo["peak_gib"] is not None and hi["peak_gib"] is not None:
            g = (hi["peak_gib"] - lo["peak_gib"]) / ((hi["n"] - lo["n"]) / 1e6)
            out.append((f"audit core peak RSS growth per 1M rows, {label(lo['n'])} -> {label(hi['n'])}",
                        f"{g:.4f} GiB ({lo['peak_gib']} -> {hi['peak_gib']} GiB)", "bounded (100M on one machine)", ""))
        out.append((f"audit core wall per 10M rows at {label(hi['n'])}", f"{hi['wall_s'] / hi['n'] * 1e7:.1f} s", "", ""))
    for r in b.rows:
        if r["kind"] == "audit" and r["name"] == "--items" and r["rc"] == 0:
            tgt = 180 if r["n"] <= 1_000_000 else 900
            out.append((f"audit --items wall, {label(r['n'])}", f"{r['wall_s']:.0f} s ({fmt(r.get('n_queries'))} queries)",
                        f"<= {tgt} s" + ("" if r["n"] in (1_000_000, 10_000_000) else " (target at 1M / 10M)"),
                        ok(r["wall_s"], tgt) if r["n"] in (1_000_000, 10_000_000) else ""))
    loc = b.find("ray", "local")
    for r in b.rows:
        if r["kind"] == "ray" and r["name"] != "local" and r["rc"] == 0 and loc:
            v = r["rows_per_s"] / loc["rows_per_s"]
            out.append((f"encode throughput {r['name']} / local, {label(r['n'])}", f"{v:.2f}", "", ""))
    return out


def projection(b: Bench) -> str:
    a = b.a
    N, nodes, cores = 10 ** 9, a.proj_nodes, a.proj_cores
    # per-core throughput: the local rqvae encode of the largest d = 128 file (rows per CPU second of
    # the child; Ray's workers are not children that time(1) waits for, so Ray rows use wall time)
    src = None
    enc = sorted([x for x in b.rows if x["kind"] == "encode" and x["name"] == "rqvae" and x["dim"] == 128
                  and x["rc"] == 0], key=lambda x: x["n"])
    if enc:
        r = enc[-1]
        secs = r.get("inproc_s") or r["wall_s"]
        src = (r, r["n"] / r["cpu_s"] if r.get("cpu_s") else r["n"] / secs / (os.cpu_count() or 1))
    ray1 = next((x for x in b.rows if x["kind"] == "ray" and x.get("workers") == 1 and x["rc"] == 0), None)
    L = ["\n## Projection: 10^9 items on 100 nodes (d = 128, rqvae model)\n"]
    if src is None:
        L.append("(no rqvae encode measured: no projection)")
        return "\n".join(L)
    r, rc = src
    cat = b.files["d128"].get(r["n"]) or next(iter(b.files["d128"].values()))
    B_read = cat.stat().st_size / r["n"] if cat.is_file() else 128 * 4 + 8
    out_p = Path(r.get("output", ""))
    if out_p.is_file():
        B_out = out_p.stat().st_size / r["n"]
    elif out_p.is_dir():
        B_out = sum(p.stat().st_size for p in out_p.rglob("*.parquet")) / r["n"]
    else:
        B_out = 8 + 4 * 4 + 8
    B_shuf = 8 + 8 + 8  # (core-SID key int64, item id int64, input order int64) per row
    t_cpu = N / (nodes * cores * rc)
    t_read = N * B_read / (nodes * a.proj_read_mbps * 1e6)
    t_shuf = N * B_shuf * (1 - 1 / nodes) / (nodes * a.proj_net_mbps * 1e6)
    t_write = N * B_out / (nodes * a.proj_read_mbps * 1e6)
    terms = {"encode compute": t_cpu, "read": t_read, "suffix shuffle": t_shuf, "write": t_write}
    dom = max(terms, key=terms.get)
    how = (f"{r['n']:,} rows / {r['cpu_s']} CPU s (user+sys of `{r['cmd'][:60]}...`)" if r.get("cpu_s")
           else f"{r['n']:,} rows / {(r.get('inproc_s') or r['wall_s'])} s / {r.get('workers') or 1} worker(s)")
    L += [
        "Measured inputs:",
        f"- r_core = {rc:,.0f} rows/s per core ({how}; includes Parquet decode, the model, the suffix bookkeeping and the write)",
        (f"- Ray, 1 worker: {ray1['n'] / (ray1.get('inproc_s') or ray1['wall_s']):,.0f} rows/s per worker (wall, "
         "includes starting the local cluster)") if ray1 else "- Ray, 1 worker: not measured",
        f"- B_read = {B_read:,.0f} bytes read per row (catalog file size / rows: int64 id + {cat.name.split('_d')[-1].split('.')[0]} float32 + attributes, uncompressed)",
        f"- B_shuffle = {B_shuf} bytes per row for the suffix pass (key int64, id int64, order int64); ids of strings cost their length instead of 8",
        f"- B_out = {B_out:,.1f} bytes written per row (codes output size / rows)",
        f"Assumed per node: C = {cores} cores, read/write bandwidth R = {a.proj_read_mbps} MB/s, network W = {a.proj_net_mbps} MB/s "
        f"(`--proj-cores`, `--proj-read-mbps`, `--proj-net-mbps`); P = {nodes} nodes, N = 10^9.",
        "",
        "| term | formula | seconds |",
        "|---|---|---|",
        f"| encode compute | N / (P x C x r_core) | {t_cpu:,.0f} |",
        f"| read | N x B_read / (P x R) | {t_read:,.0f} |",
        f"| suffix shuffle | N x B_shuffle x (1 - 1/P) / (P x W) | {t_shuf:,.0f} |",
        f"| write | N x B_out / (P x R) | {t_write:,.0f} |",
        "",
        f"Total shuffle volume N x B_shuffle = {N * B_shuf / 1e9:,.0f} GB ({N * B_shuf / nodes / 1e9:,.2f} GB per node); "
        f"catalog read N x B_read = {N * B_read / 1e12:,.2f} TB.",
        f"Dominant: **{dom}** ({terms[dom]:,.0f} s; the terms overlap in a streaming run, so the wall time is about "
        f"max(terms) = {terms[dom] / 60:,.1f} min, at most their sum = {sum(terms.values()) / 60:,.1f} min), "
        "plus the suffix pass's group-by of N records (sort of 24-byte records, O(N log N / P) per node) and the "
        "fit on a sample (independent of N).",
    ]
    return "\n".join(L)


# --------------------------------------------------------------------------------------------
def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", default=None, help="folder of the input catalogs (written when missing); "
                    "default: a temporary folder for sizes below 1M, else required")
    ap.add_argument("--sizes", default="1m,10m,50m", help="comma list of row counts (20k, 100k, 1m, 10m, 50m)")
    ap.add_argument("--only", default=",".join(ALL_STEPS), help="comma list of fit,encode,audit,ray")
    ap.add_argument("--methods", default=",".join(ALL_METHODS), help="fit methods")
    ap.add_argument("--max-steps", type=int, default=300, help="RQ-VAE-family step budget (same at every size)")
    ap.add_argument("--train-sample", type=int, default=None,
                    help="pass --train-sample N to every method whose fit takes it (default: sidkit's defaults)")
    ap.add_argument("--out", default="results.json", help="JSON results (rewritten after every step)")
    ap.add_argument("--work", default=None, help="models and outputs (default DATA/work)")
    ap.add_argument("--keep", action="store_true", help="keep --work at the end")
    ap.add_argument("--reuse-models", action="store_true", help="reuse prerequisite models found in --work")
    ap.add_argument("--prepare-only", action="store_true", help="write the input files and stop")
    ap.add_argument("--step-timeout", type=float, default=None, help="kill a step after this many seconds")
    ap.add_argument("--proj-nodes", type=int, default=100)
    ap.add_argument("--proj-cores", type=int, default=16)
    ap.add_argument("--proj-read-mbps", type=float, default=500.0)
    ap.add_argument("--proj-net-mbps", type=float, default=1000.0)
    a = ap.parse_args(argv)
    sizes = sorted({parse_size(s) for s in a.sizes.split(",") if s.strip()})
    a.only = [s.strip() for s in a.only.split(",") if s.strip()]
    bad = set(a.only) - set(ALL_STEPS)
    if bad:
        raise SystemExit(f"--only: unknown step(s) {sorted(bad)}; choose from {','.join(ALL_STEPS)}")
    a.methods = [s.strip() for s in a.methods.split(",") if s.strip()]
    if set(a.methods) - set(ALL_METHODS):
        raise SystemExit(f"--methods: choose from {','.join(ALL_METHODS)}")
    tmp = None
    if a.data is None:
        if max(sizes) >= 1_000_000:
            raise SystemExit("--data DIR is required for sizes of 1M rows and more")
        tmp = tempfile.mkdtemp(prefix="sidkit-scale-")
        a.data = tmp
    data = Path(a.data)
    a.work = a.work or str(data / "work")
    log(f"# sidkit scale benchmark: sizes {', '.join(label(n) for n in sizes)}; steps {', '.join(a.only)}; "
        f"{os.cpu_count()} CPUs, load avg {os.getloadavg()[0]:.1f}")
    files = prepare(data, sizes)
    if a.prepare_only:
        return 0
    b = Bench(a, files)
    t0 = time.perf_counter()
    try:
        for s in ALL_STEPS:
            if s in a.only:
                getattr(b, f"run_{s}")()
    finally:
        b.save()
        text = report(b)
        log(text)
        log(f"\n(total {time.perf_counter() - t0:.0f} s; results in {a.out})")
        Path(a.out).with_suffix(".md").write_text(text + "\n")
        if not a.keep:
            shutil.rmtree(a.work, ignore_errors=True)
        if tmp:
            shutil.rmtree(tmp, ignore_errors=True)
    return 0 if all(r["rc"] == 0 for r in b.rows) else 1


if __name__ == "__main__":
    sys.exit(main())
