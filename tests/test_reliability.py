"""Reliability cases of issues R (#35) and R2 (#38) that the other test files do not hold:
a full disk or a file-size limit during a checkpoint, a binary ``latest`` pointer, an empty
``config.yaml`` on resume, a non-halting ``--env``, ``cores --json`` on a CSV split, an env on a
device the machine lacks, an ARC CSV with a byte order mark, recordings whose internals are
broken, and the outputs of ``halt eval`` and ``halt train`` (temporary file and rename; an
existing output refused). Each asserts the exit code and the message, or the behaviour."""

from __future__ import annotations

import errno
import json
import os
import resource
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from hrm_rl.agents.trainer import ACTTrainer
from hrm_rl.checkpoint import load_checkpoint
from hrm_rl.cli import main
from hrm_rl.config import load_config

from conftest import TINY_RUN, metrics, tiny_yaml

REPO = Path(__file__).resolve().parent.parent


def _train(args: list[str], cwd: Path, fsize: int | None = None,
           timeout: float = 300) -> subprocess.CompletedProcess:
    """``hrm-rl train ARGS`` in a fresh process, under a file-size limit of ``fsize`` bytes."""
    def limit() -> None:
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a write past the limit: EFBIG
        resource.setrlimit(resource.RLIMIT_FSIZE, (fsize, fsize))

    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO)}
    return subprocess.run([sys.executable, "-m", "hrm_rl.cli", "train", *args, "--no-progress"],
                          cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout,
                          preexec_fn=limit if fsize is not None else None)


def _tiny_sets(data_dir: Path, *extra: str) -> list[str]:
    return [f"data.cache_dir={data_dir}", "train.steps=8", "train.checkpoint_every=4", *extra]


# --- a full disk, a quota or a file-size limit while writing a checkpoint ------------------

def test_a_file_size_limit_during_a_checkpoint_is_one_line_then_resume_finishes(data_dir,
                                                                                tmp_path):
    config = tiny_yaml(tmp_path / "tiny.yaml", *_tiny_sets(data_dir))
    run = tmp_path / "run"
    done = _train([str(config), "--run-dir", str(run)], tmp_path, fsize=20_000)
    assert done.returncode == 2, done.stderr
    last = done.stderr.strip().splitlines()[-1]
    assert last.startswith("hrm-rl train: error: file size limit (ulimit -f) reached while "
                           f"writing {run}/checkpoints/step_0000004/")
    assert "no checkpoint is complete yet" in last and f"--resume {run}" in last
    assert "Traceback" not in done.stderr and "Exception in thread" not in done.stderr
    resumed = _train(["--resume", str(run)], tmp_path)  # no limit now
    assert resumed.returncode == 0, resumed.stderr
    assert json.loads(resumed.stdout)["steps"] == 8


def _mount_tmpfs(where: Path, size: str) -> bool:
    where.mkdir()
    try:
        done = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs",
                               str(where)], capture_output=True, timeout=30)
    except (OSError, subprocess.SubprocessError):
        return False
    return done.returncode == 0


def test_a_full_disk_during_the_second_checkpoint_names_the_last_complete_one(data_dir,
                                                                                tmp_path):
    """On a small tmpfs (root only; skipped elsewhere): the first checkpoint fits, the second
    does not; the error names the file and step 4; after space is freed, --resume gives the
    same run as one that never met a full disk."""
    disk = tmp_path / "disk"
    if not _mount_tmpfs(disk, "400k"):
        pytest.skip("cannot mount a tmpfs here (needs root)")
    try:
        sets = _tiny_sets(data_dir)
        config = tiny_yaml(tmp_path / "tiny.yaml", *sets)
        ref = tmp_path / "ref"
        ACTTrainer(load_config(None, [*TINY_RUN, *sets]), ref, progress=False).fit()
        size = sum(p.stat().st_size for p in (ref / "checkpoints" / "step_0000008").iterdir())
        subprocess.run(["mount", "-o", f"remount,size={int(size * 1.6) // 1024}k", str(disk)],
                       check=True)
        run = disk / "run"
        done = _train([str(config), "--run-dir", str(run)], tmp_path)
        assert done.returncode == 2, done.stderr
        last = done.stderr.strip().splitlines()[-1]
        assert last.startswith(f"hrm-rl train: error: no space left while writing {run}/")
        assert "the last complete checkpoint is step 4" in last
        assert f"free space and resume: hrm-rl train --resume {run}" in last
        assert "Traceback" not in done.stderr and "Exception in thread" not in done.stderr
        subprocess.run(["mount", "-o", "remount,size=64m", str(disk)], check=True)
        resumed = _train(["--resume", str(run)], tmp_path)
        assert resumed.returncode == 0, resumed.stderr
        assert metrics(run) == metrics(ref)
    finally:
        subprocess.run(["umount", "-l", str(disk)], capture_output=True)


def test_a_full_disk_is_named_for_the_library_user_too(data_dir, tmp_path, monkeypatch):
    import hrm_rl.checkpoint as ckpt

    real = ckpt.atomic_write_bytes
    calls = {"n": 0}

    def full(path, data):
        if Path(path).name == ckpt.TRAINER_STATE:
            calls["n"] += 1
            if calls["n"] == 2:
                raise OSError(errno.ENOSPC, "No space left on device while writing", str(path))
        real(path, data)

    monkeypatch.setattr(ckpt, "atomic_write_bytes", full)
    run = tmp_path / "run"
    trainer = ACTTrainer(load_config(None, [*TINY_RUN, *_tiny_sets(data_dir)]), run,
                         progress=False)
    with pytest.raises(OSError) as err:
        trainer.fit()
    assert err.value.errno == errno.ENOSPC
    assert str(err.value).endswith(
        f"no space left while writing {run}/checkpoints/step_0000008/trainer_state.pt; the "
        f"last complete checkpoint is step 4; free space and resume: hrm-rl train --resume "
        f"{run}")


# --- pointers and saved configs --------------------------------------------------------------

@pytest.fixture(scope="module")
def run8(tmp_path_factory, data_dir):
    run = tmp_path_factory.mktemp("rel") / "run"
    ACTTrainer(load_config(None, [*TINY_RUN, *_tiny_sets(data_dir)]), run, progress=False).fit()
    return run


def _copy(run: Path, tmp_path: Path) -> Path:
    dst = tmp_path / "copy"
    shutil.copytree(run, dst, ignore=shutil.ignore_patterns(".lock"))
    return dst


def test_a_binary_latest_pointer_is_named(run8, tmp_path, capsys):
    run = _copy(run8, tmp_path)
    latest = run / "checkpoints" / "latest"
    latest.write_bytes(b"\x00\xff\xfe\x80binary")
    for target in (run, latest):
        assert main(["eval", str(target), "--data", "test", "--no-progress"]) == 2
        err = capsys.readouterr().err
        assert f"{latest}: not a checkpoint pointer" in err and "codec" not in err
    # a resume falls back to the newest complete checkpoint, saying why
    trainer = ACTTrainer.resume(run, progress=False)
    assert trainer.step == 8
    assert any(f"{latest} is unreadable" in note for note in trainer.notes)
    trainer.lock.release()


@pytest.mark.parametrize("keep_checkpoints", [True, False])
def test_an_empty_config_yaml_on_resume_gets_advice_that_fits_a_resume(run8, tmp_path, capsys,
                                                                       keep_checkpoints):
    run = _copy(run8, tmp_path)
    (run / "config.yaml").write_text("")
    if not keep_checkpoints:
        shutil.rmtree(run / "checkpoints")
    assert main(["train", "--resume", str(run), "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert f"{run}/config.yaml: the run's saved config is empty; cannot resume from it" in err
    assert "give at least the task and model sections" not in err
    if keep_checkpoints:  # the checkpoint holds the config: deleting the file is the way out
        assert "checkpoint step_0000008 holds the run's config" in err
        (run / "config.yaml").unlink()
        assert main(["train", "--resume", str(run), "--no-progress"]) == 0
    else:
        assert "start it again" in err


# --- commands ---------------------------------------------------------------------------------

@pytest.mark.parametrize("command", [["train", "--timesteps", "8", "--no-eval"], ["eval"]])
def test_a_non_halting_env_is_named_with_the_accepted_ones(command, capsys):
    assert main(["halt", *command, "--env", "CartPole-v1", "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert "--env CartPole-v1: not a halting env" in err
    assert "HRM-Sudoku-v0, HRM-Maze-v0, HRM-ARC-v0" in err and "Traceback" not in err


@pytest.mark.slow
def test_cores_json_on_a_csv_split_prints_only_json(tmp_path):
    lines = (load_checkpoint("sudoku4").path / "test.csv").read_text().splitlines()[:41]
    csv = tmp_path / "outside.csv"
    csv.write_text("\n".join(lines) + "\n")
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO)}
    done = subprocess.run([sys.executable, "-m", "hrm_rl.cli", "cores", "sudoku4", "--split",
                           str(csv), "--json"], capture_output=True, text=True, env=env,
                          timeout=600)
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)  # nothing but the JSON on stdout
    assert report[0]["n_test"] == 40 and "recording sudoku4" in done.stderr


def test_an_env_on_a_device_the_machine_lacks_is_named():
    import gymnasium as gym
    import torch

    import hrm_rl  # noqa: F401

    cases = [("tpu", "unknown device 'tpu'")]
    if not torch.cuda.is_available():
        cases.append(("cuda", "device 'cuda' requested but CUDA is not available"))
    for device, message in cases:
        for make in (lambda: gym.make("HRM-Sudoku-v0", device=device),
                     lambda: gym.make_vec("HRM-Sudoku-v0", num_envs=2, device=device)):
            with pytest.raises(ValueError, match=message):
                make()


def test_an_arc_csv_with_a_byte_order_mark_reads_as_without(tmp_path):
    ckpt = load_checkpoint("arc-tiny")
    plain = tmp_path / "plain.csv"
    ckpt.task.write_csv(plain, ckpt.test_puzzles().take(slice(0, 3)))
    bom = tmp_path / "bom.csv"
    bom.write_bytes(b"\xef\xbb\xbf" + plain.read_bytes())
    a, b = ckpt.task.read_csv(plain), ckpt.task.read_csv(bom)
    np.testing.assert_array_equal(a.inputs, b.inputs)
    np.testing.assert_array_equal(a.labels, b.labels)


# --- recordings whose internals are broken ---------------------------------------------------

@pytest.fixture(scope="module")
def recording(tmp_path_factory) -> Path:
    from hrm_rl.envs.rollouts import record_rollouts

    return record_rollouts("sudoku4", "test", tmp_path_factory.mktemp("rec") / "r.npz",
                           episodes=6, max_segments=3, progress=False)


def _rewrite(src: Path, dst: Path, identity_text=None, checksum=True, **arrays) -> Path:
    from hrm_rl.trace import arrays_sha256

    with np.load(src, allow_pickle=False) as data:
        files = {k: data[k] for k in data.files}
    identity = json.loads(str(files.pop("identity")))
    files.update(arrays)
    if checksum:
        identity["arrays_sha256"] = arrays_sha256(
            {k: v for k, v in files.items() if k != "puzzles_csv"})
    text = json.dumps(identity) if identity_text is None else identity_text
    np.savez(dst, identity=np.array(text), **files)
    return dst


def test_broken_recording_internals_are_named_against_the_npz(recording, tmp_path):
    from hrm_rl.trace import load_trace

    with np.load(recording) as data:
        features, puzzle, csv = data["features"], data["puzzle"], str(data["puzzles_csv"])
    cases = {
        "shapes.npz": (dict(features=features[:, :2]), "shape"),
        "keys.npz": (dict(puzzle=puzzle + 100), "puzzle keys outside"),
        "puzzles.npz": (dict(puzzles_csv=np.array(csv.replace("sudoku4,", "x,.1", 1))),
                        "its puzzles do not load"),
    }
    for name, (arrays, message) in cases.items():
        path = _rewrite(recording, tmp_path / name, **arrays)
        with pytest.raises(ValueError, match=message) as err:
            load_trace(path)
        assert str(path) in str(err.value) and "/tmp" not in str(err.value).replace(
            str(tmp_path), ""), name
    bad_json = _rewrite(recording, tmp_path / "json.npz", identity_text="{not json")
    with pytest.raises(ValueError, match="json.npz: its identity is not valid JSON"):
        load_trace(bad_json)


# --- outputs: temporary file and rename, an existing one refused ----------------------------

def test_halt_eval_per_puzzle_refuses_an_existing_file_unless_forced(recording, tmp_path,
                                                                     capsys):
    out = tmp_path / "per.csv"
    out.write_text("an earlier result\n")
    argv = ["halt", "eval", "--trace", str(recording), "--policies", "qhead,fixed:2",
            "--per-puzzle", str(out), "--out-dir", str(tmp_path / "figs"), "--no-progress"]
    assert main(argv) == 2
    assert f"--per-puzzle {out} exists" in capsys.readouterr().err
    assert out.read_text() == "an earlier result\n"
    assert main(argv + ["--force"]) == 0
    assert out.read_text().startswith("puzzle,question")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["figs", "per.csv"]


# --- found by the hostile catalogue (scripts/hostile.py) ------------------------------------

def _flip(path: Path, count: int = 64) -> None:
    data = bytearray(path.read_bytes())
    start = 8 + int.from_bytes(data[:8], "little")
    for i in range(count):
        data[start + (i * 997) % (len(data) - start)] ^= 0xFF
    path.write_bytes(bytes(data))


def test_init_from_checks_the_weights_sha256(run8, tmp_path, data_dir):
    ckpt = shutil.copytree(run8 / "checkpoints" / "step_0000008", tmp_path / "ck")
    _flip(ckpt / "model.safetensors")
    config = load_config(None, [*TINY_RUN, *_tiny_sets(data_dir), f"train.init_from={ckpt}"])
    with pytest.raises(ValueError, match=r"train.init_from=.*ck.*model.safetensors: its SHA-256"):
        ACTTrainer(config, tmp_path / "run", progress=False)


def test_a_resume_refuses_checkpoints_stripped_of_their_trainer_state(run8, tmp_path, capsys):
    run = _copy(run8, tmp_path)
    for state in run.rglob("trainer_state.pt"):
        state.unlink()
    before = {p: p.read_bytes() for p in run.rglob("*.safetensors")}
    assert main(["train", "--resume", str(run), "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert "trainer_state.pt is missing: step_0000004, step_0000008 hold weights" in err
    assert {p: p.read_bytes() for p in run.rglob("*.safetensors")} == before  # untouched


def test_halt_refuses_a_checkpoint_of_another_task_than_the_env(capsys):
    assert main(["halt", "eval", "--env", "HRM-Maze-v0", "--env-kwargs", "checkpoint=sudoku4",
                 "--policies", "qhead", "--no-progress"]) == 2
    assert ("--env-kwargs checkpoint=sudoku4: a sudoku core, and --env HRM-Maze-v0 is for maze "
            "cores; give --env HRM-Sudoku-v0") in capsys.readouterr().err


def test_a_bad_value_from_an_extended_base_names_the_base(tmp_path):
    from hrm_rl.config import ConfigError

    (tmp_path / "base.yaml").write_text("train: {lr: -1}\n")
    (tmp_path / "child.yaml").write_text("extends: base.yaml\nname: x\n")
    with pytest.raises(ConfigError, match=r"base.yaml \(extended by .*child.yaml\): train.lr"):
        load_config(tmp_path / "child.yaml")
    with pytest.raises(ConfigError) as err:  # a --set is named as the file's, as before
        load_config(tmp_path / "child.yaml", ["train.lr=-2"])
    assert str(err.value).startswith(str(tmp_path / "child.yaml"))


@pytest.mark.parametrize("unbuffered", ["1", ""])
def test_stdout_on_a_full_device_is_an_error_naming_it(unbuffered):
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO),
           "PYTHONUNBUFFERED": unbuffered}
    with open("/dev/full", "w") as full:
        done = subprocess.run([sys.executable, "-m", "hrm_rl.cli", "params", "sudoku4-tiny"],
                              stdout=full, stderr=subprocess.PIPE, text=True, env=env,
                              timeout=300)
    assert done.returncode == 2
    assert done.stderr == ("hrm-rl params: error: could not write standard output (No space "
                           "left on device)\n")


def test_a_checkpoint_that_is_no_name_or_path_is_a_type_error():
    from hrm_rl.envs.halting import HaltingEnv

    with pytest.raises(TypeError, match="checkpoint must be a bundled name or a path, got 3"):
        HaltingEnv(checkpoint=3)


def test_a_corrupt_trainer_state_is_named_in_one_line(run8, tmp_path, capsys):
    run = _copy(run8, tmp_path)
    (run / "checkpoints" / "step_0000008" / "trainer_state.pt").write_bytes(b"\x00garbage")
    assert main(["train", "--resume", str(run), "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "trainer_state.pt: unreadable trainer state" in err


@pytest.mark.slow
def test_the_hostile_catalogue_quick_meets_the_bounds(tmp_path):
    """``scripts/hostile.py --quick``: no crash, silent-wrong or data-loss; at most 5
    unclear errors."""
    out = tmp_path / "hostile.json"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO)}
    done = subprocess.run([sys.executable, str(REPO / "scripts" / "hostile.py"), "--quick",
                           "--out", str(out)], capture_output=True, text=True, env=env,
                          timeout=1200)
    counts = json.loads(out.read_text())["counts"]
    assert counts["crash"] == counts["silent-wrong"] == counts["data-loss"] == 0, done.stdout
    assert counts["unclear"] <= 5, done.stdout
    assert counts["clear"] + counts["ok"] >= 40 and done.returncode == 0, done.stdout


def test_ctrl_c_while_the_command_still_imports_is_one_line(monkeypatch, capsys):
    import hrm_rl.cli as cli

    def interrupted():
        raise KeyboardInterrupt

    monkeypatch.setattr(cli, "build_parser", interrupted)
    assert cli.main(["eval", "sudoku4", "--data", "test"]) == 130
    assert capsys.readouterr().err == "hrm-rl: interrupted\n"


def test_a_writer_thread_that_meets_a_full_disk_prints_no_traceback_of_its_own():
    code = ("import errno, threading\n"
            "from hrm_rl.cli import _quiet_writer_threads\n"
            "_quiet_writer_threads(); _quiet_writer_threads()\n"
            "def full(): raise OSError(errno.ENOSPC, 'No space left on device')\n"
            "def other(): raise RuntimeError('a real bug')\n"
            "for f in (full, other):\n"
            "    t = threading.Thread(target=f); t.start(); t.join()\n")
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          env=env, timeout=120)
    assert "No space left" not in done.stderr  # the main thread reports it, once
    assert done.stderr.count("Traceback") == 1 and "a real bug" in done.stderr


@pytest.mark.parametrize("where", ["events", "metrics"])
def test_a_full_disk_while_logging_is_named_too(data_dir, tmp_path, monkeypatch, where):
    import builtins

    run = tmp_path / "run"
    trainer = ACTTrainer(load_config(None, [*TINY_RUN, *_tiny_sets(data_dir)]), run,
                         progress=False)

    def full(*args, **kwargs):
        if trainer.step >= 6:
            raise OSError(errno.ENOSPC, "No space left on device")
        return builtins.open(*args, **kwargs) if where == "metrics" else None

    if where == "events":
        monkeypatch.setattr(trainer.writer, "add_scalar", full)
    else:  # the run folder's own open(): metrics.jsonl
        monkeypatch.setattr("hrm_rl.run_dir.open", full, raising=False)
    with pytest.raises(OSError) as err:
        trainer.fit()
    named = (f"the TensorBoard events in {run}" if where == "events"
             else f"{run}/metrics.jsonl")
    assert str(err.value).endswith(
        f"no space left while writing {named}; the last complete checkpoint is step 4; free "
        f"space and resume: hrm-rl train --resume {run}")
