"""The stage graph from DVC, in dependency order, and which stages an audit runs."""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from canaryaudit.errors import CanaryAuditError, ParamsError


@dataclass(frozen=True)
class Stage:
    name: str  # DVC address, e.g. "prepare", "train@dp"
    group: str  # "train" for "train@dp"
    key: str | None  # "dp" for "train@dp"
    upstream: tuple[str, ...]  # stages whose outputs it reads (direct)
    deps: tuple[str, ...]  # dependency paths, relative to the workspace
    outs: tuple[str, ...]  # outputs, metrics and plots, relative to the workspace


_DVC_API = threading.Lock()  # DVC's Python API is not meant for concurrent use in one process


def list_stages(root: Path) -> list[Stage]:
    """Every pipeline stage of the workspace, upstream first (dvc.yaml order among equals)."""
    import networkx as nx
    from dvc.repo import Repo

    root = Path(root).resolve()
    with _DVC_API, Repo(str(root)) as repo:
        graph = repo.index.graph  # edges: stage -> a stage it depends on
        order = {stage: i for i, stage in enumerate(graph.nodes)}
        runnable = [s for s in graph.nodes if getattr(s, "cmd", None)]

        def rel(path: str) -> str:
            with contextlib.suppress(ValueError):
                return Path(path).resolve().relative_to(root).as_posix()
            return path

        def address(stage: Any) -> str:  # as `dvc repro` in root takes it (stage.addressing is cwd-relative)
            dvcfile = Path(stage.dvcfile.path).resolve()
            return stage.name if dvcfile == root / "dvc.yaml" else f"{rel(str(dvcfile))}:{stage.name}"

        result: dict[Any, Stage] = {}
        for stage in runnable:
            name = address(stage)
            group, _, key = stage.name.partition("@")
            if ":" in name:
                group = name.rpartition("@")[0] if key else name
            result[stage] = Stage(
                name=name,
                group=group,
                key=key or None,
                upstream=tuple(sorted(address(u) for u in graph.successors(stage) if getattr(u, "cmd", None))),
                deps=tuple(rel(str(d.fs_path)) for d in stage.deps),
                outs=tuple(rel(str(o.fs_path)) for o in stage.outs),
            )
        sub = graph.subgraph(runnable).reverse(copy=True)  # edges: upstream -> downstream
        ordered = nx.lexicographical_topological_sort(sub, key=lambda s: f"{order[s]:06d}")
        return [result[s] for s in ordered]


def _ancestors(name: str, by_name: Mapping[str, Stage]) -> set[str]:
    seen: set[str] = set()
    todo = list(by_name[name].upstream)
    while todo:
        current = todo.pop()
        if current not in seen and current in by_name:
            seen.add(current)
            todo.extend(by_name[current].upstream)
    return seen


def select_stages(
    stages: Sequence[Stage],
    targets: Sequence[str] | None = None,
    variants: Sequence[str] | None = None,
    known_variants: Sequence[str] = (),
) -> tuple[list[Stage], dict[str, str]]:
    """The stages to run (in order) and, for the others, why not.

    ``targets`` (stage names, or a foreach group such as ``train``) limit the run to
    them and their upstream stages, as ``dvc repro TARGET`` would. ``variants``
    keeps the ``STAGE@V`` stages of those variants (V among ``known_variants``,
    i.e. ``train.variants``), the stages they depend on (``extract@dp`` needs the
    reference model), and the stages without a variant that depend on no excluded
    variant (``report`` reads every variant, so a subset skips it).
    """
    by_name = {s.name: s for s in stages}
    skipped: dict[str, str] = {}
    if targets:
        wanted: set[str] = set()
        for target in targets:
            matches = [s.name for s in stages if s.name == target or s.group == target]
            if not matches:
                raise CanaryAuditError(
                    f"unknown stage {target!r}; the pipeline's stages: {', '.join(s.name for s in stages)}"
                )
            for match in matches:
                wanted |= {match} | _ancestors(match, by_name)
        for s in stages:
            if s.name not in wanted:
                skipped[s.name] = "not a target or upstream of one"
        base = [s for s in stages if s.name in wanted]
    else:
        base = list(stages)
    if not variants:
        return base, skipped
    unknown = sorted(set(variants) - set(known_variants))
    if unknown:
        raise ParamsError(f"unknown variant(s) {', '.join(unknown)}; train.variants and train.external have: "
                          f"{', '.join(known_variants)}")
    known = set(known_variants)
    is_variant = {s.name: s.key is not None and s.key in known for s in base}
    chosen = {s.name for s in base if is_variant[s.name] and s.key in variants}
    for s in base:
        if not is_variant[s.name]:
            excluded = sorted(a for a in _ancestors(s.name, by_name) if is_variant.get(a) and by_name[a].key not in variants)
            if excluded:
                skipped[s.name] = f"depends on variants outside the subset ({', '.join(excluded)})"
            else:
                chosen.add(s.name)
    for name in list(chosen):
        chosen |= _ancestors(name, by_name)
    for s in base:
        if s.name not in chosen:
            skipped.setdefault(s.name, f"variant {s.key} not in the subset")
    return [s for s in base if s.name in chosen], skipped


def retries_for(stage: Stage, retries: Mapping[str, int] | None, default: int) -> int:
    """Retries for a stage: by exact name (``train@dp``), then group (``train``), then ``default``."""
    retries = retries or {}
    for key in (stage.name, stage.group):
        if key in retries:
            return max(0, int(retries[key]))
    return max(0, int(default))


def parse_retries(items: Sequence[str]) -> dict[str, int]:
    """``["train=3", "exposure@dp=0"]`` -> ``{"train": 3, "exposure@dp": 0}``."""
    out: dict[str, int] = {}
    for item in items:
        name, sep, value = item.partition("=")
        if not sep or not value.strip().isdigit():
            raise CanaryAuditError(f"--retries {item!r}: expected STAGE=COUNT, e.g. train=3")
        out[name.strip()] = int(value)
    return out


