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

import hashlib
import json
import shutil
import zipfile
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import torch
from tqdm.auto import tqdm

from hrm_rl.model import Carry
from hrm_rl.tasks.base import PuzzleBatch
from hrm_rl.trace import Trace, core_trace_plan, read_trace_file, record_trace


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

    The puzzles are recorded ``batch_size`` at a time and each finished batch is kept in
    ``<out>.partial/`` until the file is written: a recording cut short (Ctrl-C, a kill, a
    full disk) continues where it stopped when run again with the same arguments, and gives
    the file an uninterrupted run gives.

    Returns:
        The path written.

    Raises:
        FileExistsError: ``out`` exists and ``force`` is False (checked before any work), or
            ``<out>.partial`` holds a recording with other settings (``force`` discards it).
        ValueError: bad ``episodes``/``max_segments``/``batch_size``.
    """
    out = Path(out)
    if out.exists() and not force:
        raise FileExistsError(f"{out} exists; choose another --out, or overwrite it with "
                              "--force (force=True)")
    if out.exists() and not out.is_file():
        raise FileExistsError(f"{out} exists and is not a file; choose another --out")
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    from hrm_rl.checkpoint import load_checkpoint

    ckpt = load_checkpoint(checkpoint, device)
    puzzles, cap, identity = core_trace_plan(ckpt, str(split), max_segments, episodes,
                                             progress, str(checkpoint))
    partial = partial_path(out)
    trace = _record_in_chunks(ckpt, puzzles, cap, identity, latent, batch_size, partial,
                              progress, restart=force)
    path = trace.save(out, ckpt.task, overwrite=force)
    shutil.rmtree(partial, ignore_errors=True)
    return path


def partial_path(out: str | Path) -> Path:
    """The folder where ``record_rollouts`` keeps the finished chunks of ``out`` until the
    whole file is written (``<out>.partial``)."""
    out = Path(out)
    return out.with_name(out.name + ".partial")


def _record_in_chunks(ckpt: Any, puzzles: PuzzleBatch, cap: int, identity: dict[str, Any],
                      latent: bool, batch_size: int, partial: Path, progress: bool,
                      restart: bool) -> Trace:
    """The trace of ``puzzles``, recorded ``batch_size`` puzzles at a time, each finished
    chunk kept in ``partial`` (``plan.json`` and ``chunk_<i>.npz``, written atomically), so
    a rerun with the same settings records only the chunks still missing. A chunk is the
    batch ``record_trace`` would run anyway, so the result is the one-go recording's.

    Raises:
        FileExistsError: ``partial`` holds a recording with other settings (and not
            ``restart``).
    """
    from hrm_rl.checkpoint import atomic_write, atomic_write_text

    digest = hashlib.sha256()
    for a in (puzzles.inputs, puzzles.labels, puzzles.puzzle_ids):
        digest.update(np.ascontiguousarray(a, dtype=np.int64).tobytes())
    plan = json.loads(json.dumps({"identity": identity, "max_segments": cap, "latent": latent,
                                  "batch_size": batch_size, "puzzles": len(puzzles),
                                  "puzzles_sha256": digest.hexdigest()}))
    plan_file = partial / "plan.json"
    if plan_file.is_file():
        try:
            same = json.loads(plan_file.read_text()) == plan
        except (OSError, ValueError):
            same = False
        if not same and not restart:
            raise FileExistsError(
                f"{partial} holds part of a recording with other settings (core, split, "
                "episodes, segments, latent or batch size); rerun the command that started "
                "it to finish it, or remove the folder (or pass --force) to start afresh")
        if not same:
            shutil.rmtree(partial)
    partial.mkdir(parents=True, exist_ok=True)
    if not plan_file.is_file():
        atomic_write_text(plan_file, json.dumps(plan, sort_keys=True))
    starts = range(0, len(puzzles), batch_size)
    chunks = [_read_chunk(partial / f"chunk_{i:06d}.npz", min(batch_size, len(puzzles) - s))
              for i, s in enumerate(starts)]
    done = sum(len(c["correct"]) for c in chunks if c is not None)
    bar = tqdm(total=len(puzzles), initial=done, unit="puzzle", disable=not progress,
               desc=f"recording ({done} from an earlier run)" if done else "recording")
    try:
        for i, start in enumerate(starts):
            if chunks[i] is not None:
                continue
            part = record_trace(ckpt.model, ckpt.task, puzzles.take(slice(start, start +
                                                                          batch_size)),
                                cap, latent=latent, batch_size=batch_size, progress=progress,
                                identity=identity, desc=f"chunk {i + 1}/{len(starts)}")
            arrays = {k: v for k, v in part.arrays().items() if k != "puzzle"}

            def write(tmp: str, arrays: dict[str, np.ndarray] = arrays) -> None:
                with open(tmp, "wb") as f:
                    np.savez(f, **arrays)

            atomic_write(partial / f"chunk_{i:06d}.npz", write)
            chunks[i] = arrays
            bar.update(part.n)
    finally:
        bar.close()
    merged = {k: np.concatenate([c[k] for c in chunks]) for k in chunks[0]}
    return Trace(**merged, puzzle=np.arange(len(puzzles), dtype=np.int64), puzzles=puzzles,
                 identity={**identity, "max_segments": cap, "latent": latent,
                           "episodes": len(puzzles)})


def _read_chunk(path: Path, rows: int) -> dict[str, np.ndarray] | None:
    """A finished chunk's arrays, or None when it is missing or unreadable (then it is
    recorded again)."""
    if not path.is_file():
        return None
    try:
        with np.load(path) as f:
            arrays = {k: f[k] for k in f.files}
    except (OSError, ValueError, EOFError, zipfile.BadZipFile):
        return None
    if "correct" not in arrays or any(len(a) != rows for a in arrays.values()):
        return None
    return arrays


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
