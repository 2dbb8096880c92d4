"""Parquet inputs that may be one file, a directory of shards or a glob (DESIGN.md §3).

Every command that reads a catalog, a SID table or an interactions log goes through
:func:`open_source`. A source lists its shards in a fixed order (sorted paths), checks that every
shard has the same columns and types as the first, and reads them either whole
(:meth:`ParquetSource.read`), in bounded record batches (:meth:`ParquetSource.iter_batches`), or
as a seeded subset of rows (:meth:`ParquetSource.take_rows`). Errors name the shard and the row
inside it.

Shards are opened one at a time and closed again, so a source of 10,000 shards holds one open
file and the per-shard row counts, nothing else.
"""

from __future__ import annotations

import glob as _glob
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Sequence

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from sidkit.errors import InputFileError, SchemaError

PARQUET_EXTENSIONS = (".parquet", ".pq", ".parq")
_GLOB_CHARS = ("*", "?", "[")


def _hidden(rel: Path) -> bool:
    """Writers' bookkeeping files (``_SUCCESS``, ``_metadata``, ``.part-0.crc``) and temps."""
    return any(part.startswith(("_", ".")) for part in rel.parts)


def list_shards(path: str | os.PathLike, what: str = "catalog") -> list[Path]:
    """The Parquet files that ``path`` names: itself, the ``*.parquet`` files under a directory
    (recursively, hidden and ``_``-prefixed names left out), or the files a glob matches; sorted.
    """
    s = os.fspath(path)
    p = Path(s)
    if p.is_dir():
        files = sorted(f for f in p.rglob("*") if f.suffix.lower() in PARQUET_EXTENSIONS
                       and not _hidden(f.relative_to(p)) and f.is_file())
        if not files:
            raise InputFileError(f"{p}: is a directory with no .parquet files; pass a Parquet file, a directory of "
                                 f"Parquet shards or a glob such as '{p}/*.parquet'")
        return files
    if p.exists():
        return [p]
    if any(c in s for c in _GLOB_CHARS):
        files = sorted(Path(f) for f in _glob.glob(s, recursive=True) if Path(f).is_file())
        if not files:
            raise InputFileError(f"{s}: no file matches this pattern; check the path of the {what}")
        return files
    raise InputFileError(f"{p}: file not found; check the path of the {what}")


def _open(p: Path, what: str) -> pq.ParquetFile:
    if p.stat().st_size == 0:
        raise InputFileError(f"{p}: file is empty (0 bytes); re-export the {what} as Parquet")
    try:
        pf = pq.ParquetFile(p, pre_buffer=False, buffer_size=1 << 20)
        _ = pf.schema_arrow
    except (pa.ArrowInvalid, pa.ArrowException, OSError) as e:
        msg = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise InputFileError(f"{p}: not a readable Parquet file ({msg}); re-export the {what} as Parquet") from None
    return pf


def _schema_difference(first: pa.Schema, other: pa.Schema) -> str | None:
    a = {f.name: f.type for f in first}
    b = {f.name: f.type for f in other}
    for name, t in a.items():
        if name not in b:
            return f"it has no column '{name}'"
        if b[name] != t:
            return f"column '{name}' is {b[name]} there and {t} in the first shard"
    for name in b:
        if name not in a:
            return f"it has a column '{name}' that the first shard lacks"
    return None


@dataclass(frozen=True)
class Batch:
    """One record batch of a source: the shard it came from, its rows, where it starts in the
    shard (``local``) and in the whole source (``offset``)."""

    shard: Path
    shard_index: int
    data: pa.RecordBatch
    local: int
    offset: int


class ParquetSource:
    """A Parquet input of one or more shards with one schema.

    Attributes
    ----------
    path : what the user passed (file, directory or glob), for messages.
    shards : the shard files, in reading order.
    shard_rows : rows per shard; ``num_rows`` their sum; ``offsets`` where each shard starts.
    schema_arrow : the first shard's Arrow schema (metadata included).
    """

    def __init__(self, path: str | os.PathLike, shards: Sequence[Path], what: str = "catalog",
                 check_schema: bool = True) -> None:
        self.path = Path(os.fspath(path))
        self.what = what
        self.shards = list(shards)
        rows = []
        schema = None
        for s in self.shards:
            with _open(s, what) as pf:
                sch = pf.schema_arrow
                if schema is None:
                    schema = sch
                elif check_schema:
                    diff = _schema_difference(schema, sch)
                    if diff:
                        raise SchemaError(f"{s}: this shard's schema disagrees with the first shard {self.shards[0]} "
                                          f"({diff}); every shard needs the same columns and types")
                rows.append(pf.metadata.num_rows)
        self.schema_arrow: pa.Schema = schema
        self.shard_rows = rows
        self.offsets = np.concatenate(([0], np.cumsum(rows, dtype=np.int64)))
        self.num_rows = int(self.offsets[-1])

    def __repr__(self) -> str:
        return f"ParquetSource({str(self.path)!r}, shards={len(self.shards)}, rows={self.num_rows})"

    @property
    def is_sharded(self) -> bool:
        return len(self.shards) > 1 or self.path.is_dir() or self.shards[0] != self.path

    @property
    def names(self) -> list[str]:
        return self.schema_arrow.names

    def open(self, i: int) -> pq.ParquetFile:
        """Shard ``i`` opened (the caller closes it, or uses it in a ``with``)."""
        return _open(self.shards[i], self.what)

    def read(self, columns: Sequence[str] | None = None) -> pa.Table:
        """The named columns of every shard, concatenated (in memory: for inputs that fit)."""
        cols = list(columns) if columns is not None else self.names
        parts = []
        for i, s in enumerate(self.shards):
            with self.open(i) as pf:
                try:
                    t = pf.read(columns=cols)
                except (pa.ArrowInvalid, pa.ArrowException, OSError) as e:
                    raise InputFileError(f"{s}: could not read the data ({str(e).splitlines()[0]}); the file may be "
                                         f"truncated, re-export it") from None
            parts.append(t.select(cols).replace_schema_metadata(None))
        table = parts[0] if len(parts) == 1 else pa.concat_tables(parts)
        return table.replace_schema_metadata(self.schema_arrow.metadata)

    def iter_batches(self, batch_size: int = 65536, columns: Sequence[str] | None = None) -> Iterator[Batch]:
        """Record batches of at most ``batch_size`` rows, shard after shard, in file order."""
        cols = list(columns) if columns is not None else None
        for i, s in enumerate(self.shards):
            local = 0
            with self.open(i) as pf:
                try:
                    for b in pf.iter_batches(batch_size=batch_size, columns=cols):
                        if cols is not None and b.schema.names != cols:
                            b = pa.RecordBatch.from_arrays([b.column(c) for c in cols], names=cols)
                        yield Batch(s, i, b, local, int(self.offsets[i]) + local)
                        local += b.num_rows
                except (pa.ArrowInvalid, pa.ArrowException, OSError) as e:
                    raise InputFileError(f"{s}: could not read the data near row {local} ({str(e).splitlines()[0]}); "
                                         f"the file may be truncated, re-export it") from None

    def locate(self, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(shard index, row inside the shard) of global row numbers."""
        rows = np.asarray(rows, np.int64)
        sh = np.searchsorted(self.offsets, rows, side="right") - 1
        return sh, rows - self.offsets[sh]

    def take_rows(self, rows: np.ndarray, columns: Sequence[str]) -> pa.Table:
        """The given global rows (sorted ascending, distinct) of the named columns, in that order.
        Reads only the row groups that hold them, one row group at a time."""
        rows = np.asarray(rows, np.int64)
        cols = list(columns)
        if len(rows) and (np.any(np.diff(rows) <= 0) or rows[0] < 0 or rows[-1] >= self.num_rows):
            raise ValueError("take_rows needs sorted, distinct rows inside the source")
        sh, local = self.locate(rows)
        parts = []
        for i in np.unique(sh):
            mine = local[sh == i]
            with self.open(int(i)) as pf:
                md = pf.metadata
                starts = np.concatenate(([0], np.cumsum([md.row_group(g).num_rows for g in range(md.num_row_groups)])))
                g_of = np.searchsorted(starts, mine, side="right") - 1
                for g in np.unique(g_of):
                    sel = mine[g_of == g] - starts[g]
                    try:
                        t = pf.read_row_group(int(g), columns=cols)
                    except (pa.ArrowInvalid, pa.ArrowException, OSError) as e:
                        raise InputFileError(f"{self.shards[i]}: could not read row group {int(g)} "
                                             f"({str(e).splitlines()[0]}); the file may be truncated, re-export it") from None
                    parts.append(t.select(cols).take(pa.array(sel)).replace_schema_metadata(None))
        if not parts:
            with self.open(0) as pf:
                return pf.schema_arrow.empty_table().select(cols)
        return pa.concat_tables(parts).combine_chunks()


def open_source(path: str | os.PathLike, what: str = "catalog") -> ParquetSource:
    """A :class:`ParquetSource` over a Parquet file, a directory of shards or a glob."""
    if isinstance(path, ParquetSource):
        return path
    return ParquetSource(path, list_shards(path, what), what)


def sample_rows(n_rows: int, n: int, seed: int) -> np.ndarray:
    """``min(n, n_rows)`` distinct rows of ``0 .. n_rows - 1``, drawn with ``seed``, sorted.

    Memory is O(n), not O(n_rows): rows are drawn in rounds and de-duplicated, so a 1M sample of
    10^9 rows costs a few MB.
    """
    if n >= n_rows:
        return np.arange(n_rows, dtype=np.int64)
    rng = np.random.default_rng([seed, 0x5A3B])
    if n > n_rows // 4:  # dense: a permutation is small enough
        return np.sort(rng.permutation(n_rows)[:n]).astype(np.int64)
    got = np.zeros(0, np.int64)
    while len(got) < n:
        extra = rng.integers(0, n_rows, size=int((n - len(got)) * 1.1) + 16, dtype=np.int64)
        got = np.unique(np.concatenate([got, extra]))
    # unique() sorts, so trimming to n would bias towards small rows: drop a seeded subset instead
    drop = rng.choice(len(got), size=len(got) - n, replace=False) if len(got) > n else np.zeros(0, np.int64)
    keep = np.ones(len(got), bool)
    keep[drop] = False
    return got[keep]
