"""Minimal Sudoku puzzles: a random full grid, then clues removed in random order while the
solution stays unique; the givens and solver-effort knobs select the difficulty.
"""

from __future__ import annotations

import numpy as np
from tqdm.auto import tqdm

from hrm_rl.tasks.sudoku.solver import (_geometry, _has_other_solution, _search, _to_digits,
                                        box_shape, difficulty)


def _random_grid(size: int, rng: np.random.Generator) -> list[int]:
    geo = _geometry(size)
    out: list[list[int]] = []
    _search([geo.full] * (size * size), geo, 1, out, [0], False, rng)
    return _to_digits(out[0]).tolist()


def _minimal_puzzle(solution: list[int], size: int, rng: np.random.Generator,
                    min_givens: int) -> list[int]:
    geo = _geometry(size)
    clues = list(solution)
    givens = len(clues)
    for cell in rng.permutation(size * size).tolist():
        if givens <= min_givens:
            break
        value = clues[cell]
        clues[cell] = 0
        if _has_other_solution(clues, cell, value, geo):
            clues[cell] = value
        else:
            givens -= 1
    return clues


def generate(n: int, size: int, rng: np.random.Generator, max_givens: int | None = None,
             min_givens: int | None = None, min_difficulty: int = 0,
             progress: bool = False) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``n`` distinct puzzles with exactly one solution each.

    Clues are removed from a random full grid in random order while the solution stays
    unique; removal stops at ``min_givens`` (the puzzle is then not necessarily minimal),
    otherwise the result is minimal. Puzzles with more than ``max_givens`` givens or a
    ``difficulty`` below ``min_difficulty`` are rejected and another is drawn.

    Returns:
        ``puzzles (n, S)``, ``solutions (n, S)`` and ``ratings (n,)`` (the ``difficulty``).
    """
    box_shape(size)
    cells = size * size
    if max_givens is not None and min_givens is not None and max_givens < min_givens:
        raise ValueError(f"max_givens={max_givens} is below min_givens={min_givens}")
    seen: set[bytes] = set()
    puzzles, solutions, ratings = [], [], []
    repeats = 0
    bar = tqdm(total=n, desc=f"generating {size}x{size} Sudoku", disable=not progress,
               leave=False)
    attempts = 0
    while len(puzzles) < n:
        attempts += 1
        if attempts > 10_000 + 200 * n:
            raise ValueError(f"found only {len(puzzles)} of {n} distinct {size}x{size} puzzles "
                             f"in {attempts - 1} attempts: the givens/difficulty constraints are "
                             "too tight (or ask for fewer)")
        solution = _random_grid(size, rng)
        clues = _minimal_puzzle(solution, size, rng, min_givens or 0)
        givens = cells - clues.count(0)
        if max_givens is not None and givens > max_givens:
            continue
        rating = difficulty(np.array(clues), size)
        if rating < min_difficulty:
            continue
        key = bytes(clues)
        if key in seen:
            repeats += 1
            if repeats > 1000 + 20 * n:
                raise ValueError(f"found only {len(seen)} distinct {size}x{size} puzzles with "
                                 f"these constraints after {repeats} repeats; ask for fewer")
            continue
        seen.add(key)
        puzzles.append(clues)
        solutions.append(solution)
        ratings.append(rating)
        bar.update(1)
    bar.close()
    return (np.array(puzzles, dtype=np.int64).reshape(n, cells),
            np.array(solutions, dtype=np.int64).reshape(n, cells),
            np.array(ratings, dtype=np.int64))
