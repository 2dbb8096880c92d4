"""QuaSID / AdaSID regularizers: METHODS.md §9 items 1, 4, 5; a planted collision; determinism;
the CLI end to end."""

from __future__ import annotations

import json

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch

from sidkit.regularizers import DEFAULTS, resolve_blocks
from sidkit.regularizers.adasid import budget_weights, relaxation, schedule
from sidkit.regularizers.mining import SIDTable, brute_force_pair_counts
from sidkit.regularizers.quasid import hmr_loss


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    """One torch thread: the tiny models here run much faster without thread contention."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


# --- §9.1 bucket pair counts ------------------------------------------------------------------
def test_bucket_pair_counts_equal_brute_force():
    rng = np.random.default_rng(0)
    S = rng.integers(0, 8, size=(2000, 3)).astype(np.int32)
    t = SIDTable(S, [8, 8, 8])
    assert t.pair_counts() == brute_force_pair_counts(S)
    # mined pairs really have h <= 1 and h = 0 pairs are flagged as such
    I, J, H = t.mine_pairs(h_max=1, cap=64, rng=rng)
    h = (S[I] != S[J]).sum(1)
    assert len(I) > 0 and (h <= 1).all() and (h[H == 0] == 0).all() and (h[H == 1] == 1).all()
    assert t.collision_rate() == pytest.approx(1 - len(np.unique(S, axis=0)) / len(S))


# --- §9.4 HMR ----------------------------------------------------------------------------------
def _pairs():
    i = torch.tensor([0, 2])
    j = torch.tensor([1, 3])
    h = torch.tensor([0, 1])
    return i, j, h


def test_hmr_zero_beyond_margin():
    z = torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 0.0], [-1.0, 0.0]], requires_grad=True)
    i, j, h = _pairs()
    loss = hmr_loss(z, i, j, h, torch.ones(2, dtype=torch.bool), m_max=0.5, h_max=1)
    assert float(loss.detach()) == 0.0


def test_hmr_gradient_pushes_apart_and_mask_is_exact_zero():
    z = torch.tensor([[1.0, 0.0], [1.0, 0.05], [0.0, 1.0], [0.05, 1.0]], requires_grad=True)
    i, j, h = _pairs()
    loss = hmr_loss(z, i, j, h, torch.ones(2, dtype=torch.bool), m_max=0.5, h_max=1)
    assert float(loss) > 0
    loss.backward()
    with torch.no_grad():
        zn = torch.nn.functional.normalize(z, dim=-1)
        zs = torch.nn.functional.normalize(z - 0.01 * z.grad, dim=-1)
        assert (zs[0] - zs[1]).norm() > (zn[0] - zn[1]).norm()
        assert (zs[2] - zs[3]).norm() > (zn[2] - zn[3]).norm()
    # masked pairs contribute exactly 0 (value and gradient)
    z2 = z.detach().clone().requires_grad_(True)
    loss_m = hmr_loss(z2, i, j, h, torch.tensor([False, True]), m_max=0.5, h_max=1)
    loss_m.backward()
    assert torch.all(z2.grad[0] == 0) and torch.all(z2.grad[1] == 0)
    assert float(loss_m) == pytest.approx(float(hmr_loss(z2.detach(), i[1:], j[1:], h[1:], torch.ones(1), 0.5, 1)))
    # severity: the h = 1 pair gets half the margin of the h = 0 pair
    zz = torch.tensor([[1.0, 0.0], [1.0, 0.0]])
    l0 = hmr_loss(zz, torch.tensor([0]), torch.tensor([1]), torch.tensor([0]), torch.ones(1), 0.4, 1)
    l1 = hmr_loss(zz, torch.tensor([0]), torch.tensor([1]), torch.tensor([1]), torch.ones(1), 0.4, 1)
    assert float(l0) == pytest.approx(0.16, abs=1e-4) and float(l1) == pytest.approx(0.04, abs=1e-4)


def test_hmr_semantic_weight_scales_unrelated_pairs():
    zz = torch.tensor([[1.0, 0.0], [1.0, 0.0], [0.0, 1.0], [0.0, 1.0]])
    i, j, h = torch.tensor([0, 2]), torch.tensor([1, 3]), torch.tensor([0, 0])
    base = hmr_loss(zz, i, j, h, torch.ones(2), 0.4, 1)
    cos_x = torch.tensor([0.9, 0.2])  # the second pair is semantically unrelated
    w = 1.0 + 10.0 * (1.0 - cos_x)
    weighted = hmr_loss(zz, i, j, h, torch.ones(2), 0.4, 1, weight=w)
    assert float(weighted) == pytest.approx(float(base) * float(w.mean()), rel=1e-5)
    assert float(hmr_loss(zz, i[1:], j[1:], h[1:], torch.ones(1), 0.4, 1, weight=w[1:])) == pytest.approx(0.16 * 9.0, rel=1e-4)


# --- §9.5 AdaSID weights --------------------------------------------------------------------------
def test_adasid_relaxation_and_budget():
    s = torch.tensor([1.0, 0.2, 0.5, 0.9])
    tau = torch.tensor([0.8, 0.8, 0.6, 0.85])
    kap, rho = relaxation(s, tau, 0.02)
    assert float(rho[0]) < 1e-3  # identical items: compatible, repulsion relaxed away
    assert float(rho[1]) > 0.999
    lam = torch.tensor([0.5, 2.0, 1.0, 3.0])
    for g in (0.0, 0.5, 1.0, 2.0):
        w = budget_weights(rho, lam, g)
        assert float(w.sum()) == pytest.approx(float(rho.sum()), abs=1e-5)
    w = budget_weights(rho, lam, 1.0)
    assert float(w[0]) < 1e-3  # compatible pairs stay near zero after reallocation


def test_adasid_schedule_pieces_monotone():
    ts = np.linspace(0, 1, 201)
    rep, al = zip(*(schedule(t, lambda_rep_max=0.1, lambda_align_max=0.01) for t in ts))
    rep, al = np.array(rep), np.array(al)
    assert rep[ts < 0.05].max() == 0
    assert np.all(np.diff(rep[(ts >= 0.05) & (ts <= 0.15)]) >= 0)
    assert np.allclose(rep[(ts >= 0.15) & (ts <= 0.5)], 0.1)
    assert np.all(np.diff(rep[ts >= 0.5]) <= 1e-12) and rep[-1] == pytest.approx(0.02)
    assert np.all(np.diff(al) >= -1e-12) and al[0] == pytest.approx(0.001) and al[-1] == pytest.approx(0.01)
    assert schedule(0.9, lambda_rep_max=0.1, lambda_align_max=0.01, constant=True) == (0.1, 0.01)


def test_config_blocks_validate():
    b = resolve_blocks({"quasid": {"lambda-hmr": 0.5}, "mining": {"h_max": 0}})
    assert b["quasid"]["lambda_hmr"] == 0.5 and b["mining"]["h_max"] == 0
    assert b["adasid"] == DEFAULTS["adasid"]
    from sidkit.errors import ConfigError

    for bad in ({"quasid": {"nope": 1}}, {"quasid": {"lambda_hmr": -1}}, {"mining": {"collision_batch_frac": 2}},
                {"align": {"mode": "x"}}, {"zzz": {}}):
        with pytest.raises(ConfigError):
            resolve_blocks(bad)


# --- planted collision --------------------------------------------------------------------------
def _planted(seed=0):
    """6 clusters in 16-d (four large, two small) of near-duplicate items (the determinism test
    uses it)."""
    rng = np.random.default_rng(seed)
    centers = np.linalg.qr(rng.normal(size=(16, 16)))[0][:6] * 3.0
    sizes = [100, 100, 100, 100, 12, 12]
    X = np.concatenate([c + 0.05 * rng.normal(size=(s, 16)) for c, s in zip(centers, sizes)]).astype(np.float32)
    X /= np.linalg.norm(X, axis=1, keepdims=True)
    return X, np.repeat(np.arange(6), sizes)


def _planted_pairs(seed=0, n=300, pairs=30):
    """n random unit vectors in 16-d plus, for 30 of them, an unrelated item close by (cosine
    about 0.955: below the 0.98 duplicate threshold, so the pair qualifies). Plain RQ-VAE puts
    many of these planted pairs on one SID."""
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, 16))
    X /= np.linalg.norm(X, axis=1, keepdims=True)
    a = rng.choice(n, pairs, replace=False)
    X = np.concatenate([X, X[a] + 0.08 * rng.normal(size=(pairs, 16))]).astype(np.float32)
    X /= np.linalg.norm(X, axis=1, keepdims=True)
    return X, a, np.arange(n, n + pairs)


def _fit_planted(reg, seed=0, X=None, steps=100, K=2):
    from sidkit.quantizers.rqvae import RQVAE

    est = RQVAE(3, [K] * 3, latent_dim=8, hidden=(32,), max_steps=steps, batch_size=128, eval_every=25, patience=0,
                dead_code_every=0, random_state=seed)
    est.fit(X, regularizers=[reg] if reg else [])
    return est.encode(X)


def test_quasid_separates_planted_collision():
    from sidkit.regularizers import make_regularizer

    X, a, b = _planted_pairs()
    assert 0.94 < float(np.mean((X[a] * X[b]).sum(1))) < 0.97
    together = lambda c: int((c[a] == c[b]).all(1).sum())
    # The planted pairs are close (cosine ~0.955: "ambiguous" in the §6.1 classification), so this
    # checks the §3.3 margin mechanism with the semantic weight off; the default weight spends the
    # force on dissimilar collisions instead.
    blocks = resolve_blocks({"quasid": {"lambda_hmr": 20.0, "semantic_weight": 0.0}})
    base_total = q_total = 0
    for seed in (0, 1):
        base = together(_fit_planted(None, seed=seed, X=X, steps=300, K=8))
        q = together(_fit_planted(make_regularizer("quasid", blocks), seed=seed, X=X, steps=300, K=8))
        assert base >= 8  # the planted collisions happen under plain rqvae
        assert q < base
        base_total, q_total = base_total + base, q_total + q
    assert q_total <= 0.7 * base_total


def test_checkpoint_conflicts_count_unrelated_exact_collisions_only():
    """Checkpoint selection counts exact collisions that are not benign by the method's rules and
    look unrelated (leaf categories differ, or cosine below the random-pair median + 0.1)."""
    from types import SimpleNamespace

    from sidkit.regularizers import make_regularizer

    rng = np.random.default_rng(0)
    n, d = 40, 16
    X = rng.normal(size=(n, d))
    X /= np.linalg.norm(X, axis=1, keepdims=True)

    def near(v, c):  # a unit vector at cosine c from v
        u = rng.normal(size=d)
        u -= (u @ v) * v
        return c * v + np.sqrt(1 - c * c) * u / np.linalg.norm(u)

    X[1] = near(X[0], -0.3)  # unrelated
    X[3] = near(X[2], 0.99)  # near-duplicates
    X[5] = near(X[4], 0.6)   # related, same leaf
    X[7] = near(X[6], 0.6)   # related, different leaves
    X = X.astype(np.float32)
    leaf = [f"leaf{i}" for i in range(n)]
    leaf[5] = leaf[4]
    codes = np.stack([np.arange(n) % 8, np.arange(n) // 8], 1).astype(np.int32)  # all distinct (8 x 5)
    for a_, b_ in ((0, 1), (2, 3), (4, 5), (6, 7)):
        codes[b_] = codes[a_]
    model = SimpleNamespace(rq=SimpleNamespace(levels=[SimpleNamespace(codebook=torch.zeros(8, 4))] * 2))

    def count(name, **blk):
        reg = make_regularizer(name, resolve_blocks(blk), catalog_info={"leaf": leaf})
        reg.setup(X, model, total_steps=10, batch_size=16, seed=0, device=torch.device("cpu"))
        return reg, reg.checkpoint_conflicts(codes, None)

    reg, q = count("quasid")
    assert q == 2  # (0, 1) unrelated, (6, 7) leaves differ; (2, 3) is a CAVPM duplicate, (4, 5) related
    assert count("quasid", mining={"checkpoint": "collision_rate"})[1] == 0
    rows = np.arange(n)[::-1].copy()  # codes of a row subset map back to catalog rows
    assert reg.checkpoint_conflicts(codes[rows], rows) == 2
    reg, a = count("adasid")
    tau = reg.tau.numpy()
    compatible_67 = X[6] @ X[7] >= max(tau[6], tau[7])
    assert a == 1 + (not compatible_67)  # AdaSID lets compatible pairs share, whatever their leaves


def test_regularized_fit_is_deterministic():
    from sidkit.regularizers import make_regularizer

    X, _ = _planted(1)
    blocks = resolve_blocks({"adasid": {"lambda_rep_max": 1.0}})
    a = _fit_planted(make_regularizer("adasid", blocks), seed=3, X=X, steps=40)
    b = _fit_planted(make_regularizer("adasid", blocks), seed=3, X=X, steps=40)
    assert np.array_equal(a, b)


def test_knn_queries_equal_rows_of_the_full_search():
    from sidkit.regularizers.mining import knn_ip, nearest_other_sid_distance

    X, _ = _planted(2)
    q = np.array([0, 5, 101, 250, 423])
    sa, na = knn_ip(X, 7)
    sb, nb = knn_ip(X, 7, q)
    assert np.allclose(sa[q], sb) and np.array_equal(na[q], nb)
    codes = np.random.default_rng(0).integers(0, 3, size=(len(X), 2))
    table = SIDTable(codes, [3, 3])
    assert np.allclose(nearest_other_sid_distance(X, table, 5)[q], nearest_other_sid_distance(X, table, 5, q))


@pytest.mark.parametrize("name", ["quasid", "adasid"])
def test_refresh_pool_bounds_the_sid_table_and_stays_deterministic(name):
    """With more training rows than mining.refresh_pool, the SID table covers a seeded subset of
    that many rows (collision batches are drawn from it, the uniform part from every row), and
    the fit is still deterministic; at a pool as large as the data nothing changes."""
    from sidkit.regularizers import make_regularizer

    X, _ = _planted(1)
    blocks = resolve_blocks({"mining": {"refresh_pool": 200, "rnn_queries": 64}})
    reg = make_regularizer(name, blocks)
    a = _fit_planted(reg, seed=3, X=X, steps=40)
    assert reg.pool is not None and len(reg.pool) == 200 and len(np.unique(reg.pool)) == 200
    assert len(reg.table.codes) == 200 and np.isin(reg.bmembers, reg.pool).all()
    idx = reg.sample_batch(0, 128, torch.Generator().manual_seed(0)).numpy()
    assert len(idx) == 128 and len(np.unique(idx)) == 128 and idx.max() < len(X)
    if name == "adasid":
        assert reg.tau.shape == (len(X),) and reg.load.shape == (len(X),)
    b = _fit_planted(make_regularizer(name, blocks), seed=3, X=X, steps=40)
    assert np.array_equal(a, b)
    big = resolve_blocks({"mining": {"refresh_pool": len(X)}})
    assert np.array_equal(_fit_planted(make_regularizer(name, big), seed=3, X=X, steps=40),
                          _fit_planted(make_regularizer(name, resolve_blocks({})), seed=3, X=X, steps=40))


# --- CLI end to end ------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def small(tmp_path_factory):
    from sidkit.datasets import make_catalog, make_interactions, write_catalog

    d = tmp_path_factory.mktemp("reg")
    cat = make_catalog(600, 16, n_categories=(4, 2, 2), seed=0)
    write_catalog(cat, d / "items.parquet")
    pq.write_table(make_interactions(cat, 150, seed=0), d / "inter.parquet")
    return d


FAST = ["--codebook-size", "8", "--max-steps", "40", "--batch-size", "128", "--epochs", "100"]


def test_cli_quasid_end_to_end(small, tmp_path):
    from typer.testing import CliRunner

    from sidkit.cli import app

    r = CliRunner().invoke(app, ["fit", str(small / "items.parquet"), "--method", "quasid", "-o", str(tmp_path / "m"),
                                 "--interactions", str(small / "inter.parquet"), "--json", *FAST])
    assert r.exit_code == 0, r.output
    s = json.loads(r.stdout)
    assert s["method"] == "quasid" and "warnings" not in s
    log = pq.read_table(tmp_path / "m" / "train_log.parquet")
    for col in ("collision_rate", "pairs_h0", "pairs_h_le1", "mask_rate", "r_nn_median", "loss_align", "loss_rep", "m_max",
                "qualified_pairs", "batch_pairs", "conflict_pairs"):
        assert col in log.column_names
    meta = json.loads((tmp_path / "m" / "sidkit.json").read_text())
    # the kept checkpoint has the fewest conflict pairs among those within the reconstruction guard
    rows = log.to_pylist()
    best_mse = min(r["recon_mse"] for r in rows)
    guarded = [r for r in rows if r["recon_mse"] <= 1.1 * best_mse]
    kept = next(r for r in rows if r["step"] == meta["training"]["best_step"])
    assert kept["conflict_pairs"] == min(r["conflict_pairs"] for r in guarded)
    assert meta["training"]["regularizer"]["alignment"] is True
    assert meta["config"]["quasid"]["lambda_hmr"] == 0.1
    import sidkit

    sidkit.load_model(tmp_path / "m")  # loads as an RQ-VAE


def test_cli_regularizer_on_rqvae_without_interactions_warns(small, tmp_path):
    from typer.testing import CliRunner

    from sidkit.cli import app

    cfg = tmp_path / "fit.toml"
    cfg.write_text("[fit]\nsinkhorn = true\n[fit.adasid]\nlambda_rep_max = 0.5\nkernel = 'soft_overlap'\n[fit.mining]\nh_max = 0\n")
    r = CliRunner().invoke(app, ["fit", str(small / "items.parquet"), "--method", "rqvae", "--regularizer", "adasid",
                                 "--config", str(cfg), "-o", str(tmp_path / "m"), "--json", "--no-load", *FAST])
    assert r.exit_code == 0, r.output
    s = json.loads(r.stdout)
    assert s["regularizer"] == "adasid" and any("alignment" in w for w in s["warnings"])
    meta = json.loads((tmp_path / "m" / "sidkit.json").read_text())
    assert meta["config"]["adasid"]["lambda_rep_max"] == 0.5 and meta["config"]["adasid"]["load"] is False
    assert meta["config"]["mining"]["h_max"] == 0 and meta["config"]["sinkhorn"] is True


@pytest.mark.parametrize("case", ["unknown_ids", "missing_col", "bad_value", "bad_reg"])
def test_cli_bad_input(small, tmp_path, case):
    from typer.testing import CliRunner

    from sidkit.cli import app

    args = ["fit", str(small / "items.parquet"), "--method", "quasid", "-o", str(tmp_path / "m"), *FAST]
    if case == "unknown_ids":
        pq.write_table(pa.table({"user_id": ["u1", "u1", "u2"], "item_id": ["nope_1", "item_000001", "nope_2"],
                                 "split": ["train"] * 3}), tmp_path / "i.parquet")
        args += ["--interactions", str(tmp_path / "i.parquet")]
    elif case == "missing_col":
        pq.write_table(pa.table({"user_id": ["u1"], "item_id": ["item_000001"]}), tmp_path / "i.parquet")
        args += ["--interactions", str(tmp_path / "i.parquet")]
    elif case == "bad_value":
        args += ["--collision-batch-frac", "1.5"]
    else:
        args[3] = "rqkmeans"
        args += ["--regularizer", "quasid"]
    r = CliRunner().invoke(app, args)
    assert r.exit_code == 2, r.output
    err = r.stderr.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error:")
    if case == "unknown_ids":
        assert "2 interaction rows" in err[0] and "nope_1" in err[0]
    assert not (tmp_path / "m").exists()


def test_train_log_keeps_columns_that_appear_after_the_first_row():
    from sidkit.io.artifacts import rows_table

    t = rows_table([{"step": 50, "lambda_rep": 0.0}, {"step": 100, "lambda_rep": 0.1, "m_max": 0.2}])
    assert t.column_names == ["step", "lambda_rep", "m_max"]
    assert t.column("m_max").to_pylist() == [None, 0.2]
