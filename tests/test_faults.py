"""Numerical faults stop training cleanly: a non-finite loss or gradient raises before the
optimiser step, nothing bad is checkpointed, and the run resumes after a fix."""

from __future__ import annotations

import pytest
import torch
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from hrm_rl.agents.trainer import ACTTrainer, NonFiniteError
from hrm_rl.checkpoint import load_checkpoint, resolve_checkpoint
from hrm_rl.cli import main

from conftest import metrics, tiny_run_config as tiny, tiny_yaml


def _poison_loss_from(monkeypatch, trainer: ACTTrainer, step: int) -> None:
    import hrm_rl.agents.act as module

    real = module.act_loss

    def poisoned(*args, **kwargs):
        loss, parts = real(*args, **kwargs)
        return (loss * float("nan") if trainer.step >= step else loss), parts

    monkeypatch.setattr(module, "act_loss", poisoned)


def test_nan_loss_stops_training_keeps_the_last_good_checkpoint_and_logs(
        data_dir, tmp_path, monkeypatch):
    run = tmp_path / "run"
    trainer = ACTTrainer(tiny(data_dir, "train.steps=20", "train.checkpoint_every=5"), run,
                         progress=False)
    _poison_loss_from(monkeypatch, trainer, 7)
    with pytest.raises(NonFiniteError, match=r"non-finite loss at step 8 \(nan\)") as err:
        trainer.fit()
    assert err.value.step == 8 and err.value.what == "loss"
    assert "--resume" in str(err.value)
    assert trainer.step == 7  # the bad step was not applied
    assert all(torch.isfinite(p).all() for p in trainer.model.parameters())
    ckpt = load_checkpoint(run)
    assert ckpt.path.name == "step_0000005" and ckpt.meta["step"] == 5
    acc = EventAccumulator(str(run))
    acc.Reload()
    assert [(e.step, e.value) for e in acc.Scalars("fault/non_finite")] == [(8, 1.0)]
    assert "fault/message/text_summary" in acc.Tags()["tensors"]
    assert metrics(run)[-1]["step"] == 7


def test_nan_gradient_names_the_parameter(data_dir):
    trainer = ACTTrainer(tiny(data_dir), None, progress=False)
    trainer.train_step()
    param = trainer.model.lm_head.weight
    param.register_hook(lambda g: g * float("inf"))
    before = param.detach().clone()
    with pytest.raises(NonFiniteError, match=r"non-finite gradient at step 2 \(in lm_head"):
        trainer.train_step()
    assert torch.equal(param.detach(), before)


def test_non_finite_weights_are_never_checkpointed(data_dir, tmp_path):
    trainer = ACTTrainer(tiny(data_dir), tmp_path / "run", progress=False)
    trainer.train_step()
    good = trainer.save()
    with torch.no_grad():
        next(trainer.model.parameters())[0] = float("nan")
    trainer.step += 1  # pretend a step ran and left the weights poisoned
    with pytest.raises(NonFiniteError, match="non-finite weights at step 2"):
        trainer.save()
    assert resolve_checkpoint(tmp_path / "run") == good


def test_cli_exits_3_on_divergence(data_dir, tmp_path, capsys):
    config = tiny_yaml(tmp_path / "tiny.yaml", f"data.cache_dir={data_dir}", "train.steps=30",
                       "train.lr_warmup_steps=1", "train.weight_decay=0")
    args = ["train", str(config), "--set", "train.lr=1e30", "--run-dir", str(tmp_path / "run"),
            "--no-progress"]
    assert main(args) == 3
    assert "non-finite" in capsys.readouterr().err
