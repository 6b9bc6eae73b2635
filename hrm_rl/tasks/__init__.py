"""Puzzle families. ``make_task(TaskConfig)`` builds one by name.

Each task is a package (``sudoku``, ``maze``, ``arc``) with an options class (a
``TaskOptions``: the part of the run config it reads, and its checks), registered in
``TASK_OPTIONS`` by the name ``task.name`` gives.
"""

from __future__ import annotations

from hrm_rl.config import TaskConfig
from hrm_rl.registry import TASK_OPTIONS, register_task
from hrm_rl.tasks.base import IGNORE_LABEL, PuzzleBatch, Task, TaskOptions
from hrm_rl.tasks.arc.options import ARCOptions
from hrm_rl.tasks.maze.options import MazeOptions
from hrm_rl.tasks.sudoku.options import SudokuOptions

register_task("sudoku")(SudokuOptions)
register_task("maze")(MazeOptions)
register_task("arc")(ARCOptions)
# ``TASK_OPTIONS`` (hrm_rl.registry): task.name -> options class; the one line a new task adds
# is its register_task call. The config validates through the registry, never this package.

TASKS = tuple(TASK_OPTIONS)


def task_options(config: TaskConfig) -> TaskOptions:
    """The options of the task named by ``config.name`` (one of ``TASKS``), read from
    ``config`` (not validated: ``RunConfig.validate`` does that)."""
    if config.name not in TASK_OPTIONS:
        raise ValueError(f"unknown task {config.name!r}; available: {', '.join(TASKS)}")
    return TASK_OPTIONS[config.name].from_config(config)


def make_task(config: TaskConfig) -> Task:
    """The task named by ``config.name`` (one of ``TASKS``), built from its options."""
    return task_options(config).make()


__all__ = ["IGNORE_LABEL", "PuzzleBatch", "TASKS", "TASK_OPTIONS", "Task", "TaskOptions",
           "make_task", "task_options"]
