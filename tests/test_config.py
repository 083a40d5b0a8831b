"""params.yaml loader: defaults, and each kind of bad input gives a message naming the key."""

import copy

import pytest
import yaml

from canaryaudit.config import load_params, parse_params
from canaryaudit.errors import ParamsError
from tests.conftest import REPO, TINY_PARAMS


def test_repo_params_file_is_valid():
    params = load_params(REPO / "params.yaml")
    assert params.data.source == "builtin:emails"
    assert params.canaries.insertions == (1, 4, 16, 64)
    assert params.sanitize.action_for("ssn") == "mask"


def test_params_are_frozen():
    params = parse_params(TINY_PARAMS)
    with pytest.raises(Exception):
        params.data.seed = 3  # type: ignore[misc]


def _with(path: str, value):
    from tests.test_faults import _set  # one dotted-key setter for the params tests

    return _set(copy.deepcopy(TINY_PARAMS), path, value)


BAD = [
    ("data.seed", "7", "data.seed: Input should be a valid integer"),
    ("data.seed", -1, "data.seed: Input should be greater than or equal to 0"),
    ("data.sede", 3, "data.sede: unknown key; allowed keys here: allow_outside_workspace, builtin, dependency, file, hf, max_documents"),
    ("bogus", {}, "bogus: unknown key; allowed keys here: canaries, data, exposure, extract, gate, pii, pretrain, report, sanitize, train"),
    ("data.source", "s3://bucket", "data.source: must be 'builtin:emails', 'file:PATH' or 'hf:NAME[:CONFIG]'"),
    ("data.builtin.target_bytes", 10, "data.builtin.target_bytes: Input should be greater than or equal to 10000"),
    ("data.split.valid_fraction", 1.0, "data.split.valid_fraction: Input should be less than 1"),
    ("data.split", {"valid_fraction": 0.5, "test_fraction": 0.5}, "data.split: valid_fraction + test_fraction must be < 1"),
    ("data.file.txt_unit", "page", "data.file.txt_unit: Input should be 'block', 'line' or 'file'"),
    ("data.file.txt_unit", "off", "data.file.txt_unit: Input should be 'block', 'line' or 'file' (got 'off')"),
    ("sanitize.enabled", "yes", "sanitize.enabled: Input should be a valid boolean"),
    ("sanitize.detectors", ["ssn", "passport"], "sanitize.detectors: unknown detector 'passport'; known: email"),
    ("sanitize.actions", {"ssn": "hide"}, "sanitize.actions.ssn: Input should be 'mask', 'drop' or 'keep'"),
    ("sanitize.entropy.min_bits_per_char", 0, "sanitize.entropy.min_bits_per_char: Input should be greater than 0"),
    ("canaries.insertions", [1, 0], "canaries.insertions: every insertion count must be between 1 and 100000"),
    ("canaries.insertions", [10**9], "canaries.insertions: every insertion count must be between 1 and 100000"),
    ("data.split.test_fraction", 0.0, "data.split.test_fraction: Input should be greater than 0"),
    ("sanitize.detectors", [], "sanitize: detectors: empty while enabled: true"),
    ("sanitize", {"detectors": ["ssn"], "actions": {"email": "drop"}}, "sanitize: actions.email: no 'email' in detectors"),
    ("canaries.insertions", [4, 4], "canaries.insertions: insertion counts must be distinct"),
    ("canaries.per_count", 1.5, "canaries.per_count: Input should be a valid integer"),
    ("canaries.formats", [{"name": "a"}], "canaries.formats[0].template: required key is missing"),
    ("canaries.formats", [{"name": "a b", "template": "{d}"}], "canaries.formats[0].name: String should match pattern"),
    ("canaries.alphabets", {"d": "0"}, "canaries.alphabets: alphabet 'd' needs at least 2 symbols"),
    ("canaries.audit.format", "nope", "canaries: audit.format 'nope' is not among formats (ssn, number)"),
    ("extract.strategies", ["top_n", "beam"], "extract.strategies: unknown name 'beam'; known: top_n, temperature_decay"),
    ("extract.metrics", ["zlib", "zlib"], "extract.metrics: names must not repeat"),
    ("extract.top_k", 50, "extract: top_k must be <= candidates"),
    ("extract.candidates", 201, "extract: candidates (201) must be <= samples_per_strategy (12)"),
    ("exposure.extraction.top_k", 0, "exposure.extraction.top_k: Input should be greater than or equal to 1"),
    ("gate.rules", [{"check": "membership_auc", "variant": "dp", "max": 0.6, "use": "mean"}],
     "gate.rules[0].use: Input should be 'point', 'ci_low' or 'ci_high'"),
    ("gate.rules", [{"check": "empirical_epsilon", "variant": "dp", "max": 1, "use": "ci_low"}],
     "gate.rules[0]: use applies to membership_auc and pii_inference_accuracy rules only"),
    ("extract.prefix", {"source": "wiki"}, "extract.prefix.source: use 'test' (the held-out split) or 'file:PATH'"),
    ("extract.prefix", {"min_tokens": 9, "max_tokens": 5}, "extract.prefix: min_tokens must be <= max_tokens"),
    ("extract.membership.tokens", 1, "extract.membership.tokens: Input should be greater than or equal to 2"),
    ("extract.reference_variant", "big", "extract.reference_variant 'big' is not 'pretrain' or a train variant; defined: nonprivate"),
    ("report.top_samples", -1, "report.top_samples: Input should be greater than or equal to 0"),
    ("gate.rules", [{"check": "speed", "variant": "dp", "max": 1}], "gate.rules[0].check: unknown check 'speed'"),
    ("gate.rules", [{"check": "exposure", "variant": "dp", "max": 1}], "gate.rules[0]: an exposure rule needs insertions"),
    ("gate.rules", [{"check": "memorized_pii", "variant": "dp", "max": 0, "insertions": 4}],
     "gate.rules[0]: insertions and estimator apply to exposure rules only"),
    ("gate.rules", [{"check": "membership_auc", "variant": "dp", "max": 0.6, "metric": "loss"}],
     "gate.rules[0]: unknown metric 'loss'"),
    ("gate.rules", [{"check": "membership_auc", "variant": "prod", "max": 0.6}],
     "gate.rules[0].variant 'prod' is not a train variant"),
    ("gate.rules", [{"check": "membership_auc", "variant": "dp"}], "gate.rules[0].max: required key is missing"),
]


@pytest.mark.parametrize(("key", "value", "message"), BAD, ids=[b[0] + "=" + repr(b[1])[:20] for b in BAD])
def test_bad_params_name_the_key(key, value, message):
    with pytest.raises(ParamsError) as info:
        parse_params(_with(key, value), origin="params.yaml")
    assert message in str(info.value)
    assert str(info.value).startswith("params.yaml: invalid params:")


def test_space_too_small_for_requested_canaries():
    raw = _with("canaries.formats", [{"name": "pin", "template": "pin {d}x2"}])
    raw["canaries"].update(per_count=40, audit={"count": 0})  # 3 counts x 40 = 120 > |R| = 100
    with pytest.raises(ParamsError, match=r"canaries: formats\[0\].template: format 'pin': 120 canaries requested"):
        parse_params(raw)


def test_template_hole_errors_at_load():
    raw = _with("canaries.formats", [{"name": "a", "template": "x {z}x3"}])
    raw["canaries"]["audit"] = {"count": 0}
    with pytest.raises(ParamsError, match=r"canaries: formats\[0\].template: format 'a': unknown alphabet \{z\}"):
        parse_params(raw)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "the file is empty"),
        ("- a\n- b\n", "top level must be a mapping"),
        ("data:\n  seed: 1\ndata:\n  seed: 2\n", "params.yaml:3: invalid YAML: duplicate key 'data'"),
        ("data: [unclosed\n", "params.yaml:2: invalid YAML"),
    ],
)
def test_bad_files(tmp_path, text, message):
    path = tmp_path / "params.yaml"
    path.write_text(text)
    with pytest.raises(ParamsError, match=message.replace("[", r"\[")):
        load_params(path)


def test_missing_file(tmp_path):
    with pytest.raises(ParamsError, match="params file not found"):
        load_params(tmp_path / "params.yaml")


def test_yaml_yes_no_are_strings_not_booleans(tmp_path):
    path = tmp_path / "params.yaml"
    path.write_text("sanitize:\n  enabled: yes\n")
    with pytest.raises(ParamsError, match="sanitize.enabled: Input should be a valid boolean .got 'yes'."):
        load_params(path)
    path.write_text("sanitize:\n  enabled: false\n")
    assert load_params(path).sanitize.enabled is False


def test_overrides(tmp_path):
    path = tmp_path / "params.yaml"
    path.write_text(yaml.safe_dump(TINY_PARAMS))
    params = load_params(path, overrides=["data.seed=99", "canaries.insertions=[2, 3]"])
    assert params.data.seed == 99 and params.canaries.insertions == (2, 3)
    with pytest.raises(ParamsError, match="expected KEY=VALUE"):
        load_params(path, overrides=["data.seed"])
