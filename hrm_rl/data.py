"""Puzzle sources: where the segment engine draws a new puzzle when a row halts.

A source hands out puzzles one at a time in a fixed order for a given seed; nothing drawn is
ever thrown away, so every puzzle a source yields is a puzzle some row works on.
"""

from __future__ import annotations

from typing import Any, Callable, Protocol

import numpy as np

from hrm_rl.tasks.base import PuzzleBatch


class PuzzleSource(Protocol):
    """Anything that can hand out ``n`` encoded puzzles."""

    def draw(self, n: int) -> PuzzleBatch:
        """The next ``n`` puzzles."""
        ...


class ShuffledSource:
    """Epochs over a fixed set of puzzles, reshuffled each epoch, optionally augmented.

    Args:
        puzzles: the puzzle set.
        rng: generator for shuffling and augmentation (seed it for reproducible runs).
        augment: optional ``(batch, rng) -> batch`` applied to every drawn batch.
        shuffle: when False the puzzles come in stored order, epoch after epoch.
    """

    def __init__(self, puzzles: PuzzleBatch, rng: np.random.Generator,
                 augment: Callable[[PuzzleBatch, np.random.Generator], PuzzleBatch] | None = None,
                 shuffle: bool = True) -> None:
        if len(puzzles) == 0:
            raise ValueError("cannot draw from an empty puzzle set")
        self.puzzles = puzzles
        self.rng = rng
        self.augment = augment
        self.shuffle = shuffle
        self.epoch = 0
        self.drawn = 0
        self._order = self._new_order()
        self._pos = 0

    def _new_order(self) -> np.ndarray:
        n = len(self.puzzles)
        return self.rng.permutation(n) if self.shuffle else np.arange(n)

    def draw(self, n: int) -> PuzzleBatch:
        """The next ``n`` puzzles (augmented when the source augments); ``n = 0`` gives an
        empty batch and leaves the source and its generator as they were."""
        if n == 0:
            return self.puzzles.take(np.zeros(0, dtype=np.int64))
        batch = self.puzzles.take(self.draw_indices(n))
        return self.augment(batch, self.rng) if self.augment is not None else batch

    def draw_indices(self, n: int) -> np.ndarray:
        """The positions in ``puzzles`` of the next ``n`` puzzles, advancing the source as
        ``draw`` does (without augmentation: a replay of recorded segments uses these)."""
        parts = []
        while n > 0:
            if self._pos == len(self._order):
                self.epoch += 1
                self._order, self._pos = self._new_order(), 0
            take = min(n, len(self._order) - self._pos)
            parts.append(self._order[self._pos:self._pos + take])
            self._pos += take
            n -= take
        index = np.concatenate(parts) if parts else np.zeros(0, dtype=np.int64)
        self.drawn += len(index)
        return index

    def state_dict(self) -> dict[str, Any]:
        """Position in the epoch, the epoch's order and the generator state (for resuming).

        The puzzle set and the augmentation function are not included: the owner rebuilds
        them and then calls ``load_state_dict``.
        """
        return {"epoch": self.epoch, "drawn": self.drawn, "pos": self._pos,
                "order": self._order.tolist(), "rng": self.rng.bit_generator.state}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Continue exactly where ``state_dict`` was taken (same puzzle set required)."""
        order = np.asarray(state["order"], dtype=np.int64)
        if len(order) != len(self.puzzles) or not 0 <= state["pos"] <= len(order):
            raise ValueError(f"source state is for {len(order)} puzzles, this source has "
                             f"{len(self.puzzles)}")
        self.epoch, self.drawn, self._pos = state["epoch"], state["drawn"], state["pos"]
        self._order = order
        self.rng.bit_generator.state = state["rng"]
