"""PII reconstruction and inference: each piece against a second computation, then a tiny model that memorized."""

from __future__ import annotations

import math
import random

import numpy as np
import pytest
import torch
from scipy import stats

from canaryaudit.config import parse_params
from canaryaudit.corpus import vocab
from canaryaudit.exposure.scoring import log_perplexity_bits
from canaryaudit.extraction.metrics import token_log2probs
from canaryaudit.pii.detectors import build_detectors
from canaryaudit.pii.sanitize import sanitize_text
from canaryaudit.pii.spans import PiiSpan
from canaryaudit.privacy.pii_attack import (
    AttackSettings,
    Target,
    _decided,
    _scored_ids,
    candidate_sets,
    decodes_token_by_token,
    filling_px,
    greedy_reconstructed,
    inference_wins,
    occurrences,
    proportion,
    reconstructed,
    run_attacks,
    select_targets,
)
from canaryaudit.training.loop import Trainer
from canaryaudit.training.models import ModelSpec, build_model
from canaryaudit.training.pipeline import build_variant_model, prepare_data
from canaryaudit.training.tokenizers import BpeTokenizer, CharTokenizer, PretrainedTokenizer

SETTINGS = AttackSettings(max_per_type=100, context_chars=32, candidates=5, batch_size=64, reconstruction=True,
                          extra_tokens=2)


pytestmark = pytest.mark.usefixtures("one_torch_thread")  # tests/conftest.py


# ---------------------------------------------------------------- pieces


def test_proportion_matches_the_beta_quantiles_and_binomial_tail():
    for k, n, chance in ((0, 10, 0.1), (3, 10, 0.1), (10, 10, 0.5), (37, 120, 0.2)):
        row = proportion(k, n, chance)
        low = 0.0 if k == 0 else stats.beta.ppf(0.025, k, n - k + 1)  # Clopper-Pearson, closed form
        high = 1.0 if k == n else stats.beta.ppf(0.975, k + 1, n - k)
        assert row["rate"] == k / n and math.isclose(row["ci_low"], low, abs_tol=1e-9)
        assert math.isclose(row["ci_high"], high, abs_tol=1e-9)
        tail = sum(math.comb(n, i) * chance**i * (1 - chance) ** (n - i) for i in range(k, n + 1))
        assert math.isclose(row["p_value_above_chance"], tail, rel_tol=1e-9)
    assert proportion(0, 0, 0.1)["rate"] is None


def test_candidate_sets_true_value_first_distinct_and_drawn_from_the_type():
    pool = {"ssn": ["a", "b", "b", "c", "d", "e", "f"], "phone": ["p", "q"]}
    targets = [Target("d1", "ssn", "b", "x"), Target("d2", "phone", "p", "y")]
    sets = candidate_sets(targets, pool, 4, random.Random(0))
    assert sets[0][0] == "b" and len(sets[0]) == 4 and len(set(sets[0])) == 4 and set(sets[0]) <= set(pool["ssn"])
    assert sets[1] == ["p", "q"]  # only one other phone: two candidates, chance 1/2
    assert sets == candidate_sets(targets, pool, 4, random.Random(0))


def test_inference_wins_ties_are_broken_at_random_and_counted():
    px = np.array([1.0, 2.0, 3.0, 5.0, 4.0, 6.0, 2.0, 2.0, 2.0, 2.0])
    sets = [["t", "a", "b"], ["t", "a", "b"], ["t", "a", "b", "c"]]
    draws = [inference_wins(px, sets, random.Random(seed)) for seed in range(400)]
    assert all(w[0] is True and w[1] is False for w, _ in draws)  # strictly best; beaten
    assert all(ties == 1 for _, ties in draws)
    share = sum(w[2] for w, _ in draws) / len(draws)  # a four-way tie: wins a quarter of the time
    assert 0.18 < share < 0.32


def test_reconstructed_needs_the_whole_value_and_a_boundary():
    assert reconstructed("078-05-1120", "078-05-1120.\n")
    assert reconstructed("Marie", "Marie")
    assert not reconstructed("Marie", "Maries")
    assert not reconstructed("078-05-1120", "078-05-11")


def test_select_targets_one_occurrence_per_distinct_value_and_rendered_context():
    docs = [{"doc_id": "a", "text": "SSN 078-05-1120 and SSN 078-05-1120"}, {"doc_id": "b", "text": "SSN 219-09-9999"}]
    spans = {"a": [PiiSpan("ssn", 4, 15), PiiSpan("ssn", 24, 35)], "b": [PiiSpan("ssn", 4, 15)]}
    found = occurrences(docs, spans)
    assert [f[2] for f in found] == ["078-05-1120", "078-05-1120", "219-09-9999"]
    targets = select_targets(found, {d["doc_id"]: d["text"] for d in docs}, SETTINGS, str.upper, random.Random(3))
    assert sorted(t.value for t in targets) == ["078-05-1120", "219-09-9999"]
    assert all(t.context.endswith("SSN ") for t in targets)
    one = select_targets(found, {d["doc_id"]: d["text"] for d in docs},
                         AttackSettings(1, 32, 5, 64, True, 2), str, random.Random(3))
    assert len(one) == 1


@pytest.fixture(scope="module")
def random_model():
    torch.manual_seed(0)
    tokenizer = CharTokenizer(sorted(set("abcdefghijklmnopqrstuvwxyz 0123456789-:.")))
    spec = ModelSpec(arch="gpt2", vocab_size=tokenizer.vocab_size, layers=1, width=16, heads=2, context=24)
    return build_model(spec).eval(), tokenizer


def test_filling_px_equals_the_full_sequence_scorer(random_model):
    model, tokenizer = random_model
    context, fillings = "ssn of ann: ", ["078-05-1120", "219-09-9999", "555-55-5555"]
    ours = filling_px(model, tokenizer, [(context, f) for f in fillings], 2, torch.device("cpu"))
    theirs = log_perplexity_bits(model, tokenizer, context, fillings)
    assert np.allclose(ours, theirs, atol=1e-4)


def test_filling_px_drops_the_oldest_context_to_fit_the_window(random_model):
    model, tokenizer = random_model
    long_context = "x" * 40 + "ssn: "  # 45 tokens + 11 > the 24-token window
    ours = filling_px(model, tokenizer, [(long_context, "078-05-1120")], 4, torch.device("cpu"))
    theirs = log_perplexity_bits(model, tokenizer, long_context[-13:], ["078-05-1120"])  # the last 13 fit
    assert np.allclose(ours, theirs, atol=1e-4)


def _brute_greedy_text(model, tokenizer, context: str, budget: int, window: int) -> str:
    """The greedy continuation, one full-sequence forward pass per token, after the last context tokens
    that leave room for ``budget`` tokens in the window."""
    ids = (tokenizer.encode(context) or [tokenizer.eos_id])[-max(1, window - budget) :]
    out: list[int] = []
    with torch.no_grad():
        for _ in range(budget):
            out.append(int(model(torch.tensor([(ids + out)[-window:]]))[0, -1].argmax()))
    return tokenizer.decode([t for t in out if t != tokenizer.eos_id])


def _targets_the_model_completes(model, tokenizer, contexts, window):
    """For each context: targets whose value is the start of the model's own greedy text (up to a letter or
    digit, or to a character that is not: reconstructed with 0 or more extra tokens), and one that is not."""
    targets = []
    for n, context in enumerate(contexts):
        text = _brute_greedy_text(model, tokenizer, context, 12, window)
        ends = [m for m in range(1, len(text)) if not text[m].isalnum()][:1] + [4]
        targets += [Target(f"d{n}", "x", text[:m], context) for m in ends]
        targets.append(Target(f"d{n}", "x", "zz" + text[:3], context))
    return targets


@pytest.mark.parametrize("extra", [0, 2])
def test_greedy_reconstructed_equals_a_step_by_step_argmax(random_model, extra):
    model, tokenizer = random_model
    contexts = ["ssn of ann: ", "id ", "x" * 30 + "phone: ", "", "mail bob at ", "12-", "the code is ", "a.b"]
    targets = _targets_the_model_completes(model, tokenizer, contexts, 24)
    targets.append(Target("long", "x", "0123456789" * 3, "key: "))  # 30 tokens + extra: past the 24-token window
    settings = AttackSettings(100, 32, 5, 3, True, extra)
    expected = [reconstructed(t.value, _brute_greedy_text(model, tokenizer, t.context,
                                                          len(t.value) + extra, 24)) for t in targets]
    assert any(expected) and not all(expected)
    for reuse in (True, False):
        assert greedy_reconstructed(model, tokenizer, targets, settings, torch.device("cpu"), reuse) == expected


def test_decided_is_final_for_every_continuation():
    value = "078-05"
    for text in ("", "0", "078-0", "078-05", "078-05-", "078-05a", "1", "07a", "078-05\ufffd"[:7]):
        outcomes = {reconstructed(value, text + more) for more in ("", "1", "-", "x", "-05", " 1")}
        if _decided(value, text):
            assert len(outcomes) == 1, text
    assert _decided(value, "07x") and _decided(value, "078-05-") and not _decided(value, "078-05")
    assert not _decided("José", "Jos\ufffd")  # half of a UTF-8 character: the next byte may complete it


def test_decodes_token_by_token(tmp_path):
    chars = CharTokenizer(sorted(set("abc xyz-0123456789")))
    assert decodes_token_by_token(chars)
    chars.save(tmp_path / "char")
    assert decodes_token_by_token(PretrainedTokenizer.from_path(str(tmp_path / "char")))  # a fine-tuned variant's
    bpe = BpeTokenizer.train(["José Núñez wrote to Zoë"] * 20 + ["the cat sat on the mat"] * 20, 300)
    assert not decodes_token_by_token(bpe)  # multi-byte characters decode from several tokens together


def _pairs(contexts, fillings_per_context):
    return [(c, f) for c, fs in zip(contexts, fillings_per_context) for f in fs]


def test_filling_px_reuses_the_context_with_the_same_scores(random_model):
    model, tokenizer = random_model
    contexts = ["ssn of ann: ", "id ", "x" * 40 + "ssn: ", "", "call "]
    fillings = [["078-05-1120", "219-09-9999", "5"], ["12", "3456"], ["078-05-1120", "0123456789" * 3],
                ["ab", "cd e"], ["555 0100", "555-0199 x12"]]
    pairs = _pairs(contexts, fillings)
    fast = filling_px(model, tokenizer, pairs, 4, torch.device("cpu"))
    full = filling_px(model, tokenizer, pairs, 4, torch.device("cpu"), reuse_context=False)
    brute = []
    for context, filling in pairs:  # one sequence at a time, as _scored_ids cuts it, every window recomputed
        ids, shared = _scored_ids(tokenizer, context, filling, 24)
        brute.append(-sum(token_log2probs(model, [ids], 1)[0][shared - 1 :]))
    assert np.allclose(fast, full, atol=1e-4) and np.allclose(fast, brute, atol=1e-4)


def test_fast_and_full_scoring_agree_on_wins_and_ties():
    """A model whose every prediction is uniform: equal-length candidates tie exactly on both paths,
    and the seeded tie-breaks then pick the same winners."""
    torch.manual_seed(0)
    tokenizer = CharTokenizer(sorted(set("abcdefghijklmnopqrstuvwxyz 0123456789-:.")))
    model = build_model(ModelSpec(arch="gpt2", vocab_size=tokenizer.vocab_size, layers=1, width=16, heads=2,
                                  context=24)).eval()
    with torch.no_grad():
        model.model.lm_head.weight.zero_()  # tied to the input embeddings: logits are all 0
    pool = {"ssn": [f"{i:03d}-{i % 90 + 10:02d}-{1000 + i}" for i in range(40)] + ["1-2"]}
    targets = [Target(f"d{i}", "ssn", pool["ssn"][i], f"ssn of person {i}: ") for i in range(30)]
    sets = candidate_sets(targets, pool, 5, random.Random(4))
    pairs = [(t.context, v) for t, values in zip(targets, sets) for v in values]
    fast = filling_px(model, tokenizer, pairs, 8, torch.device("cpu"))
    full = filling_px(model, tokenizer, pairs, 8, torch.device("cpu"), reuse_context=False)
    assert np.array_equal(fast, full)
    wins_fast, ties_fast = inference_wins(fast, sets, random.Random(9))
    wins_full, ties_full = inference_wins(full, sets, random.Random(9))
    assert (wins_fast, ties_fast) == (wins_full, ties_full) and ties_fast > 0


# ---------------------------------------------------------------- a model that memorized, and one that could not


def _corpus(people: int = 30, documents: int = 80, seed: int = 0):
    rng = random.Random(seed)
    persons = [(f"{rng.choice(vocab.FIRST_NAMES)} {rng.choice(vocab.LAST_NAMES)}",
                f"{rng.randint(100, 899)}-{rng.randint(10, 99)}-{rng.randint(1000, 9999)}") for _ in range(people)]
    filler = ["Thanks for the update.", "See you Monday.", "Order 4821 shipped.", "Room 207 at 3:15."]
    docs, spans = [], {}
    for i in range(documents):
        text, found = "", []
        for _ in range(3):
            if rng.random() < 0.4:
                text += rng.choice(filler) + " "
            name, ssn = rng.choice(persons)
            text += f"SSN of {name}: "
            found.append(PiiSpan("ssn", len(text), len(text) + len(ssn)))
            text += ssn + ". "
        docs.append({"doc_id": f"d{i}", "text": text})
        spans[f"d{i}"] = found
    return docs, spans


def _train(texts):
    settings = parse_params({"train": {
        "device": "cpu", "epochs": 50, "batch_size": 32, "physical_batch_size": 32, "eval_batch_size": 64,
        "model": {"arch": "gpt2", "layers": 1, "width": 64, "heads": 2, "context": 64},
        "optimizer": {"lr": 0.01, "warmup_steps": 5}, "variants": {"v": {}}}}).train.variant("v")
    data = prepare_data(settings, texts, texts[:4], texts[:4])
    model, _ = build_variant_model(settings, data.tokenizer)
    return Trainer(settings, model, data.train, data.valid, data.test, progress=False).run().model, data.tokenizer


@pytest.fixture(scope="module")
def attacked():
    """Both attacks on a model trained on raw text with repeated SSNs, and on one trained on it masked."""
    docs, spans = _corpus()
    detectors = build_detectors(["ssn", "person_name"])
    mask = lambda raw: sanitize_text(raw, detectors, lambda _t: "mask").text  # noqa: E731
    found = occurrences(docs, spans, ["ssn"])
    pool = {"ssn": [value for _, _, value, _ in found]}
    texts = {d["doc_id"]: d["text"] for d in docs}
    out = {}
    for sanitized in (False, True):
        training = [mask(d["text"]) if sanitized else d["text"] for d in docs]
        model, tokenizer = _train(training)
        targets = select_targets(found, texts, SETTINGS, mask if sanitized else str, random.Random(1))
        out[sanitized] = run_attacks(model, tokenizer, targets, pool, SETTINGS, random.Random(2),
                                     torch.device("cpu"))
        out[("setup", sanitized)] = (model, tokenizer, targets, pool)
    return out


def test_inference_is_well_above_chance_without_sanitization(attacked):
    row = attacked[False]["inference"]["types"]["ssn"]
    assert row["trials"] == 30 and row["chance"] == pytest.approx(0.2)
    assert row["rate"] >= 0.6 and row["ci_low"] > row["chance"] and row["p_value_above_chance"] < 1e-6


def test_inference_is_at_chance_with_sanitization(attacked):
    report = attacked[True]
    row = report["inference"]["types"]["ssn"]
    assert row["ci_low"] <= row["chance"] <= row["ci_high"] and row["p_value_above_chance"] > 0.05
    assert report["reconstruction"]["types"]["ssn"]["successes"] == 0  # masked values cannot be regenerated
    assert report["inference"]["tied_trials"] == 0  # digits were in the training text: real scores, no ties


def test_attack_report_holds_no_raw_value(attacked):
    docs, _ = _corpus()
    raw_values = {d["text"][s.start : s.end] for d, spans in [(d, _corpus()[1][d["doc_id"]]) for d in docs] for s in spans}
    for report in (attacked[False], attacked[True]):
        text = repr(report)
        assert not any(value in text for value in raw_values)


def test_fast_and_straightforward_attacks_agree_on_the_model_that_memorized(attacked):
    model, tokenizer, targets, pool = attacked[("setup", False)]
    sets = candidate_sets(targets, pool, SETTINGS.candidates, random.Random(2))
    pairs = [(t.context, v) for t, values in zip(targets, sets) for v in values]
    fast = filling_px(model, tokenizer, pairs, 64, torch.device("cpu"))
    full = filling_px(model, tokenizer, pairs, 64, torch.device("cpu"), reuse_context=False)
    assert np.allclose(fast, full, atol=1e-4)
    assert inference_wins(fast, sets, random.Random(5)) == inference_wins(full, sets, random.Random(5))
    done = greedy_reconstructed(model, tokenizer, targets, SETTINGS, torch.device("cpu"))
    assert done == greedy_reconstructed(model, tokenizer, targets, SETTINGS, torch.device("cpu"), reuse_context=False)
    assert sum(done) == attacked[False]["reconstruction"]["types"]["ssn"]["successes"]
