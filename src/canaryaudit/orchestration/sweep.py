"""Sweeps: grid parsing, one workspace copy per point, results collected into a table and a plot."""

from __future__ import annotations

import csv
import html
import itertools
import json
import math
import shutil
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import yaml

from canaryaudit.errors import ParamsError
from canaryaudit.orchestration.params import read_yaml, resolve_params
from canaryaudit.orchestration.stages import Stage
from canaryaudit.orchestration.verdict import markdown_cell


def _split_top_level(text: str) -> list[str]:
    """Split on commas that are not inside [], {} or quotes."""
    parts, depth, quote, current = [], 0, "", []
    for char in text:
        if quote:
            quote = "" if char == quote else quote
        elif char in "\"'":
            quote = char
        elif char in "[{":
            depth += 1
        elif char in "]}":
            depth -= 1
        elif char == "," and depth == 0:
            parts.append("".join(current))
            current = []
            continue
        current.append(char)
    parts.append("".join(current))
    return [p.strip() for p in parts]


def parse_grid(items: Sequence[str]) -> dict[str, list[Any]]:
    """``["train.batch_size=16,32", "train.model.width=32,64"]`` -> a grid (values read as YAML)."""
    from canaryaudit.config import _UniqueKeyLoader

    grid: dict[str, list[Any]] = {}
    for item in items:
        key, sep, values = item.partition("=")
        key = key.strip()
        if not sep or not key or not values.strip():
            raise ParamsError(f"--grid {item!r}: expected KEY=V1,V2,... e.g. train.batch_size=16,32")
        if key in grid:
            raise ParamsError(f"--grid: {key} given twice")
        grid[key] = [yaml.load(v, Loader=_UniqueKeyLoader) for v in _split_top_level(values)]
    return grid


def load_grid_file(path: Path) -> dict[str, list[Any]]:
    """A YAML mapping ``dotted.key: [values...]`` (a scalar is a one-value axis)."""
    raw = read_yaml(Path(path))
    if not isinstance(raw, Mapping) or not raw:
        raise ParamsError(f"{path}: a grid is a mapping of dotted params keys to lists of values")
    return {str(k): list(v) if isinstance(v, list) else [v] for k, v in raw.items()}


def grid_points(grid: Mapping[str, Sequence[Any]]) -> list[dict[str, Any]]:
    """Every combination, the last key varying fastest."""
    if not grid or any(len(v) == 0 for v in grid.values()):
        raise ParamsError("the sweep grid is empty (every key needs at least one value)")
    keys = list(grid)
    return [dict(zip(keys, combo)) for combo in itertools.product(*(grid[k] for k in keys))]


def point_overrides(point: Mapping[str, Any]) -> list[str]:
    """A grid point as ``-S`` overrides (values as JSON, which is YAML)."""
    return [f"{key}={json.dumps(value)}" for key, value in point.items()]


def point_params(root: Path, params_file: str | Path | None, point: Mapping[str, Any]) -> dict[str, Any]:
    """Validated full params of a point; a relative ``file:`` data source is made absolute.

    The source is checked against this workspace (``data.allow_outside_workspace``) here; the point's
    copy, elsewhere, is then allowed to read it from its absolute path.
    """
    from canaryaudit.config import DataParams
    from canaryaudit.corpus.sources import resolve_source_path

    resolved = resolve_params(root, params_file, point_overrides(point))
    source = str(resolved.get("data", {}).get("source", ""))
    if source.startswith("file:"):
        path = resolve_source_path(DataParams.model_validate_json(json.dumps(resolved["data"])), Path(root))
        resolved["data"]["source"] = "file:" + str(path.resolve())
        resolved["data"]["allow_outside_workspace"] = True
        if "dependency" in resolved["data"]:  # the DVC dependency follows the source (checked at load)
            resolved["data"]["dependency"] = str(path.resolve())
    return resolved


def point_params_text(root: Path, params_file: str | Path | None, resolved: Mapping[str, Any]) -> str:
    """The point's ``params.yaml``: the workspace's file (comments, quoting kept) edited to hold ``resolved``.

    Not a fresh dump: PyYAML would write ``"0123456789"`` bare, which DVC (YAML 1.2) reads as a number,
    and the points' params would no longer match the workspace's in DVC's run-cache.
    """
    from canaryaudit.params_file import synced_text

    source = Path(params_file) if params_file else Path(root) / "params.yaml"
    source = source if source.is_absolute() else Path(root) / source
    return synced_text(source.read_text(encoding="utf-8"), resolved, str(source))


def point_label(point: Mapping[str, Any]) -> str:
    """A point named by its settings, each key by its last part: ``noise_multiplier=2.0, batch_size=16``.

    A last part shared by two keys keeps one more part (``dp.enabled`` vs ``lora.enabled``).
    """
    keys = list(point)

    def short(key: str) -> str:
        parts = key.split(".")
        for n in range(1, len(parts) + 1):
            tail = ".".join(parts[-n:])
            if sum(1 for k in keys if k == tail or k.endswith("." + tail)) == 1:
                return tail
        return key

    return ", ".join(f"{short(k)}={v if isinstance(v, str) else json.dumps(v)}" for k, v in point.items())


def source_paths(stages: Sequence[Stage]) -> list[str]:
    """Dependency paths no stage produces (code and inputs a workspace copy needs)."""
    produced = [o for s in stages for o in s.outs]

    def is_produced(path: str) -> bool:
        # a folder holding some stage's output (reports/train) is produced too: copying it would hand a
        # sweep point the parent workspace's reports, numbers the point never computed
        return any(path == o or path.startswith(o.rstrip("/") + "/") or o.startswith(path.rstrip("/") + "/")
                   for o in produced)

    paths: list[str] = []
    for stage in stages:
        for dep in stage.deps:
            outside = Path(dep).is_absolute() or ".." in Path(dep).parts  # e.g. an external model elsewhere
            if not is_produced(dep) and not outside and dep not in paths:
                paths.append(dep)
    return paths


_COPY_IGNORE = shutil.ignore_patterns("__pycache__", "*.pyc", "*.egg-info")


def prepare_point_workspace(
    root: Path, dest: Path, params_text: str, stages: Sequence[Stage], share_cache: bool = True
) -> Path:
    """A DVC workspace at ``dest`` that runs the same pipeline with ``params``.

    Copies dvc.yaml, .dvcignore, the DVC config, the stage scripts folder(s) and
    every source dependency; keeps what an earlier sweep left there (so a rerun
    is incremental). With ``share_cache`` the copy uses the parent's DVC cache:
    a stage whose command, dependencies and params match an earlier run anywhere
    (the prepare/sanitize/canaries prefix of every point, usually) is restored
    from DVC's run-cache instead of run again.
    """
    root, dest = Path(root).resolve(), Path(dest).resolve()
    dest.mkdir(parents=True, exist_ok=True)
    paths = ["dvc.yaml", ".dvcignore", ".dvc/config", *source_paths(stages)]
    scripts = {Path(d).parts[0] for s in stages for d in s.deps if d.endswith(".py") and len(Path(d).parts) == 2}
    for rel in [*paths, *sorted(scripts)]:
        src = root / rel
        target = dest / rel
        if not src.exists():
            continue
        if src.is_dir():
            if target.exists():
                shutil.rmtree(target)
            shutil.copytree(src, target, ignore=_COPY_IGNORE)
        else:
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, target)
    (dest / ".dvc").mkdir(exist_ok=True)
    local = ["[core]", "    no_scm = true", "    analytics = false"]
    if share_cache:
        local += ["[cache]", f"    dir = {root / '.dvc' / 'cache'}"]
    (dest / ".dvc" / "config.local").write_text("\n".join(local) + "\n", encoding="utf-8")
    (dest / "params.yaml").write_text(params_text, encoding="utf-8")
    return dest


def _num(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return float(value) if math.isfinite(value) else None


def point_results(ws: Path, selected: Sequence[Stage], variants: Sequence[str]) -> dict[str, dict[str, Any]]:
    """Headline numbers per variant of one sweep point, from the reports its selected stages produced.

    The numbers are the report's (:func:`canaryaudit.report.summary.variant_summary`, the same code
    writes summary.json), keyed as there (``max_exposure_bits.x64``). A report the point's stages do
    not produce (a stage outside ``--targets``, a file left by an earlier sweep) is not read.
    """
    from canaryaudit.report.inputs import VARIANT_JSON, load_inputs
    from canaryaudit.report.summary import flat_headline, variant_summary

    produced = {o for stage in selected for o in stage.outs}
    inputs = load_inputs(Path(ws) / "reports", list(variants), parts=VARIANT_JSON)
    for part, pattern in VARIANT_JSON.items():
        found = getattr(inputs, part)
        for variant in list(found):
            if f"reports/{pattern.format(v=variant)}" not in produced:
                del found[variant]
    results = {v: flat_headline(variant_summary(inputs, v)) for v in variants}
    return {v: r for v, r in results.items() if r}


METRIC_ORDER = (
    "test_perplexity", "test_loss", "epsilon", "delta", "extracted_canaries", "unique_memorized", "memorized_pii",
    "memorized_canaries", "best_mia_auc", "best_mia_metric", "empirical_epsilon",
)  # fmt: skip; then max_exposure_bits.* by insertion count, then the rest


def comparison_rows(points: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """One row per (point, variant): the grid values, then the metrics; failed points keep one row."""
    rows: list[dict[str, Any]] = []
    for point in points:
        base = {"point": point["point"], "label": point.get("label") or point_label(point["params"]),
                **{k: point["params"][k] for k in point["params"]}}
        results = point.get("results") or {}
        if not results:
            rows.append({**base, "variant": "", "status": point.get("status", "failed")})
            continue
        for variant, metrics in results.items():
            ordered = {k: metrics[k] for k in METRIC_ORDER if k in metrics}
            ordered.update({k: metrics[k] for k in sorted((k for k in metrics if k.startswith(EXPOSURE_KEY)), key=_by_count)})
            ordered.update({k: v for k, v in metrics.items() if k not in ordered})
            rows.append({**base, "variant": variant, "status": point.get("status", "ok"), **ordered})
    return rows


def _columns(rows: Sequence[Mapping[str, Any]]) -> list[str]:
    columns: list[str] = []
    for row in rows:
        columns.extend(k for k in row if k not in columns)
    return columns


def write_comparison_csv(rows: Sequence[Mapping[str, Any]], path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", encoding="utf-8", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=_columns(rows))
        writer.writeheader()
        for row in rows:
            writer.writerow({k: ("" if v is None else v) for k, v in row.items()})
    return path


def comparison_markdown(rows: Sequence[Mapping[str, Any]], title: str = "Sweep comparison") -> str:
    columns = _columns(rows)
    lines = [f"# {title}", "", "| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    for row in rows:
        lines.append("| " + " | ".join(markdown_cell(row.get(c, "")) for c in columns) + " |")
    return "\n".join(lines) + "\n"


EXPOSURE_KEY = "max_exposure_bits."


def _by_count(key: str) -> int:
    """Sort key of ``max_exposure_bits.xN`` by N (``held_out`` first)."""
    suffix = key.rpartition(".")[2]
    return int(suffix[1:]) if suffix[1:].isdigit() else -1


def _top_exposure_key(rows: Sequence[Mapping[str, Any]]) -> str | None:
    keys = {k for r in rows for k in r if k.startswith(EXPOSURE_KEY) and _by_count(k) > 0}
    return max(keys, key=_by_count) if keys else None


def privacy_axes(rows: Sequence[Mapping[str, Any]]) -> list[tuple[str, str]]:
    """y axes of the privacy-utility plot, in order of preference (higher = more leakage)."""
    top = _top_exposure_key(rows)
    axes = [(top, f"highest exposure of canaries inserted {top.rpartition('.')[2][1:]} times (bits)")] if top else []
    return axes + [
        ("best_mia_auc", "membership-inference AUC (highest informative metric)"),
        ("empirical_epsilon", "empirical epsilon (lower bound)"),
        ("epsilon", "accountant epsilon"),
    ]


def _spread_labels(ys: list[float], gap: float) -> list[float]:
    """Label positions near ``ys`` at least ``gap`` apart (greedy, in order of y), so labels do not overlap."""
    order = sorted(range(len(ys)), key=lambda i: ys[i])
    placed = list(ys)
    for previous, current in zip(order, order[1:]):
        placed[current] = max(ys[current], placed[previous] + gap)
    return placed


def privacy_utility_svg(rows: Sequence[Mapping[str, Any]], title: str = "privacy vs utility") -> str:
    """A scatter plot as standalone SVG: test perplexity (x, lower = better utility) against leakage (y)."""
    width, height, left, right, top, bottom = 640, 420, 70, 170, 40, 55
    y_key, y_label = next(
        ((k, label) for k, label in privacy_axes(rows) if any(_num(r.get(k)) is not None for r in rows)), (None, "")
    )
    points = [r for r in rows if y_key and _num(r.get("test_perplexity")) is not None and _num(r.get(y_key)) is not None]
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" viewBox="0 0 {width} {height}" font-family="sans-serif" font-size="12">',
        f'<rect width="{width}" height="{height}" fill="white"/>',
        f'<text x="{width / 2}" y="22" text-anchor="middle" font-size="15">{html.escape(title)}</text>',
    ]
    if not points:
        parts.append(f'<text x="{width / 2}" y="{height / 2}" text-anchor="middle">no point has both a test perplexity and a privacy metric</text>')
        return "\n".join(parts + ["</svg>"]) + "\n"
    xs = [float(r["test_perplexity"]) for r in points]
    ys = [float(r[y_key]) for r in points]

    def span(values: list[float]) -> tuple[float, float]:
        lo, hi = min(values), max(values)
        pad = (hi - lo) * 0.08 or max(abs(hi) * 0.1, 1e-3)
        return lo - pad, hi + pad

    (x0, x1), (y0, y1) = span(xs), span(ys)
    plot_w, plot_h = width - left - right, height - top - bottom

    def px(x: float) -> float:
        return left + (x - x0) / (x1 - x0) * plot_w

    def py(y: float) -> float:
        return top + plot_h - (y - y0) / (y1 - y0) * plot_h

    parts.append(f'<rect x="{left}" y="{top}" width="{plot_w}" height="{plot_h}" fill="none" stroke="#444"/>')
    for i in range(5):
        xv, yv = x0 + (x1 - x0) * i / 4, y0 + (y1 - y0) * i / 4
        parts.append(f'<text x="{px(xv):.1f}" y="{top + plot_h + 16}" text-anchor="middle">{xv:.3g}</text>')
        parts.append(f'<text x="{left - 6}" y="{py(yv) + 4:.1f}" text-anchor="end">{yv:.3g}</text>')
        parts.append(f'<line x1="{left}" x2="{left + plot_w}" y1="{py(yv):.1f}" y2="{py(yv):.1f}" stroke="#eee"/>')
    parts.append(f'<text x="{left + plot_w / 2}" y="{height - 12}" text-anchor="middle">test perplexity (lower = more useful)</text>')
    parts.append(
        f'<text x="16" y="{top + plot_h / 2}" text-anchor="middle" transform="rotate(-90 16 {top + plot_h / 2})">'
        f"{html.escape(y_label)}</text>"
    )
    palette = ["#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b", "#e377c2", "#17becf"]
    variants = sorted({str(r.get("variant", "")) for r in points})
    label_ys = _spread_labels([py(y) - 6 for y in ys], gap=11)
    for row, x, y, label_y in zip(points, xs, ys, label_ys):
        color = palette[variants.index(str(row.get("variant", ""))) % len(palette)]
        label = str(row.get("label") or row["point"])
        tip = html.escape(f"{label} ({row.get('variant', '')})")
        parts.append(f'<circle cx="{px(x):.1f}" cy="{py(y):.1f}" r="5" fill="{color}"><title>{tip}: {x:.4g}, {y:.4g}</title></circle>')
        parts.append(f'<text x="{px(x) + 7:.1f}" y="{label_y:.1f}" font-size="10">{html.escape(label)}</text>')
    for i, variant in enumerate(variants):
        y = top + 10 + i * 18
        parts.append(f'<circle cx="{width - right + 20}" cy="{y}" r="5" fill="{palette[i % len(palette)]}"/>')
        parts.append(f'<text x="{width - right + 30}" y="{y + 4}">{html.escape(variant)}</text>')
    return "\n".join(parts + ["</svg>"]) + "\n"


def write_sweep_outputs(
    out_dir: Path, points: Sequence[Mapping[str, Any]], grid: Mapping[str, Sequence[Any]], title: str
) -> dict[str, Path]:
    """comparison.csv, comparison.md, privacy_utility.svg and sweep.json under ``out_dir``."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    rows = comparison_rows(points)
    files = {
        "csv": write_comparison_csv(rows, out_dir / "comparison.csv"),
        "markdown": out_dir / "comparison.md",
        "plot": out_dir / "privacy_utility.svg",
        "json": out_dir / "sweep.json",
    }
    files["markdown"].write_text(comparison_markdown(rows, title), encoding="utf-8")
    files["plot"].write_text(privacy_utility_svg(rows, title), encoding="utf-8")
    files["json"].write_text(json.dumps({"grid": grid, "points": list(points)}, indent=2, default=str) + "\n", encoding="utf-8")
    return files


