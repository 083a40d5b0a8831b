"""Load every stage output the report and the gate read, tolerating missing pieces.

Nothing here raises for a missing or broken file: the report renders what
exists and lists the rest, and the gate decides what a gap means for a rule.
Paths in ``missing`` and ``invalid`` are relative to the reports folder, e.g.
``extract/dp.json``.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from canaryaudit.errors import DataError
from canaryaudit.io import read_json

#: Per-variant JSON reports, by the attribute of ReportInputs that holds them.
VARIANT_JSON = {"train": "train/{v}.json", "exposure": "exposure/{v}.json", "extract": "extract/{v}.json",
                "pii": "pii/{v}.json"}
#: Per-variant CSV series (optional extras: their absence is listed but never blocks anything).
VARIANT_CSV = {"loss": "train/{v}_loss.csv", "roc": "extract/{v}_roc.csv"}
PIPELINE_JSON = {"prepare": "prepare.json", "sanitize": "sanitize.json", "canaries": "canaries.json"}


@dataclass
class ReportInputs:
    """Everything found under the reports folder; a missing file is simply absent from its dict."""

    reports_dir: Path
    variants: tuple[str, ...]
    prepare: dict[str, Any] | None = None
    sanitize: dict[str, Any] | None = None
    canaries: dict[str, Any] | None = None
    formats: dict[str, Any] | None = None  # data/canaries/formats.json: template and |R| per format
    train: dict[str, dict[str, Any]] = field(default_factory=dict)
    exposure: dict[str, dict[str, Any]] = field(default_factory=dict)
    extract: dict[str, dict[str, Any]] = field(default_factory=dict)
    pii: dict[str, dict[str, Any]] = field(default_factory=dict)  # reports/pii/V.json: PII attacks
    loss: dict[str, list[dict[str, str]]] = field(default_factory=dict)
    roc: dict[str, list[dict[str, str]]] = field(default_factory=dict)
    missing: list[str] = field(default_factory=list)  # expected, not found
    invalid: list[str] = field(default_factory=list)  # "path: why" for files that exist but cannot be read

    def found_any(self) -> bool:
        """True when at least one stage output was read."""
        return any((self.prepare, self.sanitize, self.canaries, self.train, self.exposure, self.extract))


def discover_variants(reports_dir: Path) -> tuple[str, ...]:
    """Variant names from the per-variant reports present (used when params give none)."""
    names: set[str] = set()
    for folder in ("train", "exposure", "extract"):
        for path in (reports_dir / folder).glob("*.json"):
            names.add(path.stem)
    return tuple(sorted(names))


def _read_json_object(path: Path) -> dict[str, Any]:
    obj = read_json(path)
    if not isinstance(obj, dict):
        raise DataError(path, f"expected a JSON object, got {type(obj).__name__}")
    return obj


def _read_csv_rows(path: Path) -> list[dict[str, str]]:
    try:
        with path.open(encoding="utf-8", newline="") as handle:
            rows = list(csv.DictReader(handle))
    except (UnicodeDecodeError, csv.Error) as exc:
        raise DataError(path, f"unreadable CSV ({exc})") from None
    return rows


def _load_one(inputs: ReportInputs, rel: str, reader: Any) -> Any:
    """Read ``rel`` with ``reader``; record a missing or invalid file and return None."""
    path = inputs.reports_dir / rel
    if not path.is_file():
        inputs.missing.append(rel)
        return None
    try:
        return reader(path)
    except (DataError, OSError, json.JSONDecodeError) as exc:
        inputs.invalid.append(f"{rel}: {exc}")
        return None


def load_inputs(
    reports_dir: str | Path,
    variants: Sequence[str] | None = None,
    data_dir: str | Path | None = None,
    parts: Iterable[str] | None = None,
) -> ReportInputs:
    """Read the reports of ``variants`` (default: those found) under ``reports_dir``.

    ``parts`` limits what is read (names from PIPELINE_JSON, VARIANT_JSON and
    VARIANT_CSV); the gate reads only what its rules need.
    """
    root = Path(reports_dir)
    chosen = tuple(variants) if variants is not None else discover_variants(root)
    wanted = set(parts) if parts is not None else {*PIPELINE_JSON, *VARIANT_JSON, *VARIANT_CSV}
    inputs = ReportInputs(reports_dir=root, variants=chosen)
    for name, rel in PIPELINE_JSON.items():
        if name in wanted:
            setattr(inputs, name, _load_one(inputs, rel, _read_json_object))
    for name, pattern in VARIANT_JSON.items():
        for variant in chosen if name in wanted else ():
            loaded = _load_one(inputs, pattern.format(v=variant), _read_json_object)
            if loaded is not None:
                getattr(inputs, name)[variant] = loaded
    for name, pattern in VARIANT_CSV.items():
        for variant in chosen if name in wanted else ():
            rows = _load_one(inputs, pattern.format(v=variant), _read_csv_rows)
            if rows is not None:
                getattr(inputs, name)[variant] = rows
    if data_dir is not None:
        inputs.formats = _load_formats(Path(data_dir) / "canaries" / "formats.json")
    return inputs


def _load_formats(path: Path) -> dict[str, Any] | None:
    """data/canaries/formats.json, or None: it only adds templates to the report."""
    try:
        return _read_json_object(path)
    except (DataError, OSError):
        return None
