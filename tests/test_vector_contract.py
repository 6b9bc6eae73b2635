"""Gymnasium's vector-env contract, checked on the batched ``HaltingVectorEnv``.

Adapted from what Gymnasium checks of its own vector envs (``SyncVectorEnv``): spaces,
seeding, the three autoreset modes, ``final_obs``/``final_info`` under same-step autoreset,
fresh returned arrays, ``_key`` info masks, ``reset_mask`` and its checks. Every test runs
the bundled ``sudoku4`` core with a few rows for a few steps.
"""

from __future__ import annotations

import copy

import gymnasium as gym
import numpy as np
import pytest
from gymnasium.utils.env_checker import data_equivalence
from gymnasium.vector import AutoresetMode

import hrm_rl  # noqa: F401  (registers the envs)
from hrm_rl.envs.halting import FEATURE_NAMES, HaltingEnv, HaltingVectorEnv
from hrm_rl.trace import track_features

MODES = [AutoresetMode.SAME_STEP, AutoresetMode.NEXT_STEP, AutoresetMode.DISABLED]
SEG = FEATURE_NAMES.index("segment")


def _segments(obs) -> np.ndarray:
    """The integer segment index of each row (or of one observation)."""
    feats = obs["features"] if isinstance(obs, dict) else obs
    return np.asarray(feats)[..., SEG].astype(np.int64)


def _venv(n=3, mode=AutoresetMode.SAME_STEP, **kw) -> HaltingVectorEnv:
    return HaltingVectorEnv(n, autoreset_mode=mode, split="test", **kw)


def _step_any(env, actions):
    """Step; under DISABLED first restart the rows that ended (the user's job there)."""
    if env.autoreset_mode is AutoresetMode.DISABLED and env._autoreset.any():
        env.reset(options={"reset_mask": env._autoreset.copy()})
    return env.step(actions)


# the engine primitive behind next-step and disabled autoreset -------------------------------
def test_held_rows_keep_their_puzzle_carry_count_and_refill_due():
    import torch

    from hrm_rl.data import ShuffledSource
    from hrm_rl.segment_engine import SegmentEngine
    from tests.conftest import random_puzzles
    from tests.test_segment_engine import StubCore

    model = StubCore()
    source = ShuffledSource(random_puzzles(10), np.random.default_rng(0), shuffle=False)
    engine = SegmentEngine(model, source, 4, "cpu", max_segments=2)
    with pytest.raises(ValueError, match="first step"):
        engine.step(hold=torch.tensor([True, False, False, False]))
    engine.step()
    inputs, carry = engine.inputs.clone(), engine.carry.z_H.clone()
    hold = torch.tensor([False, True, False, False])
    step = engine.step(halt=torch.tensor([True, True, False, False]), hold=hold)
    assert model.calls == 2  # still one forward over every row
    assert step.held.tolist() == hold.tolist()
    assert torch.equal(engine.inputs[1], inputs[1]) and torch.equal(engine.carry.z_H[1], carry[1])
    assert engine.segments.tolist() == [1, 1, 2, 2]  # row 0 refilled, row 1 held
    assert step.started.tolist() == [True, False, False, False]
    assert step.finished.tolist() == [False, False, True, True]  # rows 2, 3 at the cap
    assert source.drawn == 5  # the held row's halt waits: nothing drawn for it
    step = engine.step(hold=torch.tensor([False, False, True, False]))
    assert engine.pending.tolist() == [True, True, True, False]  # row 2 still due
    assert engine.segments.tolist() == [2, 2, 2, 1] and step.held.tolist()[2]


def test_a_row_aware_source_is_asked_per_row():
    import torch

    from hrm_rl.data import ShuffledSource
    from hrm_rl.envs.halting import RowSeededSource
    from hrm_rl.segment_engine import SegmentEngine
    from tests.conftest import random_puzzles
    from tests.test_segment_engine import StubCore

    puzzles = random_puzzles(10)
    source = RowSeededSource(puzzles, np.random.default_rng(0), {2: np.random.default_rng(5)})
    engine = SegmentEngine(StubCore(), source, 3, "cpu")
    engine.step()
    engine.step(halt=torch.tensor([False, False, True]))
    own = ShuffledSource(puzzles, np.random.default_rng(5)).draw_indices(2)
    assert engine.inputs[2].tolist() == puzzles.inputs[own[1]].tolist()  # row 2's 2nd puzzle
    plain = ShuffledSource(puzzles, np.random.default_rng(3)).draw_indices(7)
    wrapped = RowSeededSource(puzzles, np.random.default_rng(3)).draw_indices_for(np.arange(7))
    assert wrapped.tolist() == plain.tolist()  # no row of its own: the plain source's order


# metadata and spaces ----------------------------------------------------------------------
@pytest.mark.parametrize("mode", MODES)
def test_autoreset_mode_is_metadata_and_attribute_from_enum_value_or_make_vec(mode):
    for given in (mode, mode.value):
        env = _venv(2, given)
        assert env.autoreset_mode is mode and env.metadata["autoreset_mode"] is mode
    assert HaltingVectorEnv.metadata["autoreset_mode"] is AutoresetMode.SAME_STEP  # untouched
    made = gym.make_vec("HRM-Sudoku-v0", num_envs=2, autoreset_mode=mode)
    assert isinstance(made, HaltingVectorEnv) and made.metadata["autoreset_mode"] is mode
    assert made.spec.kwargs["autoreset_mode"] is mode  # recreatable from its spec
    assert HaltingVectorEnv(2).autoreset_mode is AutoresetMode.SAME_STEP  # the default


def test_an_unknown_autoreset_mode_is_refused():
    with pytest.raises(ValueError, match="autoreset_mode"):
        _venv(2, "sometimes")


@pytest.mark.parametrize("track", ["verifier-free", "verifier"])
@pytest.mark.parametrize("obs_mode", ["features", "features+latent", "dict"])
@pytest.mark.parametrize("mode", MODES)
def test_spaces_and_returned_batches(obs_mode, mode, track):
    n = 3
    env = _venv(n, mode, obs_mode=obs_mode, max_segments=3, track=track)
    width = len(track_features(track))
    features = env.single_observation_space
    features = features["features"] if obs_mode == "dict" else features
    assert features.shape[0] == width + (env.core.hidden if obs_mode == "features+latent" else 0)
    assert env.observation_space == gym.vector.utils.batch_space(env.single_observation_space, n)
    assert env.action_space == gym.spaces.MultiDiscrete([2] * n)
    assert env.single_action_space == gym.spaces.Discrete(2)
    obs, info = env.reset(seed=0)
    assert obs in env.observation_space and isinstance(info, dict)
    env.action_space.seed(0)
    for _ in range(6):
        obs, rewards, terminated, truncated, info = _step_any(env, env.action_space.sample())
        assert obs in env.observation_space
        assert rewards.shape == (n,) and rewards.dtype == np.float64
        for flags in (terminated, truncated):
            assert flags.shape == (n,) and flags.dtype == np.bool_
        assert not truncated.any()


# seeding ----------------------------------------------------------------------------------
def _trace(env, seed, steps=8, actions_seed=1):
    rng = np.random.default_rng(actions_seed)
    out = [env.reset(seed=seed)]
    for _ in range(steps):
        out.append(_step_any(env, (rng.random(env.num_envs) < 0.4).astype(np.int64)))
    return out


@pytest.mark.parametrize("mode", MODES)
def test_same_seed_same_trajectories_and_another_seed_differs(mode):
    a = _trace(_venv(3, mode, max_segments=3), 7)
    b = _trace(_venv(3, mode, max_segments=3), 7)
    assert data_equivalence(a, b)
    env = _venv(3, mode, max_segments=3)
    again = _trace(env, 7)
    assert data_equivalence(a, again)
    assert data_equivalence(a, _trace(env, 7))  # reseeding the same env starts over
    assert not data_equivalence(a, _trace(_venv(3, mode, max_segments=3), 8))


def _row_puzzles(env, row, seed, steps):
    """The inputs of the puzzles ``row`` works on over ``steps`` steps of halting at once."""
    env.reset(seed=seed)
    seen = [env.core.engine.inputs[row].clone()]
    for _ in range(steps):
        env.step(np.ones(env.num_envs, dtype=np.int64))
        seen.append(env.core.engine.inputs[row].clone())
    return [p.tolist() for p in seen]


def test_a_seed_list_seeds_each_row_like_a_one_row_env():
    alone = _row_puzzles(_venv(1), 0, [5], 4)
    assert alone == _row_puzzles(_venv(1), 0, 5, 4)  # [s] on one row is seed s
    assert _row_puzzles(_venv(3), 1, [9, 5, 9], 4) == alone
    assert _row_puzzles(_venv(3), 1, [1, 5, None], 4) == alone  # other rows do not matter
    assert _row_puzzles(_venv(3), 1, [1, 6, None], 4) != alone


def test_a_seed_list_must_have_one_entry_per_env():
    env = _venv(3)
    with pytest.raises(ValueError, match="num_envs=3"):
        env.reset(seed=[0, 1])
    with pytest.raises(TypeError, match="seed"):
        env.reset(seed=[0, 1, "2"])
    with pytest.raises(TypeError, match="seed"):
        env.reset(seed=1.5)


def test_the_int_seed_is_the_one_stream_of_every_row_and_reads_back():
    env = _venv(3)
    env.reset(seed=[1, 2, 3])
    env.reset(seed=4)  # an int drops the rows' own streams
    assert env.np_random_seed == 4 and env.core.engine.source.own == {}
    fresh = _venv(3)
    fresh.reset(seed=4)
    assert np.array_equal(env.core.engine.inputs, fresh.core.engine.inputs)


# autoreset semantics -----------------------------------------------------------------------
def test_same_step_autoreset_returns_the_next_first_observation_and_final_obs_info():
    env = _venv(3, AutoresetMode.SAME_STEP, max_segments=3, step_cost=0.1)
    env.reset(seed=0)
    obs, rewards, terminated, _, info = env.step(np.zeros(3, dtype=np.int64))
    assert not terminated.any() and "final_obs" not in info and "_final_info" not in info
    assert _segments(obs).tolist() == [2, 2, 2] and rewards.tolist() == [-0.1] * 3
    obs, rewards, terminated, _, info = env.step(np.array([1, 0, 0]))
    assert terminated.tolist() == [True, True, True]  # row 0 halted, rows 1, 2 hit the cap
    assert _segments(obs).tolist() == [1, 1, 1]  # every row already on its next puzzle
    assert info["_final_obs"].tolist() == info["_final_info"].tolist() == [True] * 3
    assert info["final_obs"].dtype == object
    assert [_segments(o) for o in info["final_obs"]] == [2, 3, 3]
    assert all(o in env.single_observation_space for o in info["final_obs"])
    final = info["final_info"]
    assert final["segments"].tolist() == [2, 3, 3] and info["segments"].tolist() == [1, 1, 1]
    for key in ("prediction", "is_success", "cell_accuracy", "segments"):
        assert final["_" + key].tolist() == [True] * 3
    pay = final["is_success"].astype(float)
    np.testing.assert_allclose(rewards, pay - [0.1, 0.2, 0.2])  # the cap's segment costs too
    obs, _, terminated, _, info = env.step(np.array([0, 1, 0]))
    assert terminated.tolist() == [False, True, False]
    assert info["final_obs"][0] is None and info["final_obs"][2] is None
    assert info["_final_info"].tolist() == [False, True, False]
    assert final["segments"].tolist() == [2, 3, 3], "earlier infos must not be overwritten"


def test_next_step_autoreset_returns_the_terminal_step_then_restarts_ignoring_the_action():
    env = _venv(3, AutoresetMode.NEXT_STEP, max_segments=3, step_cost=0.1)
    obs, _ = env.reset(seed=0)
    obs, rewards, terminated, _, info = env.step(np.array([1, 0, 0]))
    assert terminated.tolist() == [True, False, False] and "final_obs" not in info
    assert _segments(obs).tolist() == [1, 2, 2]  # row 0: its terminal observation
    assert info["segments"].tolist() == [1, 2, 2]
    assert rewards[0] == pytest.approx(float(info["is_success"][0]) - 0.1)
    twin = copy.deepcopy(env)
    obs, rewards, terminated, truncated, info = env.step(np.array([1, 0, 0]))
    twin_step = twin.step(np.array([0, 0, 0]))  # row 0's action is ignored while it restarts
    assert data_equivalence((obs, rewards, terminated, truncated, info), twin_step)
    assert _segments(obs).tolist() == [1, 3, 3]
    assert rewards[0] == 0.0 and not terminated[0]
    assert terminated.tolist() == [False, True, True]  # rows 1 and 2 reached the cap
    assert info["segments"].tolist() == [1, 3, 3]
    obs, rewards, terminated, _, _ = env.step(np.array([0, 1, 1]))
    assert _segments(obs).tolist() == [2, 1, 1] and rewards[1:].tolist() == [0.0, 0.0]
    assert not terminated.any()


def test_disabled_autoreset_needs_reset_mask_and_restarts_only_those_rows():
    env = _venv(3, AutoresetMode.DISABLED, max_segments=3)
    env.reset(seed=0)
    obs, _, terminated, _, _ = env.step(np.array([1, 0, 0]))
    assert terminated.tolist() == [True, False, False] and _segments(obs).tolist() == [1, 2, 2]
    with pytest.raises(RuntimeError, match="reset_mask"):
        env.step(np.zeros(3, dtype=np.int64))
    before = obs.copy()
    obs, info = env.reset(options={"reset_mask": terminated})
    assert _segments(obs).tolist() == [1, 2, 2]
    np.testing.assert_array_equal(obs[1:], before[1:])  # the other rows did not move
    assert info["_segments"].tolist() == [True, False, False]
    assert info["segments"].tolist() == [1, 0, 0]  # rows not reset report nothing
    obs, _, terminated, _, _ = env.step(np.zeros(3, dtype=np.int64))
    assert _segments(obs).tolist() == [2, 3, 3] and terminated.tolist() == [False, True, True]
    obs, info = env.reset(options={"reset_mask": terminated})
    assert _segments(obs).tolist() == [2, 1, 1]


def _episodes(env, ks, steps, seed):
    """Per row: ``(return, segments, is_success)`` of each episode of the policy "halt at
    ``ks[row]`` segments"; the modes differ only in how the episode ends are reported."""
    n, mode = env.num_envs, env.autoreset_mode
    obs, _ = env.reset(seed=seed)
    running, episodes = np.zeros(n), [[] for _ in range(n)]
    for _ in range(steps):
        if mode is AutoresetMode.DISABLED and env._autoreset.any():
            obs, _ = env.reset(options={"reset_mask": env._autoreset.copy()})
        obs, rewards, terminated, _, info = env.step((_segments(obs) >= ks).astype(np.int64))
        running += rewards
        final = info["final_info"] if mode is AutoresetMode.SAME_STEP and terminated.any() \
            else info
        for i in np.flatnonzero(terminated):
            episodes[i].append((round(running[i], 6), int(final["segments"][i]),
                                bool(final["is_success"][i])))
            running[i] = 0.0
    return episodes


def test_the_three_modes_play_the_same_episodes():
    """With per-row seeds each row's puzzles are fixed, so the modes must agree episode for
    episode (next-step and disabled spend one extra step per episode restarting)."""
    ks, seed = np.array([1, 2, 3, 5]), [10, 11, 12, 13]
    runs = {m: _episodes(_venv(4, m, max_segments=4, step_cost=0.05), ks, 16, seed)
            for m in MODES}
    same = runs[AutoresetMode.SAME_STEP]
    assert [len(e) for e in same] == [16, 8, 5, 5]
    for mode in (AutoresetMode.NEXT_STEP, AutoresetMode.DISABLED):
        for row, episodes in enumerate(runs[mode]):
            assert len(episodes) >= 3 and episodes == same[row][:len(episodes)], (mode, row)


def test_a_next_step_row_is_a_single_env_episode():
    """A next-step row's first episode equals ``HaltingEnv``'s for the same seed."""
    single = HaltingEnv(split="test", max_segments=4, step_cost=0.05)
    venv = _venv(1, AutoresetMode.NEXT_STEP, max_segments=4, step_cost=0.05)
    o1, _ = single.reset(seed=3)
    o2, _ = venv.reset(seed=[3])
    np.testing.assert_allclose(o1, o2[0], atol=1e-5)
    for action in (0, 0, 1):
        o1, r1, t1, _, i1 = single.step(action)
        o2, r2, t2, _, i2 = venv.step(np.array([action]))
        np.testing.assert_allclose(o1, o2[0], atol=1e-5)
        assert r1 == pytest.approx(r2[0]) and t1 == t2[0]
        assert i1["is_success"] == i2["is_success"][0] and i1["segments"] == i2["segments"][0]
    assert t1


def test_gymnasium_episode_statistics_agree_with_the_rewards_in_both_autoreset_modes():
    """``RecordEpisodeStatistics`` reads ``metadata["autoreset_mode"]`` to find episodes."""
    for mode in (AutoresetMode.SAME_STEP, AutoresetMode.NEXT_STEP):
        env = gym.wrappers.vector.RecordEpisodeStatistics(
            _venv(3, mode, max_segments=3, step_cost=0.1))
        env.reset(seed=0)
        running, seen = np.zeros(3), 0
        for t in range(10):
            actions = np.array([t % 2, 0, 1 if t % 3 == 0 else 0])
            _, rewards, terminated, _, info = env.step(actions)
            running += rewards
            if terminated.any():
                ended = info["_episode"]
                np.testing.assert_array_equal(ended, terminated)
                np.testing.assert_allclose(info["episode"]["r"][ended], running[ended])
                seen += int(ended.sum())
                running[ended] = 0.0
        assert seen >= 5


# fresh arrays and info masks ---------------------------------------------------------------
def _scribble(value):
    """Overwrite every array inside ``value`` in place."""
    if isinstance(value, dict):
        for v in value.values():
            _scribble(v)
    elif isinstance(value, (tuple, list)):
        for v in value:
            _scribble(v)
    elif isinstance(value, np.ndarray):
        if value.dtype == object:
            for v in value:
                _scribble(v)
        elif value.size:
            value[...] = 1 if value.dtype == np.bool_ else 7


@pytest.fixture(scope="module")
def recording(tmp_path_factory):
    """A recording of the first 30 test puzzles of the default core, with latents."""
    from hrm_rl.envs.rollouts import record_rollouts

    csv = tmp_path_factory.mktemp("contract") / "test30.csv"
    env = _venv(1)
    env.core.task.write_csv(csv, env.core.puzzles.take(slice(0, 30)))
    return record_rollouts("sudoku4", str(csv), csv.with_suffix(".npz"), latent=True,
                           progress=False)


@pytest.mark.parametrize("replay", [False, True])
@pytest.mark.parametrize("obs_mode", ["features", "dict"])
@pytest.mark.parametrize("mode", MODES)
def test_returned_arrays_are_fresh(obs_mode, mode, replay, request):
    def make():
        if replay:  # the observations are a trace lookup: still fresh arrays
            return HaltingVectorEnv(3, autoreset_mode=mode, obs_mode=obs_mode, max_segments=2,
                                    rollouts=request.getfixturevalue("recording"))
        return _venv(3, mode, obs_mode=obs_mode, max_segments=2)

    clean, dirty = make(), make()
    actions = [np.array([1, 0, 0]), np.zeros(3, dtype=np.int64), np.array([0, 1, 0])] * 2
    a, b = clean.reset(seed=2), dirty.reset(seed=2)
    assert data_equivalence(a, b)
    _scribble(b)
    for act in actions:
        a, b = _step_any(clean, act), _step_any(dirty, act)
        assert data_equivalence(a, b)  # scribbling on what the env returned changed nothing
        _scribble(b)


@pytest.mark.parametrize("mode", MODES)
def test_every_info_key_has_its_mask(mode):
    env = _venv(3, mode, max_segments=2)

    def check(info, rows):
        keys = [k for k in info if not k.startswith("_")]
        assert {"prediction", "is_success", "cell_accuracy", "segments"} <= set(keys)
        for key in keys:
            mask = info["_" + key]
            assert mask.dtype == np.bool_ and mask.shape == (3,)
            if key not in ("final_obs", "final_info"):
                assert mask.tolist() == rows and len(info[key]) == 3
        if "final_info" in info:
            check_final = info["final_info"]
            for key in [k for k in check_final if not k.startswith("_")]:
                np.testing.assert_array_equal(check_final["_" + key], info["_final_info"])

    _, info = env.reset(seed=0)
    check(info, [True] * 3)
    assert info["is_success"].dtype == np.bool_ and info["segments"].dtype == np.int64
    assert info["cell_accuracy"].dtype == np.float64
    for act in ([1, 0, 0], [0, 0, 0], [0, 1, 1]):
        _, _, _, _, info = _step_any(env, np.array(act))
        check(info, [True] * 3)
    _, info = env.reset(options={"reset_mask": np.array([False, True, False])})
    check(info, [False, True, False])


# reset options and action checks -----------------------------------------------------------
def test_reset_options_are_checked_like_gymnasium_and_unknown_keys_are_named():
    env = _venv(3)
    with pytest.raises(RuntimeError, match="reset\\(\\) once first"):
        env.reset(options={"reset_mask": np.array([True, False, False])})
    env.reset(options={"reset_mask": np.ones(3, dtype=bool)})  # all rows: a first reset
    options = {"reset_mask": np.array([True, False, False])}
    env.reset(options=options)
    assert "reset_mask" in options  # the caller's dict is left alone
    with pytest.raises(ValueError, match="'colour', 'size'"):
        env.reset(options={"size": 3, "colour": 1})
    with pytest.raises(ValueError, match="'size'"):
        env.reset(options={"reset_mask": np.ones(3, dtype=bool), "size": 3})
    for bad, error in (([True, False, True], TypeError), (np.ones(2, dtype=bool), ValueError),
                       (np.ones((1, 3), dtype=bool), ValueError), (np.ones(3), TypeError),
                       (np.zeros(3, dtype=bool), ValueError)):
        with pytest.raises(error, match="reset_mask"):
            env.reset(options={"reset_mask": bad})
    env.reset(options={})  # empty options are no options
    with pytest.raises(ValueError, match="'size'"):
        HaltingEnv(split="test").reset(options={"size": 3})


def test_a_reset_mask_takes_the_seeds_of_its_rows():
    env = _venv(3)
    env.reset(seed=0)
    env.step(np.zeros(3, dtype=np.int64))
    env.reset(seed=[None, 5, None], options={"reset_mask": np.array([False, True, False])})
    one = _venv(1)
    one.reset(seed=5)
    assert env.core.engine.inputs[1].tolist() == one.core.engine.inputs[0].tolist()


@pytest.mark.parametrize("n", [1, 3])
def test_scalar_actions_are_a_type_error_like_gymnasium(n):
    env = _venv(n)
    env.reset(seed=0)
    for scalar in (0, np.int64(1), np.array(0)):
        with pytest.raises(TypeError, match="batch of actions"):
            env.step(scalar)
    with pytest.raises(ValueError, match="integer"):
        env.step(np.zeros(n + 1, dtype=np.int64))
    _, rewards, *_ = env.step(np.zeros(n, dtype=np.int64))
    assert rewards.shape == (n,)
    single = HaltingEnv(split="test")  # the single env takes its one action as a scalar
    single.reset(seed=0)
    assert single.step(0)[4]["segments"] == 2
