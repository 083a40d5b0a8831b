"""Each detector on hand-written positives and near-miss negatives; overlap rules; masking."""

import random

import pytest

from canaryaudit.errors import RegistryError
from canaryaudit.pii.detectors import DETECTORS, EntropyOptions, build_detectors, detect
from canaryaudit.pii.sanitize import apply_actions, placeholder, sanitize_text
from canaryaudit.pii.spans import PiiSpan

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
    # cards next to other numbers: a CVV after, a quantity before, a 19-digit shape that fails
    ("credit_card", "card 4111111111111111 123", "4111111111111111"),
    ("credit_card", "qty 2 4111 1111 1111 1111", "4111 1111 1111 1111"),
    ("credit_card", "card 4111 1111 1111 1111 123 ok", "4111 1111 1111 1111"),  # 19 digits fail Luhn
    ("credit_card", "card 4111111111111111 cvv 123", "4111111111111111"),
    # IBAN: stop at the country's length (ES = 24) even when a BIC follows; lowercase; dashes; new countries
    ("iban", "IBAN ES91 2100 0418 4502 0005 1332 BIC CAIXESBBXXX", "ES91 2100 0418 4502 0005 1332"),
    ("iban", "iban es91 2100 0418 4502 0005 1332.", "es91 2100 0418 4502 0005 1332"),
    ("iban", "to de89370400440532013000 now", "de89370400440532013000"),
    ("iban", "IBAN DE89-3704-0044-0532-0130-00 ok", "DE89-3704-0044-0532-0130-00"),
    ("iban", "IBAN SA03 8000 0000 6080 1016 7519", "SA03 8000 0000 6080 1016 7519"),
    ("iban", "pay AE070331234567890123456 today", "AE070331234567890123456"),
    ("iban", "conta BR1800360305000010009795493C1", "BR1800360305000010009795493C1"),
    ("iban", "QA58 DOHB 0000 1234 5678 90AB CDEF G", "QA58 DOHB 0000 1234 5678 90AB CDEF G"),
    ("iban", "KW81CBKU0000000000001234560101 BIC CBKUKWKW", "KW81CBKU0000000000001234560101"),
    ("iban", "NO93 8601 1117 947 is the shortest", "NO93 8601 1117 947"),
    # phones: leading 1, toll-free, bare ten digits next to a phone word, international
    ("phone", "call 1-800-555-1234 today", "1-800-555-1234"),
    ("phone", "call 1 (800) 555-1234 today", "1 (800) 555-1234"),
    ("phone", "call me at 4155552671 today", "4155552671"),
    ("phone", "try 4155552671 and leave a message", "4155552671"),
    ("phone", "office +44 20 7946 0958 ext", "+44 20 7946 0958"),
    ("phone", "tel +49 30 901820.", "+49 30 901820"),
    ("phone", "tel +44 (0)20 7946 0958", "+44 (0)20 7946 0958"),
    ("phone", "sms +14155552671", "+14155552671"),
    ("phone", "ring +442079460958 now", "+442079460958"),
    ("phone", "call +44 20 7946 0958 2001 ok", "+44 20 7946 0958"),  # 16 digits with the year: retried shorter
    # SSN with spaces, or bare after an SSN word
    ("ssn", "SSN 078 05 1120 on file", "078 05 1120"),
    ("ssn", "SSN: 078051120", "078051120"),
    ("ssn", "my social security number is 078051120.", "078051120"),
    # emails: apostrophe in the local part, subdomains
    ("email", "mail john.o'brien@example.com now", "john.o'brien@example.com"),
    ("email", "see 'bob@mail.corp.example.com'", "bob@mail.corp.example.com"),
    # addresses: directionals, ordinals, Mc / O' names, unit letters, house-number letters, PO boxes
    ("street_address", "visit 1600 Pennsylvania Avenue NW, Washington, DC 20500 today",
     "1600 Pennsylvania Avenue NW, Washington, DC 20500"),
    ("street_address", "at 123 Main St, Apt 4B", "123 Main St, Apt 4B"),
    ("street_address", "at 42 5th Avenue", "42 5th Avenue"),
    ("street_address", "at 100 N. Main St", "100 N. Main St"),
    ("street_address", "at 12 McDonald Ave", "12 McDonald Ave"),
    ("street_address", "at 12 O'Connor Street", "12 O'Connor Street"),
    ("street_address", "at 221B Baker Street", "221B Baker Street"),
    ("street_address", "send to PO Box 1234", "PO Box 1234"),
    ("street_address", "P.O. Box 77, Boise, ID 83702-1234 it is", "P.O. Box 77, Boise, ID 83702-1234"),
    ("street_address", "at 9 Oak Ln SE #12, O'Fallon, MO 63366", "9 Oak Ln SE #12, O'Fallon, MO 63366"),
    # AWS secret access key: 40 base64 characters with '/'
    ("api_key", "secret wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY.", "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"),
    ("api_key", "aws_secret_access_key=wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
     "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"),
    ("ipv6", "loopback ::1 here", "::1"),
    ("ipv6", "link fe80::1ff:fe23:4567:890a up", "fe80::1ff:fe23:4567:890a"),
    ("ipv4", "host 10.0.0.1 (version 2 of the box)", "10.0.0.1"),
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
    # cards: separators mixed or groups irregular; 20 digits is a longer number
    "card 4111 1111-1111 1111",
    "card 4111 11111111 1111",
    "ref 41111111111111111111 end",
    # IBAN: mixed case; the ES length (24) would end inside a group; a wrong length for DE
    "iban Es91 2100 0418 4502 0005 1332",
    "IBAN DE89 3704 0044 0532 0130 0012",
    "IBAN DE8937040044053201300",
    # phones: bare ten digits with no phone word; a first group that is not a calling code; too short
    "ref 4155552671 today",
    "The wire confirmation number is 4155552671.",
    "+4420 7946 0958",
    "score +44 123 4",
    # SSN: bare nine digits with no SSN word before them
    "order 078051120",
    "The claim number is 123456789, not my SSN.",
    "My SSN is on file. The claim number is 123456789.",  # the SSN word is in the previous sentence
    # version strings that are valid dotted quads
    "version 1.2.3.4",
    "upgraded to version 10.2.0.1 last night",
    "build: 10.0.0.1",
    "firmware v 4.1.0.7",
    # camelCase identifiers are not keys
    "class getUserAccountBalance2023Q4Report fails",
    "AbstractSingletonProxyFactoryBean2",
    "XMLHttpRequestHandlerV2Factory",
    "path usr/local/lib/Python3Packages/siteTools2",  # 40 characters with "/"
    # bare :: is punctuation
    "in the :: operator",
    "a ::: b",
]


@pytest.mark.parametrize("text", NEGATIVES)
def test_near_miss_is_not_pii(text):
    assert found(text) == []


def test_mask_covers_whole_values():
    cases = {
        "mail john.o'brien@example.com now": "mail <EMAIL> now",
        "at 1600 Pennsylvania Avenue NW, Washington, DC 20500.": "at <STREET_ADDRESS>.",
        "at 123 Main St, Apt 4B.": "at <STREET_ADDRESS>.",
        "IBAN ES91 2100 0418 4502 0005 1332 BIC CAIXESBBXXX": "IBAN <IBAN> BIC CAIXESBBXXX",
        "card 4111111111111111 cvv 123": "card <CREDIT_CARD> cvv 123",
        "call 1-800-555-1234, SSN 078 05 1120": "call <PHONE>, SSN <SSN>",
    }
    for text, masked in cases.items():
        assert sanitize_text(text, ALL, lambda t: "mask").text == masked


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


class _FixedSpans:
    """A detector that reports the spans it was given."""

    def __init__(self, pii_type: str, spans: list[tuple[int, int]]) -> None:
        self.pii_type, self.spans = pii_type, spans

    def find(self, _text: str):
        return iter(PiiSpan(self.pii_type, start, end) for start, end in self.spans)


def _detect_by_pairs(text: str, detectors) -> list[PiiSpan]:
    """detect's rule checked against every kept span: longest first, then the earlier detector, then start."""
    found = sorted((-(s.end - s.start), p, s.start, s) for p, d in enumerate(detectors) for s in d.find(text))
    chosen: list[PiiSpan] = []
    for *_, span in found:
        if not any(span.overlaps(kept) for kept in chosen):
            chosen.append(span)
    return sorted(chosen, key=lambda s: s.start)


def test_detect_resolves_overlaps_as_a_pairwise_check_does():
    rng = random.Random(0)
    for _ in range(400):
        detectors = []
        for kind in ("email", "phone", "ssn"):
            spans = []
            for _ in range(rng.randint(0, 12)):
                start = rng.randint(0, 60)
                spans.append((start, start + rng.choice([0, 1, 2, 3, 5, 8, 13])))  # zero-length ones too
            detectors.append(_FixedSpans(kind, spans))
        assert detect("", detectors) == _detect_by_pairs("", detectors)
