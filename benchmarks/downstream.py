"""Downstream benchmark (METHODS.md §6.2): Recall@K / NDCG@K of a recommender over each tokenizer's SIDs.

For each shared catalog, fit codes with every requested method (rqkmeans, rqvae, quasid, adasid,
kae; ``METHOD:zcr`` fits it with ``--dedup zcr``, ``METHOD:none`` with ``--dedup none``,
``METHOD+balanced`` with that boolean option switched on, ``METHOD@block.key=VALUE`` with one
option of a config block set, e.g. ``quasid@align.weight=1e-3``, ``METHOD@key=VALUE`` with a flat
fit option, e.g. ``rqvae@init=rqkmeans@latent_dim=384``) and
``--fit-seeds`` tokenizer seeds, add the published indexes of ../shared (``--published``, the
Scientific catalog), evaluate every table under one protocol (``--model sasrec-sid`` or
``tiger``, ``--seeds`` downstream seeds) with the most-popular and sasrec-id baselines, then print
per catalog the table and one row per method pooled over its fit seeds: mean Recall@10 (and
ItemHit@10 with tiger) and the relative change vs rqvae with a 95 % interval from a two-level
bootstrap (fit seeds of each method drawn with replacement, test users drawn paired), so the
interval includes tokenizer variance. Last, the same pooled over both catalogs.

    python benchmarks/downstream.py [--datasets amazon18_scientific,amazon14_office]
        [--methods rqvae,rqkmeans,quasid,adasid,kae,rqvae:zcr] [--fit-seeds 3] [--seeds 3]
        [--model sasrec-sid|tiger] [--published letter_native,quasid_native,...] [--epochs 30]
        [--max-steps 2000] [--json out.json] [--keep DIR]

Runtime on 2 loaded CPU cores: tens of minutes with sasrec-sid (each downstream run is a minute
or two); TIGER training takes about 20 minutes per table and seed on Scientific.
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


def fit_codes(ds: str, spec: str, out: Path, max_steps: int | None, seed: int = 0) -> dict:
    import sidkit

    head, _, dedup = spec.partition(":")
    head, *sets = head.split("@")  # quasid@align.weight=1e-3: one option of a config block
    method, *flags = head.split("+")  # rqkmeans+balanced: a boolean fit option switched on
    opts: dict = {"method": method, "seed": seed, "dedup": dedup or "suffix", **{f: True for f in flags}}
    for kv in sets:
        key, _, val = kv.partition("=")
        block, _, name = key.partition(".")
        try:
            value = json.loads(val)
        except json.JSONDecodeError:  # a bare word: rqvae@init=rqkmeans
            value = val
        if name:
            opts.setdefault(block, {})[name] = value
        else:  # a flat fit option: rqvae@init=rqkmeans, quasid@latent_dim=384
            opts[block] = value
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


def pooled_delta(per_user: dict, groups: dict, ref: str, key: str, n_boot: int = 1000, seed: int = 0) -> dict:
    """Per method: mean of ``key`` over its fit seeds and users, and the relative change vs ``ref``
    with a two-level bootstrap (:func:`sidkit.eval.bootstrap.pooled_bootstrap`: fit seeds with
    replacement per method, users paired). ``groups``: method -> row indices (one per fit seed);
    ``per_user[key]``: per row, per user."""
    from sidkit.eval.bootstrap import pooled_bootstrap

    out = pooled_bootstrap(per_user[key], groups, ref, n_resamples=n_boot, seed=seed)
    for r in out.values():
        r["fit_seeds"], r["per_seed"] = r["tables"], r["per_table"]
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--datasets", default="amazon18_scientific,amazon14_office")
    ap.add_argument("--methods", default=",".join(WANTED))
    ap.add_argument("--fit-seeds", type=int, default=1, help="tokenizer seeds per method (0, 1, ...)")
    ap.add_argument("--seeds", type=int, default=3, help="downstream training seeds")
    ap.add_argument("--model", default="sasrec-sid", choices=["sasrec-sid", "tiger"])
    ap.add_argument("--beam", type=int, default=20)
    ap.add_argument("--published", default="", help="comma list of ../shared reference_sids indexes (Scientific), e.g. letter_native,quasid_native")
    ap.add_argument("--epochs", type=int, default=None)
    ap.add_argument("--max-steps", type=int, default=None, help="RQ-VAE step budget for rqvae/quasid/adasid")
    ap.add_argument("--json", type=Path, default=None)
    ap.add_argument("--keep", type=Path, default=None, help="keep the fitted model directories here")
    args = ap.parse_args()

    from sidkit.config import METHODS
    from sidkit.eval import evaluate

    methods = [m for m in args.methods.split(",") if m]
    notes = [f"{m}: not in sidkit.config.METHODS {tuple(METHODS)}; skipped" for m in methods if m.partition(":")[0].split("@")[0].split("+")[0] not in METHODS]
    methods = [m for m in methods if m.partition(":")[0].split("@")[0].split("+")[0] in METHODS]
    for n in notes:
        log("note:", n)
    root = args.keep or Path(tempfile.mkdtemp(prefix="sidkit-downstream-"))
    root.mkdir(parents=True, exist_ok=True)
    results: dict = {"datasets": {}, "notes": notes, "methods": methods, "pooled": {}}
    draws_by_ds: dict = {}
    for ds in [d for d in args.datasets.split(",") if d]:
        fits, paths, names, groups = {}, [], [], {}
        for m in methods:
            for fs in range(args.fit_seeds):
                name = m if args.fit_seeds == 1 else f"{m}@{fs}"
                out = root / f"{ds}_{m.replace(':', '_').replace('+', '_')}_s{fs}"
                log(f"[{ds}] fit {name} ...")
                try:
                    fits[name] = fit_codes(ds, m, out, args.max_steps, seed=fs)
                except Exception as e:  # a method under construction must not sink the benchmark
                    msg = f"{ds}/{name}: fit failed ({type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}); skipped"
                    log("note:", msg)
                    results["notes"].append(msg)
                    continue
                log(f"[{ds}] fit {name}: {fits[name]['fit_seconds']:.0f} s, collision rate {fits[name]['collision_rate']:.2%}")
                groups.setdefault(m, []).append(len(paths))
                paths.append(out)
                names.append(name)
        ref_dir = DATA / ds / "raw" / "reference_sids"
        for pub in [p for p in args.published.split(",") if p]:
            f = next(iter(sorted(ref_dir.glob(f"{pub}.*.index.json"))), None) if ref_dir.exists() else None
            if f is None:
                results["notes"].append(f"{ds}: no published index {pub!r} in {ref_dir}; skipped")
                continue
            groups[f"published:{pub}"] = [len(paths)]
            paths.append(f)
            names.append(f"pub:{pub}")
        t0 = time.perf_counter()

        def prog(stage, done, total, info):
            if done < total:
                score = f"valid R@10 {info['valid_recall@10']:.4f}" if "valid_recall@10" in info else "not validated (cannot be kept)"
                log(f"[{ds}] {stage} epoch {done} {score} ({time.perf_counter() - t0:.0f} s)")

        res = evaluate(paths, DATA / ds / "interactions.parquet", names=names, seeds=tuple(range(args.seeds)),
                       epochs=args.epochs, progress=prog, model=args.model, beam=args.beam, return_per_user=True)
        per_user = res.pop("per_user")
        res["fits"] = fits
        results["datasets"][ds] = res
        print(f"\n== {ds}: {res['n_users']:,} test users, {res['n_items']:,} items, {args.seeds} downstream seeds, "
              f"{args.model}, random R@10 = {res['random_recall@10']:.4f} ({res['seconds']:.0f} s)")
        print(fmt_table(res), flush=True)
        ref = methods[0] if methods else None
        if ref in groups:
            pooled = {}
            for key in ["recall@10"] + (["itemhit@10"] if "itemhit@10" in per_user else []):
                pooled[key] = pooled_delta(per_user, groups, ref, key, seed=0)
            draws_by_ds[ds] = pooled
            print(f"\n-- {ds}: pooled over {args.fit_seeds} fit seed(s) x users (two-level bootstrap), vs {ref}")
            for m in groups:
                cells = []
                for key, pm in pooled.items():
                    r = pm[m]
                    cells.append(f"{key} {r['mean']:.4f} {r['delta']:+6.1%} [{r['ci'][0]:+.1%}, {r['ci'][1]:+.1%}]")
                print(f"  {m:<22}" + "   ".join(cells))
            results["pooled"][ds] = {key: {m: {k: v for k, v in r.items() if k != "draws"} for m, r in pm.items()}
                                     for key, pm in pooled.items()}
        if args.json:
            args.json.write_text(json.dumps(results, indent=2, default=str))

    # pooled over catalogs: the mean of the per-catalog relative changes, the same per bootstrap draw
    if len(draws_by_ds) > 1:
        dss = list(draws_by_ds.values())
        print(f"\n== pooled over {len(dss)} catalogs and fit seeds: relative change vs {methods[0]} (mean of the catalogs, 95 % interval)")
        results["pooled"]["catalogs"] = {}
        for key in dss[0]:
            for m in dss[0][key]:
                if not all(key in d and m in d[key] for d in dss):
                    continue
                delta = float(np.mean([d[key][m]["delta"] for d in dss]))
                draw = np.mean([d[key][m]["draws"] for d in dss], axis=0)
                ci = [float(np.quantile(draw, 0.025)), float(np.quantile(draw, 0.975))]
                excl = "excludes 0" if ci[0] > 0 or ci[1] < 0 else "includes 0"
                results["pooled"]["catalogs"].setdefault(key, {})[m] = {"delta": delta, "ci": ci}
                print(f"  {key:<11}{m:<22}{delta:+7.1%}  [{ci[0]:+.1%}, {ci[1]:+.1%}]  {excl}")
        if args.json:
            args.json.write_text(json.dumps(results, indent=2, default=str))
    for n in results["notes"]:
        print("note:", n)


if __name__ == "__main__":
    main()
