"""Data-parallel training with torchrun (gloo on the CPU): 2 processes train the model 1 process does.

Each test starts real torchrun workers (tests/ddp_worker.py) and compares rank 0's weights with a
single-process run of the same case in this process. The global batch is the same (each rank
trains on its shard of it), so weights agree within float tolerance: the sum over ranks of
per-shard gradients differs from the single-process sum only in the order of float additions.
Tolerance: 1e-5 absolute on every weight after 20 steps of SGD (measured differences ~1e-7).
"""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from canaryaudit.training.dp import epsilon_for
from canaryaudit.training.distributed import SINGLE, ShardedBatchSampler, ShardedPoissonSampler, World, shard
from tests import ddp_worker

WORKER = Path(ddp_worker.__file__)
ATOL = 1e-5


def torchrun(nproc: int, case: str, out: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={nproc}",
           str(WORKER), case, str(out), *extra]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=600)


def trained(out: Path) -> tuple[dict[str, torch.Tensor], dict]:
    return load_file(str(out / "model.safetensors")), json.loads((out / "run.json").read_text())


def single_process(case: str):
    result = ddp_worker.run_case(case)
    return {k: v.detach() for k, v in result.model.state_dict().items()}, ddp_worker.summary(result)


def assert_same_weights(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor], atol: float = ATOL) -> None:
    assert a.keys() == b.keys()
    worst = max(float((a[k] - b[k]).abs().max()) for k in a)
    assert worst <= atol, f"largest weight difference {worst:.3g} > {atol}"


@pytest.fixture(scope="module")
def two_process_runs(tmp_path_factory):
    """The 2-process runs, started once: {case: (weights, run.json)}."""
    runs = {}
    for case in ("plain", "dp"):
        out = tmp_path_factory.mktemp(f"ddp-{case}")
        proc = torchrun(2, case, out)
        assert proc.returncode == 0, proc.stdout + proc.stderr
        runs[case] = trained(out)
    return runs


# ---------------------------------------------------------------- samplers (no processes)


def test_sharded_samplers_in_one_process_draw_what_torch_and_opacus_draw():
    from opacus.utils.uniform_sampler import UniformWithReplacementSampler
    from torch.utils.data import DataLoader, TensorDataset

    data = TensorDataset(torch.arange(37))
    generator = torch.Generator().manual_seed(3)  # one generator for the sampler and the loader, as the Trainer has
    ours = DataLoader(data, batch_sampler=ShardedBatchSampler(37, 8, generator), generator=generator)
    torchs = DataLoader(data, batch_size=8, shuffle=True, generator=torch.Generator().manual_seed(3))
    assert [b[0].tolist() for b in ours] == [b[0].tolist() for b in torchs]
    poisson = list(ShardedPoissonSampler(37, 0.2, 5, torch.Generator().manual_seed(4)))
    opacus = list(UniformWithReplacementSampler(num_samples=37, sample_rate=0.2, generator=torch.Generator().manual_seed(4),
                                                steps=5))
    assert poisson == opacus and len(poisson) == 5


def test_shards_partition_every_global_batch_and_no_step_is_skipped():
    for sampler_of in (lambda w: ShardedPoissonSampler(50, 0.05, 40, torch.Generator().manual_seed(1), w),
                       lambda w: ShardedBatchSampler(50, 7, torch.Generator().manual_seed(1), w)):
        whole = list(sampler_of(SINGLE))
        shards = [list(sampler_of(World(rank, 3))) for rank in range(3)]
        assert all(len(s) == len(whole) for s in shards)  # every rank takes every step, empty or not
        for step, batch in enumerate(whole):
            assert sorted(i for s in shards for i in s[step]) == sorted(batch)
    assert any(not b for b in ShardedPoissonSampler(50, 0.05, 40, torch.Generator().manual_seed(1), World(1, 3)))
    assert shard([5, 6, 7, 8, 9], World(1, 2)) == [6, 8]


# ---------------------------------------------------------------- 2 processes against 1


def test_plain_training_in_two_processes_matches_one(two_process_runs):
    weights, run = two_process_runs["plain"]
    single_weights, single = single_process("plain")
    assert run["world_size"] == 2
    assert_same_weights(weights, single_weights)
    assert run["steps"] == single["steps"] == 2 * 10  # 145 sequences in batches of 16: 10 steps an epoch
    assert run["test_loss"] == pytest.approx(single["test_loss"], abs=1e-5)
    for (tl2, vl2, _), (tl1, vl1, _) in zip(run["history"], single["history"]):
        assert tl2 == pytest.approx(tl1, abs=1e-5) and vl2 == pytest.approx(vl1, abs=1e-5)


def test_dp_training_in_two_processes_matches_one_noise_included(two_process_runs):
    """Same Poisson batches, each rank clips its own per-sample gradients, rank 0 alone adds the noise
    (same generator, same draws): the weights equal the single process's, so the noise was added
    exactly once per logical batch (twice, or once per rank, would move them by ~sigma C / B)."""
    weights, run = two_process_runs["dp"]
    single_weights, single = single_process("dp")
    assert_same_weights(weights, single_weights)
    assert run["dp"] == single["dp"]


def test_dp_epsilon_in_two_processes_is_the_accountants_for_the_global_batch(two_process_runs):
    _, run = two_process_runs["dp"]
    sigma, q, delta, steps = run["dp"]
    assert q == 1 / math.ceil(ddp_worker.SEQUENCES / 16)  # global expected batch 16 of 145 sequences
    assert run["steps"] == steps == 2 * 10
    assert run["epsilon"] == pytest.approx(epsilon_for(sigma, q, steps, delta, "prv"), rel=1e-9)


def test_resume_under_two_processes_matches_the_uninterrupted_run(tmp_path, two_process_runs):
    ckpt = tmp_path / "ckpt"
    first = torchrun(2, "dp", tmp_path / "a", "--checkpoints", str(ckpt), "--interrupt-after", "1")
    assert first.returncode != 0 and not (tmp_path / "a" / "run.json").exists()
    assert any(ckpt.iterdir())  # rank 0 wrote the epoch-1 checkpoint (of 2)
    resumed = torchrun(2, "dp", tmp_path / "b", "--checkpoints", str(ckpt))
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    (w_resumed, r_resumed), (w_full, r_full) = trained(tmp_path / "b"), two_process_runs["dp"]  # uninterrupted
    assert r_resumed["resumed_from_epoch"] == 1
    assert all(torch.equal(w_resumed[k], w_full[k]) for k in w_full)  # bit-identical
    assert r_resumed["epsilon"] == r_full["epsilon"]


# ---------------------------------------------------------------- the train stage under torchrun


def test_train_stage_with_two_processes_matches_one(workspace, tiny_params):
    from canaryaudit.io import read_json
    from tests.conftest import run_stage

    tiny_params["pretrain"]["source"] = "none"
    tiny_params["train"]["variants"] = {"one": {}, "two": {"distributed": {"nproc": 2}}}
    tiny_params["extract"]["reference_variant"] = "one"
    tiny_params["gate"]["rules"] = []
    from tests.conftest import write_params

    write_params(workspace / "params.yaml", tiny_params)
    for stage in ("prepare", "sanitize", "pretrain", "canaries"):
        run_stage(workspace, stage)
    for variant in ("one", "two"):
        proc = run_stage(workspace, "train", "--variant", variant, "--out", f"models/{variant}", "--report",
                         f"reports/train/{variant}.json", "--plot", f"reports/train/{variant}_loss.csv",
                         in_process=variant == "one")  # "two" relaunches itself under torchrun
    assert "launching 2 processes with torchrun" in proc.stderr
    one, two = (load_file(str(workspace / f"models/{v}/model.safetensors")) for v in ("one", "two"))
    # AdamW (the default optimizer) divides by the root of tiny second moments, which magnifies the
    # float-order differences of the all-reduced gradients: 1e-4 here (measured ~1e-5), 1e-5 under SGD.
    assert_same_weights(one, two, atol=1e-4)
    reports = [read_json(workspace / f"reports/train/{v}.json") for v in ("one", "two")]
    assert reports[0]["steps"] == reports[1]["steps"]
    assert reports[1]["test_loss"] == pytest.approx(reports[0]["test_loss"], abs=1e-5)


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
def test_a_worker_params_error_exits_2_through_torchrun(workspace, tiny_params):
    """A worker's params error reaches DVC and Prefect as exit 2 (not retried), as in one process."""
    from tests.conftest import run_stage, write_params

    tiny_params["pretrain"]["source"] = "none"
    tiny_params["train"]["variants"] = {"nonprivate": {"device": "cuda", "distributed": {"nproc": 2}}}
    tiny_params["extract"]["reference_variant"] = "nonprivate"
    tiny_params["gate"]["rules"] = []
    write_params(workspace / "params.yaml", tiny_params)
    for stage in ("prepare", "sanitize", "pretrain", "canaries"):
        run_stage(workspace, stage)
    proc = run_stage(workspace, "train", "--variant", "nonprivate", "--out", "models/nonprivate", "--report",
                     "reports/train/nonprivate.json", "--plot", "reports/train/nonprivate_loss.csv", check=False,
                     in_process=False)  # the workers' stderr is the process's
    assert proc.returncode == 2, proc.stderr
    assert "train.device: 'cuda' requested but no CUDA device is available" in proc.stderr
    assert not (workspace / "models/nonprivate").exists()
