"""KAE benchmark (issue 5): plan, explicit hit rate after binding, IHR of content routing for
held-out words, collateral change, closed-codebook RQ-VAE baseline, bind-slot latency.

    python benchmarks/kae.py [--data ../shared/data/amazon18_scientific] [--seeds 3] [--large 1000000]
        [--route-neighbours K] [--max-route-share S] [--out kae_bench.json]

IHR protocol (METHODS.md scope note; the held-out items' titles are blanked too, so the figure is
that of content routing alone; a second run keeps the titles, where §5.5 text matching places
items whose title names the bound word): words carried by >= 20 single-word items are held out of
the vocabulary before fitting (``exclude`` in the plan), in folds; each is bound with
``bind_slot`` whose routing row comes from half of its items; the other half is encoded with
the attribute blanked out; IHR = share of those items whose code carries the bound slot at the
group's position. Explicit hit rate: items that still carry the word. Collateral: items that
neither carry a held-out word nor were blanked whose code changed (0 required), and the share
of items lacking the attribute that got routed onto a new slot (reported, allowed).
The colour IHR with titles blanked is repeated for ``--seeds`` fold/half splits (per-seed and
mean). The routing features and the default cap were chosen on amazon14_office's colours (run
this script with ``--data ../shared/data/amazon14_office``); Scientific is the test catalog.
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from sidkit.kae.plan import make_plan, write_plan  # noqa: E402
from sidkit.kae.slots import bind_slot, list_slots, unbind_slot  # noqa: E402
from sidkit.pipeline import encode, fit  # noqa: E402


def _codes(path: Path) -> np.ndarray:
    return np.array(pq.read_table(path).column("sid").to_pylist(), np.int32)


def _blank(table: pa.Table, col: str, rows: set[int]) -> pa.Table:
    vals = table.column(col).to_pylist()
    empty = [] if pa.types.is_list(table.schema.field(col).type) else None
    new = [empty if i in rows else v for i, v in enumerate(vals)]
    return table.set_column(table.schema.get_field_index(col), col, pa.array(new, table.schema.field(col).type))


def ihr_study(items: Path, table: pa.Table, attributes: list[str], col: str, words: list[str], carriers: dict[str, np.ndarray],
              all_carriers: dict[str, np.ndarray], folds: int, work: Path, seed: int = 0, min_precision: float | None = None,
              blank_text: bool = True, max_route_share: float | None = None, route_neighbours: int | None = None) -> dict:
    """Hold out ``words`` of ``col`` in ``folds`` rounds; bind with half the items, route the other half.
    ``blank_text``: blank the held-out items' titles too, so only content routing can place them
    (else a bound word found in the title places them: §5.5 ``matches``)."""
    rng = np.random.default_rng(seed)
    order = list(words)
    rng.shuffle(order)
    fold_words = [order[i::folds] for i in range(folds)]
    per_word, rounds = {}, []
    for k, fw in enumerate(fold_words):
        plan, _ = make_plan(table, attributes, groups=6)
        plan.exclude = [f"{col}:{w}" for w in fw]
        if min_precision is not None:
            plan.route_min_precision = min_precision
        if route_neighbours is not None:
            plan.route_neighbours = route_neighbours
        pdir = work / f"fold{k}"
        pdir.mkdir(parents=True, exist_ok=True)
        write_plan(plan, pdir / "plan.toml")
        t0 = time.perf_counter()
        fit(items, out=pdir / "model", method="kae", plan=str(pdir / "plan.toml"))
        fit_s = time.perf_counter() - t0
        model = pdir / "model"
        pos = next(g["position"] for g in list_slots(model)["groups"] if col in g["categories"])
        given, held = {}, {}
        for w in fw:
            idx = rng.permutation(carriers[w])
            half = len(idx) // 2
            given[w], held[w] = np.sort(idx[:half]), np.sort(idx[half:])
        blank_rows = set(int(i) for w in fw for i in held[w])
        eval_tbl = _blank(table, col, blank_rows)
        if blank_text and "title" in eval_tbl.column_names:
            eval_tbl = _blank(eval_tbl, "title", blank_rows)
        eval_items = pdir / "eval.parquet"
        pq.write_table(eval_tbl, eval_items)
        encode(model, eval_items, pdir / "before.parquet")
        c0 = _codes(pdir / "before.parquet")
        slots, lat, route = {}, [], {}
        for w in fw:
            gpath = pdir / f"given_{len(slots)}.parquet"
            pq.write_table(table.take(pa.array(given[w])), gpath)
            t1 = time.perf_counter()
            r = bind_slot(col, w, model_dir=model, items=gpath,
                          **({} if max_route_share is None else {"max_route_share": max_route_share}))
            lat.append(time.perf_counter() - t1)
            slots[w] = r["slot"]
            route[w] = r.get("route")
        encode(model, eval_items, pdir / "after.parquet")
        c1 = _codes(pdir / "after.parquet")
        n = len(c1)
        carriers_now = np.zeros(n, bool)
        # the slot an explicit carrier must get: its most recently bound held-out word (§5.5 priority)
        expect = np.full(n, -1)
        for w in fw:  # bound in this order: later bindings win
            m = np.zeros(n, bool)
            m[all_carriers[w]] = True
            m[held[w]] = False
            expect[m] = slots[w]
        for w in fw:
            m = np.zeros(n, bool)
            m[all_carriers[w]] = True
            m[held[w]] = False
            explicit = np.flatnonzero(m)
            hit_explicit = float((c1[explicit, pos] == expect[explicit]).mean()) if len(explicit) else None
            ihr = float((c1[held[w], pos] == slots[w]).mean())
            per_word[w] = {"fold": k, "n_given": int(len(given[w])), "n_routed_eval": int(len(held[w])), "ihr": round(ihr, 4),
                           "explicit_items": int(len(explicit)), "explicit_hit_rate": hit_explicit,
                           "ihr_before_binding": float((c0[held[w], pos] == slots[w]).mean()), "route": route[w]}
            carriers_now |= m
            carriers_now[held[w]] = True
        others = ~carriers_now
        changed = (c1 != c0).any(axis=1)
        lacking = np.array([not v for v in eval_tbl.column(col).to_pylist()])
        bound_slots = set(slots.values())
        onto_new = np.isin(c1[:, pos], list(bound_slots)) & ((c1 != c0).sum(axis=1) == 1) & (c1[:, pos] != c0[:, pos])
        bad = others & changed & ~(onto_new & lacking)
        rounds.append({"fold": k, "words": fw, "fit_seconds": round(fit_s, 2), "bind_seconds": [round(x, 3) for x in lat],
                       "collateral_change": float(bad.sum() / max(1, others.sum())),
                       "routed_onto_new_slots_share_of_attributeless_others": float((others & onto_new & lacking).sum() / max(1, (others & lacking).sum())),
                       "n_others": int(others.sum())})
    n_eval = sum(v["n_routed_eval"] for v in per_word.values())
    ihr_items = sum(v["ihr"] * v["n_routed_eval"] for v in per_word.values()) / max(1, n_eval)
    exp = [v["explicit_hit_rate"] for v in per_word.values() if v["explicit_hit_rate"] is not None]
    return {"column": col, "words": words, "folds": folds, "per_word": per_word, "rounds": rounds,
            "ihr_item_weighted": round(ihr_items, 4), "ihr_word_mean": round(float(np.mean([v["ihr"] for v in per_word.values()])), 4),
            "chance": round(1.0 / len(words), 4),
            "explicit_hit_rate_min": min(exp) if exp else None,
            "collateral_change_max": max(r["collateral_change"] for r in rounds),
            "routed_share_of_attributeless_others_mean": round(float(np.mean([r["routed_onto_new_slots_share_of_attributeless_others"] for r in rounds])), 4)}


def rqvae_baseline(items: Path, held: dict[str, np.ndarray], work: Path, max_steps: int) -> dict:
    """Closed codebook: the best single level-1 code's share of each held-out word's items."""
    t0 = time.perf_counter()
    r = fit(items, out=work / "rqvae", method="rqvae", max_steps=max_steps, seed=0)
    codes = r.codes
    shares, tot = {}, 0.0
    n = 0
    for w, idx in held.items():
        c = Counter(codes[idx, 0].tolist())
        s = c.most_common(1)[0][1] / len(idx)
        shares[w] = round(s, 4)
        tot += s * len(idx)
        n += len(idx)
    return {"max_steps": max_steps, "fit_seconds": round(time.perf_counter() - t0, 1), "best_level1_code_share_per_word": shares,
            "item_weighted": round(tot / max(1, n), 4)}


def latency_study(n_items: int, work: Path, n_binds: int = 20) -> dict:
    """bind-slot latency on a synthetic n_items model (library call and CLI process)."""
    from sidkit.datasets import make_catalog

    t0 = time.perf_counter()
    tbl = make_catalog(n_items, 32, near_duplicate_frac=0.0, seed=0)
    items = work / "large.parquet"
    pq.write_table(tbl, items)
    gen_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    r = fit(items, out=work / "large_model", method="kae", attributes=["brand", "color", "material", "categories"])
    fit_s = time.perf_counter() - t0
    model = work / "large_model"
    lib, cli, lib_items = [], [], []
    for i in range(n_binds):
        t1 = time.perf_counter()
        bind_slot("color", f"bench colour {i}", model_dir=model)
        lib.append(time.perf_counter() - t1)
    for i in range(n_binds):
        unbind_slot("color", f"bench colour {i}", model_dir=model)
    # with a prototype catalog of 64 items carrying the word (the reservoir gives the negatives)
    sub = tbl.slice(0, 64)
    sub = sub.set_column(sub.schema.get_field_index("color"), "color", pa.array(["fresh mint"] * 64))
    pq.write_table(sub, work / "proto.parquet")
    for i in range(min(n_binds, 10)):
        t1 = time.perf_counter()
        bind_slot("color", "fresh mint", model_dir=model, items=work / "proto.parquet")
        lib_items.append(time.perf_counter() - t1)
        unbind_slot("color", "fresh mint", model_dir=model)
    for i in range(min(n_binds, 10)):
        t1 = time.perf_counter()
        subprocess.run([sys.executable, "-m", "sidkit", "bind-slot", "color", f"cli colour {i}", "--model", str(model), "--json"],
                       check=True, capture_output=True)
        cli.append(time.perf_counter() - t1)
    # encode cost of the whole catalog with bindings (what 'sidkit encode' does after a bind)
    t1 = time.perf_counter()
    encode(model, items, work / "large_codes.parquet")
    enc_s = time.perf_counter() - t1

    def pct(x, q):
        return round(float(np.percentile(x, q)) * 1000, 1)

    return {"n_items": n_items, "generate_seconds": round(gen_s, 1), "fit_seconds": round(fit_s, 1),
            "codebook_sizes": r.summary["codebook_sizes"],
            "bind_explicit_ms": {"p50": pct(lib, 50), "p99": pct(lib, 99), "n": len(lib)},
            "bind_with_items_ms": {"p50": pct(lib_items, 50), "p99": pct(lib_items, 99), "n": len(lib_items)},
            "bind_cli_process_ms": {"p50": pct(cli, 50), "p99": pct(cli, 99), "n": len(cli)},
            "encode_full_catalog_seconds": round(enc_s, 1)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", default=str(REPO.parent / "shared" / "data" / "amazon18_scientific"))
    ap.add_argument("--large", type=int, default=1_000_000, help="items of the synthetic latency model (0: skip)")
    ap.add_argument("--folds", type=int, default=3)
    ap.add_argument("--rqvae-steps", type=int, default=500)
    ap.add_argument("--min-precision", type=float, default=None, help="override the plan's route_min_precision")
    ap.add_argument("--max-route-share", type=float, default=None, help="bind-slot's cap on the share of items carrying another word that are routed (default: its own)")
    ap.add_argument("--route-neighbours", type=int, default=None, help="override the plan's route_neighbours (0: embeddings alone)")
    ap.add_argument("--seeds", type=int, default=3, help="fold/half splits of the colour IHR with titles blanked (default 3)")
    ap.add_argument("--out", default=None)
    ap.add_argument("--skip", default="", help="comma list: plan,colors,brand,rqvae,latency")
    a = ap.parse_args()
    skip = set(a.skip.split(","))
    items = Path(a.data) / "items.parquet"
    table = pq.read_table(items)
    attributes = ["brand", "categories", "colors"]
    res: dict = {"data": str(items), "n_items": table.num_rows}
    work = Path(tempfile.mkdtemp(prefix="kae_bench_"))
    try:
        if "plan" not in skip:
            t0 = time.perf_counter()
            plan, notes = make_plan(table, attributes, groups=6)
            res["plan"] = {"seconds": round(time.perf_counter() - t0, 2),
                           "groups": [{"position": i, "categories": g.categories, **{k: g.stats[k] for k in ("entropy_bits", "loss_bits", "kept_words", "coverage", "reserved", "capacity")}}
                                      for i, g in enumerate(plan.groups)],
                           "merge_log": plan.report["merge_log"]}
            print(json.dumps(res["plan"], indent=1), flush=True)
        colors = table.column("colors").to_pylist()
        single = Counter(c[0] for c in colors if len(c) == 1)
        words = sorted(w for w, k in single.items() if k >= 20)
        carriers = {w: np.array([i for i, c in enumerate(colors) if c == [w]]) for w in words}
        all_carriers = {w: np.array([i for i, c in enumerate(colors) if w in c]) for w in words}
        opts = {"min_precision": a.min_precision, "max_route_share": a.max_route_share, "route_neighbours": a.route_neighbours}
        if "colors" not in skip:
            runs = [ihr_study(items, table, attributes, "colors", words, carriers, all_carriers, a.folds, work / f"colors{s}",
                              seed=s, **opts) for s in range(max(1, a.seeds))]
            res["ihr_colors"] = runs[0]
            res["ihr_colors_seeds"] = {
                "ihr_item_weighted": [r["ihr_item_weighted"] for r in runs],
                "mean": round(statistics.fmean(r["ihr_item_weighted"] for r in runs), 4),
                "routed_share_of_attributeless_others": [r["routed_share_of_attributeless_others_mean"] for r in runs],
                "collateral_change_max": max(r["collateral_change_max"] for r in runs),
                "explicit_hit_rate_min": min(r["explicit_hit_rate_min"] for r in runs)}
            print(json.dumps({k: v for k, v in res["ihr_colors"].items() if k != "per_word"}, indent=1), flush=True)
            print(json.dumps({"ihr_colors_seeds": res["ihr_colors_seeds"]}, indent=1), flush=True)
            res["ihr_colors_title_kept"] = ihr_study(items, table, attributes, "colors", words, carriers, all_carriers, a.folds,
                                                     work / "colors_text", blank_text=False, **opts)
            print(json.dumps({k: v for k, v in res["ihr_colors_title_kept"].items() if k not in ("per_word", "rounds")}, indent=1), flush=True)
        if "brand" not in skip:
            brands = table.column("brand").to_pylist()
            from sidkit.kae.plan import normalize_word

            bc = Counter(normalize_word(b) for b in brands if b)
            bwords = sorted(w for w, k in bc.most_common(6) if k >= 20)
            bcar = {w: np.array([i for i, b in enumerate(brands) if normalize_word(b) == w]) for w in bwords}
            # the brand column holds the original spelling: bind the normalized word (matching is normalized)
            res["ihr_brand"] = ihr_study(items, table, attributes, "brand", bwords, bcar, bcar, 2, work / "brand", **opts)
            print(json.dumps({k: v for k, v in res["ihr_brand"].items() if k != "per_word"}, indent=1), flush=True)
        if "rqvae" not in skip:
            half = {}
            rng = np.random.default_rng(0)
            for w in words:
                idx = rng.permutation(carriers[w])
                half[w] = idx[len(idx) // 2:]
            res["closed_codebook_rqvae"] = rqvae_baseline(items, half, work, a.rqvae_steps)
            print(json.dumps(res["closed_codebook_rqvae"], indent=1), flush=True)
        if a.large and "latency" not in skip:
            res["latency"] = latency_study(a.large, work)
            print(json.dumps(res["latency"], indent=1), flush=True)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    if a.out:
        Path(a.out).write_text(json.dumps(res, indent=2) + "\n")
    print(json.dumps({k: res[k] for k in res if k not in ("plan",)}, indent=1)[:200])


if __name__ == "__main__":
    main()
