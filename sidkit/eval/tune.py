"""A tuned ``sasrec-id`` baseline (``sidkit eval --tune-id``).

A weak id baseline flatters every SID method, so the id-only SASRec can be tuned on the
validation targets (never the test targets) over a small grid, one axis at a time: starting from
the defaults every SID table is trained with, each axis in :data:`GRID` is tried in order and its
best value (validation Recall@10 of the best epoch) is kept before the next axis. That is
1 + 5 trainings instead of the 32 of the full grid; the order puts the axes that matter most on
public Amazon data first (capacity and regularisation).
"""

from __future__ import annotations

import dataclasses
from dataclasses import replace

#: axis -> the values tried (the first is the default of :class:`sidkit.eval.models.TrainConfig`,
#: except ``max_history``, the split's history length)
GRID: dict[str, tuple] = {
    "d": (64, 128),
    "dropout": (0.2, 0.5),
    "lr": (1e-3, 3e-3),
    "max_history": (20, 50),
    "epochs": (30, 60),  # with early stopping (patience 3, or 5 at 60): the longest allowed run
}


def _cfg_for(base, setting: dict):
    cfg = replace(base, **{k: v for k, v in setting.items() if k in {f.name for f in dataclasses.fields(base)}})
    if setting.get("epochs", base.epochs) > 30:
        cfg.patience = max(cfg.patience, 5)
    return cfg


def _split_for(split, setting: dict):
    return replace(split, max_history=int(setting.get("max_history", split.max_history)))


def tune_sasrec_id(split, base_cfg, *, seed: int, progress=None) -> tuple[dict, list[dict]]:
    """The chosen setting and every trial (``setting``, ``valid_recall@10``, ``best_epoch``) of the
    one-axis-at-a-time search on validation."""
    import sidkit.eval.models as M

    setting = {"d": base_cfg.d, "dropout": base_cfg.dropout, "lr": base_cfg.lr, "max_history": split.max_history,
               "epochs": base_cfg.epochs}
    trials: list[dict] = []
    scores: dict = {}

    def score(s: dict) -> float:
        key = tuple(sorted(s.items()))
        if key not in scores:
            sp, cfg = _split_for(split, s), _cfg_for(base_cfg, s)
            M._set_seed(seed)
            emb = M.IdItemEmbedding(sp.n_items, cfg.d)
            _, info = M.train_sasrec(sp, emb, seed=seed, cfg=cfg, progress=progress, stage=f"sasrec-id tuning {len(trials) + 1}",
                                     rank_held_out=False)
            scores[key] = float(info["valid_recall@10"])
            trials.append({"setting": dict(s), "valid_recall@10": scores[key], "best_epoch": info["best_epoch"]})
        return scores[key]

    best = score(setting)
    for axis, values in GRID.items():
        for v in values:
            if v == setting[axis]:
                continue
            cand = {**setting, axis: v}
            sc = score(cand)
            if sc > best:
                best, setting = sc, cand
    return setting, trials


def tuned_config(split, base_cfg, setting: dict):
    """The split (history length) and training config of a chosen setting."""
    return _split_for(split, setting), _cfg_for(base_cfg, setting)
