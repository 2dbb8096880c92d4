from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO.parent / "shared" / "data"


def emb_array(X: np.ndarray, fixed: bool = True) -> pa.Array:
    X = np.asarray(X, dtype=np.float32)
    flat = pa.array(X.reshape(-1), pa.float32())
    if fixed:
        return pa.FixedSizeListArray.from_arrays(flat, X.shape[1])
    return pa.ListArray.from_arrays(pa.array(np.arange(0, X.size + 1, X.shape[1], dtype=np.int32)), flat)


def write_items(path: Path, ids, X: np.ndarray, **extra) -> Path:
    cols = {"item_id": pa.array(list(ids)), "embedding": emb_array(X)}
    cols.update(extra)
    pq.write_table(pa.table(cols), path)
    return path


def planted(n_clusters: int = 4, n_sub: int = 2, per: int = 20, dim: int = 8, seed: int = 0, spread=(10.0, 2.0, 0.01)):
    """Points in n_clusters well-separated clusters, each with n_sub well-separated sub-clusters.

    Returns X (n, dim), cluster labels, sub-cluster labels.
    """
    rng = np.random.default_rng(seed)
    top = rng.normal(size=(n_clusters, dim)) * spread[0]
    sub = rng.normal(size=(n_clusters, n_sub, dim)) * spread[1]
    X, cl, sc = [], [], []
    for c in range(n_clusters):
        for s in range(n_sub):
            X.append(top[c] + sub[c, s] + rng.normal(size=(per, dim)) * spread[2])
            cl += [c] * per
            sc += [s] * per
    return np.concatenate(X).astype(np.float32), np.array(cl), np.array(sc)


@pytest.fixture
def small_catalog(tmp_path) -> Path:
    X, _, _ = planted(n_clusters=8, n_sub=4, per=10, dim=16)
    ids = [f"it{i:04d}" for i in range(len(X))]
    return write_items(tmp_path / "items.parquet", ids, X, title=pa.array([f"title {i}" for i in range(len(X))]))


def shared_items(name: str) -> Path:
    p = SHARED_DATA / name / "items.parquet"
    if not p.exists():
        pytest.skip(f"{p} is absent (../shared/data not laid beside the repo)")
    return p
