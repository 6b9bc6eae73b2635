"""Recorded rollouts: replayed envs equal live ones, load no model, and train policies."""

from __future__ import annotations

import json
from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest

import hrm_rl  # noqa: F401  (registers the envs)
from hrm_rl.checkpoint import load_checkpoint
from hrm_rl.cli import main
from hrm_rl.envs.halting import N_FEATURES, HaltingEnv, HaltingVectorEnv
from hrm_rl.envs.rollouts import load_rollouts, record_rollouts

CORES = {"HRM-Sudoku-v0": "sudoku4", "HRM-Maze-v0": "maze6", "HRM-ARC-v0": "arc-tiny"}
N = 40


@pytest.fixture(scope="module")
def recorded(tmp_path_factory):
    """Per env id: a CSV of N test puzzles and its recording (with latents)."""
    root = tmp_path_factory.mktemp("rollouts")
    out = {}
    for env_id, core in CORES.items():
        ckpt = load_checkpoint(core)
        csv = root / f"{core}.csv"
        ckpt.task.write_csv(csv, ckpt.puzzles("test").take(slice(0, N)))
        out[env_id] = (str(csv), record_rollouts(core, str(csv), root / f"{core}.npz",
                                                 latent=True, progress=False))
    return out


def _same(a, b):
    if isinstance(a, dict):
        for key in a:
            np.testing.assert_allclose(a[key], b[key], atol=1e-5)
    else:
        np.testing.assert_allclose(a, b, atol=1e-5)


@pytest.mark.parametrize("env_id", list(CORES))
@pytest.mark.parametrize("obs_mode", ["features", "latent", "dict"])
def test_replayed_vector_env_equals_the_live_one(recorded, env_id, obs_mode):
    csv, npz = recorded[env_id]
    live = gym.make_vec(env_id, num_envs=8, vectorization_mode="vector_entry_point",
                        split=csv, obs_mode=obs_mode).unwrapped
    replay = gym.make_vec(env_id, num_envs=8, vectorization_mode="vector_entry_point",
                          rollouts=npz, obs_mode=obs_mode).unwrapped
    assert replay.core.model is None and replay.observation_space == live.observation_space
    (o1, i1), (o2, i2) = live.reset(seed=4), replay.reset(seed=4)
    _same(o1, o2)
    rng = np.random.default_rng(1)
    for _ in range(25):
        actions = (rng.random(8) < 0.3).astype(np.int64)
        r1, r2 = live.step(actions), replay.step(actions)
        _same(r1[0], r2[0])
        for a, b in zip(r1[1:4], r2[1:4]):
            np.testing.assert_array_equal(a, b)
        for key in ("prediction", "is_success", "cell_accuracy", "segments"):
            np.testing.assert_array_equal(r1[4][key], r2[4][key])
        if "final_obs" in r1[4]:
            for x, y in zip(r1[4]["final_obs"], r2[4]["final_obs"]):
                if x is not None:
                    _same(x, y)
            np.testing.assert_array_equal(r1[4]["final_info"]["is_success"],
                                          r2[4]["final_info"]["is_success"])


@pytest.mark.parametrize("env_id", list(CORES))
def test_replayed_single_env_equals_the_live_one(recorded, env_id):
    csv, npz = recorded[env_id]
    live, replay = HaltingEnv(CORES[env_id], split=csv), HaltingEnv(CORES[env_id], rollouts=npz)
    for seed in range(3):
        (o1, _), (o2, _) = live.reset(seed=seed), replay.reset(seed=seed)
        _same(o1, o2)
        done = False
        while not done:
            r1, r2 = live.step(0), replay.step(0)
            _same(r1[0], r2[0])
            assert r1[1:4] == r2[1:4] and r1[4]["is_success"] == r2[4]["is_success"]
            done = r1[2]


def test_replay_checks_its_arguments(recorded, tmp_path):
    csv, npz = recorded["HRM-Sudoku-v0"]
    cap = load_rollouts(npz).max_segments
    with pytest.raises(ValueError, match="exceeds"):
        HaltingVectorEnv(2, rollouts=npz, max_segments=cap + 1)
    with pytest.raises(ValueError, match="recorded on split"):
        HaltingVectorEnv(2, rollouts=npz, split="test")
    with pytest.raises(ValueError, match="maze"):
        HaltingVectorEnv(2, checkpoint="maze6", rollouts=npz)
    plain = record_rollouts("sudoku4", csv, tmp_path / "plain.npz", episodes=5, progress=False)
    with pytest.raises(ValueError, match="latent"):
        HaltingVectorEnv(2, rollouts=plain, obs_mode="latent")
    (tmp_path / "bad.npz").write_bytes(b"not a zip")
    with pytest.raises(ValueError, match="bad.npz"):
        HaltingVectorEnv(2, rollouts=tmp_path / "bad.npz")
    short = HaltingVectorEnv(2, rollouts=npz, max_segments=2)  # a shorter cap is fine
    short.reset(seed=0)
    assert short.step(np.zeros(2, dtype=np.int64))[2].all()


def test_rollouts_file_holds_questions_and_identity(recorded):
    rec = load_rollouts(recorded["HRM-Maze-v0"][1])
    assert rec.identity["checkpoint"] == "maze6" and len(rec.identity["weights_sha256"]) == 64
    assert rec.arrays["features"].shape == (N, rec.max_segments, N_FEATURES)
    with np.load(rec.path) as data:
        questions = data["questions"]
    assert questions.shape == (N,) and questions.dtype.kind == "U"
    assert "S" in questions[0] and "G" in questions[0]


def test_ppo_trains_and_halt_eval_scores_on_a_replayed_env(recorded, tmp_path, capsys):
    from stable_baselines3 import PPO

    from hrm_rl.agents.sb3 import make_sb3_vec_env

    npz = recorded["HRM-Sudoku-v0"][1]
    venv = make_sb3_vec_env("HRM-Sudoku-v0", num_envs=8, rollouts=str(npz))
    model = PPO("MlpPolicy", venv, n_steps=16, batch_size=64, n_epochs=1, seed=0, device="cpu")
    model.learn(256)
    model.save(tmp_path / "ppo.zip")
    assert main(["halt", "eval", "--policies", f"qhead,fixed:2,oracle,ppo:{tmp_path}/ppo.zip",
                 "--split", str(recorded["HRM-Sudoku-v0"][0]), "--env-kwargs",
                 f"rollouts={npz}", "--out-dir", str(tmp_path / "eval")]) == 0
    assert "ppo:" in capsys.readouterr().out
    # without --split, a replay is scored on the split it was recorded on (not 'test')
    assert main(["halt", "eval", "--policies", "fixed:2", "--env-kwargs", f"rollouts={npz}",
                 "--out-dir", str(tmp_path / "eval2"), "--json"]) == 0
    out = capsys.readouterr()
    assert json.loads(out.out)["split"] == str(recorded["HRM-Sudoku-v0"][0])


def test_rollouts_record_cli(tmp_path, capsys):
    out = tmp_path / "r.npz"
    assert main(["rollouts", "record", "sudoku4", "--split", "val", "--episodes", "12",
                 "--max-segments", "3", "--out", str(out), "--no-progress"]) == 0
    rec = load_rollouts(out)
    assert rec.max_segments == 3 and len(rec.puzzles) == 12 and rec.identity["split"] == "val"
    with pytest.raises(SystemExit) as exit_:
        main(["rollouts", "record", "sudoku4", "--episodes", "0", "--out", str(out)])
    assert exit_.value.code == 2
    assert main(["rollouts", "record", "sudoku4", "--episodes", "999999", "--out",
                 str(out), "--no-progress"]) == 2


def test_envs_of_one_process_share_one_loaded_core_or_recording(recorded, tmp_path):
    """n single envs (rl-zoo3, make_vec_env) hold one copy of the weights, not n; a
    rewritten file loads afresh."""
    _, npz = recorded["HRM-Sudoku-v0"]
    a, b = HaltingEnv("sudoku4"), HaltingEnv("sudoku4", split="test")
    assert a.core.model is b.core.model
    r1, r2 = HaltingEnv(rollouts=npz), HaltingEnv(rollouts=npz)
    assert r1.core.recording is r2.core.recording and r1.core.model is None
    copy = tmp_path / "copy.npz"
    copy.write_bytes(Path(npz).read_bytes())
    assert HaltingEnv(rollouts=copy).core.recording is not r1.core.recording
    r1.reset(seed=3), r2.reset(seed=3)
    r1.step(0)  # shared data, yet each env has its own episode
    assert r1.core.engine.segments.tolist() == [2] and r2.core.engine.segments.tolist() == [1]
