"""Downstream models for ``sidkit eval`` (METHODS.md §6.2): SASRec over SID tokens or item ids,
a most-popular baseline, and a small TIGER-style encoder-decoder with trie-constrained beam search.

All models rank the full catalog; see :mod:`sidkit.eval.metrics` for the protocol. torch is
imported here only (``import sidkit`` stays cheap).
"""

from __future__ import annotations

import dataclasses
import math
import time
from dataclasses import dataclass
from typing import Callable, Iterable

import numpy as np
import torch
from torch import nn
import torch.nn.functional as F

from sidkit.eval.defaults import EVAL_EPOCHS, TIGER_EPOCHS
from sidkit.eval.metrics import ranks_from_scores, recall_at_k
from sidkit.eval.split import Split


# ----------------------------------------------------------------------------- helpers
def full_sids(codes: np.ndarray, suffix: np.ndarray | None, sizes=None, item_ids=None) -> tuple[np.ndarray, list[int]]:
    """``sid + [suffix]`` (n, L+1) and the vocabulary size of each of the L+1 positions.

    A missing suffix is computed by sidkit's suffix rule (:func:`~sidkit.dedup.suffix.assign_suffix`:
    0, 1, ... inside each collision group by ascending ``item_ids``, the rows' ids)."""
    codes = np.asarray(codes, np.int64)
    if suffix is None:
        from sidkit.dedup.suffix import assign_suffix

        suffix = assign_suffix(codes, item_ids)
    suffix = np.asarray(suffix, np.int64)
    L = codes.shape[1]
    if sizes is None:
        sizes = [int(codes[:, l].max()) + 1 for l in range(L)]
    sizes = [max(int(s), int(codes[:, l].max()) + 1) for l, s in enumerate(sizes)]
    return np.concatenate([codes, suffix[:, None]], axis=1), sizes + [int(suffix.max()) + 1]


def table_sids(codes: np.ndarray, suffix: np.ndarray | None, sizes=None) -> tuple[np.ndarray, list[int]]:
    """The SIDs of a table as given: ``codes`` (n, L), plus the table's own ``suffix`` as a last
    token when it has one (nothing is computed, so items may share a SID), and each position's
    vocabulary size."""
    codes = np.asarray(codes, np.int64)
    L = codes.shape[1]
    if sizes is None:
        sizes = [int(codes[:, l].max()) + 1 for l in range(L)]
    sizes = [max(int(s), int(codes[:, l].max()) + 1) for l, s in enumerate(sizes)]
    if suffix is None:
        return codes, sizes
    suffix = np.asarray(suffix, np.int64)
    return np.concatenate([codes, suffix[:, None]], axis=1), sizes + [int(suffix.max()) + 1]


def _set_seed(seed: int) -> torch.Generator:
    torch.manual_seed(seed)
    np.random.seed(seed % (2**32))
    return torch.Generator().manual_seed(seed)


def _tie_order(n_items: int, seed: int = 12345) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return np.argsort(rng.permutation(n_items))


# ----------------------------------------------------------------------------- item embedders
class IdItemEmbedding(nn.Module):
    """One free vector per item (the ``sasrec-id`` baseline)."""

    def __init__(self, n_items: int, d: int):
        super().__init__()
        self.emb = nn.Embedding(n_items, d)
        nn.init.normal_(self.emb.weight, std=d ** -0.5)

    def forward(self) -> torch.Tensor:
        return self.emb.weight


class SidItemEmbedding(nn.Module):
    """Item vector = sum over levels of E_l[s^l] + E_suffix[suffix] (no item-id embedding)."""

    def __init__(self, sid_full: np.ndarray, sizes: list[int], d: int):
        super().__init__()
        offs = np.concatenate(([0], np.cumsum(sizes)[:-1]))
        self.register_buffer("tokens", torch.as_tensor(sid_full + offs[None, :], dtype=torch.long))
        self.emb = nn.Embedding(int(sum(sizes)), d)
        nn.init.normal_(self.emb.weight, std=(d * sid_full.shape[1]) ** -0.5)

    def forward(self) -> torch.Tensor:
        return self.emb(self.tokens).sum(1)


# ----------------------------------------------------------------------------- SASRec
class SASRec(nn.Module):
    """Causal self-attention over the last ``max_len`` items; scores = h_last . item_matrix."""

    def __init__(self, item_embedding: nn.Module, d: int = 64, max_len: int = 20, n_layers: int = 2,
                 n_heads: int = 2, dropout: float = 0.2):
        super().__init__()
        self.items = item_embedding
        self.pos = nn.Embedding(max_len, d)
        nn.init.normal_(self.pos.weight, std=d ** -0.5)
        layer = nn.TransformerEncoderLayer(d, n_heads, dim_feedforward=2 * d, dropout=dropout, batch_first=True,
                                           norm_first=True, activation="gelu")
        self.encoder = nn.TransformerEncoder(layer, n_layers, enable_nested_tensor=False)
        self.norm = nn.LayerNorm(d)
        self.drop = nn.Dropout(dropout)
        self.register_buffer("causal", torch.triu(torch.full((max_len, max_len), float("-inf")), 1))
        self.max_len = max_len

    def states(self, hist: torch.Tensor, M: torch.Tensor) -> torch.Tensor:
        """hist (B, T) item rows, -1 = padding -> hidden states (B, T, d)."""
        T = hist.shape[1]
        pad = hist < 0
        x = M[hist.clamp_min(0)] * (~pad).unsqueeze(-1)
        x = self.drop(x + self.pos.weight[self.max_len - T:][None])
        h = self.encoder(x, mask=self.causal[:T, :T], is_causal=True)
        return self.norm(h)

    def user_vectors(self, hist: torch.Tensor) -> torch.Tensor:
        M = self.items()
        return self.states(hist, M)[:, -1]


def _sasrec_training_arrays(split: Split, T: int) -> tuple[np.ndarray, np.ndarray]:
    xs, ys = [], []
    for seq in split.train:
        if len(seq) < 2:
            continue
        x, y = seq[:-1][-T:], seq[1:][-T:]
        row_x = np.full(T, -1, np.int64)
        row_y = np.full(T, -1, np.int64)
        row_x[T - len(x):] = x
        row_y[T - len(y):] = y
        xs.append(row_x)
        ys.append(row_y)
    if not xs:
        return np.zeros((0, T), np.int64), np.zeros((0, T), np.int64)
    return np.stack(xs), np.stack(ys)


def _length_batches(lengths: torch.Tensor, batch_size: int, gen: torch.Generator, jitter: float = 3.0) -> list[torch.Tensor]:
    """Shuffled batches of rows with similar lengths (sort by length + ``jitter`` x uniform noise,
    shuffle the batches). A jitter below 1 keeps every batch within one or two lengths."""
    if len(lengths) == 0:
        return []
    key = lengths.double() + jitter * torch.rand(len(lengths), generator=gen, dtype=torch.float64)
    order = torch.argsort(key)
    batches = list(order.split(batch_size))
    return [batches[i] for i in torch.randperm(len(batches), generator=gen).tolist()]


@torch.no_grad()
def sasrec_ranks(model: SASRec, hist: np.ndarray, targets: np.ndarray, *, batch_size: int = 1024,
                 tie_order=None, unscored: np.ndarray | None = None) -> np.ndarray:
    """1-based ranks of the targets; ``unscored`` (bool per item) items rank below every other
    (an id model has no trained embedding for an item it never saw: it cannot rank it)."""
    model.eval()
    M = model.items()
    out = []
    T = hist.shape[1]
    mask = None if unscored is None else torch.as_tensor(np.asarray(unscored, bool))
    for a in range(0, len(hist), batch_size):
        h = torch.as_tensor(hist[a:a + batch_size])
        t = max(1, int((h >= 0).sum(1).max()))
        u = model.states(h[:, T - t:], M)[:, -1]
        scores = u @ M.T
        if mask is not None:
            scores = scores.masked_fill(mask, float("-inf"))
        out.append(ranks_from_scores(scores, targets[a:a + batch_size], tie_order))
    return np.concatenate(out) if out else np.zeros(0)


@dataclass
class TrainConfig:
    """Downstream training hyperparameters (identical for every SID table)."""

    d: int = 64
    n_layers: int = 2
    n_heads: int = 2
    dropout: float = 0.2
    lr: float = 1e-3
    weight_decay: float = 0.0
    batch_size: int = 256
    epochs: int = EVAL_EPOCHS
    patience: int = 3
    min_epochs: int = 10  # no early stop before this (the validation curve is flat at the start)
    valid_users: int = 2000
    threads: int = 1
    # tiger: a fixed budget of epochs under a one-cycle schedule (linear warm-up over ``tiger_warmup`` of
    # the steps to ``tiger_lr``, cosine decay to 0), validated every epoch, the best epoch of the second half kept. On
    # Scientific 8 such epochs matched 14 at a constant 1e-3 (test Recall@10 0.0741 vs 0.0733).
    tiger_epochs: int = TIGER_EPOCHS
    tiger_lr: float = 3e-3
    tiger_warmup: float = 0.1


def _valid_subset(split: Split, n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Validation histories and targets, at most ``n`` users (a seeded sample, in user order)."""
    vu, vh, vt = split.histories("valid")
    if len(vu) > n:
        sel = np.sort(np.random.default_rng(seed).choice(len(vu), n, replace=False))
        vh, vt = vh[sel], vt[sel]
    return vh, vt


def one_cycle(total_steps: int, peak: float, warmup: float) -> Callable[[int], float]:
    """Learning rate of step k (0-based) of ``total_steps``: linear warm-up to ``peak`` over the
    first ``warmup`` share of the steps, then cosine decay to 0 at the last step."""
    n_warm = max(1, int(round(warmup * total_steps))) if warmup > 0 else 0
    rest = max(1, total_steps - n_warm)

    def lr_at(k: int) -> float:
        if k < n_warm:
            return peak * (k + 1) / n_warm
        return peak * 0.5 * (1.0 + math.cos(math.pi * min(1.0, (k - n_warm + 1) / rest)))

    return lr_at


def _train_loop(build: Callable[[], nn.Module], optimizer: type, batches: Callable[[torch.Generator], Iterable],
                batch_loss: Callable[[nn.Module, torch.Tensor], torch.Tensor],
                validate: Callable[[nn.Module], float], *, seed: int, cfg: TrainConfig, progress=None,
                stage: str, clip_norm: float | None = None, report_loss: bool = False,
                lr_at: Callable[[int], float] | None = None, select_from: int = 1) -> tuple[nn.Module, dict]:
    """The training loop shared by the downstream models.

    Seeds torch and numpy with ``seed`` and calls ``build()`` (so the initialisation depends on the
    seed only), then runs up to ``cfg.epochs`` epochs: ``batches(gen)`` gives the epoch's batches
    (``gen`` is the seeded generator for shuffling), ``batch_loss(model, batch)`` their loss, one
    ``optimizer`` step per batch (gradient norm clipped to ``clip_norm`` when given; ``lr_at(k)``,
    when given, is the learning rate of the k-th step, 0-based, over the whole run). After every
    epoch ``validate(model)`` scores the model (higher is better); training stops early after
    ``cfg.patience`` epochs without improvement, but not before ``cfg.min_epochs``, and the best
    state is restored; only epochs from ``select_from`` on can be the best one, and only they are
    validated (validation runs in eval mode and draws no random numbers, so skipping it leaves
    the training the same). An epoch without batches (no training examples) only validates.

    ``progress(stage, epoch, cfg.epochs, {"valid_recall@10": score})`` is called after every epoch
    (the score only for validated epochs; with ``"loss"``, the epoch's last batch loss, when
    ``report_loss`` and the epoch had a batch) and once at the end with the best score.

    Returns the model and ``{"best_epoch", "epochs_run", "valid_recall@10", "train_seconds"}``.
    """
    gen = _set_seed(seed)
    model = build()
    opt = optimizer(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    best, best_state, best_epoch, bad, epoch, step = -1.0, None, 0, 0, 0, 0
    t0 = time.perf_counter()
    for epoch in range(1, cfg.epochs + 1):
        model.train()
        last_loss = None
        for batch in batches(gen):
            loss = batch_loss(model, batch)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            if clip_norm is not None:
                nn.utils.clip_grad_norm_(model.parameters(), clip_norm)
            if lr_at is not None:
                for group in opt.param_groups:
                    group["lr"] = lr_at(step)
            opt.step()
            step += 1
            last_loss = loss.detach()
        info = {}
        if epoch >= select_from:  # an earlier epoch cannot be kept: not validated
            score = validate(model)
            info["valid_recall@10"] = score
            if score > best:
                best, best_epoch, bad = score, epoch, 0
                best_state = {k: v.detach().clone() for k, v in model.state_dict().items()}
            else:
                bad += 1
        if progress is not None:
            if report_loss and last_loss is not None:
                info["loss"] = float(last_loss)
            progress(stage, epoch, cfg.epochs, info)
        if bad >= cfg.patience and epoch >= cfg.min_epochs:
            break
    if best_state is not None:
        model.load_state_dict(best_state)
    if progress is not None:
        progress(stage, cfg.epochs, cfg.epochs, {"valid_recall@10": best})
    return model, {"best_epoch": best_epoch, "epochs_run": epoch, "valid_recall@10": best,
                   "train_seconds": time.perf_counter() - t0}


def train_sasrec(split: Split, item_embedding: nn.Module, *, seed: int, cfg: TrainConfig, progress=None,
                 stage: str = "sasrec", rank_held_out: bool = True) -> tuple[SASRec, dict]:
    """Train SASRec with full softmax cross-entropy on next-item prediction over the training part;
    early stopping on validation Recall@10 (checked every epoch, best state restored; see
    :func:`_train_loop`). Items held out of the split (``split.held_out``) are never softmax
    negatives; with ``rank_held_out=False`` (an id model) they are not validation candidates either."""
    T = split.max_history
    X, Y = _sasrec_training_arrays(split, T)
    vh, vt = _valid_subset(split, cfg.valid_users, seed)
    tie = _tie_order(split.n_items)
    Xt, Yt = torch.as_tensor(X), torch.as_tensor(Y)
    lengths = torch.as_tensor((X >= 0).sum(1))
    # held-out (cold) items are not even negatives: the model must never have seen them
    unseen_np = None if split.held_out is None else np.asarray(split.held_out, bool)
    # an id model has only random embeddings for held-out items: not validation candidates (rank_held_out=False)
    val_unscored = None if rank_held_out else unseen_np
    unseen = None if unseen_np is None else torch.as_tensor(unseen_np)

    def batch_loss(model: SASRec, idx: torch.Tensor) -> torch.Tensor:
        t = int(lengths[idx].max())  # left-padded: drop the all-padding columns
        x, y = Xt[idx, T - t:], Yt[idx, T - t:]
        M = model.items()
        h = model.states(x, M)
        m = y >= 0
        logits = h[m] @ M.T
        if unseen is not None:
            logits = logits.masked_fill(unseen, float("-inf"))
        return F.cross_entropy(logits, y[m])

    def validate(model: SASRec) -> float:  # held-out items are not candidates (see sasrec_ranks)
        return float(recall_at_k(sasrec_ranks(model, vh, vt, tie_order=tie, unscored=val_unscored), 10).mean()) if len(vt) else 0.0

    return _train_loop(lambda: SASRec(item_embedding, cfg.d, T, cfg.n_layers, cfg.n_heads, cfg.dropout),
                       torch.optim.Adam, lambda gen: _length_batches(lengths, cfg.batch_size, gen), batch_loss,
                       validate, seed=seed, cfg=cfg, progress=progress, stage=stage)


# ----------------------------------------------------------------------------- most popular
def most_popular_ranks(split: Split, targets: np.ndarray) -> np.ndarray:
    """Rank by training interaction count (same score for every user; ties by a fixed random order)."""
    counts = split.train_counts().astype(np.float64)
    scores = np.broadcast_to(counts, (len(targets), len(counts)))
    return ranks_from_scores(np.ascontiguousarray(scores), targets, _tie_order(split.n_items))


# ----------------------------------------------------------------------------- TIGER
class SidTrie:
    """Prefix trie of the valid full SIDs (``sid + [suffix]``), stored level by level as dense
    child tables: ``child[l][node, token]`` is the node at depth l+1 (or -1), and ``leaf_item`` maps a
    node at the last depth to its catalog row.

    With ``shared=True`` several items may share a SID (a table with collisions, evaluated with
    the collision-corrected metrics of METHODS.md §6.5): the leaves are the distinct SIDs
    ("groups", numbered in sorted SID order), ``leaf_item`` maps a leaf to its group,
    ``group_of[item]`` gives an item's group and ``group_size[group]`` its number of items. With
    unique SIDs the groups are the catalog rows themselves (``group_of`` is the identity)."""

    def __init__(self, sid_full: np.ndarray, sizes: list[int], *, shared: bool = False):
        sid_full = np.asarray(sid_full, np.int64)
        n = sid_full.shape[0]
        uniq, inv = np.unique(sid_full, axis=0, return_inverse=True)
        inv = inv.reshape(-1)
        if len(uniq) == n:
            self.group_of = np.arange(n, dtype=np.int64)
            self.group_size = np.ones(n, np.int64)
        elif not shared:
            raise ValueError("full SIDs must be unique to build the trie")
        else:
            self.group_of = inv.astype(np.int64)
            self.group_size = np.bincount(inv, minlength=len(uniq)).astype(np.int64)
            sid_full, n = uniq, len(uniq)
        depth = sid_full.shape[1]
        self.sizes = list(sizes)
        self.child: list[np.ndarray] = []
        node = np.zeros(n, np.int64)  # every item starts at the root
        n_nodes = 1
        for l in range(depth):
            key = node * sizes[l] + sid_full[:, l]
            uniq, new = np.unique(key, return_inverse=True)
            new = new.reshape(-1)
            table = np.full((n_nodes, sizes[l]), -1, np.int64)
            table[uniq // sizes[l], uniq % sizes[l]] = np.arange(len(uniq))
            self.child.append(table)
            node, n_nodes = new, len(uniq)
        self.leaf_item = np.full(n_nodes, -1, np.int64)
        self.leaf_item[node] = np.arange(n)

    def contains(self, path) -> bool:
        node = 0
        for l, tok in enumerate(path):
            if not 0 <= tok < self.sizes[l]:
                return False
            node = self.child[l][node, tok]
            if node < 0:
                return False
        return True


# Query length up to which TIGER's attention is computed as matmul + softmax instead of the fused
# kernel: the decoder (depth + 1 positions) and the encoder of histories up to 6 items. In paired
# timing on Scientific's batches (each batch under both) a training step took 0.94x the time of
# the fused kernel everywhere; everywhere explicit was 0.98x, up to 8 tokens 0.95x.
SHORT_ATTENTION = 24


class TIGER(nn.Module):
    """A small T5-style encoder-decoder: the encoder reads the history as SID tokens, the decoder
    emits the next item's ``sid + [suffix]`` one level at a time (level-restricted softmax)."""

    def __init__(self, sid_full: np.ndarray, sizes: list[int], *, max_items: int = 20, d: int = 64,
                 n_heads: int = 4, n_layers: int = 2, ff: int = 256, dropout: float = 0.1, activation: str = "relu"):
        super().__init__()
        self.depth = len(sizes)
        self.sizes = list(sizes)
        offs = np.concatenate(([0], np.cumsum(sizes)[:-1])).astype(np.int64)
        self.offsets = [int(o) for o in offs]
        self.vocab = int(sum(sizes))
        self.PAD, self.BOS = self.vocab, self.vocab + 1
        tok = np.concatenate([sid_full + offs[None, :], np.full((1, self.depth), self.PAD)], axis=0)
        self.register_buffer("item_tokens", torch.as_tensor(tok, dtype=torch.long))  # row n_items = padding
        self.tok = nn.Embedding(self.vocab + 2, d)
        self.level = nn.Embedding(self.depth + 1, d)
        self.item_pos = nn.Embedding(max_items, d)
        self.dec_pos = nn.Embedding(self.depth + 1, d)
        # ReLU feed-forward layers, as T5's (v1.0) own configuration, which TIGER builds on
        self.tf = nn.Transformer(d, n_heads, n_layers, n_layers, ff, dropout, batch_first=True, norm_first=True,
                                 activation=activation)
        self.out = nn.Linear(d, self.vocab)
        self.max_items = max_items
        self.d = d
        self.n_heads = n_heads
        self.p = float(dropout)
        # dropout masks come from numpy's PCG64 seeded from torch's (so a torch seed fixes them), its
        # raw 64-bit words read as 8 bytes each: over 1.3M elements a mask took 5.8 ms, against
        # 11.9 ms from Generator.bytes + a lookup table (dropout was about a quarter of a training
        # step, torch's own CPU bernoulli_ slower still)
        self._bits = np.random.PCG64(int(torch.randint(0, 2**62, (1,))))

    def encode(self, hist: torch.Tensor):
        """Encoder memory of left-padded histories (B, H) (-1 = padding). Leading columns that are
        padding in every row are dropped first (their keys are masked anyway, so the memory of
        the other positions is the same): a batch of short histories costs what its longest one
        costs, not ``max_items``."""
        B, H = hist.shape
        start = self.max_items - H
        used = (hist >= 0).any(0)
        if H > 1 and not bool(used[0]):
            first = int(used.to(torch.int8).argmax()) if bool(used.any()) else H - 1
            hist, start, H = hist[:, first:], start + first, H - first
        n_items = self.item_tokens.shape[0] - 1
        rows = torch.where(hist < 0, torch.full_like(hist, n_items), hist)
        toks = self.item_tokens[rows].reshape(B, H * self.depth)
        lvl = torch.arange(self.depth).repeat(H)
        ipos = torch.arange(start, start + H).repeat_interleave(self.depth)
        x = self.tok(toks) + self.level.weight[lvl][None] + self.item_pos.weight[ipos][None]
        pad = toks == self.PAD
        keep = ~pad[:, None, None, :]  # attention mask: True = a real key
        for layer in self.tf.encoder.layers:
            x = x + self._drop(self._attention(layer.self_attn, layer.norm1(x), None, keep))
            x = x + self._drop(self._feed_forward(layer, layer.norm2(x)))
        return self.tf.encoder.norm(x), pad

    # The transformer's forward, written out over the parameters of ``self.tf`` (pre-norm layers,
    # as nn.Transformer with ``norm_first=True`` computes them in eval mode; tested against it).
    # Training drops the outputs of attention and feed-forward blocks and the feed-forward hidden
    # layer with probability ``self.p``; attention weights are not dropped (this keeps the fused
    # attention kernel; a training step takes 0.70x the time of nn.Transformer's training path).
    def _drop(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or self.p <= 0.0:
            return x
        t = int(round(self.p * 256))  # drop probability in steps of 1/256 (0.1 -> 26/256)
        n = x.numel()
        u = self._bits.random_raw(-(-n // 8)).view(np.uint8)[:n].reshape(x.shape)
        mask = np.multiply(u >= t, np.float32(256.0 / (256 - t)), dtype=np.float32)  # 0 or the keep scale
        return x * torch.from_numpy(mask).to(x.dtype)  # a no-op cast in float32

    def _attention(self, mha: nn.MultiheadAttention, q_in: torch.Tensor, kv_in: torch.Tensor | None,
                   keep: torch.Tensor | None, causal: bool = False) -> torch.Tensor:
        B, T, d = q_in.shape
        h = self.n_heads
        W, b = mha.in_proj_weight, mha.in_proj_bias
        if kv_in is None:  # self-attention: one fused projection
            q, k, v = F.linear(q_in, W, b).view(B, T, 3, h, d // h).permute(2, 0, 3, 1, 4)
        else:
            S = kv_in.shape[1]
            q = F.linear(q_in, W[:d], b[:d]).view(B, T, h, d // h).transpose(1, 2)
            k, v = F.linear(kv_in, W[d:], b[d:]).view(B, S, 2, h, d // h).permute(2, 0, 3, 1, 4)
        if T > SHORT_ATTENTION:
            a = F.scaled_dot_product_attention(q, k, v, attn_mask=keep, is_causal=causal)
        else:  # the same maths written out: cheaper than the fused kernel's per-(row, head) set-up here
            att = (q @ k.transpose(-1, -2)) * (1.0 / math.sqrt(d // h))
            if causal:
                att = att.masked_fill(torch.ones(T, T, dtype=torch.bool).triu(1), float("-inf"))
            if keep is not None:
                att = att.masked_fill(~keep, float("-inf"))
            a = att.softmax(-1) @ v
        return mha.out_proj(a.transpose(1, 2).reshape(B, T, d))

    def _feed_forward(self, layer: nn.Module, x: torch.Tensor) -> torch.Tensor:
        return layer.linear2(self._drop(layer.activation(layer.linear1(x))))

    def _decode(self, y: torch.Tensor, mem: torch.Tensor, pad: torch.Tensor) -> torch.Tensor:
        keep = ~pad[:, None, None, :]
        for layer in self.tf.decoder.layers:
            y = y + self._drop(self._attention(layer.self_attn, layer.norm1(y), None, None, causal=True))
            y = y + self._drop(self._attention(layer.multihead_attn, layer.norm2(y), mem, keep))
            y = y + self._drop(self._feed_forward(layer, layer.norm3(y)))
        return self.tf.decoder.norm(y)

    def decode_logits(self, mem, pad, prefix: torch.Tensor) -> torch.Tensor:
        """prefix (B, t) of level tokens (raw codes); returns the level-t logits (B, sizes[t])."""
        B, t = prefix.shape
        toks = torch.full((B, t + 1), self.BOS, dtype=torch.long)
        for l in range(t):
            toks[:, l + 1] = prefix[:, l] + self.offsets[l]
        y = self.tok(toks) + self.dec_pos.weight[: t + 1][None]
        h = self._decode(y, mem, pad)
        o = self.offsets[t]
        return self.out(h[:, -1])[:, o:o + self.sizes[t]]

    def loss(self, hist: torch.Tensor, target_sid: torch.Tensor) -> torch.Tensor:
        mem, pad = self.encode(hist)
        B = hist.shape[0]
        toks = torch.full((B, self.depth), self.BOS, dtype=torch.long)
        for l in range(1, self.depth):
            toks[:, l] = target_sid[:, l - 1] + self.offsets[l - 1]
        y = self.tok(toks) + self.dec_pos.weight[: self.depth][None]
        h = self._decode(y, mem, pad)
        W, b = self.out.weight, self.out.bias
        total = 0.0
        for l in range(self.depth):  # each position scores only its own level's codes
            o, V = self.offsets[l], self.sizes[l]
            total = total + F.cross_entropy(F.linear(h[:, l], W[o:o + V], b[o:o + V]), target_sid[:, l])
        return total / self.depth


class _CachedDecoder:
    """Incremental decoding for :class:`TIGER` (the same maths as ``model.tf.decoder``, eval mode).

    The cross-attention keys and values of the encoder memory are computed once per user and shared
    by all of the user's beams (the beams are the query positions of one attention call); the
    self-attention keys and values of the decoded prefix are cached and reordered by beam parent."""

    def __init__(self, model: "TIGER", mem: torch.Tensor, pad: torch.Tensor):
        self.m = model
        self.layers = list(model.tf.decoder.layers)
        self.norm = model.tf.decoder.norm
        B, S, d = mem.shape
        self.h = self.layers[0].self_attn.num_heads
        self.dh = d // self.h
        self.B = B
        self.mask = torch.zeros(B, 1, 1, S, dtype=mem.dtype).masked_fill(pad[:, None, None, :], float("-inf"))
        self.mem_kv = []
        for layer in self.layers:
            W, b = layer.multihead_attn.in_proj_weight, layer.multihead_attn.in_proj_bias
            k = F.linear(mem, W[d:2 * d], b[d:2 * d]).view(B, S, self.h, self.dh).transpose(1, 2)
            v = F.linear(mem, W[2 * d:], b[2 * d:]).view(B, S, self.h, self.dh).transpose(1, 2)
            self.mem_kv.append((k, v))
        self.cache: list[tuple[torch.Tensor, torch.Tensor]] | None = None  # (B, W, h, t, dh) per layer

    def reorder(self, parent: torch.Tensor) -> None:
        """Keep the cached prefixes of the chosen parent beams: parent (B, W_new) indices into W_old."""
        if self.cache is None:
            return
        out = []
        for k, v in self.cache:
            idx = parent[:, :, None, None, None].expand(-1, -1, *k.shape[2:])
            out.append((k.gather(1, idx), v.gather(1, idx)))
        self.cache = out

    def step(self, tok: torch.Tensor, pos: int, level: int) -> torch.Tensor:
        """tok (B, W) vocabulary tokens at decoder position ``pos``; returns level logits (B, W, V)."""
        m, B, W = self.m, tok.shape[0], tok.shape[1]
        h, dh = self.h, self.dh
        x = m.tok(tok) + m.dec_pos.weight[pos]  # (B, W, d)
        d = x.shape[-1]
        new_cache = []
        for i, layer in enumerate(self.layers):
            # self-attention over the cached prefix and the new token
            y = layer.norm1(x)
            W_in, b_in = layer.self_attn.in_proj_weight, layer.self_attn.in_proj_bias
            qkv = F.linear(y, W_in, b_in).view(B, W, 3, h, dh)
            q, k, v = qkv[:, :, 0], qkv[:, :, 1].unsqueeze(3), qkv[:, :, 2].unsqueeze(3)  # k, v (B, W, h, 1, dh)
            if self.cache is not None:
                k = torch.cat([self.cache[i][0], k], dim=3)
                v = torch.cat([self.cache[i][1], v], dim=3)
            new_cache.append((k, v))
            att = (q.unsqueeze(3) @ k.transpose(-1, -2)) / dh ** 0.5  # (B, W, h, 1, t)
            a = (att.softmax(-1) @ v).reshape(B, W, d)
            x = x + layer.self_attn.out_proj(a)
            # cross-attention: the W beams of a user are the queries over the user's memory
            y = layer.norm2(x)
            Wc, bc = layer.multihead_attn.in_proj_weight, layer.multihead_attn.in_proj_bias
            q = F.linear(y, Wc[:d], bc[:d]).view(B, W, h, dh).transpose(1, 2)  # (B, h, W, dh)
            mk, mv = self.mem_kv[i]
            att = (q @ mk.transpose(-1, -2)) / dh ** 0.5 + self.mask  # (B, h, W, S)
            a = (att.softmax(-1) @ mv).transpose(1, 2).reshape(B, W, d)
            x = x + layer.multihead_attn.out_proj(a)
            y = layer.norm3(x)
            x = x + layer.linear2(layer.activation(layer.linear1(y)))
        self.cache = new_cache
        x = self.norm(x)
        o, V = m.offsets[level], m.sizes[level]
        return F.linear(x, m.out.weight[o:o + V], m.out.bias[o:o + V])


@torch.no_grad()
def tiger_beam_search(model: TIGER, trie: SidTrie, hist: np.ndarray, *, beam: int = 20,
                      batch_size: int = 256) -> tuple[np.ndarray, np.ndarray]:
    """Trie-constrained beam search over a batch of users at once.

    Returns (leaves (n, beam): ``trie.leaf_item`` of each beam, catalog rows or -1, and scores
    (n, beam) summed log-probabilities), beams in descending score order; only valid SIDs can be
    produced. Per batch of users: the encoder runs once, the decoder runs incrementally (one
    position per level, cached keys/values), the trie constraint is a tensor gather of the child
    tables (no Python loop over users or beams). Ties in score keep the lower (beam, token) index,
    so the result is deterministic."""
    model.eval()
    child = [torch.as_tensor(c) for c in trie.child]
    leaf = torch.as_tensor(trie.leaf_item)
    all_items, all_scores = [], []
    neg = float("-inf")
    hist = np.asarray(hist)
    # users in order of history length, so each batch's encoder input is as short as its longest
    # history (see TIGER.encode); the results go back to the input order at the end
    order = np.argsort((hist >= 0).sum(1), kind="stable") if hist.ndim == 2 else np.arange(len(hist))
    for a in range(0, len(hist), batch_size):
        h = torch.as_tensor(hist[order[a:a + batch_size]])
        B = h.shape[0]
        mem, pad = model.encode(h)
        dec = _CachedDecoder(model, mem, pad)
        score = torch.zeros(B, 1)
        node = torch.zeros(B, 1, dtype=torch.long)
        tok = torch.full((B, 1), model.BOS, dtype=torch.long)
        for l in range(model.depth):
            V = model.sizes[l]
            logp = F.log_softmax(dec.step(tok, l, l), dim=-1)  # (B, W, V)
            ch = child[l][node.clamp_min(0)]  # (B, W, V)
            valid = (ch >= 0) & torch.isfinite(score).unsqueeze(-1)
            cand = torch.where(valid, score.unsqueeze(-1) + logp, torch.tensor(neg))
            Wn = cand.shape[1]
            k = min(beam, Wn * V)
            top, idx = cand.view(B, -1).topk(k, dim=1)
            parent, t = idx // V, idx % V
            new_node = ch.view(B, -1).gather(1, idx)
            dec.reorder(parent)
            score = top
            node = torch.where(torch.isfinite(top), new_node, torch.full_like(new_node, -1))
            tok = t + model.offsets[l]
        if node.shape[1] < beam:
            score = F.pad(score, (0, beam - node.shape[1]), value=neg)
            node = F.pad(node, (0, beam - node.shape[1]), value=-1)
        items = torch.where(node >= 0, leaf[node.clamp_min(0)], torch.full_like(node, -1))
        all_items.append(items.numpy())
        all_scores.append(score.numpy())
    if not all_items:
        return np.zeros((0, beam), np.int64), np.zeros((0, beam), np.float32)
    sorted_items, sorted_scores = np.concatenate(all_items), np.concatenate(all_scores)
    items, scores = np.empty_like(sorted_items), np.empty_like(sorted_scores)
    items[order], scores[order] = sorted_items, sorted_scores
    return items, scores


def ranks_from_beams(items: np.ndarray, targets: np.ndarray) -> np.ndarray:
    """1-based position of the target in each beam list (``inf`` when absent)."""
    hit = items == np.asarray(targets)[:, None]
    pos = np.argmax(hit, axis=1) + 1.0
    return np.where(hit.any(1), pos, np.inf)


def _tiger_training_arrays(split: Split, H: int):
    hs, ts = [], []
    for seq in split.train:
        for j in range(1, len(seq)):
            h = seq[max(0, j - H):j]
            row = np.full(H, -1, np.int64)
            row[H - len(h):] = h
            hs.append(row)
            ts.append(seq[j])
    if not hs:
        return np.zeros((0, H), np.int64), np.zeros(0, np.int64)
    return np.stack(hs), np.asarray(ts, np.int64)


# Sort key noise of TIGER's length-bucketed batches: under 1, a batch holds one history length
# (or two at a boundary), so the encoder pads 1.02x the real tokens (Scientific) against 1.28x
# with SASRec's 3.0.
TIGER_JITTER = 0.5


def build_tiger(sid_full: np.ndarray, sizes: list[int], max_items: int, cfg: TrainConfig) -> TIGER:
    """The TIGER that :func:`train_tiger` trains (its width, heads and layers from ``cfg``)."""
    return TIGER(sid_full, sizes, max_items=max_items, d=cfg.d, n_heads=cfg.n_heads, n_layers=cfg.n_layers, dropout=0.1)


def tiger_optimizer(params, **kw) -> torch.optim.Optimizer:
    """AdamW for TIGER; the fused kernel where this torch has one for CPU tensors (torch >= 2.4):
    one call for all parameters instead of ~15 small ops per tensor (1.1 ms against 6.2 ms a step)."""
    params = list(params)
    try:
        return torch.optim.AdamW(params, fused=True, **kw)
    except (RuntimeError, TypeError, ValueError):
        return torch.optim.AdamW(params, **kw)


def train_tiger(split: Split, sid_full: np.ndarray, sizes: list[int], *, seed: int, cfg: TrainConfig,
                beam: int = 20, progress=None, stage: str = "tiger", shared: bool = False) -> tuple[TIGER, SidTrie, dict]:
    """Teacher-forced training on every (prefix -> next item) pair of the training part, for
    ``cfg.tiger_epochs`` epochs under a one-cycle schedule (:func:`one_cycle`, peak
    ``cfg.tiger_lr``); after every epoch the validation Recall@10 of trie-constrained beam search
    (a subsample of users) is measured and the best epoch's state is kept (see
    :func:`_train_loop`; only the second half of the epochs can be kept). ``shared``: items may share a SID (see :class:`SidTrie`); the
    validation score is then the SID-level Recall@10 (the target's SID in the top 10 beams)."""
    H = split.max_history
    trie = SidTrie(sid_full, sizes, shared=shared)
    X, tgt = _tiger_training_arrays(split, H)
    Xt, St = torch.as_tensor(X), torch.as_tensor(sid_full[tgt])
    vh, vt = _valid_subset(split, max(200, cfg.valid_users // 4), seed)
    bs = max(cfg.batch_size, 256)
    lengths = (Xt >= 0).sum(1)

    def batches(gen: torch.Generator) -> list[torch.Tensor]:
        # batches of one history length, random within it (TIGER_JITTER): the encoder drops the
        # columns that are padding in the whole batch, and most training prefixes are short
        return _length_batches(lengths, bs, gen, TIGER_JITTER)

    def validate(model: TIGER) -> float:
        items, _ = tiger_beam_search(model, trie, vh, beam=beam)
        return float(recall_at_k(ranks_from_beams(items, trie.group_of[vt]), 10).mean()) if len(vt) else 0.0

    E = int(cfg.tiger_epochs)
    run = dataclasses.replace(cfg, epochs=E, min_epochs=E, lr=cfg.tiger_lr)  # every epoch of the budget runs
    lr_at = one_cycle(E * -(-len(Xt) // bs), cfg.tiger_lr, cfg.tiger_warmup)
    # select_from: the best epoch is chosen in the second half of the schedule. On the noisy
    # 500-user subset an epoch near the peak learning rate was once kept (published LETTER, epoch
    # 2 of 8: test Recall@10 0.0614, against 0.0789 with another seed that kept epoch 7).
    model, info = _train_loop(lambda: build_tiger(sid_full, sizes, H, cfg),
                              tiger_optimizer, batches, lambda model, idx: model.loss(Xt[idx], St[idx]), validate,
                              seed=seed, cfg=run, progress=progress, stage=stage, clip_norm=1.0, report_loss=True,
                              lr_at=lr_at, select_from=E // 2 + 1)
    return model, trie, info
