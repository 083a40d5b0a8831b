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
from canaryaudit.pii.detectors import build_detectors
from canaryaudit.pii.sanitize import sanitize_text
from canaryaudit.pii.spans import PiiSpan
from canaryaudit.pii_attack import (
    AttackSettings, Target, candidate_sets, filling_px, greedy_continuations, inference_wins, occurrences,
    proportion, reconstructed, run_attacks, select_targets,
)
from canaryaudit.scoring import log_perplexity_bits
from canaryaudit.training.loop import Trainer
from canaryaudit.training.models import ModelSpec, build_model
from canaryaudit.training.pipeline import build_variant_model, prepare_data
from canaryaudit.training.tokenizers import CharTokenizer

SETTINGS = AttackSettings(max_per_type=100, context_chars=32, candidates=5, batch_size=64, reconstruction=True,
                          extra_tokens=2)


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


def test_greedy_continuations_equal_a_step_by_step_argmax(random_model):
    model, tokenizer = random_model
    targets = [Target("d", "ssn", "078-05-1120", "ssn of ann: "), Target("d", "ssn", "12", "id ")]
    got = greedy_continuations(model, tokenizer, targets, SETTINGS, torch.device("cpu"))
    budget = 11 + SETTINGS.extra_tokens  # one batch: its largest budget (the SSN's) decodes every row
    for target, text in zip(targets, got):
        ids = tokenizer.encode(target.context)[-(24 - budget):]  # and decides how much context fits
        out = []
        with torch.no_grad():
            for _ in range(budget):
                nxt = int(model(torch.tensor([ids + out]))[0, -1].argmax())
                out.append(nxt)
        assert text == tokenizer.decode([t for t in out if t != tokenizer.eos_id])


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
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny models: one thread is faster, and far faster on a busy machine
    try:
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
        return out
    finally:
        torch.set_num_threads(threads)


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
    for report in attacked.values():
        text = repr(report)
        assert not any(value in text for value in raw_values)
