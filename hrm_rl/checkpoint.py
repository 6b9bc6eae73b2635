"""Checkpoints: safetensors weights with the full run config as JSON beside them.

A checkpoint is a folder holding ``model.safetensors`` and ``config.json``. Each file is
written to a temporary name, fsynced and renamed into place, so a crash never leaves a torn
file. A training run keeps its checkpoints as ``<run>/checkpoints/step_XXXXXXX/`` and a
``<run>/checkpoints/latest`` pointer that is updated (atomically) only after the folder it
names is complete.

``load_checkpoint`` accepts a checkpoint folder, a run folder, the ``latest`` pointer's
folder, or the name of a checkpoint bundled with the package (see ``bundled_checkpoints``).
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

from hrm_rl.config import RunConfig, from_dict
from hrm_rl.model import HRM
from hrm_rl.tasks import PuzzleBatch, Task, make_task

WEIGHTS = "model.safetensors"
CONFIG = "config.json"
TEST_PUZZLES = "test.csv"
LATEST = "latest"
_KEEP = 2


@dataclass
class Checkpoint:
    """A loaded checkpoint: the core (in eval mode), its task and its run config."""

    model: HRM
    task: Task
    config: RunConfig
    meta: dict[str, Any]
    path: Path

    def test_puzzles(self) -> PuzzleBatch | None:
        """The run's held-out puzzles saved beside the weights, if any."""
        path = self.path / TEST_PUZZLES
        return self.task.read_csv(path) if path.is_file() else None


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


def save_checkpoint(folder: str | Path, model: HRM, config: RunConfig,
                    meta: dict[str, Any] | None = None,
                    test_puzzles: tuple[Task, PuzzleBatch] | None = None) -> Path:
    """Write ``model.safetensors`` and ``config.json`` into ``folder`` (created if needed),
    and ``test.csv`` with the held-out puzzles when ``test_puzzles`` is given.

    ``config.json`` holds ``{"run": <RunConfig>, "model": <resolved ModelConfig>, "meta": ...}``.
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().to("cpu").contiguous() for k, v in model.state_dict().items()}
    _fsync_write(folder / WEIGHTS, lambda tmp: save_file(state, tmp))
    payload = {"run": config.to_dict(), "model": model.config.__dict__, "meta": meta or {}}
    if test_puzzles is not None:
        task, puzzles = test_puzzles
        _fsync_write(folder / TEST_PUZZLES, lambda tmp: task.write_csv(tmp, puzzles))
    _write_text(folder / CONFIG, json.dumps(payload, indent=2, sort_keys=True))
    return folder


def save_run_checkpoint(run_dir: str | Path, step: int, model: HRM, config: RunConfig,
                        meta: dict[str, Any] | None = None,
                        test_puzzles: tuple[Task, PuzzleBatch] | None = None) -> Path:
    """Save ``<run_dir>/checkpoints/step_<step>``, point ``latest`` at it, prune old ones."""
    root = Path(run_dir) / "checkpoints"
    folder = save_checkpoint(root / f"step_{step:07d}", model, config, meta, test_puzzles)
    _write_text(root / LATEST, folder.name)
    old = sorted(p for p in root.glob("step_*") if p.is_dir() and p != folder)
    for stale in old[: max(len(old) - (_KEEP - 1), 0)]:
        shutil.rmtree(stale, ignore_errors=True)
    return folder


def resolve_checkpoint(name_or_path: str | Path) -> Path:
    """Turn a bundled name, checkpoint folder or run folder into a checkpoint folder."""
    path = Path(name_or_path)
    for candidate in (path, path / "checkpoints"):
        if (candidate / CONFIG).is_file():
            return candidate
        if (candidate / LATEST).is_file():
            return candidate / (candidate / LATEST).read_text().strip()
    if path.suffix == ".safetensors" and (path.parent / CONFIG).is_file():
        return path.parent
    bundled = bundled_checkpoints()
    if str(name_or_path) in bundled:
        return bundled[str(name_or_path)]
    raise FileNotFoundError(
        f"no checkpoint at {str(name_or_path)!r}: expected a folder with {CONFIG} and {WEIGHTS}, "
        f"a run folder, or a bundled name ({', '.join(bundled) or 'none installed'})"
    )


def load_checkpoint(name_or_path: str | Path, device: torch.device | str = "cpu") -> Checkpoint:
    """Load a checkpoint's core onto ``device`` in eval mode, with its task and config."""
    folder = resolve_checkpoint(name_or_path)
    payload = json.loads((folder / CONFIG).read_text())
    config = from_dict(RunConfig, payload["run"])
    model_cfg = from_dict(type(config.model), payload["model"], "model.")
    task = make_task(config.task)
    for key in ("vocab_size", "seq_len"):
        if getattr(model_cfg, key) != getattr(task, key):
            raise ValueError(f"{folder}: model {key}={getattr(model_cfg, key)} does not match "
                             f"task {task.name} ({key}={getattr(task, key)})")
    model = HRM(model_cfg)
    missing, unexpected = model.load_state_dict(load_file(folder / WEIGHTS), strict=False)
    if missing or unexpected:
        raise ValueError(f"{folder / WEIGHTS} does not fit the model in {CONFIG}: "
                         f"missing {missing}, unexpected {unexpected}")
    model.to(device).eval()
    return Checkpoint(model, task, config, payload.get("meta", {}), folder)
