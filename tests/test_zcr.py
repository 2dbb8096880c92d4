"""Zero-Collision Reassignment (sidkit.dedup.zcr): the matching against a brute force, fit --dedup,
encode-time placement, 'sidkit dedup' and the audit block."""

from __future__ import annotations

import json

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

import sidkit
from sidkit.cli import app
from sidkit.datasets import make_catalog
from sidkit.dedup.suffix import fill_suffixes
from sidkit.dedup.zcr import zcr_partition
from sidkit.dedup.table import dedup
from sidkit.dedup.zcr import last_level_candidates, place_new, zcr_reassign, zcr_reference

runner = CliRunner()


def _brute_case(rng, m, V, d=3):
    """One prefix group: m items, some sharing last codes; their residuals and a codebook."""
    C = rng.normal(size=(V, d))
    R = rng.normal(size=(m, d))
    last = rng.integers(0, max(2, V // 2), size=m)
    codes = np.stack([np.zeros(m, int), last], 1).astype(np.int32)
    return codes, R, C


@pytest.mark.parametrize("seed", range(40))
def test_zcr_matches_the_brute_force(seed):
    rng = np.random.default_rng(seed)
    V = int(rng.integers(3, 7))
    m = int(rng.integers(2, V + 1))
    codes, R, C = _brute_case(rng, m, V)
    res = zcr_reassign(codes, np.arange(m), [1, V], lambda rows: (R[rows], C))
    want_moves, want_cost = zcr_reference(codes, R, C)
    d = ((R[:, None] - C[None]) ** 2).sum(-1)
    got_cost = float(sum(d[i, res.codes[i, 1]] - d[i, codes[i, 1]] for i in range(m)))
    assert len({tuple(c) for c in res.codes}) == m  # collision-free, same length
    assert res.stats["items_moved"] == want_moves
    assert got_cost == pytest.approx(want_cost, abs=1e-9)
    assert (res.suffix == 0).all()
    # items that did not collide keep their code
    vals, cnt = np.unique(codes[:, 1], return_counts=True)
    alone = np.isin(codes[:, 1], vals[cnt == 1])
    assert (res.codes[alone] == codes[alone]).all()


def test_zcr_fewest_moves_beats_a_cheaper_plan_with_more_moves():
    # two items on code 0; code 1 is cheap for both, code 2 is dear. Fewest moves: one item moves.
    C = np.array([[0.0, 0.0], [0.1, 0.0], [5.0, 0.0]])
    R = np.array([[0.0, 0.0], [0.02, 0.0]])
    codes = np.array([[0, 0], [0, 0]], np.int32)
    res = zcr_reassign(codes, np.array(["a", "b"]), [1, 3], lambda rows: (R[rows], C))
    assert res.stats["items_moved"] == 1
    assert sorted(res.codes[:, 1].tolist()) == [0, 1]
    assert res.codes[1, 1] == 1  # the item nearer to code 1 moves


def test_zcr_is_deterministic_and_respects_prefix_groups():
    rng = np.random.default_rng(3)
    n, V = 400, 8
    codes = np.stack([rng.integers(0, 6, n), rng.integers(0, 3, n)], 1).astype(np.int32)
    R, C = rng.normal(size=(n, 4)), rng.normal(size=(V, 4))
    ids = np.array([f"i{i:04d}" for i in range(n)])
    a = zcr_reassign(codes, ids, [6, V], lambda rows: (R[rows], C))
    b = zcr_reassign(codes, ids, [6, V], lambda rows: (R[rows], C))
    assert (a.codes == b.codes).all() and (a.suffix == b.suffix).all()
    assert (a.codes[:, 0] == codes[:, 0]).all()  # the prefix never changes
    full = {(tuple(c), s) for c, s in zip(a.codes.tolist(), a.suffix.tolist())}
    assert len(full) == n


def test_groups_larger_than_the_codebook_keep_suffixes():
    V = 4
    codes = np.array([[0, 1]] * 6 + [[1, 0], [1, 0], [1, 2]], np.int32)  # prefix 0: 6 items > V
    R, C = np.random.default_rng(0).normal(size=(9, 2)), np.random.default_rng(1).normal(size=(V, 2))
    asked = []

    def residuals(rows):
        asked.append(rows.copy())
        return R[rows], C

    res = zcr_reassign(codes, np.arange(9), [2, V], residuals)
    assert res.stats["groups_unresolved"] == 1 and res.stats["items_unresolved"] == 6
    assert res.stats["groups_resolved"] == 1 and res.stats["items_moved"] == 1
    assert (res.codes[:6] == codes[:6]).all() and sorted(res.suffix[:6].tolist()) == list(range(6))
    assert res.codes[5:, 1].tolist()[1:3] != [0, 0]
    # only the colliding rows of resolvable groups are read (O(colliding rows))
    assert sorted(np.concatenate(asked).tolist()) == [6, 7]


def test_place_new_takes_the_nearest_free_candidate_in_input_order():
    prefix = np.array([5, 5, 5, 7])
    last = np.array([1, 1, 1, 1])
    cand = np.array([[1, 2, 3], [1, 3, 2], [1, 2, 3], [1, 0, 2]])
    out, spill = place_new(prefix, last, cand, np.arange(4), np.array([5]), np.array([2]))
    # code 2 of prefix 5 is held by a model item: row 0 keeps 1, row 1 takes 3, row 2 finds none
    assert out[:2].tolist() == [1, 3] and spill.tolist() == [False, False, True, False]
    assert out[3] == 1


def test_zcr_partition_keeps_model_items_and_suffixes_the_rest():
    prefix = np.array([10, 10, 10], np.int64)
    last = np.array([0, 0, 0], np.int32)
    cand = np.array([[0, 1], [0, 1], [0, 1]], np.int32)
    ids = pa.array(["old", "new1", "new2"])
    m_prefix, m_last, m_ids, m_suf = np.array([10], np.int64), np.array([1], np.int32), pa.array(["old"]), np.array([0], np.int32)
    new_last, suf, placed = zcr_partition(prefix, last, cand, ids, m_prefix, m_last, m_ids, m_suf)
    assert new_last[0] == 1 and suf[0] == 0  # the model's item keeps its (reassigned) code
    assert new_last[1] == 0 and suf[1] == 0  # the first new item takes its own, free code
    assert new_last[2] == 0 and suf[2] == 1  # no free candidate: the next suffix of its SID
    assert placed.tolist() == [1, 2]
    # the suffix rule it falls back to is the encode's own
    assert fill_suffixes(np.array([3, 3]), np.array([0, -1], np.int32), np.zeros(0, np.int64), np.zeros(0, np.int32),
                         pa.array(["a", "b"])).tolist() == [0, 1]


def test_candidates_are_sorted_by_distance():
    rng = np.random.default_rng(0)
    R, C = rng.normal(size=(50, 4)).astype(np.float32), rng.normal(size=(40, 4)).astype(np.float32)
    got = last_level_candidates(R, C, 16)
    d = ((R[:, None] - C[None]) ** 2).sum(-1)
    assert (got == np.argsort(d, axis=1, kind="stable")[:, :16]).all()


# ---------------------------------------------------------------------------------------------
# end to end

@pytest.fixture(scope="module")
def cat(tmp_path_factory):
    d = tmp_path_factory.mktemp("zcr")
    t = make_catalog(1500, dim=32, seed=7)
    pq.write_table(t, d / "items.parquet")
    return d


def _full(t: pa.Table) -> list:
    return [tuple(s) + (x,) for s, x in zip(t.column("sid").to_pylist(), t.column("suffix").to_pylist())]


@pytest.mark.parametrize("method", ["rqkmeans", "rqvae"])
def test_fit_dedup_zcr_gives_collision_free_sids_of_the_same_length(cat, tmp_path, method):
    extra = {"max_steps": 60, "eval_every": 30} if method == "rqvae" else {}
    sfx = sidkit.fit(cat / "items.parquet", out=tmp_path / "s", method=method, levels=3, codebook_size=32, seed=0, **extra)
    z = sidkit.fit(cat / "items.parquet", out=tmp_path / "z", method=method, levels=3, codebook_size=32, seed=0, dedup="zcr", **extra)
    ts, tz = pq.read_table(tmp_path / "s" / "codes.parquet"), pq.read_table(tmp_path / "z" / "codes.parquet")
    cs, cz = np.array(ts.column("sid").to_pylist()), np.array(tz.column("sid").to_pylist())
    assert (cs[:, :2] == cz[:, :2]).all()  # only the last level changes
    d = z.report["dedup"]
    assert d["method"] == "zcr" and d["items_moved"] == int((cs[:, 2] != cz[:, 2]).sum())
    assert d["collision_rate_before"] == pytest.approx(sfx.report["collision"]["collision_rate"], abs=1e-6)
    assert len(set(_full(tz))) == len(tz)
    # every prefix group that fits the last codebook is collision-free without any suffix
    suf = tz.column("suffix").to_numpy()
    assert ((suf > 0).sum() > 0) == (d["groups_unresolved"] > 0)
    assert z.report["collision"]["collision_rate"] < sfx.report["collision"]["collision_rate"]
    assert d["reconstruction_mse_after"] >= d["reconstruction_mse_before"] - 1e-9
    assert z.report["reconstruction"]["mse"] == pytest.approx(d["reconstruction_mse_after"])
    # encode of the model (one encoder pass for codes and candidates) keeps every item's code
    sidkit.encode(tmp_path / "z", cat / "items.parquet", tmp_path / "again.parquet")
    assert _full(pq.read_table(tmp_path / "again.parquet")) == _full(tz)
    # same seed, same inputs: the same codes
    z2 = sidkit.fit(cat / "items.parquet", out=tmp_path / "z2", method=method, levels=3, codebook_size=32, seed=0, dedup="zcr", **extra)
    assert (z2.codes == z.codes).all() and (z2.suffix == z.suffix).all()


def test_fit_dedup_none_and_bad_values(cat, tmp_path):
    r = sidkit.fit(cat / "items.parquet", out=tmp_path / "n", method="rqkmeans", levels=2, codebook_size=8, dedup="none")
    assert (pq.read_table(tmp_path / "n" / "codes.parquet").column("suffix").to_numpy() == 0).all()
    assert r.report["dedup"] == {"method": "none"}
    res = runner.invoke(app, ["fit", str(cat / "items.parquet"), "-o", str(tmp_path / "x"), "-m", "rqkmeans", "--dedup", "zip"])
    assert res.exit_code == 2 and "--dedup 'zip'" in res.output and not (tmp_path / "x").exists()
    res = runner.invoke(app, ["fit", str(cat / "items.parquet"), "-o", str(tmp_path / "x"), "-m", "kae", "--dedup", "zcr"])
    assert res.exit_code == 2 and "--dedup zcr needs a residual last level" in res.output


def test_encode_keeps_existing_codes_and_places_new_items(cat, tmp_path):
    sidkit.fit(cat / "items.parquet", out=tmp_path / "m", method="rqkmeans", levels=3, codebook_size=16, seed=0, dedup="zcr")
    fit = pq.read_table(tmp_path / "m" / "codes.parquet")
    s = sidkit.encode(tmp_path / "m", cat / "items.parquet", tmp_path / "same.parquet")
    same = pq.read_table(tmp_path / "same.parquet")
    assert s["n_kept"] == len(fit) and _full(same) == _full(fit)
    # new ids (same vectors): collision-free against the model's items and among themselves
    t = pq.read_table(cat / "items.parquet").slice(0, 400)
    t = t.set_column(0, "item_id", pa.array([f"new-{x}" for x in t.column("item_id").to_pylist()]))
    pq.write_table(t, tmp_path / "new.parquet")
    s = sidkit.encode(tmp_path / "m", tmp_path / "new.parquet", tmp_path / "new_codes.parquet")
    new = pq.read_table(tmp_path / "new_codes.parquet")
    got = _full(new)
    assert len(set(got)) == len(got) and not set(got) & set(_full(fit))
    assert s["zcr"]["items_placed_elsewhere"] > 0
    prefixes_new = np.array(new.column("sid").to_pylist())[:, :2]
    prefixes_fit = np.array(fit.column("sid").to_pylist())[:400, :2]
    assert (prefixes_new == prefixes_fit).all()  # placement only moves the last level
    # the partitioned pass (many partitions) gives the same table
    sidkit.encode(tmp_path / "m", tmp_path / "new.parquet", tmp_path / "parts/", partition_rows=37)
    assert _full(pq.read_table(tmp_path / "parts")) == got
    # audit shows how the table was deduplicated
    from sidkit.report.audit import audit

    rep = audit(tmp_path / "m" / "codes.parquet")
    assert rep["dedup"]["method"] == "zcr" and rep["dedup"]["items_moved"] > 0


def test_dedup_command(cat, tmp_path):
    sidkit.fit(cat / "items.parquet", out=tmp_path / "m", method="rqkmeans", levels=3, codebook_size=16, seed=0)
    z = sidkit.fit(cat / "items.parquet", out=tmp_path / "mz", method="rqkmeans", levels=3, codebook_size=16, seed=0, dedup="zcr")
    res = runner.invoke(app, ["dedup", str(tmp_path / "m" / "codes.parquet"), "--model", str(tmp_path / "m"),
                              "--items", str(cat / "items.parquet"), "-o", str(tmp_path / "z.parquet"), "--json"])
    assert res.exit_code == 0, res.output
    info = json.loads(res.output)
    assert info["dedup"]["items_moved"] == z.report["dedup"]["items_moved"]
    assert _full(pq.read_table(tmp_path / "z.parquet")) == _full(pq.read_table(tmp_path / "mz" / "codes.parquet"))
    # the same, with the catalog's rows in another order
    t = pq.read_table(cat / "items.parquet")
    pq.write_table(t.take(pa.array(np.random.default_rng(0).permutation(len(t)))), tmp_path / "shuffled.parquet")
    dedup(tmp_path / "m" / "codes.parquet", tmp_path / "m", tmp_path / "shuffled.parquet", tmp_path / "z2.parquet")
    assert _full(pq.read_table(tmp_path / "z2.parquet")) == _full(pq.read_table(tmp_path / "z.parquet"))
    # never over an input; zcr needs the model and the catalog; a table of another model is refused
    sidkit.fit(cat / "items.parquet", out=tmp_path / "other", method="rqkmeans", levels=3, codebook_size=16, seed=1)
    for args, msg in [(["-o", str(tmp_path / "m" / "codes.parquet"), "--model", str(tmp_path / "m"), "--items", str(cat / "items.parquet")], "same file as the input"),
                      (["-o", str(tmp_path / "q.parquet")], "needs --model"),
                      (["-o", str(tmp_path / "q.parquet"), "--model", str(tmp_path / "other"), "--items", str(cat / "items.parquet")], "another model")]:
        res = runner.invoke(app, ["dedup", str(tmp_path / "m" / "codes.parquet"), *args])
        assert res.exit_code == 2 and msg in res.output, res.output
    assert not (tmp_path / "q.parquet").exists()


def test_sampled_fit_reads_back_only_the_colliding_rows(cat, tmp_path):
    """Above --train-sample the catalog is not in memory: ZCR reads the colliding rows' embeddings
    back from the file, and gives the same codes as 'sidkit dedup' of the suffix fit."""
    z = sidkit.fit(cat / "items.parquet", out=tmp_path / "z", method="rqkmeans", levels=3, codebook_size=16, seed=0,
                   train_sample=600, dedup="zcr")
    sidkit.fit(cat / "items.parquet", out=tmp_path / "s", method="rqkmeans", levels=3, codebook_size=16, seed=0,
               train_sample=600)
    dedup(tmp_path / "s" / "codes.parquet", tmp_path / "s", cat / "items.parquet", tmp_path / "d.parquet")
    assert _full(pq.read_table(tmp_path / "z" / "codes.parquet")) == _full(pq.read_table(tmp_path / "d.parquet"))
    assert z.report["dedup"]["items_moved"] > 0 and z.summary["train_rows"] == 600


def _place_reference(prefix, last, cand, pending, taken_prefix, taken_last):
    """Slow reference of the encode-time rule: every pending row in input order."""
    out, spill, taken = last.astype(np.int64).copy(), np.zeros(len(last), bool), {}
    for p, v in zip(taken_prefix.tolist(), taken_last.tolist()):
        taken.setdefault(p, set()).add(v)
    for i in pending.tolist():
        s = taken.setdefault(int(prefix[i]), set())
        v = int(last[i])
        if v in s:
            v = next((int(c) for c in cand[i] if int(c) not in s), -1)
            if v < 0:
                spill[i] = True
                continue
        s.add(v)
        out[i] = v
    return out, spill


def test_place_new_equals_the_row_by_row_reference():
    """place_new walks only the contested prefix groups; the result is the full walk's."""
    rng = np.random.default_rng(0)
    for _ in range(200):
        n, P, V = int(rng.integers(1, 150)), int(rng.integers(1, 25)), int(rng.integers(2, 10))
        prefix, last = rng.integers(0, P, n).astype(np.int64), rng.integers(0, V, n)
        cand = np.stack([rng.permutation(V)[:min(4, V)] for _ in range(n)])
        pending = np.sort(rng.choice(n, int(rng.integers(0, n + 1)), replace=False))
        kept = np.setdiff1d(np.arange(n), pending)
        tp = np.concatenate([rng.integers(0, P, 5).astype(np.int64), prefix[kept]])
        tl = np.concatenate([rng.integers(0, V, 5), last[kept]])
        want, got = _place_reference(prefix, last, cand, pending, tp, tl), place_new(prefix, last, cand, pending, tp, tl)
        assert (want[0] == got[0]).all() and (want[1] == got[1]).all()
