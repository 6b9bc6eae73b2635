"""Checkpoints: safetensors weights with the full run config as JSON beside them.

A checkpoint is a folder holding ``model.safetensors`` and ``config.json``. Each file is
written to a temporary name, fsynced and renamed into place, so a crash never leaves a torn
file. A training run keeps its checkpoints as ``<run>/checkpoints/step_XXXXXXX/`` and a
``<run>/checkpoints/latest`` pointer that is updated (atomically) only after the folder it
names is complete.

A run checkpoint also holds ``trainer_state.pt``: everything beyond the weights that the
trainer needs to continue identically (optimizer state, step, elapsed time, RNG states, the
segment engine's rows and carries, the puzzle source's position); see
``ACTTrainer.state_dict``. ``config.json`` is always written last, so a folder with a
``config.json`` is complete.

``load_checkpoint`` accepts a checkpoint folder, a run folder, the ``latest`` pointer's
folder, or the name of a checkpoint bundled with the package (see ``bundled_checkpoints``).
Files that are missing, corrupt or do not fit their config raise ``ValueError`` (or
``FileNotFoundError``) naming the file.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file

from hrm_rl.config import ConfigError, ModelConfig, RunConfig, from_dict
from hrm_rl.model import RecurrentCore, build_model
from hrm_rl.tasks import PuzzleBatch, Task, make_task
from hrm_rl.tasks.base import HALTING_SPLITS

WEIGHTS = "model.safetensors"
CONFIG = "config.json"
TEST_PUZZLES = "test.csv"
TRAINER_STATE = "trainer_state.pt"
LATEST = "latest"
_KEEP = 2


@dataclass
class Checkpoint:
    """A loaded checkpoint: the core (in eval mode), its task and its run config."""

    model: RecurrentCore
    task: Task
    config: RunConfig
    meta: dict[str, Any]
    path: Path

    def test_puzzles(self) -> PuzzleBatch | None:
        """The run's held-out puzzles saved beside the weights, if any."""
        path = self.path / TEST_PUZZLES
        return self.task.read_csv(path) if path.is_file() else None

    def puzzles(self, split: str, progress: bool = False) -> PuzzleBatch:
        """The puzzles of ``split``: ``"test"`` (the core's held-out set), ``"train"`` or
        ``"val"`` (for halting research: disjoint from test up to symmetry, see
        ``Task.halting_split``), or the path of a CSV in the task's format.

        ``train`` and ``val`` are read from ``halting_<split>.csv`` beside the weights when
        the checkpoint ships one (the bundled cores do; ``write_halting_splits``), else
        generated from the core's data settings (the same puzzles every time; kept in
        memory for the process).

        Raises:
            ValueError: an unknown split, or a checkpoint without test puzzles.
        """
        if split in HALTING_SPLITS:
            test = self.test_puzzles()
            if test is None:
                raise ValueError(f"checkpoint {self.path} has no held-out puzzles "
                                 f"({TEST_PUZZLES}), so it has no {split!r} split; pass "
                                 "split=<path to a CSV of puzzles>")
            if split == "test":
                return test
            shipped = self.path / f"halting_{split}.csv"
            if shipped.is_file():
                return self.task.read_csv(shipped)
            key = (str(self.path.resolve()), split)
            if key not in _HALTING_CACHE:
                _HALTING_CACHE[key] = self.task.halting_split(split, self.config.data, test,
                                                              progress)
            return _HALTING_CACHE[key]
        if Path(split).is_file():
            return self.task.read_csv(split)
        raise ValueError(f"split must be one of {', '.join(HALTING_SPLITS)} or the path of a "
                         f"puzzle CSV, got {split!r}")


_HALTING_CACHE: dict[tuple[str, str], PuzzleBatch] = {}


def write_halting_splits(folder: str | Path, progress: bool = False) -> list[Path]:
    """Generate a checkpoint's halting ``train`` and ``val`` splits once and save them as
    ``halting_train.csv`` / ``halting_val.csv`` beside its weights (as the bundled cores
    ship them), so loading a split is a CSV read. Returns the files written."""
    ckpt = load_checkpoint(folder)
    written = []
    for split in ("train", "val"):
        target = ckpt.path / f"halting_{split}.csv"
        if target.exists():
            raise FileExistsError(f"{target} exists; remove it to regenerate")
        batch = ckpt.task.halting_split(split, ckpt.config.data, ckpt.puzzles("test"),
                                        progress)
        _fsync_write(target, lambda tmp, b=batch: ckpt.task.write_csv(tmp, b))
        written.append(target)
    return written


def bundled_checkpoints() -> dict[str, Path]:
    """Names and folders of the checkpoints shipped inside the package."""
    root = Path(str(resources.files("hrm_rl") / "checkpoints"))
    if not root.is_dir():
        return {}
    return {p.name: p for p in sorted(root.iterdir()) if (p / CONFIG).is_file()}


def _fsync_write(path: Path, write) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        write(tmp)
        with open(tmp, "rb") as f:
            os.fsync(f.fileno())
        os.chmod(tmp, 0o644)  # mkstemp creates 0600; checkpoints are meant to be shared
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _write_text(path: Path, text: str) -> None:
    def write(tmp: str) -> None:
        with open(tmp, "w") as f:
            f.write(text)

    _fsync_write(path, write)


def save_checkpoint(folder: str | Path, model: RecurrentCore, config: RunConfig,
                    meta: dict[str, Any] | None = None,
                    test_puzzles: tuple[Task, PuzzleBatch] | None = None,
                    trainer_state: dict[str, Any] | None = None,
                    test_csv: str | Path | None = None) -> Path:
    """Write ``model.safetensors`` and ``config.json`` into ``folder`` (created if needed),
    ``test.csv`` with the held-out puzzles when ``test_puzzles`` is given (or a hard link to
    the already written ``test_csv``), and ``trainer_state.pt`` (``torch.save``) when
    ``trainer_state`` is given.

    ``config.json`` holds ``{"run": <RunConfig>, "model": <resolved ModelConfig>, "meta": ...}``
    and is written last.
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().to("cpu").contiguous() for k, v in model.state_dict().items()}
    _fsync_write(folder / WEIGHTS, lambda tmp: save_file(state, tmp))
    payload = {"run": config.to_dict(), "model": model.config.__dict__, "meta": meta or {}}
    if test_puzzles is not None:
        task, puzzles = test_puzzles
        _fsync_write(folder / TEST_PUZZLES, lambda tmp: task.write_csv(tmp, puzzles))
    elif test_csv is not None:
        _link_or_copy(Path(test_csv), folder / TEST_PUZZLES)
    if trainer_state is not None:
        _fsync_write(folder / TRAINER_STATE, lambda tmp: torch.save(trainer_state, tmp))
    _write_text(folder / CONFIG, json.dumps(payload, indent=2, sort_keys=True))
    return folder


def _link_or_copy(src: Path, dst: Path) -> None:
    """Hard-link ``src`` to ``dst`` (replacing it), or copy atomically where links fail."""
    tmp = dst.with_name(f".{dst.name}.link")
    tmp.unlink(missing_ok=True)
    try:
        os.link(src, tmp)
    except OSError:
        _fsync_write(dst, lambda t: shutil.copyfile(src, t))
        return
    os.replace(tmp, dst)


def save_run_checkpoint(run_dir: str | Path, step: int, model: RecurrentCore, config: RunConfig,
                        meta: dict[str, Any] | None = None,
                        test_puzzles: tuple[Task, PuzzleBatch] | None = None,
                        trainer_state: dict[str, Any] | None = None) -> Path:
    """Save ``<run_dir>/checkpoints/step_<step>``, point ``latest`` at it, prune old ones.

    ``latest`` moves only after the new folder is complete, and older folders are removed
    only after that, so a crash at any point leaves ``latest`` naming a loadable checkpoint.
    """
    root = Path(run_dir) / "checkpoints"
    shared = None
    if test_puzzles is not None:  # written once per run, hard-linked into every checkpoint
        shared = root / TEST_PUZZLES  # (ARC at paper scale: hundreds of MB)
        if not shared.is_file():
            root.mkdir(parents=True, exist_ok=True)
            task, puzzles = test_puzzles
            _fsync_write(shared, lambda tmp: task.write_csv(tmp, puzzles))
    folder = save_checkpoint(root / f"step_{step:07d}", model, config, meta, None,
                             trainer_state, shared)
    _write_text(root / LATEST, folder.name)
    old = sorted(p for p in root.glob("step_*") if p.is_dir() and p != folder)
    for stale in old[: max(len(old) - (_KEEP - 1), 0)]:
        shutil.rmtree(stale, ignore_errors=True)
    return folder


LOCK = ".lock"


class RunLockedError(RuntimeError):
    """Another live process is writing this run folder."""


class RunLock:
    """An exclusive lock on a run folder, held while a process trains into it.

    ``<run>/.lock`` is locked with ``flock``: the kernel drops the lock when its process
    ends in any way (kill -9 included), so a lock left by a dead run is never in the way; the
    file holds the holder's PID and host for the message. ``release`` (or process exit)
    frees it.
    """

    def __init__(self, run_dir: str | Path) -> None:
        import fcntl

        self.path = Path(run_dir) / LOCK
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._file = open(self.path, "a+")
        try:
            fcntl.flock(self._file, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            self._file.seek(0)
            holder = self._file.read().strip() or "another process"
            self._file.close()
            raise RunLockedError(f"{self.path.parent} is in use by {holder}; wait for it to end "
                                 "or choose another --run-dir") from None
        self._file.seek(0)
        self._file.truncate()
        import socket
        self._file.write(f"pid {os.getpid()} on {socket.gethostname()}\n")
        self._file.flush()

    @property
    def held(self) -> bool:
        return not self._file.closed

    def release(self) -> None:
        """Free the lock (idempotent)."""
        if not self._file.closed:
            self._file.close()


def resolve_checkpoint(name_or_path: str | Path) -> Path:
    """Turn a bundled name, checkpoint folder or run folder into a checkpoint folder."""
    path = Path(name_or_path)
    for candidate in (path, path / "checkpoints"):
        if (candidate / CONFIG).is_file():
            return candidate
        if (candidate / LATEST).is_file():
            target = candidate / (candidate / LATEST).read_text().strip()
            if not (target / CONFIG).is_file():
                raise FileNotFoundError(f"{candidate / LATEST} names {target.name}, which is "
                                        f"not a complete checkpoint (no {CONFIG})")
            return target
    if path.suffix == ".safetensors" and (path.parent / CONFIG).is_file():
        return path.parent
    bundled = bundled_checkpoints()
    if str(name_or_path) in bundled:
        return bundled[str(name_or_path)]
    raise FileNotFoundError(
        f"no checkpoint at {str(name_or_path)!r}: expected a folder with {CONFIG} and {WEIGHTS}, "
        f"a run folder, or a bundled name ({', '.join(bundled) or 'none installed'})"
    )


def read_checkpoint_config(folder: str | Path) -> tuple[RunConfig, ModelConfig, dict[str, Any]]:
    """The run config, resolved model config and meta stored in ``folder/config.json``.

    Raises:
        ValueError: the file is not JSON, lacks a section, or does not fit the schema (a
            ``ConfigError``, which is a ``ValueError``); the message names the file.
    """
    path = Path(folder) / CONFIG
    try:
        payload = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise ValueError(f"{path}: unreadable checkpoint config ({err})") from None
    if not isinstance(payload, dict) or not {"run", "model"} <= set(payload):
        raise ValueError(f"{path}: expected a JSON object with keys 'run' and 'model'")
    try:
        config = from_dict(RunConfig, payload["run"])
        model_cfg = from_dict(type(config.model), payload["model"], "model.")
    except ConfigError as err:
        raise ConfigError(f"{path}: {err}") from None
    return config, model_cfg, payload.get("meta", {})


def load_weights(model: RecurrentCore, path: str | Path) -> None:
    """Load ``model.safetensors`` at ``path`` into ``model``, strictly.

    Raises:
        ValueError: the file is corrupt, or its tensor names or shapes do not fit ``model``
            (e.g. weights from a different model config or task); the message lists them.
    """
    path = Path(path)
    try:
        state = load_file(path)
    except Exception as err:  # safetensors raises its own error type for torn files
        raise ValueError(f"{path}: unreadable weights ({type(err).__name__}: {err})") from None
    expected = model.state_dict()
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    shapes = [f"{k} {tuple(state[k].shape)} != {tuple(expected[k].shape)}"
              for k in sorted(set(state) & set(expected)) if state[k].shape != expected[k].shape]
    if missing or unexpected or shapes:
        parts = [f"{name}: {', '.join(items[:5])}{' ...' if len(items) > 5 else ''}"
                 for name, items in (("missing", missing), ("unexpected", unexpected),
                                     ("shape (file != config)", shapes)) if items]
        raise ValueError(f"{path} does not fit the model described by its {CONFIG} "
                         f"({'; '.join(parts)}); were the weights saved from another config?")
    model.load_state_dict(state)


def load_trainer_state(folder: str | Path) -> dict[str, Any]:
    """The ``trainer_state.pt`` of a run checkpoint (see ``ACTTrainer.state_dict``).

    Raises:
        FileNotFoundError: the checkpoint has no trainer state (weights-only checkpoints,
            such as the bundled ones, cannot be resumed).
        ValueError: the file is corrupt.
    """
    path = Path(folder) / TRAINER_STATE
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no trainer state in this checkpoint; only run "
                                "checkpoints written by 'hrm-rl train' can be resumed")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:
        raise ValueError(f"{path}: unreadable trainer state ({type(err).__name__}: {err})"
                         ) from None


def load_checkpoint(name_or_path: str | Path, device: torch.device | str = "cpu") -> Checkpoint:
    """Load a checkpoint's core onto ``device`` in eval mode, with its task and config.

    Raises:
        FileNotFoundError: nothing loadable at ``name_or_path``.
        ValueError: a corrupt file, or a config, task and weights that do not fit together.
    """
    folder = resolve_checkpoint(name_or_path)
    config, model_cfg, meta = read_checkpoint_config(folder)
    task = make_task(config.task)
    for key in ("vocab_size", "seq_len"):
        if getattr(model_cfg, key) != getattr(task, key):
            raise ValueError(f"{folder / CONFIG}: model {key}={getattr(model_cfg, key)} does "
                             f"not match task {task.name} ({key}={getattr(task, key)})")
    model = build_model(model_cfg)
    load_weights(model, folder / WEIGHTS)
    model.to(device).eval()
    return Checkpoint(model, task, config, meta, folder)
