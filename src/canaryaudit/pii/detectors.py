"""PII detectors: a regex proposes candidates, a validator rejects look-alikes.

Registered by the PII type name used in params.yaml (``sanitize.detectors``).
Detection runs offline: Presidio needs a spaCy model that is not on the
package registry (DESIGN.md), so person names have no detector here.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass

from canaryaudit.pii import validators
from canaryaudit.pii.spans import PiiSpan
from canaryaudit.registry import Registry


@dataclass(frozen=True)
class EntropyOptions:
    """Thresholds of the generic high-entropy token detector."""

    min_length: int = 20  # characters
    min_bits_per_char: float = 3.5  # Shannon entropy of the token's characters


@dataclass(frozen=True)
class RegexDetector:
    """Finds ``pattern`` matches (group ``pii`` if present) that pass ``validate``."""

    pii_type: str
    pattern: re.Pattern[str]
    validate: Callable[[str], bool]

    def find(self, text: str) -> Iterator[PiiSpan]:
        for match in self.pattern.finditer(text):
            group = "pii" if "pii" in self.pattern.groupindex else 0
            value = match.group(group)
            if self.validate(value):
                yield PiiSpan(self.pii_type, match.start(group), match.end(group))


DETECTORS: Registry[Callable[[EntropyOptions], RegexDetector]] = Registry("PII detector")

# Digit runs must not continue on either side, so a match never sits inside a longer number.
_NO_DIGIT_BEFORE = r"(?<![\w-])"
_NO_DIGIT_AFTER = r"(?![\w-]|\.\d)"


@DETECTORS.register("email")
def _email(_: EntropyOptions) -> RegexDetector:
    pattern = re.compile(
        r"(?<![\w.+-])[A-Za-z0-9](?:[A-Za-z0-9._%+-]{0,62}[A-Za-z0-9_%+-])?"
        r"@(?:[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?\.)+[A-Za-z]{2,24}(?![\w-])"
    )
    return RegexDetector("email", pattern, lambda v: ".." not in v.split("@")[0])


@DETECTORS.register("phone")
def _phone(_: EntropyOptions) -> RegexDetector:
    pattern = re.compile(
        _NO_DIGIT_BEFORE
        + r"(?:\+1[ .-]?)?(?:\(\d{3}\) ?|\d{3}[ .-])\d{3}[ .-]\d{4}"
        + _NO_DIGIT_AFTER
    )
    return RegexDetector("phone", pattern, lambda v: validators.nanp_valid(validators.digits_only(v)[-10:]))


@DETECTORS.register("ssn")
def _ssn(_: EntropyOptions) -> RegexDetector:
    pattern = re.compile(_NO_DIGIT_BEFORE + r"\d{3}-\d{2}-\d{4}" + _NO_DIGIT_AFTER)
    return RegexDetector("ssn", pattern, validators.ssn_valid)


@DETECTORS.register("credit_card")
def _credit_card(_: EntropyOptions) -> RegexDetector:
    # 13 to 19 digits, optionally in groups separated by one space or dash.
    pattern = re.compile(_NO_DIGIT_BEFORE + r"\d(?:[ -]?\d){12,18}" + _NO_DIGIT_AFTER)
    return RegexDetector("credit_card", pattern, validators.card_valid)


@DETECTORS.register("ipv4")
def _ipv4(_: EntropyOptions) -> RegexDetector:
    pattern = re.compile(r"(?<![\w.])(?:\d{1,3}\.){3}\d{1,3}(?![\w]|\.\d)")
    return RegexDetector("ipv4", pattern, validators.ipv4_valid)


@DETECTORS.register("ipv6")
def _ipv6(_: EntropyOptions) -> RegexDetector:
    pattern = re.compile(r"(?<![\w:])(?:[0-9A-Fa-f]{0,4}:){2,7}[0-9A-Fa-f]{0,4}(?![\w:])")
    return RegexDetector("ipv6", pattern, lambda v: v.count(":") >= 2 and validators.ipv6_valid(v))


@DETECTORS.register("iban")
def _iban(_: EntropyOptions) -> RegexDetector:
    pattern = re.compile(r"(?<![\w])[A-Z]{2}\d{2}(?: ?[A-Z0-9]{4}){2,7}(?: ?[A-Z0-9]{1,3})?(?![\w])")
    return RegexDetector("iban", pattern, validators.iban_valid)


_KEY_PREFIXES = r"(?:sk|pk|rk)_(?:live|test)_|AKIA|ASIA|gh[pousr]_|xox[abpr]-|glpat-|AIza"


def _high_entropy(options: EntropyOptions) -> Callable[[str], bool]:
    prefixed = re.compile(_KEY_PREFIXES)

    def validate(token: str) -> bool:
        if prefixed.match(token):
            return len(token) >= 16
        # Generic secrets mix upper, lower and digits; lowercase hex (commit hashes,
        # UUIDs) is deliberately not flagged: it is rarely a credential.
        classes = sum((any(c.isupper() for c in token), any(c.islower() for c in token), any(c.isdigit() for c in token)))
        return (
            len(token) >= options.min_length
            and classes == 3
            and validators.shannon_entropy_bits(token) >= options.min_bits_per_char
        )

    return validate


@DETECTORS.register("api_key")
def _api_key(options: EntropyOptions) -> RegexDetector:
    pattern = re.compile(r"(?<![\w-])[A-Za-z0-9_-]{16,}(?![\w-])")
    return RegexDetector("api_key", pattern, _high_entropy(options))


_STREET_SUFFIX = (
    r"(?:Street|St|Avenue|Ave|Road|Rd|Boulevard|Blvd|Lane|Ln|Drive|Dr|Court|Ct|Way|Place|Pl"
    r"|Terrace|Ter|Circle|Cir|Parkway|Pkwy|Highway|Hwy)\.?"
)


@DETECTORS.register("street_address")
def _street_address(_: EntropyOptions) -> RegexDetector:
    pattern = re.compile(
        r"(?<![\w-])\d{1,6} (?:[A-Z][a-z]+ ){1,4}" + _STREET_SUFFIX
        + r"(?:,? (?:Apt|Suite|Unit|#) ?\d{1,5})?"
        + r"(?:, (?:[A-Z][a-z]+ ){0,2}[A-Z][a-z]+, [A-Z]{2} \d{5}(?:-\d{4})?)?(?![\w])"
    )
    return RegexDetector("street_address", pattern, lambda v: True)


def build_detectors(names: Sequence[str], entropy: EntropyOptions | None = None) -> list[RegexDetector]:
    """Detectors for ``names`` in the given order (earlier names win overlaps)."""
    options = entropy or EntropyOptions()
    return [DETECTORS.get(name)(options) for name in names]


def detect(text: str, detectors: Sequence[RegexDetector]) -> list[PiiSpan]:
    """All non-overlapping PII spans of ``text``, sorted by start.

    Overlaps are resolved greedily: the longest span wins, then the detector
    listed first (so ``email`` before ``api_key`` keeps a long address whole).
    """
    candidates: list[tuple[int, int, int, PiiSpan]] = []
    for priority, detector in enumerate(detectors):
        for span in detector.find(text):
            candidates.append((-(span.end - span.start), priority, span.start, span))
    candidates.sort()
    chosen: list[PiiSpan] = []
    for *_, span in candidates:
        if not any(span.overlaps(kept) for kept in chosen):
            chosen.append(span)
    chosen.sort(key=lambda s: s.start)
    return chosen
