"""Attribute codebooks and the deterministic encoding of METHODS.md §5.5.

Slot layout of every group: 0 = NULL (no word in the group's categories), 1 = OTHER (only words
outside the kept vocabulary), 2 .. 2+K-1 = the K kept words (most frequent first), then the
reserved slots ``<g{g}_r{k}>``. Reserved slots are never produced by fitting; only a binding
(``bind-slot``) makes an item land on one.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Mapping, Sequence

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
