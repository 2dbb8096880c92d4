"""Fuse one or more embedding columns into one matrix X (n, d) float32.

Each column is L2-normalised per row, scaled by sqrt(w_c / sum(w)), and the columns are
concatenated, so every fused row has unit norm and a column's weight is its share of the
squared norm. The column names, widths and weights are recorded in the model.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping, Sequence

import numpy as np

from sidkit.errors import ConfigError, DataError, opt


@dataclass(frozen=True)
class FusionSpec:
    columns: tuple[str, ...]
    dims: tuple[int, ...]
    weights: tuple[float, ...]
    normalize: bool = True

    @property
    def dim(self) -> int:
        return int(sum(self.dims))

    def to_dict(self) -> dict:
        return {"columns": list(self.columns), "dims": list(self.dims), "weights": list(self.weights), "normalize": self.normalize}

    @classmethod
    def from_dict(cls, d: Mapping) -> "FusionSpec":
        return cls(tuple(d["columns"]), tuple(int(x) for x in d["dims"]), tuple(float(x) for x in d["weights"]), bool(d.get("normalize", True)))


def l2_normalize(x: np.ndarray) -> np.ndarray:
    """Rows of ``x`` scaled to unit L2 norm (all-zero rows stay zero), float32.

    Rows whose squared norm would overflow (values near 1e20 and above) or underflow float32
    are rescaled by their largest absolute value first, so they keep their direction."""
    x = np.asarray(x, dtype=np.float32)
    with np.errstate(over="ignore", under="ignore"):
        norm = np.linalg.norm(x, axis=1, keepdims=True)
    odd = ~np.isfinite(norm[:, 0]) | (norm[:, 0] < 1e-18)
    out = x / np.maximum(norm, 1e-12)
    if odd.any():
        m = np.abs(x[odd]).max(axis=1, keepdims=True)
        y = x[odd] / np.where(m > 0, m, 1).astype(np.float32)
        out[odd] = y / np.maximum(np.linalg.norm(y, axis=1, keepdims=True), 1e-12)
    return out


def zero_rows(embeddings: Mapping[str, np.ndarray]) -> int:
    """Rows whose every embedding column is all zeros (a pass over one column, then only the
    rows that start with 0)."""
    rows = None
    for x in embeddings.values():
        x = np.asarray(x)
        c = np.flatnonzero(x[:, 0] == 0) if rows is None else rows[x[rows, 0] == 0]
        rows = c[~x[c].any(axis=1)]
    return int(len(rows)) if rows is not None else 0


def degenerate_warnings(X: np.ndarray, source: str) -> list[str]:
    """Warnings for inputs that carry no usable signal: all-zero rows, and a catalog whose rows
    are all the same vector (they all get one core SID). ``X`` is the fused matrix."""
    n = len(X)
    out = []
    zero = zero_rows({"x": X}) if n else 0
    if zero:
        out.append(f"{source}: {zero} of {n} rows have an all-zero embedding; they carry no information and all get the same core SID")
    if n > 1 and zero < n and bool((X[:, 0] == X[0, 0]).all()) and bool((X == X[0]).all()):
        out.append(f"{source}: all {n} rows have the same embedding, so every item gets the same core SID; check the embedding column")
    return out


def make_spec(embeddings: Mapping[str, np.ndarray], weights: Sequence[float] | None = None, normalize: bool = True) -> FusionSpec:
    cols = tuple(embeddings)
    if weights is None:
        weights = [1.0] * len(cols)
    if len(weights) != len(cols):
        raise ConfigError(f"{opt('embedding_weights')} has {len(weights)} values for {len(cols)} embedding columns ({', '.join(cols)}); give one weight per column")
    if any((not np.isfinite(w)) or w <= 0 for w in weights):
        raise ConfigError(f"{opt('embedding_weights')} must be positive numbers")
    return FusionSpec(cols, tuple(int(embeddings[c].shape[1]) for c in cols), tuple(float(w) for w in weights), normalize)


def fuse(embeddings: Mapping[str, np.ndarray], spec: FusionSpec, *, source: str = "catalog") -> np.ndarray:
    """Apply ``spec`` to a dict of embedding arrays; raises DataError when a width differs from the spec."""
    parts = []
    total = float(sum(spec.weights))
    for col, d, w in zip(spec.columns, spec.dims, spec.weights):
        if col not in embeddings:
            raise DataError(f"{source}: embedding column '{col}' that the model was fitted on is missing; add it or pass {opt('embedding')} {col}")
        x = np.asarray(embeddings[col], dtype=np.float32)
        if x.shape[1] != d:
            raise DataError(f"{source}: column '{col}' has embedding width {x.shape[1]}, the model expects {d}; encode with embeddings from the same embedding model")
        if spec.normalize:
            x = l2_normalize(x)
        if len(spec.columns) > 1:
            x = x * np.float32(np.sqrt(w / total))
        parts.append(x.astype(np.float32, copy=False))
    out = parts[0] if len(parts) == 1 else np.concatenate(parts, axis=1)
    return np.ascontiguousarray(out, dtype=np.float32)
