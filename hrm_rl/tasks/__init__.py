"""Puzzle families. ``make_task(TaskConfig)`` builds one by name."""

from __future__ import annotations

from hrm_rl.config import TaskConfig
from hrm_rl.tasks.base import IGNORE_LABEL, PuzzleBatch, Task

TASKS = ("sudoku", "maze", "arc")


def make_task(config: TaskConfig) -> Task:
    """The task named by ``config.name`` (one of ``TASKS``)."""
    if config.name == "sudoku":
        from hrm_rl.tasks.sudoku import SudokuTask

        return SudokuTask(config.size)
    if config.name == "maze":
        from hrm_rl.tasks.maze import MazeTask

        return MazeTask(config.size, config.tie_break)
    if config.name == "arc":
        from hrm_rl.tasks.arc import ARCTask

        return ARCTask(config.dataset, config.data_dir, config.augmentations, config.max_tasks)
    raise ValueError(f"unknown task {config.name!r}; available: {', '.join(TASKS)}")


__all__ = ["IGNORE_LABEL", "PuzzleBatch", "Task", "TASKS", "make_task"]
