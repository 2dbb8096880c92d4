"""The map step of an encode: one Arrow batch of catalog rows -> (``item_id``, core ``sid``).

Every engine calls this (``sidkit.encoding.job.map_local`` here, ``sidkit.encoding.ray_engine`` on a Ray
cluster, ``sidkit.encoding.spark`` in Spark's ``mapInArrow``). It sits below the engines and the encode
orchestration (``sidkit.encoding.job``) so that they can all import it without an import cycle.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pyarrow as pa

from sidkit.errors import DataError
from sidkit.features import fuse
from sidkit.io.codes import codes_table
from sidkit.quantizers.base import Items

if TYPE_CHECKING:
    from sidkit.model.directory import Model

__all__ = ["encode_batch", "staged_name"]


def staged_name(i: int) -> str:
    """File name of input shard ``i``'s staged codes (every engine's map stage writes these)."""
    return f"part-{i:05d}.parquet"


def model_dedup(model: Model) -> str:
    """How the model resolves collisions: 'suffix' (models before --dedup too), 'zcr' or 'none'."""
    return (model.meta.get("config") or {}).get("dedup") or "suffix"


def _encode_codes(model: Model, emb: dict, cols: dict, source: str, candidates: bool = False):
    """Codes of one batch of checked embeddings (and the attribute columns the tokenizer reads).
    With ``candidates`` (a ZCR model), also each row's nearest last-level codes, nearest first
    (:func:`sidkit.dedup.zcr.last_level_candidates`), for the encode-time placement."""
    for c, d in zip(model.fusion.columns, model.fusion.dims):
        if emb[c].shape[1] != d:
            raise DataError(f"{source}: column '{c}' has embedding width {emb[c].shape[1]}, the model expects {d}; "
                            f"encode with embeddings from the same embedding model")
    items = Items(fuse(emb, model.fusion, source=source), cols, finite=True)
    if not candidates:
        return model.tokenizer.encode(items)
    from sidkit.dedup.zcr import last_level_candidates

    codes, R, C = model.tokenizer.encode_zcr(items)
    return codes, last_level_candidates(np.asarray(R, np.float32), np.asarray(C, np.float32))


def candidates_array(cand: np.ndarray) -> pa.Array:
    """The staged ``zcr_cand`` column: fixed-size lists of int32."""
    return pa.FixedSizeListArray.from_arrays(pa.array(cand.astype(np.int32).ravel(), pa.int32()), cand.shape[1])


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
    got = _encode_codes(model, emb, cols, source, candidates=candidates)
    codes = got[0] if candidates else got
    t = codes_table(ids, codes, np.zeros(len(codes), np.int32)).select(["item_id", "sid"])
    return t.append_column("zcr_cand", candidates_array(got[1])) if candidates else t
