"""exposure@VARIANT as DVC runs it, and the scientific check on the default pipeline."""

import csv
import math

import pytest

from canaryaudit.io import read_json
from tests.conftest import REPO, run_stage, write_params


def run_exposure(ws, variant):
    return run_stage(ws, "exposure", "--variant", variant, "--model", f"models/{variant}",
                     "--report", f"reports/exposure/{variant}.json", "--csv", f"reports/exposure/{variant}.csv")


def test_exposure_stage_on_tiny_data(tiny_pipeline):
    """What exposure@nonprivate wrote in the shared tiny pipeline (DVC ran the stage script)."""
    workspace = tiny_pipeline.root
    report = read_json(workspace / "reports/exposure/nonprivate.json")
    assert len(report["canaries"]) == 2 * 3 * 2 + 8
    assert set(report["by_insertions"]) == {"0", "1", "2", "5"}  # held-out audit canaries have 0 insertions
    for fmt in ("ssn", "number"):
        info = report["formats"][fmt]
        assert info["space_size"] == 10**9 and info["references"] == 500
        assert info["extraction"]["nodes_expanded"] <= 2_000
    log2_refs = math.log2(500)
    for row in report["canaries"]:
        assert row["exposure_interpolation"] <= log2_refs + 1e-12  # at most log2(500 references)
        assert row["exposure_interpolation_lower_bound"] is (row["exposure_interpolation"] == pytest.approx(log2_refs))
        assert 0 <= row["exposure_extrapolation"] <= 9 * math.log2(10)  # capped at log2|R|
        assert row["exposure_extrapolation_lower_bound"] is (row["exposure_extrapolation_raw"] > 9 * math.log2(10))
        if row["exact_rank"] is None:
            assert row["exact_rank_note"], row  # every canary without an exact rank says why
        else:
            assert row["exposure_exact"] == pytest.approx(9 * math.log2(10) - math.log2(row["exact_rank"]))
        assert row["extracted"] is (row["extraction_position"] is not None)
        assert row["extracted_top1"] is (row["extraction_position"] == 1)
    assert report["extracted"] == sum(r["extracted"] for r in report["canaries"] if r["included"])
    assert "top K" in report["extraction_definition"]
    with open(workspace / "reports/exposure/nonprivate.csv") as handle:
        assert len(list(csv.DictReader(handle))) == len(report["canaries"])


@pytest.mark.slow(minutes=6)
def test_default_pipeline_exposure_grows_with_insertions_and_dp_stays_low(tmp_path):
    """Scientific check on the default params: the default data, canaries and training, exposure by the
    default estimators. The exact rank and the shortest-path search are switched off here: this test reads
    neither (they are checked against brute force in test_search*.py), and they are 70 % of the stage's time."""
    import shutil

    import yaml

    ws = tmp_path / "ws"
    shutil.copytree(REPO / "stages", ws / "stages")
    params = yaml.safe_load((REPO / "params.yaml").read_text(encoding="utf-8"))
    params["exposure"]["exact_rank"]["enabled"] = False
    params["exposure"]["extraction"]["enabled"] = False
    write_params(ws / "params.yaml", params)
    for stage in ("prepare", "sanitize", "canaries"):
        run_stage(ws, stage)
    by = {}
    for variant in ("nonprivate", "dp"):
        run_stage(ws, "train", "--variant", variant, "--out", f"models/{variant}", "--report",
                  f"reports/train/{variant}.json", "--plot", f"reports/train/{variant}_loss.csv")
        run_exposure(ws, variant)
        by[variant] = read_json(ws / f"reports/exposure/{variant}.json")["by_insertions"]
    means = [by["nonprivate"][str(k)]["interpolation"]["mean"] for k in (1, 4, 16, 64)]
    assert means[3] > means[2] > means[0], means  # grows with insertion count
    assert means[3] > 10
    dp64 = by["dp"]["64"]["interpolation"]["mean"]
    assert by["nonprivate"]["64"]["extrapolation"]["mean"] > by["dp"]["64"]["extrapolation"]["mean"] + 8
    assert means[3] > dp64 + 8, (means, dp64)
    for variant in ("nonprivate", "dp"):  # held-out canaries (never trained on) rank like random candidates
        held = by[variant]["0"]["interpolation"]
        # exposure of a uniform rank: -log2 U, mean 1/ln 2 bits, standard deviation 1/ln 2 (closed form)
        chance, standard_error = 1 / math.log(2), (1 / math.log(2)) / math.sqrt(held["n"])
        assert abs(held["mean"] - chance) < 5 * standard_error, (variant, held, chance)
