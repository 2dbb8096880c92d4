"""Attribute codebooks and the deterministic encoding of METHODS.md §5.5.

Slot layout of every group: 0 = NULL (no word in the group's categories), 1 = OTHER (only words
outside the kept vocabulary), 2 .. 2+K-1 = the K kept words (most frequent first), then the
reserved slots ``<g{g}_r{k}>``. Reserved slots are never produced by fitting; only a binding
(``bind-slot``) makes an item land on one.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, field
from typing import Iterable, Mapping, Sequence

import numpy as np

from sidkit.kae.plan import CategoryWords, normalize_word

NULL, OTHER, FIRST_WORD = 0, 1, 2


@dataclass
class Binding:
    """A reserved slot bound to a word (and aliases); higher version wins among matches."""

    group: int
    slot: int
    category: str
    word: str
    aliases: list[str] = field(default_factory=list)
    version: int = 0
    scorer: tuple[np.ndarray, float] | None = None  # routing row (w, b) in the group's scorer space

    def terms(self) -> list[str]:
        return [normalize_word(self.word)] + [normalize_word(a) for a in self.aliases if normalize_word(a)]


@dataclass
class GroupCodebook:
    """One KAE group: its categories, kept words (active slots) and reserved slots."""

    name: str
    categories: list[str]
    words: list[tuple[str, str]]  # (category, normalized word) of active slot FIRST_WORD + i
    counts: list[int]
    n_reserved: int

    def __post_init__(self) -> None:
        self._slot = {cw: FIRST_WORD + i for i, cw in enumerate(self.words)}
        # specificity rank: lower count first (most specific), ties: category priority, then lexicographic
        prio = {c: i for i, c in enumerate(self.categories)}
        order = sorted(range(len(self.words)), key=lambda i: (self.counts[i], prio.get(self.words[i][0], 1 << 30), self.words[i][1]))
        self.rank = np.empty(len(self.words) + FIRST_WORD, np.int64)
        self.rank[:FIRST_WORD] = 1 << 40
        for r, i in enumerate(order):
            self.rank[FIRST_WORD + i] = r
        self._by_word: dict[str, int] = {}
        for (c, w), s in sorted(self._slot.items(), key=lambda kv: self.rank[kv[1]], reverse=True):
            self._by_word[w] = s  # the most specific active slot of a word, any category

    @property
    def n_active(self) -> int:
        return len(self.words)

    @property
    def size(self) -> int:
        return FIRST_WORD + len(self.words) + self.n_reserved

    @property
    def reserved_slots(self) -> range:
        return range(FIRST_WORD + len(self.words), self.size)

    def active_slot(self, category: str, word: str) -> int | None:
        return self._slot.get((category, word))

    def active_slot_of_word(self, word: str) -> int | None:
        return self._by_word.get(normalize_word(word))

    def slot_label(self, slot: int, bindings: Sequence[Binding] = ()) -> tuple[str, str | None, str | None]:
        """(kind, category, word) of a slot: kind in null / other / active / reserved-free / reserved-bound."""
        if slot == NULL:
            return "null", None, None
        if slot == OTHER:
            return "other", None, None
        if FIRST_WORD <= slot < FIRST_WORD + len(self.words):
            c, w = self.words[slot - FIRST_WORD]
            return "active", c, w
        for b in bindings:
            if b.slot == slot:
                return "reserved-bound", b.category, b.word
        return "reserved-free", None, None

    def to_dict(self) -> dict:
        return {"name": self.name, "categories": list(self.categories), "n_reserved": self.n_reserved,
                "words": [[c, w, int(n)] for (c, w), n in zip(self.words, self.counts)]}

    @classmethod
    def from_dict(cls, d: Mapping) -> "GroupCodebook":
        words = [(str(c), str(w)) for c, w, _ in d["words"]]
        return cls(str(d["name"]), [str(c) for c in d["categories"]], words, [int(n) for _, _, n in d["words"]], int(d["n_reserved"]))


RESERVOIR_WORDS = 32  # words of one group kept per reservoir item (the rest are dropped)


def word_hash(word: str) -> int:
    """A stable non-zero 63-bit hash of a normalized word (0 is the padding of ``word_hash_table``)."""
    h = int.from_bytes(hashlib.blake2b(word.encode("utf-8"), digest_size=8).digest(), "little") >> 1
    return h or 1


def word_hash_table(words: Mapping[str, CategoryWords], categories: Sequence[str], rows: np.ndarray,
                    max_words: int = RESERVOIR_WORDS) -> np.ndarray:
    """(len(rows), W) int64: hashes of every word, kept by the plan or not, that each item of
    ``rows`` (sorted item indices) has in any of ``categories``; 0 pads, W >= 1. An item with
    more than ``max_words`` words keeps ``max_words`` of them (those of the smallest hashes)."""
    rows = np.asarray(rows, np.int64)
    at, hs = [], []
    for c in categories:
        cw = words.get(c)
        if cw is None or not len(cw.items) or not len(rows):
            continue
        pos = np.minimum(np.searchsorted(rows, cw.items), len(rows) - 1)
        hit = rows[pos] == cw.items
        if not hit.any():
            continue
        codes = cw.codes[hit]
        used = np.unique(codes)
        lut = np.zeros(len(cw.vocab), np.int64)
        lut[used] = [word_hash(cw.vocab[int(k)]) for k in used]
        at.append(pos[hit])
        hs.append(lut[codes])
    if not at:
        return np.zeros((len(rows), 1), np.int64)
    pairs = np.unique(np.stack([np.concatenate(at), np.concatenate(hs)], axis=1), axis=0)  # sorted by row
    r, h = pairs[:, 0], pairs[:, 1]
    start = np.searchsorted(r, r, side="left")
    rank = np.arange(len(r)) - start
    keep = rank < max_words
    out = np.zeros((len(rows), max(1, int(rank[keep].max()) + 1)), np.int64)
    out[r[keep], rank[keep]] = h[keep]
    return out


def table_carriers(table: np.ndarray | None, terms: Iterable[str]) -> np.ndarray | None:
    """Rows of a ``word_hash_table`` that have one of ``terms`` (None without a table)."""
    if table is None:
        return None
    return np.isin(table, np.array([word_hash(t) for t in terms], np.int64)).any(axis=1)


_TOKEN = re.compile(r"\w+")


def _tokens(text: str) -> str:
    """' tok1 tok2 ... ' of a normalized text (for whole-token phrase matching)."""
    return " " + " ".join(_TOKEN.findall(normalize_word(text))) + " "


def text_matches(texts: Sequence[str], bindings: Sequence[Binding]) -> np.ndarray:
    """Slot of the most recent binding whose word or alias occurs in each text as whole tokens
    (a phrase for multi-word terms), -1 where none does (METHODS.md §5.5 ``matches``)."""
    out = np.full(len(texts), -1, np.int64)
    terms = []
    for b in sorted(bindings, key=lambda b: -b.version):  # most recent first
        for t in b.terms():
            tt = _tokens(t)
            if tt.strip():
                terms.append((tt, b.slot))
    if not terms:
        return out
    for i, text in enumerate(texts):
        if not text:
            continue
        tok = _tokens(text)
        for tt, slot in terms:
            if tt in tok:
                out[i] = slot
                break
    return out


def encode_group(book: GroupCodebook, words: Mapping[str, CategoryWords], n: int,
                 bindings: Sequence[Binding] = ()) -> tuple[np.ndarray, np.ndarray]:
    """The §5.5 rule for one group over n items.

    Returns (slots int32 (n,), missing bool (n,)): ``missing`` marks items with no word in any
    category of the group (slot NULL, to be routed by content when a scorer is available).
    """
    INF = np.int64(1 << 50)
    best_rank = np.full(n, INF, np.int64)
    bound_ver = np.full(n, -1, np.int64)
    has_word = np.zeros(n, bool)
    term_map: dict[str, tuple[int, int]] = {}
    for b in sorted(bindings, key=lambda b: b.version):
        for t in b.terms():
            term_map[t] = (b.version, b.slot)  # most recent binding of a term wins
    ver_slot = {v: s for v, s in term_map.values()}
    for cat in book.categories:
        cw = words.get(cat)
        if cw is None or not len(cw.items):
            continue
        has_word[cw.items] = True
        v_rank = np.array([book.rank[s] if (s := book.active_slot(cat, w)) is not None else INF for w in cw.vocab] + [INF], np.int64)
        np.minimum.at(best_rank, cw.items, v_rank[cw.codes])
        if term_map:
            v_ver = np.array([term_map.get(w, (-1, -1))[0] for w in cw.vocab] + [-1], np.int64)
            np.maximum.at(bound_ver, cw.items, v_ver[cw.codes])
    slots = np.where(has_word, OTHER, NULL).astype(np.int64)
    act = best_rank < INF
    if act.any():
        rank_to_slot = np.empty(len(book.words), np.int64)
        rank_to_slot[book.rank[FIRST_WORD:]] = np.arange(FIRST_WORD, FIRST_WORD + len(book.words))
        slots[act] = rank_to_slot[best_rank[act]]
    bnd = bound_ver >= 0
    if bnd.any():
        uv, inv = np.unique(bound_ver[bnd], return_inverse=True)
        slots[bnd] = np.array([ver_slot[int(v)] for v in uv], np.int64)[inv]
    return slots.astype(np.int32), ~has_word
