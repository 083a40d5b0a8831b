"""The HTML report: inputs, masking, figures, summary, rendering and escaping.

``make_reports`` writes a realistic reports folder (the shapes of a default run's
files; extract/V.json exactly as in the contract) for this file, test_gate.py and
test_report_browser.py.
"""

from __future__ import annotations

import csv
import json
import math
import random
import re
import statistics
from pathlib import Path
from typing import Any

import pytest

from canaryaudit.config import Params, parse_params
from canaryaudit.io import write_csv, write_json

MALICIOUS = '<script>alert(1)</script></table><a href="javascript:alert(2)">click</a>'
LOG2_R = math.log2(1e9)  # 29.897 bits: 9 random digits

# ---------------------------------------------------------------- realistic report files


NOISE_SECRECY = ("DP noise was seeded from train.seed: epsilon assumes that seed is secret <and unknown>; "
                 "anyone holding params.yaml can regenerate the noise")


def _train(variant: str, dp: bool) -> dict[str, Any]:
    small = variant == "reference"  # 1 layer x 64: fewer parameters, higher loss
    loss = 1.0392 if dp else (1.1046 if small else 0.7217060791429624)  # DP fine-tuned from the public base
    return {
        "delta": 1.826817683595177e-05 if dp else None, "epochs": 3, "epsilon": 0.7221971084569908 if dp else None,
        "noise_multiplier": 1.0 if dp else None, "parameters": 58240 if small else 415232, "peak_memory_bytes": 777928704,
        "resumed_from_epoch": 0, "steps": 516, "stopped_early": False,
        "test_loss": loss, "test_perplexity": math.exp(loss),
        "tokens_per_second": 22837.9, "train_seconds": 56.85 if dp else 46.27, "valid_loss": 2.84 if dp else 0.73,
        "variant": variant,
        **({"secure_noise": False, "noise_secrecy": NOISE_SECRECY} if dp else {}),
    }


REFERENCES = 10_000
LOG2_REFS = math.log2(REFERENCES)  # 13.288 bits: where interpolation saturates
EXTRACTION_DEFINITION = (
    "a canary is extracted when the shortest-path search (Secret Sharer 8.1) ranks it among the top K "
    "likeliest fillings of its format, K = exposure.extraction.top_k or, by default, the number of canaries "
    "of that format in the training data; its position is its rank among all fillings (1 = the model's "
    "single likeliest filling, also counted as extracted_top1)"
)
#: nonprivate/reference: where the shortest-path search placed the extracted canaries (1-based)
POSITIONS = {"number-x64-0": 1, "ssn-x64-0": 2}
EXACT_STOPPED = ("not searched: the search for a likelier canary of this format stopped (exact rank search stopped "
                 "after 100000 rows), and this canary is less likely, so its search would be larger")
EXACT_SKIPPED = "skipped: estimated rank 5.06e+08 > exposure.exact_rank.max_estimated_rank 100000"


def _canary_row(fmt: str, k: int, i: int, exposure: float, included: bool, audit: bool,
                position: int | None) -> dict[str, Any]:
    """One row of exposure/V.json (and V.csv), every field of the contract.

    A memorized canary (exposure > 20 bits) saturates interpolation at log2(references) and
    overshoots log2|R| with the raw extrapolation (capped, a lower bound). Of those, the extracted
    ones have an exact rank (their position); the others' exact search was stopped, so their best
    exposure is the capped extrapolation.
    """
    raw = exposure + (4.0 if exposure > 20 else 0.01)
    exact = LOG2_R - math.log2(position) if position else None
    px = 42.0 - exposure
    note = "" if exact is not None else (EXACT_STOPPED if exposure > 20 else EXACT_SKIPPED)
    return {
        "audit": audit, "canary_id": f"{fmt}-{'audit' if audit else f'x{k}'}-{i}",
        "exact_px_bits": px if exact is not None else None, "exact_rank": position, "exact_rank_note": note,
        "exact_rank_rows": 61234 if exact is not None else None, "exposure_exact": exact,
        "exposure_extrapolation": min(raw, LOG2_R), "exposure_extrapolation_lower_bound": raw > LOG2_R,
        "exposure_extrapolation_raw": raw,
        "exposure_interpolation": min(exposure, LOG2_REFS), "exposure_interpolation_lower_bound": exposure >= LOG2_REFS,
        "extracted": position is not None, "extracted_top1": position == 1, "extraction_position": position,
        "format": fmt, "included": included, "insertions": k if included else 0, "px_bits": px,
    }


def _by_insertions(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """by_insertions as the exposure stage writes it: per count and estimator mean, median, min, max, n, lower bounds."""
    out = {}
    for k in sorted({r["insertions"] for r in rows}):
        group = [r for r in rows if r["insertions"] == k]
        stats: dict[str, Any] = {}
        for est in ("interpolation", "extrapolation", "exact"):
            measured = [r for r in group if r[f"exposure_{est}"] is not None]
            values = [r[f"exposure_{est}"] for r in measured]
            stats[est] = ({"max": max(values), "mean": sum(values) / len(values), "median": statistics.median(values),
                           "min": min(values), "n": len(values),
                           "lower_bounds": sum(bool(r.get(f"exposure_{est}_lower_bound")) for r in measured)}
                          if values else None)
        out[str(k)] = {"canaries": len(group), **stats, "extracted_fraction": sum(r["extracted"] for r in group) / len(group)}
    return out


def _formats(rows: list[dict[str, Any]], dp: bool) -> dict[str, Any]:
    out = {}
    for name in ("number", "ssn"):
        top_k = sum(r["included"] for r in rows if r["format"] == name)  # the default K: the format's included canaries
        confirmed = top_k if not dp else 3
        search = {"confirmed": confirmed, "iterations": 394, "model_calls": 392, "model_rows": 99947,
                  "nodes_expanded": 99948, "seconds": 14.0, "top_k": top_k, "top_px_bits": 17.3,
                  "unconfirmed_popped": 0 if confirmed == top_k else 2, "within_budget": confirmed == top_k}
        out[name] = {"extraction": search, "exact_rescored_rows": 61234, "log2_references": LOG2_REFS,
                     "log2_space_size": LOG2_R, "model_calls": 774, "model_rows": 466194, "reference_px_mean": 33.7,
                     "reference_px_std": 2.8, "references": REFERENCES,
                     "skew_normal_fit": {"loc": 32.0, "scale": 3.27, "shape": 0.86}, "space_size": 1000000000}
    return out


def _exposure(variant: str, dp: bool, seed: int) -> dict[str, Any]:
    rng = random.Random(seed)
    rows = []
    for fmt in ("ssn", "number"):
        for k in (1, 4, 16, 64):
            for i in range(2):
                memorized = 0.0 if dp else {1: 1.0, 4: 2.0, 16: 6.0, 64: 26.0}[k]
                exposure = memorized + rng.uniform(0.05, 3.0)
                position = None if dp else POSITIONS.get(f"{fmt}-x{k}-{i}")
                rows.append(_canary_row(fmt, k, i, exposure, True, False, position))
    for i in range(64):
        included = i % 2 == 0
        rows.append(_canary_row("number", 1, i, rng.uniform(0.05, 4.0), included, True, None))
    return {"by_insertions": _by_insertions(rows), "canaries": rows,
            "extracted": sum(r["extracted"] for r in rows if r["included"]),
            "extracted_top1": sum(r["extracted_top1"] for r in rows if r["included"]),
            "extraction_definition": EXTRACTION_DEFINITION, "formats": _formats(rows, dp), "variant": variant}


def _sample_text(rng: random.Random, i: int) -> tuple[str, list[dict[str, Any]]]:
    """A 256-character email-like sample with one (already masked) email address."""
    email = "*" * 14 + "om"
    head = f"From: {email}\nSubject: wire transfer {i}\n\nHi team, please find the payroll summary attached. "
    body = "".join(rng.choice("abcdefghij klmnopqrstuvwxyz") for _ in range(256 - len(head)))
    return head + body, [{"type": "email", "start": 6, "end": 6 + len(email)}]


MEMBERS_SOURCE = "segments of the sanitized training split without the inserted canaries"
NONMEMBERS_SOURCE = "segments of the held-out test split, cut and drawn the same way, as many as members"
LOWERCASE_REASON = ("100% of the scored texts are unchanged by lowercasing, so the lowercase ratio compares "
                    "a text with itself")
SELF_RATIO = ("no reference model: this variant is extract.reference_variant itself, and the ratio of a model to "
              "itself is identically 1")
DEGENERATE_AUC = 0.78  # lowercase: higher than any informative metric, so "best" must skip it


def make_extract(variant: str, seed: int, strong: bool, malicious: bool = True, top: int = 20) -> dict[str, Any]:
    """extract/V.json exactly as the contract gives it.

    lowercase is degenerate (an all-lowercase corpus) with the highest AUC; the reference variant
    is its own reference, so reference_ratio is skipped there.
    """
    rng = random.Random(seed)
    own_reference = variant == "reference"
    strategies = ("top_n", "temperature_decay", "prefix")
    metrics = tuple(m for m in ("perplexity", "reference_ratio", "zlib", "lowercase", "window", "min_k")
                    if m != "reference_ratio" or not own_reference)
    table = [{"strategy": s, "metric": m, "candidates": 1000, "top_k": 100,
              "memorized": rng.randint(5, 40) if strong else rng.randint(0, 2),
              "memorized_with_pii": rng.randint(0, 3) if strong else 0,
              "memorized_with_canary": rng.randint(0, 2) if strong else 0} for s in strategies for m in metrics]
    samples = []
    for i in range(top):
        text, pii = _sample_text(rng, i)
        if malicious and i == 0:
            text = MALICIOUS + text[len(MALICIOUS):]
            pii = [{"type": "email", "start": len(MALICIOUS) + 2, "end": len(MALICIOUS) + 18}]
        samples.append({"sample_id": f"top_n-{i}", "strategy": strategies[i % 3], "rank_metric": metrics[i % len(metrics)],
                        "rank": i + 1, "text": text, "memorized": i % 4 != 3, "span": [40, 180],
                        "k_eidetic": 1 + i % 5, "pii": pii, "canary_ids": ["number-x64-0"] if i == 2 else [],
                        "scores": {m: round(rng.uniform(0.5, 5), 3) for m in metrics}})

    def mia(auc: float, degenerate: str | None = None) -> dict[str, Any]:
        return {"auc": auc, "auc_ci": [auc - 0.03, auc + 0.03], "tpr_at_1pct_fpr": 0.05, "tpr_at_1pct_fpr_ci": [0.01, 0.09],
                "tpr_at_0_1pct_fpr": 0.01, "tpr_at_0_1pct_fpr_ci": [0.0, 0.03], "degenerate": degenerate is not None,
                "degenerate_reason": degenerate}

    def metric_entry(j: int, metric: str) -> dict[str, Any]:
        if metric == "lowercase":
            return mia(DEGENERATE_AUC, LOWERCASE_REASON)
        return mia(0.71 - 0.02 * j if strong else 0.51 + 0.005 * j)

    return {
        "variant": variant, "reference_variant": None if own_reference else "reference", "metrics": list(metrics),
        "skipped_metrics": {"reference_ratio": SELF_RATIO} if own_reference else {},
        "samples": {"generated": 3000, "tokens": 256, "per_strategy": {s: 1000 for s in strategies},
                    "generation_seconds": 12.3, "scoring_seconds": 4.5},
        "table": table, "unique_memorized": 40 if strong else 0,
        "memorized_pii": [{"type": "email", "masked": "**************om", "sample_id": "top_n-1"}] if strong else [],
        "memorized_canaries": ([{"canary_id": "number-x64-0", "format": "number", "insertions": 64, "sample_id": "top_n-2"}]
                               if strong else []),
        "top_samples": samples if strong else [],
        "membership": {"members": 500, "nonmembers": 500, "tokens": 128, "members_source": MEMBERS_SOURCE,
                       "nonmembers_source": NONMEMBERS_SOURCE,
                       "metrics": {m: metric_entry(j, m) for j, m in enumerate(metrics)}},
        "empirical_epsilon": {"canaries": 64, "guesses": 16, "correct": 12 if strong else 9, "delta": 1.8e-5, "p": 0.05,
                              "epsilon_lower_bound": 0.4 if strong else 0.0, "ceiling": 1.58,
                              "accountant_epsilon": None if strong else 0.72, "score": "-px_bits"},
        "metric_directions": "higher score = more likely memorized (every metric)",
    }


def roc_rows(seed: int, strong: bool) -> list[dict[str, Any]]:
    """extract/V_roc.csv rows (metric, fpr, tpr): concave curves, 60 points per metric, from (0,0) to (1,1)."""
    rows = []
    for j, metric in enumerate(("perplexity", "zlib", "min_k")):
        power = (0.45 + 0.1 * j) if strong else 0.95
        for i in range(61):
            fpr = 0.0 if i == 0 else 10 ** (-4 + 4 * i / 60)
            rows.append({"metric": metric, "fpr": fpr, "tpr": fpr**power})
    return rows


def make_reports(root: Path, variants: tuple[str, ...] = ("nonprivate", "dp", "reference"),
                 extract: bool = True, malicious: bool = True) -> Path:
    """A reports folder like a default run's (realistic numbers); returns it."""
    write_json(root / "prepare.json", {"description": "builtin synthetic emails (seed 1234)", "ground_truth": True,
                                       "source": "builtin:emails", "splits": {
                                           "test": {"bytes": 49367, "documents": 68}, "train": {"bytes": 401433, "documents": 544},
                                           "valid": {"bytes": 50062, "documents": 68}}})
    found = {"email": 1530, "phone": 1141, "ssn": 140, "credit_card": 150}
    write_json(root / "sanitize.json", {
        "actions": {t: "mask" for t in found}, "enabled": True, "detectors": list(found),
        "detection_quality": {**{t: {"precision": 1.0, "recall": 1.0, "truth": n, "detected": n, "detector": True}
                                 for t, n in found.items()},
                              "person_name": {"precision": None, "recall": 0.0, "truth": 4795, "detected": 0, "detector": False}},
        "splits": {s: {"documents_in": n, "documents_out": n, "dropped": 0, "found": found, "masked": found}
                   for s, n in (("train", 544), ("valid", 68), ("test", 68))}})
    write_json(root / "canaries.json", {"audit": 64, "canaries": 80, "copies_inserted": 375, "held_out": 29, "included": 51,
                                        "per_format": {"number": {"canaries": 72, "log2_space_size": LOG2_R},
                                                       "ssn": {"canaries": 8, "log2_space_size": LOG2_R}}})
    for n, variant in enumerate(variants):
        dp = variant == "dp"
        write_json(root / "train" / f"{variant}.json", _train(variant, dp))
        write_csv(root / "train" / f"{variant}_loss.csv", [{"epoch": e, "train_loss": 3.0 / e, "valid_loss": 3.1 / e} for e in (1, 2, 3)])
        write_json(root / "exposure" / f"{variant}.json", _exposure(variant, dp, seed=n))
        if extract:
            write_json(root / "extract" / f"{variant}.json", make_extract(variant, n, strong=not dp, malicious=malicious))
            write_csv(root / "extract" / f"{variant}_roc.csv", roc_rows(n, strong=not dp))
            write_json(root / "pii" / f"{variant}.json", make_pii(variant, leaks=not dp))
    return root


def _proportion(successes: int, trials: int, chance: float | None) -> dict[str, Any]:
    from scipy import stats
    ci = stats.binomtest(successes, trials).proportion_ci(method="exact")
    return {"trials": trials, "successes": successes, "rate": successes / trials, "ci_low": ci.low,
            "ci_high": ci.high, "chance": chance, "p_value_above_chance": None}


def make_pii(variant: str, leaks: bool) -> dict[str, Any]:
    """reports/pii/V.json: the leaking model beats chance on names and phones; the DP one does not."""
    wins = {"person_name": (62, 100), "phone": (31, 100), "ssn": (9, 80)} if leaks else \
        {"person_name": (11, 100), "phone": (9, 100), "ssn": (7, 80)}
    rebuilt = {"person_name": 14 if leaks else 0, "phone": 2 if leaks else 0, "ssn": 0}
    inference = {t: _proportion(k, n, 0.1) for t, (k, n) in wins.items()}
    inference["all"] = _proportion(sum(k for k, _ in wins.values()), sum(n for _, n in wins.values()), 0.1)
    recon = {t: _proportion(rebuilt[t], n, None) for t, (_, n) in wins.items()}
    recon["all"] = _proportion(sum(rebuilt.values()), sum(n for _, n in wins.values()), None)
    return {"variant": variant, "sanitized": True, "targets_from": "ground truth (data/raw/pii_truth.jsonl)",
            "targets": {t: n for t, (_, n) in wins.items()},
            "inference": {"candidates": 10, "tied_trials": 0, "types": inference},
            "reconstruction": {"types": recon, "examples": [{"type": "person_name", "masked": "***ie", "doc_id": "email-000001"}]
                               if leaks else []},
            "seconds": 21.5}


def default_params(**sections: Any) -> Params:
    raw: dict[str, Any] = {"train": {"variants": {"nonprivate": {}, "dp": {"dp": {"enabled": True, "noise_multiplier": 1.0}},
                                                  "reference": {"model": {"layers": 1, "width": 64}, "init": "scratch"}}}}
    raw.update(sections)
    return parse_params(raw)


def render(reports: Path, params: Params | None = None) -> tuple[str, dict[str, Any]]:
    from canaryaudit.gate import evaluate_gate
    from canaryaudit.report.inputs import load_inputs
    from canaryaudit.report.render import render_report

    params = params or default_params()
    inputs = load_inputs(reports, tuple(params.train.variants))
    gate = evaluate_gate(params.gate.rules, inputs)
    return render_report(inputs, params, gate), gate


# ---------------------------------------------------------------- masking


def test_mask_value_keeps_last_two_characters_and_length():
    from canaryaudit.report.masking import mask_value

    assert mask_value("jane@example.com") == "**************om"
    assert mask_value("ab") == "ab"
    assert mask_value("") == ""


def test_mask_spans_masks_raw_values_again_and_ignores_bad_spans():
    from canaryaudit.report.masking import mask_spans

    text = "call 415-555-2671 now"
    spans = [{"start": 5, "end": 17}, {"start": 30, "end": 40}, {"start": "x", "end": 3}]
    assert mask_spans(text, spans) == "call **********71 now"


def test_segments_split_at_memorized_and_pii_boundaries():
    from canaryaudit.report.masking import Segment, segments

    got = segments("abcdefghij", [2, 8], [{"start": 6, "end": 10}])
    assert got == [Segment("ab", False, False), Segment("cdef", True, False), Segment("gh", True, True),
                   Segment("ij", False, True)]


# ---------------------------------------------------------------- measures


def test_best_exposure_prefers_exact_then_extrapolation():
    from canaryaudit.report import measures

    report = {"canaries": [
        {"insertions": 64, "exposure_exact": 29.9, "exposure_extrapolation": 32.3},
        {"insertions": 64, "exposure_exact": None, "exposure_extrapolation": 24.2},
        {"insertions": 4, "exposure_exact": None, "exposure_extrapolation": 2.5},
    ]}
    assert measures.max_exposure(report, 64) == 29.9
    assert measures.max_exposure(report, 64, "extrapolation") == 32.3
    assert measures.max_exposure(report, 4, "exact") is None
    assert measures.mean_exposure(report, 64) == pytest.approx((29.9 + 24.2) / 2)
    assert measures.insertion_counts(report) == [4, 64]


def test_group_privacy_matches_hand_computed_values():
    from canaryaudit.report.measures import group_privacy

    eps, delta = group_privacy(0.5, 1e-5, 4)
    assert eps == 2.0
    assert delta == pytest.approx(4 * math.exp(1.5) * 1e-5)  # 1.7927e-4
    assert group_privacy(1.0, 1e-5, 2000)[1] == math.inf


def test_pareto_front_keeps_the_undominated_points():
    from canaryaudit.report.measures import pareto_front

    # (exposure, loss): b dominates c; a and b trade off.
    assert pareto_front([(1.0, 3.0), (20.0, 0.7), (25.0, 0.8)]) == [0, 1]


def test_membership_auc_default_is_the_strongest_metric():
    from canaryaudit.report.measures import membership_auc

    extract = {"membership": {"metrics": {"zlib": {"auc": 0.61}, "perplexity": {"auc": 0.7}, "min_k": {"auc": None}}}}
    assert membership_auc(extract) == (0.7, "perplexity")
    assert membership_auc(extract, "zlib") == (0.61, "zlib")
    assert membership_auc(extract, "window") == (None, "window")


# ---------------------------------------------------------------- inputs and summary


def test_load_inputs_lists_missing_and_unreadable_files(tmp_path):
    from canaryaudit.report.inputs import load_inputs

    reports = make_reports(tmp_path / "reports", variants=("nonprivate", "dp"), extract=False)
    (reports / "train" / "dp.json").write_text("{not json", encoding="utf-8")
    inputs = load_inputs(reports, ("nonprivate", "dp"))
    assert set(inputs.train) == {"nonprivate"}
    assert inputs.invalid and inputs.invalid[0].startswith("train/dp.json: ")
    assert "extract/dp.json" in inputs.missing and "extract/nonprivate_roc.csv" in inputs.missing
    assert inputs.found_any()


def test_summary_has_flat_numbers_per_variant(tmp_path):
    from canaryaudit.gate import evaluate_gate
    from canaryaudit.report.inputs import load_inputs
    from canaryaudit.report.summary import build_summary, summary_metrics

    params = default_params()
    inputs = load_inputs(make_reports(tmp_path / "reports"), tuple(params.train.variants))
    summary = build_summary(inputs, evaluate_gate(params.gate.rules, inputs))
    nonprivate, dp = summary["variants"]["nonprivate"], summary["variants"]["dp"]
    assert nonprivate["max_exposure_bits"]["x64"] == pytest.approx(LOG2_R)  # the extracted canary's exact exposure
    assert set(nonprivate["max_exposure_bits"]) == {"held_out", "x1", "x4", "x16", "x64"}
    assert nonprivate["extracted_canaries"] == 2 and dp["extracted_canaries"] == 0  # within the top K
    assert nonprivate["epsilon"] is None and dp["epsilon"] == pytest.approx(0.7222, abs=1e-4)
    assert nonprivate["unique_memorized"] == 40 and nonprivate["memorized_pii"] == 1
    assert nonprivate["best_mia_auc"] == pytest.approx(0.71) and nonprivate["best_mia_metric"] == "perplexity"
    assert dp["empirical_epsilon"] == 0.0
    assert summary["gate"] == {"passed": True, "rules": 7, "failed": 0}
    metrics = summary_metrics(summary)
    assert metrics["variant.nonprivate.max_exposure_bits.x64"] == pytest.approx(LOG2_R)
    assert metrics["gate.passed"] == 1.0
    assert "variant.nonprivate.epsilon" not in metrics  # null values are not logged


def test_each_nested_stage_run_logs_its_share_of_the_summary_under_the_same_names(tmp_path):
    from canaryaudit.report.inputs import VARIANT_JSON, load_inputs
    from canaryaudit.report.summary import build_summary, stage_metrics, summary_metrics

    params = default_params()
    inputs = load_inputs(make_reports(tmp_path / "reports"), tuple(params.train.variants))
    expected = {k: v for k, v in summary_metrics(build_summary(inputs, {"rules": []})).items()
                if k.startswith("variant.")}
    logged: dict[str, float] = {}
    for variant in params.train.variants:
        shares = {stage: stage_metrics(stage, variant, getattr(inputs, stage)[variant]) for stage in VARIANT_JSON}
        assert not set(shares["train"]) & set(shares["exposure"])  # each number comes from one stage's report
        assert {k.split(".", 2)[2] for k in shares["train"]} <= {"test_loss", "test_perplexity", "parameters",
                                                                 "epsilon", "delta"}
        assert f"variant.{variant}.max_exposure_bits.x64" in shares["exposure"]
        assert f"variant.{variant}.best_mia_auc" in shares["extract"]
        assert f"variant.{variant}.pii_inference_accuracy" in shares["pii"]
        for share in shares.values():
            logged.update(share)
    assert logged == expected  # together the nested runs hold exactly the parent run's variant metrics
    with pytest.raises(ValueError, match="no per-variant report for stage 'report'"):
        stage_metrics("report", "dp", {})


# ---------------------------------------------------------------- figures


def test_linear_ticks_are_round_numbers():
    from canaryaudit.report.figures import linear_ticks, log_ticks

    assert linear_ticks(0, 30) == [0, 5, 10, 15, 20, 25, 30]
    assert linear_ticks(0.7, 2.9) == [1.0, 1.5, 2.0, 2.5]
    assert log_ticks(1e-3, 1.0) == [1e-3, 1e-2, 1e-1, 1.0]


def test_scale_maps_ends_to_pixels_in_linear_and_log_space():
    from canaryaudit.report.figures import Scale

    linear = Scale(0.0, 10.0, 100.0, 200.0)
    assert (linear(0.0), linear(5.0), linear(10.0)) == (100.0, 150.0, 200.0)
    log = Scale(1e-3, 1.0, 0.0, 300.0, log=True)
    assert log(1e-2) == pytest.approx(100.0)


def test_chart_escapes_names_and_drops_non_positive_points_on_log_axes():
    from canaryaudit.report.figures import Axis, Chart, Series, render_chart

    svg = str(render_chart(Chart("t", Axis("x", log=True, lo=1e-3, hi=1.0), Axis("y", log=True, lo=1e-3, hi=1.0),
                                 [Series("<b>evil</b>", [(0.0, 0.0), (0.01, 0.1), (1.0, 1.0)], "#000")])))
    assert "<b>evil" not in svg and "&lt;b&gt;evil&lt;/b&gt;" in svg
    path = re.search(r'<path d="([^"]+)"', svg).group(1)
    assert path.count("L") == 1  # (0, 0) was dropped: two points left


# ---------------------------------------------------------------- rendering


def test_report_renders_every_section_with_the_numbers(tmp_path):
    html, gate = render(make_reports(tmp_path / "reports"))
    assert gate["passed"] is True
    assert "Privacy gate passed" in html
    for anchor in ("verdict", "glance", "run", "exposure", "privacy-utility", "canaries", "extraction", "membership",
                   "dp", "how-to-read", "params"):
        assert f'id="{anchor}"' in html
    assert "29.90" in html  # log2|R| exposure of the extracted canary, 2 decimals
    assert "builtin:emails" in html and "number-audit-0" in html
    assert html.count('class="sample"') == 30  # the 15 memorized of 20 top samples, nonprivate and reference
    assert "<script" not in html.lower().replace("&lt;script", "")
    assert "http://" not in html.replace('xmlns="http://www.w3.org/2000/svg"', "")
    assert "k·e<sup>(k−1)ε</sup>·δ" in html and "6.38e-04" in html  # group delta, k=4: 4 e^(3*0.7222) 1.827e-5
    assert len(html.encode()) < 5_000_000


def test_malicious_sample_text_renders_as_text(tmp_path):
    html, _ = render(make_reports(tmp_path / "reports"))
    assert "<script>alert(1)" not in html
    assert '<a href="javascript:' not in html
    # the memorized-span highlight starts inside the sample, so the escaped text comes in two pieces
    assert "&lt;script&gt;alert(1)&lt;/script&gt;&lt;/table&gt;&lt;a href" in html
    assert "=&#34;javascript:alert(2)&#34;&gt;click&lt;/a&gt;" in html


def test_pii_in_a_sample_is_masked_even_if_upstream_did_not(tmp_path):
    reports = make_reports(tmp_path / "reports", malicious=False)
    path = reports / "extract" / "nonprivate.json"
    data = json.loads(path.read_text())
    sample = data["top_samples"][1]
    sample["text"] = "From: jane.doe@example.com" + sample["text"][26:]
    sample["pii"] = [{"type": "email", "start": 6, "end": 26}]
    path.write_text(json.dumps(data))
    html, _ = render(reports)
    assert "jane.doe@example.com" not in html
    assert "******************om" in html


def test_failed_gate_is_explained_one_sentence_per_rule(tmp_path):
    reports = make_reports(tmp_path / "reports")
    params = default_params(gate={"rules": [
        {"check": "exposure", "variant": "nonprivate", "insertions": 64, "max": 20.0},
        {"check": "memorized_pii", "variant": "nonprivate", "max": 0},
        {"check": "test_perplexity", "variant": "dp", "max": 50.0},
    ]})
    html, gate = render(reports, params)
    assert gate["passed"] is False
    assert "Privacy gate failed: 2 of 3 rules" in html
    assert "highest exposure of nonprivate canaries inserted 64x (best) is 29.9 bits &gt; 20" in html
    assert "PII items in verified memorized samples of nonprivate is 1 &gt; 0" in html


def test_missing_stage_outputs_render_what_exists_and_say_what_is_missing(tmp_path):
    reports = make_reports(tmp_path / "reports", extract=False)
    html, gate = render(reports)
    assert "Incomplete audit" in html and "extract/dp.json" in html
    assert "No extraction report yet" in html
    assert 'id="exposure"' in html and "Exposure vs insertion count" in html
    assert gate["passed"] is False  # the membership and PII rules have no measurement
    assert any(r["value"] is None and "extract/dp.json is missing" in r["reason"] for r in gate["rules"])


def test_empty_reports_folder_still_renders(tmp_path):
    (tmp_path / "reports").mkdir()
    html, gate = render(tmp_path / "reports")
    assert "Privacy gate failed: 7 of 7 rules" in html
    assert "prepare.json" in html and "No exposure report yet" in html


# ---------------------------------------------------------------- the stage


def test_report_stage_writes_html_summary_and_gate(tmp_path, monkeypatch):
    import subprocess
    import sys

    import yaml

    from tests.conftest import REPO

    reports = make_reports(tmp_path / "reports")
    raw = {"train": {"variants": {"nonprivate": {}, "dp": {"dp": {"enabled": True, "noise_multiplier": 1.0}},
                                  "reference": {"model": {"layers": 1, "width": 64}, "init": "scratch"}}}}
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(raw), encoding="utf-8")
    env = {**__import__("os").environ, "CANARYAUDIT_TRACKING": "0"}
    proc = subprocess.run([sys.executable, str(REPO / "stages" / "report.py"), "--params", "params.yaml",
                           "--reports", "reports", "--data", "data", "--out", "reports/index.html",
                           "--summary", "reports/summary.json", "--gate", "reports/gate.json"],
                          cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert "gate PASSED" in proc.stdout and "reports/index.html" in proc.stdout
    gate = json.loads((reports / "gate.json").read_text())
    assert gate["passed"] is True and [r["name"] for r in gate["rules"]] == [
        "dp-exposure-x64", "dp-extracted_canaries", "dp-memorized_pii", "dp-membership_auc", "dp-test_perplexity_ratio",
        "dp-pii_inference_accuracy", "dp-pii_reconstructed"]
    summary = json.loads((reports / "summary.json").read_text())
    assert summary["variants"]["dp"]["extracted_canaries"] == 0
    assert (reports / "index.html").stat().st_size > 50_000


def test_roc_csv_rows_parse_into_sorted_curves():
    from canaryaudit.report.sections import roc_curves

    rows = [{"metric": "zlib", "fpr": "0.5", "tpr": "0.7"}, {"metric": "zlib", "fpr": "0", "tpr": "0"},
            {"metric": "zlib", "fpr": "x", "tpr": "1"}]
    assert roc_curves(rows) == {"zlib": [(0.0, 0.0), (0.5, 0.7)]}


def test_made_roc_csv_has_contract_columns(tmp_path):
    reports = make_reports(tmp_path / "reports", variants=("dp",))
    with (reports / "extract" / "dp_roc.csv").open() as handle:
        assert next(csv.reader(handle)) == ["metric", "fpr", "tpr"]


# ---------------------------------------------------------------- lower bounds, estimators, medians, extraction


def _read(reports: Path, part: str, variant: str) -> dict[str, Any]:
    return json.loads((reports / part / f"{variant}.json").read_text())


def _write(reports: Path, part: str, variant: str, data: dict[str, Any]) -> None:
    (reports / part / f"{variant}.json").write_text(json.dumps(data))


def _table_row(html: str, canary_id: str) -> list[str]:
    """The cells of the first canary-table row of ``canary_id`` (the first variant's table)."""
    row = re.search(rf"<tr><td><code>{re.escape(canary_id)}</code>.*?</tr>", html, re.S).group(0)
    return re.findall(r"<td[^>]*>(.*?)</td>", row, re.S)


def _section(html: str, anchor: str) -> str:
    start = html.index(f'<section id="{anchor}">')
    return html[start:html.index("</section>", start)]


def _best(row: dict[str, Any]) -> float:
    """The best estimator, written out here independently of measures: exact when known, else extrapolation."""
    return row["exposure_exact"] if row["exposure_exact"] is not None else row["exposure_extrapolation"]


def test_fixture_rows_match_the_exposure_stage_schema(tmp_path):
    from canaryaudit.schemas import EXPOSURE, validate_records

    reports = make_reports(tmp_path / "reports")
    for variant in ("nonprivate", "dp", "reference"):
        validate_records(EXPOSURE, _read(reports, "exposure", variant)["canaries"], f"exposure/{variant}.json")


def test_lower_bounds_and_the_estimator_of_a_best_value():
    from canaryaudit.report.sections import exposure_cell, is_lower_bound, max_cell, median_cell

    capped = {"exposure_exact": None, "exposure_extrapolation": LOG2_R, "exposure_extrapolation_lower_bound": True,
              "exposure_interpolation": LOG2_REFS, "exposure_interpolation_lower_bound": True}
    exact = {**capped, "exposure_exact": 28.9}
    assert is_lower_bound(capped, "best") and is_lower_bound(capped, "interpolation")
    assert not is_lower_bound(exact, "best") and not is_lower_bound(exact, "exact")  # exact is never a bound
    assert exposure_cell(capped) == {"value": LOG2_R, "bound": True, "estimator": "extrapolation"}
    assert exposure_cell(exact) == {"value": 28.9, "bound": False, "estimator": "exact"}
    cells = sorted([exposure_cell(r) for r in (exact, capped, {**capped, "exposure_exact": LOG2_R})],
                   key=lambda c: (c["value"], c["bound"]))
    assert median_cell(cells) == {"value": LOG2_R, "bound": False, "estimator": "exact"}  # ties: exact first
    assert max_cell(cells)["bound"] is False
    assert median_cell([cells[0], cells[2]]) == {"value": pytest.approx((28.9 + LOG2_R) / 2), "bound": True,
                                      "estimator": "exact + extrapolation"}
    assert median_cell([]) is None and max_cell([]) is None


def test_capped_extrapolation_renders_as_a_lower_bound_with_its_estimator(tmp_path):
    reports = make_reports(tmp_path / "reports")
    row = next(r for r in _read(reports, "exposure", "nonprivate")["canaries"] if r["canary_id"] == "number-x64-1")
    assert row["exposure_extrapolation_lower_bound"] and row["exposure_exact"] is None  # best = capped extrapolation
    html, _ = render(reports)
    cells = _table_row(html, "number-x64-1")
    interpolation, extrapolation, exact, best = cells[4:8]
    assert interpolation == "≥ 13.29"  # saturated at log2(10000 references)
    assert extrapolation == "≥ 29.90" and exact == "—"
    assert best == '<strong>≥ 29.90<span class="est">extrapolation</span></strong>'
    assert f"raw skew-normal estimate {row['exposure_extrapolation_raw']:.2f} bits, capped at log2|R|" in html
    extracted = _table_row(html, "number-x64-0")
    assert extracted[6] == "29.90"  # the exact value: never a bound
    assert extracted[7] == '<strong>29.90<span class="est">exact</span></strong>'
    glance = _section(html, "glance")
    assert '29.9<span class="est" title="exact">exact</span>' in glance  # the highest at 64x is the exact one
    assert '<span class="est" title="extrapolation">extrap.</span>' in glance


def test_exposure_chart_plots_the_median_of_each_group(tmp_path):
    reports = make_reports(tmp_path / "reports")
    html, _ = render(reports)
    chart = _section(html, "exposure")
    markers = re.findall(r'<circle [^>]*data-y="([^"]+)"[^>]*><title>(\w+): median of (\d+) '
                         r"(held-out canaries|canaries inserted \d+×):", chart)
    assert len(markers) == 3 * 5  # 3 variants x 5 insertion counts
    for y, variant, n, group in markers:
        count = 0 if group.startswith("held-out") else int(group.split()[-1].rstrip("×"))
        values = [_best(r) for r in _read(reports, "exposure", variant)["canaries"] if r["insertions"] == count]
        assert int(n) == len(values)
        assert float(y) == pytest.approx(statistics.median(values), rel=1e-9), (variant, count)
    # 64x of nonprivate: 28.90 exact, 29.90 exact and two capped 29.90: the median is a lower bound
    assert re.search(r'data-lower-bound="true"><title>nonprivate: median of 4 canaries inserted 64×', chart)
    assert "median" in chart and "Canaries per count (n): held out 32, 1× 36, 4× 4, 16× 4, 64× 4" in chart
    assert "highest)" not in chart  # the old max line is gone


def test_extraction_definition_and_counts_at_top_1_and_top_k(tmp_path):
    from markupsafe import escape

    reports = make_reports(tmp_path / "reports")
    exposure = _read(reports, "exposure", "nonprivate")
    included = [r for r in exposure["canaries"] if r["included"]]
    top1 = sum(r["extraction_position"] == 1 for r in included)
    top_k = sum(r["extraction_position"] is not None for r in included)
    assert (top1, top_k) == (1, 2) and exposure["extracted_top1"] == top1 and exposure["extracted"] == top_k
    html, _ = render(reports)
    assert str(escape(EXTRACTION_DEFINITION)) in html
    canaries = _section(html, "canaries")
    assert f"nonprivate: 16 canaries + 64 audit; extracted: {top1} at position 1, {top_k} within the top K" in canaries
    assert "dp: 16 canaries + 64 audit; extracted: 0 at position 1, 0 within the top K" in canaries
    assert '<span class="badge fail">#1 (top 1)</span>' in _table_row(html, "number-x64-0")[-1]
    assert '<span class="badge fail">#2 of top 8</span>' in _table_row(html, "ssn-x64-0")[-1]  # K = 8 ssn canaries
    assert "not in top 40" in _table_row(html, "number-x64-1")[-1]
    assert f'<td class="num hot">{top1} / {top_k}</td>' in _section(html, "glance")
    assert "extracted_canaries (within the top K fillings of the shortest-path search)" in _section(html, "verdict")
    assert "model's top candidate" not in html


def test_degenerate_metric_is_marked_and_never_named_best(tmp_path):
    from markupsafe import escape

    reports = make_reports(tmp_path / "reports")
    metrics = _read(reports, "extract", "nonprivate")["membership"]["metrics"]
    assert max(metrics, key=lambda m: metrics[m]["auc"]) == "lowercase" and metrics["lowercase"]["degenerate"]
    html, _ = render(reports)
    membership = _section(html, "membership")
    nonprivate = membership[:membership.index("<h3>dp</h3>")]
    row = re.search(r"<tr><td>lowercase</td>.*?</tr>", nonprivate, re.S).group(0)
    assert f'<span class="badge warn" title="{escape(LOWERCASE_REASON)}">degenerate<sup>1</sup></span>' in row
    assert f"<li>lowercase: {escape(LOWERCASE_REASON)}</li>" in nonprivate
    assert "Best non-degenerate metric: <strong>perplexity</strong> (AUC 0.710)" in nonprivate
    assert "lowercase" not in re.search(r"Best non-degenerate metric: .*?</p>", nonprivate, re.S).group(0)
    assert '0.710 <span class="muted small">(perplexity)</span>' in _section(html, "glance")
    assert MEMBERS_SOURCE in nonprivate and NONMEMBERS_SOURCE in nonprivate
    reference = membership[membership.index("<h3>reference</h3>"):]
    assert f"<li>reference_ratio: {escape(SELF_RATIO)}</li>" in reference  # skipped metric with its reason
    # the default dp rule bounds the low end of the interval: the report says so, twice
    assert "membership_auc (best non-degenerate metric, low end of the 95% CI)" in _section(html, "verdict")
    assert "reads the <strong>low end of the 95% CI</strong> of min_k" in membership


def test_counts_in_sentences_are_pluralised(tmp_path):
    from canaryaudit.report.render import fmt_counted

    assert fmt_counted(1, "sample") == "1 sample" and fmt_counted(2, "sample") == "2 samples"
    assert fmt_counted(1234, "canary", "canaries") == "1,234 canaries" and fmt_counted(None, "guess", "guesses") == "— guesses"
    reports = make_reports(tmp_path / "reports")
    extract = _read(reports, "extract", "nonprivate")
    extract["unique_memorized"] = 1
    _write(reports, "extract", "nonprivate", extract)
    html, _ = render(reports)
    assert "<strong>1 unique verified memorized sample</strong>" in html
    assert "1 unique verified memorized samples" not in html
    assert "<strong>40 unique verified memorized samples</strong>" in html  # reference
    assert "below, how many contain PII" not in html  # the dangling sentence is gone; the breakdown is shown instead
    assert "how many of those memorized samples contain PII" in html


def test_how_to_read_states_the_chance_level_and_the_bounds(tmp_path):
    html, _ = render(make_reports(tmp_path / "reports"))
    howto = _section(html, "how-to-read")
    assert "1/ln 2 ≈ 1.44 bits" in howto and "about 1 bit" not in howto
    assert "exceed log2|R|" not in howto
    assert "saturates at log2(references)" in howto and "capped at log2|R|" in howto and "exact, never a bound" in howto


def test_group_privacy_labels_follow_delta_thresholds(tmp_path):
    from canaryaudit.report.sections import WEAK_DELTA, group_guarantee

    assert group_guarantee(None) is None and group_guarantee(math.inf) == "vacuous" and group_guarantee(1.0) == "vacuous"
    assert group_guarantee(0.305) == "weak" and group_guarantee(WEAK_DELTA * 1.01) == "weak"
    assert group_guarantee(WEAK_DELTA) == "ok" and group_guarantee(6.4e-4) == "ok"
    reports = make_reports(tmp_path / "reports")
    train = _read(reports, "train", "dp")
    train["epsilon"] = math.log(0.305 / (16 * train["delta"])) / 15  # k = 16: 16 e^(15 eps) delta = 0.305
    _write(reports, "train", "dp", train)
    html, _ = render(reports)
    row = re.search(r'<tr><td class="num">16</td>.*?</tr>', _section(html, "dp"), re.S).group(0)
    assert "0.305" in row and "weak (δ &gt; 0.001)" in row
    assert "meaningful" not in html


def test_dp_section_states_what_epsilon_assumes_about_the_noise_seed(tmp_path):
    html, _ = render(make_reports(tmp_path))
    dp = _section(html, "dp")
    escaped = NOISE_SECRECY.replace("<", "&lt;").replace(">", "&gt;")
    assert dp.count(escaped) == 1  # the dp variant only, escaped like every text
    assert NOISE_SECRECY not in html


# ---------------------------------------------------------------- auditor's sections: threat model, limitations, provenance


def test_provenance_hashes_match_the_files_and_are_rendered(tmp_path):
    import hashlib

    from canaryaudit.report.provenance import collect_provenance

    root = tmp_path
    (root / "data" / "sanitized").mkdir(parents=True)
    (root / "data" / "sanitized" / "train.jsonl").write_bytes(b'{"doc_id": "a", "text": "hello"}\n')
    (root / "models" / "dp").mkdir(parents=True)
    (root / "models" / "dp" / "model.safetensors").write_bytes(bytes(range(256)) * 10)
    (root / "params.yaml").write_text("data: {seed: 1}\n")
    import yaml

    (root / "dvc.lock").write_text(yaml.safe_dump({"schema": "2.0", "stages": {"train@dp": {
        "cmd": "python stages/train.py", "outs": [{"path": "models/dp", "md5": "abc123.dir", "size": 1}]}}}))
    prov = collect_provenance(root, root / "data", root / "models", root / "params.yaml", ["dp", "nonprivate"])
    sha = lambda p: hashlib.sha256(p.read_bytes()).hexdigest()  # noqa: E731
    assert prov["data_sha256"] == {"sanitized/train.jsonl": sha(root / "data/sanitized/train.jsonl")}
    assert prov["model_sha256"] == {"dp": sha(root / "models/dp/model.safetensors")}  # nonprivate: no file
    assert prov["params_sha256"] == sha(root / "params.yaml")
    assert prov["dvc_lock"] == {"train@dp": {"models/dp": "abc123.dir"}}
    assert prov["git"] is None  # not a checkout
    reports = make_reports(tmp_path / "reports")
    from canaryaudit.gate import evaluate_gate
    from canaryaudit.report.inputs import load_inputs
    from canaryaudit.report.render import render_report

    params = default_params()
    inputs = load_inputs(reports, tuple(params.train.variants))
    html = render_report(inputs, params, evaluate_gate(params.gate.rules, inputs), provenance=prov)
    for digest in (*prov["data_sha256"].values(), *prov["model_sha256"].values(), prov["params_sha256"], "abc123.dir"):
        assert digest in html
    assert "not a git checkout" in html


def test_git_state_reports_commit_and_dirty_flag(tmp_path):
    import subprocess

    from canaryaudit.report.provenance import git_state

    def git(*args):
        subprocess.run(["git", *args], cwd=tmp_path, check=True, capture_output=True)

    git("init", "-q")
    (tmp_path / "f.txt").write_text("a")
    git("add", "f.txt")
    git("-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "x")
    clean = git_state(tmp_path)
    assert len(clean["commit"]) == 40 and clean["dirty"] is False
    (tmp_path / "f.txt").write_text("b")
    assert git_state(tmp_path)["dirty"] is True


def test_threat_model_limitations_and_leaks_are_in_the_report(tmp_path):
    html, gate = render(make_reports(tmp_path / "reports"))
    assert 'id="threat-model"' in html and 'id="limitations"' in html and 'id="provenance"' in html
    assert "black-box log-probabilities" in html and "Extraction is a lower bound." in html
    assert "What leaks, whatever the rules judge" in html
    for variant, evidence in gate["leaks"].items():
        if evidence:
            assert f"<strong>{variant}</strong>: <span class=\"leaky\">leaks</span>" in html


def test_each_variant_keeps_its_colour_in_every_chart(tmp_path):
    from canaryaudit.report.figures import colour
    from canaryaudit.report.inputs import load_inputs
    from canaryaudit.report.sections import variant_colour

    reports = make_reports(tmp_path / "reports")
    inputs = load_inputs(reports, ("nonprivate", "dp", "reference"))
    assert [variant_colour(inputs, v) for v in ("nonprivate", "dp", "reference")] == [colour(0), colour(1), colour(2)]
    html, _ = render(reports)

    # the DP-only epsilon chart draws dp with dp's colour, not the first palette colour
    chart = html[html.index("test loss against epsilon"):]
    assert colour(1) in chart[:4000]
