"""Breadth-first search on mazes, many at once: grid rows packed into ``uint64`` words for
the generator's double sweep, distance maps, shortest-path tracing and lengths.
"""

from __future__ import annotations

import numpy as np

from hrm_rl.tasks.maze.common import GOAL, PATH, START, WALL

_ONE = np.uint64(1)


def _pack(open_: np.ndarray) -> np.ndarray:
    """``(n, h, w)`` bool -> ``(n, h)`` uint64 with bit ``c`` set when cell ``(r, c)`` is set."""
    weights = _ONE << np.arange(open_.shape[-1], dtype=np.uint64)
    return (open_.astype(np.uint64) * weights).sum(-1, dtype=np.uint64)


def _unpack(bits: np.ndarray, width: int) -> np.ndarray:
    """Inverse of ``_pack``: ``(n, h)`` uint64 -> ``(n, h, width)`` bool."""
    return ((bits[..., None] >> np.arange(width, dtype=np.uint64)) & _ONE).astype(bool)


def _one_cell(cells: np.ndarray, height: int, width: int) -> np.ndarray:
    """Flat cell indices ``(n,)`` -> ``(n, height)`` packed rows with that one cell set."""
    out = np.zeros((len(cells), height), dtype=np.uint64)
    r, c = np.divmod(cells, width)
    out[np.arange(len(cells)), r] = _ONE << c.astype(np.uint64)
    return out


def _sweep(open_bits: np.ndarray, start: np.ndarray, compact_every: int = 8
           ) -> tuple[np.ndarray, np.ndarray]:
    """Breadth-first search from ``start`` in many packed mazes at once.

    Args:
        open_bits: ``(n, h)`` uint64 open cells (bit ``c`` of word ``r`` = cell ``(r, c)``).
        start: ``(n, h)`` uint64 start cells.
        compact_every: drop finished mazes from the working set every this many steps.

    Returns:
        ``ecc (n,)`` int64, the distance of the farthest reachable cell, and ``far (n, h)``
        uint64, the cells at that distance.
    """
    n = len(open_bits)
    ecc = np.zeros(n, dtype=np.int64)
    far = start.copy()
    rows = np.arange(n)
    front, seen, walls_ok = start.copy(), start.copy(), open_bits
    my_ecc, my_far = ecc.copy(), far.copy()
    step = 0
    while len(rows):
        step += 1
        grown = front | (front << _ONE) | (front >> _ONE)
        grown[:, 1:] |= front[:, :-1]
        grown[:, :-1] |= front[:, 1:]
        grown &= walls_ok & ~seen
        alive = grown.any(1)
        seen |= grown
        my_ecc += alive
        my_far = np.where(alive[:, None], grown, my_far)
        front = grown
        if step % compact_every == 0 or not alive.any():
            done = ~alive                      # an empty frontier stays empty: results final
            ecc[rows[done]] = my_ecc[done]
            far[rows[done]] = my_far[done]
            rows, front, seen, walls_ok = rows[alive], front[alive], seen[alive], walls_ok[alive]
            my_ecc, my_far = my_ecc[alive], my_far[alive]
    return ecc, far


def _pick_cell(bits: np.ndarray, width: int, rng: np.random.Generator) -> np.ndarray:
    """A uniformly random set cell of each packed ``(n, h)`` mask, as a flat index ``(n,)``."""
    cells = _unpack(bits, width).reshape(len(bits), -1)
    if not len(bits):
        return np.zeros(0, dtype=np.int64)
    return np.where(cells, rng.random(cells.shape, dtype=np.float32), -1.0).argmax(1)


def distance_maps(open_: np.ndarray, start: np.ndarray) -> np.ndarray:
    """BFS distances (steps, 4-neighbourhood) from one cell in many mazes at once.

    Args:
        open_: ``(n, h, w)`` bool, True where a cell can be entered.
        start: ``(n,)`` flat index of each maze's source cell.

    Returns:
        ``(n, h, w)`` int32 distances, -1 where unreachable.
    """
    n, h, w = open_.shape
    front = np.zeros((n, h * w), dtype=bool)
    front[np.arange(n), start] = True
    front = front.reshape(n, h, w)
    seen = front.copy()
    dist = np.zeros((n, h, w), dtype=np.int32)
    while True:
        grown = front.copy()
        grown[:, 1:] |= front[:, :-1]
        grown[:, :-1] |= front[:, 1:]
        grown[:, :, 1:] |= front[:, :, :-1]
        grown[:, :, :-1] |= front[:, :, 1:]
        grown &= open_ & ~seen
        if not grown.any():
            break
        dist += ~seen           # +1 for every cell not reached before this step
        seen |= grown
        front = grown
    return np.where(seen, dist, -1)


def _trace_paths(dist: np.ndarray, goal: np.ndarray,
                 rng: np.random.Generator | None) -> np.ndarray:
    """One shortest path per maze, walked back from ``goal`` to the BFS source.

    Args:
        dist: ``(n, h, w)`` distances from ``distance_maps``; ``goal`` must be reachable.
        goal: ``(n,)`` flat goal indices.

    Returns:
        ``(n, h, w)`` bool, the cells strictly between source and goal. At each step a
        neighbour one step closer to the source is taken: a random one, or with ``rng=None``
        the first in the order up, down, left, right (the ``first`` tie-break: one
        deterministic answer per maze).
    """
    n, h, w = dist.shape
    padded = np.full((n, h + 2, w + 2), -1, dtype=np.int32)
    padded[:, 1:-1, 1:-1] = dist
    padded = padded.reshape(n, -1)
    path = np.zeros_like(padded, dtype=bool)
    rows = np.arange(n)
    r, c = np.divmod(goal, w)
    cur = (r + 1) * (w + 2) + c + 1
    left = padded[rows, cur]
    moves = np.array([-(w + 2), w + 2, -1, 1])
    while (left > 1).any():
        active = left > 1
        nbrs = cur[:, None] + moves
        closer = padded[rows[:, None], nbrs] == (left - 1)[:, None]
        choice = (closer.argmax(1) if rng is None else
                  np.where(closer, rng.random((n, 4)), -1.0).argmax(1))
        cur = np.where(active, nbrs[rows, choice], cur)
        path[rows[active], cur[active]] = True
        left = np.where(active, left - 1, left)
    return path.reshape(n, h + 2, w + 2)[:, 1:-1, 1:-1]


def shortest_path_lengths(questions: np.ndarray, size: int) -> np.ndarray:
    """``(n,)`` int64 steps of the shortest S-to-G path of each maze (-1 when G is
    unreachable). ``questions`` are ``(n, size*size)`` tokens with one S and one G each;
    path cells ``o`` count as open."""
    grid = np.asarray(questions).reshape(-1, size, size)
    n = len(grid)
    if n == 0:
        return np.zeros(0, dtype=np.int64)
    flat = grid.reshape(n, -1)
    dist = distance_maps(grid != WALL, (flat == START).argmax(1)).reshape(n, -1)
    return dist[np.arange(n), (flat == GOAL).argmax(1)].astype(np.int64)


def first_shortest_paths(questions: np.ndarray, size: int) -> np.ndarray:
    """The ``first`` answer of each maze: ``questions`` ``(n, size*size)`` tokens with the
    shortest path walked back from G to S that, wherever several neighbours are one step
    closer to S, takes the first of up, down, left, right. A function of the question alone
    (so it moves with the maze under a symmetry only where the path is unique), which makes
    the label learnable where a random tie-break is noise. G must be reachable."""
    grid = np.asarray(questions).reshape(-1, size, size)
    n = len(grid)
    if n == 0:
        return np.zeros((0, size * size), dtype=np.int64)
    flat = grid.reshape(n, -1)
    dist = distance_maps(grid != WALL, (flat == START).argmax(1))
    goal = (flat == GOAL).argmax(1)
    if (dist.reshape(n, -1)[np.arange(n), goal] < 0).any():
        raise ValueError("first_shortest_paths: G is unreachable from S in some maze")
    path = _trace_paths(dist, goal, None).reshape(n, -1)
    return np.where(path, PATH, flat).astype(np.int64)
