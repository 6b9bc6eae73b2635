"""Outside RL libraries on the halting envs (``pip install hrm-rl[clients]``).

Each test skips when its library is missing: sb3-contrib (MaskablePPO, RecurrentPPO on the
batched SB3 adapter), TorchRL (``GymWrapper`` over the batched vector env), rl-zoo3 (its
``train`` entry point on the registered env), and Gymnasium's own vector wrappers. With
``HRM_RL_CLIENTS=1`` (set by CI, which installs them through scripts/venv.sh) a missing or
unimportable client fails its test instead: a broken install must not pass as a skip.
"""

from __future__ import annotations

import csv
import importlib
import os
import subprocess
import sys
from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest
from gymnasium.vector import AutoresetMode

import hrm_rl  # noqa: F401  (registers the envs)
from hrm_rl.agents.sb3 import make_sb3_vec_env
from hrm_rl.envs.halting import FEATURE_NAMES

ENV = "HRM-Sudoku-v0"
slow = pytest.mark.slow  # the clients lane of CI (installed with HRM_RL_CLIENTS=1)

ROOT = Path(__file__).resolve().parent.parent
SEG = FEATURE_NAMES.index("segment")


def _client(module: str):
    """Import an outside client: skip without it, unless HRM_RL_CLIENTS=1 says it is installed."""
    if os.environ.get("HRM_RL_CLIENTS", "0") != "1":
        return pytest.importorskip(module)
    try:
        return importlib.import_module(module)
    except ImportError as e:
        error = e
    pytest.fail(f"HRM_RL_CLIENTS=1 but {module} cannot be imported ({error!r}); "
                "install the clients with HRM_RL_CLIENTS=1 bash scripts/venv.sh", pytrace=False)


def test_a_missing_client_skips_by_default_and_fails_when_the_clients_are_wanted(monkeypatch):
    missing = "hrm_rl_no_such_client"
    monkeypatch.delenv("HRM_RL_CLIENTS", raising=False)
    with pytest.raises(pytest.skip.Exception):
        _client(missing)
    monkeypatch.setenv("HRM_RL_CLIENTS", "1")
    with pytest.raises(pytest.fail.Exception, match=f"HRM_RL_CLIENTS=1 but {missing}"):
        _client(missing)
    assert _client("gymnasium") is gym


def _sb3_env(n: int, **kw):
    venv = make_sb3_vec_env(ENV, num_envs=n, split="test", **kw)
    venv.seed(0)
    return venv


# sb3-contrib --------------------------------------------------------------------------------
@slow
def test_maskable_ppo_trains_on_the_batched_env_and_follows_its_masks():
    contrib = _client("sb3_contrib")
    from sb3_contrib.common.maskable.utils import get_action_masks, is_masking_supported
    from stable_baselines3.common.vec_env import VecMonitor

    venv = VecMonitor(_sb3_env(8))
    assert is_masking_supported(venv)
    model = contrib.MaskablePPO("MlpPolicy", venv, n_steps=32, batch_size=64, n_epochs=2,
                                seed=0, device="cpu")
    model.learn(256)
    assert model.num_timesteps >= 256
    obs = venv.reset()
    masks = get_action_masks(venv)
    assert masks.shape == (8, 2) and masks.dtype == np.bool_ and masks.all()
    actions, _ = model.predict(obs, action_masks=masks)
    assert actions.shape == (8,) and set(actions.tolist()) <= {0, 1}
    # with a cap of one segment every row sits at the cap: only "halt" is allowed
    capped = _sb3_env(8, max_segments=1)
    obs = capped.reset()
    masks = get_action_masks(capped)
    assert masks.tolist() == [[False, True]] * 8
    for _ in range(3):
        actions, _ = model.predict(obs, action_masks=masks, deterministic=False)
        assert actions.tolist() == [1] * 8


@slow
def test_recurrent_ppo_trains_on_the_batched_env_and_carries_its_lstm_state():
    contrib = _client("sb3_contrib")

    venv = _sb3_env(4)
    model = contrib.RecurrentPPO("MlpLstmPolicy", venv, n_steps=32, batch_size=64,
                                 n_epochs=2, seed=0, device="cpu",
                                 policy_kwargs={"lstm_hidden_size": 16, "net_arch": [16]})
    model.learn(256)
    assert model.num_timesteps >= 256
    obs, state, starts = venv.reset(), None, np.ones(4, dtype=bool)
    actions, state = model.predict(obs, state=state, episode_start=starts)
    assert actions.shape == (4,) and state[0].shape == (1, 4, 16)
    for _ in range(4):
        obs, _, starts, _ = venv.step(actions)
        previous = state[0].copy()
        actions, state = model.predict(obs, state=state, episode_start=starts)
        assert set(actions.tolist()) <= {0, 1}
        assert not np.allclose(previous, state[0])  # the recurrent state moves on


# TorchRL ------------------------------------------------------------------------------------
@slow
def test_torchrl_gym_wrapper_checks_its_specs_and_resets_rows_through_reset_mask():
    _client("torchrl")
    from torchrl.envs import GymWrapper
    from torchrl.envs.utils import check_env_specs

    base = gym.make_vec(ENV, num_envs=4, autoreset_mode=AutoresetMode.DISABLED,
                        max_segments=3, split="test")
    env = GymWrapper(base)
    assert tuple(env.batch_size) == (4,)
    check_env_specs(env, seed=0)
    td = env.rollout(12, break_when_any_done=False)
    assert tuple(td.batch_size) == (4, 12) and td["next", "reward"].shape == (4, 12, 1)
    done = td["next", "done"].squeeze(-1)
    seg_now = td["observation"][..., SEG]
    seg_next = td["next", "observation"][..., SEG]
    assert done.any() and (~done).any()
    for t in range(11):  # TorchRL restarts ended rows with reset(options={"reset_mask": ...})
        expected = np.where(done[:, t].numpy(), 1.0, seg_next[:, t].numpy())
        np.testing.assert_array_equal(seg_now[:, t + 1].numpy(), expected)
    assert (seg_next[done] <= 3).all() and (seg_next[~done] < 3).all()


@slow
def test_torchrl_same_step_mode_is_refused_by_its_terminal_observation_reader():
    """TorchRL reads same-step final observations into a buffer it fills with zeros for the
    rows that did not end, then checks that against the observation spec; the ``segment``
    feature is at least 1, so the check fails and TorchRL needs ``autoreset_mode=DISABLED``
    (its preferred mode). If this starts passing, TorchRL changed: update the README."""
    _client("torchrl")
    from torchrl.envs import GymWrapper

    with pytest.raises(AssertionError, match="spec check failed"):
        GymWrapper(gym.make_vec(ENV, num_envs=4, split="test"))


# rl-zoo3 -------------------------------------------------------------------------------------
@slow
def test_rl_zoo3_trains_ppo_on_the_registered_env(tmp_path):
    _client("rl_zoo3")
    from stable_baselines3 import PPO

    cmd = [sys.executable, "-m", "rl_zoo3.train", "--algo", "ppo", "--env", ENV,
           "--gym-packages", "hrm_rl", "--conf-file", str(ROOT / "configs" / "zoo" / "ppo.yml"),
           "-n", "512", "-f", str(tmp_path / "logs"), "--seed", "0", "--eval-freq", "-1",
           "--device", "cpu", "--num-threads", "1", "--verbose", "0",
           "--hyperparams", "n_envs:4", "n_steps:32", "batch_size:64",
           "--env-kwargs", "step_cost:0.05"]
    run = subprocess.run(cmd, capture_output=True, text=True, timeout=600, cwd=tmp_path,
                         env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert run.returncode == 0, run.stdout[-2000:] + run.stderr[-2000:]
    saved = list((tmp_path / "logs" / "ppo").glob(f"{ENV}_*/{ENV}.zip"))
    assert len(saved) == 1
    model = PPO.load(saved[0], device="cpu")
    assert model.num_timesteps >= 512
    env = gym.make(ENV, split="test")
    obs, _ = env.reset(seed=0)
    action, _ = model.predict(obs, deterministic=True)
    assert env.action_space.contains(int(action))
    episodes = []
    for monitor in saved[0].parent.glob("*.monitor.csv"):
        with open(monitor) as f:
            next(f)  # the monitor's JSON header line
            episodes += list(csv.DictReader(f))
    assert len(episodes) > 20
    for ep in episodes:
        # l decisions: halting after k segments takes k, reaching the cap of 8 takes 7;
        # the return is the pay (0 or 1) minus 0.05 per segment
        steps, ret = int(ep["l"]), float(ep["r"])
        assert 1 <= steps <= 7
        assert any(ret == pytest.approx(pay - 0.05 * k, abs=1e-4)
                   for k in (steps, steps + 1) for pay in (0.0, 1.0)), ep


# Gymnasium's vector wrappers --------------------------------------------------------------
@slow
def test_gymnasium_normalize_observation_runs_on_the_next_step_env():
    from gymnasium.wrappers.vector import NormalizeObservation

    with pytest.raises(ValueError, match="NEXT_STEP"):  # it reads metadata["autoreset_mode"]
        NormalizeObservation(gym.make_vec(ENV, num_envs=2, split="test"))
    def make():
        return gym.make_vec(ENV, num_envs=4, autoreset_mode=AutoresetMode.NEXT_STEP,
                            max_segments=4, split="test")

    raw, norm = make(), NormalizeObservation(make())
    assert norm.observation_space.shape == raw.observation_space.shape
    o_raw, _ = raw.reset(seed=0)
    o_norm, _ = norm.reset(seed=0)
    rng = np.random.default_rng(0)
    for _ in range(12):
        actions = (rng.random(4) < 0.3).astype(np.int64)
        o_raw, r_raw, t_raw, _, _ = raw.step(actions)
        o_norm, r_norm, t_norm, _, _ = norm.step(actions)
        np.testing.assert_array_equal(r_raw, r_norm)
        np.testing.assert_array_equal(t_raw, t_norm)
        rms = norm.obs_rms
        np.testing.assert_allclose(o_norm, (o_raw - rms.mean) / np.sqrt(rms.var + norm.epsilon),
                                   rtol=1e-4, atol=1e-4)
    assert norm.obs_rms.count > 4 * 12
    assert np.abs(o_norm).max() > 0.1  # not collapsed to zeros
    with pytest.raises(ValueError, match="partial resets"):
        norm.reset(options={"reset_mask": np.array([True, False, False, False])})
