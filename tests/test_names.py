"""Person names offline: gazetteer plus context, on hand-written cases and the builtin corpus's ground truth."""

from __future__ import annotations

import pytest

from canaryaudit.corpus import vocab
from canaryaudit.corpus.emails import generate_emails
from canaryaudit.pii.detectors import build_detectors, detect
from canaryaudit.pii.names import Gazetteer, NameDetector, load_gazetteer
from canaryaudit.pii.sanitize import score_detection

NAMES = build_detectors(["person_name"])


def names_in(text: str) -> list[str]:
    return [text[s.start : s.end] for s in detect(text, NAMES)]


@pytest.mark.parametrize(("text", "expected"), [
    ("From: Mei Haddad <mei@example.com>", ["Mei Haddad"]),  # header: gazetteer or not
    ("Hi Zorblat,\n\nthe numbers are in.", ["Zorblat"]),  # greeting position
    ("Good morning Marie,", ["Marie"]),
    ("> > Dear Priya,", ["Priya"]),  # quoted reply
    ("Thanks,\nQuixana\n", ["Quixana"]),  # signature after a sign-off
    ("--\nDennis Cunningham\nStaff Engineer", ["Dennis Cunningham"]),
    ("My name is Olga Petrova.", ["Olga Petrova"]),
    ("Please ask Dr. Okafor about it.", ["Okafor"]),
    ("I met Sarah Lopez at the conference.", ["Sarah Lopez"]),
    ("Per Barbara R. Fisher's note, it moved.", ["Barbara R. Fisher"]),
    ("Maria asked about the report.", ["Maria"]),
    ("I spoke with Kevin today.", ["Kevin"]),
    ("Signed, John O'Brien", ["John O'Brien"]),
])
def test_names_found(text, expected):
    assert names_in(text) == expected


@pytest.mark.parametrize("text", [
    "On May 5 we ship.",  # a month that is also a name
    "Will the committee approve it?",
    "the Grant proposal is due",
    "Please update the Hudson merger deck.",
    "Hi all,",
    "Thanks,\nTeam\n",
    "Best regards,",
    "Phone: +1 415 555 2671",
    "thanks\nMy name is on the list",  # no name after "is"; "thanks" is on the line before "My"
])
def test_not_names(text):
    assert names_in(text) == []


def test_gazetteer_is_independent_of_the_corpus_generator():
    """Faker's lists, not vocab's: some of the generator's rarer names are missing from it."""
    gazetteer = load_gazetteer()
    assert gazetteer.source.startswith("faker ")
    assert len(gazetteer.given) > 3000 and len(gazetteer.surnames) > 3000
    missing = [n for n in vocab.FIRST_NAMES if n not in gazetteer.given]
    assert missing and len(missing) < len(vocab.FIRST_NAMES) // 10


def test_context_alone_finds_names_in_name_positions():
    empty = NameDetector(Gazetteer(frozenset(), frozenset(), "none"))
    text = "From: Marie Vasquez <m@example.com>\n\nHi Dennis,\n\nok\n\nBest,\nMarie\n"
    assert [text[s.start : s.end] for s in empty.find(text)] == ["Marie Vasquez", "Dennis", "Marie"]


@pytest.fixture(scope="module")
def builtin():
    docs = list(generate_emails(1234, 150_000))
    return docs, [detect(d.text, NAMES) for d in docs]


def test_builtin_corpus_names_meet_the_targets(builtin):
    docs, detected = builtin
    score = score_detection(zip(detected, (d.pii for d in docs)), ["person_name"])["person_name"]
    assert score.truth > 1000
    assert score.recall >= 0.9 and score.precision >= 0.9, score


def test_builtin_names_scored_by_exact_match(builtin):
    """A second count: detected spans equal to a truth span, and truth spans detected exactly."""
    docs, detected = builtin
    exact = sum(len({(s.start, s.end) for s in spans} & {(t.start, t.end) for t in d.pii if t.type == "person_name"})
                for d, spans in zip(docs, detected))
    truth = sum(1 for d in docs for t in d.pii if t.type == "person_name")
    found = sum(len(spans) for spans in detected)
    assert exact / truth >= 0.9 and exact / found >= 0.9
