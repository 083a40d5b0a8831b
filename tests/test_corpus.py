"""The builtin email generator: deterministic, recorded spans are right, secrets recur."""

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
    "phone": lambda v: validators.nanp_valid(validators.digits_only(v)[-10:]),
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
