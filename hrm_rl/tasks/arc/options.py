"""``ARCOptions``: the settings an ARC run reads (``task.dataset``, ``task.data_dir``,
``task.augmentations``, ``task.max_tasks``) and their checks."""

from __future__ import annotations

from dataclasses import dataclass

from hrm_rl.config import DataConfig, require
from hrm_rl.tasks.arc.corpus import DATASETS
from hrm_rl.tasks.arc.task import ARCTask
from hrm_rl.tasks.base import TaskOptions


@dataclass(frozen=True)
class ARCOptions(TaskOptions):
    """ARC tasks from a bundled corpus (``dataset``) or a folder (``data_dir``), with
    ``augmentations`` variants per task, the first ``max_tasks`` of each split when > 0
    (``ARCTask``)."""

    dataset: str
    data_dir: str | None
    augmentations: int
    max_tasks: int

    def validate(self, data: DataConfig) -> None:
        require(self.dataset in DATASETS, "task.dataset",
                f"must be 'arc1' or 'arc2' (ARC's bundled corpora; task.data_dir replaces "
                f"them), got {self.dataset!r}")
        require(self.data_dir is None or self.data_dir.strip() != "", "task.data_dir",
                "is an empty string: name a folder or use null (the bundled corpus)")
        for name in ("augmentations", "max_tasks"):
            require(getattr(self, name) >= 0, f"task.{name}",
                    f"must be >= 0, got {getattr(self, name)}")

    def make(self) -> ARCTask:
        return ARCTask(self.dataset, self.data_dir, self.augmentations, self.max_tasks)
