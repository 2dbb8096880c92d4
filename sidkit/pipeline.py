"""Library entry points: :func:`fit` a tokenizer on a catalog, :func:`encode` items with a fitted
model. The CLI is a thin layer over these."""

from __future__ import annotations

import hashlib
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

import numpy as np

from sidkit.config import resolve
from sidkit.errors import InputFileError, opt
from sidkit.features import degenerate_warnings, fuse, make_spec
from sidkit.io.artifacts import ensure_parent, model_lock
from sidkit.io.catalog import read_catalog
from sidkit.io.codes import assign_suffix
from sidkit.modeldir import Model, load_model, model_meta, save_tensors, write_model_dir
from sidkit.quantizers.base import Items, Progress, check_enough_items

__all__ = ["FitResult", "Model", "encode", "encode_batch", "fit", "load_model", "save_tensors"]


@dataclass
class FitResult:
    """What :func:`fit` returns: the model directory, the codes and the report."""

    model_dir: Path
    item_ids: np.ndarray
    codes: np.ndarray
    suffix: np.ndarray
    report: dict
    summary: dict


def _sha(data) -> str:
    """sha256 of bytes or of a C-contiguous array's buffer (no copy of a catalog-sized matrix)."""
    return hashlib.sha256(memoryview(np.ascontiguousarray(data)).cast("B") if isinstance(data, np.ndarray) else data).hexdigest()


def build_report(codes: np.ndarray, sizes: list[int], *, item_ids=None, X: np.ndarray | None = None,
                 catalog=None, seed: int = 0) -> dict:
    """The audit report of freshly fitted codes (core blocks, plus semantic when X is given)."""
    from sidkit.metrics import sid_report

    kwargs: dict[str, Any] = {"item_ids": item_ids, "seed": seed}
    if X is not None:
        kwargs["embeddings"] = X
        if catalog is not None:  # the inputs 'audit --items' gives the semantic block, so both reports agree
            from sidkit.metrics.semantic import leaf_column

            kwargs["attributes"] = catalog.attributes
            kwargs["leaf"] = leaf_column(catalog.attributes)
            kwargs["titles"] = catalog.titles
    return sid_report(codes, sizes, **kwargs)


def reconstruction_block(mse: float, X: np.ndarray) -> dict:
    """``report.json``'s reconstruction block: the MSE and the error relative to ||x||^2."""
    return {"mse": mse, "relative_error": float(mse * X.shape[1] / max(1e-12, float((X * X).sum(1).mean())))}


def fit(
    items: str | os.PathLike,
    *,
    out: str | os.PathLike = "sidkit-model",
    config: str | os.PathLike | None = None,
    progress: Progress | None = None,
    **options: Any,
) -> FitResult:
    """Fit a tokenizer on a catalog, encode every item and write the model directory.

    Parameters
    ----------
    items : catalog Parquet file (DESIGN.md §3).
    out : model directory to write (replaced atomically; an existing one is untouched on error).
    config : optional TOML file with fit options; keyword ``options`` win over it.
    progress : optional callback ``(stage, done, total, info)``.
    **options : any :class:`~sidkit.config.FitConfig` field (method, levels, codebook_size, seed, ...).
    """
    from sidkit import methods

    t0 = time.perf_counter()
    cfg = resolve(options, config)
    out = prepare_out(out, cfg.method, {"ITEMS": items, opt("interactions"): cfg.interactions, opt("config"): config,
                                        opt("plan"): cfg.plan})
    catalog = read_catalog(items, id_col=cfg.id_col, embedding_cols=cfg.embedding)
    spec = make_spec(catalog.embeddings, cfg.embedding_weights)
    X = fuse(catalog.embeddings, spec, source=str(catalog.path))
    sizes = methods.fit_sizes(cfg)
    if sizes:
        check_enough_items(len(X), sizes, str(catalog.path))
    built = methods.build(cfg, catalog)
    tok = built.tokenizer
    warnings = built.warnings + degenerate_warnings(X, str(catalog.path))
    items_ = Items(X, _columns(catalog, tok), finite=True)
    t_fit = time.perf_counter()
    tok.fit(items_, progress=progress)
    fit_seconds = time.perf_counter() - t_fit
    blob, fingerprint = save_tensors(tok.state_dict(), cfg.method)
    ids = catalog.ids_numpy
    ensure_parent(out)
    with model_lock(out):  # bind-slot waits; what users added to the model being replaced carries over
        prepare_out(out, cfg.method, {})  # a bind-slot may have run meanwhile
        tok.carry_over(out if (out / "sidkit.json").is_file() else None, items_)
        codes = tok.encode(items_)
        suffix = assign_suffix(codes, ids)
        report = build_report(codes, tok.codebook_sizes, item_ids=ids, X=X, catalog=catalog, seed=cfg.seed)
        recon_mse = tok.reconstruction_mse(items_, codes)
        if recon_mse is not None:
            report["reconstruction"] = reconstruction_block(recon_mse, X)
        report.update(tok.report_blocks(codes))
        training: dict[str, Any] = {"seconds": round(fit_seconds, 3), "reconstruction_mse": recon_mse, **tok.training_summary()}
        if built.regularizer:
            training["regularizer"] = built.regularizer
        meta = model_meta(method=cfg.method, tokenizer=tok, fingerprint=fingerprint, config=cfg.to_dict(), fusion=spec,
                          input_info={"path": str(Path(items).resolve()), "rows": len(X), "id_col": cfg.id_col,
                                      "schema_hash": catalog.schema_hash, "embedding_sha256": _sha(X)[:16]},
                          training=training)
        write_model_dir(out, blob=blob, meta=meta, item_ids=catalog.ids, codes=codes, suffix=suffix,
                        codebooks=tok.codebooks_table(codes), report=report, extra=tok.extra_files(fingerprint),
                        codes_metadata=tok.codes_metadata())
    notes, more = tok.fit_messages()
    col = report["collision"]
    summary = {
        "model_dir": str(out),
        "method": cfg.method,
        "n_items": len(X),
        "codebook_sizes": meta["codebook_sizes"],
        "collision_rate": col["collision_rate"],
        "unique_sid_ratio": col["unique_sid_ratio"],
        "max_bucket_size": col["max_bucket_size"],
        "utilization": [lv["utilization"] for lv in report["levels"]],
        "normalized_perplexity": [lv["normalized_perplexity"] for lv in report["levels"]],
        "reconstruction_mse": recon_mse,
        "fit_seconds": round(fit_seconds, 3),
        "total_seconds": round(time.perf_counter() - t0, 3),
        **tok.summary_blocks(),
    }
    if built.regularizer:
        summary["regularizer"] = built.regularizer["name"]
    if built.notes + notes:
        summary["notes"] = built.notes + notes
    if warnings + more:
        summary["warnings"] = warnings + more
    return FitResult(out, ids, codes, suffix, report, summary)


def _columns(catalog, tok) -> dict:
    """The catalog columns the tokenizer reads (Arrow arrays)."""
    need = tok.attribute_columns
    if not need:
        return {}
    t = catalog.arrow_columns(need)
    return {c: t.column(c) for c in t.column_names}


def prepare_out(out, method: str, inputs: Mapping[str, Any]) -> Path:
    """Check a fit's ``--out`` before any work: a new path, an empty folder or a sidkit model
    directory; not one of the inputs or a folder holding one; not a KAE model with slot
    bindings that a model of another method would lose. Removes what killed fits left there.
    Returns the resolved directory."""
    from sidkit.errors import ConfigError
    from sidkit.io.artifacts import check_output, clean_stale, resolve_out_dir, stale_temps
    from sidkit.methods import check_replaceable

    given = Path(out)
    out = resolve_out_dir(given)
    if out.parent == out:
        raise ConfigError(f"{opt('out')} {given}: is the file-system root; choose a model directory")
    if out.exists() and not out.is_dir():
        raise InputFileError(f"{given}: exists and is not a directory; choose another {opt('out')}")
    if stale_temps(out):
        with model_lock(out):
            clean_stale(out)
    if out.is_dir() and any(out.iterdir()) and not (out / "sidkit.json").exists():
        raise InputFileError(f"{given}: exists and is not a sidkit model directory; choose an empty or new {opt('out')}")
    check_output(out, opt("out"), inputs, directory=True, allowed=[out / "kae.toml"])
    check_replaceable(out, method)
    return out


def encode(model_dir: str | os.PathLike, items: str | os.PathLike, out: str | os.PathLike, **options) -> dict:
    """Encode a catalog with a fitted model: see :func:`sidkit.encoding.encode` (this name stays
    for the library API)."""
    from sidkit.encoding import encode as _encode

    return _encode(model_dir, items, out, **options)


def encode_batch(model: Model, batch, **options):
    """Encode one Arrow batch: see :func:`sidkit.encoding.encode_batch`."""
    from sidkit.encoding import encode_batch as _encode_batch

    return _encode_batch(model, batch, **options)
