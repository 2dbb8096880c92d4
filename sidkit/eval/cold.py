"""Cold-start items in the downstream protocol (``sidkit eval --cold-items FRACTION``).

A seeded fraction of the catalog's items is held out of the recommender's training: their
interactions are removed from every training sequence and history, and a validation target that
is one of them is dropped, so the recommender never sees them. They stay test targets. Their SIDs
come from content alone, as ``sidkit encode`` gives a new item: the model directory's
``codes.parquet`` without them is the set of known items, and the held-out items' embeddings are
encoded through the fitted model as new items (the next free suffix of their SID bucket, or for a
ZCR model a free last code). Recall/NDCG@K are then reported for the test users whose target is
held out (``cold_*``) and for the others (``warm_*``).

An id-only recommender (``sasrec-id``) has no trained embedding for a held-out item, so its cold
figures are what a random score gives; SIDs let the recommender rank an item it never saw.
The tokenizer itself was fitted on the whole catalog (as a production refit would have been);
only the recommender is kept away from the held-out items.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from dataclasses import replace
from pathlib import Path

import numpy as np

from sidkit.errors import ConfigError, DataError, opt


def pick_cold(n_items: int, fraction: float, seed: int) -> np.ndarray:
    """A seeded boolean mask of ``round(fraction * n_items)`` (at least 1) held-out catalog rows."""
    if not (0.0 < float(fraction) < 1.0):
        raise ConfigError(f"{opt('cold_items')} {fraction}: give a fraction of the items between 0 and 1 (e.g. 0.1)")
    k = min(n_items - 1, max(1, int(round(float(fraction) * n_items))))
    mask = np.zeros(n_items, bool)
    mask[np.random.default_rng([seed, 0xC01D]).choice(n_items, k, replace=False)] = True
    return mask


def hold_out(split, cold: np.ndarray):
    """``split`` without the held-out rows in any training sequence or validation target; the test
    targets are kept (the test histories are built from the filtered sequences)."""
    train = [seq[~cold[seq]] for seq in split.train]
    valid = np.where((split.valid >= 0) & cold[split.valid.clip(0)], -1, split.valid)
    info = dict(split.info)
    info["n_valid_targets"] = int((valid >= 0).sum())
    info["n_items_held_out"] = int(cold.sum())
    return replace(split, train=train, valid=valid, info=info, held_out=cold)


def _model_dir(path) -> Path:
    p = Path(path)
    d = p if p.is_dir() else p.parent
    if not (d / "sidkit.json").exists():
        raise ConfigError(f"{path}: {opt('cold_items')} encodes the held-out items through the fitted model, so every SID "
                          "table must be a model directory of 'sidkit fit' (or its codes.parquet)")
    return d


def _items_path(model_dir: Path, meta: dict, items) -> str:
    if items is not None:
        return os.fspath(items)
    path = (meta.get("input") or {}).get("path")
    if not path or not Path(path).exists():
        raise DataError(f"{model_dir}: the catalog it was fitted on ({path!r}) is not there; give the catalog with "
                        f"{opt('items')} so the held-out items can be encoded from their embeddings")
    return path


def encode_cold(table: dict, cold_ids, items=None) -> tuple[np.ndarray, np.ndarray]:
    """Codes and suffixes of ``cold_ids`` (catalog ids of one table) encoded from content as new
    items of ``table``'s model, in the order of ``cold_ids``."""
    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    from sidkit.encoding.job import encode
    from sidkit.io.source import open_source
    from sidkit.model.layout import CODES

    model_dir = _model_dir(table["path"])
    meta = json.loads((model_dir / "sidkit.json").read_text(encoding="utf-8"))
    items_path = _items_path(model_dir, meta, items)
    id_col = (meta.get("input") or {}).get("id_col") or "item_id"
    cold_arr = pa.array(list(cold_ids))
    with tempfile.TemporaryDirectory(prefix="sidkit-cold-") as tmp:
        tmp = Path(tmp)
        known = tmp / "model"
        shutil.copytree(model_dir, known, ignore=shutil.ignore_patterns("*.html", "*.lock"))
        codes = pq.read_table(known / CODES)
        keep = pc.invert(pc.is_in(codes.column(codes.schema.names[0]).cast(cold_arr.type), value_set=cold_arr))
        pq.write_table(codes.filter(keep), known / CODES)
        src = open_source(items_path)
        if id_col not in src.schema_arrow.names:
            raise DataError(f"{items_path}: no id column {id_col!r} (the model's); give the catalog the model was fitted on")
        parts = []  # streamed in record batches: only the held-out rows are kept
        for b in src.iter_batches():
            parts.append(b.data.filter(pc.is_in(b.data.column(id_col).cast(cold_arr.type), value_set=cold_arr)))
        new = pa.Table.from_batches(parts, schema=src.schema_arrow)
        if new.num_rows != len(cold_arr):
            raise DataError(f"{items_path}: {len(cold_arr) - new.num_rows} of the held-out items are not in the catalog; "
                            f"give the catalog the SID tables were made from with {opt('items')}")
        pq.write_table(new, tmp / "cold.parquet")
        encode(known, tmp / "cold.parquet", tmp / "cold_codes.parquet")
        out = pq.read_table(tmp / "cold_codes.parquet")
    from sidkit.io.ids import map_ids

    ids = out.column(0).to_numpy(zero_copy_only=False)
    rows = map_ids(np.asarray(list(cold_ids), dtype=ids.dtype) if ids.dtype != object else np.asarray(list(cold_ids), object), ids)
    sid = np.asarray(out.column("sid").to_pylist(), np.int64)[rows]
    sfx = np.asarray(out.column("suffix").fill_null(0).to_numpy(), np.int64)[rows] if "suffix" in out.schema.names else np.zeros(len(rows), np.int64)
    return sid, sfx
