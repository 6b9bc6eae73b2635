"""Validation: bad puzzles, CSVs, configs, overrides, checkpoints and env arguments fail
early with errors that say where and what."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest

from hrm_rl.agents.trainer import ACTTrainer
from hrm_rl.checkpoint import CONFIG, WEIGHTS, load_checkpoint, resolve_checkpoint
from hrm_rl.cli import main
from hrm_rl.config import ConfigError, load_config
from hrm_rl.envs.halting import HaltingVectorEnv
from hrm_rl.tasks.sudoku import find_conflict, format_grid, generate, parse_grid, read_csv

from conftest import tiny_run_config, tiny_yaml

HEADER = "source,question,answer,rating\n"
P4, S4, _ = generate(1, 4, np.random.default_rng(0))
GOOD4 = f"x,{format_grid(P4[0])},{format_grid(S4[0])},0"  # a puzzle with one solution
P9, S9, _ = generate(1, 9, np.random.default_rng(0), max_givens=30)
ROW9 = f"x,{format_grid(P9[0])},{format_grid(S9[0])},0"


def write_csv_text(path: Path, *rows: str) -> Path:
    path.write_text(HEADER + "".join(f"{r}\n" for r in rows))
    return path


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
    ACTTrainer(tiny_run_config(data_dir, "train.steps=12", "train.checkpoint_every=6"), run,
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


def test_changed_weight_bytes_are_refused_by_their_sha256(small_run, tmp_path, capsys):
    ckpt = _copy_checkpoint(small_run, tmp_path)
    data = bytearray((ckpt / WEIGHTS).read_bytes())
    for i in range(len(data) - 200, len(data) - 136):  # 64 bytes inside the last tensor
        data[i] ^= 0x01
    (ckpt / WEIGHTS).write_bytes(bytes(data))
    with pytest.raises(ValueError, match=r"model.safetensors: its SHA-256 .* is not the .* "
                                         r"recorded in config.json"):
        load_checkpoint(ckpt)
    assert main(["eval", str(ckpt), "--data", "test", "--no-progress"]) == 2
    assert "SHA-256" in capsys.readouterr().err


def test_every_bundled_core_records_and_matches_its_weights_sha256():
    from hrm_rl.checkpoint import (WEIGHTS_SHA_KEY, bundled_checkpoints, file_sha256,
                                   read_checkpoint_config)

    for name, folder in bundled_checkpoints().items():
        meta = read_checkpoint_config(folder)[2]
        assert meta.get(WEIGHTS_SHA_KEY) == file_sha256(folder / WEIGHTS), name


def test_non_finite_weights_are_refused(small_run, tmp_path):
    import torch
    from safetensors.torch import load_file, save_file

    ckpt = _copy_checkpoint(small_run, tmp_path)
    payload = json.loads((ckpt / CONFIG).read_text())
    payload["meta"].pop("weights_sha256", None)  # as a checkpoint from before the hash
    (ckpt / CONFIG).write_text(json.dumps(payload))
    state = load_file(ckpt / WEIGHTS)
    with __import__("safetensors").safe_open(ckpt / WEIGHTS, "pt") as f:
        metadata = f.metadata()
    state = {k: torch.full_like(v, float("nan")) if v.is_floating_point() else v
             for k, v in state.items()}
    save_file(state, ckpt / WEIGHTS, metadata=metadata)
    with pytest.raises(ValueError, match=r"model.safetensors: \d+ tensor\(s\) hold NaN or inf"):
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
                                           ("train.max_segments=3", "max_segments")])
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


def test_a_nul_byte_in_a_csv_row_is_refused(tmp_path, capsys):
    from hrm_rl.checkpoint import bundled_checkpoints

    lines = (bundled_checkpoints()["sudoku4"] / "test.csv").read_text().splitlines()[:5]
    lines[2] = lines[2][:3] + "\x00" + lines[2][3:]
    path = tmp_path / "nul.csv"
    path.write_text("\n".join(lines) + "\n")
    assert main(["eval", "sudoku4", "--data", str(path), "--no-progress"]) == 2
    assert f"{path}:3: a NUL byte in the row" in capsys.readouterr().err


def test_an_arc_csv_with_a_nul_byte_or_binary_bytes_is_refused(tmp_path):
    from hrm_rl.tasks.arc.task import _CSV_HEADER

    task = load_checkpoint("arc-tiny").task
    path = tmp_path / "arc.csv"
    path.write_text(",".join(_CSV_HEADER) + "\nx,01/10,\x0010/01,0\n")
    with pytest.raises(ValueError, match=r"arc.csv:2: a NUL byte"):
        task.read_csv(path)
    path.write_bytes(b"\xff\xfe\x00binary")
    with pytest.raises(ValueError, match=r"arc.csv: not UTF-8 text"):
        task.read_csv(path)


def test_eval_with_stdout_closed_is_an_error_not_a_silent_exit_0():
    import subprocess
    import sys

    done = subprocess.run([sys.executable, "-m", "hrm_rl", "eval", "sudoku4", "--data", "test",
                           "--limit", "4", "--no-progress"], stdout=subprocess.DEVNULL,
                          stderr=subprocess.PIPE, text=True, timeout=300,
                          preexec_fn=lambda: __import__("os").close(1))
    assert done.returncode == 2
    assert "standard output is closed" in done.stderr


def test_bench_reference_refuses_negative_threads(capsys):
    with pytest.raises(SystemExit) as exit_:
        main(["bench", "reference", "--threads", "-1"])
    assert exit_.value.code == 2
    assert "--threads: must be in [0, 1024], got -1" in capsys.readouterr().err


@pytest.mark.parametrize("argv, message", [
    (["bench", "env", "--seconds", "-1"], "--seconds: must be a finite number > 0, got -1"),
    (["bench", "env", "--threads", "-3"], "--threads: must be in [0, 1024], got -3"),
    (["bench", "train", "--rounds", "0"], "--rounds: must be >= 1, got 0"),
])
def test_bench_numbers_are_checked_as_they_are_parsed(argv, message, capsys):
    with pytest.raises(SystemExit) as exit_:
        main(argv)
    assert exit_.value.code == 2 and message in capsys.readouterr().err


def test_an_override_without_a_key_name_is_named(capsys):
    assert main(["params", "sudoku4-tiny", "--set", ".lr=1"]) == 2
    assert "'.lr' is not a dotted key like train.lr" in capsys.readouterr().err


@pytest.mark.parametrize("device, message", [
    ("tpu", "--device: unknown device 'tpu'"),
    ("cuda:7", "--device:"),
])
def test_rollouts_record_checks_the_device_first(device, message, tmp_path, capsys):
    import torch

    if device.startswith("cuda") and torch.cuda.device_count() > 7:
        pytest.skip("this machine has a cuda:7")
    out = tmp_path / "r.npz"
    assert main(["rollouts", "record", "sudoku4", "--out", str(out), "--device", device,
                 "--no-progress"]) == 2
    assert message in capsys.readouterr().err and not out.exists()


def test_numpy_scalars_are_numbers_for_the_env():
    import gymnasium as gym

    import hrm_rl  # noqa: F401

    env = gym.make("HRM-Sudoku-v0", step_cost=np.float32(0.01))
    assert env.unwrapped.core.step_cost == pytest.approx(0.01)
    with pytest.raises(ValueError, match="step_cost must be a number in"):
        gym.make("HRM-Sudoku-v0", step_cost=np.float64("nan"))
