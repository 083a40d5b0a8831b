"""User data as DVC dependencies: editing a file: corpus (inside or outside the repo) reruns prepare."""

from __future__ import annotations

import copy
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from canaryaudit.config import load_params
from canaryaudit.errors import ParamsError
from tests.conftest import TINY_PARAMS, repo_workspace


def _dvc(ws: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    return subprocess.run([str(Path(sys.executable).with_name("dvc")), *args], cwd=ws, env=env, capture_output=True,
                          text=True, timeout=600)


def _corpus(path: Path, n: int = 12) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(f"Dear team, meeting number {i} moves to room {i + 3} on Monday." for i in range(n)) + "\n")
    return path


def test_a_file_source_must_be_named_as_the_dependency(tmp_path):
    path = tmp_path / "params.yaml"
    path.write_text("data:\n  source: file:corpus.txt\n  dependency: src/canaryaudit/corpus\n")
    with pytest.raises(ParamsError, match=r"set data.dependency: corpus.txt"):
        load_params(path)
    assert load_params(path, ["data.dependency=./corpus.txt"]).data.dependency == "./corpus.txt"
    with pytest.raises(ParamsError, match=r"set extract.prefix.dependency: prompts.txt"):
        load_params(path, ["data.dependency=corpus.txt", "extract.prefix.source=file:prompts.txt",
                           "extract.prefix.dependency=data/sanitized/test.jsonl"])
    # left out in code (not in params.yaml, which always names it): it follows the source
    assert load_params(path, ["data.dependency=corpus.txt", "extract.prefix.source=file:p.txt"]).extract.prefix.dependency == "p.txt"


@pytest.mark.slow
@pytest.mark.parametrize("where", ["inside", "outside"])
def test_editing_the_corpus_makes_prepare_changed(tmp_path, where):
    params = copy.deepcopy(TINY_PARAMS)
    ws = tmp_path / "repo"
    corpus = _corpus(ws / "corpus" / "mail.txt" if where == "inside" else tmp_path / "elsewhere" / "mail.txt")
    source = "corpus" if where == "inside" else str(corpus.parent)
    params["data"].update(source=f"file:{source}", dependency=source, allow_outside_workspace=where == "outside")
    params["data"]["file"] = {"txt_unit": "line"}
    repo_workspace(ws, params)
    assert _dvc(ws, "repro", "prepare").returncode == 0
    assert json.loads(_dvc(ws, "status", "prepare", "--json").stdout) == {}
    with corpus.open("a") as handle:
        handle.write("One more line about the quarterly numbers and the budget.\n")
    status = json.loads(_dvc(ws, "status", "--json").stdout)
    assert "prepare" in status
    changed = status["prepare"][0]["changed deps"]
    assert any(k.rstrip("/").endswith(source.rstrip("/")) for k in changed), changed
