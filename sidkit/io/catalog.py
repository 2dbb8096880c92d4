"""Read and validate item catalogs (DESIGN.md §3).

Everything is checked before any work starts; each problem raises a :class:`~sidkit.errors.SidkitError`
whose one-line message names the file, the column, the rows and the fix.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator, Sequence

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from sidkit.errors import DataError, InputFileError, SchemaError, opt
from sidkit.io.ids import check_id_type, check_no_null_ids, check_unique_hashed, check_unique_ids, examples, id_hash
from sidkit.io.source import ParquetSource, open_source

_FLOAT_TYPES = (pa.float32(), pa.float64(), pa.float16())


def open_parquet(path: str | os.PathLike, what: str = "catalog") -> pq.ParquetFile:
    """Open a Parquet file, turning every way it can be unusable into an InputFileError."""
    p = Path(path)
    if not p.exists():
        raise InputFileError(f"{p}: file not found; check the path of the {what}")
    if p.is_dir():
        raise InputFileError(f"{p}: is a directory; pass a Parquet file")
    from sidkit.io.source import _open

    return _open(p, what)


def is_embedding_type(t: pa.DataType) -> bool:
    return (pa.types.is_fixed_size_list(t) or pa.types.is_list(t) or pa.types.is_large_list(t)) and t.value_type in _FLOAT_TYPES


def _is_list_type(t: pa.DataType) -> bool:
    return pa.types.is_fixed_size_list(t) or pa.types.is_list(t) or pa.types.is_large_list(t)


def resolve_columns(schema: pa.Schema, path: Path, id_col: str, embedding_cols: Sequence[str] | None) -> list[str]:
    """Check the id column and the embedding columns exist with usable types; return embedding cols."""
    names = schema.names
    if id_col not in names:
        raise SchemaError(f"{path}: no id column '{id_col}' (columns: {', '.join(names[:12])}); pass {opt('id_col')} NAME")
    check_id_type(schema.field(id_col).type, path, id_col)
    if embedding_cols:
        cols = list(dict.fromkeys(embedding_cols))
        for c in cols:
            if c not in names:
                raise SchemaError(f"{path}: no embedding column '{c}' (columns: {', '.join(names[:12])}); check {opt('embedding')}")
            t = schema.field(c).type
            if not is_embedding_type(t):
                kind = f"a list of {t.value_type}" if _is_list_type(t) else str(t)
                raise SchemaError(f"{path}: embedding column '{c}' is {kind}, not a list of floats; pass a float-list column with {opt('embedding')}")
        return cols
    cols = [f.name for f in schema if f.name != id_col and is_embedding_type(f.type)]
    if not cols:
        near = [f for f in schema if f.name != id_col and (_is_list_type(f.type) or "emb" in f.name.lower())]
        if near:
            f = near[0]
            kind = f"a list of {f.type.value_type}" if _is_list_type(f.type) else str(f.type)
            raise SchemaError(f"{path}: column '{f.name}' is {kind}, not a list of floats, and there is no other embedding column; store embeddings as list<float32> or fixed_size_list<float32>")
        raise SchemaError(f"{path}: no embedding column (a list<float> or fixed_size_list<float> column); add one or pass {opt('embedding')} COL")
    return cols


def embedding_to_numpy(arr: pa.Array | pa.ChunkedArray, path: Path, col: str, row_offset: int = 0, dim: int | None = None) -> np.ndarray:
    """Convert a float-list column to a (n, d) float32 array, checking nulls, lengths and finiteness."""
    if isinstance(arr, pa.ChunkedArray):
        arr = arr.combine_chunks()
    n = len(arr)
    if arr.null_count:
        rows = np.flatnonzero(arr.is_null().to_numpy(zero_copy_only=False))
        raise DataError(f"{path}: column '{col}' has {arr.null_count} null embedding rows (rows {examples((rows + row_offset).tolist())}); drop those items or fill their embeddings")
    if pa.types.is_fixed_size_list(arr.type):
        d = arr.type.list_size
        values = arr.values.slice(arr.offset * d, n * d)
    else:
        lengths = pc.list_value_length(arr).to_numpy(zero_copy_only=False)
        d = int(lengths[0]) if n else 0
        if n and (lengths != d).any():
            bad = int(np.flatnonzero(lengths != d)[0])
            raise DataError(f"{path}: column '{col}' has ragged embeddings (row {bad + row_offset} has length {lengths[bad]}, row {row_offset} has {d}); every row needs the same length")
        values = arr.flatten()
    if dim is not None and d != dim:
        raise DataError(f"{path}: column '{col}' has embedding length {d} at row {row_offset}, other rows have {dim}; every row needs the same length")
    if values.null_count:
        idx = np.flatnonzero(values.is_null().to_numpy(zero_copy_only=False))[0] // max(d, 1)
        raise DataError(f"{path}: column '{col}' has a null value inside the embedding of row {idx + row_offset}; fill or drop it")
    raw = values.to_numpy(zero_copy_only=False).reshape(n, d)
    if d == 0:
        raise DataError(f"{path}: column '{col}' has empty embeddings (length 0); embeddings need at least one value")
    finite = np.isfinite(raw)
    if not finite.all():
        bad = int(np.flatnonzero(~finite.all(axis=1))[0])
        raise DataError(f"{path}: column '{col}' has NaN or inf values (first at row {bad + row_offset}); fix or drop those items")
    with np.errstate(over="ignore"):
        x = raw.astype(np.float32, copy=False)
    if x is not raw and not np.isfinite(x).all():
        bad = int(np.flatnonzero(~np.isfinite(x).all(axis=1))[0])
        raise DataError(f"{path}: column '{col}' has values beyond the float32 range (|x| > 3.4e38, first at row {bad + row_offset}); rescale the embeddings")
    return x


@dataclass
class Catalog:
    """A validated catalog held in memory.

    Attributes
    ----------
    path : Path
    ids : pa.Array of the id column (strings or integers), unique and non-null
    embeddings : dict column name -> float32 array (n, d), finite
    columns : dict column name -> Arrow array of the attribute columns read (string or
        list<string>)
    attributes : the same columns as Python lists (str, list[str] or None), made on first use
    schema_hash : str, a hash of the file's Arrow schema (for model fingerprints)
    rows : for a sample (:func:`read_catalog_sample`), the source rows it holds (sorted); None
        when the catalog holds every row
    """

    path: Path
    id_col: str
    ids: pa.Array
    embeddings: dict[str, np.ndarray]
    columns: dict[str, pa.ChunkedArray] = field(default_factory=dict)
    schema_hash: str = ""
    source: "ParquetSource | None" = None
    rows: np.ndarray | None = None

    def __len__(self) -> int:
        return len(self.ids)

    @property
    def ids_numpy(self) -> np.ndarray:
        return self.ids.to_numpy(zero_copy_only=False)

    @property
    def attributes(self) -> dict[str, list]:
        if not hasattr(self, "_attributes"):
            self._attributes = {k: v.to_pylist() for k, v in self.columns.items()}
        return self._attributes

    @property
    def titles(self) -> list | None:
        return self.attributes.get("title") if "title" in self.columns else None

    def arrow_columns(self, names) -> pa.Table:
        """The named columns as one Arrow table: those already read, the others read from the
        file (names the file lacks are left out)."""
        names = list(dict.fromkeys(names))
        rest = [c for c in names if c not in self.columns]
        extra = {}
        if rest:
            src = self.source if self.source is not None else open_source(self.path)
            rest = [c for c in rest if c in src.names]
            if rest:
                t = src.read(rest) if self.rows is None else src.take_rows(self.rows, rest)
                extra = {c: t.column(c) for c in rest}
        return pa.table({c: self.columns[c] if c in self.columns else extra[c] for c in names if c in self.columns or c in extra})


def schema_hash(schema: pa.Schema) -> str:
    import hashlib

    text = ";".join(f"{f.name}:{f.type}" for f in schema)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def _attribute_columns(schema: pa.Schema, p: Path, id_col: str, cols: Sequence[str],
                       attribute_cols: Sequence[str] | None) -> list[str]:
    """The attribute columns to read: the given ones (checked), default every string or
    list<string> column."""
    if attribute_cols is None:
        return [
            f.name for f in schema
            if f.name not in cols and f.name != id_col
            and (pa.types.is_string(f.type) or pa.types.is_large_string(f.type)
                 or (_is_list_type(f.type) and pa.types.is_string(f.type.value_type)))
        ]
    for a in attribute_cols:
        if a not in schema.names:
            raise SchemaError(f"{p}: no attribute column '{a}' (columns: {', '.join(schema.names[:12])}); check {opt('attributes')}")
    return list(attribute_cols)


def _open_catalog(path, id_col, embedding_cols, attribute_cols):
    """The source, its path and schema, the embedding columns and the attribute columns, checked."""
    src = open_source(path)
    p = src.path
    schema = src.schema_arrow
    cols = resolve_columns(schema, p, id_col, embedding_cols)
    if src.num_rows == 0:
        raise DataError(f"{p}: the catalog has zero rows; it needs at least one item")
    return src, p, schema, cols, _attribute_columns(schema, p, id_col, cols, attribute_cols)


def read_catalog(
    path: str | os.PathLike,
    *,
    id_col: str = "item_id",
    embedding_cols: Sequence[str] | None = None,
    attribute_cols: Sequence[str] | None = None,
) -> Catalog:
    """Read and fully validate a catalog Parquet file.

    Parameters
    ----------
    path : a Parquet file, a directory of Parquet shards or a glob (:func:`~sidkit.io.source.open_source`).
    id_col : the id column (unique, non-null, string or integer).
    embedding_cols : embedding columns to read; default every float-list column.
    attribute_cols : string or list<string> columns to keep as attributes; default all of them.
    """
    src, p, schema, cols, attribute_cols = _open_catalog(path, id_col, embedding_cols, attribute_cols)
    read_cols = [id_col, *cols, *[a for a in attribute_cols if a not in cols and a != id_col]]
    if not src.is_sharded:
        table = src.read(read_cols)
        ids = table.column(id_col).combine_chunks()
        check_no_null_ids(ids, p, id_col)
        embeddings = {c: embedding_to_numpy(table.column(c), p, c) for c in cols}
    else:  # check each shard's rows, so that a message names the shard and the row inside it
        id_parts, emb_parts, attr_parts = [], {c: [] for c in cols}, []
        for i, shard in enumerate(src.shards):
            with src.open(i) as pf:
                try:
                    t = pf.read(columns=read_cols)
                except (pa.ArrowInvalid, pa.ArrowException, OSError) as e:
                    raise InputFileError(f"{shard}: could not read the data ({str(e).splitlines()[0]}); the file may be truncated, re-export it") from None
            check_no_null_ids(t.column(id_col), shard, id_col)
            dims = {c: emb_parts[c][0].shape[1] for c in cols if emb_parts[c]}
            for c in cols:
                emb_parts[c].append(embedding_to_numpy(t.column(c), shard, c, 0, dims.get(c)))
            id_parts.append(t.column(id_col))
            attr_parts.append(t.select([a for a in read_cols if a != id_col and a not in cols]).replace_schema_metadata(None))
        ids = pa.chunked_array([c for part in id_parts for c in part.chunks], type=schema.field(id_col).type).combine_chunks()
        embeddings = {c: np.concatenate(v) for c, v in emb_parts.items()}
        table = pa.concat_tables(attr_parts)
    check_unique_ids(ids, p, id_col)
    columns = {a: table.column(a) for a in attribute_cols if a in table.column_names}
    return Catalog(p, id_col, ids, embeddings, columns, schema_hash(schema), src)


def iter_catalog_batches(
    path: str | os.PathLike,
    *,
    id_col: str = "item_id",
    embedding_cols: Sequence[str] | None = None,
    batch_size: int = 65536,
    dims: dict[str, int] | None = None,
    extra_cols: Sequence[str] | None = None,
) -> Iterator[tuple]:
    """Stream (ids, embeddings, row_offset) record batches, validating each batch. With
    ``extra_cols`` each item is (ids, embeddings, row_offset, {col: Arrow array}) for the extra
    columns the file has (absent ones are left out).

    Duplicate ids across batches are not checked here (the caller can, with bounded memory).
    """
    src = open_source(path)
    p = src.path
    cols = resolve_columns(src.schema_arrow, p, id_col, embedding_cols)
    if src.num_rows == 0:
        raise DataError(f"{p}: the catalog has zero rows; it needs at least one item")
    names = src.schema_arrow.names
    extra = [c for c in dict.fromkeys(extra_cols or []) if c in names and c != id_col and c not in cols]
    dims = dict(dims or {})
    for b in src.iter_batches(batch_size=batch_size, columns=[id_col, *cols, *extra]):
        batch = b.data
        ids = batch.column(id_col)
        check_no_null_ids(ids, b.shard, id_col, b.local)
        emb = {c: embedding_to_numpy(batch.column(c), b.shard, c, b.local, dims.get(c)) for c in cols}
        for c in cols:  # later batches and shards must agree with the first rows' widths
            dims.setdefault(c, emb[c].shape[1])
        if extra_cols is not None:
            yield ids, emb, b.offset, {c: batch.column(c) for c in extra}
        else:
            yield ids, emb, b.offset


# ---------------------------------------------------------------------------------------------
# catalogs bigger than memory: a seeded sample, ids checked over every row

def read_catalog_sample(
    path: str | os.PathLike,
    n: int,
    seed: int,
    *,
    id_col: str = "item_id",
    embedding_cols: Sequence[str] | None = None,
    attribute_cols: Sequence[str] | None = None,
    batch_size: int = 65536,
) -> Catalog:
    """A seeded sample of ``n`` rows of a catalog (:func:`~sidkit.io.source.sample_rows`), with
    every row of the catalog validated as :func:`read_catalog` does (null and unique ids,
    embedding widths, NaN/inf), in one streaming pass: memory is the sample plus 8 bytes a row
    for the id hashes of the uniqueness check (:func:`check_unique_hashed`). The result's
    ``rows`` are the sampled source rows (sorted); its other columns read only those rows.

    Every row group is read anyway when the sample touches it, which a uniform sample of more
    rows than there are row groups does; so the pass streams the whole source in record batches
    and keeps the sampled rows of each, which also checks every row before any training.
    """
    from sidkit.io.source import sample_rows

    src, p, schema, cols, attribute_cols = _open_catalog(path, id_col, embedding_cols, attribute_cols)
    attrs = [a for a in attribute_cols if a not in cols and a != id_col]
    rows = sample_rows(src.num_rows, n, seed)
    hashes = np.empty(src.num_rows, np.uint64)
    id_parts, emb_parts, attr_parts = [], {c: [] for c in cols}, {a: [] for a in attrs}
    dims: dict[str, int] = {}
    for b in src.iter_batches(batch_size=batch_size, columns=[id_col, *cols, *attrs]):
        batch, m = b.data, b.data.num_rows
        ids = batch.column(id_col)
        check_no_null_ids(ids, b.shard, id_col, b.local)
        hashes[b.offset:b.offset + m] = id_hash(ids)
        lo, hi = np.searchsorted(rows, [b.offset, b.offset + m])
        take = rows[lo:hi] - b.offset
        for c in cols:
            x = embedding_to_numpy(batch.column(c), b.shard, c, b.local, dims.get(c))
            dims.setdefault(c, x.shape[1])
            emb_parts[c].append(x[take])
        if len(take):
            sel = pa.array(take)
            id_parts.append(ids.take(sel))
            for a in attrs:
                attr_parts[a].append(batch.column(a).take(sel))
    check_unique_hashed(src, id_col, hashes, batch_size)
    del hashes
    ids = pa.chunked_array(id_parts, type=schema.field(id_col).type).combine_chunks()
    embeddings = {c: np.concatenate(v) for c, v in emb_parts.items()}
    columns = {a: pa.chunked_array(v, type=schema.field(a).type) for a, v in attr_parts.items()}
    return Catalog(p, id_col, ids, embeddings, columns, schema_hash(schema), src, rows=rows)


def ids_in_source(src: ParquetSource, id_col: str, query: pa.Array, batch_size: int = 1 << 20) -> np.ndarray:
    """Which of the distinct ids ``query`` occur in ``src``'s id column (bool per query id),
    streaming the id column only. Ids of different types are compared as strings."""
    query = query.combine_chunks() if isinstance(query, pa.ChunkedArray) else query
    found = np.zeros(len(query), bool)
    for b in src.iter_batches(batch_size=batch_size, columns=[id_col]):
        col = b.data.column(0)
        q = query
        if q.type != col.type:
            q, col = q.cast(pa.string()), col.cast(pa.string())
        found[pc.drop_null(pc.index_in(col, value_set=q)).to_numpy(zero_copy_only=False).astype(np.int64)] = True
        if found.all():
            break
    return found
