"""The segment engine: HRM's ACT episode for a batch of puzzles, one segment per step.

This is HRM's ACT loop seen as a batched halting environment with autoreset, built once and
used by the trainer (with gradients, adding the losses), by evaluation (never halting) and by
the vector environment (under ``torch.inference_mode``, turning each step into
observations and rewards):

    engine = SegmentEngine(model, source, batch_size=256, device="cpu", max_segments=8)
    step = engine.step()                 # first segment of 256 fresh puzzles
    step = engine.step(halt=mask)        # rows in ``mask`` get new puzzles, all rows advance
    step = engine.step(hold=done)        # rows in ``done`` sit this step out (kept as they are)

The engine owns the episode: each row's puzzle and carry, its segment counter, the segment
cap (``max_segments``), the same-step restart at the cap (``restart_at_cap``: a row whose
puzzle reaches the cap starts its next puzzle in the same batched forward), minimum segments
(exploration: ``min_segments``) and the core's halting rule (``auto_halt``: a row halts when
``model.halts(out)``, once it has run its minimum). ``step`` returns a ``SegmentStep``, an
immutable record of what the segment produced; losses, observations, rewards and evaluation
are functions of it. Every puzzle drawn from the source is worked on (the reference
implementation instead draws a full batch each step and discards the rows that did not
halt), and the source's ``draw(k)`` is called on every step, with ``k = 0`` when no row
needs a puzzle, so a sharded source can do its collective there. A source that also has
``draw_for(rows)`` (the next puzzles for those row indices, in row order) is asked that
instead, so it can give each row its own puzzle stream (the vector env's per-row seeds).

``hold`` is how an env ends an episode without starting the next one in the same step
(next-step or disabled autoreset): held rows are neither refilled nor advanced, the
batched forward still covers every row (one fixed-shape forward per step), and their
outputs in that step are ignored (``SegmentStep.held``).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from hrm_rl.data import PuzzleSource
from hrm_rl.model import HRM, Carry, SegmentOutput
from hrm_rl.tasks.base import PuzzleBatch


@dataclass(frozen=True)
class SegmentStep:
    """What one engine step produced, for every row (tensors on the engine's device).

    Attributes:
        out: every row's segment, on the puzzle the row worked on in it.
        labels: ``(batch, seq_len)`` those puzzles' targets.
        segments: ``(batch,)`` segments run on those puzzles, this one included.
        started: ``(batch,)`` bool, the puzzle began with this segment.
        finished: ``(batch,)`` bool, the puzzle ends with this segment: it reached the cap,
            or (``auto_halt``) the halting rule fired after its minimum segments. Those
            rows get new puzzles on the next step, unless already ``restarted``.
        restarted: ``(batch,)`` bool, finished at the cap and the row's next puzzle already
            ran its first segment in this step's forward (``restart_at_cap``).
        first: the restarted rows' first segments on their new puzzles (``restarted.sum()``
            rows, in row order), or None when no row restarted.
        held: ``(batch,)`` bool, rows that sat this step out (``step(hold=...)``): they ran
            no segment, so their ``out`` rows are not theirs and are to be ignored (their
            ``started``, ``finished`` and ``restarted`` are False); None when no row was held.
    """

    out: Any
    labels: torch.Tensor
    segments: torch.Tensor
    started: torch.Tensor
    finished: torch.Tensor
    restarted: torch.Tensor
    first: Any = None
    held: torch.Tensor | None = None


def finished_rows(segments: torch.Tensor, max_segments: int | None,
                  halts: torch.Tensor | None, min_segments: torch.Tensor | None
                  ) -> torch.Tensor:
    """Which rows end their puzzle: at the cap, or where ``halts`` (the core's rule, or None
    for "never") fires once ``min_segments`` (None: 1) have run. Pure; no model."""
    at_cap = (torch.zeros_like(segments, dtype=torch.bool) if max_segments is None
              else segments >= max_segments)
    if halts is None:
        return at_cap
    done = at_cap | halts
    return done if min_segments is None else done & (segments >= min_segments)


def _keep_rows(old: Carry, new: Carry, advance: torch.Tensor) -> Carry:
    """``new`` on the rows in ``advance`` (``(batch,)`` bool), ``old`` on the others."""
    mask = advance.view(-1, *([1] * (new.z_H.dim() - 1)))
    return Carry(torch.where(mask, new.z_H, old.z_H), torch.where(mask, new.z_L, old.z_L))


class SegmentEngine:
    """Batched carry + per-row replacement + one batched segment forward per step.

    Args:
        model: the core (or its DDP wrapper); ``halts`` defaults to ``HRM.halts``.
        source: where new puzzles come from (``draw(k)``; ``draw_for(rows)`` when it has
            one, see the module docstring).
        batch_size: rows.
        device: where the rows live.
        max_segments: the cap (None: no cap; rows run until halted).
        restart_at_cap: rows reaching the cap start their next puzzle in the same forward.
        auto_halt: rows halt by the core's rule (the trainer); otherwise only the cap and
            the caller's ``halt`` end a puzzle (the envs, evaluation).
        min_segments: ``n -> (n,)`` int64 minimum segments for ``n`` rows of new puzzles,
            drawn on every step after the first and kept for the refilled rows
            (exploration); None: 1. Set ``engine.min_segments`` for the first puzzles.
        redraw_min_segments: keep the drawn minimum for every row instead, a fresh one at
            each segment (the HRM/TRM references' exploration rule).

    Attributes (all on ``device``, ``batch`` rows):
        inputs, labels: ``(batch, seq_len)`` int64 tokens of each row's puzzle.
        puzzle_ids: ``(batch,)`` int64.
        carry: the recurrent state, ``(batch, positions, hidden)`` per level.
        segments: ``(batch,)`` int64 segments run on each row's current puzzle.
        pending: ``(batch,)`` bool rows to refill on the next step (None before the first).
    """

    def __init__(self, model: HRM, source: PuzzleSource, batch_size: int,
                 device: torch.device | str, max_segments: int | None = None,
                 restart_at_cap: bool = False, auto_halt: bool = False,
                 min_segments: Callable[[int], torch.Tensor] | None = None,
                 halts: Callable[[SegmentOutput], torch.Tensor] | None = None,
                 redraw_min_segments: bool = False) -> None:
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        if max_segments is not None and max_segments < 1:
            raise ValueError(f"max_segments must be >= 1 or None, got {max_segments}")
        self.model = model
        self.source = source
        self.batch_size = batch_size
        self.device = torch.device(device)
        self.max_segments, self.restart_at_cap, self.auto_halt = (max_segments, restart_at_cap,
                                                                  auto_halt)
        self._draw_min = min_segments
        self.redraw_min_segments = redraw_min_segments
        base = getattr(model, "module", model)  # a DDP wrapper's core
        self.halts = halts or base.halts
        seq_len = base.config.seq_len
        self.inputs = torch.zeros(batch_size, seq_len, dtype=torch.long, device=self.device)
        self.labels = torch.zeros_like(self.inputs)
        self.puzzle_ids = torch.zeros(batch_size, dtype=torch.long, device=self.device)
        self.segments = torch.zeros(batch_size, dtype=torch.long, device=self.device)
        self.min_segments = torch.ones(batch_size, dtype=torch.long, device=self.device)
        self.pending: torch.Tensor | None = None
        with torch.no_grad():
            self.carry: Carry = base.initial_carry(batch_size, self.device)
        self._base = base
        self._fresh = True

    # the episode ------------------------------------------------------------------------
    def step(self, halt: torch.Tensor | None = None,
             hold: torch.Tensor | None = None) -> SegmentStep:
        """Refill the rows whose puzzle ended (the previous step's ``finished`` rows that did
        not restart, the rows in ``halt``, and every row on the first call), then run one
        segment on every row that is not held.

        Args:
            halt: ``(batch,)`` bool, rows whose puzzle the caller ends now (a halting
                policy's decision after the previous segment), or None.
            hold: ``(batch,)`` bool, rows that sit this step out, or None: not refilled
                (even when due; they stay due), not advanced, not restarted; their puzzle,
                carry and segment count are kept. Not allowed on the first call.
        """
        if hold is not None:
            hold = hold.to(self.device, torch.bool)
            if not bool(hold.any()):
                hold = None
        if self._fresh:
            if hold is not None:
                raise ValueError("the first step fills every row; it cannot hold rows")
            refill = torch.ones(self.batch_size, dtype=torch.bool, device=self.device)
        else:
            refill = (torch.zeros(self.batch_size, dtype=torch.bool, device=self.device)
                      if self.pending is None else self.pending.clone())
            if halt is not None:
                refill |= halt.to(self.device, torch.bool)
            if hold is not None:
                refill &= ~hold
            if self._draw_min is not None:  # drawn for every row, kept for the new ones
                drawn = self._draw_min(self.batch_size)  # (or for all: redraw_min_segments)
                self.min_segments = drawn if self.redraw_min_segments else torch.where(
                    refill, drawn, self.min_segments)
        self._fresh = False
        self._replace(refill)
        advance = None if hold is None else ~hold
        restart = None
        if self.restart_at_cap and self.max_segments is not None:  # not rows just refilled
            restart = ~refill & (self.segments + 1 >= self.max_segments)
            if advance is not None:
                restart &= advance
            if not bool(restart.any()):
                restart = None
        labels = self.labels
        if restart is None:
            out, first = self._forward(advance), None
            restarted = torch.zeros_like(refill)
            segments = self.segments
        else:
            segments = self.segments + (1 if advance is None else advance.long())
            out, first = self._forward_restarting(restart, advance)
            restarted = restart
        halts = self.halts(out) if self.auto_halt else None
        finished = finished_rows(segments, self.max_segments, halts,
                                 self.min_segments if self._draw_min is not None else None)
        started = segments == 1
        if advance is None:
            self.pending = finished & ~restarted
        else:  # held rows ran nothing: nothing started or finished, still due if they were
            finished, started = finished & advance, started & advance
            due = self.pending if self.pending is not None else torch.zeros_like(hold)
            self.pending = torch.where(hold, due, finished & ~restarted)
        return SegmentStep(out, labels, segments, started=started, finished=finished,
                           restarted=restarted, first=first, held=hold)

    def peek(self) -> SegmentOutput:
        """The next segment's outputs from the current carry, without advancing (no grad)."""
        with torch.no_grad():
            return self.model(self.carry, self.inputs, self.puzzle_ids)

    # internals ---------------------------------------------------------------------------
    def _replace(self, rows: torch.Tensor) -> torch.Tensor:
        """Give rows ``rows`` (``(batch,)`` bool) new puzzles and the initial carry; the
        source is asked for ``rows.sum()`` puzzles even when that is 0."""
        index = rows.nonzero().squeeze(-1)
        new = self._draw(index)
        if index.numel() == 0:
            return index
        self._write(index, new)
        with torch.no_grad():
            self.carry = self._base.reset_carry(self.carry, rows)
        self.segments = self.segments.masked_fill(rows, 0)
        return index

    def _draw(self, index: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Puzzles for the rows ``index`` (in that order) as ``(inputs, labels, puzzle_ids)``
        on the device: the source's ``draw_for(rows)`` when it has one, else its
        ``draw(len(index))``."""
        draw_for = getattr(self.source, "draw_for", None)
        new: PuzzleBatch = (draw_for(index.cpu().numpy()) if draw_for is not None
                            else self.source.draw(int(index.numel())))
        return tuple(torch.from_numpy(np.ascontiguousarray(a)).to(self.device, torch.long)
                     for a in (new.inputs, new.labels, new.puzzle_ids))

    def _write(self, index: torch.Tensor,
               new: tuple[torch.Tensor, torch.Tensor, torch.Tensor]) -> None:
        inputs, labels, puzzle_ids = new
        self.inputs = self.inputs.index_put((index,), inputs)
        self.labels = self.labels.index_put((index,), labels)
        self.puzzle_ids = self.puzzle_ids.index_put((index,), puzzle_ids)

    def _forward(self, advance: torch.Tensor | None = None) -> SegmentOutput:
        """Run one segment on every row and advance the carries and segment counters (of
        the rows in ``advance`` only, when given: the others keep theirs)."""
        out = self.model(self.carry, self.inputs, self.puzzle_ids)
        if advance is None:
            self.carry = out.carry
            self.segments = self.segments + 1
        else:
            self.carry = _keep_rows(self.carry, out.carry, advance)
            self.segments = self.segments + advance.long()
        return out

    def _forward_restarting(self, restart: torch.Tensor, advance: torch.Tensor | None = None
                            ) -> tuple[SegmentOutput, SegmentOutput]:
        """One segment on every row, and in the same batched forward the first segment of a
        new puzzle for each ``restart`` row, whose current puzzle ends with this segment:
        the finished puzzle's last segment and the next puzzle's first run as one batch of
        ``batch + k`` rows, so a step stays one forward. Afterwards the restarted rows hold
        their new puzzles (drawn in row order), with the carry of that first segment and a
        segment count of 1; rows not in ``advance`` (when given) keep their carry and count.
        Returns ``(out, first)`` (``batch`` and ``k`` rows)."""
        index = restart.nonzero().squeeze(-1)
        k, n = int(index.numel()), self.batch_size
        new = self._draw(index)
        tokens, _, ids = new
        fresh = self._base.initial_carry(k, self.device)
        carry = Carry(torch.cat((self.carry.z_H, fresh.z_H)), torch.cat((self.carry.z_L, fresh.z_L)))
        both = self.model(carry, torch.cat((self.inputs, tokens)), torch.cat((self.puzzle_ids, ids)))
        out, first = both.take(slice(0, n)), both.take(slice(n, n + k))
        carry = out.carry if advance is None else _keep_rows(self.carry, out.carry, advance)
        self.carry = Carry(carry.z_H.index_put((index,), first.carry.z_H),
                           carry.z_L.index_put((index,), first.carry.z_L))
        self._write(index, new)
        step = 1 if advance is None else advance.long()
        self.segments = (self.segments + step).masked_fill(restart, 1)
        return out, first

    # resuming ----------------------------------------------------------------------------
    def state_dict(self) -> dict[str, torch.Tensor | bool]:
        """The rows' puzzles, carries and segment counters, on the CPU (for resuming).

        The rows to refill (``pending``) and their ``min_segments`` are kept by the owner
        (the trainer saves them as ``halted`` and ``min_segments``); the puzzle source has its
        own ``state_dict``; the model's weights are saved apart.
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
