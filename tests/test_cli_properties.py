"""Property-based tests of the command line (issue #17, item 9): every value of a config key
or CLI option either runs correctly, or is refused with exit 2 and a message naming the key
or option. Never a traceback, never exit 0 with wrong figures.

* Config keys: every ``model.*``, ``train.*``, ``data.*`` and ``task.*`` field gets
  hypothesis-drawn values (ints with 0, -1 and beyond 64 bits, floats with nan, inf and
  negatives, strings, null, lists, mappings, broken YAML) through ``load_config`` overrides:
  a ``RunConfig`` whose values hold what was given and lie in range, or a ``ConfigError``
  naming the key (fast, in process).
* A few values that pass validation train for real (``hrm-rl train ... --set``, two steps of
  a tiny core): exit 0 with finite figures in range, or a named refusal.
* ``hrm-rl eval`` (``--limit``, ``--batch-size``, ``--max-segments``) on the bundled
  ``sudoku4`` core and ``hrm-rl halt eval`` (step cost, max segments, episodes, seed,
  ``fixed:K`` / ``threshold:T`` / ``random:P`` policies) on a recorded replay.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import io
import itertools
import json
import math
import os
import re
import subprocess
import sys
import typing
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from hypothesis import HealthCheck, event, example, given, settings
from hypothesis import strategies as st

from hrm_rl.cli import main
from hrm_rl.config import (ConfigError, DataConfig, ModelConfig, RunConfig, TaskConfig,
                           TrainConfig, load_config)

REPO = Path(__file__).resolve().parent.parent

# The tiny run of tests/test_reliability.py (hidden 32, 1+1 layers, 4x4 puzzles, CPU), on
# fewer puzzles: two training steps take a fraction of a second.
TINY = ["task.size=4", "model.hidden_size=32", "model.num_heads=2", "model.H_layers=1",
        "model.L_layers=1", "model.H_cycles=1", "model.L_cycles=2", "model.expansion=2",
        "model.pos_encodings=learned", "train.batch_size=16", "train.lr=1e-3",
        "train.weight_decay=0.1", "train.lr_warmup_steps=5", "train.max_segments=4",
        "train.eval_every=1000", "train.eval_size=8", "train.log_every=1",
        "train.threads=1", "train.loss=softmax", "train.device=cpu", "train.steps=2",
        "data.train_size=24", "data.test_size=8", "data.max_givens=6", "data.split_by=exact"]

SECTIONS = {"model": ModelConfig, "train": TrainConfig, "data": DataConfig, "task": TaskConfig}
KEYS = [f"{name}.{f.name}" for name, cls in SECTIONS.items() for f in dataclasses.fields(cls)]
HINTS = {f"{name}.{key}": hint for name, cls in SECTIONS.items()
         for key, hint in typing.get_type_hints(cls).items()}

PROPS = settings(deadline=None, suppress_health_check=[HealthCheck.too_slow])
SCALE = int(os.environ.get("HRM_RL_PROPERTY_SCALE", "1"))  # e.g. 20 for a deeper search


@pytest.fixture(scope="module")
def work(tmp_path_factory) -> Path:
    """A folder with the tiny config as YAML and a shared puzzle cache."""
    root = tmp_path_factory.mktemp("cli-properties")
    cfg = load_config(None, TINY + [f"data.cache_dir={root / 'data'}"])
    (root / "tiny.yaml").write_text(yaml.safe_dump(cfg.to_dict()))
    return root


@pytest.fixture(autouse=True)
def _restore_threads():
    threads = torch.get_num_threads()
    yield
    torch.set_num_threads(threads)


def run_cli(argv: list[str]) -> tuple[int, str, str]:
    """``hrm-rl ARGV`` in process: ``(exit code, stdout, stderr)``. Any exception other than
    argparse's exit escapes, as it would reach the user as a traceback."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            code = main(argv)
        except SystemExit as exit_:  # argparse's usage errors
            code = exit_.code
    return code, out.getvalue(), err.getvalue()


def error_lines(err: str) -> str:
    """The error message of ``err`` (without argparse's usage line, which names every option)."""
    return "\n".join(line for line in err.splitlines() if "error" in line)


def assert_named_refusal(code: int, err: str, *names: str) -> None:
    """Exit 2, no traceback, and the error message names one of ``names``."""
    assert code == 2, f"exit {code}: {err}"
    assert "Traceback" not in err, err
    assert any(name in error_lines(err) for name in names), f"{names} not named in: {err}"


def in_unit(x: float) -> bool:
    return math.isfinite(x) and 0.0 <= x <= 1.0


# ======================================================================= config keys

HUGE_INTS = st.sampled_from([2**31, 2**32, 2**62, 2**63 - 1, 2**63, -2**63 - 1, 10**30])
VALUES = st.one_of(
    st.integers(-3, 70), HUGE_INTS, st.integers(),
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from([0.0, -0.0, -1.0, 0.5, 1.0, 1e-300, 1e300, float("nan"), float("inf"),
                     -float("inf")]),
    st.text(max_size=12), st.sampled_from(["", " ", "auto", "cpu", "cuda", "hrm", "trm",
                                           "sudoku", "maze", "arc", "rope", "bptt", "bf16"]),
    st.none(), st.booleans(),
    st.lists(st.integers(-2, 5), max_size=3), st.dictionaries(st.text(max_size=3),
                                                              st.integers(), max_size=2),
)
BROKEN_YAML = st.sampled_from(["[1", "*a", ": :", '"', "{a", "!!python/object:os.system x",
                               "@x", "`x", "a: b: c", "- - -"])


def yaml_text(value) -> str:
    """``value`` as a ``--set`` writes it: one line of flow-style YAML."""
    text = yaml.safe_dump(value, default_flow_style=True, width=10**6)
    return text.removesuffix("\n").removesuffix("\n...").strip()


def _check_loaded(cfg: RunConfig, key: str, parsed) -> None:
    """An accepted override holds what was given (ints may widen to floats, nothing else
    is reinterpreted) and every setting of the config lies in range."""
    section, name = key.split(".")
    held = getattr(getattr(cfg, section), name)
    if isinstance(parsed, str) and isinstance(held, float):  # YAML 1.1 reads 3e-4 as text
        assert held == float(parsed), (key, parsed, held)
    elif isinstance(parsed, bool) or not isinstance(parsed, (int, float)):
        assert held == parsed and type(held) is type(parsed), (key, parsed, held)
    else:  # an int may widen to a float (rounded as float() rounds)
        assert held == (float(parsed) if isinstance(held, float) else parsed), (key, held)
    for sec, cls in SECTIONS.items():
        for f in dataclasses.fields(cls):
            value = getattr(getattr(cfg, sec), f.name)
            if isinstance(value, float):
                assert math.isfinite(value), f"{sec}.{f.name}={value} accepted"
            if isinstance(value, int) and not isinstance(value, bool):
                assert 0 <= value < 2**63, f"{sec}.{f.name}={value} accepted"
            if isinstance(value, str) and f.name not in ("name",):
                assert value.strip(), f"{sec}.{f.name}={value!r} accepted"


@settings(PROPS, max_examples=400 * SCALE)
@given(key=st.sampled_from(KEYS), value=VALUES)
@example(key="model.num_heads", value=0)                  # was ZeroDivisionError
@example(key="model.expansion", value=0.001)              # a SwiGLU of width 0
@example(key="model.rms_norm_eps", value=-1.0)            # was exit 3, advice on lr
@example(key="model.rope_theta", value=float("nan"))
@example(key="model.seq_len", value=-1)                   # was silently replaced by the task's
@example(key="model.puzzle_emb_ndim", value=-1)           # named puzzle_emb_len
@example(key="train.lr_warmup_steps", value=-1)
@example(key="train.seed", value=-1)                      # numpy's unnamed refusal at start
@example(key="train.device", value="abc")
@example(key="train.batch_size", value=2**63)
@example(key="data.test_size", value=0)                   # was IndexError
@example(key="data.train_size", value=-1)
@example(key="data.max_givens", value=0)                  # minutes of generation, then error
@example(key="data.min_givens", value=-1)
@example(key="data.min_difficulty", value=-1)
@example(key="data.seed", value=-1)
@example(key="task.size", value=5)
@example(key="task.name", value="abc")
@example(key="data.train_path", value="")
@example(key="train.lr", value=10**400)                   # float() overflow
def test_every_config_key_loads_in_range_or_names_the_key(work, key, value):
    text = yaml_text(value)
    parsed = yaml.safe_load(text) if text.strip() else None
    try:
        cfg = load_config(work / "tiny.yaml", [f"{key}={text}"])
    except ConfigError as err:
        assert key in str(err), f"{key}={text!r}: {err}"
        assert str(err).startswith(str(work / "tiny.yaml")), str(err)
        event("refused")
        return
    event("loaded")
    _check_loaded(cfg, key, parsed)


@settings(PROPS, max_examples=60 * SCALE)
@given(key=st.sampled_from(KEYS), text=st.one_of(BROKEN_YAML, st.text(max_size=8)))
def test_raw_override_text_loads_or_names_the_key(work, key, text):
    """Whatever follows ``key=`` on the command line (broken YAML included)."""
    try:
        load_config(work / "tiny.yaml", [f"{key}={text}"])
    except ConfigError as err:
        assert key in str(err), f"{key}={text!r}: {err}"


@pytest.mark.parametrize("override, key", [
    ("train.lr=[1", "train.lr"), ("model.kind=*a", "model.kind"), ("=1", "is not a dotted key"),
    ("train=5", "train"), ("train.lr.x=1", "train.lr"), ("bogus.x=1", "bogus")])
def test_malformed_overrides_name_the_key(work, override, key):
    with pytest.raises(ConfigError, match=key.replace(".", r"\.")):
        load_config(work / "tiny.yaml", [override])


# ======================================================================= train, end to end

_RUNS = itertools.count()


def _int_in(lo, hi):
    return st.integers(lo, hi)


# Values that load and keep the run small (a bigger model or batch would only be slower).
CHEAP = {
    "model.kind": st.sampled_from(["hrm", "trm"]),
    "model.hidden_size": st.sampled_from([8, 16, 32, 64]),
    "model.num_heads": st.sampled_from([1, 2, 4]),
    "model.expansion": st.floats(0.1, 4.0),
    "model.H_layers": _int_in(1, 2), "model.L_layers": _int_in(1, 2),
    "model.H_cycles": _int_in(1, 3), "model.L_cycles": _int_in(1, 3),
    "model.puzzle_emb_ndim": _int_in(0, 40),
    "model.pos_encodings": st.sampled_from(["rope", "learned", "none"]),
    "model.rope_theta": st.floats(1.0, 1e6),
    "model.rms_norm_eps": st.floats(1e-12, 0.5),
    "model.gradient": st.sampled_from(["auto", "one_step", "last_recursion", "bptt"]),
    "train.batch_size": _int_in(1, 32),
    "train.steps": _int_in(1, 3),
    "train.max_time_s": st.one_of(st.none(), st.floats(1e-9, 1e9)),
    "train.lr": st.floats(1e-8, 1e-1),
    "train.lr_warmup_steps": _int_in(0, 10**6),
    "train.lr_min_ratio": st.floats(0.0, 1.0),
    "train.weight_decay": st.floats(0.0, 10.0),
    "train.beta1": st.floats(0.0, 0.999), "train.beta2": st.floats(0.0, 0.999),
    "train.optimizer": st.sampled_from(["adamw", "adam_atan2"]),
    "train.loss": st.sampled_from(["stablemax", "softmax"]),
    "train.q_loss_weight": st.floats(0.0, 10.0),
    "train.max_segments": _int_in(1, 6),
    "train.halt_exploration_prob": st.floats(0.0, 1.0),
    "train.halt_loss": st.sampled_from(["auto", "q_learning", "bce"]),
    "train.ema_decay": st.one_of(st.none(), st.floats(0.0, 0.9999)),
    "train.grad_clip": st.one_of(st.none(), st.floats(1e-6, 1e6)),
    "train.precision": st.sampled_from(["fp32", "bf16"]),
    "train.seed": st.one_of(_int_in(0, 10), st.just(2**63 - 1)),
    "train.threads": st.sampled_from([None, 0, 1]),
    "train.eval_every": st.sampled_from([1, 2, 10**18]),
    "train.eval_size": _int_in(1, 100),
    "train.eval_batch_size": _int_in(1, 64),
    "train.checkpoint_every": st.sampled_from([1, 2, 10**18]),
    "train.log_every": st.sampled_from([1, 2, 10**18]),
    "data.train_size": _int_in(1, 30), "data.test_size": _int_in(1, 10),
    "data.max_givens": st.one_of(st.none(), _int_in(6, 16)),
    "data.min_givens": st.one_of(st.none(), _int_in(0, 6)),
    "data.augment": st.booleans(),
    "data.split_by": st.sampled_from(["orbit", "exact"]),
    "data.seed": st.one_of(_int_in(0, 5), st.just(2**63 - 1)),
    "task.augmentations": _int_in(0, 5),   # ARC only: a Sudoku run refuses these two, named
    "task.max_tasks": _int_in(0, 5),
}


def _check_summary(summary: dict, cfg: RunConfig) -> None:
    t = cfg.train
    steps = summary["steps"]
    assert 1 <= steps <= t.steps if t.max_time_s is not None else steps == t.steps, summary
    ev = summary["eval"]
    k = t.max_segments
    assert ev["max_segments"] == k and len(ev["exact_by_segment"]) == k
    assert len(ev["cell_by_segment"]) == k
    assert 1 <= ev["n"] <= t.eval_size
    for x in (*ev["exact_by_segment"], *ev["cell_by_segment"], ev["exact_acc_qhalt"],
              ev["cell_acc_qhalt"]):
        assert in_unit(x), ev
    assert 1.0 <= ev["mean_segments_qhalt"] <= k
    assert sum(ev["segments_qhalt_histogram"]) == ev["n"]
    assert math.isfinite(summary["train_seconds"]) and summary["train_seconds"] >= 0


def _check_metrics(run_dir: Path, cfg: RunConfig, steps: int) -> None:
    path = run_dir / "metrics.jsonl"
    rows = [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []
    every = cfg.train.log_every
    assert [row["step"] for row in rows] == list(range(every, steps + 1, every))  # no repeats
    for row in rows:
        assert 0.0 <= row["lr"] <= cfg.train.lr * (1 + 1e-9), row  # never negative or above
        assert math.isfinite(row["lm_loss"]) and row["lm_loss"] >= 0, row


@settings(PROPS, max_examples=25 * SCALE)
@given(items=st.lists(st.sampled_from(sorted(CHEAP)), min_size=1, max_size=3, unique=True)
       .flatmap(lambda keys: st.tuples(*(st.tuples(st.just(k), CHEAP[k]) for k in keys))))
@example(items=(("train.max_time_s", 1e-9),))
@example(items=(("train.checkpoint_every", 1), ("train.eval_every", 1)))
@example(items=(("model.kind", "trm"), ("model.puzzle_emb_ndim", 40)))
def test_accepted_values_train_to_finite_figures(work, items):
    sets = [f"{key}={yaml_text(value)}" for key, value in items]
    run_dir = work / "runs" / f"run-{next(_RUNS)}"
    try:
        cfg = load_config(work / "tiny.yaml", sets)
    except ConfigError as err:  # e.g. hidden_size not divisible by num_heads
        assert any(key in str(err) for key, _ in items), str(err)
        event("refused at load")
        return
    argv = ["train", str(work / "tiny.yaml"), "--run-dir", str(run_dir), "--no-progress"]
    for item in sets:
        argv += ["--set", item]
    code, out, err = run_cli(argv)
    assert "Traceback" not in err, err
    event(f"exit {code}")
    if code == 3:  # a divergence (lr, weight decay): stopped before the bad step, named
        assert "non-finite" in err and "train." in err, err
        return
    if code == 2:
        assert_named_refusal(code, err, *(key for key, _ in items), "data.")
        return
    assert code == 0, f"exit {code}: {err}"
    summary = json.loads(out[out.index("{"):])
    _check_summary(summary, cfg)
    _check_metrics(run_dir, cfg, summary["steps"])


def _cli(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO)}
    return subprocess.run([sys.executable, "-m", "hrm_rl.cli", *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=300)


def test_the_installed_command_refuses_and_runs_without_a_traceback(work):
    """The same contract through a real process: a refused value, then an accepted one."""
    bad = _cli("train", str(work / "tiny.yaml"), "--set", "data.test_size=0", "--run-dir",
               str(work / "sub-bad"), "--no-progress", cwd=work)
    assert_named_refusal(bad.returncode, bad.stderr, "data.test_size")
    assert not (work / "sub-bad" / "checkpoints").exists()
    good = _cli("train", str(work / "tiny.yaml"), "--set", "train.lr_min_ratio=0",
                "--run-dir", str(work / "sub-good"), "--no-progress", cwd=work)
    assert good.returncode == 0 and "Traceback" not in good.stderr, good.stderr
    cfg = load_config(work / "tiny.yaml", ["train.lr_min_ratio=0"])
    _check_summary(json.loads(good.stdout), cfg)


# ======================================================================= hrm-rl eval

@pytest.fixture(scope="module")
def puzzles_csv(work) -> tuple[Path, int]:
    """Six held-out puzzles of the bundled sudoku4 core, written by the task's write_csv."""
    from hrm_rl.checkpoint import load_checkpoint

    ckpt = load_checkpoint("sudoku4")
    path = work / "six.csv"
    ckpt.task.write_csv(path, ckpt.test_puzzles().take(slice(0, 6)))
    return path, ckpt.config.train.max_segments


BAD_COUNT = st.one_of(st.integers(-3, 0), HUGE_INTS, st.just(1025),
                      st.sampled_from(["abc", "1.5", "", "0x3", "1e2", "nan", "-0"]))
COUNT = st.one_of(st.integers(1, 12), st.integers(1, 12), st.just(" 3"), BAD_COUNT)


@settings(PROPS, max_examples=20 * SCALE)
@given(limit=st.one_of(st.none(), COUNT), batch=st.one_of(st.none(), COUNT),
       segments=st.one_of(st.none(), COUNT))
@example(limit=0, batch=None, segments=None)        # was silently "all puzzles"
@example(limit=None, batch=-1, segments=None)       # was all zeros
@example(limit=None, batch=None, segments=0)        # was the config's default
@example(limit=None, batch=None, segments=10**30)   # was MemoryError
@example(limit=10**30, batch=2**63, segments=1)
def test_eval_options_give_figures_in_range_or_name_the_option(puzzles_csv, limit, batch,
                                                               segments):
    path, default_k = puzzles_csv

    def argv_with(*flags: str) -> list[str]:
        argv = ["eval", "sudoku4", "--data", str(path), "--no-progress", "--device", "cpu"]
        for flag, value in (("--limit", limit), ("--batch-size", batch),
                            ("--max-segments", segments)):
            if value is not None and flag in flags:
                argv += [flag, str(value)]
        return argv

    code, out, err = run_cli(argv_with("--limit", "--batch-size", "--max-segments"))
    event(f"exit {code}")
    assert "Traceback" not in err, err
    if code != 0:
        assert_named_refusal(code, err, "--limit", "--batch-size", "--max-segments")
        named = [f for f in ("--limit", "--batch-size", "--max-segments") if f in error_lines(err)]
        assert len(named) == 1, err
        return
    k = int(segments) if segments is not None else default_k
    n = min(int(limit), 6) if limit is not None else 6
    result = json.loads(out)
    assert result["n"] == n and result["max_segments"] == k
    assert len(result["exact_by_segment"]) == len(result["cell_by_segment"]) == k
    for x in (*result["exact_by_segment"], *result["cell_by_segment"], result["exact_acc_qhalt"],
              result["cell_acc_qhalt"]):
        assert in_unit(x), result
    assert 1.0 <= result["mean_segments_qhalt"] <= k
    assert sum(result["segments_qhalt_histogram"]) == n
    if batch is not None:  # the figures do not depend on the batch size
        ref = json.loads(run_cli(argv_with("--limit", "--max-segments"))[1])
        np.testing.assert_allclose(result["cell_by_segment"], ref["cell_by_segment"],
                                   atol=1e-6)


@pytest.mark.slow
def test_eval_runs_to_the_segment_cap(puzzles_csv):
    """--max-segments 1024 (the cap) runs; 1025 is refused (about 30 s)."""
    path, _ = puzzles_csv
    argv = ["eval", "sudoku4", "--data", str(path), "--no-progress", "--limit", "1"]
    code, out, err = run_cli([*argv, "--max-segments", "1024"])
    assert code == 0, err
    assert len(json.loads(out)["exact_by_segment"]) == 1024
    assert_named_refusal(*run_cli([*argv, "--max-segments", "1025"])[::2], "--max-segments")


# ======================================================================= hrm-rl halt eval

@pytest.fixture(scope="module")
def replay(work) -> Path:
    """sudoku4's first 16 test puzzles recorded to its cap (8 segments): halt eval replays
    them without running the core."""
    path = work / "sudoku4-test16.npz"
    code, _, err = run_cli(["rollouts", "record", "sudoku4", "--split", "test", "--episodes",
                            "16", "--out", str(path), "--no-progress"])
    assert code == 0, err
    return path


FLOATS = st.one_of(st.floats(-0.5, 1.5), st.sampled_from([0.0, 1.0, float("nan"),
                                                         float("inf"), -1e-9]))
GOOD_POLICY = st.one_of(
    st.sampled_from(["qhead", "oracle", "random:0.3", "random:1", "threshold:0.9:mean_confidence"]),
    st.builds(lambda k, plus: f"fixed:{'+' if plus else ''}{k}", st.integers(1, 8),
              st.booleans()),
    st.builds(lambda t: f"threshold:{t}", st.floats(0.0, 1.0)))
BAD_POLICY = st.one_of(
    st.sampled_from(["random:2", "fixed:abc", "bogus", "qhead:1", "oracle:3", "fixed:",
                     "threshold:", "ppo:", "threshold:0.9:nope", "ppo:/no/such.zip"]),
    st.builds(lambda k: f"fixed:{k}", st.sampled_from([-1, 0, 9, 99])),
    st.builds(lambda t: f"threshold:{t}", FLOATS))
POLICY = st.one_of(GOOD_POLICY, GOOD_POLICY, GOOD_POLICY, BAD_POLICY)


@settings(PROPS, max_examples=30 * SCALE)
@given(step_cost=st.one_of(st.none(), st.floats(0.0, 1.0), FLOATS),
       max_segments=st.one_of(st.none(), st.integers(1, 8), st.integers(-1, 10),
                              st.sampled_from(["nan", "2.5", "true", "x"])),
       episodes=st.one_of(st.none(), st.integers(1, 16), st.integers(-1, 20), HUGE_INTS),
       seed=st.one_of(st.none(), st.integers(0, 3), st.integers(-2, 3), HUGE_INTS),
       policies=st.lists(POLICY, min_size=1, max_size=3))
@example(step_cost=None, max_segments=None, episodes=None, seed=None, policies=["fixed:99"])
@example(step_cost=None, max_segments=None, episodes=None, seed=None, policies=["fixed:+99"])
@example(step_cost=None, max_segments=None, episodes=None, seed=-1, policies=["qhead"])
@example(step_cost=None, max_segments=None, episodes=100, seed=None, policies=["qhead"])
@example(step_cost=1.0, max_segments=3, episodes=16, seed=2, policies=["fixed:3", "oracle"])
def test_halt_eval_scores_in_range_or_names_the_option(work, replay, step_cost, max_segments,
                                                       episodes, seed, policies):
    kwargs = [f"rollouts={replay}"]
    if step_cost is not None:
        kwargs.append(f"step_cost={yaml_text(step_cost)}")
    if max_segments is not None:
        kwargs.append(f"max_segments={max_segments}")
    argv = ["halt", "eval", "--env-kwargs", *kwargs, "--policies", ",".join(policies),
            "--out-dir", str(work / "halt-eval"), "--json"]
    if episodes is not None:
        argv += ["--episodes", str(episodes)]
    if seed is not None:
        argv += ["--seed", str(seed)]
    code, out, err = run_cli(argv)
    event(f"exit {code}")
    assert "Traceback" not in err, err
    if code != 0:
        files = [spec.partition(":")[2] for spec in policies if spec.partition(":")[2]]
        assert_named_refusal(code, err, "step_cost", "max_segments", "--episodes", "--seed",
                             "policy", "--policies", *files)
        return
    report = json.loads(out)
    k = max_segments if max_segments is not None else 8
    cost = step_cost if step_cost is not None else 0.01
    n = episodes if episodes is not None else 16
    assert report["max_segments"] == k and report["episodes"] == n
    assert report["step_cost"] == pytest.approx(cost)
    rows = {row["policy"]: row for row in report["results"]}
    assert list(rows) == list(dict.fromkeys(p.strip() for p in policies))
    for spec, row in rows.items():
        assert row["n"] == n
        assert in_unit(row["accuracy"]) and in_unit(row["cell_accuracy"]), row
        assert 1.0 <= row["mean_segments"] <= k, row
        assert row["reward"] == pytest.approx(row["accuracy"]
                                              - cost * row["mean_segments"]), row
        if spec.startswith("fixed:"):  # exactly K segments, never silently capped
            assert row["mean_segments"] == int(spec.split(":")[1]), row
        assert row["reward"] <= oracle_reward(report) + 1e-9
    assert len(report["curves"]["fixed"]) == k


def oracle_reward(report: dict) -> float:
    """The oracle's reward on the same trace: no policy can earn more."""
    rows = [r for r in report["results"] if r["policy"] == "oracle"]
    return rows[0]["reward"] if rows else math.inf


@pytest.mark.parametrize("argv, option", [
    (["halt", "eval", "--env-kwargs", "step_cost=[1", "--episodes", "2"], "step_cost"),
    (["halt", "eval", "--env-kwargs", "step_cost=0.1", "step_cost=0.2", "--episodes", "2"],
     "step_cost"),
    (["halt", "train", "--seed", "-1"], "--seed"),
    (["halt", "train", "--num-envs", "99999999999"], "--num-envs"),
    (["rollouts", "record", "sudoku4", "--out", "x.npz", "--max-segments", "10000000000"],
     "--max-segments"),
    (["eval", "sudoku4", "--data", "x.csv", "--device", "abc"], "--device"),
    (["eval", "sudoku4", "--data", "x.csv", "--threads", "0"], "--threads"),
    (["holdout", "--data", "x.csv", "--trained-on", "sudoku4", "--out", "x.csv"], "--out"),
    (["halt", "train", "--algo-kwargs", "learning_rate=nan", "--timesteps", "8"],
     "learning_rate"),
    (["halt", "train", "--algo-kwargs", "n_steps=abc", "--timesteps", "8", "--num-envs", "2",
      "--no-eval", "--run-dir", "h"], "n_steps"),
    (["train", "tiny.yaml", "--run-dir", "x.csv/run", "--no-progress"], "x.csv/run"),
    (["cores", "sudoku4", "--step-costs", "abc"], "--step-costs"),
    (["demo", "--threads", "-1"], "--threads"), (["demo", "--train-seconds", "nan"],
                                                 "--train-seconds"),
    (["bench", "all", "--threads", "-1"], "--threads"),
])
def test_more_option_mistakes_name_the_option(argv, option, work, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "x.csv").write_text("source,question,answer,rating\n")
    (tmp_path / "tiny.yaml").write_text((work / "tiny.yaml").read_text())
    code, _, err = run_cli(argv)
    assert_named_refusal(code, err, option)


def test_repeated_env_kwargs_accumulate(work, replay):
    """``--env-kwargs a=1 --env-kwargs b=2`` keeps both (the second used to drop the first)."""
    code, out, err = run_cli(["halt", "eval", "--env-kwargs", f"rollouts={replay}",
                              "--env-kwargs", "step_cost=0.5", "--episodes", "4",
                              "--policies", "fixed:2", "--out-dir", str(work / "he2"),
                              "--json"])
    assert code == 0, err
    report = json.loads(out)
    assert report["step_cost"] == 0.5 and report["env_kwargs"]["rollouts"] == str(replay)


@pytest.mark.slow
def test_halt_eval_on_the_live_core_scores_in_range(work):
    """The same contract without a replay: the env runs the sudoku4 core (about 20 s)."""
    code, out, err = run_cli(["halt", "eval", "--episodes", "8", "--policies",
                              "qhead,fixed:3,threshold:0.9,oracle", "--env-kwargs",
                              "step_cost=0.05", "max_segments=4", "--out-dir",
                              str(work / "live"), "--json"])
    assert code == 0, err
    report = json.loads(out)
    for row in report["results"]:
        assert in_unit(row["accuracy"]) and 1 <= row["mean_segments"] <= 4
    assert {r["policy"]: r for r in report["results"]}["fixed:3"]["mean_segments"] == 3


@pytest.mark.parametrize("text, low_open, expected", [
    ("0.01,0.001", False, (0.01, 0.001)), (" 0 , 1 ", False, (0.0, 1.0)), ("0.5,", True, (0.5,)),
    ("0", True, None), ("1.5", False, None), ("-0.1", False, None), ("", False, None),
    (",", False, None), ("abc", False, None), ("nan", False, None), ("0.1,x", False, None),
])
def test_float_list_takes_numbers_in_its_interval_and_refuses_the_rest(text, low_open, expected):
    """The comma-separated number type behind ``cores --step-costs`` and ``bench recipe
    --targets``: every value in range, at least one, else a usage error quoting the text."""
    from hrm_rl.cli_types import float_list

    parse = float_list(0, 1, low_open=low_open)
    if expected is None:
        with pytest.raises(argparse.ArgumentTypeError, match=re.escape(repr(text))):
            parse(text)
    else:
        assert parse(text) == expected
