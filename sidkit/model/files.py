"""Validation of a model directory's files against each other.

``sidkit.json`` describes the fit, ``model.safetensors`` holds its tensors, ``codes.parquet`` the
fitted codes. Every loader checks them here, so an edited or mixed-up file is a
:class:`~sidkit.errors.ModelError` naming the file and the field, never codes that sidkit's own
``audit`` would reject. (KAE's ``slots.json`` is checked against its codebooks by
:func:`sidkit.kae.slots.check_registry`.)
"""

from __future__ import annotations

import hashlib
import math
from pathlib import Path
from typing import Any, Mapping

import numpy as np

from sidkit.errors import ModelError
from sidkit.model.layout import FORMAT_VERSION, META, REFIT, TENSORS, ModelDir


def tensor_fingerprint(tensors: Mapping[str, np.ndarray]) -> str:
    """Hash of tensor names, dtypes, shapes and values (sorted by name): the model fingerprint."""
    h = hashlib.sha256()
    for name in sorted(tensors):
        t = np.ascontiguousarray(tensors[name])
        h.update(f"{name}:{t.dtype.str}:{t.shape};".encode())
        h.update(t.tobytes())
    return h.hexdigest()[:16]


def _field(p: Path, name: str, problem: str) -> ModelError:
    return ModelError(f"{p}: field '{name}' {problem}; restore the file or {REFIT}")


def _int(v) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _num(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def check_meta(meta: Any, p: Path) -> dict:
    """Validate the structure of ``sidkit.json`` (p is its path); returns it."""
    from sidkit import __version__

    if not isinstance(meta, dict):
        raise ModelError(f"{p}: holds a JSON {type(meta).__name__}, not the object 'sidkit fit' writes; restore the file or {REFIT}")
    if not meta:
        raise ModelError(f"{p}: is an empty JSON object; restore the file or {REFIT}")
    fv = meta.get("format_version", FORMAT_VERSION)
    if not _int(fv) or fv < 1:
        raise _field(p, "format_version", f"is {fv!r}, not a positive integer")
    if fv > FORMAT_VERSION:
        raise ModelError(f"{p}: model format {fv} is newer than this sidkit ({__version__}) reads; upgrade sidkit")
    method = meta.get("method")
    if method is None:
        raise _field(p, "method", "is missing")
    if not isinstance(method, str) or not method:
        raise _field(p, "method", f"is {method!r}, not a method name")
    est = meta.get("estimator")
    if not isinstance(est, dict) or not isinstance(est.get("params"), dict):
        raise _field(p, "estimator", "is missing or has no 'params' object")
    if not isinstance(est.get("class", ""), str):
        raise _field(p, "estimator.class", "is not a class name")
    fu = meta.get("fusion")
    if not isinstance(fu, dict):
        raise _field(p, "fusion", "is missing")
    cols, dims, weights = fu.get("columns"), fu.get("dims"), fu.get("weights")
    if not isinstance(cols, list) or not cols or not all(isinstance(c, str) and c for c in cols):
        raise _field(p, "fusion.columns", "is not a non-empty list of column names")
    if not isinstance(dims, list) or len(dims) != len(cols) or not all(_int(d) and d > 0 for d in dims):
        raise _field(p, "fusion.dims", f"is {dims!r}, not one positive width per fusion column")
    if not isinstance(weights, list) or len(weights) != len(cols) or not all(_num(w) and w > 0 for w in weights):
        raise _field(p, "fusion.weights", f"is {weights!r}, not one positive weight per fusion column")
    sizes = meta.get("codebook_sizes")
    if not isinstance(sizes, list) or not sizes or not all(_int(k) and k >= 1 for k in sizes):
        raise _field(p, "codebook_sizes", f"is {sizes!r}, not a list of positive integers")
    nl = meta.get("n_levels", len(sizes))
    if not _int(nl) or nl != len(sizes):
        raise _field(p, "n_levels", f"is {nl!r} but codebook_sizes lists {len(sizes)} levels")
    inp = meta.get("input", {})
    if not isinstance(inp, dict) or not isinstance(inp.get("id_col", "item_id"), str):
        raise _field(p, "input.id_col", "is not a column name")
    fp = meta.get("model_fingerprint")
    if fp is not None and not isinstance(fp, str):
        raise _field(p, "model_fingerprint", "is not a string")
    return meta


def read_meta(d: ModelDir) -> dict:
    """``sidkit.json`` of an opened model directory, read and validated."""
    return check_meta(d.read_json(META), d.path / META)


def check_tensors(tensors: Mapping[str, np.ndarray], meta: dict, d: Path) -> None:
    """``model.safetensors`` must be the tensors ``sidkit.json`` was written with."""
    fp = meta.get("model_fingerprint")
    if fp is not None and tensor_fingerprint(tensors) != fp:
        raise ModelError(f"{d / TENSORS}: its tensors are not the ones {d / META} was written with "
                         f"(model_fingerprint {fp}); the files come from different fits or were edited, {REFIT}")


def estimator_shape(est) -> tuple[list[int], int | None]:
    """(codebook sizes, input width) of a loaded estimator."""
    if hasattr(est, "codebook_sizes_"):
        sizes = list(est.codebook_sizes_)
    else:
        sizes = list(est.codebook_sizes)
    dim = getattr(est, "n_features_in_", None)
    if dim is None and getattr(est, "_res_X", None) is not None and est._res_X.size:
        dim = int(est._res_X.shape[1])
    return [int(k) for k in sizes], (int(dim) if dim is not None else None)


def check_estimator(est, meta: dict, d: Path) -> None:
    """Codebook sizes, levels and input width of the loaded tensors against ``sidkit.json``."""
    p = d / META
    sizes, dim = estimator_shape(est)
    if sizes != list(meta["codebook_sizes"]):
        raise _field(p, "codebook_sizes", f"is {meta['codebook_sizes']} but model.safetensors holds codebooks of sizes {sizes}")
    fdim = int(sum(meta["fusion"]["dims"]))
    if dim is not None and dim != fdim:
        raise _field(p, "fusion.dims", f"add up to {fdim} but the model's input width in model.safetensors is {dim}")


def check_model_codes(ids, codes: np.ndarray, suffix: np.ndarray, md: dict | None, meta: dict, path: Path,
                      row_offset: int = 0) -> None:
    """The model's own ``codes.parquet`` (or a batch of it starting at ``row_offset``) against ``sidkit.json``."""
    sizes = list(meta["codebook_sizes"])
    fp = meta.get("model_fingerprint")
    if md is not None and fp is not None and md.get("model_fingerprint") not in (None, fp):
        raise ModelError(f"{path}: these codes come from another fit (model_fingerprint {md.get('model_fingerprint')}, the model's is {fp}); {REFIT}")
    if len(codes) and codes.shape[1] != len(sizes):
        raise ModelError(f"{path}: SIDs have {codes.shape[1]} levels, the model has {len(sizes)}; {REFIT}")
    if len(codes):
        bad = np.flatnonzero((codes < 0).any(axis=1) | (codes >= np.asarray(sizes)).any(axis=1))
        if bad.size:
            raise ModelError(f"{path}: row {int(bad[0]) + row_offset} holds a code outside the model's codebooks {sizes}; {REFIT}")
        if (suffix < 0).any():
            raise ModelError(f"{path}: column 'suffix' holds a negative value at row {int(np.flatnonzero(suffix < 0)[0]) + row_offset}; {REFIT}")
