"""Exact rank by pruned search, and shortest-path extraction, over a format's token space.

Px is in bits (sum of -log2 Pr(token | context) over the counted tokens, see
:mod:`canaryaudit.exposure.token_space`); lower = more likely = more exposed. Every edge weight is >= 0, so a
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
from canaryaudit.exposure.scoring import NextTokenScorer, path_px
from canaryaudit.exposure.token_space import SearchUnsupported, TokenSpace, canary_space
from canaryaudit.training.tokenizers import Tokenizer

__all__ = ["SearchUnsupported", "TokenSpace", "canary_space", "candidate_tokens", "exact_rank", "shortest_path",
           "pruning_tolerance_bits", "NextTokenScorer"]

log = logging.getLogger("canaryaudit.exposure.search")
PROGRESS_EVERY_S = 10.0  # seconds between progress lines of a long search


def candidate_tokens(space: TokenSpace, fmt: CanaryFormat, draws: Sequence[str], tokenizer: Tokenizer) -> list[int]:
    """Canonical token ids after the context for the filling ``draws``; SearchUnsupported if they leave the space."""
    text = fmt.render(draws)
    tokens = space.tokens_of(text)
    if tokens is None:
        raise SearchUnsupported(f"format {fmt.name!r}: the {tokenizer.kind} tokenizer's encoding of a candidate "
                                "does not fit the format's token space (its context differs)")
    return list(tokens)


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
    noncanonical: int = 0  # complete token sequences within the slack dropped as non-canonical spellings

    @property
    def exact(self) -> bool:
        return self.rank is not None


def exact_rank(scorer: NextTokenScorer, space: TokenSpace, canary: Sequence[int], max_rows: int,
               tolerance: float | None = None) -> RankResult:
    """Number of fillings with Px <= the canary's (ties count against it), equal to brute force.

    Two passes over one definition of Px (float64, full sequence: ``scorer.exact_px``):
    1. a pruned breadth-first search over token sequences, level by level in the model's
       own dtype, keeps every complete sequence whose search Px is within ``tolerance`` bits
       of the canary's (default :func:`pruning_tolerance_bits` over ``space.max_tokens``);
       a partial sequence above that is cut with its subtree, which is safe because every
       edge weight is >= 0. Complete sequences that are not the tokenizer's canonical
       encoding of their text are dropped: each filling is counted once, by its canonical Px;
    2. survivors more than ``tolerance`` below the canary are counted as likelier; the band
       within ``tolerance`` of it (the canary included) is rescored in float64 and counted with <=.
    The slack must exceed the float error of pass 1: it is checked on every rescored candidate,
    and a rank is only returned when the error stayed under half the slack. When the next level
    would need more than ``max_rows`` model rows in total, the search stops and ``rank`` is None.
    """
    started = time.perf_counter()
    rows_before, calls_before = scorer.rows, scorer.calls
    tolerance = pruning_tolerance_bits(scorer.dtype, space.max_tokens) if tolerance is None else tolerance
    canary_tokens = tuple(int(t) for t in canary)
    search_px = path_px(scorer, canary_tokens)
    threshold = search_px + tolerance
    expanded = 0

    def result(rank: int | None, canary_px: float, message: str = "", **extra) -> RankResult:
        return RankResult(rank, canary_px, scorer.rows - rows_before, scorer.calls - calls_before, expanded,
                          time.perf_counter() - started, message, **extra)

    frontier = np.zeros((1, 0), dtype=np.int64)
    states = np.zeros(1, dtype=np.int64)
    px = np.zeros(1, dtype=np.float64)
    leaves: list[tuple[tuple[int, ...], float]] = []
    for depth in range(space.max_tokens):
        if len(frontier) == 0:
            break
        if scorer.rows - rows_before + len(frontier) > max_rows:
            return result(None, float(scorer.exact_px([canary_tokens])[0]),
                          f"stopped at depth {depth}: {len(frontier)} open prefixes exceed the budget of {max_rows} rows")
        log.debug("exact rank: depth %d, %d open prefixes, %d rows so far", depth, len(frontier), scorer.rows - rows_before)
        expanded += len(frontier)
        frontier, states, px = _expand_level(scorer, space, frontier, states, px, threshold, leaves)
    return _count_survivors(scorer, space, leaves, canary_tokens, search_px, tolerance, result)


def _expand_level(scorer: NextTokenScorer, space: TokenSpace, frontier: np.ndarray, states: np.ndarray,
                  px: np.ndarray, threshold: float, leaves: list[tuple[tuple[int, ...], float]]):
    """Children of one level within ``threshold`` bits: complete ones appended to ``leaves``, the rest returned."""
    next_tokens, next_states, next_px = [], [], []
    for state in np.unique(states):
        rows = np.nonzero(states == state)[0]
        ids, targets = space.moves(int(state))
        if len(ids) == 0:
            continue
        child_px = px[rows, None] - scorer.log2_next(frontier[rows], columns=ids)  # [rows, moves]
        keep_row, keep_move = np.nonzero(child_px <= threshold)
        tokens = np.concatenate([frontier[rows][keep_row], ids[keep_move][:, None]], axis=1)
        child_states, child = targets[keep_move], child_px[keep_row, keep_move]
        done = np.array([space.accepting(int(t)) for t in child_states], dtype=bool)
        leaves.extend((tuple(int(t) for t in row), float(v)) for row, v in zip(tokens[done], child[done]))
        live = np.array([len(space.moves(int(t))[0]) > 0 for t in child_states], dtype=bool)
        next_tokens.append(tokens[live])
        next_states.append(child_states[live])
        next_px.append(child[live])
    if not next_tokens:
        return np.zeros((0, frontier.shape[1] + 1), dtype=np.int64), np.zeros(0, dtype=np.int64), np.zeros(0)
    return np.concatenate(next_tokens), np.concatenate(next_states), np.concatenate(next_px)


def _count_survivors(scorer: NextTokenScorer, space: TokenSpace, leaves: list[tuple[tuple[int, ...], float]],
                     canary: tuple[int, ...], search_px: float, tolerance: float, result) -> RankResult:
    """Rank from the search's canonical survivors: clear wins counted, the band around the canary rescored in float64.

    A survivor whose search Px is more than ``tolerance`` below the canary's is likelier under any
    float error below tolerance / 2, so it is counted as is; the band within ``tolerance`` of the
    canary (the canary itself included) is rescored by ``scorer.exact_px`` and compared with <=.
    """
    canonical = [(tokens, value) for tokens, value in leaves if space.canonical(tokens)]
    dropped = len(leaves) - len(canonical)
    band = [(tokens, value) for tokens, value in canonical if value >= search_px - tolerance]
    at = next((i for i, (tokens, _) in enumerate(band) if tokens == canary), None)
    if at is None:  # the canary itself was cut: its float error exceeded the whole slack
        return result(None, float(scorer.exact_px([canary])[0]), f"the canary's own search Px left the pruning "
                      f"slack of {tolerance:.3g} bits: rank not trusted (pass a larger tolerance)", noncanonical=dropped)
    # The canary's Px is read from the same rescoring call as the band (not a row of its own):
    # a row's float64 result can depend on its place in the batch by ~1e-16, enough to flip "<=" on itself.
    band_px = scorer.exact_px([tokens for tokens, _ in band])
    canary_px = float(band_px[at])
    error = float(np.abs(np.array([value for _, value in band]) - band_px).max())
    extra = {"rescored": len(band), "max_float_error": error, "noncanonical": dropped}
    if error > tolerance / 2:
        return result(None, canary_px, f"float error {error:.3g} bits exceeds half the pruning slack "
                      f"{tolerance:.3g} bits: rank not trusted (pass a larger tolerance)", **extra)
    clear_wins = len(canonical) - len(band)
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
    noncanonical: int = 0  # complete sequences dropped as non-canonical spellings of a filling

    def position(self, tokens: Sequence[int]) -> int | None:
        """1-based position of a filling among the confirmed best, or None if it is not among them."""
        wanted = tuple(int(t) for t in tokens)
        return next((i for i, (_px, c) in enumerate(self.candidates, 1) if c == wanted), None)


def shortest_path(scorer: NextTokenScorer, space: TokenSpace, pop_batch: int, max_expansions: int,
                  canary: Sequence[int] | None = None, top_k: int = 1) -> ExtractionResult:
    """Secret Sharer 8.1 generalised to the ``top_k`` likeliest fillings: Dijkstra over partial
    token sequences, popping ``pop_batch`` nodes per model call.

    A popped complete sequence is *confirmed* once no open node is lighter (edge weights are
    >= 0, so nothing still in the heap can lead to a lighter filling); confirmed fillings are
    in exact Px order, so their positions are ranks among all of R (up to float ties). A
    complete sequence that is not the tokenizer's canonical encoding of its text is a second
    spelling of a filling, not a filling: it is dropped when it would be confirmed. The
    search ends when ``top_k`` fillings are confirmed, or (``within_budget`` False) after
    ``max_expansions`` node expansions, returning the fillings confirmed so far.
    """
    if top_k < 1:
        raise ValueError(f"top_k must be >= 1, got {top_k}")
    started = time.perf_counter()
    rows_before, calls_before = scorer.rows, scorer.calls
    counter = itertools.count()  # tie-breaker: equal Px pops in insertion order (deterministic)
    heap: list[tuple[float, int, tuple[int, ...], int]] = [(0.0, next(counter), (), 0)]
    pending: list[tuple[float, int, tuple[int, ...]]] = []  # popped complete sequences not yet confirmed
    confirmed: list[tuple[float, tuple[int, ...]]] = []
    iterations = expanded = dropped = 0
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
        for node_px, order, tokens, state in popped:
            if space.accepting(state):
                heapq.heappush(pending, (node_px, order, tokens))
            if len(space.moves(state)[0]):
                internal.append((node_px, tokens, state))
        if internal:
            if expanded + len(internal) > max_expansions:
                within_budget = False
                break
            moves = [space.moves(state) for _, _, state in internal]
            log2p = scorer.log2_next_ragged([tokens for _, tokens, _ in internal], [ids for ids, _ in moves])
            expanded += len(internal)
            for (node_px, tokens, _), (ids, targets), row in zip(internal, moves, log2p):
                for option, target, cost in zip(ids.tolist(), targets.tolist(), (node_px - row).tolist()):
                    heapq.heappush(heap, (cost, next(counter), tokens + (option,), target))
        lightest_open = heap[0][0] if heap else math.inf
        while pending and pending[0][0] <= lightest_open and len(confirmed) < top_k:
            leaf_px, _, tokens = heapq.heappop(pending)
            if space.canonical(tokens):
                confirmed.append((leaf_px, tokens))
            else:
                dropped += 1
    top = None if canary is None or not confirmed else confirmed[0][1] == tuple(int(t) for t in canary)
    return ExtractionResult(confirmed, iterations, expanded, scorer.rows - rows_before, scorer.calls - calls_before,
                            time.perf_counter() - started, within_budget and len(confirmed) >= min(top_k, space.size),
                            top_k, len(pending), top, dropped)
