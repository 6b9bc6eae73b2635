"""The Maze and ARC halting envs: both checkers, make_vec, rendering, SB3 adapter."""

from __future__ import annotations

import warnings

import gymnasium as gym
import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env
from stable_baselines3.common.env_checker import check_env as sb3_check_env

import hrm_rl  # noqa: F401  (registers the envs)
from hrm_rl.agents.sb3 import make_sb3_vec_env
from hrm_rl.checkpoint import load_checkpoint
from hrm_rl.evaluation import evaluate
from hrm_rl.envs.halting import N_FEATURES, N_MODEL_FEATURES

ENV_IDS = ["HRM-Maze-v0", "HRM-ARC-v0"]


@pytest.mark.parametrize("env_id", ENV_IDS)
@pytest.mark.parametrize("obs_mode,track", [("features", "verifier-free"),
                                            ("latent", "verifier-free"),
                                            ("dict", "verifier-free"),
                                            ("features", "verifier"), ("dict", "verifier")])
def test_checkers_pass_without_warnings(env_id, obs_mode, track):
    env = gym.make(env_id, obs_mode=obs_mode, track=track)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        check_env(env.unwrapped, skip_render_check=True)
        sb3_check_env(env, warn=True)


@pytest.mark.parametrize("env_id", ENV_IDS)
def test_make_vec_and_sb3_adapter(env_id):
    venv = gym.make_vec(env_id, num_envs=4)
    obs, info = venv.reset(seed=0)
    assert obs.shape == (4, N_MODEL_FEATURES) and venv.observation_space.contains(obs)
    for _ in range(6):
        obs, rewards, term, trunc, info = venv.step(np.array([0, 1, 0, 1]))
        assert venv.observation_space.contains(obs)
    sb3 = make_sb3_vec_env(env_id, num_envs=3)
    sb3.seed(1)
    assert sb3.reset().shape == (3, N_MODEL_FEATURES)
    verifier = gym.make_vec(env_id, num_envs=2, track="verifier")
    obs, _ = verifier.reset(seed=0)
    assert obs.shape == (2, N_FEATURES) and verifier.observation_space.contains(obs)


@pytest.mark.parametrize("env_id", ENV_IDS)
def test_render_modes(env_id):
    env = gym.make(env_id, render_mode="rgb_array")
    env.reset(seed=0)
    img = env.render()
    assert img.dtype == np.uint8 and img.ndim == 3 and img.shape[2] == 3
    env = gym.make(env_id, render_mode="ansi")
    env.reset(seed=0)
    text = env.render()
    assert text.startswith("segment 1/")


@pytest.mark.parametrize("env_id,core", [("HRM-Sudoku-v0", "sudoku6"), ("HRM-Maze-v0", "maze9")])
@pytest.mark.parametrize("obs_mode", ["features", "features+latent", "dict"])
def test_checkers_pass_on_the_6x6_and_9x9_cores(env_id, core, obs_mode):
    env = gym.make(env_id, checkpoint=core, obs_mode=obs_mode)
    assert env.unwrapped.core.task.name == core
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        check_env(env.unwrapped, skip_render_check=True)
        sb3_check_env(env, warn=True)


@pytest.mark.slow
def test_bundled_trm_core_drives_the_sudoku_env_and_thinking_pays():
    """The same env and checkers on the bundled TRM core (issue G); on its held-out puzzles
    the answer after 8 segments is clearly better than after one, so halting is a decision."""
    env = gym.make("HRM-Sudoku-v0", checkpoint="sudoku4-trm")
    assert env.unwrapped.core.model.config.kind == "trm"
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        check_env(env.unwrapped, skip_render_check=True)
        sb3_check_env(env, warn=True)
    ckpt = load_checkpoint("sudoku4-trm")
    result = evaluate(ckpt.model, ckpt.task, ckpt.test_puzzles().take(slice(0, 300)),
                      max_segments=8)
    assert result.exact_by_segment[-1] > result.exact_by_segment[0] + 0.05
