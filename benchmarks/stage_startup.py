"""Stage start-up: what a stage process costs before any work, and the light ``pretrain.source: none`` path.

Times in the same process, alternating, ``--repeats`` rounds each keeping the fastest (wall seconds of a
child process):

* ``pretrain`` with ``pretrain.source: none`` (it writes two manifests) as the stage runs now, against the
  same run preceded by the imports the stage made at start-up before they moved behind the ``none`` check
  (the training stack: torch, transformers, Opacus): the ratio is what the change saves in each sweep point
  and flow that has no base model to train;
* ``python stages/STAGE.py --help`` of every stage: the imports each stage script makes before its work
  (MLflow, imported when tracking is on, comes on top: ``mlflow_client``).

Writes JSON (default benchmarks/results/stage_startup.json) with the seconds, the ratio and the load average.

    python benchmarks/stage_startup.py --repeats 5
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

from canaryaudit.io import atomic_open

REPO = Path(__file__).resolve().parents[1]
STAGES = ["prepare", "sanitize", "canaries", "pretrain", "train", "external", "exposure", "extract", "pii", "report"]
#: What stages/pretrain.py imported at start-up before the training stack moved behind the ``none`` check.
OLD_PRETRAIN_IMPORTS = ("canaryaudit.corpus.public", "canaryaudit.pii.sanitize", "canaryaudit.schemas",
                        "canaryaudit.training.base", "canaryaudit.training.data", "canaryaudit.training.distributed",
                        "canaryaudit.training.loop", "canaryaudit.training.models", "canaryaudit.training.pipeline")
MLFLOW_CLIENT = "from mlflow.tracking import MlflowClient; MlflowClient('sqlite:///{db}')._tracking_client.store"


def child_seconds(argv: list[str], cwd: Path) -> float:
    """Wall seconds of one child process (it must succeed)."""
    start = time.perf_counter()
    subprocess.run(argv, cwd=cwd, check=True, capture_output=True, env={**os.environ, "CANARYAUDIT_TRACKING": "0"})
    return time.perf_counter() - start


def pretrain_none_argv(ws: Path, preload: tuple[str, ...]) -> list[str]:
    """The pretrain stage with pretrain.source none, after importing ``preload`` first (the old start-up)."""
    args = ["--params", "params.yaml", "--out", "out/model", "--public", "out/public", "--report", "out/report.json"]
    script = str(REPO / "stages" / "pretrain.py")
    code = "".join(f"import {m}\n" for m in preload) + (
        f"import runpy, sys\nsys.argv = [{script!r}, *{args!r}]\nrunpy.run_path({script!r}, run_name='__main__')\n")
    return [sys.executable, "-c", code]


def fastest(argvs: dict[str, list[str]], cwd: Path, repeats: int) -> dict[str, float]:
    """The fastest of ``repeats`` alternating rounds of each command."""
    best = {name: float("inf") for name in argvs}
    for _ in range(repeats):
        for name, argv in argvs.items():
            best[name] = min(best[name], child_seconds(argv, cwd))
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--out", default=str(REPO / "benchmarks" / "results" / "stage_startup.json"))
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        ws = Path(tmp)
        params = yaml.safe_load((REPO / "params.yaml").read_text(encoding="utf-8"))
        params["pretrain"]["source"] = "none"
        (ws / "params.yaml").write_text(yaml.safe_dump(params), encoding="utf-8")
        pretrain = fastest({"now": pretrain_none_argv(ws, ()), "before": pretrain_none_argv(ws, OLD_PRETRAIN_IMPORTS)},
                           ws, args.repeats)
        helps = fastest({s: [sys.executable, str(REPO / "stages" / f"{s}.py"), "--help"] for s in STAGES}, ws,
                        args.repeats)
        mlflow = fastest({"mlflow_client": [sys.executable, "-c", MLFLOW_CLIENT.format(db=ws / "m.db")]}, ws,
                         args.repeats)
    result = {
        "what": "wall seconds of a child process, fastest of the repeats (alternating rounds)",
        "pretrain_source_none": {**pretrain, "ratio_now_to_before": pretrain["now"] / pretrain["before"]},
        "stage_imports_help": helps,
        "mlflow_import_and_sqlite_store": mlflow["mlflow_client"],
        "repeats": args.repeats,
        "python": platform.python_version(),
        "cpus": os.cpu_count(),
        "load_average": os.getloadavg(),
    }
    with atomic_open(Path(args.out), "w") as handle:
        json.dump(result, handle, indent=2)
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
