"""Maze symbols, tokens and size limits shared by the maze modules.
"""

from __future__ import annotations

import numpy as np


CHARSET = "# SGo"
"""Maze-Hard characters; token of ``CHARSET[i]`` is ``i + 1`` (0 is padding)."""
PAD, WALL, OPEN, START, GOAL, PATH = 0, 1, 2, 3, 4, 5
VOCAB_SIZE = 6
MAZE_HARD_SIZE, MAZE_HARD_MIN_PATH = 30, 110
WALL_DENSITY = (0.3, 0.5)
LAYOUTS = ("hard", "mix")
TIE_BREAKS = ("random", "first")
"""How a label picks among equally short paths (``MazeTask``'s ``tie_break``)."""
MIN_SIZE, MAX_SIZE = 4, 64            # a grid row must fit in one uint64 word


def check_size(size: int) -> int:
    """``size`` if it is a supported maze side (4 to 64), else ``ValueError``."""
    if not isinstance(size, (int, np.integer)) or not MIN_SIZE <= size <= MAX_SIZE:
        raise ValueError(f"unsupported maze size {size!r}; the side must be an integer from "
                         f"{MIN_SIZE} to {MAX_SIZE} (Maze-Hard is {MAZE_HARD_SIZE})")
    return int(size)


def default_min_path(size: int) -> int:
    """Default minimum S-to-G path length in steps for a ``size x size`` maze.

    ``round(110 * (size / 30) ** 1.2)``: exactly Maze-Hard's 110 at 30x30, and at every size
    about the 99th percentile of the double-sweep length of random 30-50 % wall layouts
    (9x9: 26, 11x11: 33, 15x15: 48, 20x20: 68), so a "hard" maze is equally rare everywhere.
    """
    return max(2, round(MAZE_HARD_MIN_PATH * (check_size(size) / MAZE_HARD_SIZE) ** 1.2))
