"""``canaryaudit compare``: audit runs side by side, one row per (pipeline run, variant), from the MLflow store.

Numbers come from the parent run's summary metrics, logged by the report stage
(``variant.VARIANT.KEY``, see :mod:`canaryaudit.report.summary`). A run that
ended before the report stage falls back to what its nested stage runs logged
under the same names (``train@VARIANT``: test perplexity, epsilon, parameters;
``exposure@VARIANT``: exposure, extracted canaries; ``extract@VARIANT``: memorized
samples, membership AUC). Exposure is in bits (higher = more memorized),
epsilon in nats (empty = trained without DP).
"""

from __future__ import annotations

import csv
import io
import time
from collections.abc import Mapping, Sequence
from typing import Any

from canaryaudit.report.summary import METRIC_PREFIX
from canaryaudit.tracking import pipeline_runs

FIXED_COLUMNS = ("run", "started", "status", "gate", "variant", "model", "parameters", "epsilon", "test_perplexity")
TAIL_COLUMNS = ("extracted_canaries", "memorized_samples", "mia_auc")


def variant_metrics(metrics: Mapping[str, float]) -> dict[str, dict[str, float]]:
    """``{"variant.dp.max_exposure_bits.x64": v}`` -> ``{"dp": {"max_exposure_bits.x64": v}}``."""
    out: dict[str, dict[str, float]] = {}
    for key, value in metrics.items():
        prefix, _, rest = key.partition(".")
        variant, _, name = rest.partition(".")
        if prefix == METRIC_PREFIX and variant and name:
            out.setdefault(variant, {})[name] = value
    return out


def _model_label(tags: Mapping[str, str], variant: str, child_params: Mapping[str, str]) -> str:
    tagged = tags.get(f"canaryaudit.model.{variant}")
    if tagged:
        return tagged
    for prefix in ("train.model.", "model."):  # section-prefixed, or as runs before that logged them
        if f"{prefix}arch" in child_params:
            layers, width = child_params.get(f"{prefix}layers", "?"), child_params.get(f"{prefix}width", "?")
            return f"{child_params[prefix + 'arch']} {layers}x{width}"
    return ""


def _from_children(children: Sequence[Any]) -> dict[str, dict[str, Any]]:
    """Per variant: the headline numbers its nested stage runs logged (``variant.VARIANT.KEY``, the same
    names as the parent's), and the train run's params, for runs without a report summary."""
    found: dict[str, dict[str, Any]] = {}
    for child in children:
        variant = child.data.tags.get("canaryaudit.variant")
        if not variant:
            continue
        entry = found.setdefault(variant, {"metrics": {}, "params": {}})
        if child.data.tags.get("canaryaudit.stage") == "train":
            entry["params"].update(child.data.params)
        entry["metrics"].update(variant_metrics(child.data.metrics).get(variant, {}))
    return found


def rows_for_run(run: Any, children: Sequence[Any]) -> list[dict[str, Any]]:
    """One row per variant of a pipeline run."""
    tags, metrics = run.data.tags, run.data.metrics
    summary = variant_metrics(metrics)
    fallback = _from_children(children)
    base = {"run": run.info.run_id[:8], "status": run.info.status,
            "started": time.strftime("%Y-%m-%d %H:%M", time.localtime(run.info.start_time / 1000)),
            "gate": tags.get("canaryaudit.gate", "")}
    rows = []
    for variant in sorted(set(summary) | set(fallback)):
        values = {**fallback.get(variant, {}).get("metrics", {}), **summary.get(variant, {})}
        model = _model_label(tags, variant, fallback.get(variant, {}).get("params", {}))
        row = {**base, "variant": variant, "model": model,
               "parameters": values.get("parameters"), "epsilon": values.get("epsilon"),
               "test_perplexity": values.get("test_perplexity"), "extracted_canaries": values.get("extracted_canaries"),
               "memorized_samples": values.get("unique_memorized"), "mia_auc": values.get("best_mia_auc")}
        for key, value in values.items():
            if key.startswith("max_exposure_bits."):
                row[f"exposure_{key.rpartition('.')[2]}"] = value
        rows.append(row)
    if not rows:
        rows.append({**base, "variant": "", "model": "(no variant metrics logged)"})
    return rows


def _exposure_columns(rows: Sequence[Mapping[str, Any]]) -> list[str]:
    keys = {k for row in rows for k in row if k.startswith("exposure_")}

    def order(key: str) -> int:
        suffix = key.removeprefix("exposure_")
        return -1 if suffix == "held_out" else int(suffix.lstrip("x") or 0)

    return sorted(keys, key=order)


def columns(rows: Sequence[Mapping[str, Any]]) -> list[str]:
    return [*FIXED_COLUMNS, *_exposure_columns(rows), *TAIL_COLUMNS]


def _cell(value: Any, column: str) -> str:
    if value is None or value == "":
        return ""
    if isinstance(value, float):
        if column in ("parameters", "extracted_canaries", "memorized_samples"):
            return f"{value:,.0f}"
        if column == "mia_auc":
            return f"{value:.3f}"
        if column == "epsilon":
            return f"{value:.3g}"
        return f"{value:.2f}"
    return str(value)


def format_table(rows: Sequence[Mapping[str, Any]]) -> str:
    """A fixed-width table; text columns left-aligned, numbers right-aligned."""
    cols = columns(rows)
    cells = [[_cell(row.get(c), c) for c in cols] for row in rows]
    widths = [max(len(c), *(len(r[i]) for r in cells)) for i, c in enumerate(cols)]
    numeric = [not isinstance(next((row.get(c) for row in rows if row.get(c) not in (None, "")), ""), str) for c in cols]

    def line(values: Sequence[str]) -> str:
        return "  ".join(v.rjust(w) if num else v.ljust(w) for v, w, num in zip(values, widths, numeric)).rstrip()

    return "\n".join([line(cols), line(["-" * w for w in widths]), *(line(r) for r in cells)])


def to_csv(rows: Sequence[Mapping[str, Any]]) -> str:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=columns(rows), extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    return buffer.getvalue()


def comparison_rows(experiment: str, last: int, uri: str) -> list[dict[str, Any]] | None:
    """Rows of the ``last`` most recent pipeline runs of ``experiment``, newest first; None if no such experiment."""
    found = pipeline_runs(experiment, last, uri)
    if found is None:
        return None
    parents, children = found
    return [row for run in parents for row in rows_for_run(run, children.get(run.info.run_id, []))]


