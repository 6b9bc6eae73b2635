"""Rollouts and the halting zoo: halting rules scored on recorded segments."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from hrm_rl.agents.zoo import (choose_fixed, choose_threshold, core_report,
                               difficulty_buckets, format_difficulty, format_zoo,
                               oracle_halts, score, threshold_halts)
from hrm_rl.checkpoint import bundled_checkpoints, load_checkpoint
from hrm_rl.cli import main
from hrm_rl.evaluation import Rollout, bootstrap_ci, evaluate, record_rollout

from conftest import random_puzzles


def rollout(correct, min_conf=None, q_halt=None, q_continue=None) -> Rollout:
    correct = np.asarray(correct, dtype=bool)
    zeros = np.zeros(correct.shape, dtype=np.float32)
    q_halt = zeros if q_halt is None else np.asarray(q_halt, np.float32)
    q_continue = zeros if q_continue is None else np.asarray(q_continue, np.float32)
    return Rollout(correct, correct.astype(np.float32), q_halt, q_continue,
                   zeros if min_conf is None else np.asarray(min_conf, np.float32),
                   halts=q_halt > q_continue)


def test_first_finds_the_first_hit_or_the_cap():
    r = rollout([[0, 1, 1, 0], [0, 0, 0, 0], [1, 0, 0, 0]])
    assert r.first(r.correct).tolist() == [2, 4, 1]
    assert r.first(r.correct, cap=2).tolist() == [2, 2, 1]
    with pytest.raises(ValueError, match="cap"):
        r.first(r.correct, cap=5)


def test_oracle_halts_at_the_first_right_answer_or_after_one_segment():
    r = rollout([[0, 1, 1, 0], [0, 0, 0, 0], [0, 0, 0, 1]])
    assert oracle_halts(r, 4).tolist() == [2, 1, 4]
    assert oracle_halts(r, 3).tolist() == [2, 1, 1]


def test_qhead_halts_where_the_cores_rule_first_fires():
    r = rollout([[0, 0, 0]], q_halt=[[-1.0, 0.5, 2.0]], q_continue=[[0.0, 1.0, 1.0]])
    assert r.qhead_halts().tolist() == [3] and r.qhead_halts(cap=2).tolist() == [2]


def test_the_trm_rule_is_q_halt_positive_through_the_one_rule():
    from hrm_rl.model import TRM

    from conftest import tiny_model_config

    model = TRM(tiny_model_config(kind="trm", mlp_t=True, pos_encodings="none"))
    out = model(model.initial_carry(6), torch.ones(6, 16, dtype=torch.long),
                torch.zeros(6, dtype=torch.long))
    assert torch.equal(model.halts(out), out.q_halt > 0)


def test_choices_maximise_val_reward():
    # right from segment 3 on: k=3 is best at a small cost, k=1 (nothing right) at a large one
    r = rollout([[0, 0, 1, 1]] * 10)
    assert choose_fixed(r, 0.01, 4) == 3
    assert choose_fixed(r, 0.5, 4) == 1
    conf = np.array([[0.3, 0.6, 0.96, 0.99]] * 10)
    r = rollout([[0, 0, 1, 1]] * 10, min_conf=conf)
    chosen = choose_threshold(r, 0.01, 4)
    assert chosen == 0.7  # the first of the tied thresholds 0.7-0.95, which all halt at 3
    assert threshold_halts(r, chosen, 4).tolist() == [3] * 10


def test_score_and_bootstrap_interval():
    r = rollout([[1, 1]] * 30 + [[0, 1]] * 10)
    s = score(r, np.full(40, 1), 0.1, "fixed:1")
    assert s.accuracy == pytest.approx(0.75)
    assert s.reward == pytest.approx(0.65)
    assert s.accuracy_ci[0] < 0.75 < s.accuracy_ci[1]
    lo, hi = bootstrap_ci(np.ones(50))
    assert lo == hi == 1.0


def test_difficulty_buckets_cover_all_values():
    assert difficulty_buckets(np.array([4, 5, 4, 5])) == [(4, 4), (5, 5)]
    values = np.arange(100)
    buckets = difficulty_buckets(values, max_buckets=4)
    covered = [v for v in values if any(lo <= v <= hi for lo, hi in buckets)]
    assert len(covered) == 100 and len(buckets) == 4


def test_evaluate_is_the_qhead_summary_of_a_rollout(tiny_model):
    from hrm_rl.tasks.sudoku import SudokuTask

    puzzles = random_puzzles(20)
    task = SudokuTask(4)
    roll = record_rollout(tiny_model, task, puzzles, 3, batch_size=7)
    res = evaluate(tiny_model, task, puzzles, 3, batch_size=20)
    assert res.exact_by_segment == pytest.approx(roll.correct.mean(0).tolist())
    assert res.cell_by_segment == pytest.approx(roll.cell.mean(0).tolist())
    assert res.mean_segments_qhalt == pytest.approx(roll.qhead_halts().mean())
    assert sum(res.segments_qhalt_histogram) == 20
    assert ((roll.min_confidence > 0) & (roll.min_confidence <= 1)).all()


def test_kept_answers_are_the_answers_where_the_core_halts():
    ckpt = load_checkpoint("sudoku4")
    puzzles = ckpt.test_puzzles().take(slice(0, 64))
    roll = record_rollout(ckpt.model, ckpt.task, puzzles, 4, batch_size=17, keep_answers=True)
    ok, cell = roll.at(roll.qhead_halts())
    answers, labels = torch.as_tensor(roll.answers, dtype=torch.long), torch.as_tensor(
        puzzles.labels, dtype=torch.long)
    np.testing.assert_array_equal(ckpt.task.is_correct(answers, labels).numpy(), ok)
    np.testing.assert_allclose(ckpt.task.cell_accuracy(answers, labels).numpy(), cell, atol=1e-6)
    assert 1 < roll.qhead_halts().mean() < 4  # rows halt at different segments
    assert record_rollout(ckpt.model, ckpt.task, puzzles, 2).answers is None
    assert evaluate(ckpt.model, ckpt.task, puzzles, 2).task_scores == {}  # sudoku: no own metric


def test_evaluate_reports_arcs_own_metric():
    from hrm_rl.tasks.arc import score as arc_score

    ckpt = load_checkpoint("arc-tiny")
    puzzles = ckpt.test_puzzles().take(slice(0, 48))
    res = evaluate(ckpt.model, ckpt.task, puzzles, 2, batch_size=16)
    roll = record_rollout(ckpt.model, ckpt.task, puzzles, 2, batch_size=16, keep_answers=True)
    halt_at = roll.qhead_halts()
    want = arc_score(ckpt.task, puzzles, roll.answers, roll.q_halt[np.arange(48), halt_at - 1])
    assert res.task_scores == {"pass@1": want.pass_at_1, "pass@2": want.pass_at_2}
    right = arc_score(ckpt.task, puzzles, puzzles.labels.astype(np.int64), np.zeros(48))
    assert right.pass_at_1 == 1.0 and want.n_tasks == right.n_tasks > 0


@pytest.mark.parametrize("name", sorted(bundled_checkpoints()))
def test_every_bundled_core_loads_with_its_card_and_splits(name):
    ckpt = load_checkpoint(name)  # strict: the config's shapes must fit the weights
    card = json.loads((ckpt.path / "card.json").read_text())
    assert {"config", "commands", "train_seconds", "summary"} <= set(card)
    assert card["commands"] and card["train_seconds"] > 0
    for split in ("train", "val"):
        assert (ckpt.path / f"halting_{split}.csv").is_file()
    assert (ckpt.path / "model.safetensors").stat().st_size < 10 * 2 ** 20
    expected = card.get("test")
    if expected:  # the README row, measured on the whole test set
        n = 50
        res = evaluate(ckpt.model, ckpt.task, ckpt.puzzles("test").take(slice(0, n)),
                       ckpt.config.train.max_segments)
        tol = 3 * np.sqrt(0.25 / n)  # three standard errors of a 50-puzzle mean
        assert abs(res.exact_acc_qhalt - expected["qhead_exact"]) <= tol
        assert abs(res.exact_by_segment[-1] - expected["exact_at_K"]) <= tol


@pytest.mark.slow
def test_core_report_matches_evaluate_on_sudoku4():
    report = core_report("sudoku4")
    ckpt = load_checkpoint("sudoku4")
    res = evaluate(ckpt.model, ckpt.task, ckpt.puzzles("test"), 8)
    assert report["qhead"]["accuracy"] == pytest.approx(res.exact_acc_qhalt)
    assert report["exact_by_segment"][:8] == pytest.approx(res.exact_by_segment)
    for row in report["costs"].values():
        by = {r["policy"].split(":")[0]: r["reward"] for r in row["rows"]}
        assert by["oracle"] >= max(by["qhead"], by["fixed"], by["threshold"])
        assert row["headroom"] == pytest.approx(by["oracle"] - max(by["qhead"], by["fixed"],
                                                                   by["threshold"]))
    assert "| sudoku4 |" in format_zoo([report]) and "givens" in format_difficulty([report])


@pytest.mark.slow
def test_cores_cli_prints_the_tables(capsys, monkeypatch, tmp_path):
    assert main(["cores", "arc-tiny", "--no-progress", "--plots", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "| arc-tiny |" in out and "headroom" in out and "split: test" in out
    assert (tmp_path / "difficulty-arc-tiny.png").is_file()
    with pytest.raises(SystemExit) as refused:  # a usage error naming the option
        main(["cores", "arc-tiny", "--step-costs", "2"])
    assert refused.value.code == 2 and "--step-costs" in capsys.readouterr().err
