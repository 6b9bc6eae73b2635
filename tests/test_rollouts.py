"""Recorded rollouts: a trace file replayed; replayed envs equal live ones on both tracks,
load no model, refuse recordings of another core or tampered files, and train policies."""

from __future__ import annotations

import copy
import json
import os
import pickle
import stat
from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest

import hrm_rl  # noqa: F401  (registers the envs)
from hrm_rl.checkpoint import load_checkpoint
from hrm_rl.cli import main
from hrm_rl.envs import DefaultCheckpoint
from hrm_rl.envs.halting import N_FEATURES, HaltingEnv, HaltingVectorEnv
from hrm_rl.envs.rollouts import TraceCore, record_rollouts, rollouts_identity
from hrm_rl.trace import arrays_sha256, csv_questions, load_trace

CORES = {"HRM-Sudoku-v0": "sudoku4", "HRM-Maze-v0": "maze6", "HRM-ARC-v0": "arc-rearc"}
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
        assert a.keys() == b.keys()
        for key in a:
            np.testing.assert_allclose(a[key], b[key], atol=1e-5)
    else:
        assert np.shape(a) == np.shape(b)
        np.testing.assert_allclose(a, b, atol=1e-5)


@pytest.mark.parametrize("track", ["verifier-free", "verifier"])
@pytest.mark.parametrize("env_id", list(CORES))
@pytest.mark.parametrize("obs_mode", ["features", "latent", "dict"])
def test_replayed_vector_env_equals_the_live_one(recorded, env_id, obs_mode, track):
    csv, npz = recorded[env_id]
    live = gym.make_vec(env_id, num_envs=8, vectorization_mode="vector_entry_point",
                        split=csv, obs_mode=obs_mode, track=track).unwrapped
    replay = gym.make_vec(env_id, num_envs=8, vectorization_mode="vector_entry_point",
                          rollouts=npz, obs_mode=obs_mode, track=track).unwrapped
    assert isinstance(replay.core.model, TraceCore) and replay.observation_space == live.observation_space
    (o1, i1), (o2, i2) = live.reset(seed=4), replay.reset(seed=4)
    _same(o1, o2)
    assert replay.observation_space.contains(o2)
    rng = np.random.default_rng(1)
    for _ in range(25):
        actions = (rng.random(8) < 0.3).astype(np.int64)
        r1, r2 = live.step(actions), replay.step(actions)
        _same(r1[0], r2[0])
        for a, b in zip(r1[1:4], r2[1:4]):
            np.testing.assert_array_equal(a, b)
        for key in ("prediction", "is_success", "cell_accuracy", "segments"):
            np.testing.assert_array_equal(r1[4][key], r2[4][key])
        assert ("final_obs" in r1[4]) == ("final_obs" in r2[4])
        if "final_obs" in r1[4]:
            for x, y in zip(r1[4]["final_obs"], r2[4]["final_obs"]):
                assert (x is None) == (y is None)
                if x is not None:
                    _same(x, y)
            np.testing.assert_array_equal(r1[4]["final_info"]["is_success"],
                                          r2[4]["final_info"]["is_success"])


@pytest.mark.parametrize("track", ["verifier-free", "verifier"])
@pytest.mark.parametrize("env_id", list(CORES))
def test_replayed_single_env_equals_the_live_one(recorded, env_id, track):
    csv, npz = recorded[env_id]
    live = HaltingEnv(CORES[env_id], split=csv, track=track)
    replay = HaltingEnv(CORES[env_id], rollouts=npz, track=track)
    for seed in range(3):
        (o1, _), (o2, _) = live.reset(seed=seed), replay.reset(seed=seed)
        _same(o1, o2)
        done = False
        while not done:
            r1, r2 = live.step(0), replay.step(0)
            _same(r1[0], r2[0])
            assert r1[1:4] == r2[1:4] and r1[4]["is_success"] == r2[4]["is_success"]
            done = r1[2]


def test_replay_on_a_shorter_cap_rescales_the_segment_fraction(recorded):
    csv, npz = recorded["HRM-Sudoku-v0"]
    live = HaltingVectorEnv(4, split=csv, max_segments=3)
    replay = HaltingVectorEnv(4, rollouts=npz, max_segments=3)
    assert replay.core.trace.max_segments > 3
    _same(live.reset(seed=0)[0], replay.reset(seed=0)[0])
    for _ in range(5):
        r1, r2 = live.step(np.zeros(4, dtype=np.int64)), replay.step(np.zeros(4, dtype=np.int64))
        _same(r1[0], r2[0])
        np.testing.assert_array_equal(r1[2], r2[2])
    assert replay.observation_space.contains(r2[0])


def test_replay_checks_its_arguments(recorded, tmp_path):
    csv, npz = recorded["HRM-Sudoku-v0"]
    cap = load_trace(npz)[0].max_segments
    with pytest.raises(ValueError, match="exceeds"):
        HaltingVectorEnv(2, rollouts=npz, max_segments=cap + 1)
    with pytest.raises(ValueError, match="recorded on split"):
        HaltingVectorEnv(2, rollouts=npz, split="test")
    with pytest.raises(ValueError, match="track must be one of"):
        HaltingVectorEnv(2, rollouts=npz, track="checker")
    plain = record_rollouts("sudoku4", csv, tmp_path / "plain.npz", episodes=5, progress=False)
    with pytest.raises(ValueError, match="plain.npz.*latent|latent.*plain.npz"):
        HaltingVectorEnv(2, rollouts=plain, obs_mode="latent")
    (tmp_path / "bad.npz").write_bytes(b"not a zip")
    with pytest.raises(ValueError, match="bad.npz"):
        HaltingVectorEnv(2, rollouts=tmp_path / "bad.npz")
    with pytest.raises(FileNotFoundError, match="missing.npz"):
        HaltingVectorEnv(2, rollouts=tmp_path / "missing.npz")
    short = HaltingVectorEnv(2, rollouts=npz, max_segments=2)  # a shorter cap is fine
    short.reset(seed=0)
    assert short.step(np.zeros(2, dtype=np.int64))[2].all()


@pytest.mark.parametrize("checkpoint, differ", [
    ("sudoku6", "weights SHA-256, task, seq_len"),  # another size of Sudoku
    ("sudoku4-trm", "weights SHA-256"),             # the same task, another core
    ("maze6", "weights SHA-256, task, seq_len"),    # another task
])
def test_a_checkpoint_other_than_the_recorded_core_is_refused_naming_both(
        recorded, checkpoint, differ):
    _, npz = recorded["HRM-Sudoku-v0"]
    for make in (lambda: HaltingVectorEnv(2, checkpoint=checkpoint, rollouts=npz),
                 lambda: gym.make("HRM-Sudoku-v0", checkpoint=checkpoint, rollouts=npz)):
        with pytest.raises(ValueError) as err:
            make()
        text = str(err.value)
        assert str(npz) in text and f"checkpoint {checkpoint} " in text
        assert "core sudoku4 " in text and f"{differ} differ" in text
    # the recorded core itself, named explicitly, is accepted
    env = HaltingEnv("sudoku4", rollouts=npz)
    assert isinstance(env.core.model, TraceCore) and env.core.task.name == "sudoku4"


def test_without_a_checkpoint_the_recording_defines_the_core_of_the_env_ids_task(
        recorded, tmp_path):
    six = record_rollouts("sudoku6", "test", tmp_path / "six.npz", episodes=6,
                          max_segments=2, progress=False)
    env = gym.make("HRM-Sudoku-v0", rollouts=six)  # the id's default core is sudoku4
    assert env.unwrapped.core.task.name == "sudoku6" and env.unwrapped.core.max_segments == 2
    env.reset(seed=0)
    assert env.step(0)[2]  # the recorded cap
    venv = gym.make_vec("HRM-Sudoku-v0", num_envs=3, rollouts=six)
    assert venv.unwrapped.core.task.name == "sudoku6"
    assert HaltingEnv(rollouts=six).core.task.name == "sudoku6"  # the class's default too
    with pytest.raises(ValueError, match="six.npz.*sudoku.*this env is for maze"):
        gym.make("HRM-Maze-v0", rollouts=six)
    with pytest.raises(ValueError, match="this env is for arc"):
        gym.make_vec("HRM-ARC-v0", num_envs=2, rollouts=recorded["HRM-Maze-v0"][1])
    # the default marker survives the copies Gymnasium and multiprocessing make
    default = gym.spec("HRM-Maze-v0").kwargs["checkpoint"]
    for clone in (copy.deepcopy(default), pickle.loads(pickle.dumps(default))):
        assert isinstance(clone, DefaultCheckpoint) and clone == "maze6"
    assert not isinstance(str(default), DefaultCheckpoint)


def _tamper(src: Path, dst: Path, edit_identity=None, **arrays) -> Path:
    """A copy of trace file ``src`` with ``arrays`` replaced and the checksum recomputed (a
    deliberate edit, not a torn write), the identity edited by ``edit_identity``."""
    with np.load(src, allow_pickle=False) as data:
        files = {k: data[k] for k in data.files}
    identity = json.loads(str(files.pop("identity")))
    files.update(arrays)
    identity["arrays_sha256"] = arrays_sha256(
        {k: v for k, v in files.items() if k != "puzzles_csv"})
    if edit_identity is not None:
        edit_identity(identity)
    np.savez(dst, identity=np.array(json.dumps(identity)), **files)
    return dst


def test_a_tampered_recording_is_refused_naming_the_file(recorded, tmp_path):
    _, npz = recorded["HRM-Sudoku-v0"]
    with np.load(npz) as data:
        correct, features = data["correct"], data["features"]
    assert not correct.all()
    nan = features.copy()
    nan[3, 1, 4] = np.nan
    cases = {
        "all_correct.npz": ({"correct": np.ones_like(correct)}, None, "correct"),
        "float64.npz": ({"features": features.astype(np.float64)}, None, "float64"),
        "nan.npz": ({"features": nan}, None, "non-finite"),
        "no_config.npz": ({}, lambda identity: identity.pop("config"), "config"),
    }
    for name, (arrays, edit, what) in cases.items():
        path = _tamper(Path(npz), tmp_path / name, edit, **arrays)
        for make in (lambda: gym.make("HRM-Sudoku-v0", rollouts=path),
                     lambda: gym.make_vec("HRM-Sudoku-v0", num_envs=2, rollouts=path)):
            with pytest.raises(ValueError, match=what) as err:
                make()
            assert str(path) in str(err.value), name
    # a byte changed without recomputing the checksum: refused too
    with np.load(npz) as data:
        files = {k: data[k] for k in data.files}
    files["cell"] = files["cell"] * 0.5
    np.savez(tmp_path / "edited.npz", **files)
    with pytest.raises(ValueError, match="edited.npz.*checksum"):
        gym.make("HRM-Sudoku-v0", rollouts=tmp_path / "edited.npz")
    # the untouched copy still loads: the refusals are the edits'
    same = gym.make("HRM-Sudoku-v0", rollouts=_tamper(Path(npz), tmp_path / "same.npz"))
    assert same.unwrapped.core.trace.n == N


def test_rollouts_file_is_a_trace_with_its_identity(recorded):
    path = recorded["HRM-Maze-v0"][1]
    trace, task = load_trace(path)
    identity = rollouts_identity(path)
    assert identity == trace.identity
    assert identity["checkpoint"] == "maze6" and len(identity["weights_sha256"]) == 64
    assert identity["split"] == recorded["HRM-Maze-v0"][0] and identity["latent"] is True
    assert trace.features.shape == (N, trace.max_segments, N_FEATURES)
    assert trace.latent is not None and trace.pred.shape == (N, trace.max_segments, task.seq_len)
    with np.load(path) as data:
        questions = csv_questions(str(data["puzzles_csv"]))
    assert len(questions) == N and "S" in questions[0] and "G" in questions[0]


def test_record_rollouts_refuses_an_existing_file_unless_forced_and_writes_0644(tmp_path):
    out = tmp_path / "r.npz"
    old = os.umask(0o077)  # a private umask: the file is still world-readable
    try:
        record_rollouts("sudoku4", "test", out, episodes=4, max_segments=2, progress=False)
    finally:
        os.umask(old)
    assert stat.S_IMODE(out.stat().st_mode) == 0o644
    before = out.read_bytes()
    with pytest.raises(FileExistsError, match="r.npz.*--force"):
        record_rollouts("sudoku4", "test", out, episodes=6, max_segments=2, progress=False)
    assert out.read_bytes() == before
    record_rollouts("sudoku4", "test", out, episodes=6, max_segments=2, progress=False,
                    force=True)
    assert load_trace(out)[0].n == 6 and stat.S_IMODE(out.stat().st_mode) == 0o644
    assert [p.name for p in tmp_path.iterdir()] == ["r.npz"]  # no temporary left behind


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
    trace, _ = load_trace(out)
    assert trace.max_segments == 3 and trace.n == 12 and trace.identity["split"] == "val"
    capsys.readouterr()
    # an existing --out: exit 2, the message names it and the way out; the file is kept
    before = out.read_bytes()
    assert main(["rollouts", "record", "sudoku4", "--episodes", "5", "--max-segments", "2",
                 "--out", str(out), "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert str(out) in err and "--force" in err and "Traceback" not in err
    assert out.read_bytes() == before
    assert main(["rollouts", "record", "sudoku4", "--episodes", "5", "--max-segments", "2",
                 "--out", str(out), "--no-progress", "--force"]) == 0
    assert load_trace(out)[0].n == 5
    with pytest.raises(SystemExit) as exit_:
        main(["rollouts", "record", "sudoku4", "--episodes", "0", "--out", str(out)])
    assert exit_.value.code == 2
    assert main(["rollouts", "record", "sudoku4", "--episodes", "999999", "--out",
                 str(tmp_path / "big.npz"), "--no-progress"]) == 2
    assert "episodes" in capsys.readouterr().err and not (tmp_path / "big.npz").exists()


def test_envs_of_one_process_share_one_loaded_core_or_recording(recorded, tmp_path):
    """n single envs (rl-zoo3, make_vec_env) hold one copy of the weights, not n; a
    rewritten file loads afresh."""
    _, npz = recorded["HRM-Sudoku-v0"]
    a, b = HaltingEnv("sudoku4"), HaltingEnv("sudoku4", split="test")
    assert a.core.model is b.core.model
    r1, r2 = HaltingEnv(rollouts=npz), HaltingEnv(rollouts=npz, track="verifier")
    assert r1.core.trace is r2.core.trace and isinstance(r1.core.model, TraceCore)
    copy_ = tmp_path / "copy.npz"
    copy_.write_bytes(Path(npz).read_bytes())
    assert HaltingEnv(rollouts=copy_).core.trace is not r1.core.trace
    r1.reset(seed=3), r2.reset(seed=3)
    r1.step(0)  # shared data, yet each env has its own episode
    assert r1.core.engine.segments.tolist() == [2] and r2.core.engine.segments.tolist() == [1]
