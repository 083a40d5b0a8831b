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
import torch

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


# Pruning slack per token position, in units of the scoring dtype's machine epsilon. A log2-probability
# computed in float32 through a few layers (and the KV cache vs a full pass, different batch shapes)
# differs by ~1e-6 bits; 4096 eps = 4.9e-4 bits per position is ~100x that, and costs only the
# candidates that lie within that slack of the canary (they are rescored exactly, see exact_rank).
SLACK_EPS_PER_POSITION = 4096


def pruning_tolerance_bits(dtype: torch.dtype, depth: int) -> float:
    """Bits of float slack for pruning a ``depth``-token search scored in ``dtype``."""
    return depth * SLACK_EPS_PER_POSITION * float(torch.finfo(dtype).eps)


@dataclass
class RankResult:
    rank: int | None  # None when the budget was exceeded (or the float check failed: see message)
    canary_px: float  # bits, float64 full-sequence score: the Px the rank compares
    rows: int  # sequences scored by the search (model rows), the float64 rescoring excluded
    calls: int  # forward passes of the search
    nodes_expanded: int
    seconds: float
    message: str = ""
    rescored: int = 0  # candidates rescored in float64 (the survivors within the slack of the canary)
    max_float_error: float = 0.0  # bits: largest |search Px - float64 Px| among the rescored

    @property
    def exact(self) -> bool:
        return self.rank is not None


def exact_rank(scorer: NextTokenScorer, space: CanarySpace, canary: Sequence[int], max_rows: int,
               tolerance: float | None = None) -> RankResult:
    """Number of candidates with Px <= the canary's (ties count against it), equal to brute force.

    Two passes over one definition of Px (float64, full sequence: ``scorer.exact_px``):
    1. a pruned breadth-first search in the model's own dtype keeps every candidate whose
       search Px is within ``tolerance`` bits of the canary's (default
       :func:`pruning_tolerance_bits`); a partial candidate above that is cut with its
       subtree, which is safe because every edge weight is >= 0;
    2. survivors more than ``tolerance`` below the canary are counted as likelier; the band
       within ``tolerance`` of it (the canary included) is rescored in float64 and counted with <=.
    The slack must exceed the float error of pass 1: it is checked on every rescored candidate,
    and a rank is only returned when the error stayed under half the slack. When the next level
    would need more than ``max_rows`` model rows in total, the search stops and ``rank`` is None.
    """
    started = time.perf_counter()
    rows_before, calls_before = scorer.rows, scorer.calls
    tolerance = pruning_tolerance_bits(scorer.dtype, space.depth) if tolerance is None else tolerance
    canary_row = np.asarray(canary, dtype=np.int64).reshape(1, space.depth)
    search_px = path_px(scorer, canary)
    threshold = search_px + tolerance

    def result(rank: int | None, canary_px: float, message: str = "", **extra) -> RankResult:
        return RankResult(rank, canary_px, scorer.rows - rows_before, scorer.calls - calls_before, expanded,
                          time.perf_counter() - started, message, **extra)

    frontier = np.zeros((1, 0), dtype=np.int64)
    px = np.zeros(1, dtype=np.float64)
    expanded = 0
    for depth, options in enumerate(space.options):
        if scorer.rows - rows_before + len(frontier) > max_rows:
            return result(None, float(scorer.exact_px(canary_row)[0]),
                          f"stopped at depth {depth}: {len(frontier)} open prefixes exceed the budget of {max_rows} rows")
        log2p = scorer.log2_next(frontier)
        expanded += len(frontier)
        log.debug("exact rank: depth %d, %d open prefixes, %d rows so far", depth, len(frontier), scorer.rows - rows_before)
        option_ids = np.array(options, dtype=np.int64)
        child_px = px[:, None] - log2p[:, option_ids]  # [n, k]
        keep_node, keep_option = np.nonzero(child_px <= threshold)
        frontier = np.concatenate([frontier[keep_node], option_ids[keep_option][:, None]], axis=1)
        px = child_px[keep_node, keep_option]
    return _count_survivors(scorer, frontier, px, canary_row, search_px, tolerance, result)


def _count_survivors(scorer: NextTokenScorer, frontier: np.ndarray, px: np.ndarray, canary_row: np.ndarray,
                     search_px: float, tolerance: float, result) -> RankResult:
    """Rank from the search's survivors: clear wins counted, the band around the canary rescored in float64.

    A survivor whose search Px is more than ``tolerance`` below the canary's is likelier under any
    float error below tolerance / 2, so it is counted as is; the band within ``tolerance`` of the
    canary (the canary itself included) is rescored by ``scorer.exact_px`` and compared with <=.
    """
    band = np.nonzero(px >= search_px - tolerance)[0]
    at = np.nonzero((frontier[band] == canary_row).all(axis=1))[0]
    if len(at) == 0:  # the canary itself was cut: its float error exceeded the whole slack
        return result(None, float(scorer.exact_px(canary_row)[0]), f"the canary's own search Px left the pruning "
                      f"slack of {tolerance:.3g} bits: rank not trusted (pass a larger tolerance)")
    # The canary's Px is read from the same rescoring call as the band (not a row of its own):
    # a row's float64 result can depend on its place in the batch by ~1e-16, enough to flip "<=" on itself.
    band_px = scorer.exact_px(frontier[band])
    canary_px = float(band_px[at[0]])
    error = float(np.abs(px[band] - band_px).max())
    extra = {"rescored": len(band), "max_float_error": error}
    if error > tolerance / 2:
        return result(None, canary_px, f"float error {error:.3g} bits exceeds half the pruning slack "
                      f"{tolerance:.3g} bits: rank not trusted (pass a larger tolerance)", **extra)
    clear_wins = len(frontier) - len(band)
    return result(clear_wins + int((band_px <= canary_px).sum()), canary_px, **extra)

# ---------------------------------------------------------------- shortest-path extraction


@dataclass
class ExtractionResult:
    candidates: list[tuple[float, tuple[int, ...]]]  # the best fillings by Px (bits), in order: exact positions
    iterations: int
    nodes_expanded: int
    rows: int
    calls: int
    seconds: float
    within_budget: bool  # True when top_k fillings were confirmed before the budget ran out
    top_k: int = 1
    unconfirmed: int = 0  # complete fillings popped but not confirmed when the budget ran out
    top_is_canary: bool | None = None

    def position(self, tokens: Sequence[int]) -> int | None:
        """1-based position of a filling among the confirmed best, or None if it is not among them."""
        wanted = tuple(int(t) for t in tokens)
        return next((i for i, (_px, c) in enumerate(self.candidates, 1) if c == wanted), None)


def shortest_path(scorer: NextTokenScorer, space: CanarySpace, pop_batch: int, max_expansions: int,
                  canary: Sequence[int] | None = None, top_k: int = 1) -> ExtractionResult:
    """Secret Sharer 8.1 generalised to the ``top_k`` likeliest fillings: Dijkstra over partial
    candidates, popping ``pop_batch`` nodes per model call.

    A popped complete filling is *confirmed* once no open node is lighter (edge weights are
    >= 0, so nothing still in the heap can lead to a lighter filling); confirmed fillings are
    in exact Px order, so their positions are ranks among all of R (up to float ties). The
    search ends when ``top_k`` fillings are confirmed, or (``within_budget`` False) after
    ``max_expansions`` node expansions, returning the fillings confirmed so far.
    """
    if top_k < 1:
        raise ValueError(f"top_k must be >= 1, got {top_k}")
    started = time.perf_counter()
    rows_before, calls_before = scorer.rows, scorer.calls
    counter = itertools.count()  # tie-breaker: equal Px pops in insertion order (deterministic)
    heap: list[tuple[float, int, tuple[int, ...]]] = [(0.0, next(counter), ())]
    pending: list[tuple[float, int, tuple[int, ...]]] = []  # popped complete fillings not yet confirmed
    confirmed: list[tuple[float, tuple[int, ...]]] = []
    iterations = expanded = 0
    within_budget = True
    next_report = started + PROGRESS_EVERY_S
    while len(confirmed) < top_k and (heap or pending):
        if time.perf_counter() > next_report:
            elapsed = time.perf_counter() - started
            log.info("shortest path: %d expansions in %.0f s (%.0f/s), %d of %d fillings confirmed, budget %d",
                     expanded, elapsed, expanded / elapsed, len(confirmed), top_k, max_expansions)
            next_report += PROGRESS_EVERY_S
        popped = [heapq.heappop(heap) for _ in range(min(pop_batch, len(heap)))]
        iterations += 1
        internal = []
        for entry in popped:
            (heapq.heappush(pending, entry) if len(entry[2]) == space.depth else internal.append(entry))
        if internal:
            if expanded + len(internal) > max_expansions:
                within_budget = False
                break
            log2p = scorer.log2_next_ragged([tokens for _, _, tokens in internal])  # one call for mixed depths
            expanded += len(internal)
            for (node_px, _, tokens), row in zip(internal, log2p):
                options = space.options[len(tokens)]
                costs = node_px - row[list(options)]
                for option, cost in zip(options, costs.tolist()):
                    heapq.heappush(heap, (cost, next(counter), tokens + (option,)))
        lightest_open = heap[0][0] if heap else math.inf
        while pending and pending[0][0] <= lightest_open and len(confirmed) < top_k:
            leaf_px, _, tokens = heapq.heappop(pending)
            confirmed.append((leaf_px, tokens))
    top = None if canary is None or not confirmed else confirmed[0][1] == tuple(int(t) for t in canary)
    return ExtractionResult(confirmed, iterations, expanded, scorer.rows - rows_before, scorer.calls - calls_before,
                            time.perf_counter() - started, within_budget and len(confirmed) >= min(top_k, space.size),
                            top_k, len(pending), top)
