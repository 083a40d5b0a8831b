"""Checksums and validity rules that separate real identifiers from look-alikes.

Written by hand: each rule is a few lines from a public standard (Luhn / ISO
7812, SSA SSN rules, NANP, ISO 13616 IBAN), and no maintained offline library
bundles them together.
"""

from __future__ import annotations

import ipaddress
import math
import re
from collections import Counter

# IBAN lengths per country: the ISO 13616 registry (SWIFT, release 2024), every
# country whose length we know with certainty. Left out on purpose: Burundi (BI)
# and Nicaragua (NI), whose registered lengths changed recently.
IBAN_LENGTHS: dict[str, int] = {
    "AD": 24, "AE": 23, "AL": 28, "AT": 20, "AZ": 28, "BA": 20, "BE": 16, "BG": 22, "BH": 22,
    "BR": 29, "BY": 28, "CH": 21, "CR": 22, "CY": 28, "CZ": 24, "DE": 22, "DJ": 27, "DK": 18,
    "DO": 28, "EE": 20, "EG": 29, "ES": 24, "FI": 18, "FK": 18, "FO": 18, "FR": 27, "GB": 22,
    "GE": 22, "GI": 23, "GL": 18, "GR": 27, "GT": 28, "HR": 21, "HU": 28, "IE": 22, "IL": 23,
    "IQ": 23, "IS": 26, "IT": 27, "JO": 30, "KW": 30, "KZ": 20, "LB": 28, "LC": 32, "LI": 21,
    "LT": 20, "LU": 20, "LV": 21, "LY": 25, "MC": 27, "MD": 24, "ME": 22, "MK": 19, "MN": 20,
    "MR": 27, "MT": 31, "MU": 30, "NL": 18, "NO": 15, "OM": 23, "PK": 24, "PL": 28, "PS": 29,
    "PT": 25, "QA": 29, "RO": 24, "RS": 22, "RU": 33, "SA": 24, "SC": 31, "SD": 18, "SE": 24,
    "SI": 19, "SK": 24, "SM": 27, "SO": 23, "ST": 25, "SV": 28, "TL": 23, "TN": 24, "TR": 26,
    "UA": 29, "VA": 22, "VG": 24, "XK": 20, "YE": 30,
}

#: Every Unicode dash real text writes between digit groups (hyphen-minus, hyphen, non-breaking
#: hyphen, figure dash, en dash, em dash, horizontal bar, minus sign, small and fullwidth hyphen-minus).
DASHES = "-\u2010\u2011\u2012\u2013\u2014\u2015\u2212\ufe58\ufe63\uff0d"
#: Spaces between digit groups: space, no-break, figure, thin and narrow no-break space.
SPACES = " \u00a0\u2007\u2009\u202f"
#: Every group separator: a dash, a space or a dot.
SEPARATORS = DASHES + SPACES + "."

# ITU-T E.164 country calling codes of one or two digits; every other code has three.
_CALLING_CODES_1 = frozenset({"1", "7"})
_CALLING_CODES_2 = frozenset(
    "20 27 30 31 32 33 34 36 39 40 41 43 44 45 46 47 48 49 51 52 53 54 55 56 57 58 "
    "60 61 62 63 64 65 66 81 82 84 86 90 91 92 93 94 95 98".split()
)


def digits_only(text: str) -> str:
    return "".join(ch for ch in text if ch.isdigit())


def luhn_valid(number: str) -> bool:
    """Luhn (mod 10) check over the digits of ``number``; separators are ignored."""
    digits = digits_only(number)
    if not digits:
        return False
    total = 0
    for position, char in enumerate(reversed(digits)):
        value = int(char)
        if position % 2 == 1:
            value *= 2
            if value > 9:
                value -= 9
        total += value
    return total % 10 == 0


def luhn_check_digit(partial: str) -> str:
    """The digit that makes ``partial + digit`` pass Luhn."""
    for candidate in "0123456789":
        if luhn_valid(partial + candidate):
            return candidate
    raise AssertionError("unreachable: one of ten digits always completes a Luhn number")


def card_brand(number: str) -> str | None:
    """Issuer by IIN prefix and length (Visa, Mastercard, Amex, Discover, Diners Club, JCB), else None."""
    d = digits_only(number)
    n = len(d)
    if d.startswith("4") and n in (13, 16, 19):
        return "visa"
    if n == 16 and (51 <= int(d[:2]) <= 55 or 2221 <= int(d[:4]) <= 2720):
        return "mastercard"
    if n == 15 and d[:2] in ("34", "37"):
        return "amex"
    if n in (16, 19) and (d.startswith("6011") or d.startswith("65") or 644 <= int(d[:3]) <= 649):
        return "discover"
    if n == 14 and (d[:2] in ("36", "38", "39") or 300 <= int(d[:3]) <= 305):
        return "diners"
    if 16 <= n <= 19 and 3528 <= int(d[:4]) <= 3589:
        return "jcb"
    return None


def card_valid(number: str) -> bool:
    return card_brand(number) is not None and luhn_valid(number)


def ssn_valid(ssn: str) -> bool:
    """SSA rules: area not 000, 666 or 900-999; group not 00; serial not 0000."""
    d = digits_only(ssn)
    if len(d) != 9:
        return False
    area, group, serial = int(d[:3]), int(d[3:5]), int(d[5:])
    return area not in (0, 666) and area < 900 and group != 0 and serial != 0


def nanp_valid(digits10: str) -> bool:
    """North American number: area and exchange start 2-9 and are not N11 service codes."""
    if len(digits10) != 10 or not digits10.isdigit():
        return False
    area, exchange = digits10[:3], digits10[3:6]
    for part in (area, exchange):
        if part[0] in "01" or part[1:] == "11":
            return False
    return True


def calling_code(digits: str) -> str | None:
    """The E.164 country calling code that ``digits`` (an international number, no '+') starts with."""
    if not digits or digits[0] == "0":
        return None
    for size, known in ((1, _CALLING_CODES_1), (2, _CALLING_CODES_2)):
        if digits[:size] in known:
            return digits[:size]
    if len(digits) >= 3 and digits[:1] not in _CALLING_CODES_1:
        return digits[:3]
    return None


# A phone extension written after the number: "x81", " ext. 9", ", extension 12" (digits: the extension).
_EXTENSION = re.compile(r",?\s*(?:x|ext|extn|extension)\.?\s*\d{1,6}$", re.IGNORECASE)


def without_extension(text: str) -> str:
    """``text`` without a trailing extension (``(415) 555-2671 x81`` -> ``(415) 555-2671``)."""
    return _EXTENSION.sub("", text)


def _international_body(text: str) -> str | None:
    """The number after its '+' with the trunk "(0)" and other parentheses removed, or None without '+'.

    "(+44) 20 7946 0958" and "+44 (0)20 7946 0958" both give "44 20 7946 0958".
    """
    if text.startswith("(+"):
        close = text.find(")")
        if close < 0:
            return None
        text = "+" + text[2:close] + " " + text[close + 1 :].lstrip()
    if not text.startswith("+"):
        return None
    return text[1:].replace("(0)", " ").replace("(", " ").replace(")", " ")


def international_phone_valid(text: str) -> bool:
    """E.164 number written with '+': a calling code then 7-14 national digits, 15 digits at most.

    ``text`` starts with '+' or '(+'; a trunk prefix "(0)" is ignored, other
    parentheses are separators. When the number is written in groups, the
    first group must be exactly the calling code. A number of zone 1 (North
    America) must be a valid NANP number.
    """
    body = _international_body(text)
    if body is None:
        return False
    digits = digits_only(body)
    code = calling_code(digits)
    if code is None:
        return False
    national = digits[len(code) :]
    if not 7 <= len(national) <= 14 or len(digits) > 15:
        return False
    first_group = digits_only(re.split(r"[^0-9]", body.strip(), maxsplit=1)[0])
    if first_group != digits and first_group != code:
        return False
    if code == "1":
        return nanp_valid(national)
    return True


def phone_valid(text: str) -> bool:
    """A North American number (optionally with a leading 1) or an international '+' number; an extension is ignored."""
    text = without_extension(text)
    if text.startswith("(+") or (text.startswith("+") and not text.startswith("+1")):
        return international_phone_valid(text)
    digits = digits_only(text)
    if len(digits) == 11 and digits[0] == "1":
        digits = digits[1:]
    return nanp_valid(digits)


def ipv4_valid(text: str) -> bool:
    try:
        ipaddress.IPv4Address(text)
    except ValueError:
        return False
    return True


def ipv6_valid(text: str) -> bool:
    try:
        ipaddress.IPv6Address(text)
    except ValueError:
        return False
    return True


def iban_valid(text: str) -> bool:
    """ISO 13616: known country length (any case; separators ignored) and mod-97 remainder 1 after moving 4 chars to the end."""
    compact = "".join(ch for ch in text if not (ch.isspace() or ch in SEPARATORS)).upper()
    if len(compact) < 15 or not (compact.isascii() and compact.isalnum()):
        return False
    country = compact[:2]
    if IBAN_LENGTHS.get(country) != len(compact) or not compact[2:4].isdigit():
        return False
    return iban_mod97(compact) == 1


def iban_mod97(compact: str) -> int:
    rearranged = compact[4:] + compact[:4]
    numeric = "".join(str(int(ch, 36)) for ch in rearranged)
    return int(numeric) % 97


def iban_check_digits(country: str, bban: str) -> str:
    """The two check digits that make ``country + cc + bban`` a valid IBAN."""
    remainder = iban_mod97(country + "00" + bban)
    return f"{98 - remainder:02d}"


def shannon_entropy_bits(text: str) -> float:
    """Empirical Shannon entropy of the characters of ``text``, in bits per character."""
    if not text:
        return 0.0
    counts = Counter(text)
    n = len(text)
    return -sum(c / n * math.log2(c / n) for c in counts.values())
