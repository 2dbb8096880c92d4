"""Self-contained HTML audit report: inline CSS and SVG, no script, no network.

Every piece of catalog text (ids, titles, attributes, paths, warnings) goes through
``html.escape``; the page carries a Content-Security-Policy that forbids scripts altogether.
"""

from __future__ import annotations

import html
import math
from typing import Any

from sidkit.report.labels import DOCS, label, meaning

_CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:24px auto;max-width:1100px;color:#222;padding:0 16px}
h1{font-size:1.5em}h2{font-size:1.2em;margin-top:1.8em;border-bottom:1px solid #ddd;padding-bottom:4px}
table{border-collapse:collapse;margin:8px 0;font-size:.9em}td,th{border:1px solid #ddd;padding:3px 8px;text-align:left;vertical-align:top}
th{background:#f4f4f4}.num{text-align:right;font-variant-numeric:tabular-nums}
.cards{display:flex;flex-wrap:wrap;gap:12px}.card{border:1px solid #ddd;border-radius:6px;padding:8px 14px;min-width:150px}
.card .v{font-size:1.4em;font-weight:600}.card .k{color:#666;font-size:.85em}
.warn{background:#fff6e0;border:1px solid #f0c36d;padding:6px 10px;margin:4px 0}
.bad{color:#b00020;font-weight:600}.ok{color:#1b5e20}svg{background:#fafafa;border:1px solid #eee;margin:4px 8px 4px 0}
.plots{display:flex;flex-wrap:wrap}.cap{font-size:.8em;color:#555}
"""


def e(x: Any) -> str:
    """Escape anything as HTML text."""
    return html.escape("" if x is None else str(x), quote=True)


def _fmt(v: Any) -> str:
    if v is None:
        return "–"
    if isinstance(v, bool):
        return "yes" if v else "no"
    if isinstance(v, int):
        return f"{v:,}"
    if isinstance(v, float):
        if math.isnan(v):
            return "nan"
        if v != 0 and (abs(v) < 1e-3 or abs(v) >= 1e6):
            return f"{v:.3e}"
        return f"{v:.4f}"
    return str(v)


def _pct(v: Any) -> str:
    return "–" if v is None else f"{100 * float(v):.2f}%"


def _bar_svg(values: list[float], labels: list[str], title: str, *, width: int = 420, height: int = 180,
             log: bool = False, color: str = "#4c78a8") -> str:
    n = len(values)
    pad_l, pad_b, pad_t = 44, 28, 20
    w = width - pad_l - 8
    h = height - pad_b - pad_t
    vals = [max(0.0, float(v)) for v in values]
    tv = [math.log10(1 + v) for v in vals] if log else vals
    top = max(tv) if tv and max(tv) > 0 else 1.0
    out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" role="img" aria-label="{e(title)}">',
           f'<text x="{pad_l}" y="14" font-size="12" font-weight="600">{e(title)}</text>',
           f'<line x1="{pad_l}" y1="{pad_t + h}" x2="{pad_l + w}" y2="{pad_t + h}" stroke="#999"/>',
           f'<text x="{pad_l - 4}" y="{pad_t + 8}" font-size="10" text-anchor="end">{e(_short(max(vals) if vals else 0))}</text>',
           f'<text x="{pad_l - 4}" y="{pad_t + h}" font-size="10" text-anchor="end">0</text>']
    if n:
        bw = w / n
        step = max(1, math.ceil(n / 12))
        for i, (v, t) in enumerate(zip(vals, tv)):
            bh = h * t / top
            x = pad_l + i * bw
            out.append(f'<rect x="{x:.2f}" y="{pad_t + h - bh:.2f}" width="{max(bw - 1, 0.5):.2f}" height="{bh:.2f}" fill="{color}">'
                       f'<title>{e(labels[i])}: {e(_short(v))}</title></rect>')
            if i % step == 0:
                out.append(f'<text x="{x + bw / 2:.2f}" y="{pad_t + h + 12}" font-size="9" text-anchor="middle">{e(labels[i])}</text>')
    if log:
        out.append(f'<text x="{width - 8}" y="14" font-size="9" text-anchor="end" fill="#777">log scale</text>')
    out.append("</svg>")
    return "".join(out)


def _line_svg(series: list[tuple[str, list[float]]], title: str, *, width: int = 420, height: int = 180) -> str:
    pad_l, pad_b, pad_t = 44, 22, 20
    w = width - pad_l - 8
    h = height - pad_b - pad_t
    top = max([max(s) for _, s in series if s] + [1])
    colors = ["#4c78a8", "#f58518", "#54a24b", "#e45756", "#72b7b2", "#b279a2", "#ff9da6", "#9d755d"]
    out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" role="img" aria-label="{e(title)}">',
           f'<text x="{pad_l}" y="14" font-size="12" font-weight="600">{e(title)}</text>',
           f'<line x1="{pad_l}" y1="{pad_t + h}" x2="{pad_l + w}" y2="{pad_t + h}" stroke="#999"/>',
           f'<text x="{pad_l - 4}" y="{pad_t + 8}" font-size="10" text-anchor="end">{e(_short(top))}</text>']
    for k, (name, s) in enumerate(series):
        if not s:
            continue
        m = len(s)
        pts = " ".join(f"{pad_l + (w * i / max(m - 1, 1)):.1f},{pad_t + h - h * v / top:.1f}" for i, v in enumerate(s))
        c = colors[k % len(colors)]
        out.append(f'<polyline fill="none" stroke="{c}" stroke-width="1.5" points="{pts}"><title>{e(name)}</title></polyline>')
        out.append(f'<text x="{width - 10}" y="{pad_t + 12 * (k + 1)}" font-size="10" text-anchor="end" fill="{c}">{e(name)}</text>')
    out.append(f'<text x="{pad_l + w / 2}" y="{height - 6}" font-size="9" text-anchor="middle" fill="#777">codes, most used first</text>')
    out.append("</svg>")
    return "".join(out)


def _short(v: float) -> str:
    v = float(v)
    if v == int(v) and abs(v) < 1e6:
        return f"{int(v):,}"
    if abs(v) < 1:
        return f"{v:.3g}"
    return f"{v:,.3g}"


def _table(headers: list[str], rows: list[list[Any]], num_cols: set[int] | None = None) -> str:
    num_cols = num_cols or set()
    h = "".join(f"<th>{e(x)}</th>" for x in headers)
    body = []
    for r in rows:
        cells = "".join(f'<td class="num">{e(_fmt(v))}</td>' if i in num_cols else f"<td>{e(v if isinstance(v, str) else _fmt(v))}</td>"
                        for i, v in enumerate(r))
        body.append(f"<tr>{cells}</tr>")
    return f"<table><tr>{h}</tr>{''.join(body)}</table>"


def _card(key: str, v: str) -> str:
    return (f'<div class="card" title="{e(meaning(key))}"><div class="v">{e(v)}</div><div class="k">{e(label(key))}</div>'
            f'<div class="cap">{e(meaning(key))}</div></div>')


def _metrics(block: str, items) -> str:
    """A metric / value / meaning table from (key, value) pairs of one report block."""
    return _table(["metric", "value", "meaning"], [[label(f"{block}.{k}"), v, meaning(f"{block}.{k}")] for k, v in items], {1})


def _grouped_svg(series: list[tuple[str, list[float], str]], labels: list[str], title: str, *, width: int = 420,
                 height: int = 180) -> str:
    """Side-by-side bars of several series on one shared axis (0..1 or the largest value)."""
    pad_l, pad_b, pad_t = 44, 28, 20
    w, h = width - pad_l - 8, height - pad_b - pad_t
    top = max([max(s) for _, s, _ in series if s] + [1e-12])
    n, m = len(labels), len(series)
    out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" role="img" aria-label="{e(title)}">',
           f'<text x="{pad_l}" y="14" font-size="12" font-weight="600">{e(title)}</text>',
           f'<line x1="{pad_l}" y1="{pad_t + h}" x2="{pad_l + w}" y2="{pad_t + h}" stroke="#999"/>',
           f'<text x="{pad_l - 4}" y="{pad_t + 8}" font-size="10" text-anchor="end">{e(_short(top))}</text>',
           f'<text x="{pad_l - 4}" y="{pad_t + h}" font-size="10" text-anchor="end">0</text>']
    gw = w / max(n, 1)
    for i in range(n):
        for k, (name, s, c) in enumerate(series):
            v = max(0.0, float(s[i])) if i < len(s) else 0.0
            bh = h * v / top
            x = pad_l + i * gw + k * gw / m
            out.append(f'<rect x="{x:.2f}" y="{pad_t + h - bh:.2f}" width="{max(gw / m - 1, 0.5):.2f}" height="{bh:.2f}" fill="{c}">'
                       f'<title>{e(name)} {e(labels[i])}: {e(_short(v))}</title></rect>')
        out.append(f'<text x="{pad_l + i * gw + gw / 2:.2f}" y="{pad_t + h + 12}" font-size="9" text-anchor="middle">{e(labels[i])}</text>')
    for k, (name, _, c) in enumerate(series):
        out.append(f'<text x="{width - 10}" y="{pad_t + 12 * (k + 1)}" font-size="10" text-anchor="end" fill="{c}">{e(name)}</text>')
    out.append("</svg>")
    return "".join(out)


def _spans_orders(values) -> bool:
    v = [float(x) for x in values if x is not None and float(x) > 0]
    return len(v) >= 2 and max(v) / min(v) >= 100


def render_html_text(report: dict) -> str:
    """The HTML document for ``report`` as a string: the head, then one section per report block."""
    r = report
    parts = _head(r)
    parts += _levels_section(r.get("levels", []))
    parts += _collisions_section(r)
    parts += _prefix_section(r.get("prefix", []))
    if r.get("semantic"):
        parts += _semantic_section(r["semantic"])
    colb = r.get("collaborative")
    if colb:
        parts.append("<h2>Collaborative</h2>")
        parts.append(_metrics("collaborative", [(k, v) for k, v in colb.items() if not isinstance(v, list)]))
    if r.get("compare"):
        parts += _compare_section(r["compare"], r.get("levels", []))
    pop = r.get("popularity")
    if pop and pop.get("deciles"):
        parts += _popularity_section(pop)
    parts.append(f'<p class="cap">Definitions: <code>{e(DOCS)}</code> in the sidkit repository and package. '
                 "Generated by sidkit; this page runs no script and loads nothing.</p>")
    parts.append("</body></html>\n")
    return "\n".join(parts)


def _head(r: dict) -> list[str]:
    """Document head, source and run lines, warnings, gates and the headline cards."""
    col = r.get("collision", {})
    parts = ["<!DOCTYPE html>", '<html lang="en"><head><meta charset="utf-8">',
             "<meta http-equiv=\"Content-Security-Policy\" content=\"default-src 'none'; style-src 'unsafe-inline'; img-src data:\">",
             '<meta name="viewport" content="width=device-width, initial-scale=1">',
             "<title>sidkit audit report</title>", f"<style>{_CSS}</style></head><body>",
             "<h1>sidkit audit report</h1>"]
    src = r.get("source", {})
    if src:
        fp = src.get("fingerprint")
        parts.append(f"<p>Source: <code>{e(src.get('path'))}</code>" + (f" (sha256 {e(fp)})" if fp else "") + "</p>")
    cfg = r.get("config")
    if cfg:
        parts.append("<p>Run: " + ", ".join(f"{e(k)}=<code>{e(v)}</code>" for k, v in cfg.items() if v is not None) + "</p>")
    parts.append(f"<p>{e(_fmt(r.get('n_items')))} items, {e(r.get('n_levels'))} levels, codebook sizes "
                 f"{e(', '.join(str(x) for x in r.get('codebook_sizes', [])))}</p>")
    for w in r.get("warnings", []) or []:
        parts.append(f'<div class="warn">{e(w)}</div>')
    gates = r.get("gates") or []
    if gates:
        parts.append("<h2>Gates</h2>")
        rows = [[g["gate"], g["key"], g["value"], "TRIPPED" if g["tripped"] else "ok"] for g in gates]
        parts.append(_table(["gate", "key", "value", "status"], rows, {2}))
    parts.append('<h2>Headline</h2><div class="cards">')
    parts.append(_card("collision.collision_rate", _pct(col.get("collision_rate"))))
    parts.append(_card("collision.unique_sid_ratio", _pct(col.get("unique_sid_ratio"))))
    parts.append(_card("collision.collided_item_fraction", _pct(col.get("collided_item_fraction"))))
    parts.append(_card("collision.max_bucket_size", _fmt(col.get("max_bucket_size"))))
    parts.append(_card("collision.n_colliding_buckets", _fmt(col.get("n_colliding_buckets"))))
    parts.append(_card("diversity.sid_entropy_ratio", _fmt(r.get("diversity", {}).get("sid_entropy_ratio"))))
    ham = r.get("hamming", {})
    parts.append(_card("hamming.pairs_h0", _fmt(ham.get("pairs_h0"))))
    parts.append(_card("hamming.pairs_h_le1", _fmt(ham.get("pairs_h_le1"))))
    parts.append("</div>")
    return parts


def _levels_section(levels: list[dict]) -> list[str]:
    """Per-level code usage: the table, its captions, the sorted-usage and utilization plots."""
    parts = ["<h2>Per-level code usage</h2>"]
    lk = ("level", "utilization", "dead_codes", "entropy_bits", "perplexity", "normalized_perplexity")
    parts.append(_table([label(f"levels.{k}") for k in lk], [[lv[k] for k in lk] for lv in levels], set(range(len(lk)))))
    parts.append('<p class="cap">' + "; ".join(f"{e(label('levels.' + k))}: {e(meaning('levels.' + k))}" for k in lk[1:]) + "</p>")
    plots = []
    series = [(f"level {lv['level']}", lv.get("usage_sorted", [])) for lv in levels if lv.get("usage_sorted")]
    if series:
        plots.append(_line_svg(series, "Code usage per level (sorted)"))
    if any(lv["utilization"] < 1.0 for lv in levels):
        plots.append(_bar_svg([lv["utilization"] for lv in levels], [str(lv["level"]) for lv in levels], "Utilization per level"))
    parts.append(f'<div class="plots">{"".join(plots)}</div>')
    return parts


def _collisions_section(r: dict) -> list[str]:
    """Bucket-size and Hamming plots, the collision metrics and the largest buckets."""
    col, ham = r.get("collision", {}), r.get("hamming", {})
    parts = ["<h2>Collisions</h2>"]
    hist = col.get("bucket_size_histogram", {}) or {}
    sizes = sorted(int(k) for k in hist)
    plots = [_bar_svg([hist[str(s)] for s in sizes], [str(s) for s in sizes], "Buckets by size (items per SID)", log=True)]
    dist = ham.get("distribution", [])
    plots.append(_bar_svg(dist, [str(k) for k in range(len(dist))],
                          "Hamming distance of item pairs, P(h=k)" + ("" if ham.get("distribution_exact", True) else " (k≥2 sampled)"),
                          color="#f58518", log=_spans_orders(dist)))
    parts.append(f'<div class="plots">{"".join(plots)}</div>')
    parts.append(_metrics("collision", [(k, col.get(k)) for k in (
        "collision_rate", "unique_sid_ratio", "collided_item_fraction", "n_colliding_buckets", "max_bucket_size",
        "mean_collided_bucket_size", "gini", "n_distinct_sids")]))
    tb = r.get("top_buckets") or []
    if tb:
        parts.append("<h3>Largest collision buckets</h3>")
        for b in tb:
            ids = b.get("item_ids", b.get("rows", []))
            disp = b.get("display") or {}
            parts.append(f"<h4>SID {e(' '.join(str(c) for c in b.get('sid', [])))}: {e(_fmt(b['size']))} items</h4>")
            rows = [[str(x), *[("" if disp[c][i] is None else str(disp[c][i])) if i < len(disp[c]) else "" for c in disp]]
                    for i, x in enumerate(ids)]
            parts.append(_table(["item", *disp.keys()], rows))
    return parts


def _prefix_section(pre: list[dict]) -> list[str]:
    """Prefix branching: plots, the per-length table (with fan-out when present) and captions."""
    parts = ["<h2>Prefix branching</h2>"]
    mb, nd = [p["mean_branching"] for p in pre], [p["n_distinct"] for p in pre]
    plots = [_bar_svg(mb, [str(p["length"]) for p in pre], "Mean branching by prefix length", color="#54a24b", log=_spans_orders(mb)),
             _bar_svg(nd, [str(p["length"]) for p in pre], "Distinct prefixes by length", color="#54a24b", log=_spans_orders(nd))]
    parts.append(f'<div class="plots">{"".join(plots)}</div>')
    pk = ["length", "n_distinct", "collision_rate", "mean_branching", "conditional_entropy_bits"]
    if pre and "fanout_median" in pre[0]:
        pk += ["fanout_min", "fanout_median", "fanout_max"]
    parts.append(_table([label(f"prefix.{k}") for k in pk], [[p.get(k) for k in pk] for p in pre], set(range(len(pk)))))
    parts.append('<p class="cap">' + "; ".join(f"{e(label('prefix.' + k))}: {e(meaning('prefix.' + k))}" for k in pk[1:]) + "</p>")
    return parts


def _semantic_section(sem: dict) -> list[str]:
    """Semantic block: metrics, k-NN vs random prefix sharing, attribute purity, worst conflicts."""
    parts = ["<h2>Semantic</h2>"]
    keys = ("knn_mean_common_prefix", "random_mean_common_prefix", "locality_gap", "conflict_collision_rate",
            "benign_collision_rate", "ambiguous_collision_rate", "related_collision_rate", "conflict_item_rate",
            "benign_item_rate", "conflict_cos_threshold")
    parts.append(_metrics("semantic", [(k, sem.get(k)) for k in keys if k in sem]))
    if sem.get("knn_prefix_share") and sem.get("random_prefix_share"):
        ks, rs = sem["knn_prefix_share"], sem["random_prefix_share"]
        parts.append('<div class="plots">' + _grouped_svg([("k-NN pairs", ks, "#4c78a8"), ("random pairs", rs, "#999")],
                                                         [str(i + 1) for i in range(max(len(ks), len(rs)))],
                                                         "Pairs sharing a prefix of length l (k-NN vs random)") + "</div>")
    ap = sem.get("attribute_purity") or {}
    if ap:
        parts.append("<h3>Attribute purity of prefixes (length 0 = whole catalog)</h3>")
        L = max(len(v["prefix_purity"]) for v in ap.values())
        parts.append(_table(["attribute", *[f"len {i}" for i in range(L)]],
                            [[name, *v["prefix_purity"]] for name, v in ap.items()], set(range(1, L + 1))))
    wc = sem.get("worst_conflicts") or []
    if wc:
        parts.append("<h3>Worst conflict collisions (same SID, unrelated items)</h3>")
        rows = []
        for c in wc:
            ids = c.get("item_ids", c.get("rows", ["", ""]))
            titles = c.get("titles") or ["", ""]
            leaf = c.get("leaf") or ["", ""]
            rows.append([" ".join(str(x) for x in c.get("sid", [])), c.get("cosine"),
                         str(ids[0]), "" if titles[0] is None else str(titles[0]), "" if leaf[0] is None else str(leaf[0]),
                         str(ids[1]), "" if titles[1] is None else str(titles[1]), "" if leaf[1] is None else str(leaf[1])])
        parts.append(_table(["SID", "cos", "item A", "title A", "leaf A", "item B", "title B", "leaf B"], rows, {1}))
    return parts


def _compare_section(cmp_: dict, levels: list[dict]) -> list[str]:
    """Comparison with the baseline table: metrics, per-level side by side, churn per level."""
    parts = ["<h2>Compared with the baseline</h2>"]
    parts.append(_metrics("compare", [(k, v) for k, v in cmp_.items() if not isinstance(v, list)]))
    bl = cmp_.get("baseline_levels") or []
    if bl:
        ch = cmp_.get("per_level_changed_fraction") or []
        rows = []
        for i, lv in enumerate(levels):
            b = bl[i] if i < len(bl) else {}
            rows.append([lv["level"], lv["utilization"], b.get("utilization"), lv["normalized_perplexity"],
                         b.get("normalized_perplexity"), ch[i] if i < len(ch) else None])
        parts.append("<h3>Per level, this table vs the baseline</h3>")
        parts.append(_table(["level", "utilization", "baseline utilization", "norm. perplexity", "baseline norm. perplexity",
                             "churn (changed fraction)"], rows, set(range(6))))
    if cmp_.get("per_level_changed_fraction"):
        parts.append(_bar_svg([x or 0 for x in cmp_["per_level_changed_fraction"]],
                              [str(i) for i in range(len(cmp_["per_level_changed_fraction"]))], "Changed fraction per level",
                              color="#e45756"))
    return parts


def _popularity_section(pop: dict) -> list[str]:
    """Allocation by popularity decile: the table and its captions."""
    parts = ["<h2>Allocation by popularity</h2>"]
    parts.append(f"<p>{e(_fmt(pop['n_items_with_interactions']))} items with interactions; decile 0 = head.</p>")
    L = len(pop["deciles"][0]["distinct_prefix_ratio"])
    pk = ["decile", "n_items", "interactions", "collided_fraction", "mean_bucket_size"]
    parts.append(_table([label(f"popularity.{k}") for k in pk] + [f"distinct prefixes / items, len {i + 1}" for i in range(L)],
                        [[d[k] for k in pk] + d["distinct_prefix_ratio"] for d in pop["deciles"]], set(range(len(pk) + L))))
    parts.append('<p class="cap">' + "; ".join(f"{e(label('popularity.' + k))}: {e(meaning('popularity.' + k))}"
                                               for k in pk[3:] + ["distinct_prefix_ratio"]) + "</p>")
    return parts


def render_html(report: dict, path) -> None:
    """Write the report as one self-contained HTML file (atomically)."""
    from sidkit.io.artifacts import write_text_atomic

    write_text_atomic(path, render_html_text(report))
