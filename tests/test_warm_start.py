"""RQ-VAE warm start from RQ-KMeans (``--init rqkmeans``, METHODS.md §11) and the other inits."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from sidkit.errors import ConfigError
from sidkit.quantizers.rqkmeans import RQKMeans
from sidkit.quantizers.rqvae import RQVAE

from conftest import planted

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


def _data(n=600, d=12, seed=0):
    X, _, _ = planted(n_clusters=6, n_sub=3, per=n // 18 + 1, dim=d, seed=seed)
    return np.ascontiguousarray(X[:n], np.float32)


def _start(m: RQVAE, X: np.ndarray):
    """The model as training starts (after the init, before any step)."""
    tr = m._start_training(X, m._check(*X.shape), [])
    tr.model.eval()
    return tr


def _model(**kw):
    base = dict(hidden=(32,), max_steps=40, epochs=1000, batch_size=128, eval_every=20, random_state=3, init="rqkmeans")
    base.update(kw)
    return RQVAE(3, [8, 4, 4], **base)


def test_exact_warm_start_starts_at_the_rqkmeans_codes():
    X = _data()
    m = _model(latent_dim=X.shape[1])
    tr = _start(m, X)
    with torch.no_grad():
        z = tr.model.encoder(torch.from_numpy(X)).numpy()
    assert np.abs(z - X).max() <= 1e-6  # the encoder is the identity at step 0
    codes0 = m._encode_with(tr.model, X)
    # the same seed's balanced RQ-KMeans: the first codes are its nearest-centroid codes
    km = RQKMeans(3, [8, 4, 4], balanced=True, random_state=3).fit(X)
    assert (codes0 == km.encode(X)).all()
    assert (codes0 == m.init_codes_).all()
    for vq, C in zip(tr.model.rq.levels, km.codebooks_):
        assert np.allclose(vq.codebook.detach().numpy(), C)
    # the decoder starts as the identity too: reconstruction = the k-means reconstruction
    with torch.no_grad():
        xh = tr.model.decoder(torch.from_numpy(km.decode(codes0))).numpy()
    assert np.allclose(xh, km.decode(codes0), atol=1e-6)


def test_projected_warm_start_is_pca_and_its_back_projection():
    X = _data()
    m = _model(latent_dim=4)
    tr = _start(m, X)
    mean = X.mean(0)
    w, v = np.linalg.eigh(np.cov((X - mean).T))
    top = v[:, ::-1][:, :4]
    with torch.no_grad():
        z = tr.model.encoder(torch.from_numpy(X)).numpy()
        back = tr.model.decoder(torch.from_numpy(z)).numpy()
    ref = (X - mean) @ top
    assert np.allclose(np.abs(z), np.abs(ref), atol=1e-4)  # the principal directions, up to sign
    # the decoder starts as the back-projection: x_hat = mean + z W, the PCA reconstruction
    assert np.allclose(back, mean + ref @ top.T, atol=1e-4)
    assert (m._encode_with(tr.model, X) == m.init_codes_).all()


def test_warm_start_trains_saves_and_loads():
    X = _data()
    m = _model(latent_dim=X.shape[1]).fit(X)
    codes = m.encode(X)
    again = _model(latent_dim=X.shape[1]).fit(X)
    assert (again.encode(X) == codes).all()  # same seed, same codes
    loaded = RQVAE.from_state(m.params(), m.state_dict())
    assert (loaded.encode(X) == codes).all()
    assert np.allclose(loaded.decode(codes), m.decode(codes), atol=1e-6)
    assert m.params()["init"] == "rqkmeans" and "encoder.proj.weight" in m.state_dict()
    # a model of today's kind loads from params without "init" (files written before it existed)
    old = RQVAE(3, [8, 4, 4], hidden=(32,), max_steps=20, eval_every=10).fit(X)
    params = {k: v for k, v in old.params().items() if k not in ("init", "init_balanced")}
    assert (RQVAE.from_state(params, old.state_dict()).encode(X) == old.encode(X)).all()


def test_batch_init_and_bad_inits():
    X = _data()
    m = RQVAE(2, [8, 4], hidden=(32,), latent_dim=6, max_steps=20, eval_every=10, batch_size=64, init="batch").fit(X)
    assert m.encode(X).shape == (len(X), 2)
    with pytest.raises(ConfigError, match="init 'nope' is not known"):
        RQVAE(2, [8, 4], init="nope").fit(X)
    with pytest.raises(ConfigError, match="latent.dim 64 is larger than the embedding dimension 12"):
        RQVAE(2, [8, 4], init="rqkmeans", latent_dim=64).fit(X)


def test_cli_init_option(tmp_path):
    from sidkit.cli import app

    items = EXAMPLES / "items.parquet"  # 64-d embeddings
    r = CliRunner().invoke(app, ["fit", str(items), "-m", "rqvae", "--init", "rqkmeans", "--latent-dim", "64", "--max-steps", "30",
                                 "-o", str(tmp_path / "m"), "--json"])
    assert r.exit_code == 0, r.output
    meta = json.loads((tmp_path / "m" / "sidkit.json").read_text())
    assert meta["config"]["init"] == "rqkmeans" and meta["estimator"]["params"]["init"] == "rqkmeans"
    bad = CliRunner().invoke(app, ["fit", str(items), "-m", "quasid", "--init", "warm", "-o", str(tmp_path / "b")])
    assert bad.exit_code == 2 and "--init 'warm' is not known; use random, batch, rqkmeans" in bad.output
    assert not (tmp_path / "b").exists()


def test_refine_residual_trains_only_the_residual_codebooks():
    """``refine="residual"``: the warm start's encoder, decoder and first-level codebook come out of
    training unchanged (so the first-level codes are balanced RQ-KMeans' own); the residual
    codebooks move."""
    from sidkit.config import resolve_blocks
    from sidkit.regularizers import make_regularizer

    X = _data()
    kw = dict(latent_dim=X.shape[1], refine="residual", max_steps=60, eval_every=20, patience=0, dead_code_every=10)
    tr = _start(_model(**kw), X)
    start = {k: v.detach().clone() for k, v in tr.model.state_dict().items()}
    for regs in ([], [make_regularizer("quasid", resolve_blocks({}))]):
        m = _model(**kw, regularizers=regs).fit(X)
        end = m.module_.state_dict()
        for k, v in start.items():
            if k.startswith(("encoder.", "decoder.")) or k == "rq.levels.0.codebook":
                assert torch.equal(end[k], v), k
        assert not all(torch.equal(end[f"rq.levels.{l}.codebook"], start[f"rq.levels.{l}.codebook"]) for l in (1, 2))
        codes = m.encode(X)
        assert (codes[:, 0] == m.init_codes_[:, 0]).all()  # the first level is k-means' partition
        assert m.params()["refine"] == "residual"
        assert (RQVAE.from_state(m.params(), m.state_dict()).encode(X) == codes).all()
    with pytest.raises(ConfigError, match="refine residual .* needs init rqkmeans"):
        RQVAE(2, [8, 4], refine="residual").fit(X)
    with pytest.raises(ConfigError, match="refine 'some' is not known"):
        RQVAE(2, [8, 4], init="rqkmeans", latent_dim=4, refine="some").fit(X)
