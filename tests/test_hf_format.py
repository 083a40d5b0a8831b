"""Model folders in the Hugging Face layout: transformers loads what the pipeline saves, and the
pipeline loads what transformers saves, with the same logits and token ids (a second code path)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch
import yaml

from canaryaudit.corpus.emails import generate_emails
from canaryaudit.errors import DataError, OutputError
from canaryaudit.training.hf_card import model_card_text, write_model_card
from canaryaudit.training.models import ModelSpec, build_model, load_model_folder, save_model_folder
from canaryaudit.training.tokenizers import BpeTokenizer, CharTokenizer, load_tokenizer

TEXTS = [d.text for d in generate_emails(5, 15_000)]
# spaces, blank lines, a character no tokenizer saw (ß and the CJK one), digits and punctuation
PROBE = "Dear Bob,\n\n  my SSN is 123-45-6789 ßtraße 北 <x>\n"
LLAMA = {"model_type": "llama", "vocab_size": 0, "hidden_size": 32, "intermediate_size": 64,
         "num_hidden_layers": 1, "num_attention_heads": 2, "num_key_value_heads": 2, "max_position_embeddings": 64}


def saved(spec: ModelSpec, folder: Path) -> torch.nn.Module:
    torch.manual_seed(0)
    model = build_model(spec).eval()
    save_model_folder(model, spec, folder)
    return model


@pytest.mark.parametrize("arch", ["gpt2", "llama"])
def test_transformers_loads_what_the_pipeline_saves(tmp_path, arch):
    from transformers import AutoModelForCausalLM

    vocab = 61
    spec = (ModelSpec(arch="gpt2", vocab_size=vocab, layers=1, width=16, heads=2, context=32) if arch == "gpt2"
            else ModelSpec(arch="hf:tiny-llama", vocab_size=vocab, context=32, hf_config={**LLAMA, "vocab_size": vocab}))
    model = saved(spec, tmp_path / "m")
    config = json.loads((tmp_path / "m/config.json").read_text())
    assert config["model_type"] == arch
    ids = torch.randint(0, vocab, (3, 20), generator=torch.Generator().manual_seed(1))
    hf = AutoModelForCausalLM.from_pretrained(tmp_path / "m", local_files_only=True).eval()
    with torch.no_grad():
        assert torch.allclose(hf(ids).logits, model(ids), atol=1e-5)
        loaded, loaded_spec = load_model_folder(tmp_path / "m")
        assert loaded_spec == spec and torch.equal(loaded(ids), model(ids))
    from safetensors import safe_open

    with safe_open(str(tmp_path / "m/model.safetensors"), "pt") as weights:
        keys = list(weights.keys())
    assert keys and not any(k.startswith("model.model.") or k.startswith("_module.") for k in keys)
    if arch == "gpt2":  # saved as transformers' own Conv1D: [in, out] weights
        assert weights_shape(tmp_path / "m", "transformer.h.0.attn.c_attn.weight") == [16, 48]
    assert not (tmp_path / "m/.saving").exists()


def weights_shape(folder: Path, key: str) -> list[int]:
    from safetensors import safe_open

    with safe_open(str(folder / "model.safetensors"), "pt") as weights:
        return list(weights.get_slice(key).get_shape())


def test_lstm_keeps_its_own_layout(tmp_path):
    spec = ModelSpec(arch="lstm", vocab_size=40, layers=1, width=16)
    model = saved(spec, tmp_path / "m")
    assert sorted(p.name for p in (tmp_path / "m").iterdir()) == ["model.safetensors", "model_config.json"]
    ids = torch.randint(0, 40, (2, 9))
    loaded, _ = load_model_folder(tmp_path / "m")
    with torch.no_grad():
        assert torch.equal(loaded(ids), model(ids))


@pytest.mark.parametrize("kind", ["char", "bpe"])
def test_auto_tokenizer_gives_the_pipeline_ids(tmp_path, kind):
    from transformers import AutoTokenizer

    tokenizer = CharTokenizer.train(TEXTS) if kind == "char" else BpeTokenizer.train(TEXTS, 300)
    tokenizer.save(tmp_path)
    hf = AutoTokenizer.from_pretrained(tmp_path, local_files_only=True)
    expected = tokenizer.encode(PROBE)
    assert hf(PROBE, add_special_tokens=False)["input_ids"] == expected
    assert len(hf) == tokenizer.vocab_size and hf.eos_token_id == tokenizer.eos_id
    reloaded = load_tokenizer(tmp_path, tokenizer.vocab_size)
    assert reloaded.kind == kind and reloaded.encode(PROBE) == expected
    if kind == "char":  # every unseen character is one <unk> (id 1), as CharTokenizer.encode does
        assert expected.count(1) == sum(ch not in tokenizer.stoi for ch in PROBE) == 3
        known = "Dear Bob,\n\n  123"
        assert hf.decode(tokenizer.encode(known)) == known


def test_a_folder_saved_by_transformers_alone_loads(tmp_path):
    """A model trained elsewhere: no model_config.json, padded embeddings (rows > tokenizer size)."""
    from transformers import GPT2Config, GPT2LMHeadModel

    tokenizer = BpeTokenizer.train(TEXTS, 300)
    tokenizer.save(tmp_path)
    (tmp_path / "tokenizer_kind.json").unlink()  # as transformers alone would leave it
    torch.manual_seed(0)
    hf = GPT2LMHeadModel(GPT2Config(vocab_size=320, n_positions=48, n_embd=16, n_layer=1, n_head=2)).eval()
    hf.save_pretrained(tmp_path)
    model, spec = load_model_folder(tmp_path)
    assert (spec.arch, spec.vocab_size, spec.context) == (f"hf:{tmp_path}", 320, 48)
    assert spec.hf_config["model_type"] == "gpt2"
    ids = torch.tensor([tokenizer.encode(PROBE)[:40]])
    with torch.no_grad():
        assert torch.allclose(model(ids), hf(ids).logits, atol=1e-5)
    loaded = load_tokenizer(tmp_path, spec.vocab_size)  # 300 tokens in 320 rows: a pretrained tokenizer fits
    assert loaded.kind == "pretrained" and loaded.encode(PROBE) == tokenizer.encode(PROBE)
    with pytest.raises(DataError, match="tokenizer has 300 tokens but the model was trained with 299"):
        load_tokenizer(tmp_path, 299)


def test_folders_that_are_refused_name_the_file(tmp_path):
    from transformers import DistilBertConfig, DistilBertModel

    spec = ModelSpec(arch="gpt2", vocab_size=30, layers=1, width=16, heads=2, context=16)
    good = tmp_path / "good"
    saved(spec, good)
    pickled = tmp_path / "pickled"
    shutil.copytree(good, pickled)
    (pickled / "model.safetensors").unlink()
    torch.save({"w": torch.zeros(1)}, pickled / "pytorch_model.bin")
    with pytest.raises(DataError, match="pytorch_model.bin: pickle weights are refused"):
        load_model_folder(pickled)
    corrupt = tmp_path / "corrupt"
    shutil.copytree(good, corrupt)
    (corrupt / "model.safetensors").write_bytes((good / "model.safetensors").read_bytes()[:100])
    with pytest.raises(DataError, match="model.safetensors: not a complete safetensors file"):
        load_model_folder(corrupt)
    encoder = tmp_path / "encoder"
    DistilBertModel(DistilBertConfig(vocab_size=30, n_layers=1, dim=16, hidden_dim=32, n_heads=2)).save_pretrained(encoder)
    with pytest.raises(DataError, match="config.json: model_type 'distilbert' is not a causal language model"):
        load_model_folder(encoder)
    with pytest.raises(DataError, match="no tokenizer"):
        load_tokenizer(encoder)
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(DataError, match="model_config.json: file not found"):
        load_model_folder(empty)
    with pytest.raises(DataError, match="model folder not found"):
        load_model_folder(tmp_path / "nowhere")


def test_a_failed_save_leaves_the_old_files_and_no_temporary(tmp_path, monkeypatch):
    from transformers import PreTrainedModel

    spec = ModelSpec(arch="gpt2", vocab_size=30, layers=1, width=16, heads=2, context=16)
    folder = tmp_path / "m"
    saved(spec, folder)
    before = {p.name: p.read_bytes() for p in folder.iterdir()}

    def full_disk(self, directory, **_kwargs):
        Path(directory, "model.safetensors").write_bytes(b"half")
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(PreTrainedModel, "save_pretrained", full_disk)
    with pytest.raises(OutputError, match="No space left on device"):
        save_model_folder(build_model(spec), spec, folder)
    assert {p.name: p.read_bytes() for p in folder.iterdir()} == before


def card(**changes) -> dict:
    base = {"variant": "dp", "arch": "gpt2", "parameters": 12345, "tokenizer": "char", "vocab_size": 61,
            "context": 64, "test_perplexity": 2.3456, "test_loss_nats_per_token": 0.85256,
            "training_data_sha256": "ab" * 32, "external": None,
            "dp": {"epsilon": 7.5, "delta": 1e-5, "accountant": "prv", "noise_multiplier": 0.8, "max_grad_norm": 1.0,
                   "sample_rate": 0.01, "steps": 400, "privacy_unit": "one 64-token sequence",
                   "noise_secrecy": "the noise seed is secret"}}
    return {**base, **changes}


def test_model_card_front_matter_and_figures(tmp_path):
    write_model_card(tmp_path, card())
    text = (tmp_path / "README.md").read_text(encoding="utf-8")
    front = yaml.safe_load(text.split("---")[1])
    assert front["library_name"] == "transformers" and "differential-privacy" in front["tags"]
    assert "epsilon 7.500, delta 1.0e-05" in text and "prv accountant" in text and "400 steps" in text
    assert "test perplexity: 2.346" in text and "12,345 parameters" in text and "canaries" in text
    assert "AutoModelForCausalLM.from_pretrained" in text
    plain = model_card_text(card(dp=None))
    assert "without** differential privacy" in plain and "epsilon" not in plain
    declared = model_card_text(card(dp={"epsilon": 2.0, "delta": 1e-5, "source": "declared by the user"},
                                    external={"path": "/x/mine"}))
    assert "Declared guarantee: (epsilon 2, delta 1e-05)" in declared and "imported from `/x/mine`" in declared
    assert "load_model_folder" in model_card_text(card(arch="lstm"))
