"""Checksums and validity rules that separate real identifiers from look-alikes.

Written by hand: each rule is a few lines from a public standard (Luhn / ISO
7812, SSA SSN rules, NANP, ISO 13616 IBAN), and no maintained offline library
bundles them together.
"""

from __future__ import annotations

import ipaddress
import math
from collections import Counter

# IBAN lengths per country (ISO 13616 registry, the countries we expect most often).
IBAN_LENGTHS: dict[str, int] = {
    "AD": 24, "AT": 20, "BE": 16, "BG": 22, "CH": 21, "CY": 28, "CZ": 24, "DE": 22, "DK": 18,
    "EE": 20, "ES": 24, "FI": 18, "FR": 27, "GB": 22, "GR": 27, "HR": 21, "HU": 28, "IE": 22,
    "IS": 26, "IT": 27, "LI": 21, "LT": 20, "LU": 20, "LV": 21, "MC": 27, "MT": 31, "NL": 18,
    "NO": 15, "PL": 28, "PT": 25, "RO": 24, "SE": 24, "SI": 19, "SK": 24, "SM": 27, "TR": 26,
}


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
    """Issuer by IIN prefix and length (Visa, Mastercard, Amex, Discover), else None."""
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
    """ISO 13616: known country length and mod-97 remainder 1 after moving 4 chars to the end."""
    compact = text.replace(" ", "").upper()
    if len(compact) < 15 or not compact.isalnum():
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
