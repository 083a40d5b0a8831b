"""params.yaml edited round-trip: overrides keep comments, quoting, types and every other line."""

from __future__ import annotations

import pytest
import yaml
from ruamel.yaml import YAML

from canaryaudit.config import load_params
from canaryaudit.errors import ParamsError
from canaryaudit.params_file import synced_text, write_settings
from tests.conftest import REPO

USER_FILE = """\
# my audit settings
canaries:
  alphabets:
    d: "0123456789"          # digits: a string, not a number
  insertions: [1, 4]
train:
  epochs: 1                  # keep it short
  variants:
    nonprivate: {}
    dp:
      dp: {enabled: true, noise_multiplier: 1.0}
"""


def _dvc_view(text: str):
    """What DVC reads (ruamel, YAML 1.2)."""
    return YAML(typ="safe", pure=True).load(text)


def test_override_changes_one_line_and_keeps_the_rest(tmp_path):
    path = tmp_path / "params.yaml"
    path.write_text(USER_FILE)
    assert write_settings(path, None, ["train.variants.dp.dp.noise_multiplier=2.0", "train.epochs=3"])
    text = path.read_text()
    changed = [(a, b) for a, b in zip(USER_FILE.splitlines(), text.splitlines()) if a != b]
    assert changed == [
        ("  epochs: 1                  # keep it short", "  epochs: 3                  # keep it short"),
        ("      dp: {enabled: true, noise_multiplier: 1.0}", "      dp: {enabled: true, noise_multiplier: 2.0}"),
    ]
    for view in (yaml.safe_load(text), _dvc_view(text)):  # canaryaudit's reader and DVC's agree
        assert view["canaries"]["alphabets"]["d"] == "0123456789"
        assert view["train"]["variants"]["dp"]["dp"]["noise_multiplier"] == 2.0
    assert not write_settings(path, None, ["train.epochs=3"])  # already so: the file is not rewritten


def test_new_values_are_quoted_where_yaml_1_2_would_change_their_type(tmp_path):
    path = tmp_path / "params.yaml"
    path.write_text(USER_FILE)
    write_settings(path, None, ['canaries.alphabets.h="0123456789abcdef"', 'canaries.alphabets.e="0123"'])
    view = _dvc_view(path.read_text())
    assert view["canaries"]["alphabets"] == {"d": "0123456789", "h": "0123456789abcdef", "e": "0123"}
    bare = "d: 0123456789\n"  # a bare digit string: PyYAML reads a string, DVC the integer 123456789
    assert _dvc_view(bare)["d"] == 123456789 and yaml.safe_load(bare)["d"] == "0123456789"
    fixed = synced_text(bare, yaml.safe_load(bare))  # written back, both readers see the string
    assert _dvc_view(fixed)["d"] == "0123456789"


def test_a_params_file_replaces_values_and_removes_keys_it_lacks(tmp_path):
    path, other = tmp_path / "params.yaml", tmp_path / "other.yaml"
    path.write_text(USER_FILE)
    other.write_text(USER_FILE.replace("    dp:\n      dp: {enabled: true, noise_multiplier: 1.0}\n", ""))
    assert write_settings(path, other, ["train.epochs=2"])
    view = _dvc_view(path.read_text())
    assert view["train"]["variants"] == {"nonprivate": {}} and view["train"]["epochs"] == 2
    assert path.read_text().startswith("# my audit settings\n")


def test_the_repository_params_file_round_trips_unchanged():
    text = (REPO / "params.yaml").read_text()
    assert synced_text(text, yaml.safe_load(text)) == text


def test_invalid_yaml_names_the_file(tmp_path):
    with pytest.raises(ParamsError, match="bad.yaml: invalid YAML"):
        synced_text("a: [1,\n", {"a": 1}, "bad.yaml")


def test_written_file_validates_like_the_override(tmp_path):
    path = tmp_path / "params.yaml"
    path.write_text((REPO / "params.yaml").read_text())
    write_settings(path, None, ["train.epochs=2", "exposure.references=300"])
    assert load_params(path) == load_params(REPO / "params.yaml", ["train.epochs=2", "exposure.references=300"])
