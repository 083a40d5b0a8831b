"""Render the self-contained HTML report with Jinja2 (autoescape on for every value).

Strings from the data (samples, canary ids, variant names, params) are escaped
by the template engine; the only pre-built markup is the SVG of
:mod:`canaryaudit.report.figures`, which escapes its own text. The page carries
a Content-Security-Policy that forbids scripts and every network fetch, so even
a string that slipped through could neither run nor phone home.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import jinja2
import yaml

from canaryaudit.config import Params
from canaryaudit.report import sections
from canaryaudit.report.inputs import ReportInputs
from canaryaudit.report.summary import build_summary

TEMPLATE = "report.html.j2"
EMPTY = "—"  # shown for a value that was not measured


# ---------------------------------------------------------------- number formatting (template filters)


def _finite(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return float(value)


def fmt_fixed(value: Any, digits: int = 2) -> str:
    """Fixed decimals (exposure bits, perplexity, loss); ∞ for infinity; — when missing."""
    number = _finite(value)
    if number is None:
        return EMPTY
    if math.isinf(number):
        return "∞" if number > 0 else "−∞"
    return f"{number:,.{digits}f}"


def fmt_int(value: Any) -> str:
    number = _finite(value)
    return EMPTY if number is None or not math.isfinite(number) else f"{int(round(number)):,}"


def fmt_sig(value: Any, digits: int = 3) -> str:
    """Significant digits (epsilon, delta): 0.722, 1.83e-05."""
    number = _finite(value)
    if number is None:
        return EMPTY
    if math.isinf(number):
        return "∞"
    if number != 0 and (abs(number) < 1e-3 or abs(number) >= 1e6):
        return f"{number:.{digits - 1}e}"
    return f"{number:.{digits}g}"


def fmt_pct(value: Any, digits: int = 1) -> str:
    number = _finite(value)
    return EMPTY if number is None else f"{100 * number:.{digits}f}%"


def fmt_interval(interval: Any, digits: int = 3) -> str:
    if not (isinstance(interval, (list, tuple)) and len(interval) == 2):
        return ""
    return f"[{fmt_fixed(interval[0], digits)}, {fmt_fixed(interval[1], digits)}]"


def fmt_counted(value: Any, singular: str, plural: str | None = None) -> str:
    """A count with its noun in the right number: '1 sample', '2 samples', '1,234 canaries'; '— samples' if missing."""
    noun = singular if _finite(value) == 1 else (plural or f"{singular}s")
    return f"{fmt_int(value)} {noun}"


def fmt_bytes(value: Any) -> str:
    number = _finite(value)
    if number is None:
        return EMPTY
    for unit in ("B", "kB", "MB", "GB"):
        if abs(number) < 1000 or unit == "GB":
            return f"{number:,.0f} {unit}" if unit == "B" else f"{number:,.1f} {unit}"
        number /= 1000
    return EMPTY


def environment() -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.PackageLoader("canaryaudit.report", "templates"),
        autoescape=True,  # every value is HTML-escaped unless it is Markup built by figures.py
        undefined=jinja2.ChainableUndefined,  # partial stage outputs: a missing field renders as "—"
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters.update(fixed=fmt_fixed, int=fmt_int, sig=fmt_sig, pct=fmt_pct, interval=fmt_interval, bytes=fmt_bytes,
                       counted=fmt_counted)
    return env


# ---------------------------------------------------------------- context


def build_context(
    inputs: ReportInputs, params: Params, gate: Mapping[str, Any], generated_at: str | None = None,
    provenance: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """Everything the template shows, in reading order."""
    summary = build_summary(inputs, gate)
    return {
        "provenance": provenance,
        "design": sections.audit_design(params),
        "title": params.report.title,
        "generated_at": generated_at,
        "verdict": sections.verdict(gate),
        "summary": summary,
        "missing": list(inputs.missing),
        "invalid": list(inputs.invalid),
        "variants": list(inputs.variants),
        "data": sections.data_section(inputs),
        "sanitize": sections.sanitize_section(inputs),
        "adversarial_quality": sections.adversarial_quality_rows(inputs),
        "pii_attacks": sections.pii_attack_section(inputs),
        "canaries": sections.canary_section(inputs, params),
        "models": sections.model_rows(inputs, params),
        "glance": sections.glance_rows(inputs),
        "exposure": sections.exposure_section(inputs),
        "privacy_utility": sections.privacy_utility_section(inputs, params),
        "canary_tables": sections.canary_tables(inputs),
        "extraction": sections.extraction_sections(inputs, params.report.top_samples),
        "top_samples": params.report.top_samples,
        "membership": sections.membership_sections(inputs, gate),
        "dp": sections.dp_sections(inputs, params),
        "weak_delta": sections.WEAK_DELTA,
        "exposure_keys": exposure_keys(summary),
        "params_yaml": yaml.safe_dump(params.model_dump(mode="json"), sort_keys=False, allow_unicode=True),
    }


def exposure_keys(summary: Mapping[str, Any]) -> list[tuple[str, str]]:
    """(summary key, column label) for every insertion count measured, held-out canaries first."""
    keys = {k for v in summary["variants"].values() for k in v["max_exposure_bits"]}
    counts = sorted(int(k[1:]) for k in keys if k.startswith("x"))
    return ([("held_out", "held out")] if "held_out" in keys else []) + [(f"x{c}", f"{c}×") for c in counts]


def render_html(context: Mapping[str, Any]) -> str:
    return environment().get_template(TEMPLATE).render(**context)


def render_report(
    inputs: ReportInputs, params: Params, gate: Mapping[str, Any], generated_at: str | None = None,
    provenance: Mapping[str, Any] | None = None,
) -> str:
    """The report as one HTML string (inline CSS and SVG; no script, no external resource)."""
    return render_html(build_context(inputs, params, gate, generated_at, provenance))
