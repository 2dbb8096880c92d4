"""Zero-Collision Reassignment (ZCR, METHODS.md §1.9): collision-free SIDs of the same length.

Items that share a full SID are separated by changing only their last-level code, inside their
prefix group (the items with the same first L-1 codes). Per colliding group one assignment
problem (items x free codes, each code used once) is solved with a lexicographic objective:
fewest items moved first, then the least total increase of the squared distance from the item's
last-level residual ``r`` to its code, ``||r - C[v]||^2 - ||r - C[c]||^2``. Items whose SID does
not collide keep it and block their code. A group with more items than the last codebook has
codes cannot be made collision-free this way: it keeps its codes and its items keep suffixes.

Only the rows of colliding groups are touched (their residuals are asked for through
``residuals(rows)``), so the cost is O(colliding rows), not O(catalog).

:func:`zcr_reference` is the slow brute force the tests compare against.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from typing import Callable

import numpy as np

from sidkit.dedup.suffix import assign_suffix, fill_suffixes, in_id_order, kept_rows
from sidkit.io.codes import pack_keys

DEDUP_METHODS = ("suffix", "zcr", "none")


@dataclass
class ZCRResult:
    codes: np.ndarray  # (n, L) int32, last level reassigned
    suffix: np.ndarray  # (n,) int32: 0 except in groups ZCR could not resolve
    stats: dict = field(default_factory=dict)


def _runs(keys: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Start and end offsets of the runs of equal values in a sorted array."""
    if not len(keys):
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    brk = np.flatnonzero(keys[1:] != keys[:-1]) + 1
    starts = np.concatenate([[0], brk])
    ends = np.concatenate([brk, [len(keys)]])
    return starts, ends


def prefix_keys(codes: np.ndarray, sizes: list[int]) -> np.ndarray:
    """One key per row for its first L-1 codes (all equal when L = 1)."""
    if codes.shape[1] < 2:
        return np.zeros(len(codes), np.int64)
    return pack_keys(np.ascontiguousarray(codes[:, :-1]), list(sizes[:-1]))


def solve_group(cur: np.ndarray, dist: np.ndarray, free: np.ndarray) -> tuple[np.ndarray, float]:
    """One group's assignment. ``cur`` (m,) the movable items' codes, ``dist`` (m, V) squared
    distances of their residuals to every last-level code, ``free`` the codes they may take
    (their own codes included). Returns the new codes and the total cost increase."""
    from scipy.optimize import linear_sum_assignment

    delta = dist[:, free] - dist[np.arange(len(cur)), cur][:, None]
    moved = (free[None, :] != cur[:, None]).astype(np.float64)
    big = float(np.abs(delta).sum()) + 1.0  # one move more costs more than any distance total
    r, c = linear_sum_assignment(moved * big + delta)
    new = cur.copy()
    new[r] = free[c]
    cost = float((dist[np.arange(len(cur)), new] - dist[np.arange(len(cur)), cur]).sum())
    return new, cost


def _reassign_group(codes: np.ndarray, mov: np.ndarray, fixed: np.ndarray, Rg: np.ndarray, C: np.ndarray,
                    cn: np.ndarray, V: int) -> tuple[np.ndarray, list[float]]:
    """One prefix group: the new last codes of its colliding rows ``mov`` (residuals ``Rg``),
    the codes of its non-colliding rows ``fixed`` blocked; and the cost increase of each moved item."""
    blocked = np.zeros(V, bool)
    blocked[codes[fixed, -1]] = True
    free = np.flatnonzero(~blocked)
    dist = (Rg * Rg).sum(1)[:, None] - 2 * Rg @ C.T + cn[None, :]
    cur = codes[mov, -1].astype(np.int64)
    got, _ = solve_group(cur, dist, free)
    idx = np.arange(len(cur))[got != cur]
    return got, (dist[idx, got[idx]] - dist[idx, cur[idx]]).tolist()


def zcr_reassign(codes: np.ndarray, item_ids, sizes: list[int],
                 residuals: Callable[[np.ndarray], tuple[np.ndarray, np.ndarray]]) -> ZCRResult:
    """ZCR over a whole table. ``residuals(rows)`` returns the last-level residuals of those rows
    (len(rows), d) and the last codebook (V, d). Deterministic: groups and items in id order."""
    codes = np.ascontiguousarray(codes, dtype=np.int32)
    n, L = codes.shape
    V = int(sizes[-1])
    ids = np.asarray(item_ids)
    full = pack_keys(codes, list(sizes))
    _, inv, cnt = np.unique(full, return_inverse=True, return_counts=True)
    colliding = cnt[inv.ravel()] > 1
    stats = {"method": "zcr", "items_colliding_before": int(colliding.sum()),
             "collision_rate_before": round(float(1 - len(cnt) / n), 6) if n else 0.0,
             "items_moved": 0, "groups": 0, "groups_resolved": 0, "groups_unresolved": 0,
             "items_unresolved": 0, "mean_cost": 0.0, "max_cost": 0.0, "total_cost": 0.0}
    new = codes.copy()
    if not colliding.any():
        return ZCRResult(new, np.zeros(n, np.int32), stats)
    pre = prefix_keys(codes, sizes)
    groups = np.unique(pre[colliding])
    rows = np.flatnonzero(np.isin(pre, groups))
    order = np.lexsort((ids[rows], pre[rows]))
    rows = rows[order]
    starts, ends = _runs(pre[rows])
    sizes_g = ends - starts
    ok = sizes_g <= V
    movable = rows[np.repeat(ok, sizes_g) & colliding[rows]]
    R, C = residuals(movable) if len(movable) else (np.zeros((0, 1), np.float32), np.zeros((V, 1), np.float32))
    R = np.asarray(R, np.float64)
    C = np.asarray(C, np.float64)
    cn = (C * C).sum(1)
    costs = []
    stats["groups"] = int(len(starts))
    at = 0  # the movable rows of group g are the next len(mov) rows of ``movable`` (and of R)
    for g in range(len(starts)):
        members = rows[starts[g]:ends[g]]
        if not ok[g]:
            stats["groups_unresolved"] += 1
            stats["items_unresolved"] += int(len(members))
            continue
        mov = members[colliding[members]]
        got, cost_of_moved = _reassign_group(codes, mov, members[~colliding[members]], R[at:at + len(mov)], C, cn, V)
        at += len(mov)
        new[mov, -1] = got
        stats["groups_resolved"] += 1
        stats["items_moved"] += len(cost_of_moved)
        costs.extend(cost_of_moved)
    if costs:
        c = np.asarray(costs)
        stats.update(mean_cost=round(float(c.mean()), 6), max_cost=round(float(c.max()), 6), total_cost=round(float(c.sum()), 6))
    stats["moved_fraction"] = round(stats["items_moved"] / n, 6) if n else 0.0
    suffix = assign_suffix(new, ids) if stats["groups_unresolved"] else np.zeros(n, np.int32)
    return ZCRResult(new, suffix, stats)


def zcr_reference(codes: np.ndarray, R: np.ndarray, C: np.ndarray) -> tuple[int, float]:
    """Brute force over one prefix group (slow; tests only): every injective assignment of the
    colliding items to codes not held by a non-colliding item. Returns (fewest moves, least cost
    at that number of moves)."""
    last = codes[:, -1]
    vals, cnt = np.unique(last, return_counts=True)
    coll = np.isin(last, vals[cnt > 1])
    mov = np.flatnonzero(coll)
    free = [v for v in range(len(C)) if v not in set(last[~coll].tolist())]
    d = ((R[:, None, :] - C[None, :, :]) ** 2).sum(-1)
    best = None
    for perm in itertools.permutations(free, len(mov)):
        moves = sum(int(p != last[i]) for i, p in zip(mov, perm))
        cost = sum(d[i, p] - d[i, last[i]] for i, p in zip(mov, perm))
        if best is None or (moves, cost) < best:
            best = (moves, cost)
    return best if best is not None else (0, 0.0)


# ---------------------------------------------------------------------------------------------
# encode-time placement (METHODS.md §1.9, DESIGN): existing items keep their codes, a new item
# takes its own code if free, else the nearest free code of its prefix group among its
# ``ZCR_CANDIDATES`` nearest last-level codes, else a suffix.

ZCR_CANDIDATES = 16


def last_level_candidates(R: np.ndarray, C: np.ndarray, m: int = ZCR_CANDIDATES) -> np.ndarray:
    """The ``m`` nearest last-level codes of each residual, nearest first (n, m) int16/int32."""
    m = min(m, len(C))
    d = (R * R).sum(1)[:, None] - 2 * R @ C.T + (C * C).sum(1)[None, :]
    part = np.argpartition(d, m - 1, axis=1)[:, :m] if m < len(C) else np.tile(np.arange(len(C)), (len(R), 1))
    dd = np.take_along_axis(d, part, 1)
    o = np.lexsort((part, dd), axis=1)
    out = np.take_along_axis(part, o, 1)
    return out.astype(np.int16 if len(C) <= 32767 else np.int32)


def full_keys(prefix: np.ndarray, last: np.ndarray) -> np.ndarray:
    """One opaque key per (prefix key, last code): a row's full SID, comparable across arrays
    of the same prefix-key kind (int64, or bytes for wide keys)."""
    n = len(prefix)
    w = 8 if prefix.dtype == np.int64 else prefix.dtype.itemsize
    pb = (prefix.astype(">i8").view(np.uint8) if prefix.dtype == np.int64 else np.frombuffer(prefix.tobytes(), np.uint8)).reshape(n, w)
    lb = np.asarray(last).astype(">i4").view(np.uint8).reshape(n, 4)
    both = np.ascontiguousarray(np.hstack([pb, lb]))
    return both.view(np.dtype((np.void, both.shape[1]))).ravel()


def place_new(prefix: np.ndarray, last: np.ndarray, cand: np.ndarray, pending: np.ndarray,
              taken_prefix: np.ndarray, taken_last: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Encode-time rule over one partition. ``prefix``/``last`` every row's prefix key and
    natural last code, ``cand`` its candidate codes (nearest first), ``pending`` the rows to
    place, in the order they choose (the others keep what they have and are in ``taken_*``). Returns the new
    last codes of every row and a mask of the rows that found no free code (they get a suffix)."""
    out = last.astype(np.int64).copy()
    spill = np.zeros(len(last), bool)
    pending = np.asarray(pending, np.int64)
    if not len(pending):
        return out, spill
    # A prefix group where no pending row's own code is held (by a kept row or another pending
    # row) places every row on its own code: only the other, contested groups need the row-order
    # walk below, so the Python work is O(rows of contested groups), not O(partition).
    own = full_keys(prefix[pending], last[pending])
    o = np.argsort(own, kind="stable")
    same = own[o][1:] == own[o][:-1]
    clash = np.zeros(len(pending), bool)
    clash[o[1:][same]] = clash[o[:-1][same]] = True
    clash |= np.isin(own, full_keys(taken_prefix, taken_last))
    if not clash.any():
        return out, spill
    contested = np.unique(prefix[pending[clash]])
    walk = pending[np.isin(prefix[pending], contested)]
    mine = np.isin(taken_prefix, contested)
    taken: dict = {}
    for p, v in zip(taken_prefix[mine].tolist(), taken_last[mine].tolist()):
        taken.setdefault(p, set()).add(v)
    pk = prefix.tolist()  # ints, or bytes for wide keys
    for i in walk.tolist():
        s = taken.setdefault(pk[i], set())
        v = int(last[i])
        if v in s:
            v = next((int(c) for c in cand[i] if int(c) not in s), -1)
            if v < 0:
                spill[i] = True
                continue
        s.add(v)
        out[i] = v
    return out, spill


def zcr_partition(prefix: np.ndarray, last: np.ndarray, cand: np.ndarray, ids,
                  m_prefix: np.ndarray, m_last: np.ndarray, m_ids, m_suffix: np.ndarray) -> tuple[np.ndarray, np.ndarray, int]:
    """The encode-time ZCR rule over one partition of rows (in input order) and the model's rows
    with the same prefix keys: a row whose id is in the model with the same prefix keeps the
    model's last code and suffix; every other row, in item-id order, takes its own last code if
    no item holds it, else the nearest free one of its candidates, else the next free suffix of
    its own SID (the suffix rule, also in item-id order), so the result does not depend on the
    input's row order or sharding. Returns (last codes, suffixes, the rows placed: not kept from
    the model, in item-id order)."""
    n = len(prefix)
    out_last = np.asarray(last, np.int64).copy()
    suf = np.full(n, -1, np.int32)
    kept = np.zeros(n, bool)
    same, at = kept_rows(prefix, ids, m_prefix, m_ids)
    out_last[same] = m_last[at]
    suf[same] = m_suffix[at]
    kept[same] = True
    pending = in_id_order(ids, np.flatnonzero(~kept))  # new rows choose in item-id order
    placed, spill = place_new(prefix, out_last, cand, pending,
                              np.concatenate([m_prefix, prefix[kept]]) if len(m_prefix) or kept.any() else prefix[:0],
                              np.concatenate([m_last.astype(np.int64), out_last[kept]]))
    out_last[pending] = placed[pending]
    suf[pending[~spill[pending]]] = 0
    if spill.any():
        suf = fill_suffixes(full_keys(prefix, out_last), suf, full_keys(m_prefix, m_last), m_suffix, ids)
    return out_last.astype(np.int32), suf, pending
