"""Library entry points: :func:`fit` a tokenizer on a catalog, :func:`encode` items with a fitted
model. The CLI is a thin layer over these."""

from __future__ import annotations

import hashlib
import json
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Mapping

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from sidkit import __version__
from sidkit.config import RQVAE_METHODS, FitConfig, resolve
from sidkit.errors import DataError, InputFileError, ModelError
from sidkit.features import FusionSpec, degenerate_warnings, fuse, make_spec, zero_rows
from sidkit.io.artifacts import atomic_dir, atomic_path, ensure_parent, model_lock, rows_table, stage_path, write_json_atomic
from sidkit.io.catalog import iter_catalog_batches, open_parquet, read_catalog
from sidkit.io.codes import assign_suffix, codes_table, pack_keys
from sidkit.io.modelfiles import FORMAT_VERSION

Progress = Callable[[str, int, int, dict], None]

MODEL_FILES = ("model.safetensors", "sidkit.json", "codes.parquet", "codebooks.parquet", "report.json")


@dataclass
class FitResult:
    """What :func:`fit` returns: the model directory, the codes and the report."""

    model_dir: Path
    item_ids: np.ndarray
    codes: np.ndarray
    suffix: np.ndarray
    report: dict
    summary: dict


def _make_estimator(cfg: FitConfig):
    if cfg.method == "rqkmeans":
        from sidkit.quantizers.rqkmeans import RQKMeans

        return RQKMeans(cfg.levels, cfg.codebook_size, niter=cfg.niter, train_sample=cfg.train_sample,
                        balanced=cfg.balanced, random_state=cfg.seed)
    from sidkit.quantizers.rqvae import RQVAE

    return RQVAE(cfg.levels, cfg.codebook_size, latent_dim=cfg.latent_dim, hidden=tuple(cfg.hidden), beta=cfg.beta,
                 epochs=cfg.epochs, max_steps=cfg.max_steps, batch_size=cfg.batch_size, lr=cfg.lr,
                 weight_decay=cfg.weight_decay, eval_every=cfg.eval_every, patience=cfg.patience,
                 recon_guard=cfg.recon_guard, dead_code_every=cfg.dead_code_every, sinkhorn=cfg.sinkhorn,
                 sinkhorn_eps=cfg.sinkhorn_eps, sinkhorn_iters=cfg.sinkhorn_iters, precision=cfg.precision, device=cfg.device,
                 random_state=cfg.seed)


def _estimator_from_state(method: str, params: dict, tensors: dict, model_dir: Path | None = None):
    """The estimator of ``method`` from its params and tensors. When they do not fit each other
    (an edited ``sidkit.json``, a tensor missing from ``model.safetensors``) the error is a
    ModelError naming both files."""
    try:
        if method == "rqkmeans":
            from sidkit.quantizers.rqkmeans import RQKMeans

            return RQKMeans.from_state(params, tensors)
        if method in RQVAE_METHODS:
            from sidkit.quantizers.rqvae import RQVAE

            return RQVAE.from_state(params, tensors)
        if method == "kae":
            from sidkit.kae.model import KAE

            return KAE.from_state(params, tensors)
    except ModelError:
        raise
    except KeyError as e:
        where = f"{model_dir}/" if model_dir is not None else ""
        raise ModelError(f"{where}model.safetensors: tensor or field {e} that {where}sidkit.json's estimator needs is missing; re-run 'sidkit fit'") from None
    except (ValueError, TypeError, RuntimeError, IndexError, AttributeError) as e:
        where = f"{model_dir}/" if model_dir is not None else ""
        detail = " ".join(str(e).split())[:160]
        raise ModelError(f"{where}sidkit.json: estimator.params do not fit {where}model.safetensors ({detail}); re-run 'sidkit fit'") from None
    raise ModelError(f"model method '{method}' is not supported by this sidkit version ({__version__}); upgrade sidkit")


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def save_tensors(tensors: dict[str, np.ndarray], method: str) -> tuple[bytes, str]:
    """Serialise tensors as safetensors bytes and fingerprint them.

    The fingerprint hashes names, dtypes, shapes and values in sorted order, so it depends on the
    weights alone. The file carries one metadata key (several keys come out of safetensors in
    varying order, which would make equal models differ byte for byte).
    """
    from safetensors.numpy import save as st_save

    from sidkit.io.modelfiles import tensor_fingerprint

    meta = json.dumps({"sidkit_version": __version__, "method": method}, sort_keys=True)
    return st_save(tensors, metadata={"sidkit": meta}), tensor_fingerprint(tensors)


def build_report(codes: np.ndarray, sizes: list[int], *, item_ids=None, X: np.ndarray | None = None,
                 catalog=None, seed: int = 0) -> dict:
    """The audit report of freshly fitted codes (core blocks, plus semantic when X is given)."""
    from sidkit.metrics import sid_report

    kwargs: dict[str, Any] = {"item_ids": item_ids, "seed": seed}
    if X is not None:
        kwargs["embeddings"] = X
        if catalog is not None:
            from sidkit.metrics.semantic import leaf_column

            leaf = leaf_column(catalog.attributes)
            if leaf is not None:
                kwargs["leaf"] = leaf
            if catalog.titles is not None:
                kwargs["titles"] = catalog.titles
    return sid_report(codes, sizes, **kwargs)


def reconstruction_block(mse: float, X: np.ndarray) -> dict:
    """``report.json``'s reconstruction block: the MSE and the error relative to ||x||^2."""
    return {"mse": mse, "relative_error": float(mse * X.shape[1] / max(1e-12, float((X * X).sum(1).mean())))}


def _write_html(report: dict, path: Path) -> None:
    try:
        from sidkit.report.html import render_html
    except ImportError:  # pragma: no cover - report module always ships
        return
    render_html(report, path)


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
    t0 = time.perf_counter()
    cfg = resolve(options, config)
    out = prepare_out(out, cfg.method, {"ITEMS": items, "--interactions": cfg.interactions, "--config": config,
                                        "--plan": cfg.plan})
    if cfg.method == "kae":  # keyword-aligned encoding: sidkit.kae writes the model directory
        from sidkit.kae.model import fit_kae

        return fit_kae(items, cfg, out, progress, t0)
    catalog = read_catalog(items, id_col=cfg.id_col, embedding_cols=cfg.embedding)
    spec = make_spec(catalog.embeddings, cfg.embedding_weights)
    X = fuse(catalog.embeddings, spec, source=str(catalog.path))
    sizes = cfg.codebook_sizes()
    check_catalog_size(len(X), sizes, catalog.path)
    regs, reg_meta, warnings = _make_regularizers(cfg, catalog)
    warnings += degenerate_warnings(X, str(catalog.path))
    est = _make_estimator(cfg)
    t_fit = time.perf_counter()
    if cfg.method == "rqkmeans":
        est.fit(X, progress=(lambda s, d, t: progress(s, d, t, {})) if progress else None)
    elif regs:
        est.fit(X, progress=progress, regularizers=regs)
    else:
        est.fit(X, progress=progress)
    fit_seconds = time.perf_counter() - t_fit
    codes = est.encode(X)
    ids = catalog.ids_numpy
    suffix = assign_suffix(codes, ids)
    if cfg.method in RQVAE_METHODS:
        recon_mse = est.reconstruction_mse(X)
    else:
        recon = est.decode(codes)
        recon_mse = float(((recon - X) ** 2).mean())
    report = build_report(codes, sizes, item_ids=ids, X=X, catalog=catalog, seed=cfg.seed)
    report["reconstruction"] = reconstruction_block(recon_mse, X)
    tensors = {k: np.ascontiguousarray(v) for k, v in est.state_dict().items()}
    blob, fingerprint = save_tensors(tensors, cfg.method)
    x_hash = _sha(X.tobytes())[:16]
    training: dict[str, Any] = {"seconds": round(fit_seconds, 3), "reconstruction_mse": recon_mse}
    if reg_meta:
        training["regularizer"] = reg_meta
    if cfg.method in RQVAE_METHODS:
        training.update({"steps": est.n_steps_, "best_step": est.best_step_, "history": est.history_})
    else:
        training.update({"inertia_per_level": est.inertia_per_level_})
    meta = {
        "sidkit_version": __version__,
        "format_version": FORMAT_VERSION,
        "method": cfg.method,
        "n_levels": len(sizes),
        "codebook_sizes": sizes,
        "model_fingerprint": fingerprint,
        "config": cfg.to_dict(),
        "estimator": {"class": type(est).__name__, "params": est.params()},
        "fusion": spec.to_dict(),
        "input": {"path": str(Path(items).resolve()), "rows": len(X), "id_col": cfg.id_col,
                  "schema_hash": catalog.schema_hash, "embedding_sha256": x_hash},
        "training": training,
    }
    codes_meta = {"method": cfg.method, "codebook_sizes": sizes, "model_fingerprint": fingerprint, "n_levels": len(sizes)}
    counts = [np.bincount(codes[:, l], minlength=k) for l, k in enumerate(sizes)]
    books = est.codebooks_
    ensure_parent(out)
    with model_lock(out), atomic_dir(out, locked=True) as tmp:
        prepare_out(out, cfg.method, {})  # a bind-slot may have run meanwhile
        (tmp / "model.safetensors").write_bytes(blob)
        write_json_atomic(tmp / "sidkit.json", meta)
        pq.write_table(codes_table(catalog.ids, codes, suffix, codes_meta), tmp / "codes.parquet")
        pq.write_table(_codebooks_table(books, counts), tmp / "codebooks.parquet")
        write_json_atomic(tmp / "report.json", report)
        if getattr(est, "history_", None):
            pq.write_table(rows_table(est.history_), tmp / "train_log.parquet")
        _write_html(report, tmp / "report.html")
    col = report["collision"]
    summary = {
        "model_dir": str(out),
        "method": cfg.method,
        "n_items": len(X),
        "codebook_sizes": sizes,
        "collision_rate": col["collision_rate"],
        "unique_sid_ratio": col["unique_sid_ratio"],
        "max_bucket_size": col["max_bucket_size"],
        "utilization": [lv["utilization"] for lv in report["levels"]],
        "normalized_perplexity": [lv["normalized_perplexity"] for lv in report["levels"]],
        "reconstruction_mse": recon_mse,
        "fit_seconds": round(fit_seconds, 3),
        "total_seconds": round(time.perf_counter() - t0, 3),
    }
    if reg_meta:
        summary["regularizer"] = reg_meta["name"]
    if warnings:
        summary["warnings"] = warnings
    return FitResult(out, ids, codes, suffix, report, summary)


def check_catalog_size(n: int, sizes: list[int], path) -> None:
    """A catalog needs at least as many items as the largest codebook has codes."""
    if n < 2:
        raise DataError(f"{path}: the catalog has {n} item; fitting needs at least 2 items (codebooks have at least 2 codes)")
    if n < max(sizes):
        raise DataError(f"{path}: the catalog has {n} items, fewer than the {max(sizes)} codes per level; "
                        f"use --codebook-size {max(2, min(n, max(2, n // 4)))} or fewer")


def prepare_out(out, method: str, inputs: Mapping[str, Any]) -> Path:
    """Check a fit's ``--out`` before any work: a new path, an empty folder or a sidkit model
    directory; not one of the inputs or a folder holding one; not a KAE model with slot
    bindings that a model of another method would lose. Removes what killed fits left there.
    Returns the resolved directory."""
    from sidkit.errors import ConfigError
    from sidkit.io.artifacts import check_output, clean_stale, model_lock, resolve_out_dir, stale_temps

    given = Path(out)
    out = resolve_out_dir(given)
    if out.parent == out:
        raise ConfigError(f"--out {given}: is the file-system root; choose a model directory")
    if out.exists() and not out.is_dir():
        raise InputFileError(f"{given}: exists and is not a directory; choose another --out")
    if stale_temps(out):
        with model_lock(out):
            clean_stale(out)
    if out.is_dir() and any(out.iterdir()) and not (out / "sidkit.json").exists():
        raise InputFileError(f"{given}: exists and is not a sidkit model directory; choose an empty or new --out")
    check_output(out, "--out", inputs, directory=True, allowed=[out / "kae.toml"])
    reg = old_registry(out)  # a damaged registry stops the fit now, not after training
    if method != "kae":
        if reg and reg.get("bindings"):
            raise ConfigError(f"--out {given}: holds a KAE model with {len(reg['bindings'])} slot binding(s) that a {method} "
                              "model cannot keep; write the new model to another --out (or remove the old model first)")
    return out


def old_registry(out: Path) -> dict | None:
    """The slot registry of the KAE model at ``out`` (None when there is none), for a refit."""
    from sidkit.io.modelfiles import read_json

    mj = out / "sidkit.json"
    if not mj.is_file() or not (out / "slots.json").is_file():
        return None
    try:
        meta = read_json(mj)
    except ModelError:
        return None
    if not isinstance(meta, dict) or meta.get("method") != "kae":
        return None
    from sidkit.kae.slots import read_registry

    try:
        return read_registry(out / "slots.json")
    except ModelError as e:
        raise ModelError(f"{e}; the refit would lose its bindings, so repair or remove {out / 'slots.json'} first") from None


def _make_regularizers(cfg: FitConfig, catalog) -> tuple[list, dict | None, list[str]]:
    """The collision-aware regularizer of ``cfg`` (none for plain methods), its metadata and
    warnings. Reads and validates ``cfg.interactions`` (training part only) before any training."""
    name = cfg.regularizer_name()
    warnings: list[str] = []
    if name is None:
        if cfg.interactions:
            warnings.append(f"--interactions is only used by quasid/adasid; ignored for --method {cfg.method}")
        return [], None, warnings
    from sidkit.regularizers import make_regularizer

    ti = None
    if cfg.interactions:
        from sidkit.regularizers.align import read_train_interactions

        ti = read_train_interactions(cfg.interactions, catalog.ids)
        if ti.n_rows_train == 0:
            raise DataError(f"{cfg.interactions}: no training interactions (split == 'train' or all but the last two per user); check the file")
    elif cfg.align.get("enabled", True) and (cfg.align.get("weight", 0) > 0 if name == "quasid" else cfg.adasid.get("lambda_align_max", 0) > 0):
        warnings.append(f"{name}: no --interactions given, so the collaborative alignment term is off")
    attrs = catalog.attributes
    parts = [attrs[c] for c in ("title", "description") if c in attrs]
    texts = None
    if parts:
        texts = [" ".join(str(v) for v in vals if v) or None for vals in zip(*parts)]
    info = {"texts": texts, "groups": attrs.get(cfg.quasid["group_col"]), "leaf": attrs.get(cfg.adasid["leaf_col"])}
    reg = make_regularizer(name, {b: getattr(cfg, b) for b in ("mining", "align", "quasid", "adasid")},
                           catalog_info=info, interactions=ti)
    meta = {"name": name, "alignment": ti is not None and bool(cfg.align.get("enabled", True)),
            "interactions": ti.summary() if ti is not None else None,
            "mask_inputs": {"text": texts is not None, "group": info["groups"] is not None}}
    return [reg], meta, warnings


def _codebooks_table(books: list[np.ndarray], counts: list[np.ndarray]) -> pa.Table:
    levels, code, vecs, cnt = [], [], [], []
    for l, (C, c) in enumerate(zip(books, counts)):
        k, d = C.shape
        levels.append(np.full(k, l, np.int32))
        code.append(np.arange(k, dtype=np.int32))
        vecs.append(C.astype(np.float32))
        cnt.append(c.astype(np.int64))
    flat = np.concatenate([v.reshape(-1) for v in vecs])
    d = books[0].shape[1]
    return pa.table({
        "level": np.concatenate(levels),
        "code": np.concatenate(code),
        "vector": pa.FixedSizeListArray.from_arrays(pa.array(flat, pa.float32()), d),
        "count": np.concatenate(cnt),
    })


# ---------------------------------------------------------------------------------------------
@dataclass
class Model:
    """A fitted model directory loaded for encoding."""

    path: Path
    meta: dict
    estimator: Any
    fusion: FusionSpec
    files: Any = None  # sidkit.io.modelfiles.ModelDir: the directory as it was when loaded

    @property
    def codebook_sizes(self) -> list[int]:
        return list(self.meta["codebook_sizes"])

    def encode_matrix(self, embeddings: Mapping[str, np.ndarray], source: str = "input") -> np.ndarray:
        return self.estimator.encode(fuse(embeddings, self.fusion, source=source))


def load_model(model_dir: str | os.PathLike) -> Model:
    """Load a model directory written by :func:`fit` (safetensors + JSON only; no pickles).

    Every file is checked against the others (:mod:`sidkit.io.modelfiles`): a mismatch is a
    :class:`~sidkit.errors.ModelError` naming the file and the field."""
    from safetensors import SafetensorError
    from safetensors.numpy import load as st_load

    from sidkit.io.artifacts import recover_dir
    from sidkit.io.modelfiles import ModelDir, check_estimator, check_meta, check_tensors

    p = Path(model_dir)
    if not p.exists():
        recover_dir(p)  # a fit killed in the fallback swap left the model aside
    if not p.is_dir():
        raise ModelError(f"{p}: model directory not found; pass the --out directory of 'sidkit fit'")
    d = ModelDir(p)
    if not d.exists("sidkit.json"):
        raise ModelError(f"{p}: not a sidkit model directory (sidkit.json is missing); pass the --out directory of 'sidkit fit'")
    meta = check_meta(d.read_json("sidkit.json"), p / "sidkit.json")
    raw = d.read_bytes("model.safetensors")
    try:
        tensors = st_load(raw)
    except (SafetensorError, OSError, ValueError) as e:
        raise ModelError(f"{p / 'model.safetensors'}: unreadable ({str(e).splitlines()[0]}); re-run 'sidkit fit'") from None
    check_tensors(tensors, meta, p)
    est = _estimator_from_state(meta["method"], meta["estimator"]["params"], tensors, p)
    if meta["method"] == "kae":  # the slot registry of the directory
        est.attach_registry(d, meta)
    check_estimator(est, meta, p)
    return Model(p, meta, est, FusionSpec.from_dict(meta["fusion"]), d)


def _id_hash(ids: pa.Array) -> np.ndarray:
    import polars as pl

    return pl.Series(ids.cast(pa.large_string()) if not pa.types.is_integer(ids.type) else ids).hash(seed=0).to_numpy()


def encode(
    model_dir: str | os.PathLike,
    items: str | os.PathLike,
    out: str | os.PathLike,
    *,
    id_col: str | None = None,
    batch_size: int = 65536,
    progress: Progress | None = None,
) -> dict:
    """Encode a catalog with a fitted model, streaming record batches; write a codes table.

    Items already in the model's ``codes.parquet`` whose core SID is unchanged keep their suffix
    (so refresh jobs give stable IDs). Other items get the next free suffix of their core SID
    bucket, counted past the model's existing suffixes, in input order, so ``sid + [suffix]``
    stays unique across the model's codes and the new output. Returns a summary dict.
    """
    t0 = time.perf_counter()
    from sidkit.io.artifacts import check_output

    out = Path(out)
    check_output(out, "-o", {"ITEMS": items, "MODEL": model_dir})
    if out.is_dir():
        raise InputFileError(f"{out}: is a directory; pass a file path for -o")
    if not (out.parent if str(out.parent) else Path(".")).is_dir():
        raise InputFileError(f"{out}: the folder {out.parent} does not exist; create it or write elsewhere")
    model = load_model(model_dir)
    sizes = model.codebook_sizes
    id_col = id_col or model.meta.get("input", {}).get("id_col", "item_id")
    items = Path(items)
    pf = open_parquet(items)
    n_rows = pf.metadata.num_rows
    # The model's own codes: ids, packed keys and suffixes, for stable suffixes.
    if model.files.exists("codes.parquet"):
        m_ids_arr, m_keys, m_suffix = _model_codes(model, sizes)
    else:
        m_ids_arr, m_keys, m_suffix = pa.array([], pa.string()), np.zeros(0, np.int64), np.zeros(0, np.int32)
    if len(m_ids_arr) and id_col in pf.schema_arrow.names:
        t_in, t_model = pf.schema_arrow.field(id_col).type, m_ids_arr.type
        if pa.types.is_integer(t_in) != pa.types.is_integer(t_model):
            kind = lambda t: "integer" if pa.types.is_integer(t) else "string"  # noqa: E731
            raise DataError(f"{items}: id column '{id_col}' holds {kind(t_in)} ids but the model's items have {kind(t_model)} ids; "
                            f"give the ids the same type as in the catalog the model was fitted on")
    dims = dict(zip(model.fusion.columns, model.fusion.dims))
    keys_parts, suffix_parts, hash_parts = [], [], []
    n_done = 0
    meta = {"method": model.meta["method"], "codebook_sizes": sizes,
            "model_fingerprint": model.meta.get("model_fingerprint"), "n_levels": len(sizes)}
    n_zero = 0
    with atomic_path(out) as tmp_final, stage_path(out) as stage:
        writer = None
        extra = getattr(model.estimator, "attribute_columns", None) or None  # KAE reads attribute columns too
        for ids, emb, offset, *cols in iter_catalog_batches(items, id_col=id_col, embedding_cols=list(model.fusion.columns),
                                                            batch_size=batch_size, dims=None, extra_cols=extra):
            for c, d in dims.items():
                if emb[c].shape[1] != d:
                    raise DataError(f"{items}: column '{c}' has embedding width {emb[c].shape[1]}, the model expects {d}; encode with embeddings from the same embedding model")
            n_zero += zero_rows(emb)
            if extra is not None:
                codes = model.estimator.encode_batch(fuse(emb, model.fusion, source=str(items)), cols[0])
            else:
                codes = model.encode_matrix(emb, source=str(items))
            keys = pack_keys(codes, sizes)
            suf = np.full(len(keys), -1, np.int32)
            ids_cmp = ids.cast(m_ids_arr.type) if ids.type != m_ids_arr.type and len(m_ids_arr) else ids
            if len(m_ids_arr):
                pos = pc.fill_null(pc.index_in(ids_cmp, value_set=m_ids_arr), -1).to_numpy(zero_copy_only=False).astype(np.int64)
                found = pos >= 0
                same = np.zeros(len(keys), bool)
                same[found] = m_keys[pos[found]] == keys[found]
                suf[same] = m_suffix[pos[same]]
            keys_parts.append(keys)
            suffix_parts.append(suf)
            hash_parts.append(_id_hash(ids))
            batch_tbl = codes_table(ids, codes, np.zeros(len(keys), np.int32))
            if writer is None:
                writer = pq.ParquetWriter(stage, batch_tbl.schema)
            writer.write_table(batch_tbl)
            n_done += len(keys)
            if progress:
                progress("encode", n_done, n_rows, {})
        if writer is not None:
            writer.close()
        hashes = np.concatenate(hash_parts)
        uh, cnt = np.unique(hashes, return_counts=True)
        if (cnt > 1).any():
            dup_rows = np.flatnonzero(np.isin(hashes, uh[cnt > 1]))
            ex = pq.read_table(stage, columns=["item_id"]).column("item_id").take(pa.array(dup_rows[:3])).to_pylist()
            raise DataError(f"{items}: id column '{id_col}' has duplicated ids ({len(dup_rows)} rows), e.g. {', '.join(map(repr, ex))}; ids must be unique")
        keys = np.concatenate(keys_parts)
        suffix = np.concatenate(suffix_parts)
        suffix = _fill_suffixes(keys, suffix, m_keys, m_suffix)
        n_new = int((np.concatenate(suffix_parts) < 0).sum())
        # Final pass: stream the staged table, add the suffix column and the metadata.
        src = pq.ParquetFile(stage, pre_buffer=False, buffer_size=1 << 20)
        schema = src.schema_arrow.with_metadata({b"sidkit": json.dumps(meta).encode()})
        with pq.ParquetWriter(tmp_final, schema) as w:
            start = 0
            for b in src.iter_batches(batch_size=batch_size):
                tbl = pa.Table.from_batches([b])
                tbl = tbl.set_column(2, "suffix", pa.array(suffix[start:start + len(tbl)], pa.int32()))
                w.write_table(tbl.replace_schema_metadata(schema.metadata))
                start += len(tbl)
    summary = {"output": str(out), "n_items": int(n_done), "n_new_or_changed": n_new,
               "n_kept": int(n_done - n_new), "seconds": round(time.perf_counter() - t0, 3)}
    warnings = []
    if not len(m_ids_arr):
        warnings.append(f"{model.path}: the model has no codes.parquet, so no item keeps a suffix from the fit; "
                        "every suffix is counted from 0 in input order")
    if n_zero:
        warnings.append(f"{items}: {n_zero} of {n_done} rows have an all-zero embedding; they carry no "
                        "information and all get the same core SID")
    if warnings:
        summary["warnings"] = warnings
    return summary


def _model_codes(model: Model, sizes: list[int]):
    """(ids, packed keys, suffixes) of the model's ``codes.parquet``, checked against the model."""
    from sidkit.io.codes import read_codes_metadata, table_to_codes
    from sidkit.io.modelfiles import check_model_codes

    mpath = model.path / "codes.parquet"
    try:
        with model.files.open("codes.parquet") as f:
            pfile = pq.ParquetFile(f)
            table = pfile.read()
            md = read_codes_metadata(pfile.schema_arrow)
        if "item_id" not in table.column_names or "sid" not in table.column_names:
            raise ModelError(f"{mpath}: not a sidkit codes table (columns item_id, sid, suffix); re-run 'sidkit fit'")
        m_ids, m_codes, m_suffix = table_to_codes(table, mpath)
    except (pa.ArrowException, OSError, ValueError) as e:
        if isinstance(e, ModelError):
            raise
        raise ModelError(f"{mpath}: the model's codes are unreadable ({' '.join(str(e).split())[:120]}); re-run 'sidkit fit'") from None
    check_model_codes(m_ids, m_codes, m_suffix, md, model.meta, mpath)
    m_ids_arr = table.column("item_id").combine_chunks()
    return m_ids_arr, pack_keys(m_codes, sizes), m_suffix


def _fill_suffixes(keys: np.ndarray, suffix: np.ndarray, m_keys: np.ndarray, m_suffix: np.ndarray) -> np.ndarray:
    """Give every row with suffix -1 the next free suffix of its key: past the model's largest
    suffix for that key (and past kept rows' suffixes), in input order."""
    suffix = suffix.copy()
    pending = np.flatnonzero(suffix < 0)
    if not len(pending):
        return suffix
    # Largest suffix already taken per key, over the model's codes and the kept rows.
    taken_keys = np.concatenate([m_keys, keys[suffix >= 0]])
    taken_suf = np.concatenate([m_suffix, suffix[suffix >= 0]]).astype(np.int64)
    if len(taken_keys):
        order = np.argsort(taken_keys, kind="stable")
        tk, ts = taken_keys[order], taken_suf[order]
        uk, start = np.unique(tk, return_index=True)
        mx = np.maximum.reduceat(ts, start)
    else:
        uk, mx = np.zeros(0, keys.dtype), np.zeros(0, np.int64)
    pk = keys[pending]
    i = np.searchsorted(uk, pk)
    hit = (i < len(uk)) & (uk[np.minimum(i, max(len(uk) - 1, 0))] == pk) if len(uk) else np.zeros(len(pk), bool)
    base = np.zeros(len(pk), np.int64)
    base[hit] = mx[i[hit]] + 1
    # Rank of each pending row among pending rows of the same key, in input order.
    o = np.argsort(pk, kind="stable")
    sk = pk[o]
    first = np.ones(len(sk), bool)
    first[1:] = sk[1:] != sk[:-1]
    run_start = np.maximum.accumulate(np.where(first, np.arange(len(sk)), 0))
    rank = np.empty(len(sk), np.int64)
    rank[o] = np.arange(len(sk)) - run_start
    suffix[pending] = (base + rank).astype(np.int32)
    return suffix
