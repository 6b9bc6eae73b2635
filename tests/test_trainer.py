"""The ACT agent: a short run learns, logs to TensorBoard, checkpoints and evaluates."""

from __future__ import annotations

import json
import re

import numpy as np
import pytest
import torch
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from hrm_rl.agents import ACTTrainer, act_loss
from hrm_rl.checkpoint import load_checkpoint
from hrm_rl.cli import main
from hrm_rl.config import ConfigError, load_config
from hrm_rl.evaluation import evaluate
from hrm_rl.model import SegmentOutput

from conftest import tiny_run_config

TINY = ["task.size=4", "model.hidden_size=32", "model.num_heads=2", "model.H_layers=1",
        "model.L_layers=1", "model.H_cycles=1", "model.L_cycles=2",
        "model.pos_encodings=learned", "train.batch_size=32", "train.steps=80",
        "train.lr=1e-3", "train.weight_decay=0.1", "train.lr_warmup_steps=5",
        "train.max_segments=4", "train.eval_every=40", "train.eval_size=64",
        "train.checkpoint_every=40", "train.log_every=10", "train.loss=softmax",
        "data.train_size=400", "data.test_size=64", "data.max_givens=6", "data.split_by=exact"]


def tiny_config(tmp_path, *extra):
    return load_config(None, TINY + [f"data.cache_dir={tmp_path / 'data'}", *extra])


@pytest.fixture(scope="module")
def trained_run(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("run")
    trainer = ACTTrainer(tiny_config(tmp), tmp / "run", progress=False)
    summary = trainer.fit()
    acc = EventAccumulator(str(tmp / "run"))
    acc.Reload()
    losses = [e.value for e in acc.Scalars("train/lm_loss")]
    return trainer, losses, summary, tmp


def test_loss_falls(trained_run):
    _, losses, _, _ = trained_run
    assert len(losses) == 8  # logged every 10 of 80 steps, each the mean over its window
    assert np.mean(losses[-2:]) < 0.8 * losses[0]


def test_summary_reports_accuracy_by_segment(trained_run):
    _, _, summary, _ = trained_run
    ev = summary["eval"]
    assert len(ev["exact_by_segment"]) == 4 and ev["n"] == 64
    assert 1 <= ev["mean_segments_qhalt"] <= 4
    assert sum(ev["segments_qhalt_histogram"]) == 64


def test_tensorboard_has_the_documented_scalars(trained_run):
    trainer, _, _, _ = trained_run
    acc = EventAccumulator(str(trainer.run_dir))
    acc.Reload()
    tags = set(acc.Tags()["scalars"])
    for tag in ("train/lm_loss", "train/q_halt_loss", "train/q_continue_loss", "train/exact_acc",
                "train/mean_segments", "eval/exact_acc_qhalt", "eval/mean_segments_qhalt",
                "eval/exact_acc_at_k/1", "eval/exact_acc_at_k/4", "perf/segments_per_s"):
        assert tag in tags, tag


def test_checkpoint_round_trip_gives_the_same_outputs(trained_run):
    trainer, _, summary, _ = trained_run
    ckpt = load_checkpoint(trainer.run_dir)
    carry = ckpt.model.initial_carry(2)
    inputs = torch.from_numpy(trainer.test_set.inputs[:2])
    ids = torch.zeros(2, dtype=torch.long)
    trainer.model.eval()
    with torch.no_grad():
        expected = trainer.model(trainer.model.initial_carry(2), inputs, ids).logits
        got = ckpt.model(carry, inputs, ids).logits
    torch.testing.assert_close(got, expected)
    assert ckpt.meta["step"] == trainer.step == 80
    assert 0 < ckpt.meta["train_seconds"] == pytest.approx(summary["train_seconds"], abs=2)


def test_init_from_starts_a_fresh_run_from_a_checkpoints_weights(trained_run, tmp_path):
    trainer, _, _, tmp = trained_run
    source = load_checkpoint(trainer.run_dir)
    # another data mix (a fine-tune), the same architecture
    config = tiny_config(tmp, f"train.init_from={trainer.run_dir}", "data.seed=1")
    tuned = ACTTrainer(config, None, progress=False)
    for name, param in tuned.model.state_dict().items():
        torch.testing.assert_close(param, source.model.state_dict()[name])
    assert tuned.step == 0 and any("initialised from" in n for n in tuned.notes)
    fresh = ACTTrainer(tiny_config(tmp, "data.seed=1"), None, progress=False)
    assert any((fresh.model.state_dict()[k] != v).any() for k, v in
               tuned.model.state_dict().items())


def test_init_from_may_change_the_recurrence_but_not_the_weights_shapes(trained_run):
    """A fine-tune may run the same weights for another number of steps per segment
    (H_cycles, L_cycles); anything else the weights' architecture holds is still refused."""
    trainer, _, _, tmp = trained_run
    source = load_checkpoint(trainer.run_dir)
    cycles = source.model.config.H_cycles
    tuned = ACTTrainer(tiny_config(tmp, f"train.init_from={trainer.run_dir}",
                                   f"model.H_cycles={cycles + 1}"), None, progress=False)
    assert tuned.model.config.H_cycles == cycles + 1
    for name, param in tuned.model.state_dict().items():
        torch.testing.assert_close(param, source.model.state_dict()[name])
    assert any(f"H_cycles {cycles} -> {cycles + 1}" in n for n in tuned.notes)
    with pytest.raises(ValueError, match="another model architecture.*rope_theta"):
        ACTTrainer(tiny_config(tmp, f"train.init_from={trainer.run_dir}",
                               "model.rope_theta=5000.0"), None, progress=False)


def test_trainable_q_head_moves_only_the_halting_head(trained_run):
    """``train.trainable: q_head``: a fine-tune at another segment size re-fits the Q-head
    and leaves every other weight, and so every segment's answer, as loaded."""
    trainer, _, _, tmp = trained_run
    source = load_checkpoint(trainer.run_dir).model.state_dict()
    tuned = ACTTrainer(tiny_config(tmp, f"train.init_from={trainer.run_dir}", "train.steps=6",
                                   "train.trainable=q_head", "model.L_cycles=1",
                                   "train.eval_every=100", "train.checkpoint_every=100"),
                       None, progress=False)
    tuned.fit()
    after = tuned.model.state_dict()
    head = sum(p.numel() for p in tuned.model.q_head.parameters())
    assert tuned.model.num_parameters() == tuned.model.num_parameters(False) == head
    moved = sorted(k for k in after if not torch.equal(after[k], source[k]))
    assert moved and all(k.startswith("q_head.") for k in moved), moved
    assert tuned.emb_optimizer is None or all(
        p.requires_grad for g in tuned.emb_optimizer.param_groups for p in g["params"])
    with pytest.raises(ConfigError, match="train.trainable"):
        tiny_config(tmp, "train.trainable=lm_head")


def test_init_from_may_add_layers_that_start_as_the_identity(trained_run):
    """A fine-tune onto deeper H and L stacks: the loaded blocks keep their weights, the added
    ones start with zeroed residual branches (the loaded function, to the norm's eps) and
    learn; a shallower model is refused."""
    trainer, _, _, tmp = trained_run
    source = load_checkpoint(trainer.run_dir).model.eval()
    tuned = ACTTrainer(tiny_config(tmp, f"train.init_from={trainer.run_dir}", "train.steps=3",
                                   "model.H_layers=2", "model.L_layers=3", "train.eval_every=100",
                                   "train.checkpoint_every=100"), None, progress=False)
    model = tuned.model.eval()
    assert any("H_layers 1 -> 2, L_layers 1 -> 3" in n for n in tuned.notes)
    for name, param in source.state_dict().items():
        torch.testing.assert_close(model.state_dict()[name], param)
    added = [model.H_level.layers[1], model.L_level.layers[1], model.L_level.layers[2]]
    assert all(not b.self_attn.o_proj.weight.any() and not b.mlp.down_proj.weight.any()
               and b.self_attn.qkv_proj.weight.any() for b in added)
    torch.manual_seed(0)
    inputs = torch.randint(1, source.config.vocab_size, (4, source.config.seq_len))
    ids = torch.zeros(4, dtype=torch.long)
    with torch.no_grad():
        want, got = source.initial_carry(4), model.initial_carry(4)
        for _ in range(3):
            a, b = source(want, inputs, ids), model(got, inputs, ids)
            torch.testing.assert_close(b.logits, a.logits, atol=1e-3, rtol=1e-3)
            torch.testing.assert_close(b.q_halt, a.q_halt, atol=1e-3, rtol=1e-3)
            want, got = a.carry, b.carry
    tuned.fit()
    assert all(b.self_attn.o_proj.weight.any() and b.mlp.down_proj.weight.any() for b in added)
    deeper = ACTTrainer(tiny_config(tmp, "model.L_layers=2", "train.steps=1",
                                    "train.eval_every=100", "train.checkpoint_every=100"),
                        tmp / "deeper", progress=False)
    deeper.fit()
    with pytest.raises(ValueError, match="L_layers=2, but the model has 1.*not drop them"):
        ACTTrainer(tiny_config(tmp, f"train.init_from={tmp / 'deeper'}"), None, progress=False)


def test_a_resumed_fine_tune_continues_without_its_init_checkpoint(trained_run, tmp_path):
    import shutil

    trainer, _, _, tmp = trained_run
    source = tmp_path / "source"
    shutil.copytree(trainer.run_dir, source)
    config = tiny_config(tmp, f"train.init_from={source}", "train.steps=10",
                         "train.checkpoint_every=5", "train.eval_every=100")
    ACTTrainer(config, tmp_path / "tuned", progress=False).fit()
    shutil.rmtree(source)  # resuming loads the run's own checkpoint, not the init
    resumed = ACTTrainer.resume(tmp_path / "tuned", ["train.steps=15"], progress=False)
    assert resumed.step == 10 and not any("initialised" in n for n in resumed.notes)
    resumed.fit()
    assert resumed.step == 15


def test_a_fresh_run_refuses_a_folder_that_holds_a_run_and_resume_continues_it(trained_run,
                                                                              tmp_path):
    import shutil

    from hrm_rl.run_dir import RunExistsError

    trainer, _, _, tmp = trained_run
    run = tmp_path / "run"
    shutil.copytree(trainer.run_dir, run)
    (run / ".lock").unlink(missing_ok=True)
    files = {p: p.read_bytes() for p in sorted(run.rglob("*")) if p.is_file()}
    with pytest.raises(RunExistsError, match=re.escape(f"{run} already holds a run (checkpoints "
                                                      f"in {run / 'checkpoints'})")) as refused:
        ACTTrainer(tiny_config(tmp), run, progress=False)  # fit() twice into one folder
    assert isinstance(refused.value, FileExistsError)
    assert "new folder" in str(refused.value) and f"ACTTrainer.resume('{run}')" in str(
        refused.value)
    assert {p: p.read_bytes() for p in sorted(run.rglob("*")) if p.is_file()} == files
    resumed = ACTTrainer.resume(run, ["train.steps=82"], progress=False)
    assert resumed.step == 80
    resumed.fit()
    assert resumed.step == 82
    # figures alone (a run killed before its first checkpoint) count as a run too
    figures = tmp_path / "figures"
    figures.mkdir()
    shutil.copy(run / "metrics.jsonl", figures)
    with pytest.raises(RunExistsError, match="figures in .*metrics.jsonl"):
        ACTTrainer(tiny_config(tmp), figures, progress=False)
    # an empty folder, or one with only a lock or TensorBoard events, takes a fresh run
    empty = tmp_path / "empty"
    ACTTrainer(tiny_config(tmp), empty, progress=False).lock.release()
    assert list(empty.glob("events.out.tfevents.*"))
    ACTTrainer(tiny_config(tmp), empty, progress=False).lock.release()


def test_init_from_refuses_weights_of_another_architecture_and_missing_folders(trained_run,
                                                                               tmp_path):
    trainer, _, _, tmp = trained_run
    with pytest.raises(ValueError, match="train.init_from"):
        ACTTrainer(tiny_config(tmp, f"train.init_from={trainer.run_dir}",
                               "model.hidden_size=64"), None, progress=False)
    with pytest.raises(FileNotFoundError, match="no checkpoint"):
        ACTTrainer(tiny_config(tmp, f"train.init_from={tmp_path / 'none'}"), None,
                   progress=False)


def test_periodic_eval_spreads_over_the_test_split(trained_run, monkeypatch):
    """train.eval_size < the test split: the eval takes rows spread over all of it (a split
    ordered by task, as re-arc's, would otherwise be scored on its first tasks only)."""
    import sys

    trainer, _, _, _ = trained_run
    seen = []
    monkeypatch.setattr(sys.modules[type(trainer).__module__], "evaluate",
                        lambda model, task, puzzles, *a, **k: seen.append(puzzles))
    n = len(trainer.test_set)
    trainer.evaluate(n // 4)
    rows = np.arange(n // 4) * n // (n // 4)
    assert rows[-1] >= n - 4 and len(set(rows.tolist())) == n // 4
    np.testing.assert_array_equal(seen[0].inputs, trainer.test_set.inputs[rows])


def test_eval_cli_prints_json(trained_run, tmp_path, capsys):
    trainer, _, _, _ = trained_run
    csv = tmp_path / "puzzles.csv"
    trainer.task.write_csv(csv, trainer.test_set.take(slice(0, 20)))
    assert main(["eval", str(trainer.run_dir), "--data", str(csv), "--max-segments", "3",
                 "--no-progress"]) == 0
    out = json.loads(capsys.readouterr().out)
    ckpt = load_checkpoint(trainer.run_dir)
    want = evaluate(ckpt.model, ckpt.task, trainer.test_set.take(slice(0, 20)), 3).to_dict()
    assert out["n"] == 20 and len(out["exact_by_segment"]) == 3
    for key in ("exact_by_segment", "exact_acc_qhalt", "mean_segments_qhalt", "cell_acc_qhalt"):
        assert out[key] == pytest.approx(want[key])  # the CLI prints what evaluate() measures
    assert 1 <= out["mean_segments_qhalt"] <= 3 and sum(out["segments_qhalt_histogram"]) == 20


def test_eval_cli_reports_a_missing_checkpoint(tmp_path, capsys):
    assert main(["eval", str(tmp_path / "nothing"), "--data", "x.csv"]) == 2
    assert "no checkpoint" in capsys.readouterr().err


def test_q_learning_targets_follow_the_reference():
    logits = torch.zeros(2, 3, 4, requires_grad=True)
    labels = torch.tensor([[0, 1, 2], [3, 3, -100]])
    q_halt = torch.tensor([0.0, 0.0], requires_grad=True)
    q_cont = torch.tensor([0.0, 0.0], requires_grad=True)
    out = SegmentOutput(None, logits, q_halt, q_cont, None)
    correct = torch.tensor([True, False])
    target = torch.tensor([1.0, 0.0])
    loss, parts = act_loss(out, labels, correct, target, "softmax", 0.5)
    loss.backward()
    # d BCE / d logit = sigmoid(logit) - target: halting is pushed up for the correct row.
    assert q_halt.grad[0] < 0 < q_halt.grad[1]
    assert q_cont.grad[0] < 0 < q_cont.grad[1]
    torch.testing.assert_close(parts["lm_loss"], torch.tensor(2 * np.log(4.0), dtype=torch.float32))


def test_exploration_draws_minimum_segments_per_episode(tmp_path):
    trainer = ACTTrainer(tiny_config(tmp_path, "train.halt_exploration_prob=1.0",
                                     "train.max_segments=6"), None, progress=False)
    mins = trainer._draw_min_segments(2000)
    assert mins.min() >= 2 and mins.max() <= 6
    trainer = ACTTrainer(tiny_config(tmp_path, "train.halt_exploration_prob=0.0"), None,
                         progress=False)
    assert torch.all(trainer._draw_min_segments(100) == 1)


def test_eval_cli_on_the_bundled_core_with_zero_blanks(tmp_path, capsys):
    from hrm_rl.checkpoint import load_checkpoint

    ckpt = load_checkpoint("sudoku4")
    puzzles = ckpt.test_puzzles().take(slice(0, 50))
    grids = ckpt.task.decode(puzzles.inputs)
    answers = ckpt.task.decode(puzzles.labels)
    rows = ["source,question,answer,rating"] + [
        f"mine,{''.join(map(str, q))},{''.join(map(str, a))},0" for q, a in zip(grids, answers)]
    (tmp_path / "my.csv").write_text("\n".join(rows) + "\n")
    assert main(["eval", "sudoku4", "--data", str(tmp_path / "my.csv"), "--no-progress"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["n"] == 50 and len(out["exact_by_segment"]) == 8
    assert out["exact_by_segment"][-1] > out["exact_by_segment"][0]


def test_eval_cli_reads_the_checkpoints_own_split_by_name(tmp_path, capsys, monkeypatch):
    from hrm_rl.checkpoint import load_checkpoint

    ckpt = load_checkpoint("sudoku4")
    monkeypatch.chdir(tmp_path)  # no file named "test" here
    args = ["--limit", "40", "--max-segments", "2", "--no-progress"]
    assert main(["eval", "sudoku4", "--data", "test", *args]) == 0
    by_name = json.loads(capsys.readouterr().out)
    assert main(["eval", "sudoku4", "--data", str(ckpt.path / "test.csv"), *args]) == 0
    by_path = json.loads(capsys.readouterr().out)
    assert by_name["n"] == 40 and by_name["data"] == "test"
    for key in ("exact_by_segment", "cell_by_segment", "exact_acc_qhalt"):
        assert by_name[key] == by_path[key]
    assert main(["eval", "sudoku4", "--data", "val", *args]) == 0  # a halting split
    assert json.loads(capsys.readouterr().out)["n"] == 40
    with pytest.raises(SystemExit):
        main(["eval", "--help"])
    assert "hrm_rl/checkpoints/<core>/test.csv" in " ".join(capsys.readouterr().out.split())


def test_a_time_budgeted_run_shows_its_budget_in_the_progress_bar(tmp_path, capsys):
    config = tiny_config(tmp_path, "train.max_time_s=1.5", "train.steps=100000",
                         "train.eval_size=8", "train.log_every=1")
    ACTTrainer(config, run_dir=None, progress=True).fit()
    err = capsys.readouterr().err
    assert "/2 s of budget" in err and "/100000" not in err  # seconds, not 0/100000 steps
    assert "step=" in err  # the step count moves to the postfix


def test_same_seed_same_training_losses(data_dir):
    def losses(seed):
        trainer = ACTTrainer(tiny_run_config(data_dir, f"train.seed={seed}"), None, progress=False)
        return [trainer.train_step() for _ in range(6)]

    first = losses(0)
    assert losses(0) == first
    assert losses(1) != first
