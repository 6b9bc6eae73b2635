"""The 8 symmetries of the square on maze grids, and canonical keys up to them.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np


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
