"""sidkit eval: metrics, split, trie, bootstrap, end-to-end runs and the CLI."""

from __future__ import annotations

import dataclasses
import inspect
import json
import math
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute  # noqa: F401
import pyarrow.parquet as pq
import pytest
import typer
from typer.testing import CliRunner

from sidkit.cli.eval import eval_command
from sidkit.eval import evaluate, ndcg_at_k, paired_bootstrap, recall_at_k
from sidkit.eval.metrics import ranks_from_scores, summarize
from sidkit.eval.split import load_split, split_arrays

REPO = Path(__file__).resolve().parents[1]
EXAMPLES = REPO / "examples"

from sidkit.cli._tools import OneLineErrors  # noqa: E402

app = typer.Typer(cls=OneLineErrors)  # the sidkit app's group: errors name command-line flags
app.command("eval")(eval_command)
app.command("noop")(lambda: None)  # keep 'eval' a sub-command
runner = CliRunner()


def tiny_cfg(**kw):
    from sidkit.eval.models import TrainConfig

    c = TrainConfig(d=32, n_layers=1, n_heads=2, epochs=4, patience=2, valid_users=300, batch_size=128)
    for k, v in kw.items():
        setattr(c, k, v)
    if "tiger_epochs" not in kw:
        c.tiger_epochs = c.epochs
    return c


# ----------------------------------------------------------------------------- metrics
def test_recall_ndcg_exact_values():
    ranks = np.array([1, 2, 5, 6, 11, 20, 21, np.inf])
    assert recall_at_k(ranks, 5).tolist() == [1, 1, 1, 0, 0, 0, 0, 0]
    assert recall_at_k(ranks, 10).mean() == pytest.approx(4 / 8)
    assert recall_at_k(ranks, 20).mean() == pytest.approx(6 / 8)
    nd = ndcg_at_k(ranks, 10)
    expect = [1.0, 1 / math.log2(3), 1 / math.log2(6), 1 / math.log2(7), 0, 0, 0, 0]
    np.testing.assert_allclose(nd, expect)
    s = summarize(ranks)
    assert s["ndcg@20"] == pytest.approx((sum(expect) + 1 / math.log2(12) + 1 / math.log2(21)) / 8)
    assert set(s) == {"recall@5", "recall@10", "recall@20", "ndcg@5", "ndcg@10", "ndcg@20"}


def test_ranks_from_scores_full_ranking_and_ties():
    scores = np.array([[0.9, 0.1, 0.5, 0.7], [0.0, 0.0, 0.0, 0.0]])
    assert ranks_from_scores(scores, [2, 0]).tolist() == [3, 4]  # pessimistic ties without an order
    tie = np.array([3, 2, 1, 0])  # item 3 first among equal scores
    assert ranks_from_scores(scores, [2, 0], tie).tolist() == [3, 4]
    assert ranks_from_scores(scores, [2, 3], tie).tolist() == [3, 1]


# ----------------------------------------------------------------------------- split
def test_cce_on_hand_made_beams():
    from sidkit.eval.metrics import cce_at_k, summarize_cce

    lg = lambda p: 1.0 / math.log2(p + 1)  # noqa: E731
    # groups: 0 -> 1 item, 1 -> 2 items, 2 -> 3 items, 3 -> 1 item
    sizes = [1, 2, 3, 1]
    beams = np.array([
        [0, 1, 2, -1],   # target group 0 (G=1) at beam rank 1: plain hit
        [0, 1, 2, -1],   # target group 1 (G=2) after 1 item: positions 2, 3
        [0, 1, 2, -1],   # target group 2 (G=3) after 3 items: positions 4, 5, 6
        [2, 1, 0, 3],    # target group 3 (G=1) after 3 + 2 + 1 = 6 items: position 7
        [0, 1, -1, -1],  # target group 2 not in the beam
    ])
    tgt = np.array([0, 1, 2, 3, 2])
    hit, nd = cce_at_k(beams, tgt, sizes, 5)
    np.testing.assert_allclose(hit, [1.0, 1.0, 2 / 3, 0.0, 0.0])
    np.testing.assert_allclose(nd, [lg(1), (lg(2) + lg(3)) / 2, (lg(4) + lg(5)) / 3, 0.0, 0.0])
    hit, nd = cce_at_k(beams, tgt, sizes, 2)  # the 2-group is cut after its first item
    np.testing.assert_allclose(hit, [1.0, 0.5, 0.0, 0.0, 0.0])
    np.testing.assert_allclose(nd, [lg(1), lg(2) / 2, 0.0, 0.0, 0.0])
    hit, nd = cce_at_k(beams, tgt, sizes, 10)
    np.testing.assert_allclose(hit, [1.0, 1.0, 1.0, 1.0, 0.0])
    np.testing.assert_allclose(nd, [lg(1), (lg(2) + lg(3)) / 2, (lg(4) + lg(5) + lg(6)) / 3, lg(7), 0.0])
    # singleton groups everywhere: CCE = Recall / NDCG of the beam ranks
    single = np.array([[3, 1, 0, 2], [0, 1, 2, 3]])
    from sidkit.eval.models import ranks_from_beams

    m = summarize_cce(single, np.array([0, 3]), [1, 1, 1, 1], ks=(1, 3))
    r = summarize(ranks_from_beams(single, np.array([0, 3])), ks=(1, 3))
    assert m["itemhit@1"] == r["recall@1"] and m["itemhit@3"] == r["recall@3"] == 0.5
    assert m["itemndcg@3"] == pytest.approx(r["ndcg@3"])


def test_split_by_column():
    users = ["a"] * 4 + ["b"] * 3
    items = [0, 1, 2, 3, 4, 5, 6]
    order = [3, 2, 1, 0, 0, 1, 2]  # user a's rows are stored in reverse time order
    split = np.array([2, 1, 0, 0, 0, 1, 2])
    s = split_arrays(users, items, order=order, split=split, n_items=7)
    assert [t.tolist() for t in s.train] == [[3, 2], [4]]
    assert s.valid.tolist() == [1, 5] and s.test.tolist() == [0, 6]
    u, h, t = s.histories("test")
    assert t.tolist() == [0, 6]
    assert h[0, -3:].tolist() == [3, 2, 1] and (h[0, :-3] == -1).all()
    assert h[1, -2:].tolist() == [4, 5]
    _, hv, tv = s.histories("valid")
    assert tv.tolist() == [1, 5] and hv[0, -2:].tolist() == [3, 2]


def test_split_leave_one_out_by_timestamp_and_history_truncation():
    n = 30
    users = ["u"] * n + ["short"] * 2
    items = list(range(n)) + [0, 1]
    ts = list(reversed(range(n))) + [0, 1]  # newest first in the file
    s = split_arrays(users, items, order=ts, split=None, n_items=n)
    # sorted by timestamp: items n-1, n-2, ..., 0 -> test 0, valid 1
    assert s.test[1] == 0 and s.valid[1] == 1
    assert s.train[1].tolist() == list(range(n - 1, 1, -1))
    assert s.valid[0] == -1 and s.test[0] == -1 and s.info["n_users_too_short"] == 1
    _, h, t = s.histories("test")
    assert t.tolist() == [0]
    assert h.shape == (1, 20) and h[0].tolist() == list(range(20, 0, -1))  # last 20 before the target


def test_split_by_position_from_file(tmp_path):
    p = tmp_path / "inter.parquet"
    pq.write_table(pa.table({"user_id": ["x", "x", "x", "y", "y", "y"], "item_id": ["c", "a", "b", "a", "b", "c"],
                             "position": [2, 0, 1, 0, 1, 2]}), p)
    s = load_split(p, ["a", "b", "c"])
    assert s.test.tolist() == [2, 2] and s.valid.tolist() == [1, 1]
    assert [t.tolist() for t in s.train] == [[0], [0]]


def test_split_interactions_parts():
    from sidkit.io.interactions import TEST, TRAIN, VALID, split_interactions

    users = ["d", "a", "c", "b", "d", "c", "d", "b", "d", "c"]  # a: 1 row, b: 2, c: 3, d: 4
    order = [4, 0, 2, 1, 1, 0, 3, 0, 2, 1]
    perm, user, part = split_interactions(users, order=order)
    rows = [(users[i], order[i]) for i in perm]
    assert rows == [("a", 0), ("b", 0), ("b", 1), ("c", 0), ("c", 1), ("c", 2), ("d", 1), ("d", 2), ("d", 3), ("d", 4)]
    assert user.tolist() == [0, 1, 1, 2, 2, 2, 3, 3, 3, 3]
    # fewer than 3 interactions: all training, no target
    assert part.tolist() == [TRAIN, TRAIN, TRAIN, TRAIN, VALID, TEST, TRAIN, TRAIN, VALID, TEST]
    codes = np.array([TEST, TRAIN, VALID, TRAIN, TRAIN, TRAIN, TRAIN, TEST, TRAIN, TRAIN])
    perm2, _, part2 = split_interactions(users, order=order, split=codes)  # a split column decides
    assert perm2.tolist() == perm.tolist() and part2.tolist() == codes[perm].tolist()
    perm3, _, part3 = split_interactions(["x", "x", "x"])  # no order: file order
    assert perm3.tolist() == [0, 1, 2] and part3.tolist() == [TRAIN, VALID, TEST]


def test_alignment_trains_on_the_eval_training_part(tmp_path):
    """QuaSID/AdaSID align on exactly the interactions eval trains its downstream models on."""
    from sidkit.regularizers.align import read_train_interactions

    rng = np.random.default_rng(3)
    catalog = [f"i{k}" for k in range(25)]
    lengths = [1, 2, 3, 4, 7, 2, 1, 5]
    users = [f"u{u}" for u, n in enumerate(lengths) for _ in range(n)]
    p = tmp_path / "inter.parquet"
    pq.write_table(pa.table({"user_id": users, "item_id": [catalog[k] for k in rng.integers(0, 25, len(users))],
                             "timestamp": rng.permutation(len(users)).astype(np.int64)}), p)
    s = load_split(p, catalog)
    ti = read_train_interactions(p, catalog)
    assert ti.n_rows_total == len(users) and ti.n_rows_train == sum(len(t) for t in s.train) == sum(
        n if n < 3 else n - 2 for n in lengths)
    for u, train in enumerate(s.train):
        assert ti.items[ti.users == u].tolist() == train.tolist()
    assert s.info["n_users_too_short"] == 4 and (s.test >= 0).sum() == 4


# ----------------------------------------------------------------------------- bootstrap
def test_bootstrap_identical_tables_zero_delta():
    rng = np.random.default_rng(0)
    a = (rng.random(500) < 0.2).astype(float)
    out = paired_bootstrap([a, a.copy()], n_resamples=500)
    assert out[1]["delta"] == 0.0 and out[1]["ci"] == [0.0, 0.0] and not out[1]["resolved"]
    b = np.clip(a + (rng.random(500) < 0.3), 0, 1)
    out = paired_bootstrap([a, b], n_resamples=500)
    assert out[1]["delta"] > 0 and out[1]["ci"][0] > 0 and out[1]["resolved"]


# ----------------------------------------------------------------------------- trie / tiger
def test_trie_only_decodes_valid_sids():
    import torch

    from sidkit.eval.models import TIGER, SidTrie, full_sids, ranks_from_beams, tiger_beam_search

    rng = np.random.default_rng(0)
    codes = rng.integers(0, 4, size=(30, 2))
    sid_full, sizes = full_sids(codes, None, [4, 4], np.arange(len(codes)))
    trie = SidTrie(sid_full, sizes)
    valid = {tuple(r) for r in sid_full}
    assert all(trie.contains(r) for r in sid_full)
    assert not trie.contains([9, 0, 0])
    torch.manual_seed(0)
    model = TIGER(sid_full, sizes, max_items=5, d=16, n_heads=2, n_layers=1, ff=32)
    hist = np.array([[-1, -1, 0, 1, 2], [3, 4, 5, 6, 7]])
    items, scores = tiger_beam_search(model, trie, hist, beam=20)
    assert items.shape == (2, 20)
    got = items[items >= 0]
    assert len(got) > 0 and len(np.unique(items[0][items[0] >= 0])) == (items[0] >= 0).sum()
    assert all(tuple(sid_full[i]) in valid for i in got)
    assert np.all(np.diff(scores[0][np.isfinite(scores[0])]) <= 1e-6)  # beams in score order
    r = ranks_from_beams(items, [items[0, 3], 10**6])
    assert r[0] == 4 and np.isinf(r[1])


def _slow_beam_search(model, sids, hist, beam):
    """Reference: one user at a time, plain Python over beams and tokens, the uncached decoder
    (``TIGER.decode_logits``), valid next tokens read from the list of SIDs."""
    import torch

    sids = [tuple(int(x) for x in r) for r in sids]
    depth = len(sids[0])
    out_items, out_scores = [], []
    with torch.no_grad():
        model.eval()
        for u in range(len(hist)):
            mem, pad = model.encode(torch.as_tensor(hist[u:u + 1]))
            beams = [((), 0.0)]
            for l in range(depth):
                cand = []
                for bi, (pre, sc) in enumerate(beams):
                    logits = model.decode_logits(mem, pad, torch.as_tensor([list(pre)], dtype=torch.long))
                    logp = torch.log_softmax(logits, -1)[0].tolist()
                    allowed = sorted({s[l] for s in sids if s[:l] == pre})
                    cand += [(sc + logp[tok], bi, tok, pre + (tok,)) for tok in allowed]
                cand.sort(key=lambda c: (-c[0], c[1], c[2]))
                beams = [(c[3], c[0]) for c in cand[:beam]]
            groups = sorted(set(sids))
            gi = {g: i for i, g in enumerate(groups)}
            items = [gi[p] for p, _ in beams] + [-1] * (beam - len(beams))
            out_items.append(items)
            out_scores.append([s for _, s in beams] + [float("-inf")] * (beam - len(beams)))
    return np.asarray(out_items), np.asarray(out_scores)


@pytest.mark.parametrize("shared", [False, True])
def test_batched_beam_search_equals_slow_reference(shared):
    import torch

    from sidkit.eval.models import TIGER, SidTrie, tiger_beam_search

    rng = np.random.default_rng(3)
    n = 60
    codes = rng.integers(0, 5, size=(n, 3))
    if not shared:
        codes = np.unique(codes, axis=0)
        n = len(codes)
    sizes = [5, 5, 5]
    trie = SidTrie(codes, sizes, shared=shared)
    assert shared == (trie.group_size > 1).any()
    torch.manual_seed(1)
    model = TIGER(codes, sizes, max_items=6, d=16, n_heads=2, n_layers=2, ff=32)
    with torch.no_grad():  # a sharper random model, so that beams are far from ties
        for p in model.parameters():
            p.mul_(3.0)
    hist = rng.integers(-1, n, size=(9, 6))
    hist[:, -1] = rng.integers(0, n, size=9)
    for beam in (1, 7, 30):
        fast_items, fast_scores = tiger_beam_search(model, trie, hist, beam=beam, batch_size=4)
        slow_items, slow_scores = _slow_beam_search(model, codes, hist, beam)
        if not shared:  # groups are the catalog rows; the reference numbers them in sorted-SID order
            order = np.lexsort(codes.T[::-1])
            slow_items = np.where(slow_items >= 0, order[slow_items.clip(0)], -1)
        np.testing.assert_array_equal(fast_items, slow_items)
        fin = np.isfinite(slow_scores)
        assert (np.isfinite(fast_scores) == fin).all()
        np.testing.assert_allclose(fast_scores[fin], slow_scores[fin], rtol=1e-4, atol=1e-4)


# ----------------------------------------------------------------------------- training loop
@pytest.fixture
def one_thread():
    """One torch thread, as ``evaluate`` trains (small models run slower on more)."""
    import torch

    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def _toy_split(n_users: int, n_items: int = 30, seed: int = 0):
    """Random sequences of 4..8 items per user, leave-one-out in file order."""
    rng = np.random.default_rng(seed)
    users, items = [], []
    for u in range(n_users):
        n = int(rng.integers(4, 9))
        users += [f"u{u:03d}"] * n
        items += rng.integers(0, n_items, n).tolist()
    return split_arrays(users, items, split=None, n_items=n_items)


def _reference_fit(model, opt, epoch_batches, batch_loss, validate, cfg, clip_norm=None, lr_of_step=None, select_from=1):
    """The downstream training loop written out by hand: epochs, early stopping, best state (of
    the epochs from ``select_from`` on)."""
    best, best_state, best_epoch, bad, epoch, calls, step = -1.0, None, 0, 0, 0, [], 0
    for epoch in range(1, cfg.epochs + 1):
        model.train()
        for idx in epoch_batches():
            loss = batch_loss(idx)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            if clip_norm is not None:
                import torch

                torch.nn.utils.clip_grad_norm_(model.parameters(), clip_norm)
            if lr_of_step is not None:
                opt.param_groups[0]["lr"] = lr_of_step[step]
            opt.step()
            step += 1
        if epoch < select_from:  # cannot be kept: not validated
            calls.append(None)
            continue
        score = validate()
        if score > best:
            best, best_epoch, bad = score, epoch, 0
            best_state = {k: v.detach().clone() for k, v in model.state_dict().items()}
        else:
            bad += 1
        calls.append(score)
        if bad >= cfg.patience and epoch >= cfg.min_epochs:
            break
    model.load_state_dict(best_state)
    return {"best_epoch": best_epoch, "epochs_run": epoch, "valid_recall@10": best}, calls


def _same_state(a, b) -> bool:
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(__import__("torch").equal(sa[k], sb[k]) for k in sa)


def test_train_sasrec_matches_hand_written_loop(one_thread):
    import torch
    import torch.nn.functional as F

    from sidkit.eval import models as M

    split = _toy_split(40)
    cfg = tiny_cfg(d=16, epochs=5, patience=1, min_epochs=2, valid_users=25, batch_size=8, lr=3e-3)
    calls = []
    M._set_seed(3)
    net, info = M.train_sasrec(split, M.IdItemEmbedding(split.n_items, cfg.d), seed=3, cfg=cfg,
                               progress=lambda *a: calls.append(a))

    M._set_seed(3)
    emb = M.IdItemEmbedding(split.n_items, cfg.d)
    gen = M._set_seed(3)
    T = split.max_history
    ref = M.SASRec(emb, cfg.d, T, cfg.n_layers, cfg.n_heads, cfg.dropout)
    opt = torch.optim.Adam(ref.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    X, Y = M._sasrec_training_arrays(split, T)
    vu, vh, vt = split.histories("valid")
    sel = np.sort(np.random.default_rng(3).choice(len(vu), cfg.valid_users, replace=False))
    vh, vt = vh[sel], vt[sel]
    Xt, Yt, lengths = torch.as_tensor(X), torch.as_tensor(Y), torch.as_tensor((X >= 0).sum(1))

    def loss(idx):
        t = int(lengths[idx].max())
        x, y = Xt[idx, T - t:], Yt[idx, T - t:]
        Mi = ref.items()
        h = ref.states(x, Mi)
        return F.cross_entropy(h[y >= 0] @ Mi.T, y[y >= 0])

    want, scores = _reference_fit(
        ref, opt, lambda: M._length_batches(lengths, cfg.batch_size, gen), loss,
        lambda: float(recall_at_k(M.sasrec_ranks(ref, vh, vt, tie_order=M._tie_order(split.n_items)), 10).mean()), cfg)
    assert {k: info[k] for k in want} == want
    assert want["best_epoch"] < want["epochs_run"] < cfg.epochs  # stopped early, best state restored
    assert _same_state(net, ref)
    assert [c[3] for c in calls] == [{"valid_recall@10": s} for s in scores] + [{"valid_recall@10": want["valid_recall@10"]}]
    assert [c[1:3] for c in calls] == [(e, cfg.epochs) for e in range(1, len(scores) + 1)] + [(cfg.epochs, cfg.epochs)]


def test_tiger_encoder_drops_batch_wide_padding_exactly():
    """A batch of short histories is encoded without its all-padding leading columns; the memory of
    every real position equals the one computed in a batch padded to the full length."""
    import torch

    from sidkit.eval.models import TIGER

    rng = np.random.default_rng(0)
    codes = np.unique(rng.integers(0, 6, size=(80, 3)), axis=0)
    torch.manual_seed(0)
    model = TIGER(codes, [6, 6, 6], max_items=8, d=16, n_heads=2, n_layers=2, ff=32).eval()
    short = np.full((3, 8), -1)
    short[0, -2:], short[1, -3:], short[2, -1:] = [1, 2], [3, 4, 5], [6]
    long = rng.integers(0, len(codes), size=(1, 8))
    with torch.no_grad():
        mem_s, pad_s = model.encode(torch.as_tensor(short))
        mem_f, pad_f = model.encode(torch.as_tensor(np.concatenate([short, long])))
    depth = 3
    assert mem_s.shape[1] == 3 * depth and mem_f.shape[1] == 8 * depth  # trimmed to the longest history
    tail = mem_f[:3, -3 * depth:]
    real = ~pad_s
    assert torch.equal(pad_s, pad_f[:3, -3 * depth:])
    torch.testing.assert_close(mem_s[real], tail[real], rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("short", [0, 1000], ids=["fused-kernel", "explicit"])
def test_tiger_forward_equals_nn_transformer_in_eval_mode(short, monkeypatch):
    """TIGER computes its encoder and decoder over the parameters of ``model.tf``; in eval mode
    this is nn.Transformer's own forward (pre-norm layers, padding and causal masks), with the
    fused attention kernel and with the explicit matmul + softmax it uses for short inputs."""
    import torch

    import sidkit.eval.models as M
    from sidkit.eval.models import TIGER

    monkeypatch.setattr(M, "SHORT_ATTENTION", short)

    rng = np.random.default_rng(3)
    codes = np.unique(rng.integers(0, 6, size=(60, 3)), axis=0)
    torch.manual_seed(0)
    model = TIGER(codes, [6, 6, 6], max_items=6, d=16, n_heads=2, n_layers=2, ff=32).eval()
    hist = rng.integers(0, len(codes), size=(4, 6))
    hist[0, :4], hist[1, :1] = -1, -1
    hist = torch.as_tensor(hist)
    with torch.no_grad():
        mem, pad = model.encode(hist)
        n = len(codes)
        toks = model.item_tokens[torch.where(hist < 0, n, hist)].reshape(4, 18)
        x = (model.tok(toks) + model.level.weight[torch.arange(3).repeat(6)][None]
             + model.item_pos.weight[torch.arange(6).repeat_interleave(3)][None])
        ref = model.tf.encoder(x, src_key_padding_mask=toks == model.PAD)
        torch.testing.assert_close(mem[~pad], ref[~pad], rtol=1e-5, atol=1e-5)
        y = torch.randn(4, 3, 16)
        causal = torch.triu(torch.full((3, 3), float("-inf")), 1)
        want = model.tf.decoder(y, mem, tgt_mask=causal, memory_key_padding_mask=pad, tgt_is_causal=True)
        torch.testing.assert_close(model._decode(y, mem, pad), want, rtol=1e-5, atol=1e-5)


def test_tiger_dropout_rate_scale_and_seed():
    import torch

    from sidkit.eval.models import TIGER

    codes = np.arange(12).reshape(4, 3) % 6

    def dropped(seed):
        torch.manual_seed(seed)
        m = TIGER(codes, [6, 6, 6], max_items=4, d=8, n_heads=2, n_layers=1, ff=16, dropout=0.1).train()
        return m._drop(torch.ones(200, 500))

    a = dropped(1)
    assert torch.equal(a, dropped(1)) and not torch.equal(a, dropped(2))  # the torch seed fixes the masks
    kept = a > 0
    assert abs(float(kept.float().mean()) - (1 - 26 / 256)) < 0.005  # p = 0.1 in steps of 1/256
    assert torch.allclose(a[kept], torch.tensor(256 / 230))  # inverted dropout: the mean is kept
    m = TIGER(codes, [6, 6, 6], max_items=4, d=8, n_heads=2, n_layers=1, ff=16, dropout=0.1).eval()
    x = torch.randn(3, 5)
    assert m._drop(x) is x


def test_train_tiger_matches_hand_written_loop(one_thread):
    import torch

    from sidkit.eval import models as M

    split = _toy_split(120)
    codes = np.random.default_rng(1).integers(0, 3, size=(split.n_items, 2))
    sid_full, sizes = M.full_sids(codes, None, [3, 3], np.arange(len(codes)))
    # tiger runs its whole budget of epochs (no early stop: patience and min_epochs do not apply)
    cfg = tiny_cfg(d=16, epochs=30, tiger_epochs=4, tiger_lr=4e-3, tiger_warmup=0.25, patience=1, min_epochs=1, lr=1e-4)
    calls = []
    net, trie, info = M.train_tiger(split, sid_full, sizes, seed=5, cfg=cfg, beam=5, progress=lambda *a: calls.append(a))

    gen = M._set_seed(5)
    ref = M.build_tiger(sid_full, sizes, split.max_history, cfg)
    opt = M.tiger_optimizer(ref.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    X, tgt = M._tiger_training_arrays(split, split.max_history)
    Xt, St = torch.as_tensor(X), torch.as_tensor(sid_full[tgt])
    assert len(Xt) > 256  # more than one batch per epoch
    per_epoch = -(-len(Xt) // 256)
    total = 4 * per_epoch
    warm = round(0.25 * total)  # linear warm-up to 4e-3, then cosine decay to 0 at the last step
    lrs = [4e-3 * (k + 1) / warm if k < warm else 2e-3 * (1 + np.cos(np.pi * (k + 1 - warm) / (total - warm)))
           for k in range(total)]
    assert lrs[warm - 1] == pytest.approx(4e-3) and lrs[-1] == pytest.approx(0.0, abs=1e-12)
    assert all(a >= b for a, b in zip(lrs[warm - 1:], lrs[warm:]))
    _, vh, vt = split.histories("valid")
    losses = []

    lengths = (Xt >= 0).sum(1)

    def batches():
        return M._length_batches(lengths, 256, gen, M.TIGER_JITTER)

    def loss(idx):
        out = ref.loss(Xt[idx], St[idx])
        losses.append(float(out.detach()))
        return out

    def validate():
        items, _ = M.tiger_beam_search(ref, M.SidTrie(sid_full, sizes), vh, beam=5)
        return float(recall_at_k(M.ranks_from_beams(items, vt), 10).mean())

    want, scores = _reference_fit(ref, opt, batches, loss, validate, tiny_cfg(epochs=4, min_epochs=4), clip_norm=1.0,
                                  lr_of_step=lrs, select_from=3)  # the best of epochs 3-4 of 4 is kept
    assert want["best_epoch"] in (3, 4)
    assert {k: info[k] for k in want} == want
    assert want["epochs_run"] == 4  # the whole budget ran (the best state is restored: the sasrec test)
    assert _same_state(net, ref)
    assert scores[:2] == [None, None]  # epochs 1-2 cannot be kept: not validated
    assert [c[3] for c in calls[:-1]] == [{**({} if s is None else {"valid_recall@10": s}),
                                           "loss": losses[(e + 1) * per_epoch - 1]}
                                          for e, s in enumerate(scores)]
    assert calls[-1][3] == {"valid_recall@10": want["valid_recall@10"]}


def test_training_without_batches_only_validates(one_thread):
    """Every training sequence is one item long: no batch at all, the initial model is kept."""
    from sidkit.eval import models as M

    users = [u for u in "abcdefgh" for _ in range(3)]
    items = [(3 * i + j) % 9 for i in range(8) for j in range(3)]
    split = split_arrays(users, items, split=None, n_items=9)
    assert all(len(t) == 1 for t in split.train)
    cfg = tiny_cfg(d=16, epochs=2, min_epochs=1, patience=5)
    sid_full, sizes = M.full_sids(np.arange(9)[:, None] % 3, None, [3], np.arange(9))
    for name in ("sasrec", "tiger"):
        calls = []
        if name == "sasrec":
            M._set_seed(0)
            net, info = M.train_sasrec(split, M.IdItemEmbedding(9, cfg.d), seed=0, cfg=cfg, progress=lambda *a: calls.append(a))
            M._set_seed(0)
            emb = M.IdItemEmbedding(9, cfg.d)
            M._set_seed(0)
            fresh = M.SASRec(emb, cfg.d, split.max_history, cfg.n_layers, cfg.n_heads, cfg.dropout)
        else:
            net, _, info = M.train_tiger(split, sid_full, sizes, seed=0, cfg=cfg, beam=4, progress=lambda *a: calls.append(a))
            M._set_seed(0)
            fresh = M.build_tiger(sid_full, sizes, split.max_history, cfg)
        assert _same_state(net, fresh), name
        # (tiger keeps the best of the second half of its epochs: epoch 2 of 2)
        assert info["epochs_run"] == 2 and info["best_epoch"] == (1 if name == "sasrec" else 2), name
        assert 0.0 <= info["valid_recall@10"] <= 1.0
        assert [c[1] for c in calls] == [1, 2, 2], name
        # an epoch before tiger's select_from cannot be kept, so it is not validated either
        first = set() if name == "tiger" else {"valid_recall@10"}
        assert [set(c[3]) for c in calls] == [first, {"valid_recall@10"}, {"valid_recall@10"}], name


# ----------------------------------------------------------------------------- end to end
def _category_sids(path: Path, items: Path = EXAMPLES / "items.parquet") -> Path:
    """A SID table that follows the planted category tree (top, mid, leaf-rank) of the example catalog."""
    t = pq.read_table(items, columns=["item_id", "categories"])
    cats = t.column("categories").to_pylist()
    cols = []
    for l in range(3):
        names = sorted({c[l] for c in cats})
        lut = {n: i for i, n in enumerate(names)}
        cols.append([lut[c[l]] for c in cats])
    pq.write_table(pa.table({"item_id": t.column("item_id"), "sid_0": cols[0], "sid_1": cols[1], "sid_2": cols[2]}), path)
    return path


def _random_sids(path: Path, items: Path = EXAMPLES / "items.parquet") -> Path:
    t = pq.read_table(items, columns=["item_id"])
    rng = np.random.default_rng(1)
    codes = rng.integers(0, 8, size=(t.num_rows, 3))
    pq.write_table(pa.table({"item_id": t.column("item_id"), "sid_0": codes[:, 0], "sid_1": codes[:, 1],
                             "sid_2": codes[:, 2]}), path)
    return path


def _first_users(path: Path, n: int) -> Path:
    """The example interactions of the first n users (sorted ids)."""
    inter = pq.read_table(EXAMPLES / "interactions.parquet")
    users = sorted(set(inter.column("user_id").to_pylist()))[:n]
    pq.write_table(inter.filter(pa.compute.is_in(inter.column("user_id"), pa.array(users))), path)
    return path


def test_evaluate_examples_beats_random(tmp_path):
    good = _category_sids(tmp_path / "good.parquet")
    res = evaluate([good], EXAMPLES / "interactions.parquet", seeds=(0,), n_bootstrap=200,
                   train_config=tiny_cfg(epochs=6))
    rows = {r["name"]: r for r in res["rows"]}
    assert list(rows) == ["good", "most-popular", "sasrec-id"]
    for r in res["rows"]:
        for k in ("recall@5", "recall@10", "recall@20", "ndcg@5", "ndcg@10", "ndcg@20", "seeds", "delta_recall@10_ci"):
            assert k in r
        assert r["recall@5"] <= r["recall@10"] <= r["recall@20"] and r["ndcg@10"] <= r["recall@10"]
    assert rows["good"]["delta_recall@10"] == 0.0
    rnd = res["random_recall@10"]
    assert rows["good"]["recall@10"] > 3 * rnd
    assert rows["good"]["recall@20"] > rows["most-popular"]["recall@20"]
    assert res["n_users"] == 800 and res["protocol"]["history_masked"] is False


def test_evaluate_is_deterministic_whatever_ran_before(tmp_path):
    import torch

    good = _category_sids(tmp_path / "good.parquet")
    small = _first_users(tmp_path / "small.parquet", 120)
    runs = []
    for burn in (0, 7):
        torch.rand(burn)  # other work in the same process moves the global RNG
        res = evaluate([good], small, seeds=(0,), n_bootstrap=50, train_config=tiny_cfg(epochs=2, valid_users=100))
        runs.append([(r["name"], r["recall@10"], r["ndcg@10"]) for r in res["rows"]])
    assert runs[0] == runs[1]


def test_evaluate_tiger_runs(tmp_path):
    good = _category_sids(tmp_path / "good.parquet")
    small = _first_users(tmp_path / "small.parquet", 60)
    res = evaluate([good], small, model="tiger", seeds=(0,), baselines=(), n_bootstrap=100,
                   train_config=tiny_cfg(epochs=1, valid_users=200), return_per_user=True)
    row = res["rows"][0]
    assert row["model"] == "tiger" and 0.0 <= row["recall@10"] <= row["recall@20"] <= 1.0
    # per-user vectors (for intervals pooled over tokenizer fits) average to the rows' figures
    pu = res["per_user"]
    assert len(pu["recall@10"][0]) == res["n_users"]
    assert float(np.mean(pu["recall@10"][0])) == pytest.approx(row["recall@10"])
    assert float(np.mean(pu["itemhit@10"][0])) == pytest.approx(row["itemhit@10"])


def test_evaluate_leaves_the_train_config_alone(tmp_path):
    good = _category_sids(tmp_path / "good.parquet")
    small = _first_users(tmp_path / "small.parquet", 40)
    cfg = tiny_cfg(epochs=3, valid_users=50)
    before = dataclasses.asdict(cfg)
    res = evaluate([good], small, seeds=(0,), epochs=1, baselines=(), n_bootstrap=100, train_config=cfg)
    assert dataclasses.asdict(cfg) == before
    assert res["protocol"]["train_config"]["epochs"] == 1 and res["rows"][0]["best_epochs"] == [1]


def test_evaluate_signature_without_torch():
    import sidkit.eval
    import sidkit.eval.run

    assert inspect.signature(sidkit.eval.evaluate) == inspect.signature(sidkit.eval.run.evaluate)
    assert "interactions" in inspect.signature(sidkit.eval.evaluate).parameters
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")]))
    code = "import sys, sidkit.eval; sys.exit('torch' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code], env=env).returncode == 0


# ----------------------------------------------------------------------------- CLI
def test_cli_json_shape(tmp_path, monkeypatch):
    good = _category_sids(tmp_path / "good.parquet")
    bad = _random_sids(tmp_path / "rand.parquet")
    import sidkit.eval.models as M

    cfg = tiny_cfg(epochs=1)
    monkeypatch.setattr(M, "TrainConfig", lambda: cfg)
    r = runner.invoke(app, ["eval", str(good), str(bad), "--interactions", str(EXAMPLES / "interactions.parquet"),
                            "--seeds", "2", "--json", "--name", "cat", "--name", "rand", "--bootstrap", "200"])
    assert r.exit_code == 0, r.output
    doc = json.loads(r.stdout)
    names = [row["name"] for row in doc["rows"]]
    assert names == ["cat", "rand", "most-popular", "sasrec-id"]
    assert doc["rows"][0]["seeds"] == [0, 1] and "recall@10_std" in doc["rows"][0]
    lo, hi = doc["rows"][1]["delta_recall@10_ci"]
    assert lo <= doc["rows"][1]["delta_recall@10"] <= hi


def _err(r):
    return r.stderr.strip().splitlines()


def test_cli_bad_inputs_exit_2(tmp_path):
    good = _category_sids(tmp_path / "good.parquet")
    r = runner.invoke(app, ["eval", str(good), "--interactions", str(tmp_path / "missing.parquet")])
    assert r.exit_code == 2 and _err(r)[-1].startswith("error:") and "not found" in r.stderr
    other = tmp_path / "other.parquet"
    pq.write_table(pa.table({"user_id": ["u"] * 4, "item_id": ["zz1", "zz2", "zz3", "zz4"], "position": [0, 1, 2, 3]}), other)
    r = runner.invoke(app, ["eval", str(good), "--interactions", str(other), "--json"])
    assert r.exit_code == 2 and "no interaction item is in the SID table" in r.stderr and r.stdout == ""
    nocol = tmp_path / "nocol.parquet"
    pq.write_table(pa.table({"user": ["u"], "item_id": ["item_000001"]}), nocol)
    r = runner.invoke(app, ["eval", str(good), "--interactions", str(nocol)])
    assert r.exit_code == 2 and "user_id" in r.stderr
    noorder = tmp_path / "noorder.parquet"
    pq.write_table(pa.table({"user_id": ["u"], "item_id": ["item_000001"]}), noorder)
    r = runner.invoke(app, ["eval", str(good), "--interactions", str(noorder)])
    assert r.exit_code == 2 and "timestamp" in r.stderr
    r = runner.invoke(app, ["eval", str(good), "--interactions", str(EXAMPLES / "interactions.parquet"), "--recommender", "bert"])
    assert r.exit_code == 2 and "--recommender 'bert' is not known" in r.stderr
    r = runner.invoke(app, ["eval", str(tmp_path / "nope.parquet"), "--interactions", str(EXAMPLES / "interactions.parquet")])
    assert r.exit_code == 2 and _err(r)[-1].startswith("error:")
    r = runner.invoke(app, ["eval", str(good), "--interactions", str(EXAMPLES / "interactions.parquet"),
                            "--name", "a", "--name", "b"])
    assert r.exit_code == 2 and "--name" in r.stderr


# ----------------------------------------------------------------------------- index JSON + tiger CCE
def _index_json(path: Path, ids, codes) -> Path:
    path.write_text(json.dumps({str(i): [f"<{'abcd'[l]}_{int(c)}>" for l, c in enumerate(row)] for i, row in zip(ids, codes)}))
    return path


def test_reference_index_json_is_read_and_mapped_to_the_catalog(tmp_path):
    from sidkit.io.sidtable import read_sid_table

    p = _index_json(tmp_path / "ref.index.json", ["2", "0", "1"], [[1, 2, 3, 4], [1, 2, 3, 4], [0, 0, 1, 7]])
    ids, codes, sfx, sizes, warn = read_sid_table(p)
    assert list(ids) == ["2", "0", "1"] and codes.tolist() == [[1, 2, 3, 4], [1, 2, 3, 4], [0, 0, 1, 7]]
    assert sfx is None  # 4 tokens with a collision: no suffix, the 4th token is a level
    from sidkit.eval.run import _common_catalog

    good = {"name": "a", "path": "a", "ids": np.array(["0", "1", "2"], dtype=object),
            "codes": np.array([[0], [1], [2]]), "suffix": None}
    ref = {"name": "ref", "path": str(p), "ids": ids, "codes": codes, "suffix": None}
    common, _ = _common_catalog([good, ref])
    assert list(common) == ["0", "1", "2"] and ref["codes"].tolist() == [[1, 2, 3, 4], [0, 0, 1, 7], [1, 2, 3, 4]]
    other = {"name": "x", "path": "x.json", "ids": np.array(["B001", "B002"], dtype=object), "codes": np.zeros((2, 4), int),
             "suffix": None}
    from sidkit.errors import DataError

    with pytest.raises(DataError, match="none of its item ids"):
        _common_catalog([good, other])


def test_cli_tiger_reports_itemhit(tmp_path, monkeypatch):
    inter = pq.read_table(EXAMPLES / "interactions.parquet")
    users = sorted(set(inter.column("user_id").to_pylist()))[:60]
    small = inter.filter(pa.compute.is_in(inter.column("user_id"), pa.array(users)))
    items = sorted(set(small.column("item_id").to_pylist()))
    small_path = tmp_path / "small.parquet"
    pq.write_table(small, small_path)
    rng = np.random.default_rng(0)
    codes = rng.integers(0, 3, size=(len(items), 3))  # 27 SIDs for more items: collisions
    ref = _index_json(tmp_path / "ref.index.json", items, codes)
    import sidkit.eval.models as M

    cfg = tiny_cfg(epochs=1, valid_users=50)
    monkeypatch.setattr(M, "TrainConfig", lambda: cfg)
    r = runner.invoke(app, ["eval", str(ref), "--interactions", str(small_path), "--recommender", "tiger", "--seeds", "1",
                            "--no-baselines", "--beam", "5", "--bootstrap", "100", "--json"])
    assert r.exit_code == 0, r.output
    row = json.loads(r.stdout)["rows"][0]
    assert row["sid_collision_rate"] > 0 and row["generated_tokens"] == 3
    for k in (5, 10, 20):
        assert 0.0 <= row[f"itemhit@{k}"] <= row[f"recall@{k}"] + 1e-12  # a shared SID is worth 1/G of a hit
        assert row[f"itemndcg@{k}"] <= row[f"itemhit@{k}"] + 1e-12
    r = runner.invoke(app, ["eval", str(ref), "--interactions", str(small_path), "--model", "tiger", "--seeds", "1",
                            "--no-baselines", "--beam", "5", "--bootstrap", "100"])
    assert r.exit_code == 0 and "IH@10" in r.stdout
    assert "'sidkit eval --model' is deprecated" in r.stderr and "--recommender" in r.stderr  # the old spelling still works
    r = runner.invoke(app, ["eval", str(ref), "--interactions", str(small_path), "--model", "tiger", "--recommender", "tiger"])
    assert r.exit_code == 2 and "give --recommender only" in r.stderr
