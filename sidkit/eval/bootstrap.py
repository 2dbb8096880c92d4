"""Paired bootstrap over users for the difference of Recall@10 to a reference table (METHODS.md §6.2)."""

from __future__ import annotations

import numpy as np


def paired_bootstrap(per_user: list[np.ndarray], *, n_resamples: int = 10000, ci: float = 0.95, seed: int = 0,
                     chunk: int = 250) -> list[dict]:
    """Relative difference of each table's mean to the first one's, with a percentile interval.

    Parameters
    ----------
    per_user : list of (n_users,) arrays, the same users in the same order (e.g. per-user Recall@10,
        averaged over seeds). ``per_user[0]`` is the reference.
    n_resamples : bootstrap resamples of the users (the same resample for every table: paired).
    ci : interval mass (0.95 -> 2.5 and 97.5 percentiles).

    Returns
    -------
    One dict per table: ``delta`` (mean_b / mean_ref - 1), ``delta_abs`` (mean_b - mean_ref),
    ``ci`` ([lo, hi] of the relative delta), ``ci_abs``, ``p_le_0`` (share of resamples whose
    relative delta is <= 0) and ``resolved`` (the interval excludes 0).
    """
    arrs = [np.asarray(a, np.float64) for a in per_user]
    n = len(arrs[0])
    if any(len(a) != n for a in arrs):
        raise ValueError("paired bootstrap needs the same users for every table")
    rng = np.random.default_rng(seed)
    ref = arrs[0]
    sums = np.zeros((len(arrs), n_resamples))
    for a in range(0, n_resamples, chunk):
        m = min(chunk, n_resamples - a)
        idx = rng.integers(0, n, size=(m, n))
        for j, arr in enumerate(arrs):
            sums[j, a:a + m] = arr[idx].sum(1)
    lo_q, hi_q = 100 * (1 - ci) / 2, 100 * (1 + ci) / 2
    out = []
    ref_mean = ref.mean() if n else float("nan")
    for j, arr in enumerate(arrs):
        with np.errstate(divide="ignore", invalid="ignore"):
            rel = sums[j] / sums[0] - 1.0
        absd = (sums[j] - sums[0]) / max(n, 1)
        mean = arr.mean() if n else float("nan")
        delta = float(mean / ref_mean - 1.0) if ref_mean > 0 else float("nan")
        rel_f = rel[np.isfinite(rel)]
        if j == 0:
            lo = hi = 0.0
        elif len(rel_f):
            lo, hi = (float(v) for v in np.percentile(rel_f, [lo_q, hi_q]))
        else:
            lo = hi = float("nan")
        alo, ahi = (float(v) for v in np.percentile(absd, [lo_q, hi_q])) if j else (0.0, 0.0)
        out.append({"delta": 0.0 if j == 0 else delta, "delta_abs": float(mean - ref_mean), "ci": [lo, hi],
                    "ci_abs": [alo, ahi], "p_le_0": float((rel_f <= 0).mean()) if (j and len(rel_f)) else float("nan"),
                    "resolved": bool(j and (lo > 0 or hi < 0))})
    return out


def pooled_bootstrap(per_user: list[np.ndarray], groups: dict[str, list[int]], reference: str, *,
                     n_resamples: int = 1000, ci: float = 0.95, seed: int = 0) -> dict[str, dict]:
    """Tables pooled per group (e.g. one method fitted with several seeds), against a reference group.

    ``per_user[i]``: table i's per-user metric (the same users in every table); ``groups``: group
    name -> its table indices. Each group's figure is the mean over its tables and users. The
    interval is a two-level bootstrap: per resample, each group's tables are drawn with
    replacement (so the fit-to-fit spread is in the interval) and the users are drawn once, paired
    across groups.

    Returns, per group: ``mean``, ``tables`` (how many), ``per_table`` (each table's mean),
    ``delta`` (relative to the reference's mean), ``ci`` ([lo, hi]) and ``draws`` (the resampled
    relative deltas, for pooling further, e.g. over catalogs).
    """
    rng = np.random.default_rng(seed)
    mats = {g: np.stack([np.asarray(per_user[i], np.float64) for i in rows]) for g, rows in groups.items()}
    n_users = next(iter(mats.values())).shape[1]
    users = rng.integers(0, n_users, size=(n_resamples, n_users))
    draws = {}
    for g, M in mats.items():
        picks = rng.integers(0, len(M), size=(n_resamples, len(M)))
        table_mean = np.stack([M[picks[b]].mean(0) for b in range(n_resamples)])  # (resamples, users)
        draws[g] = np.take_along_axis(table_mean, users, 1).mean(1)
    lo_q, hi_q = (1 - ci) / 2, (1 + ci) / 2
    ref_mean = mats[reference].mean()
    out = {}
    for g, M in mats.items():
        mean = float(M.mean())
        d = draws[g] / np.maximum(draws[reference], 1e-12) - 1
        out[g] = {"mean": mean, "tables": len(M), "per_table": [float(v) for v in M.mean(1)],
                  "delta": float(mean / ref_mean - 1) if ref_mean > 0 else float("nan"),
                  "ci": [float(np.quantile(d, lo_q)), float(np.quantile(d, hi_q))], "draws": d}
    return out
