"""The segment engine: the ACT episode (refills, the cap, restarts, halting, minimum segments)
as ``step(halt) -> SegmentStep``; most tests run on a stub core, no network."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pytest
import torch

from hrm_rl.data import ShuffledSource
from hrm_rl.model import Carry, SegmentOutput
from hrm_rl.segment_engine import SegmentEngine, SegmentStep, finished_rows
from tests.conftest import random_puzzles


@dataclass
class _Config:
    seq_len: int = 16


class StubCore:
    """A core without a network: the carry counts segments; ``q_halt - q_continue`` is
    ``+1`` on rows whose first input token is odd, else ``-1`` (so halting is scripted)."""

    config = _Config()

    def __init__(self) -> None:
        self.calls = 0

    def initial_carry(self, n: int, device=None) -> Carry:
        return Carry(torch.zeros(n, 1, 1), torch.zeros(n, 1, 1))

    def reset_carry(self, carry: Carry, rows: torch.Tensor) -> Carry:
        keep = (~rows).float()[:, None, None]
        return Carry(carry.z_H * keep, carry.z_L * keep)

    @staticmethod
    def halts(out: SegmentOutput) -> torch.Tensor:
        return out.q_halt > out.q_continue

    def __call__(self, carry: Carry, inputs: torch.Tensor, puzzle_ids: torch.Tensor):
        self.calls += 1
        n = inputs.shape[0]
        z = carry.z_H + 1
        odd = (inputs[:, 0] % 2 == 1).float()
        return SegmentOutput(Carry(z, z), torch.zeros(n, 16, 6), odd * 2 - 1,
                             torch.zeros(n), z[:, 0])


def _engine(model=None, n_puzzles=10, batch=4, shuffle=False, **kw):
    source = ShuffledSource(random_puzzles(n_puzzles), np.random.default_rng(0), shuffle=shuffle)
    return SegmentEngine(model or StubCore(), source, batch, "cpu", **kw), source


def test_finished_rows_is_the_cap_or_the_rule_after_the_minimum():
    seg = torch.tensor([1, 2, 3, 3])
    halts = torch.tensor([True, True, False, False])
    assert finished_rows(seg, 3, None, None).tolist() == [False, False, True, True]
    assert finished_rows(seg, None, halts, None).tolist() == [True, True, False, False]
    assert finished_rows(seg, 3, halts, torch.tensor([2, 2, 1, 4])).tolist() == [
        False, True, True, False]


def test_segment_step_is_immutable():
    step = SegmentStep(None, torch.zeros(1), torch.ones(1), torch.ones(1, dtype=torch.bool),
                       torch.zeros(1, dtype=torch.bool), torch.zeros(1, dtype=torch.bool))
    with pytest.raises(AttributeError):
        step.segments = torch.zeros(1)


def test_first_step_fills_every_row_and_marks_them_started():
    engine, source = _engine()
    step = engine.step()
    assert source.drawn == 4 and step.started.all() and not step.finished.any()
    assert step.segments.tolist() == [1, 1, 1, 1]
    assert torch.equal(engine.inputs, torch.from_numpy(random_puzzles(10).inputs[:4]))


def test_halted_rows_get_the_next_puzzles_and_a_fresh_carry():
    engine, _ = _engine()
    engine.step()
    engine.step()
    before = engine.inputs.clone()
    step = engine.step(torch.tensor([False, True, False, True]))
    puzzles = random_puzzles(10).inputs
    assert torch.equal(engine.inputs[1], torch.from_numpy(puzzles[4]))
    assert torch.equal(engine.inputs[3], torch.from_numpy(puzzles[5]))
    assert torch.equal(engine.inputs[0], before[0])
    assert step.segments.tolist() == [3, 1, 3, 1] and step.started.tolist() == [
        False, True, False, True]
    assert engine.carry.z_H[:, 0, 0].tolist() == [3, 1, 3, 1]


def test_the_cap_finishes_rows_and_they_are_refilled_next_step():
    engine, source = _engine(max_segments=2)
    engine.step()
    step = engine.step()
    assert step.finished.all() and not step.restarted.any() and step.first is None
    step = engine.step()
    assert step.started.all() and source.drawn == 8


def test_restart_at_cap_runs_the_next_puzzle_in_the_same_forward():
    model = StubCore()
    engine, source = _engine(model, max_segments=2, restart_at_cap=True)
    engine.step()
    labels_before = engine.labels.clone()
    calls = model.calls
    step = engine.step(torch.tensor([True, False, False, False]))
    assert model.calls == calls + 1  # one forward for the finished and the new puzzles
    assert step.restarted.tolist() == [False, True, True, True]
    assert step.finished.tolist() == [False, True, True, True]
    assert step.segments.tolist() == [1, 2, 2, 2]  # of the puzzles the segment ran on
    assert torch.equal(step.labels[1:], labels_before[1:])  # the finished puzzles' labels
    assert step.first.q_halt.shape == (3,)
    assert engine.segments.tolist() == [1, 1, 1, 1] and source.drawn == 8
    assert engine.pending is not None and not engine.pending.any()


def test_auto_halt_follows_the_rule_and_the_drawn_minimum():
    def at_least_three(n):
        return torch.full((n,), 3)

    engine, source = _engine(max_segments=8, auto_halt=True, min_segments=at_least_three)
    engine.min_segments = torch.tensor([1, 1, 3, 3])
    odd = (random_puzzles(10).inputs[:4, 0] % 2 == 1)
    step = engine.step()
    expected = odd & np.array([True, True, False, False])
    assert step.finished.numpy().tolist() == expected.tolist()
    engine.step()  # refilled rows draw a minimum of 3
    assert (engine.min_segments[torch.from_numpy(expected)] == 3).all()


def test_the_source_is_asked_on_every_step_even_for_zero_puzzles():
    class Counting(ShuffledSource):
        calls: list[int] = []

        def draw(self, n):
            self.calls.append(n)
            return super().draw(n)

    source = Counting(random_puzzles(10), np.random.default_rng(0))
    engine = SegmentEngine(StubCore(), source, 4, "cpu")
    engine.step()
    engine.step()
    engine.step(torch.tensor([True, False, False, False]))
    assert source.calls == [4, 0, 1]


def test_rows_continue_from_their_own_carry(tiny_model):
    """A row's outputs do not depend on what the other rows hold (no cross-row leakage)."""
    engine, _ = _engine(tiny_model)
    engine.step()
    out_batched = engine.step(torch.tensor([False, True, True, True])).out
    single, _ = _engine(tiny_model, batch=1)
    single.step()
    out_single = single.step().out
    torch.testing.assert_close(out_batched.logits[0], out_single.logits[0], atol=1e-5, rtol=1e-5)


def test_every_drawn_puzzle_is_worked_on(tiny_model):
    engine, source = _engine(tiny_model, n_puzzles=1000, batch=8, shuffle=True)
    rng = np.random.default_rng(1)
    seen = []
    engine.step()
    seen.extend(engine.inputs.tolist())
    for _ in range(20):
        halted = torch.from_numpy(rng.random(8) < 0.5)
        out = engine.step(halted).out
        seen.extend(engine.inputs[halted].tolist())
        assert out.logits.shape[0] == 8
    assert len(seen) == source.drawn


def test_peek_does_not_advance(tiny_model):
    engine, _ = _engine(tiny_model)
    engine.step()
    carry = engine.carry.z_H.clone()
    engine.peek()
    assert torch.equal(engine.carry.z_H, carry)
    assert engine.segments.tolist() == [1, 1, 1, 1]


def test_source_reshuffles_each_epoch():
    source = ShuffledSource(random_puzzles(5), np.random.default_rng(0))
    first = source.draw(5).inputs
    second = source.draw(5).inputs
    assert source.epoch == 1
    assert sorted(map(tuple, first.tolist())) == sorted(map(tuple, second.tolist()))
    state = source.rng.bit_generator.state
    assert len(source.draw(0)) == 0 and source.rng.bit_generator.state == state


class AlwaysHalt(StubCore):
    """A core whose Q-head always says halt: an episode lasts exactly its minimum."""

    def __call__(self, carry, inputs, puzzle_ids):
        out = super().__call__(carry, inputs, puzzle_ids)
        return SegmentOutput(out.carry, out.logits, torch.ones_like(out.q_halt),
                             torch.zeros_like(out.q_continue), out.h_state)


@pytest.mark.parametrize("redraw", [False, True], ids=["per_episode", "per_segment"])
def test_exploration_rules_give_their_segment_statistics(redraw):
    """Under an always-halt Q-head the episode length is the exploration rule's: drawn once
    per episode, P(L=1) = 1-p and P(L=k) = p/(K-1) for k = 2..K; redrawn every segment (the
    references' rule), P(halt at s | reached s) = (1-p) + p(s-1)/(K-1)."""
    from hrm_rl.agents.act import draw_min_segments

    p, cap, batch = 0.5, 4, 512
    torch.manual_seed(0)
    engine, _ = _engine(AlwaysHalt(), n_puzzles=64, batch=batch, max_segments=cap,
                        auto_halt=True, redraw_min_segments=redraw,
                        min_segments=lambda n: draw_min_segments(n, cap, p))
    engine.min_segments = draw_min_segments(batch, cap, p)
    lengths = []
    for _ in range(300):
        step = engine.step()
        lengths += step.segments[step.finished].tolist()
    freq = np.bincount(lengths, minlength=cap + 1)[1:] / len(lengths)
    if redraw:
        reach, want = 1.0, []
        for s in range(1, cap + 1):
            hazard = 1.0 if s == cap else (1 - p) + p * (s - 1) / (cap - 1)
            want.append(reach * hazard)
            reach *= 1 - hazard
    else:
        want = [1 - p] + [p / (cap - 1)] * (cap - 1)
    np.testing.assert_allclose(freq, want, atol=0.02)
    assert len(lengths) > 50_000
