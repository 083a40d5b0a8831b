"""Smoke test of train@VARIANT as DVC runs it: outputs, MLflow nested run, and memorization."""

import csv
import random

import numpy as np
from mlflow.tracking import MlflowClient

from canaryaudit.exposure.scoring import log_perplexity_bits
from canaryaudit.io import read_json, read_jsonl
from canaryaudit.training.models import load_model_folder
from canaryaudit.training.tokenizers import load_tokenizer
from tests.conftest import run_stage, write_params


def train_variant(ws, variant):
    return run_stage(ws, "train", "--variant", variant, "--out", f"models/{variant}",
                     "--report", f"reports/train/{variant}.json", "--plot", f"reports/train/{variant}_loss.csv")


def test_nonprivate_model_memorizes_canaries_inserted_64_times(workspace, tiny_params, monkeypatch, isolated_mlflow):
    tiny_params["canaries"].update(insertions=[1, 64], per_count=2, audit={"count": 0})
    tiny_params["train"].update(epochs=6, model={"arch": "gpt2", "layers": 2, "width": 64, "heads": 4, "context": 32})
    write_params(workspace / "params.yaml", tiny_params)
    for stage in ("prepare", "sanitize", "canaries"):
        run_stage(workspace, stage)  # in this process, MLflow off
    monkeypatch.setenv("CANARYAUDIT_TRACKING", "1")  # the train stage logs (its own process)
    train_variant(workspace, "nonprivate")

    folder = workspace / "models/nonprivate"
    assert {"model.safetensors", "model_config.json", "tokenizer.json", "card.json"} <= {p.name for p in folder.iterdir()}
    card = read_json(folder / "card.json")
    assert card["arch"] == "gpt2" and card["dp"] is None and card["parameters"] > 0
    assert len(card["training_data_sha256"]) == 64
    report = read_json(workspace / "reports/train/nonprivate.json")
    assert report["epochs"] == 6 and report["test_perplexity"] > 1 and report["peak_memory_bytes"] > 0
    with open(workspace / "reports/train/nonprivate_loss.csv") as handle:
        rows = list(csv.DictReader(handle))
    assert [int(r["epoch"]) for r in rows] == [1, 2, 3, 4, 5, 6]
    assert not (workspace / ".canaryaudit/checkpoints/nonprivate").exists(), "checkpoints removed after success"

    model, _ = load_model_folder(folder)
    tokenizer = load_tokenizer(folder)
    canaries = [c for c in read_jsonl(workspace / "data/canaries/canaries.jsonl") if c["format"] == "number"]
    prefix = canaries[0]["prefix"]
    rng = random.Random(0)
    fresh = ["".join(rng.choice("0123456789") for _ in range(9)) for _ in range(1000)]
    fresh_px = log_perplexity_bits(model, tokenizer, prefix, fresh)
    inserted = [c["text"][len(prefix):] for c in canaries if c["insertions"] == 64]
    inserted_px = log_perplexity_bits(model, tokenizer, prefix, inserted)
    # "well below": at least 10 bits (a factor of 1000 in likelihood) under the fresh mean
    assert inserted_px.mean() < fresh_px.mean() - 10, (inserted_px, fresh_px.mean())
    assert (inserted_px[:, None] < fresh_px[None, :]).mean() > 0.99  # ranks above almost every fresh candidate

    client = MlflowClient(isolated_mlflow)
    runs = client.search_runs([e.experiment_id for e in client.search_experiments()],
                              filter_string="tags.`canaryaudit.variant` = 'nonprivate'")
    assert runs, "a nested MLflow run per variant"
    run = runs[0]
    assert run.data.tags["mlflow.parentRunId"] and run.info.status == "FINISHED"
    assert run.data.params["train.model.arch"] == "gpt2" and "test_perplexity" in run.data.metrics  # section-prefixed
    # the headline numbers under the parent run's names, with the report's values
    assert run.data.metrics["variant.nonprivate.test_perplexity"] == report["test_perplexity"]
    assert run.data.metrics["variant.nonprivate.parameters"] == card["parameters"]
    history = client.get_metric_history(run.info.run_id, "valid_loss")
    assert sorted(m.step for m in history) == [1, 2, 3, 4, 5, 6]


def test_dp_variant_reports_epsilon_and_privacy_unit(tiny_pipeline):
    workspace = tiny_pipeline.root  # train@dp as DVC ran it
    card = read_json(workspace / "models/dp/card.json")
    report = read_json(workspace / "reports/train/dp.json")
    assert card["dp"]["epsilon"] == report["epsilon"] > 0
    assert "group privacy" in card["dp"]["privacy_unit"] and "32 consecutive tokens" in card["dp"]["privacy_unit"]
    assert report["delta"] == card["dp"]["delta"]


def test_unknown_variant_and_bad_variant_params(tiny_pipeline, tmp_path):
    workspace = tiny_pipeline.copy_to(tmp_path / "ws")  # the data stages have run
    tiny_params = tiny_pipeline.fresh_params()
    proc = run_stage(workspace, "train", "--variant", "nope", "--out", "m", "--report", "r.json", "--plot", "p.csv",
                     check=False)
    assert proc.returncode == 2 and "no variant 'nope'; defined: nonprivate, dp" in proc.stderr
    tiny_params["train"]["variants"]["dp"]["dp"]["delta"] = 0.5
    write_params(workspace / "params.yaml", tiny_params)
    proc = run_stage(workspace, "train", "--variant", "dp", "--out", "m", "--report", "r.json", "--plot", "p.csv",
                     check=False)
    assert proc.returncode == 2 and "train.variants.dp.dp.delta: 0.5 must be below 1/N" in proc.stderr


def test_scoring_by_hand():
    """Uniform model: every continuation of n tokens costs n log2 V bits; a bigram table gives exact values."""
    import math

    import torch
    from torch import nn

    from canaryaudit.training.tokenizers import CharTokenizer

    tokenizer = CharTokenizer(list("ab"))  # ids: <eos>=0, <unk>=1, a=2, b=3
    uniform = nn.Embedding(4, 4)
    nn.init.zeros_(uniform.weight)
    px = log_perplexity_bits(uniform, tokenizer, "a", ["ab", "bb", "aa"])
    assert np.allclose(px, 2 * math.log2(4))
    bigram = nn.Embedding(4, 4)
    with torch.no_grad():
        bigram.weight.zero_()
        bigram.weight[2, 3] = math.log(3.0)  # after 'a': P(b) = 3/6, others 1/6
    # "a" + "b": -log2(3/6) = 1 bit; "a" + "a": -log2(1/6) = 2.585 bits
    assert np.allclose(log_perplexity_bits(bigram, tokenizer, "a", ["b", "a"]), [1.0, math.log2(6)])
