"""The builtin email generator: deterministic, recorded spans are right, secrets recur."""

import re
import time
from collections import Counter

from canaryaudit.corpus.emails import generate_emails, quote_message
from canaryaudit.pii import validators
from canaryaudit.pii.spans import PII_TYPES, PiiSpan

CHECKS = {
    "credit_card": validators.card_valid,
    "ssn": validators.ssn_valid,
    "iban": validators.iban_valid,
    "ipv4": validators.ipv4_valid,
    "ipv6": validators.ipv6_valid,
    "phone": validators.phone_valid,
    "email": lambda v: "@" in v and "." in v.split("@")[1],
}


def test_same_seed_same_corpus_other_seed_other():
    a = list(generate_emails(5, 30_000))
    b = list(generate_emails(5, 30_000))
    c = list(generate_emails(6, 30_000))
    assert a == b
    assert [d.text for d in a] != [d.text for d in c]


def test_size_reaches_target_and_stops():
    docs = list(generate_emails(1, 50_000))
    total = sum(len(d.text.encode()) for d in docs)
    assert 50_000 <= total < 50_000 + max(len(d.text.encode()) for d in docs) + 1


def test_every_recorded_span_is_a_valid_item_of_its_type():
    docs = list(generate_emails(2, 80_000))
    seen = Counter()
    for doc in docs:
        for span in doc.pii:
            value = doc.text[span.start : span.end]
            assert value and "\n" not in value
            assert value == value.strip(" ,.;:") or value.endswith(("St.", "Ave.", "Rd.")), (span.type, value)
            if span.type in CHECKS:
                assert CHECKS[span.type](value), (span.type, value)
            seen[span.type] += 1
    assert set(seen) == set(PII_TYPES), f"every type is planted, got {sorted(seen)}"


def test_a_persons_details_recur_across_their_emails():
    docs = list(generate_emails(3, 60_000))
    phones_by_author: dict[str, set[str]] = {}
    for doc in docs:
        values = {doc.text[s.start : s.end] for s in doc.pii if s.type == "phone"}
        phones_by_author.setdefault(doc.author, set()).update(values)
    authors = Counter(d.author for d in docs)
    repeated = [a for a, n in authors.items() if n >= 3]
    assert repeated, "people write several emails"
    # the author's own phone is in every signature: one phone string occurs in >= 3 of their emails
    for author in repeated[:5]:
        texts = [d.text for d in docs if d.author == author]
        assert any(sum(p in t for t in texts) >= 3 for p in phones_by_author[author])


def test_quote_shifts_spans_by_prefix_per_line():
    text = "a 12\nb 34"
    spans = (PiiSpan("ssn", 2, 4), PiiSpan("ssn", 7, 9))
    quoted, moved = quote_message(text, spans)
    assert quoted == "> a 12\n> b 34\n"
    assert [quoted[s.start : s.end] for s in moved] == ["12", "34"]


def test_lookalikes_are_planted():
    text = "\n".join(d.text for d in generate_emails(4, 150_000))
    assert "not my SSN" in text and "firmware" in text


def _values(docs, pii_type):
    return {d.text[s.start : s.end] for d in docs for s in d.pii if s.type == pii_type}


def test_pii_comes_in_varied_formats():
    docs = list(generate_emails(7, 400_000))
    phones, ssns, cards = _values(docs, "phone"), _values(docs, "ssn"), _values(docs, "credit_card")
    ibans, addresses, emails = _values(docs, "iban"), _values(docs, "street_address"), _values(docs, "email")
    keys = _values(docs, "api_key")
    text = "\n".join(d.text for d in docs)
    assert any(re.fullmatch(r"1-8[0-8]{2}-\d{3}-\d{4}", p) for p in phones)  # toll-free with a leading 1
    assert any(re.fullmatch(r"\+(?!1)\d{1,3}[ -]\d.*", p) for p in phones)  # international, grouped
    assert any(re.fullmatch(r"\d{10}", p) for p in phones)  # bare ten digits
    assert any(re.fullmatch(r"\d{3} \d{2} \d{4}", s) for s in ssns) and any(re.fullmatch(r"\d{9}", s) for s in ssns)
    assert re.search(r"\b\d{15,16} \d{3}\b", text)  # a contiguous card next to its CVV
    assert any(len(validators.digits_only(c)) == 19 for c in cards)  # 19-digit Visa
    assert any(i.islower() for i in ibans) and any(re.fullmatch(r"[A-Z]{2}\d{2}[A-Z0-9]{11,30}", i) for i in ibans)
    assert {i[:2].upper() for i in ibans} >= {"SA", "AE", "BR", "QA", "KW"}
    assert re.search(r"IBAN \S.* BIC [A-Z]{6}", text)
    assert any(re.search(r" (NW|NE|SW|SE|N|S|E|W)\b", a) for a in addresses)
    assert any(re.search(r"\d(st|nd|rd|th) ", a) for a in addresses)
    assert any(a.startswith(("PO Box", "P.O. Box")) for a in addresses)
    assert any(re.search(r"(Apt|Suite|Unit|Ste)\.? \d*[A-F]\b", a) for a in addresses)
    assert any(re.search(r"\b(Mc|O')[A-Z]", a) for a in addresses)
    assert any(e.split("@")[1].count(".") >= 2 for e in emails)  # subdomain
    # O'Brien-style names are rare (a few per hundred people): look further for an apostrophe email
    assert any("'" in d.text[s.start : s.end].split("@")[0] for d in generate_emails(7, 2_000_000) for s in d.pii
               if s.type == "email")
    assert any("/" in k or "+" in k for k in keys)


def test_lookalikes_of_the_new_formats_are_planted():
    docs = list(generate_emails(4, 300_000))
    text = "\n".join(d.text for d in docs)
    assert re.search(r"version \d+\.\d+\.\d+\.\d+", text)
    assert re.search(r"\b(get|set|load|fetch|build|update|parse|create|validate|compute|render|handle)[A-Z]\w+", text)
    assert " :: " in text
    assert re.search(r"confirmation number is \d{10}\.", text) and re.search(r"claim number is \d{9},", text)
    # none of them is recorded as PII
    for d in docs:
        for s in d.pii:
            assert "version" not in d.text[max(0, s.start - 8) : s.start]


def test_generation_is_fast():
    start = time.perf_counter()
    size = sum(len(d.text.encode()) for d in generate_emails(11, 500_000))
    assert size >= 500_000 and time.perf_counter() - start < 1.0
