"""The token-level search space of a canary format under any tokenizer.

Definition of Px for any tokenizer (bits; lower = more likely = more exposed).
A candidate's text is ``T = prefix + filling`` (the format rendered), tokenized
canonically: by the tokenizer's own encoding of the whole text. The format's
*context* is the longest run of leading tokens that lies wholly inside the
prefix and is the same for every filling; every token after it is *counted*:
Px = sum over counted tokens of -log2 Pr(token | context, earlier counted
tokens). A token that crosses the prefix/filling boundary (GPT-2's " 123" when
the prefix ends in a space) is counted, since it carries filling characters,
and so is a prefix token that only some fillings merge with (a lone " " before
"0000" where " 0117" is one pre-token): the prefix characters after the
context are the *remainder*, spelled by the counted tokens before the filling.
Under the character tokenizer the context is the whole prefix and the counted
tokens are the filling's characters, the definition used before any other
tokenizer was supported. When no token qualifies (empty prefix, or a prefix
merged with the filling) the context is the end-of-document token alone, which
is what precedes a document in training. "Every filling" is checked on the
fillings of :func:`boundary_probes` (every choice of the first two symbols, and
256 spread over R) and on every candidate scored.

The search walks token sequences after the context whose texts spell the
remainder then a valid filling: a character automaton of the format (literal
characters, and holes that accept one alphabet symbol each, multi-character
words included) decides which tokens may follow a partial sequence. A filling
can be spelled by several token sequences (" 12"+"3" and " 1"+"23"); only the
canonical one (what the tokenizer itself produces) defines the filling's Px,
so searches count and return canonical sequences only, one per filling.
Hand-written: no library enumerates the tokenizations of a pattern.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from canaryaudit.canaries import CanaryFormat
from canaryaudit.training.tokenizers import Tokenizer

Position = tuple[int, str]  # (element index, partial symbol read so far inside a hole element)
PROBES = 256  # fillings spread over R whose canonical tokenization must fit the space


class SearchUnsupported(ValueError):
    """The format cannot be searched token by token under this tokenizer (the reason says why)."""


class LossyTokenizer(ValueError):
    """The tokenizer cannot spell the format's texts (an unknown symbol becomes <unk>): Px would
    give distinct fillings the same tokens, so no exposure can be measured."""


def check_lossless(fmt: CanaryFormat, tokenizer: Tokenizer, probes: int = PROBES) -> None:
    """Raise LossyTokenizer unless every symbol, and fillings spread over R, decode back to their text."""
    lost = sorted({s for hole in fmt.holes for s in hole if tokenizer.decode(tokenizer.encode(s)) != s})
    if lost:
        raise LossyTokenizer(f"format {fmt.name!r}: the {tokenizer.kind} tokenizer cannot spell the symbols "
                             f"{lost[:10]} (they encode to an unknown token)")
    for index in sorted({(j * fmt.space_size) // probes for j in range(probes)}):
        text = fmt.render(fmt.fill_from_index(index))
        if tokenizer.decode(tokenizer.encode(text)) != text:
            raise LossyTokenizer(f"format {fmt.name!r}: the {tokenizer.kind} tokenizer does not decode "
                                 f"{text!r} back to itself")


def _elements(remainder: str, fmt: CanaryFormat) -> tuple[str | tuple[str, ...], ...]:
    """The pattern after the context: one literal character (a str) or one hole (a tuple of symbols) each."""
    out: list[str | tuple[str, ...]] = list(remainder)
    for hole, literal in zip(fmt.holes, fmt.literals[1:]):
        out.append(tuple(hole))
        out.extend(literal)
    return tuple(out)


@dataclass(frozen=True)
class Context:
    """What every candidate of a format is scored after: the scorer's ``ids`` (``text_ids``, or the
    end-of-document token when that is empty) and the prefix characters ``covered`` by ``text_ids``."""

    ids: tuple[int, ...]
    text_ids: tuple[int, ...]
    covered: str


def format_context(fmt: CanaryFormat, tokenizer: Tokenizer, texts: Sequence[str] = ()) -> Context:
    """The longest run of leading tokens that lies wholly inside the prefix and is the same in the
    canonical tokenization of every filling: checked on :func:`boundary_probes` and ``texts``
    (the candidates scored), so a token the filling can merge into (" " + "0" -> " 0") is counted."""
    encodings = [tokenizer.encode(t) for t in [*boundary_probes(fmt), *texts]]
    common = 0
    shortest = min(len(e) for e in encodings)
    while common < shortest and all(e[common] == encodings[0][common] for e in encodings):
        common += 1
    k, covered = 0, ""
    for j in range(1, common + 1):
        text = tokenizer.decode(list(encodings[0][:j]))
        if not fmt.prefix.startswith(text) or len(text) == len(covered):
            break  # token j crosses the prefix's end (or decodes to nothing: a special token)
        k, covered = j, text
    text_ids = tuple(int(t) for t in encodings[0][:k])
    return Context(text_ids if k else (int(tokenizer.eos_id),), text_ids, covered)


def boundary_probes(fmt: CanaryFormat, probes: int = PROBES) -> list[str]:
    """Fillings spread over R, and every choice of the first two symbols (what can merge into the prefix)."""
    texts = [fmt.render(fmt.fill_from_index(i)) for i in sorted({(j * fmt.space_size) // probes for j in range(probes)})]
    base = fmt.fill_from_index(0)
    holes = fmt.holes[:2] if math.prod(len(h) for h in fmt.holes[:2]) <= 4096 else fmt.holes[:1]
    for choice in itertools.product(*holes):
        texts.append(fmt.render(list(choice) + base[len(choice):]))
    return texts


def counted_tokens(context: Context, tokenizer: Tokenizer, text: str) -> tuple[int, ...]:
    """The tokens of ``text`` that Px counts: those after the context (which the text must start with)."""
    ids = tokenizer.encode(text)
    n = len(context.text_ids)
    if tuple(ids[:n]) != context.text_ids:
        raise SearchUnsupported(f"the tokenization of {text!r} does not start with the format's context")
    return tuple(int(t) for t in ids[n:])


def token_surfaces(tokenizer: Tokenizer, anchor: int) -> list[str]:
    """The text each token adds after ``anchor`` (decoded in context, so SentencePiece's "▁" reads as a space)."""
    base = tokenizer.decode([anchor])
    surfaces = []
    for token in range(tokenizer.vocab_size):
        text = tokenizer.decode([anchor, token])
        surfaces.append(text[len(base):] if text.startswith(base) and "\ufffd" not in text else "")
    return surfaces


@dataclass
class TokenSpace:
    """The fillings of ``fmt`` as canonical token sequences after a fixed context.

    ``context_ids`` is what the scorer conditions on; ``text_context_ids`` the part of it that
    is text of T (without the artificial end-of-document token). States of the character
    automaton are interned as small ints; state 0 is the start.
    """

    fmt: CanaryFormat
    tokenizer: Tokenizer
    context_ids: tuple[int, ...]
    text_context_ids: tuple[int, ...]
    context_text: str
    remainder: str
    elements: tuple[str | tuple[str, ...], ...]
    surfaces: list[str]
    single_path: bool = False  # every allowed token spells one character, one token per character
    _states: list[frozenset[Position]] = field(default_factory=list)
    _index: dict[frozenset[Position], int] = field(default_factory=dict)
    _moves: dict[int, tuple[np.ndarray, np.ndarray]] = field(default_factory=dict)
    _by_first: dict[str, list[int]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for token, text in enumerate(self.surfaces):
            if text:
                self._by_first.setdefault(text[0], []).append(token)
        self._intern(frozenset({(0, "")}))

    # ------------------------------------------------------------ properties
    @property
    def prefix_ids(self) -> tuple[int, ...]:
        return self.context_ids

    @property
    def size(self) -> int:
        """|R|: fillings of the format (each has exactly one canonical token sequence)."""
        return self.fmt.space_size

    @property
    def max_tokens(self) -> int:
        """Most tokens a filling can take after the context (every token spells >= 1 character)."""
        return sum(len(e) if isinstance(e, str) else max(len(s) for s in e) for e in self.elements)

    # ------------------------------------------------------------ automaton
    def _intern(self, state: frozenset[Position]) -> int:
        if state not in self._index:
            self._index[state] = len(self._states)
            self._states.append(state)
        return self._index[state]

    def _step(self, state: frozenset[Position], char: str) -> frozenset[Position]:
        out: set[Position] = set()
        end = len(self.elements)
        for element, partial in state:
            if element == end:
                continue
            pattern = self.elements[element]
            if isinstance(pattern, str):
                if char == pattern:
                    out.add((element + 1, ""))
                continue
            read = partial + char
            if read in pattern:
                out.add((element + 1, ""))
            if any(len(s) > len(read) and s.startswith(read) for s in pattern):
                out.add((element, read))
        return frozenset(out)

    def _next_chars(self, state: frozenset[Position]) -> set[str]:
        chars: set[str] = set()
        for element, partial in state:
            if element < len(self.elements):
                pattern = self.elements[element]
                if isinstance(pattern, str):
                    chars.add(pattern)
                else:
                    chars.update(s[len(partial)] for s in pattern if len(s) > len(partial) and s.startswith(partial))
        return chars

    def accepting(self, state: int) -> bool:
        """Whether a sequence in ``state`` spells a complete filling."""
        return (len(self.elements), "") in self._states[state]

    def moves(self, state: int) -> tuple[np.ndarray, np.ndarray]:
        """(token ids, next states) of the tokens that may follow a sequence in ``state``, ids ascending."""
        if state not in self._moves:
            found: list[tuple[int, int]] = []
            positions = self._states[state]
            for char in self._next_chars(positions):
                for token in self._by_first.get(char, ()):
                    after = positions
                    for c in self.surfaces[token]:
                        after = self._step(after, c)
                        if not after:
                            break
                    if after:
                        found.append((token, self._intern(after)))
            found.sort()
            self._moves[state] = (np.array([t for t, _ in found], dtype=np.int64),
                                  np.array([s for _, s in found], dtype=np.int64))
        return self._moves[state]

    def walk(self, tokens: Sequence[int]) -> int | None:
        """The state after ``tokens`` from the start, or None when they leave the pattern."""
        state = 0
        for token in tokens:
            ids, nxt = self.moves(state)
            at = np.searchsorted(ids, token)
            if at == len(ids) or ids[at] != token:
                return None
            state = int(nxt[at])
        return state

    # ------------------------------------------------------------ canonical sequences
    def text_of(self, tokens: Sequence[int]) -> str:
        """T, the whole canary text a token sequence after the context spells."""
        return self.context_text + "".join(self.surfaces[t] for t in tokens)

    def canonical(self, tokens: Sequence[int]) -> bool:
        """Whether ``tokens`` is the tokenizer's own encoding of the text it spells (after the context)."""
        if self.single_path:
            return True
        wanted = list(self.text_context_ids) + [int(t) for t in tokens]
        return self.tokenizer.encode(self.text_of(tokens)) == wanted

    def tokens_of(self, text: str) -> tuple[int, ...] | None:
        """Counted tokens of ``text`` (canonical), or None when its tokenization does not fit this space."""
        ids = self.tokenizer.encode(text)
        n = len(self.text_context_ids)
        if tuple(ids[:n]) != self.text_context_ids:
            return None
        rest = tuple(int(t) for t in ids[n:])
        state = self.walk(rest)
        return rest if state is not None and self.accepting(state) else None


def canary_space(fmt: CanaryFormat, tokenizer: Tokenizer, texts: Sequence[str] = (),
                 context: Context | None = None) -> TokenSpace:
    """The token space of ``fmt`` under ``tokenizer``; raises SearchUnsupported with the reason.

    The context is :func:`format_context` over the probes and ``texts``. Each of those must then
    tokenize as the context plus a path of the automaton; otherwise token texts do not decode
    faithfully (a byte-level token holding part of a character) and the search cannot spell them.
    """
    context = context or format_context(fmt, tokenizer, texts)
    remainder = fmt.prefix[len(context.covered):]
    space = TokenSpace(fmt, tokenizer, context.ids, context.text_ids, context.covered, remainder,
                       _elements(remainder, fmt), token_surfaces(tokenizer, context.ids[-1]))
    space.single_path = _single_path(space)
    for text in [*boundary_probes(fmt), *texts]:
        if space.tokens_of(text) is None:
            raise SearchUnsupported(
                f"format {fmt.name!r}: the {tokenizer.kind} tokenizer spells {text!r} with tokens that do not "
                "decode to the filling's characters one token at a time (e.g. a character split into bytes), "
                "so its token sequences cannot be searched")
    return space


def _single_path(space: TokenSpace) -> bool:
    """True when each pattern character has exactly one token starting with it, and that token is the
    character alone (the character tokenizer): then each filling has one token sequence, the canonical one."""
    chars = {c for e in space.elements for c in (e if isinstance(e, str) else "".join(e))}
    for char in chars:
        starting = space._by_first.get(char, [])
        if len(starting) != 1 or space.surfaces[starting[0]] != char:
            return False
    return True
