"""The tokenizer protocol that every sidkit method implements.

A tokenizer turns items into codes ``(n, L)`` int32. Its input is :class:`Items`: the fused
embeddings ``X`` plus, for tokenizers that read them (KAE), the catalog's attribute and text
columns. A plain ``(n, d)`` array is accepted wherever ``Items`` is. Every tokenizer has

* ``fit(items, *, progress=None)`` and ``encode(items)``; ``decode(codes)`` (a reconstruction
  in embedding space, or None when the method has none);
* ``codebook_sizes``; ``params()``, ``state_dict()`` and the classmethod ``from_state(params,
  tensors)`` (the model directory's ``sidkit.json`` and ``model.safetensors``);
* ``codebooks_table(codes)`` (``codebooks.parquet``), ``extra_files()`` (more files of the model
  directory), ``training_summary()``, ``reconstruction_mse(items)``, ``report_blocks(codes)``
  (method-specific blocks of ``report.json``: data only; the fit summary's entries, notes and
  warnings are made from them in :mod:`sidkit.report.fit`), ``codes_metadata()``,
  ``attribute_columns`` (the catalog columns ``encode`` needs) and ``carry_over(previous_dir,
  items)`` (what a refit keeps from the model it replaces). No hook prints or returns text for
  the user.

``progress`` is always ``(stage, done, total, info)``. Input errors are
:class:`~sidkit.errors.SidkitError` worded for Python callers (:func:`check_matrix`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping

import numpy as np

from sidkit.errors import DataError, NotFittedError

Progress = Callable[[str, int, int, dict], None]


@dataclass
class Items:
    """What a tokenizer fits on and encodes: fused embeddings and the catalog's other columns.

    ``X`` is ``(n, d)`` float32; ``columns`` maps column names to Arrow arrays (or lists) of
    length n; tokenizers that need none ignore it. ``finite``: X is known to be finite (the
    catalog reader checked it), so tokenizers skip that scan."""

    X: np.ndarray
    columns: Mapping[str, Any] = field(default_factory=dict)
    finite: bool = False

    def __len__(self) -> int:
        return len(self.X)


def as_items(data) -> Items:
    """``data`` as :class:`Items` (an array becomes items without columns)."""
    return data if isinstance(data, Items) else Items(data)


def items_matrix(data, *, n_features: int | None = None, min_rows: int = 1) -> np.ndarray:
    """The checked embedding matrix of ``data`` (Items or an array)."""
    it = as_items(data)
    return check_matrix(it.X, n_features=n_features, min_rows=min_rows, finite_known=it.finite)


def check_matrix(X, *, name: str = "X", n_features: int | None = None, min_rows: int = 1,
                 finite_known: bool = False) -> np.ndarray:
    """``X`` as a C-contiguous float32 ``(n, d)`` array, or a DataError that says what is wrong:
    not 2-D, too few rows, NaN or inf (not scanned when ``finite_known``), a width other than
    ``n_features``."""
    try:
        A = np.asarray(X, dtype=np.float32)
    except (TypeError, ValueError) as e:
        raise DataError(f"{name} must be a numeric (n, d) array ({e})") from None
    if A.ndim != 2:
        raise DataError(f"{name} must be a 2-D (n, d) array of embeddings; got an array of shape {A.shape}")
    if A.shape[0] < min_rows:
        raise DataError(f"{name} has {A.shape[0]} rows; at least {min_rows} are needed")
    if A.shape[1] == 0:
        raise DataError(f"{name} has no columns; embeddings need at least one value")
    if n_features is not None and A.shape[1] != n_features:
        raise DataError(f"{name} has {A.shape[1]} columns but the tokenizer was fitted on {n_features}; "
                        "use embeddings from the same embedding model")
    if not finite_known and A.size and not np.isfinite(A).all():
        row = int(np.flatnonzero(~np.isfinite(A).all(axis=1))[0])
        raise DataError(f"{name} has NaN or inf values (first in row {row}); fix or drop those rows")
    return np.ascontiguousarray(A)


def resolve_sizes(codebook_size, n_levels: int) -> list[int]:
    """One codebook size per level from an int, a list or a comma string (ConfigError when they
    disagree or a size is below 2)."""
    from sidkit.config import codebook_sizes
    from sidkit.errors import ConfigError, opt

    if not isinstance(n_levels, (int, np.integer)) or isinstance(n_levels, bool) or n_levels < 1:
        raise ConfigError(f"{opt('levels')} must be at least 1 (got {n_levels!r})")
    sizes = codebook_sizes(codebook_size, int(n_levels))
    if any(k < 2 for k in sizes):
        raise ConfigError(f"{opt('codebook_size')} must be at least 2 (got {sizes})")
    return sizes


def check_enough_items(n: int, sizes: list[int], where: str | None = None) -> None:
    """Fitting needs at least 2 items and at least as many as the largest codebook has codes
    (the one check and the one suggested fix for ``fit`` and every tokenizer)."""
    from sidkit.errors import opt

    head = f"{where}: the catalog has" if where else "there are"
    if n < 2:
        raise DataError(f"{head} {n} item{'s' if n != 1 else ''} to fit; fitting needs at least 2 items (codebooks have at least 2 codes)")
    if n < max(sizes):
        raise DataError(f"{head} {n} items to fit, fewer than the {max(sizes)} codes per level; "
                        f"use {opt('codebook_size')} {max(2, n // 4)} or fewer")


def check_codes(codes, sizes: list[int], name: str = "codes") -> np.ndarray:
    """``codes`` as an ``(n, L)`` int array within the codebooks ``sizes``, or a DataError."""
    C = np.asarray(codes)
    if C.ndim != 2 or C.shape[1] != len(sizes):
        raise DataError(f"{name} must be an (n, {len(sizes)}) array of codes; got shape {C.shape}")
    if C.size and (not np.issubdtype(C.dtype, np.integer) or (C < 0).any() or (C >= np.asarray(sizes)).any()):
        raise DataError(f"{name} must hold integer codes in [0, K) for the codebook sizes {sizes}")
    return C


class Tokenizer:
    """Base class of sidkit's tokenizers (see the module docstring for the protocol)."""

    #: the model-directory name of the class (``sidkit.json`` ``estimator.class``)
    class_name: str = ""

    # -- what subclasses implement
    def fit(self, items, *, progress: Progress | None = None) -> "Tokenizer":
        raise NotImplementedError

    def encode(self, items) -> np.ndarray:
        raise NotImplementedError

    def decode(self, codes) -> np.ndarray | None:
        return None

    @property
    def codebook_sizes(self) -> list[int]:
        raise NotImplementedError

    def params(self) -> dict:
        raise NotImplementedError

    def state_dict(self) -> dict[str, np.ndarray]:
        raise NotImplementedError

    @classmethod
    def from_state(cls, params: Mapping, tensors: Mapping[str, np.ndarray], **kw) -> "Tokenizer":
        raise NotImplementedError

    # -- defaults
    @property
    def attribute_columns(self) -> list[str]:
        """Catalog columns ``encode`` reads besides the embeddings."""
        return []

    def is_fitted(self) -> bool:
        return hasattr(self, "n_features_in_")

    def _require_fitted(self, what: str = "encode") -> None:
        if not self.is_fitted():
            raise NotFittedError(f"this {type(self).__name__} is not fitted yet; call fit() before {what}()")

    def training_summary(self) -> dict:
        return {}

    def reconstruction_mse(self, items, codes: np.ndarray | None = None) -> float | None:
        """Mean squared error of ``decode(codes)`` against X (``codes``: the items' codes when
        known, else encoded here), or None without a decoder."""
        X = as_items(items).X
        rec = self.decode(self.encode(items) if codes is None else codes)
        return None if rec is None else float(((rec - X) ** 2).mean())

    def codebooks_table(self, codes: np.ndarray):
        """One row per (level, code): ``level``, ``code``, ``vector``, usage ``count``."""
        import pyarrow as pa

        books = self.codebooks_
        levels, code, vecs, cnt = [], [], [], []
        for lv, C in enumerate(books):
            k = C.shape[0]
            levels.append(np.full(k, lv, np.int32))
            code.append(np.arange(k, dtype=np.int32))
            vecs.append(np.asarray(C, np.float32).reshape(-1))
            cnt.append(np.bincount(codes[:, lv], minlength=k).astype(np.int64))
        return pa.table({
            "level": np.concatenate(levels),
            "code": np.concatenate(code),
            "vector": pa.FixedSizeListArray.from_arrays(pa.array(np.concatenate(vecs), pa.float32()), books[0].shape[1]),
            "count": np.concatenate(cnt),
        })

    def extra_files(self, fingerprint: str) -> dict[str, Any]:
        """More files of the model directory: name -> Arrow table (Parquet), dict (JSON) or str.
        ``fingerprint`` is the model's (files that name their model record it)."""
        return {}

    def codes_metadata(self) -> dict:
        """Extra keys of ``codes.parquet``'s ``sidkit`` metadata."""
        return {}

    def zcr_space(self, items, codes: np.ndarray) -> tuple[np.ndarray, np.ndarray] | None:
        """The residuals of ``items`` before the last level, given their ``codes`` (n, d), and
        the last codebook (V, d), in the quantizer's own space; None for a tokenizer whose last
        level is not a residual codebook (ZCR, :mod:`sidkit.dedup.zcr`, cannot run on it)."""
        return None

    def encode_zcr(self, items) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """``(codes, residuals before the last level, last codebook)`` of ``items``: what an
        encode of a ZCR model needs per batch. Tokenizers that can share work between the two
        (the RQ-VAE's encoder pass) override it."""
        codes = self.encode(items)
        return (codes, *self.zcr_space(items, codes))

    def report_blocks(self, codes: np.ndarray) -> dict:
        """Method-specific blocks of ``report.json`` for the fitted codes."""
        return {}

    def attach(self, files, meta: dict) -> None:
        """Read the files of its model directory that this tokenizer keeps outside the tensors
        (``files``: a :class:`~sidkit.model.layout.ModelDir`; KAE: ``slots.json``)."""

    def carry_over(self, previous: Path | None, items: Items) -> None:
        """Take over what users added to the model this fit replaces (``previous`` is its
        directory, None when there is none). Called under the model directory's lock, before
        the final encode."""
