"""reports/summary.json: the audit's headline numbers, flat enough for ``dvc metrics show/diff``.

Shape: ``{"gate": {...}, "variants": {VARIANT: {...}}, "missing_inputs": n}``.
Per variant: test loss (nats/token) and perplexity, parameters, epsilon and
delta (null without DP), the highest exposure in bits per insertion count
(``x64``; ``held_out`` for canaries never trained on; best estimator = exact
when known, else extrapolation), canaries extracted by the shortest-path
search, unique memorized samples, PII items and canaries in them, the best
membership AUC and the empirical epsilon lower bound. A value not measured is null.

MLflow metric names (one scheme, :func:`variant_metrics`): a headline number of a variant
is ``variant.VARIANT.KEY`` with KEY as in summary.json, dotted (``variant.dp.epsilon``,
``variant.dp.max_exposure_bits.x64``, ``variant.dp.max_exposure_bits.held_out``), in the
pipeline's parent run, in a sweep point's run and in the variant's nested stage runs; the
gate is ``gate.passed`` and ``gate.failed``. ``canaryaudit compare`` reads these names back.
The sweep's table has the same numbers, computed here (:func:`variant_summary`) from each
point's own stage reports.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from canaryaudit.report import measures
from canaryaudit.report.inputs import ReportInputs
from canaryaudit.tracking import numeric_metrics

METRIC_PREFIX = "variant"


def insertion_key(count: int) -> str:
    return "held_out" if count == 0 else f"x{count}"


def _integer(value: Any) -> int | None:
    number = measures.as_number(value)
    return int(number) if number is not None else None


def variant_summary(inputs: ReportInputs, variant: str) -> dict[str, Any]:
    train = inputs.train.get(variant)
    exposure = inputs.exposure.get(variant)
    extract = inputs.extract.get(variant)
    auc, auc_metric = measures.membership_auc(extract)
    return {
        "test_loss": measures.as_number(train.get("test_loss")) if train else None,
        "test_perplexity": measures.test_perplexity(train),
        "parameters": _integer(train.get("parameters")) if train else None,
        "epsilon": measures.accountant_epsilon(train),
        "delta": measures.as_number(train.get("delta")) if train else None,
        "max_exposure_bits": {
            insertion_key(k): measures.max_exposure(exposure, k) for k in measures.insertion_counts(exposure)
        },
        "extracted_canaries": measures.extracted_canaries(exposure),
        "unique_memorized": measures.unique_memorized(extract),
        "memorized_pii": measures.memorized_pii_count(extract),
        "memorized_canaries": measures.memorized_canary_count(extract),
        "best_mia_auc": auc,
        "best_mia_metric": auc_metric,
        "empirical_epsilon": measures.empirical_epsilon(extract),
    }


def build_summary(inputs: ReportInputs, gate: Mapping[str, Any]) -> dict[str, Any]:
    failed = [r["name"] for r in gate.get("rules", []) if not r.get("passed")]
    return {
        "gate": {"passed": bool(gate.get("passed")), "rules": len(gate.get("rules", [])), "failed": len(failed)},
        "variants": {v: variant_summary(inputs, v) for v in inputs.variants},
        "missing_inputs": len(inputs.missing) + len(inputs.invalid),
    }


def flat_headline(entry: Mapping[str, Any]) -> dict[str, Any]:
    """One variant's summary as dotted keys (``max_exposure_bits.x64``), unmeasured values left out."""
    out: dict[str, Any] = {}
    for key, value in entry.items():
        if isinstance(value, Mapping):
            out.update({f"{key}.{k}": v for k, v in flat_headline(value).items()})
        elif value is not None:
            out[key] = value
    return out


def variant_metrics(variant: str, entry: Mapping[str, Any]) -> dict[str, float]:
    """MLflow metrics of one variant's headline numbers: ``variant.VARIANT.KEY`` (numbers only)."""
    return numeric_metrics(entry, f"{METRIC_PREFIX}.{variant}")


def summary_metrics(summary: Mapping[str, Any]) -> dict[str, float]:
    """MLflow metrics of the summary: ``variant.dp.max_exposure_bits.x64``, ``gate.passed`` (1/0), ..."""
    metrics = numeric_metrics(summary.get("variants", {}), METRIC_PREFIX)
    gate = summary.get("gate", {})
    metrics["gate.passed"] = 1.0 if gate.get("passed") else 0.0
    metrics["gate.failed"] = float(gate.get("failed", 0))
    return metrics


def complete_parent_run(tracker: Any, run_id: str, summary_path: Path) -> bool:
    """Give a parent run the headline metrics it lacks because DVC skipped the report stage; True if logged.

    ``dvc repro`` skips stages whose inputs did not change, so their numbers are not logged again; the
    committed ``reports/summary.json`` is then current (the repro succeeded) and holds them. A run that
    logged nothing at all is left empty (it is deleted as a no-op).
    """
    run = tracker.client.get_run(run_id)
    if "gate.passed" in run.data.metrics or tracker.logged_nothing(run_id) or not summary_path.is_file():
        return False
    summary = json.loads(summary_path.read_text(encoding="utf-8"))
    tracker.log_metrics(run_id, summary_metrics(summary))
    tracker.client.set_tag(run_id, "canaryaudit.summary_from", f"{summary_path.name} (report stage up to date)")
    return True
