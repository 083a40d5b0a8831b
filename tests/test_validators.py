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


@pytest.mark.parametrize(
    ("iban", "valid"),
    [
        # examples from the ISO 13616 / SWIFT registry; mod 97 checked by hand-rolled digit arithmetic
        ("SA0380000000608010167519", True),  # Saudi Arabia, 24
        ("AE070331234567890123456", True),  # UAE, 23
        ("BR1800360305000010009795493C1", True),  # Brazil, 29, letter in the BBAN
        ("QA58DOHB00001234567890ABCDEFG", True),  # Qatar, 29
        ("KW81CBKU0000000000001234560101", True),  # Kuwait, 30
        ("CH9300762011623852957", True),  # Switzerland, 21
        ("MT84MALT011000012345MTLCAST001S", True),  # Malta, 31
        ("es91 2100 0418 4502 0005 1332", True),  # lowercase, grouped
        ("ES91-2100-0418-4502-0005-1332", True),  # dashes
        ("SA03800000006080101675", False),  # two characters short for SA
        ("AE070331234567890123457", False),  # check fails
    ],
)
def test_iban_registry_countries(iban, valid):
    assert v.iban_valid(iban) is valid


def test_iban_length_table_matches_registry_examples():
    # lengths counted by hand from the registry examples above
    assert (v.IBAN_LENGTHS["SA"], v.IBAN_LENGTHS["AE"], v.IBAN_LENGTHS["BR"], v.IBAN_LENGTHS["QA"], v.IBAN_LENGTHS["KW"]) == (
        24, 23, 29, 29, 30,
    )
    assert min(v.IBAN_LENGTHS.values()) == 15 and max(v.IBAN_LENGTHS.values()) == 33  # Norway, Russia


@pytest.mark.parametrize(
    ("digits", "code"),
    [("442079460958", "44"), ("4930901820", "49"), ("74951234567", "7"), ("35312345678", "353"),
     ("14155552671", "1"), ("0207946095", None), ("", None)],
)
def test_calling_code(digits, code):
    assert v.calling_code(digits) == code


@pytest.mark.parametrize(
    ("phone", "valid"),
    [
        ("+44 20 7946 0958", True),  # 44 + 10 national digits
        ("+49 30 901820", True),  # 49 + 8
        ("+44 (0)20 7946 0958", True),  # trunk (0) ignored
        ("+442079460958", True),
        ("+4420 7946 0958", False),  # first group is not the calling code
        ("+44 20 794", False),  # 5 national digits: too short
        ("+44 2079 4609 5812 345", False),  # 17 digits: longer than E.164 allows
        ("+1 415 555 2671", True),
        ("+1 115 555 2671", False),  # NANP area cannot start with 1
        ("+0 20 7946 0958", False),  # no calling code starts with 0
        ("1-800-555-1234", True),
        ("1 (800) 555-1234", True),
        ("4155552671", True),
        ("1-800-155-1234", False),  # exchange starts with 1
        ("2-800-555-1234", False),  # 11 digits not starting with 1
    ],
)
def test_phone_valid(phone, valid):
    assert v.phone_valid(phone) is valid


def test_ssn_accepts_spaces_and_bare_digits():
    assert v.ssn_valid("078 05 1120") and v.ssn_valid("078051120") and not v.ssn_valid("078 00 1120")
