"""Each detector on hand-written positives and near-miss negatives; overlap rules; masking."""

import pytest

from canaryaudit.errors import RegistryError
from canaryaudit.pii.detectors import DETECTORS, EntropyOptions, build_detectors, detect
from canaryaudit.pii.sanitize import apply_actions, placeholder, sanitize_text

ALL = build_detectors(DETECTORS.names())


def found(text: str) -> list[tuple[str, str]]:
    return [(s.type, text[s.start : s.end]) for s in detect(text, ALL)]


POSITIVES = [
    ("email", "write to jane.doe+hr@corp-mail.example.com today", "jane.doe+hr@corp-mail.example.com"),
    ("phone", "call (713) 853-4512 now", "(713) 853-4512"),
    ("phone", "cell: +1-415-555-2671.", "+1-415-555-2671"),
    ("phone", "fax 212.555.0199", "212.555.0199"),
    ("ssn", "SSN 078-05-1120 on file", "078-05-1120"),
    ("credit_card", "card 4111 1111 1111 1111 exp 04/27", "4111 1111 1111 1111"),
    ("credit_card", "amex 3782-822463-10005", "3782-822463-10005"),
    ("credit_card", "number 5500000000000004.", "5500000000000004"),
    ("ipv4", "host 203.0.113.7 is down", "203.0.113.7"),
    ("ipv6", "v6 2001:db8:85a3::8a2e:370:7334 seen", "2001:db8:85a3::8a2e:370:7334"),
    ("iban", "IBAN GB82 WEST 1234 5698 7654 32 please", "GB82 WEST 1234 5698 7654 32"),
    ("iban", "to DE89370400440532013000.", "DE89370400440532013000"),
    ("api_key", "key AKIAIOSFODNN7EXAMPLE ok", "AKIAIOSFODNN7EXAMPLE"),
    ("api_key", "token Zx9qL2mN8vB4cR7tY1wE3uI6oP5aS0dF", "Zx9qL2mN8vB4cR7tY1wE3uI6oP5aS0dF"),
    ("street_address", "ship to 5043 Highland Road, Minneapolis, MN 55428 asap",
     "5043 Highland Road, Minneapolis, MN 55428"),
    ("street_address", "at 12 North Oak St, Apt 4 tomorrow", "12 North Oak St, Apt 4"),
]


@pytest.mark.parametrize(("pii_type", "text", "value"), POSITIVES)
def test_positive(pii_type, text, value):
    assert (pii_type, value) in found(text)


NEGATIVES = [
    "order 4111111111111112 shipped",  # 16 digits failing Luhn: not a card
    "ref 1234567812345670 passes Luhn but has no issuer prefix",
    "employee ref 912-34-5678",  # SSN shape, invalid area 9xx
    "code 000-12-3456 and 123-00-4567",  # SSN shape, area 000 / group 00
    "call 123-456-7890",  # area code cannot start with 1
    "the 911-555-1234 line",  # N11 area code
    "firmware 4.18.2.1043 installed",  # four dotted parts, last > 255
    "version 1.2.3 released on 2001-05-14",
    "GB82 WEST 1234 5698 7654 33",  # IBAN with a wrong check digit
    "commit 3f2a9cd3f2a9cd3f2a9cd3f2a9cd3f2a9cd3f2a9",  # lowercase hex: not a credential
    "ticket 123e4567-e89b-12d3-a456-426614174000",  # UUID
    "tracking 1Z999AA10123456784",  # upper + digits only, no known prefix
    "user@localhost has no domain",
    "meeting at 10:30 in room 12B44",
    "I live on the 3 Main floor",  # no street suffix
]


@pytest.mark.parametrize("text", NEGATIVES)
def test_near_miss_is_not_pii(text):
    assert found(text) == []


def test_entropy_threshold_is_configurable():
    token = "Zx9qL2mN8vB4cR7tY1wE"  # 20 chars, all classes
    strict = build_detectors(["api_key"], EntropyOptions(min_length=24))
    loose = build_detectors(["api_key"], EntropyOptions(min_length=20))
    assert detect(f"t {token} t", strict) == []
    assert len(detect(f"t {token} t", loose)) == 1


def test_overlap_prefers_longest_then_listed_first():
    text = "mail sk_live_abcDEF123ghiJKL456mnoPQR@example.com now"
    spans = detect(text, build_detectors(["api_key", "email"]))
    assert [(s.type, text[s.start : s.end]) for s in spans] == [("email", "sk_live_abcDEF123ghiJKL456mnoPQR@example.com")]


def test_unknown_detector_lists_known():
    with pytest.raises(RegistryError, match="known: email, phone"):
        build_detectors(["emial"])


def test_mask_leaves_no_raw_value():
    text = "SSN 078-05-1120, card 4111 1111 1111 1111, mail a.b@example.org, phone (713) 853-4512."
    result = sanitize_text(text, ALL, lambda t: "mask")
    assert result.text == "SSN <SSN>, card <CREDIT_CARD>, mail <EMAIL>, phone <PHONE>."
    for raw in ("078-05-1120", "4111", "a.b@example.org", "853-4512"):
        assert raw not in result.text
    assert result.masked == 4


def test_actions_drop_and_keep():
    text = "SSN 078-05-1120 and host 203.0.113.7"
    actions = {"ssn": "keep", "ipv4": "mask"}
    kept = sanitize_text(text, ALL, lambda t: actions[t])
    assert kept.text == "SSN 078-05-1120 and host <IPV4>"
    dropped = sanitize_text(text, ALL, lambda t: "drop" if t == "ssn" else "mask")
    assert dropped.text is None and [s.type for s in dropped.found] == ["ssn", "ipv4"]


def test_disabled_keeps_text_but_reports():
    text = "SSN 078-05-1120"
    result = sanitize_text(text, ALL, lambda t: "mask", enabled=False)
    assert result.text == text and [s.type for s in result.found] == ["ssn"]


def test_placeholder():
    assert placeholder("credit_card") == "<CREDIT_CARD>"
    assert apply_actions("abc", [], lambda t: "mask").text == "abc"
