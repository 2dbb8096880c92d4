"""The one suffix rule (sidkit.dedup.suffix): kept items keep their suffix, every other item of a
bucket gets the next free suffix in item-id order; fit's rule is the case with nothing kept."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest

from sidkit.dedup.suffix import assign_suffix, fill_suffixes, kept_suffixes


def _slow(keys, ids, m_rows):
    """The rule, one row at a time: ``m_rows`` the model's (id, key, suffix)."""
    model = {i: (k, s) for i, k, s in m_rows}
    taken: dict = {}
    for _, k, s in m_rows:
        taken[k] = max(taken.get(k, -1), s)
    out = [None] * len(keys)
    for r, (i, k) in enumerate(zip(ids, keys)):
        if i in model and model[i][0] == k:
            out[r] = model[i][1]
            taken[k] = max(taken.get(k, -1), out[r])
    for r in sorted(range(len(keys)), key=lambda r: ids[r]):
        if out[r] is None:
            out[r] = taken.get(keys[r], -1) + 1
            taken[keys[r]] = out[r]
    return out


@pytest.mark.parametrize("kind", ["int", "str", "unicode"])
@pytest.mark.parametrize("seed", range(6))
def test_vectorised_rule_equals_the_slow_reference(kind, seed):
    rng = np.random.default_rng(seed)
    n, m = int(rng.integers(1, 300)), int(rng.integers(0, 200))
    pool = rng.permutation(4 * (n + m))[: n + m]
    if kind == "int":
        mk = lambda v: int(v) - 500  # noqa: E731  (negative ids too)
    elif kind == "str":
        mk = lambda v: f"i{int(v) * 7919 % 1000:03d}-{int(v)}"  # noqa: E731
    else:
        mk = lambda v: ["é", "z", "Z", "ä", "a", "日本", "😀"][int(v) % 7] + str(int(v))  # noqa: E731
    all_ids = [mk(v) for v in pool]
    m_ids, extra = all_ids[:m], all_ids[m:]
    # the input: some model items (some moved to another key), the rest new
    take = rng.choice(m, size=min(m, n // 2), replace=False) if m else np.zeros(0, int)
    in_ids = [m_ids[i] for i in take] + extra[: n - len(take)]
    in_ids = [in_ids[i] for i in rng.permutation(len(in_ids))]
    n = len(in_ids)
    keys = rng.integers(0, 6, n).astype(np.int64)
    m_keys = rng.integers(0, 6, m).astype(np.int64)
    m_suf = np.zeros(m, np.int32)
    for k in range(6):  # the model's suffixes: a bucket's are distinct, with gaps
        rows = np.flatnonzero(m_keys == k)
        m_suf[rows] = np.sort(rng.choice(3 * len(rows) + 1, len(rows), replace=False))
    ids_a = pa.array(in_ids)
    m_ids_a = pa.array(m_ids, ids_a.type) if m else pa.array([], ids_a.type)
    kept = kept_suffixes(keys, ids_a, m_keys, m_ids_a, m_suf)
    got = fill_suffixes(keys, kept, m_keys, m_suf, ids_a)
    want = _slow(keys.tolist(), in_ids, list(zip(m_ids, m_keys.tolist(), m_suf.tolist())))
    assert got.tolist() == want
    # numpy ids give the same order as Arrow ids
    assert fill_suffixes(keys, kept, m_keys, m_suf, np.array(in_ids, dtype=object)).tolist() == want


@pytest.mark.parametrize("seed", range(4))
def test_nothing_kept_is_fits_rule(seed):
    rng = np.random.default_rng(seed)
    n = 500
    codes = rng.integers(0, 3, (n, 2)).astype(np.int32)
    for ids in (rng.permutation(10 * n)[:n].astype(np.int64), np.array([f"x{v}" for v in rng.permutation(10 * n)[:n]], dtype=object)):
        keys = codes[:, 0].astype(np.int64) * 3 + codes[:, 1]
        got = fill_suffixes(keys, np.full(n, -1, np.int32), np.zeros(0, np.int64), np.zeros(0, np.int32), pa.array(ids.tolist()))
        assert got.tolist() == assign_suffix(codes, ids).tolist()
