"""RQ-VAE tokenizer (TIGER style, METHODS.md §1.3).

An MLP encoder maps x to a latent z; a residual quantizer built from single-level
:class:`VectorQuantizer` layers quantizes z level by level; an MLP decoder reconstructs x from
the straight-through quantized latent. Loss = MSE(x, x_hat) + mean over levels of
(||sg[r] - e||^2 + beta * ||r - sg[e]||^2).
"""

from __future__ import annotations

import copy
import re
import math
import time
from dataclasses import dataclass
from typing import Callable, NamedTuple, Sequence

import numpy as np
import torch
from torch import nn

from sidkit.config import INITS, REFINES
from sidkit.errors import ConfigError, opt
from sidkit.metrics.collision import collision_rate
from sidkit.quantizers.base import Progress, Tokenizer, check_codes, check_enough_items, items_matrix, resolve_sizes as _sizes
from sidkit.quantizers.rq import CHUNK, decode_codes, kmeans, residual_encode
from sidkit.quantizers.sinkhorn import sinkhorn_assign


class LossTerms(NamedTuple):
    recon: torch.Tensor
    codebook: torch.Tensor
    commit: torch.Tensor


class VectorQuantizer(nn.Module):
    """One codebook: nearest-code assignment, codebook and commitment losses, STE output."""

    def __init__(self, codebook_size: int, dim: int):
        super().__init__()
        self.codebook = nn.Parameter(torch.randn(codebook_size, dim) * 0.01)

    def distances(self, r: torch.Tensor) -> torch.Tensor:
        C = self.codebook
        return torch.addmm((C * C).sum(1), r, C.t(), alpha=-2.0)

    def forward(self, r: torch.Tensor, sinkhorn: tuple[float, int] | None = None):
        with torch.no_grad():  # assignment needs no graph
            d = self.distances(r)
            idx = sinkhorn_assign(d, *sinkhorn) if sinkhorn else d.min(dim=1).indices
        e = self.codebook.index_select(0, idx)
        codebook_loss = (r.detach() - e).pow(2).mean()
        commit_loss = (r - e.detach()).pow(2).mean()
        return e, idx, codebook_loss, commit_loss


class ResidualQuantizer(nn.Module):
    """Residual stack of single-level quantizers: r_0 = z, r_l = r_{l-1} - e_l."""

    def __init__(self, sizes: Sequence[int], dim: int):
        super().__init__()
        self.levels = nn.ModuleList(VectorQuantizer(k, dim) for k in sizes)

    def forward(self, z: torch.Tensor, sinkhorn_last: tuple[float, int] | None = None):
        r = z
        zq = torch.zeros_like(z)
        codes, cb, cm = [], [], []
        L = len(self.levels)
        for l, vq in enumerate(self.levels):
            e, idx, a, b = vq(r, sinkhorn_last if l == L - 1 else None)
            zq = zq + e
            r = r - e
            codes.append(idx)
            cb.append(a)
            cm.append(b)
        return zq, torch.stack(codes, 1), torch.stack(cb).mean(), torch.stack(cm).mean()


def mlp(dims: Sequence[int]) -> nn.Sequential:
    layers: list[nn.Module] = []
    for i in range(len(dims) - 1):
        layers.append(nn.Linear(dims[i], dims[i + 1]))
        if i < len(dims) - 2:
            layers.append(nn.ReLU())
    return nn.Sequential(*layers)


class SkipMLP(nn.Module):
    """``proj(x) + mlp(x)``: a linear map plus a residual MLP. The warm start (``init="rqkmeans"``,
    METHODS.md §11) sets ``proj`` to the identity or a PCA projection (its back-projection in the
    decoder) and zeroes the MLP's last layer, so at step 0 the map is exactly ``proj``."""

    def __init__(self, dims: Sequence[int]):
        super().__init__()
        self.proj = nn.Linear(dims[0], dims[-1])
        self.mlp = mlp(dims)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.proj(x) + self.mlp(x)

    @torch.no_grad()
    def start_at(self, weight: np.ndarray, bias: np.ndarray) -> None:
        """Set ``proj`` to ``x @ weight.T + bias`` and zero the MLP's last layer."""
        self.proj.weight.copy_(torch.from_numpy(np.ascontiguousarray(weight, np.float32)))
        self.proj.bias.copy_(torch.from_numpy(np.ascontiguousarray(bias, np.float32)))
        last = self.mlp[-1]
        last.weight.zero_()
        last.bias.zero_()


class RQVAEModule(nn.Module):
    def __init__(self, in_dim: int, hidden: Sequence[int], latent_dim: int, sizes: Sequence[int], skip: bool = False):
        super().__init__()
        net = SkipMLP if skip else mlp
        self.encoder = net([in_dim, *hidden, latent_dim])
        self.decoder = net([latent_dim, *reversed(hidden), in_dim])
        self.rq = ResidualQuantizer(sizes, latent_dim)
        self.mlp_dtype: torch.dtype | None = None  # bfloat16: mixed-precision MLPs during training

    def _mlp(self, net: nn.Module, x: torch.Tensor) -> torch.Tensor:
        if self.mlp_dtype is None or not self.training:
            return net(x)
        with torch.autocast(device_type=x.device.type, dtype=self.mlp_dtype):
            return net(x).float()

    def forward(self, x: torch.Tensor, beta: float = 0.25, sinkhorn_last=None, return_latents: bool = False):
        """(x_hat, codes, loss, LossTerms); with ``return_latents`` also (z, z_ste): the encoder
        output and the straight-through quantized latent. The quantizer and the losses are
        always float32; with ``mlp_dtype`` set, the encoder and decoder run in that precision
        while training (evaluation and encoding stay float32)."""
        z = self._mlp(self.encoder, x)
        zq, codes, cb, cm = self.rq(z, sinkhorn_last)
        z_ste = z + (zq - z).detach()
        x_hat = self._mlp(self.decoder, z_ste)
        recon = (x_hat - x).pow(2).mean()
        loss = recon + cb + beta * cm
        out = (x_hat, codes, loss, LossTerms(recon.detach(), cb.detach(), cm.detach()))
        return (*out, z, z_ste) if return_latents else out


class Regularizer:
    """Plug-in for the RQ-VAE trainer (QuaSID, AdaSID, alignment...). Every hook is optional.

    The trainer calls, in order: ``setup`` once after k-means initialisation; then per step
    ``before_step`` (may refresh global state through ``encode_all(rows=None)``, which returns the
    codes (N, L) and latents (N, d_z) of the training rows, or of the given row numbers only, under
    the current weights), ``sample_batch``
    (item indices for the batch, or None for the default uniform shuffle) and ``loss`` (an extra
    loss term and a dict of numbers to log). ``state()`` gives numbers for the progress display
    and the training log at each evaluation.
    """

    name = "regularizer"

    def setup(self, X: np.ndarray, model: "RQVAEModule", *, total_steps: int, batch_size: int,
              seed: int, device: torch.device) -> None:
        pass

    def before_step(self, step: int, encode_all: Callable[[], tuple[np.ndarray, np.ndarray]]) -> None:
        pass

    def sample_batch(self, step: int, batch_size: int, gen: torch.Generator) -> torch.Tensor | None:
        return None

    def loss(self, step: int, idx: torch.Tensor, x: torch.Tensor, z: torch.Tensor, zq: torch.Tensor,
             codes: torch.Tensor) -> tuple[torch.Tensor | None, dict]:
        return None, {}

    def state(self) -> dict:
        return {}

    def checkpoint_conflicts(self, codes: np.ndarray, rows: np.ndarray | None) -> int:
        """Pairs this regularizer counts against a checkpoint (codes of the catalog rows ``rows``,
        None = every row); the checkpoint with the fewest wins, then the lowest collision rate."""
        return 0

    def params(self) -> dict:
        return {}


def cpu_has_bf16() -> bool:
    """True when the CPU multiplies bfloat16 natively (AVX512-BF16 or AMX)."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            flags = next((line for line in f if line.startswith("flags")), "")
    except OSError:
        return False
    return " avx512_bf16" in flags or " amx_bf16" in flags


def _resolve_precision(precision: str, dev: torch.device) -> torch.dtype | None:
    """The MLP dtype for training: None (float32) or torch.bfloat16."""
    if precision == "bf16":
        return torch.bfloat16
    if precision == "auto":
        if dev.type == "cuda":
            return torch.bfloat16 if torch.cuda.is_bf16_supported() else None
        return torch.bfloat16 if cpu_has_bf16() else None
    return None


@dataclass
class Checkpoint:
    step: int
    collision_rate: float
    recon_mse: float
    state: dict
    conflicts: int = 0


class _Training:
    """The mutable state of one :meth:`RQVAE.fit`: model, optimizer, step, code usage, checkpoints, history."""

    def __init__(self):
        self.step = 0
        self.checkpoints: list[Checkpoint] = []
        self.history: list[dict] = []
        self.reg_log: dict = {}
        self.best_cr, self.since_best = math.inf, 0


class RQVAE(Tokenizer):
    """RQ-VAE tokenizer with a scikit-learn style API.

    Parameters
    ----------
    n_levels, codebook_size : SID length and codes per level (one int or one per level).
    latent_dim, hidden : encoder MLP in_dim -> *hidden -> latent_dim (the decoder mirrors it).
    beta : commitment weight.
    epochs, max_steps : training budget; training stops at whichever comes first.
    batch_size, lr, weight_decay : AdamW settings (cosine learning-rate schedule).
    eval_every : steps between checkpoint evaluations (collision rate over the catalog).
    patience : stop after this many evaluations without a better collision rate (0: never).
    recon_guard : a checkpoint qualifies only when its reconstruction MSE is within
        (1 + recon_guard) of the best seen; the qualifying checkpoint with the lowest
        collision rate is kept (with regularizers: the fewest conflict pairs they count, then
        the lowest collision rate).
    dead_code_every : steps between restarts of codes left unused since the last restart
        (re-seeded with random current residuals); restarts stop after 80% of the budget (and,
        with ``init="rqkmeans"``, start after 20% of it, so the warm start is not reshuffled).
    init : how training starts. ``"random"``: a random MLP encoder, codebooks from residual
        k-means of its outputs on ``kmeans_init_sample`` rows. ``"batch"``: the same with k-means
        on one batch of rows. ``"rqkmeans"`` (METHODS.md §11, "RQ-KMeans+"): the encoder is
        ``proj(x) + MLP(x)`` with the MLP's last layer zeroed and ``proj`` the identity (when
        ``latent_dim`` equals the input dimension) or the top-``latent_dim`` PCA projection of the
        rows; the codebooks are residual k-means (balanced with ``init_balanced``) of the projected
        rows and the decoder starts as the back-projection, so the first codes are the RQ-KMeans
        nearest-centroid codes and training refines that partition.
    init_balanced : ``init="rqkmeans"``: capacity-capped (balanced) k-means, as ``RQKMeans(balanced=True)``.
    refine : ``"all"``: training updates the encoder, the decoder and every codebook. ``"residual"``
        (needs ``init="rqkmeans"``): the encoder, the decoder and the first-level codebook stay
        where the warm start put them (balanced k-means); only the residual levels' codebooks are
        trained, by the codebook loss and the regularizers (QuaSID/AdaSID refinement of RQ-KMeans'
        residual levels). Dead-code restarts then leave the first level alone too.
    sinkhorn : Sinkhorn assignment on the last level during training (LC-Rec).
    device : "cpu" or "cuda".
    random_state : seed.
    regularizers : :class:`Regularizer` plug-ins used by :meth:`fit` (QuaSID, AdaSID); not saved.
    """

    class_name = "RQVAE"

    def __init__(self, n_levels: int = 3, codebook_size: int | Sequence[int] = 256, *, latent_dim: int = 32,
                 hidden: Sequence[int] = (512, 256, 128), beta: float = 0.25, epochs: int = 300,
                 max_steps: int = 2000, batch_size: int = 1024, lr: float = 1e-3, weight_decay: float = 1e-4,
                 eval_every: int = 50, patience: int = 10, recon_guard: float = 0.1, dead_code_every: int = 50,
                 kmeans_init_sample: int = 50000, sinkhorn: bool = False, sinkhorn_eps: float = 0.003,
                 sinkhorn_iters: int = 50, precision: str = "fp32", device: str = "cpu", random_state: int = 0,
                 init: str = "random", init_balanced: bool = True, refine: str = "all", regularizers: Sequence["Regularizer"] = ()):
        self.n_levels = n_levels
        self.codebook_size = codebook_size
        self.latent_dim = latent_dim
        self.hidden = tuple(hidden)
        self.beta = beta
        self.epochs = epochs
        self.max_steps = max_steps
        self.batch_size = batch_size
        self.lr = lr
        self.weight_decay = weight_decay
        self.eval_every = eval_every
        self.patience = patience
        self.recon_guard = recon_guard
        self.dead_code_every = dead_code_every
        self.kmeans_init_sample = kmeans_init_sample
        self.sinkhorn = sinkhorn
        self.sinkhorn_eps = sinkhorn_eps
        self.sinkhorn_iters = sinkhorn_iters
        self.precision = precision
        self.device = device
        self.random_state = random_state
        self.init = init
        self.init_balanced = init_balanced
        self.refine = refine
        self.regularizers = list(regularizers)

    # ------------------------------------------------------------------------------------------
    def _check(self, n: int, d: int) -> list[int]:
        if self.precision not in ("fp32", "bf16", "auto"):
            raise ConfigError(f"{opt('precision')} '{self.precision}' is not known; use fp32, bf16 or auto")
        if self.init not in INITS:
            raise ConfigError(f"{opt('init')} '{self.init}' is not known; use {', '.join(INITS)}")
        if self.refine not in REFINES:
            raise ConfigError(f"{opt('refine')} '{self.refine}' is not known; use {', '.join(REFINES)}")
        if self.refine == "residual" and self.init != "rqkmeans":
            raise ConfigError(f"{opt('refine')} residual keeps the warm start's encoder and first level; "
                              f"it needs {opt('init')} rqkmeans (got {opt('init')} {self.init})")
        if self.init == "rqkmeans" and self.latent_dim > d:
            raise ConfigError(f"{opt('init')} rqkmeans: {opt('latent_dim')} {self.latent_dim} is larger than the embedding "
                              f"dimension {d}; give {opt('latent_dim')} {d} (exact warm start) or less (PCA projection)")
        sizes = _sizes(self.codebook_size, self.n_levels)
        for name in ("latent_dim", "epochs", "max_steps", "batch_size", "eval_every"):
            v = getattr(self, name)
            if not isinstance(v, (int, np.integer)) or v < 1:
                raise ConfigError(f"{opt(name)} must be a positive integer (got {v!r})")
        if not (self.lr > 0):
            raise ConfigError(f"{opt('lr')} must be positive (got {self.lr!r})")
        check_enough_items(n, sizes)
        if self.device.startswith("cuda") and not torch.cuda.is_available():
            raise ConfigError(f"{opt('device')} cuda was given but no CUDA device is available; use {opt('device')} cpu")
        return sizes

    def fit(self, items, progress: Progress | None = None,
            regularizers: Sequence[Regularizer] | None = None) -> "RQVAE":
        """Train on items (or an (n, d) array). ``regularizers`` (default: the constructor's)
        add loss terms, batch sampling and logging through the :class:`Regularizer` hooks."""
        X = items_matrix(items)
        n, d = X.shape
        sizes = self._check(n, d)
        tr = self._start_training(X, sizes, self.regularizers if regularizers is None else regularizers)
        tr.model.train()
        done = False
        while not done:
            perm = torch.randperm(n, generator=tr.gen)
            for s in range(0, n - tr.bs + 1 if n >= tr.bs else 1, tr.bs):
                loss = self._train_step(tr, perm[s:s + tr.bs])
                if tr.step % self.eval_every == 0 or tr.step == tr.total:
                    if self._checkpoint(tr, loss, progress):  # patience ran out
                        done = True
                        break
                    tr.model.train()
                elif progress and tr.step % 10 == 0:
                    progress("train", tr.step, tr.total, {})
                if tr.step >= tr.total:
                    done = True
                    break
        best = min(tr.checkpoints, key=lambda c: (c.conflicts, c.collision_rate, c.recon_mse, -c.step))
        tr.model.load_state_dict(best.state)
        self.module_ = tr.model.cpu().eval()
        self.device_ = "cpu"
        self.n_features_in_ = d
        self.n_steps_ = tr.step
        self.best_step_ = best.step
        self.history_ = tr.history
        self.fit_seconds_ = time.perf_counter() - tr.t0
        return self

    def _start_training(self, X: np.ndarray, sizes: list[int], regularizers) -> "_Training":
        """Seeds, model (k-means initialised codebooks), optimizer and schedule, evaluation rows and
        regularizer setup, in this order (the order of the random draws)."""
        n, d = X.shape
        tr = _Training()
        torch.manual_seed(self.random_state)
        tr.gen = torch.Generator().manual_seed(self.random_state)
        rng = np.random.default_rng(self.random_state)
        tr.dev = dev = torch.device(self.device)
        tr.model = model = RQVAEModule(d, self.hidden, self.latent_dim, sizes, skip=self.init == "rqkmeans").to(dev)
        model.mlp_dtype = _resolve_precision(self.precision, dev)
        self.precision_ = "bf16" if model.mlp_dtype is not None else "fp32"
        tr.X, tr.Xt, tr.sizes = X, torch.from_numpy(X).to(dev), sizes
        tr.bs = bs = min(self.batch_size, n)
        steps_per_epoch = max(1, math.ceil(n / bs))
        tr.total = total = int(min(self.max_steps, self.epochs * steps_per_epoch))
        tr.t0 = time.perf_counter()
        self.init_codes_ = self._init_codebooks(model, X, rng, dev)
        if self.refine == "residual":  # the warm start's maps and first level stay as k-means made them
            for p in [*model.encoder.parameters(), *model.decoder.parameters(), model.rq.levels[0].codebook]:
                p.requires_grad_(False)
        tr.opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=self.lr, weight_decay=self.weight_decay, fused=True)
        tr.sched = torch.optim.lr_scheduler.LambdaLR(tr.opt, lambda s: 0.5 * (1 + math.cos(math.pi * min(s, total) / total)) * 0.95 + 0.05)
        tr.sk = (self.sinkhorn_eps, self.sinkhorn_iters) if self.sinkhorn else None
        tr.usage = [torch.zeros(k, dtype=torch.long, device=dev) for k in sizes]
        tr.eval_idx = None if n <= 200_000 else np.sort(rng.choice(n, 200_000, replace=False))
        tr.regs = list(regularizers)
        for reg in tr.regs:
            reg.setup(X, model, total_steps=total, batch_size=bs, seed=self.random_state, device=dev)

        def encode_all(rows: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
            was = model.training
            model.eval()
            codes_all, z_all = self._encode_with(model, X if rows is None else X[rows], with_latents=True)
            model.train(was)
            return codes_all, z_all

        tr.encode_all = encode_all
        return tr

    def _train_step(self, tr: "_Training", idx: torch.Tensor) -> torch.Tensor:
        """One optimizer step on the batch ``idx`` (or the one a regularizer picks), code usage counts
        and dead-code restarts; returns the loss."""
        model, regs, step = tr.model, tr.regs, tr.step
        for reg in regs:
            reg.before_step(step, tr.encode_all)
            picked = reg.sample_batch(step, tr.bs, tr.gen)
            if picked is not None:
                idx = picked
        idx = idx.to(tr.dev)
        xb = tr.Xt.index_select(0, idx)
        if regs:
            _, codes, loss, terms, z, zq = model(xb, self.beta, tr.sk, return_latents=True)
            for reg in regs:
                extra, info = reg.loss(step, idx, xb, z, zq, codes)
                if extra is not None:
                    loss = loss + extra
                tr.reg_log.update(info)
        else:
            _, codes, loss, terms = model(xb, self.beta, tr.sk)
        tr.opt.zero_grad(set_to_none=True)
        loss.backward()
        tr.opt.step()
        tr.sched.step()
        tr.step = step = step + 1
        for l in range(len(tr.sizes)):
            tr.usage[l] += torch.bincount(codes[:, l], minlength=tr.sizes[l])
        start = 0.2 * tr.total if self.init == "rqkmeans" else 0
        if self.dead_code_every and step % self.dead_code_every == 0 and start <= step < 0.8 * tr.total:
            self._restart_dead(model, xb, tr.usage, tr.gen, first=1 if self.refine == "residual" else 0)
            tr.usage = [torch.zeros_like(u) for u in tr.usage]
        return loss

    def _checkpoint(self, tr: "_Training", loss: torch.Tensor, progress: Progress | None) -> bool:
        """Evaluate the model, log it, keep it as a candidate checkpoint (within the reconstruction
        guard); True when patience has run out."""
        model, regs, step = tr.model, tr.regs, tr.step
        cr, mse, ev_codes = self._evaluate(model, tr.X, tr.eval_idx)
        conflicts = sum(int(reg.checkpoint_conflicts(ev_codes, tr.eval_idx)) for reg in regs)
        entry = {"step": step, "collision_rate": cr, "recon_mse": mse, "loss": float(loss.detach()),
                 "seconds": time.perf_counter() - tr.t0}
        if regs:
            entry["conflict_pairs"] = conflicts
        for reg in regs:
            entry.update(reg.state())
        entry.update(tr.reg_log)
        tr.history.append(entry)
        tr.checkpoints.append(Checkpoint(step, cr, mse, copy.deepcopy({k: v.detach().cpu().clone() for k, v in model.state_dict().items()}),
                                         conflicts))
        min_mse = min(c.recon_mse for c in tr.checkpoints)
        tr.checkpoints = [c for c in tr.checkpoints if c.recon_mse <= (1 + self.recon_guard) * min_mse]
        if cr < tr.best_cr - 1e-9:
            tr.best_cr, tr.since_best = cr, 0
        else:
            tr.since_best += 1
        if progress:
            shown = {k: v for k, v in entry.items() if k not in ("step", "loss", "seconds")}
            progress("train", step, tr.total, shown)
        return bool(self.patience and tr.since_best >= self.patience and step >= 0.3 * tr.total)

    def _init_codebooks(self, model: RQVAEModule, X: np.ndarray, rng: np.random.Generator, dev) -> np.ndarray | None:
        """Codebooks (and with ``init="rqkmeans"`` the encoder/decoder skip maps) before training;
        returns the warm start's nearest-centroid codes of the k-means rows (None otherwise)."""
        if self.init == "rqkmeans":
            return self._warm_start(model, X, rng, dev)
        n = X.shape[0]
        size = min(self.batch_size, self.kmeans_init_sample) if self.init == "batch" else self.kmeans_init_sample
        take = np.sort(rng.choice(n, min(n, size), replace=False))
        with torch.no_grad():
            z = model.encoder(torch.from_numpy(X[take]).to(dev)).cpu().numpy()
        r = z.copy()
        for vq in model.rq.levels:
            k = vq.codebook.shape[0]
            C = kmeans(r, k, niter=25, seed=int(rng.integers(0, 2**31 - 1)))
            a = residual_encode(r, [C])[:, 0]
            r -= C[a]
            with torch.no_grad():
                vq.codebook.copy_(torch.from_numpy(C))
        return None

    def _warm_start(self, model: RQVAEModule, X: np.ndarray, rng: np.random.Generator, dev) -> np.ndarray:
        """METHODS.md §11: residual k-means of the (projected) rows becomes the codebooks; the
        encoder starts as the projection and the decoder as its back-projection."""
        from sidkit.quantizers.rqkmeans import RQKMeans

        n, d = X.shape
        take = np.sort(rng.choice(n, min(n, self.kmeans_init_sample), replace=False)) if n > self.kmeans_init_sample else None
        S = X if take is None else X[take]
        if self.latent_dim == d:  # exact: z = x
            W, mean = np.eye(d, dtype=np.float32), np.zeros(d, np.float32)
        else:  # projected: the top principal directions of the rows
            mean = S.mean(0, dtype=np.float64)
            Sc = S - mean
            cov = Sc.T.astype(np.float64) @ Sc / max(1, len(S) - 1)
            vals, vecs = np.linalg.eigh(cov)
            W = vecs[:, ::-1][:, :self.latent_dim].T  # (latent, d), rows = components
            W = W * np.where(W[np.arange(len(W)), np.abs(W).argmax(1)] < 0, -1.0, 1.0)[:, None]  # sign-fixed
            W, mean = W.astype(np.float32), mean.astype(np.float32)
        model.encoder.start_at(W, -(mean @ W.T))
        model.decoder.start_at(W.T, mean)
        Z = (S - mean) @ W.T
        sizes = [vq.codebook.shape[0] for vq in model.rq.levels]
        # RQKMeans' own seed: exact mode on every row starts at the codes of 'sidkit fit --method rqkmeans --seed S'
        km = RQKMeans(len(sizes), sizes, niter=25, balanced=self.init_balanced,
                      random_state=self.random_state).fit(np.ascontiguousarray(Z, np.float32))
        with torch.no_grad():
            for vq, C in zip(model.rq.levels, km.codebooks_):
                vq.codebook.copy_(torch.from_numpy(C))
        return km.encode(Z)

    @staticmethod
    def _restart_dead(model: RQVAEModule, xb: torch.Tensor, usage, gen, first: int = 0) -> None:
        """Re-seed the codes of levels ``first``.. unused since the last restart with random
        current residuals."""
        with torch.no_grad():
            r = model.encoder(xb)
            for l, vq in enumerate(model.rq.levels):
                dead = torch.nonzero(usage[l] == 0).flatten() if l >= first else usage[l][:0]
                if len(dead):
                    pick = torch.randint(0, r.shape[0], (len(dead),), generator=gen).to(r.device)
                    vq.codebook.data[dead] = r[pick]
                idx = vq.distances(r).min(dim=1).indices
                r = r - vq.codebook.index_select(0, idx)

    def _evaluate(self, model: RQVAEModule, X: np.ndarray, sel: np.ndarray | None) -> tuple[float, float, np.ndarray]:
        model.eval()
        Xe = X if sel is None else X[sel]
        codes, mse = self._encode_with(model, Xe, with_mse=True)
        return collision_rate(codes), mse, codes

    @staticmethod
    def _latents_with(model: RQVAEModule, X: np.ndarray) -> np.ndarray:
        dev = next(model.parameters()).device
        out = []
        with torch.inference_mode():
            for s in range(0, X.shape[0], 4 * CHUNK):
                out.append(model.encoder(torch.from_numpy(np.ascontiguousarray(X[s:s + 4 * CHUNK])).to(dev)).cpu().numpy())
        return np.concatenate(out) if out else np.zeros((0, model.rq.levels[0].codebook.shape[1]), np.float32)

    @staticmethod
    def _encode_with(model: RQVAEModule, X: np.ndarray, with_mse: bool = False, with_latents: bool = False):
        """Codes of X; with ``with_mse`` also the reconstruction MSE, with ``with_latents`` also
        the encoder outputs (one encoder pass either way)."""
        dev = next(model.parameters()).device
        books = [vq.codebook.detach().cpu().numpy() for vq in model.rq.levels]
        n = X.shape[0]
        codes = np.empty((n, len(books)), np.int32)
        lat = np.empty((n, books[0].shape[1]), np.float32) if with_latents else None
        sq = 0.0
        with torch.inference_mode():
            for s in range(0, n, 4 * CHUNK):
                xb = torch.from_numpy(np.ascontiguousarray(X[s:s + 4 * CHUNK])).to(dev)
                z = model.encoder(xb).cpu().numpy()
                c = residual_encode(z, books)
                codes[s:s + len(c)] = c
                if with_latents:
                    lat[s:s + len(c)] = z
                if with_mse:
                    zq = torch.from_numpy(decode_codes(c, books)).to(dev)
                    sq += float((model.decoder(zq) - xb).pow(2).sum())
        if with_latents:
            return codes, lat
        return (codes, sq / max(1, X.size)) if with_mse else codes

    # ------------------------------------------------------------------------------------------
    @property
    def codebooks_(self) -> list[np.ndarray]:
        return [vq.codebook.detach().cpu().numpy().copy() for vq in self.module_.rq.levels]

    @property
    def codebook_sizes_(self) -> list[int]:
        return [int(vq.codebook.shape[0]) for vq in self.module_.rq.levels]

    @property
    def codebook_sizes(self) -> list[int]:
        self._require_fitted("codebook_sizes")
        return self.codebook_sizes_

    def latents(self, items) -> np.ndarray:
        """Encoder outputs z (n, latent_dim) before quantization."""
        self._require_fitted("latents")
        return self._latents_with(self.module_, items_matrix(items, n_features=self.n_features_in_, min_rows=0))

    def encode(self, items) -> np.ndarray:
        """Codes (n, L) int32: encoder, then greedy residual nearest codes."""
        self._require_fitted("encode")
        return self._encode_with(self.module_, items_matrix(items, n_features=self.n_features_in_, min_rows=0))

    def zcr_space(self, items, codes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        return self._last_residual(self.latents(items), np.asarray(codes))

    def encode_zcr(self, items) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Codes, last-level residuals and last codebook from one encoder pass."""
        self._require_fitted("encode")
        codes, z = self._encode_with(self.module_, items_matrix(items, n_features=self.n_features_in_, min_rows=0),
                                     with_latents=True)
        return (codes, *self._last_residual(z, codes))

    def _last_residual(self, z: np.ndarray, codes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        books = self.codebooks_
        R = z - decode_codes(codes[:, :-1], books[:-1]) if codes.shape[1] > 1 else z
        return R, books[-1]

    def decode(self, codes: np.ndarray) -> np.ndarray:
        """Reconstruct inputs from codes: decoder(sum of codewords)."""
        self._require_fitted("decode")
        zq = torch.from_numpy(decode_codes(check_codes(codes, self.codebook_sizes_), self.codebooks_))
        with torch.inference_mode():
            return self.module_.decoder(zq).numpy()

    def reconstruction_mse(self, items, codes: np.ndarray | None = None) -> float:
        """Mean squared error of decoder(quantized encoder(X)) against X (one encoder pass;
        ``codes`` is accepted for the protocol and not needed)."""
        self._require_fitted("reconstruction_mse")
        X = items_matrix(items, n_features=self.n_features_in_, min_rows=0)
        return self._encode_with(self.module_, X, with_mse=True)[1]

    def training_summary(self) -> dict:
        return {"steps": self.n_steps_, "best_step": self.best_step_, "history": self.history_} if hasattr(self, "n_steps_") else {}

    def extra_files(self, fingerprint: str) -> dict:
        from sidkit.io.artifacts import rows_table
        from sidkit.model.layout import TRAIN_LOG

        return {TRAIN_LOG: rows_table(self.history_)} if getattr(self, "history_", None) else {}

    # --- persistence -----------------------------------------------------------------------
    def state_dict(self) -> dict[str, np.ndarray]:
        self._require_fitted("state_dict")
        out = {}
        for k, v in self.module_.state_dict().items():
            m = re.fullmatch(r"rq\.levels\.(\d+)\.codebook", k)
            out[f"rq.codebook.{m.group(1)}" if m else k] = v.detach().cpu().numpy()
        return out

    def params(self) -> dict:
        return {"n_levels": self.n_levels, "codebook_size": self.codebook_size, "latent_dim": self.latent_dim,
                "hidden": list(self.hidden), "beta": self.beta, "epochs": self.epochs, "max_steps": self.max_steps,
                "batch_size": self.batch_size, "lr": self.lr, "weight_decay": self.weight_decay,
                "eval_every": self.eval_every, "patience": self.patience, "recon_guard": self.recon_guard,
                "dead_code_every": self.dead_code_every, "kmeans_init_sample": self.kmeans_init_sample,
                "sinkhorn": self.sinkhorn, "sinkhorn_eps": self.sinkhorn_eps, "sinkhorn_iters": self.sinkhorn_iters,
                "precision": self.precision, "device": self.device, "random_state": self.random_state,
                "init": self.init, "init_balanced": self.init_balanced, "refine": self.refine}

    @classmethod
    def from_state(cls, params: dict, tensors: dict[str, np.ndarray], **kw) -> "RQVAE":
        m = cls(**params)
        m.device = "cpu"
        skip = m.init == "rqkmeans"
        in_dim = tensors["encoder.proj.weight" if skip else "encoder.0.weight"].shape[1]
        sizes = [tensors[f"rq.codebook.{l}"].shape[0] for l in range(params["n_levels"])]
        module = RQVAEModule(in_dim, m.hidden, m.latent_dim, sizes, skip=skip)
        sd = {}
        for k, v in tensors.items():
            key = k
            if k.startswith("rq.codebook."):
                key = f"rq.levels.{k.split('.')[2]}.codebook"
            sd[key] = torch.from_numpy(np.ascontiguousarray(v))
        module.load_state_dict(sd)
        m.module_ = module.eval()
        m.n_features_in_ = in_dim
        return m
