"""Item ids: the one place they are checked, hashed and looked up.

Every reader of ids (catalogs, SID tables, the encode job, KAE attribute files, the audit's
catalog pass) calls these checks, so each problem has one message:

* :func:`check_id_type`: ids must be strings or integers;
* :func:`check_no_null_ids`: every item needs an id;
* :func:`check_same_id_kind`: ids matched against another table's are of the same kind;
* :func:`duplicate_ids_error` (raised by :func:`check_unique_ids`, :func:`check_unique_hashed`
  and :class:`UniqueIdCheck`): ids must be unique.

:func:`id_hash` is the one 64-bit id hash (equal ids, equal hashes, in every batch and shard);
:func:`map_ids` finds query ids in a table of ids.
"""

from __future__ import annotations

import numpy as np

from sidkit.errors import DataError, SchemaError


def examples(values, limit: int = 3) -> str:
    """The first ``limit`` values as reprs, ``", ..."`` when there are more (for messages)."""
    vals = [repr(v) for v in list(values)[:limit]]
    return ", ".join(vals) + (", ..." if len(values) > limit else "")


# ---------------------------------------------------------------------------------------------
# checks: one function and one message per problem

def check_id_type(id_type, where, id_col: str) -> None:
    """Ids must be strings or integers."""
    import pyarrow as pa

    if not (pa.types.is_integer(id_type) or pa.types.is_string(id_type) or pa.types.is_large_string(id_type)):
        raise SchemaError(f"{where}: id column '{id_col}' has type {id_type}; ids must be strings or integers")


def id_kind(id_type) -> str:
    """"integer" or "string": the kind of id a column type holds."""
    import pyarrow as pa

    return "integer" if pa.types.is_integer(id_type) else "string"


def check_same_id_kind(id_type, other_type, where, id_col: str, whose: str, fix: str) -> None:
    """Ids matched against another table's (a model's items, a SID table) must be of the same
    kind: integer ids never equal string ids."""
    if id_kind(id_type) != id_kind(other_type):
        raise DataError(f"{where}: id column '{id_col}' holds {id_kind(id_type)} ids but {whose} have "
                        f"{id_kind(other_type)} ids; {fix}")


def check_no_null_ids(ids, where, id_col: str, row_offset: int = 0) -> None:
    """Every item needs an id: raise naming the null rows (``row_offset`` + row in ``ids``)."""
    import pyarrow as pa

    if ids.null_count:
        isnull = ids.is_null()
        if isinstance(isnull, pa.ChunkedArray):
            isnull = isnull.combine_chunks()
        rows = np.flatnonzero(isnull.to_numpy(zero_copy_only=False)) + row_offset
        raise DataError(f"{where}: id column '{id_col}' has {ids.null_count} null ids (rows {examples(rows.tolist())}); every item needs an id")


def duplicate_ids_error(where, id_col: str, values, n_ids: int | None = None, n_rows: int | None = None,
                        at: str = "") -> DataError:
    """The error for repeated ids: ``values`` are duplicated ids (the first few are named);
    ``n_ids`` / ``n_rows`` how many ids repeat over how many rows, when the check counted them;
    ``at`` where the first one is (``" ('a' at row 3 and row 9)"``)."""
    count = f"{n_ids} duplicated ids ({n_rows} rows)" if n_ids is not None else "duplicated ids"
    return DataError(f"{where}: id column '{id_col}' has {count}, e.g. {examples(values)}{at}; ids must be unique")


def check_unique_ids(ids, where, id_col: str) -> None:
    """Ids (an Arrow array, or a numpy array) must be unique; strictly increasing integers pass
    without counting."""
    import pyarrow as pa
    import pyarrow.compute as pc

    if not isinstance(ids, (pa.Array, pa.ChunkedArray)):
        ids = pa.array(ids.tolist() if ids.dtype == object else ids)
    if pa.types.is_integer(ids.type) and not ids.null_count:
        v = np.asarray(ids)
        if v.size < 2 or bool(np.all(v[1:] > v[:-1])):
            return
    vc = pc.value_counts(ids)
    if isinstance(vc, pa.ChunkedArray):
        vc = vc.combine_chunks()
    counts = vc.field("counts").to_numpy(zero_copy_only=False)
    dup = counts > 1
    if dup.any():
        values = vc.field("values").filter(pa.array(dup)).to_pylist()
        raise duplicate_ids_error(where, id_col, values, int(dup.sum()), int(counts[dup].sum()))


# ---------------------------------------------------------------------------------------------
# the id hash, and uniqueness over more rows than memory holds

def id_hash(ids) -> np.ndarray:
    """A 64-bit hash (uint64) of each id: integers as int64, strings as large strings, so that
    the same id hashes the same in every batch and shard."""
    import polars as pl
    import pyarrow as pa

    if isinstance(ids, pa.ChunkedArray):
        ids = ids.combine_chunks()
    ids = ids.cast(pa.int64()) if pa.types.is_integer(ids.type) else ids.cast(pa.large_string())
    return pl.Series(ids).hash(seed=0).to_numpy().astype(np.uint64, copy=False)


def check_unique_hashed(src, id_col: str, hashes: np.ndarray, batch_size: int = 65536) -> None:
    """Raise the duplicated-ids DataError when ids of ``src`` (a :class:`~sidkit.io.source.ParquetSource`)
    repeat, given the 64-bit hashes of every row's id (:func:`id_hash`, in source order). Memory:
    a sorted copy of the hashes (8 bytes a row). Equal hashes are only candidates: the real ids of
    those rows are read back (id column only) and compared, so a hash collision of two different
    ids is not an error."""
    import pyarrow as pa
    import pyarrow.compute as pc

    h = np.sort(hashes)
    cand = np.unique(h[1:][h[1:] == h[:-1]])
    del h
    if not len(cand):
        return
    parts, where = [], []
    for b in src.iter_batches(batch_size=batch_size, columns=[id_col]):
        col = b.data.column(0)
        hit = np.flatnonzero(np.isin(id_hash(col), cand))
        if len(hit):
            parts.append(col.take(pa.array(hit)))
            where += [(b.shard, b.local + int(i)) for i in hit]
    ids = pa.chunked_array(parts).combine_chunks()
    vc = pc.value_counts(ids)
    counts = vc.field("counts").to_numpy(zero_copy_only=False)
    dup = counts > 1
    if not dup.any():
        return  # different ids with equal hashes
    values = vc.field("values").filter(pa.array(dup)).to_pylist()
    first = values[0]
    at = [where[i] for i in np.flatnonzero(pc.equal(ids, pa.scalar(first, ids.type)).to_numpy(zero_copy_only=False))][:3]
    rows = " and ".join(f"row {r} of {s}" if src.is_sharded else f"row {r}" for s, r in at)
    raise duplicate_ids_error(src.path, id_col, values, int(dup.sum()), int(counts[dup].sum()), f" ({first!r} at {rows})")


class UniqueIdCheck:
    """Checks that item ids are unique with bounded memory.

    Ids that arrive strictly increasing (integers) cost nothing. Otherwise every id becomes a
    64-bit fingerprint (integers: their value; strings: a hash, verified exactly on a match) and
    fingerprints are spilled to ``2^b`` partition files under ``spill_dir`` (a temporary
    directory), each checked on its own at the end: about 8 bytes per row on disk, and one
    partition (at most ``part_rows`` fingerprints) in memory.
    """

    def __init__(self, path, n: int, *, id_col: str = "item_id", spill_dir=None, part_rows: int = 1 << 22):
        self.path, self.id_col, self.n, self.spill_dir, self.part_rows = path, id_col, n, spill_dir, part_rows
        self.sorted = True
        self.last = None
        self.hashed = False
        self.unsorted_from = None  # first row offset fed in the spilling mode
        self._tmp = None
        self._mem: list[np.ndarray] = []
        bits = 0
        while (n >> bits) > part_rows:
            bits += 1
        self.bits = bits

    def _fp(self, ids) -> np.ndarray:
        ids = np.asarray(ids)
        if ids.dtype.kind in "iu":
            return ids.astype(np.int64, copy=False).view(np.uint64)
        import pyarrow as pa

        self.hashed = True
        return id_hash(pa.array(ids.astype(str) if ids.dtype.kind != "U" else ids))

    def add(self, ids, offset: int) -> None:
        ids = np.asarray(ids)
        if self.sorted:
            if ids.dtype.kind in "iu" and (ids.size < 2 or bool(np.all(ids[1:] > ids[:-1]))) \
                    and (self.last is None or ids.size == 0 or ids[0] > self.last):
                if ids.size:
                    self.last = ids[-1]
                return
            self.sorted = False
            self.unsorted_from = offset
        self._spill(self._fp(ids))

    def _spill(self, fp: np.ndarray) -> None:
        if self.bits == 0:
            self._mem.append(fp.copy())
            return
        import tempfile

        if self._tmp is None:
            self._tmp = tempfile.TemporaryDirectory(prefix="sidkit-ids-", dir=self.spill_dir)
        part = (fp * np.uint64(0x9E3779B97F4A7C15)) >> np.uint64(64 - self.bits)
        order = np.argsort(part, kind="stable")
        bounds = np.searchsorted(part[order], np.arange((1 << self.bits) + 1, dtype=np.uint64))
        sfp = fp[order]
        for j in range(1 << self.bits):
            a, b = bounds[j], bounds[j + 1]
            if a < b:
                with open(f"{self._tmp.name}/{j}.u64", "ab") as f:
                    sfp[a:b].tofile(f)

    def finish(self, stream=None, batch_size: int = 1 << 20) -> None:
        """Raise DataError naming a duplicated id. ``stream`` re-reads the rows fed before the ids
        stopped arriving in increasing order (and finds the ids behind a duplicated hash)."""
        try:
            if self.sorted:
                return
            if self.unsorted_from:
                for b in stream.batches(batch_size):
                    if b.offset >= self.unsorted_from:
                        break
                    ids = np.asarray(b.ids)[: self.unsorted_from - b.offset]
                    self._spill(self._fp(ids))
            dups = []
            parts = [np.concatenate(self._mem)] if self.bits == 0 and self._mem else []
            if self.bits:
                import os

                parts = (np.fromfile(f"{self._tmp.name}/{j}.u64", dtype=np.uint64)
                         for j in range(1 << self.bits) if os.path.exists(f"{self._tmp.name}/{j}.u64"))
            for fp in parts:
                fp.sort()
                d = fp[1:][fp[1:] == fp[:-1]]
                if d.size:
                    dups.append(d[:64])
                    if not self.hashed:
                        break
            if not dups:
                return
            d = np.unique(np.concatenate(dups))
            if not self.hashed:
                raise duplicate_ids_error(self.path, self.id_col, [int(d[0].view(np.int64))])
            seen: dict = {}
            for b in stream.batches(batch_size):
                fp = self._fp(b.ids)
                for v in np.asarray(b.ids)[np.isin(fp, d)]:
                    v = v.item() if isinstance(v, np.generic) else v
                    if v in seen:
                        raise duplicate_ids_error(self.path, self.id_col, [v])
                    seen[v] = True
        finally:
            if self._tmp is not None:
                self._tmp.cleanup()
                self._tmp = None


# ---------------------------------------------------------------------------------------------
# look-up

def _arrow(x):
    import pyarrow as pa

    if isinstance(x, pa.ChunkedArray):
        return x.combine_chunks()
    if isinstance(x, pa.Array):
        return x
    x = np.asarray(x)
    return pa.array(x.tolist() if x.dtype == object else x)


def map_ids(query_ids, item_ids) -> np.ndarray:
    """Row of each ``query_ids`` value in ``item_ids`` as int64, -1 where absent.

    Accepts numpy arrays, lists or Arrow arrays; ids of different types (integers in one file,
    strings in another) are compared as strings.
    """
    import pyarrow as pa
    import pyarrow.compute as pc

    q, v = _arrow(query_ids), _arrow(item_ids)
    if q.type != v.type:
        q, v = q.cast(pa.string()), v.cast(pa.string())
    return pc.index_in(q, value_set=v).fill_null(-1).to_numpy(zero_copy_only=False).astype(np.int64)
