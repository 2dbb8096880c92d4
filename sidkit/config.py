"""Fit options: the method registry, defaults, TOML config files, and one validation pass.

:class:`FitConfig` keeps the options every method reads flat and one typed section per method
family (:class:`RQKMeansOptions`, :class:`RQVAEOptions`, the regularizer blocks
:class:`MiningOptions`, :class:`AlignOptions`, :class:`QuaSIDOptions`, :class:`AdaSIDOptions`, and
:class:`KAEOptions`). :data:`METHODS` is the one registry of method names; :func:`codebook_sizes`
the one reader of codebook sizes.

Precedence: a flag given on the command line > the ``--config`` TOML file > the defaults below.
A TOML file may hold the options at top level or under a ``[fit]`` table; keys use the flag
names with ``-`` or ``_``.
"""

from __future__ import annotations

import copy
import dataclasses
import os
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

from sidkit.errors import ConfigError, opt

# ---------------------------------------------------------------------------------------------
# The method registry: every fit method, the tokenizer class it fits and the regularizer it implies
# (sidkit.methods builds and loads the tokenizers by class name)


@dataclass(frozen=True)
class Method:
    name: str
    class_name: str
    regularizer: str | None  # the RQ-VAE regularizer the method implies
    summary: str


METHODS: dict[str, Method] = {m.name: m for m in (
    Method("rqkmeans", "RQKMeans", None, "faiss k-means per level on residuals"),
    Method("rqvae", "RQVAE", None, "TIGER-style RQ-VAE"),
    Method("quasid", "RQVAE", "quasid", "RQ-VAE with QuaSID's collision-aware regularizer"),
    Method("adasid", "RQVAE", "adasid", "RQ-VAE with AdaSID's collision-aware regularizer"),
    Method("kae", "KAE", None, "keyword-aligned attribute positions (+ optional residual levels)"),
)}
#: the methods that fit an RQ-VAE (quasid/adasid: with that regularizer)
RQVAE_METHODS = tuple(name for name, m in METHODS.items() if m.class_name == "RQVAE")
#: the collision-aware regularizers (an RQ-VAE with one is the method of that name)
REGULARIZERS = tuple(m.regularizer for m in METHODS.values() if m.regularizer)
#: the methods of KAE's trailing residual levels (every method with a residual last level)
RESIDUAL_METHODS = tuple(name for name, m in METHODS.items() if m.class_name != "KAE")

# ---------------------------------------------------------------------------------------------
# The collision-aware regularizers' blocks (METHODS.md §8): TOML tables [fit.mining],
# [fit.align], [fit.quasid], [fit.adasid]; defaults here, bounds in the tables below


@dataclass
class MiningOptions:
    refresh_every: int | str = "auto"   # "auto" (one epoch but at least 50 steps), "epoch", or a number of steps; at most 1000
    h_max: int = 1                      # largest Hamming distance of a mined overlap
    cap_per_bucket: int = 64            # pairs sampled per bucket when pairs are enumerated
    max_pairs: int = 8192               # batch pairs per step; more are subsampled uniformly (early, collapsed codes)
    collision_batch_frac: float = 0.5   # psi: share of each batch drawn from collision buckets
    members_per_bucket: int = 8         # members taken from each sampled bucket
    knn_k: int = 20                     # frozen-input kNN list length
    rnn_k: int = 10                     # latent kNN depth searched for r_nn (nearest item with another SID)
    rnn_queries: int = 8192             # r_nn's median is taken over a seeded sample of this many SID-table rows (all rows when fewer)
    refresh_pool: int = 50000           # SID-table rows: a seeded subset of this many training rows when there are more (README "Deviations")
    checkpoint: str = "conflicts"       # checkpoint selection: fewest unrelated exact collisions, then collision rate | "collision_rate"


@dataclass
class AlignOptions:
    mode: str = "user2item"             # user2item | item2item
    weight: float = 1e-4                # lambda_DT (QuaSID; METHODS.md says 0.01, which wrecked locality and MSE here); AdaSID uses adasid.lambda_align_max
    tau: float = 0.07
    hist_len: int = 20
    window: int = 3                     # item2item co-engagement window
    proj_dim: int = 64
    hidden: int = 128
    lr: float = 1e-3                    # the towers' own Adam learning rate
    batch: int = 256                    # training examples per step (positives are batch items)
    enabled: bool = True


@dataclass
class QuaSIDOptions:
    lambda_hmr: float = 0.1
    warmup: list[float] = field(default_factory=lambda: [0.05, 0.10])  # lambda_HMR: 0 until warmup[0], linear ramp to warmup[1]
    alpha_m: float = 1.0                # m_max = alpha_m * median r_nn
    margin_fallback: float = 0.1        # m_max before the first refresh
    gamma_s: float = 1.0
    severity: bool = True               # ablation switch: False gives every overlap the full margin
    severity_weight: bool = False
    normalize: str = "valid"            # valid: mean over qualified pairs (METHODS.md §3.3) | active: over pairs inside their margin
    semantic_weight: float = 10.0       # gamma_c: pair weight 1 + gamma_c * (1 - cos(x_i, x_j)); 0 = METHODS.md §3.3
    mask: bool = True                   # ablation switch: False disables every CAVPM rule
    dup_content: float | None = 0.98    # cosine threshold, or false
    dup_text_hash: bool = True
    same_group: bool = True
    group_col: str = "group_id"
    degenerate_input: float | None = 0.99  # cosine to the default vector, or false
    cf_equivalent: float | None = None  # not available (no CF vectors input yet)
    kernel: str = "margin"              # margin (METHODS.md §3.3) | code_switch (sidkit variant)
    switch_margin: float = 0.05         # code_switch: relative margin past the code boundary


@dataclass
class AdaSIDOptions:
    lambda_rep_max: float = 0.3         # METHODS.md says 0.1; 0.3 left fewer conflict items on Scientific
    lambda_align_max: float = 1e-4      # METHODS.md says 0.01; see align.weight
    relax: bool = True                  # ablation switch: False gives rho = 1
    k_c: int = 10
    T_k: float = 0.02
    hard: bool = False
    taxonomy_gate: bool = False
    leaf_col: str = "category_leaf"
    load: bool = True                   # ablation switch: False is gamma_l = 0
    eta: float = 0.25
    gamma_l: float = 1.0
    schedule: str = "progress"          # progress | constant (ablation)
    progress: str = "max_steps_collision"  # max_steps_collision | steps
    warm: list[float] = field(default_factory=lambda: [0.05, 0.15])
    decay_start: float = 0.5
    floor: float = 0.2
    align_floor: float = 0.1
    align_ramp_end: float = 0.7
    kernel: str = "margin"              # margin | soft_overlap | code_switch
    switch_margin: float = 0.05
    semantic_weight: float = 0.0        # gamma_c as in quasid, budget-preserving (0: off)
    alpha_m: float = 1.0
    margin_fallback: float = 0.1


#: block name -> its options type (the TOML table [fit.<name>] and FitConfig.<name>)
BLOCK_TYPES: dict[str, type] = {"mining": MiningOptions, "align": AlignOptions, "quasid": QuaSIDOptions,
                                "adasid": AdaSIDOptions}
BLOCKS = tuple(BLOCK_TYPES)
#: every block's defaults as plain dicts (what the regularizers take)
BLOCK_DEFAULTS: dict[str, dict[str, Any]] = {b: dataclasses.asdict(t()) for b, t in BLOCK_TYPES.items()}

_CHOICES = {
    ("align", "mode"): ("user2item", "item2item"),
    ("adasid", "schedule"): ("progress", "constant"),
    ("adasid", "progress"): ("max_steps_collision", "steps"),
    ("adasid", "kernel"): ("margin", "soft_overlap", "code_switch"),
    ("quasid", "kernel"): ("margin", "code_switch"),
    ("quasid", "normalize"): ("valid", "active"),
    ("mining", "checkpoint"): ("conflicts", "collision_rate"),
}
_POS_INT = {("mining", "h_max"): 0, ("mining", "cap_per_bucket"): 1, ("mining", "max_pairs"): 1, ("mining", "members_per_bucket"): 2,
            ("mining", "knn_k"): 1, ("mining", "rnn_k"): 1,
            ("mining", "rnn_queries"): 1, ("mining", "refresh_pool"): 2, ("align", "hist_len"): 1, ("align", "window"): 1,
            ("align", "proj_dim"): 1, ("align", "hidden"): 1, ("align", "batch"): 2, ("adasid", "k_c"): 1}
_NONNEG = {("align", "weight"), ("quasid", "lambda_hmr"), ("quasid", "semantic_weight"), ("adasid", "semantic_weight"), ("quasid", "alpha_m"), ("quasid", "margin_fallback"),
           ("quasid", "gamma_s"), ("quasid", "switch_margin"), ("adasid", "switch_margin"), ("adasid", "lambda_rep_max"), ("adasid", "lambda_align_max"), ("adasid", "eta"),
           ("adasid", "gamma_l"), ("adasid", "alpha_m"), ("adasid", "margin_fallback")}
_POS = {("align", "tau"), ("align", "lr"), ("adasid", "T_k")}
_UNIT = {("mining", "collision_batch_frac"), ("adasid", "decay_start"), ("adasid", "floor"),
         ("adasid", "align_floor"), ("adasid", "align_ramp_end")}
_RANGE2 = {("quasid", "warmup"), ("adasid", "warm")}
_THRESH = {("quasid", "dup_content"), ("quasid", "degenerate_input"), ("quasid", "cf_equivalent")}
_BOOL = {("align", "enabled"), ("quasid", "severity"), ("quasid", "severity_weight"), ("quasid", "mask"),
         ("quasid", "dup_text_hash"), ("quasid", "same_group"), ("adasid", "relax"), ("adasid", "hard"),
         ("adasid", "taxonomy_gate"), ("adasid", "load")}


def _num(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def _check(block: str, key: str, v: Any) -> Any:
    where = f"{block}.{key}"
    k = (block, key)
    if k in _CHOICES:
        if v not in _CHOICES[k]:
            raise ConfigError(f"{where} '{v}' is not known; choose one of {', '.join(_CHOICES[k])}")
    elif k in _POS_INT:
        if not isinstance(v, int) or isinstance(v, bool) or v < _POS_INT[k]:
            raise ConfigError(f"{where} must be an integer >= {_POS_INT[k]} (got {v!r})")
    elif k in _NONNEG:
        if not _num(v) or v < 0 or v != v:
            raise ConfigError(f"{where} must be a non-negative number (got {v!r})")
    elif k in _POS:
        if not _num(v) or not v > 0:
            raise ConfigError(f"{where} must be a positive number (got {v!r})")
    elif k in _UNIT:
        if not _num(v) or not 0 <= v <= 1:
            raise ConfigError(f"{where} must be a number in [0, 1] (got {v!r})")
    elif k in _RANGE2:
        if (not isinstance(v, (list, tuple)) or len(v) != 2 or not all(_num(a) for a in v)
                or not 0 <= v[0] <= v[1] <= 1):
            raise ConfigError(f"{where} must be two numbers 0 <= a <= b <= 1 (got {v!r})")
        v = [float(v[0]), float(v[1])]
    elif k in _THRESH:
        if v is False or v is None:
            return None
        if not _num(v) or not -1 <= v <= 1:
            raise ConfigError(f"{where} must be a cosine threshold in [-1, 1] or false (got {v!r})")
    elif k in _BOOL:
        if not isinstance(v, bool):
            raise ConfigError(f"{where} must be true or false (got {v!r})")
    elif k == ("mining", "refresh_every"):
        if v not in ("epoch", "auto") and (not isinstance(v, int) or isinstance(v, bool) or v < 1):
            raise ConfigError(f"{where} must be 'auto', 'epoch' or a positive number of steps (got {v!r})")
    elif k in (("quasid", "group_col"), ("adasid", "leaf_col")):
        if not isinstance(v, str) or not v:
            raise ConfigError(f"{where} must be a column name (got {v!r})")
    return v


def resolve_blocks(values: Mapping[str, Any] | None) -> dict[str, dict[str, Any]]:
    """Defaults merged with ``values`` ({block: {key: value}}); unknown keys and bad values raise
    :class:`~sidkit.errors.ConfigError`."""
    out = copy.deepcopy(BLOCK_DEFAULTS)
    for block, given in (values or {}).items():
        if block not in BLOCK_DEFAULTS:
            raise ConfigError(f"unknown config block '{block}'; known blocks: {', '.join(BLOCK_DEFAULTS)}")
        if given is None:
            continue
        if not isinstance(given, Mapping):
            raise ConfigError(f"config block '{block}' must be a table of options (got {given!r})")
        for key, v in given.items():
            key_n = key.replace("-", "_")
            if key_n not in BLOCK_DEFAULTS[block]:
                raise ConfigError(f"unknown option '{block}.{key}'; known: {', '.join(BLOCK_DEFAULTS[block])}")
            out[block][key_n] = _check(block, key_n, v)
    return out



# ---------------------------------------------------------------------------------------------
# FitConfig: the options every method shares, flat, and one typed section per method family

#: rows a fit trains on when --train-sample is not given (a seeded sample of bigger catalogs; every
#: row is encoded). One cap for every method: RQ-VAE-family training sees max_steps x batch_size
#: samples (2M at the defaults), so more rows add memory, not signal; faiss k-means trains each
#: level on at most 256 x K points (65,536 at K = 256), so 1M rows cover K up to 4,096 and leave
#: the rest to the residuals; KAE's vocabulary (f_min = 5) and routing scorers (at most 1,000 rows
#: per class) are stable well below 1M. The sample's fused matrix costs 1M x d x 4 bytes
#: (0.5 GB at d = 128, 1.5 GB at d = 384).
TRAIN_SAMPLE_DEFAULT = 1_000_000


#: how RQ-VAE training starts (``--init``; ``RQVAE(init=...)``)
INITS = ("random", "batch", "rqkmeans")
#: what RQ-VAE training updates (``--refine``; ``RQVAE(refine=...)``): everything, or (after a
#: ``rqkmeans`` warm start) only the residual levels' codebooks
REFINES = ("all", "residual")


@dataclass
class RQKMeansOptions:
    niter: int = 25
    balanced: bool = True  # capacity-capped k-means (also KAE's rqkmeans residual levels), see HELP


@dataclass
class RQVAEOptions:
    """RQ-VAE training (rqvae, quasid, adasid): the :class:`~sidkit.quantizers.rqvae.RQVAE`
    keyword arguments of the same names."""

    epochs: int = 300
    max_steps: int = 2000
    batch_size: int = 1024
    lr: float = 1e-3
    weight_decay: float = 1e-4
    latent_dim: int = 32
    hidden: list[int] = field(default_factory=lambda: [512, 256, 128])
    beta: float = 0.25
    eval_every: int = 50
    patience: int = 10
    recon_guard: float = 0.1
    dead_code_every: int = 50
    sinkhorn: bool = False
    sinkhorn_eps: float = 0.003
    sinkhorn_iters: int = 50
    device: str = "cpu"
    precision: str = "fp32"
    init: str = "random"
    refine: str = "all"


@dataclass
class KAEOptions:
    """KAE (METHODS.md §5): attribute columns, a plan from 'sidkit kae-plan', groups when planning
    on the fly, and optional trailing residual levels learned by another method."""

    attributes: list[str] | str | None = None
    plan: str | None = None
    groups: int = 6
    residual_levels: int = 0
    residual_method: str = "rqkmeans"


#: section -> its options type, for the sections whose options are given flat (``epochs=...``,
#: ``--epochs``); the regularizer blocks (BLOCK_TYPES) are given as tables
FLAT_SECTIONS: dict[str, type] = {"rqkmeans": RQKMeansOptions, "rqvae": RQVAEOptions, "kae": KAEOptions}
#: flat option name -> the section that holds it
_SECTION_OF = {f.name: s for s, t in FLAT_SECTIONS.items() for f in dataclasses.fields(t)}
#: the options in the order sidkit.json's "config" stores them (flat, blocks as nested tables);
#: the stored layout predates the sections and stays as it is
STORED_ORDER = ("method", "id_col", "embedding", "embedding_weights", "levels", "codebook_size", "seed", "niter",
                "train_sample", "report_sample", "dedup", "balanced", *(f.name for f in dataclasses.fields(RQVAEOptions)),
                "regularizer", "interactions", *BLOCKS, *(f.name for f in dataclasses.fields(KAEOptions)))


@dataclass
class FitConfig:
    """A fit's options: the ones every method reads, flat, then one typed section per method family
    (``cfg.rqvae.epochs``, ``cfg.quasid.lambda_hmr``, ``cfg.kae.residual_levels``). Callers give
    them flat, as flags, keywords and TOML keys do (:meth:`from_options`); :meth:`to_dict` is the
    layout sidkit.json stores."""

    method: str = "rqkmeans"  # the best method at its defaults under TIGER on both shared catalogs (benchmarks/README.md, issue 28)
    id_col: str = "item_id"
    embedding: list[str] | None = None
    embedding_weights: list[float] | None = None
    levels: int = 3
    codebook_size: int | list[int] = 256
    seed: int = 0
    train_sample: int | None = None
    report_sample: int = 20_000
    dedup: str = "suffix"
    # collision-aware regularizers (METHODS.md §1.7-§4): on top of rqvae, and their interactions
    regularizer: str | None = None
    interactions: str | None = None
    # per method family
    rqkmeans: RQKMeansOptions = field(default_factory=RQKMeansOptions)
    rqvae: RQVAEOptions = field(default_factory=RQVAEOptions)
    mining: MiningOptions = field(default_factory=MiningOptions)
    align: AlignOptions = field(default_factory=AlignOptions)
    quasid: QuaSIDOptions = field(default_factory=QuaSIDOptions)
    adasid: AdaSIDOptions = field(default_factory=AdaSIDOptions)
    kae: KAEOptions = field(default_factory=KAEOptions)

    @classmethod
    def from_options(cls, values: Mapping[str, Any]) -> "FitConfig":
        """A config from flat option names (``epochs=...``, ``residual_levels=...``) and block
        tables (``quasid={...}``, partial ones merged with the defaults by :meth:`validate`)."""
        top: dict[str, Any] = {}
        sections: dict[str, dict[str, Any]] = {s: {} for s in FLAT_SECTIONS}
        for k, v in values.items():
            if k in _SECTION_OF:
                sections[_SECTION_OF[k]][k] = v
            else:
                top[k] = v
        return cls(**top, **{s: t(**sections[s]) for s, t in FLAT_SECTIONS.items()})

    def option(self, name: str) -> Any:
        """The value of a flat option, wherever its section keeps it."""
        return getattr(getattr(self, _SECTION_OF[name]), name) if name in _SECTION_OF else getattr(self, name)

    def blocks(self) -> dict[str, dict[str, Any]]:
        """The regularizer blocks as plain tables (what :func:`sidkit.regularizers.make_regularizer` takes)."""
        return {b: dataclasses.asdict(getattr(self, b)) for b in BLOCKS}

    def train_rows(self, n_rows: int) -> int:
        """How many of a catalog's ``n_rows`` rows the fit trains on (``train_sample``, default
        :data:`TRAIN_SAMPLE_DEFAULT`, at most all of them)."""
        cap = self.train_sample if self.train_sample is not None else TRAIN_SAMPLE_DEFAULT
        return min(int(n_rows), int(cap))

    def regularizer_name(self) -> str | None:
        """'quasid' or 'adasid' when training runs with that regularizer, else None."""
        return METHODS[self.method].regularizer or self.regularizer

    def to_dict(self) -> dict[str, Any]:
        """The options as sidkit.json stores them: flat, the regularizer blocks as nested tables."""
        blocks = self.blocks()
        return {k: blocks[k] if k in blocks else copy.deepcopy(self.option(k)) for k in STORED_ORDER}

    def codebook_sizes(self) -> list[int]:
        return codebook_sizes(self.codebook_size, self.levels)

    def validate(self) -> "FitConfig":
        if self.method not in METHODS:
            raise ConfigError(f"{opt('method')} '{self.method}' is not known; choose one of {', '.join(METHODS)}")
        k = self.kae
        if self.method == "kae" and (k.residual_method not in RESIDUAL_METHODS or not isinstance(k.residual_levels, int) or k.residual_levels < 0 or k.groups < 1):
            raise ConfigError(f"kae: {opt('residual_method')} must be one of {', '.join(RESIDUAL_METHODS)}, {opt('residual_levels')} >= 0, {opt('groups')} >= 1")
        positive = ["levels", "niter", "epochs", "max_steps", "batch_size", "latent_dim", "eval_every", "sinkhorn_iters"]
        for name in positive:
            v = self.option(name)
            if not isinstance(v, int) or isinstance(v, bool) or v < 1:
                raise ConfigError(f"{opt(name)} must be a positive integer (got {v!r})")
        for name in ("lr", "sinkhorn_eps", "beta"):
            v = self.option(name)
            if not isinstance(v, (int, float)) or v <= 0:
                raise ConfigError(f"{opt(name)} must be a positive number (got {v!r})")
        if not isinstance(self.seed, int) or isinstance(self.seed, bool) or not 0 <= self.seed < 2**32:
            raise ConfigError(f"{opt('seed')} must be an integer from 0 to 2^32-1 (got {self.seed!r})")
        if self.train_sample is not None and (not isinstance(self.train_sample, int) or isinstance(self.train_sample, bool)
                                              or self.train_sample < 2):
            raise ConfigError(f"{opt('train_sample')} must be an integer of at least 2 (got {self.train_sample!r})")
        if not isinstance(self.report_sample, int) or isinstance(self.report_sample, bool) or self.report_sample < 0:
            raise ConfigError(f"{opt('report_sample')} must be an integer >= 0 (0: every item is a query; got {self.report_sample!r})")
        if self.dedup not in ("suffix", "zcr", "none"):
            raise ConfigError(f"{opt('dedup')} '{self.dedup}' is not known; use suffix, zcr or none")
        if self.dedup == "zcr" and self.method == "kae":
            raise ConfigError(f"{opt('dedup')} zcr needs a residual last level (rqkmeans, rqvae, quasid or adasid); "
                              f"use {opt('dedup')} suffix with {opt('method')} kae")
        sizes = self.codebook_sizes()
        if any(k < 2 or k > 65536 for k in sizes):
            raise ConfigError(f"{opt('codebook_size')} values must be between 2 and 65536 (got {sizes})")
        r = self.rqvae
        if r.precision not in ("fp32", "bf16", "auto"):
            raise ConfigError(f"{opt('precision')} '{r.precision}' is not known; use fp32, bf16 or auto")
        if r.init not in INITS:
            raise ConfigError(f"{opt('init')} '{r.init}' is not known; use {', '.join(INITS)}")
        if r.refine not in REFINES:
            raise ConfigError(f"{opt('refine')} '{r.refine}' is not known; use {', '.join(REFINES)}")
        if r.refine == "residual" and r.init != "rqkmeans":
            raise ConfigError(f"{opt('refine')} residual keeps the warm start's encoder and first level; "
                              f"it needs {opt('init')} rqkmeans (got {opt('init')} {r.init})")
        if r.device not in ("cpu", "cuda") and not str(r.device).startswith("cuda:"):
            raise ConfigError(f"{opt('device')} '{r.device}' is not known; use cpu or cuda")
        if self.regularizer is not None:
            if self.regularizer not in REGULARIZERS:
                raise ConfigError(f"{opt('regularizer')} '{self.regularizer}' is not known; choose quasid or adasid")
            if self.method != "rqvae" and self.method != self.regularizer:
                raise ConfigError(f"{opt('regularizer')} needs {opt('method')} rqvae (got {opt('method')} {self.method})")
        given = {b: getattr(self, b) for b in BLOCKS}  # a block may be a partial table of options
        blocks = resolve_blocks({b: dataclasses.asdict(v) if isinstance(v, BLOCK_TYPES[b]) else v for b, v in given.items()})
        for b, t in BLOCK_TYPES.items():
            setattr(self, b, t(**blocks[b]))
        return self


#: every fit option name a caller, a flag or the TOML file may give (besides shortcuts and switches)
_FIELDS = set(STORED_ORDER)

# ---------------------------------------------------------------------------------------------
# The one table of fit options: what each means (the CLI's help text, with the default taken from
# the dataclass or the regularizer blocks), and the shortcut options that set regularizer-block
# keys. The CLI flags, the TOML keys of --config and the keyword arguments of sidkit.fit() all use
# these names (flags with '-' for '_').

HELP: dict[str, str] = {
    "method": "Tokenizer: rqvae, rqkmeans, quasid or adasid (an RQ-VAE with that collision-aware regularizer), or kae (keyword-aligned attribute positions).",
    "id_col": "Id column.",
    "embedding": "Embedding column (repeatable). [default: every float-list column]",
    "embedding_weights": "Comma list of weights, one per --embedding column, for fusion.",
    "levels": "Number of levels (SID length).",
    "codebook_size": "Codes per level: one int or a comma list per level.",
    "epochs": "rqvae: training epochs (capped by --max-steps).",
    "max_steps": "rqvae: optimizer step budget.",
    "batch_size": "rqvae: batch size.",
    "lr": "rqvae: AdamW learning rate.",
    "train_sample": "Train on a seeded sample (--seed) of at most this many rows; every row is still encoded. [default: all rows up to 1,000,000]",
    "report_sample": "Fits on over 100,000 rows: seeded query items of the report's semantic block (approximate index; the sample size and 95% intervals are in the report; 0: every row). 'sidkit audit --items --semantic-sample' runs a bigger one.",
    "dedup": "Collisions: suffix (an extra token 0, 1, ... per shared SID), zcr (reassign the last code inside each prefix group: distinct SIDs of the same length; rqkmeans/rqvae/quasid/adasid) or none.",
    "balanced": "rqkmeans (and --init rqkmeans): capacity-capped (balanced) k-means; --no-balanced for plain k-means (more 'sink' codes and collisions: 22.9% vs 14.9% on Scientific).",
    "latent_dim": "rqvae: size of the encoder's output, the space the codebooks live in.",
    "init": "rqvae/quasid/adasid: how training starts: random (random encoder, k-means codebooks of its outputs), batch (the same, k-means on one batch) or rqkmeans (warm start at residual k-means of the embeddings, balanced unless --no-balanced; the encoder starts as the identity when --latent-dim equals the embedding size, else a PCA projection).",
    "refine": "rqvae/quasid/adasid: what training updates: all (encoder, decoder, every codebook) or residual (with --init rqkmeans: the warm start's encoder, decoder and first-level codebook stay as k-means made them; the method's losses refine the residual levels' codebooks only).",
    "sinkhorn": "rqvae: Sinkhorn assignment on the last level during training (LC-Rec).",
    "device": "rqvae: cpu or cuda.",
    "precision": "rqvae: encoder/decoder precision while training: fp32, bf16 (mixed precision; about 1.6x faster on CPUs with AVX512-BF16 or AMX) or auto (bf16 where the hardware has it).",
    "seed": "Random seed (0 to 2^32-1); same seed and inputs give identical codes.",
    "regularizer": "quasid or adasid on top of --method rqvae (also with --sinkhorn).",
    "interactions": "quasid/adasid: interactions Parquet (user_id, item_id, split and/or timestamp/position) for the alignment term; only the training part is used.",
    "attributes": "kae: comma list of attribute categories (columns or list levels such as categories[2]). [default: repeating string columns]",
    "plan": "kae: a plan from 'sidkit kae-plan' (made on the fly when not given).",
    "residual_levels": "kae: trailing semantic levels after the attribute positions.",
    "residual_method": "kae: method of the residual levels: rqkmeans, rqvae, quasid or adasid.",
    # shortcuts into the regularizer blocks
    "lambda_hmr": "quasid: margin-repulsion weight.",
    "lambda_rep": "adasid: maximum repulsion weight.",
    "lambda_align": "quasid/adasid: (maximum) alignment weight.",
    "alpha_m": "quasid/adasid: margin = alpha_m x median distance to the nearest item with another SID.",
    "h_max": "quasid/adasid: largest Hamming distance of a repelled overlap.",
    "collision_batch_frac": "quasid/adasid: share of each batch drawn from collision buckets.",
    "refresh_every": "quasid/adasid: steps between SID-table refreshes (auto: one epoch, at least 50 steps).",
    "align_mode": "quasid/adasid: user2item or item2item.",
    "kernel": "adasid: repulsion kernel, margin or soft_overlap.",
    "no_mask": "quasid ablation: no conflict-aware pair masking.",
    "no_severity": "quasid ablation: the same margin for every Hamming distance.",
    "no_align": "quasid/adasid ablation: no alignment term.",
    "no_relax": "adasid ablation: no semantic relaxation (rho = 1).",
    "no_load": "adasid ablation: no load adaptation (gamma_l = 0).",
    "constant_schedule": "adasid ablation: constant weights instead of the progress schedule.",
}

#: shortcut option -> the regularizer-block keys it sets
SHORTCUTS: dict[str, tuple[tuple[str, str], ...]] = {
    "lambda_hmr": (("quasid", "lambda_hmr"),),
    "lambda_rep": (("adasid", "lambda_rep_max"),),
    "lambda_align": (("align", "weight"), ("adasid", "lambda_align_max")),
    "alpha_m": (("quasid", "alpha_m"), ("adasid", "alpha_m")),
    "h_max": (("mining", "h_max"),),
    "collision_batch_frac": (("mining", "collision_batch_frac"),),
    "refresh_every": (("mining", "refresh_every"),),
    "align_mode": (("align", "mode"),),
    "kernel": (("adasid", "kernel"),),
}
#: ablation switch -> (block, key, value it sets when true)
SWITCHES: dict[str, tuple[str, str, Any]] = {
    "no_mask": ("quasid", "mask", False), "no_severity": ("quasid", "severity", False),
    "no_align": ("align", "enabled", False), "no_relax": ("adasid", "relax", False),
    "no_load": ("adasid", "load", False), "constant_schedule": ("adasid", "schedule", "constant"),
}
_NO_DEFAULT = {"embedding", "embedding_weights", "train_sample", "attributes", "plan", "interactions", "regularizer"}


def default_of(name: str) -> Any:
    """The default of a fit option (a FitConfig field or a shortcut), for help texts."""
    if name in SHORTCUTS:
        block, key = SHORTCUTS[name][0]
        return BLOCK_DEFAULTS[block][key]
    if name not in _FIELDS or name in BLOCKS:
        return None
    return FitConfig().option(name)


def help_for(name: str) -> str:
    """The help text of a fit option with its default (from the one place defaults live)."""
    text = HELP[name]
    if name in SWITCHES or name in _NO_DEFAULT or "[default:" in text:
        return text
    d = default_of(name)
    if isinstance(d, bool):
        d = "on" if d else "off"
    return f"{text} [default: {d}]"


def expand_shortcuts(values: dict[str, Any]) -> dict[str, Any]:
    """``values`` with shortcut options and ablation switches moved into their blocks (a
    shortcut wins over the same key given in a block)."""
    out = dict(values)
    for name, targets in SHORTCUTS.items():
        v = out.pop(name, None)
        if v is None:
            continue
        for block, key in targets:
            out[block] = {**(out.get(block) or {}), key: v}
    for name, (block, key, val) in SWITCHES.items():
        v = out.pop(name, None)
        if v is None or v is False:
            continue
        if v is not True:
            raise ConfigError(f"{opt(name)} is a switch: give true or false (got {v!r})")
        out[block] = {**(out.get(block) or {}), key: val}
    return out


def parse_codebook_size(value) -> int | list[int] | None:
    """The one parser of codebook sizes: ``256`` / ``"256"`` / ``"256,256,512"`` / ``[256, 256]``
    -> an int or a list of ints (each >= 1; a fit asks for 2..65536, see FitConfig.validate)."""
    if value is None:
        return None
    if isinstance(value, bool):
        vals = None
    elif hasattr(value, "__index__"):  # int, numpy integer
        vals = [int(value)]
    elif isinstance(value, str):
        try:
            vals = [int(v) for v in value.replace(" ", "").split(",") if v != ""]
        except ValueError:
            vals = None
    else:
        try:
            vals = [int(v) for v in value if not isinstance(v, bool) and int(v) == v]
            vals = vals if len(vals) == len(list(value)) else None
        except (TypeError, ValueError):
            vals = None
    if not vals:
        raise ConfigError(f"{opt('codebook_size')} {value!r}: give one integer or a comma list like 256,256,256")
    if any(v < 1 for v in vals):
        raise ConfigError(f"{opt('codebook_size')} {value!r}: sizes must be positive integers")
    return vals[0] if len(vals) == 1 and not isinstance(value, (list, tuple)) else vals


def codebook_sizes(value, levels: int) -> list[int]:
    """One codebook size per level from ``value`` (anything :func:`parse_codebook_size` reads):
    one size for every level, or one per level (ConfigError when the counts disagree)."""
    v = parse_codebook_size(value)
    sizes = [v] * levels if isinstance(v, int) else list(v)
    if len(sizes) != levels:
        raise ConfigError(f"{opt('codebook_size')} lists {len(sizes)} sizes for {opt('levels')} {levels}; give one size or one per level")
    return sizes


def read_toml(path: str | os.PathLike, *, missing: str, what: str = "file") -> dict[str, Any]:
    """Parse a TOML file; ConfigError naming the file when it is absent (``missing`` says how to
    fix that) or not valid TOML."""
    p = Path(path)
    if not p.is_file():
        raise ConfigError(f"{p}: {missing}")
    try:
        return tomllib.loads(p.read_text(encoding="utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as e:
        raise ConfigError(f"{p}: not valid TOML ({e}); fix the {what}") from None


def load_toml(path: str | os.PathLike, table: str = "fit") -> dict[str, Any]:
    p = Path(path)
    data = read_toml(p, missing="config file not found; check --config")
    if table in data and isinstance(data[table], dict):
        data = data[table]
    out = {}
    for k, v in data.items():
        key = k.replace("-", "_")
        if key not in _FIELDS and key not in SHORTCUTS and key not in SWITCHES:
            raise ConfigError(f"{p}: unknown option '{k}'; known options: {', '.join(sorted(_FIELDS | set(SHORTCUTS) | set(SWITCHES)))}")
        out[key] = v
    return out


def resolve(cli: Mapping[str, Any], config_path: str | os.PathLike | None = None) -> FitConfig:
    """Merge defaults < TOML file < command-line values (None means 'not given')."""
    values: dict[str, Any] = {}
    if config_path is not None:
        values.update(expand_shortcuts(load_toml(config_path)))
    for k, v in expand_shortcuts({k: v for k, v in cli.items() if v is not None}).items():
        if k in BLOCKS and isinstance(v, Mapping) and isinstance(values.get(k), Mapping):
            values[k] = {**values[k], **{a: b for a, b in v.items() if b is not None}}  # flags win per key
        else:
            values[k] = v
    unknown = set(values) - _FIELDS
    if unknown:
        raise ConfigError(f"unknown fit options: {', '.join(sorted(unknown))}")
    if "codebook_size" in values:
        values["codebook_size"] = parse_codebook_size(values["codebook_size"])
    if isinstance(values.get("embedding"), str):
        values["embedding"] = [values["embedding"]]
    try:
        cfg = FitConfig.from_options(values)
    except TypeError as e:
        raise ConfigError(f"bad fit options: {e}") from None
    return cfg.validate()
