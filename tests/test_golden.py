"""Golden outputs: every method's codes, suffixes and report numbers for fixed inputs and seeds.

Recorded before a refactor and asserted after it, so a restructuring that changes behaviour
shows up here. The hashes depend on the floating-point path of this machine kind (CPU, numpy,
torch and faiss builds): on another platform the test skips and says how to re-record.

    python tests/test_golden.py --record [CASE ...]   # rewrite tests/golden.json (only on purpose)
"""

from __future__ import annotations

import hashlib
import json
import platform
import sys
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

REPO = Path(__file__).resolve().parents[1]
GOLDEN = Path(__file__).with_name("golden.json")
OFFICE = REPO.parent / "shared" / "data" / "amazon14_office"
EXAMPLES = REPO / "examples"

COMMON = {"levels": 3, "codebook_size": 32, "seed": 0}
RQVAE = {**COMMON, "max_steps": 120, "eval_every": 40}
CASES = {
    "rqkmeans": {"method": "rqkmeans", **COMMON},
    "rqkmeans-balanced": {"method": "rqkmeans", "balanced": True, **COMMON},
    "rqvae": {"method": "rqvae", **RQVAE},
    "rqvae-sinkhorn": {"method": "rqvae", "sinkhorn": True, **RQVAE},
    "quasid": {"method": "quasid", "interactions": "{inter}", **RQVAE},
    "adasid": {"method": "adasid", "interactions": "{inter}", **RQVAE},
    "kae": {"method": "kae", "attributes": "brand,categories", "seed": 0},
    "kae-residual": {"method": "kae", "attributes": "brand,categories", "residual_levels": 1, "codebook_size": 16,
                     "residual_method": "rqkmeans", "seed": 0},
}
DATASETS = {"examples": (EXAMPLES, None), "office": (OFFICE, 1200)}


def platform_key() -> dict:
    import faiss
    import torch

    flags = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("flags"):
                have = set(line.split(":", 1)[1].split())
                flags = ",".join(f for f in ("avx2", "avx512f", "avx512_bf16", "amx_bf16", "fma") if f in have)
                break
    except OSError:
        pass
    return {"machine": platform.machine(), "cpu_flags": flags, "numpy": np.__version__,
            "torch": torch.__version__, "faiss": faiss.__version__}


def _items(tmp: Path, name: str) -> tuple[Path, Path]:
    folder, n = DATASETS[name]
    items, inter = folder / "items.parquet", folder / "interactions.parquet"
    if n is None:
        return items, inter
    t = pq.read_table(items).slice(0, n)
    pq.write_table(t, tmp / f"{name}.parquet")
    keep = pa.array(t.column("item_id").to_pylist())
    it = pq.read_table(inter)
    import pyarrow.compute as pc

    pq.write_table(it.filter(pc.is_in(it.column("item_id"), value_set=keep)), tmp / f"{name}_inter.parquet")
    return tmp / f"{name}.parquet", tmp / f"{name}_inter.parquet"


def _numbers(obj, prefix=""):
    """Every number in a report (exact reprs), with its path."""
    if isinstance(obj, dict):
        for k in sorted(obj):
            if k == "seconds":  # timings
                continue
            yield from _numbers(obj[k], f"{prefix}.{k}")
    elif isinstance(obj, list):
        for i, v in enumerate(obj):
            yield from _numbers(v, f"{prefix}.{i}")
    elif isinstance(obj, (int, float)) and not isinstance(obj, bool):
        yield f"{prefix}={obj!r}"


def outputs(tmp: Path, dataset: str, case: str) -> dict:
    import sidkit

    items, inter = _items(tmp, dataset)
    opts = {k: (v.format(inter=inter) if isinstance(v, str) else v) for k, v in CASES[case].items()}
    out = tmp / f"{dataset}-{case}"
    sidkit.fit(items, out=out, **opts)
    t = pq.read_table(out / "codes.parquet")
    h = hashlib.sha256()
    h.update(json.dumps(t.column("item_id").to_pylist()).encode())
    h.update(np.asarray(t.column("sid").to_pylist(), np.int64).tobytes())
    h.update(np.asarray(t.column("suffix").to_pylist(), np.int64).tobytes())
    report = json.loads((out / "report.json").read_text())
    r = hashlib.sha256("\n".join(_numbers(report)).encode()).hexdigest()
    return {"codes": h.hexdigest(), "report": r}


PARAMS = [(d, c) for d in DATASETS for c in CASES]


@pytest.mark.slow
@pytest.mark.parametrize("dataset,case", PARAMS, ids=[f"{d}-{c}" for d, c in PARAMS])
def test_golden(tmp_path, dataset, case):
    if dataset == "office" and not (OFFICE / "items.parquet").exists():
        pytest.skip(f"{OFFICE} is absent (../shared/data not laid beside the repo)")
    golden = json.loads(GOLDEN.read_text())
    if golden["platform"] != platform_key():
        pytest.skip(f"golden outputs were recorded on {golden['platform']}, this is {platform_key()}; "
                    "re-record with 'python tests/test_golden.py --record' from a known-good commit")
    got = outputs(tmp_path, dataset, case)
    want = golden["cases"][f"{dataset}-{case}"]
    assert got["codes"] == want["codes"], f"{dataset}-{case}: codes or suffixes changed"
    assert got["report"] == want["report"], f"{dataset}-{case}: report numbers changed"


def record(only: list[str]) -> None:
    """Re-record every case, or only the named ones (``examples-kae office-kae``)."""
    import tempfile

    golden = json.loads(GOLDEN.read_text()) if only else {"platform": platform_key(), "cases": {}}
    if golden["platform"] != platform_key():
        raise SystemExit("this machine is not the one the golden file was recorded on; re-record every case")
    with tempfile.TemporaryDirectory() as d:
        for dataset, case in PARAMS:
            name = f"{dataset}-{case}"
            if only and name not in only:
                continue
            golden["cases"][name] = outputs(Path(d), dataset, case)
            print(name, golden["cases"][name], flush=True)
    GOLDEN.write_text(json.dumps(golden, indent=2) + "\n")


if __name__ == "__main__":
    if sys.argv[1:2] == ["--record"]:
        record(sys.argv[2:])
    else:
        print(__doc__)
