"""Compare block: churn against a baseline SID table (METHODS.md §6.1, stability)."""

from __future__ import annotations

from sidkit.metrics.buckets import check_codes

_HEADLINE = (("collision", "collision_rate"), ("collision", "unique_sid_ratio"), ("collision", "collided_item_fraction"),
             ("collision", "max_bucket_size"), ("diversity", "sid_entropy_ratio"))


def compare_metrics(codes, item_ids, baseline, *, codebook_sizes=None, report: dict | None = None, seed: int = 0) -> dict:
    """Churn between ``codes`` and a ``baseline`` table, joined on item id.

    ``baseline``: dict with ``item_ids``, ``codes`` and optional ``codebook_sizes`` (or a tuple
    ``(item_ids, codes[, codebook_sizes])``). Returns ``churn_rate`` (share of common items whose
    core SID changed), ``per_level_changed_fraction``, ``collision_rate_delta`` (current minus
    baseline) and deltas of the other headline numbers, plus item counts.
    """
    from sidkit.metrics.core import core_report
    from sidkit.io.ids import map_ids

    codes, sizes = check_codes(codes, codebook_sizes)
    if isinstance(baseline, dict):
        b_ids, b_codes, b_sizes = baseline["item_ids"], baseline["codes"], baseline.get("codebook_sizes")
    else:
        b_ids, b_codes = baseline[0], baseline[1]
        b_sizes = baseline[2] if len(baseline) > 2 else None
    b_codes, b_sizes = check_codes(b_codes, b_sizes, name="baseline")
    rows_b = map_ids(item_ids, b_ids)
    common = rows_b >= 0
    n_common = int(common.sum())
    Lc = min(codes.shape[1], b_codes.shape[1])
    out: dict = {
        "n_common_items": n_common,
        "n_only_current": int((~common).sum()),
        "n_only_baseline": int(len(b_ids) - n_common),
        "levels_differ": codes.shape[1] != b_codes.shape[1],
    }
    if n_common:
        cur = codes[common]
        base = b_codes[rows_b[common]]
        changed = (cur[:, :Lc] != base[:, :Lc])
        per_level = changed.mean(axis=0)
        any_changed = changed.any(axis=1) | (codes.shape[1] != b_codes.shape[1])
        out["churn_rate"] = float(any_changed.mean())
        out["per_level_changed_fraction"] = [float(x) for x in per_level]
    else:
        out["churn_rate"] = None
        out["per_level_changed_fraction"] = [None] * Lc
    if report is None:
        report = core_report(codes, sizes, seed=seed, blocks=("collision", "diversity"))
    base_rep = core_report(b_codes, b_sizes, seed=seed, blocks=("collision", "levels", "diversity"))
    for blk, key in _HEADLINE:
        out[f"{key}_delta"] = float(report[blk][key] - base_rep[blk][key])
        out[f"baseline_{key}"] = base_rep[blk][key]
    out["baseline_levels"] = [{k: v for k, v in lv.items() if k != "usage_sorted"} for lv in base_rep["levels"]]
    if "levels" in report:
        out["utilization_delta"] = [float(a["utilization"] - b["utilization"])
                                    for a, b in zip(report["levels"], base_rep["levels"])]
    return out
