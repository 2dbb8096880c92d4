"""From generated SID strings back to item ids (``sidkit lookup``, :func:`sidkit.lookup`).

A string is read as a run of tokens of the token format (``<a_12><b_3><c_77><d_0>``), optionally
wrapped in ``<|sid_begin|>`` / ``<|sid_end|>`` and surrounded by spaces. With all L core tokens
plus the suffix token it names at most one item; with the L core tokens only it names every
item of that core SID (all the items of a collided SID). Anything else (other text, levels out of
order, a missing or extra token, a SID no item has) gives an empty list.
"""

from __future__ import annotations

import numpy as np

from sidkit.formats.tokens import BEGIN, END, check_token_format, letter_level, token_regex


class SidIndex:
    """A SID table held for lookups: :meth:`lookup` maps a batch of strings to item-id lists."""

    def __init__(self, ids, codes: np.ndarray, suffix: np.ndarray | None, *, token_format: str | None = None):
        from sidkit.io.codes import pack_keys

        self.fmt = check_token_format(token_format)
        self._re = token_regex(self.fmt)
        a = np.asarray(ids)
        self.ids = a
        self.codes = np.asarray(codes, dtype=np.int64)
        self.n, self.L = self.codes.shape
        self.suffix = None if suffix is None else np.asarray(suffix, dtype=np.int64)
        self.sizes = [int(self.codes[:, l].max()) + 1 for l in range(self.L)]
        keys = pack_keys(self.codes, self.sizes)
        sfx = self.suffix if self.suffix is not None else np.zeros(self.n, np.int64)
        if keys.dtype == np.int64:
            self.order = np.lexsort((sfx, keys))
        else:
            self.order = np.array(sorted(range(self.n), key=lambda i: (keys[i], sfx[i])), dtype=np.int64)
        self.keys = keys[self.order]
        self.sfx_sorted = sfx[self.order]

    @classmethod
    def from_table(cls, codes_path, *, token_format: str | None = None, id_col: str | None = None, suffix: str = "auto"):
        from sidkit.io.sidtable import read_sid_table

        ids, codes, sfx, _, _ = read_sid_table(codes_path, id_col=id_col, suffix=suffix)
        return cls(ids, codes, sfx, token_format=token_format)

    def parse(self, s: str):
        """(codes tuple, suffix or None) of one string, or None when it is not a SID of this table's shape."""
        if not isinstance(s, str):
            return None
        t = s.strip()
        t = t.removeprefix(BEGIN)
        t = t.removesuffix(END)
        t = t.strip()
        vals = []
        pos = 0
        while pos < len(t):
            m = self._re.match(t, pos)
            if m is None or m.end() == pos:
                return None
            if letter_level(m.group("level")) != len(vals):
                return None
            vals.append(int(m.group("code")))
            pos = m.end()
        if len(vals) == self.L:
            return vals, None
        if len(vals) == self.L + 1 and self.suffix is not None:
            return vals[: self.L], vals[self.L]
        return None

    def lookup(self, strings) -> list[list]:
        """Item ids for each string (see the module docstring); same order as ``strings``."""
        from sidkit.io.codes import pack_keys

        strings = list(strings)
        m = len(strings)
        q = np.zeros((m, self.L), np.int64)
        qs = np.full(m, -1, np.int64)
        ok = np.zeros(m, bool)
        for i, s in enumerate(strings):
            p = self.parse(s)
            if p is None:
                continue
            vals, sf = p
            if any(v >= k for v, k in zip(vals, self.sizes)):
                continue  # a code no item has
            q[i] = vals
            qs[i] = -1 if sf is None else sf
            ok[i] = True
        out: list[list] = [[] for _ in range(m)]
        if not ok.any():
            return out
        qi = np.flatnonzero(ok)
        qk = pack_keys(q[qi], self.sizes)
        lo = np.searchsorted(self.keys, qk, side="left")
        hi = np.searchsorted(self.keys, qk, side="right")
        for j, a, b in zip(qi, lo, hi):
            if a == b:
                continue
            rows = self.order[a:b]
            if qs[j] >= 0:
                rows = rows[self.sfx_sorted[a:b] == qs[j]]
            out[j] = [_py(v) for v in self.ids[rows]]
        return out


def _py(v):
    if isinstance(v, np.generic):
        v = v.item()
    if isinstance(v, bytes):
        v = v.decode("utf-8", "replace")
    return v


def lookup(codes, sids, *, token_format: str | None = None, id_col: str | None = None, suffix: str = "auto") -> list[list]:
    """Item ids for each generated SID string.

    Parameters
    ----------
    codes : a SID table path (any table :func:`~sidkit.io.sidtable.read_sid_table` reads) or a
        :class:`SidIndex` (build one once to look up many batches).
    sids : one string or an iterable of strings such as ``"<a_12><b_3><c_77><d_0>"``.
    token_format : the template the strings use (``<{level}_{code}>`` by default).

    Returns
    -------
    One list of item ids per string: one id for a full SID, all the items of a core SID given
    without its suffix token, ``[]`` for an invalid or unknown SID. A single string gives one list.
    """
    idx = codes if isinstance(codes, SidIndex) else SidIndex.from_table(codes, token_format=token_format, id_col=id_col, suffix=suffix)
    if isinstance(sids, str):
        return idx.lookup([sids])[0]
    return idx.lookup(sids)
