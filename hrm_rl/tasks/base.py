"""The task protocol: what every puzzle family (Sudoku, Maze, ARC) provides to the core.

A task turns puzzles into fixed-length token sequences and back, generates or loads data,
augments it without changing its meaning, checks answers and renders them. Everything the
model, the segment engine, the trainer and the environments need to know about a puzzle
family goes through this interface, so adding a task touches only its own module.

Token conventions shared by all tasks: token 0 is padding, ``IGNORE_LABEL`` marks label
positions that are not supervised (never counted in accuracy).
"""

from __future__ import annotations

import dataclasses
import hashlib
from abc import ABC, abstractmethod
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar, Hashable

import numpy as np
import torch

from hrm_rl.config import DataConfig, TaskConfig

IGNORE_LABEL = -100
"""Label value for positions that carry no supervision (matches ``F.cross_entropy``)."""

HALTING_SPLITS = ("train", "val", "test")
"""The named puzzle splits of a checkpoint for halting research (``Task.halting_split``)."""
HALTING_SPLIT_SIZES = {"train": 5000, "val": 1000}
"""Puzzles in a generated halting ``train`` and ``val`` split (``test`` is the core's own)."""


@dataclass(frozen=True)
class PuzzleBatch:
    """A set of encoded puzzles, as numpy arrays.

    Attributes:
        inputs: ``(n, seq_len)`` int64 input tokens.
        labels: ``(n, seq_len)`` int64 target tokens, ``IGNORE_LABEL`` where unsupervised.
        puzzle_ids: ``(n,)`` int64 puzzle-identifier indices (0 when the task has none).
        ratings: ``(n,)`` float difficulty ratings a puzzle file gave (Sudoku-Extreme's
            ``rating`` column), or None; ``take`` and ``concat`` carry them.
        views: ``(n,)`` int64 test-time view of each row, or None (every row as drawn): the
            index of a transform the task applied to the row's input and label and undoes
            before it scores the answer (ARC's ``TEST_VIEWS``, for voting); ``take`` and
            ``concat`` carry them.
    """

    inputs: np.ndarray
    labels: np.ndarray
    puzzle_ids: np.ndarray
    ratings: np.ndarray | None = None
    views: np.ndarray | None = None

    def __post_init__(self) -> None:
        if self.inputs.ndim != 2 or self.inputs.shape != self.labels.shape:
            raise ValueError(
                f"inputs and labels must both be (n, seq_len); got {self.inputs.shape} "
                f"and {self.labels.shape}"
            )
        if self.puzzle_ids.shape != (self.inputs.shape[0],):
            raise ValueError(
                f"puzzle_ids must be (n,) = ({self.inputs.shape[0]},); got {self.puzzle_ids.shape}"
            )
        if self.ratings is not None and self.ratings.shape != self.puzzle_ids.shape:
            raise ValueError(f"ratings must be (n,) = ({self.inputs.shape[0]},); got "
                             f"{self.ratings.shape}")
        if self.views is not None and self.views.shape != self.puzzle_ids.shape:
            raise ValueError(f"views must be (n,) = ({self.inputs.shape[0]},); got "
                             f"{self.views.shape}")

    def __len__(self) -> int:
        return int(self.inputs.shape[0])

    def take(self, index: np.ndarray | slice) -> PuzzleBatch:
        """Rows ``index`` of this batch, as a new batch."""
        return PuzzleBatch(self.inputs[index], self.labels[index], self.puzzle_ids[index],
                           None if self.ratings is None else self.ratings[index],
                           None if self.views is None else self.views[index])

    @staticmethod
    def concat(batches: list[PuzzleBatch]) -> PuzzleBatch:
        """Concatenate batches along the row axis (views: a batch without them counts as
        view 0, the rows as drawn)."""
        return PuzzleBatch(
            np.concatenate([b.inputs for b in batches]),
            np.concatenate([b.labels for b in batches]),
            np.concatenate([b.puzzle_ids for b in batches]),
            None if any(b.ratings is None for b in batches)
            else np.concatenate([b.ratings for b in batches]),
            None if all(b.views is None for b in batches)
            else np.concatenate([np.zeros(len(b), np.int64) if b.views is None else b.views
                                 for b in batches]),
        )


def _goes_to_val(key: bytes) -> bool:
    """Whether a symmetry class (by its key) belongs to the halting ``val`` split."""
    return hashlib.sha1(key).digest()[0] % 6 == 0


class Task(ABC):
    """One puzzle family. Subclasses set the class attributes in ``__init__``.

    Attributes:
        name: short identifier, e.g. ``"sudoku4"``.
        vocab_size: number of distinct tokens (inputs and labels), padding included.
        seq_len: tokens per puzzle.
        num_puzzle_ids: size of the puzzle-identifier table (1 when unused).

    Capabilities (class attributes a task overrides; callers read them, never probe):
        cache_splits: generated train/test sets are cached as CSV under ``data.cache_dir``
            (False where building them is fast, e.g. ARC from its bundled corpus).
        box_shape: ``(rows, cols)`` of the boxes a rendering outlines (Sudoku), else None.
        checks_uniqueness: ``read_csv(..., check_unique=True)`` can verify that each puzzle
            has exactly one solution.
        scored: the task has its own metric, ``score`` (e.g. ARC's pass@k), which
            ``evaluate`` reports beside exact accuracy.
        content_token: where a puzzle is a square canvas with its grid in the top-left
            corner (ARC): the lowest token id of a grid cell, which
            ``model.edge_positions`` needs to find the grid; None for other tasks.
    """

    name: str
    vocab_size: int
    seq_len: int
    num_puzzle_ids: int = 1
    cache_splits: bool = True
    box_shape: tuple[int, int] | None = None
    checks_uniqueness: bool = False
    scored: bool = False
    content_token: int | None = None

    @abstractmethod
    def read_csv(self, path: str | Path, check_unique: bool = False) -> PuzzleBatch:
        """Load and encode puzzles from a file in the task's CSV format.

        ``check_unique`` (only where ``checks_uniqueness``): also verify each puzzle has
        exactly one solution; other tasks raise ``ValueError`` when it is set.
        """

    def cache_params(self, data: DataConfig) -> dict:
        """The settings of ``data`` that the generated train/test sets depend on; their hash
        names the CSV cache folder. Tasks add their own generator knobs."""
        return {"task": self.name, "train_size": data.train_size, "test_size": data.test_size,
                "min_difficulty": data.min_difficulty, "split_by": data.split_by,
                "seed": data.seed, "format": 1}

    def score(self, batch: PuzzleBatch, predictions: np.ndarray | torch.Tensor,
              q_halt: np.ndarray | torch.Tensor) -> dict[str, float]:
        """The task's own metric over one answer per row of ``batch`` (where ``scored``);
        ``q_halt`` is each answer's Q-head halt logit. Names map to fractions."""
        raise NotImplementedError(f"task {self.name} has no metric of its own (scored=False)")

    def _refuse_check_unique(self, check_unique: bool) -> None:
        if check_unique:
            raise ValueError(f"check_unique is not available for task {self.name}: only "
                             "tasks with checks_uniqueness (Sudoku) can verify uniqueness")

    @abstractmethod
    def write_csv(self, path: str | Path, batch: PuzzleBatch) -> None:
        """Write encoded puzzles to ``path`` in the task's CSV format."""

    @abstractmethod
    def generate_splits(self, n_train: int, n_test: int, data: DataConfig,
                        rng: np.random.Generator, progress: bool = False
                        ) -> tuple[PuzzleBatch, PuzzleBatch]:
        """Generate disjoint train and test sets using the generator knobs in ``data``."""

    @abstractmethod
    def augment(self, batch: PuzzleBatch, rng: np.random.Generator) -> PuzzleBatch:
        """Apply a random meaning-preserving transform to every row (vectorised)."""

    @abstractmethod
    def violations(self, tokens: torch.Tensor) -> torch.Tensor:
        """Task verifier signal: rule violations of predicted tokens.

        Args:
            tokens: ``(n, seq_len)`` predicted tokens.

        Returns:
            ``(n,)`` int64 count of violated constraints (0 for a consistent answer).
        """

    @abstractmethod
    def render(self, inputs: np.ndarray, prediction: np.ndarray, labels: np.ndarray | None) -> str:
        """Text picture of one puzzle (``(seq_len,)`` arrays), marking wrong cells."""

    def cell_colors(self, inputs: np.ndarray, prediction: np.ndarray,
                    labels: np.ndarray | None) -> np.ndarray | None:
        """Colour picture of one puzzle for ``rgb_array`` rendering, or None.

        Tasks whose cells are colours rather than symbols (maze, ARC) return a
        ``(rows, cols, 3)`` uint8 array, one pixel per cell, marking wrong cells; the env
        scales it up. The default None makes the renderer draw symbols (Sudoku digits).
        """
        return None

    def is_correct(self, tokens: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """``(n,)`` bool: whether each predicted answer is exactly right.

        The default compares every supervised position; tasks whose answers are not unique
        (a maze with several shortest paths) override this with a verifier.
        """
        mask = labels != IGNORE_LABEL
        return ((tokens == labels) | ~mask).all(dim=-1)

    def sample(self, n: int, data: DataConfig, rng: np.random.Generator,
               progress: bool = False) -> PuzzleBatch:
        """``n`` fresh distinct puzzles from the task's generator with the knobs in ``data``.

        Raises:
            NotImplementedError: the task has no generator (ARC reads a corpus).
        """
        raise NotImplementedError(f"{self.name} has no puzzle generator")

    difficulty_name: str | None = None
    """What ``difficulty`` measures (e.g. ``"givens"``), or None for a task without one."""

    extra_splits: dict[str, str] = {}
    """Named puzzle sets of the task's own beyond a core's ``train``/``val``/``test``
    (name -> what it holds), e.g. re-arc's ``official`` ARC pairs; ``extra_split(name)``
    builds one, and ``Checkpoint.puzzles`` / ``hrm-rl eval --data`` accept the names."""

    def extra_split(self, name: str) -> PuzzleBatch:
        """The puzzles of ``extra_splits[name]``.

        Raises:
            ValueError: the task has no such split.
        """
        raise ValueError(f"task {self.name} has no split {name!r}"
                         + (f"; it has: {', '.join(self.extra_splits)}"
                            if self.extra_splits else ""))

    def puzzle_id_keys(self) -> list[Hashable]:
        """One key per row of the puzzle-identifier table, naming what the row stands for,
        so that weights trained on another selection of puzzles can be matched row by row
        (``train.init_from``). The default: the row's index (tables match by position)."""
        return list(range(self.num_puzzle_ids))

    def difficulty(self, batch: PuzzleBatch) -> np.ndarray | None:
        """``(n,)`` int64 per-puzzle difficulty measure (``difficulty_name``), or None."""
        return None

    def difficulty_label(self, batch: PuzzleBatch | None) -> str | None:
        """What ``difficulty(batch)`` measures for this batch: ``difficulty_name`` unless the
        task measures some batches otherwise (Sudoku: a file's ``rating``)."""
        return self.difficulty_name

    def symmetry_keys(self, inputs: np.ndarray) -> list[bytes]:
        """One key per row of ``(n, seq_len)`` inputs, equal exactly for puzzles that are the
        same up to the task's symmetries (the default: identical tokens)."""
        return [row.astype(np.int64).tobytes() for row in np.asarray(inputs)]

    def halting_split(self, split: str, data: DataConfig, test: PuzzleBatch,
                      progress: bool = False) -> PuzzleBatch:
        """Puzzles of a core's halting split ``train`` or ``val``, disjoint from ``test``.

        Halting policies train on ``train`` (and choose settings on ``val``) and are scored
        on ``test``, the core's own held-out puzzles. The default draws fresh puzzles from
        the generator under the core's ``data`` knobs, with a seed of its own (``data.seed``
        and "HALT"), and drops every puzzle that is the same as, or a symmetry of
        (``symmetry_keys``), a test puzzle. Each symmetry class goes wholly to ``val`` (one
        class in six, by a hash of its key) or to ``train``, so the two are disjoint up to
        symmetry too; within a split puzzles are distinct. ``HALTING_SPLIT_SIZES[split]``
        puzzles, the same ones on every call.
        """
        if split not in HALTING_SPLIT_SIZES:
            raise ValueError(f"split must be one of {', '.join(HALTING_SPLIT_SIZES)} here, "
                             f"got {split!r}")
        rng = np.random.default_rng([data.seed, 0x48414C54])  # "HALT": not the core's stream
        want = HALTING_SPLIT_SIZES[split]
        banned = set(self.symmetry_keys(test.inputs))
        seen: set[bytes] = set()
        kept: list[PuzzleBatch] = []
        found = 0
        for _ in range(20):
            batch = self.sample(sum(HALTING_SPLIT_SIZES.values()), data, rng, progress)
            rows = []
            for i, key in enumerate(self.symmetry_keys(batch.inputs)):
                exact = batch.inputs[i].tobytes()
                if key in banned or exact in seen or _goes_to_val(key) != (split == "val"):
                    continue
                seen.add(exact)
                rows.append(i)
            kept.append(batch.take(np.array(rows[: want - found], dtype=np.int64)))
            found += len(kept[-1])
            if found >= want:
                return PuzzleBatch.concat(kept)
        raise ValueError(f"{self.name}: found only {found} of {want} distinct puzzles for the "
                         f"halting {split} split that are not a symmetry of a test puzzle; "
                         "the generator's space is too small")

    def cell_accuracy(self, tokens: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """``(n,)`` float: fraction of supervised positions predicted right."""
        mask = labels != IGNORE_LABEL
        hits = ((tokens == labels) & mask).sum(-1).float()
        return hits / mask.sum(-1).clamp_min(1).float()


@dataclass(frozen=True)
class TaskOptions(ABC):
    """A task's own settings, checked, and the task they build (``make_task``).

    A run config keeps one flat ``task`` section (``TaskConfig``) for every task; a task's
    options class is the part that task reads. Its fields are the ``task.*`` keys it reads
    (``from_config`` copies them from the section), ``data_keys`` the ``data.*`` generator
    knobs only it reads (Sudoku's ``max_givens``). ``RunConfig.validate`` calls ``validate``
    and refuses another task-specific key set away from its default. Adding a task: its
    package with a ``TaskOptions`` subclass, a ``TaskConfig`` field per new key, and its
    ``register_task`` line in ``hrm_rl/tasks/__init__.py`` (``hrm_rl.registry``).
    """

    data_keys: ClassVar[tuple[str, ...]] = ()

    @classmethod
    def from_config(cls, config: TaskConfig) -> TaskOptions:
        """These options, their fields taken from the flat ``task`` section ``config``."""
        return cls(**{f.name: getattr(config, f.name) for f in dataclasses.fields(cls)})

    @abstractmethod
    def validate(self, data: DataConfig) -> None:
        """Raise ``ConfigError`` naming the dotted key (``task.size``, ``data.max_givens``)
        for a value of these options or of ``data_keys`` out of range; run before any
        puzzle is generated."""

    @abstractmethod
    def make(self) -> Task:
        """The task these options describe."""
