"""Fault injection: every bad input of issue 16 ends in one message naming the key, file or line (exit 2),
every fault leaves nothing behind, and `params check` accepts nothing a stage later refuses for a params reason.

Stages run as DVC runs them (a subprocess in a workspace); the logic under test is called directly where
that is what decides. The expensive fixture (a workspace through prepare, sanitize and canaries, and a
tiny untrained model folder) is built once for the module.
"""

from __future__ import annotations

import copy
import errno
import json
import math
import os
import random
import shutil
import signal
import subprocess
import sys
import textwrap
import tracemalloc
import typing
from pathlib import Path

import pytest
import yaml
from pydantic import BaseModel

from canaryaudit import cli
from canaryaudit.config import Params, load_params, parse_params
from canaryaudit.errors import DataError, OutputError, ParamsError
from tests.conftest import REPO, TINY_PARAMS, run_stage, write_params


# ---------------------------------------------------------------- helpers


def _set(raw: dict, dotted: str, value) -> dict:
    node = raw
    keys = dotted.split(".")
    for key in keys[:-1]:
        node = node.setdefault(key, {})
    node[keys[-1]] = value
    return raw


def tiny(**dotted) -> dict:
    raw = copy.deepcopy(TINY_PARAMS)
    for key, value in dotted.items():
        _set(raw, key.replace("__", "."), value)
    return raw


def assert_clear(proc: subprocess.CompletedProcess[str], *needles: str, code: int = 2) -> str:
    """Exit ``code``, no traceback, and the output names every needle."""
    output = proc.stdout + proc.stderr
    assert proc.returncode == code, output[-3000:]
    assert "Traceback" not in output, output[-3000:]
    for needle in needles:
        assert needle in output, (needle, output[-3000:])
    return output


def cli_run(capsys, *argv: str) -> tuple[int, str]:
    code = cli.main(list(argv))
    captured = capsys.readouterr()
    return code, captured.out + captured.err


@pytest.fixture(scope="module")
def ws(tmp_path_factory) -> Path:
    """A workspace through prepare, sanitize and canaries on the tiny params."""
    root = tmp_path_factory.mktemp("faults")
    shutil.copytree(REPO / "stages", root / "stages")
    write_params(root / "params.yaml", copy.deepcopy(TINY_PARAMS))
    for stage in ("prepare", "sanitize", "canaries"):
        run_stage(root, stage)
    return root


@pytest.fixture(scope="module")
def model_dir(ws: Path) -> Path:
    """An untrained tiny model folder (what the train stage writes), built without training."""
    import torch

    from canaryaudit.io import read_jsonl
    from canaryaudit.training.models import ModelSpec, build_model, save_model_folder
    from canaryaudit.training.tokenizers import CharTokenizer

    tokenizer = CharTokenizer.train([r["text"] for r in read_jsonl(ws / "data/augmented/train.jsonl")])
    spec = ModelSpec(arch="gpt2", vocab_size=tokenizer.vocab_size, layers=1, width=16, heads=2, context=32)
    torch.manual_seed(0)
    folder = ws / "models" / "good"
    save_model_folder(build_model(spec), spec, folder)
    tokenizer.save(folder)
    return folder


def params_file(ws: Path, name: str, raw: dict) -> str:
    write_params(ws / f"{name}.yaml", raw)
    return f"{name}.yaml"


# ================================================================ tracebacks that are now messages


def test_noise_multiplier_zero_is_refused_by_params_check(tmp_path, capsys):
    path = write_params(tmp_path / "p.yaml", tiny(**{"train__variants__dp__dp__noise_multiplier": 0.0}))
    code, out = cli_run(capsys, "params", "check", "--params", str(path))
    assert code == 2 and "train.variants.dp.dp.noise_multiplier: 0 adds no noise" in out


def test_tiny_noise_multiplier_is_refused_before_training(ws):
    # sigma 0.01 passes params check (it depends on N), but the canaries stage, which knows N, refuses
    # it: Opacus' PRV accountant was killed (over 100 GB) computing its epsilon.
    name = params_file(ws, "sigma", tiny(**{"train__variants__dp__dp__noise_multiplier": 0.01}))
    proc = run_stage(ws, "canaries", "--params", name, "--out-train", "tmp/sigma/train.jsonl", "--out", "tmp/sigma/c",
                     "--report", "tmp/sigma/r.json", check=False)
    assert_clear(proc, "train.variants.dp.dp.noise_multiplier", "above 1000")
    assert not (ws / "tmp/sigma").exists()


@pytest.mark.parametrize("value", [".inf", ".nan", "-.inf"])
def test_non_finite_gate_max_is_exit_2_not_a_failed_gate(tmp_path, capsys, value):
    raw = tiny()
    text = yaml.safe_dump(raw).replace("max: 20.0", f"max: {value}")
    (tmp_path / "p.yaml").write_text(text)
    code, out = cli_run(capsys, "params", "check", "--params", str(tmp_path / "p.yaml"))
    assert code == 2 and "gate.rules[0].max: Input should be a finite number" in out
    (tmp_path / "reports").mkdir()
    code, out = cli_run(capsys, "gate", "--params", str(tmp_path / "p.yaml"), "--reports", str(tmp_path / "reports"),
                        "--no-status")
    assert code == 2 and "gate.rules[0].max" in out  # was exit 1 (CI reads it as "gate failed") with a traceback


def test_non_finite_gate_max_in_report_stage(ws):
    (ws / "inf.yaml").write_text(yaml.safe_dump(tiny()).replace("max: 20.0", "max: .inf"))
    proc = run_stage(ws, "report", "--params", "inf.yaml", "--out", "tmp/inf/index.html", "--summary",
                     "tmp/inf/s.json", "--gate", "tmp/inf/g.json", check=False)
    assert_clear(proc, "inf.yaml", "gate.rules[0].max")
    assert not (ws / "tmp/inf").exists()


def test_exposure_on_a_missing_model(ws):
    proc = run_stage(ws, "exposure", "--variant", "nonprivate", "--model", "models/nowhere",
                     "--report", "tmp/e/r.json", "--csv", "tmp/e/r.csv", check=False,
                     in_process=False)  # what DVC sees: exit 2 and one message, no traceback
    assert_clear(proc, "models/nowhere: model folder not found", "train@nowhere")


@pytest.mark.parametrize("damage", ["truncated", "random"])
def test_exposure_on_a_damaged_safetensors(ws, model_dir, damage):
    folder = ws / "models" / damage
    shutil.copytree(model_dir, folder, dirs_exist_ok=True)
    weights = folder / "model.safetensors"
    raw = weights.read_bytes()
    weights.write_bytes(raw[: len(raw) // 2] if damage == "truncated" else random.Random(1).randbytes(len(raw)))
    proc = run_stage(ws, "exposure", "--variant", "nonprivate", "--model", f"models/{damage}",
                     "--report", "tmp/e/r.json", "--csv", "tmp/e/r.csv", check=False)
    assert_clear(proc, f"models/{damage}/model.safetensors: not a complete safetensors file")


def test_weights_of_another_architecture_name_the_file(ws, model_dir, tmp_path):
    from canaryaudit.training.models import load_model_folder

    folder = tmp_path / "m"
    shutil.copytree(model_dir, folder)
    config = json.loads((folder / "model_config.json").read_text())
    (folder / "model_config.json").write_text(json.dumps({**config, "width": 32}))
    with pytest.raises(DataError, match=r"model_config.json: disagrees with config.json \(width 32 vs 16"):
        load_model_folder(folder)
    hf_config = json.loads((folder / "config.json").read_text())
    (folder / "config.json").write_text(json.dumps({**hf_config, "n_embd": 32}))
    with pytest.raises(DataError, match=r"model.safetensors: weights do not fit config.json"):
        load_model_folder(folder)
    (folder / "config.json").write_text(json.dumps(hf_config))
    (folder / "model_config.json").write_text(json.dumps({**config, "colour": "red"}))
    with pytest.raises(DataError, match="model_config.json: not a canaryaudit model config"):
        load_model_folder(folder)


@pytest.mark.parametrize("line", ['{"text": "lone \\ud800 surrogate here, long enough"}',
                                  '{"text": "deep", "x": ' + "[" * 100_000 + "]" * 100_000 + "}"])
def test_bad_jsonl_line_names_file_and_line(ws, line):
    (ws / "bad.jsonl").write_text('{"text": "a first good document, long enough"}\n' + line + "\n")
    name = params_file(ws, "badjsonl", tiny(data__source="file:bad.jsonl"))
    proc = run_stage(ws, "prepare", "--params", name, "--out", "tmp/bad", "--report", "tmp/bad.json", check=False)
    out = assert_clear(proc, "bad.jsonl:2")
    assert "surrogate" in out or "nested too deeply" in out
    assert not (ws / "tmp/bad").exists()


def test_override_with_bad_yaml(tmp_path, capsys):
    code, out = cli_run(capsys, "params", "check", "--params", str(REPO / "params.yaml"), "-S", "train.epochs=[1")
    assert code == 2 and "override 'train.epochs=[1': invalid YAML" in out


def test_circular_alias_and_deep_nesting(tmp_path, capsys):
    (tmp_path / "circ.yaml").write_text("data: {seed: 1}\nx: &a [1, *a]\n")  # a list holding itself
    code, out = cli_run(capsys, "params", "check", "--params", str(tmp_path / "circ.yaml"))
    assert code == 2 and "circ.yaml: a value contains itself" in out  # was: ValueError: Circular reference
    (tmp_path / "circ2.yaml").write_text("data: &a {seed: 1, x: *a}\n")  # a mapping: PyYAML refuses it itself
    code, out = cli_run(capsys, "params", "check", "--params", str(tmp_path / "circ2.yaml"))
    assert code == 2 and "circ2.yaml:1: invalid YAML: found unconstructable recursive node" in out
    (tmp_path / "deep.yaml").write_text("data: " + "[" * 50_000 + "]" * 50_000 + "\n")
    code, out = cli_run(capsys, "params", "check", "--params", str(tmp_path / "deep.yaml"))
    assert code == 2 and "deep.yaml: invalid YAML: nested too deeply" in out


def test_billion_laughs_is_refused_within_bounded_memory(tmp_path):
    lines = ['a: &a ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]']
    for previous, name in zip("abcdefg", "bcdefgh"):
        lines.append(f"{name}: &{name} [" + ", ".join([f"*{previous}"] * 9) + "]")
    (tmp_path / "laughs.yaml").write_text("\n".join(lines) + "\n")  # 9^8 values once expanded
    tracemalloc.start()
    try:
        with pytest.raises(ParamsError, match="laughs.yaml: expands to more than 200000 values"):
            load_params(tmp_path / "laughs.yaml")
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 20e6, peak  # was 1.1 GB before the error


# ---------------------------------------------------------------- disk full


@pytest.fixture
def full_disk(tmp_path):
    """A 16 kB tmpfs: any model write fills it (needs root; skipped otherwise)."""
    mnt = tmp_path / "full"
    mnt.mkdir()
    proc = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=16k", "tmpfs", str(mnt)], capture_output=True, text=True)
    if proc.returncode != 0:
        pytest.skip(f"cannot mount a small tmpfs: {proc.stderr.strip()[:100]}")
    yield mnt
    subprocess.run(["umount", "-l", str(mnt)], capture_output=True)


def _running_runs() -> list:
    from mlflow.tracking import MlflowClient

    client = MlflowClient(os.environ["MLFLOW_TRACKING_URI"])
    ids = [e.experiment_id for e in client.search_experiments()]
    return client.search_runs(ids, filter_string="attributes.status = 'RUNNING' and tags.`canaryaudit.role` = 'variant'")


@pytest.mark.usefixtures("mlflow_tracking")  # the child run is closed, not left RUNNING
def test_disk_full_during_training(ws, full_disk):
    name = params_file(ws, "short", tiny(train__max_steps=2))
    proc = run_stage(ws, "train", "--params", name, "--variant", "nonprivate", "--out", str(full_disk / "m"),
                     "--report", "tmp/full/r.json", "--plot", "tmp/full/l.csv", "--checkpoints",
                     str(full_disk / "ckpt"), check=False)
    assert_clear(proc, str(full_disk), "No space left on device", "no partial output")
    assert [p for p in full_disk.rglob("*") if p.is_file()] == []  # no half model folder, no half checkpoint
    assert not (ws / "tmp/full").exists()
    assert _running_runs() == []  # the child run was marked FAILED, not left RUNNING
    again = run_stage(ws, "exposure", "--variant", "nonprivate", "--model", "models/nowhere",
                      "--report", "tmp/e/r.json", "--csv", "tmp/e/r.csv", check=False)
    assert_clear(again, "model folder not found")  # the next stage: one message, no store tracebacks


def test_disk_full_while_preparing(ws, full_disk):
    proc = run_stage(ws, "prepare", "--out", str(full_disk / "raw"), "--report", str(full_disk / "p.json"), check=False)
    assert_clear(proc, "No space left on device")
    assert [p for p in full_disk.rglob("*") if p.is_file()] == []


def test_full_disk_keeps_the_previous_checkpoint(tmp_path, monkeypatch):
    import torch

    from canaryaudit.training import checkpoint as ck

    first = ck.Checkpoint(1, {"model.w": torch.ones(3)}, {"key": "k", "step": 1})
    ck.save_checkpoint(tmp_path, first)

    def no_space(*_args, **_kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(ck, "save_file", no_space)
    with pytest.raises(OutputError, match=r"ckpt-0002: could not write .*No space left"):
        ck.save_checkpoint(tmp_path, ck.Checkpoint(2, {"model.w": torch.zeros(3)}, {"key": "k", "step": 2}))
    assert not (tmp_path / "ckpt-0002").exists()
    assert ck.load_checkpoint(tmp_path, "k").epoch == 1
    (tmp_path / "ckpt-0001" / "state.safetensors").write_bytes(b"\x00" * 5)  # corrupt: skipped, not a traceback
    assert ck.load_checkpoint(tmp_path, "k") is None


def test_storage_errors_wrapped_by_libraries_are_recognised():
    from canaryaudit.stagekit import storage_problem

    try:
        try:
            raise OSError(errno.ENOSPC, "No space left on device", "/data/x")
        except OSError as inner:
            raise RuntimeError("Error while serializing") from inner
    except RuntimeError as exc:
        assert storage_problem(exc) == "/data/x: No space left on device"

    class OperationalError(Exception):
        pass

    assert "database or disk is full" in storage_problem(OperationalError("(sqlite3.OperationalError) database or disk is full"))
    assert storage_problem(ValueError("a bug")) is None


# ================================================================ checked too late, now checked first


@pytest.mark.parametrize(("override", "key"), [
    ({"train__variants__dp__dp__delta": 0.5}, "train.variants.dp.dp.delta: 0.5 must be below 1/N"),
    ({"train__variants__dp__dp": {"enabled": True, "target_epsilon": 1e-6}}, "train.variants.dp.dp.target_epsilon"),
    ({"train__batch_size": 100_000, "train__physical_batch_size": 100_000}, "train.variants.dp.batch_size: 100000 exceeds"),
])
def test_training_rules_that_need_n_fail_in_the_canaries_stage(ws, override, key):
    name = params_file(ws, "needn", tiny(**override))
    load_params(ws / name)  # params check cannot know N ...
    proc = run_stage(ws, "canaries", "--params", name, "--out-train", "tmp/n/train.jsonl", "--out", "tmp/n/c",
                     "--report", "tmp/n/r.json", check=False)
    assert_clear(proc, key)  # ... the first stage that knows it refuses, before any training
    assert not (ws / "tmp/n").exists()


@pytest.mark.parametrize(("dotted", "value", "message"), [
    ("train.model.heads", 3, "train.model.heads: gpt2 needs width (32) to be a multiple of heads"),
    ("train.dp.max_grad_norm", math.inf, "train.dp.max_grad_norm: Input should be a finite number"),
    ("train.variants.dp.dp.max_noise_multiplier", math.inf, "max_noise_multiplier: Input should be a finite number"),
    ("train.optimizer.lr", math.nan, "train.optimizer.lr: Input should be a finite number"),
])
def test_static_rules_are_in_params_check(tmp_path, capsys, dotted, value, message):
    path = write_params(tmp_path / "p.yaml", _set(copy.deepcopy(TINY_PARAMS), dotted, value))
    code, out = cli_run(capsys, "params", "check", "--params", str(path))
    assert code == 2 and message in out, out


def test_word_alphabet_with_the_char_tokenizer(tmp_path, capsys):
    """Words spelled letter by letter are searched like any multi-token symbol (token_space)."""
    from canaryaudit.exposure.search import canary_space
    from canaryaudit.training.tokenizers import CharTokenizer

    raw = tiny(canaries__alphabets={"d": "0123456789", "w": ["apple", "pear", "plum"]})
    raw["canaries"]["formats"].append({"name": "fruit", "template": "my fruit is {w}x6"})
    path = write_params(tmp_path / "p.yaml", raw)
    code, out = cli_run(capsys, "params", "check", "--params", str(path))
    assert code == 0, out
    fruit = next(f for f in parse_params(raw).canaries.parsed_formats() if f.name == "fruit")
    space = canary_space(fruit, CharTokenizer.train(["my fruit is apple pear plum"]))
    assert space.max_tokens == 6 * len("apple") and space.single_path  # one token a letter, one spelling a filling


def test_tokenizer_checks_before_training_refuse_only_lossy_tokenizers(caplog):
    """A BPE that splits words into pieces is audited (exposure under any tokenizer); a tokenizer
    that cannot spell a symbol at all is refused before any model is trained."""
    import logging

    from canaryaudit.canaries import parse_format
    from canaryaudit.training.pipeline import check_searchable
    from canaryaudit.training.tokenizers import BpeTokenizer, CharTokenizer

    fmt = parse_format("fruit", "my fruit is {w}x4", {"w": ["quince", "kumquat", "rambutan"]})
    bpe = BpeTokenizer.train(["the cat sat on the mat " * 20], 300)
    with caplog.at_level(logging.WARNING, logger="canaryaudit"):
        check_searchable([fmt], bpe, "train.variants.v")  # pieces of words: searchable, no error
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]
    digits = parse_format("n", "number {d}x3", {"d": "0123456789"})
    with pytest.raises(ParamsError, match=r"canaries.alphabets: symbols of format 'n' never occur .* char tokenizer"):
        check_searchable([digits], CharTokenizer.train(["number 0123456"]), "train.variants.v")


def test_diverged_loss_names_no_phantom_checkpoint():
    import torch
    from torch.utils.data import TensorDataset

    from canaryaudit.training.loop import Trainer
    from canaryaudit.training.models import ModelSpec, build_model

    settings = parse_params(tiny(**{"train__variants__dp__dp__max_grad_norm": 5.0})).train.variant("dp")
    data = TensorDataset(torch.zeros(4, 8, dtype=torch.long), torch.zeros(4, 8, dtype=torch.long))
    model = build_model(ModelSpec(arch="gpt2", vocab_size=8, layers=1, width=16, heads=2, context=8))
    trainer = Trainer(settings, model, data, data, data, key="train.variants.dp", checkpoint_dir=Path("ck"))
    message = trainer._diverged_message(math.nan, 1, 0)
    assert "epoch 0" not in message and "no checkpoint was saved" in message
    assert "train.variants.dp.dp.max_grad_norm (5)" in message
    assert "(epoch 2)" in trainer._diverged_message(math.nan, 3, 40)


def test_corrupt_tokenizer_names_the_file_not_the_params(ws, model_dir):
    from canaryaudit.training.tokenizers import load_tokenizer

    folder = ws / "models" / "nodigits"
    shutil.copytree(model_dir, folder, dirs_exist_ok=True)
    from canaryaudit.training.tokenizers import CharTokenizer

    # canaryaudit's first format (a plain JSON list of characters) still loads, so edit the folder in it
    meta = {"kind": "char", "chars": CharTokenizer.load(folder).itos[2:]}
    for name in ("tokenizer_kind.json", "tokenizer_config.json"):
        (folder / name).unlink()
    # the same number of characters, the digits replaced: loads, but cannot spell any canary
    meta["chars"] = [chr(0x4E00 + i) if c.isdigit() else c for i, c in enumerate(meta["chars"])]
    (folder / "tokenizer.json").write_text(json.dumps(meta, ensure_ascii=False))
    proc = run_stage(ws, "exposure", "--variant", "nonprivate", "--model", "models/nodigits",
                     "--report", "tmp/e/r.json", "--csv", "tmp/e/r.csv", check=False)
    out = assert_clear(proc, "models/nodigits/tokenizer.json: cannot be used to measure exposure",
                       "encode to an unknown token")
    assert "train.tokenizer.kind" not in out
    (folder / "tokenizer.json").write_text(json.dumps({"kind": "char", "chars": meta["chars"][:-3]}))
    with pytest.raises(DataError, match="tokenizer.json: tokenizer has .* tokens but the model was trained with"):
        load_tokenizer(folder, json.loads((folder / "model_config.json").read_text())["vocab_size"])
    (folder / "tokenizer.json").write_text(json.dumps({"kind": "char", "chars": ["ab", 3]}))
    with pytest.raises(DataError, match="tokenizer.json: corrupt char tokenizer"):
        load_tokenizer(folder)
    (folder / "tokenizer.json").write_text(json.dumps({"kind": "wordpiece"}))
    with pytest.raises(DataError, match="tokenizer.json: unknown or missing tokenizer kind 'wordpiece'"):
        load_tokenizer(folder)


def test_canary_copies_that_swamp_the_corpus(ws):
    name = params_file(ws, "swamp", tiny(canaries__insertions=[1, 100_000], canaries__per_count=1))
    proc = run_stage(ws, "canaries", "--params", name, "--out-train", "tmp/s/train.jsonl", "--out", "tmp/s/c",
                     "--report", "tmp/s/r.json", check=False)
    assert_clear(proc, "canaries.insertions", "canaries.max_fraction = 1")
    assert not (ws / "tmp/s").exists()
    name = params_file(ws, "warn", tiny(canaries__warn_fraction=0.0))
    proc = run_stage(ws, "canaries", "--params", name, "--out-train", "tmp/w/train.jsonl", "--out", "tmp/w/c",
                     "--report", "tmp/w/r.json", check=False)
    assert_clear(proc, "WARNING", "canaries.warn_fraction = 0", code=0)


def _dvc_workspace(root: Path) -> None:
    """A one-stage DVC project whose stage writes the train report the gate reads."""
    root.mkdir()
    write = ("import json, pathlib; p = pathlib.Path('reports/train'); p.mkdir(parents=True, exist_ok=True); "
             "(p / 'dp.json').write_text(json.dumps({'test_perplexity': 3.0}))")
    (root / "dvc.yaml").write_text(yaml.safe_dump({"stages": {"train": {
        "cmd": f'{sys.executable} -c "{write}"', "params": ["train.epochs"],
        "outs": [{"reports/train/dp.json": {"cache": False}}]}}}))
    raw = tiny(gate={"rules": [{"check": "test_perplexity", "variant": "dp", "max": 10.0}]})
    write_params(root / "params.yaml", raw)
    dvc = str(Path(sys.executable).with_name("dvc"))
    env = {**os.environ, "DVC_NO_ANALYTICS": "1"}
    for argv in ([dvc, "init", "--no-scm", "-q"], [dvc, "repro", "-q"]):
        subprocess.run(argv, cwd=root, check=True, capture_output=True, env=env)


def test_gate_on_stale_reports_warns_or_fails_with_strict(tmp_path, capsys):
    root = tmp_path / "proj"
    _dvc_workspace(root)
    params, reports = str(root / "params.yaml"), str(root / "reports")
    code, out = cli_run(capsys, "gate", "--params", params, "--reports", reports)
    assert code == 0 and "warning" not in out  # up to date
    write_params(root / "params.yaml", _set(yaml.safe_load((root / "params.yaml").read_text()), "train.epochs", 2))
    code, out = cli_run(capsys, "gate", "--params", params, "--reports", reports)
    assert code == 0 and "warning: the reports may be out of date" in out and "train (params.yaml)" in out
    code, out = cli_run(capsys, "gate", "--params", params, "--reports", reports, "--strict")
    assert code == 2 and "error: the reports may be out of date" in out and "train (params.yaml)" in out


def test_file_source_outside_the_workspace(ws, tmp_path):
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    (outside / "c.txt").write_text("a document of the outside world\n\nanother document out there, longer\n\n"
                                   "and a third one, as long as the others\n")
    rel = os.path.relpath(outside, ws)
    name = params_file(ws, "outside", tiny(data__source=f"file:{rel}"))
    proc = run_stage(ws, "prepare", "--params", name, "--out", "tmp/o", "--report", "tmp/o.json", check=False)
    assert_clear(proc, f"data.source: file:{rel} resolves to {outside.resolve()}", "data.allow_outside_workspace: true")
    from canaryaudit.corpus.sources import load_corpus

    allowed = parse_params(tiny(data__source=f"file:{rel}", data__allow_outside_workspace=True)).data
    assert len(load_corpus(allowed, ws).documents) == 3


def test_random_bytes_are_not_a_corpus(ws):
    rng = random.Random(0)
    docs = ["".join(chr(rng.randrange(32, 127)) for _ in range(400)) for _ in range(12)]
    (ws / "noise.jsonl").write_text("".join(json.dumps({"text": d}) + "\n" for d in docs))
    name = params_file(ws, "noise", tiny(data__source="file:noise.jsonl"))
    proc = run_stage(ws, "prepare", "--params", name, "--out", "tmp/r", "--report", "tmp/r.json", check=False)
    assert_clear(proc, "file:noise.jsonl: only", "data.min_word_fraction = 0.3")
    from canaryaudit.corpus.sources import word_fraction

    emails = [json.loads(line)["text"] for line in (ws / "data/raw/train.jsonl").read_text().splitlines()]
    assert word_fraction(emails) > 0.6 and word_fraction(["这是一个测试句子，我们写一些中文。"]) == 1.0


# ================================================================ faults


_KILLED_STAGE = textwrap.dedent("""
    import os, signal, sys
    from pathlib import Path
    from canaryaudit import tracking
    tracker = tracking.Tracker(Path(sys.argv[1]))
    parent = tracker.start_pipeline_run(tags={"canaryaudit.launcher": "cli"})
    child = tracker.start_variant_run("train", "dp", {"seed": 0})
    print(parent, child, flush=True)
    os.kill(os.getpid(), signal.SIGKILL)
""")


@pytest.mark.usefixtures("mlflow_tracking")
def test_runs_of_a_killed_stage_are_marked_killed_by_the_next_run(tmp_path):
    from mlflow.tracking import MlflowClient

    from canaryaudit import tracking

    proc = subprocess.run([sys.executable, "-c", _KILLED_STAGE, str(tmp_path)], capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == -signal.SIGKILL, proc.stderr[-2000:]
    parent, child = proc.stdout.split()
    client = MlflowClient(os.environ["MLFLOW_TRACKING_URI"])
    assert client.get_run(child).info.status == "RUNNING"
    tracker = tracking.Tracker(tmp_path)
    mine = tracker.start_variant_run("exposure", "dp", {})  # the next run reaps the dead process's runs
    assert client.get_run(child).info.status == "KILLED"
    assert client.get_run(parent).info.status == "KILLED"
    assert "ended without closing the run" in client.get_run(child).data.tags["canaryaudit.killed"]
    assert (tmp_path / ".canaryaudit" / "parent_run").read_text().strip() != parent  # the dead parent is not joined
    assert tracker.reap_stale_runs() == [] and client.get_run(mine).info.status == "RUNNING"  # a live owner: kept
    tracker.finish(mine)


def test_sigterm_unwinds_a_stage(tmp_path):
    script = tmp_path / "stage.py"
    script.write_text(textwrap.dedent("""
        import time
        from canaryaudit.io import atomic_open
        from canaryaudit.stagekit import run_stage, stage_parser

        def body(args):
            with atomic_open("out.txt") as handle:
                handle.write("partial")
                print("writing", flush=True)
                time.sleep(60)

        run_stage("demo", body, stage_parser("demo", "demo"))
    """))
    proc = subprocess.Popen([sys.executable, str(script)], cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)
    assert proc.stdout.readline().strip() == "writing"
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 143 and "demo terminated (SIGTERM); no partial output was kept" in err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["stage.py"]


def _tiny_dp_run(secure: bool):
    from canaryaudit.training.loop import Trainer
    from canaryaudit.training.pipeline import build_variant_model, model_card, prepare_data, train_report

    texts = [f"message {i}: the meeting moved to room {i % 7} at {i % 12} o'clock" for i in range(120)]
    raw = tiny(train__max_steps=3, train__model={"arch": "gpt2", "layers": 1, "width": 16, "heads": 2, "context": 16},
               **{"train__variants__dp__dp": {"enabled": True, "noise_multiplier": 1.0, "secure_noise": secure}})
    settings = parse_params(raw).train.variant("dp")
    data = prepare_data(settings, texts[:100], texts[100:110], texts[110:])
    model, spec = build_variant_model(settings, data.tokenizer)
    result = Trainer(settings, model, data.train, data.valid, data.test, progress=False).run()
    card = model_card("dp", settings, spec, result.model, result, "sha")
    weights = [p.detach().clone() for p in result.model.parameters()]
    return weights, card, train_report("dp", result, 1, settings)


def test_dp_noise_secrecy_is_stated_and_secure_noise_is_not_reproducible():
    import torch

    plain_a, card, report = _tiny_dp_run(secure=False)
    plain_b, _, _ = _tiny_dp_run(secure=False)
    assert all(torch.equal(a, b) for a, b in zip(plain_a, plain_b))  # the deterministic default
    assert card["dp"]["secure_noise"] is False and card["dp"]["noise_seed_source"] == "train.seed"
    assert "epsilon assumes that seed is secret" in card["dp"]["noise_secrecy"]
    assert report["noise_secrecy"] == card["dp"]["noise_secrecy"]
    secure_a, card, report = _tiny_dp_run(secure=True)
    secure_b, _, _ = _tiny_dp_run(secure=True)
    assert not all(torch.equal(a, b) for a, b in zip(secure_a, secure_b))  # exempt from determinism
    assert card["dp"]["noise_seed_source"] == "os.urandom" and "os.urandom" in report["noise_secrecy"]


# ================================================================ property: params check vs the stages


def _numeric_fields(model: type[BaseModel], prefix: tuple[str, ...] = ()):
    """(dotted key, int or float, lower, lower inclusive?, upper, upper inclusive?) of every bounded number."""
    for name, field in model.model_fields.items():
        args = typing.get_args(field.annotation) or (field.annotation,)
        nested = [a for a in args if isinstance(a, type) and issubclass(a, BaseModel)]
        if nested:
            yield from _numeric_fields(nested[0], (*prefix, name))
            continue
        kind = next((a for a in args if a in (int, float)), None)
        if kind is None:
            continue
        low = high = None
        low_in = high_in = True
        for m in field.metadata:
            for attr, inclusive in (("ge", True), ("gt", False)):
                if getattr(m, attr, None) is not None:
                    low, low_in = getattr(m, attr), inclusive
            for attr, inclusive in (("le", True), ("lt", False)):
                if getattr(m, attr, None) is not None:
                    high, high_in = getattr(m, attr), inclusive
        yield ".".join((*prefix, name)), kind, low, low_in, high, high_in


def _samples(kind, low, low_in, high, high_in) -> list:
    """Values at each bound: on it, just inside and just outside."""
    out = []
    step = (lambda v, d: v + d) if kind is int else (lambda v, d: math.nextafter(v, math.inf if d > 0 else -math.inf))
    if low is not None:
        out += [low, step(low, 1), step(low, -1)]
        if kind is float:
            out.append(low + 1e-6 * max(1.0, abs(low)))
    if high is not None:
        out += [high, step(high, -1), step(high, 1)]
    return [kind(v) for v in out]


#: Sections a stage reads; train.dp is sampled on the dp variant (the base one has DP off).
_SAMPLED = ("data", "sanitize", "canaries", "train", "exposure", "extract", "report")
_N_SEQUENCES = 2_000  # a data size for the rules that need one (the canaries stage checks them at the real N)
_PLANS: dict[tuple[str, str], str | None] = {}  # DP plans by settings: most samples do not touch train


def _stage_checks(params: Params) -> list[str]:
    """The params checks each stage runs before its work (the earliest stage-level validation), in stage
    order; returns the data-dependent refusals (checked at N = _N_SEQUENCES) as messages."""
    from canaryaudit.canaries import check_distinct, make_canaries
    from canaryaudit.exposure.audit import sample_references
    from canaryaudit.training.models import ModelSpec, check_spec
    from canaryaudit.training.preflight import check_variant

    c = params.canaries  # the canaries stage: generation and check_distinct (a ParamsError there)
    rng = random.Random(c.seed)
    canaries = [x for fmt in c.parsed_formats() for x in make_canaries(fmt, c.plan_for(fmt.name), rng)]
    try:
        check_distinct(canaries)
    except ValueError as exc:
        raise ParamsError(f"canaries.formats: {exc}") from None
    data_dependent = []
    for name in params.train.variants:  # the train stage: settings, model spec, DP plan
        s = params.train.variant(name)
        m = s.model
        check_spec(ModelSpec(arch=m.arch, vocab_size=100, layers=m.layers, width=m.width, heads=m.heads,
                             context=m.context, dropout=m.dropout))
        key = (name, s.model_dump_json())
        if key not in _PLANS:
            try:
                check_variant(s, _N_SEQUENCES, f"train.variants.{name}")
                _PLANS[key] = None
            except ParamsError as exc:
                _PLANS[key] = str(exc)
        if _PLANS[key] is not None:
            data_dependent.append(_PLANS[key])
    for fmt in c.parsed_formats():  # the exposure stage: reference sampling's guard
        exclude = {x.text for x in canaries if x.format == fmt.name}
        count = params.exposure.references
        if count <= 20_000:
            sample_references(fmt, count, exclude, random.Random(0))
        elif count > fmt.space_size - len(exclude):  # the same guard, without drawing millions
            raise ParamsError(f"exposure.references: {count} > free fillings of {fmt.name}")
    audit = params.extract.audit  # the extract stage: empirical epsilon's guesses vs the audit canaries
    audits = sum(x.audit for x in canaries if x.format == c.audit.format)
    if audits and audit.guesses_included + audit.guesses_excluded > audits:
        raise ParamsError("extract.audit: more guesses than audit canaries")
    return data_dependent


def test_params_check_accepts_nothing_a_stage_rejects_for_a_params_reason():
    cases = accepted = 0
    data_dependent: dict[str, str] = {}
    for dotted, kind, low, low_in, high, high_in in _numeric_fields(Params):
        if dotted.split(".")[0] not in _SAMPLED or dotted.startswith("train.variants"):
            continue
        target = dotted.replace("train.dp.", "train.variants.dp.dp.", 1)
        for value in _samples(kind, low, low_in, high, high_in):
            cases += 1
            raw = copy.deepcopy(TINY_PARAMS)
            raw["train"]["variants"]["dp"]["dp"]["accountant"] = "rdp"  # PRV at 10000 epochs: minutes per sample
            _set(raw, target, value)
            if dotted == "train.dp.target_epsilon":
                raw["train"]["variants"]["dp"]["dp"] = {"enabled": True, "target_epsilon": value, "accountant": "rdp"}
            try:
                params = parse_params(raw)
            except ParamsError as exc:
                parent, leaf = target.rsplit(".", 1)
                assert parent in str(exc) or leaf in str(exc), (target, value, str(exc))
                continue
            accepted += 1
            try:
                refusals = _stage_checks(params)
            except (ParamsError, ValueError) as exc:
                pytest.fail(f"params check accepts {target} = {value!r}, a stage refuses it: {exc}")
            for message in refusals:  # depends on N: refused by the canaries stage, naming the key
                assert "train.variants." in message, message
                data_dependent[f"{target}={value!r}"] = message.split(":")[0]
    assert cases > 300 and accepted > 150, (cases, accepted)
    # what only the data can decide, each refused (at N = 2000) with its key named:
    assert set(data_dependent.values()) <= {
        "train.variants.dp.dp.noise_multiplier", "train.variants.dp.dp.delta", "train.variants.dp.dp.target_epsilon",
        "train.variants.dp.batch_size", "train.variants.nonprivate.model.context", "train.variants.dp.model.context",
        "train.variants.reference.model.context"}, data_dependent
