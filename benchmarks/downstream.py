"""Downstream benchmark (METHODS.md §6.2): Recall@K / NDCG@K of SASRec over each tokenizer's SIDs.

For each shared catalog, fit codes with every method in ``sidkit.config.METHODS`` that this
script knows (rqkmeans, rqvae, quasid, adasid, kae with its suffix; missing ones are skipped with a note), evaluate
them together with the most-popular and sasrec-id baselines (3 downstream seeds, one tokenizer
seed), then print per catalog the table and, averaged over the catalogs, the relative Recall@10
delta of each method vs rqvae with its paired-bootstrap 95 % interval.

    python benchmarks/downstream.py [--datasets amazon18_scientific,amazon14_office]
        [--methods rqvae,rqkmeans,quasid,adasid,kae] [--seeds 3] [--epochs 30] [--max-steps 2000]
        [--json out.json] [--keep DIR]

Runtime on 2 loaded CPU cores: tens of minutes (each downstream run is a few minutes).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
DATA = REPO.parent / "shared" / "data"
WANTED = ("rqvae", "rqkmeans", "quasid", "adasid", "kae")  # rqvae first: the reference of the deltas


def log(*a):
    print(*a, file=sys.stderr, flush=True)


def fit_codes(ds: str, method: str, out: Path, max_steps: int | None) -> dict:
    import sidkit

    opts: dict = {"method": method, "seed": 0}
    if method not in ("rqkmeans", "kae") and max_steps:
        opts["max_steps"] = max_steps
    inter = DATA / ds / "interactions.parquet"
    if method in ("quasid", "adasid"):
        opts["interactions"] = str(inter)  # alignment term: training split only
    t = time.perf_counter()
    r = sidkit.fit(DATA / ds / "items.parquet", out=out, **opts)
    return {"fit_seconds": time.perf_counter() - t, "collision_rate": r.summary["collision_rate"]}


def fmt_table(res: dict) -> str:
    head = f"{'table':<14}{'R@5':>16}{'R@10':>16}{'R@20':>16}{'N@10':>16}{'N@20':>16}  {'dR@10 vs ' + res['reference']:<30}{'CR':>7}"
    lines = [head, "-" * len(head)]
    for r in res["rows"]:
        cells = "".join(f"{r[k]:>9.4f}±{r[k + '_std']:.4f}" for k in ("recall@5", "recall@10", "recall@20", "ndcg@10", "ndcg@20"))
        d = "reference" if r["name"] == res["reference"] else (
            f"{r['delta_recall@10']:+6.1%} [{r['delta_recall@10_ci'][0]:+.1%}, {r['delta_recall@10_ci'][1]:+.1%}]"
            + (" *" if r["delta_resolved"] else ""))
        cr = f"{r['collision_rate']:.1%}" if "collision_rate" in r else ""
        lines.append(f"{r['name']:<14}{cells}  {d:<30}{cr:>7}")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--datasets", default="amazon18_scientific,amazon14_office")
    ap.add_argument("--methods", default=",".join(WANTED))
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--epochs", type=int, default=None)
    ap.add_argument("--max-steps", type=int, default=None, help="RQ-VAE step budget for rqvae/quasid/adasid")
    ap.add_argument("--json", type=Path, default=None)
    ap.add_argument("--keep", type=Path, default=None, help="keep the fitted model directories here")
    args = ap.parse_args()

    from sidkit.config import METHODS
    from sidkit.eval import evaluate
    from sidkit.eval.bootstrap import paired_bootstrap  # noqa: F401  (documented entry point)

    methods = [m for m in args.methods.split(",") if m]
    notes = [f"{m}: not in sidkit.config.METHODS {METHODS}; skipped" for m in methods if m not in METHODS]
    methods = [m for m in methods if m in METHODS]
    for n in notes:
        log("note:", n)
    root = args.keep or Path(tempfile.mkdtemp(prefix="sidkit-downstream-"))
    root.mkdir(parents=True, exist_ok=True)
    results: dict = {"datasets": {}, "notes": notes, "methods": methods}
    for ds in [d for d in args.datasets.split(",") if d]:
        fits, paths, names = {}, [], []
        for m in methods:
            out = root / f"{ds}_{m}"
            log(f"[{ds}] fit {m} ...")
            try:
                fits[m] = fit_codes(ds, m, out, args.max_steps)
            except Exception as e:  # a method under construction must not sink the benchmark
                msg = f"{ds}/{m}: fit failed ({type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}); skipped"
                log("note:", msg)
                results["notes"].append(msg)
                continue
            log(f"[{ds}] fit {m}: {fits[m]['fit_seconds']:.0f} s, collision rate {fits[m]['collision_rate']:.2%}")
            paths.append(out)
            names.append(m)
        t0 = time.perf_counter()

        def prog(stage, done, total, info):
            if done < total:
                log(f"[{ds}] {stage} epoch {done} valid R@10 {info.get('valid_recall@10', float('nan')):.4f} ({time.perf_counter() - t0:.0f} s)")

        res = evaluate(paths, DATA / ds / "interactions.parquet", names=names, seeds=tuple(range(args.seeds)),
                       epochs=args.epochs, progress=prog)
        res["fits"] = fits
        results["datasets"][ds] = res
        print(f"\n== {ds}: {res['n_users']:,} test users, {res['n_items']:,} items, {args.seeds} downstream seeds, "
              f"random R@10 = {res['random_recall@10']:.4f} ({res['seconds']:.0f} s)")
        print(fmt_table(res), flush=True)
        if args.json:
            args.json.write_text(json.dumps(results, indent=2, default=str))

    # average over catalogs of the relative R@10 delta vs the reference (rqvae)
    dss = list(results["datasets"].values())
    if dss:
        print("\n== relative Recall@10 vs", dss[0]["reference"], "averaged over", len(dss), "catalog(s)")
        print("(per-catalog paired bootstrap over users, 95 % interval; the average interval is the mean of the endpoints, a rough guide)")
        names_all = [r["name"] for r in dss[0]["rows"]]
        summary = {}
        for name in names_all[1:]:
            per = [next((r for r in d["rows"] if r["name"] == name), None) for d in dss]
            per = [r for r in per if r is not None]
            if not per:
                continue
            mean = float(np.mean([r["delta_recall@10"] for r in per]))
            lo = float(np.mean([r["delta_recall@10_ci"][0] for r in per]))
            hi = float(np.mean([r["delta_recall@10_ci"][1] for r in per]))
            res_flags = ["yes" if r["delta_resolved"] else "no" for r in per]
            summary[name] = {"delta": mean, "ci_mean": [lo, hi], "resolved_per_catalog": res_flags}
            print(f"  {name:<14}{mean:+7.1%}  [{lo:+.1%}, {hi:+.1%}]  resolved per catalog: {', '.join(res_flags)}")
        results["average"] = summary
        if args.json:
            args.json.write_text(json.dumps(results, indent=2, default=str))
    for n in results["notes"]:
        print("note:", n)


if __name__ == "__main__":
    main()
