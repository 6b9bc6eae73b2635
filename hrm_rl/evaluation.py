"""Accuracy of a core after each segment and under its own Q-head halting."""

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
    ``*_qhalt``: stopping each puzzle at the first segment where q_halt > q_continue (or at
    ``max_segments``).
    """

    n: int
    max_segments: int
    exact_by_segment: list[float] = field(default_factory=list)
    cell_by_segment: list[float] = field(default_factory=list)
    exact_qhalt: float = 0.0
    cell_acc_qhalt: float = 0.0
    mean_segments_qhalt: float = 0.0
    segments_qhalt_histogram: list[int] = field(default_factory=list)

    def to_dict(self) -> dict:
        return dict(self.__dict__)


@torch.inference_mode()
def evaluate(model: HRM, task: Task, puzzles: PuzzleBatch, max_segments: int,
             batch_size: int = 512, precision_context=contextlib.nullcontext,
             progress: bool = False) -> EvalResult:
    """Run every puzzle for ``max_segments`` segments and record accuracy at each.

    Args:
        model: the core (its device is used).
        task: the task, for answer checking.
        puzzles: encoded puzzles (no augmentation is applied).
        max_segments: segments to run (the halting cap).
        batch_size: puzzles per forward.
        precision_context: factory of the autocast context to run under.
        progress: show a progress bar.
    """
    if max_segments < 1:
        raise ValueError(f"max_segments must be >= 1, got {max_segments}")
    if len(puzzles) == 0:
        raise ValueError("evaluate() needs at least one puzzle")
    was_training = model.training
    model.eval()
    device = model.H_init.device
    n = len(puzzles)
    exact = np.zeros(max_segments)
    cell = np.zeros(max_segments)
    exact_q = cell_q = segs_q = 0.0
    hist = np.zeros(max_segments, dtype=np.int64)
    bar = tqdm(total=n, desc="eval", unit="puzzle", disable=not progress, leave=False)
    for start in range(0, n, batch_size):
        chunk = puzzles.take(slice(start, start + batch_size))
        rows = len(chunk)
        engine = SegmentEngine(model, ShuffledSource(chunk, np.random.default_rng(0), shuffle=False),
                               rows, device)
        halted = torch.zeros(rows, dtype=torch.bool, device=device)
        for k in range(max_segments):
            with precision_context():
                out = engine.step()
            pred = out.logits.argmax(-1)
            ok = task.is_correct(pred, engine.labels)
            acc = task.cell_accuracy(pred, engine.labels)
            exact[k] += ok.sum().item()
            cell[k] += acc.sum().item()
            stop = ~halted & ((out.q_halt > out.q_continue) | (k == max_segments - 1))
            exact_q += (ok & stop).sum().item()
            cell_q += acc[stop].sum().item()
            segs_q += (k + 1) * stop.sum().item()
            hist[k] += stop.sum().item()
            halted |= stop
        bar.update(rows)
    bar.close()
    model.train(was_training)
    return EvalResult(
        n=n, max_segments=max_segments,
        exact_by_segment=(exact / n).tolist(), cell_by_segment=(cell / n).tolist(),
        exact_qhalt=exact_q / n, cell_acc_qhalt=cell_q / n, mean_segments_qhalt=segs_q / n,
        segments_qhalt_histogram=hist.tolist(),
    )
