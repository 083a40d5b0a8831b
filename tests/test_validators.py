"""Checksums against values computed by hand or taken from the standards' own examples."""

import pytest

from canaryaudit.pii import validators as v


@pytest.mark.parametrize(
    ("number", "valid"),
    [
        ("79927398713", True),  # the classic Luhn example: sum 70
        ("79927398710", False),
        ("4111 1111 1111 1111", True),
        ("4111-1111-1111-1112", False),
        ("0", True),  # sum 0
        ("", False),
    ],
)
def test_luhn(number, valid):
    assert v.luhn_valid(number) is valid


def test_luhn_check_digit_by_hand():
    # 7992739871?: doubled digits give 67 without the check digit, so 3 completes 70.
    assert v.luhn_check_digit("7992739871") == "3"


@pytest.mark.parametrize(
    ("number", "brand"),
    [
        ("4111111111111111", "visa"),
        ("5500 0000 0000 0004", "mastercard"),
        ("3782 822463 10005", "amex"),
        ("6011111111111117", "discover"),
        ("1234567812345670", None),  # passes Luhn, no issuer
    ],
)
def test_card_brand(number, brand):
    assert v.card_brand(number) == brand


@pytest.mark.parametrize(
    ("ssn", "valid"),
    [
        ("078-05-1120", True),
        ("000-12-3456", False),  # area 000
        ("666-12-3456", False),  # area 666
        ("912-12-3456", False),  # area 9xx
        ("123-00-4567", False),  # group 00
        ("123-45-0000", False),  # serial 0000
        ("123-45-678", False),  # 8 digits
    ],
)
def test_ssn(ssn, valid):
    assert v.ssn_valid(ssn) is valid


@pytest.mark.parametrize(
    ("digits", "valid"),
    [("7138534512", True), ("1138534512", False), ("9118534512", False), ("7131534512", False), ("713911451", False)],
)
def test_nanp(digits, valid):
    assert v.nanp_valid(digits) is valid


@pytest.mark.parametrize(
    ("iban", "valid"),
    [
        ("GB82 WEST 1234 5698 7654 32", True),  # ISO 13616 example
        ("DE89370400440532013000", True),
        ("GB82 WEST 1234 5698 7654 33", False),  # check fails
        ("DE8937040044053201300", False),  # wrong length for DE
        ("XX82WEST12345698765432", False),  # unknown country
    ],
)
def test_iban(iban, valid):
    assert v.iban_valid(iban) is valid


def test_iban_check_digits_roundtrip_example():
    assert v.iban_check_digits("GB", "WEST12345698765432") == "82"


@pytest.mark.parametrize(("text", "bits"), [("", 0.0), ("aaaa", 0.0), ("aabb", 1.0), ("abcd", 2.0), ("aaab", 0.8112781244591328)])
def test_entropy_by_hand(text, bits):
    # aaab: -(3/4 log2 3/4 + 1/4 log2 1/4) = 0.811278...
    assert v.shannon_entropy_bits(text) == pytest.approx(bits)


def test_ip_validity():
    assert v.ipv4_valid("192.168.0.1") and not v.ipv4_valid("256.1.1.1") and not v.ipv4_valid("1.2.3")
    assert v.ipv6_valid("2001:db8::1") and not v.ipv6_valid("2001:db8:::1")
