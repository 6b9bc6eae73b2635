"""Sudoku symmetries: the validity-preserving row/column/band/stack permutations and
transposition, canonical keys up to them, and train/test splits disjoint up to symmetry.
"""

from __future__ import annotations

import itertools
from functools import lru_cache

import numpy as np

from hrm_rl.tasks.sudoku.solver import box_shape
from hrm_rl.tasks.sudoku.grids import infer_size


def _line_orders(size: int, group: int, rng: np.random.Generator | None, n: int) -> np.ndarray:
    """Orders of rows (or columns) keeping bands of ``group`` lines together.

    With ``rng``: ``(n, size)`` random orders; without: every order, ``(count, size)``.
    """
    bands = size // group
    if rng is None:
        out = []
        for band_order in itertools.permutations(range(bands)):
            for inner in itertools.product(itertools.permutations(range(group)), repeat=bands):
                out.append([band_order[b] * group + inner[b][i] for b in range(bands)
                            for i in range(group)])
        return np.array(out)
    band_order = np.argsort(rng.random((n, bands)), axis=1)
    inner = np.argsort(rng.random((n, bands, group)), axis=2)
    return (band_order[:, :, None] * group + inner).reshape(n, size)


def _cell_index(rows: np.ndarray, cols: np.ndarray, size: int) -> np.ndarray:
    """``(n, S)`` source cell of each new cell for row/column orders ``(n, size)``."""
    return (rows[:, :, None] * size + cols[:, None, :]).reshape(len(rows), size * size)


@lru_cache(maxsize=None)
def _all_geometric(size: int) -> np.ndarray:
    """Every geometric transform of the group, ``(T, S)`` source-cell indices."""
    br, bc = box_shape(size)
    rows, cols = _line_orders(size, br, None, 0), _line_orders(size, bc, None, 0)
    index = _cell_index(np.repeat(rows, len(cols), 0), np.tile(cols, (len(rows), 1)), size)
    if br == bc:
        t = index.reshape(-1, size, size).transpose(0, 2, 1).reshape(-1, size * size)
        index = np.concatenate([index, t])
    return index


def canonical_key(puzzle: np.ndarray, size: int) -> bytes:
    """A key shared by exactly the puzzles equivalent under the augmentation group
    (geometric transforms x digit relabelling). Practical for 4x4 and 6x6 only."""
    if size == 9:
        raise ValueError("canonical_key is only practical for 4x4 and 6x6 (9x9 has 3.4M "
                         "geometric transforms); use exact deduplication for 9x9")
    index = _all_geometric(size)
    views = np.asarray(puzzle)[index]                               # (T, S)
    # Relabel digits by order of first appearance in each view.
    first = np.where(views[:, :, None] == np.arange(1, size + 1), np.arange(size * size)[:, None],
                     size * size).min(axis=1)                       # (T, size)
    rank = np.argsort(np.argsort(first, axis=1), axis=1) + 1        # new label per old digit
    relabelled = np.where(views == 0, 0, np.take_along_axis(rank, np.maximum(views - 1, 0), 1))
    best = relabelled[np.lexsort(relabelled.T[::-1])[0]]
    return best.astype(np.uint8).tobytes()


def split_disjoint(puzzles: np.ndarray, n_test: int, rng: np.random.Generator,
                   by: str = "orbit") -> tuple[np.ndarray, np.ndarray]:
    """Indices ``(train, test)`` with no training puzzle equivalent (``by="orbit"``) or
    identical (``by="exact"``) to a test puzzle. Whole classes go to test until it holds at
    least ``n_test`` puzzles (then it is cut to ``n_test``; the cut rows are dropped)."""
    size = infer_size(puzzles.shape[1])
    if by == "orbit" and size != 9:
        keys = [canonical_key(p, size) for p in puzzles]
    elif by in ("orbit", "exact"):
        keys = [p.astype(np.uint8).tobytes() for p in puzzles]
    else:
        raise ValueError(f"split_disjoint by must be 'orbit' or 'exact', got {by!r}")
    classes: dict[bytes, list[int]] = {}
    for i, k in enumerate(keys):
        classes.setdefault(k, []).append(i)
    groups = list(classes.values())
    if len(groups) < 2:
        raise ValueError("all puzzles are equivalent; cannot make disjoint train/test sets")
    test: list[int] = []
    order = rng.permutation(len(groups))
    taken = 0
    for taken, g in enumerate(order, start=1):
        test.extend(groups[g])
        if len(test) >= n_test:
            break
    if taken >= len(groups):
        raise ValueError(f"only {len(groups)} distinct classes: test would take them all")
    train = [i for g in order[taken:] for i in groups[g]]
    return np.array(sorted(train)), np.array(sorted(test[:n_test]))
