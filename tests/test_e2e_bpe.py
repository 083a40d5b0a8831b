"""End to end under a digit-merging byte-level BPE: every stage of dvc.yaml to a complete report (issue 12)."""

import json

import pytest

from canaryaudit.io import read_json
from tests.conftest import repo_copy, run_pipeline_in_process, write_full_params

pytestmark = pytest.mark.slow(minutes=0.8)


def test_the_pipeline_with_a_bpe_model_gives_exposure_by_every_estimator(tmp_path, tiny_params):
    """dvc.yaml's stages, each by its own command, in this process (DVC's part is the shared pipeline's test)."""
    ws = repo_copy(tmp_path / "repo")
    tiny_params["train"]["tokenizer"] = {"kind": "bpe", "bpe_vocab_size": 1000}
    tiny_params["train"]["epochs"] = 4
    tiny_params["train"]["model"]["width"] = 64
    tiny_params["canaries"]["insertions"] = [1, 40]  # 40 copies: memorized enough for exact ranks
    tiny_params["exposure"]["exact_rank"] = {"max_estimated_rank": 100_000, "max_rows": 200_000}
    tiny_params["exposure"]["extraction"]["max_expansions"] = 20_000
    # From scratch: the BPE is fit on the training text, canaries included, so it merges their digits
    # (fine-tuning the pretrain base would keep the base's tokenizer, kind "pretrained").
    tiny_params["train"]["variants"] = {"bpe": {"init": "scratch"}}
    tiny_params["extract"]["reference_variant"] = "bpe"  # no second model: extraction without the reference ratio
    tiny_params["pretrain"]["source"] = "none"  # no variant starts from a base: none to train
    tiny_params["gate"]["rules"] = [{"check": "exposure", "variant": "bpe", "insertions": 40, "max": 40.0},
                                    {"check": "extracted_canaries", "variant": "bpe", "max": 10}]
    write_full_params(ws / "params.yaml", tiny_params)
    ran = run_pipeline_in_process(ws)
    assert ran[0] == "prepare" and ran[-1] == "report" and {"sanitize", "canaries", "pretrain"} <= set(ran)
    assert {"train@bpe", "exposure@bpe", "extract@bpe", "pii@bpe"} <= set(ran)

    exposure = read_json(ws / "reports/exposure/bpe.json")
    merged = False
    for name, info in exposure["formats"].items():
        assert info["tokenization"]["tokenizer"] == "bpe" and info["tokenization"]["searchable"], name
        assert info["extraction"]["nodes_expanded"] > 0
    for row in exposure["canaries"]:
        assert row["exposure_interpolation"] is not None and row["exposure_extrapolation"] is not None
        assert row["exact_rank"] is not None or row["exact_rank_note"]
    assert any(r["exact_rank"] is not None for r in exposure["canaries"])  # ranks where the budget allows
    from canaryaudit.training.tokenizers import load_tokenizer

    tokenizer = load_tokenizer(ws / "models/bpe")
    for row in exposure["canaries"]:
        pieces = [tokenizer.decode([t]) for t in tokenizer.encode(_text(ws, row["canary_id"]))]
        merged |= any(sum(c.isdigit() for c in p) >= 2 for p in pieces)
    assert merged, "the BPE should merge digits of some canary"
    gate = json.loads((ws / "reports/gate.json").read_text())
    assert all(r["value"] is not None for r in gate["rules"])
    html = (ws / "reports/index.html").read_text(encoding="utf-8")
    assert "bpe" in html and "exposure" in html.lower()


def _text(ws, canary_id: str) -> str:
    from canaryaudit.io import read_jsonl

    return next(c["text"] for c in read_jsonl(ws / "data/canaries/canaries.jsonl") if c["canary_id"] == canary_id)
