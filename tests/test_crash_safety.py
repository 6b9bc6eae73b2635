"""Crash safety and resume semantics (issue #17, items 6-8): a kill during the first
checkpoint write, torn ``latest`` pointers, metrics without duplicate steps, the last-known-good
checkpoint, resuming a finished run, Ctrl-C / SIGTERM, EMA and config edits on resume, and the
architecture fingerprint of the weights. Tiny configs (``conftest.TINY_RUN``)."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from safetensors import safe_open
from safetensors.torch import load_file
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from hrm_rl.agents.trainer import ACTTrainer, TrainingInterrupted
from hrm_rl.checkpoint import (CONFIG, FINGERPRINT_KEY, TRAINER_STATE, WEIGHTS,
                               architecture_fingerprint, load_checkpoint, load_trainer_state,
                               resolve_checkpoint, stamp_architecture)
from hrm_rl.cli import main
from hrm_rl.config import ConfigError, load_config
from hrm_rl.evaluation import EvalResult
from hrm_rl.run_dir import METRICS_FILE, RunLock

from conftest import TINY_RUN as TINY, metrics, tiny_run_config as tiny, tiny_yaml

REPO = Path(__file__).resolve().parent.parent

STEPS, EVERY = 8, 4  # the shared run: checkpoints at steps 4 and 8


@pytest.fixture(scope="module")
def run8(tmp_path_factory, data_dir):
    """A finished, uninterrupted 8-step run (its metrics are the reference curve)."""
    run = tmp_path_factory.mktemp("run8") / "run"
    ACTTrainer(tiny(data_dir, f"train.steps={STEPS}", f"train.checkpoint_every={EVERY}"), run,
               progress=False).fit()
    return run


def copy_run(run: Path, tmp_path: Path, name: str = "copy") -> Path:
    dst = tmp_path / name
    shutil.copytree(run, dst, ignore=shutil.ignore_patterns(".lock"))
    return dst


def steps_of(run: Path) -> list[int]:
    return [row["step"] for row in metrics(run)]


def config_file(tmp_path: Path, data_dir: Path, *sets: str) -> Path:
    return tiny_yaml(tmp_path / "tiny.yaml", f"data.cache_dir={data_dir}", *sets)


# ================================================================= 6a/6b kills and restarts

_DIE_WRITING_STATE = """
import os, sys
from pathlib import Path
import hrm_rl.checkpoint as ckpt
real = ckpt.atomic_write
def dying(path, write):
    if Path(path).name == ckpt.TRAINER_STATE:   # the first checkpoint, half written
        tmp = Path(path).parent / f".{Path(path).name}.killed.tmp"
        write(str(tmp))
        os._exit(137)                             # as a kill -9 would: nothing runs after
    real(path, write)
ckpt.atomic_write = dying
from hrm_rl.cli import main
sys.exit(main(sys.argv[1:]))
"""


def test_kill_during_the_first_checkpoint_write_then_resume_starts_afresh(
        run8, data_dir, tmp_path, capsys):
    run = tmp_path / "killed"
    cfg = config_file(tmp_path, data_dir, f"train.steps={STEPS}",
                      f"train.checkpoint_every={EVERY}")
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO)}
    proc = subprocess.run([sys.executable, "-c", _DIE_WRITING_STATE, "train", str(cfg),
                           "--run-dir", str(run), "--no-progress"], env=env, cwd=tmp_path,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 137, proc.stderr
    root = run / "checkpoints"
    assert not (root / "latest").exists() and not (root / "step_0000004" / CONFIG).exists()
    assert steps_of(run) == [1, 2, 3, 4]  # figures of steps that no checkpoint holds

    # starting it again into the same folder is refused with the way out ...
    assert main(["train", str(cfg), "--run-dir", str(run), "--no-progress"]) == 2
    assert f"--resume {run}" in capsys.readouterr().err
    # ... and the resume starts afresh, saying so, instead of "no checkpoint"
    assert main(["train", "--resume", str(run), "--no-progress"]) == 0
    err = capsys.readouterr().err
    assert "no complete checkpoint in" in err and "starting it afresh at step 0" in err
    assert "removed what a killed save left" in err and "step_0000004/" in err
    assert f"resuming {run} at step 0" in err
    assert steps_of(run) == list(range(1, STEPS + 1))  # no step twice
    assert metrics(run) == metrics(run8)  # and the very same curve as an uninterrupted run
    assert not list(root.rglob("*.tmp"))


@pytest.mark.parametrize("damage, resumed_at, note", [
    ("no_latest", 8, "latest is missing"),
    ("latest_nowhere", 8, "names step_0000099, which is not a complete checkpoint"),
    ("torn_newest", 4, "names step_0000008, which is not a complete checkpoint"),
])
def test_resume_falls_back_to_the_newest_complete_checkpoint(run8, tmp_path, damage,
                                                             resumed_at, note):
    run = copy_run(run8, tmp_path)
    root = run / "checkpoints"
    if damage == "no_latest":  # killed after the folder was complete, before the pointer
        (root / "latest").unlink()
    elif damage == "latest_nowhere":
        (root / "latest").write_text("step_0000099")
    else:  # killed while writing step 8 (torn: no config.json) with latest already on it
        (root / "step_0000008" / CONFIG).unlink()
    trainer = ACTTrainer.resume(run, [f"train.steps={STEPS}"], progress=False)
    assert trainer.step == resumed_at
    assert any(note in n and f"resuming from the newest complete checkpoint, "
               f"step_{resumed_at:07d}" in n for n in trainer.notes), trainer.notes
    assert (root / "latest").read_text() == f"step_{resumed_at:07d}"
    assert steps_of(run) == list(range(1, resumed_at + 1))  # cut back to the checkpoint
    trainer.fit()
    assert metrics(run) == metrics(run8)


def test_restart_after_a_kill_before_the_first_checkpoint_keeps_no_duplicate_rows(
        run8, data_dir, tmp_path, capsys):
    run = copy_run(run8, tmp_path)
    shutil.rmtree(run / "checkpoints")  # config.yaml, metrics and events of 8 steps, no ckpt
    cfg = config_file(tmp_path, data_dir, f"train.steps={STEPS}",
                      f"train.checkpoint_every={EVERY}")
    before = _snapshot(run)
    # a fresh start is refused (the folder holds a run's figures), writing nothing ...
    assert main(["train", str(cfg), "--run-dir", str(run), "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert f"{run} already holds a run (figures in {run / METRICS_FILE})" in err
    assert f"--resume {run}" in err
    assert _snapshot(run) == before
    # ... and the resume starts it afresh, replacing those figures
    assert main(["train", "--resume", str(run), "--no-progress"]) == 0
    assert "starting it afresh at step 0" in capsys.readouterr().err
    assert metrics(run) == metrics(run8)
    acc = EventAccumulator(str(run))
    acc.Reload()
    assert [e.step for e in acc.Scalars("train/lm_loss")] == list(range(1, STEPS + 1))


def test_a_fresh_start_over_debris_of_a_killed_first_save_is_allowed(data_dir, tmp_path,
                                                                     capsys):
    run = tmp_path / "run"
    (run / "checkpoints" / "step_0000004").mkdir(parents=True)  # torn, no config.yaml beside
    (run / "checkpoints" / ".test.csv.x1.tmp").write_text("half")
    cfg = config_file(tmp_path, data_dir, "train.steps=2")
    assert main(["train", str(cfg), "--run-dir", str(run), "--no-progress"]) == 0
    assert sorted(p.name for p in (run / "checkpoints").iterdir()) == [
        "best", "latest", "step_0000002", "test.csv"]  # the final evaluation is the best
    assert main(["train", str(cfg), "--from", "best", "--no-progress"]) == 2
    assert "--from NAME picks the checkpoint of --resume RUN_DIR" in capsys.readouterr().err


# ================================================================= 6c last known good


def _scripted_evaluate(scores: dict[int, float]):
    """An ``ACTTrainer.evaluate`` that returns ``scores[step]`` (0.1 otherwise)."""
    def evaluate(self, n=None, max_segments=None):
        x = scores.get(self.step, 0.1)
        k = self.config.train.max_segments
        return EvalResult(n=16, max_segments=k, exact_by_segment=[x] * k,
                          cell_by_segment=[x] * k, exact_acc_qhalt=x, cell_acc_qhalt=x,
                          mean_segments_qhalt=1.0, segments_qhalt_histogram=[16] + [0] * (k - 1))
    return evaluate


def test_best_checkpoint_outlives_the_rotation_loads_and_resumes(data_dir, tmp_path,
                                                                 monkeypatch, capsys):
    # evaluations at 2, 4, 6, 8 (+ final): 0.5, 0.9 (best), then a divergence
    monkeypatch.setattr(ACTTrainer, "evaluate", _scripted_evaluate({2: 0.5, 4: 0.9, 6: 0.2}))
    run = tmp_path / "run"
    ACTTrainer(tiny(data_dir, "train.steps=8", "train.eval_every=2",
                    "train.checkpoint_every=3"), run, progress=False).fit()
    root = run / "checkpoints"
    # step 4 was no checkpoint step: its best evaluation was saved, and kept beside the two
    # newest checkpoints although the rotation keeps two
    assert sorted(p.name for p in root.glob("step_*")) == ["step_0000004", "step_0000006",
                                                           "step_0000008"]
    assert (root / "best").read_text() == "step_0000004"
    assert (root / "latest").read_text() == "step_0000008"
    best = load_checkpoint(root / "best")
    assert best.path == root / "step_0000004" and best.meta["eval"]["exact_acc_qhalt"] == 0.9
    assert load_trainer_state(best.path)["best"] == {"step": 4, "exact_acc_qhalt": 0.9,
                                                     "cell_acc_qhalt": 0.9}

    assert main(["eval", str(root / "best"), "--data", str(root / "test.csv"),
                 "--no-progress"]) == 0
    assert json.loads(capsys.readouterr().out)["checkpoint"] == str(root / "step_0000004")

    # continue from it (e.g. with a lower lr): latest moves back, later history goes
    assert main(["train", "--resume", str(run), "--from", "best", "--set", "train.steps=9",
                 "--set", "train.lr=5e-4", "--no-progress"]) == 0
    err = capsys.readouterr().err
    assert ("continuing from step_0000004 instead of step_0000008: latest names it now; "
            "removed the later checkpoints step_0000006, step_0000008") in err
    assert f"resuming {run} at step 4" in err
    assert steps_of(run) == list(range(1, 10))
    assert sorted(p.name for p in root.glob("step_*")) == ["step_0000004", "step_0000006",
                                                           "step_0000009"]
    assert (root / "best").read_text() == "step_0000004"
    assert load_trainer_state(root / "step_0000006")["optimizer"]["param_groups"][0][
        "lr"] == pytest.approx(5e-4)  # the new step 6, not the diverged one


def test_resume_from_a_checkpoint_that_is_not_there_names_the_choices(run8, capsys):
    assert main(["train", "--resume", str(run8), "--from", "step_0000005",
                 "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert "step_0000005 is not a complete checkpoint" in err
    assert "step_0000004, step_0000008" in err


# ================================================================= 6d nothing left to train


def _snapshot(run: Path) -> dict[str, bytes]:
    """Every checkpoint file and the metrics, by path (what a resume must not write)."""
    files = [run / METRICS_FILE, run / "summary.json", run / "config.yaml",
             *sorted((run / "checkpoints").rglob("*"))]
    return {str(p): p.read_bytes() for p in files if p.is_file()}


def test_resuming_a_run_that_spent_its_time_budget_trains_nothing(data_dir, tmp_path, capsys):
    run = tmp_path / "run"
    trainer = ACTTrainer(tiny(data_dir, "train.steps=100000", "train.max_time_s=0.3",
                              "train.checkpoint_every=100000", "train.eval_every=100000"),
                         run, progress=False)
    trainer.fit()
    steps = trainer.step
    before = _snapshot(run)
    for _ in range(2):  # it used to add one step on every resume
        assert main(["train", "--resume", str(run), "--no-progress"]) == 0
        out, err = capsys.readouterr()
        assert "has spent its time budget, train.max_time_s=0.3" in err
        assert "to train longer: hrm-rl train --resume" in err
        assert "--set train.max_time_s=" in err
        assert json.loads(out)["steps"] == steps
        assert _snapshot(run) == before  # no step, checkpoint or metrics row
    assert main(["train", "--resume", str(run), "--set", "train.max_time_s=1000", "--set",
                 f"train.steps={steps + 2}", "--no-progress"]) == 0
    assert json.loads(capsys.readouterr().out)["steps"] == steps + 2


def test_resuming_a_run_that_reached_its_steps_trains_nothing(run8, tmp_path, capsys):
    run = copy_run(run8, tmp_path)
    before = _snapshot(run)
    assert main(["train", "--resume", str(run), "--no-progress"]) == 0
    err = capsys.readouterr().err
    assert f"is at step {STEPS} of train.steps={STEPS}: nothing to train" in err
    assert f"--set train.steps={2 * STEPS}" in err
    assert _snapshot(run) == before


# ================================================================= 6e Ctrl-C and SIGTERM


@pytest.mark.slow
def test_ctrl_c_saves_the_current_step_and_exits_130_without_a_traceback(data_dir, tmp_path):
    run = tmp_path / "run"
    cfg = config_file(tmp_path, data_dir, "train.steps=100000", "train.checkpoint_every=100000",
                      "train.eval_every=100000")
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO)}
    proc = subprocess.Popen([sys.executable, "-m", "hrm_rl.cli", "train", str(cfg),
                             "--run-dir", str(run), "--no-progress"], cwd=tmp_path, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            preexec_fn=_sigint_as_in_a_terminal)
    deadline = time.monotonic() + 120
    while proc.poll() is None and time.monotonic() < deadline and not (
            (run / METRICS_FILE).is_file()
            and len((run / METRICS_FILE).read_text().splitlines()) >= 3):
        time.sleep(0.02)
    assert proc.poll() is None, proc.stderr.read()
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err
    assert "Traceback" not in err
    last = err.strip().splitlines()[-1]
    step = steps_of(run)[-1]  # the step in progress finished, then was saved
    folder = run / "checkpoints" / f"step_{step:07d}"
    assert last == (f"hrm-rl train: interrupted by SIGINT at step {step}; saved {folder}; "
                    f"continue with: hrm-rl train --resume {run}")
    assert resolve_checkpoint(run) == folder and load_trainer_state(folder)["step"] == step
    RunLock(run).release()  # the lock is free

    # the checkpoint is a whole state: the continuation matches an uninterrupted run
    resumed = ACTTrainer.resume(run, [f"train.steps={step + 3}"], progress=False)
    resumed.fit()
    ref = ACTTrainer(tiny(data_dir, f"train.steps={step + 3}", "train.checkpoint_every=100000",
                          "train.eval_every=100000"), tmp_path / "ref", progress=False)
    ref.fit()
    assert metrics(run) == metrics(tmp_path / "ref")


def _sigint_as_in_a_terminal() -> None:
    """In the child before exec: SIGINT at its default, as a terminal gives it (a test run
    from a background shell would pass on SIGINT ignored, and Ctrl-C is then a no-op)."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def _not_ignored(getsignal):
    """``signal.getsignal`` that reports an ignored signal as the default: the trainer then
    installs its handler, as it does in a foreground shell."""
    def wrapped(sig):
        handler = getsignal(sig)
        return signal.SIG_DFL if handler is signal.SIG_IGN else handler
    return wrapped


def _signal_at(monkeypatch, step: int, *signals: int) -> None:
    """Make ``train_step`` deliver ``signals`` to this process once it reaches ``step``
    (inside the step, as a signal arriving mid-step would)."""
    real = ACTTrainer.train_step
    for sig in signals:   # a test run in a background shell inherits SIGINT ignored
        if signal.getsignal(sig) is signal.SIG_IGN:
            monkeypatch.setattr(signal, "getsignal", _not_ignored(signal.getsignal))

    def train_step(self):
        stats = real(self)
        if self.step == step:
            for sig in signals:
                os.kill(os.getpid(), sig)
        return stats

    monkeypatch.setattr(ACTTrainer, "train_step", train_step)


def test_sigterm_saves_the_current_step_and_exits_143(data_dir, tmp_path, monkeypatch,
                                                      capsys):
    _signal_at(monkeypatch, 3, signal.SIGTERM)
    handler = signal.getsignal(signal.SIGTERM)
    run = tmp_path / "run"
    cfg = config_file(tmp_path, data_dir, "train.steps=20", "train.checkpoint_every=100")
    assert main(["train", str(cfg), "--run-dir", str(run), "--no-progress"]) == 143
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1] == (f"hrm-rl train: interrupted by SIGTERM at step 3; saved "
                       f"{run / 'checkpoints' / 'step_0000003'}; continue with: "
                       f"hrm-rl train --resume {run}")
    assert signal.getsignal(signal.SIGTERM) is handler  # put back
    RunLock(run).release()


def test_a_second_ctrl_c_stops_at_once_without_a_checkpoint(data_dir, tmp_path, monkeypatch):
    _signal_at(monkeypatch, 6, signal.SIGINT, signal.SIGINT)
    run = tmp_path / "run"
    trainer = ACTTrainer(tiny(data_dir, "train.steps=20", "train.checkpoint_every=4"), run,
                         progress=False)
    with pytest.raises(TrainingInterrupted) as err:
        trainer.fit()
    assert err.value.checkpoint is None and err.value.exit_code == 130
    assert ("stopped at once by SIGINT after step 6, in the middle of what followed, which "
            "is not saved; the latest checkpoint is step_0000004; continue with: hrm-rl train "
            f"--resume {run}") == str(err.value)
    assert resolve_checkpoint(run).name == "step_0000004"
    assert not trainer.lock.held


# ================================================================= 7 resume semantics


def test_resume_with_ema_turned_off_continues_from_the_raw_weights(data_dir, tmp_path):
    ema = ["train.ema_decay=0.9", "train.checkpoint_every=4"]
    ref = ACTTrainer(tiny(data_dir, "train.steps=8", *ema), tmp_path / "ref", progress=False)
    ref.fit()
    ACTTrainer(tiny(data_dir, "train.steps=4", *ema), tmp_path / "part", progress=False).fit()
    folder = resolve_checkpoint(tmp_path / "part")
    raw = load_trainer_state(folder)["raw_weights"]
    averaged = load_file(folder / WEIGHTS)
    resumed = ACTTrainer.resume(tmp_path / "part", ["train.ema_decay=null", "train.steps=8"],
                                progress=False)
    assert resumed.ema is None
    for name, param in resumed.model.named_parameters():
        assert torch.equal(param.detach(), raw[name])
    assert any(not torch.equal(raw[n], averaged[n]) for n in raw)
    resumed.fit()
    assert metrics(tmp_path / "part") == metrics(tmp_path / "ref")  # EMA never steers training
    for a, b in zip(ref.model.parameters(), resumed.model.parameters()):
        assert torch.equal(a, b)


def test_ema_turned_on_or_changed_on_resume_is_honoured(run8, tmp_path):
    on = ACTTrainer.resume(copy_run(run8, tmp_path, "a"), ["train.ema_decay=0.5"],
                           progress=False)
    assert on.ema is not None and on.ema.decay == 0.5 and on.ema.num_updates == 0
    for name, param in on.model.named_parameters():  # from the trained weights, not the init
        assert torch.equal(on.ema.shadow[name], param.detach())
    on.lock.release()


def test_resume_refuses_a_new_batch_size_naming_the_key(run8, capsys):
    assert main(["train", "--resume", str(run8), "--set", "train.batch_size=64",
                 "--no-progress"]) == 2
    assert ("--set train.batch_size: cannot change when resuming (the saved optimizer and "
            "engine state are for batch_size=16)") in capsys.readouterr().err


def _edit_yaml(run: Path, section: str, key: str, value) -> None:
    data = yaml.safe_load((run / "config.yaml").read_text())
    data[section][key] = value
    (run / "config.yaml").write_text(yaml.safe_dump(data))


def test_train_settings_edited_in_config_yaml_are_honoured_with_a_note(run8, tmp_path, capsys):
    run = copy_run(run8, tmp_path)
    _edit_yaml(run, "train", "steps", 10)
    _edit_yaml(run, "train", "lr", 5e-4)
    _edit_yaml(run, "train", "log_every", 2)
    assert main(["train", "--resume", str(run), "--set", "train.log_every=1",
                 "--no-progress"]) == 0
    err = capsys.readouterr().err
    assert (f"note: {run / 'config.yaml'} was edited since checkpoint step_0000008: "
            "train.log_every 1 -> 2, train.lr 0.001 -> 0.0005, train.steps 8 -> 10; resuming "
            "with the edited values") in err
    assert steps_of(run) == list(range(1, 11))  # --set log_every=1 won over the edit
    saved = load_checkpoint(run).config.train
    assert (saved.steps, saved.lr, saved.log_every) == (10, 5e-4, 1)
    assert yaml.safe_load((run / "config.yaml").read_text())["train"]["lr"] == 5e-4


@pytest.mark.parametrize("section, key, value, message", [
    ("model", "H_cycles", 5, "config.yaml: model.H_cycles 1 -> 5 edited since checkpoint "
                             "step_0000008; only train.* settings can change when resuming"),
    ("train", "batch_size", 64, "config.yaml: train.batch_size: cannot change when resuming "
                                "(the saved optimizer and engine state are for batch_size=16)"),
])
def test_config_yaml_edits_the_checkpoint_cannot_follow_are_refused(run8, tmp_path, capsys,
                                                                    section, key, value,
                                                                    message):
    run = copy_run(run8, tmp_path)
    _edit_yaml(run, section, key, value)
    assert main(["train", "--resume", str(run), "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert "hrm-rl train: error:" in err and message in err
    RunLock(run).release()  # refused without keeping the folder locked


@pytest.mark.filterwarnings("ignore::FutureWarning")  # the --set with the former name
def test_a_run_saved_with_the_former_name_halt_max_steps_resumes_unchanged(run8, tmp_path):
    """Runs before the rename saved ``train.halt_max_steps``: they resume with the same cap
    (a --set may use either name), and what they save from then on uses ``max_segments``."""
    run = copy_run(run8, tmp_path)
    step = run / "checkpoints" / "step_0000008" / "config.json"
    for path, read, write in ((run / "config.yaml", yaml.safe_load, yaml.safe_dump),
                              (step, json.loads, json.dumps)):
        data = read(path.read_text())
        train = (data["run"] if path == step else data)["train"]
        train["halt_max_steps"] = train.pop("max_segments")
        path.write_text(write(data))
    with pytest.raises(ConfigError, match="--set train.max_segments: cannot change when resuming"):
        ACTTrainer.resume(run, ["train.halt_max_steps=3"])
    resumed = ACTTrainer.resume(run, ["train.halt_max_steps=4", "train.steps=10"],
                                progress=False)
    assert resumed.config.train.max_segments == 4
    resumed.fit()
    assert steps_of(run) == list(range(1, 11))
    saved = json.loads((run / "checkpoints" / "step_0000010" / "config.json").read_text())
    assert saved["run"]["train"]["max_segments"] == 4
    assert "halt_max_steps" not in saved["run"]["train"]


# ================================================================= 8 architecture fingerprint


def _edit_config_json(folder: Path, **model) -> None:
    payload = json.loads((folder / CONFIG).read_text())
    payload["model"].update(model)
    (folder / CONFIG).write_text(json.dumps(payload))


def test_weights_carry_the_architecture_fingerprint(run8):
    ckpt = load_checkpoint(run8)
    with safe_open(str(ckpt.path / WEIGHTS), framework="pt") as f:
        meta = f.metadata()
    assert meta[FINGERPRINT_KEY] == architecture_fingerprint(ckpt.model.config)
    assert json.loads(meta["hrm_rl.architecture"])["H_cycles"] == 1


def test_an_edited_config_json_is_refused_naming_the_key(run8, tmp_path, capsys):
    run = copy_run(run8, tmp_path)
    folder = resolve_checkpoint(run)
    _edit_config_json(folder, H_cycles=5)  # every weight keeps its shape
    message = (f"{folder / WEIGHTS} was saved for another model architecture than its "
               "config.json describes (H_cycles=1 in the weights but 5 in config.json)")
    with pytest.raises(ValueError) as err:
        load_checkpoint(folder)
    assert message in str(err.value)
    assert main(["eval", str(run), "--data", str(folder / "test.csv"), "--no-progress"]) == 2
    assert message in capsys.readouterr().err
    assert main(["train", "--resume", str(run), "--set", "train.steps=9",
                 "--no-progress"]) == 2
    assert message in capsys.readouterr().err
    _edit_config_json(folder, H_cycles=1, gradient="bptt")  # training only: not architecture
    load_checkpoint(folder)


def test_checkpoints_without_a_fingerprint_load_and_can_be_stamped(tmp_path):
    from safetensors.torch import save_file

    for name in ("sudoku4", "maze6"):  # bundled: stamped
        with safe_open(str(resolve_checkpoint(name) / WEIGHTS), framework="pt") as f:
            assert FINGERPRINT_KEY in (f.metadata() or {})
    folder = tmp_path / "sudoku4"  # as saved before fingerprints: no metadata, no hash
    shutil.copytree(resolve_checkpoint("sudoku4"), folder)
    save_file(load_file(folder / WEIGHTS), folder / WEIGHTS)
    with pytest.raises(ValueError, match="SHA-256"):  # the bundled config records the hash
        load_checkpoint(folder)
    payload = json.loads((folder / "config.json").read_text())
    del payload["meta"]["weights_sha256"]
    (folder / "config.json").write_text(json.dumps(payload))
    load_checkpoint(folder)  # loads unchecked
    assert stamp_architecture(folder) and not stamp_architecture(folder)
    original = load_file(resolve_checkpoint("sudoku4") / WEIGHTS)
    stamped = load_file(folder / WEIGHTS)
    assert original.keys() == stamped.keys()
    assert all(torch.equal(original[k], stamped[k]) for k in original)
    hc = load_checkpoint(folder).model.config.H_cycles
    _edit_config_json(folder, H_cycles=hc + 3)
    with pytest.raises(ValueError, match=f"H_cycles={hc} in the weights but {hc + 3}"):
        load_checkpoint(folder)
    assert not (folder / TRAINER_STATE).exists()


# --- kill -9 and resume -------------------------------------------------------------------

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


def _start_train(args: list[str], cwd: Path) -> subprocess.Popen:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO)}
    return subprocess.Popen([sys.executable, "-m", "hrm_rl.cli", "train", *args,
                             "--no-progress"], cwd=cwd, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


@pytest.mark.slow
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


# --- one live process per run folder ---------------------------------------------------

def test_a_run_folder_takes_one_live_process(tmp_path, data_dir, capsys):
    from hrm_rl.run_dir import RunLock, RunLockedError

    run = tmp_path / "run"
    first = ACTTrainer(tiny(data_dir, "train.steps=2"), run, progress=False)
    with pytest.raises(RunLockedError, match=f"pid {os.getpid()}"):
        ACTTrainer(tiny(data_dir, "train.steps=2"), run, progress=False)
    first.lock.release()
    RunLock(run).release()  # free again once the holder let go


def test_a_lock_left_by_a_killed_process_is_not_in_the_way(tmp_path):
    from hrm_rl.run_dir import RunLock

    run = tmp_path / "run"
    holder = subprocess.Popen([sys.executable, "-c", "import sys, time\n"
                               "from hrm_rl.run_dir import RunLock\n"
                               f"lock = RunLock({str(run)!r}); print('held', flush=True); "
                               "time.sleep(60)"], stdout=subprocess.PIPE, text=True)
    assert holder.stdout.readline().strip() == "held"
    from hrm_rl.run_dir import RunLockedError
    with pytest.raises(RunLockedError):
        RunLock(run)
    holder.kill()
    holder.wait()
    RunLock(run).release()  # the kernel dropped the dead holder's lock


def test_default_run_names_are_unique_and_halt_train_keeps_a_model(tmp_path, capsys):
    from hrm_rl.run_dir import make_run_dir

    config = load_config(None, [])
    assert make_run_dir(config).name.endswith(f"-{os.getpid()}")
    (tmp_path / "model.zip").write_bytes(b"kept")
    assert main(["halt", "train", "--run-dir", str(tmp_path), "--timesteps", "8",
                 "--no-eval", "--no-progress"]) == 2
    assert "already holds a trained model.zip" in capsys.readouterr().err
    assert (tmp_path / "model.zip").read_bytes() == b"kept"


def test_stamping_the_architecture_keeps_the_recorded_weights_hash_true(tmp_path):
    from safetensors.torch import save_file

    folder = tmp_path / "maze6"
    shutil.copytree(resolve_checkpoint("maze6"), folder)
    save_file(load_file(folder / WEIGHTS), folder / WEIGHTS)  # no architecture metadata
    from hrm_rl.checkpoint import stamp_weights_sha256

    stamp_weights_sha256(folder)  # the hash of these bytes
    assert stamp_architecture(folder)  # rewrites the file...
    load_checkpoint(folder)  # ...and its hash with it


def test_linking_the_test_csv_twice_leaves_no_temporary_file(tmp_path):
    from hrm_rl.run_dir import _link_or_copy

    src = tmp_path / "test.csv"
    src.write_text("source,question,answer,rating\n")
    dst = tmp_path / "step" / "test.csv"
    dst.parent.mkdir()
    _link_or_copy(src, dst)
    _link_or_copy(src, dst)  # the last step saved twice
    assert sorted(p.name for p in dst.parent.iterdir()) == ["test.csv"]
    assert dst.read_text() == src.read_text()


def test_resume_finishes_the_final_evaluation_a_kill_cut_off(data_dir, tmp_path):
    """Killed after its last checkpoint, during the final evaluation: resuming owes the
    evaluation and summary.json, not "nothing to train"."""
    run = tmp_path / "run"
    ACTTrainer(tiny(data_dir, "train.steps=4", "train.checkpoint_every=2"), run,
               progress=False).fit()
    expected = json.loads((run / "summary.json").read_text())
    (run / "summary.json").unlink()  # as if killed before it was written
    summary = ACTTrainer.resume(run, progress=False).fit()
    assert "note" not in summary and summary["steps"] == 4
    assert summary["eval"] == expected["eval"]  # the same weights evaluate the same
    assert json.loads((run / "summary.json").read_text())["eval"] == expected["eval"]
    again = ACTTrainer.resume(run, progress=False).fit()  # now there is nothing owed
    assert "nothing to train" in again["note"]
    assert not list(resolve_checkpoint(run).glob(".*"))  # no temporary file left behind
