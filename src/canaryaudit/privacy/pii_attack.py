"""PII reconstruction and inference attacks on a trained model (Lukas et al., S&P 2023).

Targets are distinct PII values of the private training split (the builtin
corpus's ground truth, or the detectors' spans for other data), each attacked
at one of its occurrences (a seeded choice). For each target the attacker knows
its left *context*: the ``context_chars`` characters before it, as the model
saw them in training (sanitized like the training text when sanitization is
on: a masked model never saw the value, nor the other values around it).

* **inference**: the true value among ``candidates`` distinct values of the same
  type (the others drawn uniformly from the split's other distinct values of
  that type); success when the true value has the lowest log-perplexity Px
  (bits, summed over its tokens after the context; lower = more likely). Ties
  count against it. Chance = 1 / candidates. Why distinct values: a value
  repeated in many targets would repeat its own (context-free) preference under
  the model and make trials dependent; with each distinct value once and random
  distractors, a model that learned nothing wins each trial with probability
  exactly 1 / candidates, independently, so the binomial interval is valid.
* **reconstruction**: the model's greedy continuation of the context (its most
  likely next token at every step); success when it spells the true value and
  the value ends there (no letter or digit follows).

Accuracies come with exact (Clopper-Pearson) 95 % intervals. Raw values never
leave this module: reports carry counts, rates and masked examples only.
"""

from __future__ import annotations

import random
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from scipy import stats
from torch import nn

from canaryaudit.exposure.scoring import max_positions
from canaryaudit.extraction.metrics import token_log2probs
from canaryaudit.extraction.sampling import StrategyOptions, sample_batch
from canaryaudit.extraction.verify import mask_value
from canaryaudit.pii.detectors import Detector, detect
from canaryaudit.pii.sanitize import sanitize_text
from canaryaudit.pii.spans import PiiSpan
from canaryaudit.schemas import PII_TRUTH, read_checked_jsonl
from canaryaudit.shared_prefix import continuation_log2probs, greedy_decode, prefix_runner
from canaryaudit.training.tokenizers import CharTokenizer, Tokenizer

CONFIDENCE = 0.95  # of every interval reported


@dataclass(frozen=True)
class Target:
    """One PII occurrence of the training split: its value and the left context the attacker is given."""

    doc_id: str
    pii_type: str
    value: str
    context: str


@dataclass(frozen=True)
class AttackSettings:
    max_per_type: int  # targets per PII type (a seeded sample when there are more)
    context_chars: int  # characters of left context
    candidates: int  # inference: the true value and candidates - 1 others
    batch_size: int  # sequences per forward pass
    reconstruction: bool
    extra_tokens: int  # greedy tokens decoded past the value's own token count


# ---------------------------------------------------------------- targets and candidates


def occurrences(documents: Iterable[Mapping[str, object]], spans: Mapping[str, Sequence[PiiSpan]],
                types: Sequence[str] | None = None) -> list[tuple[str, str, str, int]]:
    """(doc_id, type, value, start) of every PII span of ``types`` (None: all) in the documents, in order."""
    out = []
    for doc in documents:
        text, doc_id = str(doc["text"]), str(doc["doc_id"])
        for span in sorted(spans.get(doc_id, ()), key=lambda s: s.start):
            if types is None or span.type in types:
                out.append((doc_id, span.type, text[span.start : span.end], span.start))
    return out


def training_spans(raw: Path, documents: Sequence[Mapping[str, object]],
                   detectors: Sequence[Detector]) -> tuple[dict[str, list[PiiSpan]], str]:
    """PII spans per training document and where they come from: the ground truth ``raw``/pii_truth.jsonl
    (the builtin corpus), else the detectors."""
    truth_path = raw / "pii_truth.jsonl"
    if truth_path.exists():
        spans: dict[str, list[PiiSpan]] = defaultdict(list)
        for row in read_checked_jsonl(PII_TRUTH, truth_path):
            spans[row["doc_id"]].append(PiiSpan(row["type"], row["start"], row["end"]))
        return spans, "ground truth (data/raw/pii_truth.jsonl)"
    return {str(d["doc_id"]): detect(str(d["text"]), detectors) for d in documents}, "detected spans"


def context_renderer(enabled: bool, action_for: Callable[[str], str],
                     detectors: Sequence[Detector]) -> Callable[[str], str]:
    """The left context as training saw it: sanitized like the training text when sanitization is ``enabled``
    (``action_for``: the sanitize action per PII type)."""
    if not enabled:
        return lambda raw: raw

    def action(pii_type: str) -> str:
        chosen = action_for(pii_type)
        return "mask" if chosen == "drop" else chosen  # a dropped document's context: its values stay unseen

    return lambda raw: sanitize_text(raw, detectors, action).text or ""


def select_targets(found: Sequence[tuple[str, str, str, int]], texts: Mapping[str, str], settings: AttackSettings,
                   render_context: Callable[[str], str], rng: random.Random) -> list[Target]:
    """At most ``max_per_type`` distinct values per type (seeded), each at one of its occurrences (seeded),
    with its rendered left context."""
    by_value: dict[tuple[str, str], list[tuple[str, str, str, int]]] = defaultdict(list)
    for item in found:
        by_value[(item[1], item[2])].append(item)
    by_type: dict[str, list[tuple[str, str]]] = defaultdict(list)
    for key in by_value:  # insertion order: first occurrence in the split
        by_type[key[0]].append(key)
    targets = []
    for pii_type in sorted(by_type):
        keys = by_type[pii_type]
        chosen = keys if len(keys) <= settings.max_per_type else rng.sample(keys, settings.max_per_type)
        for doc_id, _, value, start in (rng.choice(by_value[key]) for key in chosen):
            raw = texts[doc_id][max(0, start - settings.context_chars) : start]
            targets.append(Target(doc_id, pii_type, value, render_context(raw)))
    return targets


def candidate_sets(targets: Sequence[Target], pool: Mapping[str, Sequence[str]], count: int,
                   rng: random.Random) -> list[list[str]]:
    """For each target: its true value first, then ``count - 1`` other distinct values of its type drawn
    uniformly from ``pool[type]`` (fewer when the type has fewer)."""
    distinct = {pii_type: sorted(set(values)) for pii_type, values in pool.items()}
    sets = []
    for target in targets:
        others = [v for v in distinct.get(target.pii_type, ()) if v != target.value]
        sets.append([target.value, *rng.sample(others, min(count - 1, len(others)))])
    return sets


# ---------------------------------------------------------------- scoring with the model


def _scored_ids(tokenizer: Tokenizer, context: str, filling: str, limit: int | None) -> tuple[list[int], int]:
    """Token ids of context + filling cut to the model's window, and how many lead tokens are context.

    The context is the longest run of leading tokens shared with the context alone (a token that
    straddles the boundary counts with the filling); the oldest context tokens are dropped to fit.
    """
    context_ids = tokenizer.encode(context) or [tokenizer.eos_id]
    full = tokenizer.encode(context + filling) if context else [tokenizer.eos_id, *tokenizer.encode(filling)]
    shared = 0
    while shared < min(len(context_ids), len(full)) and context_ids[shared] == full[shared]:
        shared += 1
    shared = max(1, min(shared, len(full) - 1))  # at least one context token and one scored token
    if limit is not None and len(full) > limit:
        drop = min(len(full) - limit, shared - 1)
        full, shared = full[drop:], shared - drop
    return full, shared


def filling_px(model: nn.Module, tokenizer: Tokenizer, pairs: Sequence[tuple[str, str]], batch_size: int,
               device: torch.device, reuse_context: bool = True) -> np.ndarray:
    """Px in bits of each filling after its context (summed -log2 probabilities; lower = more likely).

    Sequences that fit the model's window share their context's pass (one per distinct context, see
    :mod:`canaryaudit.shared_prefix`); longer ones, models without a reusable state, and every sequence
    when ``reuse_context`` is off (the straightforward way: tests and benchmarks compare the two) are
    scored as whole sequences with the sliding windows of token_log2probs.
    """
    limit = max_positions(model)
    encoded = [_scored_ids(tokenizer, context, filling, limit) for context, filling in pairs]
    runner = prefix_runner(model) if reuse_context else None
    shared = [i for i, (ids, _) in enumerate(encoded) if runner is not None and (limit is None or len(ids) <= limit)]
    windowed = sorted(set(range(len(encoded))) - set(shared))
    px = np.zeros(len(encoded), dtype=np.float64)
    if runner is not None and shared:
        scored = continuation_log2probs(runner, [encoded[i] for i in shared], batch_size, device)
        px[shared] = [-float(np.sum(lp)) for lp in scored]
    if windowed:
        log2p = token_log2probs(model, [encoded[i][0] for i in windowed], batch_size, device)
        # log2p[k][j] is log2 Pr(token j + 1 | tokens <= j): the filling's tokens are j + 1 >= shared.
        px[windowed] = [-float(np.sum(lp[encoded[i][1] - 1 :])) for lp, i in zip(log2p, windowed)]
    return px


def _greedy(logits: torch.Tensor, _steps: torch.Tensor, _options: StrategyOptions) -> torch.Tensor:
    """All probability on the likeliest token: sample_batch then decodes greedily."""
    return torch.nn.functional.one_hot(logits.argmax(dim=-1), logits.shape[-1]).float()


def _greedy_windowed(model: nn.Module, prompts: Sequence[list[int]], budgets: Sequence[int], batch_size: int,
                     eos_id: int, device: torch.device) -> list[list[int]]:
    """Greedy continuations whose prompt + budget passes the model's window (or of a model without a
    reusable state): sample_batch, whose decoder slides the window; each row keeps its own budget."""
    out: list[list[int]] = [[] for _ in prompts]
    order = sorted(range(len(prompts)), key=lambda i: (budgets[i], len(prompts[i])))  # similar shapes batch together
    generator = torch.Generator(device=device).manual_seed(0)  # unused by greedy decoding; sample_batch needs one
    for first in range(0, len(order), batch_size):
        batch = order[first : first + batch_size]
        rows, _ = sample_batch(model, [prompts[i] for i in batch], max(budgets[i] for i in batch), _greedy,
                               StrategyOptions(eos_id=eos_id), generator, device)
        for i, row in zip(batch, rows):
            out[i] = row[len(prompts[i]) : len(prompts[i]) + budgets[i]]
    return out


def _continuation_text(tokenizer: Tokenizer, tokens: Sequence[int]) -> str:
    return tokenizer.decode([t for t in tokens if t != tokenizer.eos_id])


def greedy_reconstructed(model: nn.Module, tokenizer: Tokenizer, targets: Sequence[Target], settings: AttackSettings,
                         device: torch.device, reuse_context: bool = True) -> list[bool]:
    """Whether the model's greedy continuation of each target's context spells its value (:func:`reconstructed`).

    Each target decodes its value's token count + extra_tokens tokens after the last tokens of its context
    that leave room for them in the model's window. When decoding is token by token (the char tokenizer,
    :func:`decodes_token_by_token`) a row stops as soon as its text has left the value or passed its end:
    more tokens cannot change the outcome then. ``reuse_context`` off: every row decodes its whole budget
    with sample_batch (the straightforward way, teacher-forcing each prompt token by token).
    """
    limit = max_positions(model)
    budgets = [len(tokenizer.encode(t.value)) + settings.extra_tokens for t in targets]
    prompts = []
    for target, budget in zip(targets, budgets):
        prompt = tokenizer.encode(target.context) or [tokenizer.eos_id]
        prompts.append(prompt if limit is None else prompt[-max(1, limit - budget) :])
    runner = prefix_runner(model) if reuse_context else None
    fast = [i for i in range(len(targets))
            if runner is not None and (limit is None or len(prompts[i]) + budgets[i] <= limit)]
    slow = sorted(set(range(len(targets))) - set(fast))
    tokens: list[list[int]] = [[] for _ in targets]
    if runner is not None and fast:
        stops_early = decodes_token_by_token(tokenizer)

        def settled(n: int, so_far: list[int]) -> bool:
            return stops_early and _decided(targets[fast[n]].value, _continuation_text(tokenizer, so_far))

        decoded = greedy_decode(runner, [prompts[i] for i in fast], [budgets[i] for i in fast], settings.batch_size,
                                device, settled)
        for i, row in zip(fast, decoded):
            tokens[i] = row
    if slow:
        decoded = _greedy_windowed(model, [prompts[i] for i in slow], [budgets[i] for i in slow], settings.batch_size,
                                   tokenizer.eos_id, device)
        for i, row in zip(slow, decoded):
            tokens[i] = row
    return [reconstructed(t.value, _continuation_text(tokenizer, row)) for t, row in zip(targets, tokens)]


def decodes_token_by_token(tokenizer: Tokenizer, block: int = 64) -> bool:
    """Whether decoding is the concatenation of each token's own text (<eos> silent): then a greedy row's text
    only grows at its end, and a row whose text has left the value can stop. The char tokenizer does, and so
    does its Hugging Face form (the ``pretrained`` kind a fine-tuned variant saves): checked over the whole
    vocabulary in blocks, in both orders (byte-level BPE fails: partial UTF-8 bytes decode together)."""
    if isinstance(tokenizer, CharTokenizer):
        return True
    tokens = [token for token in range(tokenizer.vocab_size) if token != tokenizer.eos_id]
    pieces = {token: tokenizer.decode([token]) for token in tokens}
    for order in (tokens, tokens[::-1]):
        for first in range(0, len(order), block):
            chunk = order[first : first + block]
            if tokenizer.decode(chunk) != "".join(pieces[t] for t in chunk):
                return False
    return True


def _decided(value: str, text: str) -> bool:
    """Whether :func:`reconstructed` of ``value`` is fixed for every continuation that starts with ``text``:
    the text has left the value, or holds it and the character after it. A replacement character (a partial
    UTF-8 byte sequence, or <unk>) never decides: more bytes may still decode into the value's character."""
    if "\ufffd" in text:
        return False
    return not value.startswith(text[: len(value)]) or len(text) > len(value)


def reconstructed(value: str, continuation: str) -> bool:
    """The continuation spells ``value`` and the value ends there (no letter or digit runs on)."""
    return continuation.startswith(value) and not continuation[len(value) : len(value) + 1].isalnum()


# ---------------------------------------------------------------- statistics


def proportion(successes: int, trials: int, chance: float | None = None) -> dict[str, float | int | None]:
    """Rate with its exact (Clopper-Pearson) interval; with ``chance``, the one-sided p-value of beating it."""
    if trials == 0:
        return {"trials": 0, "successes": 0, "rate": None, "ci_low": None, "ci_high": None, "chance": chance,
                "p_value_above_chance": None}
    interval = stats.binomtest(successes, trials).proportion_ci(confidence_level=CONFIDENCE, method="exact")
    p_value = None
    if chance is not None:
        p_value = float(stats.binomtest(successes, trials, p=chance, alternative="greater").pvalue)
    return {"trials": trials, "successes": successes, "rate": successes / trials, "ci_low": float(interval.low),
            "ci_high": float(interval.high), "chance": chance, "p_value_above_chance": p_value}


def inference_wins(px: np.ndarray, sets: Sequence[Sequence[str]], rng: random.Random) -> tuple[list[bool], int]:
    """Per set (true value first): whether the true value's Px is the lowest of the set, a tie for the lowest
    broken uniformly at random; and how many sets had the true value tied with another for the lowest."""
    wins, ties, cursor = [], 0, 0
    for values in sets:
        scores = px[cursor : cursor + len(values)]
        cursor += len(values)
        best = np.flatnonzero(scores == scores.min())
        if len(values) < 2 or 0 not in best:
            wins.append(False)
            continue
        ties += len(best) > 1
        wins.append(rng.randrange(len(best)) == 0)
    return wins, ties


def _by_type(targets: Sequence[Target], flags: Sequence[bool], chances: Sequence[float] | None) -> dict[str, dict]:
    groups: dict[str, list[int]] = defaultdict(list)
    for i, target in enumerate(targets):
        groups[target.pii_type].append(i)
    table = {}
    for pii_type, members in sorted(groups.items()):
        chance = None if chances is None else float(np.mean([chances[i] for i in members]))
        table[pii_type] = proportion(sum(flags[i] for i in members), len(members), chance)
    pooled = None if chances is None else (float(np.mean(chances)) if chances else None)
    table["all"] = proportion(sum(flags), len(flags), pooled)
    return table


def masked_examples(targets: Sequence[Target], flags: Sequence[bool], limit: int = 20) -> list[dict[str, str]]:
    """Distinct reconstructed values, masked (all but the last 2 characters, at most half), with a document id."""
    seen, out = set(), []
    for target, ok in zip(targets, flags):
        if ok and (target.pii_type, target.value) not in seen and len(out) < limit:
            seen.add((target.pii_type, target.value))
            out.append({"type": target.pii_type, "masked": mask_value(target.value), "doc_id": target.doc_id})
    return out


def run_attacks(model: nn.Module, tokenizer: Tokenizer, targets: Sequence[Target], pool: Mapping[str, Sequence[str]],
                settings: AttackSettings, rng: random.Random, device: torch.device) -> dict[str, object]:
    """Both attacks on ``targets``; the report part of reports/pii/V.json (no raw value in it)."""
    model = model.eval()
    sets = candidate_sets(targets, pool, settings.candidates, rng)
    pairs = [(t.context, value) for t, values in zip(targets, sets) for value in values]
    px = filling_px(model, tokenizer, pairs, settings.batch_size, device) if pairs else np.zeros(0)
    wins, ties = inference_wins(px, sets, rng)
    chances = [1.0 / len(values) for values in sets]
    report: dict[str, object] = {
        "targets": dict(sorted(Counter(t.pii_type for t in targets).items())),  # distinct values attacked
        "inference": {"candidates": settings.candidates, "tied_trials": ties,
                      "types": _by_type(targets, wins, chances)},
        "reconstruction": None,
    }
    if settings.reconstruction:
        done = greedy_reconstructed(model, tokenizer, targets, settings, device)
        report["reconstruction"] = {
            "types": _by_type(targets, done, None),
            "examples": masked_examples(targets, done),
        }
    return report
