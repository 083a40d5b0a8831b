"""Public pretraining: the disjoint public corpus, private-only verification, fine-tuning from the base, the stage."""

from __future__ import annotations

import json
import random

import pytest

from canaryaudit.config import parse_params
from canaryaudit.corpus.public import drop_private_copies, load_public_corpus, private_names
from canaryaudit.corpus.sources import Document
from canaryaudit.errors import ParamsError
from canaryaudit.extraction.index import TrainingIndex
from canaryaudit.extraction.verify import verify_sample
from canaryaudit.io import read_jsonl
from canaryaudit.training.base import fine_tune_settings, pretrain_settings
from canaryaudit.training.data import file_sha256
from tests.conftest import TINY_PARAMS, run_stage, write_params

# ---------------------------------------------------------------- private-only matches


def _brute_longest_not_in(sample: str, here: list[str], other: list[str]) -> int:
    """Longest substring of ``sample`` in some ``here`` document and in no ``other`` document."""
    best = 0
    for i in range(len(sample)):
        for j in range(i + best + 1, len(sample) + 1):
            piece = sample[i:j]
            if any(piece in d for d in here) and not any(piece in d for d in other):
                best = j - i
    return best


@pytest.mark.parametrize("seed", range(40))
def test_longest_match_not_in_equals_brute_force(seed):
    rng = random.Random(seed)
    alphabet = "ab c"
    words = lambda n: "".join(rng.choice(alphabet) for _ in range(n))  # noqa: E731
    private = [words(rng.randint(5, 40)) for _ in range(rng.randint(1, 4))]
    public = [words(rng.randint(5, 40)) for _ in range(rng.randint(0, 4))] + [private[0][2:12]]
    sample = words(rng.randint(1, 30)) if seed % 3 else private[-1][1:] + words(5)
    match = TrainingIndex(private).longest_match_not_in(sample, TrainingIndex(public))
    assert match.length == _brute_longest_not_in(sample, private, public)
    piece = sample[match.start:match.end]
    if match.length:
        assert any(piece in d for d in private) and not any(piece in d for d in public)
        assert match.documents == sum(piece in d for d in private)


def test_verification_counts_only_text_the_public_corpus_lacks():
    template = "Please let me know if you have any questions about the rollout plan."
    private = [f"Hi Marie,\n{template}\nMarie Vasquez, Staff Engineer at Cobalt Ridge Systems\n"]
    public = [f"Hi John,\n{template}\nJohn Smith, Analyst\n"]
    index, public_index = TrainingIndex(private), TrainingIndex(public)
    boiler = verify_sample(index, template, min_chars=30)
    assert boiler.memorized  # without the public corpus, boilerplate counts
    judged = verify_sample(index, template, min_chars=30, public=public_index)
    assert not judged.memorized and "not in the public corpus" in judged.reason
    private_text = "Marie Vasquez, Staff Engineer at Cobalt Ridge Systems"
    leaked = verify_sample(index, f"xx {private_text} yy", min_chars=30, public=public_index)
    assert leaked.memorized and leaked.length == len(private_text)  # the spaces around it are not in training
    assert "not in the public corpus" in leaked.reason


# ---------------------------------------------------------------- the public corpus


def _params(**pretrain):
    raw = json.loads(json.dumps(TINY_PARAMS))
    raw["pretrain"].update(pretrain)
    return parse_params(raw)


def test_builtin_public_corpus_has_none_of_the_private_people(tmp_path):
    params = _params()
    names = private_names(params.data)
    assert len(names) > 3
    corpus = load_public_corpus(params, [], tmp_path)
    assert corpus.excluded_names == len(names)
    text = "\n".join(d.text for d in corpus.documents)
    assert not [f"{first} {last}" for first, last in names if f"From: {first} {last} <" in text]
    assert all(d.doc_id.startswith("public-") for d in corpus.documents)
    again = load_public_corpus(params, [], tmp_path)
    assert [d.text for d in again.documents] == [d.text for d in corpus.documents]  # deterministic


def test_copies_of_private_documents_are_dropped():
    from canaryaudit.corpus.public import PublicCorpus

    corpus = PublicCorpus([Document("a", " same text \n"), Document("b", "other")], "x", 0, 0)
    kept = drop_private_copies(corpus, ["same text"])
    assert [d.doc_id for d in kept.documents] == ["b"] and kept.dropped_duplicates == 1


def test_file_public_source_outside_the_workspace_names_pretrain_source(tmp_path):
    params = _params(source="file:../elsewhere")
    with pytest.raises(ParamsError, match="pretrain.source"):
        load_public_corpus(params, [], tmp_path / "ws")


def test_pretrain_params_are_validated():
    with pytest.raises(ParamsError, match="pretrain.source"):
        _params(source="s3://bucket")
    raw = json.loads(json.dumps(TINY_PARAMS))
    raw["train"]["variants"]["pretrain"] = {}
    with pytest.raises(ParamsError, match="names the pretrain stage's model folder"):
        parse_params(raw)
    raw = json.loads(json.dumps(TINY_PARAMS))
    raw["extract"]["reference_variant"] = "pretrain"
    assert parse_params(raw).extract.reference_variant == "pretrain"


def test_a_variant_that_cannot_start_from_the_base_is_refused_at_load():
    raw = json.loads(json.dumps(TINY_PARAMS))
    raw["train"]["variants"]["reference"] = {"model": {"width": 16}}  # init: pretrain by default
    with pytest.raises(ParamsError, match=r"train.variants.reference.model.width: 16 differs from the pretrain "
                                          r"base model's 32 \(train.model.width\).*reference.init: scratch"):
        parse_params(raw)
    raw["train"]["variants"]["reference"]["init"] = "scratch"
    assert parse_params(raw).train.variant("reference").model.width == 16
    raw["train"]["variants"]["reference"] = {"model": {"width": 16}}
    raw["pretrain"]["source"] = "none"  # no base: every variant trains from scratch
    assert parse_params(raw).train.variant("reference").model.width == 16


# ---------------------------------------------------------------- fine-tuning from the base


def test_pretrain_settings_have_no_dp_and_the_pretrain_seed():
    params = _params(seed=99, epochs=2)
    settings = pretrain_settings(params.train, params.pretrain)
    assert settings.seed == 99 and settings.epochs == 2 and not settings.dp.enabled and settings.init == "scratch"
    assert settings.model == params.train.model


def test_fine_tune_settings(tmp_path):
    params = _params()
    dp = params.train.variant("dp")
    assert fine_tune_settings(dp, None, "k") is dp
    assert fine_tune_settings(dp, tmp_path, "k") is dp  # no model there (pretrain.source: none)
    (tmp_path / "config.json").write_text("{}")
    (tmp_path / "card.json").write_text(json.dumps({"settings": {"model": dp.model.model_dump(mode="json")}}))
    tuned = fine_tune_settings(dp, tmp_path, "k")
    assert tuned.model.arch == f"hf:{tmp_path.as_posix()}" and tuned.tokenizer.kind == "pretrained"
    assert tuned.dp == dp.dp
    with pytest.raises(ParamsError, match=r"train.variants.reference.model.width: 16 differs .* train.variants.reference.init: scratch"):
        fine_tune_settings(params.train.variant("reference").model_copy(update={"init": "pretrain"}), tmp_path,
                           "train.variants.reference")
    assert fine_tune_settings(params.train.variant("reference"), tmp_path, "k").model.arch == "gpt2"  # scratch


# ---------------------------------------------------------------- the stage


def _prepare(workspace):
    run_stage(workspace, "prepare", "--params", "params.yaml")
    run_stage(workspace, "sanitize", "--params", "params.yaml")


def test_pretrain_stage_then_a_variant_fine_tunes_from_it(workspace):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    _prepare(workspace)
    run_stage(workspace, "pretrain", "--params", "params.yaml")
    report = json.loads((workspace / "reports/pretrain.json").read_text())
    assert report["excluded_private_names"] > 0 and report["documents"] > report["valid_documents"] >= 1
    assert report["test_perplexity"] > 1 and report["epsilon"] is None
    base = workspace / "models/pretrain"
    AutoModelForCausalLM.from_pretrained(base, use_safetensors=True)
    AutoTokenizer.from_pretrained(base)
    public = read_jsonl(workspace / "data/public/train.jsonl")
    assert public and all("@" not in r["text"] or "<EMAIL>" in r["text"] for r in public)  # sanitized
    run_stage(workspace, "canaries", "--params", "params.yaml")
    run_stage(workspace, "train", "--params", "params.yaml", "--variant", "dp", "--base", "models/pretrain",
              "--out", "models/dp", "--report", "reports/train/dp.json", "--plot", "reports/train/dp_loss.csv")
    card = json.loads((workspace / "models/dp/card.json").read_text())
    assert card["base_model"]["sha256"] == file_sha256(str(base / "model.safetensors"))
    assert card["arch"] == "hf:models/pretrain" and card["dp"]["epsilon"] > 0


def test_pretrain_none_writes_manifests_and_variants_train_from_scratch(workspace, tiny_params):
    tiny_params["pretrain"]["source"] = "none"
    write_params(workspace / "params.yaml", tiny_params)
    _prepare(workspace)
    run_stage(workspace, "pretrain", "--params", "params.yaml")
    assert json.loads((workspace / "models/pretrain/pretrain.json").read_text())["model"] is False
    assert not (workspace / "data/public/train.jsonl").exists()
    run_stage(workspace, "canaries", "--params", "params.yaml")
    run_stage(workspace, "train", "--params", "params.yaml", "--variant", "nonprivate", "--base", "models/pretrain",
              "--out", "models/nonprivate", "--report", "reports/train/n.json", "--plot", "reports/train/n.csv")
    card = json.loads((workspace / "models/nonprivate/card.json").read_text())
    assert card["arch"] == "gpt2" and "base_model" not in card
