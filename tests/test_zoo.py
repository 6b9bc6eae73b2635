"""The halting zoo and the trainer's evaluation, both read off traces (``hrm_rl.trace``)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from hrm_rl.agents.zoo import (core_report, difficulty_buckets, difficulty_figure,
                               format_difficulty, format_zoo, trace_report)
from hrm_rl.checkpoint import bundled_checkpoints, file_sha256, load_checkpoint
from hrm_rl.cli import main
from hrm_rl.evaluation import evaluate
from hrm_rl.trace import (N_FEATURES, THRESHOLD_GRID, Trace, choose_on, halts, record_trace,
                          score)

from conftest import random_puzzles


def synthetic(correct, min_conf=None) -> Trace:
    """A trace with the given correctness (and min-confidence feature); no Q-head halts."""
    correct = np.asarray(correct, dtype=bool)
    n, k = correct.shape
    features = np.zeros((n, k, N_FEATURES), np.float32)
    if min_conf is not None:
        features[:, :, 4] = min_conf
    zeros = np.zeros((n, k), np.float32)
    return Trace(features, correct, correct.astype(np.float32), zeros, zeros)


def test_the_trm_rule_is_q_halt_positive_through_the_one_rule():
    from hrm_rl.model import TRM

    from conftest import tiny_model_config

    model = TRM(tiny_model_config(kind="trm", mlp_t=True, pos_encodings="none"))
    out = model(model.initial_carry(6), torch.ones(6, 16, dtype=torch.long),
                torch.zeros(6, dtype=torch.long))
    assert torch.equal(model.halts(out), out.q_halt > 0)


def test_the_zoos_choices_maximise_val_reward_first_of_the_grid_on_ties():
    # right from segment 3 on: k=3 is best at a small cost, k=1 (nothing right) at a large one
    r = synthetic([[0, 0, 1, 1]] * 10)
    assert choose_on(r, "fixed", 0.01, 4) == 3
    assert choose_on(r, "fixed", 0.5, 4) == 1
    conf = np.array([[0.3, 0.6, 0.96, 0.99]] * 10)
    r = synthetic([[0, 0, 1, 1]] * 10, min_conf=conf)
    chosen = choose_on(r, "threshold", 0.01, 4)
    assert chosen == 0.7 == THRESHOLD_GRID[2]  # the first of the tied 0.7-0.95 (all halt at 3)
    assert halts(r, "threshold", chosen, 4).tolist() == [3] * 10


def test_trace_report_buckets_difficulty_and_qhead_thinking_time():
    ckpt = load_checkpoint("sudoku4")
    puzzles = ckpt.test_puzzles().take(slice(0, 64))
    trace = record_trace(ckpt.model, ckpt.task, puzzles, 4, keep_pred=False, batch_size=32)
    report = trace_report(trace, ckpt.task, cap=3)
    assert report["exact_by_segment"] == pytest.approx(trace.correct.mean(0).tolist())
    assert len(report["exact_by_segment_ci"]) == 4 and report["max_segments"] == 3
    givens = ckpt.task.difficulty(puzzles)
    assert sum(b["n"] for b in report["difficulty"]) == 64
    halt_at = trace.qhead_halts(3)
    for b in report["difficulty"]:
        rows = (givens >= b["range"][0]) & (givens <= b["range"][1])
        assert b["qhead_mean_segments"] == pytest.approx(halt_at[rows].mean())
        assert b["exact_at_K"] == pytest.approx(trace.correct[rows, 2].mean())
    # rows taken out of order are matched to their own puzzles through the trace's keys
    shuffled = trace.take(np.arange(63, -1, -1))
    again = trace_report(shuffled, ckpt.task, cap=3)
    assert again["difficulty"] == report["difficulty"]
    import matplotlib.pyplot as plt

    plt.close(difficulty_figure({"core": "sudoku4", "test_split": "test", "n_test": 64,
                                 **report}))


def test_difficulty_buckets_cover_all_values():
    assert difficulty_buckets(np.array([4, 5, 4, 5])) == [(4, 4), (5, 5)]
    values = np.arange(100)
    buckets = difficulty_buckets(values, max_buckets=4)
    covered = [v for v in values if any(lo <= v <= hi for lo, hi in buckets)]
    assert len(covered) == 100 and len(buckets) == 4


def test_evaluate_is_the_qhead_summary_of_a_trace(tiny_model):
    from hrm_rl.tasks.sudoku import SudokuTask

    puzzles = random_puzzles(20)
    task = SudokuTask(4)
    trace = record_trace(tiny_model, task, puzzles, 3, batch_size=7)
    res = evaluate(tiny_model, task, puzzles, 3, batch_size=20)
    assert res.exact_by_segment == pytest.approx(trace.correct.mean(0).tolist())
    assert res.cell_by_segment == pytest.approx(trace.cell.mean(0).tolist())
    qhead = score(trace, trace.qhead_halts(), 0.0)
    assert res.mean_segments_qhalt == pytest.approx(qhead.mean_segments)
    assert res.exact_acc_qhalt == pytest.approx(qhead.accuracy)
    assert res.cell_acc_qhalt == pytest.approx(qhead.cell_accuracy)
    assert res.segments_qhalt_histogram == np.bincount(trace.qhead_halts() - 1,
                                                       minlength=3).tolist()


def test_evaluate_scores_the_answers_where_the_core_halts(monkeypatch):
    ckpt = load_checkpoint("sudoku4")
    puzzles = ckpt.test_puzzles().take(slice(0, 64))
    trace = record_trace(ckpt.model, ckpt.task, puzzles, 4, batch_size=17)
    halt_at = trace.qhead_halts()
    assert 1 < halt_at.mean() < 4  # rows halt at different segments
    seen = {}

    def fake_score(batch, answers, q_halt):  # what evaluate hands a scored task
        seen["answers"], seen["q_halt"] = np.asarray(answers), np.asarray(q_halt)
        return {"metric": 1.0}

    monkeypatch.setattr(ckpt.task, "scored", True)
    monkeypatch.setattr(ckpt.task, "score", fake_score)
    assert evaluate(ckpt.model, ckpt.task, puzzles, 4, batch_size=17).task_scores == {
        "metric": 1.0}
    rows = np.arange(64)
    np.testing.assert_array_equal(seen["answers"], trace.pred[rows, halt_at - 1])
    np.testing.assert_array_equal(seen["q_halt"], trace.q_halt[rows, halt_at - 1])
    with pytest.raises(ValueError, match="kept no predictions"):
        record_trace(ckpt.model, ckpt.task, puzzles.take(slice(0, 4)), 2,
                     keep_pred=False).answers(np.ones(4, np.int64))
    answers = torch.as_tensor(seen["answers"], dtype=torch.long)
    ok, _ = trace.at(halt_at)
    np.testing.assert_array_equal(ckpt.task.is_correct(
        answers, torch.as_tensor(puzzles.labels, dtype=torch.long)).numpy(), ok)
    monkeypatch.undo()
    assert evaluate(ckpt.model, ckpt.task, puzzles, 2).task_scores == {}  # sudoku: no own metric


def test_evaluate_reports_arcs_own_metric():
    from hrm_rl.tasks.arc import score as arc_score

    ckpt = load_checkpoint("arc-tiny")
    puzzles = ckpt.test_puzzles().take(slice(0, 48))
    res = evaluate(ckpt.model, ckpt.task, puzzles, 2, batch_size=16)
    trace = record_trace(ckpt.model, ckpt.task, puzzles, 2, batch_size=16)
    halt_at = trace.qhead_halts()
    rows = np.arange(48)
    want = arc_score(ckpt.task, puzzles, trace.pred[rows, halt_at - 1],
                     trace.q_halt[rows, halt_at - 1])
    assert res.task_scores == {"pass@1": want.pass_at_1, "pass@2": want.pass_at_2}
    right = arc_score(ckpt.task, puzzles, puzzles.labels.astype(np.int64), np.zeros(48))
    assert right.pass_at_1 == 1.0 and want.n_tasks == right.n_tasks > 0


@pytest.mark.parametrize("name", sorted(bundled_checkpoints()))
def test_every_bundled_core_loads_with_its_card_and_splits(name):
    ckpt = load_checkpoint(name)  # strict: the config's shapes must fit the weights
    card = json.loads((ckpt.path / "card.json").read_text())
    assert {"config", "commands", "train_seconds", "summary"} <= set(card)
    assert card["commands"] and card["train_seconds"] > 0
    # provenance without the lab's files: the recipe it names exists, the config chain
    # starts from scratch and links each stage to the one before, the weights are these
    assert (Path(__file__).resolve().parents[1] / card["config"]).is_file(), card["config"]
    chain = card["config_chain"]
    assert chain[0]["init_from"] is None and chain[0]["changes"]["task"]
    assert [s["extends"] for s in chain[1:]] == [s["name"] for s in chain[:-1]]
    stages = card.get("stages", [{"checkpoint": None}])  # one stage: no list
    assert len(chain) == len(stages)
    assert [s["init_from"] for s in chain[1:]] == [s["checkpoint"] for s in stages[:-1]]
    assert card["weights_sha256"] == ckpt.meta["weights_sha256"] == file_sha256(
        ckpt.path / "model.safetensors")
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
def test_arc_rearc_card_official_figures_are_what_eval_gives():
    """The card's official ARC figures, voted over the core's test-time views (views.json)
    and without them, are what evaluating the official split gives now (158 pairs)."""
    ckpt = load_checkpoint("arc-rearc")
    card = json.loads((ckpt.path / "card.json").read_text())["test"]["official"]
    cap = ckpt.config.train.max_segments
    views = dict(ckpt.task.test_views)
    assert views and card["rows"] == len(ckpt.puzzles("official"))
    voted = evaluate(ckpt.model, ckpt.task, ckpt.puzzles("official"), cap).task_scores
    ckpt.task.test_views = {}
    plain = evaluate(ckpt.model, ckpt.task, ckpt.puzzles("official"), cap).task_scores
    ckpt.task.test_views = views
    assert card["n"] == len(ckpt.puzzles("official")) - sum(
        (len(p.train) + len(p.test)) * (len(views.get(p.name, [0])) - 1)
        for p in ckpt.task.puzzles)
    # one pair or one task either way: another CPU's fp32 rounding may flip a close vote
    for key, one in (("pass@1", 1 / 32), ("pass@2", 1 / 32), ("pairs pass@1", 1 / card["n"]),
                     ("pairs pass@2", 1 / card["n"])):
        assert abs(voted[key] - card[key]) <= one + 1e-9, key
        assert abs(plain[key] - card["without views"][key]) <= one + 1e-9, key


@pytest.mark.slow
def test_core_report_matches_evaluate_on_sudoku4():
    report = core_report("sudoku4")
    ckpt = load_checkpoint("sudoku4")
    res = evaluate(ckpt.model, ckpt.task, ckpt.puzzles("test"), 8)
    assert report["qhead"]["accuracy"] == pytest.approx(res.exact_acc_qhalt)
    assert report["exact_by_segment"][:8] == pytest.approx(res.exact_by_segment)
    for c, row in report["costs"].items():
        assert row["chosen_on_val"]["threshold"] in THRESHOLD_GRID
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
