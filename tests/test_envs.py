"""The halting environments: Gymnasium/SB3 contracts, rewards, autoreset, determinism."""

from __future__ import annotations

import subprocess
import sys
import warnings

import gymnasium as gym
import numpy as np
import torch
import pytest
from gymnasium.utils.env_checker import check_env

import hrm_rl  # noqa: F401  (registers the envs)
from hrm_rl.agents.trainer import ACTTrainer
from hrm_rl.envs.halting import (FEATURE_NAMES, N_FEATURES, N_MODEL_FEATURES, HaltingEnv,
                                  HaltingVectorEnv)
from tests.test_trainer import tiny_config


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory):
    """A tiny trained core saved with its held-out puzzles (test.csv)."""
    tmp = tmp_path_factory.mktemp("envckpt")
    trainer = ACTTrainer(tiny_config(tmp, "train.steps=30", "train.eval_every=1000",
                                     "train.checkpoint_every=1000"), tmp / "run", progress=False)
    trainer.fit()
    return str(tmp / "run")


@pytest.mark.parametrize("track", ["verifier-free", "verifier"])
@pytest.mark.parametrize("obs_mode", ["features", "latent", "dict"])
def test_gymnasium_and_sb3_checkers_pass_without_warnings(ckpt, obs_mode, track):
    from stable_baselines3.common.env_checker import check_env as sb3_check_env

    env = HaltingEnv(checkpoint=ckpt, obs_mode=obs_mode, track=track)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        check_env(env.unwrapped, skip_render_check=True)
        sb3_check_env(env, warn=True)


def _rollout(env, seed, actions):
    obs, _ = env.reset(seed=seed)
    trace = [obs]
    for a in actions:
        obs, reward, term, trunc, info = env.step(a)
        trace.append((obs, reward, term, info["segments"]))
        if term:
            obs, _ = env.reset()
            trace.append(obs)
    return trace


def test_same_seed_same_puzzles_observations_and_rewards(ckpt):
    actions = [0, 0, 1, 0, 1, 1, 0, 0, 0, 0, 1]
    a = _rollout(HaltingEnv(checkpoint=ckpt), 3, actions)
    b = _rollout(HaltingEnv(checkpoint=ckpt), 3, actions)
    np.testing.assert_equal(a, b)  # every observation, reward, flag and count
    c = _rollout(HaltingEnv(checkpoint=ckpt), 4, actions)
    with pytest.raises(AssertionError):
        np.testing.assert_equal(a, c)  # another seed: other puzzles


@pytest.mark.parametrize("reward", ["exact", "cell"])
def test_return_is_pay_minus_cost_per_segment(ckpt, reward):
    env = HaltingEnv(checkpoint=ckpt, step_cost=0.05, reward=reward, max_segments=3)
    env.reset(seed=0)
    total, term, info = 0.0, False, {}
    while not term:
        _, r, term, trunc, info = env.step(0)
        total += r
        assert not trunc
    assert info["segments"] == 3  # halted by itself at max_segments
    pay = float(info["is_success"]) if reward == "exact" else info["cell_accuracy"]
    assert total == pytest.approx(pay - 0.05 * 3)
    env.reset(seed=0)
    _, r, term, _, info = env.step(1)
    assert term and info["segments"] == 1
    pay = float(info["is_success"]) if reward == "exact" else info["cell_accuracy"]
    assert r == pytest.approx(pay - 0.05)


def test_observation_carries_the_segment_fraction(ckpt):
    env = HaltingEnv(checkpoint=ckpt, max_segments=4)
    obs, _ = env.reset(seed=1)
    assert obs.shape == (N_MODEL_FEATURES,) and obs[2] == pytest.approx(0.25)
    obs, *_ = env.step(0)
    assert obs[2] == pytest.approx(0.5)


def test_step_after_the_end_and_bad_actions_are_errors(ckpt):
    env = HaltingEnv(checkpoint=ckpt)
    env.reset(seed=0)
    with pytest.raises(ValueError, match="0 \\(continue\\) or 1 \\(halt\\)"):
        env.step(2)
    env.step(1)
    with pytest.raises(RuntimeError, match="reset"):
        env.step(0)


@pytest.mark.parametrize("kwargs, message", [
    ({"obs_mode": "pixels"}, "obs_mode"), ({"reward": "dense"}, "reward"),
    ({"step_cost": -1}, "step_cost"), ({"max_segments": 0}, "max_segments"),
    ({"split": "validation"}, "split"), ({"render_mode": "window"}, "render_mode"),
    ({"checkpoint": "no-such-core"}, "no checkpoint"),
    ({"track": "oracle"}, "track must be one of .*verifier-free"),
    ({"track": None}, "track must be one of"),
])
def test_bad_kwargs_raise_clear_errors(ckpt, kwargs, message):
    kwargs = {"checkpoint": ckpt, **kwargs}
    with pytest.raises((ValueError, FileNotFoundError), match=message):
        HaltingEnv(**kwargs)


def test_render_modes(ckpt):
    env = HaltingEnv(checkpoint=ckpt, render_mode="ansi")
    env.reset(seed=0)
    text = env.render()
    assert text.startswith("segment 1/") and text.count("\n") >= 4
    env = HaltingEnv(checkpoint=ckpt, render_mode="rgb_array")
    env.reset(seed=0)
    frame = env.render()
    assert frame.dtype == np.uint8 and frame.ndim == 3 and frame.shape[2] == 3
    assert len(np.unique(frame.reshape(-1, 3), axis=0)) >= 3


def test_vector_env_autoresets_in_the_same_step(ckpt):
    venv = HaltingVectorEnv(num_envs=4, checkpoint=ckpt, max_segments=3, step_cost=0.1)
    obs, info = venv.reset(seed=0)
    assert obs.shape == (4, N_MODEL_FEATURES) and venv.observation_space.contains(obs)
    obs2, rewards, term, trunc, info = venv.step(np.array([1, 0, 0, 1]))
    assert term.tolist() == [True, False, False, True] and not trunc.any()
    assert info["_final_obs"].tolist() == [True, False, False, True]
    assert info["final_obs"][0].shape == (N_MODEL_FEATURES,) and info["final_obs"][1] is None
    assert info["final_info"]["_is_success"].tolist() == [True, False, False, True]
    assert obs2[0, 2] == pytest.approx(1 / 3)       # a new puzzle's first segment
    assert obs2[1, 2] == pytest.approx(2 / 3)
    assert rewards[1] == pytest.approx(-0.1)
    obs3, rewards, term, _, info = venv.step(np.zeros(4, dtype=np.int64))
    assert term.tolist() == [False, True, True, False]  # rows 1, 2 reached max_segments
    assert info["final_info"]["segments"][1] == 3
    assert obs3[1, 2] == pytest.approx(1 / 3)
    assert obs2[1, 2] == pytest.approx(2 / 3), "earlier observations must not be overwritten"


def test_vector_env_step_is_one_forward_even_when_rows_hit_the_cap(ckpt):
    import torch

    venv = HaltingVectorEnv(num_envs=4, checkpoint=ckpt, max_segments=2)
    venv.reset(seed=0)
    model = venv.core.model
    calls = []
    handle = model.register_forward_hook(lambda m, args, out: calls.append(len(args[1])))
    try:
        _, _, term, _, info = venv.step(np.array([1, 0, 0, 0]))  # rows 1-3 reach the cap
        assert term.all() and calls == [4 + 3]
        assert info["final_info"]["segments"][1:].tolist() == [2, 2, 2]
        # the restarted rows' first segment equals that puzzle's first segment run alone
        engine = venv.core.engine
        with torch.inference_mode():
            alone = model(model.initial_carry(3), engine.inputs[1:], engine.puzzle_ids[1:])
        assert torch.equal(alone.logits.argmax(-1), venv.core.last["pred"][1:])
        assert engine.segments.tolist() == [1, 1, 1, 1]
        calls.clear()
        venv.step(np.array([1, 1, 1, 1]))
        assert calls == [4]
    finally:
        handle.remove()


def test_vector_env_is_deterministic_and_matches_its_spaces(ckpt):
    def run(seed):
        venv = HaltingVectorEnv(num_envs=3, checkpoint=ckpt, obs_mode="dict")
        venv.action_space.seed(seed)
        out = [venv.reset(seed=seed)[0]]
        for _ in range(6):
            obs, r, *_ = venv.step(venv.action_space.sample())
            assert venv.observation_space.contains(obs)
            out.append((obs, r))
        return out

    np.testing.assert_equal(run(5), run(5))


def test_registration_single_and_vector(ckpt):
    env = gym.make("HRM-Sudoku-v0", checkpoint=ckpt)
    assert isinstance(env.unwrapped, HaltingEnv)
    venv = gym.make_vec("HRM-Sudoku-v0", num_envs=8, checkpoint=ckpt)
    assert isinstance(venv, HaltingVectorEnv) and venv.num_envs == 8
    venv.reset(seed=0)
    venv.step(np.zeros(8, dtype=np.int64))


@pytest.mark.slow
def test_module_prefixed_id_needs_no_prior_import(ckpt):
    code = ("import gymnasium as gym; "
            f"env = gym.make('hrm_rl:HRM-Sudoku-v0', checkpoint={ckpt!r}); "
            "print(type(env.unwrapped).__name__)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "HaltingEnv"


def test_default_env_uses_the_bundled_core_and_halting_is_a_real_decision():
    env = gym.make("HRM-Sudoku-v0")
    first = last = 0
    for seed in range(40):
        _, info = env.reset(seed=seed)
        first += info["is_success"]
        term = False
        while not term:
            _, _, term, _, info = env.step(0)
        last += info["is_success"]
        assert info["segments"] == env.unwrapped.core.max_segments == 8
    assert last > first + 8  # accuracy after the last segment clearly above the first


def test_obs_mode_names_say_what_they_hold_and_the_old_name_still_works():
    new = HaltingVectorEnv(2, obs_mode="features+latent", split="test")
    old = HaltingVectorEnv(2, obs_mode="latent", split="test")
    assert new.core.obs_mode == old.core.obs_mode == "features+latent"
    assert new.single_observation_space == old.single_observation_space
    hidden = new.core.hidden
    assert new.single_observation_space.shape == (N_MODEL_FEATURES + hidden,)
    verifier = HaltingVectorEnv(2, obs_mode="features+latent", split="test", track="verifier")
    assert verifier.single_observation_space.shape == (N_FEATURES + hidden,)
    with pytest.raises(ValueError, match="features\\+latent"):
        HaltingVectorEnv(2, obs_mode="latents")


def test_features_table_bounds_the_observation_and_the_segment_index_is_an_integer():
    from hrm_rl.envs.halting import FEATURES

    assert [name for name, _, _ in FEATURES] == list(FEATURE_NAMES)
    assert FEATURE_NAMES.index("latent_residual") == 7 and FEATURE_NAMES.index("segment") == 8
    assert FEATURE_NAMES.index("violations") == 9 == N_MODEL_FEATURES == N_FEATURES - 1
    seg = FEATURE_NAMES.index("segment")
    for track, width in (("verifier-free", N_MODEL_FEATURES), ("verifier", N_FEATURES)):
        env = HaltingVectorEnv(3, max_segments=5, split="test", track=track)
        space = env.single_observation_space
        assert space.shape == (width,)
        assert space.low[seg] == 1 and space.high[seg] == 5
        if track == "verifier":
            assert space.low[9] == 0 and space.high[9] == 4  # violations / cells, at most 4
        obs, _ = env.reset(seed=0)
        for k in range(2, 6):
            assert obs[:, seg].tolist() == [k - 1] * 3 and env.observation_space.contains(obs)
            obs, *_ = env.step(np.zeros(3, dtype=np.int64))


def test_verifier_free_observations_hold_no_checker_output(monkeypatch):
    """The default track shows the model only: a checker that says something else leaves
    its observations as they were, while the verifier track's last feature follows it."""
    def run(track, patched):
        env = HaltingVectorEnv(4, split="test", max_segments=4, track=track, obs_mode="dict")
        if patched:
            monkeypatch.setattr(env.core.task, "violations",
                                lambda pred: torch.full((pred.shape[0],), 3 * pred.shape[1]))
        out = [env.reset(seed=2)[0]]
        rng = np.random.default_rng(0)
        for _ in range(6):
            out.append(env.step((rng.random(4) < 0.3).astype(np.int64))[0])
        monkeypatch.undo()
        return out

    plain, patched = run("verifier-free", False), run("verifier-free", True)
    assert plain[0]["features"].shape == (4, N_MODEL_FEATURES)
    np.testing.assert_equal(plain, patched)
    plain, patched = run("verifier", False), run("verifier", True)
    assert all((p["features"][:, 9] == 3).all() for p in patched)  # 3 violations per cell
    assert any((p["features"][:, 9] != 3).any() for p in plain)
    for a, b in zip(plain, patched):  # the model's features agree on both tracks
        np.testing.assert_equal(a["features"][:, :9], b["features"][:, :9])
        np.testing.assert_equal(a["latent"], b["latent"])


def test_latent_residual_is_zero_on_a_first_segment_and_tracks_each_rows_state():
    res = FEATURE_NAMES.index("latent_residual")
    venv = HaltingVectorEnv(3, split="test", max_segments=3)
    obs, _ = venv.reset(seed=0)
    assert (obs[:, res] == 0).all()  # nothing to compare with yet
    obs, *_ = venv.step(np.array([0, 0, 1]))
    assert (obs[:2, res] > 0).all() and obs[2, res] == 0  # row 2 began a new puzzle
    single = HaltingEnv(split="test", max_segments=3)
    first, _ = single.reset(seed=0)
    second, *_ = single.step(0)
    assert first[res] == 0 and second[res] == pytest.approx(obs[0, res], abs=1e-5)


def test_observations_and_rewards_are_pure_functions_of_a_segment():
    """No model: a hand-made segment output gives the features, answers and rewards."""
    from hrm_rl.envs.halting import step_rewards
    from hrm_rl.model import Carry, SegmentOutput
    from hrm_rl.tasks.sudoku import SudokuTask
    from hrm_rl.trace import segment_features

    task = SudokuTask(4)
    solution = torch.tensor([[1, 2, 3, 4, 3, 4, 1, 2, 2, 1, 4, 3, 4, 3, 2, 1]]) + 1
    labels = solution.repeat(2, 1)
    logits = torch.full((2, 16, 6), -10.0)
    logits[0].scatter_(1, solution[0][:, None], 10.0)       # row 0 predicts the solution
    logits[1].scatter_(1, (solution[0] % 5 + 1)[:, None], 10.0)  # row 1 predicts wrong digits
    h = torch.tensor([[3.0, 4.0, 0.0, 0.0], [1.0, 0.0, 0.0, 0.0]])
    out = SegmentOutput(Carry(torch.zeros(2, 1, 4), torch.zeros(2, 1, 4)), logits,
                        torch.tensor([2.0, -50.0]), torch.tensor([1.0, 0.0]), h)
    prev = torch.stack([solution[0], solution[0]])
    prev_h = torch.tensor([[0.0, 4.0, 0.0, 0.0], [5.0, 5.0, 5.0, 5.0]])
    state = segment_features(task, out, labels, torch.tensor([3, 1]), prev, prev_h,
                             torch.tensor([False, True]), 4)
    f = dict(zip(FEATURE_NAMES, state["features"].T))
    assert state["correct"].tolist() == [True, False]
    assert f["q_halt"].tolist() == [2.0, -30.0]  # clipped
    assert f["segment"].tolist() == [3, 1] and f["segment_fraction"].tolist() == [0.75, 0.25]
    assert f["changed_fraction"].tolist() == [0.0, 0.0]  # row 1 just started
    assert f["latent_residual"].tolist() == [pytest.approx(3 / 9), 0.0]  # |3,0| / (5 + 4)
    assert f["violations"][0] == 0 and f["violations"][1] > 0
    rewards = step_rewards(np.array([True, False]), state["correct"].float().numpy(), 0.1)
    np.testing.assert_allclose(rewards, [0.9, -0.1])


def test_the_engine_internals_are_not_public():
    from hrm_rl.segment_engine import SegmentEngine

    for name in ("forward", "replace", "forward_restarting"):
        assert not hasattr(SegmentEngine, name)


def test_max_segments_one_ends_every_episode_after_its_one_segment():
    env = HaltingEnv(max_segments=1, split="test")
    obs, _ = env.reset(seed=0)
    assert env.observation_space.contains(obs)
    obs, reward, terminated, _, info = env.step(0)  # "continue" cannot run a second segment
    assert terminated and info["segments"] == 1 and env.observation_space.contains(obs)
    venv = HaltingVectorEnv(3, max_segments=1, split="test")
    venv.reset(seed=0)
    for _ in range(3):
        obs, rewards, terminated, _, info = venv.step(np.zeros(3, dtype=np.int64))
        assert terminated.all() and venv.observation_space.contains(obs)
        assert (info["final_info"]["segments"] == 1).all()
        assert all(venv.single_observation_space.contains(o) for o in info["final_obs"])
        assert (info["segments"] == 1).all()


def test_single_env_infos_are_numpy_values_of_the_vector_envs_dtypes():
    env = HaltingEnv(split="test")
    _, info = env.reset(seed=0)
    _, _, _, _, step_info = env.step(0)
    venv = HaltingVectorEnv(2, split="test")
    _, vinfo = venv.reset(seed=0)
    for each in (info, step_info):
        assert set(each) == {"prediction", "is_success", "cell_accuracy", "segments"}
        assert type(each["is_success"]) is np.bool_
        assert type(each["cell_accuracy"]) is np.float64
        assert type(each["segments"]) is np.int64
        assert isinstance(each["prediction"], np.ndarray)
        for key, value in each.items():
            assert np.asarray(value).dtype == vinfo[key].dtype
            assert np.shape(value) == vinfo[key].shape[1:]
    assert step_info["segments"] == 2


def test_everything_that_reads_the_episode_before_reset_is_a_clear_runtime_error():
    venv = HaltingVectorEnv(2, split="test", render_mode="ansi")
    env = HaltingEnv(split="test", render_mode="ansi")
    for call in (venv.core.pay, venv.core.at_cap, venv.core.observations, venv.core.infos,
                 venv.action_masks, venv.render, env.render, env.action_masks,
                 lambda: venv.step(np.zeros(2, dtype=np.int64)), lambda: env.step(0)):
        with pytest.raises(RuntimeError, match="reset"):
            call()
    venv.reset(seed=0)
    assert venv.core.pay().shape == (2,) and len(venv.render()) == 2


def test_action_masks_allow_halting_always_and_continuing_below_the_cap():
    venv = HaltingVectorEnv(3, split="test", max_segments=2)
    venv.reset(seed=0)
    masks = venv.action_masks()
    assert masks.shape == (3, 2) and masks.dtype == np.bool_ and masks.all()
    one = HaltingVectorEnv(3, split="test", max_segments=1)  # every row sits at the cap
    one.reset(seed=0)
    assert one.action_masks().tolist() == [[False, True]] * 3
    single = HaltingEnv(split="test", max_segments=1)
    single.reset(seed=0)
    assert single.action_masks().tolist() == [False, True]
    single = HaltingEnv(split="test")
    single.reset(seed=0)
    assert single.action_masks().tolist() == [True, True]


def test_vector_reset_takes_per_row_seeds_and_names_unknown_options():
    venv = HaltingVectorEnv(3, split="test")
    with pytest.raises(ValueError, match="num_envs=3, got 2"):
        venv.reset(seed=[0, 1])
    with pytest.raises(ValueError, match="'max_segments'"):
        venv.reset(options={"max_segments": 2})
    obs, info = venv.reset(seed=[0, 1, 2])
    assert obs.shape == (3, N_MODEL_FEATURES) and info["_segments"].all()
    with pytest.raises(TypeError, match="batch of actions"):
        venv.step(0)


def test_human_render_mode_prints_the_text_frame(capsys):
    env = gym.make("HRM-Sudoku-v0", render_mode="human")
    assert isinstance(env.unwrapped, HaltingEnv)  # no HumanRendering wrapper (no pygame)
    env.reset(seed=0)
    assert env.render() is None
    frame = capsys.readouterr().out
    assert frame.strip() and env.unwrapped.core.render(0, "ansi") in frame
    venv = gym.make_vec("HRM-Sudoku-v0", num_envs=2, render_mode="human")
    venv.reset(seed=0)
    assert venv.render() is None and capsys.readouterr().out.count("\n") > 4
    with pytest.raises(ValueError, match="human"):  # the valid modes are named
        HaltingEnv(render_mode="window")
