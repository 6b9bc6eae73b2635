"""Optimisers and the learning-rate schedule."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from hrm_rl.cli import main
from hrm_rl.optim import AdamATan2, lr_at, make_optimizer


@pytest.mark.parametrize("name", ["adamw", "adam_atan2"])
def test_optimisers_minimise_a_quadratic(name):
    torch.manual_seed(0)
    w = torch.nn.Parameter(torch.randn(10))
    opt = make_optimizer(name, [w], lr=0.05, betas=(0.9, 0.95), weight_decay=0.0)
    for _ in range(300):
        opt.zero_grad()
        (w - 3).square().sum().backward()
        opt.step()
    assert torch.allclose(w, torch.full((10,), 3.0), atol=0.1)


def test_adam_atan2_step_is_bounded_without_epsilon():
    w = torch.nn.Parameter(torch.zeros(3))
    opt = AdamATan2([w], lr=0.1)
    w.grad = torch.tensor([1e-30, 1.0, -1e6])
    opt.step()
    assert torch.all(w.abs() <= 0.1 * 1.27 * torch.pi / 2 + 1e-6)


def test_schedule_warms_up_then_follows_the_time_budget():
    assert lr_at(0, 1.0, 10, 100, 0.1) == pytest.approx(0.1)
    assert lr_at(10, 1.0, 10, 100, 0.1) == pytest.approx(1.0)
    assert lr_at(100, 1.0, 10, 100, 0.1) == pytest.approx(0.1)
    assert lr_at(20, 1.0, 10, 100, 0.1, time_fraction=1.0) == pytest.approx(0.1)


def test_params_cli_prints_the_paper_count(capsys):
    config = Path(__file__).parent.parent / "configs" / "sudoku9-extreme.yaml"
    assert main(["params", str(config)]) == 0
    assert capsys.readouterr().out.strip() == "27,275,266"
