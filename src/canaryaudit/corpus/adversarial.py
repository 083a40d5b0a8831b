"""An adversarial PII corpus: values written the many ways real text writes them, and look-alikes.

The builtin email corpus was written together with the detectors; this one
tries to break them. Each document is a handful of lines; each line holds one
value of one PII type in one of many *formats* (Unicode dashes, dots, spaces of
any width or none between digit groups; extensions; international phone
numbers with parentheses; IDN, plus-addressed and quoted emails; IBANs in groups
of four; bare SSNs next to a keyword; cloud and VCS credential formats), or a
*look-alike* that must not match (a checksum that fails, an invalid area code,
a placeholder credential, a version string...). The generator records the span
and format of every value: its own ground truth, deterministic for a seed.

Person names are planted too, in contexts the builtin corpus never uses, from
the builtin generator's name lists (not the name detector's gazetteer).
"""

from __future__ import annotations

import random
import string
from collections.abc import Callable, Iterator
from dataclasses import dataclass

from canaryaudit.corpus import vocab
from canaryaudit.corpus.emails import TextBuilder
from canaryaudit.pii import validators
from canaryaudit.pii.spans import PiiSpan

#: Types the adversarial corpus plants, each with its formats and look-alikes.
ADVERSARIAL_TYPES: tuple[str, ...] = (
    "person_name", "email", "phone", "ssn", "credit_card", "street_address", "ipv4", "ipv6", "iban", "api_key",
)

NBSP, THIN = "\u00a0", "\u2009"
#: Separators written between digit groups (every Unicode dash, spaces of three widths, a dot).
GROUP_SEPARATORS: tuple[str, ...] = tuple(validators.DASHES) + (" ", NBSP, THIN, "\u202f", ".")

Writer = Callable[[random.Random], str]


@dataclass(frozen=True)
class Planted:
    """What one line holds: a value (``pii`` True) or a look-alike, its type and format, in its context."""

    pii_type: str
    fmt: str
    value: str
    template: str  # "{v}" marks the value
    pii: bool


@dataclass(frozen=True)
class AdversarialDocument:
    doc_id: str
    text: str
    pii: tuple[PiiSpan, ...]
    formats: tuple[str, ...]  # the format of each span of ``pii``, in order
    lookalikes: tuple[str, ...]  # "type/format" of each look-alike planted


def _digits(rng: random.Random, n: int) -> str:
    return "".join(rng.choice(string.digits) for _ in range(n))


def _group(number: str, sizes: tuple[int, ...], sep: str) -> str:
    parts, i = [], 0
    for size in sizes:
        parts.append(number[i : i + size])
        i += size
    return sep.join(parts)


# ---------------------------------------------------------------- SSN


def _ssn_number(rng: random.Random) -> str:
    while True:
        value = f"{rng.randint(1, 899):03d}{rng.randint(1, 99):02d}{rng.randint(1, 9999):04d}"
        if validators.ssn_valid(value):
            return value


SSN_KEYWORD_TEMPLATES = ("SSN {v}", "SSN: {v}", "my social security number is {v}.", "Social Security No. {v}",
                         "ss# {v}", "{v} (SSN)", "SSN:{v}", "soc sec {v} on the W-4")
SSN_TEMPLATES = ("the form lists {v} for the employee", "ID on file: {v}.", "Please verify {v} before payroll.",
                 "({v})", "SSN {v}") + SSN_KEYWORD_TEMPLATES


def _ssn_formats() -> dict[str, tuple[Writer, tuple[str, ...]]]:
    formats: dict[str, tuple[Writer, tuple[str, ...]]] = {}
    for sep in GROUP_SEPARATORS:
        formats[f"ssn_sep_U+{ord(sep):04X}"] = (lambda rng, s=sep: _group(_ssn_number(rng), (3, 2, 4), s), SSN_TEMPLATES)
    formats["ssn_bare_keyword"] = (_ssn_number, SSN_KEYWORD_TEMPLATES)
    return formats


def _ssn_lookalikes() -> dict[str, tuple[Writer, tuple[str, ...]]]:
    def grouped(area: Callable[[random.Random], int], group: Callable[[random.Random], int],
                serial: Callable[[random.Random], int]) -> Writer:
        return lambda rng: rng.choice(["-", "\u2013", " ", "."]).join(
            [f"{area(rng):03d}", f"{group(rng):02d}", f"{serial(rng):04d}"])

    area, group, serial = (lambda r: r.randint(1, 899)), (lambda r: r.randint(1, 99)), (lambda r: r.randint(1, 9999))
    neutral = ("reference {v} on the letter", "case {v} was closed", "ticket {v}")
    return {
        "ssn_area_9xx": (grouped(lambda r: r.randint(900, 999), group, serial), neutral),
        "ssn_area_000": (grouped(lambda r: 0, group, serial), neutral),
        "ssn_area_666": (grouped(lambda r: 666, group, serial), neutral),
        "ssn_group_00": (grouped(area, lambda r: 0, serial), neutral),
        "ssn_serial_0000": (grouped(area, group, lambda r: 0), neutral),
        "ssn_bare_no_keyword": (_ssn_number, ("tracking number {v}", "claim {v} is open", "order {v} shipped")),
        "ssn_mixed_separators": (lambda rng: (n := _ssn_number(rng))[:3] + "-" + n[3:5] + "." + n[5:], neutral),
        "zip_plus_4": (lambda rng: f"{rng.randint(10000, 99999)}-{rng.randint(1000, 9999)}", ("ZIP {v}",)),
        "isbn_13": (lambda rng: f"978-{rng.randint(0, 9)}-{rng.randint(100, 999)}-{rng.randint(10000, 99999)}-"
                                f"{rng.randint(0, 9)}", ("ISBN {v}",)),
    }


# ---------------------------------------------------------------- credit cards

#: Brand: (IIN prefixes, length, digit groups).
CARD_BRANDS: dict[str, tuple[tuple[str, ...], int, tuple[int, ...]]] = {
    "visa16": (("4",), 16, (4, 4, 4, 4)),
    "visa19": (("4",), 19, (4, 4, 4, 4, 3)),
    "mastercard": (("51", "52", "53", "54", "55", "2221", "2500", "2720"), 16, (4, 4, 4, 4)),
    "amex": (("34", "37"), 15, (4, 6, 5)),
    "discover": (("6011", "65", "644", "649"), 16, (4, 4, 4, 4)),
    "diners": (("36", "38", "300", "305"), 14, (4, 6, 4)),
    "jcb": (("3528", "3589"), 16, (4, 4, 4, 4)),
}
CARD_TEMPLATES = ("card {v} exp 04/27", "Please charge {v}.", "CC: {v}", "card number {v} cvv 123", "({v})",
                  "my Visa is {v}, thanks", "pay with {v}")


def _card_number(rng: random.Random, brand: str, luhn: bool = True) -> str:
    prefixes, length, _ = CARD_BRANDS[brand]
    partial = rng.choice(prefixes)
    partial += _digits(rng, length - 1 - len(partial))
    check = validators.luhn_check_digit(partial)
    if not luhn:
        check = str((int(check) + rng.randint(1, 9)) % 10)
    return partial + check


def _card_formats() -> dict[str, tuple[Writer, tuple[str, ...]]]:
    formats: dict[str, tuple[Writer, tuple[str, ...]]] = {}
    for brand, (_, _, groups) in CARD_BRANDS.items():
        formats[f"card_{brand}_compact"] = (lambda rng, b=brand: _card_number(rng, b), CARD_TEMPLATES)
        for sep in GROUP_SEPARATORS:
            formats[f"card_{brand}_sep_U+{ord(sep):04X}"] = (
                lambda rng, b=brand, g=groups, s=sep: _group(_card_number(rng, b), g, s), CARD_TEMPLATES)
    return formats


def _card_lookalikes() -> dict[str, tuple[Writer, tuple[str, ...]]]:
    neutral = ("order {v} shipped", "reference {v}", "invoice {v} is due")

    def unknown_brand(rng: random.Random) -> str:
        partial = rng.choice("0789") + _digits(rng, 14)
        return _group(partial + validators.luhn_check_digit(partial), (4, 4, 4, 4), rng.choice([" ", "-", "."]))

    return {
        "card_luhn_fails": (lambda rng: _group(_card_number(rng, "visa16", luhn=False), (4, 4, 4, 4),
                                               rng.choice(GROUP_SEPARATORS)), neutral),
        "card_no_issuer": (unknown_brand, neutral),
        "card_mixed_separators": (lambda rng: (n := _card_number(rng, "visa16"))[:4] + " " + n[4:8] + "-" + n[8:12]
                                  + " " + n[12:], neutral),
        "card_irregular_groups": (lambda rng: _group(_card_number(rng, "mastercard"), (4, 8, 4), " "), neutral),
    }


# ---------------------------------------------------------------- phones


def _nanp(rng: random.Random) -> str:
    while True:
        digits = f"{rng.randint(200, 989)}{rng.randint(200, 999)}{_digits(rng, 4)}"
        if validators.nanp_valid(digits):
            return digits


EXTENSIONS: tuple[str, ...] = (" x81", "x81", " x 7", " ext. 9", " ext 123", ", ext. 45", " extension 12", " Ext. 300",
                               " EXT 2")
PHONE_TEMPLATES = ("call me at {v} tomorrow", "Phone: {v}", "my cell is {v}.", "fax {v}", "Tel. {v}", "({v})",
                   "reach the desk on {v} after 5")

#: International numbers: calling code and the digit groups of the national number (invented digits).
INTERNATIONAL_GROUPS: tuple[tuple[str, tuple[int, ...]], ...] = (
    ("44", (2, 4, 4)), ("44", (4, 6)), ("49", (2, 6)), ("49", (3, 8)), ("33", (1, 2, 2, 2, 2)), ("81", (1, 4, 4)),
    ("61", (1, 4, 4)), ("91", (5, 5)), ("353", (1, 3, 4)), ("7", (3, 3, 2, 2)), ("86", (2, 4, 4)), ("34", (3, 3, 3)),
    ("39", (2, 4, 4)), ("55", (2, 5, 4)), ("971", (1, 3, 4)), ("41", (2, 3, 2, 2)),
)


def _international(rng: random.Random, style: str) -> str:
    code, groups = rng.choice(INTERNATIONAL_GROUPS)
    national = str(rng.randint(1, 9)) + _digits(rng, sum(groups) - 1)
    parts = _group(national, groups, " ").split(" ")
    first, rest = parts[0], " ".join(parts[1:])
    if style == "spaces":
        return f"+{code} {first} {rest}"
    if style == "dashes":
        return f"+{code}-" + "-".join(parts)
    if style == "trunk":  # +44 (0)20 7946 0958
        return f"+{code} (0){first} {rest}"
    if style == "trunk_spaced":  # +44 (0) 20 7946 0958
        return f"+{code} (0) {first} {rest}"
    if style == "area_parens":  # +49 (30) 901820
        return f"+{code} ({first}) {rest}"
    if style == "code_parens":  # (+44) 20 7946 0958
        return f"(+{code}) {first} {rest}"
    if style == "nbsp":
        return f"+{code}{NBSP}{first}{NBSP}" + NBSP.join(parts[1:])
    return f"+{code}{national}"  # compact E.164


def _phone_formats() -> dict[str, tuple[Writer, tuple[str, ...]]]:
    def nanp(shape: str) -> Writer:
        def write(rng: random.Random) -> str:
            d = _nanp(rng)
            return shape.format(a=d[:3], b=d[3:6], c=d[6:], dash=rng.choice(validators.DASHES))
        return write

    shapes = {
        "nanp_parens": "({a}) {b}-{c}", "nanp_parens_glued": "({a}){b}-{c}", "nanp_dashes": "{a}-{b}-{c}",
        "nanp_unicode_dashes": "{a}{dash}{b}{dash}{c}", "nanp_dots": "{a}.{b}.{c}", "nanp_spaces": "{a} {b} {c}",
        "nanp_nbsp": "{a}\u00a0{b}\u00a0{c}", "nanp_plus1_spaces": "+1 {a} {b} {c}", "nanp_plus1_dashes": "+1-{a}-{b}-{c}",
        "nanp_1_dashes": "1-{a}-{b}-{c}", "nanp_plus1_parens": "+1 ({a}) {b}-{c}", "nanp_plus1_dots": "+1.{a}.{b}.{c}",
    }
    formats: dict[str, tuple[Writer, tuple[str, ...]]] = {name: (nanp(shape), PHONE_TEMPLATES) for name, shape in shapes.items()}
    for shape in ("nanp_parens", "nanp_dashes", "nanp_dots", "nanp_unicode_dashes"):
        writer = formats[shape][0]
        formats[f"{shape}_extension"] = (lambda rng, w=writer: w(rng) + rng.choice(EXTENSIONS), PHONE_TEMPLATES)
    for style in ("spaces", "dashes", "trunk", "trunk_spaced", "area_parens", "code_parens", "nbsp", "compact"):
        formats[f"intl_{style}"] = (lambda rng, s=style: _international(rng, s), PHONE_TEMPLATES)
    formats["intl_spaces_extension"] = (lambda rng: _international(rng, "spaces") + rng.choice(EXTENSIONS),
                                        PHONE_TEMPLATES)
    formats["nanp_bare_phone_word"] = (_nanp, ("call me at {v} tomorrow", "my cell is {v}", "phone {v}",
                                               "text {v} when you land"))
    return formats


def _phone_lookalikes() -> dict[str, tuple[Writer, tuple[str, ...]]]:
    neutral = ("reference {v}", "batch {v} passed QA", "part {v} is back-ordered")
    return {
        "nanp_area_starts_0_or_1": (lambda rng: f"{rng.choice('01')}{_digits(rng, 2)}-{rng.randint(200, 999)}-"
                                                f"{_digits(rng, 4)}", neutral),
        "nanp_exchange_n11": (lambda rng: f"({rng.randint(200, 989)}) {rng.randint(2, 9)}11{rng.choice(validators.DASHES)}"
                                          f"{_digits(rng, 4)}", neutral),
        "seven_digits": (lambda rng: f"{rng.randint(200, 999)}-{_digits(rng, 4)}", ("call {v}", "ext {v}")),
        "iso_date": (lambda rng: f"{rng.randint(1990, 2030)}-{rng.randint(1, 12):02d}-{rng.randint(1, 28):02d}",
                     ("on {v}", "due {v}")),
        "dotted_date": (lambda rng: f"{rng.randint(1, 28):02d}.{rng.randint(1, 12):02d}.{rng.randint(1990, 2030)}",
                        ("on {v}",)),
        "bare_ten_no_phone_word": (_nanp, ("confirmation {v}", "the order id is {v}")),
        "intl_first_group_not_a_code": (lambda rng: f"+{rng.choice(['4420', '3312', '8131'])} {_digits(rng, 4)} "
                                                    f"{_digits(rng, 4)}", neutral),
    }


# ---------------------------------------------------------------- emails

EMAIL_TEMPLATES = ("write to {v} today", "Email: {v}", "<{v}>", "({v})", "mailto:{v}", "cc {v}, please",
                   "contact {v}.")
_IDN_LOCALS = ("josé.garcía", "müller", "zoë", "françois", "иван", "δοκιμή", "用户", "søren", "łukasz", "çağrı")
_IDN_DOMAINS = ("bücher.de", "correo.es", "пример.рф", "παράδειγμα.ελ", "例子.广告", "münchen.de", "exämple.com",
                "xn--bcher-kva.de", "xn--e1afmkfd.xn--p1ai")
_ASCII_DOMAINS = ("example.com", "mail.example.co.uk", "corp-mail.example.org", "example.io", "eu.example.net")


def _local(rng: random.Random) -> str:
    first, last = rng.choice(vocab.FIRST_NAMES).lower(), rng.choice(vocab.LAST_NAMES).lower()
    return rng.choice([f"{first}.{last}", f"{first[0]}{last}", f"{first}_{last}", f"{first}{rng.randint(1, 99)}"])


def _email_formats() -> dict[str, tuple[Writer, tuple[str, ...]]]:
    def ascii_domain(rng: random.Random) -> str:
        return rng.choice(_ASCII_DOMAINS)

    return {
        "email_plain": (lambda rng: f"{_local(rng)}@{ascii_domain(rng)}", EMAIL_TEMPLATES),
        "email_plus": (lambda rng: f"{_local(rng)}+{rng.choice(['hr', 'billing', 'test', 'x1'])}@{ascii_domain(rng)}",
                       EMAIL_TEMPLATES),
        "email_uppercase": (lambda rng: f"{_local(rng).title()}@{ascii_domain(rng).upper()}", EMAIL_TEMPLATES),
        "email_idn_local": (lambda rng: f"{rng.choice(_IDN_LOCALS)}@{ascii_domain(rng)}", EMAIL_TEMPLATES),
        "email_idn_domain": (lambda rng: f"{_local(rng)}@{rng.choice(_IDN_DOMAINS)}", EMAIL_TEMPLATES),
        "email_idn_both": (lambda rng: f"{rng.choice(_IDN_LOCALS)}@{rng.choice(_IDN_DOMAINS)}", EMAIL_TEMPLATES),
        "email_quoted_local": (lambda rng: f'"{_local(rng).replace(".", " ")}"@{ascii_domain(rng)}', EMAIL_TEMPLATES),
        "email_quoted_dots": (lambda rng: f'"{_local(rng)}..{rng.randint(1, 9)}"@{ascii_domain(rng)}', EMAIL_TEMPLATES),
        "email_apostrophe": (lambda rng: f"{rng.choice(['o', 'd'])}'{_local(rng)}@{ascii_domain(rng)}", EMAIL_TEMPLATES),
    }


def _email_lookalikes() -> dict[str, tuple[Writer, tuple[str, ...]]]:
    neutral = ("{v}", "see {v}")
    return {
        "no_domain_dot": (lambda rng: f"{_local(rng)}@localhost", neutral),
        "handle": (lambda rng: f"@{_local(rng).replace('.', '_')}", ("ping {v} on chat",)),
        "double_dot_local": (lambda rng: f"{_local(rng).replace('.', '..')}..x@example.com", neutral),
        "spelled_out": (lambda rng: f"{_local(rng)} at example dot com", neutral),
        "one_letter_tld": (lambda rng: f"{_local(rng)}@example.c", neutral),
    }


# ---------------------------------------------------------------- IBAN

IBAN_TEMPLATES = ("IBAN {v}", "pay to {v} by Friday", "IBAN: {v} (BIC DEUTDEFF)", "account {v}.", "({v})")
_IBAN_LETTER_BANKS = {"GB", "NL", "IE", "QA", "KW", "MT", "BH", "JO", "MU"}


def _iban_compact(rng: random.Random, valid: bool = True) -> str:
    country = rng.choice(sorted(validators.IBAN_LENGTHS))
    rest = validators.IBAN_LENGTHS[country] - 4
    bban = "".join(rng.choice(string.ascii_uppercase) for _ in range(4)) if country in _IBAN_LETTER_BANKS else ""
    bban += _digits(rng, rest - len(bban))
    check = validators.iban_check_digits(country, bban)
    if not valid:
        check = f"{(int(check) + rng.randint(1, 90)) % 97 + 2:02d}"
        if check == validators.iban_check_digits(country, bban):
            check = f"{(int(check) + 1) % 97 + 2:02d}"
    return country + check + bban


def _fours(compact: str, sep: str) -> str:
    return sep.join(compact[i : i + 4] for i in range(0, len(compact), 4))


def _iban_formats() -> dict[str, tuple[Writer, tuple[str, ...]]]:
    formats: dict[str, tuple[Writer, tuple[str, ...]]] = {
        "iban_compact": (_iban_compact, IBAN_TEMPLATES),
        "iban_compact_lower": (lambda rng: _iban_compact(rng).lower(), IBAN_TEMPLATES),
    }
    for sep in (" ", NBSP, THIN, "-", "\u2013", "\u2011"):
        formats[f"iban_fours_U+{ord(sep):04X}"] = (lambda rng, s=sep: _fours(_iban_compact(rng), s), IBAN_TEMPLATES)
    formats["iban_fours_lower"] = (lambda rng: _fours(_iban_compact(rng), " ").lower(), IBAN_TEMPLATES)
    return formats


def _iban_lookalikes() -> dict[str, tuple[Writer, tuple[str, ...]]]:
    neutral = ("IBAN {v}", "ref {v}")
    return {
        "iban_bad_check": (lambda rng: _fours(_iban_compact(rng, valid=False), " "), neutral),
        "iban_wrong_length": (lambda rng: _fours(_iban_compact(rng)[:-1], " "), neutral),
        "iban_unknown_country": (lambda rng: _fours("XQ" + _digits(rng, 18), " "), neutral),
    }


# ---------------------------------------------------------------- IP addresses

IP_TEMPLATES = ("host {v} is down", "from {v}", "connect to {v}.", "[{v}]", "allow {v} in the firewall")


def _ipv4(rng: random.Random) -> str:
    return f"{rng.choice([10, 23, 45, 98, 172, 185, 192, 203])}.{rng.randint(0, 255)}.{rng.randint(0, 255)}." \
           f"{rng.randint(1, 254)}"


def _ipv6_full(rng: random.Random) -> str:
    return "2001:db8:" + ":".join(f"{rng.randint(0, 0xFFFF):x}" for _ in range(6))


def _ip_formats() -> dict[str, dict[str, tuple[Writer, tuple[str, ...]]]]:
    return {
        "ipv4": {
            "ipv4_plain": (_ipv4, IP_TEMPLATES),
            "ipv4_port": (lambda rng: f"{_ipv4(rng)}:{rng.choice([22, 443, 8080])}", IP_TEMPLATES),
            "ipv4_cidr": (lambda rng: f"{_ipv4(rng)}/{rng.choice([8, 16, 24, 32])}", IP_TEMPLATES),
        },
        "ipv6": {
            "ipv6_full": (_ipv6_full, IP_TEMPLATES),
            "ipv6_compressed": (lambda rng: f"2001:db8::{rng.randint(1, 0xFFFF):x}:{rng.randint(1, 0xFFFF):x}",
                                IP_TEMPLATES),
            "ipv6_upper": (lambda rng: _ipv6_full(rng).upper(), IP_TEMPLATES),
            "ipv6_link_local": (lambda rng: f"fe80::{rng.randint(1, 0xFFFF):x}:{rng.randint(1, 0xFFFF):x}", IP_TEMPLATES),
            "ipv6_loopback": (lambda rng: "::1", IP_TEMPLATES),
        },
    }


# The ipv4 and ipv6 spans hold the address alone: a port, prefix length or zone is not part of it.
def _ip_value(fmt: str, written: str) -> str:
    if fmt in ("ipv4_port", "ipv4_cidr"):
        return written.split(":")[0].split("/")[0]
    return written


def _ip_lookalikes() -> dict[str, dict[str, tuple[Writer, tuple[str, ...]]]]:
    return {
        "ipv4": {
            "ipv4_octet_over_255": (lambda rng: f"{rng.randint(256, 999)}.{rng.randint(0, 255)}.1.{rng.randint(1, 9)}",
                                    ("host {v}",)),
            "version_string": (lambda rng: f"{rng.randint(1, 9)}.{rng.randint(0, 20)}.{rng.randint(0, 9)}."
                                           f"{rng.randint(1, 200)}", ("version {v}", "build {v}", "firmware v{v}")),
            "three_parts": (lambda rng: f"{rng.randint(1, 9)}.{rng.randint(0, 20)}.{rng.randint(0, 9)}",
                            ("release {v}",)),
        },
        "ipv6": {
            "mac_address": (lambda rng: ":".join(f"{rng.randint(0, 255):02x}" for _ in range(6)), ("MAC {v}",)),
            "clock_time": (lambda rng: f"{rng.randint(0, 23):02d}:{rng.randint(0, 59):02d}:{rng.randint(0, 59):02d}",
                           ("at {v}",)),
            "scope_operator": (lambda rng: "::", ("the {v} operator", "std{v}vector")),
        },
    }


# ---------------------------------------------------------------- credentials

_ALNUM = string.ascii_letters + string.digits
_URLSAFE = _ALNUM + "_-"


def _body(rng: random.Random, n: int, alphabet: str = _ALNUM) -> str:
    return "".join(rng.choice(alphabet) for _ in range(n))


CREDENTIAL_WRITERS: dict[str, Writer] = {
    "aws_access_key_id": lambda rng: rng.choice(["AKIA", "ASIA"]) + _body(rng, 16, string.ascii_uppercase + "234567"),
    "aws_secret_access_key": lambda rng: _body(rng, 19) + "/" + _body(rng, 10) + "+" + _body(rng, 9),
    "github_classic": lambda rng: f"gh{rng.choice('pousr')}_" + _body(rng, 36),
    "github_fine_grained": lambda rng: "github_pat_" + _body(rng, 22) + "_" + _body(rng, 59),
    "gitlab_pat": lambda rng: "glpat-" + _body(rng, 20, _URLSAFE),
    "slack_bot": lambda rng: f"xox{rng.choice('bpa')}-" + _digits(rng, 12) + "-" + _digits(rng, 12) + "-" + _body(rng, 24),
    "google_api_key": lambda rng: "AIza" + _body(rng, 35, _URLSAFE),
    "stripe_live": lambda rng: rng.choice(["sk", "rk", "pk"]) + "_live_" + _body(rng, 24),
    "openai_project": lambda rng: "sk-proj-" + _body(rng, 48, _URLSAFE),
    "anthropic": lambda rng: "sk-ant-api03-" + _body(rng, 40, _URLSAFE),
    "npm": lambda rng: "npm_" + _body(rng, 36),
    "huggingface": lambda rng: "hf_" + _body(rng, 34),
    "sendgrid": lambda rng: "SG." + _body(rng, 22, _URLSAFE) + "." + _body(rng, 43, _URLSAFE),
    "twilio": lambda rng: "SK" + _body(rng, 32, "0123456789abcdef"),
    "jwt": lambda rng: "eyJ" + _body(rng, 30, _URLSAFE) + ".eyJ" + _body(rng, 40, _URLSAFE) + "." + _body(rng, 43, _URLSAFE),
    "generic_mixed_32": lambda rng: _body(rng, 12, string.ascii_uppercase) + _body(rng, 10, string.digits)
    + _body(rng, 10, string.ascii_lowercase),
}
KEY_TEMPLATES = ("token={v}", "export API_TOKEN={v}", "key: {v}", '"{v}"', "use {v} for staging.", "secret {v}")


def _key_formats() -> dict[str, tuple[Writer, tuple[str, ...]]]:
    def shuffled(writer: Writer) -> Writer:
        def write(rng: random.Random) -> str:
            chars = list(writer(rng))
            rng.shuffle(chars)
            return "".join(chars)
        return write

    formats = {f"key_{name}": (writer, KEY_TEMPLATES) for name, writer in CREDENTIAL_WRITERS.items()}
    formats["key_generic_mixed_32"] = (shuffled(CREDENTIAL_WRITERS["generic_mixed_32"]), KEY_TEMPLATES)
    return formats


def _key_lookalikes() -> dict[str, tuple[Writer, tuple[str, ...]]]:
    neutral = ("token={v}", "key: {v}", "see {v}")
    return {
        "placeholder_stripe": (lambda rng: "sk_live_" + rng.choice("Xx*0") * 24, neutral),
        "placeholder_aws": (lambda rng: "AKIA" + rng.choice("X0") * 16, neutral),
        "placeholder_github": (lambda rng: "ghp_" + "x" * 36, neutral),
        "short_aws": (lambda rng: "AKIA" + _body(rng, 8, string.ascii_uppercase), neutral),
        "commit_hash": (lambda rng: _body(rng, 40, "0123456789abcdef"), ("commit {v}",)),
        "uuid": (lambda rng: "-".join(_body(rng, n, "0123456789abcdef") for n in (8, 4, 4, 4, 12)), ("ticket {v}",)),
        "identifier": (lambda rng: rng.choice(vocab.IDENT_VERBS) + "".join(rng.sample(vocab.IDENT_NOUNS, 3))
                       + rng.choice(vocab.IDENT_SUFFIXES), ("class {v} fails",)),
        "snake_words": (lambda rng: "github_pat_settings_page_" + rng.choice(["v2", "old", "new"]), ("open {v}",)),
    }


# ---------------------------------------------------------------- street addresses

ADDRESS_TEMPLATES = ("ship to {v}.", "Address: {v}", "we moved to {v} last week", "({v})")


def _street(rng: random.Random) -> str:
    name = rng.choice(vocab.STREET_NAMES)
    return f"{rng.randint(1, 9899)} {rng.choice(vocab.STREET_PREFIXES)}{name} {rng.choice(vocab.STREET_SUFFIXES)}"


def _address_formats() -> dict[str, tuple[Writer, tuple[str, ...]]]:
    def city(rng: random.Random) -> str:
        name, state, zip3 = rng.choice(vocab.CITIES)
        return f"{name}, {state} {zip3}{rng.randint(0, 99):02d}"

    return {
        "address_street": (_street, ADDRESS_TEMPLATES),
        "address_direction": (lambda rng: f"{_street(rng)} {rng.choice(vocab.STREET_DIRECTIONS)}", ADDRESS_TEMPLATES),
        "address_suite": (lambda rng: f"{_street(rng)}, Suite {rng.randint(100, 999)}", ADDRESS_TEMPLATES),
        "address_apt_letter": (lambda rng: f"{_street(rng)}, Apt. {rng.randint(1, 40)}{rng.choice('ABCD')}",
                               ADDRESS_TEMPLATES),
        "address_city_zip": (lambda rng: f"{_street(rng)}, {city(rng)}", ADDRESS_TEMPLATES),
        "address_po_box": (lambda rng: f"{rng.choice(['PO Box', 'P.O. Box'])} {rng.randint(1, 99999)}",
                           ADDRESS_TEMPLATES),
    }


def _address_lookalikes() -> dict[str, tuple[Writer, tuple[str, ...]]]:
    return {
        "number_then_words": (lambda rng: f"{rng.randint(2, 90)} days", ("it took {v} to arrive",)),
        "route_number": (lambda rng: f"Route {rng.randint(1, 99)}", ("take {v} north",)),
        "no_suffix": (lambda rng: f"{rng.randint(1, 9)} Main floor", ("on the {v}",)),
    }


# ---------------------------------------------------------------- person names

NAME_TEMPLATES = ("I met {v} at the conference.", "Per {v}'s note, the deadline moved.", "Dr. {v} will call back.",
                  "My name is {v}.", "{v} said the numbers look right.", "Please loop in {v} on this.",
                  "Thanks to {v} for the quick turnaround.", "Signed, {v}")


def _name_formats() -> dict[str, tuple[Writer, tuple[str, ...]]]:
    return {
        "name_full": (lambda rng: f"{rng.choice(vocab.FIRST_NAMES)} {rng.choice(vocab.LAST_NAMES)}", NAME_TEMPLATES),
        "name_with_initial": (lambda rng: f"{rng.choice(vocab.FIRST_NAMES)} {rng.choice(string.ascii_uppercase)}. "
                                          f"{rng.choice(vocab.LAST_NAMES)}", NAME_TEMPLATES),
        "name_first_only": (lambda rng: rng.choice(vocab.FIRST_NAMES),
                            ("Hi {v}, quick one.", "{v} asked about the report.", "I spoke with {v} today.")),
    }


def _name_lookalikes() -> dict[str, tuple[Writer, tuple[str, ...]]]:
    return {
        "month_day": (lambda rng: f"{rng.choice(['May', 'June', 'April', 'August'])} {rng.randint(1, 28)}",
                      ("due {v}", "On {v} we ship.")),
        "place": (lambda rng: rng.choice(["Lincoln Memorial", "Madison Square Garden", "Virginia Beach", "Jackson Hole"]),
                  ("We visited {v} last year.",)),
        "common_word": (lambda rng: rng.choice(["Will", "Grant", "Mark", "Bill", "Rose", "Price", "Hunter"]),
                        ("{v} the committee approve it?", "the {v} proposal")),
    }


# ---------------------------------------------------------------- the corpus


def _catalogue() -> tuple[dict[str, dict[str, tuple[Writer, tuple[str, ...]]]],
                          dict[str, dict[str, tuple[Writer, tuple[str, ...]]]]]:
    ips, ip_look = _ip_formats(), _ip_lookalikes()
    formats = {
        "person_name": _name_formats(), "email": _email_formats(), "phone": _phone_formats(), "ssn": _ssn_formats(),
        "credit_card": _card_formats(), "street_address": _address_formats(), "ipv4": ips["ipv4"],
        "ipv6": ips["ipv6"], "iban": _iban_formats(), "api_key": _key_formats(),
    }
    lookalikes = {
        "person_name": _name_lookalikes(), "email": _email_lookalikes(), "phone": _phone_lookalikes(),
        "ssn": _ssn_lookalikes(), "credit_card": _card_lookalikes(), "street_address": _address_lookalikes(),
        "ipv4": ip_look["ipv4"], "ipv6": ip_look["ipv6"], "iban": _iban_lookalikes(), "api_key": _key_lookalikes(),
    }
    return formats, lookalikes


FORMATS, LOOKALIKES = _catalogue()


def plant(rng: random.Random, pii_type: str, lookalike: bool) -> Planted:
    """One value (or look-alike) of ``pii_type`` in a random format and context."""
    table = (LOOKALIKES if lookalike else FORMATS)[pii_type]
    fmt = rng.choice(sorted(table))
    writer, templates = table[fmt]
    return Planted(pii_type, fmt, writer(rng), rng.choice(templates), not lookalike)


def _write_line(builder: TextBuilder, planted: Planted) -> str | None:
    """Append the line; return the format of a recorded PII span (None for a look-alike)."""
    before, after = planted.template.split("{v}", 1)
    builder.text(before)
    if not planted.pii:
        builder.text(planted.value)
    elif planted.pii_type in ("ipv4", "ipv6"):
        address = _ip_value(planted.fmt, planted.value)
        builder.pii(planted.pii_type, address)
        builder.text(planted.value[len(address) :])
    else:
        builder.pii(planted.pii_type, planted.value)
    builder.text(after + "\n")
    return planted.fmt if planted.pii else None


def generate_adversarial(seed: int, documents: int, lines: tuple[int, int] = (4, 8),
                         lookalike_share: float = 0.3) -> Iterator[AdversarialDocument]:
    """``documents`` documents of ``lines`` lines (inclusive), each line one value or look-alike of a random type."""
    rng = random.Random(seed)
    for index in range(documents):
        builder = TextBuilder()
        formats: list[str] = []
        lookalikes: list[str] = []
        for _ in range(rng.randint(*lines)):
            planted = plant(rng, rng.choice(ADVERSARIAL_TYPES), rng.random() < lookalike_share)
            fmt = _write_line(builder, planted)
            if fmt is None:
                lookalikes.append(f"{planted.pii_type}/{planted.fmt}")
            else:
                formats.append(fmt)
        text, spans = builder.build()
        yield AdversarialDocument(f"adversarial-{index:05d}", text, spans, tuple(formats), tuple(lookalikes))
