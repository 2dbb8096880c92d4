"""Leave-one-out split of an interaction log for downstream evaluation (METHODS.md §6.2).

Rules
-----
* With a ``split`` column (``train`` / ``valid`` / ``test``; ``val`` and ``validation`` are read as
  ``valid``), that column decides. Rows inside a user are ordered by ``timestamp``, else
  ``position``, else file order.
* Without one, each user's rows are ordered by ``timestamp`` (else ``position``): the last item is
  the test target, the second-to-last the validation target, the rest is training. Users with
  fewer than 3 interactions keep all of them for training and are not evaluated. The same rule
  gives QuaSID/AdaSID their training interactions
  (:func:`sidkit.io.interactions.split_interactions`).
* The model input ("history") is the last ``max_history`` (20) items before the target: the
  training items for validation, the training items plus the validation item for test.

Only interactions whose item is in the candidate catalog (the items of the SID tables) are kept;
the caller reports how many were dropped.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field

import numpy as np

from sidkit.errors import DataError
from sidkit.io.interactions import MIN_LEAVE_ONE_OUT, TEST, TRAIN, VALID, split_interactions
from sidkit.io.interactions import read_interactions  # noqa: F401  (re-exported)

MAX_HISTORY = 20


@dataclass
class Split:
    """A leave-one-out split over catalog rows ``0..n_items-1``.

    ``train[u]`` is user ``u``'s chronological training sequence, ``valid[u]`` / ``test[u]`` the
    target row or -1.
    """

    n_items: int
    train: list[np.ndarray]
    valid: np.ndarray
    test: np.ndarray
    max_history: int = MAX_HISTORY
    info: dict = field(default_factory=dict)
    held_out: np.ndarray | None = None  # (n_items,) bool: items kept out of training (sidkit.eval.cold)

    @property
    def n_users(self) -> int:
        return len(self.train)

    def histories(self, which: str) -> tuple[np.ndarray, np.ndarray]:
        """(users, histories (n, max_history) left-padded with -1, targets) for ``valid`` or ``test``.

        Users without a target or without any history are left out.
        """
        if which not in ("valid", "test"):
            raise ValueError(which)
        tgt = self.valid if which == "valid" else self.test
        users, hists, tgts = [], [], []
        H = self.max_history
        for u in range(self.n_users):
            t = tgt[u]
            if t < 0:
                continue
            seq = self.train[u]
            if which == "test" and self.valid[u] >= 0:
                seq = np.append(seq, self.valid[u])
            if len(seq) == 0:
                continue
            seq = seq[-H:]
            row = np.full(H, -1, dtype=np.int64)
            row[H - len(seq):] = seq
            users.append(u)
            hists.append(row)
            tgts.append(t)
        if not users:
            return (np.zeros(0, np.int64), np.zeros((0, H), np.int64), np.zeros(0, np.int64))
        return np.asarray(users, np.int64), np.stack(hists), np.asarray(tgts, np.int64)

    def train_counts(self) -> np.ndarray:
        """Interaction count of each item in the training part."""
        allv = np.concatenate(self.train) if self.train else np.zeros(0, np.int64)
        return np.bincount(allv, minlength=self.n_items)


def split_arrays(users: np.ndarray, items: np.ndarray, *, order: np.ndarray | None = None,
                 split: np.ndarray | None = None, n_items: int, max_history: int = MAX_HISTORY) -> Split:
    """Build a :class:`Split` from parallel arrays.

    ``users``: any hashable values; ``items``: catalog rows (int, >= 0); ``order``: a sort key inside
    each user (timestamp or position), None for the given order; ``split``: codes 0 train, 1 valid,
    2 test, or None for leave-one-out by ``order``.
    """
    n = len(users)
    perm, uinv, part = split_interactions(users, order=order, split=split)
    items = np.asarray(items, np.int64)[perm]
    n_users = int(uinv.max()) + 1 if n else 0
    starts = np.searchsorted(uinv, np.arange(n_users + 1))
    valid = np.full(n_users, -1, np.int64)
    test = np.full(n_users, -1, np.int64)
    train: list[np.ndarray] = []
    for u in range(n_users):
        it, pt = items[starts[u]:starts[u + 1]], part[starts[u]:starts[u + 1]]
        train.append(it[pt == TRAIN])
        v, t = it[pt == VALID], it[pt == TEST]
        if len(v):
            valid[u] = v[-1]
        if len(t):
            test[u] = t[-1]
    n_short = 0 if split is not None else int((np.diff(starts) < MIN_LEAVE_ONE_OUT).sum())
    info = {"n_users": n_users, "n_interactions": int(n), "n_valid_targets": int((valid >= 0).sum()),
            "n_test_targets": int((test >= 0).sum()), "n_users_too_short": n_short,
            "split_by": "split column" if split is not None else "leave-one-out by order"}
    return Split(n_items, train, valid, test, max_history, info)


def load_split(path: str | os.PathLike, catalog_ids, *, max_history: int = MAX_HISTORY) -> Split:
    """Read ``path`` and split it over ``catalog_ids`` (interactions with other items are dropped)."""
    d = read_interactions(path)
    from sidkit.io.ids import map_ids

    rows = map_ids(d["item_id"], catalog_ids)
    keep = rows >= 0
    n_drop = int((~keep).sum())
    if keep.sum() == 0:
        raise DataError(f"{d['path']}: no interaction item is in the SID table(s); the item ids must match the SID tables' ids")
    sp = d["split"][keep] if d["split"] is not None else None
    od = d["order"][keep] if d["order"] is not None else None
    s = split_arrays(d["user_id"][keep], rows[keep], order=od, split=sp, n_items=len(catalog_ids), max_history=max_history)
    s.info["n_interactions_dropped"] = n_drop
    s.info["order_col"] = d["order_col"]
    if s.info["n_test_targets"] == 0:
        raise DataError(f"{d['path']}: no user has a test interaction after the split; each user needs >= 3 interactions or a 'test' row")
    return s
