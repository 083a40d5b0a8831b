"""Suffix-array index of the training documents: longest substring of a sample found in training.

The documents are joined into one string, each followed by NUL ("\\x00"), which
sorts below every other character and must not occur in a document. A sample's
match never includes a NUL (the sample is cut at its own NULs), so a match
never runs across the end of a document.

The suffix array is built with numpy by prefix doubling (Manber-Myers with
Larsson-Sadakane's refinement: each round re-sorts only the suffixes whose
rank is still shared). Queries binary-search the suffix array with Python's
``bisect`` comparing string slices, which orders exactly like the array
(code points, shorter prefix first). Written by hand: numpy and the standard
library have no suffix array, and no pinned dependency provides one.
"""

from __future__ import annotations

from bisect import bisect_left, bisect_right
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from canaryaudit.errors import DataError

SEPARATOR = "\x00"


@dataclass(frozen=True)
class Match:
    """The longest substring ``sample[start:end]`` found in the training data.

    ``documents``: how many distinct training documents contain it (k-eidetic k);
    ``occurrences``: how many times it occurs in all of them. All zero when no
    character of the sample occurs in training.
    """

    start: int
    end: int
    documents: int
    occurrences: int

    @property
    def length(self) -> int:
        return self.end - self.start


def _packed_prefix_keys(codes: np.ndarray) -> tuple[np.ndarray, int]:
    """Integer keys that order suffixes by their first ``width`` symbols, and that width.

    Code points are first mapped to dense ranks 1..sigma (0 is "past the end",
    below everything), then ``width`` of them are packed into one int64 so that
    the first sort already separates suffixes by several characters.
    """
    present = np.zeros(int(codes.max()) + 1, dtype=bool)
    present[codes] = True
    dense = np.cumsum(present, dtype=np.int64)[codes]  # 1 = the smallest code point present
    bits = int(dense.max()).bit_length()
    width = max(1, 62 // bits)
    keys = np.zeros(len(codes), dtype=np.int64)
    for offset in range(width):
        keys <<= bits
        keys[: max(0, len(codes) - offset)] |= dense[offset:]
    return keys, width


def _sorted_runs(sorted_keys: np.ndarray, slots: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """For sorted keys at suffix-array ``slots``: each one's group head (slot of the first equal key),
    and whether its group has more than one member (still to be sorted)."""
    new_run = np.empty(len(sorted_keys), dtype=bool)
    new_run[0] = True
    np.not_equal(sorted_keys[1:], sorted_keys[:-1], out=new_run[1:])
    run_starts = np.flatnonzero(new_run)
    run_id = np.cumsum(new_run) - 1
    run_sizes = np.diff(np.append(run_starts, len(sorted_keys)))
    return slots[run_starts][run_id], run_sizes[run_id] > 1


def suffix_array(codes: np.ndarray) -> np.ndarray:
    """Start positions of the suffixes of ``codes`` in lexicographic order (a shorter prefix sorts first).

    Invariant: ``rank[i]`` is the slot in the array of the first suffix that shares
    its first ``h`` symbols with suffix ``i``; sorting each such group by
    ``(rank[i], rank[i + h])`` doubles ``h``. Only shared ranks are re-sorted.
    """
    n = len(codes)
    if n == 0:
        return np.zeros(0, dtype=np.int64)
    keys, h = _packed_prefix_keys(codes)
    order = np.argsort(keys, kind="stable")
    rank = np.empty(n, dtype=np.int64)
    rank[order], shared = _sorted_runs(keys[order], np.arange(n))
    active = np.flatnonzero(shared)  # slots whose suffix still shares its rank
    while len(active):
        items = order[active]
        # rank of the suffix h further on, + 1 so that "past the end" (0) sorts first
        after = np.where(items + h < n, rank[np.minimum(items + h, n - 1)] + 1, 0)
        keys = rank[items] * (n + 1) + after
        resort = np.argsort(keys, kind="stable")
        items, keys = items[resort], keys[resort]
        order[active] = items
        rank[items], shared = _sorted_runs(keys, active)
        active = active[shared]
        h *= 2
    return order


def _codes(text: str) -> np.ndarray:
    """Unicode code points of ``text``, one per character (as Python indexes it)."""
    return np.frombuffer(text.encode("utf-32-le"), dtype=np.uint32)


def _common_prefix_length(a: str, b: str) -> int:
    """Length of the longest common prefix, by binary search on slice equality (C-speed compares)."""
    low, high = 0, min(len(a), len(b))
    while low < high:
        mid = (low + high + 1) // 2
        if a[:mid] == b[:mid]:
            low = mid
        else:
            high = mid - 1
    return low


class TrainingIndex:
    """Suffix array over the training documents; built once, queried per sample."""

    def __init__(self, documents: Sequence[str]) -> None:
        for number, document in enumerate(documents):
            if SEPARATOR in document:
                raise DataError("training documents", f"document {number + 1} contains a NUL character (the separator)")
        self.corpus = "".join(document + SEPARATOR for document in documents)
        lengths = np.fromiter((len(d) + 1 for d in documents), dtype=np.int64, count=len(documents))
        # doc_starts[d] = offset of document d in the corpus
        self.doc_starts = np.cumsum(lengths) - lengths
        self.suffixes = suffix_array(_codes(self.corpus)).astype(np.int64)
        # memoryview indexing returns Python ints: fast for bisect, 8 bytes per suffix
        self._slots = memoryview(self.suffixes)

    @property
    def documents(self) -> int:
        return len(self.doc_starts)

    def _slot_key(self, width: int) -> Callable[[int], str]:
        """Bisect key: the first ``width`` characters of the suffix starting at a corpus position."""
        corpus = self.corpus
        return lambda position: corpus[position : position + width]

    def interval(self, pattern: str) -> tuple[int, int]:
        """Suffix-array slots [lo, hi) of the suffixes that start with ``pattern``."""
        key = self._slot_key(len(pattern))
        lo = bisect_left(self._slots, pattern, key=key)
        hi = bisect_right(self._slots, pattern, lo=lo, key=key)
        return lo, hi

    def occurs(self, pattern: str) -> bool:
        slot = bisect_left(self._slots, pattern, key=self._slot_key(len(pattern)))
        if slot == len(self._slots):
            return False
        position = self._slots[slot]
        return self.corpus[position : position + len(pattern)] == pattern

    def longest_prefix_match(self, query: str) -> int:
        """Length of the longest prefix of ``query`` that occurs in the corpus."""
        slot = bisect_left(self._slots, query, key=self._slot_key(len(query)))
        best = 0
        for neighbour in (slot - 1, slot):
            if 0 <= neighbour < len(self._slots):
                position = self._slots[neighbour]
                best = max(best, _common_prefix_length(query, self.corpus[position : position + len(query)]))
        return best

    def documents_containing(self, pattern: str) -> tuple[int, int]:
        """(distinct documents containing ``pattern``, its occurrences in all of them)."""
        if not pattern:
            return 0, 0
        lo, hi = self.interval(pattern)
        doc_ids = np.searchsorted(self.doc_starts, self.suffixes[lo:hi], side="right") - 1
        return len(np.unique(doc_ids)), hi - lo

    def longest_match(self, sample: str) -> Match:
        """The longest substring of ``sample`` occurring in training (the leftmost among equals)."""
        best_start, best_length = 0, 0
        offset = 0
        for piece in sample.split(SEPARATOR):  # a match never includes the separator
            start, length = self._longest_in_piece(piece, best_length)
            if length > best_length:
                best_start, best_length = offset + start, length
            offset += len(piece) + 1
        documents, occurrences = self.documents_containing(sample[best_start : best_start + best_length])
        return Match(best_start, best_start + best_length, documents, occurrences)

    def longest_match_not_in(self, sample: str, other: TrainingIndex) -> Match:
        """The longest substring of ``sample`` occurring here and nowhere in ``other`` (leftmost among equals).

        Exact: for a start position i, let L(i) be the longest prefix of sample[i:] found here and
        M(i) the longest found in ``other``; sample[i:i+l] is here and not in ``other`` exactly
        when M(i) < l <= L(i) (every prefix of a found string is found too). So the answer is the
        largest L(i) with L(i) > M(i). Used to tell private text from what a public corpus holds.
        """
        best_start, best_length = 0, 0
        offset = 0
        for piece in sample.split(SEPARATOR):
            for i in range(len(piece) - best_length):
                here = self.longest_prefix_match(piece[i:])
                if here > best_length and other.longest_prefix_match(piece[i:]) < here:
                    best_start, best_length = offset + i, here
            offset += len(piece) + 1
        documents, occurrences = self.documents_containing(sample[best_start : best_start + best_length])
        return Match(best_start, best_start + best_length, documents, occurrences)

    def _longest_in_piece(self, piece: str, to_beat: int) -> tuple[int, int]:
        """Leftmost longest match in ``piece`` longer than ``to_beat`` (else length 0).

        Each start position is first tested for a match one longer than the best
        so far (one binary search); only then is its full match length measured.
        """
        best_start, best_length = 0, to_beat
        start = 0
        while start + best_length < len(piece):
            if self.occurs(piece[start : start + best_length + 1]):
                best_start, best_length = start, self.longest_prefix_match(piece[start:])
            start += 1
        return (best_start, best_length) if best_length > to_beat else (0, 0)
