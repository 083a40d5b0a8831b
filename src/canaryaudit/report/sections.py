"""The report's sections as plain data for the template (numbers stay numbers; the template formats them).

Each function takes the loaded inputs (and params where the reports do not say
it) and returns dicts and lists; charts are built with :mod:`figures`. Nothing
here escapes text: the template does, with autoescape on.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Mapping, Sequence
from typing import Any

from canaryaudit.config import Params
from canaryaudit.report import measures
from canaryaudit.report.figures import HALF_HEIGHT, HALF_WIDTH, Axis, Chart, RefLine, Series, bar_rows, colour, render_chart
from canaryaudit.report.inputs import ReportInputs
from canaryaudit.report.masking import mask_spans, mask_value, segments
from canaryaudit.report.summary import insertion_key


def _dict(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def variant_colour(inputs: ReportInputs, variant: str) -> str:
    """One colour per variant in every chart: by its position among all audited variants."""
    return colour(inputs.variants.index(variant)) if variant in inputs.variants else colour(len(inputs.variants))


# ---------------------------------------------------------------- verdict and the run


def verdict(gate: Mapping[str, Any]) -> dict[str, Any]:
    rules = [{**r, "detail": rule_detail(r)} for r in gate.get("rules", [])]
    failed = [r for r in rules if not r.get("passed")]
    leaks = [{"variant": v, "evidence": list(ev)} for v, ev in _dict(gate.get("leaks")).items()]
    return {"passed": bool(gate.get("passed")), "rules": rules, "failed": failed, "leaks": leaks}


#: What each ``use`` of a membership_auc rule reads (the gate's own wording).
AUC_USE_LABELS = {"point": "point estimate", "ci_low": "low end of the 95% CI", "ci_high": "high end of the 95% CI"}


def rule_detail(rule: Mapping[str, Any]) -> str:
    """What exactly a gate.json entry measures, in a few words (shown beside its check)."""
    check = rule.get("check")
    if check == "exposure":
        return f"{rule.get('insertions')}× inserted, highest, {rule.get('estimator', 'best')} estimator"
    if check == "extracted_canaries":
        return "within the top K fillings of the shortest-path search"
    if check == "test_perplexity_ratio":
        return f"over {rule.get('baseline')}; higher = less useful"
    if check == "empirical_epsilon":
        return "one-run lower bound: its low end"
    if check == "membership_auc":
        metric = rule.get("metric") or "best non-degenerate metric"
        return f"{metric}, {AUC_USE_LABELS.get(rule.get('use', 'point'), rule.get('use'))}"
    return str(rule["metric"]) if rule.get("metric") else ""


def audit_design(params: Params) -> dict[str, Any]:
    """The settings the threat model and the limitations quote (so the text states this run's numbers)."""
    x, c = params.extract, params.canaries
    return {
        "samples": x.samples_per_strategy * len(x.strategies), "strategies": list(x.strategies),
        "sample_tokens": x.sample_tokens, "segment_tokens": x.membership.tokens,
        "segments": x.membership.max_samples, "min_chars": x.min_memorized_chars,
        "reference": x.reference_variant, "pretrain_source": params.pretrain.source,
        "audit_count": c.audit.count, "audit_insertions": c.audit.insertions, "audit_format": c.audit.format,
        "guesses": x.audit.guesses_included + x.audit.guesses_excluded, "confidence": 1 - x.audit.p,
        "formats": [f.name for f in c.parsed_formats()], "references": params.exposure.references,
        "context": params.train.model.context,
    }


def _split_order(splits: Mapping[str, Any]) -> list[str]:
    """train, valid, test first (reading order), then any other split."""
    known = [name for name in ("train", "valid", "test") if name in splits]
    return known + sorted(name for name in splits if name not in known)


def data_section(inputs: ReportInputs) -> dict[str, Any] | None:
    if inputs.prepare is None:
        return None
    splits = _dict(inputs.prepare.get("splits"))
    rows = [{"split": name, **_dict(splits[name])} for name in _split_order(splits)]
    return {"source": inputs.prepare.get("source"), "description": inputs.prepare.get("description"), "splits": rows}


def sanitize_section(inputs: ReportInputs) -> dict[str, Any] | None:
    report = inputs.sanitize
    if report is None:
        return None
    splits = {name: _dict(report.get("splits"))[name] for name in _split_order(_dict(report.get("splits")))}
    quality = _dict(report.get("detection_quality"))
    actions = _dict(report.get("actions"))
    types = sorted({*actions, *quality, *(t for s in splits.values() for t in _dict(_dict(s).get("found")))})
    rows = []
    for pii_type in types:
        found = {name: _dict(_dict(s).get("found")).get(pii_type, 0) for name, s in splits.items()}
        q = _dict(quality.get(pii_type))
        rows.append({"type": pii_type, "action": actions.get(pii_type, "no detector"), "found": found,
                     "total": sum(v for v in found.values() if isinstance(v, (int, float))),
                     "precision": q.get("precision"), "recall": q.get("recall"), "truth": q.get("truth")})
    dropped = sum(_dict(s).get("dropped", 0) or 0 for s in splits.values())
    return {"enabled": report.get("enabled", True), "splits": list(splits), "rows": rows, "dropped": dropped}


def adversarial_quality_rows(inputs: ReportInputs) -> list[dict[str, Any]]:
    """Detector precision and recall on the adversarial corpus (sanitize.json), one row per type."""
    quality = _dict(_dict((inputs.sanitize or {}).get("adversarial")).get("detection_quality"))
    return [{"type": t, **_dict(q)} for t, q in sorted(quality.items())]


def pii_attack_rows(inputs: ReportInputs) -> list[dict[str, Any]]:
    """One row per variant and PII type (pooled "all" last): inference accuracy with chance and interval,
    and reconstructed targets. Values are never shown, only counts and rates."""
    rows = []
    for variant in inputs.variants:
        report = inputs.pii.get(variant)
        if report is None:
            continue
        inference = _dict(_dict(report.get("inference")).get("types"))
        recon = _dict(_dict(report.get("reconstruction")).get("types"))
        for pii_type in [*sorted(t for t in inference if t != "all"), "all"]:
            row = _dict(inference.get(pii_type))
            if not row:
                continue
            low, chance = row.get("ci_low"), row.get("chance")
            above = isinstance(low, (int, float)) and isinstance(chance, (int, float)) and low > chance
            rows.append({"variant": variant, "type": pii_type, "sanitized": report.get("sanitized"),
                         "trials": row.get("trials"), "rate": row.get("rate"), "chance": chance,
                         "ci": [low, row.get("ci_high")], "above_chance": above,
                         "reconstructed": _dict(recon.get(pii_type)).get("successes") if recon else None})
    return rows


def pii_attack_section(inputs: ReportInputs) -> dict[str, Any] | None:
    if not inputs.pii:
        return None
    examples = [{"variant": v, **_dict(e)} for v, r in inputs.pii.items()
                for e in (_dict(r.get("reconstruction")).get("examples") or [])]
    first = next(iter(inputs.pii.values()))
    return {"rows": pii_attack_rows(inputs), "examples": examples, "candidates": _dict(first.get("inference")).get("candidates"),
            "targets_from": first.get("targets_from")}


def canary_section(inputs: ReportInputs, params: Params) -> dict[str, Any]:
    per_format = _dict(_dict(inputs.canaries).get("per_format"))
    formats = []
    for spec in params.canaries.formats:
        info = _dict(_dict(inputs.formats).get(spec.name))
        formats.append({"name": spec.name, "template": spec.template,
                        "log2_space_size": info.get("log2_space_size",
                                                    _dict(per_format.get(spec.name)).get("log2_space_size")),
                        "canaries": _dict(per_format.get(spec.name)).get("canaries")})
    counts = {k: _dict(inputs.canaries).get(k) for k in ("canaries", "included", "held_out", "copies_inserted", "audit")}
    canary = params.canaries
    return {"formats": formats, "insertions": list(canary.insertions), "per_count": canary.per_count,
            "audit": canary.audit, "counts": counts, "present": inputs.canaries is not None}


def model_rows(inputs: ReportInputs, params: Params) -> list[dict[str, Any]]:
    rows = []
    for variant in inputs.variants:
        settings = params.train.variant(variant) if variant in params.train.variants else None
        report = _dict(inputs.train.get(variant))
        model = settings.model if settings else None
        rows.append({
            "variant": variant, "present": variant in inputs.train,
            "arch": model.arch if model else None, "layers": model.layers if model else None,
            "width": model.width if model else None, "context": model.context if model else None,
            "epochs": report.get("epochs"), "steps": report.get("steps"), "parameters": report.get("parameters"),
            "test_loss": report.get("test_loss"), "test_perplexity": report.get("test_perplexity"),
            "epsilon": report.get("epsilon"), "delta": report.get("delta"),
            "noise_multiplier": report.get("noise_multiplier"), "dp": bool(settings and settings.dp.enabled),
            "train_seconds": report.get("train_seconds"),
            "external": variant in params.train.external,  # trained elsewhere; epsilon, if any, is declared
        })
    return rows


# ---------------------------------------------------------------- exposure


def _count_label(count: int) -> str:
    return "held out" if count == 0 else f"{count}×"


# ---------------------------------------------------------------- exposure values: lower bounds and estimators
# A *cell* is one exposure value ready to show: {"value": bits, "bound": True when it is a lower bound
# (shown as "≥"), "estimator": the estimator it came from}. Interpolation saturates at log2(references)
# and extrapolation is capped at log2|R|: both are then lower bounds; the exact value never is.


def is_lower_bound(row: Mapping[str, Any], estimator: str) -> bool:
    """Whether a canary's exposure by ``estimator`` (``best`` included) is a lower bound."""
    used = measures.best_estimator_used(row) if estimator == "best" else estimator
    return used != "exact" and bool(row.get(f"exposure_{used}_lower_bound"))


def exposure_cell(row: Mapping[str, Any], estimator: str = "best") -> dict[str, Any] | None:
    """One canary's exposure by ``estimator`` as a cell; None when that estimator has no value."""
    value = measures.canary_exposure(row, estimator)
    if value is None:
        return None
    used = measures.best_estimator_used(row) if estimator == "best" else estimator
    return {"value": value, "bound": is_lower_bound(row, estimator), "estimator": used}


def group_cells(report: Mapping[str, Any] | None, count: int, estimator: str = "best") -> list[dict[str, Any]]:
    """Cells of the canaries inserted ``count`` times, ascending; of equal values the exact ones first."""
    cells = [exposure_cell(r, estimator) for r in measures.canary_rows(report) if r.get("insertions") == count]
    return sorted((c for c in cells if c is not None), key=lambda c: (c["value"], c["bound"]))


def median_cell(cells: Sequence[Mapping[str, Any]]) -> dict[str, Any] | None:
    """The median of ascending cells; a lower bound when a middle value is one (raising any value
    above the middle leaves the median as it is)."""
    if not cells:
        return None
    middle = cells[(len(cells) - 1) // 2: len(cells) // 2 + 1]
    return {"value": statistics.fmean(c["value"] for c in middle), "bound": any(c["bound"] for c in middle),
            "estimator": " + ".join(sorted({c["estimator"] for c in middle}))}


def max_cell(cells: Sequence[Mapping[str, Any]]) -> Mapping[str, Any] | None:
    """The highest of ascending cells; of equal values an exact one. A lower bound sits at its
    estimator's ceiling (log2 references, the same for every format; or the format's own log2|R|,
    which no exposure exceeds), so a bound below the highest value cannot overtake it."""
    if not cells:
        return None
    top = cells[-1]["value"]
    return next(c for c in cells if c["value"] == top)


def bits_text(cell: Mapping[str, Any] | None, digits: int = 2) -> str:
    """'≥ 29.90 bits' for a lower bound, '3.41 bits' otherwise (chart tooltips and captions)."""
    if cell is None:
        return "not measured"
    return f"{'≥ ' if cell['bound'] else ''}{cell['value']:.{digits}f} bits"


def is_top1(row: Mapping[str, Any]) -> bool:
    """Extracted at position 1: the model's single likeliest filling of the canary's format."""
    return bool(row.get("extracted_top1")) or row.get("extraction_position") == 1


def extraction_counts(report: Mapping[str, Any] | None) -> dict[str, Any]:
    """Included canaries extracted at position 1 and within the top K, and the definition of extraction."""
    included = [r for r in measures.canary_rows(report) if r.get("included")]
    top1 = _dict(report).get("extracted_top1")
    if isinstance(top1, bool) or not isinstance(top1, int):
        top1 = sum(1 for r in included if is_top1(r)) if included else None
    return {"top_k": measures.extracted_canaries(report), "top1": top1,
            "definition": _dict(report).get("extraction_definition")}


# ---------------------------------------------------------------- exposure


def exposure_section(inputs: ReportInputs) -> dict[str, Any] | None:
    """Exposure vs insertion count (Secret Sharer's headline plot): median and min-max per count, and its table."""
    present = [v for v in inputs.variants if v in inputs.exposure]
    if not present:
        return None
    counts = sorted({c for v in present for c in measures.insertion_counts(inputs.exposure[v])})
    index = {c: i for i, c in enumerate(counts)}
    series = []
    for n, variant in enumerate(present):
        report, hue = inputs.exposure[variant], variant_colour(inputs, variant)
        offset = (n - (len(present) - 1) / 2) * 0.07  # side by side, so dots of two variants do not overlap
        series.append(canary_dots(variant, report, index, offset + 0.022, hue))  # beside the whisker, under the median
        series.append(median_series(variant, report, counts, [index[c] + offset for c in counts], hue))
    sizes = group_sizes(inputs, present, counts)
    chart = Chart("Exposure vs insertion count (median per count, min–max whiskers)",
                  Axis("times the canary was inserted in the training data",
                       categories=[f"{_count_label(c)} (n={sizes[c]})" for c in counts]),
                  Axis("exposure (bits)", lo=0.0), series, _space_lines(present, inputs), note=exposure_note(counts, sizes))
    return {"chart": render_chart(chart), "variants": present, "rows": [exposure_row(inputs, present, c) for c in counts]}


def median_series(variant: str, report: Mapping[str, Any], counts: Sequence[int], xs: Sequence[float],
                  hue: str) -> Series:
    """The median canary per insertion count, with whiskers from the lowest to the highest."""
    points, whiskers, bounds, tips = [], [], [], []
    for count, x in zip(counts, xs):
        cells = group_cells(report, count)
        middle = median_cell(cells)
        if middle is None:
            continue
        low, high = cells[0], max_cell(cells)
        points.append((x, middle["value"]))
        whiskers.append((low["value"], high["value"]))
        bounds.append(middle["bound"])
        group = "held-out canaries" if count == 0 else f"canaries inserted {count}×"
        tips.append(f"{variant}: median of {len(cells)} {group}: {bits_text(middle)} "
                    f"({middle['estimator']}); min {bits_text(low)}, max {bits_text(high)} ({high['estimator']})")
    return Series(f"{variant} (median)", points, hue, bounds=bounds, whiskers=whiskers, tooltips=tips, radius=5.0)


def canary_dots(variant: str, report: Mapping[str, Any], index: Mapping[int, int], offset: float, hue: str) -> Series:
    """Every canary's best exposure; lower bounds drawn open, under a caret."""
    dots = [(r, exposure_cell(r)) for r in measures.canary_rows(report) if r.get("insertions") in index]
    dots = [(r, cell) for r, cell in dots if cell is not None]
    return Series(variant, [(index[r["insertions"]] + offset, cell["value"]) for r, cell in dots], hue, line=False,
                  legend=False, radius=2.0, bounds=[cell["bound"] for _, cell in dots],
                  tooltips=[f"{variant} {r.get('canary_id')}: {bits_text(cell)} ({cell['estimator']})" for r, cell in dots])


def group_sizes(inputs: ReportInputs, variants: Sequence[str], counts: Sequence[int]) -> dict[int, str]:
    """Canaries measured per insertion count: '4', or '4/3' when the variants differ."""
    out = {}
    for count in counts:
        sizes = list(dict.fromkeys(len(group_cells(inputs.exposure[v], count)) for v in variants))
        out[count] = "/".join(str(n) for n in sizes)
    return out


def exposure_note(counts: Sequence[int], sizes: Mapping[int, str]) -> str:
    groups = ", ".join(f"{_count_label(c)} {sizes[c]}" for c in counts)
    return ("Lines: the median canary's exposure per insertion count; whiskers: the lowest to the highest; dots: every "
            f"canary. Canaries per count (n): {groups}. The median, unlike the maximum, does not rise with the size of a "
            "group, so counts with many canaries and counts with few compare fairly. Best estimator: the exact rank's "
            "exposure when computed, else the skew-normal extrapolation, capped at log2|R|; open markers under a caret "
            "are lower bounds (≥). At log2|R| a canary is the model's single likeliest filling of its format.")


def exposure_row(inputs: ReportInputs, variants: Sequence[str], count: int) -> dict[str, Any]:
    """One insertion count: per variant the median and highest exposure (cells) and canaries extracted."""
    cells = {}
    for variant in variants:
        report = inputs.exposure[variant]
        rows = [r for r in measures.canary_rows(report) if r.get("insertions") == count]
        values = group_cells(report, count)
        cells[variant] = {"canaries": len(rows), "median": median_cell(values), "max": max_cell(values),
                          "extracted": sum(1 for r in rows if r.get("extracted")),
                          "top1": sum(1 for r in rows if is_top1(r))}
    return {"insertions": count, "canaries": max(c["canaries"] for c in cells.values()), "cells": cells}


def highest_cell(report: Mapping[str, Any] | None, count: int) -> Mapping[str, Any] | None:
    """The most exposed canary inserted ``count`` times (best estimator), as a cell."""
    return max_cell(group_cells(report, count))


def glance_rows(inputs: ReportInputs) -> dict[str, dict[str, Any]]:
    """Per variant: the highest exposure per insertion key (cells, as the summary's max_exposure_bits) and
    the extraction counts, for the at-a-glance table."""
    out = {}
    for variant in inputs.variants:
        report = inputs.exposure.get(variant)
        out[variant] = {"exposure": {insertion_key(c): highest_cell(report, c) for c in measures.insertion_counts(report)},
                        "extraction": extraction_counts(report)}
    return out


def _space_lines(variants: Sequence[str], inputs: ReportInputs) -> list[RefLine]:
    by_value: dict[float, list[str]] = {}
    for variant in variants:
        for name, bits in measures.log2_space_sizes(inputs.exposure[variant]).items():
            if name not in by_value.setdefault(round(bits, 2), []):
                by_value[round(bits, 2)].append(name)
    return [RefLine(bits, f"log2|R| = {bits:.1f} bits ({', '.join(names)}): extraction threshold")
            for bits, names in sorted(by_value.items())]


def top_insertion(inputs: ReportInputs, variant: str) -> int | None:
    counts = [c for c in measures.insertion_counts(inputs.exposure.get(variant)) if c > 0]
    return max(counts) if counts else None


def privacy_utility_section(inputs: ReportInputs, params: Params) -> dict[str, Any] | None:
    """Test loss against exposure (and against epsilon for DP variants); Pareto front when several."""
    points = []
    for variant in inputs.variants:
        loss = measures.as_number(_dict(inputs.train.get(variant)).get("test_loss"))
        k = top_insertion(inputs, variant)
        exposure = highest_cell(inputs.exposure.get(variant), k) if k is not None else None
        if loss is not None and exposure is not None:
            points.append((variant, exposure, loss, k))
    if not points:
        return None
    charts = [_exposure_loss_chart(points, {v: variant_colour(inputs, v) for v in inputs.variants})]
    dp_chart = _epsilon_loss_chart(inputs)
    if dp_chart is not None:
        charts.append(dp_chart)
    return {"charts": charts}


def _exposure_loss_chart(points: Sequence[tuple[str, Mapping[str, Any], float, int]], hues: Mapping[str, str]) -> Any:
    xy = [(cell["value"], y) for _, cell, y, _ in points]
    front = measures.pareto_front(xy) if len(points) > 1 else []
    series = [Series(name, [(cell["value"], y)], hues[name], line=False, labels=[name], bounds=[cell["bound"]],
                     tooltips=[f"{name}: exposure {bits_text(cell)} ({cell['estimator']}; canaries inserted {k}x), "
                               f"test loss {y:.4f}"])
              for name, cell, y, k in points]
    if len(front) > 1:
        series.insert(0, Series("Pareto front", [xy[i] for i in front], "#9aa5b1", markers=False, dashed=True))
    note = ("Lower-left is better: less memorization and lower test loss. Exposure: the most exposed canary at the "
            "highest insertion count (bits).")
    if front:
        note += " On the Pareto front: " + ", ".join(points[i][0] for i in front) + "."
    return render_chart(Chart("Privacy vs utility: test loss against exposure",
                              Axis("exposure of the most exposed canary (bits, lower = more private)"),
                              Axis("test loss (nats/token)"), series, note=note, width=HALF_WIDTH, height=HALF_HEIGHT))


def _epsilon_loss_chart(inputs: ReportInputs) -> Any:
    dp, reference = [], []
    for variant in inputs.variants:
        train = _dict(inputs.train.get(variant))
        loss, eps = measures.as_number(train.get("test_loss")), measures.accountant_epsilon(train)
        if loss is None:
            continue
        (dp if eps is not None else reference).append((variant, eps, loss))
    if not dp:
        return None
    series = [Series(name, [(eps, loss)], variant_colour(inputs, name), line=False, labels=[f"{name} (ε={eps:.3g})"])
              for name, eps, loss in dp]
    if len(dp) > 1:
        ordered = sorted((eps, loss) for _, eps, loss in dp)
        series.insert(0, Series("DP variants", ordered, "#9aa5b1", markers=False, dashed=True, legend=False))
    by_loss: dict[float, list[str]] = {}
    for name, _, loss in reference:
        by_loss.setdefault(round(loss, 3), []).append(name)
    refs = [RefLine(loss, f"{', '.join(names)}: no DP, test loss {loss:.3f}") for loss, names in by_loss.items()]
    log_x = len(dp) > 1 and max(e for _, e, _ in dp) / max(min(e for _, e, _ in dp), 1e-12) > 20
    return render_chart(Chart("Privacy vs utility: test loss against epsilon (DP variants)",
                              Axis("accountant epsilon (lower = stronger guarantee)", log=log_x, lo=None if log_x else 0.0),
                              Axis("test loss (nats/token)"), series, refs, width=HALF_WIDTH, height=HALF_HEIGHT,
                              note="Dashed lines: variants trained without DP, for comparison."))


# ---------------------------------------------------------------- canaries


MAX_CANARY_ROWS = 1000  # per variant; keeps a large audit's report small (the full list is in exposure/V.csv)


def canary_tables(inputs: ReportInputs) -> list[dict[str, Any]]:
    """Per variant: every canary (up to MAX_CANARY_ROWS), most exposed first, and the per-format search costs."""
    tables = []
    for variant in inputs.variants:
        report = inputs.exposure.get(variant)
        if report is None:
            continue
        formats = [{"name": name, **_dict(entry), "extraction": _dict(_dict(entry).get("extraction"))}
                   for name, entry in _dict(report.get("formats")).items()]
        top_k = {f["name"]: f["extraction"].get("top_k") for f in formats}
        rows = [canary_table_row(r, top_k.get(str(r.get("format")))) for r in measures.canary_rows(report)]
        rows.sort(key=lambda r: (-(r.get("insertions") or 0), -(r["best"]["value"] if r["best"] else -math.inf)))
        regular = [r for r in rows if not r.get("audit")]
        audit = [r for r in rows if r.get("audit")]
        tables.append({"variant": variant, "rows": regular[:MAX_CANARY_ROWS], "total": len(rows),
                       "regular": len(regular), "audit_rows": audit[:MAX_CANARY_ROWS], "audit": audit_summary(audit),
                       "formats": formats, "extraction": extraction_counts(report)})
    return tables


def audit_summary(rows: Sequence[Mapping[str, Any]]) -> dict[str, Any] | None:
    """The audit canaries in one line: how many, included, extracted, median best exposure per side (bits)."""
    if not rows:
        return None

    def median(side: bool) -> float | None:
        values = [r["best"]["value"] for r in rows if bool(r.get("included")) == side and r["best"]]
        return statistics.median(values) if values else None

    return {"count": len(rows), "included": sum(bool(r.get("included")) for r in rows),
            "extracted": sum(bool(r.get("extracted")) for r in rows),
            "median_included": median(True), "median_held_out": median(False)}


def canary_table_row(row: Mapping[str, Any], top_k: Any) -> dict[str, Any]:
    """A canary's row: a cell per estimator, the best one, and where the extraction search placed it."""
    return {**row, "cells": {e: exposure_cell(row, e) for e in measures.ESTIMATORS}, "best": exposure_cell(row, "best"),
            "top1": is_top1(row), "extraction_label": extraction_label(row, top_k)}


def extraction_label(row: Mapping[str, Any], top_k: Any) -> str:
    """'#1 (top 1)', '#3 of top 8', 'not in top 8', or 'not searched' (no extraction search for its format)."""
    position = row.get("extraction_position")
    if isinstance(position, int) and not isinstance(position, bool):
        return "#1 (top 1)" if position == 1 else f"#{position} of top {top_k if top_k is not None else 'K'}"
    return f"not in top {top_k}" if top_k is not None else "not searched"


# ---------------------------------------------------------------- extraction


def extraction_sections(inputs: ReportInputs, top_samples: int) -> list[dict[str, Any]]:
    out = []
    for variant in inputs.variants:
        report = inputs.extract.get(variant)
        if report is None:
            continue
        out.append({"variant": variant, "reference_variant": report.get("reference_variant"),
                    "samples": _dict(report.get("samples")), "table": strategy_metric_table(report.get("table")),
                    "unique_memorized": measures.unique_memorized(report),
                    "pii": [{**_dict(p), "masked": mask_value(str(_dict(p).get("masked", "")))}
                            for p in report.get("memorized_pii") or [] if isinstance(p, dict)],
                    "canaries": [c for c in report.get("memorized_canaries") or [] if isinstance(c, dict)],
                    "ranked": len(report.get("top_samples") or []),
                    "top": [display_sample(s) for s in memorized_first(report.get("top_samples"))[:top_samples]]})
    return out


def memorized_first(samples: Any) -> list[dict[str, Any]]:
    """The verified memorized samples in rank order; unverified ones only when none is memorized."""
    samples = [s for s in samples or [] if isinstance(s, dict)]
    memorized = [s for s in samples if s.get("memorized")]
    return memorized or samples


def strategy_metric_table(rows: Any) -> dict[str, Any]:
    """The paper's Table 2: verified memorized samples per strategy (rows) x ranking metric (columns)."""
    rows = [r for r in rows or [] if isinstance(r, dict)]
    strategies = list(dict.fromkeys(str(r.get("strategy")) for r in rows))
    metrics = list(dict.fromkeys(str(r.get("metric")) for r in rows))
    cells = {(str(r.get("strategy")), str(r.get("metric"))): r for r in rows}
    best = max((r.get("memorized") or 0 for r in rows), default=0)
    breakdown = any(measures.as_number(r.get(k)) is not None for r in rows
                    for k in ("memorized_with_pii", "memorized_with_canary"))
    return {"strategies": strategies, "metrics": metrics, "cells": cells, "best": best, "breakdown": breakdown,
            "top_k": rows[0].get("top_k") if rows else None}


def display_sample(sample: Mapping[str, Any]) -> dict[str, Any]:
    """A top sample ready to show: PII masked again from its spans, cut into highlighted segments."""
    pii = [p for p in sample.get("pii") or [] if isinstance(p, dict)]
    text = mask_spans(str(sample.get("text", "")), pii)
    span = sample.get("span") if sample.get("memorized") else None
    return {**sample, "segments": segments(text, span, pii), "pii_types": sorted({str(p.get("type")) for p in pii}),
            "span_chars": (span[1] - span[0]) if isinstance(span, list) and len(span) == 2 else None}


# ---------------------------------------------------------------- membership inference


def membership_sections(inputs: ReportInputs, gate: Mapping[str, Any] | None = None) -> list[dict[str, Any]]:
    out = []
    rules = [r for r in _dict(gate).get("rules", []) if r.get("check") == "membership_auc"]
    for variant in inputs.variants:
        report = inputs.extract.get(variant)
        if report is None:
            continue
        membership = _dict(report.get("membership"))
        metrics = measures.membership_metrics(report)
        degenerate = [name for name, m in metrics.items() if m.get("degenerate")]  # in the table's order
        curves = roc_curves(inputs.roc.get(variant, []))
        charts = ([_roc_chart(variant, curves, degenerate, log=False), _roc_chart(variant, curves, degenerate, log=True)]
                  if curves else [])
        best_auc, best_metric = measures.membership_auc(report)
        out.append({"variant": variant, "members": membership.get("members"), "nonmembers": membership.get("nonmembers"),
                    "tokens": membership.get("tokens"), "members_source": membership.get("members_source"),
                    "nonmembers_source": membership.get("nonmembers_source"), "metrics": metrics,
                    "degenerate": {n: str(metrics[n].get("degenerate_reason") or "degenerate") for n in degenerate},
                    "skipped": {str(k): str(v) for k, v in _dict(report.get("skipped_metrics")).items()},
                    "best_metric": best_metric, "best_auc": best_auc, "charts": charts, "roc_missing": not curves,
                    "rules": [membership_rule(r, report) for r in rules if r.get("variant") == variant]})
    return out


def membership_rule(rule: Mapping[str, Any], report: Mapping[str, Any]) -> dict[str, Any]:
    """A membership_auc gate rule as read on this report: the metric it took and which end of the interval."""
    use = rule.get("use", "point")
    _, metric = measures.membership_auc(report, rule.get("metric"), use if use in measures.AUC_USES else "point")
    return {"name": rule.get("name"), "metric": metric, "chosen": rule.get("metric") is None,
            "use": AUC_USE_LABELS.get(use, use), "value": rule.get("value"), "max": rule.get("max"),
            "passed": rule.get("passed")}


def roc_curves(rows: Sequence[Mapping[str, str]]) -> dict[str, list[tuple[float, float]]]:
    """metric -> [(fpr, tpr)] from V_roc.csv rows, sorted by fpr; unparsable rows are skipped."""
    curves: dict[str, list[tuple[float, float]]] = {}
    for row in rows:
        try:
            point = (float(row["fpr"]), float(row["tpr"]))
        except (KeyError, TypeError, ValueError):
            continue
        if all(math.isfinite(v) for v in point):
            curves.setdefault(str(row.get("metric")), []).append(point)
    return {metric: sorted(points) for metric, points in curves.items()}


def _roc_chart(variant: str, curves: Mapping[str, list[tuple[float, float]]], degenerate: Sequence[str],
               log: bool) -> Any:
    floor = 1e-3  # the log-log view starts at FPR 0.1%, the lowest rate the report's table quotes
    series = [Series(f"{metric} (degenerate)" if metric in degenerate else metric, points, colour(i))
              for i, (metric, points) in enumerate(curves.items())]
    chance = [(floor, floor), (1.0, 1.0)] if log else [(0.0, 0.0), (1.0, 1.0)]
    series.append(Series("chance", chance, "#9aa5b1", markers=False, dashed=True))
    series = [Series(s.name, s.points, s.colour, markers=False, dashed=s.dashed) for s in series]
    lo = floor if log else 0.0
    title = f"{variant}: ROC, {'log-log (low false-positive rates)' if log else 'linear'}"
    return render_chart(Chart(title, Axis("false positive rate", log=log, lo=lo, hi=1.0),
                              Axis("true positive rate", log=log, lo=lo, hi=1.0), series, width=HALF_WIDTH,
                              height=HALF_HEIGHT))


# ---------------------------------------------------------------- DP: empirical vs accountant epsilon


def dp_sections(inputs: ReportInputs, params: Params) -> list[dict[str, Any]]:
    out = []
    for variant in inputs.variants:
        train, extract = inputs.train.get(variant), inputs.extract.get(variant)
        if train is None and extract is None:
            continue
        settings = params.train.variant(variant) if variant in params.train.variants else None
        audit = _dict(_dict(extract).get("empirical_epsilon"))
        eps, delta = measures.accountant_epsilon(train), measures.as_number(_dict(train).get("delta"))
        secrecy = _dict(train).get("noise_secrecy")  # what the epsilon assumes about the noise seed
        declared = _dict(train).get("dp_claim")  # an external model's epsilon: the user's claim, not an accountant's
        out.append({"variant": variant, "epsilon": eps, "delta": delta, "audit": audit, "dp": eps is not None,
                    "noise_secrecy": secrecy if isinstance(secrecy, str) else None,
                    "declared": declared if isinstance(declared, str) else None,
                    "context": settings.model.context if settings else _dict(train).get("context"),
                    "bars": epsilon_bars(audit, eps),
                    "groups": group_rows(inputs, variant, eps, delta)})
    return out


def epsilon_bars(audit: Mapping[str, Any], accountant: float | None) -> Any:
    """Empirical lower bound, the bound's ceiling for this many guesses, and the accountant's epsilon.

    The lower bound can never exceed the ceiling; above the accountant's epsilon it would
    mean the DP implementation or its accounting is wrong. No DP: the accountant's epsilon is infinite.
    """
    lower, ceiling = measures.as_number(audit.get("epsilon_lower_bound")), measures.as_number(audit.get("ceiling"))
    if lower is None and accountant is None:
        return None
    finite = [v for v in (lower, ceiling, accountant) if v is not None]
    scale = max(finite) * 1.1 if finite and max(finite) > 0 else 1.0
    return bar_rows([("empirical lower bound", lower, "#D55E00"),
                     ("ceiling of the bound", ceiling, "#9aa5b1"),
                     ("accountant ε", accountant if accountant is not None else math.inf, "#0072B2")], scale)


#: A group delta above this is a weak guarantee: the epsilon bound may fail outright with probability
#: above 1 in 1000, orders of magnitude above the per-sequence delta (chosen below 1/N, N training sequences).
WEAK_DELTA = 1e-3


def group_guarantee(delta: float | None) -> str | None:
    """'vacuous' (delta >= 1: no guarantee at all), 'weak' (delta > WEAK_DELTA) or 'ok'; None if not computed."""
    if delta is None:
        return None
    if delta >= 1.0:
        return "vacuous"
    return "weak" if delta > WEAK_DELTA else "ok"


def group_rows(inputs: ReportInputs, variant: str, eps: float | None, delta: float | None) -> list[dict[str, Any]]:
    """Per insertion count k: the group guarantee (k eps, k e^((k-1) eps) delta) beside the exposure measured."""
    rows = []
    for k in measures.insertion_counts(inputs.exposure.get(variant)) or []:
        if k == 0:
            continue
        group_eps, group_delta = measures.group_privacy(eps, delta, k) if eps is not None and delta else (None, None)
        rows.append({"k": k, "epsilon": group_eps, "delta": group_delta, "guarantee": group_guarantee(group_delta),
                     "max_exposure": highest_cell(inputs.exposure.get(variant), k)})
    return rows

