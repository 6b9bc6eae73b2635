"""Shared fixtures: tiny cores that run in milliseconds on a CPU, and the tiny training run
the reliability tests share (``TINY_RUN``)."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path
from types import ModuleType
from typing import Callable

import numpy as np
import pytest
import torch
import yaml

from hrm_rl.config import ModelConfig, RunConfig, load_config
from hrm_rl.model import HRM, SegmentOutput
from hrm_rl.tasks.base import PuzzleBatch

torch.set_num_threads(2)


def load_script(name: str) -> ModuleType:
    """The module of ``scripts/NAME.py`` (the scripts are not a package), imported as ``NAME``."""
    path = Path(__file__).resolve().parents[1] / "scripts" / f"{name}.py"
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


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


# A tiny, fast, deterministic run: hidden 32, 1+1 layers, batch 16, 4x4 puzzles.
TINY_RUN = ["task.size=4", "model.hidden_size=32", "model.num_heads=2", "model.H_layers=1",
            "model.L_layers=1", "model.H_cycles=1", "model.L_cycles=2", "model.expansion=2",
            "model.pos_encodings=learned", "train.batch_size=16", "train.lr=1e-3",
            "train.weight_decay=0.1", "train.lr_warmup_steps=5", "train.max_segments=4",
            "train.eval_every=1000", "train.eval_size=16", "train.log_every=1",
            "train.threads=1", "train.loss=softmax", "train.device=cpu",
            "data.train_size=200", "data.test_size=16", "data.max_givens=6",
            "data.split_by=exact"]


def tiny_run_config(cache_dir: Path, *extra: str) -> RunConfig:
    """``TINY_RUN`` with its puzzles cached in ``cache_dir``, then ``extra`` overrides."""
    return load_config(None, TINY_RUN + [f"data.cache_dir={cache_dir}", *extra])


def tiny_yaml(path: Path, *sets: str) -> Path:
    """The tiny run's config with ``sets`` as a YAML file (for the command line)."""
    path.write_text(yaml.safe_dump(load_config(None, [*TINY_RUN, *sets]).to_dict()))
    return path


def metrics(run_dir: Path) -> list[dict]:
    """The rows of a run's ``metrics.jsonl``."""
    return [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]


@pytest.fixture(scope="session")
def data_dir(tmp_path_factory) -> Path:
    """One cache of the tiny run's generated puzzles for the whole session."""
    return tmp_path_factory.mktemp("tiny-run-data")


@pytest.fixture(autouse=True)
def _restore_threads():
    """The tiny run pins torch to one thread; give the next test the session's count."""
    threads = torch.get_num_threads()
    yield
    torch.set_num_threads(threads)


@pytest.fixture
def without_reasoning_gym(monkeypatch):
    """Python as without reasoning-gym installed (``find_spec`` does not see it), with the
    re-arc generators' cache cleared before and after."""
    from importlib.machinery import PathFinder

    from hrm_rl.tasks.arc import rearc

    rearc.generators.cache_clear()
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name == "reasoning_gym" else
                        PathFinder.find_spec(name))
    yield
    monkeypatch.undo()
    rearc.generators.cache_clear()
