"""``MazeOptions``: the settings a maze run reads (``task.size``, ``task.tie_break``,
``data.layout``) and their checks."""

from __future__ import annotations

from dataclasses import dataclass

from hrm_rl.config import DataConfig, require
from hrm_rl.tasks.base import TaskOptions
from hrm_rl.tasks.maze.common import LAYOUTS, MAX_SIZE, MAZE_HARD_SIZE, MIN_SIZE, TIE_BREAKS
from hrm_rl.tasks.maze.task import MazeTask


@dataclass(frozen=True)
class MazeOptions(TaskOptions):
    """Square mazes of side ``size`` whose labels break ties by ``tie_break``; the generator
    knob of their own is ``data.layout`` (``hrm_rl.tasks.maze.generate``)."""

    size: int
    tie_break: str
    data_keys = ("layout",)

    def validate(self, data: DataConfig) -> None:
        require(MIN_SIZE <= self.size <= MAX_SIZE, "task.size",
                f"a maze side must be in [{MIN_SIZE}, {MAX_SIZE}] "
                f"(Maze-Hard: {MAZE_HARD_SIZE}), got {self.size}")
        require(self.tie_break in TIE_BREAKS, "task.tie_break",
                f"must be 'random' or 'first', got {self.tie_break!r}")
        require(data.layout in LAYOUTS, "data.layout",
                f"must be 'hard' or 'mix', got {data.layout!r}")

    def make(self) -> MazeTask:
        return MazeTask(self.size, self.tie_break)
