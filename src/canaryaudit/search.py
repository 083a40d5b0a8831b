"""The randomness tree of a canary format, exact rank by pruned search, and shortest-path extraction.

Px is in bits (sum of -log2 Pr(token | context) over the tokens after the
prefix); lower = more likely = more exposed. Every edge weight is >= 0, so a
partial candidate already heavier than a threshold can be cut with its whole
subtree (exact rank), and Dijkstra's order pops candidates by Px (extraction).
Hand-written: no library searches a language model's token tree.
"""

from __future__ import annotations

import heapq
import itertools
import logging
import math
import time
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from canaryaudit.canaries import CanaryFormat
from canaryaudit.scoring import NextTokenScorer, path_px
from canaryaudit.training.tokenizers import Tokenizer

log = logging.getLogger("canaryaudit.search")
PROGRESS_EVERY_S = 10.0  # seconds between progress lines of a long search


class TreeUnsupported(ValueError):
    """The format's holes do not map to single tokens under this tokenizer (e.g. BPE merges digits)."""


@dataclass(frozen=True)
class CanarySpace:
    """Token-level view of a format: after the prefix, each position allows a set of token ids.

    A hole position allows one token per alphabet symbol; a literal position
    (e.g. the dashes of an SSN) allows exactly one token.
    """

    prefix_ids: tuple[int, ...]
    options: tuple[tuple[int, ...], ...]

    @property
    def depth(self) -> int:
        return len(self.options)

    @property
    def size(self) -> int:
        return math.prod(len(o) for o in self.options)


def canary_space(fmt: CanaryFormat, tokenizer: Tokenizer) -> CanarySpace:
    """The token tree of ``fmt``; raises TreeUnsupported unless every symbol is one token and
    the format tokenizes position by position (always true for the character tokenizer)."""
    prefix_ids = tuple(tokenizer.encode(fmt.prefix))
    options: list[tuple[int, ...]] = []
    for hole, literal in zip(fmt.holes, fmt.literals[1:]):
        encoded = [tokenizer.encode(symbol) for symbol in hole]
        if any(len(e) != 1 for e in encoded) or len({e[0] for e in encoded}) != len(hole):
            raise TreeUnsupported(f"format {fmt.name!r}: alphabet symbols are not single distinct tokens")
        options.append(tuple(e[0] for e in encoded))
        options.extend((t,) for t in tokenizer.encode(literal))
    space = CanarySpace(prefix_ids, tuple(options))
    # A BPE may merge adjacent symbols ("48" as one token): check fillings spread over R.
    probes = sorted({(k * fmt.space_size) // 256 for k in range(256)})
    for index in probes:
        draws = fmt.fill_from_index(index)
        if not tokens_follow_tree(space, tokenizer.encode(fmt.render(draws))):
            raise TreeUnsupported(f"format {fmt.name!r}: the tokenizer does not split it position by position")
    return space


def tokens_follow_tree(space: CanarySpace, token_ids: Sequence[int]) -> bool:
    """Whether a full token sequence is the prefix then one allowed token per position."""
    n = len(space.prefix_ids)
    return (
        tuple(token_ids[:n]) == space.prefix_ids
        and len(token_ids) == n + space.depth
        and all(t in allowed for t, allowed in zip(token_ids[n:], space.options))
    )


def candidate_tokens(space: CanarySpace, fmt: CanaryFormat, draws: Sequence[str], tokenizer: Tokenizer) -> list[int]:
    """Token ids after the prefix for the filling ``draws``."""
    return tokenizer.encode(fmt.render(draws))[len(space.prefix_ids) :]


# ---------------------------------------------------------------- exact rank


@dataclass
class RankResult:
    rank: int | None  # None when the budget was exceeded
    canary_px: float
    rows: int  # sequences scored (model rows)
    calls: int  # forward passes
    nodes_expanded: int
    seconds: float
    message: str = ""

    @property
    def exact(self) -> bool:
        return self.rank is not None


def exact_rank(scorer: NextTokenScorer, space: CanarySpace, canary: Sequence[int], max_rows: int,
               tolerance: float = 1e-6) -> RankResult:
    """Number of candidates with Px <= the canary's (ties count against it), by pruned breadth-first search.

    A partial candidate whose Px already exceeds the canary's (plus
    ``tolerance`` bits, for float noise between batch shapes) is cut with its
    subtree. When the next level would need more than ``max_rows`` model rows in
    total, the search stops and ``rank`` is None.
    """
    started = time.perf_counter()
    rows_before = scorer.rows
    calls_before = scorer.calls
    threshold = path_px(scorer, canary) + tolerance
    frontier = np.zeros((1, 0), dtype=np.int64)
    px = np.zeros(1, dtype=np.float64)
    expanded = 0
    for depth, options in enumerate(space.options):
        if scorer.rows - rows_before + len(frontier) > max_rows:
            return RankResult(None, threshold - tolerance, scorer.rows - rows_before, scorer.calls - calls_before,
                              expanded, time.perf_counter() - started,
                              f"stopped at depth {depth}: {len(frontier)} open prefixes exceed the budget of {max_rows} rows")
        log2p = scorer.log2_next(frontier)
        expanded += len(frontier)
        log.debug("exact rank: depth %d, %d open prefixes, %d rows so far", depth, len(frontier), scorer.rows - rows_before)
        option_ids = np.array(options, dtype=np.int64)
        child_px = px[:, None] - log2p[:, option_ids]  # [n, k]
        keep_node, keep_option = np.nonzero(child_px <= threshold)
        frontier = np.concatenate([frontier[keep_node], option_ids[keep_option][:, None]], axis=1)
        px = child_px[keep_node, keep_option]
    rank = max(1, len(frontier))
    return RankResult(rank, threshold - tolerance, scorer.rows - rows_before, scorer.calls - calls_before, expanded,
                      time.perf_counter() - started)


# ---------------------------------------------------------------- shortest-path extraction


@dataclass
class ExtractionResult:
    candidates: list[tuple[float, tuple[int, ...]]]  # complete candidates found, by Px (bits)
    iterations: int
    nodes_expanded: int
    rows: int
    calls: int
    seconds: float
    within_budget: bool
    top_is_canary: bool | None = None


def shortest_path(scorer: NextTokenScorer, space: CanarySpace, pop_batch: int, max_expansions: int,
                  canary: Sequence[int] | None = None) -> ExtractionResult:
    """Secret Sharer 8.1: Dijkstra over partial candidates, popping ``pop_batch`` nodes per model call.

    After the first complete candidate is popped at iteration i, the search runs
    until iteration 2i and returns every complete candidate popped, by Px.
    Stops early (``within_budget`` False) after ``max_expansions`` node expansions.
    """
    started = time.perf_counter()
    rows_before, calls_before = scorer.rows, scorer.calls
    counter = itertools.count()  # tie-breaker: equal Px pops in insertion order (deterministic)
    heap: list[tuple[float, int, tuple[int, ...]]] = [(0.0, next(counter), ())]
    leaves: list[tuple[float, tuple[int, ...]]] = []
    iterations = expanded = 0
    first_leaf_at: int | None = None
    within_budget = True
    next_report = started + PROGRESS_EVERY_S
    while heap:
        if time.perf_counter() > next_report:
            elapsed = time.perf_counter() - started
            log.info("shortest path: %d expansions in %.0f s (%.0f/s), %d leaves, budget %d",
                     expanded, elapsed, expanded / elapsed, len(leaves), max_expansions)
            next_report += PROGRESS_EVERY_S
        popped = [heapq.heappop(heap) for _ in range(min(pop_batch, len(heap)))]
        iterations += 1
        internal = []
        for node_px, _, tokens in popped:
            if len(tokens) == space.depth:
                leaves.append((node_px, tokens))
            else:
                internal.append((node_px, tokens))
        if leaves and first_leaf_at is None:
            first_leaf_at = iterations
        if first_leaf_at is not None and iterations >= 2 * first_leaf_at:
            break
        if not internal:
            continue
        if expanded + len(internal) > max_expansions:
            within_budget = False
            break
        log2p = scorer.log2_next_ragged([tokens for _, tokens in internal])  # one call for mixed depths
        expanded += len(internal)
        for (node_px, tokens), row in zip(internal, log2p):
            options = space.options[len(tokens)]
            costs = node_px - row[list(options)]
            for option, cost in zip(options, costs.tolist()):
                heapq.heappush(heap, (cost, next(counter), tokens + (option,)))
    leaves.sort()
    top = None if canary is None or not leaves else leaves[0][1] == tuple(canary)
    return ExtractionResult(leaves, iterations, expanded, scorer.rows - rows_before, scorer.calls - calls_before,
                            time.perf_counter() - started, within_budget and bool(leaves), top)
