"""Train/test puzzle sets for a run: read from the user's files or generated and cached."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from pathlib import Path

import numpy as np

from hrm_rl.config import DataConfig
from hrm_rl.tasks.base import PuzzleBatch, Task


def _cache_key(task: Task, data: DataConfig) -> str:
    params = task.cache_params(data)
    digest = hashlib.sha1(json.dumps(params, sort_keys=True).encode()).hexdigest()[:12]
    return f"{task.name}-{digest}"


def generated_splits(task: Task, data: DataConfig, progress: bool = False
                     ) -> tuple[PuzzleBatch, PuzzleBatch]:
    """Generate (or reuse from ``data.cache_dir``) disjoint train/test sets for ``data``.

    Tasks with ``cache_splits = False`` (ARC: built from a bundled corpus, fast) are built
    directly, without the CSV cache.
    """
    if not task.cache_splits:
        return task.generate_splits(data.train_size, data.test_size, data,
                                    np.random.default_rng(data.seed), progress)
    folder = Path(data.cache_dir) / _cache_key(task, data)
    if (folder / "test.csv").is_file() and (folder / "train.csv").is_file():
        return task.read_csv(folder / "train.csv"), task.read_csv(folder / "test.csv")
    rng = np.random.default_rng(data.seed)
    train, test = task.generate_splits(data.train_size, data.test_size, data, rng, progress)
    folder.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=folder.parent, prefix=f".{folder.name}."))
    try:
        task.write_csv(tmp / "train.csv", train)
        task.write_csv(tmp / "test.csv", test)
        os.replace(tmp, folder)  # atomic; a concurrent writer's identical result also works
    except OSError:
        if not (folder / "test.csv").is_file():
            raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return train, test


def build_splits(task: Task, data: DataConfig, progress: bool = False
                 ) -> tuple[PuzzleBatch, PuzzleBatch]:
    """The run's ``(train, test)`` sets: each from its CSV path when set, else generated."""
    train = task.read_csv(data.train_path) if data.train_path else None
    test = task.read_csv(data.test_path) if data.test_path else None
    if train is None or test is None:
        gen_train, gen_test = generated_splits(task, data, progress)
        train = gen_train if train is None else train
        test = gen_test if test is None else test
    return train, test


def in_training_set(task: Task, puzzles: PuzzleBatch, data: DataConfig,
                    progress: bool = False) -> np.ndarray:
    """``(n,)`` bool: which of ``puzzles`` are, up to the task's symmetries
    (``symmetry_keys``), in the training set that ``data`` gives (``build_splits``).

    With ``augment`` a run trains on symmetries of its training puzzles, so a puzzle that is
    only a rotation of one of them is counted as trained on too. Use it to keep a
    validation or outside set clear of every run whose result it is meant to judge.
    """
    train, _ = build_splits(task, data, progress)
    seen = set(task.symmetry_keys(train.inputs))
    return np.fromiter((key in seen for key in task.symmetry_keys(puzzles.inputs)),
                       dtype=bool, count=len(puzzles))
