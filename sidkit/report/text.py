"""Terminal summaries of every command: rich tables on stdout and one-line messages.

Renderers take the plain dicts the library returns (the ``--json`` documents) and print them, or
return the line for the command to echo; catalog text goes through :func:`safe` (rich markup) or
:func:`visible` (plain lines).
"""

from __future__ import annotations

from sidkit.report.console import fmt, safe, summary_console, visible
from sidkit.report.labels import label, meaning

# ---------------------------------------------------------------------------------------- audit


def print_audit_summary(rep: dict, file=None) -> None:
    """Readable rich summary of an audit report on stdout: headline numbers, per-level table, buckets."""
    con = summary_console(file)
    con.print(f"[bold]SID audit[/bold]  {rep['n_items']:,} items, {rep['n_levels']} levels, codebook sizes "
              f"{', '.join(map(str, rep['codebook_sizes']))}", markup=True)
    con.print(_audit_headline(rep))
    con.print(_audit_levels(rep["levels"]))
    for table in (_audit_fanout(rep.get("prefix") or []), _audit_popularity(rep.get("popularity")),
                  _audit_buckets(rep.get("top_buckets") or [])):
        if table is not None:
            con.print(table)
    for g in rep.get("gates") or []:
        con.print(visible(f"gate {g['gate']}: value {g['value']:.6g} -> {'TRIPPED' if g['tripped'] else 'ok'}"), markup=False)


def _audit_headline(rep: dict):
    """The label / value / meaning table of the headline numbers of every block present."""
    from rich.table import Table

    col = rep["collision"]
    head = Table(show_header=False, box=None, pad_edge=False)
    head.add_column(style="cyan")
    head.add_column(justify="right")
    head.add_column(style="dim")

    def row(key, value):
        head.add_row(label(key), value, meaning(key))

    row("collision.collision_rate", f"{100 * col['collision_rate']:.2f}%")
    row("collision.unique_sid_ratio", f"{100 * col['unique_sid_ratio']:.2f}%")
    row("collision.collided_item_fraction", f"{100 * col['collided_item_fraction']:.2f}%")
    row("collision.n_colliding_buckets", f"{col['n_colliding_buckets']:,}")
    row("collision.max_bucket_size", f"{col['max_bucket_size']:,}")
    row("diversity.sid_entropy_ratio", f"{rep['diversity']['sid_entropy_ratio']:.4f}")
    _audit_dedup_row(head, rep.get("dedup"))
    ham = rep.get("hamming", {})
    if ham:
        head.add_row("pairs h=0 / h<=1", f"{ham['pairs_h0']:,} / {ham['pairs_h_le1']:,}")
    sem = rep.get("semantic")
    if sem:
        row("semantic.locality_gap", f"{sem['locality_gap']:.3f}")
        if "sample_size" in sem:
            lo, hi = sem["locality_gap_ci95"]
            head.add_row("semantic sample", visible(f"{sem['sample_size']:,} of {sem['n_items']:,} items (gap 95% CI {lo:.3f}..{hi:.3f}), "
                                                    f"{sem['index']}, recall@{sem['k']} {sem.get('knn_recall', float('nan')):.3f}"))
        row("semantic.conflict_collision_rate", f"{100 * sem['conflict_collision_rate']:.1f}%")
        row("semantic.benign_collision_rate", f"{100 * sem['benign_collision_rate']:.1f}%")
    colb = rep.get("collaborative")
    if colb:
        head.add_row("co-interaction vs random first-token share",
                     f"{100 * colb['co_interaction_prefix_share']:.1f}% vs {100 * colb['random_prefix_share']:.1f}%")
    cmp_ = rep.get("compare")
    if cmp_ and cmp_.get("churn_rate") is not None:
        row("compare.churn_rate", f"{100 * cmp_['churn_rate']:.2f}%")
        row("compare.collision_rate_delta", f"{100 * cmp_['collision_rate_delta']:+.2f} pt")
    return head


def _audit_dedup_row(head, dd: dict | None) -> None:
    """The headline row of the table's de-dup: ZCR's moves and costs, or the method's name."""
    if dd and dd.get("method") == "zcr" and "items_moved" in dd:
        mse = ""
        if dd.get("reconstruction_mse_before") is not None and dd.get("reconstruction_mse_after") is not None:
            mse = f", reconstruction MSE {dd['reconstruction_mse_before']:.4g} -> {dd['reconstruction_mse_after']:.4g}"
        head.add_row("dedup: zcr", f"{dd['items_moved']:,} moved",
                     visible(f"items whose last code ZCR reassigned (collision rate before {100 * dd['collision_rate_before']:.2f}%), "
                             f"mean cost {dd['mean_cost']:.4g}{mse}; {dd['groups_unresolved']:,} groups too large for the last "
                             f"codebook ({dd['items_unresolved']:,} items keep suffixes)"))
    elif dd:
        head.add_row("dedup", visible(str(dd.get("method"))))


def _audit_levels(levels: list[dict]):
    from rich.table import Table

    lv = Table(title="per level", title_justify="left")
    for c in ("level", "utilization", "dead_codes", "entropy_bits", "perplexity", "normalized_perplexity"):
        lv.add_column(label(f"levels.{c}"), justify="right")
    for x in levels:
        lv.add_row(str(x["level"]), f"{100 * x['utilization']:.1f}%", f"{x['dead_codes']:,}", f"{x['entropy_bits']:.2f}",
                   f"{x['perplexity']:.1f}", f"{x['normalized_perplexity']:.3f}")
    return lv


def _audit_fanout(pre: list[dict]):
    """Children per used prefix, or None when the report has no fan-out figures."""
    from rich.table import Table

    if not (pre and "fanout_median" in pre[0]):
        return None
    ft = Table(title="prefix fan-out (children per used prefix one token shorter)", title_justify="left")
    for c in ("length", "n_distinct", "fanout_min", "fanout_median", "fanout_max"):
        ft.add_column(label(f"prefix.{c}"), justify="right")
    for p in pre:
        ft.add_row(str(p["length"]), f"{p['n_distinct']:,}", str(p["fanout_min"]), f"{p['fanout_median']:g}", str(p["fanout_max"]))
    return ft


def _audit_popularity(pop: dict | None):
    """Allocation by popularity decile, or None without interactions."""
    from rich.table import Table

    if not (pop and pop.get("deciles")):
        return None
    pt = Table(title="allocation by popularity (decile 0 = head)", title_justify="left")
    for c in ("decile", "n_items", "interactions", "collided_fraction", "mean_bucket_size"):
        pt.add_column(label(f"popularity.{c}"), justify="right")
    pt.add_column("distinct prefixes / items")
    for d in pop["deciles"]:
        pt.add_row(str(d["decile"]), f"{d['n_items']:,}", f"{d['interactions']:,}", f"{100 * d['collided_fraction']:.1f}%",
                   f"{d['mean_bucket_size']:.2f}", " ".join(f"{x:.2f}" for x in d["distinct_prefix_ratio"]))
    return pt


def _audit_buckets(tb: list[dict]):
    """The ten largest collision buckets (members and their display columns), or None."""
    from rich.table import Table
    from rich.text import Text

    if not tb:
        return None
    bt = Table(title="largest collision buckets", title_justify="left")
    bt.add_column("size", justify="right")
    bt.add_column("SID")
    bt.add_column("item")
    cols = list((tb[0].get("display") or {}).keys())
    for c in cols:
        bt.add_column(visible(c), overflow="fold")
    for b in tb[:10]:
        ids = b.get("item_ids", b.get("rows", []))
        disp = b.get("display") or {}
        if not cols:
            shown = ", ".join(visible(i) for i in ids[:8]) + (", ..." if b["size"] > 8 else "")
            bt.add_row(str(b["size"]), Text(" ".join(map(str, b["sid"]))), Text(shown))
            continue
        for i, x in enumerate(ids[:5]):
            vals = [Text(visible("" if c not in disp or i >= len(disp[c]) or disp[c][i] is None else str(disp[c][i]))[:80]) for c in cols]
            bt.add_row(str(b["size"]) if i == 0 else "", Text(" ".join(map(str, b["sid"]))) if i == 0 else Text(""),
                       Text(visible(x)), *vals)
        if len(ids) > 5:
            bt.add_row("", Text(""), Text(f"... {b['size'] - 5} more"), *[Text("") for _ in cols])
    return bt


# ------------------------------------------------------------------------------- fit and encode


def print_fit_summary(s: dict) -> None:
    """Method, sizes, timings, collision figures and the per-level table of a fit summary."""
    from rich.table import Table

    c = summary_console()
    c.print(f"[bold]{safe(s['method'])}[/] on {s['n_items']:,} items -> [bold]{safe(s['model_dir'])}[/] "
            f"({s['fit_seconds']:.1f} s fit, {s['total_seconds']:.1f} s total)")
    c.print(f"collision rate [bold]{s['collision_rate']:.2%}[/]  unique SIDs {s['unique_sid_ratio']:.2%}  "
            f"largest bucket {s['max_bucket_size']}  reconstruction MSE {fmt(s['reconstruction_mse'], '.3g')}")
    t = Table("level", "codebook", "utilization", "normalized perplexity")
    for l, (k, u, p) in enumerate(zip(s["codebook_sizes"], s["utilization"], s["normalized_perplexity"])):
        t.add_row(str(l), str(k), f"{u:.1%}", f"{p:.3f}")
    c.print(t)


def encode_line(s: dict) -> str:
    """The one summary line of an encode."""
    return (f"encoded {s['n_items']:,} items -> {visible(s['output'])} "
            f"({s['n_kept']:,} kept, {s['n_new_or_changed']:,} new or changed, {s['seconds']:.1f} s)")


# ----------------------------------------------------------------------- dedup, export, lookup


def dedup_line(info: dict, out, method: str) -> str:
    """The one summary line of ``sidkit dedup`` (``out``: the table written)."""
    d = info["dedup"]
    line = f"{info['n_items']:,} SIDs -> {out} ({method}; collision rate {info['collision_rate']:.4f}"
    if method == "zcr":
        line += (f", {d['items_moved']:,} items moved, mean cost {d['mean_cost']:.4g}, "
                 f"{d['groups_unresolved']:,} groups too large for the last codebook ({d['items_unresolved']:,} items keep suffixes)")
    return visible(line + ")")


def export_lines(info: dict, fmt_name: str, out, one_file: bool) -> list[str]:
    """What ``sidkit export -o`` reports: the file (``one_file``) or folder written, and the token grid."""
    if one_file:
        lines = [visible(f"wrote {info['n_items']:,} SIDs ({info['n_levels']} levels{' + suffix token' if info['suffix_token'] else ''}) as {fmt_name} to {out}")]
    else:
        lines = [visible(f"wrote {info['n_items']:,} SIDs as {fmt_name} to {out}/: {', '.join(info['files'])}")]
    if info.get("tokens_file"):
        lines.append(visible(f"wrote {info['n_grid_tokens']:,} grid tokens to {info['tokens_file']}"))
    return lines


def lookup_line(sid: str, item_ids) -> str:
    """A looked-up SID string, a tab, and its item ids separated by spaces."""
    return visible(sid) + "\t" + " ".join(visible(str(v)) for v in item_ids)


# ----------------------------------------------------------------------------------------- eval


def print_eval_table(res: dict) -> None:
    """The metrics table of ``sidkit eval`` (one row per table x model) and its footnotes."""
    from rich.table import Table

    c = summary_console(min_width=130)
    multi = any(len(r.get("seeds", [])) > 1 for r in res["rows"])
    t = Table(title=f"{res['n_users']:,} test users, {res['n_items']:,} items, full ranking "
                    f"(random Recall@10 = {res['random_recall@10']:.4f})")
    cols = ["table", "model", "R@5", "R@10" + (" ± std" if multi else ""), "R@20", "N@5", "N@10", "N@20",
            f"ΔR@10 vs {safe(res['reference'])} [95% CI]"]
    cce = [k for k in ("itemhit@5", "itemhit@10", "itemhit@20", "itemndcg@10") if all(k in r for r in res["rows"])]
    if cce:  # TIGER: collision-corrected metrics (METHODS.md §6.5), before the delta column
        cols[-1:-1] = ["IH@5", "IH@10", "IH@20", "IN@10"]
    for col in cols:
        t.add_column(col, justify="left" if col in ("table", "model") else "right", no_wrap=True)
    for r in res["rows"]:
        delta = "reference" if r["name"] == res["reference"] else (
            f"{r['delta_recall@10']:+.1%} [{r['delta_recall@10_ci'][0]:+.1%}, {r['delta_recall@10_ci'][1]:+.1%}]")
        r10 = f"{r['recall@10']:.4f}" + (f" ± {r['recall@10_std']:.4f}" if len(r.get("seeds", [])) > 1 else "")
        t.add_row(safe(r["name"]), safe(r["model"]), f"{r['recall@5']:.4f}", r10, f"{r['recall@20']:.4f}", f"{r['ndcg@5']:.4f}",
                  f"{r['ndcg@10']:.4f}", f"{r['ndcg@20']:.4f}", *([f"{r[k]:.4f}" for k in cce] if cce else []), delta)
    c.print(t)
    c.print(f"means over seeds (std of every metric in --json); paired bootstrap over users "
            f"({res['protocol']['bootstrap_resamples']} resamples); history items not masked; {res['seconds']:.0f} s")
    if cce:
        c.print("R/N: the target's SID among the beams; IH/IN: ItemHit/ItemNDCG, a SID shared by G items is worth 1/G "
                "(METHODS.md §6.5)")
    if res.get("cold"):
        _print_cold_table(c, res)
    if res.get("groups"):
        _print_groups(c, res)


def _print_groups(c, res: dict) -> None:
    """``sidkit eval 'fits/a_s*' 'fits/b_s*'``: each pattern's tables pooled (two-level bootstrap)."""
    from rich.table import Table

    groups = res["groups"]
    keys = [k for k in ("recall@10", "itemhit@10", "cold_recall@10") if k in groups[0]]
    t = Table(title="pooled over each group's tables (e.g. fit seeds) and users")
    t.add_column("group", no_wrap=True)
    t.add_column("tables", justify="right")
    for k in keys:
        t.add_column(k, justify="right", no_wrap=True)
        t.add_column("per table", justify="right")
        t.add_column(f"Δ vs {safe(groups[0]['name'])} [95% CI]", justify="right", no_wrap=True)
    for i, g in enumerate(groups):
        cells = []
        for k in keys:
            ci = g[f"delta_{k}_ci"]
            cells += [f"{g[k]:.4f}", " ".join(f"{v:.4f}" for v in g[f"{k}_per_table"]),
                      "reference" if i == 0 else f"{g[f'delta_{k}']:+.1%} [{ci[0]:+.1%}, {ci[1]:+.1%}]"]
        t.add_row(safe(g["name"]), str(len(g["tables"])), *cells)
    c.print(t)
    c.print("interval: two-level bootstrap (a group's tables drawn with replacement, users paired across groups)")


def _print_cold_table(c, res: dict) -> None:
    """``sidkit eval --cold-items``: the metrics of the test users whose target was held out."""
    from rich.table import Table

    cold = res["cold"]
    t = Table(title=f"cold-start: {cold['n_items']:,} items ({cold['fraction']:.0%}, seed {cold['seed']}) held out of training, "
                    f"{cold['n_test_users']:,} test users with one as target")
    ih = all("cold_itemhit@10" in r for r in res["rows"])
    cols = ["table", "cold R@10", "cold N@10", *(["cold IH@10"] if ih else []), "warm R@10",
            f"Δ cold R@10 vs {safe(res['reference'])} [95% CI]"]
    for col in cols:
        t.add_column(col, justify="left" if col == "table" else "right", no_wrap=True)
    for r in res["rows"]:
        delta = "reference" if r["name"] == res["reference"] else (
            f"{r['delta_cold_recall@10']:+.1%} [{r['delta_cold_recall@10_ci'][0]:+.1%}, {r['delta_cold_recall@10_ci'][1]:+.1%}]"
            if "delta_cold_recall@10" in r else "")
        t.add_row(safe(r["name"]), f"{r['cold_recall@10']:.4f}", f"{r['cold_ndcg@10']:.4f}",
                  *([f"{r['cold_itemhit@10']:.4f}"] if ih else []), f"{r['warm_recall@10']:.4f}", delta)
    c.print(t)
    c.print("held-out items: no training interaction, SIDs encoded from content as 'sidkit encode' gives new items; "
            "an id-only model cannot rank them")


# ------------------------------------------------------------------------------------------ KAE


def print_plan(d: dict) -> None:
    """A KAE plan (``plan.to_dict()`` plus ``plan_file``): groups, their statistics, pairwise MI."""
    from rich.table import Table

    c = summary_console()
    c.print(f"[bold]KAE plan[/] -> {safe(d['plan_file'])}  ({d['report'].get('n_items', 0):,} items, {len(d['groups'])} groups, "
            f"objective J = {d['report'].get('objective_bits', 0):.3f} bits)")
    t = Table("pos", "group", "categories", "H(Z) bits", "H(A|Z) bits", "kept words", "coverage", "reserved", "capacity")
    for i, g in enumerate(d["groups"]):
        s = g["stats"]
        t.add_row(str(i), safe(g["name"]), safe(", ".join(g["categories"])), f"{s['entropy_bits']:.2f}", f"{s['loss_bits']:.3f}",
                  str(s["kept_words"]), f"{s['coverage']:.1%}", str(s["reserved"]), str(s["capacity"]))
    c.print(t)
    mi = d["report"].get("mutual_information") or []
    if mi:
        m = Table("category a", "category b", "I(A_a; A_b) bits", "co-presence", title="pairwise mutual information", title_justify="left")
        for r in sorted(mi, key=lambda r: -r["mi_bits"]):
            m.add_row(safe(r["a"]), safe(r["b"]), f"{r['mi_bits']:.3f}", f"{r['co_presence']:.1%}")
        c.print(m)


def print_slots(r: dict, quiet: bool = False) -> None:
    """The slot registry of a KAE model: per-group table, bound slots, and (unless ``quiet``) the history."""
    from rich.table import Table

    c = summary_console()
    c.print(f"[bold]slot registry[/] {safe(r['model_dir'])}  version {r['version']}")
    t = Table("pos", "group", "categories", "capacity", "active", "reserved", "bound", "free")
    for g in r["groups"]:
        t.add_row(str(g["position"]), safe(g["group"]), safe(", ".join(g["categories"])), str(g["capacity"]), str(g["active"]),
                  str(g["reserved"]), str(g["bound"]), str(g["free"]))
    c.print(t)
    bound = [(g, b) for g in r["groups"] for b in g["bindings"]]
    if bound:
        bt = Table("group", "slot", "token", "category", "word", "aliases", "version", "routing")
        for g, b in bound:
            bt.add_row(safe(g["group"]), str(b["slot"]), safe(b["token"]), safe(b["category"]), safe(b["word"]), safe(", ".join(b["aliases"])), str(b["version"]),
                       "yes" if b["routing"] else "explicit only")
        c.print(bt)
    if not quiet and r["history"]:
        c.print("history: " + "; ".join(safe(history_entry(h)) for h in r["history"][-10:]))


def history_entry(h: dict) -> str:
    """One entry of the slot registry's history."""
    if h.get("op") == "refit":
        return f"v{h['version']} refit (kept {h.get('kept', 0)}, dropped {h.get('dropped', 0)} bindings)"
    return f"v{h['version']} {h['op']} {h['category']}:{h['word']} (slot {h['slot']})"


def bind_line(r: dict) -> str:
    """The one line of ``sidkit bind-slot``."""
    return visible(f"{r['category']}:{r['word']} -> group {r['group']} (position {r['position']}), slot {r['slot']} {r['token']} "
                   f"[{r['state']}, registry version {r['version']}]")


def unbind_line(r: dict) -> str:
    """The one line of ``sidkit unbind-slot``."""
    return visible(f"unbound {r['category']}:{r['word']} from slot {r['slot']} of group {r['group']} (registry version {r['version']})")


# ------------------------------------------------------------------------------------------ info


def print_model_info(info: dict) -> None:
    """``sidkit info MODEL_DIR``: one screen about a model directory."""
    c = summary_console()

    def pct(v):
        return "-" if v is None else f"{v:.2%}"

    rows = [
        ("method", info["method"]),
        ("levels x codes", f"{info['n_levels']} x {'/'.join(str(k) for k in info['codebook_sizes'] or [])}"),
        ("items", f"{info['n_items']:,}" if info.get("n_items") is not None else "-"),
        ("trained on", f"{info['train_rows']:,} rows" if info.get("train_rows") is not None else "-"),
        ("catalog", f"{info.get('catalog')} (id column {info.get('id_col')})"),
        ("embedding", ", ".join(f"{c} ({d})" for c, d in zip(info["embedding"]["columns"] or [], info["embedding"]["dims"] or []))),
        ("collision rate", pct(info.get("collision_rate"))),
        ("locality gap", "-" if info.get("locality_gap") is None else f"{info['locality_gap']:.3f}"),
        ("reconstruction MSE", "-" if info.get("reconstruction_mse") is None else f"{info['reconstruction_mse']:.3g}"),
        ("dedup", str(info.get("dedup"))),
        ("seed", str(info.get("seed"))),
        ("fitted", f"{info.get('fitted_at')} with sidkit {info.get('sidkit_version')} in {info.get('fit_seconds') or 0:.1f} s"),
        ("fingerprint", str(info.get("model_fingerprint"))),
    ]
    if "slots" in info:
        s = info["slots"]
        rows.append(("slots", f"{s['bindings']} bound; " + "; ".join(
            f"{g['name']}: {g['bound']}/{g['reserved']} reserved used" for g in s["groups"])))
    rows.append(("files", ", ".join(f"{n} ({_size(b)})" for n, b in info["files"].items())))
    width = max(len(k) for k, _ in rows)
    c.print(f"[bold]{safe(info['model_dir'])}[/]")
    for k, v in rows:
        c.print(f"  {k:<{width}}  {safe(str(v))}")


def _size(n: int) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if n < 1024 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n} B"
