"""sidkit.metrics: hand-computed tables and brute-force cross-checks."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest

from sidkit.errors import DataError
from sidkit.metrics import CORE_KEYS, core_report, sid_report
from sidkit.metrics import buckets as _core

HAND = np.array([[0, 1, 2], [0, 1, 2], [0, 1, 3], [1, 0, 0]])


def test_hand_table_every_core_metric():
    r = sid_report(HAND, [4, 4, 4], item_ids=["a", "b", "c", "d"])
    assert set(CORE_KEYS) <= set(r)
    assert r["n_items"] == 4 and r["n_levels"] == 3 and r["codebook_sizes"] == [4, 4, 4]
    c = r["collision"]
    assert c["collision_rate"] == pytest.approx(0.25)  # (4 - 3) / 4
    assert c["unique_sid_ratio"] == pytest.approx(0.75)
    assert c["collided_item_fraction"] == pytest.approx(0.5)
    assert c["n_colliding_buckets"] == 1 and c["max_bucket_size"] == 2
    assert c["bucket_size_histogram"] == {"1": 2, "2": 1}
    assert c["gini"] == pytest.approx(1 / 6)  # sizes 1,1,2: sum|xi-xj| = 4, 2 n^2 mu = 24
    h0 = -(0.75 * math.log2(0.75) + 0.25 * math.log2(0.25))
    lv = r["levels"]
    assert [x["utilization"] for x in lv] == [0.5, 0.5, 0.75]
    assert [x["dead_codes"] for x in lv] == [2, 2, 1]
    assert lv[0]["entropy_bits"] == pytest.approx(h0)
    assert lv[2]["entropy_bits"] == pytest.approx(1.5)  # 2,3,0 -> 1/2, 1/4, 1/4
    assert lv[0]["perplexity"] == pytest.approx(2 ** h0)
    assert lv[2]["normalized_perplexity"] == pytest.approx(2 ** 1.5 / 4)
    p = r["prefix"]
    assert [x["n_distinct"] for x in p] == [2, 2, 3]
    assert [x["collision_rate"] for x in p] == pytest.approx([0.5, 0.5, 0.25])
    assert [x["mean_branching"] for x in p] == pytest.approx([2.0, 1.0, 1.5])
    assert [x["conditional_entropy_bits"] for x in p] == pytest.approx([h0, 0.0, 1.5 - h0])
    assert r["diversity"]["sid_entropy_ratio"] == pytest.approx(1.5 * math.log(2) / math.log(4))
    hm = r["hamming"]
    # pairs: (0,1) h=0; (0,2), (1,2) h=1; the three pairs with row 3 h=3
    assert hm["pairs_h0"] == 1 and hm["pairs_h_le1"] == 3
    assert hm["distribution"] == pytest.approx([1 / 6, 2 / 6, 0, 3 / 6])
    tb = r["top_buckets"]
    assert tb == [{"size": 2, "sid": [0, 1, 2], "rows": [0, 1], "item_ids": ["a", "b"]}]


def test_all_unique_and_single_item():
    r = sid_report(np.array([[0, 0], [0, 1], [1, 0]]), [2, 2])
    assert r["collision"]["collision_rate"] == 0 and r["collision"]["gini"] == 0
    assert r["diversity"]["sid_entropy_ratio"] == pytest.approx(1.0)
    assert r["hamming"]["pairs_h0"] == 0 and r["hamming"]["pairs_h_le1"] == 2
    one = sid_report(np.array([[3, 1]]), [4, 4])
    assert one["collision"]["collision_rate"] == 0 and one["hamming"]["pairs_h0"] == 0
    assert one["hamming"]["distribution"] == [0.0, 0.0, 0.0]


def brute(codes, sizes):
    n, L = codes.shape
    rows = [tuple(r) for r in codes.tolist()]
    from collections import Counter

    cnt = Counter(rows)
    U = len(cnt)
    out = {"collision_rate": (n - U) / n, "collided": sum(v for v in cnt.values() if v > 1) / n,
           "max": max(cnt.values()), "n_coll": sum(1 for v in cnt.values() if v > 1)}
    hist = Counter(cnt.values())
    out["hist"] = {str(k): v for k, v in hist.items()}
    out["util"] = [len(set(codes[:, l].tolist())) / sizes[l] for l in range(L)]
    ent = []
    for l in range(L):
        c = Counter(codes[:, l].tolist())
        ent.append(-sum(v / n * math.log2(v / n) for v in c.values()))
    out["entropy"] = ent
    out["prefix_distinct"] = [len({r[:l] for r in rows}) for l in range(1, L + 1)]
    H = [0.0]
    for l in range(1, L + 1):
        c = Counter(r[:l] for r in rows)
        H.append(-sum(v / n * math.log2(v / n) for v in c.values()))
    out["cond"] = [H[l] - H[l - 1] for l in range(1, L + 1)]
    out["div"] = (H[L] * math.log(2) / math.log(n)) if n > 1 else 1.0
    hd = Counter()
    for a, b in itertools.combinations(rows, 2):
        hd[sum(x != y for x, y in zip(a, b))] += 1
    tot = n * (n - 1) // 2
    out["h0"] = hd[0]
    out["h_le1"] = hd[0] + hd[1]
    out["dist"] = [hd[k] / tot if tot else 0.0 for k in range(L + 1)]
    return out


@pytest.mark.parametrize("n,L,K,seed", [(1, 3, 4, 0), (2, 1, 2, 1), (60, 1, 5, 2), (120, 2, 4, 3), (200, 3, 3, 4),
                                        (150, 4, 3, 5), (90, 5, 2, 6), (250, 3, 7, 7)])
def test_bruteforce_random_tables(n, L, K, seed):
    rng = np.random.default_rng(seed)
    codes = rng.integers(0, K, size=(n, L))
    sizes = [K + l for l in range(L)]  # unequal sizes exercise the mixed radix
    b = brute(codes, sizes)
    r = sid_report(codes, sizes, seed=seed)
    c = r["collision"]
    assert c["collision_rate"] == pytest.approx(b["collision_rate"])
    assert c["collided_item_fraction"] == pytest.approx(b["collided"])
    assert c["max_bucket_size"] == b["max"] and c["n_colliding_buckets"] == b["n_coll"]
    assert c["bucket_size_histogram"] == b["hist"]
    assert [x["utilization"] for x in r["levels"]] == pytest.approx(b["util"])
    assert [x["entropy_bits"] for x in r["levels"]] == pytest.approx(b["entropy"])
    assert [x["n_distinct"] for x in r["prefix"]] == b["prefix_distinct"]
    assert [x["conditional_entropy_bits"] for x in r["prefix"]] == pytest.approx(b["cond"], abs=1e-9)
    assert r["diversity"]["sid_entropy_ratio"] == pytest.approx(b["div"])
    assert r["hamming"]["pairs_h0"] == b["h0"]
    assert r["hamming"]["pairs_h_le1"] == b["h_le1"]
    assert r["hamming"]["distribution"] == pytest.approx(b["dist"])


@pytest.mark.parametrize("sizes", [[5000, 5000, 5000], [2**40, 2**40, 3], [3, 2**20, 2**20], [4000, 4, 2**30]])
def test_sparse_and_wide_key_spaces(sizes, monkeypatch):
    # sparse: packed but not dense (np.unique path); wide: key would overflow int64 (compaction path)
    rng = np.random.default_rng(11)
    codes = rng.integers(0, 3, size=(300, 3))
    codes[:, 0] *= min(1000, (sizes[0] - 1) // 2)
    b = brute(codes, sizes)
    r = sid_report(codes, sizes)
    assert r["collision"]["collision_rate"] == pytest.approx(b["collision_rate"])
    assert [x["n_distinct"] for x in r["prefix"]] == b["prefix_distinct"]
    assert r["hamming"]["pairs_h0"] == b["h0"] and r["hamming"]["pairs_h_le1"] == b["h_le1"]
    assert r["top_buckets"][0]["size"] == b["max"]


def test_dense_and_sort_paths_agree(monkeypatch):
    rng = np.random.default_rng(3)
    codes = rng.integers(0, 6, size=(500, 3))
    a = core_report(codes, [6, 6, 6])
    monkeypatch.setattr(_core, "DENSE_MIN", 0)
    monkeypatch.setattr(_core, "DENSE_FACTOR", 0)
    b = core_report(codes, [6, 6, 6])
    assert a == b


def test_sampled_hamming_distribution_close_to_exact():
    rng = np.random.default_rng(5)
    n, L = 2500, 4
    codes = rng.integers(0, 3, size=(n, L))
    r = sid_report(codes, [3] * L, seed=1, n_pairs=200_000)
    hm = r["hamming"]
    assert not hm["distribution_exact"] and hm["n_sampled_pairs"] == 200_000
    i, j = np.triu_indices(n, 1)
    h = (codes[i] != codes[j]).sum(1)
    exact = np.bincount(h, minlength=L + 1) / h.size
    assert hm["pairs_h0"] == int((h == 0).sum()) and hm["pairs_h_le1"] == int((h <= 1).sum())
    assert hm["distribution"][:2] == pytest.approx(exact[:2].tolist(), abs=1e-12)
    assert hm["distribution"] == pytest.approx(exact.tolist(), abs=0.01)
    assert sum(hm["distribution"]) == pytest.approx(1.0)
    # seeded
    assert sid_report(codes, [3] * L, seed=1, n_pairs=200_000)["hamming"] == hm


def test_bad_codes_raise_data_error():
    with pytest.raises(DataError, match="negative"):
        sid_report(np.array([[0, -1]]), [4, 4])
    with pytest.raises(DataError, match="codebook size 4"):
        sid_report(np.array([[0, 4]]), [4, 4])
    with pytest.raises(DataError, match="integers"):
        sid_report(np.array([[0.5, 1.0]]), [4, 4])
    with pytest.raises(DataError, match="empty"):
        sid_report(np.zeros((0, 3), int), [4, 4, 4])
    with pytest.raises(DataError, match="codebook sizes"):
        sid_report(np.zeros((2, 3), int), [4, 4])


def test_semantic_block_planted_structure():
    rng = np.random.default_rng(0)
    n_clusters, per = 8, 25
    centers = rng.normal(size=(n_clusters, 16))
    X = np.repeat(centers, per, axis=0) + 0.05 * rng.normal(size=(n_clusters * per, 16))
    n = X.shape[0]
    cl = np.repeat(np.arange(n_clusters), per)
    codes = np.stack([cl, np.arange(n) % per, np.zeros(n, int)], axis=1)
    leaf = [f"leaf{c}" for c in cl]
    titles = [f"item {i}" for i in range(n)]
    # plant a conflict: item 0 (cluster 0) gets item 199's SID (cluster 7)
    codes[0] = codes[199]
    titles[0] = "<script>alert(1)</script>"
    # plant a benign duplicate: item 30 = copy of item 31, same SID
    X[30] = X[31]
    codes[30] = codes[31]
    ids = np.array([f"i{i}" for i in range(n)], dtype=object)
    r = sid_report(codes, [8, 25, 1], item_ids=ids, embeddings=X, leaf=leaf, titles=titles,
                   attributes={"category_leaf": leaf})
    s = r["semantic"]
    for k in ("knn_mean_common_prefix", "random_mean_common_prefix", "locality_gap", "conflict_collision_rate",
              "benign_collision_rate", "conflict_item_rate"):
        assert k in s
    assert s["locality_gap"] > 0.5
    assert r["hamming"]["pairs_h0"] == 2
    assert s["conflict_collision_rate"] == pytest.approx(0.5)
    assert s["benign_collision_rate"] == pytest.approx(0.5)
    assert s["conflict_item_rate"] == pytest.approx(2 / n)
    w = s["worst_conflicts"][0]
    assert set(w["item_ids"]) == {"i0", "i199"} and "<script>alert(1)</script>" in w["titles"]
    pur = s["attribute_purity"]["category_leaf"]["prefix_purity"]
    assert pur[0] == pytest.approx(per / n) and pur[1] == pytest.approx((n - 1) / n)


def test_collaborative_and_compare_blocks():
    codes = np.array([[0, 0], [0, 1], [1, 0], [1, 1]])
    ids = np.array(["a", "b", "c", "d"], dtype=object)
    inter = {"user_id": ["u1", "u1", "u1", "u2", "u2", "u2"], "item_id": ["a", "b", "c", "d", "c", "zz"],
             "position": [0, 1, 2, 0, 1, 2]}
    r = sid_report(codes, [2, 2], item_ids=ids, interactions=inter,
                   baseline={"item_ids": ["a", "b", "c", "e"], "codes": np.array([[0, 0], [1, 1], [1, 0], [0, 0]]),
                             "codebook_sizes": [2, 2]})
    col = r["collaborative"]
    # pairs (a,b) share token 0; (b,c) no; (d,c) share; (c,zz) unknown item
    assert col["n_pairs"] == 3 and col["n_unmatched_interactions"] == 1
    assert col["co_interaction_prefix_share"] == pytest.approx(2 / 3)
    assert col["co_interaction_mean_common_prefix"] == pytest.approx(2 / 3)
    cmp_ = r["compare"]
    assert cmp_["n_common_items"] == 3 and cmp_["n_only_current"] == 1 and cmp_["n_only_baseline"] == 1
    assert cmp_["churn_rate"] == pytest.approx(1 / 3)  # only b changed
    assert cmp_["per_level_changed_fraction"] == pytest.approx([1 / 3, 0.0])
    assert cmp_["collision_rate_delta"] == pytest.approx(0.0 - 0.25)


def test_sink_warnings_name_the_level_and_the_fix():
    from sidkit.metrics import core_report
    from sidkit.metrics.levels import sink_warnings

    rng = np.random.default_rng(0)
    n = 4000
    codes = np.stack([rng.integers(0, 64, n), np.where(rng.random(n) < 0.9, 3, rng.integers(0, 64, n))], 1)
    levels = core_report(codes, [64, 64])["levels"]
    assert levels[0]["normalized_perplexity"] > 0.9 and levels[1]["normalized_perplexity"] < 0.25
    w = sink_warnings(levels, method="rqkmeans")
    assert len(w) == 1 and w[0].startswith("level 2: normalized perplexity") and "--balanced" in w[0]
    assert "--method rqvae" in sink_warnings(levels, method="rqkmeans", balanced=True)[0]
    assert sink_warnings(levels[:1]) == []
    assert "--max-steps" in sink_warnings(levels, method="rqvae")[0] and "--balanced" not in sink_warnings(levels, method="quasid")[0]
    assert sink_warnings(levels, method="kae") == []  # attribute positions follow the words' frequencies
