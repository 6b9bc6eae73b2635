"""Data-parallel training: two gloo processes train like one process with their joint batch."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from hrm_rl.agents.trainer import ACTTrainer
from hrm_rl.config import load_config

pytestmark = pytest.mark.skipif(not dist.is_available() or not dist.is_gloo_available(),
                                reason="needs torch.distributed with gloo")

STEPS = 6
TINY = ["task.size=4", "model.hidden_size=32", "model.num_heads=2", "model.H_layers=1",
        "model.L_layers=1", "model.H_cycles=1", "model.L_cycles=2",
        "model.pos_encodings=learned", "train.batch_size=16", "train.lr=1e-3",
        "train.weight_decay=0.1", "train.lr_warmup_steps=2", "train.max_segments=3",
        "train.halt_exploration_prob=0.5", "train.loss=softmax", "train.device=cpu",
        "train.threads=1", "train.precision=fp32", "data.train_size=100", "data.test_size=16",
        "data.max_givens=6", "data.split_by=exact", "train.eval_size=16", "train.log_every=2"]


def _overrides(tmp_path: Path) -> list[str]:
    return TINY + [f"data.cache_dir={tmp_path / 'data'}"]


def _train(overrides: list[str]) -> tuple[list[dict], dict[str, torch.Tensor], ACTTrainer]:
    trainer = ACTTrainer(load_config(None, overrides), None, progress=False)
    stats = [trainer.train_step().__dict__ for _ in range(STEPS)]
    return stats, {k: v.detach().clone() for k, v in trainer.model.state_dict().items()}, trainer


def _rank(rank: int, world: int, init_file: str, overrides: list[str], out: str) -> None:
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank,
                            world_size=world)
    try:
        stats, weights, trainer = _train(overrides)
        torch.save({"stats": stats, "weights": weights, "rows": trainer.batch_size,
                    "inputs": trainer.engine.inputs.clone()}, f"{out}/rank{rank}.pt")
    finally:
        dist.destroy_process_group()


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("ddp")
    single = _train(_overrides(tmp))  # also writes the data cache the ranks read
    mp.spawn(_rank, args=(2, str(tmp / "pg"), _overrides(tmp), str(tmp)), nprocs=2, join=True)
    ranks = [torch.load(tmp / f"rank{r}.pt") for r in range(2)]
    return single, ranks


def test_each_rank_runs_half_of_the_global_batch(runs):
    _, ranks = runs
    assert [r["rows"] for r in ranks] == [8, 8]


def test_two_ranks_together_see_the_single_process_rows(runs):
    (_, _, single), ranks = runs
    joint = torch.cat([r["inputs"] for r in ranks])
    assert torch.equal(joint, single.engine.inputs)


def test_weights_stay_identical_across_ranks(runs):
    _, ranks = runs
    for name, value in ranks[0]["weights"].items():
        assert torch.equal(value, ranks[1]["weights"][name]), name


def test_loss_matches_a_single_process_with_the_global_batch(runs):
    (stats, weights, _), ranks = runs
    for step in range(STEPS):
        for key in ("lm_loss", "q_halt_loss", "q_continue_loss"):
            joint = np.mean([r["stats"][step][key] for r in ranks])
            assert joint == pytest.approx(stats[step][key], rel=1e-4, abs=1e-6), (step, key)
        assert sum(r["stats"][step]["halted"] for r in ranks) == stats[step]["halted"]
    for name, value in weights.items():
        torch.testing.assert_close(ranks[0]["weights"][name], value, rtol=1e-3, atol=1e-4)


@pytest.mark.slow
def test_torchrun_cli_writes_one_run_folder(tmp_path):
    """``torchrun -m hrm_rl.cli train`` end to end: rank 0 prints the summary and writes the
    run folder; the group is torn down cleanly (exit code 0)."""
    torchrun = Path(sys.executable).with_name("torchrun")
    if not torchrun.exists():
        pytest.skip("torchrun not installed next to the interpreter")
    sets = [a for item in _overrides(tmp_path) + ["train.steps=4", "train.eval_every=4",
                                                  "train.checkpoint_every=4"]
            for a in ("--set", item)]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    (tmp_path / "ddp.yaml").write_text("name: ddp-test\n")
    proc = subprocess.Popen([str(torchrun), "--standalone", "--nproc-per-node=2", "-m",
                             "hrm_rl.cli", "train", str(tmp_path / "ddp.yaml"),
                             "--run-dir", str(tmp_path / "run"),
                             "--no-progress", *sets], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=env, start_new_session=True)
    try:
        stdout, stderr = proc.communicate(timeout=120)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)  # torchrun and both ranks
        stdout, stderr = proc.communicate()
        pytest.fail(f"torchrun timed out:\n{stderr[-3000:]}")
    assert proc.returncode == 0, stderr[-3000:]
    summary = json.loads(stdout[stdout.index("{"):])
    assert summary["steps"] == 4 and summary["eval"]["n"] == 16
    assert (tmp_path / "run" / "checkpoints" / "latest").exists()
    assert "2 processes, 8 rows each" in stderr
