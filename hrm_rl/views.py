"""Test-time views for ARC cores: vote over the symmetric views a core answers well in.

ARC allows two attempts per test input, and HRM votes over augmented variants of each
input, each under its own puzzle identifier, to make them. A core trained without variants
(``task.augmentations: 0``, as ``arc-rearc``) has one identifier per task, but many ARC
tasks commute with some dihedral transforms or colour permutations: showing such a core a
rotated input under its task's identifier and rotating the answer back gives a second,
partly independent answer. Which views a task allows is not known in advance, so it is
chosen from data the score never sees:

1. every pair of the ``select`` split (a checkpoint's halting ``train`` split) in every view
   of ``TEST_VIEW_DIHEDRAL`` (8 dihedral transforms, 4 colour permutations): the core's
   exact accuracy per task and view under its own Q-head halting;
2. a task keeps view ``v`` when its accuracy is at least ``threshold`` times the task's
   accuracy as drawn (view 0, always kept) and above 0;
3. the threshold is the one of ``THRESHOLDS`` whose choice scores best on the ``val`` split
   (voted ``pairs pass@2``, then ``pairs pass@1``, then the higher threshold: fewer views),
   and no views at all (``"none"``, preferred on a tie) is a candidate too, so a core whose
   views do not help on val keeps none.

``choose_views`` does all three, ``write_views`` stores the result as ``views.json`` beside
the weights, and ``load_checkpoint`` hands it to the task (``ARCTask.test_views``), so that
``ckpt.puzzles("official")`` shows each official pair in its task's views and ``score``
votes over them. The held-out generated test split and the envs use no views: each row
there is one answer, as the Q-head halting figures need. CLI: ``hrm-rl views CORE``.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from hrm_rl.tasks.arc.scoring import score
from hrm_rl.tasks.arc.variants import TEST_VIEW_DIHEDRAL
from hrm_rl.tasks.base import PuzzleBatch
from hrm_rl.trace import record_trace

VIEWS_FILE = "views.json"
"""The chosen views of a checkpoint, beside its weights (``write_views``)."""

THRESHOLDS = (1.0, 0.95, 0.9, 0.8, 0.7)
"""Candidate keep-thresholds (share of a task's as-drawn accuracy a view must reach)."""


@dataclass
class ViewChoice:
    """The views chosen for each task of a core, and the evidence.

    Attributes:
        chosen: task name -> kept views (0 first); the ``ARCTask.test_views`` to load.
        threshold: the keep-threshold chosen on ``val``; None: no views (``"none"`` won).
        accuracy: task name -> exact accuracy (Q-head halting) in each view, on ``select``.
        pairs: task name -> pairs of the task in ``select``.
        val: threshold (as a string), or ``"none"`` for view 0 alone, -> the voted scores
            on ``val`` of its choice (``pass@1``, ``pass@2``, ``pairs pass@1``,
            ``pairs pass@2``, ``mean views``).
        select_split, val_split: the splits used; max_segments: the segment cap.
    """

    chosen: dict[str, list[int]]
    threshold: float | None
    accuracy: dict[str, list[float]]
    pairs: dict[str, int]
    val: dict[str, dict[str, float]] = field(default_factory=dict)
    select_split: str = "train"
    val_split: str = "val"
    max_segments: int = 0

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


def keep_views(accuracy: dict[str, list[float]], threshold: float) -> dict[str, list[int]]:
    """Per task, view 0 and every view whose accuracy is at least ``threshold`` times view
    0's and above 0."""
    if not 0.0 < threshold <= 1.0:
        raise ValueError(f"threshold must be in (0, 1], got {threshold}")
    return {name: [0] + [v for v in range(1, len(acc)) if acc[v] > 0
                         and acc[v] >= threshold * acc[0]]
            for name, acc in accuracy.items()}


def _answers(model: torch.nn.Module, task: Any, batch: PuzzleBatch, max_segments: int,
             batch_size: int, precision_context: Callable[[], Any], progress: bool,
             desc: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Each row's answer where the core's Q-head halts: tokens, q_halt and correctness."""
    trace = record_trace(model, task, batch, max_segments, batch_size=batch_size,
                         precision_context=precision_context, progress=progress, desc=desc)
    halt_at = trace.qhead_halts()
    return (*trace.answers(halt_at), trace.at(halt_at)[0])


def choose_views(model: torch.nn.Module, task: Any, select: PuzzleBatch, val: PuzzleBatch,
                 max_segments: int, thresholds: tuple[float, ...] = THRESHOLDS,
                 batch_size: int = 512,
                 precision_context: Callable[[], Any] = contextlib.nullcontext,
                 progress: bool = False, select_split: str = "train",
                 val_split: str = "val") -> ViewChoice:
    """Choose each task's test-time views (the module docstring's three steps).

    Args:
        model: the core; task: its ``ARCTask``.
        select: pairs to measure each view's accuracy on (rows as drawn, identity variants).
        val: other pairs to choose the threshold on.
        max_segments: the cap the Q-head halts within (the core's ``train.max_segments``).
        thresholds: candidate keep-thresholds, each in (0, 1].
        select_split, val_split: the splits' names, recorded in the result.
    """
    if not thresholds:
        raise ValueError("thresholds is empty")
    if not hasattr(task, "with_views"):
        raise ValueError(f"task {task.name} has no test-time views (ARC tasks have)")
    if not len(select) or not len(val):
        raise ValueError(f"choose_views needs pairs in both splits; got {len(select)} to "
                         f"select on and {len(val)} to validate on")
    n_views = len(TEST_VIEW_DIHEDRAL)
    every = {p.name: list(range(n_views)) for p in task.puzzles}
    shown = task.with_views(select, every)
    _, _, correct = _answers(model, task, shown, max_segments, batch_size,
                             precision_context, progress, "views: select")
    names = np.array([p.name for p in task.puzzles])
    task_of = task.variants.task[shown.puzzle_ids]
    accuracy: dict[str, list[float]] = {}
    pairs: dict[str, int] = {}
    for t in np.unique(task_of):
        mine = task_of == t
        accuracy[str(names[t])] = [float(correct[mine & (shown.views == v)].mean())
                                   for v in range(n_views)]
        pairs[str(names[t])] = int((mine & (shown.views == 0)).sum())

    val_shown = task.with_views(val, every)
    pred, q_halt, _ = _answers(model, task, val_shown, max_segments, batch_size,
                               precision_context, progress, "views: val")
    val_task = task.variants.task[val_shown.puzzle_ids]
    scores: dict[str, dict[str, float]] = {}
    best: tuple | None = None
    for threshold in (None, *thresholds):
        chosen = ({name: [0] for name in accuracy} if threshold is None
                  else keep_views(accuracy, threshold))
        mask = task.view_table(chosen)[val_task, val_shown.views]
        voted = score(task, val_shown.take(mask), pred[mask], q_halt[mask])
        got = {"pass@1": voted.pass_at_1, "pass@2": voted.pass_at_2,
               "pairs pass@1": voted.inputs_pass_at_1, "pairs pass@2": voted.inputs_pass_at_2,
               "mean views": float(np.mean([len(v) for v in chosen.values()]))}
        scores["none" if threshold is None else str(threshold)] = got
        rank = (got["pairs pass@2"], got["pairs pass@1"],
                float("inf") if threshold is None else threshold)
        if best is None or rank > best[0]:
            best = (rank, threshold, chosen)
    assert best is not None
    return ViewChoice(best[2], best[1], accuracy, pairs, scores, select_split, val_split,
                      int(max_segments))


def write_views(folder: str | Path, choice: ViewChoice) -> Path:
    """Store ``choice`` as ``folder/views.json`` (atomically); returns the path."""
    from hrm_rl.checkpoint import atomic_write_text

    path = Path(folder) / VIEWS_FILE
    atomic_write_text(path, json.dumps(choice.to_dict(), indent=1, sort_keys=True) + "\n")
    return path


def read_views(folder: str | Path) -> dict[str, list[int]] | None:
    """The chosen views stored beside a checkpoint's weights, or None without a file.

    Raises:
        ValueError: a file that is not a ``write_views`` record.
    """
    path = Path(folder) / VIEWS_FILE
    if not path.is_file():
        return None
    try:
        chosen = json.loads(path.read_text())["chosen"]
        return {str(k): [int(v) for v in vs] for k, vs in chosen.items()}
    except (ValueError, KeyError, TypeError, AttributeError) as err:
        raise ValueError(f"{path}: not a views record ({err}); rewrite it with "
                         "`hrm-rl views`") from err
