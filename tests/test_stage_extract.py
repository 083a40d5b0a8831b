"""extract@VARIANT as DVC runs it, on tiny data: outputs, schema, masking, determinism, bad settings."""

import csv
from contextlib import contextmanager

import pytest
import yaml

from canaryaudit.config import EXTRACT_METRICS, EXTRACT_STRATEGIES
from canaryaudit.io import read_json, read_jsonl
from canaryaudit.schemas import SAMPLES, validate_records
from tests.conftest import run_stage, write_params


def run_extract(ws, variant, check=True, suffix="", reference="pretrain"):
    return run_stage(ws, "extract", "--variant", variant, "--model", f"models/{variant}",
                     "--reference-model", f"models/{reference}", "--train-report", f"reports/train/{variant}.json",
                     "--report", f"reports/extract/{variant}{suffix}.json",
                     "--samples", f"reports/extract/{variant}{suffix}_samples.jsonl",
                     "--roc", f"reports/extract/{variant}{suffix}_roc.csv", check=check)


@pytest.fixture(scope="module")
def trained(tiny_pipeline, tmp_path_factory):
    """A copy of the shared tiny pipeline: data stages run, models trained, extract@nonprivate written by DVC."""
    return tiny_pipeline.copy_to(tmp_path_factory.mktemp("extract_ws") / "ws")


def test_registries_match_the_names_params_accept():
    from canaryaudit.extraction.metrics import METRICS
    from canaryaudit.extraction.sampling import STRATEGIES

    assert tuple(STRATEGIES.names()) == EXTRACT_STRATEGIES
    assert tuple(METRICS.names()) == EXTRACT_METRICS


def test_extract_stage_outputs(trained):
    report = read_json(trained / "reports/extract/nonprivate.json")
    assert report["reference_variant"] == "pretrain" and report["metrics"] == list(EXTRACT_METRICS)
    assert report["samples"]["generated"] == 3 * 12 and report["samples"]["per_strategy"] == {
        "top_n": 12, "temperature_decay": 12, "prefix": 12}
    assert len(report["table"]) == 3 * 6
    for row in report["table"]:
        assert row["top_k"] == 4 and 0 <= row["memorized_with_pii"] <= row["memorized"] <= 4
    membership = report["membership"]
    assert membership["tokens"] == 24 and membership["members"] == membership["nonmembers"] >= 2  # equal counts
    assert "without the inserted canaries" in membership["members_source"]
    for entry in membership["metrics"].values():
        assert 0.0 <= entry["auc"] <= 1.0 and entry["auc_ci"][0] <= entry["auc"] <= entry["auc_ci"][1]
    eps = report["empirical_epsilon"]
    assert eps["canaries"] == 8 and eps["guesses"] == 4 and eps["epsilon_lower_bound"] == 0.0  # r=4 can prove nothing
    assert eps["accountant_epsilon"] is None and eps["delta"] == 0.0

    samples = read_jsonl(trained / "reports/extract/nonprivate_samples.jsonl")
    validate_records(SAMPLES, samples, "samples")
    assert len(samples) == 36 and any(s["verified"] for s in samples)
    with open(trained / "reports/extract/nonprivate_roc.csv") as handle:
        roc = list(csv.DictReader(handle))
    assert {r["metric"] for r in roc} == set(EXTRACT_METRICS)
    assert all(0.0 <= float(r["fpr"]) <= 1.0 and 0.0 <= float(r["tpr"]) <= 1.0 for r in roc)


def test_extract_is_deterministic(trained):
    for suffix in ("_once", "_again"):
        run_extract(trained, "nonprivate", suffix=suffix)
    first = read_json(trained / "reports/extract/nonprivate_once.json")
    second = read_json(trained / "reports/extract/nonprivate_again.json")
    for report in (first, second):
        report["samples"] = {k: v for k, v in report["samples"].items() if not k.endswith("_seconds")}
    assert first == second
    assert (trained / "reports/extract/nonprivate_once_samples.jsonl").read_bytes() == (
        trained / "reports/extract/nonprivate_again_samples.jsonl").read_bytes()


@contextmanager
def params_changed(ws, change):
    """The workspace's params.yaml with ``change(params)`` applied, put back afterwards."""
    path = ws / "params.yaml"
    before = path.read_text(encoding="utf-8")
    params = yaml.safe_load(before)
    change(params)
    write_params(path, params)
    try:
        yield
    finally:
        path.write_text(before, encoding="utf-8")


def test_reference_variant_skips_the_ratio_against_itself(trained):
    with params_changed(trained, lambda p: p["extract"].update(reference_variant="nonprivate")):
        run_extract(trained, "nonprivate", suffix="_self", reference="nonprivate")
    report = read_json(trained / "reports/extract/nonprivate_self.json")
    assert report["reference_variant"] is None and "reference_ratio" not in report["metrics"]
    assert "reference_ratio" not in report["membership"]["metrics"]


def test_too_many_guesses_is_a_params_error(trained):
    with params_changed(trained, lambda p: p["extract"].update(audit={"guesses_included": 6, "guesses_excluded": 6})):
        proc = run_extract(trained, "nonprivate", check=False, suffix="_bad")
    assert proc.returncode == 2 and "extract.audit: 12 guesses but only 8 audit canaries" in proc.stderr
    assert not (trained / "reports/extract/nonprivate_bad.json").exists()


def test_membership_is_not_confounded_by_inserted_canaries(trained, tiny_params):
    """Members come from the training text before canary insertion: planting many canary lines in the
    training text the model was verified against leaves the membership block exactly unchanged."""
    from pathlib import Path

    from canaryaudit.config import parse_params
    from canaryaudit.extraction.pipeline import AuditedModel, membership_inference, run_extraction
    from canaryaudit.training.models import load_model_folder
    from canaryaudit.training.tokenizers import load_tokenizer

    params = parse_params(tiny_params).extract
    model, _ = load_model_folder(Path(trained / "models/nonprivate"))
    audited = AuditedModel(model, load_tokenizer(Path(trained / "models/nonprivate")), "cpu")
    sanitized = [r["text"] for r in read_jsonl(trained / "data/sanitized/train.jsonl")]
    test = [r["text"] for r in read_jsonl(trained / "data/sanitized/test.jsonl")]
    canary_lines = [c["text"] for c in read_jsonl(trained / "data/canaries/canaries.jsonl") if c["included"]]
    planted = [text + "\n" + "\n".join(canary_lines * 3) for text in sanitized]  # canaries in every document

    def membership(train_texts):
        report, _, _ = run_extraction(audited, params, variant="nonprivate", reference_variant=None,
                                      train_texts=train_texts, test_texts=test, member_texts=sanitized,
                                      canaries=[], train_report={})
        return report["membership"]

    assert membership(planted) == membership(sanitized)
    # the confound it removes: members drawn from the planted text score differently
    names = ["perplexity"]
    confounded, _ = membership_inference(audited, names, planted, test, params)
    clean, _ = membership_inference(audited, names, sanitized, test, params)
    assert confounded["metrics"]["perplexity"]["auc"] != clean["metrics"]["perplexity"]["auc"]
