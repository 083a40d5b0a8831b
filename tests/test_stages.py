"""Smoke tests of each stage script on tiny data, as DVC runs them; determinism; clean errors."""

import json
from pathlib import Path

from canaryaudit.canaries import count_occurrences
from canaryaudit.io import read_json, read_jsonl
from canaryaudit.pii.spans import PII_TYPES
from tests.conftest import run_stage, write_params

OUTPUT_FILES = [
    "data/raw/train.jsonl", "data/raw/valid.jsonl", "data/raw/test.jsonl", "data/raw/pii_truth.jsonl",
    "data/sanitized/train.jsonl", "data/sanitized/valid.jsonl", "data/sanitized/test.jsonl",
    "data/augmented/train.jsonl", "data/canaries/canaries.jsonl", "data/canaries/formats.json",
]


def run_all(ws: Path) -> None:
    run_stage(ws, "prepare")
    run_stage(ws, "sanitize")
    run_stage(ws, "canaries")


def test_three_stages_on_tiny_data(workspace):
    run_all(workspace)
    for rel in OUTPUT_FILES:
        assert (workspace / rel).stat().st_size > 0, rel

    prepare = read_json(workspace / "reports/prepare.json")
    n = {s: prepare["splits"][s]["documents"] for s in ("train", "valid", "test")}
    assert n["train"] > n["valid"] >= 1 and n["test"] >= 1

    sanitize = read_json(workspace / "reports/sanitize.json")
    quality = sanitize["detection_quality"]
    assert set(quality) == set(PII_TYPES)
    for pii_type in sanitize["detectors"]:
        row = quality[pii_type]
        if row["truth"]:
            assert row["recall"] >= 0.99 and row["precision"] >= 0.95, (pii_type, row)
    assert quality["person_name"]["detector"] is True  # names are detected offline (gazetteer + context)
    truth = read_jsonl(workspace / "data/raw/pii_truth.jsonl")
    raw = {r["doc_id"]: r["text"] for s in ("train", "valid", "test") for r in read_jsonl(workspace / f"data/raw/{s}.jsonl")}
    values = {raw[t["doc_id"]][t["start"]:t["end"]] for t in truth if t["type"] in ("ssn", "credit_card", "iban", "phone")}
    sanitized = "\n".join(r["text"] for s in ("train", "valid", "test")
                          for r in read_jsonl(workspace / f"data/sanitized/{s}.jsonl"))
    report_text = (workspace / "reports/sanitize.json").read_text()
    assert values and not [v for v in values if v in sanitized or v in report_text]

    canaries = read_jsonl(workspace / "data/canaries/canaries.jsonl")
    augmented = [r["text"] for r in read_jsonl(workspace / "data/augmented/train.jsonl")]
    assert len(canaries) == 2 * 3 * 2 + 8
    for c in canaries:
        assert count_occurrences(augmented, c["text"]) == c["insertions"]
    formats = read_json(workspace / "data/canaries/formats.json")
    assert formats["number"]["space_size"] == 10**9


def test_outputs_are_byte_identical_across_runs(workspace, tmp_path_factory, tiny_params):
    other = tmp_path_factory.mktemp("second")
    import shutil

    shutil.copytree(workspace / "stages", other / "stages")
    write_params(other / "params.yaml", tiny_params)
    run_all(workspace)
    run_all(other)
    for rel in OUTPUT_FILES:
        assert (workspace / rel).read_bytes() == (other / rel).read_bytes(), rel


def test_sanitize_disabled_keeps_raw_text(workspace, tiny_params):
    tiny_params["sanitize"] = {"enabled": False}
    write_params(workspace / "params.yaml", tiny_params)
    run_stage(workspace, "prepare")
    run_stage(workspace, "sanitize")
    for split in ("train", "valid", "test"):
        assert (workspace / f"data/raw/{split}.jsonl").read_bytes() == (workspace / f"data/sanitized/{split}.jsonl").read_bytes()
    assert sum(read_json(workspace / "reports/sanitize.json")["splits"]["train"]["found"].values()) > 0


def test_file_source_has_no_ground_truth(workspace, tiny_params):
    (workspace / "corpus.jsonl").write_text("\n".join(json.dumps({"text": f"note {i}: call 713-853-45{i:02d} about it"}) for i in range(30)))
    tiny_params["data"]["source"] = "file:corpus.jsonl"
    tiny_params["canaries"]["max_fraction"] = 5.0  # 30 one-line notes: the canaries outweigh them (about 175%)
    write_params(workspace / "params.yaml", tiny_params)
    run_all(workspace)
    assert not (workspace / "data/raw/pii_truth.jsonl").exists()
    assert read_json(workspace / "reports/sanitize.json")["detection_quality"] is None
    assert "<PHONE>" in (workspace / "data/sanitized/train.jsonl").read_text()


def test_bad_params_exit_2_with_the_key_and_write_nothing(workspace, tiny_params):
    tiny_params["data"]["seed"] = "seven"
    write_params(workspace / "params.yaml", tiny_params)
    proc = run_stage(workspace, "prepare", check=False, in_process=False)  # the exit code and stderr DVC sees
    assert proc.returncode == 2
    assert "data.seed: Input should be a valid integer" in proc.stderr
    assert "Traceback" not in proc.stderr
    assert not (workspace / "data").exists()


def test_bad_input_file_exit_2_names_file_and_line(workspace, tiny_params):
    (workspace / "c.jsonl").write_text('{"text": "a"}\n{oops}\n')
    tiny_params["data"]["source"] = "file:c.jsonl"
    write_params(workspace / "params.yaml", tiny_params)
    proc = run_stage(workspace, "prepare", check=False, in_process=False)
    assert proc.returncode == 2 and "c.jsonl:2: invalid JSON" in proc.stderr
