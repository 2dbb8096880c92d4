"""SID quality on the real catalogs of ../shared/data: rqkmeans and rqvae with default settings.

    python benchmarks/quality.py [--seeds 0,1,2] [--datasets amazon18_scientific,amazon14_office]
                                 [--methods rqkmeans,rqvae] [--json out.json]

For each dataset x method x seed: ``sidkit.fit(items.parquet, method=..., levels=3,
codebook_size=256, seed=...)`` into a temporary directory (deleted afterwards), then one table
row: collision rate (1 - distinct 3-token core SIDs / items), unique-SID ratio, per-level
utilization (used codes / 256) and perplexity (exp of the token entropy), reconstruction MSE
(of the input embedding, per element) and wall time (the whole ``fit`` call: read, train, encode,
report, write). The data is read by path and never copied; the script exits 0 with a message
where ../shared/data is absent.

Reference (../shared/data/README.md): the RQ-VAE index published with the Scientific data
(CollisionGenRec ``rqvae_native``, different embeddings) has a 22.9% 3-token collision rate.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
DATA = ROOT.parent / "shared" / "data"
DATASETS = ("amazon18_scientific", "amazon14_office")
REFERENCE = {"amazon18_scientific": ("published RQ-VAE index (CollisionGenRec rqvae_native)", 0.229)}


def fmt_levels(vals, spec):
    return "/".join(format(v, spec) for v in vals)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--seeds", default="0", help="comma list of seeds (default 0)")
    ap.add_argument("--datasets", default=",".join(DATASETS))
    ap.add_argument("--methods", default="rqkmeans,rqvae")
    ap.add_argument("--json", help="also write the rows as JSON to this path")
    args = ap.parse_args()
    seeds = [int(s) for s in args.seeds.split(",") if s.strip()]
    methods = [m.strip() for m in args.methods.split(",") if m.strip()]
    datasets = [d.strip() for d in args.datasets.split(",") if d.strip()]

    present = [d for d in datasets if (DATA / d / "items.parquet").is_file()]
    for d in datasets:
        if d not in present:
            print(f"skip {d}: {DATA / d / 'items.parquet'} not found (../shared/data is absent)")
    if not present:
        print("nothing to run: no dataset found under", DATA)
        return 0

    import sidkit
    import torch

    print(f"# sidkit {sidkit.__version__}, torch {torch.__version__} ({torch.get_num_threads()} threads), "
          f"{platform.machine()}, {os.cpu_count()} cpus, {time.strftime('%Y-%m-%d %H:%M')}")
    rows = []
    hdr = (f"{'dataset':<20} {'method':<9} {'seed':>4} {'items':>6} {'collision':>9} {'unique':>7} "
           f"{'utilization L1/L2/L3':>22} {'perplexity L1/L2/L3':>20} {'recon MSE':>10} {'fit s':>7} {'wall s':>7}")
    print(hdr)
    print("-" * len(hdr))
    for d in present:
        items = DATA / d / "items.parquet"
        for m in methods:
            for seed in seeds:
                with tempfile.TemporaryDirectory(prefix="sidkit-quality-") as tmp:
                    t = time.perf_counter()
                    res = sidkit.fit(items, out=Path(tmp) / "model", method=m, levels=3, codebook_size=256, seed=seed)
                    wall = time.perf_counter() - t
                s = res.summary
                ppl = [lv["perplexity"] for lv in res.report["levels"]]
                row = {"dataset": d, "method": m, "seed": seed, "items": s["n_items"],
                       "collision_rate": s["collision_rate"], "unique_sid_ratio": s["unique_sid_ratio"],
                       "utilization": s["utilization"], "perplexity": ppl,
                       "reconstruction_mse": s["reconstruction_mse"], "fit_seconds": s["fit_seconds"],
                       "wall_seconds": wall}
                rows.append(row)
                print(f"{d:<20} {m:<9} {seed:>4} {row['items']:>6} {row['collision_rate']:>9.2%} "
                      f"{row['unique_sid_ratio']:>7.2%} {fmt_levels(row['utilization'], '.2f'):>22} "
                      f"{fmt_levels(ppl, '.0f'):>20} {row['reconstruction_mse']:>10.3e} "
                      f"{row['fit_seconds']:>7.1f} {wall:>7.1f}", flush=True)
    if len(seeds) > 1:
        print("\nmean over seeds (collision rate, min-max):")
        for d in present:
            for m in methods:
                cr = [r["collision_rate"] for r in rows if r["dataset"] == d and r["method"] == m]
                print(f"  {d:<20} {m:<9} {statistics.mean(cr):.2%} ({min(cr):.2%}-{max(cr):.2%})")
    print("\nreference: 3-token collision rate of published indexes (../shared/data/README.md, different embeddings):")
    for d, (what, v) in REFERENCE.items():
        print(f"  {d:<20} {what}: {v:.1%}")
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
