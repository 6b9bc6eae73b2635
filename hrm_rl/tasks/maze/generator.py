"""Random-wall maze generation: batches of candidate layouts, the double sweep for long
shortest paths, the ``hard`` and ``mix`` layouts, lattice (corridor) layouts, and distinct
mazes up to symmetry.
"""

from __future__ import annotations

import numpy as np
from tqdm.auto import tqdm

from hrm_rl.tasks.maze.common import (GOAL, LAYOUTS, OPEN, PATH, START, WALL, WALL_DENSITY,
                                      check_size, default_min_path)
from hrm_rl.tasks.maze.bfs import _one_cell, _pack, _pick_cell, _sweep, _trace_paths, distance_maps
from hrm_rl.tasks.maze.symmetry import canonical_keys


def lattice_walls(count: int, size: int, rng: np.random.Generator, max_loops: int = 6
                  ) -> np.ndarray:
    """``(count, size, size)`` bool walls of corridor mazes: a random spanning tree of the
    lattice of odd cells drawn by Kruskal's algorithm (edges in random order, joined when
    they link two components), a walled border, then 0 to ``max_loops`` (uniform) of the
    edges left out of the tree opened as well, so some mazes have loops."""
    k = (size - 1) // 2
    walls = np.ones((count, size, size), dtype=bool)
    odd = 2 * np.arange(k) + 1
    walls[:, odd[:, None], odd[None, :]] = False
    edges = ([(r * k + c, r * k + c + 1) for r in range(k) for c in range(k - 1)]
             + [(r * k + c, (r + 1) * k + c) for r in range(k - 1) for c in range(k)])
    passages = [(a // k + b // k + 1, a % k + b % k + 1) for a, b in edges]  # wall between

    def find(parent: list[int], x: int) -> int:
        while parent[x] != x:
            parent[x] = parent[parent[x]]
            x = parent[x]
        return x

    for m in range(count):
        parent = list(range(k * k))
        left_out = []
        for e in rng.permutation(len(edges)):
            ra, rb = find(parent, edges[e][0]), find(parent, edges[e][1])
            if ra == rb:
                left_out.append(e)
                continue
            parent[ra] = rb
            walls[m][passages[e]] = False
        for e in left_out[:int(rng.integers(0, max_loops + 1))]:
            walls[m][passages[e]] = False
    return walls


def _candidates(count: int, size: int, min_path: int, density: tuple[float, float],
                rng: np.random.Generator, layout: str = "hard", far_share: float = 0.5,
                lattice_share: float = 0.0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Draw ``count`` random layouts and keep those with a long enough path.

    ``layout="hard"``: S and G are the two ends of a double sweep (about the longest shortest
    path of the layout). ``layout="mix"``: half the layouts get a walled border, and a share
    ``far_share`` (half by default) of the mazes take their ends that way while the others
    take a random open cell as one end and, as the other, a random cell at a distance drawn
    uniformly from ``min_path`` to that cell's eccentricity; so path lengths spread from
    ``min_path`` up (see ``generate``). A share ``lattice_share`` of the layouts (any
    layout) are corridor mazes (``lattice_walls``) instead of random walls.

    Returns ``(questions, answers, lengths)`` for the accepted layouts (tokens ``(m, S)``,
    steps ``(m,)``), in the order drawn.
    """
    cells = size * size
    p = rng.uniform(density[0], density[1], count)
    walls = rng.integers(0, 1 << 16, (count, size, size), dtype=np.uint16) < \
        np.round(p * (1 << 16))[:, None, None]
    if layout == "mix":
        border = rng.random(count) < 0.5
        ring = np.ones((size, size), dtype=bool)
        ring[1:-1, 1:-1] = False
        walls |= border[:, None, None] & ring
    if lattice_share > 0:
        lattice = rng.random(count) < lattice_share
        walls[lattice] = lattice_walls(int(lattice.sum()), size, rng)
    open_ = ~walls
    # Sweep 1 from a random open cell (the first open one of 8 random draws).
    draws = rng.integers(0, cells, (count, 8))
    is_open = open_.reshape(count, -1)[np.arange(count)[:, None], draws]
    has = is_open.any(1)
    origin = draws[np.arange(count), is_open.argmax(1)]
    idx = np.flatnonzero(has)
    bits = _pack(open_[idx])
    ecc, far = _sweep(bits, _one_cell(origin[idx], size, size))
    far_ends = (np.ones(len(idx), dtype=bool) if layout == "hard"
                else rng.random(len(idx)) < far_share)
    # Any two cells of the origin's component are at most 2 * ecc apart: prune early.
    keep = np.where(far_ends, 2 * ecc >= min_path, ecc >= min_path)
    idx, bits, far, origin, ecc, far_ends = (idx[keep], bits[keep], far[keep], origin[idx[keep]],
                                             ecc[keep], far_ends[keep])
    a = np.where(far_ends, _pick_cell(far, size, rng), origin)
    if far_ends.any():  # sweep 2 from the farthest cell: its eccentricity is the path length
        ecc2, far2 = _sweep(bits[far_ends], _one_cell(a[far_ends], size, size))
        ecc[far_ends], far[far_ends] = ecc2, far2
    ok = ecc >= min_path
    idx, a, far, length, far_ends = idx[ok], a[ok], far[ok], ecc[ok], far_ends[ok]
    if not len(idx):
        empty = np.zeros((0, cells), dtype=np.int64)
        return empty, empty.copy(), np.zeros(0, dtype=np.int64)
    dist = distance_maps(open_[idx], a)
    b = _pick_cell(far, size, rng)
    if not far_ends.all():  # random ends: a target distance uniform in [min_path, ecc]
        rand = np.flatnonzero(~far_ends)
        target = rng.integers(min_path, length[rand] + 1)
        at = dist[rand].reshape(len(rand), -1) == target[:, None]
        b[rand] = np.where(at, rng.random(at.shape, dtype=np.float32), -1.0).argmax(1)
        length[rand] = target
    path = _trace_paths(dist, b, rng).reshape(len(idx), -1)
    questions = np.where(open_[idx].reshape(len(idx), -1), OPEN, WALL).astype(np.int64)
    swap = rng.random(len(idx)) < 0.5
    rows = np.arange(len(idx))
    questions[rows, np.where(swap, b, a)] = START
    questions[rows, np.where(swap, a, b)] = GOAL
    answers = np.where(path, PATH, questions)
    return questions, answers, length


def generate(n: int, size: int, rng: np.random.Generator, min_path: int | None = None,
             density: tuple[float, float] = WALL_DENSITY, distinct: str = "exact",
             progress: bool = False, layout: str = "hard", far_share: float = 0.5,
             lattice_share: float = 0.0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``n`` distinct mazes whose shortest S-to-G path has at least ``min_path`` steps.

    Deterministic for a given ``rng`` state (candidates are drawn in fixed-size batches).

    Args:
        n: number of mazes.
        size: grid side (4 to 64).
        rng: the source of randomness.
        min_path: minimum path length in steps (``o`` cells + 1); None = ``default_min_path``.
        density: range of the per-maze wall probability.
        distinct: ``exact`` (no two identical questions) or ``orbit`` (no two questions
            that are rotations/reflections of each other).
        progress: show a progress bar.
        layout: ``hard`` (S and G at the ends of a double sweep: the layout's longest
            paths, as Maze-Hard) or ``mix`` (a difficulty mix: half the layouts walled at the
            border, half the mazes with a random S and a G at a uniformly drawn distance of
            at least ``min_path``; so short and long paths alike).
        far_share: with ``layout="mix"``, the share of mazes with S and G at the ends of
            the layout's longest path (the rest get a random S and a G at a drawn
            distance); a larger share means more long paths. Ignored for ``hard``.
        lattice_share: the share of candidate layouts that are corridor mazes
            (``lattice_walls``: a random spanning tree of the odd-cell lattice, a few loops)
            instead of random walls; 0 draws the random-wall stream unchanged.

    Returns:
        ``questions (n, S)`` and ``answers (n, S)`` int64 tokens, ``lengths (n,)`` steps.

    Raises:
        ValueError: bad arguments, or ``min_path`` so long that random layouts (almost)
            never reach it (the message says how many were tried).
    """
    size = check_size(size)
    min_path = default_min_path(size) if min_path is None else int(min_path)
    if min_path < 1:
        raise ValueError(f"min_path must be >= 1 step, got {min_path}")
    if not 0.0 <= density[0] <= density[1] < 1.0:
        raise ValueError(f"density must be a range (low, high) with 0 <= low <= high < 1, "
                         f"got {density}")
    if distinct not in ("exact", "orbit"):
        raise ValueError(f"distinct must be 'exact' or 'orbit', got {distinct!r}")
    if layout not in LAYOUTS:
        raise ValueError(f"layout must be one of {', '.join(LAYOUTS)}, got {layout!r}")
    if not 0.0 <= far_share <= 1.0:
        raise ValueError(f"far_share must be in [0, 1], got {far_share}")
    if not 0.0 <= lattice_share <= 1.0:
        raise ValueError(f"lattice_share must be in [0, 1], got {lattice_share}")
    cells = size * size
    batch = int(np.clip((1 << 22) // cells, 256, 8192))
    give_up, give_up_none = max(200_000, 2000 * n), 100_000
    seen: set[bytes] = set()
    out_q, out_a, out_l = [], [], []
    tried = found = 0
    bar = tqdm(total=n, desc=f"generating {size}x{size} mazes", disable=not progress,
               leave=False)
    while found < n:
        if tried >= give_up or (found == 0 and tried >= give_up_none):
            bar.close()
            raise ValueError(f"found only {found} of {n} {size}x{size} mazes with a shortest "
                             f"path of >= {min_path} steps in {tried} random layouts; lower "
                             f"min_path (data.min_difficulty; default for this size "
                             f"{default_min_path(size)}) or ask for fewer")
        q, a, lengths = _candidates(batch, size, min_path, density, rng, layout, far_share,
                                    lattice_share)
        tried += batch
        keys = canonical_keys(q, size) if distinct == "orbit" else \
            [row.astype(np.uint8).tobytes() for row in q]
        for i, key in enumerate(keys):
            if key in seen or found >= n:
                continue
            seen.add(key)
            out_q.append(q[i])
            out_a.append(a[i])
            out_l.append(lengths[i])
            found += 1
            bar.update(1)
    bar.close()
    return (np.array(out_q, dtype=np.int64).reshape(n, cells),
            np.array(out_a, dtype=np.int64).reshape(n, cells),
            np.array(out_l, dtype=np.int64))
