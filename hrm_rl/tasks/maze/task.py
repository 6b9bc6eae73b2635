"""``MazeTask``: mazes as an HRM task (tokens, CSV, generation, augmentation, any-shortest-path
correctness, rendering).
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np
import torch

from hrm_rl.config import DataConfig
from hrm_rl.tasks.base import PuzzleBatch, Task
from hrm_rl.tasks.maze.common import (CHARSET, GOAL, MAZE_HARD_SIZE, OPEN, PATH, START,
                                      TIE_BREAKS, VOCAB_SIZE, WALL, WALL_DENSITY, check_size)
from hrm_rl.tasks.maze.bfs import first_shortest_paths, shortest_path_lengths
from hrm_rl.tasks.maze.generator import generate
from hrm_rl.tasks.maze.symmetry import canonical_keys, dihedral_index
from hrm_rl.tasks.maze.rules import _neighbours, rule_breaks
from hrm_rl.tasks.maze.grids import (MazeRecords, _encode_strings, check_mazes, format_grid,
                                     read_csv, write_csv)


_COLORS = {"wall": (45, 45, 45), "open": (255, 255, 255), "start": (40, 170, 70),
           "goal": (220, 40, 40), "path": (40, 100, 230), "bad": (255, 100, 20),
           "missed": (170, 200, 250), "unknown": (200, 0, 200)}


class MazeTask(Task):
    """Square mazes of side ``size`` (Maze-Hard: 30) as an HRM task.

    ``tie_break`` says which shortest path a generated or augmented label marks where several
    tie: ``random`` (one at random, as Maze-Hard) or ``first`` (``first_shortest_paths``: a
    function of the question, so the model can learn it). Correctness accepts any shortest
    path either way.
    """

    def __init__(self, size: int = MAZE_HARD_SIZE, tie_break: str = "random") -> None:
        if tie_break not in TIE_BREAKS:
            raise ValueError(f"tie_break must be one of {', '.join(TIE_BREAKS)}, "
                             f"got {tie_break!r}")
        self.tie_break = tie_break
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
    def read_csv(self, path: str | Path, check_unique: bool = False,
                 check_shortest: bool = True) -> PuzzleBatch:
        """Load a CSV of ``size x size`` mazes (see the module function ``read_csv``)."""
        self._refuse_check_unique(check_unique)
        records = read_csv(path, self.size, check_shortest=check_shortest)
        return PuzzleBatch(records.questions, records.answers,
                           np.zeros(len(records), dtype=np.int64))

    def cache_params(self, data: DataConfig) -> dict:
        """The common settings plus the layout (only when not ``hard``), the wall density
        and the far share (only when set) and the tie-break (only when not ``random``),
        with the givens knobs as None, so the caches made before tasks named their own knobs
        keep their names."""
        params = {**super().cache_params(data), "max_givens": None, "min_givens": None}
        if data.layout != "hard":
            params["layout"] = data.layout
        if data.wall_density is not None:
            params["wall_density"] = data.wall_density
        if data.far_share is not None:
            params["far_share"] = data.far_share
        if data.lattice_share:
            params["lattice_share"] = data.lattice_share
        if self.tie_break != "random":
            params["tie_break"] = self.tie_break
        return params

    def _relabel(self, batch: PuzzleBatch) -> PuzzleBatch:
        """``batch`` with ``first`` labels when ``tie_break`` is ``first``, else as it is."""
        if self.tie_break == "random":
            return batch
        return PuzzleBatch(batch.inputs, first_shortest_paths(batch.inputs, self.size),
                           batch.puzzle_ids)

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
        maze out of training, ``exact`` only identical mazes; ``data.layout``,
        ``data.wall_density``, ``data.far_share`` and ``data.lattice_share`` shape the
        layouts (``generate``). The Sudoku givens knobs are ignored.
        """
        q, a, _ = generate(n_train + n_test, self.size, rng, distinct=data.split_by,
                           progress=progress, **_generator_knobs(data))
        order = rng.permutation(len(q))
        test, train = order[:n_test], order[n_test:]
        return (self._relabel(PuzzleBatch(q[train], a[train], np.zeros(len(train), dtype=np.int64))),
                self._relabel(PuzzleBatch(q[test], a[test], np.zeros(len(test), dtype=np.int64))))

    def sample(self, n: int, data: DataConfig, rng: np.random.Generator,
               progress: bool = False) -> PuzzleBatch:
        """``n`` fresh mazes, distinct up to symmetry, with the knobs of ``data``
        (``min_difficulty``, ``layout``, ``wall_density``, ``far_share``,
        ``lattice_share``)."""
        q, a, _ = generate(n, self.size, rng, distinct="orbit", progress=progress,
                           **_generator_knobs(data))
        return self._relabel(PuzzleBatch(q, a, np.zeros(n, dtype=np.int64)))

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
        together; a maze stays a maze with the same shortest paths). With ``tie_break``
        ``first`` the moved maze is labelled anew, since the first path of a rotated maze is
        not the rotated first path where paths tie. HRM does not augment mazes."""
        index = dihedral_index(self.size)[rng.integers(0, 8, len(batch))]
        return self._relabel(PuzzleBatch(np.take_along_axis(batch.inputs, index, 1),
                                         np.take_along_axis(batch.labels, index, 1),
                                         batch.puzzle_ids.copy()))

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


def _generator_knobs(data: DataConfig) -> dict:
    """``generate``'s keyword arguments from the knobs of ``data`` (its defaults where unset:
    ``default_min_path``, ``WALL_DENSITY``, half far ends)."""
    return {"min_path": data.min_difficulty if data.min_difficulty > 0 else None,
            "layout": data.layout,
            "density": WALL_DENSITY if data.wall_density is None else tuple(data.wall_density),
            "far_share": 0.5 if data.far_share is None else data.far_share,
            "lattice_share": data.lattice_share}
