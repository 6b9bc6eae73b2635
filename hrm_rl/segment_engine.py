"""The segment engine: a batch of puzzles with their carries, one segment per call.

This is HRM's ACT loop seen as a batched halting environment with autoreset, built once and
used by both the trainer (with gradients, adding the losses) and the vector environment
(under ``torch.inference_mode``, turning outputs into observations and rewards):

    engine = SegmentEngine(model, source, batch_size=256, device="cpu")
    out = engine.step()                  # first segment of 256 fresh puzzles
    out = engine.step(halted=mask)       # rows in ``mask`` get new puzzles, all rows advance

Each row holds one puzzle. Rows that halt are refilled from the source and their carry goes
back to the initial state; every other row continues from its carry. Every puzzle drawn from
the source is worked on (the reference implementation instead draws a full batch each step
and discards the rows that did not halt).
"""

from __future__ import annotations

import numpy as np
import torch

from hrm_rl.data import PuzzleSource
from hrm_rl.model import HRM, Carry, SegmentOutput
from hrm_rl.tasks.base import PuzzleBatch


class SegmentEngine:
    """Batched carry + per-row replacement + one batched segment forward.

    Attributes (all on ``device``, ``batch`` rows):
        inputs, labels: ``(batch, seq_len)`` int64 tokens of each row's puzzle.
        puzzle_ids: ``(batch,)`` int64.
        carry: the recurrent state, ``(batch, positions, hidden)`` per level.
        segments: ``(batch,)`` int64 segments run on each row's current puzzle.
    """

    def __init__(self, model: HRM, source: PuzzleSource, batch_size: int,
                 device: torch.device | str) -> None:
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        self.model = model
        self.source = source
        self.batch_size = batch_size
        self.device = torch.device(device)
        seq_len = model.config.seq_len
        self.inputs = torch.zeros(batch_size, seq_len, dtype=torch.long, device=self.device)
        self.labels = torch.zeros_like(self.inputs)
        self.puzzle_ids = torch.zeros(batch_size, dtype=torch.long, device=self.device)
        self.segments = torch.zeros(batch_size, dtype=torch.long, device=self.device)
        with torch.no_grad():
            self.carry: Carry = model.initial_carry(batch_size, self.device)
        self._all_rows = torch.ones(batch_size, dtype=torch.bool, device=self.device)
        self._fresh = True

    def replace(self, rows: torch.Tensor) -> torch.Tensor:
        """Give rows ``rows`` (``(batch,)`` bool) new puzzles and the initial carry.

        Returns:
            The indices of the replaced rows, ``(k,)`` int64, in the order the puzzles were
            drawn from the source.
        """
        index = rows.nonzero().squeeze(-1)
        if index.numel() == 0:
            return index
        new = self._draw(int(index.numel()))
        self._write(index, new)
        with torch.no_grad():
            self.carry = self.model.reset_carry(self.carry, rows)
        self.segments = self.segments.masked_fill(rows, 0)
        return index

    def _draw(self, k: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """``k`` puzzles from the source as ``(inputs, labels, puzzle_ids)`` on the device."""
        new: PuzzleBatch = self.source.draw(k)
        return tuple(torch.from_numpy(np.ascontiguousarray(a)).to(self.device, torch.long)
                     for a in (new.inputs, new.labels, new.puzzle_ids))

    def _write(self, index: torch.Tensor,
               new: tuple[torch.Tensor, torch.Tensor, torch.Tensor]) -> None:
        inputs, labels, puzzle_ids = new
        self.inputs = self.inputs.index_put((index,), inputs)
        self.labels = self.labels.index_put((index,), labels)
        self.puzzle_ids = self.puzzle_ids.index_put((index,), puzzle_ids)

    def forward(self) -> SegmentOutput:
        """Run one segment on every row and advance the carries and segment counters."""
        out = self.model(self.carry, self.inputs, self.puzzle_ids)
        self.carry = out.carry
        self.segments = self.segments + 1
        return out

    def forward_restarting(self, restart: torch.Tensor) -> tuple[SegmentOutput, SegmentOutput]:
        """One segment on every row, and in the same batched forward the first segment of a
        new puzzle for each ``restart`` row, whose current puzzle ends with this segment.

        This is the vector env's same-step autoreset at the segment cap: the finished puzzle's
        last segment and the next puzzle's first run as one batch of ``batch + k`` rows, so a
        step stays one forward. Afterwards the restarted rows hold their new puzzles (drawn
        from the source in row order), with the carry of that first segment and a segment
        count of 1.

        Args:
            restart: ``(batch,)`` bool.

        Returns:
            ``(out, first)``: ``out`` has every row's segment on the puzzle it had (``batch``
            rows); ``first`` the new puzzles' first segments (``k`` rows, in row order).
        """
        index = restart.nonzero().squeeze(-1)
        k, n = int(index.numel()), self.batch_size
        new = self._draw(k)
        tokens, _, ids = new
        fresh = self.model.initial_carry(k, self.device)
        carry = Carry(torch.cat((self.carry.z_H, fresh.z_H)), torch.cat((self.carry.z_L, fresh.z_L)))
        both = self.model(carry, torch.cat((self.inputs, tokens)), torch.cat((self.puzzle_ids, ids)))
        out, first = both.take(slice(0, n)), both.take(slice(n, n + k))
        self.carry = Carry(out.carry.z_H.index_put((index,), first.carry.z_H),
                           out.carry.z_L.index_put((index,), first.carry.z_L))
        self._write(index, new)
        self.segments = (self.segments + 1).masked_fill(restart, 1)
        return out, first

    def peek(self) -> SegmentOutput:
        """The next segment's outputs from the current carry, without advancing (no grad)."""
        with torch.no_grad():
            return self.model(self.carry, self.inputs, self.puzzle_ids)

    def step(self, halted: torch.Tensor | None = None) -> SegmentOutput:
        """Replace the ``halted`` rows (all rows on the first call), then run one segment."""
        if self._fresh:
            halted, self._fresh = self._all_rows, False
        if halted is not None:
            self.replace(halted)
        return self.forward()

    def state_dict(self) -> dict[str, torch.Tensor | bool]:
        """The rows' puzzles, carries and segment counters, on the CPU (for resuming).

        The puzzle source has its own ``state_dict``; the model's weights are saved apart.
        """
        return {"inputs": self.inputs.cpu(), "labels": self.labels.cpu(),
                "puzzle_ids": self.puzzle_ids.cpu(), "segments": self.segments.cpu(),
                "z_H": self.carry.z_H.detach().cpu(), "z_L": self.carry.z_L.detach().cpu(),
                "fresh": self._fresh}

    def load_state_dict(self, state: dict[str, torch.Tensor | bool]) -> None:
        """Restore what ``state_dict`` returned; the batch size and shapes must match."""
        for name in ("inputs", "labels", "puzzle_ids", "segments"):
            mine, theirs = getattr(self, name), state[name]
            if theirs.shape != mine.shape:
                raise ValueError(f"engine state {name} has shape {tuple(theirs.shape)}, "
                                 f"this engine needs {tuple(mine.shape)}")
            setattr(self, name, theirs.to(self.device, mine.dtype))
        for name in ("z_H", "z_L"):
            mine = getattr(self.carry, name)
            if state[name].shape != mine.shape:
                raise ValueError(f"engine state {name} has shape {tuple(state[name].shape)}, "
                                 f"this engine needs {tuple(mine.shape)}")
        self.carry = Carry(state["z_H"].to(self.device, self.carry.z_H.dtype),
                           state["z_L"].to(self.device, self.carry.z_L.dtype))
        self._fresh = bool(state["fresh"])
