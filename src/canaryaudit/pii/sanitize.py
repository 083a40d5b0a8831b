"""Apply per-type actions to detected PII, count what was done, and score detectors.

Counts and scores never carry a raw value: only types, numbers and offsets.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Literal

from canaryaudit.pii.detectors import Detector, detect
from canaryaudit.pii.spans import PiiSpan

Action = Literal["mask", "drop", "keep"]


def placeholder(pii_type: str) -> str:
    """The typed mask, e.g. ``<SSN>`` or ``<CREDIT_CARD>``."""
    return f"<{pii_type.upper()}>"


@dataclass(frozen=True)
class SanitizedText:
    """Outcome for one document: ``text`` is None when a ``drop`` type was found."""

    text: str | None
    found: tuple[PiiSpan, ...]
    masked: int


def apply_actions(text: str, spans: Sequence[PiiSpan], action_for: Callable[[str], Action]) -> SanitizedText:
    """Mask, drop or keep each span (``spans`` sorted and non-overlapping)."""
    if any(action_for(s.type) == "drop" for s in spans):
        return SanitizedText(None, tuple(spans), 0)
    pieces: list[str] = []
    cursor = 0
    masked = 0
    for span in spans:
        if action_for(span.type) != "mask":
            continue
        pieces.append(text[cursor : span.start])
        pieces.append(placeholder(span.type))
        cursor = span.end
        masked += 1
    pieces.append(text[cursor:])
    return SanitizedText("".join(pieces), tuple(spans), masked)


def sanitize_text(
    text: str, detectors: Sequence[Detector], action_for: Callable[[str], Action], enabled: bool = True
) -> SanitizedText:
    spans = detect(text, detectors)
    if not enabled:
        return SanitizedText(text, tuple(spans), 0)
    return apply_actions(text, spans, action_for)


@dataclass
class SplitCounts:
    """What sanitization found and did in one split."""

    documents_in: int = 0
    documents_out: int = 0
    dropped: int = 0
    found: Counter[str] | None = None
    masked: Counter[str] | None = None

    def __post_init__(self) -> None:
        self.found = self.found or Counter()
        self.masked = self.masked or Counter()

    def add(self, result: SanitizedText, action_for: Callable[[str], Action], enabled: bool) -> None:
        assert self.found is not None and self.masked is not None
        self.documents_in += 1
        self.found.update(s.type for s in result.found)
        if result.text is None:
            self.dropped += 1
            return
        self.documents_out += 1
        if enabled:
            self.masked.update(s.type for s in result.found if action_for(s.type) == "mask")

    def as_dict(self) -> dict[str, object]:
        return {
            "documents_in": self.documents_in,
            "documents_out": self.documents_out,
            "dropped": self.dropped,
            "found": dict(sorted((self.found or {}).items())),
            "masked": dict(sorted((self.masked or {}).items())),
        }


@dataclass(frozen=True)
class DetectionScore:
    """Scores of one PII type.

    * precision (span level): a detection is a true positive when it overlaps a
      ground-truth span of the same type.
    * recall (span level): a truth span is recalled when same-type detections
      cover at least 90% of its characters, so a partial mask
      that leaves a tail of the value in clear (``john.o'`` of an email) is a miss.
    * char_recall: the share of all truth characters covered by same-type detections.
    """

    truth: int
    detected: int
    true_positives: int
    recalled: int
    truth_chars: int = 0
    covered_chars: int = 0

    @property
    def precision(self) -> float | None:
        return self.true_positives / self.detected if self.detected else None

    @property
    def recall(self) -> float | None:
        return self.recalled / self.truth if self.truth else None

    @property
    def char_recall(self) -> float | None:
        return self.covered_chars / self.truth_chars if self.truth_chars else None

    def as_dict(self) -> dict[str, object]:
        return {
            "truth": self.truth,
            "detected": self.detected,
            "true_positives": self.true_positives,
            "false_positives": self.detected - self.true_positives,
            "false_negatives": self.truth - self.recalled,
            "precision": self.precision,
            "recall": self.recall,
            "char_recall": self.char_recall,
        }


def _covered(span: PiiSpan, detections: Sequence[PiiSpan]) -> int:
    """Characters of ``span`` inside the union of ``detections`` (sorted by start, non-overlapping)."""
    total = 0
    for d in detections:
        total += max(0, min(span.end, d.end) - max(span.start, d.start))
    return total


def score_detection(
    pairs: Iterable[tuple[Sequence[PiiSpan], Sequence[PiiSpan]]], types: Iterable[str]
) -> dict[str, DetectionScore]:
    """Precision, recall and character recall per type over (detected spans, truth spans) pairs, one per document.

    Detected spans must not overlap one another (``detect`` guarantees it), so
    covered characters are counted once. Recall is span level with a coverage
    rule: a truth span is recalled only when same-type detections cover at
    least 90% of its characters (see ``DetectionScore``).
    """
    totals: dict[str, list[int]] = {t: [0, 0, 0, 0, 0, 0] for t in types}
    for detected, truth in pairs:
        for t, acc in totals.items():
            d = sorted((s for s in detected if s.type == t), key=lambda s: s.start)
            g = [s for s in truth if s.type == t]
            acc[0] += len(g)
            acc[1] += len(d)
            acc[2] += sum(1 for s in d if any(s.overlaps(x) for x in g))
            for x in g:
                covered = _covered(x, d)
                length = x.end - x.start
                acc[3] += 10 * covered >= 9 * length  # integers: no rounding at exactly 90%
                acc[4] += length
                acc[5] += covered
    return {t: DetectionScore(*acc) for t, acc in totals.items()}


def scores_table(scores: Mapping[str, DetectionScore], detected_types: Iterable[str]) -> dict[str, dict[str, object]]:
    """Report form: one row per type, with ``detector: false`` for types no detector covers."""
    covered = set(detected_types)
    return {t: {"detector": t in covered, **score.as_dict()} for t, score in scores.items()}


@dataclass(frozen=True)
class SanitizedSplit:
    records: list[dict[str, object]]  # documents kept, text sanitized (or raw when disabled)
    counts: SplitCounts
    detected: dict[str, tuple[PiiSpan, ...]]  # doc_id -> spans found in the raw text


def sanitize_records(
    records: Iterable[Mapping[str, object]],
    detectors: Sequence[Detector],
    action_for: Callable[[str], Action],
    enabled: bool,
) -> SanitizedSplit:
    """Sanitize document records (doc_id, text, author) of one split."""
    counts = SplitCounts()
    kept: list[dict[str, object]] = []
    detected: dict[str, tuple[PiiSpan, ...]] = {}
    for record in records:
        result = sanitize_text(str(record["text"]), detectors, action_for, enabled)
        counts.add(result, action_for, enabled)
        detected[str(record["doc_id"])] = result.found
        if result.text is not None:
            kept.append({**record, "text": result.text})
    return SanitizedSplit(kept, counts, detected)
