"""QuaSID / AdaSID against the baselines on the real catalogs of ../shared/data (issue 4).

    python benchmarks/methods.py [--seeds 3] [--datasets amazon18_scientific,amazon14_office]
        [--methods rqkmeans,rqvae,rqvae+sinkhorn,quasid,adasid] [--seed-start 0] [--max-steps N]
        [--extra 'quasid:lambda_hmr=1.0;adasid:lambda_rep_max=1.0'] [--no-interactions] [--json out.json]

Every method runs with 3 x 256 codes and the same seeds; quasid/adasid get the dataset's
interactions.parquet (training split only). ``--extra`` adds variants: ``name:block.key=value,...``
(block defaults to the method's own: ``quasid:lambda_hmr=1`` or ``adasid:mining.h_max=0``).
One row per dataset x method (mean over seeds): collision rate, conflict collision rate, conflict
item rate, collided-item fraction, benign share of the remaining colliding pairs, per-level
utilization and normalized perplexity, locality gap, reconstruction MSE, fit time. Then the
issue's target checks against rqvae in the same run, as ratios:
conflict item rate <= 0.3x, collision rate < 1x, MSE <= 1.1x, locality gap >= 0.9x, fit time <= 1.5x.
Timings on a shared machine are noisy; compare within one run.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
DATA = ROOT.parent / "shared" / "data"
DATASETS = ("amazon18_scientific", "amazon14_office")
METHODS = ("rqkmeans", "rqvae", "rqvae+sinkhorn", "quasid", "adasid")
KEYS = ("collision_rate", "conflict_collision_rate", "conflict_item_rate", "collided_item_fraction", "benign_share",
        "locality_gap", "recon_mse", "fit_s", "steps", "s_per_step")


def parse_extra(text: str) -> dict[str, tuple[str, dict]]:
    out = {}
    for part in filter(None, (p.strip() for p in (text or "").split(";"))):
        base, _, kvs = part.partition(":")
        blocks: dict = {}
        label = [base]
        for kv in filter(None, (x.strip() for x in kvs.split(","))):
            k, _, v = kv.partition("=")
            blk, _, key = k.rpartition(".")
            blk = blk or base
            try:
                val = json.loads(v)
            except json.JSONDecodeError:
                val = v
            blocks.setdefault(blk, {})[key] = val
            label.append(f"{key}={v}")
        out["/".join(label)] = (base, blocks)
    return out


def run_one(ds: str, method: str, blocks: dict, seed: int, args, tmp: Path) -> dict:
    import sidkit

    items = DATA / ds / "items.parquet"
    inter = DATA / ds / "interactions.parquet"
    opts: dict = {"levels": 3, "codebook_size": 256, "seed": seed}
    if args.max_steps:
        opts["max_steps"] = args.max_steps
    m = method
    if method == "rqvae+sinkhorn":
        m, opts["sinkhorn"] = "rqvae", True
    opts["method"] = m
    if m in ("quasid", "adasid") and not args.no_interactions and inter.is_file():
        opts["interactions"] = str(inter)
    if m == "rqkmeans":
        opts.pop("max_steps", None)
    opts.update(blocks)
    t0 = time.perf_counter()
    r = sidkit.fit(items, out=tmp / f"{ds}_{method}_{seed}", **opts)
    wall = time.perf_counter() - t0
    sem, col = r.report["semantic"], r.report["collision"]
    meta = json.loads((r.model_dir / "sidkit.json").read_text())
    steps = meta.get("training", {}).get("steps", 0)
    return {
        "collision_rate": col["collision_rate"],
        "conflict_collision_rate": sem["conflict_collision_rate"],
        "conflict_item_rate": sem["conflict_item_rate"],
        "collided_item_fraction": col["collided_item_fraction"],
        "benign_share": sem["benign_collision_rate"],
        "locality_gap": sem["locality_gap"],
        "recon_mse": r.summary["reconstruction_mse"],
        "fit_s": r.summary["fit_seconds"],
        "wall_s": wall,
        "steps": steps,
        "s_per_step": r.summary["fit_seconds"] / steps if steps else 0.0,
        "util": [lv["utilization"] for lv in r.report["levels"]],
        "nppl": [lv["normalized_perplexity"] for lv in r.report["levels"]],
    }


def mean_row(rows: list[dict]) -> dict:
    out = {k: statistics.fmean(r[k] for r in rows) for k in KEYS}
    out["sd_collision_rate"] = statistics.pstdev([r["collision_rate"] for r in rows]) if len(rows) > 1 else 0.0
    L = len(rows[0]["util"])
    out["util"] = [statistics.fmean(r["util"][l] for r in rows) for l in range(L)]
    out["nppl"] = [statistics.fmean(r["nppl"][l] for r in rows) for l in range(L)]
    out["n_seeds"] = len(rows)
    return out


def ratio(a: float, b: float) -> float:
    if b == 0:
        return 0.0 if a == 0 else float("inf")
    return a / b


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--seeds", type=int, default=3, help="number of seeds (default 3)")
    ap.add_argument("--seed-start", type=int, default=0, help="first seed (default 0): seeds are start..start+n-1")
    ap.add_argument("--datasets", default=",".join(DATASETS))
    ap.add_argument("--methods", default=",".join(METHODS))
    ap.add_argument("--extra", default="", help="extra variants, e.g. 'quasid:lambda_hmr=1.0;adasid:lambda_rep_max=1'")
    ap.add_argument("--max-steps", type=int, default=None, help="RQ-VAE step budget for every method (default: sidkit's)")
    ap.add_argument("--no-interactions", action="store_true", help="fit quasid/adasid without the alignment term")
    ap.add_argument("--threads", type=int, default=1, help="torch threads (default 1: fastest on a shared machine)")
    ap.add_argument("--json", help="also write all rows as JSON here")
    args = ap.parse_args()
    import torch

    torch.set_num_threads(args.threads)
    datasets = [d for d in args.datasets.split(",") if d]
    present = [d for d in datasets if (DATA / d / "items.parquet").is_file()]
    if not present:
        print("nothing to run: no dataset found under", DATA)
        return 0
    variants = {m: (m, {}) for m in args.methods.split(",") if m}
    variants.update(parse_extra(args.extra))
    results: dict = {}
    with tempfile.TemporaryDirectory(prefix="sidkit-methods-") as td:
        for ds in present:
            for seed in range(args.seed_start, args.seed_start + args.seeds):
                for label, (m, blocks) in variants.items():
                    row = run_one(ds, m, blocks, seed, args, Path(td))
                    results.setdefault(ds, {}).setdefault(label, []).append(row)
                    print(f"[{ds} seed {seed}] {label}: CR {row['collision_rate']:.4f} conflict-items {row['conflict_item_rate']:.5f} "
                          f"MSE {row['recon_mse']:.3g} gap {row['locality_gap']:.3f} fit {row['fit_s']:.1f}s ({row['steps']} steps)", flush=True)
    summary = {ds: {lab: mean_row(rows) for lab, rows in per.items()} for ds, per in results.items()}
    print()
    hdr = ("| dataset | method | seeds | CR | conflict CR | conflict items | collided items | benign share | "
           "util L1/L2/L3 | norm. PPL L1/L2/L3 | locality gap | recon MSE | fit s | steps | ms/step |")
    print(hdr)
    print("|" + "---|" * (hdr.count("|") - 1))
    for ds, per in summary.items():
        for lab, r in per.items():
            print(f"| {ds} | {lab} | {r['n_seeds']} | {r['collision_rate']:.4f} ± {r['sd_collision_rate']:.4f} | "
                  f"{r['conflict_collision_rate']:.4f} | {r['conflict_item_rate']:.5f} | {r['collided_item_fraction']:.4f} | "
                  f"{r['benign_share']:.3f} | {'/'.join(f'{u:.2f}' for u in r['util'])} | "
                  f"{'/'.join(f'{p:.2f}' for p in r['nppl'])} | {r['locality_gap']:.3f} | {r['recon_mse']:.3g} | {r['fit_s']:.1f} | {r['steps']:.0f} | {1000 * r['s_per_step']:.0f} |")
    print()
    print("| dataset | method | conflict items / rqvae (<= 0.3) | CR / rqvae (< 1) | MSE / rqvae (<= 1.1) | gap / rqvae (>= 0.9) | fit time / rqvae (<= 1.5) |")
    print("|---|---|---|---|---|---|---|")
    checks = {}
    for ds, per in summary.items():
        base = per.get("rqvae")
        if not base:
            continue
        for lab, r in per.items():
            if lab.split("/")[0] not in ("quasid", "adasid") and not lab.startswith("rqvae+"):
                continue
            c = {"conflict_items": ratio(r["conflict_item_rate"], base["conflict_item_rate"]),
                 "collision_rate": ratio(r["collision_rate"], base["collision_rate"]),
                 "mse": ratio(r["recon_mse"], base["recon_mse"]),
                 "locality_gap": ratio(r["locality_gap"], base["locality_gap"]),
                 "fit_time": ratio(r["fit_s"], base["fit_s"])}
            ok = {"conflict_items": c["conflict_items"] <= 0.3 or r["conflict_item_rate"] <= base["conflict_item_rate"] == 0,
                  "collision_rate": c["collision_rate"] < 1, "mse": c["mse"] <= 1.1,
                  "locality_gap": c["locality_gap"] >= 0.9, "fit_time": c["fit_time"] <= 1.5}
            checks.setdefault(ds, {})[lab] = {"ratios": c, "pass": ok}
            cell = lambda k: f"{c[k]:.2f} {'ok' if ok[k] else 'MISS'}"
            print(f"| {ds} | {lab} | {cell('conflict_items')} | {cell('collision_rate')} | {cell('mse')} | "
                  f"{cell('locality_gap')} | {cell('fit_time')} |")
    if args.json:
        Path(args.json).write_text(json.dumps({"runs": results, "mean": summary, "checks": checks}, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
