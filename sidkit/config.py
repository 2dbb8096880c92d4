"""Fit options: defaults, TOML config files, and one validation pass.

Precedence: a flag given on the command line > the ``--config`` TOML file > the defaults below.
A TOML file may hold the options at top level or under a ``[fit]`` table; keys use the flag
names with ``-`` or ``_``.
"""

from __future__ import annotations

import dataclasses
import os
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

from sidkit.errors import ConfigError

METHODS = ("rqkmeans", "rqvae", "quasid", "adasid", "kae")
RQVAE_METHODS = ("rqvae", "quasid", "adasid")  # quasid/adasid: an RQ-VAE with that regularizer
BLOCKS = ("mining", "align", "quasid", "adasid")  # nested tables, see sidkit.regularizers.DEFAULTS


@dataclass
class FitConfig:
    method: str = "rqvae"
    id_col: str = "item_id"
    embedding: list[str] | None = None
    embedding_weights: list[float] | None = None
    levels: int = 3
    codebook_size: int | list[int] = 256
    seed: int = 0
    # rqkmeans
    niter: int = 25
    train_sample: int | None = None
    balanced: bool = False
    # rqvae
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
    # collision-aware regularizers (METHODS.md §1.7-§4); TOML tables [fit.mining], [fit.align],
    # [fit.quasid], [fit.adasid]; validate() fills every key with its default
    regularizer: str | None = None
    interactions: str | None = None
    mining: dict = field(default_factory=dict)
    align: dict = field(default_factory=dict)
    quasid: dict = field(default_factory=dict)
    adasid: dict = field(default_factory=dict)
    # kae (METHODS.md §5): attribute columns, a plan from 'sidkit kae-plan', groups when planning on
    # the fly, and optional trailing residual levels learned by another method
    attributes: list[str] | str | None = None
    plan: str | None = None
    groups: int = 6
    residual_levels: int = 0
    residual_method: str = "rqkmeans"

    def regularizer_name(self) -> str | None:
        """'quasid' or 'adasid' when training runs with that regularizer, else None."""
        return self.method if self.method in ("quasid", "adasid") else self.regularizer

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def codebook_sizes(self) -> list[int]:
        cs = self.codebook_size
        sizes = [int(cs)] * self.levels if isinstance(cs, int) else [int(k) for k in cs]
        if len(sizes) != self.levels:
            raise ConfigError(f"--codebook-size lists {len(sizes)} sizes for --levels {self.levels}; give one size or one per level")
        return sizes

    def validate(self) -> "FitConfig":
        if self.method not in METHODS:
            raise ConfigError(f"--method '{self.method}' is not known; choose one of {', '.join(METHODS)}")
        if self.method == "kae" and (self.residual_method not in METHODS[:4] or not isinstance(self.residual_levels, int) or self.residual_levels < 0 or self.groups < 1):
            raise ConfigError(f"kae: --residual-method must be one of {', '.join(METHODS[:4])}, --residual-levels >= 0, --groups >= 1")
        positive = ["levels", "niter", "epochs", "max_steps", "batch_size", "latent_dim", "eval_every", "sinkhorn_iters"]
        for name in positive:
            v = getattr(self, name)
            if not isinstance(v, int) or isinstance(v, bool) or v < 1:
                raise ConfigError(f"--{name.replace('_', '-')} must be a positive integer (got {v!r})")
        for name in ("lr", "sinkhorn_eps", "beta"):
            v = getattr(self, name)
            if not isinstance(v, (int, float)) or v <= 0:
                raise ConfigError(f"--{name.replace('_', '-')} must be a positive number (got {v!r})")
        if not isinstance(self.seed, int) or isinstance(self.seed, bool) or not 0 <= self.seed < 2**32:
            raise ConfigError(f"--seed must be an integer from 0 to 2^32-1 (got {self.seed!r})")
        if self.train_sample is not None and self.train_sample < 1:
            raise ConfigError(f"--train-sample must be a positive integer (got {self.train_sample!r})")
        sizes = self.codebook_sizes()
        if any(k < 2 or k > 65536 for k in sizes):
            raise ConfigError(f"--codebook-size values must be between 2 and 65536 (got {sizes})")
        if self.precision not in ("fp32", "bf16", "auto"):
            raise ConfigError(f"--precision '{self.precision}' is not known; use fp32, bf16 or auto")
        if self.device not in ("cpu", "cuda") and not str(self.device).startswith("cuda:"):
            raise ConfigError(f"--device '{self.device}' is not known; use cpu or cuda")
        if self.regularizer is not None:
            if self.regularizer not in ("quasid", "adasid"):
                raise ConfigError(f"--regularizer '{self.regularizer}' is not known; choose quasid or adasid")
            if self.method != "rqvae" and self.method != self.regularizer:
                raise ConfigError(f"--regularizer needs --method rqvae (got --method {self.method})")
        from sidkit.regularizers import resolve_blocks

        blocks = resolve_blocks({b: getattr(self, b) for b in BLOCKS})
        for b in BLOCKS:
            setattr(self, b, blocks[b])
        return self


_FIELDS = {f.name for f in dataclasses.fields(FitConfig)}


def parse_int_list(text: str | int | list, option: str) -> int | list[int]:
    """'256' -> 256, '256,128,64' -> [256, 128, 64]."""
    if isinstance(text, (int, list)):
        return text
    try:
        parts = [int(p) for p in str(text).split(",") if p.strip()]
    except ValueError:
        raise ConfigError(f"{option} '{text}' is not an integer or a comma list of integers (e.g. 256 or 256,256,128)") from None
    if not parts:
        raise ConfigError(f"{option} is empty; give an integer or a comma list of integers")
    return parts[0] if len(parts) == 1 else parts


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
        if key not in _FIELDS:
            raise ConfigError(f"{p}: unknown option '{k}'; known options: {', '.join(sorted(_FIELDS))}")
        out[key] = v
    return out


def resolve(cli: Mapping[str, Any], config_path: str | os.PathLike | None = None) -> FitConfig:
    """Merge defaults < TOML file < command-line values (None means 'not given')."""
    values: dict[str, Any] = {}
    if config_path is not None:
        values.update(load_toml(config_path))
    for k, v in cli.items():
        if v is None:
            continue
        if k in BLOCKS and isinstance(v, Mapping) and isinstance(values.get(k), Mapping):
            values[k] = {**values[k], **{a: b for a, b in v.items() if b is not None}}  # flags win per key
        else:
            values[k] = v
    unknown = set(values) - _FIELDS
    if unknown:
        raise ConfigError(f"unknown fit options: {', '.join(sorted(unknown))}")
    if "codebook_size" in values:
        values["codebook_size"] = parse_int_list(values["codebook_size"], "--codebook-size")
    if isinstance(values.get("embedding"), str):
        values["embedding"] = [values["embedding"]]
    try:
        cfg = FitConfig(**values)
    except TypeError as e:
        raise ConfigError(f"bad fit options: {e}") from None
    return cfg.validate()
