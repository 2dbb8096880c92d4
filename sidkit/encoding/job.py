"""``sidkit encode``: codes for a catalog of any size, with memory flat in the row count.

Two stages, so that the expensive one can run anywhere:

1. **map** — every input shard is encoded in record batches into a staged shard
   (``item_id``, ``sid``), row for row, by the one batch kernel
   (:func:`sidkit.encoding.kernel.encode_embeddings`), scheduled by an engine:
   :func:`sidkit.encoding.local.map_local` here, :mod:`sidkit.encoding.ray_engine` on a Ray cluster.
2. **finish** — the global suffix pass and the atomic write (:func:`sidkit.encoding.finish.finish_encode`):
   an item of the model's ``codes.parquet`` whose core SID is unchanged keeps its suffix; every
   other item gets the next free suffix of its core SID bucket (:mod:`sidkit.dedup.suffix`).

The output is one Parquet file, or with ``-o DIR/`` a directory of shards (one per input shard,
``part-00000.parquet`` ...) swapped in as a whole; either is replaced atomically.
This module is the entry point: input checks, engine choice, summary.
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any


from sidkit.encoding.finish import MANIFEST, PARTITION_ROWS, finish_encode, model_id_type
from sidkit.errors import ConfigError, DataError, InputFileError, opt
from sidkit.io.ids import check_same_id_kind
from sidkit.io.source import open_source

ENGINES = ("local", "ray")


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


def _check_engine(engine: str, address: str | None, workers: int | None) -> None:
    if engine not in ENGINES:
        raise ConfigError(f"{opt('engine')} {engine!r}: use one of {', '.join(ENGINES)}")
    if workers is not None and workers < 1:
        raise ConfigError(f"{opt('workers')} must be at least 1 (got {workers})")
    if engine == "local" and (address is not None or workers is not None):
        raise ConfigError(f"{opt('address') if address is not None else opt('workers')} needs {opt('engine')} ray")


def _check_out(out: str | os.PathLike, src, items, model_dir) -> tuple[Path, bool]:
    """The output path and whether it is a directory, checked before any work."""
    from sidkit.io.artifacts import check_output

    given = os.fspath(out)
    as_dir = _wants_dir(out)
    out = Path(given)
    inputs: dict[str, Any] = {"ITEMS": items, "MODEL": model_dir}
    if src.is_sharded:
        inputs.update({f"ITEMS shard {i}": s for i, s in enumerate(src.shards)})
    check_output(out, opt("out", "-o"), inputs, directory=as_dir)
    if as_dir:
        _check_dir_out(out, given)
    elif not (out.parent if str(out.parent) else Path(".")).is_dir():
        raise InputFileError(f"{out}: the folder {out.parent} does not exist; create it or write elsewhere")
    return out, as_dir


def _check_input(model, src, id_col: str) -> None:
    """The catalog has the model's columns, ids of the model's id type, and rows."""
    from sidkit.io.catalog import resolve_columns

    resolve_columns(src.schema_arrow, src.path, id_col, list(model.fusion.columns))
    m_type = model_id_type(model)
    if m_type is not None:
        check_same_id_kind(src.schema_arrow.field(id_col).type, m_type, src.path, id_col, "the model's items",
                           "give the ids the same type as in the catalog the model was fitted on")
    if src.num_rows == 0:
        raise DataError(f"{src.path}: the catalog has zero rows; it needs at least one item")


def _map_stage(engine: str, model, src, stage: Path, *, id_col: str, address, workers, batch_size: int,
               progress) -> tuple[list[Path], int | None]:
    """Run the chosen engine's map stage: the staged files, and the all-zero rows (local only)."""
    if engine == "ray":
        from sidkit.encoding.ray_engine import ray_map_stage

        return ray_map_stage(model.path, src, stage, id_col=id_col, address=address, workers=workers or 1,
                             batch_size=batch_size, progress=progress), None
    from sidkit.encoding.local import map_local

    return map_local(model, src, stage, id_col=id_col, batch_size=batch_size, progress=progress)


def encode(model_dir: str | os.PathLike, items: str | os.PathLike, out: str | os.PathLike, *,
           id_col: str | None = None, batch_size: int = 65536, progress=None, engine: str = "local",
           address: str | None = None, workers: int | None = None, partition_rows: int = PARTITION_ROWS) -> dict:
    """Encode a catalog (a Parquet file, a directory of shards or a glob) with a fitted model.

    Items already in the model's ``codes.parquet`` whose core SID is unchanged keep their suffix
    (so refresh jobs give stable IDs). Other items get the next free suffix of their core SID
    bucket, counted past the model's existing suffixes, in item-id order (:mod:`sidkit.dedup.suffix`),
    so ``sid + [suffix]`` stays unique across the model's codes and the new output, whatever the
    input's row order or sharding.

    ``out``: a Parquet file, or a directory (a path ending in ``/``, or an existing sidkit codes
    directory) that gets one shard per input shard. ``engine="ray"`` runs the map stage on a Ray
    cluster (``address``, ``workers`` actors; needs ``pip install 'sidkit[ray]'``); the codes and
    suffixes are the same as with the local engine. Memory stays flat in the row count.
    Returns a summary dict.
    """
    from sidkit._progress import library_progress
    from sidkit.io.artifacts import scratch_dir
    from sidkit.model.directory import load_model

    t0 = time.perf_counter()
    progress = library_progress(progress)
    _check_engine(engine, address, workers)
    src = open_source(items)
    out, as_dir = _check_out(out, src, items, model_dir)
    model = load_model(model_dir)
    id_col = id_col or model.meta.get("input", {}).get("id_col", "item_id")
    _check_input(model, src, id_col)
    t_map = time.perf_counter()
    with scratch_dir(out) as scratch:
        stage = scratch / "staged"
        stage.mkdir()
        staged, n_zero = _map_stage(engine, model, src, stage, id_col=id_col, address=address, workers=workers,
                                    batch_size=batch_size, progress=progress)
        t_map = time.perf_counter() - t_map
        t_fin = time.perf_counter()
        res = finish_encode(model, staged, out, as_dir=as_dir, id_col=id_col, source_label=str(src.path), scratch=scratch,
                            batch_size=batch_size, partition_rows=partition_rows)
    stage_seconds = {"map": round(t_map, 3), "suffix_and_write": round(time.perf_counter() - t_fin, 3)}
    return _summary(res, model, src, out, as_dir, engine, n_zero, time.perf_counter() - t0, stage_seconds)


def _summary(res: dict, model, src, out: Path, as_dir: bool, engine: str, n_zero: int | None, seconds: float,
             stage_seconds: dict) -> dict:
    n_done, n_new = res["n_items"], res["n_new_or_changed"]
    summary = {"output": str(out), "n_items": int(n_done), "n_new_or_changed": n_new,
               "n_kept": int(n_done - n_new), "shards_in": len(src.shards),
               "shards_out": len(src.shards) if as_dir else 1, "engine": engine,
               "seconds": round(seconds, 3), "stage_seconds": stage_seconds, "partitions": res["partitions"]}
    if "zcr" in res:
        summary["zcr"] = res["zcr"]
    warnings = []
    if not res["has_model_codes"]:
        warnings.append(f"{model.path}: the model has no codes.parquet, so no item keeps a suffix from the fit; "
                        "every suffix is counted from 0 in item-id order")
    if n_zero:
        warnings.append(f"{src.path}: {n_zero} of {n_done} rows have an all-zero embedding; they carry no "
                        "information and all get the same core SID")
    if warnings:
        summary["warnings"] = warnings
    return summary
