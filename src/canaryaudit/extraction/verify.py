"""Verify generated samples against the training data: memorized substring, PII and canaries in it.

A sample is *memorized* (Carlini et al. 2021) when its longest substring found
in the training documents has at least ``min_chars`` characters and is not
trivial (see ``trivial_reason``); *k-eidetic* k is the number of training
documents containing that substring.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from functools import lru_cache

import numpy as np

from canaryaudit.extraction.index import TrainingIndex
from canaryaudit.pii.detectors import DETECTORS, Detector, build_detectors, detect
from canaryaudit.pii.spans import PII_TYPES

# Triviality thresholds (shares are fractions of characters of the tested text).
WHITESPACE_SHARE = 0.5  # trivial when >= half of all characters are whitespace
PUNCTUATION_SHARE = 0.5  # ... when >= half of the non-whitespace characters are neither letters nor digits
NUMBERS_MAX_LETTER_SHARE = 0.1  # a number sequence has <= 10 % letters among non-whitespace characters
SEQUENCE_MIN_NUMBERS = 4  # ... and >= 4 numbers ("1 2 3 4") or >= 5 digits ("01234")
SEQUENCE_MIN_DIGITS = 5
SEQUENCE_SHARE = 0.8  # ... whose steps are >= 80 % one same step (ends may be cut mid-number)
REPEAT_MAX_UNIT = 16  # a repeated pattern has a unit of <= 16 characters (after collapsing whitespace)
REPEAT_SHARE = 0.8  # ... repeated at least twice over one stretch covering >= 80 % of the text

#: Detectors run on samples, in the sanitize stage's default order (earlier wins overlaps).
DEFAULT_DETECTORS: tuple[str, ...] = tuple(t for t in PII_TYPES if t in DETECTORS)

_NUMBER = re.compile(r"\d+")


def _most_common_share(values: Sequence[int]) -> float:
    return Counter(values).most_common(1)[0][1] / len(values)


def _is_number_sequence(text: str) -> bool:
    """Counting text: "1 2 3 4 5", "10, 20, 30, 40", "0123456789", "9876543".

    Either the numbers step by one same difference, or the digits read one after
    another step by +1 or -1 (mod 10), in >= SEQUENCE_SHARE of the steps.
    """
    visible = [c for c in text if not c.isspace()]
    letters = sum(c.isalpha() for c in visible)
    if not visible or letters > NUMBERS_MAX_LETTER_SHARE * len(visible):
        return False
    numbers = [int(n) for n in _NUMBER.findall(text)]
    if len(numbers) >= SEQUENCE_MIN_NUMBERS:
        if _most_common_share([b - a for a, b in zip(numbers, numbers[1:])]) >= SEQUENCE_SHARE:
            return True
    digits = [int(c) for c in text if c in "0123456789"]
    if len(digits) >= SEQUENCE_MIN_DIGITS:
        steps = [(b - a) % 10 for a, b in zip(digits, digits[1:])]
        counts = Counter(steps)
        if max(counts[1], counts[9]) >= SEQUENCE_SHARE * len(steps):
            return True
    return False


def _longest_true_run(flags: np.ndarray) -> int:
    if not flags.any():
        return 0
    padded = np.concatenate(([False], flags, [False])).astype(np.int8)
    edges = np.flatnonzero(np.diff(padded))  # run starts at even, run ends at odd positions
    return int((edges[1::2] - edges[0::2]).max())


def _is_repeated_pattern(text: str) -> bool:
    """"abcabcabc", "-----", "the the the": a short unit repeated over most of the text.

    Whitespace runs count as one space and case is ignored. For each unit length
    p <= REPEAT_MAX_UNIT, a stretch where ``s[i] == s[i + p]`` for r consecutive i
    is a pattern repeated over r + p characters (at least twice when r >= p).
    """
    normal = " ".join(text.lower().split())
    codes = np.frombuffer(normal.encode("utf-32-le"), dtype=np.uint32)
    for unit in range(1, min(REPEAT_MAX_UNIT, len(codes) // 2) + 1):
        run = _longest_true_run(codes[:-unit] == codes[unit:])
        if run >= unit and run + unit >= REPEAT_SHARE * len(codes):
            return True
    return False


def trivial_reason(text: str) -> str | None:
    """Why ``text`` is trivial memorization (None if it is not): empty, mostly whitespace,
    mostly punctuation, a number sequence, or a repeated short pattern (thresholds above)."""
    if not text:
        return "empty"
    spaces = sum(c.isspace() for c in text)
    if spaces >= WHITESPACE_SHARE * len(text):
        return "mostly whitespace"
    visible = len(text) - spaces
    punctuation = sum(not c.isspace() and not c.isalnum() for c in text)
    if punctuation >= PUNCTUATION_SHARE * visible:
        return "mostly punctuation"
    if _is_number_sequence(text):
        return "number sequence"
    if _is_repeated_pattern(text):
        return "repeated pattern"
    return None


def is_trivial(text: str) -> bool:
    """True when ``text`` is trivial memorization (see ``trivial_reason``)."""
    return trivial_reason(text) is not None


@dataclass(frozen=True)
class Verification:
    """Outcome of checking one sample against the training data.

    ``span``: (start, end) character offsets in the sample of the longest substring
    found in training, end exclusive, (0, 0) when none; ``k_eidetic``: distinct
    training documents containing it; ``trivial`` is only assessed for substrings
    of at least ``min_chars`` characters (False otherwise).
    """

    memorized: bool
    span: tuple[int, int]
    length: int
    k_eidetic: int
    trivial: bool
    reason: str


def verify_sample(index: TrainingIndex, text: str, min_chars: int = 50,
                  public: TrainingIndex | None = None) -> Verification:
    """Memorized when the longest training substring has >= ``min_chars`` characters and is not trivial.

    With ``public`` (the public pretraining corpus), only private text counts: the substring must
    be in the training data and not in the public corpus (``TrainingIndex.longest_match_not_in``),
    so text the base model learned from public data is never reported as leaked private data.
    """
    if min_chars < 1:
        raise ValueError(f"min_chars must be >= 1, got {min_chars}")
    match = index.longest_match(text) if public is None else index.longest_match_not_in(text, public)
    span = (match.start, match.end)
    what = "training substring" if public is None else "training substring not in the public corpus"
    if match.length < min_chars:
        reason = f"longest {what} has {match.length} characters (< {min_chars})"
        return Verification(False, span, match.length, match.documents, False, reason)
    why_trivial = trivial_reason(text[match.start : match.end])
    if why_trivial is not None:
        reason = f"longest {what} ({match.length} characters) is trivial: {why_trivial}"
        return Verification(False, span, match.length, match.documents, True, reason)
    where = "" if public is None else ", not in the public corpus"
    reason = f"{match.length} characters found in {match.documents} training document(s){where}"
    return Verification(True, span, match.length, match.documents, False, reason)


@dataclass(frozen=True)
class PiiHit:
    """A PII item at text[start:end] of a sample; ``masked`` is the value as it may be shown."""

    type: str
    start: int
    end: int
    masked: str

    def inside(self, span: tuple[int, int]) -> bool:
        """Whether the whole item lies within ``span`` (start, end)."""
        return span[0] <= self.start and self.end <= span[1]


def _kept_tail(length: int, keep_last: int) -> int:
    # Never more than half of a value stays in clear, so a short value is never shown whole.
    return max(0, min(keep_last, length // 2))


def mask_value(value: str, keep_last: int = 2) -> str:
    """``value`` with every character but the last ``keep_last`` (at most half of it) replaced by '*'."""
    kept = _kept_tail(len(value), keep_last)
    return "*" * (len(value) - kept) + value[len(value) - kept :]


@lru_cache(maxsize=8)
def _detectors(names: tuple[str, ...]) -> list[Detector]:
    return build_detectors(names)  # compiled once per name list, not once per sample


def find_pii(text: str, detectors: Sequence[str] = DEFAULT_DETECTORS, keep_last: int = 2) -> list[PiiHit]:
    """PII items the project's detectors find in ``text``, sorted by start, non-overlapping.

    Typed placeholders of a sanitized corpus (``<EMAIL>``, ``<SSN>``) are not PII
    and no detector matches them.
    """
    return [
        PiiHit(span.type, span.start, span.end, mask_value(text[span.start : span.end], keep_last))
        for span in detect(text, _detectors(tuple(detectors)))
    ]


def mask_pii(text: str, hits: Iterable[PiiHit], keep_last: int = 2) -> str:
    """``text`` with each hit masked as ``mask_value`` does; the length is kept, so offsets stay valid."""
    chars = list(text)
    for hit in hits:
        kept = _kept_tail(hit.end - hit.start, keep_last)
        chars[hit.start : hit.end - kept] = "*" * (hit.end - hit.start - kept)
    return "".join(chars)


def canary_secret(canary: Mapping[str, object]) -> str:
    """The part of a canary's text after its prefix: all of its randomness and the literals between."""
    text, prefix = str(canary["text"]), str(canary.get("prefix", "") or "")
    return text[len(prefix) :] if prefix and text.startswith(prefix) else text


def _token_starts(text: str, needle: str) -> list[int]:
    """Starts of ``needle`` in ``text`` where no letter or digit continues it on either side
    (so secret 123456789 is not found inside 91234567890)."""
    starts: list[int] = []
    start = text.find(needle)
    while start >= 0:
        end = start + len(needle)
        glued_before = start > 0 and needle[0].isalnum() and text[start - 1].isalnum()
        glued_after = end < len(text) and needle[-1].isalnum() and text[end].isalnum()
        if not (glued_before or glued_after):
            starts.append(start)
        start = text.find(needle, start + 1)
    return starts


def canary_spans(text: str, canaries: Iterable[Mapping[str, object]]) -> list[tuple[str, int, int]]:
    """(canary_id, start, end) of every extracted canary secret in ``text`` (rule: see ``find_canaries``)."""
    spans: list[tuple[str, int, int]] = []
    for canary in canaries:
        secret, canary_id = canary_secret(canary), str(canary["canary_id"])
        if secret:
            spans.extend((canary_id, start, start + len(secret)) for start in _token_starts(text, secret))
    return spans


def find_canaries(text: str, canaries: Iterable[Mapping[str, object]]) -> list[str]:
    """Ids of the canaries extracted in ``text``, in the order given.

    A canary counts as extracted when its whole secret (the text after its
    prefix; the full text also contains it) occurs in ``text`` as a token of its
    own. Digits alone are never matched piecemeal: a 9-digit secret must appear
    whole and not inside a longer number. ``canaries`` are records of
    ``data/canaries/canaries.jsonl`` (canary_id, text, prefix).
    """
    return list(dict.fromkeys(canary_id for canary_id, _, _ in canary_spans(text, canaries)))
