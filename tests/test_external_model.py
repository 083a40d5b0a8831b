"""Models trained elsewhere (train.external): checked, fingerprinted, evaluated and audited, not trained.

The models are built by the tests (a tiny GPT-2 with a byte-level BPE saved by transformers'
own save_pretrained, and one fine-tuned with the Hugging Face Trainer as the README shows): no hub.
"""

from __future__ import annotations

import hashlib
import json
import math
import shutil
from pathlib import Path

import pytest
import torch

from canaryaudit.config import parse_params
from canaryaudit.errors import ParamsError
from canaryaudit.io import read_json, read_jsonl
from tests.conftest import TINY_PARAMS, dvc, run_stage, write_full_params, write_params


def hf_tokenizer(texts: list[str]):
    """A byte-level BPE as a PreTrainedTokenizerFast, as a user's own tokenizer would be."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    backend = Tokenizer(models.BPE())
    backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    backend.decoder = decoders.ByteLevel()
    backend.train_from_iterator(texts, trainers.BpeTrainer(vocab_size=400, special_tokens=["<|endoftext|>"],
                                                          initial_alphabet=pre_tokenizers.ByteLevel.alphabet()))
    return PreTrainedTokenizerFast(tokenizer_object=backend, eos_token="<|endoftext|>", pad_token="<|endoftext|>")


def tiny_gpt2(vocab_size: int, positions: int = 64):
    from transformers import GPT2Config, GPT2LMHeadModel

    torch.manual_seed(0)
    return GPT2LMHeadModel(GPT2Config(vocab_size=vocab_size, n_positions=positions, n_embd=32, n_layer=1, n_head=2))


def fine_tune_with_hf_trainer(train_jsonl: Path, out: Path, steps: int = 40) -> None:
    """What the README's worked example does: the user's own training code, outside the pipeline."""
    from transformers import Trainer, TrainingArguments

    texts = [row["text"] for row in read_jsonl(train_jsonl)]
    tokenizer = hf_tokenizer(texts)
    model = tiny_gpt2(len(tokenizer))
    stream = [t for text in texts for t in tokenizer(text)["input_ids"] + [tokenizer.eos_token_id]]
    blocks = [stream[i : i + 33] for i in range(0, len(stream) - 33, 33)]
    dataset = [{"input_ids": torch.tensor(b), "labels": torch.tensor(b)} for b in blocks]
    args = TrainingArguments(output_dir=str(out.parent / "trainer-tmp"), max_steps=steps, learning_rate=3e-3,
                             per_device_train_batch_size=8, use_cpu=True, report_to=[], save_strategy="no",
                             logging_strategy="no", disable_tqdm=True, seed=0)
    Trainer(model=model, args=args, train_dataset=dataset).train()
    model.save_pretrained(out)  # safetensors by default
    tokenizer.save_pretrained(out)


@pytest.fixture(scope="module")
def saved_model(tmp_path_factory) -> Path:
    """A plain HF folder (config.json, model.safetensors, tokenizer files), saved by transformers itself."""
    folder = tmp_path_factory.mktemp("external") / "mine"
    from canaryaudit.corpus.emails import generate_emails

    tokenizer = hf_tokenizer([d.text for d in generate_emails(1, 20_000)])
    tiny_gpt2(len(tokenizer)).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


def with_external(params: dict, path: Path, **claim) -> dict:
    params = json.loads(json.dumps(params))
    params["train"]["external"] = {"mine": {"path": str(path), **claim}}
    return params


def test_external_params_are_checked():
    ok = parse_params(with_external(TINY_PARAMS, Path("m"), epsilon=3.0, delta=1e-5))
    assert ok.train.audited == ("nonprivate", "dp", "reference", "mine")
    cases = [
        ({"epsilon": 3.0}, "declare both epsilon and delta"),
        ({"epsilon": -1.0, "delta": 1e-5}, "train.external.mine.epsilon"),
        ({"context": 1}, "train.external.mine.context"),
        ({"colour": "red"}, "train.external.mine.colour"),
    ]
    for claim, message in cases:
        with pytest.raises(ParamsError, match=message):
            parse_params(with_external(TINY_PARAMS, Path("m"), **claim))
    with pytest.raises(ParamsError, match="audit runs offline"):
        parse_params(with_external(TINY_PARAMS, "hf:gpt2"))
    clash = with_external(TINY_PARAMS, Path("m"))
    clash["train"]["external"]["dp"] = clash["train"]["external"].pop("mine")
    with pytest.raises(ParamsError, match="both define dp"):
        parse_params(clash)
    rule = with_external(TINY_PARAMS, Path("m"))
    rule["gate"]["rules"].append({"check": "extracted_canaries", "variant": "mine", "max": 0})
    assert parse_params(rule).gate.rules[-1].variant == "mine"


@pytest.fixture
def stage_ws(workspace: Path, saved_model: Path) -> Path:
    """A workspace whose data stages have run, with the saved model declared as train.external.mine."""
    write_params(workspace / "params.yaml", with_external(TINY_PARAMS, saved_model, epsilon=2.0, delta=1e-5))
    run_stage(workspace, "prepare", "--params", "params.yaml")
    run_stage(workspace, "sanitize", "--params", "params.yaml")
    run_stage(workspace, "canaries", "--params", "params.yaml")
    return workspace


def independent_test_loss(folder: Path, test_jsonl: Path, context: int) -> float:
    """Mean nats/token by transformers' own loss (labels=) over the same windows: a second code path."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer, model = AutoTokenizer.from_pretrained(folder), AutoModelForCausalLM.from_pretrained(folder).eval()
    stream = [t for row in read_jsonl(test_jsonl)
              for t in tokenizer(row["text"], add_special_tokens=False)["input_ids"] + [tokenizer.eos_token_id]]
    n = len(stream) // (context + 1)
    chunks = torch.tensor(stream[: n * (context + 1)]).view(n, context + 1)
    with torch.no_grad():  # HF shifts labels itself: feed the first `context` tokens, targets are the rest
        logits = model(chunks[:, :-1]).logits
        loss = torch.nn.functional.cross_entropy(logits.flatten(0, 1), chunks[:, 1:].flatten(), reduction="mean")
    return float(loss)


def test_external_stage_copies_fingerprints_and_evaluates(stage_ws: Path, saved_model: Path):
    run_stage(stage_ws, "external", "--params", "params.yaml", "--name", "mine", "--out", "models/mine",
              "--report", "reports/train/mine.json")
    out = stage_ws / "models/mine"
    card, report = read_json(out / "card.json"), read_json(stage_ws / "reports/train/mine.json")
    expected = {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in saved_model.iterdir() if p.is_file()}
    assert card["external"]["files_sha256"] == expected and "model.safetensors" in expected
    assert card["dp"]["epsilon"] == 2.0 and "declared by the user" in card["dp"]["source"]
    assert report["epsilon"] == 2.0 and report["epsilon_declared"] and report["external"]
    context = TINY_PARAMS["train"]["model"]["context"]
    assert report["context"] == context
    assert report["test_loss"] == pytest.approx(independent_test_loss(saved_model, stage_ws / "data/sanitized/test.jsonl",
                                                                      context), rel=1e-5)
    assert report["test_perplexity"] == pytest.approx(math.exp(report["test_loss"]))
    from transformers import AutoModelForCausalLM, AutoTokenizer

    copy, original = AutoModelForCausalLM.from_pretrained(out), AutoModelForCausalLM.from_pretrained(saved_model)
    for (name, a), (_, b) in zip(sorted(copy.state_dict().items()), sorted(original.state_dict().items())):
        assert torch.equal(a, b), name
    text = "my social security number is 123-45-6789 ünïcode"
    assert AutoTokenizer.from_pretrained(out)(text)["input_ids"] == AutoTokenizer.from_pretrained(saved_model)(text)["input_ids"]
    assert "declared" in (out / "README.md").read_text(encoding="utf-8").lower()
    proc = run_stage(stage_ws, "exposure", "--params", "params.yaml", "--variant", "mine", "--model", "models/mine",
                     "--report", "reports/exposure/mine.json", "--csv", "reports/exposure/mine.csv")
    exposure = read_json(stage_ws / "reports/exposure/mine.json")
    assert exposure["canaries"] and all(r["exposure_interpolation"] is not None for r in exposure["canaries"]), proc.stderr


def test_external_folders_that_cannot_be_audited(stage_ws: Path, saved_model: Path, tmp_path: Path):
    def refused(folder: Path, *needles: str, **claim) -> None:
        write_params(stage_ws / "params.yaml", with_external(TINY_PARAMS, folder, **claim))
        proc = run_stage(stage_ws, "external", "--params", "params.yaml", "--name", "mine", "--out", "models/mine",
                         "--report", "reports/train/mine.json", check=False)
        output = proc.stdout + proc.stderr
        assert proc.returncode == 2 and "Traceback" not in output, output[-2000:]
        for needle in needles:
            assert needle in output, (needle, output[-2000:])
        assert not (stage_ws / "models/mine").exists()

    refused(tmp_path / "nowhere", "train.external.mine.path", "is not a folder")
    refused(saved_model, "train.external.mine.context", "64 positions", context=128)
    pickled = tmp_path / "pickled"
    shutil.copytree(saved_model, pickled)
    (pickled / "model.safetensors").unlink()
    torch.save({"w": torch.zeros(1)}, pickled / "pytorch_model.bin")  # never loaded: refused by name
    refused(pickled, "pickle")
    untokenized = tmp_path / "untokenized"
    untokenized.mkdir()
    for name in ("config.json", "model.safetensors"):
        shutil.copy2(saved_model / name, untokenized / name)
    refused(untokenized, "tokenizer")


@pytest.mark.slow
def test_a_model_fine_tuned_with_the_hf_trainer_is_audited_by_dvc_repro(tiny_pipeline, tmp_path):
    """The README's worked example in miniature, on a copy of the audited tiny pipeline: the user's own
    Trainer run on data/augmented/train.jsonl, then `dvc repro` audits it beside the trained variants and
    runs only its stages; new weights make DVC rerun the external model's stages only."""
    ws = tiny_pipeline.copy_to(tmp_path / "repo")
    fine_tune_with_hf_trainer(ws / "data/augmented/train.jsonl", ws / "external/mine")
    params = with_external(tiny_pipeline.fresh_params(), Path("external/mine"))
    params["gate"]["rules"] = [{"check": "extracted_canaries", "variant": "mine", "max": 1000}]
    write_full_params(ws / "params.yaml", params)
    log = dvc(ws, "repro")
    for stage in ("external@mine", "exposure_external@mine", "extract_external@mine", "report"):
        assert f"Running stage '{stage}'" in log
    assert "Running stage 'train@" not in log and "Running stage 'exposure@" not in log  # the others are up to date
    summary = read_json(ws / "reports/summary.json")
    assert "mine" in summary["variants"] and "nonprivate" in summary["variants"]
    gate = read_json(ws / "reports/gate.json")
    assert gate["rules"][0]["variant"] == "mine" and gate["rules"][0]["value"] is not None
    html = (ws / "reports/index.html").read_text(encoding="utf-8")
    assert "trained elsewhere" in html
    fine_tune_with_hf_trainer(ws / "data/augmented/train.jsonl", ws / "external/mine", steps=5)  # new weights
    status = dvc(ws, "status")
    assert "external@mine" in status and "train@nonprivate" not in status
