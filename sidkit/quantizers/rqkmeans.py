"""RQ-KMeans (METHODS.md §1.4): faiss k-means per level on the residuals of the previous levels."""

from __future__ import annotations

import math
import time
from typing import Sequence

import numpy as np

from sidkit.errors import ConfigError, opt
from sidkit.quantizers.base import Progress, Tokenizer, check_codes, check_enough_items, items_matrix, resolve_sizes as _sizes
from sidkit.quantizers.rq import capacity_assign, decode_codes, kmeans, residual_encode


class RQKMeans(Tokenizer):
    """Residual k-means tokenizer.

    Parameters
    ----------
    n_levels : number of levels (SID length).
    codebook_size : codes per level, one int or one per level.
    niter : k-means iterations per level.
    train_sample : fit k-means on at most this many rows (a seeded sample); encode all rows.
    balanced : cap each code's load at ceil((1 + balance_slack) * n / K) with alternating
        capacity-constrained assignment and centroid updates.
    random_state : seed.

    Attributes
    ----------
    codebooks_ : list of (K_l, d) float32 arrays.
    inertia_per_level_ : mean squared residual after each level, on the training rows.
    """

    class_name = "RQKMeans"

    def __init__(self, n_levels: int = 3, codebook_size: int | Sequence[int] = 256, *, niter: int = 25,
                 train_sample: int | None = None, balanced: bool = False, balance_slack: float = 0.05,
                 balance_iters: int = 5, random_state: int = 0):
        self.n_levels = n_levels
        self.codebook_size = codebook_size
        self.niter = niter
        self.train_sample = train_sample
        self.balanced = balanced
        self.balance_slack = balance_slack
        self.balance_iters = balance_iters
        self.random_state = random_state

    def fit(self, items, progress: Progress | None = None) -> "RQKMeans":
        """Fit on items (or an (n, d) array); ``progress(stage, done, total, info)``."""
        X = items_matrix(items)
        sizes = _sizes(self.codebook_size, self.n_levels)
        n = X.shape[0]
        check_enough_items(n, sizes)
        rng = np.random.default_rng(self.random_state)
        sample = self.train_sample
        if sample is not None and sample < max(sizes):
            raise ConfigError(f"{opt('train_sample')} {sample} is smaller than the codebook size {max(sizes)}")
        R = X if sample is None or sample >= n else X[np.sort(rng.choice(n, sample, replace=False))]
        R = R.copy()
        self.codebooks_, self.inertia_per_level_ = [], []
        t0 = time.perf_counter()
        for l, k in enumerate(sizes):
            seed = int(rng.integers(0, 2**31 - 1))
            C = kmeans(R, k, niter=self.niter, seed=seed)
            if self.balanced:
                cap = int(math.ceil((1 + self.balance_slack) * R.shape[0] / k))
                for _ in range(self.balance_iters):
                    a = capacity_assign(R, C, cap)
                    sums = np.zeros_like(C)
                    np.add.at(sums, a, R)
                    cnt = np.bincount(a, minlength=k).astype(np.float32)
                    nz = cnt > 0
                    C[nz] = sums[nz] / cnt[nz, None]
                a = capacity_assign(R, C, cap)
            else:
                a = residual_encode(R, [C])[:, 0]
            R -= C[a]
            self.codebooks_.append(C)
            self.inertia_per_level_.append(float((R * R).sum(1).mean()))
            if progress:
                progress("k-means", l + 1, len(sizes), {})
        self.fit_seconds_ = time.perf_counter() - t0
        self.n_features_in_ = X.shape[1]
        return self

    @property
    def codebook_sizes_(self) -> list[int]:
        return [int(c.shape[0]) for c in self.codebooks_]

    @property
    def codebook_sizes(self) -> list[int]:
        self._require_fitted("codebook_sizes")
        return self.codebook_sizes_

    def encode(self, items) -> np.ndarray:
        """Greedy residual codes (n, L) int32 (capacity caps apply only during fit)."""
        self._require_fitted("encode")
        return residual_encode(items_matrix(items, n_features=self.n_features_in_, min_rows=0), self.codebooks_)

    def decode(self, codes: np.ndarray) -> np.ndarray:
        self._require_fitted("decode")
        return decode_codes(check_codes(codes, self.codebook_sizes_), self.codebooks_)

    def zcr_space(self, items, codes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        self._require_fitted("zcr_space")
        X = items_matrix(items, n_features=self.n_features_in_, min_rows=0)
        codes = np.asarray(codes)
        R = X - decode_codes(codes[:, :-1], self.codebooks_[:-1]) if codes.shape[1] > 1 else X.copy()
        return R, self.codebooks_[-1]

    def training_summary(self) -> dict:
        return {"inertia_per_level": self.inertia_per_level_}

    # --- persistence -----------------------------------------------------------------------
    def state_dict(self) -> dict[str, np.ndarray]:
        self._require_fitted("state_dict")
        return {f"rq.codebook.{l}": c for l, c in enumerate(self.codebooks_)}

    def params(self) -> dict:
        return {"n_levels": self.n_levels, "codebook_size": self.codebook_size, "niter": self.niter,
                "train_sample": self.train_sample, "balanced": self.balanced, "balance_slack": self.balance_slack,
                "balance_iters": self.balance_iters, "random_state": self.random_state}

    @classmethod
    def from_state(cls, params: dict, tensors: dict[str, np.ndarray], **kw) -> "RQKMeans":
        m = cls(**params)
        m.codebooks_ = [np.ascontiguousarray(tensors[f"rq.codebook.{l}"], dtype=np.float32) for l in range(params["n_levels"])]
        m.n_features_in_ = m.codebooks_[0].shape[1]
        return m
