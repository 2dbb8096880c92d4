"""``sidkit encode``: codes for a catalog of any size, with memory flat in the row count.

Two stages, so that the expensive one can run anywhere:

1. **map** — every input shard is encoded in record batches into a staged shard
   (``item_id``, ``sid``), row for row (:func:`map_local` here, ``sidkit.encoding.ray_engine`` on a Ray
   cluster; both call :func:`sidkit.encoding.kernel.encode_batch`'s core).
2. **finish** — the global suffix pass (:func:`finish_encode`): an item of the model's
   ``codes.parquet`` whose core SID is unchanged keeps its suffix; every other item gets the next
   free suffix of its core SID bucket, counted past the model's suffixes, in input order. The
   pass is out of core: (key, id, row) records are spilled to ``P`` partitions by a hash of the
   key, so one bucket lives in one partition and each partition is solved in memory; the
   suffixes come back to input order by a P-way merge of the partitions' sorted row numbers.
   Duplicate ids are found the same way, over partitions of 64-bit id hashes (a hash hit is
   checked against the real ids). Memory is O(rows per partition + batch), whatever the catalog.

The output is one Parquet file, or with ``-o DIR/`` a directory of shards (one per input shard,
``part-00000.parquet`` ...) swapped in as a whole; either is replaced atomically.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any, Iterator

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from sidkit.errors import ConfigError, DataError, InputFileError, ModelError, opt
from sidkit.io.codes import codes_table, pack_keys
from sidkit.dedup.zcr import ZCR_CANDIDATES, full_keys, prefix_keys
from sidkit.io.ids import duplicate_ids_error, id_hash
from sidkit.io.source import ParquetSource, open_source
from sidkit.encoding.kernel import _encode_codes, candidates_array, encode_batch, model_dedup, staged_name  # noqa: F401  (re-exported)

PARTITION_ROWS = 1 << 20  # rows per partition of the suffix pass (about 40 MB of state each)
MANIFEST = "_sidkit.json"  # written into a directory output; readers skip "_" names
ENGINES = ("local", "ray")


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
# the per-partition suffix rule (also the slow in-memory reference, on one partition)

def fill_suffixes(keys: np.ndarray, suffix: np.ndarray, m_keys: np.ndarray, m_suffix: np.ndarray) -> np.ndarray:
    """Give every row with suffix -1 the next free suffix of its key: past the model's largest
    suffix for that key (and past kept rows' suffixes), in row order."""
    suffix = suffix.copy()
    pending = np.flatnonzero(suffix < 0)
    if not len(pending):
        return suffix
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
    base = np.zeros(len(pk), np.int64)
    if len(uk):
        i = np.searchsorted(uk, pk)
        hit = (i < len(uk)) & (uk[np.minimum(i, len(uk) - 1)] == pk)
        base[hit] = mx[i[hit]] + 1
    o = np.argsort(pk, kind="stable")
    sk = pk[o]
    first = np.ones(len(sk), bool)
    first[1:] = sk[1:] != sk[:-1]
    run_start = np.maximum.accumulate(np.where(first, np.arange(len(sk)), 0))
    rank = np.empty(len(sk), np.int64)
    rank[o] = np.arange(len(sk)) - run_start
    suffix[pending] = (base + rank).astype(np.int32)
    return suffix


def kept_suffixes(keys: np.ndarray, ids: pa.Array, m_keys: np.ndarray, m_ids: pa.Array, m_suffix: np.ndarray) -> np.ndarray:
    """-1, or the model's suffix for rows whose id is in the model with the same key."""
    suf = np.full(len(keys), -1, np.int32)
    if not len(m_ids) or not len(keys):
        return suf
    pos = pc.fill_null(pc.index_in(ids, value_set=m_ids), -1).to_numpy(zero_copy_only=False).astype(np.int64)
    found = np.flatnonzero(pos >= 0)
    same = found[m_keys[pos[found]] == keys[found]]
    suf[same] = m_suffix[pos[same]]
    return suf


def zcr_partition(prefix: np.ndarray, last: np.ndarray, cand: np.ndarray, ids: pa.Array,
                  m_prefix: np.ndarray, m_last: np.ndarray, m_ids: pa.Array, m_suffix: np.ndarray) -> tuple[np.ndarray, np.ndarray, int]:
    """The encode-time ZCR rule over one partition of rows (in input order) and the model's rows
    with the same prefix keys: a row whose id is in the model with the same prefix keeps the
    model's last code and suffix; every other row takes its own last code if no item holds it,
    else the nearest free one of its candidates, else the next free suffix of its own SID.
    Returns (last codes, suffixes, the rows placed: not kept from the model)."""
    from sidkit.dedup.zcr import place_new

    n = len(prefix)
    out_last = np.asarray(last, np.int64).copy()
    suf = np.full(n, -1, np.int32)
    kept = np.zeros(n, bool)
    if len(m_ids) and n:
        pos = pc.fill_null(pc.index_in(ids, value_set=m_ids), -1).to_numpy(zero_copy_only=False).astype(np.int64)
        found = np.flatnonzero(pos >= 0)
        same = found[m_prefix[pos[found]] == prefix[found]]
        out_last[same] = m_last[pos[same]]
        suf[same] = m_suffix[pos[same]]
        kept[same] = True
    pending = np.flatnonzero(~kept)
    placed, spill = place_new(prefix, out_last, cand, pending,
                              np.concatenate([m_prefix, prefix[kept]]) if len(m_prefix) or kept.any() else prefix[:0],
                              np.concatenate([m_last.astype(np.int64), out_last[kept]]))
    out_last[pending] = placed[pending]
    suf[pending[~spill[pending]]] = 0
    if spill.any():
        suf = fill_suffixes(full_keys(prefix, out_last), suf, full_keys(m_prefix, m_last), m_suffix)
    return out_last.astype(np.int32), suf, pending


# ---------------------------------------------------------------------------------------------
# stages

# the map step (encode_batch, the staged shard names) lives in sidkit.encoding.kernel, below the engines
_staged_name = staged_name


def map_local(model, source: ParquetSource, stage_dir: Path, *, id_col: str, batch_size: int = 65536,
              progress=None) -> tuple[list[Path], int]:
    """The map stage on this machine: one staged shard (``item_id``, ``sid``) per input shard.
    Returns the staged files and the number of all-zero embedding rows."""
    from sidkit.features import zero_rows
    from sidkit.io.catalog import iter_catalog_batches

    tok = model.tokenizer
    zcr = model_dedup(model) == "zcr"
    files = [stage_dir / _staged_name(i) for i in range(len(source.shards))]
    writers: dict[int, pq.ParquetWriter] = {}
    n_zero = done = 0
    try:
        for ids, emb, offset, cols in iter_catalog_batches(source, id_col=id_col, embedding_cols=list(model.fusion.columns),
                                                           batch_size=batch_size, extra_cols=tok.attribute_columns):
            i = int(np.searchsorted(source.offsets, offset, side="right") - 1)
            n_zero += zero_rows(emb)
            got = _encode_codes(model, emb, cols, str(source.shards[i]), candidates=zcr)
            codes = got[0] if zcr else got
            t = codes_table(ids, codes, np.zeros(len(codes), np.int32)).select(["item_id", "sid"])
            if zcr:
                t = t.append_column("zcr_cand", candidates_array(got[1]))
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
            pq.write_table(codes_table(pa.array([], source.schema_arrow.field(id_col).type), np.zeros((0, len(model.codebook_sizes)), np.int32),
                                       np.zeros(0, np.int32)).select(["item_id", "sid"]), f)
    return files, n_zero


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


def finish_encode(model, staged: list[Path], out: Path, *, as_dir: bool, id_col: str, source_label: str,
                  scratch: Path, batch_size: int = 65536, partition_rows: int = PARTITION_ROWS) -> dict:
    """The global suffix pass over staged shards, then the final write to ``out`` (a file, or a
    directory of one shard per staged shard). Returns counts for the summary."""
    from sidkit.io.artifacts import atomic_dir, atomic_path

    sizes = model.codebook_sizes
    st = ParquetSource(scratch, staged, "staged codes", check_schema=False)
    n = st.num_rows
    m_type = model_id_type(model)
    in_type = st.schema_arrow.field("item_id").type
    cmp_type = m_type if m_type is not None else in_type
    zcr = model_dedup(model) == "zcr"  # partitions by prefix key: one prefix group lives in one partition
    keyf = (lambda c: prefix_keys(c, sizes)) if zcr else (lambda c: pack_keys(c, sizes))  # noqa: E731
    void_w = None if keyf(np.zeros((1, len(sizes)), np.int32)).dtype == np.int64 else 4 * (len(sizes) - zcr)
    key_type = pa.int64() if void_w is None else pa.binary(void_w)
    parts = max(1, -(-n // max(1, partition_rows)))
    m_fields = [("key", key_type), ("id", cmp_type), ("suffix", pa.int32())] + ([("last", pa.int32())] if zcr else [])
    model_spill = _Spill(scratch / "spill", "model", parts, pa.schema(m_fields))
    n_cand = min(ZCR_CANDIDATES, int(sizes[-1]))
    i_fields = [("key", key_type), ("id", cmp_type), ("row", pa.int64())] + (
        [("last", pa.int32()), ("cand", pa.list_(pa.int32(), n_cand))] if zcr else [])
    in_spill = _Spill(scratch / "spill", "input", parts, pa.schema(i_fields))
    hash_dir = scratch / "hash"
    hash_dir.mkdir(parents=True, exist_ok=True)
    hash_files = [open(hash_dir / f"h-{p:04d}.bin", "wb") for p in range(parts)]
    has_model = False
    try:
        for m_ids, m_keys, m_suf, *m_last in _model_batches(model, sizes, batch_size, zcr=zcr):
            has_model = True
            m_ids = m_ids.cast(cmp_type) if m_ids.type != cmp_type else m_ids
            model_spill.write((_key_hash(m_keys) % np.uint64(parts)).astype(np.int64),
                              [_key_arrow(m_keys), m_ids, pa.array(m_suf, pa.int32())] + [pa.array(a, pa.int32()) for a in m_last])
        model_spill.close()
        # pass 1 over the staged codes: keys and ids to the partitions
        for b in st.iter_batches(batch_size=batch_size):
            ids = b.data.column("item_id")
            ids_c = ids.cast(cmp_type) if ids.type != cmp_type else ids
            codes = _sid_codes(b.data.column("sid"), len(sizes))
            keys = keyf(codes)
            rows = np.arange(b.offset, b.offset + b.data.num_rows, dtype=np.int64)
            extra = []
            if zcr:
                cand = _candidates(b.data, codes, n_cand)
                extra = [pa.array(codes[:, -1].astype(np.int32), pa.int32()),
                         pa.FixedSizeListArray.from_arrays(pa.array(cand.ravel(), pa.int32()), n_cand)]
            in_spill.write((_key_hash(keys) % np.uint64(parts)).astype(np.int64), [_key_arrow(keys), ids_c, pa.array(rows)] + extra)
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
    _check_duplicates(hash_dir, parts, st, source_label, id_col)
    # each partition: kept suffixes, then the next free ones, written back sorted by row
    res_paths = [scratch / "spill" / f"suffix-{p:04d}.bin" for p in range(parts)]
    n_new = n_moved = n_spilled = 0
    for p in range(parts):
        mt, it = model_spill.read(p), in_spill.read(p)
        model_spill.remove(p)
        m_keys = _key_numpy(mt.column("key").combine_chunks(), void_w) if mt.num_rows else np.zeros(0, np.int64 if void_w is None else np.dtype((np.void, void_w)))
        m_suf = mt.column("suffix").to_numpy().astype(np.int32) if mt.num_rows else np.zeros(0, np.int32)
        keys = _key_numpy(it.column("key").combine_chunks(), void_w) if it.num_rows else m_keys[:0]
        rows = it.column("row").to_numpy() if it.num_rows else np.zeros(0, np.int64)
        ids = it.column("id").combine_chunks() if it.num_rows else pa.array([], cmp_type)
        m_ids_p = mt.column("id").combine_chunks() if mt.num_rows else pa.array([], cmp_type)
        if zcr:
            m_last = mt.column("last").to_numpy().astype(np.int32) if mt.num_rows else np.zeros(0, np.int32)
            last = it.column("last").to_numpy().astype(np.int32) if it.num_rows else np.zeros(0, np.int32)
            cand = (it.column("cand").combine_chunks().flatten().to_numpy().reshape(-1, n_cand) if it.num_rows
                    else np.zeros((0, n_cand), np.int32))
            new_last, suf, placed = zcr_partition(keys, last, cand, ids, m_keys, m_last, m_ids_p, m_suf)
            n_new += len(placed)
            n_moved += int((new_last[placed] != last[placed]).sum())
            n_spilled += int((suf[placed] > 0).sum())
            rec = np.empty(len(rows), dtype=ZCR_REC)
            rec["row"], rec["suffix"], rec["last"] = rows, suf, new_last
        else:
            kept = kept_suffixes(keys, ids, m_keys, m_ids_p, m_suf)
            n_new += int((kept < 0).sum())
            suf = fill_suffixes(keys, kept, m_keys, m_suf)
            rec = np.empty(len(rows), dtype=SUFFIX_REC)
            rec["row"], rec["suffix"] = rows, suf
        with open(res_paths[p], "wb") as f:
            f.write(rec.tobytes())
        in_spill.remove(p)
        del mt, it, keys, ids, suf, rec
    # final pass: the staged codes again, in order, with the suffixes merged back
    meta = {"method": model.meta["method"], "codebook_sizes": sizes,
            "model_fingerprint": model.meta.get("model_fingerprint"), "n_levels": len(sizes),
            "dedup": {"method": model_dedup(model), **({"encode_items_placed_elsewhere": n_moved, "encode_items_with_suffix": n_spilled} if zcr else {})}}
    schema_md = {b"sidkit": json.dumps(meta).encode()}
    cursors = [_RowCursor(pth, ZCR_REC if zcr else SUFFIX_REC) for pth in res_paths]
    done = 0
    try:
        if as_dir:
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
                    done += tbl.num_rows
                if writer is not None:
                    writer.close()
                for i, f in enumerate(staged):  # empty shards still get their (empty) file
                    if not (tmp / f.name).exists():
                        pq.write_table(_with_suffix_table(pq.read_table(f), np.zeros(0, np.int32), schema_md), tmp / f.name)
                (tmp / MANIFEST).write_text(json.dumps({"format": "sidkit-codes", "shards": [f.name for f in staged],
                                                        "rows": n, **meta}, indent=2) + "\n")
        else:
            with atomic_path(out) as tmp:
                writer = None
                for b in st.iter_batches(batch_size=batch_size):
                    tbl = _with_suffix(b, cursors, schema_md, zcr)
                    if writer is None:
                        writer = pq.ParquetWriter(tmp, tbl.schema)
                    writer.write_table(tbl)
                    done += tbl.num_rows
                if writer is None:
                    writer = pq.ParquetWriter(tmp, _with_suffix_table(pq.read_table(staged[0]), np.zeros(0, np.int32), schema_md).schema)
                writer.close()
    finally:
        for c in cursors:
            c.close()
    res = {"n_items": int(n), "n_new_or_changed": n_new, "has_model_codes": has_model, "partitions": parts}
    if zcr:
        res["zcr"] = {"items_placed_elsewhere": n_moved, "items_with_suffix": n_spilled}
    return res


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


# ---------------------------------------------------------------------------------------------
# the entry point

def _wants_dir(out: str | os.PathLike) -> bool:
    s = os.fspath(out)
    return s.endswith(("/", os.sep)) or Path(s).is_dir()


def _check_dir_out(out: Path, given: str) -> None:
    """A directory output may replace only a new or empty folder or an earlier encode output."""
    if not out.exists():
        return
    if not out.is_dir():
        raise InputFileError(f"{given}: exists and is not a directory; drop the trailing '/' to write one file")
    names = [n for n in os.listdir(out)]
    if not names:
        return
    if MANIFEST not in names or any(not (n == MANIFEST or (n.startswith("part-") and n.endswith(".parquet"))) for n in names):
        raise InputFileError(f"{given}: exists and is not a sidkit codes directory (no {MANIFEST}, or other files in it); "
                             f"choose an empty or new {opt('out', '-o')} folder")


def encode(model_dir: str | os.PathLike, items: str | os.PathLike, out: str | os.PathLike, *,
           id_col: str | None = None, batch_size: int = 65536, progress=None, engine: str = "local",
           address: str | None = None, workers: int | None = None, partition_rows: int = PARTITION_ROWS) -> dict:
    """Encode a catalog (a Parquet file, a directory of shards or a glob) with a fitted model.

    Items already in the model's ``codes.parquet`` whose core SID is unchanged keep their suffix
    (so refresh jobs give stable IDs). Other items get the next free suffix of their core SID
    bucket, counted past the model's existing suffixes, in input order, so ``sid + [suffix]``
    stays unique across the model's codes and the new output.

    ``out``: a Parquet file, or a directory (a path ending in ``/``, or an existing sidkit codes
    directory) that gets one shard per input shard. ``engine="ray"`` runs the map stage on a Ray
    cluster (``address``, ``workers`` actors; needs ``pip install 'sidkit[ray]'``); the codes and
    suffixes are the same as with the local engine. Memory stays flat in the row count.
    Returns a summary dict.
    """
    from sidkit.io.artifacts import check_output, scratch_dir
    from sidkit.io.catalog import resolve_columns
    from sidkit.model.directory import load_model

    t0 = time.perf_counter()
    if engine not in ENGINES:
        raise ConfigError(f"{opt('engine')} {engine!r}: use one of {', '.join(ENGINES)}")
    if workers is not None and workers < 1:
        raise ConfigError(f"{opt('workers')} must be at least 1 (got {workers})")
    if engine == "local" and (address is not None or workers is not None):
        raise ConfigError(f"{opt('address') if address is not None else opt('workers')} needs {opt('engine')} ray")
    given = os.fspath(out)
    as_dir = _wants_dir(out)
    out = Path(given)
    src = open_source(items)
    inputs: dict[str, Any] = {"ITEMS": items, "MODEL": model_dir}
    if src.is_sharded:
        inputs.update({f"ITEMS shard {i}": s for i, s in enumerate(src.shards)})
    check_output(out, opt("out", "-o"), inputs, directory=as_dir)
    if as_dir:
        _check_dir_out(out, given)
    elif not (out.parent if str(out.parent) else Path(".")).is_dir():
        raise InputFileError(f"{out}: the folder {out.parent} does not exist; create it or write elsewhere")
    model = load_model(model_dir)
    id_col = id_col or model.meta.get("input", {}).get("id_col", "item_id")
    resolve_columns(src.schema_arrow, src.path, id_col, list(model.fusion.columns))
    m_type = model_id_type(model)
    if m_type is not None:
        t_in = src.schema_arrow.field(id_col).type
        if pa.types.is_integer(t_in) != pa.types.is_integer(m_type):
            kind = lambda t: "integer" if pa.types.is_integer(t) else "string"  # noqa: E731
            raise DataError(f"{src.path}: id column '{id_col}' holds {kind(t_in)} ids but the model's items have {kind(m_type)} ids; "
                            f"give the ids the same type as in the catalog the model was fitted on")
    if src.num_rows == 0:
        raise DataError(f"{src.path}: the catalog has zero rows; it needs at least one item")
    t_map = time.perf_counter()
    with scratch_dir(out) as scratch:
        stage = scratch / "staged"
        stage.mkdir()
        n_zero = None
        if engine == "ray":
            from sidkit.encoding.ray_engine import ray_map_stage

            staged = ray_map_stage(model.path, src, stage, id_col=id_col, address=address, workers=workers or 1,
                                   batch_size=batch_size, progress=progress)
        else:
            staged, n_zero = map_local(model, src, stage, id_col=id_col, batch_size=batch_size, progress=progress)
        t_map = time.perf_counter() - t_map
        t_fin = time.perf_counter()
        res = finish_encode(model, staged, out, as_dir=as_dir, id_col=id_col, source_label=str(src.path), scratch=scratch,
                            batch_size=batch_size, partition_rows=partition_rows)
    n_done, n_new = res["n_items"], res["n_new_or_changed"]
    summary = {"output": str(out), "n_items": int(n_done), "n_new_or_changed": n_new,
               "n_kept": int(n_done - n_new), "shards_in": len(src.shards),
               "shards_out": len(src.shards) if as_dir else 1, "engine": engine,
               "seconds": round(time.perf_counter() - t0, 3),
               "stage_seconds": {"map": round(t_map, 3), "suffix_and_write": round(time.perf_counter() - t_fin, 3)},
               "partitions": res["partitions"]}
    if "zcr" in res:
        summary["zcr"] = res["zcr"]
    warnings = []
    if not res["has_model_codes"]:
        warnings.append(f"{model.path}: the model has no codes.parquet, so no item keeps a suffix from the fit; "
                        "every suffix is counted from 0 in input order")
    if n_zero:
        warnings.append(f"{src.path}: {n_zero} of {n_done} rows have an all-zero embedding; they carry no "
                        "information and all get the same core SID")
    if warnings:
        summary["warnings"] = warnings
    return summary
