"""Tokenizers from method names, for fitting and for loading.

The method registry itself (names, tokenizer class, implied regularizer) is
:data:`sidkit.config.METHODS`. ``build(cfg, catalog)`` turns a resolved
:class:`~sidkit.config.FitConfig` into an unfitted tokenizer (with its regularizers, KAE plan and
residual levels); ``load_tokenizer(class_name, params, tensors)`` rebuilds a fitted one from a
model directory. Adding a method means one entry in :data:`~sidkit.config.METHODS` and, for a new
tokenizer class, a builder here.
"""

from __future__ import annotations

import dataclasses
import importlib
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping

from sidkit.config import METHODS, Method
from sidkit.errors import ConfigError, DataError, ModelError, opt

#: class name -> module of every tokenizer class a model directory can name
CLASSES = {"RQKMeans": "sidkit.quantizers.rqkmeans", "RQVAE": "sidkit.quantizers.rqvae", "KAE": "sidkit.kae.model"}


def method(name: str) -> Method:
    try:
        return METHODS[name]
    except KeyError:
        from sidkit import __version__

        raise ModelError(f"model method {name!r} is not supported by this sidkit version ({__version__}); upgrade sidkit") from None


def tokenizer_class(class_name: str):
    """The tokenizer class a model directory names (``sidkit.json`` ``estimator.class``)."""
    mod = CLASSES.get(class_name)
    if mod is None:
        raise ModelError(f"tokenizer class {class_name!r} is not known to this sidkit version; upgrade sidkit")
    return getattr(importlib.import_module(mod), class_name)


def load_tokenizer(class_name: str, params: Mapping, tensors: Mapping):
    """A fitted tokenizer from its params and tensors (nested tokenizers load the same way)."""
    return tokenizer_class(class_name).from_state(params, tensors, load=load_tokenizer)


# ---------------------------------------------------------------------------------------------
# building tokenizers from a fit config

@dataclass
class Built:
    """An unfitted tokenizer and what building it found out."""

    tokenizer: Any
    notes: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    regularizer: dict | None = None  # metadata of the collision-aware regularizer, if any


def build(cfg, catalog) -> Built:
    """The unfitted tokenizer of ``cfg.method`` for ``catalog`` (a :class:`~sidkit.io.catalog.Catalog`)."""
    return _BUILDERS[METHODS[cfg.method].class_name](cfg, catalog)


def _build_rqkmeans(cfg, catalog) -> Built:
    from sidkit.quantizers.rqkmeans import RQKMeans

    return Built(RQKMeans(cfg.levels, cfg.codebook_size, niter=cfg.rqkmeans.niter, train_sample=cfg.train_sample,
                          balanced=cfg.rqkmeans.balanced, random_state=cfg.seed), warnings=_unused_interactions(cfg))


def _unused_interactions(cfg) -> list[str]:
    """The warning for --interactions given to a method without a collaborative term."""
    if not cfg.interactions:
        return []
    return [f"{opt('interactions')} is only used by quasid/adasid; ignored for {opt('method')} {cfg.method}"]


def _build_rqvae(cfg, catalog) -> Built:
    from sidkit.quantizers.rqvae import RQVAE

    regs, meta, warnings = _regularizers(cfg, catalog)
    training = {**dataclasses.asdict(cfg.rqvae), "hidden": tuple(cfg.rqvae.hidden)}  # the section holds RQVAE's keywords
    est = RQVAE(cfg.levels, cfg.codebook_size, **training, init_balanced=cfg.rqkmeans.balanced, random_state=cfg.seed,
                regularizers=regs)
    return Built(est, warnings=warnings, regularizer=meta)


def _regularizers(cfg, catalog) -> tuple[list, dict | None, list[str]]:
    """The collision-aware regularizer of ``cfg`` (none for plain RQ-VAE), its metadata and
    warnings. Reads and validates ``cfg.interactions`` (training part only) before any training."""
    name = cfg.regularizer_name()
    warnings: list[str] = []
    if name is None:
        return [], None, _unused_interactions(cfg)
    from sidkit.regularizers import make_regularizer

    ti = None
    if cfg.interactions:
        from sidkit.regularizers.align import read_train_interactions

        in_catalog = None
        if getattr(catalog, "rows", None) is not None:  # a training sample: check ids against the whole catalog
            from sidkit.io.catalog import ids_in_source

            in_catalog = lambda q: ids_in_source(catalog.source, catalog.id_col, q)  # noqa: E731
        ti = read_train_interactions(cfg.interactions, catalog.ids, in_catalog=in_catalog)
        if ti.n_rows_train == 0:
            if in_catalog is not None and ti.n_rows_outside_sample:
                raise DataError(f"{cfg.interactions}: no training interactions of items in the training sample ({len(catalog)} rows); "
                                f"raise {opt('train_sample')}")
            raise DataError(f"{cfg.interactions}: no training interactions (split == 'train' or all but the last two per user); check the file")
    elif cfg.align.enabled and (cfg.align.weight > 0 if name == "quasid" else cfg.adasid.lambda_align_max > 0):
        warnings.append(f"{name}: no {opt('interactions')} given, so the collaborative alignment term is off")
    attrs = catalog.attributes
    parts = [attrs[c] for c in ("title", "description") if c in attrs]
    texts = None
    if parts:
        texts = [" ".join(str(v) for v in vals if v) or None for vals in zip(*parts)]
    info = {"texts": texts, "groups": attrs.get(cfg.quasid.group_col), "leaf": attrs.get(cfg.adasid.leaf_col)}
    reg = make_regularizer(name, cfg.blocks(), catalog_info=info, interactions=ti)
    meta = {"name": name, "alignment": ti is not None and bool(cfg.align.enabled),
            "interactions": ti.summary() if ti is not None else None,
            "mask_inputs": {"text": texts is not None, "group": info["groups"] is not None}}
    return [reg], meta, warnings


def _build_kae(cfg, catalog) -> Built:
    from sidkit.kae.model import KAE, string_columns
    from sidkit.kae.plan import CategorySpec, make_plan, read_plan

    notes: list[str] = []
    k = cfg.kae
    attrs = k.attributes
    if isinstance(attrs, str):
        attrs = [a.strip() for a in attrs.split(",") if a.strip()]
    if k.plan:
        plan = read_plan(k.plan)
        if attrs:
            notes.append(f"kae: {opt('plan')} given, so {opt('attributes')} is ignored (the plan lists the categories)")
    else:
        cols = [c for c in string_columns(catalog.source if catalog.source is not None else catalog.path) if c != cfg.id_col]
        if attrs:
            cols = list(dict.fromkeys(CategorySpec.parse(a).column for a in attrs))
        plan, more = make_plan(catalog.arrow_columns(cols), attrs or None, groups=k.groups, seed=cfg.seed,
                               exclude_columns=[cfg.id_col])
        notes += more
    needed = list(dict.fromkeys(CategorySpec.parse(c).column for c in plan.categories))
    have = set(catalog.arrow_columns(needed).column_names)
    missing = [c for c in needed if c not in have]
    if missing:
        raise DataError(f"{catalog.path}: the KAE plan uses column(s) {', '.join(missing)} that the catalog lacks; fix the plan or the catalog")
    residual, b = None, Built(None, notes=notes)
    if k.residual_levels:
        sub = build(_residual_config(cfg), catalog)
        residual = sub.tokenizer
        b.warnings += sub.warnings
        b.regularizer = sub.regularizer
    b.tokenizer = KAE(plan, route_neighbours=plan.route_neighbours, random_state=cfg.seed, residual=residual,
                      residual_method=k.residual_method if residual is not None else None)
    return b


#: tokenizer class name -> its builder
_BUILDERS: dict[str, Callable] = {"RQKMeans": _build_rqkmeans, "RQVAE": _build_rqvae, "KAE": _build_kae}


def fit_sizes(cfg) -> list[int]:
    """The codebook sizes a fit of ``cfg`` trains (for KAE: its residual levels')."""
    if cfg.method != "kae":
        return cfg.codebook_sizes()
    if not cfg.kae.residual_levels:
        return []
    return _residual_config(cfg).codebook_sizes()


def _residual_config(cfg):
    """The config of a KAE fit's residual levels (a per-level size list that does not match the
    residual levels falls back to its first size)."""
    rcfg = dataclasses.replace(cfg, method=cfg.kae.residual_method, levels=cfg.kae.residual_levels)
    if isinstance(rcfg.codebook_size, list) and len(rcfg.codebook_size) != rcfg.levels:
        rcfg = dataclasses.replace(rcfg, codebook_size=rcfg.codebook_size[0])
    return rcfg


def check_replaceable(out, method_name: str) -> None:
    """Refuse to replace a KAE model that has slot bindings with a model of another method."""
    from sidkit.kae.slots import old_registry

    reg = old_registry(out)  # a damaged registry stops the fit now, not after training
    if method_name != "kae" and reg and reg.get("bindings"):
        raise ConfigError(f"{opt('out')} {out}: holds a KAE model with {len(reg['bindings'])} slot binding(s) that a {method_name} "
                          f"model cannot keep; write the new model to another {opt('out')} (or remove the old model first)")
