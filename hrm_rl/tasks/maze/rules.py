"""Maze path rules on token grids: neighbour counts and per-maze rule breaks (a path cell
with other than two path neighbours, an end with other than one, missing or extra ends).
"""

from __future__ import annotations

import torch

from hrm_rl.tasks.maze.common import GOAL, PATH, START, WALL


def _neighbours(mask: torch.Tensor) -> torch.Tensor:
    """``(n, h, w)`` bool -> int32 count of 4-neighbours that are set."""
    m = mask.to(torch.int32)
    out = torch.zeros_like(m)
    out[:, 1:] += m[:, :-1]
    out[:, :-1] += m[:, 1:]
    out[:, :, 1:] += m[:, :, :-1]
    out[:, :, :-1] += m[:, :, 1:]
    return out


def rule_breaks(tokens: torch.Tensor, size: int) -> torch.Tensor:
    """``(n,)`` int64 rule violations of maze grids, looking at the grid alone.

    Counted: every path cell ``o`` without exactly two neighbours in {o, S, G}, every S or G
    without exactly one, each missing or extra S and G, and every cell holding no maze symbol
    (padding). Zero for a grid whose ``o`` cells form one simple S-to-G path with no stray
    cells (a labelled shortest path always does: a shortcut-free path touches itself nowhere).
    """
    grid = tokens.reshape(-1, size, size)
    path, ends = grid == PATH, (grid == START) | (grid == GOAL)
    degree = _neighbours(path | ends)
    bad = (path & (degree != 2)) | (ends & (degree != 1)) | (grid < WALL) | (grid > PATH)
    n_start = (grid == START).sum((1, 2))
    n_goal = (grid == GOAL).sum((1, 2))
    return bad.sum((1, 2)) + (n_start - 1).abs() + (n_goal - 1).abs()
