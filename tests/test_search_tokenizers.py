"""Exposure, exact rank and extraction under multi-character tokenizers, against brute force.

Each tokenizer is built by the test (no hub): (a) a GPT-2-style byte-level BPE whose merges join
digits, with a prefix ending in a space so the first counted token (" 48") crosses the prefix
boundary; (b) a Llama/SentencePiece-style BPE (Metaspace, digits split one by one); (c) a word-list
alphabet under the byte-level BPE. Brute force scores every filling of a 10^4 space by its own
canonical tokenization, in float64, with code written here from the definition in
canaryaudit.exposure.token_space (not the library's search or scorer).
"""

import random

import numpy as np
import pytest
import torch

from canaryaudit.canaries import parse_format
from canaryaudit.config import ExposureParams
from canaryaudit.corpus.emails import generate_emails
from canaryaudit.exposure.audit import audit_format
from canaryaudit.exposure.scoring import LN2, NextTokenScorer, float64_copy
from canaryaudit.exposure.search import canary_space, exact_rank, shortest_path
from canaryaudit.exposure.token_space import SearchUnsupported
from canaryaudit.training.models import ModelSpec, build_model
from canaryaudit.training.tokenizers import BpeTokenizer, PretrainedTokenizer

DIGITS = {"d": "0123456789"}
WORDS = {"w": ["red", "blue", "green", "gold", "pink", "gray", "black", "white", "brown", "cyan"]}
PIN = parse_format("pin", "my pin is {d}x4", DIGITS)  # |R| = 10^4; the prefix ends in a space
CODE = parse_format("code", "the code is {w} {w} {w} {w}", WORDS)  # |R| = 10^4 words
EMAILS = [d.text for d in generate_emails(5, 30_000)]


def number_texts(seed: int, count: int = 400) -> list[str]:
    """Numbers and colour words in running text, so the BPE learns digit and word merges."""
    rng = random.Random(seed)
    return [f"call {rng.randrange(10**4):04d} or {rng.randrange(100)} at {rng.randrange(10**3)}, "
            f"{' '.join(rng.choice(WORDS['w']) for _ in range(3))}" for _ in range(count)]


def byte_bpe() -> BpeTokenizer:
    return BpeTokenizer.train(EMAILS + number_texts(1), vocab_size=600)


def sentencepiece_style() -> PretrainedTokenizer:
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    backend = Tokenizer(models.BPE(unk_token="<unk>"))
    backend.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Metaspace(replacement="\u2581", prepend_scheme="first"),
        pre_tokenizers.Digits(individual_digits=True)])
    backend.decoder = decoders.Metaspace(replacement="\u2581", prepend_scheme="first")
    chars = sorted(set("".join(EMAILS + number_texts(1))) - {" "})
    backend.train_from_iterator(EMAILS + number_texts(1), trainers.BpeTrainer(
        vocab_size=600, special_tokens=["<eos>", "<unk>"], initial_alphabet=chars + ["\u2581"]))
    return PretrainedTokenizer(PreTrainedTokenizerFast(tokenizer_object=backend, eos_token="<eos>", unk_token="<unk>"))


def train_tiny(tokenizer, texts: list[str], steps: int = 250, seed: int = 0) -> torch.nn.Module:
    """A 2-layer GPT-2 trained on ``texts`` with plain AdamW (a real model, small enough for a test)."""
    torch.manual_seed(seed)
    model = build_model(ModelSpec("gpt2", tokenizer.vocab_size, layers=2, width=64, heads=4, context=32))
    stream = [t for text in texts for t in tokenizer.encode(text) + [tokenizer.eos_id]]
    windows = torch.tensor([stream[i : i + 33] for i in range(0, len(stream) - 33, 16)])
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3)
    generator = torch.Generator().manual_seed(seed)
    model.train()
    for _ in range(steps):
        batch = windows[torch.randint(len(windows), (32,), generator=generator)]
        loss = torch.nn.functional.cross_entropy(model(batch[:, :-1]).flatten(0, 1), batch[:, 1:].flatten())
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    return model.eval()


def with_canaries(fmt, canaries, copies: int) -> list[str]:
    rng = random.Random(2)
    texts = list(EMAILS) + number_texts(3, 200)
    for _ in range(copies):
        for canary in canaries:
            i = rng.randrange(len(texts))
            texts[i] = texts[i] + "\n" + fmt.render(canary)
    return texts


def brute_force(model, tokenizer, fmt) -> tuple[list[str], np.ndarray, int]:
    """Every filling's text and Px (bits, float64), and the context length: the longest run of leading
    tokens common to all fillings' canonical tokenizations and wholly inside the prefix (the
    end-of-document token when there is none); Px counts every token after it."""
    model64 = float64_copy(model)
    texts = [fmt.render(fmt.fill_from_index(i)) for i in range(fmt.space_size)]
    encodings = [tokenizer.encode(t) for t in texts]
    k = 0
    while all(len(e) > k and e[k] == encodings[0][k] for e in encodings) \
            and fmt.prefix.startswith(tokenizer.decode(encodings[0][: k + 1])):
        k += 1
    context = encodings[0][:k] if k else [tokenizer.eos_id]
    groups: dict[int, list[int]] = {}
    for i, ids in enumerate(encodings):
        groups.setdefault(len(ids), []).append(i)
    px = np.empty(len(texts))
    with torch.no_grad():
        for members in groups.values():
            ids = torch.tensor([context + encodings[i][k:] for i in members])
            logp = torch.log_softmax(model64(ids[:, :-1]), -1)[:, len(context) - 1 :]
            picked = logp.gather(-1, ids[:, len(context) :].unsqueeze(-1)).squeeze(-1)
            px[members] = (-picked.sum(1) / LN2).numpy()
    return texts, px, k


CASES = {
    "byte_bpe_digits": (byte_bpe, PIN, [["4", "8", "2", "1"], ["7", "3", "0", "6"]]),
    "sentencepiece_digits": (sentencepiece_style, PIN, [["4", "8", "2", "1"], ["7", "3", "0", "6"]]),
    "byte_bpe_words": (byte_bpe, CODE, [["gold", "red", "cyan", "blue"], ["pink", "pink", "white", "gray"]]),
}


@pytest.fixture(scope="module", params=sorted(CASES))
def case(request):
    make_tokenizer, fmt, canaries = CASES[request.param]
    tokenizer = make_tokenizer()
    model = train_tiny(tokenizer, with_canaries(fmt, canaries, copies=60))
    texts, px, k = brute_force(model, tokenizer, fmt)
    assert len(canary_space(fmt, tokenizer).text_context_ids) == k  # the probes find the true context
    return request.param, tokenizer, fmt, canaries, model, texts, px


def test_tokenizers_are_the_kinds_they_claim(case):
    name, tokenizer, fmt, canaries, *_ = case
    space = canary_space(fmt, tokenizer)
    tokens = [space.tokens_of(fmt.render(c)) for c in canaries]
    surfaces = [space.surfaces[t] for seq in tokens for t in seq]
    if name == "byte_bpe_digits":
        assert space.remainder == " " and surfaces[0].startswith(" ")  # the first counted token crosses the prefix
        assert any(sum(ch.isdigit() for ch in s) >= 2 for s in surfaces)  # merged digits
        assert len({space.tokens_of(fmt.render(list(f"{i:04d}")))[0] for i in range(10_000)}) > 1
    if name == "sentencepiece_digits":
        assert all(len(s) == 1 for s in surfaces)  # digits one by one, after the context's "▁"
    if name == "byte_bpe_words":
        assert any(len(s.strip()) >= 3 for s in surfaces)  # whole words as tokens
    assert space.single_path is (name == "sentencepiece_digits")  # one token per digit: one path a filling


def test_exact_rank_equals_brute_force(case):
    _name, tokenizer, fmt, canaries, model, texts, px = case
    space = canary_space(fmt, tokenizer)
    order = np.argsort(px, kind="stable")
    probes = [texts.index(fmt.render(c)) for c in canaries] + [int(order[j]) for j in (0, 3, 40, 400, 2000)]
    for index in probes:
        tokens = space.tokens_of(texts[index])
        result = exact_rank(NextTokenScorer(model, space.prefix_ids, max_suffix=space.max_tokens), space, tokens,
                            max_rows=300_000)
        assert result.rank == int((px <= px[index]).sum()), (texts[index], result.message)
        assert result.canary_px == pytest.approx(px[index], abs=1e-9)


def segmentations(text: str, surfaces: dict[str, int], longest: int) -> dict[int, int]:
    """How many ways ``text`` splits into vocabulary tokens, by number of tokens (brute-force dynamic programme)."""
    ways: list[dict[int, int]] = [dict() for _ in range(len(text) + 1)]
    ways[0][0] = 1
    for end in range(1, len(text) + 1):
        for start in range(max(0, end - longest), end):
            if text[start:end] in surfaces:
                for count, n in ways[start].items():
                    ways[end][count + 1] = ways[end].get(count + 1, 0) + n
    return ways[len(text)]


def test_uniform_model_ranks_ties_and_drops_every_other_spelling():
    """A GPT-2 with every weight zero gives every token log2(V) bits: Px is the token count times
    log2(V), so ties are everywhere and other spellings of fillings fall inside the slack. The rank
    (ties count, <=) and the number of non-canonical sequences dropped are counted independently:
    canonical lengths from the tokenizer, spellings by splitting each text into vocabulary tokens."""
    tokenizer, fmt = byte_bpe(), PIN  # digits merge unevenly: canonical lengths differ
    model = build_model(ModelSpec("gpt2", tokenizer.vocab_size, layers=1, width=16, heads=2, context=32))
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.zero_()
    model.eval()
    space = canary_space(fmt, tokenizer)
    context = tokenizer.decode(space.text_context_ids)
    counted = [fmt.render(fmt.fill_from_index(i))[len(context):] for i in range(fmt.space_size)]
    lengths = np.array([len(tokenizer.encode(context + t)) - len(space.text_context_ids) for t in counted])
    surfaces = {tokenizer.decode([i]): i for i in range(tokenizer.vocab_size) if i != tokenizer.eos_id}
    longest = max(len(s) for s in surfaces)
    canary_index = int(np.nonzero(lengths == lengths.min() + 1)[0][0])
    n = int(lengths[canary_index])
    spellings = sum(sum(v for c, v in segmentations(t, surfaces, longest).items() if c <= n) for t in counted)
    result = exact_rank(NextTokenScorer(model, space.prefix_ids, max_suffix=space.max_tokens), space,
                        space.tokens_of(context + counted[canary_index]), max_rows=300_000)
    assert result.exact and result.rank == int((lengths <= n).sum())
    assert result.canary_px == pytest.approx(n * np.log2(tokenizer.vocab_size), abs=1e-9)
    assert result.noncanonical == spellings - result.rank > 0


def test_shortest_path_top_k_is_the_brute_force_top_k(case):
    _name, tokenizer, fmt, _canaries, model, texts, px = case
    space = canary_space(fmt, tokenizer)
    result = shortest_path(NextTokenScorer(model, space.prefix_ids, max_suffix=space.max_tokens), space,
                           pop_batch=32, max_expansions=200_000, top_k=5)
    order = np.argsort(px, kind="stable")
    assert result.within_budget and px[order[5]] - px[order[4]] > 1e-4
    assert [space.text_of(c) for _, c in result.candidates] == [texts[i] for i in order[:5]]
    assert [v for v, _ in result.candidates] == pytest.approx(list(px[order[:5]]), abs=1e-3)


def test_audit_format_estimators_and_ranks(case):
    _name, tokenizer, fmt, canaries, model, texts, px = case
    records = [{"canary_id": f"c{i}", "randomness": c, "text": fmt.render(c), "insertions": 60, "included": True,
                "audit": False} for i, c in enumerate(canaries)]
    params = ExposureParams(references=500, exact_rank={"max_estimated_rank": 10_000, "max_rows": 300_000},
                            extraction={"pop_batch": 32, "max_expansions": 100_000})
    rows, summary = audit_format(model, tokenizer, fmt, records, params, "cpu", random.Random(0))
    assert summary["tokenization"]["searchable"]
    for row, canary in zip(rows, canaries):
        index = texts.index(fmt.render(canary))
        assert row["px_bits"] == pytest.approx(px[index], abs=1e-3)
        assert row["exact_rank"] == int((px <= px[index]).sum())
        assert 0 <= row["exposure_extrapolation"] <= fmt.log2_space_size
        assert row["extraction_position"] == (row["exact_rank"] if row["exact_rank"] <= 2 else None)


def test_a_format_the_tokenizer_cannot_search_still_gets_estimators():
    """Accented symbols under a byte-level BPE that never merged their bytes: each token holds half a
    character, so the search cannot spell fillings token by token; Px and the estimators still come."""
    fmt = parse_format("accents", "my pin is {e}x4", {"e": "\u00e1\u00e9\u00ed\u00f3\u00fa\u00f1\u00fc\u00e7\u00e0\u00e8"})
    tokenizer = byte_bpe()
    with pytest.raises(SearchUnsupported, match="cannot be searched"):
        canary_space(fmt, tokenizer)
    canary = ["\u00e9", "\u00f1", "\u00fc", "\u00e1"]
    model = train_tiny(tokenizer, with_canaries(fmt, [canary], copies=20), steps=80)
    records = [{"canary_id": "c", "randomness": canary, "text": fmt.render(canary), "insertions": 20,
                "included": True, "audit": False}]
    rows, summary = audit_format(model, tokenizer, fmt, records, ExposureParams(references=300), "cpu",
                                 random.Random(0))
    texts, px, _k = brute_force(model, tokenizer, fmt)
    assert not summary["tokenization"]["searchable"] and summary["extraction"] is None
    assert "cannot be searched" in summary["tokenization"]["reason"]
    assert rows[0]["px_bits"] == pytest.approx(px[texts.index(fmt.render(canary))], abs=1e-3)
    assert rows[0]["exact_rank"] is None and rows[0]["exact_rank_note"].startswith("not searched: ")
    assert np.isfinite(rows[0]["exposure_extrapolation"]) and not rows[0]["extracted"]
