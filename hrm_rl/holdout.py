"""Validation and outside sets kept clear of what given runs trained on (``hrm-rl holdout``).

A run's training set is regenerated from its config's ``data`` section (``build_splits``),
and a puzzle counts as trained on when any symmetry of it is in that set
(``in_training_set``: with ``augment`` a run sees every symmetry of its puzzles)::

    result = holdout("val.csv", trained_on=["runs/sudoku4-tiny-...", "sudoku6-small.yaml"])
    print(result.to_dict())
    result.write_csv("val-clean.csv")
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from hrm_rl.config import RunConfig
from hrm_rl.tasks import PuzzleBatch, Task, make_task
from hrm_rl.tasks.splits import in_training_set


def trained_config(source: str | Path) -> RunConfig:
    """The run config of ``source``: a YAML config file (``.yaml``/``.yml``), or a
    checkpoint, run folder or bundled name (the config saved with its weights)."""
    from hrm_rl.checkpoint import read_checkpoint_config, resolve_checkpoint
    from hrm_rl.config import load_config

    if str(source).endswith((".yaml", ".yml")):
        return load_config(source)
    return read_checkpoint_config(resolve_checkpoint(source))[0]


@dataclass
class Holdout:
    """What ``holdout`` kept: ``kept`` (the puzzles no run trained on, in their order),
    ``n`` (puzzles given), ``trained_on`` (per run: ``source`` and how many of the puzzles
    its training set holds), the ``task`` and the ``data`` they came from."""

    kept: PuzzleBatch
    n: int
    trained_on: list[dict[str, Any]]
    task: Task
    data: str

    def to_dict(self) -> dict[str, Any]:
        """``{"data", "n", "trained_on", "kept"}``, as ``hrm-rl holdout`` prints them."""
        return {"data": self.data, "n": self.n, "trained_on": self.trained_on,
                "kept": len(self.kept)}

    def write_csv(self, path: str | Path) -> Path:
        """Write the kept puzzles as a CSV in the task's format, atomically (never a torn
        file; the folder is created).

        Raises:
            ValueError: no puzzle was kept (nothing is written).
        """
        from hrm_rl.checkpoint import atomic_write

        path = Path(path)
        if len(self.kept) == 0:
            sources = ", ".join(str(t["source"]) for t in self.trained_on)
            raise ValueError(f"none of the {self.n} puzzles of {self.data} were kept (every "
                             f"one is in a training set of {sources}); nothing was written "
                             f"to {path}")
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write(path, lambda tmp: self.task.write_csv(tmp, self.kept))
        return path


def holdout(data: str | Path, trained_on: Sequence[str | Path | RunConfig],
            cache_dir: str | Path | None = None, progress: bool = False) -> Holdout:
    """The puzzles of the CSV ``data`` that none of the runs ``trained_on`` trained on, up
    to the task's symmetries.

    Args:
        data: a CSV file in the runs' task format.
        trained_on: the runs, each a YAML config, a checkpoint, a run folder, a bundled name
            (``trained_config``) or a ``RunConfig``; all of one task.
        cache_dir: the generated-puzzle cache for every run (default: each run's
            ``data.cache_dir``); progress: a progress bar while a training set generates.

    Raises:
        ValueError: no runs, runs of different tasks, or an unreadable CSV (the message
            names it).
    """
    if not trained_on:
        raise ValueError("give at least one run whose training set to keep out")
    configs = [(str(s) if not isinstance(s, RunConfig) else s.name,
                s if isinstance(s, RunConfig) else trained_config(s)) for s in trained_on]
    first_source, first = configs[0]
    for source, config in configs[1:]:
        if config.task != first.task:
            raise ValueError(f"{source} trains task {config.task.name} (size "
                             f"{config.task.size}), {first_source} task {first.task.name} "
                             f"(size {first.task.size}): give runs of one task")
    task = make_task(first.task)
    puzzles = task.read_csv(data)
    trained = np.zeros(len(puzzles), dtype=bool)
    report = []
    for source, config in configs:
        data_config = config.data
        if cache_dir:
            data_config = dataclasses.replace(data_config, cache_dir=str(cache_dir))
        hit = in_training_set(task, puzzles, data_config, progress=progress)
        report.append({"source": source, "in_training_set": int(hit.sum())})
        trained |= hit
    return Holdout(puzzles.take(np.flatnonzero(~trained)), len(puzzles), report, task,
                   str(data))
