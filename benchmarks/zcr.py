"""ZCR vs suffix on the shared catalogs: collision rate, items moved, reconstruction cost, time.

For each catalog and method: one `sidkit fit` (default --dedup suffix), then `sidkit.dedup.table.dedup`
on its codes (the same codes as `fit --dedup zcr`, see tests/test_zcr.py), timed against the fit
in the same process. The published indexes of ../shared (native vs their ZCR variant) are
audited next to them.

    python benchmarks/zcr.py [--datasets amazon18_scientific,amazon14_office] [--methods rqkmeans,rqvae,quasid]
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import sidkit
from sidkit.dedup.table import dedup

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--datasets", default="amazon18_scientific,amazon14_office")
    ap.add_argument("--methods", default="rqkmeans,rqvae,quasid")
    ap.add_argument("--max-steps", type=int, default=None)
    ap.add_argument("--json", type=Path, default=None)
    a = ap.parse_args()
    rows = []
    with tempfile.TemporaryDirectory() as d:
        d = Path(d)
        for ds in a.datasets.split(","):
            items, inter = DATA / ds / "items.parquet", DATA / ds / "interactions.parquet"
            if not items.exists():
                print(f"skip {ds}: {items} is absent")
                continue
            for m in a.methods.split(","):
                opts = {"interactions": str(inter)} if m in ("quasid", "adasid") else {}
                if a.max_steps and m != "rqkmeans":
                    opts["max_steps"] = a.max_steps
                out = d / f"{ds}-{m}"
                t0 = time.perf_counter()
                r = sidkit.fit(items, out=out, method=m, seed=0, **opts)
                t_fit = time.perf_counter() - t0
                t0 = time.perf_counter()
                info = dedup(out / "codes.parquet", out, items, d / f"{ds}-{m}-zcr.parquet")
                t_zcr = time.perf_counter() - t0
                z = info["dedup"]
                mse = r.report.get("reconstruction", {}).get("mse")
                # reconstruction cost: refit-free, decode the ZCR codes with the same model
                import numpy as np
                import pyarrow.parquet as pq
                from sidkit.model.directory import load_model
                from sidkit.io.catalog import read_catalog
                from sidkit.features import fuse

                model = load_model(out)
                cat = read_catalog(items)
                X = fuse(cat.embeddings, model.fusion)
                zc = np.array(pq.read_table(d / f"{ds}-{m}-zcr.parquet").column("sid").to_pylist(), np.int32)
                rec = model.tokenizer.decode(zc)
                mse_z = float(((rec - X) ** 2).mean()) if rec is not None else None
                row = {"dataset": ds, "method": m, "n": r.summary["n_items"],
                       "collision_suffix": r.summary["collision_rate"], "collision_zcr": info["collision_rate"],
                       "moved": z["items_moved"], "unresolved_items": z["items_unresolved"],
                       "mse_suffix": mse, "mse_zcr": mse_z, "fit_s": round(t_fit, 1), "zcr_s": round(t_zcr, 2)}
                rows.append(row)
                print(json.dumps(row), flush=True)
        ref = DATA / "amazon18_scientific" / "raw" / "reference_sids"
        refs = []
        for p in sorted(ref.glob("*.index.json")) if ref.exists() else []:
            rep = sidkit.audit(p)
            refs.append({"index": p.name.split(".")[0], "n": rep["n_items"], "levels": rep["n_levels"],
                         "collision_rate": rep["collision"]["collision_rate"]})
    print()
    print("| catalog | method | items | collision (suffix core) | collision after ZCR | items moved | items left with suffix | recon MSE suffix -> ZCR | ZCR time / fit time |")
    print("|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        mse = f"{r['mse_suffix']:.5f} -> {r['mse_zcr']:.5f} ({100 * (r['mse_zcr'] / r['mse_suffix'] - 1):+.2f}%)" if r["mse_suffix"] else "n/a"
        print(f"| {r['dataset']} | {r['method']} | {r['n']:,} | {100 * r['collision_suffix']:.2f}% | {100 * r['collision_zcr']:.2f}% | "
              f"{r['moved']:,} | {r['unresolved_items']:,} | {mse} | {r['zcr_s']:.2f} s / {r['fit_s']:.1f} s = {r['zcr_s'] / r['fit_s']:.3f} |")
    if refs:
        print()
        print("| published index (Scientific) | items | tokens | collision rate of the tokens |")
        print("|---|---|---|---|")
        for r in refs:
            print(f"| {r['index']} | {r['n']:,} | {r['levels']} | {100 * r['collision_rate']:.2f}% |")
    if a.json:
        a.json.write_text(json.dumps({"rows": rows, "published": refs}, indent=2))


if __name__ == "__main__":
    main()
