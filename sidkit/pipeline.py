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
import pyarrow as pa

from sidkit._progress import library_progress
from sidkit.config import resolve
from sidkit.errors import InputFileError, opt
from sidkit.features import degenerate_warnings, fuse, make_spec, zero_rows
from sidkit.io.artifacts import ensure_parent
from sidkit.io.catalog import iter_catalog_batches, read_catalog, read_catalog_sample
from sidkit.dedup.suffix import assign_suffix, catalog_suffixes
from sidkit.dedup.zcr import zcr_reassign
from sidkit.encoding.kernel import encode_batch, encode_embeddings, encode_items  # noqa: F401  (encode_batch: re-exported)
from sidkit.model.directory import Model, load_model, model_meta, save_tensors, write_model_dir
from sidkit.model.lock import model_lock
from sidkit.quantizers.base import Items, Progress, check_enough_items
from sidkit.report.fit import method_messages, method_summary

__all__ = ["FitResult", "Model", "encode", "encode_batch", "fit", "load_model", "save_tensors"]


KAE_COLLISION_HINT = 0.2  # a KAE fit above this collision rate without residual levels gets the hint


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
                 catalog=None, seed: int = 0, sample_codes: np.ndarray | None = None,
                 semantic_sample: int = 100_000) -> dict:
    """The audit report of freshly fitted codes (core blocks, plus semantic when X is given).

    ``sample_codes``: when the fit trained on a sample (``catalog.rows``), the sample's codes;
    ``X`` and ``catalog`` are then the sample's, the core blocks cover every row of ``codes``
    and the semantic block the sample (marked with its size). ``semantic_sample``: query items of
    the semantic block above :data:`~sidkit.metrics.semantic.EXACT_MAX_ITEMS` rows."""
    from sidkit.metrics import sid_report

    if sample_codes is not None:
        rep = sid_report(codes, sizes, item_ids=item_ids, seed=seed)
        if X is not None:
            sem = build_report(sample_codes, sizes, item_ids=catalog.ids_numpy, X=X, catalog=catalog, seed=seed,
                               semantic_sample=semantic_sample)["semantic"]
            rep["semantic"] = {"computed_on": "training_sample", "sample_size": int(len(X)), **sem}
        return rep
    kwargs: dict[str, Any] = {"item_ids": item_ids, "seed": seed, "semantic_sample": semantic_sample}
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
    items : catalog: a Parquet file, a directory of shards or a glob (DESIGN.md §3). Training
        uses a seeded sample of at most ``train_sample`` rows (default
        :data:`~sidkit.config.TRAIN_SAMPLE_DEFAULT`; all rows of smaller catalogs); every row is
        encoded, in record batches when the catalog is bigger than the sample.
    out : model directory to write (replaced atomically; an existing one is untouched on error).
    config : optional TOML file with fit options; keyword ``options`` win over it.
    progress : optional callback ``(stage, done, total, info)``.
    **options : any :class:`~sidkit.config.FitConfig` field (method, levels, codebook_size, seed, ...).

    The data flow, one step per function: catalog -> sample (:func:`_read_training_data`) ->
    train (:func:`_train`) -> encode all (:func:`_encode_all`) -> dedup (:func:`_dedup`) ->
    report (:func:`_fit_report`) -> write (:func:`_write_model`), then the summary.
    """
    t0 = time.perf_counter()
    progress = library_progress(progress)
    cfg = resolve(options, config)
    out = prepare_out(out, cfg.method, {"ITEMS": items, opt("interactions"): cfg.interactions, opt("config"): config,
                                        opt("plan"): cfg.kae.plan})
    data = _read_training_data(items, cfg)
    trained = _train(cfg, data, progress)
    tok = trained.built.tokenizer
    ensure_parent(out)
    with model_lock(out):  # bind-slot waits; what users added to the model being replaced carries over
        prepare_out(out, cfg.method, {})  # a bind-slot may have run meanwhile
        tok.carry_over(out if (out / "sidkit.json").is_file() else None, trained.items)
        enc = _encode_all(cfg, data, tok, trained.items, progress)
        ded = _dedup(cfg, data, tok, enc)
        report, recon_mse = _fit_report(cfg, data, tok, trained.items, enc, ded)
        meta = _write_model(out, items, cfg, data, trained, enc, ded, report, recon_mse)
    return FitResult(out, enc.ids, ded.codes, ded.suffix, report,
                     _fit_summary(out, cfg, data, trained, enc, ded, report, meta, recon_mse, t0))


@dataclass
class _TrainingData:
    """The catalog as fit reads it: the source, the training rows (all, or a seeded sample),
    their fusion spec and fused matrix."""

    src: Any
    catalog: Any
    spec: Any
    X: np.ndarray
    n_rows: int
    n_train: int
    sampled: bool


def _read_training_data(items, cfg) -> _TrainingData:
    """catalog -> sample: the training rows (a seeded sample of a catalog bigger than
    ``train_sample``; every row is checked now and encoded after training), fused."""
    from sidkit import methods
    from sidkit.io.source import open_source

    sizes = methods.fit_sizes(cfg)
    src = open_source(items)
    n_rows = src.num_rows
    n_train = cfg.train_rows(n_rows)
    sampled = n_train < n_rows
    if sampled and sizes and n_train < max(sizes):
        from sidkit.errors import ConfigError

        raise ConfigError(f"{opt('train_sample')} {n_train} is smaller than the codebook size {max(sizes)}; "
                          f"use {opt('train_sample')} {max(sizes)} or more")
    if sampled:
        catalog = read_catalog_sample(src, n_train, cfg.seed, id_col=cfg.id_col, embedding_cols=cfg.embedding)
    else:
        catalog = read_catalog(src, id_col=cfg.id_col, embedding_cols=cfg.embedding)
    spec = make_spec(catalog.embeddings, cfg.embedding_weights)
    X = fuse(catalog.embeddings, spec, source=str(catalog.path))
    catalog.embeddings = {}  # the fused matrix is all that is needed from here on
    if sizes:
        check_enough_items(len(X), sizes, str(catalog.path))
    return _TrainingData(src, catalog, spec, X, n_rows, n_train, sampled)


@dataclass
class _Trained:
    built: Any  # methods.Built: the tokenizer, its regularizer, notes and warnings
    items: Items  # the training rows as the tokenizer sees them
    fit_seconds: float
    blob: bytes
    fingerprint: str
    warnings: list[str]


def _train(cfg, data: _TrainingData, progress) -> _Trained:
    """train: build the method's tokenizer and fit it on the training rows."""
    from sidkit import methods

    built = methods.build(cfg, data.catalog)
    tok = built.tokenizer
    warnings = built.warnings + ([] if data.sampled else degenerate_warnings(data.X, str(data.catalog.path)))
    items_ = Items(data.X, _columns(data.catalog, tok), finite=True)
    t_fit = time.perf_counter()
    tok.fit(items_, progress=progress)
    fit_seconds = time.perf_counter() - t_fit
    blob, fingerprint = save_tensors(tok.state_dict(), cfg.method)
    return _Trained(built, items_, fit_seconds, blob, fingerprint, warnings)


@dataclass
class _Encoded:
    ids_arr: pa.Array  # the ids (Arrow), in catalog order
    ids: np.ndarray
    codes: np.ndarray  # (n, L) core codes of every row
    sample_codes: np.ndarray  # the training rows' codes
    emb_sha: str  # sha256 of the fused matrix of every row
    warnings: list[str]  # degenerate-input warnings of the rows not seen in training


def _encode_all(cfg, data: _TrainingData, tok, items_: Items, progress) -> _Encoded:
    """encode all: every row through the batch kernel (a sampled fit streams the catalog in
    record batches; otherwise the training matrix is the whole catalog, one kernel call)."""
    if data.sampled:
        ids_arr, codes, sample_codes, emb_sha, warnings = _encode_catalog(data.src, cfg, data.spec, tok, data.catalog.rows, progress)
        return _Encoded(ids_arr, ids_arr.to_numpy(zero_copy_only=False), codes, sample_codes, emb_sha, warnings)
    codes, _ = encode_items(tok, items_)
    return _Encoded(data.catalog.ids, data.catalog.ids_numpy, codes, codes, _sha(data.X), [])


@dataclass
class _Deduped:
    codes: np.ndarray  # the codes as written (ZCR may move last-level codes)
    suffix: np.ndarray
    stats: dict | None  # ZCR's statistics (report.json's dedup block), else None
    natural: np.ndarray  # the training rows' codes before dedup
    sample_codes: np.ndarray  # the training rows' codes after dedup


def _dedup(cfg, data: _TrainingData, tok, enc: _Encoded) -> _Deduped:
    """dedup: suffixes by item id (:mod:`sidkit.dedup.suffix`), ZCR (:mod:`sidkit.dedup.zcr`) or none."""
    codes, natural = enc.codes, enc.sample_codes
    if cfg.dedup == "suffix":
        suffix = catalog_suffixes(codes, enc.ids_arr) if data.sampled else assign_suffix(codes, enc.ids)
        return _Deduped(codes, suffix, None, natural, natural)
    if cfg.dedup == "zcr":
        res = zcr_reassign(codes, enc.ids, list(tok.codebook_sizes),
                           _zcr_residuals(codes, tok, None if data.sampled else data.X, data.src, data.spec))
        sample_codes = res.codes[data.catalog.rows] if data.sampled else res.codes
        return _Deduped(res.codes, res.suffix, res.stats, natural, sample_codes)
    return _Deduped(codes, np.zeros(len(codes), np.int32), None, natural, natural)


def _fit_report(cfg, data: _TrainingData, tok, items_: Items, enc: _Encoded, ded: _Deduped) -> tuple[dict, float | None]:
    """report: report.json's blocks (the core blocks over every row, the semantic and
    reconstruction blocks over the training rows) and the reconstruction MSE."""
    report = build_report(ded.codes, tok.codebook_sizes, item_ids=enc.ids, X=data.X, catalog=data.catalog, seed=cfg.seed,
                          semantic_sample=cfg.report_sample,
                          sample_codes=ded.sample_codes if data.sampled else None)
    dedup = ded.stats
    if dedup is None:
        recon_mse = tok.reconstruction_mse(items_, ded.sample_codes)
    else:  # the natural codes' error, and the reassigned codes' error (decoded)
        recon_mse = before = tok.reconstruction_mse(items_, ded.natural)
        if before is not None:
            recon_mse = _decoded_mse(tok, items_, ded.sample_codes)
            dedup.update(reconstruction_mse_before=before, reconstruction_mse_after=recon_mse)
    if recon_mse is not None:
        report["reconstruction"] = reconstruction_block(recon_mse, data.X)
        if data.sampled:
            report["reconstruction"]["sample_size"] = data.n_train
    report.update(tok.report_blocks(ded.sample_codes))  # blocks of the rows the tokenizer was fitted on
    report["dedup"] = dedup if dedup is not None else {"method": cfg.dedup}
    return report, recon_mse


def _write_model(out: Path, items, cfg, data: _TrainingData, trained: _Trained, enc: _Encoded, ded: _Deduped,
                 report: dict, recon_mse: float | None) -> dict:
    """write: the model directory (atomically). Returns its sidkit.json metadata."""
    tok = trained.built.tokenizer
    training: dict[str, Any] = {"seconds": round(trained.fit_seconds, 3), "reconstruction_mse": recon_mse, **tok.training_summary(),
                                "train_rows": data.n_train, "catalog_rows": data.n_rows,
                                "sample_seed": cfg.seed if data.sampled else None}
    if trained.built.regularizer:
        training["regularizer"] = trained.built.regularizer
    meta = model_meta(method=cfg.method, tokenizer=tok, fingerprint=trained.fingerprint, config=cfg.to_dict(), fusion=data.spec,
                      input_info={"path": str(Path(items).resolve()), "rows": data.n_rows, "id_col": cfg.id_col,
                                  "schema_hash": data.catalog.schema_hash, "embedding_sha256": enc.emb_sha[:16],
                                  "train_rows": data.n_train},
                      training=training)
    write_model_dir(out, blob=trained.blob, meta=meta, item_ids=enc.ids_arr, codes=ded.codes, suffix=ded.suffix,
                    codebooks=tok.codebooks_table(ded.codes), report=report, extra=tok.extra_files(trained.fingerprint),
                    codes_metadata={**tok.codes_metadata(), "dedup": report["dedup"]})
    return meta


def _fit_summary(out: Path, cfg, data: _TrainingData, trained: _Trained, enc: _Encoded, ded: _Deduped, report: dict,
                 meta: dict, recon_mse: float | None, t0: float) -> dict:
    """The summary dict the CLI prints: headline figures, then notes and warnings."""
    built = trained.built
    col = report["collision"]
    summary = {
        "model_dir": str(out),
        "method": cfg.method,
        "n_items": data.n_rows,
        "train_rows": data.n_train,
        "codebook_sizes": meta["codebook_sizes"],
        "collision_rate": col["collision_rate"],
        "unique_sid_ratio": col["unique_sid_ratio"],
        "max_bucket_size": col["max_bucket_size"],
        "utilization": [lv["utilization"] for lv in report["levels"]],
        "normalized_perplexity": [lv["normalized_perplexity"] for lv in report["levels"]],
        "reconstruction_mse": recon_mse,
        "fit_seconds": round(trained.fit_seconds, 3),
        "total_seconds": round(time.perf_counter() - t0, 3),
        **method_summary(report),
    }
    if built.regularizer:
        summary["regularizer"] = built.regularizer["name"]
    summary["dedup"] = report["dedup"]["method"]
    notes, more = _fit_messages(cfg, data, report, meta, ded.stats, summary)
    if built.notes + notes:
        summary["notes"] = built.notes + notes
    warnings = trained.warnings + enc.warnings
    if warnings + more:
        summary["warnings"] = warnings + more
    return summary


def _fit_messages(cfg, data: _TrainingData, report: dict, meta: dict, dedup: dict | None,
                  summary: dict) -> tuple[list[str], list[str]]:
    """The fit's notes and its warnings after the input ones (sets ``summary['zcr']``)."""
    from sidkit.metrics.levels import sink_warnings

    notes, more = method_messages(report)
    more = list(more) + sink_warnings(report.get("levels", []), method=cfg.method, balanced=bool(cfg.rqkmeans.balanced))
    if cfg.method == "kae" and not cfg.kae.residual_levels and report["collision"]["collision_rate"] > KAE_COLLISION_HINT:
        more.append(f"kae: the attribute positions alone give {100 * report['collision']['collision_rate']:.1f}% collisions "
                    f"(items with the same words share a SID); add semantic levels after them with "
                    f"{opt('residual_levels')} 1 or 2 ({opt('residual_method')} rqkmeans by default)")
    if dedup is not None:
        summary["zcr"] = {k: dedup[k] for k in ("items_moved", "groups_resolved", "groups_unresolved", "items_unresolved", "mean_cost")}
        if dedup["groups_unresolved"]:
            more.append(f"zcr: {dedup['groups_unresolved']} prefix groups hold more items than the last codebook's "
                        f"{meta['codebook_sizes'][-1]} codes ({dedup['items_unresolved']} items); they keep suffixes. "
                        f"A larger last level ({opt('codebook_size')}) or one more level resolves them")
    if data.sampled:
        notes = [f"trained on a seeded sample of {data.n_train:,} of the catalog's {data.n_rows:,} rows ({opt('train_sample')}, "
                 f"{opt('seed')} {cfg.seed}); every row was encoded"] + notes
    return notes, more


def _encode_catalog(src, cfg, spec, tok, sample_rows: np.ndarray, progress, batch_size: int = 65536):
    """Encode every row of a catalog in record batches with a fitted tokenizer (the batch
    kernel, :func:`~sidkit.encoding.kernel.encode_embeddings`). Returns the ids (one Arrow
    array), the codes (n, L) int32, the codes of the sampled rows, the sha256 of the fused matrix
    (streamed: the same digest as hashing the whole matrix at once) and the degenerate-input
    warnings of the whole catalog."""
    sha = hashlib.sha256()
    id_parts, code_parts = [], []
    n_zero, first, all_same, done = 0, None, True, 0
    dims = dict(zip(spec.columns, spec.dims))
    for ids, emb, offset, cols in iter_catalog_batches(src, id_col=cfg.id_col, embedding_cols=list(spec.columns),
                                                       batch_size=batch_size, dims=dims, extra_cols=tok.attribute_columns):
        got = encode_embeddings(tok, spec, emb, cols, source=str(src.path))
        del emb
        Xb = got.X
        sha.update(memoryview(Xb).cast("B"))
        n_zero += zero_rows({"x": Xb})
        if first is None:
            first = Xb[0].copy()
        all_same = all_same and bool((Xb == first).all())
        code_parts.append(np.asarray(got.codes, np.int32))
        id_parts.append(ids)
        done += len(Xb)
        if progress:
            progress("encode", done, src.num_rows, {})
    codes = np.concatenate(code_parts)
    del code_parts
    ids = pa.chunked_array(id_parts).combine_chunks()
    n, where = len(codes), str(src.path)
    warnings = []
    if n_zero:
        warnings.append(f"{where}: {n_zero} of {n} rows have an all-zero embedding; they carry no information and all get the same core SID")
    if n > 1 and n_zero < n and all_same:
        warnings.append(f"{where}: all {n} rows have the same embedding, so every item gets the same core SID; check the embedding column")
    return ids, codes, codes[sample_rows], sha.hexdigest(), warnings


def _zcr_residuals(codes: np.ndarray, tok, X: np.ndarray | None, src, spec):
    """ZCR's ``residuals(rows)`` for a fitted catalog (:func:`sidkit.dedup.zcr.zcr_reassign`):
    residuals of the colliding rows only, from ``X`` in memory or read back from the source (a
    sampled fit)."""
    from sidkit.io.catalog import embedding_to_numpy

    def residuals(rows: np.ndarray):
        o = np.argsort(rows, kind="stable")
        srt = rows[o]
        if X is not None:
            Xr = X[srt]
        else:
            t = src.take_rows(srt, list(spec.columns))
            Xr = fuse({c: embedding_to_numpy(t.column(c), src.path, c) for c in spec.columns}, spec, source=str(src.path))
        R, C = tok.zcr_space(Items(np.ascontiguousarray(Xr, np.float32), {}, finite=True), codes[srt])
        out = np.empty_like(R)
        out[o] = R
        return out, C

    return residuals


def _decoded_mse(tok, items_: Items, codes: np.ndarray, chunk: int = 65536) -> float:
    """Mean squared error of ``decode(codes)`` against the items, in chunks."""
    X, sq = items_.X, 0.0
    for s in range(0, len(X), chunk):
        rec = tok.decode(codes[s:s + chunk])
        sq += float(((np.asarray(rec, np.float64) - X[s:s + chunk]) ** 2).sum())
    return sq / max(1, X.size)


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
    """Encode a catalog with a fitted model: see :func:`sidkit.encoding.job.encode` (this name stays
    for the library API)."""
    from sidkit.encoding.job import encode as _encode

    return _encode(model_dir, items, out, **options)
