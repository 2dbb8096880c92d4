"""The one batch encode kernel: embedding columns of a batch -> core codes (+ ZCR candidates).

Every path that turns embeddings into codes calls :func:`encode_embeddings` (or, for a matrix
that is already fused, :func:`encode_items`): ``fit`` (its in-memory and its sampled, batched
path, :mod:`sidkit.pipeline`), ``sidkit encode``'s engines (:mod:`sidkit.encoding.local`,
:mod:`sidkit.encoding.ray_engine`), Spark's ``mapInArrow`` (:mod:`sidkit.encoding.spark`) and
the library's :func:`encode_batch`. The engines only schedule batches and write staged files;
the finish stage (suffixes, the atomic write) is :mod:`sidkit.encoding.finish`.

The kernel takes a tokenizer and a fusion spec, not a model, so that ``fit`` (which has a
tokenizer but no model directory yet) calls the same function. It sits below the engines and the
encode orchestration (:mod:`sidkit.encoding.job`) so that they can all import it without a cycle.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Mapping, NamedTuple

import numpy as np
import pyarrow as pa

from sidkit.errors import DataError
from sidkit.features import FusionSpec, fuse
from sidkit.io.codes import codes_table
from sidkit.quantizers.base import Items

if TYPE_CHECKING:
    from sidkit.model.directory import Model

__all__ = ["Encoded", "encode_batch", "encode_embeddings", "encode_items", "staged_name", "staged_table"]


class Encoded(NamedTuple):
    """What the kernel returns for one batch."""

    X: np.ndarray  # the fused matrix (n, d) float32
    codes: np.ndarray  # (n, L) core codes
    candidates: np.ndarray | None  # (n, m) nearest last-level codes, nearest first (ZCR), or None


def staged_name(i: int) -> str:
    """File name of input shard ``i``'s staged codes (every engine's map stage writes these)."""
    return f"part-{i:05d}.parquet"


def model_dedup(model: Model) -> str:
    """How the model resolves collisions: 'suffix' (models before --dedup too), 'zcr' or 'none'."""
    return (model.meta.get("config") or {}).get("dedup") or "suffix"


def encode_items(tokenizer, items: Items, *, candidates: bool = False) -> tuple[np.ndarray, np.ndarray | None]:
    """Core codes of fused, checked items; with ``candidates`` (a ZCR model) also each row's
    nearest last-level codes, nearest first (:func:`sidkit.dedup.zcr.last_level_candidates`),
    for the encode-time placement. Returns (codes, candidates or None)."""
    if not candidates:
        return tokenizer.encode(items), None
    from sidkit.dedup.zcr import last_level_candidates

    codes, R, C = tokenizer.encode_zcr(items)
    return codes, last_level_candidates(np.asarray(R, np.float32), np.asarray(C, np.float32))


def encode_embeddings(tokenizer, fusion: FusionSpec, emb: Mapping[str, np.ndarray], cols: Mapping[str, pa.Array], *,
                      source: str, candidates: bool = False) -> Encoded:
    """The kernel: one batch of checked embedding columns ``emb`` (and the attribute columns
    ``cols`` the tokenizer reads) -> the fused matrix, the core codes and (``candidates``) the
    ZCR candidates. The width check is :func:`~sidkit.features.fuse`'s (one message for every
    path); ``source`` names the input in it."""
    X = fuse(emb, fusion, source=source)
    codes, cand = encode_items(tokenizer, Items(X, cols, finite=True), candidates=candidates)
    return Encoded(X, codes, cand)


def candidates_array(cand: np.ndarray) -> pa.Array:
    """The staged ``zcr_cand`` column: fixed-size lists of int32."""
    return pa.FixedSizeListArray.from_arrays(pa.array(cand.astype(np.int32).ravel(), pa.int32()), cand.shape[1])


def staged_table(ids, codes: np.ndarray, cand: np.ndarray | None = None) -> pa.Table:
    """A staged batch: ``item_id`` (as given), ``sid`` (list<int32>) and, for ZCR, ``zcr_cand``."""
    t = codes_table(ids, codes, np.zeros(len(codes), np.int32)).select(["item_id", "sid"])
    return t.append_column("zcr_cand", candidates_array(cand)) if cand is not None else t


def encode_batch(model: Model, batch: pa.RecordBatch | pa.Table, *, id_col: str | None = None,
                 source: str = "batch", candidates: bool = False) -> pa.Table:
    """Encode one Arrow batch of catalog rows: the map step of a distributed encode.

    ``batch`` holds the id column, the model's embedding columns and any attribute column the
    tokenizer reads (KAE). Returns a table ``item_id`` (as given) and ``sid`` (list<int32>, the
    core SID), row for row; with ``candidates`` (the engines set it for a ``--dedup zcr`` model)
    also ``zcr_cand``, each row's nearest last-level codes. Suffixes are not assigned here: they need every row of a core SID
    bucket (see :func:`encode`). This is the function to call from Ray's ``map_batches`` or
    Spark's ``mapInArrow``; ``source`` names the input in error messages.
    """
    from sidkit.io.catalog import embedding_to_numpy
    from sidkit.io.ids import check_no_null_ids

    id_col = id_col or model.meta.get("input", {}).get("id_col", "item_id")
    names = batch.schema.names
    for c in [id_col, *model.fusion.columns]:
        if c not in names:
            raise DataError(f"{source}: no column '{c}' (columns: {', '.join(names[:12])}); the model reads {id_col} and "
                            f"{', '.join(model.fusion.columns)}")
    ids = batch.column(id_col)
    check_no_null_ids(ids, Path(source), id_col)
    emb = {c: embedding_to_numpy(batch.column(c), Path(source), c) for c in model.fusion.columns}
    cols = {c: batch.column(c) for c in model.tokenizer.attribute_columns if c in names}
    got = encode_embeddings(model.tokenizer, model.fusion, emb, cols, source=source, candidates=candidates)
    return staged_table(ids, got.codes, got.candidates)
