"""Build outside test sets: puzzles from generators other than the ones the cores train on.

    python scripts/outside_sets.py --out data/outside      # writes sudoku6.csv, maze9.csv

A core's own held-out set comes from its training generator. These come from others:

* ``sudoku6.csv``: 1000 6x6 puzzles (2x3 boxes) with a 180-degree symmetric pattern of
  givens, as published puzzles have, minimal among symmetric patterns (not cell by cell).
  A solved grid is a shuffled pattern grid (bands, rows in a band, stacks, columns in a
  stack and digits permuted); symmetric pairs of givens are revealed at random until the
  solution is unique, then each pair whose removal keeps it unique is hidden again.
* ``maze9.csv``: 1000 9x9 mazes with a walled border and shortest paths of 10 to 21 steps, in
  two families of 500: corridor mazes (a depth-first-search maze on the 4x4 lattice of odd
  cells, then 0-6 random inner walls knocked out to make loops) and open rooms (random inner
  walls at 10-25 % density, below the training generator's 30-50 %). S and G are random
  open cells at a BFS distance drawn uniformly from 10 to 21 (drawn first: a layout without
  a cell that far is redrawn). ``maze9-corridors.csv`` and ``maze9-rooms.csv`` hold the two
  families apart.

Deterministic for ``--seed``. Puzzles are checked (unique Sudoku solution; any shortest
path) by the task readers when ``hrm-rl eval`` loads them.
"""

from __future__ import annotations

import argparse
from collections import deque
from pathlib import Path

import numpy as np

from hrm_rl.tasks.base import PuzzleBatch
from hrm_rl.tasks.maze import GOAL, OPEN, PATH, START, WALL, MazeTask
from hrm_rl.tasks.sudoku import SudokuTask, solve


def sudoku6_grid(rng: np.random.Generator) -> np.ndarray:
    """A random solved 6x6 grid: the pattern grid with bands, rows, stacks, columns and
    digits shuffled (validity is kept by each of those permutations)."""
    base = np.array([[(3 * (r % 2) + r // 2 + c) % 6 for c in range(6)] for r in range(6)])
    bands = rng.permutation(3)
    rows = np.concatenate([2 * b + rng.permutation(2) for b in bands])
    stacks = rng.permutation(2)
    cols = np.concatenate([3 * s + rng.permutation(3) for s in stacks])
    digits = rng.permutation(6) + 1
    return digits[base[rows][:, cols]].reshape(-1)


def symmetric_puzzle(solution: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Reveal 180-degree symmetric pairs of cells until ``solution`` is the only one, then
    hide again each revealed pair (in random order) whose removal keeps it unique: minimal
    among symmetric patterns, not necessarily minimal cell by cell."""
    cells = len(solution)
    puzzle = np.zeros(cells, dtype=np.int64)
    revealed = []
    for i in rng.permutation(cells // 2):
        puzzle[[i, cells - 1 - i]] = solution[[i, cells - 1 - i]]
        revealed.append(i)
        if len(solve(puzzle, 6, limit=2)) == 1:
            break
    for i in rng.permutation(revealed):
        puzzle[[i, cells - 1 - i]] = 0
        if len(solve(puzzle, 6, limit=2)) != 1:
            puzzle[[i, cells - 1 - i]] = solution[[i, cells - 1 - i]]
    return puzzle


def sudoku6_set(n: int, rng: np.random.Generator) -> PuzzleBatch:
    task = SudokuTask(6)
    puzzles, solutions, seen = [], [], set()
    while len(puzzles) < n:
        solution = sudoku6_grid(rng)
        puzzle = symmetric_puzzle(solution, rng)
        key = puzzle.tobytes()
        if key in seen:
            continue
        seen.add(key)
        puzzles.append(puzzle)
        solutions.append(solution)
    return task.encode(np.array(puzzles), np.array(solutions))


def corridor_layout(rng: np.random.Generator, size: int = 9) -> np.ndarray:
    """``(size, size)`` bool open cells: a DFS maze on the odd-cell lattice, braided."""
    open_ = np.zeros((size, size), dtype=bool)
    k = (size - 1) // 2
    visited = np.zeros((k, k), dtype=bool)
    stack = [(int(rng.integers(k)), int(rng.integers(k)))]
    visited[stack[0]] = True
    open_[2 * stack[0][0] + 1, 2 * stack[0][1] + 1] = True
    while stack:
        r, c = stack[-1]
        nbrs = [(r + dr, c + dc) for dr, dc in ((1, 0), (-1, 0), (0, 1), (0, -1))
                if 0 <= r + dr < k and 0 <= c + dc < k and not visited[r + dr, c + dc]]
        if not nbrs:
            stack.pop()
            continue
        nr, nc = nbrs[rng.integers(len(nbrs))]
        visited[nr, nc] = True
        open_[2 * nr + 1, 2 * nc + 1] = True
        open_[r + nr + 1, c + nc + 1] = True
        stack.append((nr, nc))
    inner = [(r, c) for r in range(1, size - 1) for c in range(1, size - 1)
             if not open_[r, c] and (r % 2) != (c % 2)]
    for i in rng.permutation(len(inner))[: rng.integers(0, 7)]:
        open_[inner[i]] = True
    return open_


def room_layout(rng: np.random.Generator, size: int = 9) -> np.ndarray:
    """``(size, size)`` bool open cells: a walled border, inner walls at 10-25 % density."""
    open_ = rng.random((size, size)) >= rng.uniform(0.10, 0.25)
    open_[0, :] = open_[-1, :] = open_[:, 0] = open_[:, -1] = False
    return open_


def bfs(open_: np.ndarray, start: tuple[int, int]) -> np.ndarray:
    """BFS distances from ``start`` (-1 where unreachable)."""
    dist = np.full(open_.shape, -1, dtype=np.int64)
    dist[start] = 0
    queue = deque([start])
    while queue:
        r, c = queue.popleft()
        for nr, nc in ((r + 1, c), (r - 1, c), (r, c + 1), (r, c - 1)):
            if 0 <= nr < open_.shape[0] and 0 <= nc < open_.shape[1] and open_[nr, nc] \
                    and dist[nr, nc] < 0:
                dist[nr, nc] = dist[r, c] + 1
                queue.append((nr, nc))
    return dist


def maze_from_layout(open_: np.ndarray, rng: np.random.Generator, target: int
                     ) -> tuple[np.ndarray, np.ndarray] | None:
    """Question and answer tokens with S random and G at BFS distance ``target`` (None when
    no cell is that far from S)."""
    cells = np.argwhere(open_)
    start = tuple(cells[rng.integers(len(cells))])
    dist = bfs(open_, start)
    ends = np.argwhere(dist == target)
    if not len(ends):
        return None
    goal = tuple(ends[rng.integers(len(ends))])
    question = np.where(open_, OPEN, WALL)
    question[start], question[goal] = START, GOAL
    answer = question.copy()
    cur = goal
    while dist[cur] > 1:  # walk back to S through cells one step closer, at random
        r, c = cur
        back = [(nr, nc) for nr, nc in ((r + 1, c), (r - 1, c), (r, c + 1), (r, c - 1))
                if 0 <= nr < open_.shape[0] and 0 <= nc < open_.shape[1]
                and dist[nr, nc] == dist[cur] - 1]
        cur = back[rng.integers(len(back))]
        answer[cur] = PATH
    return question.reshape(-1), answer.reshape(-1)


def maze9_set(n: int, rng: np.random.Generator, low: int = 10, high: int = 21) -> PuzzleBatch:
    questions, answers, seen = [], [], set()
    families = (corridor_layout, room_layout)
    target = int(rng.integers(low, high + 1))  # each maze's length, drawn before its layout
    while len(questions) < n:
        layout = families[len(questions) * len(families) // n](rng)
        made = maze_from_layout(layout, rng, target)
        if made is None or made[0].tobytes() in seen:
            continue
        target = int(rng.integers(low, high + 1))
        seen.add(made[0].tobytes())
        questions.append(made[0])
        answers.append(made[1])
    q, a = np.array(questions, dtype=np.int64), np.array(answers, dtype=np.int64)
    return PuzzleBatch(q, a, np.zeros(n, dtype=np.int64))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", default="data/outside")
    parser.add_argument("-n", type=int, default=1000, help="puzzles per set")
    parser.add_argument("--seed", type=int, default=2026)
    args = parser.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(args.seed)
    SudokuTask(6).write_csv(out / "sudoku6.csv", sudoku6_set(args.n, rng))
    mazes = maze9_set(args.n, rng)
    MazeTask(9).write_csv(out / "maze9.csv", mazes)
    half = (args.n + 1) // 2  # the first half corridor mazes, the second open rooms (maze9_set)
    MazeTask(9).write_csv(out / "maze9-corridors.csv", mazes.take(slice(0, half)))
    MazeTask(9).write_csv(out / "maze9-rooms.csv", mazes.take(slice(half, args.n)))
    print(f"wrote {out / 'sudoku6.csv'} and {out / 'maze9.csv'} ({args.n} puzzles each), and "
          f"maze9.csv's two families apart: maze9-corridors.csv, maze9-rooms.csv")


if __name__ == "__main__":
    main()
