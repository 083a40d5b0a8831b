"""Canary formats, seeded canary generation and insertion into the training split.

A format is a template of literal text and holes: ``{d}`` is one draw from the
alphabet named ``d``; ``{d}x9`` is nine draws. The randomness space R of a
format is every way to fill its holes, |R| = product of the alphabet sizes.
"""

from __future__ import annotations

import math
import random
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from canaryaudit.errors import DataError, ParamsError

_HOLE = re.compile(r"\{([A-Za-z_][A-Za-z0-9_]*)\}(?:x(\d+))?")


@dataclass(frozen=True)
class CanaryFormat:
    """A parsed template: ``pieces`` alternates literal strings and alphabet names (holes)."""

    name: str
    template: str
    literals: tuple[str, ...]  # len(holes) + 1 literal strings around the holes
    holes: tuple[tuple[str, ...], ...]  # the symbols each hole draws from

    @property
    def prefix(self) -> str:
        """Literal text before the first hole: what an attacker conditions on."""
        return self.literals[0]

    @property
    def space_size(self) -> int:
        """|R|: the number of distinct fillings."""
        return math.prod(len(h) for h in self.holes)

    @property
    def log2_space_size(self) -> float:
        return sum(math.log2(len(h)) for h in self.holes)

    def fill_from_index(self, index: int) -> list[str]:
        """The ``index``-th filling in mixed radix (last hole fastest), 0 <= index < |R|."""
        if not 0 <= index < self.space_size:
            raise ValueError(f"index {index} outside [0, {self.space_size})")
        draws: list[str] = []
        for symbols in reversed(self.holes):
            index, digit = divmod(index, len(symbols))
            draws.append(symbols[digit])
        return draws[::-1]

    def render(self, draws: Sequence[str]) -> str:
        if len(draws) != len(self.holes):
            raise ValueError(f"format {self.name!r} has {len(self.holes)} holes, got {len(draws)} draws")
        out = [self.literals[0]]
        for draw, literal in zip(draws, self.literals[1:]):
            out.append(draw)
            out.append(literal)
        return "".join(out)


def parse_format(name: str, template: str, alphabets: Mapping[str, str | Sequence[str]]) -> CanaryFormat:
    """Parse ``template``; raise ValueError naming an unknown alphabet, a stray brace or no hole."""
    if "\n" in template:
        raise ValueError(f"format {name!r}: template must be one line (a canary is inserted as a line)")
    literals: list[str] = []
    holes: list[tuple[str, ...]] = []
    cursor = 0
    for match in _HOLE.finditer(template):
        alphabet, repeat = match.group(1), match.group(2)
        if alphabet not in alphabets:
            raise ValueError(
                f"format {name!r}: unknown alphabet {{{alphabet}}}; defined: {', '.join(sorted(alphabets))}"
            )
        count = int(repeat) if repeat else 1
        if not 1 <= count <= 64:
            raise ValueError(f"format {name!r}: repetition x{count} must be between 1 and 64")
        symbols = tuple(alphabets[alphabet])
        literals.append(template[cursor : match.start()])
        literals.extend([""] * (count - 1))
        holes.extend([symbols] * count)
        cursor = match.end()
    literals.append(template[cursor:])
    if any("{" in lit or "}" in lit for lit in literals):
        raise ValueError(f"format {name!r}: stray brace in template {template!r}")
    if not holes:
        raise ValueError(f"format {name!r}: template has no hole such as {{d}} or {{d}}x9")
    return CanaryFormat(name, template, tuple(literals), tuple(holes))


@dataclass(frozen=True)
class Canary:
    canary_id: str
    format: str
    text: str
    prefix: str
    randomness: tuple[str, ...]
    insertions: int  # copies placed in the training split (0 = held out)
    audit: bool  # part of the audit set used for the empirical epsilon

    @property
    def included(self) -> bool:
        return self.insertions > 0

    def record(self) -> dict[str, object]:
        return {
            "canary_id": self.canary_id,
            "format": self.format,
            "text": self.text,
            "prefix": self.prefix,
            "randomness": list(self.randomness),
            "insertions": self.insertions,
            "included": self.included,
            "audit": self.audit,
        }


@dataclass(frozen=True)
class CanaryPlan:
    """How many canaries of each kind one format gets."""

    insertion_counts: tuple[int, ...]
    per_count: int
    audit_count: int = 0
    audit_insertions: int = 1

    @property
    def total(self) -> int:
        return len(self.insertion_counts) * self.per_count + self.audit_count


def check_space(fmt: CanaryFormat, plan: CanaryPlan) -> None:
    if plan.total > fmt.space_size:
        raise ValueError(
            f"format {fmt.name!r}: {plan.total} canaries requested but its randomness space holds only "
            f"{fmt.space_size}; add holes or lower canaries.per_count / canaries.audit.count"
        )


def _distinct_indices(space: int, count: int, rng: random.Random) -> list[int]:
    """``count`` distinct draws from range(space); works past 2**63 where random.sample cannot."""
    if space < 2**62:
        return rng.sample(range(space), count)
    seen: set[int] = set()
    out: list[int] = []
    while len(out) < count:
        index = rng.randrange(space)
        if index not in seen:
            seen.add(index)
            out.append(index)
    return out


def check_distinct(canaries: Sequence[Canary]) -> None:
    """Each canary's text must be unique and not inside another's, or occurrence counts lie.

    Raises ValueError naming the pair (an ambiguous word alphabet, or formats
    such as ``code {d}x2`` beside ``code {d}x3``).
    """
    by_text: dict[str, Canary] = {}
    for canary in canaries:
        twin = by_text.setdefault(canary.text, canary)
        if twin is not canary:
            raise ValueError(
                f"canaries {twin.canary_id} and {canary.canary_id} render the same text; "
                f"format {canary.format!r} is ambiguous (a word alphabet whose words run together?)"
            )
    # Each text against the shorter ones through their substrings of each shorter length: linear in the
    # total text per distinct length (pairwise `in` was quadratic: hours at canaries.per_count 10000).
    by_length: dict[int, set[str]] = {}
    for text in by_text:
        by_length.setdefault(len(text), set()).add(text)
    lengths = sorted(by_length)
    for long in by_text:
        for size in lengths:
            if size >= len(long):
                break
            shorts = by_length[size]
            for start in range(len(long) - size + 1):
                short = long[start : start + size]
                if short in shorts:
                    raise ValueError(
                        f"canary {by_text[short].canary_id} occurs inside {by_text[long].canary_id}; "
                        "make the formats' fixed text differ (e.g. not 'code {d}x2' beside 'code {d}x3')"
                    )


def make_canaries(fmt: CanaryFormat, plan: CanaryPlan, rng: random.Random) -> list[Canary]:
    """Distinct canaries for one format: ``per_count`` per insertion count, then the audit set.

    Audit canaries are each included with probability 1/2 (a fair coin from
    ``rng``); the rest are held out with 0 insertions.
    """
    check_space(fmt, plan)
    indices = _distinct_indices(fmt.space_size, plan.total, rng)
    canaries: list[Canary] = []
    position = 0

    def new(canary_id: str, insertions: int, audit: bool) -> Canary:
        nonlocal position
        draws = fmt.fill_from_index(indices[position])
        position += 1
        return Canary(canary_id, fmt.name, fmt.render(draws), fmt.prefix, tuple(draws), insertions, audit)

    for count in plan.insertion_counts:
        for i in range(plan.per_count):
            canaries.append(new(f"{fmt.name}-x{count}-{i}", count, audit=False))
    for i in range(plan.audit_count):
        included = rng.random() < 0.5
        canaries.append(new(f"{fmt.name}-audit-{i}", plan.audit_insertions if included else 0, audit=True))
    return canaries


def insert_canaries(texts: Sequence[str], canaries: Sequence[Canary], rng: random.Random) -> list[str]:
    """Return ``texts`` with each canary inserted ``insertions`` times as its own line.

    Copies of one canary go into distinct documents while there are enough; the
    line slot inside a document is uniform (before the first line up to after
    the last). Raises DataError if a canary already occurs in the texts, since
    its count would then be wrong.
    """
    if not texts:
        raise DataError("training split", "no documents to insert canaries into")
    joined = "\x00".join(texts)
    for canary in canaries:
        if canary.text in joined:
            raise DataError(
                "training split", f"canary {canary.canary_id} already occurs in the data; change canaries.seed"
            )
    lines = [t.split("\n") for t in texts]
    # (document, slot) -> canary texts, in insertion order
    pending: dict[tuple[int, int], list[str]] = {}
    for canary in canaries:
        if canary.insertions <= len(texts):
            docs = rng.sample(range(len(texts)), canary.insertions)
        else:
            docs = [rng.randrange(len(texts)) for _ in range(canary.insertions)]
        for doc in docs:
            slot = rng.randint(0, len(lines[doc]))
            pending.setdefault((doc, slot), []).append(canary.text)
    out: list[str] = []
    for doc, doc_lines in enumerate(lines):
        merged: list[str] = []
        for slot in range(len(doc_lines) + 1):
            merged.extend(pending.get((doc, slot), ()))
            if slot < len(doc_lines):
                merged.append(doc_lines[slot])
        out.append("\n".join(merged))
    return out


def canary_volume(canaries: Sequence[Canary], texts: Sequence[str]) -> float:
    """Characters the inserted copies add (each copy a line of its own) over the training split's characters."""
    added = sum((len(c.text) + 1) * c.insertions for c in canaries)
    return added / max(1, sum(len(t) for t in texts))


def check_canary_volume(canaries: Sequence[Canary], texts: Sequence[str], warn_fraction: float,
                        max_fraction: float) -> str | None:
    """A warning when the copies add more than ``warn_fraction`` of the training text; ParamsError past
    ``max_fraction`` (a few documents and ``insertions: [1, 100000]`` would make the training data
    mostly canaries, an audit of nothing)."""
    fraction = canary_volume(canaries, texts)
    copies = sum(c.insertions for c in canaries)
    what = (f"{copies} canary copies add {fraction:.1%} of the training split's characters "
            f"({len(texts)} documents)")
    if fraction > max_fraction:
        raise ParamsError(
            f"canaries.insertions: {what}, above canaries.max_fraction = {max_fraction:g}; lower the insertion "
            "counts, canaries.per_count or canaries.audit.count, use more data, or raise canaries.max_fraction"
        )
    if fraction > warn_fraction:
        return f"{what}, above canaries.warn_fraction = {warn_fraction:g}: the training data is dominated by canaries"
    return None


def count_occurrences(texts: Sequence[str], needle: str) -> int:
    """Non-overlapping occurrences of ``needle`` over all ``texts``."""
    return sum(t.count(needle) for t in texts)
