"""``ARCOptions``: the settings an ARC run reads (``task.dataset``, ``task.data_dir``,
``task.augmentations``, ``task.max_tasks``; for ``dataset: rearc`` also
``task.rearc_tasks``, ``task.max_grid``, ``task.difficulty``, ``task.keep_copies``) and
their checks."""

from __future__ import annotations

from dataclasses import dataclass

from hrm_rl.config import DataConfig, require
from hrm_rl.tasks.arc.canvas import GRID
from hrm_rl.tasks.arc.corpus import DATASETS
from hrm_rl.tasks.arc.task import ARCTask
from hrm_rl.tasks.base import TaskOptions


@dataclass(frozen=True)
class ARCOptions(TaskOptions):
    """ARC tasks from a bundled corpus (``dataset``) or a folder (``data_dir``), with
    ``augmentations`` variants per task, the first ``max_tasks`` of each split when > 0
    (``ARCTask``); or, with ``dataset: rearc``, the ARC-AGI-1 training tasks
    ``rearc_tasks`` learned from generated pairs (``RearcTask``)."""

    dataset: str
    data_dir: str | None
    augmentations: int
    max_tasks: int
    rearc_tasks: list[str] | None
    max_grid: int
    difficulty: list[float] | None
    keep_copies: bool

    def validate(self, data: DataConfig) -> None:
        require(self.dataset in DATASETS or self.dataset == "rearc", "task.dataset",
                f"must be 'arc1' or 'arc2' (ARC's bundled corpora; task.data_dir replaces "
                f"them) or 'rearc' (generated pairs), got {self.dataset!r}")
        if self.dataset == "rearc":
            require(self.data_dir is None and self.max_tasks == 0, "task.dataset",
                    "rearc reads neither task.data_dir nor task.max_tasks; name the tasks "
                    "in task.rearc_tasks")
            require(bool(self.rearc_tasks), "task.rearc_tasks",
                    "must list ARC-AGI-1 training task ids for dataset: rearc")
            require(1 <= self.max_grid <= GRID, "task.max_grid",
                    f"must be in 1..{GRID}, got {self.max_grid}")
            lo, hi = self.difficulty or (0.0, 0.5)
            require(len(self.difficulty or (0, 0)) == 2 and 0.0 <= lo <= hi <= 1.0,
                    "task.difficulty", f"must be [low, high] with 0 <= low <= high <= 1, "
                    f"got {self.difficulty}")
        else:
            require(self.rearc_tasks is None and self.max_grid == 10
                    and self.difficulty is None and self.keep_copies, "task.dataset",
                    "task.rearc_tasks, task.max_grid, task.difficulty and task.keep_copies "
                    f"are read only with dataset: rearc (this run's is {self.dataset!r})")
        require(self.data_dir is None or self.data_dir.strip() != "", "task.data_dir",
                "is an empty string: name a folder or use null (the bundled corpus)")
        for name in ("augmentations", "max_tasks"):
            require(getattr(self, name) >= 0, f"task.{name}",
                    f"must be >= 0, got {getattr(self, name)}")

    def make(self) -> ARCTask:
        if self.dataset == "rearc":
            from hrm_rl.tasks.arc.rearc import RearcTask  # needs reasoning-gym

            lo, hi = self.difficulty or (0.0, 0.5)
            return RearcTask(list(self.rearc_tasks or ()), self.augmentations,
                             self.max_grid, (lo, hi), keep_copies=self.keep_copies)
        return ARCTask(self.dataset, self.data_dir, self.augmentations, self.max_tasks)
