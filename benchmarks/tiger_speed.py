"""Cost of ``sidkit eval --model tiger`` against ``--model sasrec-sid`` on the same SID table.

Runs the two evaluations alternately in one process (``--repeats`` pairs; sasrec-sid first in
even pairs, tiger first in odd ones, so a slow spell of this shared machine hits both), one seed,
no baselines, and prints per run the total, training and test-inference seconds with Recall@10
(and ItemHit@10 for tiger), then the ratio tiger / sasrec-sid of each pair and of the sums.
The issue-14 target is a ratio of at most 2 on Scientific's 8,317 test users with beam 20.

    OMP_NUM_THREADS=1 python benchmarks/tiger_speed.py [--table PATH] [--interactions PATH]
        [--repeats 2] [--threads 1] [--json out.json]

Default table: the published ``rqvae_native`` index of ../shared's Scientific catalog (4 tokens,
``--collisions group``). About 6-8 minutes per pair at one thread.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SCI = REPO.parent / "shared" / "data" / "amazon18_scientific"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--table", default=str(SCI / "raw" / "reference_sids" / "rqvae_native.Scientific.index.json"))
    ap.add_argument("--interactions", default=str(SCI / "interactions.parquet"))
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--json", default=None)
    args = ap.parse_args(argv)
    if args.repeats < 1 or args.threads < 1:
        print("error: --repeats and --threads must be at least 1", file=sys.stderr)
        return 2
    for opt, path in (("--table", args.table), ("--interactions", args.interactions)):
        if Path(path).exists():
            continue
        if path == ap.get_default(opt.lstrip("-")):
            print(f"skipped: {path} is missing (the shared data is not beside the repository)")
            return 0
        print(f"error: {opt} {path}: no such file; give an existing SID table / interactions Parquet", file=sys.stderr)
        return 2

    from sidkit.eval import evaluate
    from sidkit.eval.models import TrainConfig

    cfg = TrainConfig(threads=args.threads)
    runs = []
    for rep in range(args.repeats):
        order = ("sasrec-sid", "tiger") if rep % 2 == 0 else ("tiger", "sasrec-sid")
        pair = {}
        for model in order:
            res = evaluate([args.table], args.interactions, model=model, seeds=[args.seed], baselines=(),
                           n_bootstrap=100, train_config=cfg)
            row = res["rows"][0]
            pair[model] = {"model": model, "repeat": rep, "seconds": res["seconds"],
                           "train_seconds": row["train_seconds"], "eval_seconds": row["eval_seconds"],
                           "recall@10": row["recall@10"], "itemhit@10": row.get("itemhit@10"),
                           "best_epochs": row.get("best_epochs")}
            print(json.dumps(pair[model]), file=sys.stderr, flush=True)
        runs.append(pair)

    print("| repeat | model | total s | training s | test inference s | best epoch | R@10 | ItemHit@10 |")
    print("|---|---|---|---|---|---|---|---|")
    for pair in runs:
        for model in ("sasrec-sid", "tiger"):
            r = pair[model]
            ih = "n/a" if r["itemhit@10"] is None else f"{r['itemhit@10']:.4f}"
            print(f"| {r['repeat']} | {model} | {r['seconds']:.0f} | {r['train_seconds']:.0f} | {r['eval_seconds']:.1f} "
                  f"| {r['best_epochs']} | {r['recall@10']:.4f} | {ih} |")
    ratios = [p["tiger"]["seconds"] / p["sasrec-sid"]["seconds"] for p in runs]
    total = sum(p["tiger"]["seconds"] for p in runs) / sum(p["sasrec-sid"]["seconds"] for p in runs)
    print()
    print("tiger / sasrec-sid per pair: " + ", ".join(f"{r:.2f}x" for r in ratios) + f"; of the sums: {total:.2f}x")
    if args.json:
        tmp = Path(f"{args.json}.tmp")
        tmp.write_text(json.dumps({"runs": runs, "ratios": ratios, "ratio_of_sums": total}, indent=1))
        os.replace(tmp, args.json)  # no half-written file
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
