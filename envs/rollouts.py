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
from types import SimpleNamespace
from typing import Any

import numpy as np
import torch

from hrm_rl.model import Carry
from hrm_rl.tasks.base import PuzzleBatch
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
    from hrm_rl.checkpoint import load_checkpoint

    ckpt = load_checkpoint(checkpoint, device)
    trace = record_core_trace(ckpt, str(split), max_segments, episodes, latent, batch_size,
                              progress=progress, name=str(checkpoint))
    return trace.save(out, ckpt.task, overwrite=force)


def rollouts_identity(path: str | Path) -> dict[str, Any]:
    """A rollouts (trace) file's identity (core, weights SHA-256, run config, split, cap)
    without loading its arrays.

    Raises:
        FileNotFoundError: no such file; ValueError: not a trace file (the message names it).
    """
    return read_trace_file(path, {"identity"})["identity"]


class TraceRows:
    """Some env rows' places in a trace: trace row ``row[i]`` after ``segment[i]``
    segments (1-based). What a replayed segment is: the env looks everything up there.
    ``carry``: the rows' carry in ``TraceCore``'s terms, for the segment engine."""

    def __init__(self, trace: Trace, row: np.ndarray, segment: np.ndarray,
                 carry: Carry | None = None) -> None:
        self.trace = trace
        self.row = np.asarray(row, dtype=np.int64)
        self.segment = np.asarray(segment, dtype=np.int64)
        self.carry = carry

    def take(self, index: np.ndarray | slice | torch.Tensor) -> TraceRows:
        """These places at ``index``."""
        if isinstance(index, torch.Tensor):
            index = index.cpu().numpy()
        carry = None if self.carry is None else Carry(self.carry.z_H[index],
                                                      self.carry.z_L[index])
        return TraceRows(self.trace, self.row[index], self.segment[index], carry)

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


class TraceCore:
    """A recorded trace in the place of a core: the segment engine runs it as it runs a
    model, so a replayed env keeps the live env's episode (cap, same-step restart, refills,
    held rows) and each segment is a lookup, no forward.

    Its puzzles are ``replay_puzzles(trace)``, whose ``puzzle_ids`` are trace rows. A row's
    carry is ``(trace row, segments run)``; a "forward" advances the count and returns the
    rows' places (``TraceRows``). The engine calls it for held rows too and then ignores
    their entries, so a place past the trace's cap is looked up at the cap (the env's own
    cap is checked against the trace's when it is built).
    """

    def __init__(self, trace: Trace) -> None:
        self.trace = trace
        seq_len = trace.pred.shape[2] if trace.pred is not None else (
            trace.puzzles.inputs.shape[1] if trace.puzzles is not None else 0)
        self.config = SimpleNamespace(seq_len=int(seq_len))

    def initial_carry(self, batch_size: int, device: torch.device | str) -> Carry:
        zeros = torch.zeros(batch_size, dtype=torch.long, device=device)
        return Carry(zeros, zeros.clone())

    def reset_carry(self, carry: Carry, rows: torch.Tensor) -> Carry:
        """``rows`` (bool) start their puzzle afresh: no segment run yet."""
        return Carry(carry.z_H, carry.z_L.masked_fill(rows, 0))

    def __call__(self, carry: Carry, inputs: torch.Tensor, puzzle_ids: torch.Tensor
                 ) -> TraceRows:
        segments = carry.z_L + 1
        rows = puzzle_ids.cpu().numpy()
        place = np.minimum(segments.cpu().numpy(), self.trace.max_segments)
        return TraceRows(self.trace, rows, place, Carry(puzzle_ids.clone(), segments))

    def halts(self, out: TraceRows) -> torch.Tensor:
        """The recorded core's own rule at those places (``q_halt > q_continue``)."""
        k = out.segment - 1
        return torch.from_numpy(self.trace.q_halt[out.row, k] > self.trace.q_continue[out.row, k])


def replay_puzzles(trace: Trace) -> PuzzleBatch:
    """The puzzle of each trace row, in row order, with the trace row as its puzzle id (the
    key ``TraceCore`` looks segments up by)."""
    if trace.puzzles is None:
        raise ValueError("a trace without its puzzle set cannot be replayed")
    same = len(trace.puzzles) == trace.n and np.array_equal(trace.puzzle, np.arange(trace.n))
    puzzles = trace.puzzles if same else trace.puzzles.take(trace.puzzle)
    return PuzzleBatch(puzzles.inputs, puzzles.labels, np.arange(trace.n, dtype=np.int64))
