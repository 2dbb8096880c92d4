"""The finish stage of ``sidkit encode``: the global suffix pass and the atomic write.

The map stage (:mod:`sidkit.encoding.local`, :mod:`sidkit.encoding.ray_engine`) leaves one staged
file per input shard (``item_id``, ``sid`` and, for ZCR, ``zcr_cand``). This stage gives every
row its suffix (or, for a ZCR model, its placed last code) by the one suffix rule of
:mod:`sidkit.dedup.suffix` (:mod:`sidkit.dedup.zcr` for ZCR), out of core:

1. **spill** — the model's ``codes.parquet`` and the staged rows go as (key, id, row) records
   to ``P`` partitions by a hash of the key, so one bucket lives in one partition; the 64-bit
   id hashes go to ``P`` partitions too, for the duplicate-id check (a hash hit is checked
   against the real ids).
2. **solve** — each partition in memory: kept suffixes, then the next free ones; the results
   are written back as (row, suffix[, last]) records sorted by row.
3. **write** — the staged codes again, in order, with the suffixes merged back by a P-way merge
   of the partitions' row cursors; a file or a directory of shards, replaced atomically.

Memory is O(rows per partition + batch), whatever the catalog.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from sidkit.dedup.suffix import fill_suffixes, kept_suffixes
from sidkit.dedup.zcr import ZCR_CANDIDATES, prefix_keys, zcr_partition
from sidkit.encoding.kernel import model_dedup
from sidkit.errors import ModelError
from sidkit.io.ids import duplicate_ids_error, id_hash
from sidkit.io.codes import pack_keys
from sidkit.io.source import ParquetSource

__all__ = ["MANIFEST", "PARTITION_ROWS", "finish_encode", "model_id_type"]

PARTITION_ROWS = 1 << 20  # rows per partition of the suffix pass (about 40 MB of state each)
MANIFEST = "_sidkit.json"  # written into a directory output; readers skip "_" names


# ---------------------------------------------------------------------------------------------
# keys and hashes

def _mix(x: np.ndarray) -> np.ndarray:
    """splitmix64 finaliser: a well-spread uint64 of each uint64."""
    with np.errstate(over="ignore"):
        x = x.astype(np.uint64, copy=True)
        x ^= x >> np.uint64(30)
        x *= np.uint64(0xBF58476D1CE4E5B9)
        x ^= x >> np.uint64(27)
        x *= np.uint64(0x94D049BB133111EB)
        x ^= x >> np.uint64(31)
    return x


def _key_hash(keys: np.ndarray) -> np.ndarray:
    if keys.dtype == np.int64:
        return _mix(keys.view(np.uint64))
    words = np.frombuffer(keys.tobytes(), dtype=">u4").reshape(len(keys), -1).astype(np.uint64)
    h = np.zeros(len(keys), np.uint64)
    with np.errstate(over="ignore"):
        for j in range(words.shape[1]):
            h = _mix(h * np.uint64(0x100000001B3) + words[:, j])
    return h


def _key_arrow(keys: np.ndarray) -> pa.Array:
    if keys.dtype == np.int64:
        return pa.array(keys, pa.int64())
    w = keys.dtype.itemsize
    return pa.FixedSizeBinaryArray.from_buffers(pa.binary(w), len(keys), [None, pa.py_buffer(keys.tobytes())])


def _key_numpy(arr: pa.Array, void_width: int | None) -> np.ndarray:
    if void_width is None:
        return arr.to_numpy(zero_copy_only=False).astype(np.int64, copy=False)
    buf = arr.buffers()[1]
    return np.frombuffer(buf, dtype=np.dtype((np.void, void_width)))[arr.offset: arr.offset + len(arr)].copy()


# ---------------------------------------------------------------------------------------------
# spill files

class _Spill:
    """``P`` append-only Arrow IPC files; rows go to the partition their hash picks."""

    def __init__(self, folder: Path, name: str, parts: int, schema: pa.Schema):
        folder.mkdir(parents=True, exist_ok=True)
        self.paths = [folder / f"{name}-{p:04d}.arrow" for p in range(parts)]
        self.schema = schema
        self.parts = parts
        self._writers: list = [None] * parts

    def write(self, part: np.ndarray, columns: list[pa.Array]) -> None:
        if self.parts == 1:
            self._write(0, pa.record_batch(columns, schema=self.schema))
            return
        order = np.argsort(part, kind="stable")
        cuts = np.searchsorted(part[order], np.arange(self.parts + 1))
        take = pa.array(order)
        cols = [c.take(take) for c in columns]
        for p in range(self.parts):
            a, b = int(cuts[p]), int(cuts[p + 1])
            if b > a:
                self._write(p, pa.record_batch([c.slice(a, b - a) for c in cols], schema=self.schema))

    def _write(self, p: int, batch: pa.RecordBatch) -> None:
        if self._writers[p] is None:
            sink = pa.OSFile(str(self.paths[p]), "wb")
            self._writers[p] = (sink, pa.ipc.new_file(sink, self.schema))
        self._writers[p][1].write_batch(batch)

    def close(self) -> None:
        for w in self._writers:
            if w is not None:
                w[1].close()
                w[0].close()
        self._writers = [None] * self.parts

    def read(self, p: int) -> pa.Table:
        if not self.paths[p].exists():
            return self.schema.empty_table()
        with pa.OSFile(str(self.paths[p]), "rb") as f:
            t = pa.ipc.open_file(f).read_all()
        return t.combine_chunks() if t.num_rows else t

    def remove(self, p: int) -> None:
        if self.paths[p].exists():
            self.paths[p].unlink()


SUFFIX_REC = np.dtype([("row", "<i8"), ("suffix", "<i4")])
ZCR_REC = np.dtype([("row", "<i8"), ("suffix", "<i4"), ("last", "<i4")])  # --dedup zcr: the placed last code too


class _RowCursor:
    """Read back a partition's (row, suffix[, last]) records, which are sorted by row, a chunk
    at a time."""

    CHUNK = 1 << 15

    def __init__(self, path: Path, dtype: np.dtype = SUFFIX_REC):
        self._f = open(path, "rb") if path.exists() else None
        self.dtype = dtype
        self.rec = np.zeros(0, dtype)
        self._i = 0
        self._fill()

    @property
    def rows(self) -> np.ndarray:
        return self.rec["row"]

    def _fill(self) -> None:
        if self._f is None or self._i < len(self.rec):
            return
        raw = self._f.read(self.CHUNK * self.dtype.itemsize)
        if not raw:
            self._f.close()
            self._f = None
            self.rec, self._i = np.zeros(0, self.dtype), 0
            return
        self.rec, self._i = np.frombuffer(raw, dtype=self.dtype), 0

    def take_below(self, end: int, out: np.ndarray, start: int, last: np.ndarray | None = None) -> None:
        """Fill ``out[row - start]`` (and ``last[row - start]``) for every pending row < ``end``."""
        while True:
            self._fill()
            if self._i >= len(self.rec):
                return
            rows = self.rec["row"]
            j = int(np.searchsorted(rows, end, side="left"))
            j = max(j, self._i)
            if j > self._i:
                out[rows[self._i:j] - start] = self.rec["suffix"][self._i:j]
                if last is not None:
                    last[rows[self._i:j] - start] = self.rec["last"][self._i:j]
                self._i = j
            if j < len(self.rec):
                return

    def close(self) -> None:
        if self._f is not None:
            self._f.close()


# ---------------------------------------------------------------------------------------------
# the model's codes

def _model_batches(model, sizes, batch_size: int, zcr: bool = False) -> Iterator[tuple]:
    """(ids, keys, suffix) of the model's codes.parquet in batches, checked against the model;
    with ``zcr`` (ids, prefix keys, suffix, last codes)."""
    from sidkit.io.codes import read_codes_metadata, table_to_codes
    from sidkit.model.files import check_model_codes

    if not model.files.exists("codes.parquet"):
        return
    mpath = model.path / "codes.parquet"
    try:
        with model.files.open("codes.parquet") as f:
            pfile = pq.ParquetFile(f)
            md = read_codes_metadata(pfile.schema_arrow)
            names = pfile.schema_arrow.names
            if "item_id" not in names or "sid" not in names:
                raise ModelError(f"{mpath}: not a sidkit codes table (columns item_id, sid, suffix); re-run 'sidkit fit'")
            cols = ["item_id", "sid"] + (["suffix"] if "suffix" in names else [])
            offset = 0
            for b in pfile.iter_batches(batch_size=batch_size, columns=cols):
                t = pa.Table.from_batches([b])
                m_ids, m_codes, m_suffix = table_to_codes(t, mpath)
                check_model_codes(m_ids, m_codes, m_suffix, md, model.meta, mpath, row_offset=offset)
                offset += len(t)
                if zcr:
                    yield t.column("item_id").combine_chunks(), prefix_keys(m_codes, sizes), m_suffix, m_codes[:, -1].astype(np.int32)
                else:
                    yield t.column("item_id").combine_chunks(), pack_keys(m_codes, sizes), m_suffix
    except (pa.ArrowException, OSError, ValueError) as e:
        if isinstance(e, ModelError):
            raise
        raise ModelError(f"{mpath}: the model's codes are unreadable ({' '.join(str(e).split())[:120]}); re-run 'sidkit fit'") from None


def model_id_type(model) -> pa.DataType | None:
    if not model.files.exists("codes.parquet"):
        return None
    try:
        with model.files.open("codes.parquet") as f:
            sch = pq.ParquetFile(f).schema_arrow
    except (pa.ArrowException, OSError) as e:
        raise ModelError(f"{model.path / 'codes.parquet'}: the model's codes are unreadable ({str(e).splitlines()[0][:120]}); re-run 'sidkit fit'") from None
    return sch.field("item_id").type if "item_id" in sch.names else None


# ---------------------------------------------------------------------------------------------
# the pass

@dataclass
class _Layout:
    """What the spill, solve and write steps share: the keys' kind and the partition count."""

    sizes: list[int]
    zcr: bool  # partitions by prefix key: one prefix group lives in one partition
    parts: int
    void_w: int | None  # None: int64 keys, else the byte width of opaque keys
    cmp_type: pa.DataType  # the id type the model's and the input's ids are compared as
    n_cand: int

    def keys(self, codes: np.ndarray) -> np.ndarray:
        return prefix_keys(codes, self.sizes) if self.zcr else pack_keys(codes, self.sizes)

    @property
    def key_type(self) -> pa.DataType:
        return pa.int64() if self.void_w is None else pa.binary(self.void_w)

    def empty_keys(self) -> np.ndarray:
        return np.zeros(0, np.int64 if self.void_w is None else np.dtype((np.void, self.void_w)))

    def part_of(self, keys: np.ndarray) -> np.ndarray:
        return (_key_hash(keys) % np.uint64(self.parts)).astype(np.int64)


def _layout(model, st: ParquetSource, partition_rows: int) -> _Layout:
    sizes = model.codebook_sizes
    m_type = model_id_type(model)
    zcr = model_dedup(model) == "zcr"
    lay = _Layout(sizes, zcr, max(1, -(-st.num_rows // max(1, partition_rows))), None,
                  m_type if m_type is not None else st.schema_arrow.field("item_id").type,
                  min(ZCR_CANDIDATES, int(sizes[-1])))
    if lay.keys(np.zeros((1, len(sizes)), np.int32)).dtype != np.int64:
        lay.void_w = 4 * (len(sizes) - zcr)
    return lay


def finish_encode(model, staged: list[Path], out: Path, *, as_dir: bool, id_col: str, source_label: str,
                  scratch: Path, batch_size: int = 65536, partition_rows: int = PARTITION_ROWS) -> dict:
    """The global suffix pass over staged shards, then the final write to ``out`` (a file, or a
    directory of one shard per staged shard). Returns counts for the summary."""
    st = ParquetSource(scratch, staged, "staged codes", check_schema=False)
    lay = _layout(model, st, partition_rows)
    model_spill, has_model = _spill_model(model, lay, scratch, batch_size)
    in_spill = _spill_input(st, lay, scratch, batch_size)
    _check_duplicates(scratch / "hash", lay.parts, st, source_label, id_col)
    res_paths, n_new, n_moved, n_spilled = _solve_partitions(lay, model_spill, in_spill, scratch)
    meta = {"method": model.meta["method"], "codebook_sizes": lay.sizes,
            "model_fingerprint": model.meta.get("model_fingerprint"), "n_levels": len(lay.sizes),
            "dedup": {"method": model_dedup(model), **({"encode_items_placed_elsewhere": n_moved, "encode_items_with_suffix": n_spilled} if lay.zcr else {})}}
    cursors = [_RowCursor(pth, ZCR_REC if lay.zcr else SUFFIX_REC) for pth in res_paths]
    try:
        _write_output(st, staged, out, as_dir, cursors, meta, lay.zcr, batch_size)
    finally:
        for c in cursors:
            c.close()
    res = {"n_items": int(st.num_rows), "n_new_or_changed": n_new, "has_model_codes": has_model, "partitions": lay.parts}
    if lay.zcr:
        res["zcr"] = {"items_placed_elsewhere": n_moved, "items_with_suffix": n_spilled}
    return res


def _spill_model(model, lay: _Layout, scratch: Path, batch_size: int) -> tuple[_Spill, bool]:
    """The model's (key, id, suffix[, last]) records, spilled to the partitions."""
    m_fields = [("key", lay.key_type), ("id", lay.cmp_type), ("suffix", pa.int32())] + ([("last", pa.int32())] if lay.zcr else [])
    model_spill = _Spill(scratch / "spill", "model", lay.parts, pa.schema(m_fields))
    has_model = False
    for m_ids, m_keys, m_suf, *m_last in _model_batches(model, lay.sizes, batch_size, zcr=lay.zcr):
        has_model = True
        m_ids = m_ids.cast(lay.cmp_type) if m_ids.type != lay.cmp_type else m_ids
        model_spill.write(lay.part_of(m_keys),
                          [_key_arrow(m_keys), m_ids, pa.array(m_suf, pa.int32())] + [pa.array(a, pa.int32()) for a in m_last])
    model_spill.close()
    return model_spill, has_model


def _spill_input(st: ParquetSource, lay: _Layout, scratch: Path, batch_size: int) -> _Spill:
    """Pass 1 over the staged codes: (key, id, row[, last, cand]) records to the partitions, and
    (id hash, row) records to ``scratch/hash`` for the duplicate-id check."""
    i_fields = [("key", lay.key_type), ("id", lay.cmp_type), ("row", pa.int64())] + (
        [("last", pa.int32()), ("cand", pa.list_(pa.int32(), lay.n_cand))] if lay.zcr else [])
    in_spill = _Spill(scratch / "spill", "input", lay.parts, pa.schema(i_fields))
    hash_dir = scratch / "hash"
    hash_dir.mkdir(parents=True, exist_ok=True)
    parts = lay.parts
    hash_files = [open(hash_dir / f"h-{p:04d}.bin", "wb") for p in range(parts)]
    try:
        for b in st.iter_batches(batch_size=batch_size):
            ids = b.data.column("item_id")
            ids_c = ids.cast(lay.cmp_type) if ids.type != lay.cmp_type else ids
            codes = _sid_codes(b.data.column("sid"), len(lay.sizes))
            keys = lay.keys(codes)
            rows = np.arange(b.offset, b.offset + b.data.num_rows, dtype=np.int64)
            extra = []
            if lay.zcr:
                cand = _candidates(b.data, codes, lay.n_cand)
                extra = [pa.array(codes[:, -1].astype(np.int32), pa.int32()),
                         pa.FixedSizeListArray.from_arrays(pa.array(cand.ravel(), pa.int32()), lay.n_cand)]
            in_spill.write(lay.part_of(keys), [_key_arrow(keys), ids_c, pa.array(rows)] + extra)
            h = id_hash(ids)
            hp = (h >> np.uint64(40)) % np.uint64(parts)
            rec = np.empty(len(h), dtype=[("h", "<u8"), ("row", "<i8")])
            rec["h"], rec["row"] = h, rows
            o = np.argsort(hp, kind="stable")
            cuts = np.searchsorted(hp[o], np.arange(parts + 1, dtype=np.uint64))
            for p in range(parts):
                if cuts[p + 1] > cuts[p]:
                    hash_files[p].write(rec[o[cuts[p]:cuts[p + 1]]].tobytes())
        in_spill.close()
    finally:
        for f in hash_files:
            f.close()
    return in_spill


def _solve_partitions(lay: _Layout, model_spill: _Spill, in_spill: _Spill, scratch: Path) -> tuple[list[Path], int, int, int]:
    """Each partition: kept suffixes, then the next free ones (ZCR: the placed last codes),
    written back sorted by row. Returns the result files and the counts (new, moved, spilled)."""
    res_paths = [scratch / "spill" / f"suffix-{p:04d}.bin" for p in range(lay.parts)]
    n_new = n_moved = n_spilled = 0
    for p in range(lay.parts):
        mt, it = model_spill.read(p), in_spill.read(p)
        model_spill.remove(p)
        m_keys = _key_numpy(mt.column("key").combine_chunks(), lay.void_w) if mt.num_rows else lay.empty_keys()
        m_suf = mt.column("suffix").to_numpy().astype(np.int32) if mt.num_rows else np.zeros(0, np.int32)
        keys = _key_numpy(it.column("key").combine_chunks(), lay.void_w) if it.num_rows else m_keys[:0]
        rows = it.column("row").to_numpy() if it.num_rows else np.zeros(0, np.int64)
        ids = it.column("id").combine_chunks() if it.num_rows else pa.array([], lay.cmp_type)
        m_ids = mt.column("id").combine_chunks() if mt.num_rows else pa.array([], lay.cmp_type)
        if lay.zcr:
            m_last = mt.column("last").to_numpy().astype(np.int32) if mt.num_rows else np.zeros(0, np.int32)
            last = it.column("last").to_numpy().astype(np.int32) if it.num_rows else np.zeros(0, np.int32)
            cand = (it.column("cand").combine_chunks().flatten().to_numpy().reshape(-1, lay.n_cand) if it.num_rows
                    else np.zeros((0, lay.n_cand), np.int32))
            new_last, suf, placed = zcr_partition(keys, last, cand, ids, m_keys, m_last, m_ids, m_suf)
            n_new += len(placed)
            n_moved += int((new_last[placed] != last[placed]).sum())
            n_spilled += int((suf[placed] > 0).sum())
            rec = np.empty(len(rows), dtype=ZCR_REC)
            rec["row"], rec["suffix"], rec["last"] = rows, suf, new_last
        else:
            kept = kept_suffixes(keys, ids, m_keys, m_ids, m_suf)
            n_new += int((kept < 0).sum())
            suf = fill_suffixes(keys, kept, m_keys, m_suf, ids)
            rec = np.empty(len(rows), dtype=SUFFIX_REC)
            rec["row"], rec["suffix"] = rows, suf
        with open(res_paths[p], "wb") as f:
            f.write(rec.tobytes())
        in_spill.remove(p)
        del mt, it, keys, ids, suf, rec
    return res_paths, n_new, n_moved, n_spilled


def _write_output(st: ParquetSource, staged: list[Path], out: Path, as_dir: bool, cursors: list[_RowCursor],
                  meta: dict, zcr: bool, batch_size: int) -> None:
    """The final pass: the staged codes again, in order, with the suffixes merged back; one file,
    or one shard per staged shard plus the manifest; replaced atomically either way."""
    from sidkit.io.artifacts import atomic_dir, atomic_path

    schema_md = {b"sidkit": json.dumps(meta).encode()}
    if not as_dir:
        with atomic_path(out) as tmp:
            writer = None
            for b in st.iter_batches(batch_size=batch_size):
                tbl = _with_suffix(b, cursors, schema_md, zcr)
                if writer is None:
                    writer = pq.ParquetWriter(tmp, tbl.schema)
                writer.write_table(tbl)
            if writer is None:
                writer = pq.ParquetWriter(tmp, _with_suffix_table(pq.read_table(staged[0]), np.zeros(0, np.int32), schema_md).schema)
            writer.close()
        return
    with atomic_dir(out) as tmp:
        writer, cur = None, -1
        for b in st.iter_batches(batch_size=batch_size):
            if b.shard_index != cur:
                if writer is not None:
                    writer.close()
                writer, cur = None, b.shard_index
            tbl = _with_suffix(b, cursors, schema_md, zcr)
            if writer is None:
                writer = pq.ParquetWriter(tmp / staged[b.shard_index].name, tbl.schema)
            writer.write_table(tbl)
        if writer is not None:
            writer.close()
        for f in staged:  # empty shards still get their (empty) file
            if not (tmp / f.name).exists():
                pq.write_table(_with_suffix_table(pq.read_table(f), np.zeros(0, np.int32), schema_md), tmp / f.name)
        (tmp / MANIFEST).write_text(json.dumps({"format": "sidkit-codes", "shards": [f.name for f in staged],
                                                "rows": st.num_rows, **meta}, indent=2) + "\n")


def _sid_codes(sid: pa.Array, L: int) -> np.ndarray:
    if isinstance(sid, pa.ChunkedArray):
        sid = sid.combine_chunks()
    return sid.flatten().to_numpy(zero_copy_only=False).reshape(len(sid), L)


def _with_suffix_table(t: pa.Table, suffix: np.ndarray, schema_md) -> pa.Table:
    t = t.select(["item_id", "sid"]).append_column("suffix", pa.array(suffix, pa.int32()))
    return t.replace_schema_metadata(schema_md)


def _with_suffix(b, cursors: list[_RowCursor], schema_md, zcr: bool = False) -> pa.Table:
    start, m = b.offset, b.data.num_rows
    suf = np.full(m, -1, np.int32)
    last = np.full(m, -1, np.int32) if zcr else None
    for c in cursors:
        c.take_below(start + m, suf, start, last)
    if m and suf.min() < 0:  # pragma: no cover - an invariant of the pass
        raise RuntimeError("suffix pass lost rows")
    t = pa.Table.from_batches([b.data]).select(["item_id", "sid"])
    if zcr and m:
        sid = t.column("sid").combine_chunks()
        codes = _sid_codes(sid, len(sid[0])).copy()
        codes[:, -1] = last
        t = t.set_column(t.schema.get_field_index("sid"), "sid",
                         pa.ListArray.from_arrays(pa.array(np.arange(0, codes.size + 1, codes.shape[1], dtype=np.int32)),
                                                  pa.array(codes.ravel(), pa.int32())).cast(t.schema.field("sid").type))
    return _with_suffix_table(t, suf, schema_md)


def _candidates(t: pa.Table, codes: np.ndarray, m: int) -> np.ndarray:
    """The staged ``zcr_cand`` of a batch (n, m) int32; a staged file without it (an empty
    shard) cannot have rows, so this is the own code repeated only as a safeguard."""
    if "zcr_cand" in t.column_names:
        c = t.column("zcr_cand")
        c = c.combine_chunks() if isinstance(c, pa.ChunkedArray) else c
        return c.flatten().to_numpy(zero_copy_only=False).astype(np.int32).reshape(len(c), -1)[:, :m]
    return np.repeat(codes[:, -1:].astype(np.int32), m, axis=1)


def _check_duplicates(hash_dir: Path, parts: int, st: ParquetSource, label: str, id_col: str) -> None:
    """Duplicate ids over the whole input: equal 64-bit hashes inside a partition, confirmed on
    the real ids."""
    suspects = []
    for p in range(parts):
        f = hash_dir / f"h-{p:04d}.bin"
        rec = np.fromfile(f, dtype=[("h", "<u8"), ("row", "<i8")])
        f.unlink()
        if len(rec) < 2:
            continue
        o = np.argsort(rec["h"], kind="stable")
        h = rec["h"][o]
        eq = np.flatnonzero(h[1:] == h[:-1])
        if len(eq):
            rows = np.unique(np.concatenate([rec["row"][o][eq], rec["row"][o][eq + 1]]))
            suspects.append(rows[:10_000])
    if not suspects:
        return
    rows = np.unique(np.concatenate(suspects))
    ids = st.take_rows(rows, ["item_id"]).column("item_id").combine_chunks()
    vc = pc.value_counts(ids)
    counts = vc.field("counts").to_numpy(zero_copy_only=False)
    dup = vc.field("values").filter(pa.array(counts > 1)).to_pylist()
    if dup:
        raise duplicate_ids_error(label, id_col, dup)  # counted over the hash suspects only
