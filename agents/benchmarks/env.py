"""Segments per second of the halting envs; prints one JSON object.

Compares, in one run: the batched ``HaltingVectorEnv`` at 1, 16 and 256 envs; Gymnasium's
``SyncVectorEnv`` over single ``HaltingEnv``s; and the bare segment-engine forward on the
same batch (the ceiling). Actions are random (halt with probability 0.25).

    hrm-rl bench env [--checkpoint sudoku4] [--seconds 5]
"""

from __future__ import annotations

import argparse
import time
from typing import Any

import gymnasium as gym
import numpy as np
import torch

from hrm_rl.envs.halting import HaltingEnv, HaltingVectorEnv


def _timed(step, seconds: float) -> tuple[int, float]:
    step()  # warm-up
    count, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        step()
        count += 1
    return count, time.perf_counter() - start


def batched_env(n: int, checkpoint: str, seconds: float) -> float:
    env = HaltingVectorEnv(num_envs=n, checkpoint=checkpoint)
    env.reset(seed=0)
    rng = np.random.default_rng(0)
    steps, dt = _timed(lambda: env.step((rng.random(n) < 0.25).astype(np.int64)), seconds)
    return steps * n / dt


def sync_vector_env(n: int, checkpoint: str, seconds: float) -> float:
    env = gym.vector.SyncVectorEnv([lambda: HaltingEnv(checkpoint=checkpoint)] * n,
                                   autoreset_mode=gym.vector.AutoresetMode.SAME_STEP)
    env.reset(seed=0)
    rng = np.random.default_rng(0)
    steps, dt = _timed(lambda: env.step((rng.random(n) < 0.25).astype(np.int64)), seconds)
    return steps * n / dt


def bare_engine(n: int, checkpoint: str, seconds: float) -> float:
    env = HaltingVectorEnv(num_envs=n, checkpoint=checkpoint)
    env.reset(seed=0)
    engine = env.core.engine

    def step() -> None:
        with torch.inference_mode():
            engine.forward()

    steps, dt = _timed(step, seconds)
    return steps * n / dt


def run(checkpoint: str = "sudoku4", seconds: float = 5.0, threads: int | None = 2
        ) -> dict[str, Any]:
    """Measure every env setup; returns the figures (segments per second)."""
    if threads:
        torch.set_num_threads(threads)
    out: dict[str, Any] = {"checkpoint": checkpoint, "threads": torch.get_num_threads(),
                           "segments_per_s": {}}
    figures = out["segments_per_s"]
    for n in (1, 16, 256):
        figures[f"vector_env_{n}"] = round(batched_env(n, checkpoint, seconds), 1)
        figures[f"bare_engine_{n}"] = round(bare_engine(n, checkpoint, seconds), 1)
    for n in (16, 256):
        figures[f"sync_vector_env_{n}"] = round(sync_vector_env(n, checkpoint, seconds), 1)
    out["ratio_vector_env_to_bare_engine_256"] = round(
        figures["vector_env_256"] / figures["bare_engine_256"], 3)
    out["ratio_vector_env_to_sync_vector_env_256"] = round(
        figures["vector_env_256"] / figures["sync_vector_env_256"], 1)
    return out


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The options of ``hrm-rl bench env``."""
    parser.add_argument("--checkpoint", default="sudoku4")
    parser.add_argument("--seconds", type=float, default=5.0, help="timed seconds per setup")
    parser.add_argument("--threads", type=int, default=2, help="torch threads (0: torch's)")


def run_from_args(args: argparse.Namespace) -> dict[str, Any]:
    """``run`` with the parsed ``add_arguments`` options."""
    return run(args.checkpoint, args.seconds, args.threads or None)

