"""ARC's own metric: predictions mapped back through their variants, voted per test input,
and pass@k per task.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np
import torch

from hrm_rl.tasks.base import PuzzleBatch

if TYPE_CHECKING:
    from hrm_rl.tasks.arc.task import ARCTask


@dataclass
class ARCScore:
    """ARC accuracy after voting over variants.

    Attributes:
        n_tasks: tasks scored (those with at least one row).
        n_inputs: distinct test inputs scored.
        pass_at_1, pass_at_2: fraction of tasks whose every test input has the right answer
            as the best (resp. one of the two best) voted candidate(s).
        per_task: task name -> rank (1-based) of the right answer, worst over the task's
            test inputs; 0 when some test input never got the right answer.
        inputs_pass_at_1, inputs_pass_at_2: the same per test input instead of per task.
    """

    n_tasks: int
    n_inputs: int
    pass_at_1: float
    pass_at_2: float
    per_task: dict[str, int] = field(default_factory=dict)
    inputs_pass_at_1: float = 0.0
    inputs_pass_at_2: float = 0.0

    def to_dict(self) -> dict:
        return dict(self.__dict__)


def _key(grid: np.ndarray) -> bytes:
    return grid.shape[0].to_bytes(1, "little") + grid.shape[1].to_bytes(1, "little") + \
        np.ascontiguousarray(grid, dtype=np.uint8).tobytes()


def score(task: ARCTask, batch: PuzzleBatch, predictions: np.ndarray | torch.Tensor,
          q_halt: np.ndarray | torch.Tensor) -> ARCScore:
    """Vote over augmented variants (and test-time views) and score pass@1 / pass@2, as HRM does.

    Args:
        task: the ``ARCTask`` whose identifiers ``batch`` uses.
        batch: the rows that were predicted (any order, any subset of the test split):
            their inputs, labels (the right answers) and puzzle identifiers.
        predictions: ``(n, seq_len)`` predicted tokens, one row per batch row.
        q_halt: ``(n,)`` the Q-head's halt value for each prediction (breaks vote ties:
            the candidate with the higher mean wins).

    Each prediction is cropped (``grid_shapes``) and mapped back through the inverse of
    its test-time view (``batch.views``, if any) and of its variant; rows are grouped into
    test inputs by task and un-augmented input grid, so the votes span variants and views.
    """
    if isinstance(predictions, torch.Tensor):
        predictions = predictions.detach().cpu().numpy()
    if isinstance(q_halt, torch.Tensor):
        q_halt = q_halt.detach().float().cpu().numpy()
    predictions, q_halt = np.asarray(predictions), np.asarray(q_halt, dtype=np.float64)
    n = len(batch)
    if predictions.shape != (n, task.seq_len) or q_halt.shape != (n,):
        raise ValueError(f"predictions must be ({n}, {task.seq_len}) and q_halt ({n},); got "
                         f"{predictions.shape} and {q_halt.shape}")
    ids = np.asarray(batch.puzzle_ids, dtype=np.int64)
    if n and (ids.min() < 1 or ids.max() >= task.num_puzzle_ids):
        raise ValueError(f"puzzle ids must be in 1..{task.num_puzzle_ids - 1} for "
                         f"{task.name}; got {ids.min()}..{ids.max()}")
    canon = {name: task.canonical(getattr(batch, name), ids, batch.views)
             for name in ("inputs", "labels")}
    canon["pred"] = task.canonical(predictions, ids, batch.views)
    # per (task, input): candidates -> [votes, q sum]; and the right answer
    groups: dict[tuple[int, bytes], tuple[bytes, dict[bytes, list[float]]]] = {}
    for row in range(n):
        t = int(task.variants.task[ids[row]])
        truth, votes = groups.setdefault((t, _key(canon["inputs"][row])),
                                         (_key(canon["labels"][row]), {}))
        entry = votes.setdefault(_key(canon["pred"][row]), [0, 0.0])
        entry[0] += 1
        entry[1] += q_halt[row]
    rank_by_task: dict[int, int] = {}
    input_ranks = []
    for (t, _), (truth, votes) in groups.items():
        ranked = sorted(votes, key=lambda k: (votes[k][0], votes[k][1] / votes[k][0]),
                        reverse=True)
        rank = ranked.index(truth) + 1 if truth in votes else 0
        input_ranks.append(rank)
        prev = rank_by_task.get(t, 1)
        rank_by_task[t] = 0 if 0 in (prev, rank) else max(prev, rank)
    per_task = {task.puzzles[t].name: r for t, r in sorted(rank_by_task.items())}
    n_tasks = len(per_task)

    def passed(k: int, ranks: list[int]) -> float:
        return sum(1 for r in ranks if 0 < r <= k) / max(len(ranks), 1)

    tasks = list(per_task.values())
    return ARCScore(n_tasks, len(groups), passed(1, tasks), passed(2, tasks), per_task,
                    passed(1, input_ranks), passed(2, input_ranks))
