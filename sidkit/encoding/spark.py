"""Encode on Spark: the map step for ``DataFrame.mapInArrow`` (no pyspark import here).

Spark users run the same two stages as ``sidkit encode`` (docs/scale.md): a map stage that turns
every row into its core SID, :func:`encode_arrow_batches` below, then a global suffix pass over
the result (group by core SID; items already in the model's ``codes.parquet`` with an unchanged
core SID keep their suffix; every other item gets the next free suffix of its core SID in item-id
order, :mod:`sidkit.dedup.suffix`). docs/scale.md spells the suffix pass out in PySpark.

Example::

    from functools import partial
    from sidkit.encoding.spark import encode_arrow_batches, spark_schema

    codes = catalog_df.select("item_id", "embedding").mapInArrow(
        partial(encode_arrow_batches, model_dir="/shared/models/m"), spark_schema("string"))

The model directory must be readable from every executor under that path (a shared file system
or a path each executor can open); each Python worker loads it once and keeps it.
"""

from __future__ import annotations

import functools
import os
from typing import Iterable, Iterator, Sequence

import pyarrow as pa

__all__ = ["encode_arrow_batches", "spark_schema"]


@functools.lru_cache(maxsize=4)
def _model(model_dir: str):
    from sidkit.model.directory import load_model

    return load_model(model_dir)


def encode_arrow_batches(batches: Iterable[pa.RecordBatch], model_dir: str | os.PathLike, *,
                         id_col: str | None = None, keep: Sequence[str] = ()) -> Iterator[pa.RecordBatch]:
    """Encode an iterator of Arrow record batches (what ``mapInArrow`` passes) into record
    batches ``item_id`` (as given) and ``sid`` (``list<int32>``, the core SID), row for row,
    followed by the columns named in ``keep``, copied through (e.g. the input-order columns that
    the final write sorts by).

    Each batch must hold the id column (``id_col``, default the model's) and the model's
    embedding columns (plus any attribute column a KAE model reads). The model at ``model_dir``
    is loaded once per Python process (safetensors + JSON) and cached. Empty batches yield
    nothing. The codes equal those of ``sidkit encode`` for the same rows
    (:func:`sidkit.pipeline.encode_batch`); suffixes are assigned afterwards, see the module doc.
    """
    from sidkit.errors import DataError
    from sidkit.encoding.kernel import encode_batch

    model = _model(os.fspath(os.path.abspath(model_dir)))
    for b in batches:
        if b.num_rows == 0:
            continue
        t = encode_batch(model, b, id_col=id_col, source=f"{model_dir} mapInArrow batch")
        for c in keep:
            if c not in b.schema.names:
                raise DataError(f"mapInArrow batch: no column '{c}' to keep (columns: {', '.join(b.schema.names[:12])}); "
                                f"select it before mapInArrow")
            t = t.append_column(c, b.column(c))
        yield from t.to_batches()


def spark_schema(id_type: str = "string", extra: str = "") -> str:
    """The DDL schema of :func:`encode_arrow_batches`'s output for ``mapInArrow``:
    ``"item_id <id_type>, sid array<int>"`` (``id_type``: ``"string"``, ``"bigint"``, ...),
    then ``extra`` (the DDL of the ``keep`` columns, e.g. ``"file string, row bigint"``)."""
    return f"item_id {id_type}, sid array<int>" + (f", {extra}" if extra else "")
