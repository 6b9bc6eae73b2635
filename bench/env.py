"""Segments per second of the halting envs; prints one JSON object.

Compares, in one run: the batched ``HaltingVectorEnv`` at 1, 16 and 256 envs; the same env
replaying a recorded trace of the core (``rollouts=``, no model: a lookup into the trace;
recorded once into a temporary file first); Gymnasium's ``SyncVectorEnv`` over single
``HaltingEnv``s; and the bare segment-engine forward on the same batch. Actions are random (halt with probability 0.25). The setups of one batch size
are timed in alternating slices (``interleaved``), so their ratios survive a machine whose
speed drifts during the run.

It also prints the roofline of the batched forward: the FLOPs of one segment per puzzle
(``flops.segment_flops``), the GFLOP/s the 256-env batched env achieves, the measured
``torch.mm`` peak, and the segments/s (and the ratio to ``SyncVectorEnv``) that the peak
would allow, so a figure below an aim says how far the hardware lets it go.

    hrm-rl bench env [--checkpoint sudoku4] [--seconds 5]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import torch

from hrm_rl.model.flops import matmul_peak_gflops, segment_flops
from hrm_rl.checkpoint import load_checkpoint
from hrm_rl.cli_types import int_in, positive_float
from hrm_rl.envs.halting import HaltingEnv, HaltingVectorEnv
from hrm_rl.data import ShuffledSource
from hrm_rl.envs.rollouts import record_rollouts
from hrm_rl.segment_engine import SegmentEngine


Step = Callable[[], None]


def _vector_stepper(n: int, checkpoint: str, rollouts: str | None = None) -> Step:
    env = HaltingVectorEnv(num_envs=n, checkpoint=checkpoint, rollouts=rollouts)
    env.reset(seed=0)
    rng = np.random.default_rng(0)
    return lambda: env.step((rng.random(n) < 0.25).astype(np.int64))


def _sync_stepper(n: int, checkpoint: str) -> Step:
    env = gym.vector.SyncVectorEnv([lambda: HaltingEnv(checkpoint=checkpoint)] * n,
                                   autoreset_mode=gym.vector.AutoresetMode.SAME_STEP)
    env.reset(seed=0)
    rng = np.random.default_rng(0)
    return lambda: env.step((rng.random(n) < 0.25).astype(np.int64))


def _bare_stepper(n: int, checkpoint: str) -> Step:
    """The segment forward alone: an engine with no cap over the env's puzzles."""
    core = HaltingVectorEnv(num_envs=n, checkpoint=checkpoint).core
    engine = SegmentEngine(core.model, ShuffledSource(core.puzzles, np.random.default_rng(0)),
                           n, core.device)

    def step() -> None:
        with torch.inference_mode():
            engine.step()

    return step


def interleaved(setups: dict[str, tuple[Step, int]], seconds: float, rounds: int = 5
                ) -> dict[str, float]:
    """Segments per second of each setup ``name: (step, rows per step)``.

    Each setup gets ``seconds`` in all, in ``rounds`` slices taken in turn, so a drift in the
    machine's speed during the run (shared cores, clock changes) falls on every setup alike
    and their ratios stay fair.
    """
    for step, _ in setups.values():
        step()  # warm-up
    count = dict.fromkeys(setups, 0)
    spent = dict.fromkeys(setups, 0.0)
    for _ in range(rounds):
        for name, (step, _) in setups.items():
            start = time.perf_counter()
            while time.perf_counter() - start < seconds / rounds:
                step()
                count[name] += 1
            spent[name] += time.perf_counter() - start
    return {name: count[name] * rows / spent[name] for name, (_, rows) in setups.items()}


def batched_env(n: int, checkpoint: str, seconds: float) -> float:
    """Segments/s of a ``HaltingVectorEnv`` of ``n`` envs under random actions."""
    return interleaved({"env": (_vector_stepper(n, checkpoint), n)}, seconds, rounds=1)["env"]


def run(checkpoint: str = "sudoku4", seconds: float = 5.0, threads: int | None = 2
        ) -> dict[str, Any]:
    """Measure every env setup; returns the figures (segments per second)."""
    if threads:
        torch.set_num_threads(threads)
    out: dict[str, Any] = {"checkpoint": checkpoint, "threads": torch.get_num_threads(),
                           "segments_per_s": {}}
    figures = out["segments_per_s"]
    with tempfile.TemporaryDirectory() as tmp:
        rollouts = str(record_rollouts(checkpoint, "train", Path(tmp) / "train.npz",
                                       progress=False))
        for n in (1, 16, 256):
            setups = {f"vector_env_{n}": (_vector_stepper(n, checkpoint), n),
                      f"replay_env_{n}": (_vector_stepper(n, checkpoint, rollouts), n),
                      f"bare_engine_{n}": (_bare_stepper(n, checkpoint), n)}
            if n > 1:
                setups[f"sync_vector_env_{n}"] = (_sync_stepper(n, checkpoint), n)
            figures.update({k: round(v, 1) for k, v in interleaved(setups, seconds).items()})
            out[f"ratio_replay_env_to_vector_env_{n}"] = round(
                figures[f"replay_env_{n}"] / figures[f"vector_env_{n}"], 1)
    out["ratio_vector_env_to_bare_engine_256"] = round(
        figures["vector_env_256"] / figures["bare_engine_256"], 3)
    out["ratio_vector_env_to_sync_vector_env_256"] = round(
        figures["vector_env_256"] / figures["sync_vector_env_256"], 1)
    out["roofline"] = roofline(checkpoint, figures["vector_env_256"],
                               figures["sync_vector_env_256"])
    return out


def roofline(checkpoint: str, vector_env_256: float, sync_vector_env_256: float
             ) -> dict[str, Any]:
    """How close the 256-env batched env runs to the matmul peak of this machine."""
    model = load_checkpoint(checkpoint).model  # on the CPU, as the envs measured here
    flops = segment_flops(model.config, max_segments=1, prefix_len=model.prefix_len)
    per_segment = flops.segment_forward
    peak = matmul_peak_gflops(torch.device("cpu"), torch.float32)["gflops"]
    achieved = vector_env_256 * per_segment / 1e9
    ceiling = peak * 1e9 / per_segment
    return {"segment_forward_flops": per_segment,
            "vector_env_256_gflops": round(achieved, 2),
            "matmul_peak_gflops": peak,
            "fraction_of_peak": round(achieved / peak, 3),
            "segments_per_s_at_peak": round(ceiling, 1),
            "ratio_to_sync_vector_env_256_at_peak": round(ceiling / sync_vector_env_256, 1)}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The options of ``hrm-rl bench env``."""
    parser.add_argument("--checkpoint", default="sudoku4")
    parser.add_argument("--seconds", type=positive_float, default=5.0,
                        help="timed seconds per setup")
    parser.add_argument("--threads", type=int_in(0, 1024), default=2,
                        help="torch threads (0: torch's)")


def run_from_args(args: argparse.Namespace) -> dict[str, Any]:
    """``run`` with the parsed ``add_arguments`` options."""
    return run(args.checkpoint, args.seconds, args.threads or None)

