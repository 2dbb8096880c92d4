"""Collision-aware regularizers for the RQ-VAE trainer (METHODS.md §1.7, §1.8, §3, §4).

* :class:`~sidkit.regularizers.quasid.QuaSID` — Hamming-guided margin repulsion with
  severity-scaled margins and conflict-aware valid-pair masking, plus collaborative alignment.
* :class:`~sidkit.regularizers.adasid.AdaSID` — semantic-adaptive relaxation, load-adaptive
  budget-preserving allocation and a progress schedule that shifts weight from repulsion to
  alignment.

Both plug into :meth:`sidkit.quantizers.rqvae.RQVAE.fit` through ``regularizers=[...]``. The
hyperparameters live in four blocks (METHODS.md §8): ``mining``, ``align``, ``quasid`` and
``adasid``; :data:`DEFAULTS` holds the defaults and :func:`resolve_blocks` merges and validates
user values (TOML tables ``[fit.mining]``, ``[fit.align]``, ``[fit.quasid]``, ``[fit.adasid]``).
Importing this module does not import torch.
"""

from __future__ import annotations

import copy
from typing import Any, Mapping

from sidkit.errors import ConfigError

REGULARIZERS = ("quasid", "adasid")

DEFAULTS: dict[str, dict[str, Any]] = {
    "mining": {
        "refresh_every": "auto",       # "auto" (one epoch but at least 50 steps), "epoch", or a number of steps; at most 1000
        "h_max": 1,                    # largest Hamming distance of a mined overlap
        "cap_per_bucket": 64,          # pairs sampled per bucket when pairs are enumerated
        "max_pairs": 8192,             # batch pairs per step; more are subsampled uniformly (early, collapsed codes)
        "collision_batch_frac": 0.5,   # psi: share of each batch drawn from collision buckets
        "members_per_bucket": 8,       # members taken from each sampled bucket
        "knn_k": 20,                   # frozen-input kNN list length
        "rnn_k": 10,                   # latent kNN depth searched for r_nn (nearest item with another SID)
        "checkpoint": "conflicts",     # checkpoint selection: fewest unrelated exact collisions, then collision rate | "collision_rate"
    },
    "align": {
        "mode": "user2item",           # user2item | item2item
        "weight": 1e-4,                # lambda_DT (QuaSID; METHODS.md says 0.01, which wrecked locality and MSE here); AdaSID uses adasid.lambda_align_max
        "tau": 0.07,
        "hist_len": 20,
        "window": 3,                   # item2item co-engagement window
        "proj_dim": 64,
        "hidden": 128,
        "lr": 1e-3,                    # the towers' own Adam learning rate
        "batch": 256,                  # training examples per step (positives are batch items)
        "enabled": True,
    },
    "quasid": {
        "lambda_hmr": 0.1,
        "warmup": [0.05, 0.10],        # lambda_HMR: 0 until warmup[0], linear ramp to warmup[1]
        "alpha_m": 1.0,                # m_max = alpha_m * median r_nn
        "margin_fallback": 0.1,        # m_max before the first refresh
        "gamma_s": 1.0,
        "severity": True,              # ablation switch: False gives every overlap the full margin
        "severity_weight": False,
        "normalize": "valid",          # valid: mean over qualified pairs (METHODS.md §3.3) | active: over pairs inside their margin
        "semantic_weight": 10.0,       # gamma_c: pair weight 1 + gamma_c * (1 - cos(x_i, x_j)); 0 = METHODS.md §3.3
        "mask": True,                  # ablation switch: False disables every CAVPM rule
        "dup_content": 0.98,           # cosine threshold, or false
        "dup_text_hash": True,
        "same_group": True,
        "group_col": "group_id",
        "degenerate_input": 0.99,      # cosine to the default vector, or false
        "cf_equivalent": None,         # not available (no CF vectors input yet)
        "kernel": "margin",            # margin (METHODS.md §3.3) | code_switch (sidkit variant)
        "switch_margin": 0.05,         # code_switch: relative margin past the code boundary
    },
    "adasid": {
        "lambda_rep_max": 0.3,         # METHODS.md says 0.1; 0.3 left fewer conflict items on Scientific
        "lambda_align_max": 1e-4,      # METHODS.md says 0.01; see align.weight
        "relax": True,                 # ablation switch: False gives rho = 1
        "k_c": 10,
        "T_k": 0.02,
        "hard": False,
        "taxonomy_gate": False,
        "leaf_col": "category_leaf",
        "load": True,                  # ablation switch: False is gamma_l = 0
        "eta": 0.25,
        "gamma_l": 1.0,
        "schedule": "progress",        # progress | constant (ablation)
        "progress": "max_steps_collision",   # max_steps_collision | steps
        "warm": [0.05, 0.15],
        "decay_start": 0.5,
        "floor": 0.2,
        "align_floor": 0.1,
        "align_ramp_end": 0.7,
        "kernel": "margin",            # margin | soft_overlap | code_switch
        "switch_margin": 0.05,
        "semantic_weight": 0.0,        # gamma_c as in quasid, budget-preserving (0: off)
        "alpha_m": 1.0,
        "margin_fallback": 0.1,
    },
}

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
            ("mining", "knn_k"): 1, ("mining", "rnn_k"): 1, ("align", "hist_len"): 1, ("align", "window"): 1,
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
    out = copy.deepcopy(DEFAULTS)
    for block, given in (values or {}).items():
        if block not in DEFAULTS:
            raise ConfigError(f"unknown config block '{block}'; known blocks: {', '.join(DEFAULTS)}")
        if given is None:
            continue
        if not isinstance(given, Mapping):
            raise ConfigError(f"config block '{block}' must be a table of options (got {given!r})")
        for key, v in given.items():
            key_n = key.replace("-", "_")
            if key_n not in DEFAULTS[block]:
                raise ConfigError(f"unknown option '{block}.{key}'; known: {', '.join(DEFAULTS[block])}")
            out[block][key_n] = _check(block, key_n, v)
    return out


def make_regularizer(name: str, blocks: Mapping[str, Mapping[str, Any]], *, catalog_info: Mapping[str, Any] | None = None,
                     interactions=None):
    """Build the regularizer ``name`` ('quasid' | 'adasid') from resolved blocks.

    ``catalog_info`` may hold ``texts`` (list of str or None: title + description), ``groups``
    (list of group ids) and ``leaf`` (leaf categories); ``interactions`` is a
    :class:`~sidkit.regularizers.align.TrainInteractions` or None (no alignment)."""
    if name == "quasid":
        from sidkit.regularizers.quasid import QuaSID

        return QuaSID(blocks, catalog_info=catalog_info, interactions=interactions)
    if name == "adasid":
        from sidkit.regularizers.adasid import AdaSID

        return AdaSID(blocks, catalog_info=catalog_info, interactions=interactions)
    raise ConfigError(f"--regularizer '{name}' is not known; choose one of {', '.join(REGULARIZERS)}")


__all__ = ["DEFAULTS", "REGULARIZERS", "make_regularizer", "resolve_blocks"]
