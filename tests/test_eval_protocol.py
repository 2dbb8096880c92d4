"""sidkit eval protocol options: cold-start items, pooled groups of tables, the tuned sasrec-id."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

from sidkit.errors import ConfigError
from sidkit.eval import evaluate
from sidkit.eval.bootstrap import pooled_bootstrap
from sidkit.eval.cold import hold_out, pick_cold
from sidkit.eval.split import split_arrays

from test_eval import _category_sids, _first_users, tiny_cfg

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


@pytest.fixture(scope="module")
def example_model(tmp_path_factory):
    import sidkit

    out = tmp_path_factory.mktemp("cold") / "model"
    sidkit.fit(EXAMPLES / "items.parquet", out=out, method="rqkmeans", codebook_size=[16, 8, 8], seed=0)
    return out


# ----------------------------------------------------------------------------- cold start
def test_pick_cold_is_seeded_and_sized():
    a, b = pick_cold(1000, 0.1, 0), pick_cold(1000, 0.1, 0)
    assert a.sum() == 100 and (a == b).all()
    assert (pick_cold(1000, 0.1, 1) != a).any()
    assert pick_cold(5, 0.01, 0).sum() == 1
    for bad in (0.0, 1.0, -0.2, 1.5):
        with pytest.raises(ConfigError, match="between 0 and 1"):
            pick_cold(100, bad, 0)


def test_hold_out_removes_items_from_training_and_keeps_test_targets():
    users = np.repeat(np.arange(4), 5)
    items = np.array([0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 1, 3, 5, 7, 9, 2, 4, 6, 8, 0])
    sp = split_arrays(users, items, n_items=10)
    cold = np.zeros(10, bool)
    cold[[3, 8]] = True
    h = hold_out(sp, cold)
    for seq in h.train:
        assert not cold[seq].any()
    assert [list(s) for s in h.train] == [[0, 1, 2], [5, 6, 7], [1, 5], [2, 4, 6]]
    assert list(h.valid) == [-1, -1, 7, -1]  # the cold validation targets (3, 8 and 8) are dropped
    assert list(h.test) == list(sp.test)  # every test target stays, cold ones included
    _, hist, tgt = h.histories("test")
    assert not cold[hist[hist >= 0]].any()
    assert h.held_out is cold and h.info["n_items_held_out"] == 2


def test_held_out_items_get_no_gradient_in_sasrec_id():
    """The recommender never sees a held-out item, not even as a softmax negative."""
    import torch

    import sidkit.eval.models as M

    rng = np.random.default_rng(0)
    users = np.repeat(np.arange(60), 6)
    items = rng.integers(0, 30, size=len(users))
    cold = np.zeros(30, bool)
    cold[[2, 11, 17]] = True
    sp = hold_out(split_arrays(users, items, n_items=30), cold)
    M._set_seed(0)
    emb = M.IdItemEmbedding(30, 16)
    before = [p.detach().clone() for p in emb.parameters()]
    M.train_sasrec(sp, emb, seed=0, cfg=tiny_cfg(d=16, epochs=2, valid_users=50))
    after = list(emb.parameters())
    moved = [(a - b).abs().sum(dim=tuple(range(1, a.dim()))) if a.dim() > 1 else (a - b).abs() for a, b in zip(after, before)]
    table = next(m for m, a in zip(moved, after) if a.shape[0] >= 30)
    assert torch.all(table[torch.as_tensor(cold)] == 0)
    assert torch.all(table[torch.as_tensor(~cold)][:5] > 0)


def test_cold_items_are_encoded_from_content_as_new_items(example_model, tmp_path):
    from sidkit.eval.cold import encode_cold
    from sidkit.eval.run import _common_catalog, _read_tables

    import sidkit

    tables, _ = _read_tables([example_model], ["m"], id_col=None, codebook_size=None, suffix="auto")
    catalog, _ = _common_catalog(tables)
    cold = pick_cold(len(catalog), 0.2, 0)
    sid, sfx = encode_cold(tables[0], catalog[cold])
    model = sidkit.load_model(example_model)
    emb = pq.read_table(EXAMPLES / "items.parquet").column("embedding").to_pylist()
    X = np.asarray(emb, np.float32)
    ids = pq.read_table(EXAMPLES / "items.parquet").column("item_id").to_numpy()
    rows = {v: i for i, v in enumerate(ids)}
    assert (sid == model.tokenizer.encode(X[[rows[i] for i in catalog[cold]]])).all()  # from content, through the model
    # the table with the cold items re-encoded stays unique (new items take free suffixes)
    codes = tables[0]["codes"].copy()
    suffix = tables[0]["suffix"].copy()
    codes[cold], suffix[cold] = sid, sfx
    full = np.column_stack([codes, suffix])
    assert len(np.unique(full, axis=0)) == len(full)
    # new items come after the known ones of their bucket
    warm_keys = {tuple(c) for c in np.column_stack([tables[0]["codes"][~cold], tables[0]["suffix"][~cold]])}
    assert not any(tuple(k) in warm_keys for k in np.column_stack([sid, sfx]))


def test_evaluate_cold_items_reports_cold_and_warm_users(example_model):
    res = evaluate([example_model], EXAMPLES / "interactions.parquet", seeds=(0,), n_bootstrap=100, cold_items=0.2,
                   train_config=tiny_cfg(epochs=2), return_per_user=True)
    cold = res["cold"]
    assert cold["fraction"] == 0.2 and cold["n_items"] == 400
    assert cold["n_test_users"] + cold["n_warm_test_users"] == res["n_users"] and cold["n_test_users"] > 0
    for row in res["rows"]:
        n_c, n_w = cold["n_test_users"], cold["n_warm_test_users"]
        # the whole is the user-weighted mean of its two parts
        assert row["recall@10"] == pytest.approx((n_c * row["cold_recall@10"] + n_w * row["warm_recall@10"]) / (n_c + n_w))
        assert row["n_cold_users"] == n_c
    pu = res["per_user"]
    assert float(np.mean(pu["cold_recall@10"][0])) == pytest.approx(res["rows"][0]["cold_recall@10"])
    assert "delta_cold_recall@10_ci" in res["rows"][1]
    rows = {r["name"]: r for r in res["rows"]}
    assert rows["most-popular"]["cold_recall@10"] == 0.0  # a held-out item has no training count
    assert rows["sasrec-id"]["cold_recall@20"] == 0.0  # no trained id embedding: ranked below every seen item


def test_cold_items_need_model_directories(tmp_path):
    table = _category_sids(tmp_path / "cat.parquet")
    with pytest.raises(ConfigError, match="must be a model directory"):
        evaluate([table], EXAMPLES / "interactions.parquet", seeds=(0,), cold_items=0.1, train_config=tiny_cfg(epochs=1))


# ----------------------------------------------------------------------------- pooled groups
def test_pooled_bootstrap_known_answers():
    rng = np.random.default_rng(0)
    a = [(rng.random(400) < 0.2).astype(float) for _ in range(2)]
    # two fits that agree: only the users vary, and they are paired, so the interval is the point
    same = pooled_bootstrap([a[0]] * 4, {"x": [0, 1], "y": [2, 3]}, "x", n_resamples=200)
    assert same["y"]["delta"] == 0.0 and same["y"]["ci"] == [0.0, 0.0]
    double = pooled_bootstrap([a[0], 2 * a[0]], {"x": [0], "y": [1]}, "x", n_resamples=200)
    assert double["y"]["delta"] == pytest.approx(1.0) and double["y"]["ci"] == pytest.approx([1.0, 1.0])
    # fits that disagree: the fit-to-fit spread widens the interval around the pooled mean
    spread = pooled_bootstrap([a[0], a[0], a[0], 2 * a[1]], {"x": [0, 1], "y": [2, 3]}, "x", n_resamples=400)
    y = spread["y"]
    assert y["per_table"] == pytest.approx([float(a[0].mean()), 2 * float(a[1].mean())])
    assert y["ci"][0] < y["delta"] < y["ci"][1] and y["ci"][1] - y["ci"][0] > 0.3


def test_evaluate_groups_pool_tables(tmp_path):
    small = _first_users(tmp_path / "small.parquet", 150)
    good = _category_sids(tmp_path / "good.parquet")
    res = evaluate([good, good, good], small, seeds=(0,), baselines=(), n_bootstrap=200, groups=["a", "a", "b"],
                   train_config=tiny_cfg(epochs=1, valid_users=100))
    g = {x["name"]: x for x in res["groups"]}
    per_table = [r["recall@10"] for r in res["rows"]]
    assert g["a"]["tables"] == ["good#0", "good#1"] and g["b"]["tables"] == ["good#2"]
    assert g["a"]["recall@10"] == pytest.approx(np.mean(per_table[:2]))
    assert g["a"]["recall@10_per_table"] == pytest.approx(per_table[:2])
    lo, hi = g["b"]["delta_recall@10_ci"]
    assert lo <= g["b"]["delta_recall@10"] <= hi
    with pytest.raises(ConfigError, match="group labels"):
        evaluate([good], small, groups=["a", "b"])


def test_cli_globs_are_groups(tmp_path, monkeypatch):
    from sidkit.cli.eval import expand_tables

    for n in ("a_s0", "a_s1", "b_s0"):
        _category_sids(tmp_path / f"{n}.parquet")
    paths, groups, names = expand_tables([str(tmp_path / "a_s*.parquet"), str(tmp_path / "b_s0.parquet")], None)
    assert [Path(p).name for p in paths] == ["a_s0.parquet", "a_s1.parquet", "b_s0.parquet"]
    assert groups == [str(tmp_path / "a_s*.parquet")] * 2 + [str(tmp_path / "b_s0.parquet")] and names is None
    _, groups, _ = expand_tables([str(tmp_path / "a_s*.parquet"), str(tmp_path / "b_s0.parquet")], ["a", "b"])
    assert groups == ["a", "a", "b"]
    assert expand_tables([str(tmp_path / "b_s0.parquet")], ["x"]) == ([str(tmp_path / "b_s0.parquet")], None, ["x"])
    with pytest.raises(ConfigError, match="no SID table matches"):
        expand_tables([str(tmp_path / "zz*")], None)

    import sidkit.eval.models as M
    from test_eval import app

    cfg = tiny_cfg(epochs=1, valid_users=100)
    monkeypatch.setattr(M, "TrainConfig", lambda: cfg)
    small = _first_users(tmp_path / "small.parquet", 100)
    r = CliRunner().invoke(app, ["eval", str(tmp_path / "a_s*.parquet"), str(tmp_path / "b_s0.parquet"), "--interactions", str(small),
                                 "--seeds", "1", "--no-baselines", "--bootstrap", "100", "--json"])
    assert r.exit_code == 0, r.output
    doc = json.loads(r.stdout)
    assert [g["tables"] for g in doc["groups"]] == [["a_s0", "a_s1"], ["b_s0"]]


# ----------------------------------------------------------------------------- tuned sasrec-id
def test_tune_sasrec_id_one_axis_at_a_time(tmp_path, monkeypatch):
    import sidkit.eval.tune as T
    from sidkit.eval.split import load_split

    monkeypatch.setattr(T, "GRID", {"d": (16, 32), "dropout": (0.2, 0.5), "max_history": (20, 10)})
    small = _first_users(tmp_path / "small.parquet", 150)
    ids = pq.read_table(EXAMPLES / "items.parquet").column("item_id").to_numpy()
    sp = load_split(small, ids)
    setting, trials = T.tune_sasrec_id(sp, tiny_cfg(d=16, epochs=2, valid_users=100), seed=0)
    assert len(trials) == 4  # the start, then one alternative per axis
    assert trials[0]["setting"] == {"d": 16, "dropout": 0.2, "lr": 1e-3, "max_history": 20, "epochs": 2}
    # greedy: a change is kept only when it beats the best so far, so the chosen setting is the best trial
    chosen = next(t for t in trials if t["setting"] == setting)
    assert chosen["valid_recall@10"] == max(t["valid_recall@10"] for t in trials)

    res = evaluate([_category_sids(tmp_path / "g.parquet")], small, seeds=(0,), baselines=("sasrec-id",), tune_id=True,
                   n_bootstrap=100, train_config=tiny_cfg(d=16, epochs=2, valid_users=100))
    row = res["rows"][-1]
    assert row["name"] == "sasrec-id (tuned)" and row["tuned"] == setting and len(row["tuning"]) == 4


def test_tiger_cold_items_warn_when_never_generated(example_model, tmp_path):
    small = _first_users(tmp_path / "small.parquet", 120)
    res = evaluate([example_model], small, model="tiger", seeds=(0,), baselines=(), n_bootstrap=100, cold_items=0.3,
                   train_config=tiny_cfg(epochs=1, valid_users=100))
    row = res["rows"][0]
    assert 0.0 <= row["cold_itemhit@10"] <= row["cold_recall@10"] + 1e-12
    warned = any("never ranked a held-out item" in w for w in res["warnings"])
    assert warned == (row["cold_recall@20"] == 0.0)


def test_unscored_items_rank_below_every_other():
    import sidkit.eval.models as M

    rng = np.random.default_rng(0)
    users = np.repeat(np.arange(40), 5)
    sp = split_arrays(users, rng.integers(0, 12, size=len(users)), n_items=12)
    M._set_seed(0)
    net = M.SASRec(M.IdItemEmbedding(12, 8), 8, sp.max_history, 1, 2, 0.0)
    _, hist, tgt = sp.histories("test")
    unscored = np.zeros(12, bool)
    unscored[[3, 5]] = True
    ranks = M.sasrec_ranks(net, hist, tgt, tie_order=M._tie_order(12), unscored=unscored)
    assert (ranks[unscored[tgt]] > 10).all()  # after the 10 scored items
    plain = M.sasrec_ranks(net, hist, tgt, tie_order=M._tie_order(12))
    assert (ranks[~unscored[tgt]] <= plain[~unscored[tgt]]).all()  # the others move up or stay
