"""Writing and loading a whole model directory (layer 4: it builds tokenizers through
:mod:`sidkit.methods`).

:func:`write_model_dir` writes every file of the layout (:mod:`sidkit.model`) at once, swapped in
atomically; :func:`load_model` reads them through one :class:`~sidkit.model.layout.ModelDir`,
checks each against the others (:mod:`sidkit.model.files`) and rebuilds the tokenizer.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

import numpy as np

from sidkit.errors import ModelError
from sidkit.features import FusionSpec
from sidkit.model.files import tensor_fingerprint
from sidkit.model.layout import CODEBOOKS, CODES, FORMAT_VERSION, META, REPORT_HTML, REPORT_JSON, TENSORS

__all__ = ["Model", "load_model", "model_meta", "save_tensors", "write_model_dir"]


def save_tensors(tensors: Mapping[str, np.ndarray], method: str) -> tuple[bytes, str]:
    """Serialise tensors as safetensors bytes and fingerprint them.

    The fingerprint hashes names, dtypes, shapes and values in sorted order, so it depends on the
    weights alone. The file carries one metadata key (several keys come out of safetensors in
    varying order, which would make equal models differ byte for byte).
    """
    from safetensors.numpy import save as st_save

    from sidkit import __version__

    tensors = {k: np.ascontiguousarray(v) for k, v in tensors.items()}
    meta = json.dumps({"sidkit_version": __version__, "method": method}, sort_keys=True)
    return st_save(tensors, metadata={"sidkit": meta}), tensor_fingerprint(tensors)


def model_meta(*, method: str, tokenizer, fingerprint: str, config: dict, fusion: FusionSpec, input_info: dict,
               training: dict) -> dict:
    """The content of ``sidkit.json``."""
    from sidkit import __version__

    sizes = list(tokenizer.codebook_sizes)
    return {
        "sidkit_version": __version__,
        "format_version": FORMAT_VERSION,
        "method": method,
        "n_levels": len(sizes),
        "codebook_sizes": sizes,
        "model_fingerprint": fingerprint,
        "config": config,
        "estimator": {"class": tokenizer.class_name, "params": tokenizer.params()},
        "fusion": fusion.to_dict(),
        "input": input_info,
        "training": training,
    }


def write_model_dir(out: Path, *, blob: bytes, meta: dict, item_ids, codes: np.ndarray, suffix: np.ndarray,
                    codebooks, report: dict, extra: Mapping[str, Any], codes_metadata: Mapping | None = None) -> None:
    """Write a complete model directory to ``out`` atomically (the caller holds the model lock)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from sidkit.io.artifacts import atomic_dir, write_json_atomic, write_text_atomic
    from sidkit.io.codes import codes_table

    codes_meta = {"method": meta["method"], "codebook_sizes": meta["codebook_sizes"],
                  "model_fingerprint": meta["model_fingerprint"], "n_levels": meta["n_levels"], **(codes_metadata or {})}
    with atomic_dir(out, locked=True) as tmp:
        (tmp / TENSORS).write_bytes(blob)
        write_json_atomic(tmp / META, meta)
        pq.write_table(codes_table(item_ids, codes, suffix, codes_meta), tmp / CODES)
        pq.write_table(codebooks, tmp / CODEBOOKS)
        write_json_atomic(tmp / REPORT_JSON, report)
        for name, content in extra.items():
            if isinstance(content, pa.Table):
                pq.write_table(content, tmp / name)
            elif isinstance(content, str):
                write_text_atomic(tmp / name, content)
            else:
                write_json_atomic(tmp / name, content)
        from sidkit.report.html import render_html

        render_html(report, tmp / REPORT_HTML)


@dataclass
class Model:
    """A fitted model directory loaded for encoding."""

    path: Path
    meta: dict
    estimator: Any  # the tokenizer
    fusion: FusionSpec
    files: Any = None  # sidkit.model.layout.ModelDir: the directory as it was when loaded

    @property
    def tokenizer(self):
        return self.estimator

    @property
    def codebook_sizes(self) -> list[int]:
        return list(self.meta["codebook_sizes"])


def load_model(model_dir: str | os.PathLike) -> Model:
    """Load a model directory written by ``sidkit fit`` (safetensors + JSON only; no pickles).

    Every file is checked against the others: a mismatch is a
    :class:`~sidkit.errors.ModelError` naming the file and the field."""
    from safetensors import SafetensorError
    from safetensors.numpy import load as st_load

    from sidkit import methods
    from sidkit.model.files import check_estimator, check_tensors, read_meta
    from sidkit.model.layout import ModelDir, recover_dir

    p = Path(model_dir)
    if not p.exists():
        recover_dir(p)  # a fit killed in the fallback swap left the model aside
    if not p.is_dir():
        raise ModelError(f"{p}: model directory not found; pass the --out directory of 'sidkit fit'")
    d = ModelDir(p)
    if not d.exists(META):
        raise ModelError(f"{p}: not a sidkit model directory ({META} is missing); pass the --out directory of 'sidkit fit'")
    meta = read_meta(d)
    m = methods.method(meta["method"])
    cls = meta["estimator"].get("class", m.class_name)
    if cls != m.class_name:
        raise ModelError(f"{p / META}: field 'estimator.class' is {cls!r}, but method '{m.name}' is fitted by "
                         f"{m.class_name}; restore the file or re-run 'sidkit fit' to rebuild the model")
    raw = d.read_bytes(TENSORS)
    try:
        tensors = st_load(raw)
    except (SafetensorError, OSError, ValueError) as e:
        raise ModelError(f"{p / TENSORS}: unreadable ({str(e).splitlines()[0]}); re-run 'sidkit fit'") from None
    check_tensors(tensors, meta, p)
    tok = _load(m.class_name, meta["estimator"]["params"], tensors, p)
    tok.attach(d, meta)  # KAE: the slot registry
    check_estimator(tok, meta, p)
    return Model(p, meta, tok, FusionSpec.from_dict(meta["fusion"]), d)


def _load(class_name: str, params: Mapping, tensors: Mapping, model_dir: Path):
    """The tokenizer from its params and tensors; when they do not fit each other (an edited
    ``sidkit.json``, a tensor missing from ``model.safetensors``) a ModelError naming both files."""
    from sidkit import methods

    try:
        return methods.load_tokenizer(class_name, params, tensors)
    except ModelError:
        raise
    except KeyError as e:
        raise ModelError(f"{model_dir}/model.safetensors: tensor or field {e} that {model_dir}/sidkit.json's estimator needs "
                         "is missing; re-run 'sidkit fit'") from None
    except (ValueError, TypeError, RuntimeError, IndexError, AttributeError) as e:
        detail = " ".join(str(e).split())[:160]
        raise ModelError(f"{model_dir}/sidkit.json: estimator.params do not fit {model_dir}/model.safetensors ({detail}); "
                         "re-run 'sidkit fit'") from None


def model_info(model_dir: str | os.PathLike) -> dict:
    """What ``sidkit info`` shows: the model's method, shape, catalog, quality figures, the version
    and options it was fitted with, its KAE slots and its files; read from ``sidkit.json``,
    ``report.json`` and ``slots.json`` only (no tensors are loaded, so it is instant at any size)."""
    from sidkit.model.files import read_meta
    from sidkit.model.layout import REPORT_JSON, SLOTS, ModelDir

    p = Path(model_dir)
    if not p.is_dir():
        raise ModelError(f"{p}: model directory not found; pass the --out directory of 'sidkit fit'")
    d = ModelDir(p)
    try:
        if not d.exists(META):
            raise ModelError(f"{p}: not a sidkit model directory ({META} is missing); pass the --out directory of 'sidkit fit'")
        meta = read_meta(d)
        report = d.read_json(REPORT_JSON) if d.exists(REPORT_JSON) else {}
        slots = d.read_json(SLOTS) if d.exists(SLOTS) else None
    finally:
        d.close()
    inp, train = meta.get("input") or {}, meta.get("training") or {}
    coll = report.get("collision") or {}
    sem = report.get("semantic") or {}
    config = meta.get("config") or {}
    out = {
        "model_dir": str(p),
        "method": meta["method"],
        "sidkit_version": meta.get("sidkit_version"),
        "format_version": meta.get("format_version"),
        "fitted_at": _mtime(p / META),
        "n_levels": meta.get("n_levels"),
        "codebook_sizes": meta.get("codebook_sizes"),
        "n_items": inp.get("rows"),
        "train_rows": train.get("train_rows", inp.get("train_rows")),
        "catalog": inp.get("path"),
        "id_col": inp.get("id_col"),
        "embedding": {"columns": (meta.get("fusion") or {}).get("columns"), "dims": (meta.get("fusion") or {}).get("dims")},
        "seed": config.get("seed"),
        "dedup": (report.get("dedup") or {}).get("method", config.get("dedup")),
        "collision_rate": coll.get("collision_rate"),
        "unique_sid_ratio": coll.get("unique_sid_ratio"),
        "locality_gap": sem.get("locality_gap"),
        "reconstruction_mse": (report.get("reconstruction") or {}).get("mse", train.get("reconstruction_mse")),
        "fit_seconds": train.get("seconds"),
        "model_fingerprint": meta.get("model_fingerprint"),
        "config": config,
        "files": {f.name: f.stat().st_size for f in sorted(p.iterdir()) if f.is_file()},
    }
    if isinstance(slots, dict):  # KAE: the slot registry
        binds = slots.get("bindings") or []
        groups = []
        for g in slots.get("groups") or []:
            lo, hi = (g.get("reserved") or [0, 0])[:2]
            n_bound = sum(1 for x in binds if x.get("group") == g.get("group"))
            groups.append({"name": g.get("name"), "position": g.get("position"), "active": g.get("active"),
                           "reserved": int(hi) - int(lo), "bound": n_bound, "free": int(hi) - int(lo) - n_bound})
        out["slots"] = {"bindings": len(binds), "updated": slots.get("updated"), "groups": groups}
    return out


def _mtime(path: Path) -> str:
    from datetime import datetime, timezone

    return datetime.fromtimestamp(path.stat().st_mtime, tz=timezone.utc).isoformat(timespec="seconds")
