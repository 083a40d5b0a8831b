"""PII detectors: a regex proposes candidates, a validator rejects look-alikes.

Registered by the PII type name used in params.yaml (``sanitize.detectors``).
Detection runs offline: Presidio needs a spaCy model that is not on the
package registry (DESIGN.md); person names are found by a gazetteer and
context (``canaryaudit.pii.names``).

Values are matched as real text writes them: digit groups separated by any
Unicode dash, a dot, a space of any width (no-break, thin) or nothing, where the
type allows it (``validators.SEPARATORS``); phone extensions; international
numbers with parentheses; IDN, plus-addressed and quoted-local-part emails;
cloud and VCS credential formats by their documented shapes.

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

import bisect

import re
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Protocol

from canaryaudit.pii import validators
from canaryaudit.pii.names import NameDetector, load_gazetteer
from canaryaudit.pii.spans import PiiSpan
from canaryaudit.registry import Registry


class Detector(Protocol):
    """Finds the PII of one type in a text."""

    pii_type: str

    def find(self, text: str) -> Iterator[PiiSpan]: ...


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
    # When every match holds ``anchor`` (an email's '@') at most ``reach[0]`` characters after its start
    # and ``reach[1]`` before its end, the pattern runs only around the anchors: same matches, far less text.
    anchor: str | None = None
    reach: tuple[int, int] = (0, 0)

    def _matches(self, text: str) -> Iterator[re.Match[str]]:
        if self.anchor is None:
            yield from self.pattern.finditer(text)
            return
        resume = 0  # matches never overlap: skip what an earlier window already matched
        at = text.find(self.anchor)
        while at >= 0:
            pos, stop = max(resume, at - self.reach[0]), min(len(text), at + self.reach[1])
            while (match := self.pattern.search(text, pos, stop)) is not None and match.start() <= at:
                if at < match.end():
                    yield match
                    resume = match.end()
                    break
                pos = match.end()  # a match of an earlier anchor: look on
            at = text.find(self.anchor, max(at + 1, resume))

    def find(self, text: str) -> Iterator[PiiSpan]:
        group = "pii" if "pii" in self.pattern.groupindex else 0
        for match in self._matches(text):
            if self.candidates is None:
                spans: Iterable[tuple[int, int]] = (match.span(group),)
            else:
                spans = self.candidates(text, match)
            for start, end in spans:
                if self.validate(text[start:end]):
                    yield PiiSpan(self.pii_type, start, end)
                    break


@dataclass(frozen=True)
class MergedDetector:
    """Several detectors of one type whose spans are all reported (``detect`` resolves overlaps)."""

    pii_type: str
    parts: tuple[Detector, ...]

    def find(self, text: str) -> Iterator[PiiSpan]:
        for part in self.parts:
            yield from part.find(text)


DETECTORS: Registry[Callable[[EntropyOptions], Detector]] = Registry("PII detector")

# Character classes of the separators real text writes between digit groups.
_DASHES = re.escape(validators.DASHES)  # escaped for use inside a character class
_SPACES = re.escape(validators.SPACES)
_SEP = "[" + re.escape(validators.SEPARATORS) + "]"  # a dash, a space or a dot

# Digit runs must not continue on either side, so a match never sits inside a longer number.
# (A leading "(?=\d)" only makes the regex skip other characters fast.)
_NO_DIGIT_BEFORE = r"(?=\d)(?<![\w" + _DASHES + "])"
# The same for a pattern that consumes its first digit at once: a pattern opening with a character class
# lets the regex engine jump between candidate characters in C (a lookaround first tries every position):
# about 1.7x faster scans, the same matches (the lookbehind moves one character right and checks the same one).
_FIRST_DIGIT = r"\d(?<![\w" + _DASHES + r"]\d)"
_NO_DIGIT_AFTER = r"(?![\w" + _DASHES + r"]|\.\d)"

# Context windows stop at the start of the line or sentence the match is in.
# ("No." and "Nr." are abbreviations: "Social Security No. 078051120" is one sentence.)
_SENTENCE_BREAK = re.compile(r"[\n;]|(?<!\b[Nn]o)(?<!\bNr)[.!?](?=\s)")


def _window_before(text: str, start: int, size: int) -> str:
    window = text[max(0, start - size) : start]
    breaks = list(_SENTENCE_BREAK.finditer(window))
    return window[breaks[-1].end() :] if breaks else window


def _window_after(text: str, end: int, size: int) -> str:
    window = text[end : end + size]
    first = _SENTENCE_BREAK.search(window)
    return window[: first.start()] if first else window


def _email_valid(value: str) -> bool:
    local = value.rsplit("@", 1)[0]
    if local.startswith('"'):
        return True  # a quoted local part may hold dots and spaces in any order (RFC 5322)
    return ".." not in local


@DETECTORS.register("email")
def _email(_: EntropyOptions) -> RegexDetector:
    # Unicode letters in the local part and the domain (IDN: josé@bücher.de, иван@пример.рф),
    # plus addressing (jane+hr@...), apostrophes inside (john.o'brien@...), a quoted local part
    # ("john doe"@example.com); the top-level domain is letters or punycode (xn--p1ai).
    pattern = re.compile(
        r"(?<![\w.+-])"
        r"(?:\"(?:[^\"\\\r\n]|\\.){1,62}\"|[^\W_](?:[\w.%+'-]{0,62}[\w%+-])?)"
        r"@(?:[^\W_](?:[\w-]{0,61}[^\W_])?\.)+(?:[^\W\d_]{2,24}|xn--[a-z0-9-]{2,59})(?![\w-])"
    )
    # A local part has at most 64 characters and a domain at most 255: the '@' anchors the search.
    return RegexDetector("email", pattern, _email_valid, anchor="@", reach=(65, 256))


_SEPARATOR = re.compile(_SEP)

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
        cuts = [m.start() for m in _SEPARATOR.finditer(text, start, end)]
        for cut in reversed(cuts[1:]):
            yield start, cut


# An extension glued to a number: "x81", " x 81", " ext. 9", ", extension 12" (part of the value).
_EXTENSION = r"(?:,?[" + _SPACES + r"]?(?:[xX]|[eE][xX][tT][nN]?\.?|[eE]xtension)[" + _SPACES + r"]?\d{1,6})?"


@DETECTORS.register("phone")
def _phone(_: EntropyOptions) -> RegexDetector:
    sep = _SEP
    pattern = re.compile(
        r"(?=[\d(+])(?<![\w+" + _DASHES + r"])(?:"  # the first lookahead only skips other characters fast
        # North American: optional +1 / 1, then (NXX) NXX-XXXX or NXX-NXX-XXXX (any dash, dot or space)
        r"(?P<nanp>(?:\+?1" + sep + r"?)?(?:\(\d{3}\)[" + _SPACES + r"]?|\d{3}" + sep + r")\d{3}" + sep + r"\d{4})"
        # E.164 written compactly: +14155552671, +442079460958
        r"|(?P<e164>\+[1-9]\d{7,14})"
        # international in groups: +44 20 7946 0958, +49 30 901820, +44 (0)20 7946 0958, +49 (30) 901820,
        # (+44) 20 7946 0958, +81-3-1234-5678
        r"|(?P<intl>(?:\(\+[2-9]\d{0,2}\)|\+[2-9]\d{0,2})"
        r"(?:" + sep + r"?\(\d{1,5}\)[" + _SPACES + r"]?\d{1,10}|" + sep + r"?\(\d{1,5}\)|" + sep + r"\d{1,10}){1,6})"
        # ten bare digits: only with a phone word nearby (see _phone_candidates)
        r"|(?P<bare>\d{10})"
        r")" + _EXTENSION + _NO_DIGIT_AFTER
    )
    return RegexDetector("phone", pattern, validators.phone_valid, _phone_candidates)


_SSN_WORDS = re.compile(r"\b(?:ssn|ss#|ss no|social security|soc\.? ?sec)", re.IGNORECASE)
# "123456789 (SSN)": the SSN word right after the number also names it.
_SSN_WORD_AFTER = re.compile(r"[" + _SPACES + r"]*[(\[,:-]?[" + _SPACES + r"]*(?:ssn|social security)\b", re.IGNORECASE)


def _ssn_candidates(text: str, match: re.Match[str]) -> Iterator[tuple[int, int]]:
    start, end = match.span()
    if match.lastgroup == "bare" and not (
        _SSN_WORDS.search(_window_before(text, start, 40)) or _SSN_WORD_AFTER.match(text, end, min(len(text), end + 24))
    ):
        return
    yield start, end


@DETECTORS.register("ssn")
def _ssn(_: EntropyOptions) -> RegexDetector:
    # 078-05-1120, 078–05–1120, 078.05.1120, 078 05 1120 (one separator used twice);
    # 078051120 only next to an SSN word.
    pattern = re.compile(
        _FIRST_DIGIT  # then the rest of 3-2-4 or of 9 digits
        + r"(?:(?P<grouped>\d{2}(?P<sep>" + _SEP + r")\d{2}(?P=sep)\d{4})|(?P<bare>\d{8}))"
        + _NO_DIGIT_AFTER
    )
    return RegexDetector("ssn", pattern, validators.ssn_valid, _ssn_candidates)


def _follows_a_group(text: str, start: int, separator: str) -> bool:
    """Whether the digits at ``start`` continue a grouped number: groups of four letters or digits, one with a
    digit, joined by ``separator`` right before (``LY30 2711 3763 9603 2252``: the inside of an IBAN)."""
    pos = start
    while pos >= 5 and text[pos - 1] == separator:
        group = text[pos - 5 : pos - 1]
        if not group.isalnum() or (pos > 5 and text[pos - 6].isalnum()):
            return False
        if any(c.isdigit() for c in group):
            return True
        pos -= 5
    return False


def _card_candidates(text: str, match: re.Match[str]) -> Iterator[tuple[int, int]]:
    start, end = match.span()
    separator = match.group("s") or match.group("a")
    if separator and _follows_a_group(text, start, separator):
        return
    yield start, end
    if match.group("tail"):  # 4-4-4-4-3 failed: the last three digits may be a CVV
        yield start, match.start("tail")


@DETECTORS.register("credit_card")
def _credit_card(_: EntropyOptions) -> RegexDetector:
    # Real groupings only, one separator throughout (any dash, a dot or a space): 13-19
    # contiguous digits, 4-4-4-4 (optionally -3 for 19 digits), Amex 4-6-5 or Diners 4-6-4.
    pattern = re.compile(
        _FIRST_DIGIT  # then the rest of each grouping
        + r"(?:\d{12,18}"
        r"|\d{3}(?P<s>" + _SEP + r")\d{4}(?P=s)\d{4}(?P=s)\d{4}(?P<tail>(?P=s)\d{3})?"
        r"|\d{3}(?P<a>" + _SEP + r")\d{6}(?P=a)\d{4,5})"
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
    # The first digit consumed at once (see _FIRST_DIGIT): then up to two more, and three more groups.
    pattern = re.compile(r"\d(?<![\w.]\d)\d{0,2}\.(?:\d{1,3}\.){2}\d{1,3}(?![\w]|\.\d)")
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
    # (of any width) or one dash (any) throughout; either case (never mixed, see _iban_candidates).
    sep = "[" + _DASHES + _SPACES + "]"
    pattern = re.compile(
        r"(?=[A-Za-z]{2}\d\d)(?<![\w" + _DASHES + r"])[A-Za-z]{2}\d{2}"
        r"(?:[A-Za-z0-9]{11,30}(?![\w" + _DASHES + r"])"
        r"|(?P<s>" + sep + r")[A-Za-z0-9]{4}(?:(?P=s)[A-Za-z0-9]{4}){1,7}(?:(?P=s)[A-Za-z0-9]{1,4})?(?!\w))"
    )
    return RegexDetector("iban", pattern, validators.iban_valid, _iban_candidates)


#: Credential formats by their documented shapes (prefix, alphabet, length), one regex each.
CREDENTIAL_FORMATS: dict[str, str] = {
    "aws_access_key_id": r"(?:AKIA|ASIA|AGPA|AIDA|AROA|AIPA|ANPA|ANVA|ABIA|ACCA)[A-Z0-9]{16}",
    "github_token": r"gh[pousr]_[A-Za-z0-9]{36}",
    "github_fine_grained_pat": r"github_pat_[A-Za-z0-9]{22}_[A-Za-z0-9]{59}",
    "gitlab_token": r"gl(?:pat|dt|ptt|rt|cbt|oas|ft)-[A-Za-z0-9_-]{20,}",
    "slack_token": r"xox[abposre]-[A-Za-z0-9-]{10,}",
    "google_api_key": r"AIza[A-Za-z0-9_-]{35}",
    "stripe_key": r"(?:sk|pk|rk)_(?:live|test)_[A-Za-z0-9]{16,}",
    "openai_anthropic_key": r"sk-(?:proj-|svcacct-|admin-|ant-[a-z]+\d\d-)?[A-Za-z0-9_-]{20,}",
    "npm_token": r"npm_[A-Za-z0-9]{36}",
    "pypi_token": r"pypi-AgEIcHlwaS5vcmc[A-Za-z0-9_-]{50,}",
    "huggingface_token": r"hf_[A-Za-z0-9]{34}",
    "sendgrid_key": r"SG\.[A-Za-z0-9_-]{22}\.[A-Za-z0-9_-]{43}",
    "twilio_key": r"SK[0-9a-f]{32}",
    "jwt": r"eyJ[A-Za-z0-9_-]{10,}\.eyJ[A-Za-z0-9_-]{10,}\.[A-Za-z0-9_-]{10,}",
}
_CREDENTIAL_PREFIX = re.compile(
    r"(?:AKIA|ASIA|AGPA|AIDA|AROA|AIPA|ANPA|ANVA|ABIA|ACCA|gh[pousr]_|github_pat_|gl[a-z]+-|xox[a-z]-|AIza"
    r"|(?:sk|pk|rk)_(?:live|test)_|sk-(?:proj-|svcacct-|admin-|ant-[a-z]+\d\d-)?|npm_|pypi-|hf_|SG\.|SK|eyJ)"
)
# A placeholder (sk_live_XXXXXXXXXXXXXXXX, AKIA0000000000000000) repeats a few characters: a random
# body of 16+ characters has far more than 2.5 bits of entropy per character (AKIAIOSFODNN7EXAMPLE: 3.5).
_CREDENTIAL_MIN_BITS = 2.5


def _credential_valid(token: str) -> bool:
    prefix = _CREDENTIAL_PREFIX.match(token)
    body = token[prefix.end() :] if prefix else token
    return validators.shannon_entropy_bits(body) >= _CREDENTIAL_MIN_BITS

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
    def validate(token: str) -> bool:
        # Known credential formats are found by their shapes (CREDENTIAL_FORMATS). Generic secrets mix upper, lower and digits; lowercase hex (commit hashes,
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


#: Credential formats with a dot inside (the generic token pattern stops at dots).
_DOTTED_CREDENTIALS = ("sendgrid_key", "jwt")
_KNOWN_CREDENTIAL = re.compile("|".join(CREDENTIAL_FORMATS.values()))


def _api_key_valid(options: EntropyOptions) -> Callable[[str], bool]:
    generic = _high_entropy(options)

    def validate(token: str) -> bool:
        if _KNOWN_CREDENTIAL.fullmatch(token):
            return _credential_valid(token)
        return generic(token)

    return validate


@DETECTORS.register("api_key")
def _api_key(options: EntropyOptions) -> MergedDetector:
    # Tokens of [A-Za-z0-9_-] (a known credential format, or a generic high-entropy secret), or
    # exactly 40 base64 characters with '/' or '+' (AWS secret access keys:
    # wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY). One token pattern for all keeps the scan fast;
    # the two dotted formats (SendGrid, JWT) have their own. (The leading lookahead only skips short words fast.)
    tokens = re.compile(
        r"(?<![\w-])(?=[\w/+-]{16})(?:(?<![/+.])[A-Za-z0-9/+]{40}(?![\w/+=-]|\.\w)|[A-Za-z0-9_-]{16,}(?![\w-]))"
    )
    dotted = re.compile(
        r"(?<![\w.-])(?:" + "|".join(CREDENTIAL_FORMATS[name] for name in _DOTTED_CREDENTIALS) + r")(?![\w-]|\.[\w-])"
    )
    return MergedDetector("api_key", (RegexDetector("api_key", tokens, _api_key_valid(options)),
                                      RegexDetector("api_key", dotted, _credential_valid)))


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


@DETECTORS.register("person_name")
def _person_name(_: EntropyOptions) -> NameDetector:
    return NameDetector(load_gazetteer())


def build_detectors(names: Sequence[str], entropy: EntropyOptions | None = None) -> list[Detector]:
    """Detectors for ``names`` in the given order (earlier names win overlaps)."""
    options = entropy or EntropyOptions()
    return [DETECTORS.get(name)(options) for name in names]


def detect(text: str, detectors: Sequence[Detector]) -> list[PiiSpan]:
    """All non-overlapping PII spans of ``text``, sorted by start.

    Overlaps are resolved greedily: the longest span wins, then the detector
    listed first (so ``email`` before ``api_key`` keeps a long address whole).
    """
    candidates: list[tuple[int, int, int, PiiSpan]] = []
    for priority, detector in enumerate(detectors):
        for span in detector.find(text):
            candidates.append((-(span.end - span.start), priority, span.start, span))
    candidates.sort()
    # Kept spans as (start, end) in order: they never overlap, so their ends never decrease either, and of
    # those starting before a candidate ends, the last reaches furthest right: the only one to check.
    bounds: list[tuple[int, int]] = []
    chosen: list[PiiSpan] = []
    for *_, span in candidates:
        starting_before_end = bisect.bisect_left(bounds, (span.end, -1))
        if starting_before_end and bounds[starting_before_end - 1][1] > span.start:
            continue  # overlaps a kept span (PiiSpan.overlaps)
        bisect.insort(bounds, (span.start, span.end))
        chosen.append(span)
    chosen.sort(key=lambda s: s.start)
    return chosen
