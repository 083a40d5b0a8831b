"""hf:PATH fine-tuning on a tiny pretrained model the test builds and saves locally; model folders."""

import math

import pytest
import torch

from canaryaudit.corpus.emails import generate_emails
from canaryaudit.errors import ParamsError
from canaryaudit.training.loop import Trainer, evaluate
from canaryaudit.training.models import load_model_folder, save_model_folder
from canaryaudit.training.pipeline import build_variant_model, prepare_data
from canaryaudit.training.tokenizers import load_tokenizer
from tests.test_training import settings

TEXTS = [d.text for d in generate_emails(12, 30_000)]


@pytest.fixture(scope="module")
def pretrained(tmp_path_factory):
    """A tiny GPT-2 and its BPE tokenizer, saved as a pretrained folder (safetensors)."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import GPT2Config, GPT2LMHeadModel, PreTrainedTokenizerFast

    folder = tmp_path_factory.mktemp("tiny-gpt2")
    backend = Tokenizer(models.BPE())
    backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    backend.decoder = decoders.ByteLevel()
    backend.train_from_iterator(TEXTS, trainers.BpeTrainer(vocab_size=300, special_tokens=["<|endoftext|>"],
                                                          initial_alphabet=pre_tokenizers.ByteLevel.alphabet()))
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=backend, eos_token="<|endoftext|>")
    tokenizer.save_pretrained(str(folder))
    torch.manual_seed(0)
    config = GPT2Config(vocab_size=len(tokenizer), n_positions=64, n_embd=32, n_layer=1, n_head=2,
                        bos_token_id=tokenizer.eos_token_id, eos_token_id=tokenizer.eos_token_id)
    GPT2LMHeadModel(config).save_pretrained(str(folder), safe_serialization=True)
    return folder


@pytest.mark.parametrize("dp", [False, True])
def test_hf_finetune_lowers_loss_and_roundtrips(pretrained, tmp_path, dp):
    extra = {"dp": {"enabled": True, "noise_multiplier": 0.3, "max_grad_norm": 5.0}} if dp else {}
    s = settings(model={"arch": f"hf:{pretrained}", "context": 32}, tokenizer={"kind": "pretrained"},
                 optimizer={"lr": 0.01}, **extra)
    data = prepare_data(s, TEXTS[:-4], TEXTS[-4:-2], TEXTS[-2:])
    assert data.tokenizer.vocab_size == 300
    model, spec = build_variant_model(s, data.tokenizer)
    before = evaluate(model, data.valid, 64, torch.device("cpu"))
    result = Trainer(s, model, data.train, data.valid, data.test, progress=False).run()
    assert result.history[-1].valid_loss < before - 0.3 and math.isfinite(result.test_loss)

    save_model_folder(result.model, spec, tmp_path / "m")
    data.tokenizer.save(tmp_path / "m")
    loaded, loaded_spec = load_model_folder(tmp_path / "m")
    assert (loaded_spec.arch, loaded_spec.vocab_size) == (spec.arch, spec.vocab_size)
    ids = data.valid.tensors[0][:2]
    assert torch.allclose(result.model(ids), loaded(ids), atol=1e-6)
    assert load_tokenizer(tmp_path / "m").encode("hello world") == data.tokenizer.encode("hello world")


def test_hf_path_that_does_not_exist(tmp_path):
    s = settings(model={"arch": f"hf:{tmp_path / 'missing'}"}, tokenizer={"kind": "pretrained"})
    with pytest.raises(ParamsError, match="train.model.arch: hf:.*missing: no such folder"):
        build_variant_model(s, None)


def test_gpt2_and_lstm_folders_roundtrip(tmp_path):
    for arch in ("gpt2", "lstm"):
        s = settings(model={"arch": arch})
        data = prepare_data(s, TEXTS[:-4], TEXTS[-4:-2], TEXTS[-2:])
        model, spec = build_variant_model(s, data.tokenizer)
        save_model_folder(model, spec, tmp_path / arch)
        data.tokenizer.save(tmp_path / arch)
        loaded, _ = load_model_folder(tmp_path / arch)
        ids = data.valid.tensors[0][:2]
        model.eval()
        assert torch.equal(model(ids), loaded(ids))
        assert load_tokenizer(tmp_path / arch).decode(data.tokenizer.encode("SSN 1-2")) == "SSN 1-2"
