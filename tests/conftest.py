"""Shared fixtures: tiny params, an isolated MLflow store, one Prefect server and one tiny audited
pipeline per test run (per xdist worker: their users are kept on one worker by an ``xdist_group``)."""

from __future__ import annotations

import copy
import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]


def _share_cores_between_workers() -> None:
    """Under pytest-xdist, give each worker (and the stage processes it starts) its share of the CPUs:
    two workers with a full-width torch thread pool each would fight over the same cores. Set before any
    test module imports torch, which reads these at start-up; a user's own setting is kept."""
    workers = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
    if workers > 1:
        threads = str(max(1, (os.cpu_count() or 1) // workers))
        for name in ("OMP_NUM_THREADS", "MKL_NUM_THREADS"):
            os.environ.setdefault(name, threads)


_share_cores_between_workers()

TINY_PARAMS = {
    "data": {
        "source": "builtin:emails",
        "seed": 7,
        "min_chars": 20,
        "builtin": {"target_bytes": 20_000},
        "split": {"valid_fraction": 0.1, "test_fraction": 0.1},
    },
    "pretrain": {"source": "builtin:emails", "seed": 5, "target_bytes": 20_000, "epochs": 1},
    "sanitize": {"enabled": True},
    "canaries": {
        "seed": 3,
        "alphabets": {"d": "0123456789"},
        "formats": [
            {"name": "ssn", "template": "my social security number is {d}x3-{d}x2-{d}x4"},
            {"name": "number", "template": "the random number is {d}x9"},
        ],
        "insertions": [1, 2, 5],
        "per_count": 2,
        "audit": {"count": 8, "insertions": 1, "format": "number"},
    },
    "train": {
        "device": "cpu",
        "model": {"arch": "gpt2", "layers": 1, "width": 32, "heads": 2, "context": 32},
        "epochs": 1,
        "batch_size": 16,
        "physical_batch_size": 16,
        "variants": {
            "nonprivate": {},
            "dp": {"dp": {"enabled": True, "noise_multiplier": 1.0}},
            "reference": {"model": {"width": 16}, "init": "scratch"},  # smaller: not the base's shape
        },
    },
    "exposure": {
        "references": 500,
        "batch_size": 256,
        "exact_rank": {"max_estimated_rank": 1000, "max_rows": 20_000},
        "extraction": {"pop_batch": 64, "max_expansions": 2_000},
    },
    "extract": {
        "device": "cpu",
        "reference_variant": "reference",
        "samples_per_strategy": 12,
        "sample_tokens": 40,
        "batch_size": 8,
        "window_tokens": 10,
        "candidates": 6,
        "top_k": 4,
        "min_memorized_chars": 20,
        "membership": {"tokens": 24, "max_samples": 40, "bootstrap": 50},
        "audit": {"guesses_included": 2, "guesses_excluded": 2},
    },
    "gate": {
        "rules": [
            {"check": "exposure", "variant": "dp", "insertions": 5, "max": 20.0},
            {"check": "extracted_canaries", "variant": "dp", "max": 0},
            {"check": "membership_auc", "variant": "dp", "max": 0.9},
        ]
    },
}


@pytest.fixture(scope="session", autouse=True)
def isolated_mlflow(tmp_path_factory: pytest.TempPathFactory) -> str:
    """Every test logs to a throwaway SQLite MLflow store, never the workspace's mlflow.db.

    Tracking is off unless a test asks for it (``mlflow_tracking``): importing MLflow and writing its
    store cost each stage process 3-5 s here, and most tests do not look at what it logged.
    """
    uri = f"sqlite:///{tmp_path_factory.mktemp('mlflow') / 'mlflow.db'}"
    os.environ["MLFLOW_TRACKING_URI"] = uri
    os.environ["CANARYAUDIT_TRACKING"] = "0"
    os.environ.pop("CANARYAUDIT_PARENT_RUN_ID", None)
    return uri


@pytest.fixture
def mlflow_tracking(monkeypatch: pytest.MonkeyPatch, isolated_mlflow: str) -> str:
    """MLflow tracking on (into the session's throwaway store), for a test about what is logged."""
    monkeypatch.setenv("CANARYAUDIT_TRACKING", "1")
    return isolated_mlflow


def write_params(path: Path, params: dict) -> Path:
    path.write_text(yaml.safe_dump(params, sort_keys=False), encoding="utf-8")
    return path


def full_params(params: dict) -> dict:
    """DVC requires every params key a stage lists to be in the file: the defaults written out in full."""
    from canaryaudit.config import parse_params

    return parse_params(params).model_dump(mode="json")


def write_full_params(path: Path, params: dict) -> Path:
    return write_params(path, full_params(params))


@pytest.fixture
def tiny_params() -> dict:
    import copy

    return copy.deepcopy(TINY_PARAMS)


@pytest.fixture
def workspace(tmp_path: Path, tiny_params: dict) -> Path:
    """A folder laid out like the repo (stage scripts + tiny params.yaml) to run stages in."""
    shutil.copytree(REPO / "stages", tmp_path / "stages")
    write_params(tmp_path / "params.yaml", tiny_params)
    return tmp_path


def run_stage(workspace: Path, stage: str, *args: str, check: bool = True,
              in_process: bool | None = None) -> subprocess.CompletedProcess[str]:
    """Run a stage script as DVC would (cwd = workspace, ``stages/STAGE.py ARGS``); its exit code and output.

    In this process unless MLflow tracking is on or ``in_process=False``: a test of what a stage computes
    or which message it fails with then costs no interpreter start and imports (3-5 s a call). A few tests
    keep a fresh interpreter for what only a process shows: the exit code DVC sees and no traceback on
    stderr, a stage relaunching itself under torchrun, MLflow runs closed by a real exit.
    """
    if in_process is None:
        in_process = os.environ.get("CANARYAUDIT_TRACKING") == "0"
    argv = [sys.executable, f"stages/{stage}.py", *args]
    if in_process:
        proc = _run_stage_in_this_process(workspace, argv)
    else:
        proc = subprocess.run(argv, cwd=workspace, capture_output=True, text=True, timeout=600)
    if check and proc.returncode != 0:
        raise AssertionError(f"stage {stage} failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}")
    return proc


def _run_stage_in_this_process(workspace: Path, argv: list[str]) -> subprocess.CompletedProcess[str]:
    """``runpy`` the stage script as ``__main__`` with its argv and cwd, its output and log captured;
    what it changes of this process (cwd, argv, the SIGTERM handler, torch threads, log level) put back."""
    import contextlib
    import io
    import logging
    import runpy
    import signal

    import torch  # every stage imports it (the schemas do); here so that its thread count can be put back

    out, err = io.StringIO(), io.StringIO()
    handler = logging.StreamHandler(err)
    handler.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
    logger = logging.getLogger("canaryaudit")
    saved = (os.getcwd(), sys.argv, signal.getsignal(signal.SIGTERM), logger.level, torch.get_num_threads())
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    code = 0
    try:
        os.chdir(workspace)
        sys.argv = argv[1:]
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            runpy.run_path(argv[1], run_name="__main__")
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else int(exc.code is not None)
    finally:
        cwd, sys.argv, sigterm, level, threads = saved
        os.chdir(cwd)
        signal.signal(signal.SIGTERM, sigterm)
        logger.setLevel(level)
        logger.removeHandler(handler)
        torch.set_num_threads(threads)  # the pii stage sets its own
    return subprocess.CompletedProcess(argv, code, out.getvalue(), err.getvalue())


@pytest.fixture(scope="module")
def one_torch_thread():
    """Tiny models: one thread is faster, and far faster on a busy machine (for a module: usefixtures)."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


# ============================================================ the real pipeline in a copy of the repo

REPO_FILES = ["dvc.yaml", ".dvcignore", ".gitignore", ".dvc/config", ".dvc/.gitignore", ".dvc/plots/roc.json",
              "stages", "src"]
GIT_ENV = {"GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@example.org", "GIT_COMMITTER_NAME": "t",
           "GIT_COMMITTER_EMAIL": "t@example.org"}


def repo_copy(dest: Path, scm: bool = True) -> Path:
    """What a clone has that the pipeline needs (dvc.yaml, DVC config, stage scripts, sources): in a new git
    repo, or with ``scm=False`` in a folder DVC uses without git (``core.no_scm``)."""
    for rel in REPO_FILES:
        src = REPO / rel
        if src.is_dir():
            shutil.copytree(src, dest / rel, ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
        else:
            (dest / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dest / rel)
    if scm:
        subprocess.run(["git", "init", "-q"], cwd=dest, check=True)
    else:
        (dest / ".dvc" / "config.local").write_text("[core]\n    no_scm = true\n", encoding="utf-8")
    return dest


def repo_workspace(dest: Path, params: dict) -> Path:
    """A copy of the real pipeline with ``params`` (defaults written out), DVC without git."""
    write_full_params(repo_copy(dest, scm=False) / "params.yaml", params)
    return dest


def git(ws: Path, *args: str) -> str:
    return subprocess.run(["git", *args], cwd=ws, env={**os.environ, **GIT_ENV}, check=True, capture_output=True,
                          text=True).stdout


def dvc(ws: Path, *args: str) -> str:
    """``dvc ARGS`` in ``ws`` with this interpreter's tools first on PATH; its output (fails the test on error)."""
    env = {**os.environ, **GIT_ENV, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    proc = subprocess.run([str(Path(sys.executable).with_name("dvc")), *args], cwd=ws, env=env, capture_output=True,
                          text=True, timeout=900)
    assert proc.returncode == 0, f"dvc {' '.join(args)} failed:\n{proc.stdout}\n{proc.stderr}"
    return proc.stdout + proc.stderr


def run_pipeline_in_process(ws: Path) -> list[str]:
    """Every stage of ``ws``'s dvc.yaml, upstream first, by the command DVC would run (``python stages/X.py
    ARGS``, resolved from the params) in this process (``run_stage``): a test of what the stages compute
    together, without DVC's bookkeeping or a process per stage (the shared pipeline is ``dvc repro``'s test).
    The stage names, in the order run."""
    import shlex

    from dvc.repo import Repo

    from canaryaudit.orchestration import list_stages

    with Repo(str(ws)) as repo:
        commands = {s.name: s.cmd for s in repo.index.stages if getattr(s, "cmd", None)}  # dvc.yaml at the root
    ran = []
    for stage in list_stages(ws):
        python, script, *args = shlex.split(commands[stage.name])
        assert python == "python" and script.startswith("stages/"), commands[stage.name]
        run_stage(ws, Path(script).stem, *args, in_process=True)
        ran.append(stage.name)
    return ran


#: The shared pipeline's gate: the tiny gate plus a utility rule and an empirical-epsilon rule per variant.
TINY_PIPELINE_RULES = [
    {"check": "test_perplexity_ratio", "variant": "dp", "baseline": "nonprivate", "max": 1.5},
    {"check": "empirical_epsilon", "variant": "all", "max": 1.0},
]


@dataclass(frozen=True)
class TinyPipeline:
    """A repo copy audited once by ``canaryaudit audit`` (tiny params, MLflow on). Read it; never change it:
    a test that runs DVC again works in ``copy_to(tmp_path / ...)``."""

    root: Path
    params: dict
    audit: subprocess.CompletedProcess[str]
    mlflow_uri: str
    experiment: str

    def copy_to(self, dest: Path) -> Path:
        shutil.copytree(self.root, dest, symlinks=True)  # with its git repo and DVC cache: nothing reruns
        return dest

    def fresh_params(self) -> dict:
        return copy.deepcopy(self.params)


@pytest.fixture(scope="session")
def tiny_pipeline(tmp_path_factory: pytest.TempPathFactory) -> TinyPipeline:
    """The whole pipeline once per test run, as a user runs it: ``canaryaudit audit`` (``dvc repro`` under one
    MLflow parent run) in a copy of the repo. The end-to-end tests read it or continue from copies of it."""
    base = tmp_path_factory.mktemp("tiny_pipeline")
    root = repo_copy(base / "repo")
    params = copy.deepcopy(TINY_PARAMS)
    params["gate"]["rules"] += copy.deepcopy(TINY_PIPELINE_RULES)
    # As the default audit: two variants fine-tuned from the public base, which is also the reference model
    params["train"]["variants"] = {k: v for k, v in params["train"]["variants"].items() if k != "reference"}
    params["extract"]["reference_variant"] = "pretrain"
    write_full_params(root / "params.yaml", params)
    uri, experiment = f"sqlite:///{base / 'audit-mlflow.db'}", "e2e"
    env = {**os.environ, "MLFLOW_TRACKING_URI": uri, "CANARYAUDIT_EXPERIMENT": experiment, "CANARYAUDIT_TRACKING": "1"}
    cli = str(Path(sys.executable).with_name("canaryaudit"))
    proc = subprocess.run([cli, "audit"], cwd=root, env=env, capture_output=True, text=True, timeout=1500)
    if proc.returncode not in (0, 1):  # 1: the gate failed, which the tests check against gate.json
        pytest.fail(f"canaryaudit audit of the tiny pipeline failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}")
    return TinyPipeline(root, params, proc, uri, experiment)


@pytest.fixture(scope="session")
def harness():
    """One temporary Prefect server (and SQLite database) for the test run's flows."""
    from prefect.testing.utilities import prefect_test_harness

    with prefect_test_harness(server_startup_timeout=180):
        yield


#: Module fixtures that are cheap to build again on another worker (no test grouping for them).
CHEAP_MODULE_FIXTURES = {"one_torch_thread"}
#: The xdist group of the shared pipeline's users and the flows (a flow test runs over a copy of the pipeline).
PIPELINE_GROUP = "pipeline_and_flows"


def _xdist_group(item: pytest.Item) -> str | None:
    """The shared pipeline's users and the flows together (the pipeline and a Prefect server are built once
    per worker that needs them), each module with an expensive module fixture (a trained model, a brute
    force) on one worker, so that each is built once."""
    if "tiny_pipeline" in item.fixturenames or "harness" in item.fixturenames:
        return PIPELINE_GROUP
    fixtures = getattr(item, "_fixtureinfo", None)  # the item's fixture definitions (pytest has no public accessor)
    for defs in (fixtures.name2fixturedefs.values() if fixtures else ()):
        if any(d.scope == "module" and d.argname not in CHEAP_MODULE_FIXTURES for d in defs):
            return item.nodeid.split("::")[0]
    return None


@pytest.hookimpl(tryfirst=True)  # before xdist's own hook, which reads the xdist_group marks
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Group tests for pytest-xdist (``--dist loadgroup``) and order the units longest first, so that the
    workers share the long ones instead of one finishing them alone at the end (``--no-loadscope-reorder``
    keeps this order): the pipeline-and-flows group, the slow tests by their minutes hint
    (``@pytest.mark.slow(minutes=M)``: the time on one core of 2), the other module groups, the rest.

    xdist gives each worker one unit at the start (a group is one unit) and another whenever at most two of
    its tests are left: the largest group goes to one worker, the longest single test to the other."""
    for item in items:
        group = _xdist_group(item)
        if group is not None:
            item.add_marker(pytest.mark.xdist_group(group))

    def rank(item: pytest.Item) -> tuple[int, float]:
        group = _xdist_group(item)
        if group == PIPELINE_GROUP:
            return 0, 0.0
        slow = item.get_closest_marker("slow")
        if slow is not None:
            return 1, -slow.kwargs.get("minutes", 1.0)  # longest first
        return (2, 0.0) if group is not None else (3, 0.0)  # a module's expensive fixture: built early

    items.sort(key=rank)  # stable: each part keeps the collection order
