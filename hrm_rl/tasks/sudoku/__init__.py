"""Sudoku: 4x4 (2x2 boxes), 6x6 (2x3 boxes) and 9x9 (3x3 boxes).

Grids are numpy int arrays ``(n, size*size)``, row-major, digits ``1..size``, ``0`` = blank.
Tokens as in HRM: PAD 0, blank 1, digit d -> d + 1 (vocab ``size + 2``); every cell is
supervised.

The generator fills a random grid, then removes clues in random order while the solution
stays unique, giving minimal puzzles; ``max_givens``/``min_givens`` and ``min_difficulty``
(solver effort, see ``difficulty``) are the difficulty knobs. Everything is pure Python
bitmask search: candidates of a cell are an ``int`` with bit ``d-1`` set when digit d fits.

Modules: ``solver``, ``generator``, ``grids``, ``symmetry``, ``task``, ``options``.
"""

from __future__ import annotations

from hrm_rl.tasks.sudoku.solver import BOX_SHAPES, box_shape, difficulty, solve
from hrm_rl.tasks.sudoku.generator import generate
from hrm_rl.tasks.sudoku.grids import (SudokuRecords, check_unique, find_conflict, format_grid,
                                       infer_size, is_valid_solution, parse_grid, read_csv,
                                       write_csv)
from hrm_rl.tasks.sudoku.symmetry import canonical_key, split_disjoint
from hrm_rl.tasks.sudoku.task import SudokuTask
from hrm_rl.tasks.sudoku.options import SudokuOptions

__all__ = ["BOX_SHAPES", "SudokuOptions", "SudokuRecords", "SudokuTask", "box_shape",
           "canonical_key", "check_unique", "difficulty", "find_conflict", "format_grid",
           "generate", "infer_size", "is_valid_solution", "parse_grid", "read_csv", "solve",
           "split_disjoint", "write_csv"]
