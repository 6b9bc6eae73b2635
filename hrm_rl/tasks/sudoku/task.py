"""``SudokuTask``: Sudoku as an HRM task (tokens, CSV, generation, augmentation, rule checks,
rendering).
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import torch

from hrm_rl.config import DataConfig
from hrm_rl.tasks.base import PuzzleBatch, Task
from hrm_rl.tasks.sudoku.solver import _geometry, box_shape
from hrm_rl.tasks.sudoku.generator import generate
from hrm_rl.tasks.sudoku.grids import SudokuRecords, read_csv, write_csv
from hrm_rl.tasks.sudoku.symmetry import _cell_index, _line_orders, canonical_key, split_disjoint


class SudokuTask(Task):
    """Sudoku of side ``size`` (4, 6 or 9) as an HRM task."""

    checks_uniqueness = True

    def __init__(self, size: int = 9) -> None:
        self.box_shape = box_shape(size)
        self.size = size
        self.name = f"sudoku{size}"
        self.vocab_size = size + 2
        self.seq_len = size * size
        self.num_puzzle_ids = 1
        self._units: dict[torch.device, torch.Tensor] = {}

    # encoding ------------------------------------------------------------------
    def encode(self, puzzles: np.ndarray, solutions: np.ndarray) -> PuzzleBatch:
        """Digit grids ``(n, S)`` (0 = blank) and solutions -> tokens."""
        puzzles, solutions = np.asarray(puzzles), np.asarray(solutions)
        shape = (len(puzzles), self.seq_len)
        if puzzles.shape != shape or solutions.shape != shape:
            raise ValueError(f"{self.name}: puzzles and solutions must be {shape}; got "
                             f"{puzzles.shape} and {solutions.shape}")
        if puzzles.min(initial=0) < 0 or puzzles.max(initial=0) > self.size:
            raise ValueError(f"{self.name}: puzzle digits must be 0 (blank) to {self.size}")
        if solutions.min(initial=1) < 1 or solutions.max(initial=1) > self.size:
            raise ValueError(f"{self.name}: solution digits must be 1 to {self.size}")
        inputs = np.where(puzzles == 0, 1, puzzles + 1).astype(np.int64)
        return PuzzleBatch(inputs, (solutions + 1).astype(np.int64),
                           np.zeros(len(puzzles), dtype=np.int64))

    def decode(self, tokens: np.ndarray | torch.Tensor) -> np.ndarray:
        """Tokens -> digits (blank and padding -> 0)."""
        if isinstance(tokens, torch.Tensor):
            tokens = tokens.detach().cpu().numpy()
        return np.where(tokens >= 2, tokens - 1, 0).astype(np.int64)

    # data ------------------------------------------------------------------------
    def read_csv(self, path: str | Path, check_unique: bool = False) -> PuzzleBatch:
        """Load a CSV of ``size x size`` puzzles (see the module function ``read_csv``);
        a ``rating`` column with any rating other than 0 (Sudoku-Extreme's) becomes the
        batch's ``ratings``, which ``difficulty`` then measures."""
        records = read_csv(path, self.size, check_unique=check_unique)
        batch = self.encode(records.puzzles, records.solutions)
        if not records.ratings.any():  # no rating column, or ours (0 for every puzzle)
            return batch
        return dataclasses.replace(batch, ratings=records.ratings.astype(np.float64))

    def cache_params(self, data: DataConfig) -> dict:
        """The common settings plus the givens knobs."""
        return {**super().cache_params(data), "max_givens": data.max_givens,
                "min_givens": data.min_givens}

    def write_csv(self, path: str | Path, batch: PuzzleBatch) -> None:
        n = len(batch)
        ratings = np.zeros(n) if batch.ratings is None else batch.ratings
        write_csv(path, SudokuRecords(self.decode(batch.inputs), self.decode(batch.labels),
                                      ratings, [self.name] * n))

    def generate_splits(self, n_train: int, n_test: int, data: DataConfig,
                        rng: np.random.Generator, progress: bool = False
                        ) -> tuple[PuzzleBatch, PuzzleBatch]:
        """Generate ``n_train + n_test`` distinct puzzles and split them disjointly
        (``data.split_by``); an orbit split may leave somewhat fewer training puzzles."""
        puzzles, solutions, _ = generate(n_train + n_test, self.size, rng, data.max_givens,
                                         data.min_givens, data.min_difficulty, progress)
        train, test = split_disjoint(puzzles, n_test, rng, data.split_by)
        return (self.encode(puzzles[train], solutions[train]),
                self.encode(puzzles[test], solutions[test]))

    def sample(self, n: int, data: DataConfig, rng: np.random.Generator,
               progress: bool = False) -> PuzzleBatch:
        """``n`` fresh minimal puzzles with the givens and difficulty knobs of ``data``."""
        puzzles, solutions, _ = generate(n, self.size, rng, data.max_givens, data.min_givens,
                                         data.min_difficulty, progress)
        return self.encode(puzzles, solutions)

    difficulty_name = "givens"

    def difficulty(self, batch: PuzzleBatch) -> np.ndarray:
        """``(n,)`` the puzzles' ``rating`` where their file gave one (Sudoku-Extreme: the
        backtracks a solver needed, rounded; higher is harder), else the number of given
        digits (fewer givens: harder)."""
        if batch.ratings is not None:
            return np.rint(batch.ratings).astype(np.int64)
        return (np.asarray(batch.inputs) >= 2).sum(1).astype(np.int64)

    def difficulty_label(self, batch: PuzzleBatch | None) -> str:
        """``rating`` for a batch read with ratings, else ``givens``."""
        return "rating" if batch is not None and batch.ratings is not None else "givens"

    def symmetry_keys(self, inputs: np.ndarray) -> list[bytes]:
        """Canonical keys under the augmentation group (geometry x digit relabelling) for
        4x4 and 6x6; identical tokens for 9x9, whose group is too large to canonicalise."""
        if self.size == 9:
            return super().symmetry_keys(inputs)
        return [canonical_key(row, self.size) for row in np.asarray(inputs) - 1]

    # augmentation ------------------------------------------------------------------
    def augment(self, batch: PuzzleBatch, rng: np.random.Generator) -> PuzzleBatch:
        """Per row: random band/row and stack/column permutations, transpose (square boxes
        only) and digit relabelling. Inputs and labels move together."""
        n, size = len(batch), self.size
        br, bc = self.box_shape
        index = _cell_index(_line_orders(size, br, rng, n), _line_orders(size, bc, rng, n), size)
        if br == bc:
            flip = rng.random(n) < 0.5
            t = index.reshape(n, size, size).transpose(0, 2, 1).reshape(n, -1)
            index = np.where(flip[:, None], t, index)
        lut = np.concatenate([np.tile([0, 1], (n, 1)),
                              np.argsort(rng.random((n, size)), axis=1) + 2], axis=1)

        def apply(tokens: np.ndarray) -> np.ndarray:
            return np.take_along_axis(lut, np.take_along_axis(tokens, index, 1), 1)

        return PuzzleBatch(apply(batch.inputs), apply(batch.labels), batch.puzzle_ids.copy())

    # checks ------------------------------------------------------------------------
    def _unit_matrix(self, device: torch.device) -> torch.Tensor:
        if device not in self._units:
            geo = _geometry(self.size)
            m = torch.zeros(len(geo.units), self.seq_len)
            for u, unit in enumerate(geo.units):
                m[u, list(unit)] = 1.0
            self._units[device] = m.to(device)
        return self._units[device]

    def violations(self, tokens: torch.Tensor) -> torch.Tensor:
        """``(n,)`` int64: repeated digits summed over rows, columns and boxes, plus one per
        cell that holds no digit."""
        digits = tokens - 2
        is_digit = (digits >= 0) & (digits < self.size)
        onehot = torch.nn.functional.one_hot(digits.clamp(0, self.size - 1), self.size)
        onehot = (onehot * is_digit.unsqueeze(-1)).float()            # (n, S, size)
        counts = torch.einsum("us,nsd->nud", self._unit_matrix(tokens.device), onehot)
        repeats = (counts - 1).clamp_min(0).sum(dim=(1, 2)).long()
        return repeats + (~is_digit).sum(-1)

    def render(self, inputs: np.ndarray, prediction: np.ndarray,
               labels: np.ndarray | None = None) -> str:
        """The grid: givens plain, predicted digits plain, wrong predictions as ``digit!``,
        cells without a digit as ``?``. Boxes separated by ``|`` and ``-``."""
        size, (br, bc) = self.size, self.box_shape
        given = self.decode(np.asarray(inputs))
        pred = self.decode(np.asarray(prediction))
        truth = self.decode(np.asarray(labels)) if labels is not None else None
        lines = []
        for r in range(size):
            if r and r % br == 0:
                lines.append("+".join(["-" * (3 * bc)] * (size // bc)))
            cells = []
            for c in range(size):
                i = r * size + c
                d = given[i] or pred[i]
                wrong = not given[i] and truth is not None and pred[i] != truth[i]
                text = (str(d) if d else "?") + ("!" if wrong else " ")
                cells.append((" " + text) + ("|" if c % bc == bc - 1 and c < size - 1 else ""))
            lines.append("".join(cells).rstrip())
        return "\n".join(lines)
