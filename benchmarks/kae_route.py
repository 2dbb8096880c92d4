"""KAE content routing at encode (issue 13): KAE encode throughput vs an rqvae model on the same
catalog, the per-item cost of the routing features' neighbour search before (exact search over
the reservoir) and after (the reservoir's inverted file), and what the inverted file changes.

    python benchmarks/kae_route.py [--n 200000] [--dim 128] [--fit-rows 20000] [--blank 0.5]
        [--repeats 3] [--max-steps 100] [--real ../shared/data] [--dir DIR] [--json out.json]

Catalog: ``sidkit.datasets.make_catalog(n, dim, seed=0)``; ``--blank`` of the rows (seeded) get
their ``color`` and ``material`` blanked, so that many items are routed. Both models are fitted
with ``sidkit.fit`` on the first ``--fit-rows`` rows of that catalog (KAE: attributes brand,
color, material, categories; its reservoir is 8,192 rows either way. rqvae: ``--max-steps``
steps, default 3 x 256 and MLP), then encode all ``--n`` rows:

* end to end: ``sidkit.encode`` of the Parquet file (read, fuse, encode, suffixes, write);
* compute only: ``model.tokenizer.encode`` on the fused in-memory rows (KAE reads its attribute
  columns from the in-memory table);

each alternating KAE / KAE with exact search ("before") / rqvae, median of ``--repeats``;
the ratio KAE/rqvae (items/s) is the target (>= 0.5). The per-routed-item cost of the
neighbour search (``NeighbourFeatures.neighbours``) exact vs inverted file on the routed rows.

Agreement: the share of routed items (items that some group routes) whose codes differ
between the inverted file and exact search, (a) with the same fitted scorers, on the synthetic
catalog and, with ``--real``, on amazon14_office and amazon18_scientific (their whole catalogs
are the reservoir, under ``IVF_MIN_BANK`` rows, so an inverted file is forced there for this
measurement), and (b) between two fits (scorers trained on either features).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import sidkit.kae.route as route  # noqa: E402
from sidkit.datasets import make_catalog  # noqa: E402
from sidkit.features import fuse  # noqa: E402
from sidkit.io.catalog import embedding_to_numpy  # noqa: E402
from sidkit.kae.model import KAE  # noqa: E402
from sidkit.kae.plan import make_plan  # noqa: E402
from sidkit.model.directory import load_model  # noqa: E402
from sidkit.pipeline import encode, fit  # noqa: E402
from sidkit.quantizers.base import Items  # noqa: E402

ATTRS = ["brand", "color", "material", "categories"]


def blank(table: pa.Table, cols: list[str], frac: float, seed: int = 0) -> pa.Table:
    rows = np.random.default_rng(seed).random(len(table)) < frac
    for c in cols:
        col = table.column(c).combine_chunks()
        table = table.set_column(table.schema.get_field_index(c), c,
                                 pa.array(np.where(rows, None, np.array(col.to_pylist(), object)).tolist(), col.type))
    return table


def exact_copy(tok: KAE) -> KAE:
    """The same fitted KAE with exact neighbour search (what encoding did before the inverted file)."""
    import copy

    ex = copy.copy(tok)
    ex._ivf, ex._features = None, None
    return ex


def with_nprobe(tok: KAE, nprobe: int) -> KAE:
    import copy

    t = copy.copy(tok)
    t.route_nprobe, t._features = nprobe, None
    return t


def unfolded_codes(tok: KAE, X, cols) -> np.ndarray:
    """Codes with the scorers applied as before they were folded: the features
    ``[x, x - neighbour mean]`` built, whitened, then each group's rows (same neighbours)."""
    from sidkit.kae.codebook import encode_group

    codes = tok.encode(Items(X, cols))
    words = tok.words_from_columns(cols, len(X))
    miss = {g: encode_group(b, words, len(X), [x for x in tok.bindings_ if x.group == g])[1]
            for g, b in enumerate(tok.books_) if tok.scorers_[g] is not None}
    need = np.flatnonzero(np.logical_or.reduce(list(miss.values())))
    pos = np.full(len(X), -1, np.int64)
    pos[need] = np.arange(len(need))
    F = tok.route_features(X[need])
    for g, m in miss.items():
        codes[m, g] = tok.scorers_[g].route(F[pos[m]], tok._bound_rows([x for x in tok.bindings_ if x.group == g]))
    return codes


def routed_rows(tok: KAE, X, cols) -> np.ndarray:
    """Rows that some group routes (their attribute is missing and the group has a scorer)."""
    from sidkit.kae.codebook import encode_group

    words = tok.words_from_columns(cols, len(X))
    need = np.zeros(len(X), bool)
    for g, book in enumerate(tok.books_):
        if tok.scorers_[g] is not None:
            need |= encode_group(book, words, len(X), [b for b in tok.bindings_ if b.group == g])[1]
    return need


def timed(fn, repeats: int) -> float:
    ts = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        ts.append(time.perf_counter() - t)
    return statistics.median(ts)


def interleaved(fns: dict, repeats: int) -> dict:
    ts = {k: [] for k in fns}
    for _ in range(repeats):
        for k, fn in fns.items():
            t = time.perf_counter()
            fn()
            ts[k].append(time.perf_counter() - t)
    return {k: statistics.median(v) for k, v in ts.items()}


def agreement(table: pa.Table, X: np.ndarray, attrs: list[str], groups: int, force: bool, seed: int = 0) -> dict:
    """Share of routed items whose codes differ: inverted file vs exact search."""
    cols = {c: table.column(c) for c in {a.split("[")[0] for a in attrs}}
    plan, _ = make_plan(table.select(list(cols)), attrs, groups=groups, seed=seed)
    saved = route.IVF_MIN_BANK
    if force:
        route.IVF_MIN_BANK = 2 * route.IVF_LIST_ROWS
    try:
        ivf = KAE(plan, route_neighbours=plan.route_neighbours, random_state=seed).fit(Items(X, cols))
    finally:
        route.IVF_MIN_BANK = saved
    ex_fit = KAE(plan, route_neighbours=plan.route_neighbours, random_state=seed, route_nprobe=0).fit(Items(X, cols))
    assert ivf._ivf is not None and ex_fit._ivf is None
    need = routed_rows(ivf, X, cols)
    c_ivf = ivf.encode(Items(X, cols))
    c_same = exact_copy(ivf).encode(Items(X, cols))
    c_fit = ex_fit.encode(Items(X, cols))
    nb_i = ivf.route_features.neighbours(X[need])
    nb_e = exact_copy(ivf).route_features.neighbours(X[need])

    def rec(nb):
        return round(float(np.mean([len(set(a[a >= 0]) & set(b[b >= 0])) / max(1, (b >= 0).sum()) for a, b in zip(nb, nb_e)])), 4) if need.any() else None

    recall = rec(nb_i)
    n_r = int(need.sum())
    p4 = with_nprobe(ivf, 4)
    c_p4 = p4.encode(Items(X, cols))
    c_unf = unfolded_codes(ivf, X, cols)
    c_unf_ex = unfolded_codes(ex_fit, X, cols)
    c_ex = ex_fit.encode(Items(X, cols))
    nch = lambda a, b: int((a != b).any(1)[need].sum())  # noqa: E731
    return {"items": len(X), "reservoir": len(ivf._res_X), "lists": len(ivf._ivf[0]), "nprobe": ivf.route_nprobe,
            "routed_items": n_r, "neighbour_recall": recall,
            "folded_vs_unfolded": nch(c_ivf, c_unf), "folded_vs_unfolded_exact": nch(c_ex, c_unf_ex),
            "nprobe4_recall": rec(p4.route_features.neighbours(X[need])), "nprobe4_changed": nch(c_p4, c_ivf),
            "changed_same_scorers": int((c_ivf != c_same).any(1)[need].sum()),
            "changed_same_scorers_share": round(float((c_ivf != c_same).any(1)[need].mean()), 5) if n_r else None,
            "changed_vs_exact_fit": int((c_ivf != c_fit).any(1)[need].sum()),
            "changed_vs_exact_fit_share": round(float((c_ivf != c_fit).any(1)[need].mean()), 5) if n_r else None,
            "changed_unrouted": int((c_ivf != c_fit).any(1)[~need].sum())}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--n", type=int, default=200_000)
    ap.add_argument("--dim", type=int, default=128)
    ap.add_argument("--fit-rows", type=int, default=20_000)
    ap.add_argument("--blank", type=float, default=0.5)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--max-steps", type=int, default=100)
    ap.add_argument("--real", default=None, help="folder holding amazon14_office and amazon18_scientific")
    ap.add_argument("--dir", default=None)
    ap.add_argument("--json", default=None)
    a = ap.parse_args(argv)
    work = Path(a.dir or tempfile.mkdtemp(prefix="kae-route-"))
    work.mkdir(parents=True, exist_ok=True)
    out: dict = {"args": vars(a)}

    t0 = time.perf_counter()
    table = blank(make_catalog(a.n, a.dim, seed=0), ["color", "material"], a.blank)
    items, fit_items = work / "items.parquet", work / "fit.parquet"
    pq.write_table(table, items, row_group_size=65_536)
    pq.write_table(table.slice(0, a.fit_rows), fit_items)
    print(f"catalog {a.n} x {a.dim} ({a.blank:.0%} of rows without color/material): {time.perf_counter() - t0:.1f} s", flush=True)
    t0 = time.perf_counter()
    fit(fit_items, out=work / "kae", method="kae", attributes=",".join(ATTRS), seed=0)
    print(f"fit kae on {a.fit_rows} rows: {time.perf_counter() - t0:.1f} s", flush=True)
    t0 = time.perf_counter()
    fit(fit_items, out=work / "rqvae", method="rqvae", max_steps=a.max_steps, seed=0)
    print(f"fit rqvae ({a.max_steps} steps) on {a.fit_rows} rows: {time.perf_counter() - t0:.1f} s", flush=True)

    kae_m, rq_m = load_model(work / "kae"), load_model(work / "rqvae")
    tok = kae_m.tokenizer
    ex = exact_copy(tok)
    X = fuse({"embedding": embedding_to_numpy(table.column("embedding").combine_chunks(), items, "embedding")}, kae_m.fusion)
    cols = {c: table.column(c) for c in tok.attribute_columns if c in table.column_names}
    need = routed_rows(tok, X, cols)
    print(f"routed items: {int(need.sum())} of {a.n} ({need.mean():.1%}); reservoir {len(tok._res_X)} rows, "
          f"inverted file {0 if tok._ivf is None else len(tok._ivf[0])} lists, nprobe {tok.route_nprobe}", flush=True)

    # per routed item: the neighbour search alone
    Xr = np.ascontiguousarray(X[need][:50_000])
    tok.route_features.neighbours(Xr[:100])
    ex.route_features.neighbours(Xr[:100])  # build both indexes outside the timing
    t = interleaved({"exact": lambda: ex.route_features.neighbours(Xr), "ivf": lambda: tok.route_features.neighbours(Xr)}, a.repeats)
    per = {k: v / len(Xr) * 1e6 for k, v in t.items()}
    print(f"\nneighbour search per routed item ({len(Xr)} items, d={a.dim}, reservoir {len(tok._res_X)}):")
    print(f"  before (exact IndexFlatIP): {per['exact']:8.2f} us\n  after (inverted file):      {per['ivf']:8.2f} us   "
          f"speed-up {per['exact'] / per['ivf']:.2f}x")
    out["search_us_per_routed_item"] = {"exact": per["exact"], "ivf": per["ivf"], "items": len(Xr)}

    # compute only
    Xi = Items(X, cols, finite=True)
    p4 = with_nprobe(tok, 4)
    t = interleaved({"kae": lambda: tok.encode(Xi), "kae_exact": lambda: ex.encode(Xi), "kae_nprobe4": lambda: p4.encode(Xi),
                     "rqvae": lambda: rq_m.tokenizer.encode(Items(X, finite=True))}, a.repeats)
    # where KAE's encode time goes (compute only, the same rows)
    Xn = np.ascontiguousarray(X[need])
    words_t = timed(lambda: tok.words_from_columns(cols, a.n), a.repeats)
    search_t = timed(lambda: tok.route_features.neighbours(Xn), a.repeats)
    nbr = tok.route_features.neighbours(Xn)
    from sidkit.kae.codebook import encode_group

    wd = tok.words_from_columns(cols, a.n)
    gs = tuple(g for g, sc in enumerate(tok.scorers_) if sc is not None and encode_group(tok.books_[g], wd, a.n)[1].any())
    A, Z, c, _ = tok._folded_scorers(gs)
    from sidkit.kae.route import neighbour_mean

    score_t = timed(lambda: Xn @ A + c - neighbour_mean(Z, nbr), a.repeats)
    prof = {"words": words_t, "neighbour_search": search_t, "folded_scoring": score_t,
            "rest": t["kae"] - words_t - search_t - score_t}
    print(f"\nKAE encode, compute only ({t['kae']:.2f} s for {a.n} rows, {int(need.sum())} routed):")
    for k, v in prof.items():
        print(f"  {k:18s}{v:8.3f} s  {v / t['kae']:6.1%}  {v / max(1, need.sum()) * 1e6:7.2f} us per routed item")
    out["kae_profile_s"] = prof
    ips = {k: a.n / v for k, v in t.items()}
    # end to end
    runs = {"kae": lambda: encode(work / "kae", items, work / "codes_kae.parquet"),
            "rqvae": lambda: encode(work / "rqvae", items, work / "codes_rq.parquet")}
    te = interleaved(runs, a.repeats)
    ips_e = {k: a.n / v for k, v in te.items()}
    # "before" end to end: the same model directory with route_nprobe = 0 in sidkit.json (exact search)
    import shutil

    shutil.copytree(work / "kae", work / "kae_exact", dirs_exist_ok=True)
    meta = json.loads((work / "kae_exact" / "sidkit.json").read_text())
    meta["estimator"]["params"]["route_nprobe"] = 0
    (work / "kae_exact" / "sidkit.json").write_text(json.dumps(meta, indent=1))
    te["kae_exact"] = timed(lambda: encode(work / "kae_exact", items, work / "codes_kae_exact.parquet"), a.repeats)
    ips_e["kae_exact"] = a.n / te["kae_exact"]
    print(f"\nencode {a.n} rows (items/s, median of {a.repeats}):")
    print(f"{'':28s}{'compute only':>14s}{'end to end':>14s}")
    for k, name in (("rqvae", "rqvae"), ("kae_exact", "kae, exact search (before)"), ("kae", "kae, inverted file (after)"),
                    ("kae_nprobe4", "kae, inverted file, nprobe 4")):
        print(f"{name:28s}{ips[k]:14,.0f}{ips_e.get(k, float('nan')):14,.0f}")
    r_c, r_e = ips["kae"] / ips["rqvae"], ips_e["kae"] / ips_e["rqvae"]
    print(f"{'ratio kae/rqvae (after)':28s}{r_c:14.2f}{r_e:14.2f}   target >= 0.5")
    print(f"{'ratio kae/rqvae (before)':28s}{ips['kae_exact'] / ips['rqvae']:14.2f}{ips_e['kae_exact'] / ips_e['rqvae']:14.2f}")
    out["encode_items_per_s"] = {"compute": ips, "end_to_end": ips_e, "ratio_compute": r_c, "ratio_end_to_end": r_e}

    ag = {"synthetic": agreement(table.slice(0, a.fit_rows), X[:a.fit_rows], ATTRS, 3, force=False)}
    if a.real:
        for name in ("amazon14_office", "amazon18_scientific"):
            p = Path(a.real) / name / "items.parquet"
            if not p.exists():
                print(f"{p}: absent, skipped")
                continue
            rt = pq.read_table(p)
            Xreal = fuse({"embedding": embedding_to_numpy(rt.column("embedding").combine_chunks(), p, "embedding")}, kae_m.fusion)
            ag[name] = agreement(rt, Xreal, ["brand", "categories", "colors"], 6, force=True)
    print("\nrouted items whose codes change, inverted file vs exact search:")
    print(f"{'catalog':22s}{'items':>8s}{'lists':>7s}{'routed':>8s}{'nbr recall':>11s}{'same scorers':>14s}{'vs exact fit':>14s}{'unrouted':>10s}")
    for k, v in ag.items():
        print(f"{k:22s}{v['items']:8d}{v['lists']:7d}{v['routed_items']:8d}{v['neighbour_recall']:11.4f}"
              f"{v['changed_same_scorers']:7d} ({v['changed_same_scorers_share']:.2%}){v['changed_vs_exact_fit']:6d} "
              f"({v['changed_vs_exact_fit_share']:.2%}){v['changed_unrouted']:10d}")
    print("\nrouted items whose codes change, folded scorers vs whitened features (same neighbours), and at nprobe 4:")
    print(f"{'catalog':22s}{'routed':>8s}{'fold, ivf':>11s}{'fold, exact':>13s}{'recall np4':>12s}{'np4 vs np8':>12s}")
    for k, v in ag.items():
        print(f"{k:22s}{v['routed_items']:8d}{v['folded_vs_unfolded']:11d}{v['folded_vs_unfolded_exact']:13d}"
              f"{v['nprobe4_recall']:12.4f}{v['nprobe4_changed']:12d}")
    out["agreement"] = ag
    if a.json:
        Path(a.json).write_text(json.dumps(out, indent=1))
    if not a.dir:
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
