"""Person names, offline: a gazetteer of given names and surnames plus the context names sit in.

The gazetteer comes from Faker's person providers (a maintained package on the
package registry; its US lists are drawn from census and social-security name
statistics, the others from each locale's common names), read once per process.
It is independent of the builtin corpus generator's own name lists
(``canaryaudit.corpus.vocab``), so scoring on that corpus is not circular.

A name is found in one of these ways (capitalisation is required throughout):

* a given name followed by a surname (``Marie Vasquez``, ``Mary Ann Smith``,
  ``John Q. Public``), anywhere;
* any capitalised words in a *name position*, gazetteer or not: a mail header
  (``From: Mei Haddad <...>``), a greeting (``Hi Mei,``), a signature (a line of
  one to three such words right after a sign-off such as ``Thanks,`` or ``--``),
  after ``my name is`` / ``this is`` / ``I'm``, after a title (``Dr. Okafor``);
* one gazetteer word on a line of its own (``Dennis`` under ``Best,``), or a
  given name next to a person's verb or preposition (``Marie asked``, ``spoke
  with Marie``).

Calendar words that are also names (``May``, ``June``, ``August``) count only in
a name position.
"""

from __future__ import annotations

import importlib
import re
from collections.abc import Iterator
from dataclasses import dataclass
from functools import lru_cache

from canaryaudit.pii.spans import PiiSpan

#: Faker person providers read for the gazetteer: locales written in Latin script.
GAZETTEER_LOCALES: tuple[str, ...] = (
    "en_US", "en_GB", "en_IE", "en_IN", "en_NZ", "en_PK", "en_KE", "en_NG", "es_ES", "es_MX", "es_CO",
    "pt_BR", "pt_PT", "fr_FR", "de_DE", "it_IT", "nl_NL", "pl_PL", "cs_CZ", "sv_SE", "no_NO", "da_DK",
    "fi_FI", "tr_TR", "vi_VN", "id_ID", "ja_JP", "zh_CN", "ko_KR", "ar_AA", "hi_IN", "sw", "yo_NG",
    "ig_NG", "ha_NG", "zu_ZA", "tw_GH",
)

_UPPER = "A-ZÀ-ÖØ-ÞĀ-Ž"
_LOWER = "a-zß-öø-ÿā-ž"
# A name-shaped word: Marie, McDonald, MacKenzie, O'Brien, D'Angelo, Mary-Jane, José.
_WORD = rf"(?:[{_UPPER}]['’][{_UPPER}][{_LOWER}]+|[{_UPPER}][{_LOWER}]+(?:[{_UPPER}][{_LOWER}]+)?)(?:-[{_UPPER}][{_LOWER}]+)?"
# Up to four such words on one line, single spaces apart, with optional middle initials (John Q. Public).
# A possessive may follow (Marie's), a continued word may not (O'Brien is one word).
# The first word without its first capital, which the run consumes before its lookbehind: a pattern that
# opens with a character class lets the regex engine jump between capitals in C (same matches, faster scan).
_WORD_AFTER_CAPITAL = rf"(?:['’][{_UPPER}][{_LOWER}]+|[{_LOWER}]+(?:[{_UPPER}][{_LOWER}]+)?)(?:-[{_UPPER}][{_LOWER}]+)?"
_RUN = re.compile(rf"[{_UPPER}](?<![\w'’.-][{_UPPER}]){_WORD_AFTER_CAPITAL}(?: (?:[{_UPPER}]\. )?{_WORD}){{0,3}}"
                  rf"(?!\w)(?!['’]\w\w)")
_WORD_RE = re.compile(_WORD)

_QUOTE_PREFIX = re.compile(r"(?:> ?)*")
_HEADER = re.compile(r"(?:From|To|Cc|CC|Bcc|Reply-To|Sender|Attn|Attention)\s*:\s*(?:\"|')?$")
_GREETING = re.compile(
    r"(?:\b(?:Hi|Hello|Hey|Dear|Morning|Afternoon|Evening|Thanks|Thank you|Welcome|Congratulations|Congrats|Bye|"
    r"Good (?:[Mm]orning|[Aa]fternoon|[Ee]vening)),?\s+)$"
)
_INTRO = re.compile(r"\b(?:my name is|name's|this is|I am|I'm|call me|named|signed|regards from|love),?[ \t]+$",
                    re.IGNORECASE)
_TITLE = re.compile(r"\b(?:Mr|Mrs|Ms|Mx|Miss|Dr|Prof|Sr|Sra|Herr|Frau|Mme|Mlle|M)\.?\s+$")
# A header, greeting, title or introduction right before a run (of one line, quote markers removed).
_BEFORE_NAME = re.compile(
    "(?:" + "|".join(p.pattern.removesuffix("$").removesuffix("\\s+") for p in (_HEADER, _GREETING, _TITLE)) + r")\s*$"
    + "|" + "(?i:" + _INTRO.pattern + ")"
)
# The last word of every such context (a cheap test before the pattern).
_CONTEXT_WORDS = frozenset(
    "From To Cc CC Bcc Reply-To Sender Attn Attention From: To: Cc: CC: Bcc: Reply-To: Sender: Attn: Attention: "
    "Hi Hello Hey Dear Morning Afternoon Evening morning afternoon evening Thanks you Welcome Congratulations "
    "Congrats Bye Mr Mrs Ms Mx Miss Dr Prof Sr Sra Herr Frau Mme Mlle M Mr. Mrs. Ms. Mx. Dr. Prof. Sr. Sra. M. "
    "is IS Is am AM Am I'm i'm me ME named signed Signed from love name's".split()
)
# Words right before a given name that make it a person: "spoke with Marie", "ask Marie", "cc Marie".
_PERSON_BEFORE = re.compile(r"\b(?:with|ask|asked|tell|told|thank|thanks|cc|met|meet|called|call|and|or|from|by)[ \t]+$",
                            re.IGNORECASE)
# Words right after a given name that make it a person: "Marie asked", "Marie can help", "Marie and I".
_PERSON_AFTER = re.compile(
    r"(?:'s\b|’s\b|,? (?:said|says|asked|asks|wrote|writes|told|tells|thinks|wants|needs|mentioned|agreed|replied|"
    r"suggested|confirmed|called|emailed|can|could|will|would|should|might|must|is|was|has|had|and I|and me|"
    r"and we|who|himself|herself)\b)"
)
# A sign-off line: what a signature follows.
_SIGN_OFF = re.compile(
    r"^(?:--|—|(?:thanks|thank you|best|best regards|kind regards|regards|cheers|sincerely|yours|yours truly|"
    r"talk soon|all the best|warm regards|warmly|many thanks|respectfully|love|take care|later)[,!.]?)$",
    re.IGNORECASE,
)
# Capitalised words that are not a person in a name position ("Hi all", "Dear Sir", "Thanks Team").
_NOT_A_NAME = frozenset(
    "All Everyone Team Folks Guys There Sir Madam Sirs Colleagues Friends Both Again So Very Much Please "
    "For Regards Best Thanks Cheers Sincerely Everybody Anyone Mgmt Management Support Customer".split()
)
# Capitalised words that open a run of capitalised words before a name: "Dear Marie", "Good Morning Marie".
# Prepositions and conjunctions too: "Per Barbara Fisher's note" (Per is also a given name).
_LEAD_WORDS = frozenset("Hi Hello Hey Dear Morning Afternoon Evening Good Thanks Thank Welcome Congratulations "
                        "Congrats Bye Attn Attention Per Via As At By In On To For With From And Or But So If When "
                        "Ask Call Cc Tell".split())
# Months and weekdays: names as well (May, June, August), but only trusted in a name position.
_CALENDAR = frozenset(
    "January February March April May June July August September October November December Jan Feb Mar Apr Jun "
    "Jul Aug Sep Sept Oct Nov Dec Monday Tuesday Wednesday Thursday Friday Saturday Sunday Mon Tue Wed Thu Fri "
    "Sat Sun".split()
)


@dataclass(frozen=True)
class Gazetteer:
    """Given names and surnames (as written: capitalised), and where they came from."""

    given: frozenset[str]
    surnames: frozenset[str]
    source: str

    def knows(self, word: str) -> bool:
        return word in self.given or word in self.surnames


def _name_lists(provider: type) -> Iterator[tuple[bool, list[str]]]:
    """(is_given, names) for each name list attribute of a Faker person provider."""
    for attribute in dir(provider):
        given = attribute.startswith("first_")
        if not (given or attribute.startswith("last_")) or "name" not in attribute:
            continue
        values = getattr(provider, attribute)
        if isinstance(values, (list, tuple, dict)) and values and isinstance(next(iter(values)), str):
            yield given, list(values)


@lru_cache(maxsize=1)
def load_gazetteer() -> Gazetteer:
    """The gazetteer from Faker's person providers of :data:`GAZETTEER_LOCALES` (about 0.4 s, once)."""
    from faker import VERSION  # noqa: PLC0415 (imported here: only the name detector needs Faker)

    given: set[str] = set()
    surnames: set[str] = set()
    for locale in GAZETTEER_LOCALES:
        provider = importlib.import_module(f"faker.providers.person.{locale}").Provider
        for is_given, names in _name_lists(provider):
            for name in names:
                if _WORD_RE.fullmatch(name):  # Latin-script, name-shaped entries only
                    (given if is_given else surnames).add(name)
    return Gazetteer(frozenset(given), frozenset(surnames), f"faker {VERSION} person providers: {len(GAZETTEER_LOCALES)} locales")


def _line_bounds(text: str, start: int, end: int) -> tuple[int, int]:
    line_start = text.rfind("\n", 0, start) + 1
    line_end = text.find("\n", end)
    return line_start, len(text) if line_end < 0 else line_end


def _previous_line(text: str, line_start: int) -> str:
    """The nearest non-blank line above, without quote markers."""
    end = line_start - 1
    while end > 0:
        start = text.rfind("\n", 0, end) + 1
        line = _QUOTE_PREFIX.sub("", text[start:end], count=1).strip()
        if line:
            return line
        end = start - 1
    return ""


def _may_be_name_position(text: str, start: int, end: int, word: str) -> bool:
    """A cheap necessary condition for the one-word run ``word`` = text[start:end] to be reported from a name
    position (NameDetector._name_position): not a non-name word, and either the word before it on its line is
    a context word, or it opens its line (quote markers aside) with nothing but a comma after it."""
    if word in _NOT_A_NAME:
        return False
    line_start = text.rfind("\n", 0, start) + 1
    before = text[line_start:start].lstrip("> ")
    if before:
        return before.rstrip().rsplit(" ", 1)[-1].rstrip(",") in _CONTEXT_WORDS
    line_end = text.find("\n", end)
    return text[end : len(text) if line_end < 0 else line_end].strip() in ("", ",")


@dataclass(frozen=True)
class NameDetector:
    """Person names by gazetteer and context (see the module docstring); ``pii_type`` person_name."""

    gazetteer: Gazetteer
    pii_type: str = "person_name"

    def find(self, text: str) -> Iterator[PiiSpan]:
        spans: list[PiiSpan] = []
        knows = self.gazetteer.knows
        for run in _RUN.finditer(text):
            start, end = run.span()
            chunk = run.group()
            if " " not in chunk:  # one word: most runs (a capitalised sentence start)
                # A word outside the gazetteer can only be a name in a name position: most are not near one.
                if chunk not in _LEAD_WORDS and (knows(chunk) or _may_be_name_position(text, start, end, chunk)):
                    self._names_in_run(text, start, end, [(start, end)], spans)
                continue
            words = [(m.start() + start, m.end() + start) for m in _WORD_RE.finditer(chunk)]
            while words and text[words[0][0] : words[0][1]] in _LEAD_WORDS:  # "Dear Marie": the name follows
                words = words[1:]
            if words:
                self._names_in_run(text, words[0][0], end, words, spans)
        return iter(spans)

    def _names_in_run(self, text: str, start: int, end: int, words: list[tuple[int, int]],
                      out: list[PiiSpan]) -> None:
        """Append to ``out`` the names in the run text[start:end] of ``words`` (start, end offsets)."""
        if self._name_position(text, start, end, words):
            if text[words[0][0] : words[0][1]] not in _NOT_A_NAME:
                out.append(PiiSpan(self.pii_type, start, end))
            return
        if len(words) == 1:
            if self._lone_word_is_name(text, start, end):
                out.append(PiiSpan(self.pii_type, start, end))
            return
        i = 0
        while i < len(words):
            last = self._full_name_at(text, words, i)
            if last is not None:
                out.append(PiiSpan(self.pii_type, words[i][0], words[last][1]))
                i = last
            i += 1

    def _full_name_at(self, text: str, words: list[tuple[int, int]], i: int) -> int | None:
        """Index of the last word of a given-name + surname sequence starting at word ``i``, or None."""
        if text[words[i][0] : words[i][1]] not in self.gazetteer.given or text[words[i][0] : words[i][1]] in _CALENDAR:
            return None
        last = None
        for j in range(i + 1, min(i + 3, len(words))):  # a middle name at most: Mary Ann Smith
            word = text[words[j][0] : words[j][1]]
            if word in self.gazetteer.surnames:
                last = j
            elif word not in self.gazetteer.given:
                break
        return last

    def _name_position(self, text: str, start: int, end: int, words: list[tuple[int, int]]) -> bool:
        """Whether the run sits where a person's name goes: header, greeting, title, introduction, signature."""
        line_start = text.rfind("\n", 0, start) + 1
        before = text[line_start:start].lstrip("> ")  # without quote markers
        if before:  # the word right before decides cheaply; the context pattern confirms
            previous = before.rstrip().rsplit(" ", 1)[-1].rstrip(",")
            return previous in _CONTEXT_WORDS and _BEFORE_NAME.search(before[-32:]) is not None
        line_end = text.find("\n", end)
        after = text[end : len(text) if line_end < 0 else line_end].strip()
        if after not in ("", ",") or len(words) > 3:
            return False
        if _SIGN_OFF.match(_previous_line(text, line_start)) is not None:
            return True
        return after == "," and text[words[0][0] : words[0][1]] in self.gazetteer.given  # "Marie," opening a mail

    def _lone_word_is_name(self, text: str, start: int, end: int) -> bool:
        """One capitalised word outside a name position: a gazetteer word alone on its line, or a given name
        next to a person's verb or preposition."""
        word = text[start:end]
        if word in _CALENDAR or not self.gazetteer.knows(word):
            return False
        line_start, line_end = _line_bounds(text, start, end)
        if not text[line_start:start].lstrip("> ") and not text[end:line_end].strip():
            return True
        if word not in self.gazetteer.given:
            return False
        return bool(_PERSON_BEFORE.search(text[max(0, start - 12) : start]) or _PERSON_AFTER.match(text, end, end + 16))
