"""Shared fixtures: tiny cores that run in milliseconds on a CPU."""

from __future__ import annotations

from typing import Callable

import numpy as np
import pytest
import torch

from hrm_rl.config import ModelConfig
from hrm_rl.model import HRM, SegmentOutput
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


def saved_activation_bytes(segment: Callable[[], SegmentOutput]) -> int:
    """Bytes autograd keeps for the backward pass of ``segment()`` (the activation memory,
    parameters not counted); then backpropagates the sum of its logits."""
    saved = 0

    def pack(t: torch.Tensor) -> torch.Tensor:
        nonlocal saved
        if not isinstance(t, torch.nn.Parameter):
            saved += t.numel() * t.element_size()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        out = segment()
    out.logits.sum().backward()
    return saved
