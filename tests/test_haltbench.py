"""HaltBench: baselines fitted on train, chosen on val, scored on test; risk control; the CLI."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest

from hrm_rl.agents.haltbench import (README_BEGIN, README_END, Classifier, RiskControl,
                                     accuracy_loss, binomial_cdf, core_traces, haltbench,
                                     load_factory)
from hrm_rl.agents.policies import RandomPolicy
from hrm_rl.cli import main
from hrm_rl.trace import (N_FEATURES, N_MODEL_FEATURES, Trace, choose_on, halts, mean_reward,
                          predict_halts, score)

CORE = "sudoku4"


@pytest.fixture(scope="module")
def cache(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("traces")


@pytest.fixture(scope="module")
def traces(cache):
    return core_traces(CORE, cache, train_episodes=500, eval_episodes=300)


def test_a_learned_baseline_beats_fixed_and_random(traces):
    train, val, test = (traces[s][0] for s in ("train", "val", "test"))
    c = 0.01
    clf = Classifier("logistic", "verifier-free").fit(train)
    grid = (0.3, 0.5, 0.7, 0.8, 0.9, 0.95, 0.99)
    p_val, p_test = clf.prob(val), clf.prob(test)
    t = grid[int(np.argmax([mean_reward(val, val.first(p_val >= t), c) for t in grid]))]
    learned = score(test, test.first(p_test >= t), c)
    k = choose_on(val, "fixed", c)
    fixed = score(test, halts(test, "fixed", k), c)
    rand = score(test, predict_halts(RandomPolicy(0.3, seed=0), test), c)
    assert learned.reward > fixed.reward, (learned.reward, fixed.reward, t, k)
    assert learned.reward > rand.reward + 0.01, (learned.reward, rand.reward)


def test_binomial_cdf_matches_the_sum():
    for n, p in ((10, 0.1), (30, 0.37), (5, 0.9)):
        for k in range(-1, n + 1):
            exact = sum(math.comb(n, j) * p ** j * (1 - p) ** (n - j) for j in range(k + 1))
            assert binomial_cdf(k, n, p) == pytest.approx(exact, abs=1e-12)


def _synthetic(n: int, rng: np.random.Generator, k_max: int = 8) -> Trace:
    """Puzzles solved from a random segment on (some never); confidence rises, noisily,
    once the answer is right, so high thresholds are safe and low ones lose accuracy."""
    solve = rng.integers(1, k_max + 3, n)  # > k_max: never right
    k = np.arange(1, k_max + 1)
    correct = k[None] >= solve[:, None]
    conf = 1 / (1 + np.exp(-(2.0 * (k[None] - solve[:, None]) + 1.5
                             + rng.normal(0, 1.5, (n, k_max)))))
    features = np.zeros((n, k_max, N_FEATURES), np.float32)
    features[:, :, 4] = conf  # min_confidence
    features[:, :, 8] = k[None]
    zeros = np.zeros((n, k_max), np.float32)
    return Trace(features, correct, correct.astype(np.float32), zeros, zeros)


def test_risk_control_meets_its_guarantee_where_the_answer_is_known():
    rng = np.random.default_rng(0)
    population = _synthetic(200_000, rng)
    eps, delta = 0.05, 0.1
    rule = RiskControl(eps, delta)
    true_risk = {t: accuracy_loss(population, rule._halts(population, t)).mean()
                 for t in rule.grid}
    assert min(true_risk.values()) < eps < max(true_risk.values())  # the test has teeth
    failures, chosen = 0, 0
    for _ in range(200):
        rule.fit(_synthetic(400, rng))
        if rule.threshold is not None:
            chosen += 1
            failures += true_risk[rule.threshold] > eps
    assert failures / 200 <= delta + 0.03, failures
    assert chosen >= 150  # and it does certify thresholds (not vacuous)
    report = rule.guarantee(_synthetic(5000, rng))
    assert set(report) >= {"epsilon", "delta", "threshold", "test_accuracy_loss", "met"}


def test_a_policy_sees_no_checker_and_no_answers(traces):
    test = traces["test"][0]
    free = test.for_policy("verifier-free", blind=True)
    assert np.isnan(free.features[:, :, N_MODEL_FEATURES:]).all()
    assert np.array_equal(free.features[:, :, :N_MODEL_FEATURES],
                          test.features[:, :, :N_MODEL_FEATURES])
    assert not free.correct.any() and not free.cell.any() and free.puzzles is None
    seen = test.for_policy("verifier")
    assert np.array_equal(seen.features, test.features) and seen.puzzles is not None


POLICY_MODULE = '''
import numpy as np

SAW_CHECKER = []

class Stable:
    """Halt the first time the prediction did not change, chosen on nothing."""
    name = "my-stable"

    def fit(self, train, val):
        assert train.correct.any()
        SAW_CHECKER.append(not np.isnan(train.features[:, :, -1]).any())

    def halts(self, trace):
        assert not trace.correct.any()  # the answers are hidden
        return trace.first(trace.feature("changed_fraction") == 0)

def make():
    return Stable()
'''


def test_haltbench_library_and_custom_policy(traces, cache, tmp_path, monkeypatch):
    (tmp_path / "my_halting.py").write_text(POLICY_MODULE)
    monkeypatch.syspath_prepend(str(tmp_path))
    result = haltbench([CORE], costs=(0.01,), tracks=("verifier-free", "verifier"),
                       policies=["my_halting:make"], rl="none", cache_dir=cache,
                       train_episodes=500, eval_episodes=300, progress=False)
    free, ver = result["boards"]
    import my_halting

    assert my_halting.SAW_CHECKER == [False, True]  # verifier-free first: no checker
    names = [e["name"] for e in free["entries"]]
    assert "my-stable" in names and "qhead" in names and names[-1] == "oracle"
    assert not any(n == "checker" for n in names)  # the verifier-free track has no checker
    assert any(e["name"] == "checker" for e in ver["entries"])
    oracle = free["entries"][-1]
    best = next(e for e in free["entries"] if e["name"] == free["best"])
    assert free["headroom"] == pytest.approx(oracle["reward"] - best["reward"])
    assert free["headroom_ci"][0] <= free["headroom"] <= free["headroom_ci"][1]
    rewards = [e["reward"] for e in free["entries"][:-1]]
    assert rewards == sorted(rewards, reverse=True)


def test_load_factory_errors():
    with pytest.raises(ValueError, match="module:factory"):
        load_factory("nocolon")
    with pytest.raises(ValueError, match="cannot load"):
        load_factory("no_such_module_xyz:make")


def test_cli_writes_tables_json_and_readme(cache, tmp_path, capsys):
    readme = tmp_path / "README.md"
    readme.write_text(f"# x\n\n{README_BEGIN}\nOLD-SECTION\n{README_END}\ntail\n")
    out = tmp_path / "out"
    rc = main(["haltbench", CORE, "--rl", "none", "--costs", "0.01", "--tracks",
               "verifier-free", "--train-episodes", "500", "--eval-episodes", "300", "--cache-dir", str(cache),
               "--out", str(out), "--readme", str(readme), "--no-progress"])
    assert rc == 0
    printed = capsys.readouterr().out
    assert "verifier-free" in printed and "oracle" in printed and "headroom" in printed
    data = json.loads((out / "haltbench.json").read_text())
    assert data["boards"][0]["core"] == CORE
    assert (out / "haltbench.md").read_text().startswith(f"**{CORE}**")
    text = readme.read_text()
    assert "OLD-SECTION" not in text and "tail" in text and "qhead" in text


@pytest.mark.parametrize("argv, message", [
    (["--rl-cost", "0.02", "--costs", "0.01"], "rl_cost=0.02"),
    (["--tracks", "both"], "tracks must be"),
    (["--epsilon", "2", "--rl", "none"], "epsilon and delta"),
])
def test_cli_refuses_bad_settings(argv, message, cache, tmp_path, capsys):
    with pytest.raises(SystemExit) if "tracks" in message else _nullcontext():
        rc = main(["haltbench", CORE, "--cache-dir", str(cache), "--out", str(tmp_path),
                   "--train-episodes", "500", "--eval-episodes", "300", "--no-progress", *argv])
        assert rc == 2
    assert message in capsys.readouterr().err


def _nullcontext():
    import contextlib

    return contextlib.nullcontext()


@pytest.mark.slow
def test_rl_baseline_trains_on_the_replayed_trace_and_scores_blind(traces, tmp_path):
    from hrm_rl.agents.haltbench import rl_entry

    train_path = traces["train"][1]
    val, test = traces["val"][0], traces["test"][0]
    entry = rl_entry("ppo", train_path, val, test, "HRM-Sudoku-v0", "verifier-free", 0.01,
                     seeds=(0, 1), timesteps=8192, out_dir=tmp_path)
    assert entry.kind == "rl" and len(entry.seeds) == 2
    assert entry.score.n == test.n and entry.score.per_puzzle_reward.shape == (test.n,)
    lo, hi = entry.reward_ci_over_seeds
    assert lo <= entry.score.reward <= hi
    assert (tmp_path / "ppo-features-verifier-free-c0.01-s0" / "best_model.zip").is_file()
