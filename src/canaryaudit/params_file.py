"""Write settings into the user's ``params.yaml`` without rewriting it badly.

``-S key=value`` overrides and ``--params FILE`` are applied to ``params.yaml`` itself
(``dvc.yaml`` reads that file), the way ``dvc exp run -S`` does, and stay there after the
run: ``params.yaml`` then matches ``dvc.lock`` and the reports, so ``dvc status`` is clean.

The edit is a YAML round trip (ruamel.yaml, the YAML 1.2 library DVC itself reads params
with): comments, key order, quoting and layout are kept, and only the keys whose value
changes are touched. A value written for the first time is quoted when YAML 1.2 would
read it as another type (``"0123456789"`` stays a string for DVC as for canaryaudit).
After the edit both readers are checked to see exactly the settings that were validated.
"""

from __future__ import annotations

import io
import json
from collections.abc import Mapping, MutableMapping, Sequence
from pathlib import Path
from typing import Any

from canaryaudit.errors import ParamsError
from canaryaudit.io import atomic_open

#: Block-sequence layouts tried, in order, to reproduce the user's file byte for byte:
#: (mapping indent, sequence indent, dash offset). The first that round-trips unchanged is used.
_LAYOUTS = ((2, 4, 2), (2, 2, 0), (4, 4, 2), (4, 6, 4), (4, 4, 0))


def _yaml(layout: tuple[int, int, int]) -> Any:
    from ruamel.yaml import YAML

    handler = YAML(typ="rt")
    handler.preserve_quotes = True
    handler.width = 4096  # never fold a long line
    handler.indent(mapping=layout[0], sequence=layout[1], offset=layout[2])
    # `null` stays `null` (ruamel's default writes an empty value, which reads back the same but looks deleted)
    handler.representer.add_representer(
        type(None), lambda rep, _value: rep.represent_scalar("tag:yaml.org,2002:null", "null")
    )
    return handler


def _dump(handler: Any, document: Any) -> str:
    buffer = io.StringIO()
    handler.dump(document, buffer)
    return buffer.getvalue()


def _load_round_trip(text: str, origin: str) -> tuple[Any, Any]:
    """(handler, document) with the layout that reproduces ``text`` (else the first layout)."""
    from ruamel.yaml.error import YAMLError

    chosen = None
    for layout in _LAYOUTS:
        handler = _yaml(layout)
        try:
            document = handler.load(text)
        except YAMLError as exc:
            raise ParamsError(f"{origin}: invalid YAML: {exc}") from None
        if _dump(handler, document) == text:
            return handler, document
        chosen = chosen or (handler, document)
    assert chosen is not None
    return chosen


def _plain(value: Any) -> Any:
    """A ruamel or PyYAML value as plain JSON data (for comparing what each reader sees)."""
    return json.loads(json.dumps(value, default=str))


def _same(current: Any, wanted: Any) -> bool:
    """Whether a value already in the file reads as ``wanted`` (types included: 1 is not 1.0 or "1")."""
    return json.dumps(_plain(current), sort_keys=True) == json.dumps(_plain(wanted), sort_keys=True) and (
        type(_plain(current)) is type(_plain(wanted))
    )


def sync_mapping(node: MutableMapping[str, Any], target: Mapping[str, Any]) -> None:
    """Make ``node`` (a round-trip mapping) hold exactly ``target``, touching only what differs."""
    for key in [k for k in node if k not in target]:
        del node[key]
    for key, wanted in target.items():
        current = node.get(key) if key in node else None
        if key in node and isinstance(current, MutableMapping) and isinstance(wanted, Mapping):
            sync_mapping(current, wanted)
        elif key not in node or not _same(current, wanted):
            node[key] = _plain(wanted)


def synced_text(text: str, target: Mapping[str, Any], origin: str = "params.yaml") -> str:
    """``text`` edited so that it holds ``target``; comments and untouched values kept as written."""
    handler, document = _load_round_trip(text, origin)
    if document is None:
        document = {}
    if not isinstance(document, MutableMapping):
        raise ParamsError(f"{origin}: top level must be a mapping of sections")
    sync_mapping(document, target)
    return _dump(handler, document)


def _check_readers_agree(text: str, target: Mapping[str, Any], origin: str) -> None:
    """Both YAML readers (canaryaudit's and DVC's) must see ``target`` in the written text."""
    from canaryaudit.config import load_yaml

    ours = load_yaml(text, origin)
    dvc = _load_round_trip(text, origin)[1]
    for reader, seen in (("canaryaudit", ours), ("DVC (YAML 1.2)", dvc)):
        if json.dumps(_plain(seen), sort_keys=True) != json.dumps(_plain(target), sort_keys=True):
            raise ParamsError(f"{origin}: after the edit {reader} would read other settings than those validated; "
                              "nothing was written")


def target_settings(params_path: Path, source: Path | None, overrides: Sequence[str]) -> dict[str, Any]:
    """The raw settings a run uses: ``source`` (default ``params_path``) with ``overrides`` applied."""
    from canaryaudit.config import apply_override, load_yaml

    origin = source or params_path
    try:
        raw = load_yaml(origin.read_text(encoding="utf-8"), str(origin))
    except FileNotFoundError:
        raise ParamsError(f"{origin}: params file not found") from None
    raw = dict(raw or {})
    for assignment in overrides:
        apply_override(raw, assignment)
    return raw


def write_settings(params_path: Path, source: Path | None, overrides: Sequence[str]) -> bool:
    """Apply ``source``'s settings and ``overrides`` to ``params_path`` in place; True if it changed.

    Validate first (:func:`canaryaudit.config.load_params`): this only writes.
    """
    params_path = Path(params_path)
    target = target_settings(params_path, source, overrides)
    current = params_path.read_text(encoding="utf-8") if params_path.exists() else ""
    base = current or (source.read_text(encoding="utf-8") if source else "")
    text = synced_text(base, target, str(params_path))
    _check_readers_agree(text, target, str(params_path))
    if text == current:
        return False
    with atomic_open(params_path) as handle:
        handle.write(text)
    return True
