"""``MazeOptions``: the settings a maze run reads (``task.size``, ``task.tie_break``,
``data.layout``, ``data.wall_density``, ``data.far_share``, ``data.lattice_share``) and
their checks."""

from __future__ import annotations

from dataclasses import dataclass

from hrm_rl.config import DataConfig, require
from hrm_rl.tasks.base import TaskOptions
from hrm_rl.tasks.maze.common import LAYOUTS, MAX_SIZE, MAZE_HARD_SIZE, MIN_SIZE, TIE_BREAKS
from hrm_rl.tasks.maze.task import MazeTask


@dataclass(frozen=True)
class MazeOptions(TaskOptions):
    """Square mazes of side ``size`` whose labels break ties by ``tie_break``; the generator
    knobs of their own are ``data.layout``, ``data.wall_density``, ``data.far_share`` and
    ``data.lattice_share`` (``hrm_rl.tasks.maze.generate``)."""

    size: int
    tie_break: str
    data_keys = ("layout", "wall_density", "far_share", "lattice_share")

    def validate(self, data: DataConfig) -> None:
        require(MIN_SIZE <= self.size <= MAX_SIZE, "task.size",
                f"a maze side must be in [{MIN_SIZE}, {MAX_SIZE}] "
                f"(Maze-Hard: {MAZE_HARD_SIZE}), got {self.size}")
        require(self.tie_break in TIE_BREAKS, "task.tie_break",
                f"must be 'random' or 'first', got {self.tie_break!r}")
        require(data.layout in LAYOUTS, "data.layout",
                f"must be 'hard' or 'mix', got {data.layout!r}")
        density = data.wall_density
        require(density is None or (len(density) == 2 and 0.0 <= density[0] <= density[1] < 1.0),
                "data.wall_density",
                f"must be null (the generator's 0.3 to 0.5) or [low, high] with "
                f"0 <= low <= high < 1, got {density!r}")
        share = data.far_share
        require(share is None or (data.layout == "mix" and 0.0 <= share <= 1.0),
                "data.far_share", f"must be null or, with data.layout: mix, a share in [0, 1]; "
                f"got {share!r} with layout {data.layout!r}")
        require(0.0 <= data.lattice_share <= 1.0, "data.lattice_share",
                f"must be a share in [0, 1], got {data.lattice_share!r}")
        longest = self.size * self.size - 2  # a path through every cell but a wall
        require(data.min_difficulty <= longest, "data.min_difficulty",
                f"{data.min_difficulty} is infeasible with task.size={self.size}: a shortest "
                f"path in a {self.size}x{self.size} maze has at most {longest} steps "
                "(0 = the generator's default)")

    def make(self) -> MazeTask:
        return MazeTask(self.size, self.tie_break)
