"""Recorded rollouts: a core's trace over a split, recorded once and replayed without it.

What a segment computes never depends on when a policy halts, so every puzzle of a split can
be run to a cap once (a ``hrm_rl.trace.Trace``) and the halting envs served from it at numpy
speed and with no model:

    record_rollouts("sudoku4", "train", "sudoku4-train.npz")        # or: hrm-rl rollouts record
    env = gym.make_vec("HRM-Sudoku-v0", num_envs=256, rollouts="sudoku4-train.npz")

The rollouts file IS a trace file (``Trace.save``, read back validated by
``hrm_rl.trace.load_trace``): per puzzle and segment the features of both tracks, the
predictions, correctness, cell accuracy and Q logits (and H's latent state when recorded
with ``latent=True``), the split as the task's CSV text, and the identity of the core (name,
path, weights SHA-256, run config), the split and the cap. A replayed env is a lookup into
that trace: each row carries (trace row, segment reached), and its observations, pay and
infos are the trace's at that place (``Trace.observations``, ``Trace.correct``/``cell``/
``pred``). It draws puzzles in the same order as a live env with the same seed and returns
the same observations (to float precision: the live env's batch composition differs from the
recording's), rewards, terminations and infos. Its ``max_segments`` may be at most the
recorded cap. This is what makes halting research possible on cores too large for a CPU:
record a paper-scale core once on a GPU, then study its halting anywhere.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch

from hrm_rl.data import ShuffledSource
from hrm_rl.segment_engine import SegmentEngine
from hrm_rl.tasks.base import PuzzleBatch, Task
from hrm_rl.trace import Trace, read_trace_file, record_core_trace


def record_rollouts(checkpoint: str | Path, split: str, out: str | Path,
                    episodes: int | None = None, max_segments: int | None = None,
                    latent: bool = False, batch_size: int = 512, device: str = "cpu",
                    progress: bool = True, force: bool = False) -> Path:
    """Run the first ``episodes`` puzzles of ``split`` (default all) of ``checkpoint`` for
    ``max_segments`` segments (default the core's training cap) and save the trace to
    ``out`` (``hrm_rl.trace.record_core_trace`` then ``Trace.save``), the file the envs
    replay with ``rollouts=out``.

    Args:
        checkpoint: bundled name, run folder or checkpoint folder.
        split: ``train``, ``val``, ``test`` or a CSV path in the task's format.
        out: the ``.npz`` to write (atomically, mode 0644).
        episodes: only the first N puzzles of the split.
        max_segments: segments per puzzle.
        latent: also keep H's state per segment (for ``obs_mode="features+latent"``/``"dict"``).
        batch_size: puzzles per forward.
        device: where the core runs.
        progress: show a progress bar.
        force: overwrite an existing ``out``.

    Returns:
        The path written.

    Raises:
        FileExistsError: ``out`` exists and ``force`` is False (checked before any work).
        ValueError: bad ``episodes``/``max_segments``/``batch_size``.
    """
    out = Path(out)
    if out.exists() and not force:
        raise FileExistsError(f"{out} exists; choose another --out, or overwrite it with "
                              "--force (force=True)")
    if out.exists() and not out.is_file():
        raise FileExistsError(f"{out} exists and is not a file; choose another --out")
    trace = record_core_trace(checkpoint, str(split), max_segments, episodes, latent,
                              batch_size, device, progress)
    return trace.save(out, _task_of(trace), overwrite=force)


def _task_of(trace: Trace) -> Task:
    """The task a freshly recorded trace was recorded on (from its run config)."""
    from hrm_rl.config import RunConfig, from_dict
    from hrm_rl.tasks import make_task

    return make_task(from_dict(RunConfig, trace.identity["config"]).task)


def rollouts_identity(path: str | Path) -> dict[str, Any]:
    """A rollouts (trace) file's identity (core, weights SHA-256, run config, split, cap)
    without loading its arrays.

    Raises:
        FileNotFoundError: no such file; ValueError: not a trace file (the message names it).
    """
    return read_trace_file(path, {"identity"})["identity"]


class TraceRows:
    """Some env rows' places in a trace: trace row ``row[i]`` after ``segment[i]``
    segments (1-based). What a replayed segment is: the env looks everything up there."""

    def __init__(self, trace: Trace, row: np.ndarray, segment: np.ndarray) -> None:
        self.trace = trace
        self.row = np.asarray(row, dtype=np.int64)
        self.segment = np.asarray(segment, dtype=np.int64)

    def take(self, index: np.ndarray | slice) -> TraceRows:
        """These places at ``index``."""
        return TraceRows(self.trace, self.row[index], self.segment[index])

    def pred(self) -> torch.Tensor:
        """``(n, seq_len)`` int64 the predicted tokens there."""
        if self.trace.pred is None:
            raise ValueError("this trace holds no predictions; record it with predictions "
                             "(hrm-rl rollouts record) to replay it")
        return torch.from_numpy(self.trace.pred[self.row, self.segment - 1].astype(np.int64))

    def correct(self) -> torch.Tensor:
        """``(n,)`` bool: the answer there is exactly right."""
        return torch.from_numpy(self.trace.correct[self.row, self.segment - 1].copy())

    def cell(self) -> torch.Tensor:
        """``(n,)`` float32: the fraction of supervised cells right there."""
        return torch.from_numpy(self.trace.cell[self.row, self.segment - 1].copy())


class ReplayEngine(SegmentEngine):
    """The segment engine's episode (``step(halt, hold) -> SegmentStep``: the cap, the
    same-step restart at the cap, refills, held rows) with each segment a place in a trace
    (``TraceRows``), no model. Its puzzles are the trace's rows: row ``r`` is puzzle
    ``trace.puzzles[trace.puzzle[r]]`` (``puzzles_of``)."""

    def __init__(self, trace: Trace, source: ShuffledSource, batch_size: int,
                 max_segments: int | None = None, restart_at_cap: bool = False,
                 puzzles: PuzzleBatch | None = None) -> None:
        """``source`` hands out trace rows: ``draw_indices(k)``, or
        ``draw_indices_for(rows)`` when it has one (per-row streams); ``puzzles``:
        ``puzzles_of(trace)`` when already at hand."""
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        self.trace, self.source, self.batch_size = trace, source, batch_size
        self.puzzles = puzzles_of(trace) if puzzles is None else puzzles
        self.device = torch.device("cpu")
        self.max_segments, self.restart_at_cap, self.auto_halt = (max_segments, restart_at_cap,
                                                                  False)
        self._draw_min = None
        self.index = np.zeros(batch_size, dtype=np.int64)  # each env row's trace row
        self.segments = torch.zeros(batch_size, dtype=torch.long)
        self.min_segments = torch.ones(batch_size, dtype=torch.long)
        seq_len = self.puzzles.inputs.shape[1]
        self.inputs = torch.zeros(batch_size, seq_len, dtype=torch.long)
        self.labels = torch.zeros_like(self.inputs)
        self.pending: torch.Tensor | None = None
        self._fresh = True

    def _draw_into(self, rows: np.ndarray) -> None:
        draw_for = getattr(self.source, "draw_indices_for", None)  # per-row puzzle streams
        drawn = draw_for(rows) if draw_for is not None else self.source.draw_indices(len(rows))
        self.index[rows] = drawn
        batch = self.puzzles.take(drawn)
        index = torch.from_numpy(rows)
        self.inputs = self.inputs.index_put((index,), torch.from_numpy(
            np.asarray(batch.inputs, dtype=np.int64)))
        self.labels = self.labels.index_put((index,), torch.from_numpy(
            np.asarray(batch.labels, dtype=np.int64)))

    def _replace(self, rows: torch.Tensor) -> torch.Tensor:
        index = rows.nonzero().squeeze(-1)
        if index.numel():
            self._draw_into(index.numpy())
            self.segments = self.segments.masked_fill(rows, 0)
        return index

    def _forward(self, advance: torch.Tensor | None = None) -> TraceRows:
        """Every row's next segment; rows not in ``advance`` (when given) stay where they
        are (their entry repeats their current segment, which the env ignores)."""
        self.segments = self.segments + (1 if advance is None else advance.long())
        reached = self.segments.numpy()
        if reached.max() > self.trace.max_segments:
            raise RuntimeError(f"the trace holds {self.trace.max_segments} segments per "
                               "puzzle; a row asked for more")
        return TraceRows(self.trace, self.index.copy(), reached.copy())

    def _forward_restarting(self, restart: torch.Tensor, advance: torch.Tensor | None = None
                            ) -> tuple[TraceRows, TraceRows]:
        out = self._forward(advance)
        index = restart.nonzero().squeeze(-1).numpy()
        self._draw_into(index)
        self.segments = self.segments.masked_fill(restart, 1)
        return out, TraceRows(self.trace, self.index[index].copy(),
                              np.ones(len(index), dtype=np.int64))

    def peek(self):
        raise RuntimeError("a replayed engine has no model to peek with")

    def state_dict(self):
        raise RuntimeError("a replayed engine is not resumable (it trains nothing)")


def puzzles_of(trace: Trace) -> PuzzleBatch:
    """The puzzle of each trace row, in row order (``trace.puzzles`` at ``trace.puzzle``;
    the set itself when the rows are its puzzles in order, as a recording's are)."""
    if trace.puzzles is None:
        raise ValueError("a trace without its puzzle set cannot be replayed")
    if len(trace.puzzles) == trace.n and np.array_equal(trace.puzzle, np.arange(trace.n)):
        return trace.puzzles
    return trace.puzzles.take(trace.puzzle)
