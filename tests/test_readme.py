"""README commands run as written: overrides name real keys, CLI options exist, the cheap ones run.

Every ``bash`` block of the README is read. Each ``-S KEY=VALUE`` must validate against the
repository's params.yaml; a ``dvc exp run`` must not repeat a key (DVC keeps the last value: one
experiment, not two); each ``canaryaudit`` command line must parse; ``canaryaudit params`` runs.
"""

from __future__ import annotations

import re
import shlex

import pytest

from canaryaudit.cli import build_parser, main
from canaryaudit.config import load_params
from tests.conftest import REPO

BLOCKS = re.findall(r"```bash\n(.*?)```", (REPO / "README.md").read_text(encoding="utf-8"), flags=re.S)


def _commands() -> list[list[str]]:
    """Each command of the bash blocks as argv (comments dropped, `&&` and continuations split/joined)."""
    commands = []
    for block in BLOCKS:
        for line in block.replace("\\\n", " ").splitlines():
            line = line.split(" #")[0].strip()
            if not line or line.startswith(("#", "export ")):
                continue
            for part in line.split("&&"):
                argv = shlex.split(part)
                if argv:
                    commands.append(argv)
    return commands


COMMANDS = _commands()


def _overrides(argv: list[str]) -> list[str]:
    """The ``-S`` values, without Hydra's ``+`` (add a key) prefix."""
    return [argv[i + 1].lstrip("+") for i, a in enumerate(argv[:-1]) if a in ("-S", "--set")]


def _has_key(tree: dict, dotted: str) -> bool:
    for part in dotted.split("."):
        if not isinstance(tree, dict) or part not in tree:
            return False
        tree = tree[part]
    return True


def test_the_readme_has_the_commands_this_test_checks():
    names = {" ".join(c[:3]) for c in COMMANDS}
    assert "dvc exp run" in names and any(c[0].endswith("canaryaudit") for c in COMMANDS)


@pytest.mark.parametrize("argv", [c for c in COMMANDS if _overrides(c)], ids=lambda c: " ".join(c)[:60])
def test_every_command_s_overrides_validate_together(argv):
    """All of a command's overrides at once (a comma list is DVC's one-experiment-per-value syntax)."""
    overrides = []
    for override in _overrides(argv):
        key, _, value = override.partition("=")
        overrides.append(override if "," not in value or "[" in value else f"{key}={value.split(',')[0]}")
    load_params(REPO / "params.yaml", overrides)  # raises ParamsError naming the key and what is allowed


@pytest.mark.parametrize("argv", [c for c in COMMANDS if c[:3] == ["dvc", "exp", "run"]], ids=lambda c: " ".join(c)[:60])
def test_dvc_exp_run_never_repeats_a_key(argv):
    keys = [o.partition("=")[0] for o in _overrides(argv)]
    assert len(keys) == len(set(keys)), f"{' '.join(argv)}: one experiment with the last value, not one per value"
    import yaml

    params = yaml.safe_load((REPO / "params.yaml").read_text())
    for i, arg in enumerate(argv[:-1]):  # DVC's Hydra refuses a key params.yaml lacks unless it has a +
        if arg in ("-S", "--set") and not argv[i + 1].startswith("+"):
            key = argv[i + 1].partition("=")[0]
            assert _has_key(params, key), f"{key} is not in params.yaml: dvc exp run needs -S +{key}=..."


@pytest.mark.parametrize("argv", [c for c in COMMANDS if c[0].endswith("canaryaudit")], ids=lambda c: " ".join(c)[:60])
def test_every_canaryaudit_command_parses(argv):
    args = argv[1:]
    command = next((a for a in args if not a.startswith("-")), None)
    build_parser(command).parse_args(args)  # SystemExit on an unknown subcommand or option


def test_params_check_and_show_run_as_written(capsys, monkeypatch):
    monkeypatch.chdir(REPO)
    assert main(["params", "check"]) == 0
    assert main(["params", "show", "-S", "train.variants.dp.dp.noise_multiplier=2.0",
                 "-S", "train.variants.dp.dp.target_epsilon=null"]) == 0
    assert "noise_multiplier: 2.0" in capsys.readouterr().out
