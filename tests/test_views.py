"""Test-time views of ARC cores: showing a pair rotated or recoloured under its task's
identifier, undoing the view before scoring, and choosing each task's views off the test."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

from hrm_rl.checkpoint import load_checkpoint
from hrm_rl.evaluation import evaluate
from hrm_rl.tasks.arc import score
from hrm_rl.tasks.arc.variants import TEST_VIEW_COLORS, TEST_VIEW_DIHEDRAL
from hrm_rl.tasks.base import PuzzleBatch
from hrm_rl.views import VIEWS_FILE, choose_views, keep_views, read_views, write_views

N_VIEWS = len(TEST_VIEW_DIHEDRAL)


@pytest.fixture(scope="module")
def ckpt():
    return load_checkpoint("arc-rearc")


def _few(ckpt, split: str, tasks: int, per_task: int) -> PuzzleBatch:
    """``per_task`` pairs of each of the first ``tasks`` tasks in ``split``."""
    batch = ckpt.puzzles(split)
    task_of = ckpt.task.variants.task[batch.puzzle_ids]
    rows = np.concatenate([np.nonzero(task_of == t)[0][:per_task] for t in range(tasks)])
    return batch.take(rows)


def test_view_table_is_distinct_transforms_keeping_black():
    assert TEST_VIEW_COLORS.shape == (N_VIEWS, 10) and (TEST_VIEW_COLORS[:, 0] == 0).all()
    assert all(sorted(c) == list(range(10)) for c in TEST_VIEW_COLORS.tolist())
    pairs = {(int(d), tuple(c)) for d, c in zip(TEST_VIEW_DIHEDRAL, TEST_VIEW_COLORS.tolist())}
    assert len(pairs) == N_VIEWS and (0, tuple(range(10))) == (int(TEST_VIEW_DIHEDRAL[0]),
                                                               tuple(TEST_VIEW_COLORS[0]))


def test_views_are_undone_before_scoring(ckpt):
    task = ckpt.task
    batch = _few(ckpt, "val", 3, 4)
    every = {p.name: list(range(N_VIEWS)) for p in task.puzzles}
    shown = task.with_views(batch, every)
    assert len(shown) == N_VIEWS * len(batch)
    assert shown.views.tolist() == np.repeat(np.arange(N_VIEWS), len(batch)).tolist()
    assert (shown.puzzle_ids == np.tile(batch.puzzle_ids, N_VIEWS)).all()
    # the views show different grids, and canonical() brings every one back
    assert len({shown.inputs[v * len(batch)].tobytes() for v in range(N_VIEWS)}) > 1
    for name in ("inputs", "labels"):
        want = [g.tolist() for g in task.canonical(getattr(batch, name), batch.puzzle_ids)]
        got = [g.tolist() for g in task.canonical(getattr(shown, name), shown.puzzle_ids,
                                                  shown.views)]
        assert got == want * N_VIEWS
    # a view's label is its input's answer seen through the same view
    first = shown.take(np.arange(len(batch), 2 * len(batch)))    # view 1 (a column flip)
    assert [g.tolist() for g in task.canonical(first.labels, first.puzzle_ids)] == [
        g[:, ::-1].tolist() for g in task.canonical(batch.labels, batch.puzzle_ids)]
    # views of tasks the batch does not hold add no rows; an empty batch stays empty
    other = {task.puzzles[-1].name: [5]}
    assert len(task.with_views(batch, other)) == len(batch)
    assert len(task.with_views(batch.take(slice(0, 0)), every)) == 0
    with pytest.raises(ValueError, match="already has views"):
        task.with_views(shown)
    with pytest.raises(ValueError, match="tasks it does not have"):
        task.with_views(batch, {"nope": [1]})
    with pytest.raises(ValueError, match="not in 0..11"):
        task.with_views(batch, {task.puzzles[0].name: [12]})


def test_votes_over_views_pick_the_majority_answer(ckpt):
    task = ckpt.task
    batch = _few(ckpt, "val", 1, 1)
    name = task.puzzles[0].name
    shown = task.with_views(batch, {name: [0, 1, 2]})
    wrong = shown.labels.astype(np.int64).copy()
    inside = wrong[0] >= 2
    wrong[0][inside] = 2 + (wrong[0][inside] - 1) % 10          # another colour everywhere
    preds = np.where(np.arange(3)[:, None] == 0, wrong, shown.labels.astype(np.int64))
    q = np.array([5.0, 0.0, 0.0])               # as drawn is most confident, but outvoted
    voted = score(task, shown, preds, q)
    assert voted.inputs_pass_at_1 == 1.0 and voted.pass_at_1 == 1.0
    alone = score(task, shown.take(np.array([0])), preds[:1], q[:1])
    assert alone.inputs_pass_at_1 == 0.0
    # one right view against a wrong one: the tie goes to the higher q_halt; pass@2 has both
    tie = score(task, shown.take(np.array([0, 1])), preds[:2], q[:2])
    assert (tie.inputs_pass_at_1, tie.inputs_pass_at_2) == (0.0, 1.0)


def test_keep_views_rule():
    acc = {"a": [0.8, 0.8, 0.76, 0.5, 0.0], "b": [0.0, 0.0, 0.1, 0.0, 0.0]}
    assert keep_views(acc, 1.0) == {"a": [0, 1], "b": [0, 2]}
    assert keep_views(acc, 0.95) == {"a": [0, 1, 2], "b": [0, 2]}
    with pytest.raises(ValueError, match="threshold"):
        keep_views(acc, 0.0)


def test_choose_views_measures_each_view_and_picks_on_val(ckpt):
    select, val = _few(ckpt, "train", 3, 8), _few(ckpt, "val", 3, 6)
    choice = choose_views(ckpt.model, ckpt.task, select, val, 4, thresholds=(1.0, 0.5))
    names = [p.name for p in ckpt.task.puzzles[:3]]
    assert sorted(choice.accuracy) == sorted(names) and choice.pairs == dict.fromkeys(names, 8)
    assert choice.threshold in (None, 1.0, 0.5)
    assert choice.chosen == ({name: [0] for name in names} if choice.threshold is None
                             else keep_views(choice.accuracy, choice.threshold))
    # view 0's accuracy is the core's own exact accuracy on those pairs, task by task
    for t, name in enumerate(names):
        rows = np.nonzero(ckpt.task.variants.task[select.puzzle_ids] == t)[0]
        res = evaluate(ckpt.model, ckpt.task, select.take(rows), 4)
        assert choice.accuracy[name][0] == pytest.approx(res.exact_acc_qhalt)
    with pytest.raises(ValueError, match="needs pairs in both splits"):
        choose_views(ckpt.model, ckpt.task, select, val.take(slice(0, 0)), 4)
    assert set(choice.val) == {"none", "1.0", "0.5"}
    assert choice.val["none"]["mean views"] == 1.0
    best = choice.val["none" if choice.threshold is None else str(choice.threshold)]
    assert best["pairs pass@2"] == max(v["pairs pass@2"] for v in choice.val.values())
    # views are kept only where they beat view 0 alone on val (a tie keeps none)
    if choice.threshold is not None:
        assert (best["pairs pass@2"], best["pairs pass@1"]) > (
            choice.val["none"]["pairs pass@2"], choice.val["none"]["pairs pass@1"])


def test_written_views_reach_the_official_split_and_eval(ckpt, tmp_path, capsys):
    from hrm_rl.cli import main

    folder = tmp_path / "core"
    shutil.copytree(ckpt.path, folder)
    (folder / VIEWS_FILE).unlink(missing_ok=True)
    plain = load_checkpoint(folder)
    n_official = len(plain.puzzles("official"))
    first = plain.task.puzzles[0]
    choice = choose_views(plain.model, plain.task, _few(plain, "train", 1, 2),
                          _few(plain, "val", 1, 2), 2, thresholds=(1.0,))
    choice.chosen = {first.name: [0, 4, 9]}
    write_views(folder, choice)
    assert read_views(folder) == {first.name: [0, 4, 9]}
    viewed = load_checkpoint(folder)
    assert viewed.task.test_views == {first.name: [0, 4, 9]}
    official = viewed.puzzles("official")
    assert len(official) == n_official + 2 * (len(first.train) + len(first.test))
    assert sorted(set(official.views.tolist())) == [0, 4, 9]
    assert len(viewed.task.official_pairs(augment=False)) == n_official
    assert main(["eval", str(folder), "--data", "official", "--max-segments", "1",
                 "--no-progress"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["n"] == len(official)
    assert main(["eval", str(folder), "--data", "official", "--max-segments", "1",
                 "--no-views", "--no-progress"]) == 0
    assert json.loads(capsys.readouterr().out)["n"] == n_official
    # a file that is not a views record, or names another core's tasks, is refused
    (folder / VIEWS_FILE).write_text("[1, 2]")
    with pytest.raises(ValueError, match="not a views record"):
        load_checkpoint(folder)
    (folder / VIEWS_FILE).write_text(json.dumps({"chosen": {"zzz": [0, 1]}}))
    with pytest.raises(ValueError, match="tasks it does not have"):
        load_checkpoint(folder)


def test_views_cli_writes_the_choice(ckpt, tmp_path, capsys):
    from hrm_rl.cli import main

    folder = tmp_path / "core"
    shutil.copytree(ckpt.path, folder)
    (folder / VIEWS_FILE).unlink(missing_ok=True)
    assert main(["views", str(folder), "--limit", "12", "--thresholds", "1,0.9",
                 "--no-progress", "--write"]) == 0
    out = capsys.readouterr().out
    assert "<- chosen" in out and f"wrote {folder / VIEWS_FILE}" in out
    record = json.loads((folder / VIEWS_FILE).read_text())
    assert record["threshold"] in (None, 1.0, 0.9) and record["select_split"] == "train"
    assert set(record["val"]) == {"none", "1.0", "0.9"}
    assert load_checkpoint(folder).task.test_views == read_views(folder)
    assert main(["views", "sudoku4", "--limit", "4", "--no-progress"]) != 0
    assert "task sudoku4 has no test-time views" in capsys.readouterr().err


def test_puzzle_batches_carry_views():
    a = PuzzleBatch(np.zeros((2, 4), np.uint8), np.zeros((2, 4), np.int8), np.ones(2, np.int64),
                    views=np.array([3, 5]))
    b = PuzzleBatch(np.zeros((1, 4), np.uint8), np.zeros((1, 4), np.int8), np.ones(1, np.int64))
    assert a.take(np.array([1])).views.tolist() == [5]
    assert PuzzleBatch.concat([a, b]).views.tolist() == [3, 5, 0]
    assert PuzzleBatch.concat([b, b]).views is None
    with pytest.raises(ValueError, match="views must be"):
        PuzzleBatch(a.inputs, a.labels, a.puzzle_ids, views=np.zeros(3, np.int64))
