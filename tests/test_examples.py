"""The single-file examples run and log what they claim."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

ROOT = Path(__file__).resolve().parents[1]


def _load(name: str):
    spec = importlib.util.spec_from_file_location(name, ROOT / "examples" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_cleanrl_style_ppo_logs_episodes_and_scores_on_val(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    ppo = _load("ppo_cleanrl_style")
    result = ppo.main(["--total-timesteps", "1024", "--num-envs", "32", "--num-steps", "8",
                       "--eval-episodes", "64", "--threads", "1", "--run-name", "smoke"])
    assert result["steps"] == 1024
    # each episode returns its pay (1 if right) minus 0.01 per segment
    assert result["val_return"] == pytest.approx(
        result["val_accuracy"] - 0.01 * result["val_segments"], abs=2e-4)  # 4 digits
    assert 1 <= result["val_segments"] <= 8
    events = EventAccumulator(str(tmp_path / "runs" / "smoke"))
    events.Reload()
    returns = events.Scalars("charts/episodic_return")  # the vector RecordEpisodeStatistics
    assert len(returns) > 0 and all(-0.09 <= e.value <= 1.0 for e in returns)
