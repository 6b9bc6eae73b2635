"""Maze: shortest paths on square grids with random walls, in the HRM Maze-Hard format.

A maze is a ``size x size`` grid, row-major, over five symbols (the Maze-Hard character set)::

    '#' wall    ' ' open    'S' start    'G' goal    'o' path (answers only)

Tokens as in HRM: PAD 0, then ``#`` 1, `` `` 2, ``S`` 3, ``G`` 4, ``o`` 5 (vocab 6); every
cell is supervised. The question is the grid without the path; the answer is the same grid
with one shortest S-to-G path marked ``o``.

**Path length** is counted in *steps* (moves from S to G), which is the breadth-first-search
distance between S and G; a path of ``L`` steps has ``L - 1`` cells marked ``o``. Maze-Hard's
"at least 110" is this number. ``min_path`` (``data.min_difficulty`` in a run config) is the
difficulty knob; ``default_min_path(size)`` gives 110 at 30x30 and a size-scaled value for
smaller grids (see there).

**Generator.** Each cell is a wall with probability ``p``, ``p`` drawn per maze uniformly from
30-50 %. A double breadth-first sweep finds a long shortest path: the farthest cell ``a`` from a
random open cell, then the farthest cell ``b`` from ``a``; layouts whose ``a``-to-``b`` distance is
below ``min_path`` are rejected. One shortest path is traced back from ``b`` by BFS distances
(a random predecessor at each step), and ``a``/``b`` become S/G in random order. The sweeps run
on thousands of candidate mazes at once, with each grid row packed into one ``uint64`` (a BFS
step is a handful of shifts and ORs over ``(n, size)`` words), so 1000 Maze-Hard-like 30x30
mazes take seconds in numpy (see ``bench/maze_generator.py``). Random walls make long paths
rare (about 1 candidate in 200 reaches 110 steps at 30x30), hence the batch-of-candidates design.

**Answers.** At Maze-Hard lengths shortest paths are almost never unique, so ``is_correct``
accepts *any* valid shortest path (see ``MazeTask.is_correct``), not only the labelled one.
Shorter mazes tie too: about 77 % of 9x9 ``mix`` mazes have several shortest paths. With the
default ``tie_break="random"`` the label is one of them drawn at random, so a model trained on
it learns a blur of the tied paths; ``tie_break="first"`` labels each maze with
``first_shortest_paths`` (walked back from G, the first closer neighbour in the order up,
down, left, right), a deterministic function of the question, and augmentation relabels the
transformed maze the same way.

Modules: ``common``, ``bfs``, ``generator``, ``symmetry``, ``rules``, ``grids``, ``task``,
``options``.
"""

from __future__ import annotations

from hrm_rl.tasks.maze.common import (CHARSET, GOAL, LAYOUTS, MAX_SIZE, MAZE_HARD_MIN_PATH,
                                      MAZE_HARD_SIZE, MIN_SIZE, OPEN, PAD, PATH, START,
                                      TIE_BREAKS, VOCAB_SIZE, WALL, WALL_DENSITY, check_size,
                                      default_min_path)
from hrm_rl.tasks.maze.bfs import distance_maps, first_shortest_paths, shortest_path_lengths
from hrm_rl.tasks.maze.generator import generate
from hrm_rl.tasks.maze.symmetry import canonical_keys, dihedral_index
from hrm_rl.tasks.maze.rules import rule_breaks
from hrm_rl.tasks.maze.grids import (MazeRecords, check_mazes, format_grid, infer_size, read_csv,
                                     write_csv)
from hrm_rl.tasks.maze.task import MazeTask
from hrm_rl.tasks.maze.options import MazeOptions

__all__ = ["CHARSET", "GOAL", "LAYOUTS", "MAX_SIZE", "MAZE_HARD_MIN_PATH", "MAZE_HARD_SIZE",
           "MIN_SIZE", "MazeOptions", "MazeRecords", "MazeTask", "OPEN", "PAD", "PATH", "START",
           "TIE_BREAKS", "VOCAB_SIZE", "WALL", "WALL_DENSITY", "canonical_keys", "check_mazes",
           "check_size", "default_min_path", "dihedral_index", "distance_maps",
           "first_shortest_paths", "format_grid", "generate", "infer_size", "read_csv",
           "rule_breaks", "shortest_path_lengths", "write_csv"]
