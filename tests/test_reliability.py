"""Reliability: inputs are validated with errors that say where and what, training survives
a SIGKILL and resumes identically, numerical faults stop training cleanly, parsers and
environments hold up under fuzzing, and the same seed gives the same run."""

from __future__ import annotations

import csv
import io
import json
import math
import os
import re
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from hypothesis import HealthCheck, event, example, given, settings
from hypothesis import strategies as st
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from hrm_rl.agents.trainer import METRICS_FILE, ACTTrainer, NonFiniteError
from hrm_rl.checkpoint import (CONFIG, WEIGHTS, load_checkpoint, load_trainer_state,
                               resolve_checkpoint)
from hrm_rl.cli import main
from hrm_rl.config import ConfigError, load_config
from hrm_rl.envs.halting import HaltingEnv, HaltingVectorEnv
from hrm_rl.tasks import maze
from hrm_rl.tasks.arc import ARCFormatError, load_tasks
from hrm_rl.tasks.sudoku import (find_conflict, format_grid, generate, is_valid_solution,
                                 parse_grid, read_csv)

REPO = Path(__file__).resolve().parent.parent
HEADER = "source,question,answer,rating\n"
P4, S4, _ = generate(1, 4, np.random.default_rng(0))
GOOD4 = f"x,{format_grid(P4[0])},{format_grid(S4[0])},0"  # a puzzle with one solution
P9, S9, _ = generate(1, 9, np.random.default_rng(0), max_givens=30)
ROW9 = f"x,{format_grid(P9[0])},{format_grid(S9[0])},0"

# A tiny, fast, deterministic run: hidden 32, 1+1 layers, batch 16, 4x4 puzzles.
TINY = ["task.size=4", "model.hidden_size=32", "model.num_heads=2", "model.H_layers=1",
        "model.L_layers=1", "model.H_cycles=1", "model.L_cycles=2", "model.expansion=2",
        "model.pos_encodings=learned", "train.batch_size=16", "train.lr=1e-3",
        "train.weight_decay=0.1", "train.lr_warmup_steps=5", "train.halt_max_steps=4",
        "train.eval_every=1000", "train.eval_size=16", "train.log_every=1",
        "train.threads=1", "train.loss=softmax", "train.device=cpu", "data.train_size=200",
        "data.test_size=16", "data.max_givens=6", "data.split_by=exact"]


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    """A shared cache of the tiny run's generated puzzles."""
    return tmp_path_factory.mktemp("reliability-data")


def tiny(data_dir, *extra):
    return load_config(None, TINY + [f"data.cache_dir={data_dir}", *extra])


@pytest.fixture(autouse=True)
def _restore_threads():
    """The tiny config pins torch to one thread; give the rest of the session its own."""
    threads = torch.get_num_threads()
    yield
    torch.set_num_threads(threads)


def metrics(run_dir: Path) -> list[dict]:
    return [json.loads(line) for line in (run_dir / METRICS_FILE).read_text().splitlines()]


def write_csv_text(path: Path, *rows: str) -> Path:
    path.write_text(HEADER + "".join(f"{r}\n" for r in rows))
    return path


# ============================================================================ 1. validation
# ----------------------------------------------------------------------- Sudoku strings


@pytest.mark.parametrize("text, size, message", [
    ("1" * 15, None, "16, 36 or 81 cells; got 15 characters"),
    ("1" * 17, 4, "a 4x4 Sudoku needs 16 characters; got 17"),
    ("7" + "." * 15, None, "invalid character '7' at position 0 of a 4x4 Sudoku"),
    ("1.x" + "." * 13, None, "invalid character 'x' at position 2"),
    ("\u0663" + "." * 15, None, "invalid character '\u0663' at position 0"),  # Arabic-Indic 3
    ("1 " + "." * 14, None, "invalid character ' ' at position 1"),
    ("." * 25, 5, "unsupported Sudoku size 5"),
])
def test_parse_grid_rejects_bad_strings(text, size, message):
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(")", r"\)")):
        parse_grid(text, size)


@pytest.mark.parametrize("text, message", [
    ("11" + "." * 14, "digit 1 appears twice in row 1 (positions 0 and 1)"),
    ("2...2" + "." * 11, "digit 2 appears twice in column 1 (positions 0 and 4)"),
    ("3....3" + "." * 10, "digit 3 appears twice in box 1 (positions 0 and 5)"),
    ("." * 12 + "4" + "." * 4 + "4" + "." * 18,
     "digit 4 appears twice in row 3 (positions 12 and 17)"),  # 6x6
])
def test_parse_grid_rejects_contradicting_givens(text, message):
    with pytest.raises(ValueError, match="contradicting givens") as err:
        parse_grid(text)
    assert message in str(err.value)
    assert parse_grid(text, validate=False).shape == (len(text),)  # opt out for raw grids


def test_uniqueness_is_checked_on_request_only():
    no_solution = "12.." "...." "..3." "..4."     # no repeats, yet cell 3 has no digit left
    several = "." * 16
    assert find_conflict(parse_grid(no_solution), 4) is None
    parse_grid(no_solution), parse_grid(several)  # fine without unique=True
    with pytest.raises(ValueError, match="puzzle has no solution"):
        parse_grid(no_solution, unique=True)
    with pytest.raises(ValueError, match="more than one solution"):
        parse_grid(several, unique=True)
    assert parse_grid(format_grid(P9[0]), unique=True).shape == (81,)


# ----------------------------------------------------------------------- Sudoku CSV files


@pytest.mark.parametrize("row, message", [
    ("x,11..............,1234341221434321,0",
     "contradicting givens in the question: digit 1 appears twice in row 1"),
    ("x,1...............", "expected source,question,answer[,rating]; got 2 field(s)"),
    ("x,1...............,123434122143432x,0", "answer: invalid character 'x' at position 15"),
    ("x,1...............,1234341221434.21,0",
     "answer: invalid character '.' at position 13 (expected 1-4)"),
    ("x,1\u00e9..............,1234341221434321,0", "question: invalid character '\u00e9'"),
])
def test_csv_rows_that_do_not_parse_name_file_and_line(tmp_path, row, message):
    path = write_csv_text(tmp_path / "bad.csv", GOOD4, "", row)  # a blank line in between
    with pytest.raises(ValueError) as err:
        read_csv(path)
    assert f"bad.csv:4: {message}" in str(err.value)


def test_csv_of_another_size_says_which_size_it_holds(tmp_path):
    path = write_csv_text(tmp_path / "nine.csv", ROW9)
    with pytest.raises(ValueError, match="nine.csv:2: question has 81 characters, expected 16 "
                                         "for 4x4; this looks like a 9x9 Sudoku"):
        read_csv(path, size=4)


def test_csv_that_is_not_utf8_is_a_clear_error(tmp_path):
    path = tmp_path / "latin1.csv"
    path.write_bytes(HEADER.encode() + b"caf\xe9," + GOOD4.encode()[2:] + b"\n")
    with pytest.raises(ValueError, match="latin1.csv: not UTF-8 text"):
        read_csv(path)


def test_csv_with_a_byte_order_mark_reads(tmp_path):
    path = tmp_path / "bom.csv"
    path.write_text(HEADER + GOOD4 + "\n", encoding="utf-8-sig")
    assert len(read_csv(path)) == 1


def test_csv_uniqueness_is_checked_on_request(tmp_path):
    path = write_csv_text(tmp_path / "open.csv", GOOD4, "x,................,1234341221434321,0")
    assert len(read_csv(path)) == 2
    with pytest.raises(ValueError, match=r"open.csv:3: question has more than one solution"):
        read_csv(path, check_unique=True)


def test_eval_cli_on_a_9x9_file_with_the_4x4_core(tmp_path, capsys):
    path = write_csv_text(tmp_path / "nine.csv", ROW9)
    assert main(["eval", "sudoku4", "--data", str(path), "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert "hrm-rl eval: error:" in err and "nine.csv:2" in err
    assert "this looks like a 9x9 Sudoku, but the task expects 4x4" in err


def test_eval_cli_check_unique(tmp_path, capsys):
    path = write_csv_text(tmp_path / "open.csv", GOOD4, "x,................,1234341221434321,0")
    assert main(["eval", "sudoku4", "--data", str(path), "--check-unique",
                 "--no-progress"]) == 2
    assert "open.csv:3: question has more than one solution" in capsys.readouterr().err


# ----------------------------------------------------------------------- YAML configs


@pytest.mark.parametrize("yaml_text, message", [
    ("trian: {lr: 0.1}\n", "unknown key(s) trian at top level; valid keys: data, model"),
    ("model: {hidden: 64}\n", "unknown key(s) model.hidden at model"),
    ("train: {steps: 1.5}\n", "train.steps: expected int, got 1.5 (float)"),
    ("train: {steps: true}\n", "train.steps: expected int, got True (bool)"),
    ("train: {lr: fast}\n", "train.lr: expected float, got 'fast' (str)"),
    ("data: {augment: 'yes'}\n", "data.augment: expected bool, got 'yes' (str)"),
    ("train: 5\n", "train.: expected a mapping, got int"),
    ("- 1\n- 2\n", "top level must be a mapping"),
    ("train: {batch_size: 0}\n", "train.batch_size: must be >= 1"),
    ("model: {hidden_size: 30, num_heads: 4}\n", "model.hidden_size: 30 is not divisible"),
])
def test_yaml_config_errors_name_the_file_and_key(tmp_path, yaml_text, message):
    path = tmp_path / "bad.yaml"
    path.write_text(yaml_text)
    with pytest.raises(ConfigError) as err:
        load_config(path)
    assert str(err.value).startswith(str(path)) and message in str(err.value)


@pytest.mark.parametrize("override, message", [
    ("train.lr", "must look like section.key=value"),
    ("train.lr.x=1", "train.lr: expected float, got {'x': 1} (dict)"),
    ("task.size=four", "task.size: expected int"),
])
def test_override_errors(override, message):
    with pytest.raises(ConfigError, match=re.escape(message)):
        load_config(None, [override])


# ----------------------------------------------------------------------- checkpoints


@pytest.fixture(scope="module")
def small_run(tmp_path_factory, data_dir):
    """A finished 12-step tiny run with checkpoints at 6 and 12."""
    run = tmp_path_factory.mktemp("small") / "run"
    ACTTrainer(tiny(data_dir, "train.steps=12", "train.checkpoint_every=6"), run,
               progress=False).fit()
    return run


def _copy_checkpoint(run: Path, tmp_path: Path) -> Path:
    import shutil

    dst = tmp_path / "ckpt"
    shutil.copytree(resolve_checkpoint(run), dst)
    return dst


def test_weights_that_do_not_fit_the_config_are_named(small_run, tmp_path):
    ckpt = _copy_checkpoint(small_run, tmp_path)
    payload = json.loads((ckpt / CONFIG).read_text())
    payload["model"]["hidden_size"] = 64
    (ckpt / CONFIG).write_text(json.dumps(payload))
    with pytest.raises(ValueError) as err:
        load_checkpoint(ckpt)
    text = str(err.value)
    assert f"{ckpt / WEIGHTS} does not fit the model described by its config.json" in text
    assert "shape (file != config)" in text and "(32,) != (64,)" in text


def test_checkpoint_of_another_task_is_named(small_run, tmp_path):
    ckpt = _copy_checkpoint(small_run, tmp_path)
    payload = json.loads((ckpt / CONFIG).read_text())
    payload["run"]["task"]["size"] = 9
    (ckpt / CONFIG).write_text(json.dumps(payload))
    with pytest.raises(ValueError, match=r"model vocab_size=6 does not match task sudoku9"):
        load_checkpoint(ckpt)


def test_torn_weights_and_config_are_clear_errors(small_run, tmp_path):
    ckpt = _copy_checkpoint(small_run, tmp_path)
    data = (ckpt / WEIGHTS).read_bytes()
    (ckpt / WEIGHTS).write_bytes(data[: len(data) // 2])
    with pytest.raises(ValueError, match=r"model.safetensors: unreadable weights"):
        load_checkpoint(ckpt)
    (ckpt / CONFIG).write_text('{"run": {')
    with pytest.raises(ValueError, match=r"config.json: unreadable checkpoint config"):
        load_checkpoint(ckpt)
    (ckpt / CONFIG).write_text('{"run": {"train": {"stepz": 1}}, "model": {}}')
    with pytest.raises(ConfigError, match=r"config.json: unknown key\(s\) train.stepz"):
        load_checkpoint(ckpt)


def test_latest_pointing_nowhere_is_a_clear_error(small_run, tmp_path):
    import shutil

    run = tmp_path / "run"
    shutil.copytree(small_run, run)
    (run / "checkpoints" / "latest").write_text("step_0000099")
    with pytest.raises(FileNotFoundError, match="names step_0000099, which is not a complete"):
        load_checkpoint(run)


def test_only_run_checkpoints_resume(tmp_path, capsys):
    with pytest.raises(FileNotFoundError, match="not a run folder"):
        ACTTrainer.resume(resolve_checkpoint("sudoku4"))
    assert main(["train", "--resume", str(tmp_path / "none"), "--no-progress"]) == 2
    assert "no checkpoint at" in capsys.readouterr().err


def test_resume_refuses_to_change_the_model(small_run):
    with pytest.raises(ConfigError, match="only train.\\* can change when resuming"):
        ACTTrainer.resume(small_run, ["model.hidden_size=64"])


@pytest.mark.parametrize("override, key", [("train.optimizer=adam_atan2", "optimizer"),
                                           ("train.batch_size=2", "batch_size"),
                                           ("train.halt_max_steps=3", "halt_max_steps")])
def test_resume_refuses_settings_the_saved_state_cannot_follow(small_run, override, key,
                                                               capsys):
    with pytest.raises(ConfigError, match=f"train.{key}: cannot change when resuming"):
        ACTTrainer.resume(small_run, [override])
    assert main(["train", "--resume", str(small_run), "--set", override, "--no-progress"]) == 2
    assert f"train.{key}" in capsys.readouterr().err


def test_training_into_an_existing_run_folder_is_refused(small_run, tmp_path, capsys):
    config = tiny_yaml(tmp_path / "tiny.yaml")
    assert main(["train", str(config), "--run-dir", str(small_run), "--no-progress"]) == 2
    assert f"--resume {small_run}" in capsys.readouterr().err


# ----------------------------------------------------------------------- environments


@pytest.mark.parametrize("kwargs, message", [
    ({"step_cost": 1.5}, "step_cost must be a number in [0, 1], got 1.5"),
    ({"step_cost": float("nan")}, "step_cost must be a number in [0, 1], got nan"),
    ({"step_cost": True}, "step_cost must be a number in [0, 1], got True"),
    ({"max_segments": 2.5}, "max_segments must be an int >= 1, got 2.5"),
    ({"max_segments": True}, "max_segments must be an int >= 1, got True"),
    ({"num_envs": 0}, "num_envs must be an int >= 1, got 0"),
    ({"num_envs": 2.0}, "num_envs must be an int >= 1, got 2.0"),
])
def test_env_kwargs_out_of_range(kwargs, message):
    with pytest.raises(ValueError) as err:
        HaltingVectorEnv(**kwargs)
    assert message in str(err.value)


@pytest.mark.parametrize("actions, message", [
    ([0, 1, 2], "0 (continue) or 1 (halt)"), ([0, -1, 0], "0 (continue) or 1 (halt)"),
    ([0, 1], "3 integer(s) in {0, 1}"), ([0.5, 0, 1], "3 integer(s)"),
    ([float("nan")] * 3, "3 integer(s)"), (None, "3 integer(s)"), ("011", "3 integer(s)"),
    ([0, [1], 0], "3 integer(s)"),
])
def test_vector_env_actions_outside_the_space(actions, message):
    venv = HaltingVectorEnv(num_envs=3)
    venv.reset(seed=0)
    with pytest.raises(ValueError) as err:
        venv.step(actions)
    assert message in str(err.value)
    venv.step(np.array([1, 0, 1.0]))  # whole floats are accepted; the env still works


# ============================================================================ 2. crash safety


def test_resume_in_process_continues_identically(data_dir, tmp_path):
    ref = ACTTrainer(tiny(data_dir, "train.steps=16", "train.checkpoint_every=5",
                          "train.log_every=3"), tmp_path / "ref", progress=False)
    ref.fit()
    # Stop at step 10: the checkpoint there holds an open logging window (10 % 3 != 0).
    part = ACTTrainer(tiny(data_dir, "train.steps=10", "train.checkpoint_every=5",
                           "train.log_every=3"), tmp_path / "part", progress=False)
    part.fit()
    resumed = ACTTrainer.resume(tmp_path / "part", ["train.steps=16"], progress=False)
    assert resumed.step == 10 and resumed._window_steps == 1
    resumed.fit()
    assert metrics(tmp_path / "part") == metrics(tmp_path / "ref")  # bit-identical
    for a, b in zip(ref.model.parameters(), resumed.model.parameters()):
        assert torch.equal(a, b)


def test_time_budget_counts_earlier_sessions(data_dir, tmp_path):
    cfg = tiny(data_dir, "train.steps=4", "train.checkpoint_every=2",
               "train.max_time_s=1000", "train.lr_min_ratio=0.1")
    trainer = ACTTrainer(cfg, tmp_path / "run", progress=False)
    trainer.fit()
    saved = load_trainer_state(resolve_checkpoint(tmp_path / "run"))["elapsed_s"]
    assert saved > 0
    resumed = ACTTrainer.resume(tmp_path / "run", progress=False)
    assert resumed.elapsed_s() == pytest.approx(saved)
    assert resumed.time_fraction() == pytest.approx(saved / 1000)


def tiny_yaml(path: Path, *sets: str) -> Path:
    """The tiny config with ``sets`` as a YAML file (for the command line)."""
    path.write_text(yaml.safe_dump(load_config(None, [*TINY, *sets]).to_dict()))
    return path


def _start_train(args: list[str], cwd: Path) -> subprocess.Popen:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO)}
    return subprocess.Popen([sys.executable, "-m", "hrm_rl.cli", "train", *args,
                             "--no-progress"], cwd=cwd, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


def test_sigkill_then_resume_loses_at_most_one_interval_and_matches(data_dir, tmp_path):
    steps, every = 60, 10
    sets = [*TINY, f"data.cache_dir={data_dir}", f"train.steps={steps}",
            f"train.checkpoint_every={every}"]
    t0 = time.perf_counter()
    reference = ACTTrainer(load_config(None, sets), tmp_path / "ref", progress=False)
    reference.fit()
    expected = metrics(tmp_path / "ref")
    t_ref = time.perf_counter() - t0

    run = tmp_path / "killed"
    proc = _start_train([str(tiny_yaml(tmp_path / "tiny.yaml", *sets[len(TINY):])),
                         "--run-dir", str(run)], tmp_path)
    latest = run / "checkpoints" / "latest"
    deadline = time.monotonic() + 120
    def progressed() -> bool:  # a checkpoint exists and some steps after it are done
        return latest.exists() and len((run / METRICS_FILE).read_text().splitlines()) > 14

    while not progressed() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.01)
    assert proc.poll() is None, f"training ended before it could be killed: {proc.stderr.read()}"
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    t_killed = time.perf_counter() - t0
    assert proc.returncode == -signal.SIGKILL

    # No corrupt file: every complete checkpoint loads, weights and trainer state.
    folders = [p for p in (run / "checkpoints").glob("step_*") if (p / CONFIG).is_file()]
    assert folders
    for folder in folders:
        load_checkpoint(folder)
        load_trainer_state(folder)
    done = metrics(run)[-1]["step"]  # steps whose figures reached the disk before the kill
    saved = load_trainer_state(resolve_checkpoint(run))["step"]
    assert 0 <= done - saved <= every, "more than one checkpoint interval lost"
    assert metrics(run)[:saved] == expected[:saved]

    resumed = _start_train(["--resume", str(run)], tmp_path)
    out, err = resumed.communicate(timeout=120)
    assert resumed.returncode == 0, err
    assert f"resuming {run} at step {saved}" in err and json.loads(out)["steps"] == steps
    t_total = time.perf_counter() - t0

    assert metrics(run) == expected  # the same loss curve, bit for bit
    acc = EventAccumulator(str(run))
    acc.Reload()
    tb = acc.Scalars("train/lm_loss")
    assert [e.step for e in tb] == list(range(1, steps + 1))  # lost steps purged, no repeats
    np.testing.assert_allclose([e.value for e in tb], [m["lm_loss"] for m in expected],
                               rtol=1e-6)
    print(f"\nkill/resume timings: reference {t_ref:.1f} s, killed at {t_killed:.1f} s "
          f"(step {done}, checkpoint {saved}), resumed run done at {t_total:.1f} s")


# ============================================================================ 3. numerical faults


def _poison_loss_from(monkeypatch, trainer: ACTTrainer, step: int) -> None:
    import hrm_rl.agents.act as module

    real = module.act_loss

    def poisoned(*args, **kwargs):
        loss, parts = real(*args, **kwargs)
        return (loss * float("nan") if trainer.step >= step else loss), parts

    monkeypatch.setattr(module, "act_loss", poisoned)


def test_nan_loss_stops_training_keeps_the_last_good_checkpoint_and_logs(
        data_dir, tmp_path, monkeypatch):
    run = tmp_path / "run"
    trainer = ACTTrainer(tiny(data_dir, "train.steps=20", "train.checkpoint_every=5"), run,
                         progress=False)
    _poison_loss_from(monkeypatch, trainer, 7)
    with pytest.raises(NonFiniteError, match=r"non-finite loss at step 8 \(nan\)") as err:
        trainer.fit()
    assert err.value.step == 8 and err.value.what == "loss"
    assert "--resume" in str(err.value)
    assert trainer.step == 7  # the bad step was not applied
    assert all(torch.isfinite(p).all() for p in trainer.model.parameters())
    ckpt = load_checkpoint(run)
    assert ckpt.path.name == "step_0000005" and ckpt.meta["step"] == 5
    acc = EventAccumulator(str(run))
    acc.Reload()
    assert [(e.step, e.value) for e in acc.Scalars("fault/non_finite")] == [(8, 1.0)]
    assert "fault/message/text_summary" in acc.Tags()["tensors"]
    assert metrics(run)[-1]["step"] == 7


def test_nan_gradient_names_the_parameter(data_dir):
    trainer = ACTTrainer(tiny(data_dir), None, progress=False)
    trainer.train_step()
    param = trainer.model.lm_head.weight
    param.register_hook(lambda g: g * float("inf"))
    before = param.detach().clone()
    with pytest.raises(NonFiniteError, match=r"non-finite gradient at step 2 \(in lm_head"):
        trainer.train_step()
    assert torch.equal(param.detach(), before)


def test_non_finite_weights_are_never_checkpointed(data_dir, tmp_path):
    trainer = ACTTrainer(tiny(data_dir), tmp_path / "run", progress=False)
    trainer.train_step()
    good = trainer.save()
    with torch.no_grad():
        next(trainer.model.parameters())[0] = float("nan")
    trainer.step += 1  # pretend a step ran and left the weights poisoned
    with pytest.raises(NonFiniteError, match="non-finite weights at step 2"):
        trainer.save()
    assert resolve_checkpoint(tmp_path / "run") == good


def test_cli_exits_3_on_divergence(data_dir, tmp_path, capsys):
    config = tiny_yaml(tmp_path / "tiny.yaml", f"data.cache_dir={data_dir}", "train.steps=30",
                       "train.lr_warmup_steps=1", "train.weight_decay=0")
    args = ["train", str(config), "--set", "train.lr=1e30", "--run-dir", str(tmp_path / "run"),
            "--no-progress"]
    assert main(args) == 3
    assert "non-finite" in capsys.readouterr().err


# ============================================================================ 4. fuzzing

FUZZ = settings(max_examples=60, deadline=None,
                suppress_health_check=[HealthCheck.function_scoped_fixture,
                                       HealthCheck.too_slow])
FUZZ_PARSERS = settings(FUZZ, max_examples=100)  # a parser call takes milliseconds
SUDOKU_CHARS = st.sampled_from(list("0123456789.") + ["x", " ", "\u0663", "\u00b2", "-", "\n"])


def _grids_of(alphabet_for_size):
    """Strings of exactly 16, 36 or 81 characters drawn from ``alphabet_for_size(size)``."""
    return st.sampled_from([4, 6, 9]).flatmap(
        lambda n: st.text(alphabet_for_size(n), min_size=n * n, max_size=n * n))


GRID_TEXT = st.one_of(
    st.text(max_size=100),                                       # anything at all
    _grids_of(lambda n: SUDOKU_CHARS),                           # right length, odd characters
    _grids_of(lambda n: st.sampled_from(list("." * n + "123456789"[:n]))),  # mostly blanks
)


@FUZZ
@given(text=GRID_TEXT, size=st.sampled_from([None, 4, 6, 9]))
def test_fuzz_parse_grid_parses_or_raises_value_error(text, size):
    try:
        grid = parse_grid(text, size)
    except ValueError:
        return
    n = len(text)
    side = size or round(math.sqrt(n))
    assert grid.shape == (side * side,) and grid.dtype == np.int64
    assert grid.min() >= 0 and grid.max() <= side
    assert find_conflict(grid, side) is None
    assert format_grid(grid) == text.replace("0", ".")


def _csv_line():
    """A CSV line: random fields, or a real 4x4 row with a few cells mutated."""
    cell = st.one_of(st.text(max_size=20), st.sampled_from(
        ["1...............", "1234341221434321", "................", "11..............",
         "1234341221434312", "2...............", "0", "3.5", "nan", ""]))
    random_fields = st.lists(cell, min_size=0, max_size=5).map(
        lambda fields: ",".join(f.replace("\r", "") for f in fields))
    question, answer = format_grid(P4[0]), format_grid(S4[0])
    mutated = st.tuples(
        st.lists(st.tuples(st.integers(0, 31), SUDOKU_CHARS), max_size=2),
        st.sampled_from(["0", "", "2.5", "x", "1e3"])).map(
        lambda edit: _mutate_row(question + answer, *edit))
    return st.one_of(random_fields, mutated)


def _mutate_row(cells: str, edits: list[tuple[int, str]], rating: str) -> str:
    chars = list(cells)
    for i, ch in edits:
        chars[i] = ch
    text = "".join(chars)
    return f"m,{text[:16]},{text[16:]},{rating}"


@FUZZ
@given(header=st.sampled_from([HEADER, "source,question,answer\n", "", "a,b,c\n",
                               "\ufeff" + HEADER]),
       lines=st.lists(_csv_line(), max_size=5), garbage=st.binary(max_size=8))
def test_fuzz_read_csv_parses_or_raises_value_error(header, lines, garbage):
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "fuzz.csv"
        path.write_bytes(header.encode() + "\n".join(lines).encode() + garbage)
        try:
            records = read_csv(path, check_unique=bool(len(lines) % 2))
        except ValueError as err:
            assert str(err).startswith(str(path))
            return
    size = round(math.sqrt(records.puzzles.shape[1]))
    assert is_valid_solution(records.solutions, size).all()
    assert np.all((records.puzzles == 0) | (records.puzzles == records.solutions))
    for p in records.puzzles:
        assert find_conflict(p, size) is None


# ----------------------------------------------------------------------- Maze CSV files
# An independent model of what ``maze.read_csv`` must accept: it re-reads the file with the
# csv module and checks every maze with a plain-Python BFS, then the parser's verdict (and,
# on a rejection, the line it names) is compared with the model's.

MAZE_GARBAGE = ["?", "O", "s", "g", "0", ".", "\t", "\u00a0", "\u00e9", "\U0001f600", "\x00",
                ","]
MAZE_CHARS = st.sampled_from(list("# SGo") * 3 + MAZE_GARBAGE)


def _maze_row_ok(q: str, a: str, n: int, shortest: bool = True) -> bool:
    """Whether ``q``/``a`` is an ``n x n`` question and an answer marking one S-to-G path
    with ``o`` (a shortest one when ``shortest``), checked without the library."""
    if len(q) != n * n or len(a) != n * n:
        return False
    if set(q) - set("# SG") or set(a) - set("# SGo"):
        return False
    if any(s.count(c) != 1 for s in (q, a) for c in "SG"):
        return False
    if any(x != y and not (x == " " and y == "o") for x, y in zip(q, a)):
        return False

    def nbrs(i):
        r, c = divmod(i, n)
        return [rr * n + cc for rr, cc in ((r - 1, c), (r + 1, c), (r, c - 1), (r, c + 1))
                if 0 <= rr < n and 0 <= cc < n]

    def bfs(enter) -> int | None:  # steps from S to G over cells ``enter`` allows
        dist, todo, goal = {q.index("S"): 0}, [q.index("S")], q.index("G")
        for i in todo:
            for j in nbrs(i):
                if j not in dist and enter(j):
                    dist[j] = dist[i] + 1
                    todo.append(j)
        return dist.get(goal)

    k = a.count("o")
    along = bfs(lambda j: a[j] in "oG")
    if shortest:  # a path of k + 1 steps over k 'o' cells uses them all, and is optimal
        return along == k + 1 == bfs(lambda j: q[j] != "#")
    ends = {q.index("S"), q.index("G")}
    degree_ok = all(sum(a[j] in "oSG" for j in nbrs(i)) == (1 if i in ends else 2)
                    for i in range(n * n) if a[i] in "oSG")
    return degree_ok and along is not None and along <= k + 1


def _maze_model(data: bytes, size: int | None, limit: int | None, shortest: bool):
    """What ``maze.read_csv`` must do with ``data``: ``("accept", rows, size)`` with
    ``rows`` the ``(source, question, answer, rating)`` it must return, or ``("reject",
    lines)`` where ``lines`` are the lines the error may name (None: a file-level error).

    A file that is not UTF-8 is ``("reject", "any")``, or ``("maybe", rows, size)`` when
    ``limit`` valid rows come before the first bad byte: the reader may stop before it."""
    try:
        data.decode("utf-8")
    except UnicodeDecodeError as err:
        head = _maze_model_text(data[:err.start].decode("utf-8-sig"), size, limit, shortest)
        if head[0] == "accept" and len(head[1]) == limit:
            return ("maybe", *head[1:])
        return "reject", "any"
    return _maze_model_text(data.decode("utf-8-sig"), size, limit, shortest)


def _maze_model_text(text: str, size: int | None, limit: int | None, shortest: bool):
    reader = csv.reader(io.StringIO(text, newline=""))
    rows, lines = [], []
    try:
        header = next(reader, None)
        if header is None or [h.strip() for h in header[:3]] != ["source", "question",
                                                                  "answer"]:
            return "reject", {1}
        for row in reader:
            line = reader.line_num
            if not row:
                continue
            if len(row) < 3:
                return "reject", {line}
            if size is None:
                side = round(math.sqrt(len(row[1])))
                if side * side != len(row[1]) or not 4 <= side <= 64:
                    return "reject", {line}
                size = side
            if len(row[1]) != size * size or len(row[2]) != size * size:
                return "reject", {line}
            try:
                rating = float(row[3]) if len(row) > 3 and row[3] != "" else 0.0
            except ValueError:
                return "reject", {line}
            rows.append((row[0], row[1], row[2], rating))
            lines.append(line)
            if limit is not None and len(rows) >= limit:
                break
    except csv.Error:
        return "reject", {reader.line_num}
    if not rows:
        return "reject", None
    bad = {line for line, (_, q, a, _) in zip(lines, rows)
           if not _maze_row_ok(q, a, size, shortest)}
    return ("reject", bad) if bad else ("accept", rows, size)


def _check_maze_read(path: Path, size: int | None, limit: int | None, shortest: bool):
    """Run ``maze.read_csv`` on ``path`` and hold it to ``_maze_model``; returns the records
    (or None after a checked rejection)."""
    expected = _maze_model(path.read_bytes(), size, limit, shortest)
    event(f"maze file: {expected[0]}")
    try:
        records = maze.read_csv(path, size, limit, check_shortest=shortest)
    except (ValueError, FileNotFoundError) as err:
        message = str(err)
        where = re.match(re.escape(str(path)) + r":(?:(\d+):)? ", message)
        assert where, f"message does not start with '<path>:<line>:': {message!r}"
        assert expected[0] != "accept", f"a valid file was refused: {message}"
        lines = expected[1]
        if expected[0] == "reject" and lines != "any":
            line = where.group(1)
            assert (line is None) == (lines is None), message
            assert line is None or int(line) in lines, (message, lines)
        return None
    assert expected[0] in ("accept", "maybe"), f"an invalid file was accepted: {expected}"
    rows, side = expected[1], expected[2]
    task = maze.MazeTask(side)
    assert records.questions.shape == records.answers.shape == (len(rows), side * side)
    assert task.to_strings(records.questions) == [q for _, q, _, _ in rows]
    assert task.to_strings(records.answers) == [a for _, _, a, _ in rows]
    assert records.sources == [s for s, _, _, _ in rows]
    assert np.array_equal(records.ratings, [r for *_, r in rows], equal_nan=True)
    for q, a in zip(records.questions, records.answers):
        assert (q == maze.START).sum() == (q == maze.GOAL).sum() == 1
        assert _maze_row_ok(maze.format_grid(q), maze.format_grid(a), side, shortest)
    # The task's writer gives back the same strings.
    again = path.with_name("again.csv")
    maze.write_csv(again, records)
    back = maze.read_csv(again, side, check_shortest=shortest)
    assert np.array_equal(back.questions, records.questions)
    assert np.array_equal(back.answers, records.answers)
    assert back.sources == records.sources
    return records


def _maze_examples():
    """Valid ``(question, answer)`` rows of sides 4-6, plus hand-made corner cases."""
    rows = []
    for side, min_path in ((4, 5), (5, 6), (6, 8)):
        q, a, _ = maze.generate(2, side, np.random.default_rng(side), min_path=min_path)
        rows += [(maze.format_grid(qq), maze.format_grid(aa)) for qq, aa in zip(q, a)]
    open5 = "S G" + " " * 22
    rows.append((open5, "SoG" + " " * 22))                       # a 2-step path
    rows.append(("SG" + " " * 14, "SG" + " " * 14))              # S next to G: no 'o'
    rows.append((open5, "S G  ooo" + " " * 17))  # last: a 4-step detour (valid only
    return rows                                  # when shortest paths are not checked)


MAZE_ROWS = _maze_examples()


def _mutate_maze(row: tuple[str, str], edits: list[tuple]) -> tuple[str, str]:
    """Apply edits to a (question, answer) pair; indices wrap around the grid."""
    cells = {"q": list(row[0]), "a": list(row[1])}
    for kind, which, i, ch in edits:
        grid = cells[which]
        spots = {"flip": range(len(grid)),
                 "wall_o": [j for j, c in enumerate(cells["a"]) if c == "#"],
                 "break": [j for j, c in enumerate(cells["a"]) if c == "o"],
                 "q_path": [j for j, c in enumerate(cells["a"]) if c == "o"],
                 "extra": [j for j, c in enumerate(cells["a"]) if c == " "],
                 "add": [j for j, c in enumerate(grid) if c in " o"],
                 "remove": [j for j, c in enumerate(grid) if c in "SG"]}.get(kind)
        if kind == "truncate":
            del grid[len(grid) - 1 - i % 3:]
        elif kind == "extend":
            grid += [ch] * (1 + i % 3)
        elif kind == "swap":
            cells = {"q": cells["a"], "a": cells["q"]}
        elif spots:
            j = spots[i % len(spots)]
            target = {"wall_o": cells["a"], "break": cells["a"], "extra": cells["a"],
                      "q_path": cells["q"]}.get(kind, grid)
            if j >= min(len(cells["q"]), len(cells["a"])):
                continue  # question and answer no longer have the same length
            target[j] = {"flip": ch, "wall_o": "o", "break": " ", "extra": "o", "q_path": "o",
                         "add": ch if ch in "SG" else "S", "remove": " "}[kind]
            if kind in ("add", "remove") and which == "q":   # keep the answer in step
                cells["a"][j] = target[j]
    return "".join(cells["q"]), "".join(cells["a"])


MAZE_EDIT = st.tuples(
    st.sampled_from(["flip", "flip", "wall_o", "break", "extra", "q_path", "add", "remove",
                     "truncate", "extend", "swap"]),
    st.sampled_from(["q", "a"]), st.integers(0, 1000), MAZE_CHARS)


@FUZZ_PARSERS
@example(base=len(MAZE_ROWS) - 1, edits=[], before=1, after=1, given_size=False,
         shortest=True, rating="0")  # the detour: refused as not shortest ...
@example(base=len(MAZE_ROWS) - 1, edits=[], before=1, after=1, given_size=False,
         shortest=False, rating="0")  # ... loads when shortest paths are not checked
@example(base=0, edits=[("q_path", "q", 0, "o")], before=0, after=1, given_size=True,
         shortest=True, rating="0")  # the path copied into the question
@given(base=st.integers(0, len(MAZE_ROWS) - 1), edits=st.lists(MAZE_EDIT, max_size=3),
       before=st.integers(0, 2), after=st.integers(0, 2), given_size=st.booleans(),
       shortest=st.booleans(), rating=st.sampled_from(["0", "", "7", "1e3", "nan", "-2.5"]))
def test_fuzz_maze_csv_mutations_parse_or_name_their_line(base, edits, before, after,
                                                          given_size, shortest, rating):
    """A valid maze row with a few edits (a flipped cell, an added or removed S/G, a cut or
    lengthened string, 'o' on a wall or in the question, a broken path, a stray 'o', question
    and answer swapped; or a detour that is not a shortest path) among valid rows of its size:
    the file loads exactly when the edited row is still a valid maze, else the error names
    the edited row's line. ``MazeTask.encode`` gives the same verdict on the strings."""
    q0, a0 = MAZE_ROWS[base]
    side = round(math.sqrt(len(q0)))
    good = [f"g{i},{q},{a},1" for i, (q, a) in enumerate(MAZE_ROWS)
            if len(q) == len(q0) and _maze_row_ok(q, a, side)]
    q, a = _mutate_maze((q0, a0), edits)
    bad_line = 2 + before
    rows = good[:before] + [f"m,{q},{a},{rating}"] + good[:after]
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "maze.csv"
        path.write_text(HEADER + "\n".join(rows) + "\n")
        size = side if given_size else None
        expected = _maze_model(path.read_bytes(), size, None, shortest)
        assert expected[0] == "accept" or expected[1] == {bad_line}
        records = _check_maze_read(path, size, None, shortest)
    if "," in q + a:
        return
    task = maze.MazeTask(side)
    try:
        batch = task.encode([q], [a], check_shortest=shortest)
    except ValueError as err:
        assert str(err).startswith(f"{task.name} row 0: ")
        assert records is None, f"encode refuses what read_csv accepts: {err}"
        return
    assert records is not None, "encode accepts what read_csv refuses"
    assert task.to_strings(batch.inputs) == [q] and task.to_strings(batch.labels) == [a]


def _maze_csv_line():
    """A line of a maze CSV file: random text, random fields, or a (mutated) valid row."""
    chars = st.one_of(MAZE_CHARS, st.sampled_from(['"', "\n", "\r", ","]))
    grid = st.one_of(st.text(chars, max_size=60),
                     st.integers(3, 7).flatmap(lambda n: st.text(MAZE_CHARS, min_size=n * n,
                                                                 max_size=n * n)))
    fields = st.tuples(st.text(chars, max_size=4), grid, grid,
                       st.sampled_from(["", "0", "3.5", "x", "nan"])).map(",".join)
    mutated = st.tuples(st.sampled_from(MAZE_ROWS), st.lists(MAZE_EDIT, max_size=2)).map(
        lambda r: "m,{},{},0".format(*_mutate_maze(*r)))
    valid = st.sampled_from([f"v,{q},{a},0" for q, a in MAZE_ROWS])
    return st.one_of(st.text(chars, max_size=80), fields, mutated, valid, valid, valid,
                     st.just(""))


@FUZZ_PARSERS
@given(header=st.sampled_from([HEADER, "source,question,answer\n", "", "a,b,c\n",
                               "\ufeff" + HEADER, " source , question,answer,x\r\n"]),
       lines=st.lists(_maze_csv_line(), max_size=5),
       newline=st.sampled_from(["\n", "\r\n", "\r"]), garbage=st.binary(max_size=4),
       size=st.sampled_from([None, None, 4, 5, 6]), limit=st.sampled_from([None, None, 1, 2]),
       shortest=st.booleans())
def test_fuzz_maze_read_csv_parses_or_raises_value_error(header, lines, newline, garbage,
                                                          size, limit, shortest):
    """Arbitrary text over the maze alphabet and garbage: ``read_csv`` returns exactly the
    mazes of a valid file (round trip through ``to_strings`` and ``write_csv``; one S, one G,
    a shortest path) or raises ValueError starting with ``<path>:<line>:`` naming a bad line
    (``<path>:`` for a file-level fault) -- never any other exception."""
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "maze.csv"
        path.write_bytes(header.encode() + newline.join(lines).encode() + garbage)
        _check_maze_read(path, size, limit, shortest)


def test_fuzz_maze_read_csv_of_a_missing_file():
    with tempfile.TemporaryDirectory() as tmp:
        with pytest.raises(FileNotFoundError, match="no such maze file"):
            maze.read_csv(Path(tmp) / "nope.csv")


# ----------------------------------------------------------------------- ARC JSON files

JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers(-20, 20) | st.integers() | st.floats()
    | st.text(max_size=8),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(
        st.sampled_from(["train", "test", "input", "output"]) | st.text(max_size=5),
        children, max_size=4),
    max_leaves=25)
ARC_ODD_CELLS = st.sampled_from([-1, 10, 11, 1.0, True, None, "3", [1], 2**70])


def _arc_grid(h: int, w: int, fill: int = 0, edits: tuple = ()) -> list:
    rows = [[fill] * w for _ in range(h)]
    for r, c, value in edits:
        rows[r % h][c % w] = value
    return rows


VALID_GRIDS = st.builds(_arc_grid, st.integers(1, 30), st.integers(1, 30), st.integers(0, 9),
                        st.lists(st.tuples(st.integers(0, 29), st.integers(0, 29),
                                           st.integers(0, 9)), max_size=3))
VALID_PAIRS = st.builds(lambda i, o: {"input": i, "output": o}, VALID_GRIDS, VALID_GRIDS)
VALID_TASKS = st.fixed_dictionaries({"train": st.lists(VALID_PAIRS, min_size=1, max_size=3),
                                     "test": st.lists(VALID_PAIRS, min_size=1, max_size=2)})


def _arc_fault(task: dict, fault: tuple) -> dict:
    """Break a valid task one way: a cell out of 0-9 or not an int, a ragged row, a grid of
    0 or 31-32 rows/columns, a missing key, an empty list, a part replaced by any JSON."""
    kind, i, j, odd, value = fault
    pairs = [(key, p) for key in ("train", "test") for p in task[key]]
    key, pair = pairs[i % len(pairs)]
    io_key = ("input", "output")[j % 2]
    grid = pair[io_key]
    r, c = divmod(j, 7)
    if kind == "cell":
        grid[r % len(grid)][c % len(grid[0])] = odd
    elif kind == "ragged":
        row = grid[r % len(grid)]
        grid[r % len(grid)] = row[:-1] if j % 3 else row + [0]
    elif kind == "size":
        h, w = [0, 1, 30, 31, 32][i % 5], [0, 1, 30, 31, 32][j % 5]
        pair[io_key] = _arc_grid(h, w) if h and w else [[]] * h
    elif kind == "row":
        grid[r % len(grid)] = value
    elif kind == "drop_io":
        del pair[io_key]
    elif kind == "drop_key":
        del task[("train", "test")[j % 2]]
    elif kind == "empty":
        task[("train", "test")[j % 2]] = []
    elif kind == "replace_grid":
        pair[io_key] = value
    elif kind == "replace_pair":
        task[key][0] = value
    elif kind == "replace_list":
        task[key] = value
    return task


ARC_FAULTS = st.tuples(
    st.sampled_from(["cell", "cell", "ragged", "size", "row", "drop_io", "drop_key", "empty",
                     "replace_grid", "replace_pair", "replace_list"]),
    st.integers(0, 1000), st.integers(0, 1000), st.integers(-1, 11) | ARC_ODD_CELLS,
    JSON_VALUES)


def _break_task(task: dict, faults: list[tuple]) -> dict:
    for fault in faults:
        try:
            task = _arc_fault(task, fault)
        except (KeyError, IndexError, TypeError, AttributeError, ZeroDivisionError):
            pass  # an earlier fault already took away what this one would break
    return task


ARC_TASKS = st.builds(_break_task, VALID_TASKS, st.lists(ARC_FAULTS, max_size=2))


def _json_bytes(value, ascii_only: bool) -> bytes:
    """``value`` as JSON; without ``ensure_ascii`` a lone surrogate gives bytes that are
    not UTF-8 (another way for a file to be broken)."""
    return json.dumps(value, ensure_ascii=ascii_only).encode("utf-8", "surrogatepass")


ARC_GOOD = {"train": [{"input": [[1, 0]], "output": [[0, 1]]}],
            "test": [{"input": [[2, 0]], "output": [[0, 2]]}]}
ARC_FILE_BYTES = st.one_of(
    *[st.builds(_json_bytes, ARC_TASKS, st.booleans())] * 3,
    st.builds(_json_bytes, JSON_VALUES, st.booleans()),
    st.binary(max_size=64),
    st.tuples(st.sampled_from([b"\xef\xbb\xbf", b"\xff", b"", b"{", b'{"train": ']),
              st.builds(_json_bytes, st.just(ARC_GOOD), st.just(True))).map(b"".join),
)


@FUZZ_PARSERS
@given(content=ARC_FILE_BYTES, split=st.sampled_from(["training", "evaluation"]))
def test_fuzz_arc_task_file_loads_or_raises_arc_format_error(content, split):
    """Any JSON value (or bytes that are not JSON) as one task file: ``load_tasks`` either
    loads it, every grid then a 2-D int array of colours 0-9 with sides 1-30 holding exactly
    the file's numbers, or raises ARCFormatError naming the file -- never anything else."""
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        for folder in ("training", "evaluation"):
            (root / folder).mkdir()
            (root / folder / "good.json").write_text(json.dumps(ARC_GOOD))
        path = root / split / "fuzz.json"
        path.write_bytes(content)
        try:
            puzzles = load_tasks(data_dir=root)
            event("ARC file: loads")
        except ARCFormatError as err:
            event(f"ARC file: {str(err)[len(str(path)) + 2:][:18]}")
            assert str(err).startswith(f"{path}: "), str(err)
            return
    names = {"training": ["good"], "evaluation": ["good"]}
    names[split].insert(0, "fuzz")  # sorted by name within each split, training first
    assert [(p.split, p.name) for p in puzzles] == [
        (s, n) for s in ("training", "evaluation") for n in names[s]]
    value = json.loads(content)
    (puzzle,) = [p for p in puzzles if p.name == "fuzz"]
    for key, pairs in (("train", puzzle.train), ("test", puzzle.test)):
        assert len(pairs) == len(value[key]) >= 1
        for pair, item in zip(pairs, value[key]):
            for grid, raw in zip(pair, (item["input"], item["output"])):
                assert isinstance(grid, np.ndarray) and grid.ndim == 2
                assert grid.dtype.kind in "iu"
                assert 1 <= grid.shape[0] <= 30 and 1 <= grid.shape[1] <= 30
                assert grid.min() >= 0 and grid.max() <= 9
                assert grid.tolist() == raw


@pytest.mark.parametrize("content", ["1" * 4301, "[" * 100_000],
                         ids=["4301-digit-int", "nested-100000"])
def test_fuzz_arc_pathological_json_is_an_arc_format_error(content):
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        (root / "evaluation").mkdir()
        (root / "evaluation" / "good.json").write_text(json.dumps(ARC_GOOD))
        (root / "training").mkdir()
        path = root / "training" / "bad.json"
        path.write_text(content)
        with pytest.raises(ARCFormatError, match=re.escape(str(path))):
            load_tasks(data_dir=root)


STEP_COST, MAX_SEGMENTS = 0.05, 4


@pytest.fixture(scope="module", params=["sudoku4", "maze6", "arc-tiny"])
def envs(request):
    """Two single and two vector envs (twins, for determinism) on each bundled core."""
    kwargs = dict(checkpoint=request.param, step_cost=STEP_COST, max_segments=MAX_SEGMENTS)
    return (HaltingEnv(**kwargs), HaltingEnv(**kwargs),
            HaltingVectorEnv(num_envs=3, **kwargs), HaltingVectorEnv(num_envs=3, **kwargs))


def _check_reward(reward: float, ret: float) -> None:
    low = -STEP_COST * MAX_SEGMENTS - STEP_COST  # documented bound for any step
    assert low <= reward <= 1
    assert -2 * STEP_COST - 1e-9 <= reward <= 1 - STEP_COST + 1e-9  # tighter, per step
    assert -STEP_COST * MAX_SEGMENTS - 1e-9 <= ret <= 1 - STEP_COST + 1e-9


@settings(max_examples=20, deadline=None)
@given(seed=st.integers(0, 2**31 - 1), actions=st.lists(st.integers(0, 1), max_size=25))
def test_fuzz_single_env_random_actions(envs, seed, actions):
    torch.set_num_threads(1)  # batch-1 forwards: extra threads only add contention
    env, twin = envs[:2]
    obs, info = env.reset(seed=seed)
    twin_obs, _ = twin.reset(seed=seed)
    assert np.array_equal(obs, twin_obs)
    ret = 0.0
    for a in actions:
        obs, r, term, trunc, info = env.step(a)
        t_obs, t_r, *_ = twin.step(a)
        assert np.array_equal(obs, t_obs) and r == t_r  # same seed, same actions: same trace
        assert env.observation_space.contains(obs) and not trunc
        ret += r
        _check_reward(r, ret)
        assert 1 <= info["segments"] <= MAX_SEGMENTS
        assert term == (a == 1 or info["segments"] == MAX_SEGMENTS)
        if term:
            env.reset(), twin.reset()
            ret = 0.0


@settings(max_examples=20, deadline=None)
@given(seed=st.integers(0, 2**31 - 1),
       actions=st.lists(st.lists(st.integers(0, 1), min_size=3, max_size=3), max_size=20))
def test_fuzz_vector_env_random_actions(envs, seed, actions):
    torch.set_num_threads(1)
    venv, twin = envs[2:]
    obs, _ = venv.reset(seed=seed)
    assert np.array_equal(obs, twin.reset(seed=seed)[0])
    returns = np.zeros(3)
    for a in actions:
        obs, r, term, trunc, info = venv.step(np.array(a))
        t_obs, t_r, *_ = twin.step(np.array(a))
        assert np.array_equal(obs, t_obs) and np.array_equal(r, t_r)
        assert venv.observation_space.contains(obs) and not trunc.any()
        returns += r
        for i in range(3):
            _check_reward(r[i], returns[i])
        assert np.all(info["segments"] <= MAX_SEGMENTS)  # a row at the limit was replaced
        assert np.all(term >= np.array(a, dtype=bool))
        if term.any():
            assert np.all(info["final_info"]["segments"][term] <= MAX_SEGMENTS)
            returns[term] = 0.0


# ============================================================================ 5. determinism


def test_same_seed_same_training_losses(data_dir):
    def losses(seed):
        trainer = ACTTrainer(tiny(data_dir, f"train.seed={seed}"), None, progress=False)
        return [trainer.train_step() for _ in range(6)]

    first = losses(0)
    assert losses(0) == first
    assert losses(1) != first


@pytest.mark.parametrize("kind", ["hrm", "trm"])
def test_ema_checkpoint_holds_the_averaged_weights_and_resume_matches(kind, data_dir, tmp_path):
    """With EMA the checkpoint (what envs and eval load) holds the averaged weights; a
    resumed run still continues from the raw weights and matches an uninterrupted one."""
    extra = ["train.ema_decay=0.9", f"model.kind={kind}", "train.checkpoint_every=4",
             "train.log_every=2"]
    if kind == "trm":
        extra += ["model.H_cycles=2", "model.L_cycles=2"]
    ref = ACTTrainer(tiny(data_dir, "train.steps=8", *extra), tmp_path / "ref", progress=False)
    assert ref.halt_loss == ("bce" if kind == "trm" else "q_learning")
    ref.fit()
    saved = load_checkpoint(tmp_path / "ref")
    shadow = ref.ema.state_dict()["shadow"]
    raw = dict(ref.model.named_parameters())
    differs = False
    for name, param in saved.model.named_parameters():
        assert torch.equal(param.detach(), shadow[name].to(param.dtype))
        differs |= not torch.equal(param.detach(), raw[name].detach())
    assert differs, "EMA weights should differ from the raw weights after training"
    env_model = HaltingEnv(checkpoint=tmp_path / "ref").core.model  # the env loads the EMA
    for name, param in env_model.named_parameters():
        assert torch.equal(param.detach().cpu(), shadow[name].to(param.dtype).cpu())
    part = ACTTrainer(tiny(data_dir, "train.steps=4", *extra), tmp_path / "part", progress=False)
    part.fit()
    resumed = ACTTrainer.resume(tmp_path / "part", ["train.steps=8"], progress=False)
    resumed.fit()
    assert metrics(tmp_path / "part") == metrics(tmp_path / "ref")
    for a, b in zip(ref.model.parameters(), resumed.model.parameters()):
        assert torch.equal(a, b)


def test_a_run_folder_takes_one_live_process(tmp_path, data_dir, capsys):
    from hrm_rl.checkpoint import RunLock, RunLockedError

    run = tmp_path / "run"
    first = ACTTrainer(tiny(data_dir, "train.steps=2"), run, progress=False)
    with pytest.raises(RunLockedError, match=f"pid {os.getpid()}"):
        ACTTrainer(tiny(data_dir, "train.steps=2"), run, progress=False)
    first.lock.release()
    RunLock(run).release()  # free again once the holder let go


def test_a_lock_left_by_a_killed_process_is_not_in_the_way(tmp_path):
    from hrm_rl.checkpoint import RunLock

    run = tmp_path / "run"
    holder = subprocess.Popen([sys.executable, "-c", "import sys, time\n"
                               "from hrm_rl.checkpoint import RunLock\n"
                               f"lock = RunLock({str(run)!r}); print('held', flush=True); "
                               "time.sleep(60)"], stdout=subprocess.PIPE, text=True)
    assert holder.stdout.readline().strip() == "held"
    from hrm_rl.checkpoint import RunLockedError
    with pytest.raises(RunLockedError):
        RunLock(run)
    holder.kill()
    holder.wait()
    RunLock(run).release()  # the kernel dropped the dead holder's lock


def test_default_run_names_are_unique_and_halt_train_keeps_a_model(tmp_path, capsys):
    from hrm_rl.agents.trainer import make_run_dir

    config = load_config(None, [])
    assert make_run_dir(config).name.endswith(f"-{os.getpid()}")
    (tmp_path / "model.zip").write_bytes(b"kept")
    assert main(["halt", "train", "--run-dir", str(tmp_path), "--timesteps", "8",
                 "--no-eval", "--no-progress"]) == 2
    assert "already holds a trained model.zip" in capsys.readouterr().err
    assert (tmp_path / "model.zip").read_bytes() == b"kept"
