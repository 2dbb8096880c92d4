"""``sidkit.eval.evaluate``: downstream Recall@K / NDCG@K of one or more SID tables (METHODS.md §6.2).

Every SID table is evaluated with the same downstream model, split, seeds and hyperparameters,
next to two baselines that ignore the SIDs: ``most-popular`` (training counts) and ``sasrec-id``
(SASRec with a free embedding per item). The candidate catalog is the set of items present in
every SID table; interactions with other items are dropped (a warning says how many).
"""

from __future__ import annotations

import dataclasses
import os
import time
from typing import TYPE_CHECKING, Callable, Sequence

import numpy as np

from sidkit.errors import ConfigError, DataError, opt
from sidkit.eval.metrics import KS, recall_at_k, summarize, summarize_cce

if TYPE_CHECKING:  # torch loads only when evaluate runs
    from sidkit.eval.models import TrainConfig

MODELS = ("sasrec-sid", "tiger")
COLLISIONS = ("group", "suffix")
BASELINES = ("most-popular", "sasrec-id")
METRIC_KEYS = tuple(f"recall@{k}" for k in KS) + tuple(f"ndcg@{k}" for k in KS)
CCE_KEYS = tuple(f"itemhit@{k}" for k in KS) + tuple(f"itemndcg@{k}" for k in KS)


def _read_tables(codes_paths, names, *, id_col, codebook_size, suffix):
    from sidkit.io.sidtable import read_sid_table

    tables, warnings = [], []
    for path, name in zip(codes_paths, names):
        ids, codes, sfx, sizes, warn = read_sid_table(path, id_col=id_col, codebook_size=codebook_size, suffix=suffix)
        warnings += [f"{name}: {w}" for w in warn]
        tables.append({"name": name, "path": str(path), "ids": ids, "codes": np.asarray(codes, np.int64),
                       "suffix": None if sfx is None else np.asarray(sfx, np.int64), "sizes": sizes})
    return tables, warnings


def _common_catalog(tables) -> tuple[np.ndarray, list[str]]:
    """Ids present in every table (first table's order) and each table's codes in that order."""
    from sidkit.io.ids import map_ids

    ids0 = np.asarray(tables[0]["ids"]) if not hasattr(tables[0]["ids"], "to_numpy") else tables[0]["ids"].to_numpy(zero_copy_only=False)
    keep = np.ones(len(ids0), bool)
    rows = []
    for t in tables:
        r = map_ids(ids0, t["ids"])
        if len(t["ids"]) and not (r >= 0).any():
            raise DataError(f"{t['path']}: none of its item ids (e.g. {_first(t['ids'])!r}) is in {tables[0]['path']} "
                            f"(e.g. {_first(ids0)!r}); the keys of every SID table must be the catalog's item ids")
        keep &= r >= 0
        rows.append(r)
    warnings = []
    if not keep.any():
        raise DataError("the SID tables share no item id; evaluate tables of the same catalog")
    common = ids0[keep]
    for t, r in zip(tables, rows):
        n_other = len(t["codes"]) - int(keep.sum())
        if n_other:
            warnings.append(f"{t['name']}: {n_other} items are not in every SID table and are left out of the catalog")
        sel = r[keep]
        t["codes"] = t["codes"][sel]
        if t["suffix"] is not None:
            t["suffix"] = t["suffix"][sel]
    return common, warnings


def evaluate(  # long for its docstring (the result contract); the code is ~40 lines of named steps
    codes_paths: Sequence[str | os.PathLike],
    interactions: str | os.PathLike,
    *,
    model: str = "sasrec-sid",
    names: Sequence[str] | None = None,
    seeds: Sequence[int] = (0, 1, 2),
    epochs: int | None = None,
    baselines: Sequence[str] = BASELINES,
    id_col: str | None = None,
    codebook_size=None,
    suffix: str = "auto",
    n_bootstrap: int = 10000,
    beam: int = 20,
    collisions: str = "group",
    train_config: TrainConfig | None = None,
    progress: Callable | None = None,
    return_per_user: bool = False,
    cold_items: float | None = None,
    items: str | os.PathLike | None = None,
    groups: Sequence[str] | None = None,
    tune_id: bool = False,
) -> dict:
    """Train a downstream recommender on each SID table and report full-ranking Recall@K / NDCG@K.

    Parameters
    ----------
    codes_paths : SID tables in any layout :func:`sidkit.io.sidtable.read_sid_table` reads
        (codes.parquet, a model directory, Parquet/CSV, index JSON). The first one is the
        reference of the bootstrap deltas.
    interactions : Parquet with ``user_id``, ``item_id`` and ``split`` and/or ``timestamp``/``position``
        (leave-one-out, see :mod:`sidkit.eval.split`).
    model : ``sasrec-sid`` (SASRec whose item embedding is the sum of the SID token embeddings
        plus the suffix embedding) or ``tiger`` (encoder-decoder generating SIDs with beam search
        constrained by a prefix trie).
    names : one display name per table (default: the file or directory name).
    seeds : downstream training seeds; metrics are means over seeds, with ``*_std`` spreads.
    epochs : SASRec models: maximum epochs (default 30; early stopping on validation Recall@10,
        patience 3). ``tiger``: the epochs of its one-cycle schedule (default 8; every epoch runs,
        the best validation epoch of its second half is kept). The ``sasrec-id`` baseline of a tiger run uses it too.
    baselines : any of ``most-popular``, ``sasrec-id`` (default both).
    id_col, codebook_size, suffix : passed to :func:`sidkit.io.sidtable.read_sid_table` for every table.
    n_bootstrap : paired bootstrap resamples over test users.
    beam : beam width of ``tiger`` (validation and test).
    collisions : how ``tiger`` treats items that share a SID. ``group`` (default): the model
        generates the table's SIDs as given (the codes, plus the table's own suffix when it has
        one); a returned SID stands for all its items, Recall/NDCG are SID-level and
        ItemHit/ItemNDCG correct them (METHODS.md §6.5). ``suffix``: a missing de-dup suffix is
        computed first, so every SID is one item (the ``sasrec-sid`` rule).
    train_config : :class:`sidkit.eval.models.TrainConfig` of the downstream models (default
        ``TrainConfig()``); it is not modified (``epochs`` overrides a copy).
    progress : callback ``(stage, done, total, info)``.
    return_per_user : also return ``per_user``: per row, each test user's Recall@10 (and, with
        ``tiger``, ItemHit@10) averaged over the downstream seeds, for intervals pooled over
        several tokenizer fits (``benchmarks/downstream.py --fit-seeds``); with ``cold_items``
        also ``cold_recall@10`` (and ``cold_itemhit@10``) over the cold test users.
    cold_items : hold out this fraction of the items (seeded by the first seed) from the
        recommender's training and encode them from content through each table's model as new
        items (:mod:`sidkit.eval.cold`; every table must be a model directory). Rows then also
        carry ``cold_<metric>`` and ``warm_<metric>`` (test users whose target is / is not held
        out) and ``delta_cold_recall@10`` with its interval; the result has ``cold``.
    items : the catalog the held-out items are encoded from (default: the one each model was fitted on).
    tune_id : tune the ``sasrec-id`` baseline on validation first (:mod:`sidkit.eval.tune`: hidden
        size, dropout, lr, history length, epochs, one axis at a time); its row is named
        ``sasrec-id (tuned)`` and carries ``tuned`` (the chosen setting) and ``tuning`` (every trial).
    groups : one group label per table (e.g. the method, for tables fitted with several seeds).
        The result then has ``groups``: per label, Recall@10 (and ItemHit@10, cold Recall@10)
        pooled over its tables and users, with the relative change vs the first table's group
        and a two-level bootstrap interval (tables with replacement, users paired), so the
        fit-to-fit spread is in the interval (:func:`sidkit.eval.bootstrap.pooled_bootstrap`).

    Returns
    -------
    dict with ``rows`` (one per SID table, then one per baseline): ``name``, ``model``,
    ``recall@5/10/20``, ``ndcg@5/10/20`` (means over seeds), ``<metric>_std``, ``seeds``,
    ``delta_recall@10`` (relative to the first table), ``delta_recall@10_ci`` ([lo, hi], 95 %),
    ``delta_resolved``, ``best_epochs``, ``train_seconds``, ``eval_seconds`` (test inference),
    ``collision_rate``; with ``tiger`` also ``itemhit@5/10/20``, ``itemndcg@5/10/20`` (CCE, with
    ``_std``; for the item-level baselines they equal Recall/NDCG), ``sid_collision_rate`` (of
    the generated SIDs), ``delta_itemhit@10`` and ``delta_itemhit@10_ci``; and ``n_users``,
    ``n_items``, ``protocol``, ``split``, ``warnings``, ``seconds``.
    """
    from sidkit._progress import library_progress

    t_start = time.perf_counter()
    progress = library_progress(progress)
    codes_paths = list(codes_paths)
    names, seeds = _check_args(codes_paths, model=model, names=names, seeds=seeds, collisions=collisions, baselines=baselines)
    if groups is not None and len(groups) != len(codes_paths):
        raise ConfigError(f"got {len(groups)} group labels for {len(codes_paths)} SID tables; give one per table")
    cfg = _train_config(train_config, epochs)

    tables, warnings = _read_tables(codes_paths, names, id_col=id_col, codebook_size=codebook_size, suffix=suffix)
    catalog, w2 = _common_catalog(tables)
    warnings += w2
    cold = None
    if cold_items is not None:
        cold = _encode_cold(tables, catalog, cold_items, seeds[0], items)

    split, test_hist, test_tgt = _load_split(interactions, catalog, warnings, cold)

    import torch

    n_threads = torch.get_num_threads()
    torch.set_num_threads(max(1, int(cfg.threads)))
    tiger = model == "tiger"
    res = _Rows(tiger, None if cold is None else cold[test_tgt])
    run = _Run(split=split, test_hist=test_hist, test_tgt=test_tgt, cfg=cfg, seeds=seeds, beam=beam, progress=progress,
               catalog=catalog)
    for t in tables:
        row, ranks_by_seed, infos, cce = _eval_table(t, model, collisions, run, warnings)
        res.finish(row, ranks_by_seed, infos, cce if tiger else None)
    _eval_baselines(baselines, run, res, tune_id=tune_id)
    torch.set_num_threads(n_threads)

    _add_bootstrap_deltas(res, tiger, n_bootstrap=n_bootstrap, seed=seeds[0])
    if tiger and cold is not None:
        never = [r["name"] for r in res.rows[:len(tables)] if r.get("cold_recall@20", 1.0) == 0.0]
        if never:
            warnings.append(f"tiger never ranked a held-out item in its top 20 ({', '.join(never)}): a generative model does not "
                            "produce SIDs it was not trained on; compare cold-start items with --recommender sasrec-sid")
    rows = res.rows
    rnd = 1.0 / split.n_items
    extra = {"per_user": res.per_user_arrays()} if return_per_user else {}
    if groups is not None:
        extra["groups"] = _pooled_groups(res, list(groups), n_bootstrap=n_bootstrap, seed=seeds[0])
    if cold is not None:
        extra["cold"] = {"fraction": float(cold_items), "seed": seeds[0], "n_items": int(cold.sum()),
                         "n_test_users": int(cold[test_tgt].sum()), "n_warm_test_users": int((~cold[test_tgt]).sum())}
    return {
        **extra,
        "rows": rows,
        "reference": rows[0]["name"],
        "n_users": int(len(test_tgt)),
        "n_items": int(split.n_items),
        "random_recall@10": min(1.0, 10 * rnd),
        "protocol": _protocol(split, cfg, tiger=tiger, n_bootstrap=n_bootstrap, beam=beam, collisions=collisions),
        "split": split.info,
        "warnings": warnings,
        "seconds": time.perf_counter() - t_start,
    }


def _encode_cold(tables, catalog, fraction: float, seed: int, items) -> np.ndarray:
    """Pick the held-out items and give them, in every table, the SIDs a new item gets from content."""
    from sidkit.eval.cold import encode_cold, pick_cold

    cold = pick_cold(len(catalog), fraction, seed)
    cold_ids = catalog[cold]
    for t in tables:
        sid, sfx = encode_cold(t, cold_ids, items)
        t["codes"] = t["codes"].copy()
        t["codes"][cold] = sid
        if t["suffix"] is not None:
            t["suffix"] = t["suffix"].copy()
            t["suffix"][cold] = sfx
    return cold


def _load_split(interactions, catalog, warnings: list, cold: np.ndarray | None = None):
    """The leave-one-out split of the interactions with catalog items (without the held-out items
    in any training sequence), and its test histories and targets."""
    from sidkit.eval.split import load_split

    split = load_split(interactions, catalog)
    if cold is not None:
        from sidkit.eval.cold import hold_out

        split = hold_out(split, cold)
    if split.info["n_interactions_dropped"]:
        warnings.append(f"{split.info['n_interactions_dropped']} interactions are with items outside the SID tables and were dropped")
    _, test_hist, test_tgt = split.histories("test")
    if len(test_tgt) == 0:
        raise DataError(f"{interactions}: no user has both a history and a test target after the split")
    return split, test_hist, test_tgt


def _check_args(codes_paths, *, model, names, seeds, collisions, baselines) -> tuple[list[str], list[int]]:
    """Validate evaluate's arguments; return the display names (made unique) and the seeds as ints."""
    if model not in MODELS:
        raise ConfigError(f"{opt('model')} '{model}' is not known; choose one of {', '.join(MODELS)}")
    if not codes_paths:
        raise ConfigError("give at least one SID table")
    if names is None or len(names) == 0:
        names = [_default_name(p) for p in codes_paths]
    names = list(names)
    if len(names) != len(codes_paths):
        raise ConfigError(f"got {len(names)} {opt('names', '--name')} values for {len(codes_paths)} SID tables; give one per table or none")
    if len(set(names)) != len(names):
        names = [f"{n}#{i}" if names.count(n) > 1 else n for i, n in enumerate(names)]
    seeds = [int(s) for s in seeds]
    if not seeds:
        raise ConfigError(f"{opt('seeds')} must be at least 1")
    if collisions not in COLLISIONS:
        raise ConfigError(f"{opt('collisions')} '{collisions}' is not known; choose one of {', '.join(COLLISIONS)}")
    bad = [b for b in baselines if b not in BASELINES]
    if bad:
        raise ConfigError(f"baseline {bad[0]!r} is not known; choose from {', '.join(BASELINES)}")
    return names, seeds


def _train_config(train_config, epochs):
    from sidkit.eval.models import TrainConfig

    cfg = dataclasses.replace(train_config or TrainConfig())  # a copy: the caller's config stays as it was
    if epochs is not None:
        if int(epochs) < 1:
            raise ConfigError(f"{opt('epochs')} {epochs}: must be >= 1")
        cfg.epochs = int(epochs)
        cfg.tiger_epochs = int(epochs)
    return cfg


@dataclasses.dataclass
class _Run:
    """What every downstream training of one evaluate call shares."""

    split: object
    test_hist: object
    test_tgt: object
    cfg: object
    seeds: list
    beam: int
    progress: Callable | None
    catalog: object  # the item ids, in the order of the split's item index


def _per_user_recall(ranks_by_seed):
    return np.mean([recall_at_k(r, 10) for r in ranks_by_seed], axis=0)


class _Rows:
    """The result rows, and per row each test user's Recall@10 (and ItemHit@10 with tiger) for the bootstrap."""

    def __init__(self, tiger: bool, cold: np.ndarray | None = None):
        self.tiger = tiger
        self.cold = cold  # per test user: is the target a held-out item
        self.rows, self.per_user, self.per_user_item = [], [], []

    def finish(self, row, ranks_by_seed, infos, cce_by_seed=None):
        """cce_by_seed: per seed (beam groups, target groups, group sizes); None = item-level ranker."""
        from sidkit.eval.metrics import cce_at_k

        if self.cold is not None:
            self._finish_subsets(row, ranks_by_seed, cce_by_seed)

        mats = np.stack([np.concatenate([[summarize(r)[k] for k in METRIC_KEYS]]) for r in ranks_by_seed])
        for j, k in enumerate(METRIC_KEYS):
            row[k] = float(mats[:, j].mean())
            row[f"{k}_std"] = float(mats[:, j].std(ddof=1)) if len(mats) > 1 else 0.0
        if self.tiger:
            if cce_by_seed is None:  # an item-level ranking: every "SID" is one item
                for k in CCE_KEYS:
                    src = k.replace("itemhit", "recall").replace("itemndcg", "ndcg")
                    row[k], row[f"{k}_std"] = row[src], row[f"{src}_std"]
                self.per_user_item.append(_per_user_recall(ranks_by_seed))
            else:
                cm = np.stack([[summarize_cce(*c)[k] for k in CCE_KEYS] for c in cce_by_seed])
                for j, k in enumerate(CCE_KEYS):
                    row[k] = float(cm[:, j].mean())
                    row[f"{k}_std"] = float(cm[:, j].std(ddof=1)) if len(cm) > 1 else 0.0
                self.per_user_item.append(np.mean([cce_at_k(*c, 10)[0] for c in cce_by_seed], axis=0))
        row["best_epochs"] = [i.get("best_epoch") for i in infos]
        row["train_seconds"] = float(sum(i.get("train_seconds", 0.0) for i in infos))
        row["eval_seconds"] = float(sum(i.get("eval_seconds", 0.0) for i in infos))
        self.rows.append(row)
        self.per_user.append(_per_user_recall(ranks_by_seed))

    def _finish_subsets(self, row, ranks_by_seed, cce_by_seed) -> None:
        """``cold_<metric>`` / ``warm_<metric>``: the same metrics over the test users whose target
        is / is not a held-out item."""
        from sidkit.eval.metrics import summarize_cce

        for prefix, sel in (("cold_", self.cold), ("warm_", ~self.cold)):
            mats = np.stack([[summarize(r[sel])[k] for k in METRIC_KEYS] for r in ranks_by_seed])
            for j, k in enumerate(METRIC_KEYS):
                row[prefix + k] = float(mats[:, j].mean())
            if self.tiger:
                if cce_by_seed is None:
                    for k in CCE_KEYS:
                        row[prefix + k] = row[prefix + k.replace("itemhit", "recall").replace("itemndcg", "ndcg")]
                else:
                    cm = np.stack([[summarize_cce(g[sel], t[sel], s)[k] for k in CCE_KEYS] for g, t, s in cce_by_seed])
                    for j, k in enumerate(CCE_KEYS):
                        row[prefix + k] = float(cm[:, j].mean())
        row["n_cold_users"] = int(self.cold.sum())

    def per_user_arrays(self) -> dict:
        out = {"recall@10": [np.asarray(v, np.float64) for v in self.per_user]}
        if self.tiger:
            out["itemhit@10"] = [np.asarray(v, np.float64) for v in self.per_user_item]
        if self.cold is not None:
            for k in list(out):
                out[f"cold_{k}"] = [v[self.cold] for v in out[k]]
        return out


def _table_sids(t, group: bool, catalog, warnings: list):
    """The SIDs the downstream model sees: as given (``group``) or made unique with a de-dup suffix."""
    import sidkit.eval.models as M

    if group:  # the SIDs as given: the codes, plus the table's own suffix
        return M.table_sids(t["codes"], t["suffix"], t["sizes"])
    sid_full, sizes = M.full_sids(t["codes"], t["suffix"], t["sizes"], catalog)
    if t["suffix"] is None:
        warnings.append(f"{t['name']}: no suffix; a de-dup suffix was computed (0, 1, ... inside each collision group)")
    if len(np.unique(sid_full, axis=0)) != len(sid_full):
        raise DataError(f"{t['path']}: the SIDs with their suffix are not unique; give a table whose sid + suffix identify one item")
    return sid_full, sizes


def _eval_table(t, model, collisions, run: _Run, warnings: list):
    """Train and test the downstream model on one SID table, once per seed; return (row, ranks, infos, cce)."""
    import sidkit.eval.models as M
    from sidkit.metrics.collision import collision_rate

    tiger = model == "tiger"
    group = tiger and collisions == "group"
    sid_full, sizes = _table_sids(t, group, run.catalog, warnings)
    cr = collision_rate(t["codes"])
    split, cfg = run.split, run.cfg
    ranks_by_seed, infos, cce = [], [], []
    for s in run.seeds:
        stage = f"{t['name']} seed {s}"
        if model == "sasrec-sid":
            M._set_seed(s)  # the embedding's initialisation must not depend on earlier work in the process
            emb = M.SidItemEmbedding(sid_full, sizes, cfg.d)
            net, info = M.train_sasrec(split, emb, seed=s, cfg=cfg, progress=run.progress, stage=stage)
            t0 = time.perf_counter()
            ranks = M.sasrec_ranks(net, run.test_hist, run.test_tgt, tie_order=M._tie_order(split.n_items))
        else:
            net, trie, info = M.train_tiger(split, sid_full, sizes, seed=s, cfg=cfg, beam=run.beam, progress=run.progress,
                                            stage=stage, shared=group)
            t0 = time.perf_counter()
            groups, _ = M.tiger_beam_search(net, trie, run.test_hist, beam=run.beam)
            tg = trie.group_of[run.test_tgt]
            ranks = M.ranks_from_beams(groups, tg)
            cce.append((groups, tg, trie.group_size))
        info["eval_seconds"] = time.perf_counter() - t0
        ranks_by_seed.append(ranks)
        infos.append(info)
    row = {"name": t["name"], "model": model, "seeds": run.seeds, "levels": int(t["codes"].shape[1]),
           "collision_rate": float(cr)}
    if tiger:
        row["sid_collision_rate"] = float(collision_rate(sid_full))
        row["generated_tokens"] = int(sid_full.shape[1])
    return row, ranks_by_seed, infos, cce


def _eval_baselines(baselines, run: _Run, res: _Rows, tune_id: bool = False) -> None:
    """The rows of the baselines that ignore the SIDs: most-popular, then sasrec-id (one training
    per seed; with ``tune_id`` at the setting chosen on validation)."""
    import sidkit.eval.models as M

    split, cfg = run.split, run.cfg
    test_hist = run.test_hist
    extra: dict = {}
    if "most-popular" in baselines:
        ranks = M.most_popular_ranks(split, run.test_tgt)
        res.finish({"name": "most-popular", "model": "most-popular", "seeds": []}, [ranks], [{}])
    if "sasrec-id" in baselines:
        if tune_id:
            from sidkit.eval.tune import tune_sasrec_id, tuned_config

            setting, trials = tune_sasrec_id(split, cfg, seed=run.seeds[0], progress=run.progress)
            split, cfg = tuned_config(split, cfg, setting)
            _, test_hist, tgt = split.histories("test")
            if len(tgt) != len(run.test_tgt) or (tgt != run.test_tgt).any():
                raise DataError("sasrec-id tuning: the test users changed with the history length")  # cannot happen
            extra = {"tuned": setting, "tuning": trials}
        ranks_by_seed, infos = [], []
        for s in run.seeds:
            M._set_seed(s)
            emb = M.IdItemEmbedding(split.n_items, cfg.d)
            net, info = M.train_sasrec(split, emb, seed=s, cfg=cfg, progress=run.progress, stage=f"sasrec-id seed {s}",
                                       rank_held_out=False)
            # held-out items have only their random initial id embedding: ranked last, not at random
            ranks_by_seed.append(M.sasrec_ranks(net, test_hist, run.test_tgt, tie_order=M._tie_order(split.n_items),
                                                unscored=split.held_out))
            infos.append(info)
        name = "sasrec-id (tuned)" if tune_id else "sasrec-id"
        res.finish({"name": name, "model": "sasrec-id", "seeds": run.seeds, **extra}, ranks_by_seed, infos)


def _add_bootstrap_deltas(res: _Rows, tiger: bool, *, n_bootstrap: int, seed: int) -> None:
    """Paired bootstrap of every row against the first: delta Recall@10 (and ItemHit@10 with tiger) with CIs."""
    from sidkit.eval.bootstrap import paired_bootstrap

    boot = paired_bootstrap(res.per_user, n_resamples=n_bootstrap, seed=seed)
    for row, b in zip(res.rows, boot):
        row["delta_recall@10"] = b["delta"]
        row["delta_recall@10_ci"] = b["ci"]
        row["delta_recall@10_abs"] = b["delta_abs"]
        row["delta_resolved"] = b["resolved"]
    if res.cold is not None and res.cold.any():
        for row, b in zip(res.rows, paired_bootstrap([v[res.cold] for v in res.per_user], n_resamples=n_bootstrap, seed=seed)):
            row["delta_cold_recall@10"] = b["delta"]
            row["delta_cold_recall@10_ci"] = b["ci"]
            row["delta_cold_resolved"] = b["resolved"]
    if tiger:
        for row, b in zip(res.rows, paired_bootstrap(res.per_user_item, n_resamples=n_bootstrap, seed=seed)):
            row["delta_itemhit@10"] = b["delta"]
            row["delta_itemhit@10_ci"] = b["ci"]
            row["delta_itemhit@10_resolved"] = b["resolved"]


def _pooled_groups(res: _Rows, labels: list[str], *, n_bootstrap: int, seed: int) -> list[dict]:
    """Per group label (in order of first appearance): its tables' metrics pooled with the two-level bootstrap."""
    from sidkit.eval.bootstrap import pooled_bootstrap

    order = list(dict.fromkeys(labels))
    index = {g: [i for i, lab in enumerate(labels) if lab == g] for g in order}
    per_user = res.per_user_arrays()
    out = [{"name": g, "tables": [res.rows[i]["name"] for i in index[g]]} for g in order]
    for key, arrays in per_user.items():
        pooled = pooled_bootstrap(arrays, index, order[0], n_resamples=min(n_bootstrap, 2000), seed=seed)
        for entry in out:
            p = pooled[entry["name"]]
            entry[key] = p["mean"]
            entry[f"{key}_per_table"] = p["per_table"]
            entry[f"delta_{key}"] = p["delta"]
            entry[f"delta_{key}_ci"] = p["ci"]
    return out


def _protocol(split, cfg, *, tiger, n_bootstrap, beam, collisions) -> dict:
    return {"ranking": "full catalog, no sampled negatives", "history_masked": False,
            "history_len": split.max_history, "ks": list(KS), "bootstrap_resamples": n_bootstrap,
            "beam": beam if tiger else None, "collisions": collisions if tiger else None,
            "early_stopping": (f"tiger: {cfg.tiger_epochs} epochs, one-cycle schedule to lr {cfg.tiger_lr} "
                               f"(warm-up {cfg.tiger_warmup:g} of the steps), best validation Recall@10 epoch of the second half kept"
                               if tiger else f"validation Recall@10, patience {cfg.patience}, max {cfg.epochs} epochs"),
            "train_config": {k: getattr(cfg, k) for k in cfg.__dataclass_fields__}}


def _first(ids):
    v = ids[0]
    return v.as_py() if hasattr(v, "as_py") else (v.item() if hasattr(v, "item") else v)


def _default_name(p) -> str:
    from pathlib import Path

    p = Path(p)
    if p.is_dir() or p.name == "codes.parquet":
        return (p if p.is_dir() else p.parent).name or str(p)
    return p.stem
