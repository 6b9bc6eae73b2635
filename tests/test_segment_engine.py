"""The segment engine: batched carry, per-row replacement, nothing discarded."""

from __future__ import annotations

import numpy as np
import torch

from hrm_rl.data import ShuffledSource
from hrm_rl.segment_engine import SegmentEngine
from tests.conftest import random_puzzles


def _engine(model, n_puzzles=10, batch=4, shuffle=False):
    source = ShuffledSource(random_puzzles(n_puzzles), np.random.default_rng(0), shuffle=shuffle)
    return SegmentEngine(model, source, batch, "cpu"), source


def test_first_step_fills_every_row(tiny_model):
    engine, source = _engine(tiny_model)
    out = engine.step()
    assert source.drawn == 4
    assert out.logits.shape == (4, 16, 6)
    assert engine.segments.tolist() == [1, 1, 1, 1]
    assert torch.equal(engine.inputs, torch.from_numpy(random_puzzles(10).inputs[:4]))


def test_halted_rows_get_the_next_puzzles_and_a_fresh_carry(tiny_model):
    engine, source = _engine(tiny_model)
    engine.step()
    engine.step()
    halted = torch.tensor([False, True, False, True])
    before = engine.inputs.clone()
    engine.replace(halted)
    puzzles = random_puzzles(10).inputs
    assert torch.equal(engine.inputs[1], torch.from_numpy(puzzles[4]))
    assert torch.equal(engine.inputs[3], torch.from_numpy(puzzles[5]))
    assert torch.equal(engine.inputs[0], before[0])
    assert engine.segments.tolist() == [2, 0, 2, 0]
    assert torch.equal(engine.carry.z_H[1], tiny_model.H_init.expand_as(engine.carry.z_H[1]))


def test_rows_continue_from_their_own_carry(tiny_model):
    """A row's outputs do not depend on what the other rows hold (no cross-row leakage)."""
    engine, _ = _engine(tiny_model)
    engine.step()
    out_batched = engine.step(torch.tensor([False, True, True, True]))
    single, _ = _engine(tiny_model, batch=1)
    single.step()
    out_single = single.step()
    torch.testing.assert_close(out_batched.logits[0], out_single.logits[0], atol=1e-5, rtol=1e-5)


def test_every_drawn_puzzle_is_worked_on(tiny_model):
    engine, source = _engine(tiny_model, n_puzzles=1000, batch=8, shuffle=True)
    rng = np.random.default_rng(1)
    seen = []
    engine.step()
    seen.extend(engine.inputs.tolist())
    for _ in range(20):
        halted = torch.from_numpy(rng.random(8) < 0.5)
        out = engine.step(halted)
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
