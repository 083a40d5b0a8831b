"""Params overrides and another params file: validated, then written into the workspace's params.yaml."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import yaml

from canaryaudit.errors import ParamsError
from canaryaudit.orchestration.common import LogFn, no_log


def read_yaml(path: Path) -> Any:
    from canaryaudit.config import _UniqueKeyLoader

    try:
        return yaml.load(path.read_text(encoding="utf-8"), Loader=_UniqueKeyLoader)
    except FileNotFoundError:
        raise ParamsError(f"{path}: params file not found") from None


def resolve_params(root: Path, params_file: str | Path | None, overrides: Sequence[str] = ()) -> dict[str, Any]:
    """Validated params (``params_file`` or the workspace's, then ``overrides``), as a full mapping."""
    from canaryaudit.config import load_params

    source = Path(params_file) if params_file else Path(root) / "params.yaml"
    if not source.is_absolute():
        source = Path(root) / source
    return load_params(source, overrides).model_dump(mode="json")


@contextlib.contextmanager
def applied_params(
    root: Path, params_file: str | Path | None, overrides: Sequence[str] = (), log: LogFn = no_log
) -> Iterator[dict[str, Any]]:
    """Validate the effective params; with a params file or overrides, write them into ``params.yaml``.

    Yields the resolved params. Call under the workspace lock. As with ``dvc exp run -S``, the
    settings stay in ``params.yaml`` after the run, so it matches ``dvc.lock`` and the reports
    (``dvc status`` clean); the file is edited round-trip (:mod:`canaryaudit.params_file`):
    comments, quoting and every other value are kept as written.
    """
    from canaryaudit.params_file import write_settings

    root = Path(root)
    resolved = resolve_params(root, params_file, overrides)
    target = root / "params.yaml"
    source = Path(params_file) if params_file else None
    if source is not None and not source.is_absolute():
        source = root / source
    if source is not None and source.resolve() == target.resolve():
        source = None
    if overrides or source is not None:
        what = ", ".join(overrides)
        if write_settings(target, source, overrides):
            log(f"params.yaml now holds {source or 'its settings'}{' with ' + what if what else ''} "
                "(edited in place, comments kept, as `dvc exp run -S` does)")
    yield resolved


