"""Sampling strategies for training-data extraction (Carlini et al. 2021, section 5).

Registered in :data:`STRATEGIES` by their params.yaml names:

- ``top_n``: unconditional (the lone <eos> prompt: training joins documents
  with <eos>, so a sample starts like a document), next token drawn from the
  ``top_n`` most likely tokens, renormalised.
- ``temperature_decay``: unconditional, next token drawn from the full
  distribution at a temperature that falls linearly from ``start`` to ``end``
  over the first ``decay_tokens`` generated tokens, then stays at ``end``.
- ``prefix``: conditioned on 5-10 tokens of a public corpus (the caller's
  texts: the held-out test split or a file), then sampled like ``top_n``. Each
  sample draws a document uniformly among those with at least ``min`` tokens,
  a length uniformly in [min, min(max, document length)] and a start uniformly
  among the positions where that length fits. The prompt is not preceded by
  <eos>: training chunks start anywhere in the token stream.

Choices, documented once here:

- Fixed length: every sample gets exactly ``new_tokens`` generated tokens after
  its prompt. A generated <eos> does not stop it (the paper generates fixed
  lengths); the text shows each <eos> as :data:`EOS_TEXT` (a blank line, as the
  char tokenizer decodes it), so a sample spanning two "documents" reads so.
- Text: prompt + generated tokens, minus leading <eos> prompt tokens. So the
  ``prefix`` text includes its prompt (verification checks the whole sample)
  and the unconditional text is the generated part only.
- Context: a model with position embeddings (GPT-2: ``n_positions`` =
  ``train.model.context``, 64 by default) never sees more tokens than that. The
  token at position p is predicted from tokens [:func:`context_start`\\(p), p):
  windows of ``limit`` tokens that slide by half a window, so every prediction
  sees between ``limit - shift + 1`` and ``limit`` tokens. The KV cache is
  rebuilt from the window (one forward of about half a window) each time the
  window slides. :func:`canaryaudit.extraction.metrics.token_log2probs` scores
  with exactly the same windows, so a sample is scored under the distribution it
  was drawn from (at temperature 1, before top-n truncation).
- Batched prompts of different lengths (``prefix``): rows are aligned at
  position 0 and fed token by token; a row still inside its prompt takes its
  prompt token instead of the draw (teacher forcing), so no padding or attention
  mask is needed, and every token gets its log-prob (``Sample.log2probs``).
- Free scores: the logits of every step are there anyway, so each sample
  carries the target model's log2 Pr(token_i | context) (temperature 1, full
  vocabulary, the windows above): the metrics' target log-probs without another
  pass over the samples.
- Determinism: prompts come from a numpy Generator and draws from a torch
  Generator, both seeded from (seed, strategy name); the same seed, count and
  batch size give the same samples. Different strategies get different streams.
"""

from __future__ import annotations

import copy
import hashlib
import math
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import nn
from tqdm import tqdm

from canaryaudit.exposure.scoring import LN2, max_positions
from canaryaudit.registry import Registry
from canaryaudit.sharding import round_robin, shard_devices
from canaryaudit.training.models import CausalLM, CharLSTM
from canaryaudit.training.tokenizers import Tokenizer

EOS_TEXT = "\n\n"  # how a generated <eos> appears in a sample's text


@dataclass(frozen=True)
class Sample:
    """One generated sample. ``token_ids`` = prompt + generated; ``text`` as described in the module doc."""

    sample_id: str  # f"{strategy}-{i}"
    strategy: str
    prompt_ids: tuple[int, ...]
    token_ids: tuple[int, ...]
    prompt_tokens: int
    text: str
    # log2 Pr(token_i | context) for i >= 1 (bits) under the generating model; not part of equality (float noise)
    log2probs: tuple[float, ...] = field(default=(), compare=False)


@dataclass(frozen=True)
class StrategyOptions:
    top_n: int = 40
    temperature: tuple[float, float, int] = (10.0, 1.0, 20)  # start, end, decay_tokens
    corpus: tuple[tuple[int, ...], ...] = ()  # the prompt corpus, tokenized (prefix only)
    prefix_tokens: tuple[int, int] = (5, 10)  # min, max prompt tokens (prefix only)
    eos_id: int = 0


PromptFn = Callable[[int, np.random.Generator, StrategyOptions], list[list[int]]]
# logits [B, V], generated-token index per row [B] (0 = first generated token) -> probabilities [B, V]
ProbsFn = Callable[[torch.Tensor, torch.Tensor, StrategyOptions], torch.Tensor]


@dataclass(frozen=True)
class Strategy:
    """A registered strategy: how its prompts are drawn and which distribution each next token comes from."""

    prompts: PromptFn
    probs: ProbsFn
    needs_corpus: bool = False


# ---------------------------------------------------------------- next-token distributions (pure)


def top_n_probs(logits: torch.Tensor, n: int) -> torch.Tensor:
    """Softmax over the ``n`` largest logits of each row, zero elsewhere. Ties with the n-th logit are kept."""
    if n >= logits.shape[-1]:
        return torch.softmax(logits, dim=-1)
    nth = torch.topk(logits, n, dim=-1).values[..., -1:]
    return torch.softmax(logits.masked_fill(logits < nth, float("-inf")), dim=-1)


def decayed_temperature(steps: torch.Tensor, start: float, end: float, decay_tokens: int) -> torch.Tensor:
    """Temperature of generated token ``steps`` (0-based): linear from start (step 0) to end (step decay_tokens on)."""
    if decay_tokens <= 0:
        return torch.full_like(steps, end, dtype=torch.float32)
    progress = (steps.to(torch.float32) / decay_tokens).clamp(0.0, 1.0)
    return start + (end - start) * progress


def temperature_probs(logits: torch.Tensor, temperatures: torch.Tensor) -> torch.Tensor:
    """Softmax of each row's logits divided by its temperature ([B, V] logits, [B] temperatures)."""
    return torch.softmax(logits / temperatures.unsqueeze(-1), dim=-1)


def _top_n(logits: torch.Tensor, _steps: torch.Tensor, options: StrategyOptions) -> torch.Tensor:
    return top_n_probs(logits, options.top_n)


def _decay(logits: torch.Tensor, steps: torch.Tensor, options: StrategyOptions) -> torch.Tensor:
    start, end, decay_tokens = options.temperature
    return temperature_probs(logits, decayed_temperature(steps, start, end, decay_tokens))


# ---------------------------------------------------------------- prompts (pure)


def eos_prompts(count: int, _rng: np.random.Generator, options: StrategyOptions) -> list[list[int]]:
    """Unconditional: every sample starts after an <eos>, like a training document."""
    return [[options.eos_id] for _ in range(count)]


def corpus_prefixes(count: int, rng: np.random.Generator, options: StrategyOptions) -> list[list[int]]:
    """``count`` random spans of min..max tokens from random documents of the corpus (see module doc)."""
    low, high = options.prefix_tokens
    eligible = [doc for doc in options.corpus if len(doc) >= low]
    if not eligible:
        raise ValueError(f"prefix sampling: no prompt text has at least {low} tokens "
                         f"({len(options.corpus)} texts given); lower extract.prefix.min_tokens "
                         "or give a longer corpus")
    prompts = []
    for _ in range(count):
        doc = eligible[int(rng.integers(len(eligible)))]
        length = int(rng.integers(low, min(high, len(doc)) + 1))
        start = int(rng.integers(0, len(doc) - length + 1))
        prompts.append(list(doc[start : start + length]))
    return prompts


STRATEGIES: Registry[Strategy] = Registry("sampling strategy")
STRATEGIES.add("top_n", Strategy(prompts=eos_prompts, probs=_top_n))
STRATEGIES.add("temperature_decay", Strategy(prompts=eos_prompts, probs=_decay))
STRATEGIES.add("prefix", Strategy(prompts=corpus_prefixes, probs=_top_n, needs_corpus=True))


# ---------------------------------------------------------------- context windows


def window_shift(limit: int) -> int:
    """How far the context window slides once full: half a window (at least one token)."""
    return max(1, limit // 2)


def context_start(position: int, limit: int | None) -> int:
    """First token of the context that predicts the token at ``position``: context = tokens[start:position].

    Up to ``limit`` tokens the context is everything before; beyond, windows
    start at multiples of the shift, so the context holds limit - shift + 1 to
    limit tokens (e.g. limit 64: 33 to 64 tokens).
    """
    if limit is None or position <= limit:
        return 0
    shift = window_shift(limit)
    return shift * math.ceil((position - limit) / shift)


# ---------------------------------------------------------------- decoders: next-token logits as a sequence grows


class RecomputeDecoder:
    """Recomputes the whole context window at every step (any model; the benchmark's baseline)."""

    def __init__(self, model: nn.Module) -> None:
        self.model = model
        self.limit = max_positions(model)

    def next_logits(self, tokens: torch.Tensor) -> torch.Tensor:
        """Logits [B, V] for the token after ``tokens`` [B, p]."""
        start = context_start(tokens.shape[1], self.limit)
        return self.model(tokens[:, start:])[:, -1]


class KVCacheDecoder:
    """HF ``past_key_values`` with explicit position ids; rebuilt from the window when the window slides."""

    def __init__(self, model: CausalLM) -> None:
        self.hf = model.model
        self.takes_positions = model._takes_positions
        self.limit = max_positions(model)
        self.cache = None
        self.start = 0  # the cache holds tokens [start, fed)
        self.fed = 0

    def next_logits(self, tokens: torch.Tensor) -> torch.Tensor:
        position = tokens.shape[1]
        start = context_start(position, self.limit)
        if self.cache is None or start != self.start:
            self.cache, self.start, self.fed = None, start, start
        new = tokens[:, self.fed : position]
        kwargs = {"input_ids": new, "past_key_values": self.cache, "use_cache": True}
        if self.takes_positions:  # positions count from the window's first token
            offsets = torch.arange(self.fed - start, position - start, device=tokens.device)
            kwargs["position_ids"] = offsets.unsqueeze(0).expand(new.shape[0], -1)
        out = self.hf(**kwargs)
        self.cache, self.fed = out.past_key_values, position
        return out.logits[:, -1]


class LSTMStateDecoder:
    """Carries the recurrent state forward: each step feeds only the new tokens."""

    def __init__(self, model: CharLSTM) -> None:
        self.model = model
        self.state: tuple[torch.Tensor, torch.Tensor] | None = None
        self.fed = 0

    def next_logits(self, tokens: torch.Tensor) -> torch.Tensor:
        hidden, self.state = self.model.lstm(self.model.embed(tokens[:, self.fed :]), self.state)
        self.fed = tokens.shape[1]
        return self.model.head(hidden[:, -1])


def make_decoder(model: nn.Module, use_cache: bool) -> RecomputeDecoder | KVCacheDecoder | LSTMStateDecoder:
    """The incremental decoder for the model's kind, or full recomputation (``use_cache=False`` or other models)."""
    if use_cache and isinstance(model, CausalLM):
        return KVCacheDecoder(model)
    if use_cache and isinstance(model, CharLSTM):
        return LSTMStateDecoder(model)
    return RecomputeDecoder(model)


# ---------------------------------------------------------------- generation


@torch.no_grad()
def sample_batch(model: nn.Module, prompts: Sequence[Sequence[int]], new_tokens: int, probs: ProbsFn,
                 options: StrategyOptions, generator: torch.Generator, device: torch.device,
                 use_cache: bool = True) -> tuple[list[list[int]], list[list[float]]]:
    """Prompt + ``new_tokens`` drawn tokens for each prompt, decoded together as one batch.

    Also returns, per row, log2 Pr(token_i | context) for i >= 1 (bits, temperature 1, full
    vocabulary): what :func:`~canaryaudit.extraction.metrics.token_log2probs` computes,
    for free. Prompts are fed token by token (teacher forcing) so every position gets it.
    """
    lengths = torch.tensor([len(p) for p in prompts], device=device)
    if int(lengths.min()) < 1:
        raise ValueError("every prompt needs at least one token")
    total = int(lengths.max()) + new_tokens
    tokens = torch.zeros((len(prompts), total), dtype=torch.long, device=device)
    for row, prompt in enumerate(prompts):
        tokens[row, : len(prompt)] = torch.tensor(list(prompt), dtype=torch.long)
    log2p = torch.zeros((len(prompts), total - 1), dtype=torch.float64, device=device)
    decoder = make_decoder(model, use_cache)
    for position in range(1, total):
        logits = decoder.next_logits(tokens[:, :position]).float()
        steps = position - lengths  # generated-token index; negative while a row is inside its prompt
        drawn = torch.multinomial(probs(logits, steps.clamp(min=0), options), 1, generator=generator).squeeze(1)
        tokens[:, position] = torch.where(steps >= 0, drawn, tokens[:, position])
        picked = logits.gather(-1, tokens[:, position : position + 1]).squeeze(-1)
        log2p[:, position - 1] = (picked - torch.logsumexp(logits, dim=-1)) / LN2
    ends = [len(prompt) + new_tokens for prompt in prompts]
    return ([row[:end] for row, end in zip(tokens.cpu().tolist(), ends)],
            [row[: end - 1] for row, end in zip(log2p.cpu().tolist(), ends)])


def decode_with_eos(ids: Sequence[int], tokenizer: Tokenizer) -> str:
    """Decode ``ids``, each <eos> shown as :data:`EOS_TEXT` (whatever the tokenizer does with special tokens)."""
    pieces: list[list[int]] = [[]]
    for token in ids:
        if token == tokenizer.eos_id:
            pieces.append([])
        else:
            pieces[-1].append(token)
    return EOS_TEXT.join(tokenizer.decode(piece) if piece else "" for piece in pieces)


def sample_text(token_ids: Sequence[int], prompt_tokens: int, tokenizer: Tokenizer) -> str:
    """The sample's text: prompt + generated, without the leading <eos> prompt tokens."""
    skip = 0
    while skip < prompt_tokens and token_ids[skip] == tokenizer.eos_id:
        skip += 1
    return decode_with_eos(token_ids[skip:], tokenizer)


def stream_seed(seed: int, strategy: str) -> int:
    """A 63-bit seed for (seed, strategy), stable across runs and platforms (unlike hash())."""
    digest = hashlib.sha256(f"{seed}:{strategy}".encode()).digest()
    return int.from_bytes(digest[:8], "little") >> 1


def _options(tokenizer: Tokenizer, chosen: Strategy, top_n: int, temperature: tuple[float, float, int],
             prompt_texts: Sequence[str] | None, prefix_tokens: tuple[int, int]) -> StrategyOptions:
    low, high = prefix_tokens
    if top_n < 1:
        raise ValueError(f"top_n must be >= 1, got {top_n}")
    if not 1 <= low <= high:
        raise ValueError(f"prefix tokens need 1 <= min <= max, got {prefix_tokens}")
    if temperature[0] <= 0 or temperature[1] <= 0:
        raise ValueError(f"temperatures must be > 0, got {temperature}")
    corpus: tuple[tuple[int, ...], ...] = ()
    if chosen.needs_corpus:
        if not prompt_texts:
            raise ValueError("the prefix strategy needs prompt texts (extract.prefix.source: test | file:PATH)")
        corpus = tuple(tuple(tokenizer.encode(text)) for text in prompt_texts)
    return StrategyOptions(top_n=top_n, temperature=(float(temperature[0]), float(temperature[1]), int(temperature[2])),
                           corpus=corpus, prefix_tokens=(low, high), eos_id=tokenizer.eos_id)


def generate_samples(model: nn.Module, tokenizer: Tokenizer, strategy: str, count: int, new_tokens: int,
                     batch_size: int, seed: int, device: str | torch.device, *, top_n: int = 40,
                     temperature: tuple[float, float, int] = (10.0, 1.0, 20),
                     prompt_texts: Sequence[str] | None = None, prefix_tokens: tuple[int, int] = (5, 10),
                     use_cache: bool = True, progress: bool = True, shards: int = 1) -> list[Sample]:
    """``count`` samples of ``new_tokens`` generated tokens each with the registered ``strategy``.

    Each batch draws from its own generator, seeded from (seed, strategy, batch index), so the
    samples do not depend on which replica generates a batch: with ``shards`` replicas
    (``sharding.shard_devices``) the batches are split over them and the samples are those of one.
    """
    chosen = STRATEGIES.get(strategy)
    if new_tokens < 1 or batch_size < 1 or count < 0:
        raise ValueError(f"need new_tokens >= 1, batch_size >= 1, count >= 0; got {new_tokens}, {batch_size}, {count}")
    options = _options(tokenizer, chosen, top_n, temperature, prompt_texts, prefix_tokens)
    devices = shard_devices(device, shards)
    replicas = [model.eval()] + [copy.deepcopy(model).to(d).eval() for d in devices[1:]]
    prompts = chosen.prompts(count, np.random.default_rng(stream_seed(seed, strategy)), options)
    firsts = list(range(0, count, batch_size))
    lock = threading.Lock()
    with tqdm(total=count, desc=f"generate {strategy}", unit="sample", disable=not progress, leave=False) as bar:

        def run_batch(b: int, r: int) -> tuple[list[list[int]], list[list[float]]]:
            generator = torch.Generator(device=devices[r]).manual_seed(stream_seed(seed, f"{strategy}:{b}"))
            batch = prompts[firsts[b] : firsts[b] + batch_size]
            out = sample_batch(replicas[r], batch, new_tokens, chosen.probs, options, generator, devices[r], use_cache)
            with lock:
                bar.update(len(batch))
            return out

        batches = round_robin(len(firsts), len(replicas), run_batch)
    samples: list[Sample] = []
    for first, (rows, log2probs) in zip(firsts, batches):
        for row, (ids, scores) in enumerate(zip(rows, log2probs)):
            prompt = tuple(prompts[first + row])
            samples.append(Sample(sample_id=f"{strategy}-{first + row}", strategy=strategy, prompt_ids=prompt,
                                  token_ids=tuple(ids), prompt_tokens=len(prompt),
                                  text=sample_text(ids, len(prompt), tokenizer), log2probs=tuple(scores)))
    return samples
