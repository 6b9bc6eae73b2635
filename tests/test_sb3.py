"""The SB3 adapter, the halting policies, trace replay and ``hrm-rl halt``."""

from __future__ import annotations

import json
from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest
from stable_baselines3 import A2C, DQN, PPO
from stable_baselines3.common.evaluation import evaluate_policy
from stable_baselines3.common.vec_env import VecMonitor

import hrm_rl  # noqa: F401
from hrm_rl.agents import policies as policies_module
from hrm_rl.agents.halting_eval import evaluate_policy_on_trace
from hrm_rl.agents.policies import (FixedSegmentsPolicy, QHeadPolicy, QMarginPolicy,
                                    RandomPolicy, ThresholdPolicy, parse_policy)
from hrm_rl.envs.halting import HaltingEnv, HaltingVectorEnv
from hrm_rl.agents.sb3 import HaltingSB3VecEnv, make_sb3_vec_env
from hrm_rl.cli import main
from hrm_rl.trace import (FEATURE_NAMES, N_FEATURES, N_MODEL_FEATURES, load_trace,
                          oracle_halt_at, record_core_trace, score)

ENV = "HRM-Sudoku-v0"


@pytest.fixture(scope="module")
def puzzles_csv(tmp_path_factory):
    """The first 96 test puzzles of the Sudoku env's core, as a split CSV."""
    from hrm_rl.checkpoint import load_checkpoint

    ckpt = load_checkpoint("sudoku4")
    path = tmp_path_factory.mktemp("split") / "test96.csv"
    ckpt.task.write_csv(path, ckpt.puzzles("test").take(slice(0, 96)))
    return path


@pytest.fixture(scope="module")
def trace(puzzles_csv):
    return record_core_trace("sudoku4", str(puzzles_csv))


@pytest.fixture(scope="module")
def trace_files(tmp_path_factory):
    """``(test, val)`` trace files of the Sudoku core: 96 test and 96 val puzzles."""
    from hrm_rl.checkpoint import load_checkpoint

    task = load_checkpoint("sudoku4").task
    folder = tmp_path_factory.mktemp("traces")
    test = record_core_trace("sudoku4", "test", episodes=96).save(folder / "test.npz", task)
    val = record_core_trace("sudoku4", "val", episodes=96).save(folder / "val.npz", task)
    return test, val


def _vec(n=8, **kw):
    venv = make_sb3_vec_env(ENV, num_envs=n, **kw)
    venv.seed(0)
    return venv


def test_vec_env_api_and_sparse_infos():
    venv = _vec(8)
    obs = venv.reset()
    assert obs.shape == (8, N_MODEL_FEATURES) and obs.dtype == np.float32  # verifier-free
    assert len(venv.reset_infos) == 8 and "is_success" in venv.reset_infos[0]
    assert venv.env_is_wrapped(gym.Wrapper) == [False] * 8
    assert venv.env_is_wrapped(gym.Wrapper, indices=[1, 2]) == [False, False]
    assert venv.get_attr("max_segments") == [8] * 8
    ended = 0
    for t in range(12):
        actions = np.array([1 if (i + t) % 3 == 0 else 0 for i in range(8)])
        obs, rewards, dones, infos = venv.step(actions)
        assert rewards.dtype == np.float32 and dones.dtype == bool and len(infos) == 8
        for i in range(8):
            if dones[i]:
                ended += 1
                info = infos[i]
                assert info["terminal_observation"].shape == (N_MODEL_FEATURES,)
                assert info["TimeLimit.truncated"] is False
                assert isinstance(info["is_success"], bool)
                assert 1 <= info["segments"] <= 8
                # the returned observation is the next puzzle's first segment
                assert obs[i][2] == pytest.approx(1 / 8)
            else:
                assert infos[i] == {}
    assert ended > 0
    with pytest.raises(ValueError, match="all rows"):
        venv.set_attr("step_cost", 0.5, indices=[0])
    venv.set_attr("step_cost", 0.02)
    assert venv.get_attr("step_cost")[0] == 0.02


def test_seed_reproducible():
    def run():
        venv = _vec(4)
        venv.seed(7)
        out = [venv.reset()]
        for _ in range(5):
            out.append(venv.step(np.array([0, 1, 0, 1]))[0])
        return np.stack(out)

    np.testing.assert_array_equal(run(), run())


@pytest.mark.parametrize("algo", [PPO, A2C, DQN])
def test_sb3_algorithms_train(algo, tmp_path):
    venv = VecMonitor(_vec(8))
    kwargs = {"n_steps": 8, "batch_size": 32} if algo is PPO else (
        {"n_steps": 4} if algo is A2C else {"learning_starts": 16, "buffer_size": 500})
    model = algo("MlpPolicy", venv, seed=0, device="cpu", **kwargs)
    model.learn(64)
    assert model.num_timesteps >= 64
    cost = venv.get_attr("step_cost")[0]
    obs, episodes = venv.reset(), 0
    for _ in range(40):  # the trained policy in SB3's loop: every return is the env's reward
        actions, _ = model.predict(obs, deterministic=True)
        obs, _, dones, infos = venv.step(actions)
        for done, info in zip(dones, infos):
            if done:
                episodes += 1
                want = float(info["is_success"]) - cost * info["segments"]
                assert info["episode"]["r"] == pytest.approx(want, abs=1e-5)
                # decisions: k for a halt after k segments, 7 for reaching the cap of 8
                assert info["episode"]["l"] == min(info["segments"], 7)
    assert episodes >= 8


def test_dict_observations_with_multi_input_policy():
    venv = _vec(4, obs_mode="dict")
    model = PPO("MultiInputPolicy", venv, n_steps=4, batch_size=16, device="cpu", seed=0)
    model.learn(16)
    actions, _ = QHeadPolicy().predict(venv.reset())
    assert actions.shape == (4,)


def test_policies_predict_shapes_and_rules():
    feats = np.zeros((3, N_FEATURES), dtype=np.float32)
    feats[:, 0] = [1.0, -1.0, 0.0]  # q_halt
    feats[:, 1] = [0.0, 0.0, 0.5]   # q_continue
    feats[:, FEATURE_NAMES.index("segment")] = [1, 3, 8]
    feats[:, 4] = [0.95, 0.5, 0.99]
    assert QHeadPolicy().predict(feats)[0].tolist() == [1, 0, 0]
    assert FixedSegmentsPolicy(3).predict(feats)[0].tolist() == [0, 1, 1]
    assert ThresholdPolicy(0.9).predict(feats)[0].tolist() == [1, 0, 1]
    single, _ = QHeadPolicy().predict(feats[0])
    assert single.shape == () and int(single) == 1
    latent = np.concatenate([feats, np.ones((3, 5), np.float32)], 1)
    assert QHeadPolicy().predict(latent)[0].tolist() == [1, 0, 0]
    assert QHeadPolicy().predict({"features": feats, "latent": latent})[0].tolist() == [1, 0, 0]
    for width in (N_MODEL_FEATURES, N_FEATURES):  # either track: the model's features
        assert ThresholdPolicy(0.9).predict(feats[:, :width])[0].tolist() == [1, 0, 1]
    assert QMarginPolicy(0.75).predict(feats)[0].tolist() == [1, 0, 0]
    assert QMarginPolicy(-0.75).predict(feats)[0].tolist() == [1, 0, 1]
    assert RandomPolicy(1.0).predict(feats)[0].tolist() == [1, 1, 1]
    assert RandomPolicy(0.0).predict(feats)[0].tolist() == [0, 0, 0]
    with pytest.raises(ValueError, match="shape"):
        QHeadPolicy().predict(np.zeros((2, N_MODEL_FEATURES - 1)))
    with pytest.raises(ValueError, match="threshold must be in"):
        ThresholdPolicy(1.5)
    with pytest.raises(ValueError, match="k must be"):
        FixedSegmentsPolicy(0)


def test_parse_policy_specs():
    assert parse_policy("fixed:4").k == 4
    assert isinstance(parse_policy("qhead"), QHeadPolicy)
    assert parse_policy("threshold:0.8:mean_confidence").feature == "mean_confidence"
    assert parse_policy("mean-threshold:0.8").feature == "mean_confidence"
    assert parse_policy("q-margin:-1").m == -1.0
    with pytest.raises(ValueError, match="unknown policy spec"):
        parse_policy("greedy")
    with pytest.raises(ValueError, match="fixed:x"):
        parse_policy("fixed:x")
    with pytest.raises(FileNotFoundError, match="no saved PPO model"):
        parse_policy("ppo:/nonexistent/model.zip")


def test_fixed_policy_in_live_env_uses_k_segments():
    venv = _vec(6)
    obs = venv.reset()
    policy = FixedSegmentsPolicy(3)
    segments = []
    for _ in range(9):
        obs, _, dones, infos = venv.step(policy.predict(obs)[0])
        segments += [infos[i]["segments"] for i in np.flatnonzero(dones)]
    assert segments and set(segments) == {3}


def test_the_oracle_is_no_policy_and_nothing_reads_targets_through_the_env():
    assert not hasattr(policies_module, "OraclePolicy")
    assert not hasattr(HaltingEnv, "current_correct")
    assert not hasattr(HaltingVectorEnv, "current_correct")
    assert not hasattr(HaltingSB3VecEnv, "current_correct")
    with pytest.raises(ValueError, match="not a policy"):
        parse_policy("oracle")


def test_fixed_policy_reads_the_segment_index_under_any_cap():
    """The observation carries the integer segment: a different cap cannot mislead it."""
    for cap in (4, 8):
        venv = _vec(4, max_segments=cap)
        obs = venv.reset()
        ends = []
        for _ in range(6):
            obs, _, dones, infos = venv.step(FixedSegmentsPolicy(3).predict(obs)[0])
            ends += [infos[i]["segments"] for i in np.flatnonzero(dones)]
        assert set(ends) == {3}


def test_trace_replay_matches_live_env(trace, puzzles_csv):
    """Replaying a policy on the trace gives what the live env gives on the same puzzles."""
    policy = ThresholdPolicy(0.9)
    replay = evaluate_policy_on_trace(policy, trace, step_cost=0.01)
    env = gym.make_vec(ENV, num_envs=trace.n, vectorization_mode="vector_entry_point",
                       step_cost=0.01, split=str(puzzles_csv)).unwrapped
    obs, _ = env.reset(seed=3)  # the first draws of a shuffle of the 96: each puzzle once
    first = np.full(trace.n, -1.0)  # each row's first episode: success
    segs = np.zeros(trace.n)
    for _ in range(trace.max_segments):
        obs, _, term, _, info = env.step(policy.predict(obs)[0])
        for i in np.flatnonzero(term & (first < 0)):
            first[i] = info["final_info"]["is_success"][i]
            segs[i] = info["final_info"]["segments"][i]
    assert (first >= 0).all()
    assert replay.accuracy == pytest.approx(first.mean())
    assert replay.mean_segments == pytest.approx(segs.mean())


def test_the_qhead_policy_replayed_is_the_qhead_rule(trace):
    """A learned-free check of the replay: the Q-head policy halts where the trace's rule
    does, and scores the same."""
    replay = evaluate_policy_on_trace(QHeadPolicy(), trace, "qhead", step_cost=0.01)
    direct = score(trace, trace.qhead_halts(), 0.01, "qhead")
    np.testing.assert_array_equal(replay.halt_at, direct.halt_at)
    assert replay.to_dict() == direct.to_dict()
    assert 1 < direct.mean_segments < trace.max_segments  # the rule halts rows apart
    cell = evaluate_policy_on_trace(QHeadPolicy(), trace, step_cost=0.0, reward="cell")
    assert cell.reward == pytest.approx(direct.cell_accuracy)


def test_trace_oracle_is_an_upper_bound(trace):
    oracle = score(trace, oracle_halt_at(trace.correct), 0.01, "oracle")
    assert oracle.accuracy == pytest.approx(trace.correct.any(1).mean())
    never = ~trace.correct.any(1)  # those halt after one segment
    assert oracle.mean_segments == pytest.approx(np.where(
        never, 1, trace.correct.argmax(1) + 1).mean())
    for k in range(1, trace.max_segments + 1):
        fixed = evaluate_policy_on_trace(FixedSegmentsPolicy(k), trace, step_cost=0.01)
        assert fixed.accuracy == pytest.approx(trace.correct[:, k - 1].mean())
        assert fixed.mean_segments == k
        assert oracle.accuracy >= fixed.accuracy and oracle.reward >= fixed.reward


@pytest.mark.slow
def test_halt_cli_writes_tensorboard_tags(tmp_path, capsys):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    run = tmp_path / "train"
    assert main(["halt", "train", "--algo", "ppo", "--timesteps", "256", "--num-envs", "8",
                 "--env-kwargs", "step_cost=0.01", "--algo-kwargs", "n_steps=16,batch_size=64",
                 "--run-dir", str(run), "--no-progress", "--no-eval"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert Path(summary["model"]).is_file()
    events = [p.parent for p in run.rglob("events.out.tfevents.*")]
    acc = EventAccumulator(str(events[0]), size_guidance={"histograms": 0}).Reload()
    tags = acc.Tags()
    assert {"halt/accuracy", "halt/mean_segments", "halt/reward"} <= set(tags["scalars"])
    assert "halt/segments" in tags["histograms"]

    out = tmp_path / "eval"
    assert main(["halt", "eval", "--policies", f"qhead,fixed:2,oracle,ppo:{summary['model']}",
                 "--episodes", "64", "--out-dir", str(out), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert [r["policy"] for r in report["results"]][:3] == ["qhead", "fixed:2", "oracle"]
    assert report["split"] == "test" and report["track"] == "verifier-free"
    assert len(report["curves"]["fixed"]) == report["max_segments"]
    assert (out / "pareto.png").stat().st_size > 1000
    assert (out / "difficulty.png").stat().st_size > 1000
    acc = EventAccumulator(str(out), size_guidance={"images": 0}).Reload()
    assert {"halt/pareto", "halt/difficulty"} <= set(acc.Tags()["images"])


def test_halt_cli_splits_default_to_train_and_test_and_refuse_two_ways(capsys):
    from hrm_rl.cli_halt import build_halt_parser, env_kwargs_with_split

    parser = build_halt_parser()
    assert env_kwargs_with_split(parser.parse_args(["train"]))["split"] == "train"
    assert env_kwargs_with_split(parser.parse_args(["eval"]))["split"] == "test"
    assert env_kwargs_with_split(parser.parse_args(["eval", "--split", "val"]))["split"] == "val"
    assert main(["halt", "eval", "--env-kwargs", "split=val", "--episodes", "4"]) == 2
    assert "--split" in capsys.readouterr().err


def test_adapter_rejects_other_envs():
    with pytest.raises(TypeError, match="HaltingVectorEnv"):
        HaltingSB3VecEnv(gym.make("CartPole-v1"))


@pytest.mark.parametrize("argv, message", [
    (["halt", "train", "--threads", "-1"], "--threads"),
    (["halt", "train", "--timesteps", "0"], "--timesteps"),
    (["halt", "eval", "--episodes", "0"], "--episodes"),
    (["eval", "sudoku4", "--data", "x.csv", "--batch-size", "-1"], "--batch-size"),
    (["eval", "sudoku4", "--data", "x.csv", "--limit", "0"], "--limit"),
    (["eval", "sudoku4", "--data", "x.csv", "--max-segments", "0"], "--max-segments")])
def test_cli_counts_must_be_positive(argv, message, capsys):
    with pytest.raises(SystemExit) as exit_:
        main(argv)
    assert exit_.value.code == 2 and message in capsys.readouterr().err


def test_halt_eval_refuses_a_fixed_k_beyond_the_cap(capsys):
    assert main(["halt", "eval", "--policies", "qhead,fixed:99", "--episodes", "4"]) == 2
    assert "max_segments" in capsys.readouterr().err


@pytest.mark.parametrize("argv, message", [
    (["halt", "eval", "--env-kwargs", "foo=1", "--episodes", "4"], "unknown option(s) foo"),
    (["halt", "eval", "--env", "HRM-Nope-v0", "--episodes", "4"], "HRM-Nope-v0"),
    (["halt", "train", "--algo-kwargs", "bogus=1", "--timesteps", "8", "--no-eval"],
     "unknown option(s) bogus"),
    (["eval", "sudoku4", "--data", "."], "is a directory")])
def test_cli_mistakes_exit_2_naming_the_option(argv, message, capsys):
    assert main(argv) == 2
    assert message in capsys.readouterr().err


def test_policy_rows_carry_bootstrap_intervals(trace):
    row = evaluate_policy_on_trace(ThresholdPolicy(0.9), trace, "t")
    for value, (lo, hi) in ((row.accuracy, row.accuracy_ci), (row.mean_segments, row.segments_ci),
                            (row.reward, row.reward_ci)):
        assert lo <= value <= hi


def test_vector_env_keeps_its_seed():
    venv = gym.make_vec(ENV, num_envs=2, vectorization_mode="vector_entry_point").unwrapped
    venv.reset(seed=42)
    state = venv.np_random.bit_generator.state
    assert venv.np_random_seed == 42
    assert venv.np_random.bit_generator.state == state  # reading the seed replaced nothing


def test_attribute_access_honours_indices_and_cuts_per_row_values():
    import torch

    venv = _vec(6)
    with pytest.raises(RuntimeError, match="reset"):
        venv.env_method("pay")
    venv.reset()
    assert venv.get_attr("max_segments", indices=[0, 2]) == [8, 8]
    assert venv.get_attr("step_cost", indices=4) == [0.01]
    masks = venv.action_masks()
    assert masks.shape == (6, 2) and masks.dtype == np.bool_
    one = venv.env_method("action_masks", indices=[1])
    assert len(one) == 1 and np.array_equal(one[0], masks[1])
    assert np.array_equal(np.stack(venv.env_method("action_masks")), masks)  # sb3-contrib's way
    pay = venv.venv.core.pay()
    rows = venv.env_method("pay", indices=[1, 3])
    assert len(rows) == 2 and [float(r) for r in rows] == [float(pay[1]), float(pay[3])]
    info = venv.env_method("infos", indices=[5])[0]
    assert info["segments"] == 1 and info["prediction"].shape == (16,)
    assert venv.get_attr("prev_pred", indices=[2])[0].shape == (16,)
    venv.set_attr("prev_pred", torch.zeros(16, dtype=torch.long), indices=[2])  # per-row array
    assert venv.get_attr("prev_pred", indices=2)[0].sum() == 0
    assert venv.get_attr("prev_pred", indices=3)[0].sum() > 0  # other rows untouched
    assert venv.has_attr("action_masks") and not venv.has_attr("no_such_thing")


def test_adapter_needs_same_step_autoreset():
    from gymnasium.vector import AutoresetMode

    for mode in (AutoresetMode.NEXT_STEP, AutoresetMode.DISABLED):
        with pytest.raises(ValueError, match="SAME_STEP"):
            make_sb3_vec_env(ENV, num_envs=2, autoreset_mode=mode)


def test_interquartile_mean_trims_a_quarter_from_each_end():
    from hrm_rl.agents.halting_eval import interquartile_mean

    assert interquartile_mean([4, 1, 3, 2]) == 2.5  # (2 + 3) / 2
    assert interquartile_mean([100, 1, 2, 3, 4, 5, 6, -100]) == pytest.approx(3.5)
    assert interquartile_mean([1, 2, 30]) == pytest.approx(11)  # 3 values: nothing cut
    with pytest.raises(ValueError):
        interquartile_mean([])


def test_seeds_aggregate_to_their_iqm_with_an_interval_over_seeds():
    from hrm_rl.agents.halting_eval import aggregate_seeds
    from hrm_rl.trace import Score

    empty = np.zeros(0)
    runs = [Score(f"ppo:s{i}", acc, acc, seg, acc - 0.01 * seg, 1000, 0.01, (0, 1), (1, 8),
                  (0, 1), empty, empty)
            for i, (acc, seg) in enumerate([(0.90, 2.0), (0.95, 2.5), (0.97, 3.0), (0.20, 1.0)])]
    row = aggregate_seeds(runs, "ppo")
    assert row.policy == "ppo (IQM over 4 seeds, 95% CI over seeds)" and row.n == 1000
    assert row.accuracy == pytest.approx((0.90 + 0.95) / 2)  # the outliers 0.20, 0.97 cut
    assert row.mean_segments == pytest.approx((2.0 + 2.5) / 2)
    lo, hi = row.accuracy_ci
    assert 0.2 <= lo < row.accuracy < hi <= 0.97  # resampling seeds shows the spread
    with pytest.raises(ValueError, match="at least 2"):
        aggregate_seeds(runs[:1], "one")


@pytest.mark.slow
def test_halt_eval_aggregates_a_glob_of_seeds_to_their_iqm(tmp_path, capsys):
    from hrm_rl.agents.halting_eval import interquartile_mean

    venv = make_sb3_vec_env("HRM-Sudoku-v0", num_envs=4)
    for seed in range(3):  # three untrained policies: three different halting rules
        (tmp_path / f"seed{seed}").mkdir()  # SB3 warns when it has to create the folder
        PPO("MlpPolicy", venv, seed=seed, device="cpu").save(tmp_path / f"seed{seed}" / "model")
    assert main(["halt", "eval", "--episodes", "64", "--policies",
                 f"fixed:2,ppo:{tmp_path}/seed*/model.zip", "--json",
                 "--out-dir", str(tmp_path / "out")]) == 0
    rows = {r["policy"]: r for r in json.loads(capsys.readouterr().out)["results"]}
    members = [rows[f"ppo:{tmp_path}/seed{s}/model.zip"] for s in range(3)]
    agg = rows[f"ppo:{tmp_path}/seed*/model.zip (IQM over 3 seeds, 95% CI over seeds)"]
    assert agg["reward"] == pytest.approx(interquartile_mean([m["reward"] for m in members]))
    assert "paired_vs_baseline" not in agg and "paired_vs_baseline" in members[0]
    lo, hi = agg["reward_ci"]
    assert min(m["reward"] for m in members) <= lo <= hi <= max(m["reward"] for m in members)
    assert main(["halt", "eval", "--episodes", "8", "--policies",
                 f"ppo:{tmp_path}/nothing*/model.zip"]) == 2
    assert "no file matches" in capsys.readouterr().err


def test_a_glob_of_seeds_expands_to_one_spec_per_file_and_groups_into_one_iqm_row(
        trace, tmp_path):
    from hrm_rl.agents.halting_eval import (aggregate_seed_groups, expand_seed_globs,
                                            seeds_label)

    for seed in (1, 0):
        (tmp_path / f"seed{seed}").mkdir()
        (tmp_path / f"seed{seed}" / "model.zip").write_bytes(b"")
    glob_spec = f"ppo:{tmp_path}/seed*/model.zip"
    specs, groups = expand_seed_globs(["qhead", glob_spec, "ppo:one/model.zip"])
    members = [f"ppo:{tmp_path}/seed{s}/model.zip" for s in (0, 1)]
    assert specs == ["qhead", *members, "ppo:one/model.zip"] and groups == {glob_spec: members}
    rows = [score(trace, np.full(trace.n, k), 0.01, name)
            for k, name in ((1, "qhead"), (2, members[0]), (3, members[1]))]
    (agg,) = aggregate_seed_groups(rows, groups)
    assert agg.policy == seeds_label(glob_spec, 2)
    assert agg.mean_segments == pytest.approx(2.5)  # the IQM of two seeds is their mean
    with pytest.raises(ValueError, match="no file matches"):
        expand_seed_globs([f"ppo:{tmp_path}/none*/model.zip"])


def _eval_json(capsys, *argv) -> dict:
    assert main(["halt", "eval", "--no-progress", "--json", *argv]) == 0
    return json.loads(capsys.readouterr().out)


def test_halt_eval_tunes_rules_on_val_and_scores_them_on_the_trace(trace_files, tmp_path,
                                                                   capsys):
    from hrm_rl.trace import choose_on, halts

    test_path, val_path = trace_files
    report = _eval_json(capsys, "--trace", str(test_path), "--tune-on", str(val_path),
                        "--policies", "qhead,fixed,threshold:auto,q-margin,oracle",
                        "--env-kwargs", "step_cost=0.02", "--out-dir", str(tmp_path))
    assert report["env"] == ENV and report["split"] == "test" and report["tuned_on"] == "val"
    test, _ = load_trace(test_path)
    val, _ = load_trace(val_path)
    rows = {r.get("spec", r["policy"]): r for r in report["results"]}
    for family in ("fixed", "threshold", "q-margin"):
        want = choose_on(val, family, 0.02)
        spec = "threshold:auto" if family == "threshold" else family
        assert rows[spec]["param"] == want and rows[spec]["chosen_on"] == "val"
        expected = score(test, halts(test, family, want), 0.02)
        assert rows[spec]["reward"] == expected.reward
        assert rows[spec]["accuracy"] == expected.accuracy
    assert rows["fixed"]["param"] != choose_on(test, "fixed", 0.02)  # val's choice, not test's
    assert rows["qhead"]["reward"] == score(test, test.qhead_halts(), 0.02).reward
    # every row but the baseline's has its paired difference to it, with an interval
    assert report["baseline"] == "qhead" and "paired_vs_baseline" not in rows["qhead"]
    oracle = rows["oracle"]["paired_vs_baseline"]
    assert oracle["reward_difference"] == pytest.approx(rows["oracle"]["reward"]
                                                        - rows["qhead"]["reward"])
    assert oracle["ci"][0] <= oracle["reward_difference"] <= oracle["ci"][1]
    # a tunable rule without a parameter needs --tune-on; tuning on the scored split is refused
    assert main(["halt", "eval", "--trace", str(test_path), "--policies", "threshold",
                 "--out-dir", str(tmp_path)]) == 2
    assert "--tune-on" in capsys.readouterr().err
    assert main(["halt", "eval", "--trace", str(test_path), "--tune-on", str(test_path),
                 "--policies", "fixed", "--out-dir", str(tmp_path)]) == 2
    assert "split" in capsys.readouterr().err


def test_halt_eval_writes_one_row_per_puzzle(trace_files, tmp_path, capsys):
    import csv

    test_path, _ = trace_files
    out = tmp_path / "puzzles.csv"
    assert main(["halt", "eval", "--trace", str(test_path), "--episodes", "40", "--policies",
                 "qhead,fixed:3,oracle", "--baseline", "fixed:3", "--per-puzzle", str(out),
                 "--out-dir", str(tmp_path), "--no-progress"]) == 0
    text = capsys.readouterr().out
    assert text.count("split: test") == 1 and "reward - fixed:3" in text
    with open(out, newline="") as f:
        rows = list(csv.DictReader(f))
    test, task = load_trace(test_path)
    test = test.take(slice(0, 40))
    assert len(rows) == 40
    assert [int(r["puzzle"]) for r in rows] == test.puzzle.tolist()
    questions = {int(r["puzzle"]): r["question"] for r in rows}
    assert len(set(questions.values())) == 40 and all(questions.values())
    givens = task.difficulty(test.puzzles)
    assert [int(r["difficulty (givens)"]) for r in rows] == givens[test.puzzle].tolist()
    halt_at = test.qhead_halts()
    assert [int(r["halt_at:qhead"]) for r in rows] == halt_at.tolist()
    assert [int(r["correct:qhead"]) for r in rows] == test.at(halt_at)[0].astype(int).tolist()
    assert {int(r["halt_at:fixed:3"]) for r in rows} == {3}
    assert (tmp_path / "difficulty.png").stat().st_size > 1000  # drawn from the recording


def test_halt_eval_names_the_sb3_policy_whose_observations_do_not_fit(trace_files, tmp_path,
                                                                       capsys):
    from stable_baselines3.common.env_util import make_vec_env

    test_path, _ = trace_files
    cartpole = tmp_path / "cartpole" / "model.zip"
    cartpole.parent.mkdir()
    PPO("MlpPolicy", make_vec_env("CartPole-v1", n_envs=1), n_steps=8, batch_size=8,
        device="cpu").save(cartpole)
    assert main(["halt", "eval", "--trace", str(test_path), "--policies",
                 f"qhead,ppo:{cartpole}", "--out-dir", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert f"ppo:{cartpole}" in err and "width 4" in err
    verifier = tmp_path / "verifier" / "model.zip"  # 10 features: the verifier track's
    verifier.parent.mkdir()
    PPO("MlpPolicy", make_sb3_vec_env(ENV, num_envs=2, track="verifier"), n_steps=8,
        batch_size=8, device="cpu").save(verifier)
    assert main(["halt", "eval", "--trace", str(test_path), "--policies",
                 f"ppo:{verifier}", "--out-dir", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert f"ppo:{verifier}" in err and "--track verifier" in err
    report = _eval_json(capsys, "--trace", str(test_path), "--track", "verifier",
                        "--policies", f"qhead,checker,ppo:{verifier}", "--out-dir", str(tmp_path))
    assert [r["policy"] for r in report["results"]] == ["qhead", "checker", f"ppo:{verifier}"]
    assert main(["halt", "eval", "--trace", str(test_path), "--policies", "checker",
                 "--out-dir", str(tmp_path)]) == 2  # the checker is not verifier-free
    assert "verifier track only" in capsys.readouterr().err


def test_policies_of_both_observation_modes_share_one_table(tmp_path, capsys, puzzles_csv):
    latent = tmp_path / "latent" / "model.zip"
    latent.parent.mkdir()
    PPO("MlpPolicy", make_sb3_vec_env(ENV, num_envs=2, obs_mode="features+latent"),
        n_steps=8, batch_size=8, device="cpu").save(latent)
    features = tmp_path / "features" / "model.zip"
    features.parent.mkdir()
    PPO("MlpPolicy", make_sb3_vec_env(ENV, num_envs=2), n_steps=8, batch_size=8,
        device="cpu").save(features)
    report = _eval_json(capsys, "--split", str(puzzles_csv), "--episodes", "32", "--policies",
                        f"fixed:2,ppo:{latent},ppo:{features}", "--out-dir", str(tmp_path))
    rows = {r["policy"]: r for r in report["results"]}
    assert rows[f"ppo:{latent}"]["obs_mode"] == "features+latent"
    assert "obs_mode" not in rows[f"ppo:{features}"] and report["episodes"] == 32


def test_train_normalizes_observations_and_evaluation_applies_the_statistics(
        trace_files, tmp_path, capsys):
    from stable_baselines3.common.vec_env import VecNormalize
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    from hrm_rl.agents.sb3 import train_halting_policy
    from hrm_rl.trace import predict_halts

    test_path, val_path = trace_files
    val, _ = load_trace(val_path)
    run = tmp_path / "run"
    policy, info = train_halting_policy(
        ENV, "ppo", 256, 8, {"step_cost": 0.01}, {"n_steps": 16, "batch_size": 64}, seed=1,
        run_dir=run, normalize=True, val_trace=val, eval_every=128, progress=False)
    assert (run / "vecnormalize.pkl").is_file() and info["normalize"]
    assert [h["timesteps"] for h in info["val"]] == [128, 256]
    assert info["best_model"] == str(run / "best_model.zip") and info["policy"] == "best_model"
    assert (run / "best_model_vecnormalize.pkl").is_file()
    # the returned policy is the best model on val, behind its own statistics
    best_val = max(h["reward"] for h in info["val"])
    assert score(val, predict_halts(policy, val), 0.01).reward == best_val
    model = PPO.load(run / "model.zip", device="cpu")  # the final model, raw
    events = EventAccumulator(str(next(run.rglob("events.out.tfevents.*")).parent)).Reload()
    assert {"val/reward", "val/accuracy", "val/mean_segments"} <= set(events.Tags()["scalars"])

    stats = VecNormalize.load(str(run / "vecnormalize.pkl"), make_sb3_vec_env(ENV, 2))
    assert np.abs(stats.obs_rms.mean).max() > 0.01  # the statistics are not the identity

    class Wrapped:  # the model behind its own VecNormalize, as SB3 runs it
        def predict(self, obs, state=None, episode_start=None, deterministic=False):
            return model.predict(stats.normalize_obs(obs), state, episode_start, deterministic)

    test, _ = load_trace(test_path)
    want = score(test, predict_halts(Wrapped(), test), 0.01)
    raw = predict_halts(model, test)
    out = tmp_path / "per.csv"
    report = _eval_json(capsys, "--trace", str(test_path), "--policies",
                        f"ppo:{run / 'model.zip'}", "--per-puzzle", str(out),
                        "--out-dir", str(tmp_path / "eval"))
    row = report["results"][0]
    assert row["reward"] == want.reward and row["mean_segments"] == want.mean_segments
    import csv

    with open(out, newline="") as f:
        got = [int(r[f"halt_at:ppo:{run / 'model.zip'}"]) for r in csv.DictReader(f)]
    assert got == want.halt_at.tolist()
    assert not np.array_equal(raw, want.halt_at)  # unnormalized, the policy halts elsewhere


def test_halt_train_compares_on_the_val_trace_it_evaluated_on(trace_files, tmp_path, capsys):
    _, val_path = trace_files
    run = tmp_path / "run"
    assert main(["halt", "train", "--timesteps", "128", "--num-envs", "8", "--algo-kwargs",
                 "n_steps=8,batch_size=32", "--val-rollouts", str(val_path), "--eval-every",
                 "64", "--run-dir", str(run), "--no-progress"]) == 0
    captured = capsys.readouterr()
    summary = json.loads(captured.out)
    assert summary["eval_split"] == "val" and summary["normalize"] is True
    assert [h["timesteps"] for h in summary["val_history"]] == [64, 128]
    names = [r["policy"] for r in summary["eval"]]
    assert names[:3] == ["ppo:trained", "ppo:best", "qhead"] and names[3].startswith("fixed:")
    val, _ = load_trace(val_path)
    assert summary["eval"][2]["reward"] == score(val, val.qhead_halts(), 0.01).reward
    # the final row is the model as saved, scored on val: the last evaluation while training
    assert summary["eval"][0]["reward"] == summary["val_history"][-1]["reward"]
    assert "split: val" in captured.err
    assert main(["halt", "train", "--timesteps", "8", "--val-rollouts", str(val_path),
                 "--no-eval", "--run-dir", str(tmp_path / "other")]) == 2


def test_format_table_aligns_long_policy_names_and_the_paired_column(trace):
    from hrm_rl.agents.halting_eval import format_table
    from hrm_rl.trace import paired_difference

    long = "ppo:runs/very/long/path/to/a/model/trained/for/days/model.zip"
    rows = [score(trace, trace.qhead_halts(), 0.01, "qhead"),
            score(trace, np.full(trace.n, 3), 0.01, long)]
    lines = format_table(rows, {long: paired_difference(rows[1], rows[0])}, "qhead").splitlines()
    assert len({len(line) for line in lines}) == 1  # every row as wide as the header
    assert lines[3].startswith(long + " ") and "reward - qhead" in lines[0]
    starts = {line.index("[") for line in (lines[2], lines[3])}
    assert len(starts) == 1  # the accuracy column starts at the same place in both rows


def test_halt_eval_takes_the_env_from_the_recordings_task(tmp_path, capsys):
    from hrm_rl.checkpoint import load_checkpoint

    task = load_checkpoint("maze6").task
    path = record_core_trace("maze6", "test", max_segments=2, episodes=8).save(
        tmp_path / "maze.npz", task)
    report = _eval_json(capsys, "--env-kwargs", f"rollouts={path}", "--policies", "qhead",
                        "--out-dir", str(tmp_path))
    assert report["env"] == "HRM-Maze-v0" and report["episodes"] == 8
    assert main(["halt", "eval", "--trace", str(path), "--env-kwargs", f"rollouts={path}",
                 "--out-dir", str(tmp_path)]) == 2
    assert "--trace" in capsys.readouterr().err
