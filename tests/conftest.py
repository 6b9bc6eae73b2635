"""Shared fixtures: tiny cores that run in milliseconds on a CPU."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from hrm_rl.config import ModelConfig
from hrm_rl.model import HRM
from hrm_rl.tasks.base import PuzzleBatch

torch.set_num_threads(2)


def tiny_model_config(**overrides) -> ModelConfig:
    base = dict(hidden_size=32, num_heads=2, expansion=2.0, H_layers=1, L_layers=1,
                H_cycles=2, L_cycles=2, vocab_size=6, seq_len=16)
    base.update(overrides)
    return ModelConfig(**base)


@pytest.fixture
def tiny_model() -> HRM:
    torch.manual_seed(0)
    return HRM(tiny_model_config())


def random_puzzles(n: int, seq_len: int = 16, vocab: int = 6, seed: int = 0) -> PuzzleBatch:
    rng = np.random.default_rng(seed)
    inputs = rng.integers(1, vocab, size=(n, seq_len))
    labels = rng.integers(2, vocab, size=(n, seq_len))
    return PuzzleBatch(inputs, labels, np.zeros(n, dtype=np.int64))
