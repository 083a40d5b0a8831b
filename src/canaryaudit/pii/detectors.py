"""PII detectors: a regex proposes candidates, a validator rejects look-alikes.

Registered by the PII type name used in params.yaml (``sanitize.detectors``).
Detection runs offline: Presidio needs a spaCy model that is not on the
package registry (DESIGN.md), so person names have no detector here.

A regex match is not always the value itself: a detector may turn one match into
several candidate spans, longest first (a card followed by its CVV, an IBAN
followed by a BIC), and may require or forbid words near the match (context):

* phone: ten bare digits (``4155552671``) count only next to a phone word
  (phone, call, cell, fax, ...); grouped or '+' numbers need no context.
* ssn: nine bare digits count only after an SSN word (SSN, social security).
* ipv4: a dotted quad right after version / v / build / firmware / release is a
  version string, not an address.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass

from canaryaudit.pii import validators
from canaryaudit.pii.spans import PiiSpan
from canaryaudit.registry import Registry


@dataclass(frozen=True)
class EntropyOptions:
    """Thresholds of the generic high-entropy token detector."""

    min_length: int = 20  # characters
    min_bits_per_char: float = 3.5  # Shannon entropy of the token's characters


#: Turns a match into candidate spans (start, end), best first; the first that validates wins.
Candidates = Callable[[str, re.Match[str]], Iterable[tuple[int, int]]]


@dataclass(frozen=True)
class RegexDetector:
    """Finds ``pattern`` matches (group ``pii`` if present) that pass ``validate``.

    ``candidates``, when given, replaces the single span of a match by several
    (longest first) and may drop a match for lack of context; the first
    candidate that passes ``validate`` is reported.
    """

    pii_type: str
    pattern: re.Pattern[str]
    validate: Callable[[str], bool]
    candidates: Candidates | None = None

    def find(self, text: str) -> Iterator[PiiSpan]:
        group = "pii" if "pii" in self.pattern.groupindex else 0
        for match in self.pattern.finditer(text):
            if self.candidates is None:
                spans: Iterable[tuple[int, int]] = (match.span(group),)
            else:
                spans = self.candidates(text, match)
            for start, end in spans:
                if self.validate(text[start:end]):
                    yield PiiSpan(self.pii_type, start, end)
                    break


DETECTORS: Registry[Callable[[EntropyOptions], RegexDetector]] = Registry("PII detector")

# Digit runs must not continue on either side, so a match never sits inside a longer number.
# (A leading "(?=\d)" only makes the regex skip other characters fast.)
_NO_DIGIT_BEFORE = r"(?=\d)(?<![\w-])"
_NO_DIGIT_AFTER = r"(?![\w-]|\.\d)"

# Context windows stop at the start of the line or sentence the match is in.
_SENTENCE_BREAK = re.compile(r"[\n;]|[.!?](?=\s)")


def _window_before(text: str, start: int, size: int) -> str:
    window = text[max(0, start - size) : start]
    breaks = list(_SENTENCE_BREAK.finditer(window))
    return window[breaks[-1].end() :] if breaks else window


def _window_after(text: str, end: int, size: int) -> str:
    window = text[end : end + size]
    first = _SENTENCE_BREAK.search(window)
    return window[: first.start()] if first else window


@DETECTORS.register("email")
def _email(_: EntropyOptions) -> RegexDetector:
    # Apostrophes may sit inside the local part (john.o'brien@...), never at its ends.
    pattern = re.compile(
        r"(?<![\w.+-])[A-Za-z0-9](?:[A-Za-z0-9._%+'-]{0,62}[A-Za-z0-9_%+-])?"
        r"@(?:[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?\.)+[A-Za-z]{2,24}(?![\w-])"
    )
    return RegexDetector("email", pattern, lambda v: ".." not in v.split("@")[0])


_PHONE_WORDS = re.compile(
    r"\b(?:phone|telephone|tel|call|called|calling|cell|cellphone|mobile|mob|fax|text|sms|dial|"
    r"reach|contact|voicemail|message|whatsapp|ph)\b",
    re.IGNORECASE,
)


def _phone_candidates(text: str, match: re.Match[str]) -> Iterator[tuple[int, int]]:
    start, end = match.span()
    kind = match.lastgroup
    if kind == "bare" and not (
        _PHONE_WORDS.search(_window_before(text, start, 32)) or _PHONE_WORDS.search(_window_after(text, end, 32))
    ):
        return
    yield start, end
    if kind == "intl":  # the groups may run on into a following number: retry without trailing groups
        cuts = [m.start() for m in re.finditer(r"[ .-]", text[start:end])]
        for cut in reversed(cuts[1:]):
            yield start, start + cut


@DETECTORS.register("phone")
def _phone(_: EntropyOptions) -> RegexDetector:
    pattern = re.compile(
        r"(?=[\d(+])(?<![\w+-])(?:"  # the first lookahead only skips other characters fast
        # North American: optional +1 / 1, then (NXX) NXX-XXXX or NXX-NXX-XXXX (space, dot or dash)
        r"(?P<nanp>(?:\+?1[ .-]?)?(?:\(\d{3}\) ?|\d{3}[ .-])\d{3}[ .-]\d{4})"
        # E.164 written compactly: +14155552671, +442079460958
        r"|(?P<e164>\+[1-9]\d{7,14})"
        # international in groups: +44 20 7946 0958, +49 30 901820, +44 (0)20 7946 0958
        r"|(?P<intl>\+[2-9]\d{0,2}(?: \(0\)\d{1,10})?(?:[ .-]\d{1,10}){1,5})"
        # ten bare digits: only with a phone word nearby (see _phone_candidates)
        r"|(?P<bare>\d{10})"
        r")" + _NO_DIGIT_AFTER
    )
    return RegexDetector("phone", pattern, validators.phone_valid, _phone_candidates)


_SSN_WORDS = re.compile(r"\b(?:ssn|ss#|ss no|social security|soc\.? ?sec)", re.IGNORECASE)


def _ssn_candidates(text: str, match: re.Match[str]) -> Iterator[tuple[int, int]]:
    start, end = match.span()
    if match.lastgroup == "bare" and not _SSN_WORDS.search(_window_before(text, start, 40)):
        return
    yield start, end


@DETECTORS.register("ssn")
def _ssn(_: EntropyOptions) -> RegexDetector:
    # 078-05-1120 or 078 05 1120 (one separator used twice); 078051120 only after an SSN word.
    pattern = re.compile(
        _NO_DIGIT_BEFORE + r"(?:(?P<grouped>\d{3}(?P<sep>[ -])\d{2}(?P=sep)\d{4})|(?P<bare>\d{9}))" + _NO_DIGIT_AFTER
    )
    return RegexDetector("ssn", pattern, validators.ssn_valid, _ssn_candidates)


def _card_candidates(_text: str, match: re.Match[str]) -> Iterator[tuple[int, int]]:
    start, end = match.span()
    yield start, end
    if match.group("tail"):  # 4-4-4-4-3 failed: the last three digits may be a CVV
        yield start, match.start("tail")


@DETECTORS.register("credit_card")
def _credit_card(_: EntropyOptions) -> RegexDetector:
    # Real groupings only, one separator throughout: 13-19 contiguous digits,
    # 4-4-4-4 (optionally -3 for 19 digits) or Amex 4-6-5, with spaces or dashes.
    pattern = re.compile(
        _NO_DIGIT_BEFORE
        + r"(?:\d{13,19}"
        r"|\d{4}(?P<s>[ -])\d{4}(?P=s)\d{4}(?P=s)\d{4}(?P<tail>(?P=s)\d{3})?"
        r"|\d{4}(?P<a>[ -])\d{6}(?P=a)\d{5})"
        + _NO_DIGIT_AFTER
    )
    return RegexDetector("credit_card", pattern, validators.card_valid, _card_candidates)


_VERSION_WORDS = re.compile(
    r"\b(?:version|ver|v|build|firmware|fw|release|rel|rev|revision|patch)\b\.?\s*[:=#]?\s*(?:(?:is|to|of|from)\s+)?$",
    re.IGNORECASE,
)


def _ipv4_candidates(text: str, match: re.Match[str]) -> Iterator[tuple[int, int]]:
    start, end = match.span()
    if not _VERSION_WORDS.search(text[max(0, start - 24) : start]):
        yield start, end


@DETECTORS.register("ipv4")
def _ipv4(_: EntropyOptions) -> RegexDetector:
    pattern = re.compile(r"(?=\d)(?<![\w.])(?:\d{1,3}\.){3}\d{1,3}(?![\w]|\.\d)")
    return RegexDetector("ipv4", pattern, validators.ipv4_valid, _ipv4_candidates)


def _ipv6_valid(value: str) -> bool:
    # "::" alone (or with no hex digit at all) is punctuation, not an address.
    return value.count(":") >= 2 and any(c not in ":" for c in value) and validators.ipv6_valid(value)


@DETECTORS.register("ipv6")
def _ipv6(_: EntropyOptions) -> RegexDetector:
    pattern = re.compile(r"(?=[0-9A-Fa-f:])(?<![\w:])(?:[0-9A-Fa-f]{0,4}:){2,7}[0-9A-Fa-f]{0,4}(?![\w:])")
    return RegexDetector("ipv6", pattern, _ipv6_valid)


def _iban_candidates(text: str, match: re.Match[str]) -> Iterator[tuple[int, int]]:
    """The IBAN the country's registered length says starts at the match.

    The regex may run on into the next token (``... 1332 BIC CAIXESBBXXX``); the
    candidate stops after exactly as many characters as the country's IBAN has,
    and only where a group (or the compact form) ends.
    """
    start, end = match.span()
    length = validators.IBAN_LENGTHS.get(text[start : start + 2].upper())
    if length is None:
        return
    seen = 0
    for pos in range(start, end):
        if text[pos].isalnum():
            seen += 1
            if seen == length:
                stop = pos + 1
                if stop < len(text) and text[stop].isalnum():
                    return  # the IBAN would end inside a group
                value = text[start:stop]
                letters = [c for c in value if c.isalpha()]
                if all(c.isupper() for c in letters) or all(c.islower() for c in letters):
                    yield start, stop
                return


@DETECTORS.register("iban")
def _iban(_: EntropyOptions) -> RegexDetector:
    # Compact (DE89370400440532013000) or in groups of four separated by one space
    # or one dash throughout; either case (never mixed, see _iban_candidates).
    pattern = re.compile(
        r"(?=[A-Za-z]{2}\d\d)(?<![\w-])[A-Za-z]{2}\d{2}"
        r"(?:[A-Za-z0-9]{11,30}(?![\w-])"
        r"|(?P<s>[ -])[A-Za-z0-9]{4}(?:(?P=s)[A-Za-z0-9]{4}){1,7}(?:(?P=s)[A-Za-z0-9]{1,4})?(?!\w))"
    )
    return RegexDetector("iban", pattern, validators.iban_valid, _iban_candidates)


_KEY_PREFIXES = r"(?:sk|pk|rk)_(?:live|test)_|AKIA|ASIA|gh[pousr]_|xox[abpr]-|glpat-|AIza"

# camelCase pieces: "get", "User", "HTTP", "2023" in getUserHTTP2023 (and any other run).
_PIECE = re.compile(r"[A-Z]?[a-z]+|[A-Z]+(?![a-z])|\d+|[^A-Za-z0-9]+")
# A word-like piece: three or more letters after an optional capital, with a vowel
# and no run of five consonants (Account, Factory, Strength; not xqzT or Rbnkw).
_WORD_PIECE = re.compile(r"[A-Z]?[a-z]{3,}")
_WORDY = re.compile(r"^(?=.*[aeiouyAEIOUY])(?!.*[^aeiouyAEIOUY]{5})")


def looks_like_identifier(token: str) -> bool:
    """A camelCase / PascalCase name (getUserAccountBalance2023Q4Report), not a secret.

    Both must hold: the token splits into long pieces (at least 3 characters per
    piece on average, where a random key averages under 2) and word-like pieces
    cover at least half of it. About 0.3% of random 20-character keys and 0.05%
    of 32-character ones look like identifiers by this rule (measured on 300k draws).
    """
    pieces = len(_PIECE.findall(token))
    if not pieces or len(token) < 3 * pieces:
        return False
    words = sum(len(w) for w in _WORD_PIECE.findall(token) if _WORDY.match(w))
    return 2 * words >= len(token)


def _high_entropy(options: EntropyOptions) -> Callable[[str], bool]:
    prefixed = re.compile(_KEY_PREFIXES)

    def validate(token: str) -> bool:
        if prefixed.match(token):
            return len(token) >= 16
        # Generic secrets mix upper, lower and digits; lowercase hex (commit hashes,
        # UUIDs) is deliberately not flagged: it is rarely a credential. Neither are
        # identifiers made of words (camelCase class and method names).
        classes = sum((any(c.isupper() for c in token), any(c.islower() for c in token), any(c.isdigit() for c in token)))
        return (
            len(token) >= options.min_length
            and classes == 3
            and validators.shannon_entropy_bits(token) >= options.min_bits_per_char
            and not looks_like_identifier(token)
        )

    return validate


@DETECTORS.register("api_key")
def _api_key(options: EntropyOptions) -> RegexDetector:
    # Tokens of [A-Za-z0-9_-], or exactly 40 base64 characters with '/' or '+'
    # (AWS secret access keys: wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY).
    # (The leading lookahead only skips short words fast.)
    pattern = re.compile(
        r"(?<![\w-])(?=[\w/+-]{16})(?:(?<![/+.])[A-Za-z0-9/+]{40}(?![\w/+=-]|\.\w)|[A-Za-z0-9_-]{16,}(?![\w-]))"
    )
    return RegexDetector("api_key", pattern, _high_entropy(options))


_STREET_SUFFIX = (
    r"(?:Street|St|Avenue|Ave|Road|Rd|Boulevard|Blvd|Lane|Ln|Drive|Dr|Court|Ct|Way|Place|Pl"
    r"|Terrace|Ter|Circle|Cir|Parkway|Pkwy|Highway|Hwy|Square|Sq|Trail|Trl|Plaza|Alley|Loop)\.?"
)
# Name words: Oak, McDonald, O'Connor, LaSalle; ordinals: 5th, 42nd, 1st, 3rd.
_NAME_WORD = r"(?:[A-Z][a-z]*'?[A-Z][a-z]+|[A-Z][a-z]+|\d{1,3}(?:st|nd|rd|th))"
_DIRECTION = r"(?:NE|NW|SE|SW|N|S|E|W)"
_UNIT = r"(?:,? (?:Apt|Apartment|Suite|Ste|Unit|Rm|Room|Fl|Floor)\.? #?(?:\d{1,5}[A-Z]?|[A-Z]\d{0,4})|,? #\d{1,5}[A-Z]?)"
_STATES = (
    "AL AK AZ AR CA CO CT DE DC FL GA HI ID IL IN IA KS KY LA ME MD MA MI MN MS MO MT NE NV NH NJ NM NY "
    "NC ND OH OK OR PA RI SC SD TN TX UT VT VA WA WV WI WY PR"
).split()
_CITY_STATE_ZIP = (
    r"(?:, (?:" + _NAME_WORD + r" ){0,2}" + _NAME_WORD + r", (?:" + "|".join(_STATES) + r")(?: \d{5}(?:-\d{4})?)?)?"
)


@DETECTORS.register("street_address")
def _street_address(_: EntropyOptions) -> RegexDetector:
    # 1600 Pennsylvania Avenue NW, Washington, DC 20500 | 221B Baker Street |
    # 100 N. Main St, Apt 4B | 42 5th Avenue | PO Box 1234, Boise, ID 83702
    pattern = re.compile(
        r"(?=[\dP])(?<![\w-])(?:"
        r"\d{1,6}[A-Z]? (?:" + _DIRECTION + r"\.? )?(?:" + _NAME_WORD + r" ){1,4}" + _STREET_SUFFIX
        + r"(?: " + _DIRECTION + r"\b\.?)?" + _UNIT + r"?"
        r"|(?:P\.? ?O\.?|Post Office) Box \d{1,6}"
        r")" + _CITY_STATE_ZIP + r"(?![\w'])"
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
