"""Near-duplicate removal by word-trigram overlap (Carlini et al. 2021, section 5.1).

A sample is a duplicate of a better-ranked *kept* sample when at least
``overlap`` of its distinct word trigrams are also trigrams of that sample.
Samples are compared only with samples already kept, so a duplicate of a
removed duplicate is kept unless it also overlaps a kept sample.

Words are the whitespace-separated tokens of the text, case kept. A sample with
fewer than 3 words has no trigram; it is a duplicate only of a kept sample of
fewer than 3 words with the same normalised text (words joined by one space).

Written by hand: no dependency offers this rule. An inverted index from
trigram to kept samples means each sample is compared only with the kept
samples it shares a trigram with, not with all of them.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from fractions import Fraction

Trigram = tuple[str, str, str]


def word_trigrams(text: str) -> set[Trigram]:
    """The distinct triples of consecutive whitespace-separated words (empty below 3 words)."""
    words = text.split()
    return set(zip(words, words[1:], words[2:]))


def normalised_text(text: str) -> str:
    """Words joined by one space: how samples without trigrams are compared."""
    return " ".join(text.split())


def _exact_fraction(overlap: float) -> Fraction:
    # Fraction(repr(0.3)) is exactly 3/10, so "exactly 30 %" is not lost to binary rounding.
    fraction = Fraction(repr(float(overlap)))
    if not 0 < fraction <= 1:
        raise ValueError(f"overlap must be in (0, 1], got {overlap}")
    return fraction


def _shared_counts(trigrams: set[Trigram], postings: dict[Trigram, list[int]]) -> Counter[int]:
    """For each kept sample sharing a trigram with ``trigrams``: how many it shares."""
    shared: Counter[int] = Counter()
    for trigram in trigrams:
        shared.update(postings.get(trigram, ()))
    return shared


def deduplicate(texts_in_rank_order: Sequence[str], overlap: float = 0.5) -> list[int]:
    """Indices of the samples kept, in rank order (best first, as given).

    A sample is dropped when ``shared >= overlap * own_trigrams`` for some kept
    better-ranked sample, where ``shared`` counts its distinct trigrams that the
    kept sample also has (so 2 of 4 at overlap 0.5 is a duplicate).
    """
    fraction = _exact_fraction(overlap)
    postings: dict[Trigram, list[int]] = {}  # trigram -> kept samples that have it
    short_kept: set[str] = set()  # normalised texts of kept samples with no trigram
    kept: list[int] = []
    for index, text in enumerate(texts_in_rank_order):
        trigrams = word_trigrams(text)
        if not trigrams:
            key = normalised_text(text)
            if key in short_kept:
                continue
            short_kept.add(key)
            kept.append(index)
            continue
        needed = fraction * len(trigrams)
        shared = _shared_counts(trigrams, postings)
        if any(count >= needed for count in shared.values()):
            continue
        for trigram in trigrams:
            postings.setdefault(trigram, []).append(index)
        kept.append(index)
    return kept
