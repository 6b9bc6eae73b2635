"""Accuracy of a core after each segment and under its own Q-head halting.

``evaluate`` is the Q-head's summary of one trace (``hrm_rl.trace.record_trace``: every
puzzle of a set run to a segment cap without halting): accuracy after each segment, and at
the first segment where the core's own rule halts. The trainer logs it as ``eval/*``.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from hrm_rl.tasks.base import PuzzleBatch, Task
from hrm_rl.trace import record_trace


@dataclass
class EvalResult:
    """Accuracies over ``n`` puzzles.

    ``exact_by_segment[k-1]`` / ``cell_by_segment[k-1]``: after exactly k segments.
    ``*_qhalt``: stopping each puzzle at the first segment where the core's rule halts
    (``model.halts``: q_halt > q_continue) or at ``max_segments``; the trainer logs them as
    ``eval/exact_acc_qhalt``, ``eval/cell_acc_qhalt``, ``eval/mean_segments_qhalt``.
    ``task_scores``: the task's own metric on those answers (``Task.score``, e.g. ARC's
    ``pass@1``/``pass@2``); empty for tasks without one.
    """

    n: int
    max_segments: int
    exact_by_segment: list[float] = field(default_factory=list)
    cell_by_segment: list[float] = field(default_factory=list)
    exact_acc_qhalt: float = 0.0
    cell_acc_qhalt: float = 0.0
    mean_segments_qhalt: float = 0.0
    segments_qhalt_histogram: list[int] = field(default_factory=list)
    task_scores: dict[str, float] = field(default_factory=dict)

    @property
    def exact_qhalt(self) -> float:
        """``exact_acc_qhalt`` under its former name (read-only)."""
        return self.exact_acc_qhalt

    def to_dict(self) -> dict:
        return dict(self.__dict__)


def evaluate(model: torch.nn.Module, task: Task, puzzles: PuzzleBatch, max_segments: int,
             batch_size: int = 512,
             precision_context: Callable[[], Any] = contextlib.nullcontext,
             progress: bool = False) -> EvalResult:
    """Run every puzzle for ``max_segments`` segments (``record_trace``) and summarise:
    accuracy at each segment, and under Q-head halting (with the task's own metric on the
    answers where the Q-head halts, ``Task.score``, scored by the unclipped ``q_halt``).

    Args:
        model: the core; task: its task; puzzles: the puzzles, in order.
        max_segments: the cap.
        batch_size: puzzles per forward.
        precision_context: factory of the autocast context to run under.
        progress: show a progress bar.
    """
    if len(puzzles) == 0:
        raise ValueError("evaluate() needs at least one puzzle")
    trace = record_trace(model, task, puzzles, max_segments, keep_pred=task.scored,
                         batch_size=batch_size, precision_context=precision_context,
                         progress=progress, desc="eval")
    halt_at = trace.qhead_halts()
    ok, cell = trace.at(halt_at)
    n = trace.n
    scores: dict[str, float] = {}
    if task.scored:
        scores = task.score(puzzles, *trace.answers(halt_at))
    return EvalResult(
        n=n, max_segments=max_segments,
        exact_by_segment=(trace.correct.sum(0) / n).tolist(),
        cell_by_segment=(trace.cell.astype(np.float64).sum(0) / n).tolist(),
        exact_acc_qhalt=float(ok.sum() / n),
        cell_acc_qhalt=float(cell.astype(np.float64).sum() / n),
        mean_segments_qhalt=float(halt_at.sum() / n),
        segments_qhalt_histogram=np.bincount(halt_at - 1, minlength=max_segments).tolist(),
        task_scores=scores,
    )
