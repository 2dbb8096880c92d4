"""Defaults study of the RQ-VAE family (issue 28): warm start, alignment weight, Sinkhorn, under TIGER.

Every cell is cached on disk, so the study can be stopped, resumed and extended (more fit seeds,
more downstream seeds, more configurations) without redoing work:

    ROOT/<catalog>/fits/<spec>_s<fit seed>/          a sidkit model directory (sidkit.fit)
    ROOT/<catalog>/eval/<model>/<spec>_s<f>_d<d>.npz  per test user Recall@10 (and ItemHit@10), with
                                                      the row's metrics as JSON in the same file

A spec is the one downstream.py reads: ``METHOD[+flag][@key=VALUE][@block.key=VALUE][:dedup]``,
e.g. ``quasid@init=rqkmeans@latent_dim=384``. Work runs in the order that makes partial results
poolable: (fit seed 0, downstream seed 0) for every spec, then fit seed 1, then downstream seed 1.
The report pools each spec over its fit seeds (per user, the mean over the downstream seeds
done), with the two-level bootstrap of downstream.py (fit seeds with replacement, users paired),
against ``--reference`` (rqvae) and against balanced rqkmeans, per catalog and over both; next to
it the SID-quality figures of each fit's report.json (collision rate, locality gap, reconstruction
MSE, conflict items) and their ratios to the reference.

    python benchmarks/defaults_study.py --root /work/study --datasets amazon18_scientific \\
        --specs rqvae,rqkmeans,quasid@init=rqkmeans@latent_dim=384 --fit-seeds 2 --seeds 2 [--model tiger]
    python benchmarks/defaults_study.py --root /work/study --report-only [--json out.json]
    python benchmarks/defaults_study.py --root /work/study --fit-only ...   # SID quality alone

``--cold-items F`` evaluates with F of the items held out of the recommender's training (the
model key becomes e.g. ``tiger-cold0.1``; Recall@10 on the held-out items' test users is pooled the
same way). ``--baselines`` adds most-popular and sasrec-id (tuned: ``--tuned-id``) per downstream seed.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from downstream import DATA, fit_codes, log, pooled_delta  # noqa: E402


def slug(spec: str) -> str:
    return re.sub(r"[^A-Za-z0-9.=-]+", "_", spec).strip("_")


def fit_dir(root: Path, ds: str, spec: str, fs: int) -> Path:
    return root / ds / "fits" / f"{slug(spec)}_s{fs}"


def ensure_fit(root: Path, ds: str, spec: str, fs: int, max_steps: int | None) -> Path:
    d = fit_dir(root, ds, spec, fs)
    if not (d / "sidkit.json").exists():
        d.parent.mkdir(parents=True, exist_ok=True)
        log(f"[{ds}] fit {spec} seed {fs} ...")
        info = fit_codes(ds, spec, d, max_steps, seed=fs)
        (d.parent / f"{d.name}.fit.json").write_text(json.dumps(info))
        log(f"[{ds}] fit {spec} seed {fs}: {info['fit_seconds']:.0f} s, collision rate {info['collision_rate']:.2%}")
    return d


def model_key(model: str, cold: float | None) -> str:
    return f"{model}-cold{cold:g}" if cold else model


def eval_file(root: Path, ds: str, key: str, name: str, seed: int) -> Path:
    return root / ds / "eval" / key / f"{name}_d{seed}.npz"


def run_eval(root: Path, ds: str, path, name: str, seed: int, model: str, cold: float | None, *, baseline: str | None = None,
             tuned_id: bool = False, seeds: tuple[int, ...] | None = None) -> None:
    """One cached run: a table (or, with ``baseline``, that baseline) at downstream ``seed`` (or
    ``seeds`` at once, stored under the first: a tuned baseline is tuned once for all of them)."""
    from sidkit.eval import evaluate

    key = model_key(model, cold)
    f = eval_file(root, ds, key, name, seed)
    if f.exists():
        return
    f.parent.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    kw = {"cold_items": cold} if cold else {}
    if baseline:
        kw["tune_id"] = tuned_id
    res = evaluate([path], DATA / ds / "interactions.parquet", model=model, seeds=seeds or (seed,), return_per_user=True,
                   baselines=(baseline,) if baseline else (), **kw)
    rows = res["rows"]
    i = len(rows) - 1 if baseline else 0
    pu = res["per_user"]
    arrays = {k: np.asarray(v[i], np.float64) for k, v in pu.items()}
    meta = {k: v for k, v in rows[i].items() if isinstance(v, (int, float, str, list, dict)) or v is None}
    meta["seconds"] = time.perf_counter() - t0
    for k in ("n_users", "n_items", "cold"):
        if k in res:
            meta[k] = res[k]
    tmp = f.with_name(f.name + ".tmp.npz")
    np.savez(tmp, meta=json.dumps(meta), **{k.replace("@", "_at_"): v for k, v in arrays.items()})
    tmp.replace(f)
    log(f"[{ds}] {key} {name} seed {seed}: R@10 {meta.get('recall@10', float('nan')):.4f} ({meta['seconds']:.0f} s)")


def load_eval(f: Path) -> tuple[dict, dict]:
    z = np.load(f)
    meta = json.loads(str(z["meta"]))
    return meta, {k.replace("_at_", "@"): z[k] for k in z.files if k != "meta"}


def quality(d: Path) -> dict:
    r = json.loads((d / "report.json").read_text())
    sem = r.get("semantic") or {}
    fit = json.loads((d.parent / f"{d.name}.fit.json").read_text()) if (d.parent / f"{d.name}.fit.json").exists() else {}
    return {"collision_rate": r["collision"]["collision_rate"] if isinstance(r.get("collision"), dict) else float("nan"),
            "locality_gap": sem.get("locality_gap", float("nan")),
            "conflict_item_rate": sem.get("conflict_item_rate", float("nan")),
            "recon_mse": (r.get("reconstruction") or {}).get("mse", float("nan")),
            "fit_seconds": fit.get("fit_seconds", float("nan"))}


def report(root: Path, datasets, specs, reference: str, vs2: str, out_json: Path | None) -> dict:
    out: dict = {"datasets": {}, "pooled": {}}
    draws_all: dict = {}
    for ds in datasets:
        dsout: dict = {"quality": {}, "downstream": {}}
        # SID quality of every fit
        print(f"\n== {ds}: SID quality (mean over fit seeds)")
        print(f"  {'spec':<58}{'fits':>5}{'CR':>8}{'gap':>7}{'gap/ref':>8}{'conflict':>9}{'MSE':>10}{'fit s':>7}")
        qref = None
        for spec in specs:
            dirs = sorted((root / ds / "fits").glob(f"{slug(spec)}_s*"))
            dirs = [d for d in dirs if d.is_dir() and re.fullmatch(re.escape(slug(spec)) + r"_s\d+", d.name) and (d / "report.json").exists()]
            if not dirs:
                continue
            qs = [quality(d) for d in dirs]
            q = {k: float(np.nanmean([x[k] for x in qs])) for k in qs[0]}
            q["per_fit"] = qs
            if spec == reference:
                qref = q
            dsout["quality"][spec] = q
            ratio = q["locality_gap"] / qref["locality_gap"] if qref else float("nan")
            print(f"  {spec:<58}{len(qs):>5}{q['collision_rate']:>8.2%}{q['locality_gap']:>7.3f}{ratio:>8.2f}"
                  f"{q['conflict_item_rate']:>9.4f}{q['recon_mse']:>10.2e}{q['fit_seconds']:>7.0f}")
        # downstream, per evaluation key
        evroot = root / ds / "eval"
        for keydir in sorted(p for p in evroot.glob("*") if p.is_dir()) if evroot.exists() else []:
            per_user: dict = {}
            groups: dict = {}
            rows_meta: dict = {}
            names = []
            for spec in specs + ["baseline:most-popular", "baseline:sasrec-id", "baseline:sasrec-id-tuned"]:
                fits: dict = {}
                for f in keydir.glob(f"{slug(spec)}_s*_d*.npz") if not spec.startswith("baseline:") else keydir.glob(f"{slug(spec)}_d*.npz"):
                    m = re.fullmatch(re.escape(slug(spec)) + r"(?:_s(\d+))?_d(\d+)\.npz", f.name)
                    if not m:
                        continue
                    meta, arr = load_eval(f)
                    fits.setdefault(int(m.group(1) or 0), []).append((int(m.group(2)), meta, arr))
                if not fits:
                    continue
                for fs, runs in sorted(fits.items()):
                    for key in runs[0][2]:
                        per_user.setdefault(key, []).append(np.mean([r[2][key] for r in runs], axis=0))
                    groups.setdefault(spec, []).append(len(names))
                    names.append(f"{spec}@{fs}")
                    rows_meta[f"{spec}@{fs}"] = {"downstream_seeds": sorted(r[0] for r in runs),
                                                 "recall@10": [r[1].get("recall@10") for r in runs],
                                                 "ndcg@10": [r[1].get("ndcg@10") for r in runs]}
            if reference not in groups:
                continue
            bad = {k: {len(v) for v in vals} for k, vals in per_user.items() if len({len(v) for v in vals}) != 1}
            if bad:  # every run of one key must score the same users (e.g. cold_recall@10: the cold users)
                print(f"  {keydir.name}: per-user arrays of different lengths {bad}; skipped")
                continue
            print(f"\n== {ds} {keydir.name}: pooled over fit seeds x users (two-level bootstrap)")
            res = {}
            for key in per_user:
                for ref in [r for r in (reference, vs2) if r in groups]:
                    pooled = pooled_delta(per_user, groups, ref, key, seed=0)
                    res.setdefault(key, {})[ref] = pooled
                    if ref == reference:
                        draws_all.setdefault(keydir.name, {}).setdefault(ds, {})[key] = pooled
            for spec in groups:
                cells = []
                for key in res:
                    for ref, pooled in res[key].items():
                        r = pooled[spec]
                        if ref == reference:
                            cells.append(f"{key} {r['mean']:.4f}")
                        if spec != ref:
                            cells.append(f"vs {ref.split('@')[0]} {r['delta']:+6.1%} [{r['ci'][0]:+.1%}, {r['ci'][1]:+.1%}]")
                runs = [rows_meta[f"{spec}@{i}"]["downstream_seeds"] for i in range(len(groups[spec]))] if spec in groups else []
                per_fit = " ".join(f"{x:.4f}" for x in res[next(iter(res))][reference][spec]["per_seed"])
                print(f"  {spec:<58}fits {len(groups[spec])} seeds {runs}  " + "  ".join(cells) + f"  per fit {per_fit}")
            dsout["downstream"][keydir.name] = {key: {ref: {s: {k: v for k, v in r.items() if k != "draws"} for s, r in pooled.items()}
                                                      for ref, pooled in refs.items()} for key, refs in res.items()}
            dsout["downstream"][keydir.name]["runs"] = rows_meta
        out["datasets"][ds] = dsout
    for key, by_ds in draws_all.items():
        if len(by_ds) < 2:
            continue
        print(f"\n== {key}: pooled over {len(by_ds)} catalogs (mean of the per-catalog relative changes vs {reference})")
        dss = list(by_ds.values())
        for metric in dss[0]:
            for spec in dss[0][metric]:
                if not all(metric in d and spec in d[metric] for d in dss):
                    continue
                delta = float(np.mean([d[metric][spec]["delta"] for d in dss]))
                draw = np.mean([d[metric][spec]["draws"] for d in dss], axis=0)
                ci = [float(np.quantile(draw, 0.025)), float(np.quantile(draw, 0.975))]
                out["pooled"].setdefault(key, {}).setdefault(metric, {})[spec] = {"delta": delta, "ci": ci}
                print(f"  {metric:<11}{spec:<58}{delta:+7.1%}  [{ci[0]:+.1%}, {ci[1]:+.1%}]")
    if out_json:
        out_json.write_text(json.dumps(out, indent=2, default=str))
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--root", type=Path, required=True)
    ap.add_argument("--datasets", default="amazon18_scientific,amazon14_office")
    ap.add_argument("--specs", default="rqvae,rqkmeans")
    ap.add_argument("--fit-seeds", type=int, default=2)
    ap.add_argument("--seeds", type=int, default=2, help="downstream seeds")
    ap.add_argument("--model", default="tiger", choices=["tiger", "sasrec-sid"])
    ap.add_argument("--cold-items", type=float, default=None)
    ap.add_argument("--baselines", action="store_true", help="most-popular and sasrec-id per downstream seed")
    ap.add_argument("--tuned-id", action="store_true", help="the sasrec-id baseline tuned on validation")
    ap.add_argument("--max-steps", type=int, default=None)
    ap.add_argument("--reference", default="rqvae")
    ap.add_argument("--vs", default="rqkmeans", help="second reference of the report")
    ap.add_argument("--fit-only", action="store_true")
    ap.add_argument("--report-only", action="store_true")
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args()
    datasets = [d for d in args.datasets.split(",") if d]
    specs = [s for s in args.specs.split(",") if s]
    if not args.report_only:
        for dseed in range(args.seeds):
            for fs in range(args.fit_seeds):
                for ds in datasets:
                    for spec in specs:
                        d = ensure_fit(args.root, ds, spec, fs, args.max_steps)
                        if not args.fit_only:
                            run_eval(args.root, ds, d, f"{slug(spec)}_s{fs}", dseed, args.model, args.cold_items)
        if args.baselines and not args.fit_only:  # once per catalog, every downstream seed in one run
            for ds in datasets:
                any_fit = ensure_fit(args.root, ds, specs[0], 0, args.max_steps)
                run_eval(args.root, ds, any_fit, "baseline_most-popular", 0, args.model, args.cold_items, baseline="most-popular")
                name = "sasrec-id-tuned" if args.tuned_id else "sasrec-id"
                run_eval(args.root, ds, any_fit, f"baseline_{name}", 0, args.model, args.cold_items, baseline="sasrec-id",
                         tuned_id=args.tuned_id, seeds=tuple(range(args.seeds)))
    if args.report_only:  # every spec with a fit on disk (by its directory name), the references first
        found = {p.name.rsplit("_s", 1)[0] for ds in datasets for p in (args.root / ds / "fits").glob("*_s*") if p.is_dir()}
        specs = [s for s in (args.reference, args.vs) if s in found] + sorted(found - {args.reference, args.vs})
    report(args.root, datasets, specs, args.reference, args.vs, args.json)


if __name__ == "__main__":
    main()
