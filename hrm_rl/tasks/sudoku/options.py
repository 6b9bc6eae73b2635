"""``SudokuOptions``: the settings a Sudoku run reads (``task.size``, ``data.max_givens``,
``data.min_givens``) and their checks."""

from __future__ import annotations

from dataclasses import dataclass

from hrm_rl.config import DataConfig, require
from hrm_rl.tasks.base import TaskOptions
from hrm_rl.tasks.sudoku.solver import BOX_SHAPES
from hrm_rl.tasks.sudoku.task import SudokuTask

FEWEST_GIVENS = {4: 4, 6: 8, 9: 17}
"""The fewest givens any uniquely solvable Sudoku of each size has."""


@dataclass(frozen=True)
class SudokuOptions(TaskOptions):
    """Sudoku of side ``size`` (4, 6 or 9); its generator knobs are ``data.max_givens`` and
    ``data.min_givens`` (``hrm_rl.tasks.sudoku.generate``)."""

    size: int
    data_keys = ("max_givens", "min_givens")

    def validate(self, data: DataConfig) -> None:
        sizes = sorted(BOX_SHAPES)
        require(self.size in BOX_SHAPES, "task.size",
                f"Sudoku comes in sizes {', '.join(map(str, sizes[:-1]))} and {sizes[-1]}, "
                f"got {self.size}")
        for name in self.data_keys:
            value = getattr(data, name)
            require(value is None or value >= 0, f"data.{name}",
                    f"must be null (no limit) or >= 0, got {value}")
        cells, fewest = self.size * self.size, FEWEST_GIVENS[self.size]
        if data.max_givens is not None:
            require(data.max_givens >= fewest, "data.max_givens",
                    f"{data.max_givens} is infeasible with task.size={self.size}: no "
                    f"{self.size}x{self.size} Sudoku with a unique solution has fewer "
                    f"than {fewest} givens")
            require(data.max_givens <= cells, "data.max_givens",
                    f"must be at most the {cells} cells of a task.size={self.size} "
                    f"Sudoku, got {data.max_givens}")
        if data.min_givens is not None:
            require(data.min_givens <= cells, "data.min_givens",
                    f"must be at most the {cells} cells of a task.size={self.size} "
                    f"Sudoku, got {data.min_givens}")
        if data.max_givens is not None and data.min_givens is not None:
            require(data.min_givens <= data.max_givens, "data.min_givens",
                    f"{data.min_givens} is above data.max_givens={data.max_givens}")

    def make(self) -> SudokuTask:
        return SudokuTask(self.size)
