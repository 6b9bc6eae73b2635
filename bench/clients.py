"""Env steps per second of the RL clients the README's "Works with" table lists, each driven
the way its own docs say; prints one JSON object.

Every client trains (or, for TorchRL, rolls out) for its number of env steps (times
``--scale``) and for a quarter of that, both whole rollouts; the rate is the difference in
steps over the difference in wall time, so start-up (imports, loading the core, building
envs) cancels out. Clients run one after the other in one process
tree, so they share the machine's state; compare them within one run only. A client that is
not installed is reported as skipped.

    hrm-rl bench clients --threads 1           # about 10 minutes
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
ENV = "HRM-Sudoku-v0"

# each: what it imports, and the Python it runs with {steps}, {num_envs} and {extra} filled in
_SB3 = """
from stable_baselines3 import PPO
from hrm_rl.agents.sb3 import make_sb3_vec_env
venv = make_sb3_vec_env("{env}", num_envs={num_envs}, step_cost=0.01{extra})
PPO("MlpPolicy", venv, n_steps=16, batch_size=256, n_epochs=2, device="cpu").learn({steps})
"""
_MASKABLE = """
from sb3_contrib import MaskablePPO
from hrm_rl.agents.sb3 import make_sb3_vec_env
venv = make_sb3_vec_env("{env}", num_envs={num_envs}, step_cost=0.01{extra})
MaskablePPO("MlpPolicy", venv, n_steps=16, batch_size=256, n_epochs=2, device="cpu").learn({steps})
"""
_RECURRENT = """
from sb3_contrib import RecurrentPPO
from hrm_rl.agents.sb3 import make_sb3_vec_env
venv = make_sb3_vec_env("{env}", num_envs={num_envs}, step_cost=0.01{extra})
RecurrentPPO("MlpLstmPolicy", venv, n_steps=16, batch_size=256, n_epochs=2,
             device="cpu").learn({steps})
"""
_GYM = """
import gymnasium as gym
import numpy as np
import hrm_rl
from gymnasium.wrappers.vector import NormalizeObservation, RecordEpisodeStatistics
envs = RecordEpisodeStatistics(NormalizeObservation(gym.make_vec(
    "{env}", num_envs={num_envs}, autoreset_mode="NextStep", step_cost=0.01{extra})))
envs.reset(seed=0)
for _ in range({steps} // {num_envs}):
    envs.step(envs.action_space.sample())
"""
_SYNC = """
import gymnasium as gym
import hrm_rl
envs = gym.make_vec("{env}", num_envs={num_envs}, vectorization_mode="sync", step_cost=0.01)
envs.reset(seed=0)
for _ in range({steps} // {num_envs}):
    envs.step(envs.action_space.sample())
"""
_TORCHRL = """
import gymnasium as gym
import hrm_rl
from torchrl.envs import GymWrapper
env = GymWrapper(gym.make_vec("{env}", num_envs={num_envs}, autoreset_mode="Disabled",
                              step_cost=0.01{extra}))
env.rollout(max(1, {steps} // {num_envs}), break_when_any_done=False)
"""
# steps: env steps of the long run; rollout: the steps a client takes at once (SB3 and
# CleanRL: 256 envs x 16 steps, the zoo: 8 x 64, TorchRL: one step of 256 envs)
_CLIENTS: dict[str, dict[str, Any]] = {
    "sb3-ppo": {"module": "stable_baselines3", "code": _SB3, "num_envs": 256, "steps": 32768,
                "rollout": 4096},
    "sb3-contrib-maskable-ppo": {"module": "sb3_contrib", "code": _MASKABLE, "num_envs": 256,
                                 "steps": 32768, "rollout": 4096},
    "sb3-contrib-recurrent-ppo": {"module": "sb3_contrib", "code": _RECURRENT, "num_envs": 256,
                                  "steps": 32768, "rollout": 4096},
    "gymnasium-vector-wrappers": {"module": "gymnasium", "code": _GYM, "num_envs": 256,
                                  "steps": 32768, "rollout": 256},
    "gymnasium-sync-vector-env": {"module": "gymnasium", "code": _SYNC, "num_envs": 8,
                                  "steps": 4096, "rollout": 8},
    "torchrl-gym-wrapper": {"module": "torchrl", "code": _TORCHRL, "num_envs": 256,
                            "steps": 32768, "rollout": 256},
    "cleanrl-style-example": {"module": "torch", "script": "examples/ppo_cleanrl_style.py",
                              "num_envs": 256, "steps": 32768, "rollout": 4096},
    "rl-zoo3": {"module": "rl_zoo3", "zoo": True, "num_envs": 8, "steps": 4096,
                "rollout": 512},
    "rl-zoo3-replayed": {"module": "rl_zoo3", "zoo": True, "num_envs": 8, "replay": True,
                         "steps": 4096, "rollout": 512},
}


def _command(name: str, steps: int, rollouts: str | None, work: Path) -> list[str]:
    spec = _CLIENTS[name]
    n = spec["num_envs"]
    if spec.get("zoo"):
        kwargs = ["step_cost:0.01"] + ([f"rollouts:'{rollouts}'"] if spec.get("replay") else [])
        conf = str(ROOT / "configs" / "zoo" / "ppo.yml")
        return [sys.executable, "-m", "rl_zoo3.train", "--algo", "ppo", "--env", ENV,
                "--gym-packages", "hrm_rl", "--conf-file", conf,
                "-n", str(steps), "-f", str(work / "zoo"), "--eval-freq", "-1", "--device", "cpu",
                "--verbose", "0", "--hyperparams", f"n_envs:{n}", "--env-kwargs", *kwargs]
    if "script" in spec:
        return [sys.executable, str(ROOT / spec["script"]), "--total-timesteps", str(steps),
                "--num-envs", str(n), "--eval-episodes", "1", "--run-name", str(work / "cleanrl")]
    code = spec["code"].format(env=ENV, steps=steps, num_envs=n, extra="")
    return [sys.executable, "-c", code]


def _timed(cmd: list[str], threads: int, work: Path) -> float:
    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads)}
    start = time.perf_counter()
    run = subprocess.run(cmd, capture_output=True, text=True, cwd=work, env=env)
    seconds = time.perf_counter() - start
    if run.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd[:4])} ... failed:\n{run.stderr[-1500:]}")
    return seconds


def run(scale: float = 1.0, threads: int = 1, clients: list[str] | None = None
        ) -> dict[str, Any]:
    """Steps/s of each client (``clients``: a subset of the table's names)."""
    names = clients or list(_CLIENTS)
    unknown = [n for n in names if n not in _CLIENTS]
    if unknown:
        raise ValueError(f"unknown client(s) {unknown}; choose from {list(_CLIENTS)}")
    results: dict[str, Any] = {}
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        rollouts = None
        if any(_CLIENTS[n].get("replay") for n in names):
            rollouts = str(work / "train.npz")
            subprocess.run([sys.executable, "-m", "hrm_rl.cli", "rollouts", "record", "sudoku4",
                            "--split", "train", "--out", rollouts, "--no-progress", "--threads",
                            str(threads)], check=True, capture_output=True, cwd=work)
        for name in names:
            if importlib.util.find_spec(_CLIENTS[name]["module"]) is None:
                results[name] = {"skipped": f"{_CLIENTS[name]['module']} is not installed"}
                continue
            unit = 4 * _CLIENTS[name]["rollout"]  # both runs are whole rollouts
            large = max(unit, int(_CLIENTS[name]["steps"] * scale) // unit * unit)
            small = large // 4
            t_small = _timed(_command(name, small, rollouts, work), threads, work)
            t_large = _timed(_command(name, large, rollouts, work), threads, work)
            rate = (large - small) / max(t_large - t_small, 1e-9)
            results[name] = {"num_envs": _CLIENTS[name]["num_envs"],
                             "steps_per_s": round(rate, 1),
                             "wall_s": [round(t_small, 1), round(t_large, 1)]}
            print(f"[clients] {name}: {results[name]}", file=sys.stderr)
    return {"scale": scale, "threads": threads, "results": results}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The options of ``hrm-rl bench clients``."""
    parser.add_argument("--scale", type=float, default=1.0,
                        help="multiply every client's env steps (e.g. 0.25 for a quick look)")
    parser.add_argument("--threads", type=int, default=1, help="torch threads per client")
    parser.add_argument("--clients", default=None,
                        help=f"comma-separated subset of: {', '.join(_CLIENTS)}")


def run_from_args(args: argparse.Namespace) -> dict[str, Any]:
    """``run`` with the parsed ``add_arguments`` options."""
    if not args.scale > 0:
        raise ValueError(f"--scale must be > 0, got {args.scale}")
    clients = [c.strip() for c in args.clients.split(",")] if args.clients else None
    return run(args.scale, args.threads, clients)
