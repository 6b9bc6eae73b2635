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
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
from tqdm.auto import tqdm

from hrm_rl.config import DataConfig
from hrm_rl.tasks.base import PuzzleBatch, Task
from hrm_rl.tasks.csvio import read_rows, write_rows

CHARSET = "# SGo"
"""Maze-Hard characters; token of ``CHARSET[i]`` is ``i + 1`` (0 is padding)."""
PAD, WALL, OPEN, START, GOAL, PATH = 0, 1, 2, 3, 4, 5
VOCAB_SIZE = 6
MAZE_HARD_SIZE, MAZE_HARD_MIN_PATH = 30, 110
WALL_DENSITY = (0.3, 0.5)
LAYOUTS = ("hard", "mix")
MIN_SIZE, MAX_SIZE = 4, 64            # a grid row must fit in one uint64 word
_ONE = np.uint64(1)


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


# ----------------------------------------------------------------------------- BFS


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


def _trace_paths(dist: np.ndarray, goal: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """One shortest path per maze, walked back from ``goal`` to the BFS source.

    Args:
        dist: ``(n, h, w)`` distances from ``distance_maps``; ``goal`` must be reachable.
        goal: ``(n,)`` flat goal indices.

    Returns:
        ``(n, h, w)`` bool, the cells strictly between source and goal. At each step a
        random neighbour one step closer to the source is taken.
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
        choice = np.where(closer, rng.random((n, 4)), -1.0).argmax(1)
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


# ----------------------------------------------------------------------------- generator


def _candidates(count: int, size: int, min_path: int, density: tuple[float, float],
                rng: np.random.Generator, layout: str = "hard"
                ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Draw ``count`` random layouts and keep those with a long enough path.

    ``layout="hard"``: S and G are the two ends of a double sweep (about the longest shortest
    path of the layout). ``layout="mix"``: half the layouts get a walled border, and half the
    mazes take their ends that way while the other half take a random open cell as one end
    and, as the other, a random cell at a distance drawn uniformly from ``min_path`` to that
    cell's eccentricity; so path lengths spread from ``min_path`` up (see ``generate``).

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
    open_ = ~walls
    # Sweep 1 from a random open cell (the first open one of 8 random draws).
    draws = rng.integers(0, cells, (count, 8))
    is_open = open_.reshape(count, -1)[np.arange(count)[:, None], draws]
    has = is_open.any(1)
    origin = draws[np.arange(count), is_open.argmax(1)]
    idx = np.flatnonzero(has)
    bits = _pack(open_[idx])
    ecc, far = _sweep(bits, _one_cell(origin[idx], size, size))
    far_ends = np.ones(len(idx), dtype=bool) if layout == "hard" else rng.random(len(idx)) < 0.5
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
             progress: bool = False, layout: str = "hard"
             ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
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
        q, a, lengths = _candidates(batch, size, min_path, density, rng, layout)
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


# ----------------------------------------------------------------------------- symmetry


@lru_cache(maxsize=None)
def dihedral_index(size: int) -> np.ndarray:
    """``(8, size*size)`` source cell of each new cell for the 8 symmetries of the square
    (index 0 is the identity; then transpose/flip combinations)."""
    r, c = np.divmod(np.arange(size * size), size)
    out = []
    for d in range(8):
        transpose, flip_r, flip_c = d >> 2 & 1, d >> 1 & 1, d & 1
        rr = size - 1 - r if flip_r else r
        cc = size - 1 - c if flip_c else c
        out.append(cc * size + rr if transpose else rr * size + cc)
    index = np.stack(out)
    index.setflags(write=False)
    return index


def canonical_keys(questions: np.ndarray, size: int) -> list[bytes]:
    """One key per maze, shared exactly by mazes that are rotations/reflections of it."""
    views = np.asarray(questions).astype(np.uint8)[:, dihedral_index(size)]  # (n, 8, S)
    return [min(v.tobytes() for v in row) for row in views]


# ----------------------------------------------------------------------------- checks (torch)


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


# ----------------------------------------------------------------------------- data I/O


@dataclass
class MazeRecords:
    """Mazes as read from or written to CSV. Arrays are ``(n, S)`` tokens and ``(n,)``."""

    questions: np.ndarray
    answers: np.ndarray
    ratings: np.ndarray
    sources: list[str]

    def __len__(self) -> int:
        return len(self.questions)


def infer_size(length: int) -> int:
    """Maze side from a grid string's length (900 -> 30); ``ValueError`` if not square."""
    side = int(round(length ** 0.5))
    if side * side != length:
        raise ValueError(f"{length} characters is not a square grid (a maze string has "
                         f"size*size characters, e.g. {MAZE_HARD_SIZE ** 2} for "
                         f"{MAZE_HARD_SIZE}x{MAZE_HARD_SIZE})")
    return check_size(side)


def format_grid(tokens: np.ndarray) -> str:
    """Tokens ``(S,)`` -> the Maze-Hard string (padding/unknown tokens as ``?``)."""
    return "".join(_CHARS[np.clip(np.asarray(tokens), 0, VOCAB_SIZE)].tolist())


_CHARS = np.array(["?", *CHARSET, "?"])
_LOOKUP = np.zeros(256, dtype=np.int64)
for _i, _ch in enumerate(CHARSET):
    _LOOKUP[ord(_ch)] = _i + 1


def _where(i: int, size: int) -> str:
    return f"position {i} (row {i // size}, column {i % size}, from 0)"


def _encode_strings(texts: Sequence[str], size: int, what: str, allowed: str,
                    place: list[str]) -> np.ndarray:
    """Strings -> ``(n, S)`` tokens; ``ValueError`` naming ``place[row]`` on a bad character."""
    raw = np.frombuffer("".join(texts).encode("ascii", "replace"), dtype=np.uint8)
    tokens = _LOOKUP[raw].reshape(len(texts), size * size)
    ok = np.isin(tokens, [CHARSET.index(ch) + 1 for ch in allowed])
    if not ok.all():
        row, col = np.argwhere(~ok)[0]
        expected = ", ".join(repr(ch) for ch in allowed)
        raise ValueError(f"{place[row]}: {what}: invalid character {texts[row][col]!r} at "
                         f"{_where(int(col), size)}; expected one of {expected}")
    return tokens


def check_mazes(questions: np.ndarray, answers: np.ndarray, size: int, place: list[str],
                check_shortest: bool = True) -> None:
    """Raise ``ValueError`` (starting with ``place[row]``) at the first maze that is not a
    question with one S and one G whose answer marks one shortest S-to-G path.

    Args:
        questions, answers: ``(n, size*size)`` tokens.
        place: ``n`` labels for messages, e.g. ``"train.csv:12"``.
        check_shortest: also require the path to be a shortest one (one vectorised BFS).
    """
    n = len(questions)
    if n == 0:
        return
    for what, grid in (("question", questions), ("answer", answers)):
        for sym, name in ((START, "start 'S'"), (GOAL, "goal 'G'")):
            count = (grid == sym).sum(1)
            if (count != 1).any():
                i = int(np.argmax(count != 1))
                raise ValueError(f"{place[i]}: {what} has {count[i]} {name} cells; a maze needs "
                                 "exactly one start 'S' and one goal 'G'")
    differ = (answers != questions) & ~((questions == OPEN) & (answers == PATH))
    if differ.any():
        i, j = (int(v) for v in np.argwhere(differ)[0])
        raise ValueError(f"{place[i]}: answer does not match the question at {_where(j, size)}: "
                         f"question {CHARSET[questions[i, j] - 1]!r}, answer "
                         f"{CHARSET[answers[i, j] - 1]!r} (the answer must be the question with "
                         "path cells 'o' on open cells only)")
    breaks = rule_breaks(torch.from_numpy(answers), size).numpy()
    if breaks.any():
        i = int(np.argmax(breaks > 0))
        raise ValueError(f"{place[i]}: answer's path cells 'o' do not form one simple path from "
                         f"S to G ({breaks[i]} cells break the rule: each 'o' has exactly two "
                         "neighbours in o/S/G, S and G exactly one)")
    if check_shortest:
        shortest = shortest_path_lengths(questions, size)
        steps = (answers == PATH).sum(1) + 1
        wrong = steps != shortest
        if wrong.any():
            i = int(np.argmax(wrong))
            raise ValueError(f"{place[i]}: answer's path takes {steps[i]} steps but the shortest "
                             f"path from S to G takes {shortest[i]}; the answer must be a "
                             "shortest path")


def read_csv(path: str | Path, size: int | None = None, limit: int | None = None,
             check_shortest: bool = True) -> MazeRecords:
    """Read a Maze-Hard style CSV (``source,question,answer,rating``).

    Questions use ``# SG``, answers ``# SGo``; each must have exactly one S and one G, and
    the answer must be the question with one shortest S-to-G path marked ``o``.

    Args:
        path: the CSV file (UTF-8, optional byte-order mark).
        size: expected maze side; inferred from the first row when None.
        limit: read at most this many mazes.
        check_shortest: verify that every answer's path is a shortest one (vectorised BFS;
            ``is_correct`` relies on the labelled path being optimal).

    Raises:
        FileNotFoundError: no such file.
        ValueError: anything else wrong with the file (its format, a character, a maze
            without one S and one G, an answer that is not a shortest path); the message
            starts with ``<path>:<line>:`` and says what was expected.
    """
    path = Path(path)
    if size is not None:
        check_size(size)
    rows = read_rows(path, size, limit, "maze", infer_size, _size_hint)
    place = [f"{path}:{line}" for line in rows.lines]
    q = _encode_strings(rows.questions, rows.size, "question", CHARSET[:4], place)
    a = _encode_strings(rows.answers, rows.size, "answer", CHARSET, place)
    check_mazes(q, a, rows.size, place, check_shortest)
    return MazeRecords(q, a, rows.ratings, rows.sources)


def _size_hint(length: int, size: int) -> str:
    """What a string of ``length`` characters looks like, when not ``size x size``."""
    side = int(round(length ** 0.5))
    return (f"; this looks like a {side}x{side} maze, but {size}x{size} is expected"
            if side * side == length else "")


def write_csv(path: str | Path, records: MazeRecords) -> None:
    """Write records as ``source,question,answer,rating`` (Maze-Hard characters)."""
    write_rows(path, records.sources, map(format_grid, records.questions),
               map(format_grid, records.answers), records.ratings)


# ----------------------------------------------------------------------------- the task

_COLORS = {"wall": (45, 45, 45), "open": (255, 255, 255), "start": (40, 170, 70),
           "goal": (220, 40, 40), "path": (40, 100, 230), "bad": (255, 100, 20),
           "missed": (170, 200, 250), "unknown": (200, 0, 200)}


class MazeTask(Task):
    """Square mazes of side ``size`` (Maze-Hard: 30) as an HRM task."""

    def __init__(self, size: int = MAZE_HARD_SIZE) -> None:
        self.size = check_size(size)
        self.name = f"maze{self.size}"
        self.vocab_size = VOCAB_SIZE
        self.seq_len = self.size * self.size
        self.num_puzzle_ids = 1

    # encoding ------------------------------------------------------------------
    def encode(self, questions: Sequence[str], answers: Sequence[str],
               check_shortest: bool = True) -> PuzzleBatch:
        """Maze-Hard strings (``size*size`` characters each) -> tokens, validated like a CSV
        file (errors name the row, from 0)."""
        questions, answers = list(questions), list(answers)
        if len(questions) != len(answers):
            raise ValueError(f"{self.name}: {len(questions)} questions but {len(answers)} answers")
        place = [f"{self.name} row {i}" for i in range(len(questions))]
        for i, (q, a) in enumerate(zip(questions, answers)):
            for what, text in (("question", q), ("answer", a)):
                if len(text) != self.seq_len:
                    raise ValueError(f"{place[i]}: {what} has {len(text)} characters, expected "
                                     f"{self.seq_len} for {self.size}x{self.size}")
        q = _encode_strings(questions, self.size, "question", CHARSET[:4], place)
        a = _encode_strings(answers, self.size, "answer", CHARSET, place)
        check_mazes(q, a, self.size, place, check_shortest)
        return PuzzleBatch(q, a, np.zeros(len(q), dtype=np.int64))

    def decode(self, tokens: np.ndarray | torch.Tensor) -> np.ndarray:
        """Tokens ``(..., S)`` -> cell codes ``(..., size, size)`` int64: the index into
        ``CHARSET`` (0 wall, 1 open, 2 start, 3 goal, 4 path), -1 for padding or an unknown
        token. ``CHARSET[code]`` is the Maze-Hard character; ``to_strings`` gives whole rows.
        (Numbers, not characters, so env ``info`` stays comparable by Gymnasium's checker.)"""
        if isinstance(tokens, torch.Tensor):
            tokens = tokens.detach().cpu().numpy()
        tokens = np.asarray(tokens).astype(np.int64)
        codes = np.where((tokens >= 1) & (tokens <= len(CHARSET)), tokens - 1, -1)
        return codes.reshape(*tokens.shape[:-1], self.size, self.size)

    def to_strings(self, tokens: np.ndarray | torch.Tensor) -> list[str]:
        """Tokens ``(n, S)`` -> Maze-Hard strings."""
        if isinstance(tokens, torch.Tensor):
            tokens = tokens.detach().cpu().numpy()
        return [format_grid(row) for row in np.asarray(tokens).reshape(-1, self.seq_len)]

    # data ------------------------------------------------------------------------
    def read_csv(self, path: str | Path, check_shortest: bool = True) -> PuzzleBatch:
        """Load a CSV of ``size x size`` mazes (see the module function ``read_csv``)."""
        records = read_csv(path, self.size, check_shortest=check_shortest)
        return PuzzleBatch(records.questions, records.answers,
                           np.zeros(len(records), dtype=np.int64))

    def write_csv(self, path: str | Path, batch: PuzzleBatch) -> None:
        """Write ``batch`` in the Maze-Hard CSV format; ``rating`` is the path length in steps."""
        steps = (np.asarray(batch.labels) == PATH).sum(1) + 1
        write_csv(path, MazeRecords(batch.inputs, batch.labels, steps,
                                    [self.name] * len(batch)))

    def generate_splits(self, n_train: int, n_test: int, data: DataConfig,
                        rng: np.random.Generator, progress: bool = False
                        ) -> tuple[PuzzleBatch, PuzzleBatch]:
        """``n_train + n_test`` distinct mazes, split at random into disjoint sets.

        ``data.min_difficulty`` is the minimum path length in steps (0 = ``default_min_path``,
        110 at 30x30); ``data.split_by`` ``orbit`` also keeps rotations/reflections of a test
        maze out of training, ``exact`` only identical mazes. The Sudoku givens knobs are
        ignored.
        """
        min_path = data.min_difficulty if data.min_difficulty > 0 else None
        q, a, _ = generate(n_train + n_test, self.size, rng, min_path,
                           distinct=data.split_by, progress=progress, layout=data.layout)
        order = rng.permutation(len(q))
        test, train = order[:n_test], order[n_test:]
        return (PuzzleBatch(q[train], a[train], np.zeros(len(train), dtype=np.int64)),
                PuzzleBatch(q[test], a[test], np.zeros(len(test), dtype=np.int64)))

    def sample(self, n: int, data: DataConfig, rng: np.random.Generator,
               progress: bool = False) -> PuzzleBatch:
        """``n`` fresh mazes, distinct up to symmetry, with the knobs of ``data``
        (``min_difficulty``, ``layout``)."""
        min_path = data.min_difficulty if data.min_difficulty > 0 else None
        q, a, _ = generate(n, self.size, rng, min_path, distinct="orbit", progress=progress,
                           layout=data.layout)
        return PuzzleBatch(q, a, np.zeros(n, dtype=np.int64))

    difficulty_name = "path length"

    def difficulty(self, batch: PuzzleBatch) -> np.ndarray:
        """``(n,)`` shortest S-to-G path length in steps (longer: harder)."""
        return shortest_path_lengths(np.asarray(batch.inputs), self.size)

    def symmetry_keys(self, inputs: np.ndarray) -> list[bytes]:
        """Keys equal for mazes that are rotations or reflections of each other."""
        return canonical_keys(np.asarray(inputs), self.size)

    # augmentation ------------------------------------------------------------------
    def augment(self, batch: PuzzleBatch, rng: np.random.Generator) -> PuzzleBatch:
        """Per row a random one of the 8 symmetries of the square (inputs and labels move
        together; a maze stays a maze with the same shortest paths). HRM does not augment
        mazes; the configs set ``data.augment: false``."""
        index = dihedral_index(self.size)[rng.integers(0, 8, len(batch))]
        return PuzzleBatch(np.take_along_axis(batch.inputs, index, 1),
                           np.take_along_axis(batch.labels, index, 1), batch.puzzle_ids.copy())

    # checks ------------------------------------------------------------------------
    def is_correct(self, tokens: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """``(n,)`` bool: the prediction marks *a* shortest S-to-G path (any of them).

        Checked, per row and without a loop over rows: walls, S and G of the label stay as
        they are; every other cell is open or path; the number of path cells equals the
        label's; S and G each have exactly one neighbour in {o, S, G}, every ``o`` exactly two.

        Why that suffices: the cells {o, S, G} with 4-adjacency form a graph whose degrees are
        1 (S, G) and 2 (every o). A graph with maximum degree 2 is a disjoint union of simple
        paths and cycles, and each path component has exactly two degree-1 ends; S and G are
        the only ones, so one component is a simple S-to-G path and every other component is a
        cycle of o cells. That path runs over open cells only, so it has at least as many steps
        as the shortest path, i.e. at least ``k + 1`` where ``k`` is the label's number of o
        cells (the label is a shortest path; ``read_csv`` checks this). It uses ``m <= k`` o
        cells, so ``m + 1 >= k + 1`` forces ``m = k``: no cycles remain, and the prediction
        is exactly one simple S-to-G path of optimal length.
        """
        n = labels.shape[0]
        size = self.size
        pred, label = tokens.reshape(n, size, size), labels.reshape(n, size, size)
        fixed = (label == WALL) | (label == START) | (label == GOAL)
        cell_ok = torch.where(fixed, pred == label, (pred == OPEN) | (pred == PATH))
        path = pred == PATH
        ends = (pred == START) | (pred == GOAL)
        degree = _neighbours(path | ends)
        degree_ok = torch.where(path, degree == 2, torch.where(ends, degree == 1, True))
        same_count = path.sum((1, 2)) == (label == PATH).sum((1, 2))
        return (cell_ok & degree_ok).reshape(n, -1).all(-1) & same_count

    def cell_accuracy(self, tokens: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """``(n,)`` float: fraction of cells equal to the labelled answer, and 1.0 for a row
        whose prediction is another valid shortest path (so ``is_correct`` implies 1.0)."""
        acc = super().cell_accuracy(tokens, labels)
        return torch.where(self.is_correct(tokens, labels), torch.ones_like(acc), acc)

    def violations(self, tokens: torch.Tensor) -> torch.Tensor:
        """``(n,)`` int64 rule violations of predicted grids (see ``rule_breaks``): path
        cells without two path/S/G neighbours, S/G without one, missing or extra S/G, and
        padding cells. Zero on every labelled answer."""
        return rule_breaks(tokens, self.size)

    # rendering ---------------------------------------------------------------------
    def _cell_states(self, inputs: np.ndarray, prediction: np.ndarray,
                     labels: np.ndarray | None
                     ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, bool]:
        """Per cell of one maze: input grid, prediction grid, a "bad" mask (a changed wall/S/G,
        a non-maze token, or a path cell off an open cell or without two path/S/G
        neighbours), a "missed" mask (labelled path cells the prediction left out, only when
        it is wrong), and whether the prediction is correct (False without labels)."""
        size = self.size
        inp = np.asarray(inputs).reshape(size, size)
        pred = np.asarray(prediction).reshape(size, size)
        fixed = (inp == WALL) | (inp == START) | (inp == GOAL)
        path = pred == PATH
        degree = _neighbours(torch.from_numpy(path | (pred == START) | (pred == GOAL))[None])
        degree = degree[0].numpy()
        bad = np.where(fixed, pred != inp, (pred != OPEN) & ~path) | (path & (degree != 2))
        correct = False
        missed = np.zeros_like(bad)
        if labels is not None:
            lab = np.asarray(labels).reshape(1, -1)
            correct = bool(self.is_correct(torch.as_tensor(pred.reshape(1, -1)),
                                           torch.as_tensor(lab))[0])
            if not correct:
                missed = (lab.reshape(size, size) == PATH) & ~path
        return inp, pred, bad, missed, correct

    def render(self, inputs: np.ndarray, prediction: np.ndarray,
               labels: np.ndarray | None = None) -> str:
        """A status line, then the grid, one character per cell: ``#`` wall, ``.`` open,
        ``S``/``G``, ``o`` predicted path, ``x`` a wrong cell (a path cell on a wall or
        without exactly two path/S/G neighbours, a wall/S/G the prediction changed, padding)
        and, when the prediction is wrong, ``+`` on labelled path cells it missed."""
        inp, pred, bad, missed, correct = self._cell_states(inputs, prediction, labels)
        chars = np.array(list("?#.SGo"))[np.clip(np.where(pred == PATH, PATH, inp), 0, PATH)]
        chars = np.where(missed, "+", np.where(bad, "x", chars))
        k = int((pred == PATH).sum())
        broken = int(self.violations(torch.as_tensor(pred.reshape(1, -1)))[0])
        head = f"maze {self.size}x{self.size}: predicted path {k + 1} steps, {broken} rule breaks"
        if labels is not None:
            best = int((np.asarray(labels) == PATH).sum()) + 1
            head += f"; shortest {best} steps; " + ("correct" if correct else "wrong")
        return "\n".join([head] + ["".join(row) for row in chars])

    def cell_colors(self, inputs: np.ndarray, prediction: np.ndarray,
                    labels: np.ndarray | None = None) -> np.ndarray:
        """``(size, size, 3)`` uint8: walls dark, open white, S green, G red, predicted path
        blue, wrong cells (as ``x`` in ``render``) orange-red, and, when the prediction is
        wrong, missed labelled path cells light blue."""
        inp, pred, bad, missed, _ = self._cell_states(inputs, prediction, labels)
        palette = np.array([_COLORS[k] for k in ("unknown", "wall", "open", "start", "goal",
                                                 "path")], dtype=np.uint8)
        img = palette[np.clip(np.where(pred == PATH, PATH, inp), 0, PATH)]
        img[missed] = _COLORS["missed"]
        img[bad] = _COLORS["bad"]
        return img
