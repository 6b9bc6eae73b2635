"""Accuracy of a core after each segment and under its own Q-head halting.

``record_rollout`` runs every puzzle of a set to a segment cap without halting and keeps, per
puzzle and segment, what halting decisions are made from and scored by (correctness, cell
accuracy, the Q-head's two logits, the least confident cell). A segment's result does not
depend on when anyone halts, so every halting rule, the Q-head's included, can be scored
on one rollout; ``evaluate`` is the Q-head's summary of one.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, field

import numpy as np
import torch
from tqdm.auto import tqdm

from hrm_rl.data import ShuffledSource
from hrm_rl.model import HRM
from hrm_rl.segment_engine import SegmentEngine
from hrm_rl.tasks.base import PuzzleBatch, Task


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


@dataclass(frozen=True)
class Rollout:
    """Every puzzle of a set run for ``max_segments`` segments; arrays ``(n, max_segments)``
    with column ``k`` after segment ``k + 1``.

    Attributes:
        correct: bool, the answer is exactly right (the task's verifier).
        cell: float32, fraction of supervised cells right.
        q_halt, q_continue: float32, the Q-head's logits.
        min_confidence: float32, the smallest per-cell max softmax probability.
        halts: bool, the core's own halting rule fired (``model.halts``).
        answers: ``(n, seq_len)`` int16 tokens of each puzzle's answer where the core's rule
            halts it (``qhead_halts()``), or None when not kept (``keep_answers``).
    """

    correct: np.ndarray
    cell: np.ndarray
    q_halt: np.ndarray
    q_continue: np.ndarray
    min_confidence: np.ndarray
    halts: np.ndarray
    answers: np.ndarray | None = None

    @property
    def n(self) -> int:
        return int(self.correct.shape[0])

    @property
    def max_segments(self) -> int:
        return int(self.correct.shape[1])

    def first(self, mask: np.ndarray, cap: int | None = None) -> np.ndarray:
        """``(n,)`` int64: the first segment (1-based) where ``mask`` ``(n, K)`` holds,
        or ``cap`` (default ``max_segments``) where it holds at none before the cap."""
        cap = self.max_segments if cap is None else cap
        if not 1 <= cap <= self.max_segments:
            raise ValueError(f"cap must be in [1, {self.max_segments}], got {cap}")
        hit = np.asarray(mask, dtype=bool)[:, :cap].copy()
        hit[:, cap - 1] = True
        return hit.argmax(1) + 1

    def qhead_halts(self, cap: int | None = None) -> np.ndarray:
        """``(n,)`` segments at which the core's own rule (``model.halts``) halts."""
        return self.first(self.halts, cap)

    def at(self, halt_at: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """``(correct, cell)`` ``(n,)`` of each puzzle's answer after ``halt_at`` segments."""
        rows = np.arange(self.n)
        return self.correct[rows, halt_at - 1], self.cell[rows, halt_at - 1]

    def take(self, index: np.ndarray | slice) -> Rollout:
        """Rows ``index`` of this rollout."""
        return Rollout(*(getattr(self, f)[index] for f in
                         ("correct", "cell", "q_halt", "q_continue", "min_confidence", "halts")),
                       answers=None if self.answers is None else self.answers[index])


def bootstrap_ci(values: np.ndarray, seed: int = 0, resamples: int = 1000
                 ) -> tuple[float, float]:
    """95% percentile bootstrap interval of the mean of ``values`` ``(n,)`` over puzzles."""
    values = np.asarray(values, dtype=np.float64)
    rng = np.random.default_rng(seed)
    means = values[rng.integers(0, len(values), (resamples, len(values)))].mean(1)
    lo, hi = np.percentile(means, [2.5, 97.5])
    return float(lo), float(hi)


def oracle_halt_at(correct: np.ndarray) -> np.ndarray:
    """``(n,)`` the oracle's halting segment from ``(n, K)`` per-segment correctness: the
    first segment (1-based) whose answer is right, or 1 where none is (it reads the
    targets: an upper bound on any halting policy's reward, not a policy)."""
    correct = np.asarray(correct, dtype=bool)
    return np.where(correct.any(1), correct.argmax(1) + 1, 1)


@torch.inference_mode()
def record_rollout(model: HRM, task: Task, puzzles: PuzzleBatch, max_segments: int,
                   batch_size: int = 512, precision_context=contextlib.nullcontext,
                   progress: bool = False, keep_answers: bool = False) -> Rollout:
    """Run every puzzle for ``max_segments`` segments, never halting, and keep each segment.

    Args:
        model: the core (its device is used).
        task: the task, for answer checking.
        puzzles: encoded puzzles (no augmentation is applied), in the rollout's row order.
        max_segments: segments to run.
        batch_size: puzzles per forward.
        precision_context: factory of the autocast context to run under.
        progress: show a progress bar.
        keep_answers: also keep each puzzle's answer where the core's rule halts it
            (``Rollout.answers``), for a task's own metric (``Task.score``).
    """
    if max_segments < 1:
        raise ValueError(f"max_segments must be >= 1, got {max_segments}")
    if len(puzzles) == 0:
        raise ValueError("a rollout needs at least one puzzle")
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    was_training = model.training
    model.eval()
    device = model.H_init.device
    n = len(puzzles)
    shape = (n, max_segments)
    correct = np.zeros(shape, dtype=bool)
    halts = np.zeros(shape, dtype=bool)
    arrays = {name: np.zeros(shape, dtype=np.float32)
              for name in ("cell", "q_halt", "q_continue", "min_confidence")}
    answers = np.zeros((n, task.seq_len), dtype=np.int16) if keep_answers else None
    bar = tqdm(total=n, desc="rollout", unit="puzzle", disable=not progress, leave=False)
    try:
        for start in range(0, n, batch_size):
            chunk = puzzles.take(slice(start, start + batch_size))
            rows = slice(start, start + len(chunk))
            engine = SegmentEngine(model, ShuffledSource(chunk, np.random.default_rng(0),
                                                         shuffle=False), len(chunk), device)
            for k in range(max_segments):  # no cap and no halting: every row runs on
                with precision_context():
                    out = engine.step().out
                conf, pred = out.logits.float().softmax(-1).max(-1)
                correct[rows, k] = task.is_correct(pred, engine.labels).cpu().numpy()
                halts[rows, k] = model.halts(out).cpu().numpy()
                if answers is not None:  # the first halt, else the last segment (qhead_halts)
                    take = halts[rows, k] & ~halts[rows, :k].any(1) if k < max_segments - 1 \
                        else ~halts[rows, :k].any(1)
                    answers[rows][take] = pred.cpu().numpy()[take]
                for name, value in (("cell", task.cell_accuracy(pred, engine.labels)),
                                    ("q_halt", out.q_halt), ("q_continue", out.q_continue),
                                    ("min_confidence", conf.min(-1).values)):
                    arrays[name][rows, k] = value.float().cpu().numpy()
            bar.update(len(chunk))
    finally:
        bar.close()
        model.train(was_training)
    return Rollout(correct, halts=halts, answers=answers, **arrays)


def evaluate(model: HRM, task: Task, puzzles: PuzzleBatch, max_segments: int,
             batch_size: int = 512, precision_context=contextlib.nullcontext,
             progress: bool = False) -> EvalResult:
    """Run every puzzle for ``max_segments`` segments and record accuracy at each, and
    under Q-head halting (``record_rollout`` documents the arguments)."""
    if len(puzzles) == 0:
        raise ValueError("evaluate() needs at least one puzzle")
    roll = record_rollout(model, task, puzzles, max_segments, batch_size, precision_context,
                          progress, keep_answers=task.scored)
    halt_at = roll.qhead_halts()
    ok, cell = roll.at(halt_at)
    n = roll.n
    scores = task.score(puzzles, roll.answers, roll.q_halt[np.arange(n), halt_at - 1]) \
        if task.scored else {}
    return EvalResult(
        n=n, max_segments=max_segments,
        exact_by_segment=(roll.correct.sum(0) / n).tolist(),
        cell_by_segment=(roll.cell.astype(np.float64).sum(0) / n).tolist(),
        exact_acc_qhalt=float(ok.sum() / n),
        cell_acc_qhalt=float(cell.astype(np.float64).sum() / n),
        mean_segments_qhalt=float(halt_at.sum() / n),
        segments_qhalt_histogram=np.bincount(halt_at - 1, minlength=max_segments).tolist(),
        task_scores=scores,
    )
