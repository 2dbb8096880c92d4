"""The local engine of ``sidkit encode``: the map stage on this machine.

It only schedules: the catalog is read in record batches (:func:`~sidkit.io.catalog.iter_catalog_batches`
checks ids and embeddings), each batch goes through the kernel
(:func:`sidkit.encoding.kernel.encode_embeddings`) and lands in its input shard's staged file
(``part-NNNNN.parquet``: ``item_id``, ``sid`` and, for ZCR, ``zcr_cand``), row for row.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from sidkit.encoding.kernel import encode_embeddings, model_dedup, staged_name, staged_table
from sidkit.io.source import ParquetSource

__all__ = ["map_local"]


def map_local(model, source: ParquetSource, stage_dir: Path, *, id_col: str, batch_size: int = 65536,
              progress=None) -> tuple[list[Path], int]:
    """The map stage on this machine: one staged shard (``item_id``, ``sid``) per input shard.
    Returns the staged files and the number of all-zero embedding rows."""
    from sidkit.features import zero_rows
    from sidkit.io.catalog import iter_catalog_batches

    tok = model.tokenizer
    zcr = model_dedup(model) == "zcr"
    files = [stage_dir / staged_name(i) for i in range(len(source.shards))]
    writers: dict[int, pq.ParquetWriter] = {}
    n_zero = done = 0
    try:
        for ids, emb, offset, cols in iter_catalog_batches(source, id_col=id_col, embedding_cols=list(model.fusion.columns),
                                                           batch_size=batch_size, extra_cols=tok.attribute_columns):
            i = int(np.searchsorted(source.offsets, offset, side="right") - 1)
            n_zero += zero_rows(emb)
            got = encode_embeddings(tok, model.fusion, emb, cols, source=str(source.shards[i]), candidates=zcr)
            t = staged_table(ids, got.codes, got.candidates)
            if i not in writers:
                for j in list(writers):
                    writers.pop(j).close()
                writers[i] = pq.ParquetWriter(files[i], t.schema, compression="zstd")
            writers[i].write_table(t)
            done += len(t)
            if progress:
                progress("encode", done, source.num_rows, {})
    finally:
        for w in writers.values():
            w.close()
    for i, f in enumerate(files):  # an empty input shard gives an empty staged shard
        if not f.exists():
            pq.write_table(staged_table(pa.array([], source.schema_arrow.field(id_col).type),
                                        np.zeros((0, len(model.codebook_sizes)), np.int32)), f)
    return files, n_zero
