"""Library entry points: :func:`fit` a tokenizer on a catalog, :func:`encode` items with a fitted
model. The CLI is a thin layer over these."""

from __future__ import annotations

import hashlib
import json
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from sidkit.config import resolve
from sidkit.errors import DataError, InputFileError, ModelError, opt
from sidkit.features import degenerate_warnings, fuse, make_spec, zero_rows
from sidkit.io.artifacts import atomic_path, ensure_parent, model_lock, stage_path
from sidkit.io.catalog import iter_catalog_batches, open_parquet, read_catalog, read_catalog_sample
from sidkit.io.codes import assign_suffix, codes_table, pack_keys
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
                 catalog=None, seed: int = 0, sample_codes: np.ndarray | None = None) -> dict:
    """The audit report of freshly fitted codes (core blocks, plus semantic when X is given).

    ``sample_codes``: when the fit trained on a sample (``catalog.rows``), the sample's codes;
    ``X`` and ``catalog`` are then the sample's, the core blocks cover every row of ``codes``
    and the semantic block the sample (marked with its size)."""
    from sidkit.metrics import sid_report

    if sample_codes is not None:
        rep = sid_report(codes, sizes, item_ids=item_ids, seed=seed)
        if X is not None:
            sem = build_report(sample_codes, sizes, item_ids=catalog.ids_numpy, X=X, catalog=catalog, seed=seed)["semantic"]
            rep["semantic"] = {"computed_on": "training_sample", "sample_size": int(len(X)), **sem}
        return rep
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
    items : catalog: a Parquet file, a directory of shards or a glob (DESIGN.md §3). Training
        uses a seeded sample of at most ``train_sample`` rows (default
        :data:`~sidkit.config.TRAIN_SAMPLE_DEFAULT`; all rows of smaller catalogs); every row is
        encoded, in record batches when the catalog is bigger than the sample.
    out : model directory to write (replaced atomically; an existing one is untouched on error).
    config : optional TOML file with fit options; keyword ``options`` win over it.
    progress : optional callback ``(stage, done, total, info)``.
    **options : any :class:`~sidkit.config.FitConfig` field (method, levels, codebook_size, seed, ...).
    """
    from sidkit import methods
    from sidkit.io.source import open_source

    t0 = time.perf_counter()
    cfg = resolve(options, config)
    out = prepare_out(out, cfg.method, {"ITEMS": items, opt("interactions"): cfg.interactions, opt("config"): config,
                                        opt("plan"): cfg.plan})
    sizes = methods.fit_sizes(cfg)
    src = open_source(items)
    n_rows = src.num_rows
    n_train = cfg.train_rows(n_rows)
    sampled = n_train < n_rows
    if sampled and sizes and n_train < max(sizes):
        from sidkit.errors import ConfigError

        raise ConfigError(f"{opt('train_sample')} {n_train} is smaller than the codebook size {max(sizes)}; "
                          f"use {opt('train_sample')} {max(sizes)} or more")
    if sampled:  # train on a seeded sample; every row is checked now and encoded after training
        catalog = read_catalog_sample(src, n_train, cfg.seed, id_col=cfg.id_col, embedding_cols=cfg.embedding)
    else:
        catalog = read_catalog(src, id_col=cfg.id_col, embedding_cols=cfg.embedding)
    spec = make_spec(catalog.embeddings, cfg.embedding_weights)
    X = fuse(catalog.embeddings, spec, source=str(catalog.path))
    catalog.embeddings = {}  # the fused matrix is all that is needed from here on
    if sizes:
        check_enough_items(len(X), sizes, str(catalog.path))
    built = methods.build(cfg, catalog)
    tok = built.tokenizer
    warnings = built.warnings + ([] if sampled else degenerate_warnings(X, str(catalog.path)))
    items_ = Items(X, _columns(catalog, tok), finite=True)
    t_fit = time.perf_counter()
    tok.fit(items_, progress=progress)
    fit_seconds = time.perf_counter() - t_fit
    blob, fingerprint = save_tensors(tok.state_dict(), cfg.method)
    ensure_parent(out)
    with model_lock(out):  # bind-slot waits; what users added to the model being replaced carries over
        prepare_out(out, cfg.method, {})  # a bind-slot may have run meanwhile
        tok.carry_over(out if (out / "sidkit.json").is_file() else None, items_)
        if sampled:
            ids_arr, codes, sample_codes, emb_sha, more_warnings = _encode_catalog(src, cfg, spec, tok, catalog.rows, progress)
            warnings += more_warnings
            suffix = _suffixes(codes, ids_arr)
            ids = ids_arr.to_numpy(zero_copy_only=False)
        else:
            ids_arr = catalog.ids
            ids = catalog.ids_numpy
            codes = sample_codes = tok.encode(items_)
            emb_sha = _sha(X)
            suffix = assign_suffix(codes, ids)
        report = build_report(codes, tok.codebook_sizes, item_ids=ids, X=X, catalog=catalog, seed=cfg.seed,
                              sample_codes=sample_codes if sampled else None)
        recon_mse = tok.reconstruction_mse(items_, sample_codes)
        if recon_mse is not None:
            report["reconstruction"] = reconstruction_block(recon_mse, X)
            if sampled:
                report["reconstruction"]["sample_size"] = n_train
        report.update(tok.report_blocks(sample_codes))  # blocks of the rows the tokenizer was fitted on
        training: dict[str, Any] = {"seconds": round(fit_seconds, 3), "reconstruction_mse": recon_mse, **tok.training_summary(),
                                    "train_rows": n_train, "catalog_rows": n_rows, "sample_seed": cfg.seed if sampled else None}
        if built.regularizer:
            training["regularizer"] = built.regularizer
        meta = model_meta(method=cfg.method, tokenizer=tok, fingerprint=fingerprint, config=cfg.to_dict(), fusion=spec,
                          input_info={"path": str(Path(items).resolve()), "rows": n_rows, "id_col": cfg.id_col,
                                      "schema_hash": catalog.schema_hash, "embedding_sha256": emb_sha[:16],
                                      "train_rows": n_train},
                          training=training)
        write_model_dir(out, blob=blob, meta=meta, item_ids=ids_arr, codes=codes, suffix=suffix,
                        codebooks=tok.codebooks_table(codes), report=report, extra=tok.extra_files(fingerprint),
                        codes_metadata=tok.codes_metadata())
    notes, more = tok.fit_messages()
    col = report["collision"]
    summary = {
        "model_dir": str(out),
        "method": cfg.method,
        "n_items": n_rows,
        "train_rows": n_train,
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
    if sampled:
        notes = [f"trained on a seeded sample of {n_train:,} of the catalog's {n_rows:,} rows ({opt('train_sample')}, "
                 f"{opt('seed')} {cfg.seed}); every row was encoded"] + notes
    if built.notes + notes:
        summary["notes"] = built.notes + notes
    if warnings + more:
        summary["warnings"] = warnings + more
    return FitResult(out, ids, codes, suffix, report, summary)


def _encode_catalog(src, cfg, spec, tok, sample_rows: np.ndarray, progress, batch_size: int = 65536):
    """Encode every row of a catalog in record batches with a fitted tokenizer. Returns the ids
    (one Arrow array), the codes (n, L) int32, the codes of the sampled rows, the sha256 of the
    fused matrix (streamed: the same digest as hashing the whole matrix at once) and the
    degenerate-input warnings of the whole catalog."""
    sha = hashlib.sha256()
    id_parts, code_parts = [], []
    n_zero, first, all_same, done = 0, None, True, 0
    dims = dict(zip(spec.columns, spec.dims))
    for ids, emb, offset, cols in iter_catalog_batches(src, id_col=cfg.id_col, embedding_cols=list(spec.columns),
                                                       batch_size=batch_size, dims=dims, extra_cols=tok.attribute_columns):
        Xb = fuse(emb, spec, source=str(src.path))
        del emb
        sha.update(memoryview(Xb).cast("B"))
        n_zero += zero_rows({"x": Xb})
        if first is None:
            first = Xb[0].copy()
        all_same = all_same and bool((Xb == first).all())
        code_parts.append(np.asarray(tok.encode(Items(Xb, cols, finite=True)), np.int32))
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


def _suffixes(codes: np.ndarray, ids: pa.Array) -> np.ndarray:
    """:func:`~sidkit.io.codes.assign_suffix` of a whole catalog, converting only the ids of
    rows whose core SID collides (a suffix depends only on the ids inside its bucket)."""
    key = pack_keys(codes)
    if key.dtype != np.int64:
        return assign_suffix(codes, ids.to_numpy(zero_copy_only=False))
    order = np.argsort(key, kind="stable")
    sk = key[order]
    same = np.zeros(len(sk), bool)
    if len(sk) > 1:
        eq = sk[1:] == sk[:-1]
        same[1:] |= eq
        same[:-1] |= eq
    rows = np.sort(order[same])
    del order, sk, same
    suffix = np.zeros(len(codes), np.int32)
    if len(rows):
        suffix[rows] = assign_suffix(codes[rows], ids.take(pa.array(rows)).to_numpy(zero_copy_only=False))
    return suffix


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


def _id_hash(ids: pa.Array) -> np.ndarray:
    import polars as pl

    return pl.Series(ids.cast(pa.large_string()) if not pa.types.is_integer(ids.type) else ids).hash(seed=0).to_numpy()


def _encode_codes(model: Model, emb: dict, cols: dict, source: str) -> np.ndarray:
    """Codes of one batch of checked embeddings (and the attribute columns the tokenizer reads)."""
    for c, d in zip(model.fusion.columns, model.fusion.dims):
        if emb[c].shape[1] != d:
            raise DataError(f"{source}: column '{c}' has embedding width {emb[c].shape[1]}, the model expects {d}; "
                            f"encode with embeddings from the same embedding model")
    return model.tokenizer.encode(Items(fuse(emb, model.fusion, source=source), cols, finite=True))


def encode_batch(model: Model, batch: pa.RecordBatch | pa.Table, *, id_col: str | None = None,
                 source: str = "batch") -> pa.Table:
    """Encode one Arrow batch of catalog rows: the map step of a distributed encode.

    ``batch`` holds the id column, the model's embedding columns and any attribute column the
    tokenizer reads (KAE). Returns a table ``item_id`` (as given) and ``sid`` (list<int32>, the
    core SID), row for row. Suffixes are not assigned here: they need every row of a core SID
    bucket (see :func:`encode`). This is the function to call from Ray's ``map_batches`` or
    Spark's ``mapInArrow``; ``source`` names the input in error messages.
    """
    from sidkit.io.catalog import check_ids, embedding_to_numpy

    id_col = id_col or model.meta.get("input", {}).get("id_col", "item_id")
    names = batch.schema.names
    for c in [id_col, *model.fusion.columns]:
        if c not in names:
            raise DataError(f"{source}: no column '{c}' (columns: {', '.join(names[:12])}); the model reads {id_col} and "
                            f"{', '.join(model.fusion.columns)}")
    ids = batch.column(id_col)
    check_ids(ids, Path(source), id_col)
    emb = {c: embedding_to_numpy(batch.column(c), Path(source), c) for c in model.fusion.columns}
    cols = {c: batch.column(c) for c in model.tokenizer.attribute_columns if c in names}
    codes = _encode_codes(model, emb, cols, source)
    t = codes_table(ids, codes, np.zeros(len(codes), np.int32))
    return t.select(["item_id", "sid"])


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
    check_output(out, opt("out", "-o"), {"ITEMS": items, "MODEL": model_dir})
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
    keys_parts, suffix_parts, hash_parts = [], [], []
    n_done = 0
    meta = {"method": model.meta["method"], "codebook_sizes": sizes,
            "model_fingerprint": model.meta.get("model_fingerprint"), "n_levels": len(sizes)}
    n_zero = 0
    with atomic_path(out) as tmp_final, stage_path(out) as stage:
        writer = None
        tok = model.tokenizer
        for ids, emb, offset, cols in iter_catalog_batches(items, id_col=id_col, embedding_cols=list(model.fusion.columns),
                                                           batch_size=batch_size, dims=None, extra_cols=tok.attribute_columns):
            n_zero += zero_rows(emb)
            codes = _encode_codes(model, emb, cols, str(items))
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
