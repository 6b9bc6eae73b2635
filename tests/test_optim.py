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
    assert torch.all(w.abs() <= 0.1 * torch.pi / 2 + 1e-6)


def test_adam_atan2_is_the_hrm_references_update():
    # The update of imoneoi's adam-atan2 kernel, which HRM and TRM train with (no a, b
    # constants): p *= 1 - lr*wd; p -= lr * atan2(m / (1 - b1^t), sqrt(v) / sqrt(1 - b2^t)).
    torch.manual_seed(0)
    lr, wd, (b1, b2) = 1e-3, 0.1, (0.9, 0.95)
    w = torch.nn.Parameter(torch.randn(64, dtype=torch.float64))
    p, m, v = w.detach().clone(), torch.zeros_like(w), torch.zeros_like(w)
    opt = AdamATan2([w], lr=lr, betas=(b1, b2), weight_decay=wd)
    for t in range(1, 6):
        grad = torch.randn_like(p) * 1e-3
        w.grad = grad.clone()
        opt.step()
        p = p * (1 - lr * wd)
        m, v = m.lerp(grad, 1 - b1), v.lerp(grad * grad, 1 - b2)
        p = p - lr * torch.atan2(m / (1 - b1**t), v.sqrt() / (1 - b2**t) ** 0.5)
    assert torch.allclose(w.detach(), p, rtol=0, atol=1e-15)


def test_schedule_warms_up_then_follows_the_time_budget():
    assert lr_at(0, 1.0, 10, 100, 0.1) == pytest.approx(0.1)
    assert lr_at(10, 1.0, 10, 100, 0.1) == pytest.approx(1.0)
    assert lr_at(100, 1.0, 10, 100, 0.1) == pytest.approx(0.1)
    assert lr_at(20, 1.0, 10, 100, 0.1, time_fraction=1.0) == pytest.approx(0.1)


def test_params_cli_prints_the_paper_count(capsys):
    config = Path(__file__).parent.parent / "configs" / "sudoku9-extreme.yaml"
    assert main(["params", str(config)]) == 0
    assert capsys.readouterr().out.strip() == (  # + one 512-d puzzle embedding, as HRM's
        "27,275,778 (27,275,266 without the puzzle-embedding table, as the reference counts)")
    assert main(["params", str(config), "--set", "model.puzzle_emb_ndim=0"]) == 0
    assert capsys.readouterr().out.strip() == "27,275,266"


def test_sign_sgd_updates_only_the_rows_a_step_used():
    from hrm_rl.optim import SignSGD

    table = torch.nn.Parameter(torch.ones(4, 3))
    opt = SignSGD([table], lr=0.1, weight_decay=0.5)
    table.grad = torch.tensor([[0.0, 0.0, 0.0], [2.0, -3.0, 0.0], [0.0, 0.0, 0.0],
                               [1e-9, 0.0, 0.0]])
    opt.step()
    want = torch.ones(4, 3)
    want[1] = 1 * (1 - 0.1 * 0.5) - 0.1 * torch.tensor([1.0, -1.0, 0.0])
    want[3] = 1 * (1 - 0.1 * 0.5) - 0.1 * torch.tensor([1.0, 0.0, 0.0])
    torch.testing.assert_close(table.detach(), want)  # rows 0 and 2: no decay, no step


def test_the_paper_sudoku_config_has_a_prefix_position_and_a_sign_sgd_embedding(tmp_path):
    """configs/sudoku9-extreme.yaml as the reference: one zero-initialised 512-d puzzle
    embedding at prefix position 0 (which the Q-head reads), learned by sign-SGD at its own
    lr and weight decay, outside the main optimiser."""
    from hrm_rl.agents import ACTTrainer
    from hrm_rl.config import load_config
    from hrm_rl.model import build_model
    from hrm_rl.optim import SignSGD
    from hrm_rl.tasks import make_task

    paper = load_config(Path(__file__).parent.parent / "configs" / "sudoku9-extreme.yaml")
    assert paper.model.puzzle_emb_ndim == paper.model.hidden_size == 512
    assert (paper.train.puzzle_emb_optimizer, paper.train.puzzle_emb_lr,
            paper.train.puzzle_emb_weight_decay) == ("sign_sgd", 7e-5, 1.0)
    model = build_model(paper.model.fit_to(make_task(paper.task)))
    assert model.prefix_len == 1 and model.initial_carry(1).z_H.shape[1] == 81 + 1
    assert model.puzzle_emb.shape == (1, 512) and not model.puzzle_emb.any()
    # the same shape, tiny: the table learns by sign-SGD, by exactly lr on its first step
    tiny = ["task.size=4", "model.hidden_size=32", "model.num_heads=2", "model.H_layers=1",
            "model.L_layers=1", "model.puzzle_emb_ndim=32", "train.batch_size=8",
            "train.lr=1e-3", "train.lr_warmup_steps=0", "train.puzzle_emb_lr=0.5",
            "train.max_segments=2", "data.train_size=40", "data.test_size=8",
            "data.max_givens=6", "data.split_by=exact", f"data.cache_dir={tmp_path}"]
    trainer = ACTTrainer(load_config(None, tiny), run_dir=None, progress=False)
    emb = trainer.model.puzzle_emb
    assert isinstance(trainer.emb_optimizer, SignSGD)
    assert all(p is not emb for g in trainer.optimizer.param_groups for p in g["params"])
    trainer.train_step()
    moved = emb.detach().abs()
    assert moved.max() == pytest.approx(0.5) and set(moved.unique().tolist()) <= {0.0, 0.5}
    main_only = ACTTrainer(load_config(None, [*tiny, "train.puzzle_emb_optimizer=main"]),
                           run_dir=None, progress=False)
    assert main_only.emb_optimizer is None
    assert any(p is main_only.model.puzzle_emb
               for g in main_only.optimizer.param_groups for p in g["params"])
