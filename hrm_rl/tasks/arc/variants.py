"""ARC task variants: per-task dihedral x colour-permutation tables with one puzzle
identifier per (task, variant), drawn once from a seed fixed by the task name.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass

import numpy as np

from hrm_rl.tasks.arc.canvas import DIHEDRAL, NUM_COLORS
from hrm_rl.tasks.arc.corpus import ARCPuzzle


@dataclass(frozen=True)
class Variants:
    """The augmentation table: which (task, transform) each puzzle identifier stands for.

    Identifier ``k >= 1`` is variant ``k - 1 - offsets[task]`` of ``task``; variant 0 of
    every task is the identity. Row 0 of each array is the blank identifier (identity).

    Attributes:
        offsets: ``(tasks + 1,)``: task t owns identifiers ``offsets[t] + 1 .. offsets[t+1]``.
        task: ``(ids,)`` task index of each identifier (-1 for the blank id 0).
        dihedral: ``(ids,)`` the dihedral transform (see ``dihedral``).
        colors: ``(ids, 10)`` colour map, old colour -> new colour, ``colors[:, 0] == 0``.
    """

    offsets: np.ndarray
    task: np.ndarray
    dihedral: np.ndarray
    colors: np.ndarray

    @property
    def num_ids(self) -> int:
        return len(self.task)

    def counts(self) -> np.ndarray:
        """``(tasks,)`` variants per task (identity included)."""
        return np.diff(self.offsets)

    def base_id(self, task_index: np.ndarray | int) -> np.ndarray:
        """Identifier of variant 0 (the identity) of each task."""
        return np.asarray(self.offsets)[task_index] + 1

    def inverse_colors(self, ids: np.ndarray) -> np.ndarray:
        """``(n, 10)`` colour maps undoing those of ``ids``."""
        return np.argsort(self.colors[ids], axis=1)


def make_variants(puzzles: list[ARCPuzzle], augmentations: int, seed: int = 0,
                  retries: int = 5) -> Variants:
    """Draw ``augmentations`` distinct variants per task besides the identity.

    Candidates (a random dihedral and a random permutation of colours 1-9) are drawn with a
    generator seeded by ``seed`` and the task's name, ``retries * augmentations`` of them at
    most, as HRM does; two candidates are the same variant when they agree on the dihedral
    and on every colour the task shows. Tasks with few colours may get fewer variants
    (e.g. 8 x 9 = 72 at most for one colour besides black).
    """
    if augmentations < 0:
        raise ValueError(f"augmentations must be >= 0, got {augmentations}")
    identity = np.arange(NUM_COLORS, dtype=np.uint8)
    d_parts, c_parts, counts = [np.zeros(1, np.int64)], [identity[None]], []
    for p in puzzles:
        ds, cmaps = [np.zeros(1, np.int64)], [identity[None]]
        if augmentations:
            rng = np.random.default_rng([seed, zlib.crc32(p.name.encode())])
            m = retries * augmentations
            d = rng.integers(0, DIHEDRAL, m)
            perm = np.argsort(rng.random((m, NUM_COLORS - 1)), axis=1).astype(np.uint8) + 1
            cmap = np.concatenate([np.zeros((m, 1), np.uint8), perm], axis=1)
            used = p.visible_colors()
            key = d.astype(np.int64)
            for colour in used:                       # base-10 digits of the used colours
                key = key * 10 + cmap[:, colour]
            identity_key = 0
            for colour in used:
                identity_key = identity_key * 10 + int(colour)
            _, first = np.unique(key, return_index=True)
            first = np.sort(first[key[first] != identity_key])[:augmentations]
            ds.append(d[first])
            cmaps.append(cmap[first])
        d_task = np.concatenate(ds)
        d_parts.append(d_task)
        c_parts.append(np.concatenate(cmaps))
        counts.append(len(d_task))
    offsets = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)
    task = np.concatenate([[-1], np.repeat(np.arange(len(puzzles)), counts)]).astype(np.int64)
    return Variants(offsets, task, np.concatenate(d_parts).astype(np.int64),
                    np.concatenate(c_parts).astype(np.uint8))


TEST_VIEW_DIHEDRAL = np.array([0, 1, 2, 3, 4, 5, 6, 7, 0, 0, 0, 0], dtype=np.int64)
"""Test-time views (``ARCTask.with_views``): view ``v`` shows a row through dihedral
``TEST_VIEW_DIHEDRAL[v]`` then colour map ``TEST_VIEW_COLORS[v]``, under the row's own puzzle
identifier. Views 0-7 are the 8 dihedral transforms (0: the row as drawn), 8-11 four fixed
permutations of colours 1-9."""

TEST_VIEW_COLORS = np.array(
    [list(range(NUM_COLORS))] * DIHEDRAL
    + [[0, 5, 6, 3, 7, 4, 9, 8, 1, 2], [0, 3, 9, 4, 7, 1, 5, 8, 6, 2],
       [0, 9, 1, 6, 5, 3, 8, 7, 2, 4], [0, 3, 8, 4, 7, 9, 6, 5, 2, 1]], dtype=np.uint8)
"""``(views, 10)`` colour map of each test-time view (old colour -> new; 0 stays)."""
