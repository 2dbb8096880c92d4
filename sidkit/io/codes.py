"""sidkit's codes table: ``item_id``, ``sid`` (list<int32>), ``suffix`` (int32) + key-value metadata."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from sidkit.io.artifacts import atomic_path

META_KEY = b"sidkit"


KEY_SPACE_MAX = 2**62  # the largest product of codebook sizes packed into one int64 key


def key_space(codebook_sizes) -> int | None:
    """The number of possible SIDs (product of the sizes) when an int64 key can hold them, else None."""
    total = 1
    for k in codebook_sizes:
        total *= max(1, int(k))
        if total >= KEY_SPACE_MAX:
            return None
    return total


def pack_keys(codes: np.ndarray, codebook_sizes: list[int] | None = None) -> np.ndarray:
    """The one SID key: each row of ``codes`` (n, L) as a mixed-radix int64 (over
    ``codebook_sizes``, default the largest code + 1 per level), or, when the key space does not
    fit in an int64, as one opaque bytes scalar per row. Equal keys <=> equal rows, and keys sort
    like the rows (lexicographically), so keys of different calls compare."""
    codes = np.asarray(codes)
    n, L = codes.shape
    if codebook_sizes is None:
        codebook_sizes = [int(codes[:, l].max()) + 1 if n else 1 for l in range(L)]
    if key_space(codebook_sizes) is not None:
        key = np.zeros(n, dtype=np.int64)
        for l in range(L):
            key *= int(codebook_sizes[l])
            key += codes[:, l].astype(np.int64)
        return key
    c = np.ascontiguousarray(codes.astype(">i4"))  # big-endian: bytes order like the codes
    return c.view(np.dtype((np.void, 4 * L))).ravel()


def table_keys(codes: np.ndarray, codebook_sizes: list[int]) -> tuple[np.ndarray, int, bool]:
    """Int64 keys of a whole table (``key``, ``space``, ``packed``): the mixed-radix key when it
    fits (``packed``), else dense ranks of the distinct rows (exact, but only comparable within
    this table). Keys sort like the rows either way."""
    codes = np.asarray(codes)
    n = codes.shape[0]
    space = key_space(codebook_sizes)
    if space is not None:
        return pack_keys(codes, codebook_sizes), space, True
    key = np.zeros(n, dtype=np.int64)
    space = 1
    for l in range(codes.shape[1]):
        if space * int(codebook_sizes[l]) >= KEY_SPACE_MAX:
            _, inv = np.unique(key, return_inverse=True)
            key = inv.ravel().astype(np.int64)
            space = int(key.max()) + 1 if n else 1
        key = key * int(codebook_sizes[l]) + codes[:, l].astype(np.int64)
        space *= int(codebook_sizes[l])
    return key, space, False


def codes_table(item_ids, codes: np.ndarray, suffix: np.ndarray, metadata: dict[str, Any] | None = None) -> pa.Table:
    codes = np.ascontiguousarray(np.asarray(codes, dtype=np.int32))
    n, L = codes.shape
    flat = pa.array(codes.reshape(-1), type=pa.int32())
    offsets = pa.array(np.arange(0, n * L + 1, L, dtype=np.int32), type=pa.int32())
    sid = pa.ListArray.from_arrays(offsets, flat)
    ids = item_ids if isinstance(item_ids, (pa.Array, pa.ChunkedArray)) else pa.array(np.asarray(item_ids).tolist() if np.asarray(item_ids).dtype == object else np.asarray(item_ids))
    table = pa.table({"item_id": ids, "sid": sid, "suffix": pa.array(np.asarray(suffix, dtype=np.int32))})
    if metadata is not None:
        table = table.replace_schema_metadata({META_KEY: json.dumps(metadata).encode()})
    return table


def write_codes(path: str | os.PathLike, item_ids, codes: np.ndarray, suffix: np.ndarray, metadata: dict[str, Any] | None = None) -> None:
    """Write a codes table atomically. ``metadata`` goes under the Parquet key ``sidkit``."""
    table = codes_table(item_ids, codes, suffix, metadata)
    with atomic_path(path, suffix=".parquet") as tmp:
        pq.write_table(table, tmp)


def read_codes_metadata(path_or_schema) -> dict[str, Any] | None:
    """The ``sidkit`` key-value metadata of a codes Parquet file (or its Arrow schema), or None
    (also when the value is not a JSON object)."""
    schema = path_or_schema if isinstance(path_or_schema, pa.Schema) else pq.read_schema(path_or_schema)
    raw = (schema.metadata or {}).get(META_KEY)
    if not raw:
        return None
    try:
        md = json.loads(raw)
    except (ValueError, UnicodeDecodeError):
        return None
    return md if isinstance(md, dict) else None


def dedup_metadata(path) -> dict | None:
    """How a sidkit SID table's collisions were resolved (``--dedup``, ``sidkit dedup``) and, for
    ZCR, how many items moved at what cost: the ``dedup`` entry of its Parquet metadata (a
    directory: its first shard), or None for other tables."""
    p = Path(path)
    try:
        if p.is_dir():
            shards = sorted(q for q in p.glob("*.parquet") if not q.name.startswith(("_", ".")))
            p = shards[0] if shards else p
        if not p.is_file() or p.suffix != ".parquet":
            return None
        md = read_codes_metadata(p) or {}
    except Exception:  # noqa: BLE001 - an unreadable footer was reported by the reader already
        return None
    dd = md.get("dedup")
    return dd if isinstance(dd, dict) else None


def unused_suffix(path, sfx, suffix: str = "auto"):
    """``sfx``, or None when the table's suffix column carries nothing: with ``suffix="auto"``, a
    sidkit table made with ``--dedup zcr`` or ``none`` whose suffixes are all 0 (ZCR resolved every
    group; ``none`` never numbers). Exports then write the L core tokens without a constant
    extra token. A suffix-deduplicated table keeps its suffix even where it is all 0, so its token
    count does not change when a refresh adds a collision."""
    if sfx is None or suffix != "auto" or np.any(sfx):
        return sfx
    dd = dedup_metadata(path)
    return None if dd is not None and dd.get("method") in ("zcr", "none") else sfx


def table_to_codes(table: pa.Table, path: str | os.PathLike = "codes") -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(item_ids, codes (n, L) int32, suffix) from a sidkit codes table."""
    from sidkit.errors import DataError

    sid = table.column("sid").combine_chunks()
    n = len(sid)
    if sid.null_count:
        raise DataError(f"{path}: column 'sid' has {sid.null_count} null rows; every item needs a SID")
    lengths = pc_list_lengths(sid)
    L = int(lengths[0]) if n else 0
    if n and (lengths != L).any():
        bad = int(np.flatnonzero(lengths != L)[0])
        raise DataError(f"{path}: SIDs have different lengths (row {bad} has {lengths[bad]}, row 0 has {L}); all SIDs need the same number of levels")
    flat = sid.flatten().to_numpy(zero_copy_only=False)
    codes = flat.reshape(n, L).astype(np.int32) if n else np.zeros((0, 0), np.int32)
    ids = table.column("item_id").to_numpy(zero_copy_only=False)
    suffix = table.column("suffix").to_numpy(zero_copy_only=False).astype(np.int32) if "suffix" in table.column_names else np.zeros(n, np.int32)
    return ids, codes, suffix


def pc_list_lengths(arr: pa.Array) -> np.ndarray:
    import pyarrow.compute as pc

    return pc.list_value_length(arr).to_numpy(zero_copy_only=False)


def read_codes(path: str | os.PathLike) -> tuple[np.ndarray, np.ndarray, np.ndarray, dict[str, Any] | None]:
    """Read a sidkit codes Parquet file: (item_ids, codes, suffix, metadata)."""
    path = Path(path)
    table = pq.read_table(path)
    ids, codes, suffix = table_to_codes(table, path)
    return ids, codes, suffix, read_codes_metadata(path)
