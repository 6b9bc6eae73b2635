"""Halting splits: train and val disjoint from test up to symmetry, reproducible, by task
for ARC; the maze difficulty mix; the outside-set builders."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from hrm_rl.checkpoint import load_checkpoint
from hrm_rl.config import DataConfig
from hrm_rl.tasks import base
from hrm_rl.tasks.maze import WALL, MazeTask, generate, shortest_path_lengths
from hrm_rl.tasks.sudoku import SudokuTask, solve

from conftest import load_script


@pytest.mark.parametrize("core", ["sudoku4", "maze6"])
def test_shipped_splits_are_disjoint_up_to_symmetry(core):
    ckpt = load_checkpoint(core)
    keys = {s: set(ckpt.task.symmetry_keys(ckpt.puzzles(s).inputs))
            for s in ("train", "val", "test")}
    assert not keys["train"] & keys["test"]
    assert not keys["val"] & keys["test"]
    assert not keys["train"] & keys["val"]
    assert len(ckpt.puzzles("train")) == base.HALTING_SPLIT_SIZES["train"]
    assert len(ckpt.puzzles("val")) == base.HALTING_SPLIT_SIZES["val"]


@pytest.mark.slow
@pytest.mark.parametrize("core", ["sudoku4", "maze6"])
def test_shipped_splits_are_what_the_generator_gives(core, monkeypatch):
    """The CSVs beside the weights are the generated splits (so a run folder, which has no
    CSVs, gets the same puzzles): checked on smaller sizes, whose draws are a prefix."""
    ckpt = load_checkpoint(core)
    test = ckpt.puzzles("test")
    shipped = ckpt.puzzles("val")
    monkeypatch.setitem(base.HALTING_SPLIT_SIZES, "val", 1000)
    made = ckpt.task.halting_split("val", ckpt.config.data, test)
    np.testing.assert_array_equal(made.inputs, shipped.inputs)
    np.testing.assert_array_equal(made.labels, shipped.labels)


def test_generated_split_excludes_symmetries_of_test(monkeypatch):
    """A test set holding rotations of generated mazes: none of them reaches train."""
    monkeypatch.setitem(base.HALTING_SPLIT_SIZES, "train", 200)
    monkeypatch.setitem(base.HALTING_SPLIT_SIZES, "val", 40)
    task, data = MazeTask(6), DataConfig(min_difficulty=8)
    first = task.halting_split("train", data, task.sample(10, data, np.random.default_rng(5)))
    rotated = np.rot90(first.inputs[:50].reshape(-1, 6, 6), axes=(1, 2)).reshape(50, -1)
    test = base.PuzzleBatch(rotated, rotated, np.zeros(50, dtype=np.int64))
    train = task.halting_split("train", data, test)
    val = task.halting_split("val", data, test)
    banned = set(task.symmetry_keys(rotated))
    assert not banned & set(task.symmetry_keys(train.inputs))
    assert not banned & set(task.symmetry_keys(val.inputs))
    assert not set(task.symmetry_keys(train.inputs)) & set(task.symmetry_keys(val.inputs))
    assert len({row.tobytes() for row in train.inputs}) == len(train) == 200


def test_arc_splits_by_task():
    ckpt = load_checkpoint("arc-tiny")
    task = ckpt.task
    train, val, test = (ckpt.puzzles(s) for s in ("train", "val", "test"))
    owner = task.variants.task
    tasks = {name: set(owner[b.puzzle_ids].tolist()) for name, b in
             (("train", train), ("val", val), ("test", test))}
    assert tasks["train"] and tasks["val"]
    assert not tasks["train"] & tasks["val"]
    assert not (tasks["train"] | tasks["val"]) & tasks["test"]
    assert {task.puzzles[t].split for t in tasks["train"] | tasks["val"]} == {"training"}


def test_unknown_split_is_refused():
    ckpt = load_checkpoint("sudoku4")
    with pytest.raises(ValueError, match="split must be one of"):
        ckpt.puzzles("validation")


def test_maze_mix_spreads_lengths_and_borders():
    q, a, lengths = generate(2000, 9, np.random.default_rng(0), min_path=6, layout="mix")
    assert lengths.min() >= 6 and (shortest_path_lengths(q, 9) == lengths).all()
    assert ((a == 5).sum(1) + 1 == lengths).all()  # the traced path is a shortest one
    grids = q.reshape(-1, 9, 9)
    walled = (grids[:, 0] == WALL).all(1) & (grids[:, -1] == WALL).all(1) & \
        (grids[:, :, 0] == WALL).all(1) & (grids[:, :, -1] == WALL).all(1)
    assert 0.4 < walled.mean() < 0.6
    short, long_ = (lengths <= 10).mean(), (lengths >= 18).mean()
    assert short > 0.3 and long_ > 0.07
    hard = generate(500, 9, np.random.default_rng(0), min_path=6)[2]
    assert np.median(hard) > np.median(lengths)  # "hard" keeps the longest paths
    with pytest.raises(ValueError, match="layout"):
        generate(5, 9, np.random.default_rng(0), layout="spiral")


def test_hard_layout_stream_is_unchanged_by_the_mix():
    """The bundled maze6 core's test set regenerates exactly from its config."""
    ckpt = load_checkpoint("maze6")
    data = ckpt.config.data
    _, test = ckpt.task.generate_splits(data.train_size, data.test_size, data,
                                        np.random.default_rng(data.seed))
    np.testing.assert_array_equal(test.inputs, ckpt.puzzles("test").inputs)


def _outside_module():
    return load_script("outside_sets")


def test_outside_sets_are_valid_and_in_range(tmp_path):
    outside = _outside_module()
    rng = np.random.default_rng(1)
    sudoku, maze = outside.sudoku6_set(12, rng), outside.maze9_set(40, rng)
    SudokuTask(6).write_csv(tmp_path / "s.csv", sudoku)
    MazeTask(9).write_csv(tmp_path / "m.csv", maze)
    back = SudokuTask(6).read_csv(tmp_path / "s.csv")
    digits = back.inputs - 1
    for puzzle in digits:
        assert len(solve(puzzle, 6, limit=2)) == 1
        assert (puzzle > 0).tolist() == (puzzle[::-1] > 0).tolist()  # 180-degree symmetric
    mazes = MazeTask(9).read_csv(tmp_path / "m.csv")  # checks shortest paths
    lengths = shortest_path_lengths(mazes.inputs, 9)
    assert lengths.min() >= 10 and lengths.max() <= 21
    grids = mazes.inputs.reshape(-1, 9, 9)
    assert (grids[:, 0] == WALL).all() and (grids[:, :, -1] == WALL).all()


def _write_config(path: Path, task: str, cache: Path) -> Path:
    path.write_text(f"task: {task}\ndata: {{train_size: 300, test_size: 30, "
                    f"min_difficulty: 4, split_by: orbit, cache_dir: '{cache}'}}\n")
    return path


def test_holdout_drops_what_a_run_trained_on_up_to_symmetry(tmp_path, capsys):
    """``hrm-rl holdout``: of training puzzles (some rotated) and test puzzles, only the test
    puzzles are kept; it refuses to overwrite and to mix tasks."""
    from hrm_rl.cli import main
    from hrm_rl.config import load_config
    from hrm_rl.tasks.splits import build_splits

    config = _write_config(tmp_path / "run.yaml", "{name: maze, size: 6}", tmp_path / "cache")
    task = MazeTask(6)
    train, test = build_splits(task, load_config(config).data)
    rotated = np.rot90(train.inputs[:5].reshape(-1, 6, 6), axes=(1, 2)).reshape(5, -1)
    rotated_labels = np.rot90(train.labels[:5].reshape(-1, 6, 6), axes=(1, 2)).reshape(5, -1)
    mixed = base.PuzzleBatch.concat([
        test.take(slice(0, 10)), train.take(slice(5, 10)),
        base.PuzzleBatch(rotated, rotated_labels, np.zeros(5, dtype=np.int64))])
    task.write_csv(tmp_path / "mixed.csv", mixed)
    out = tmp_path / "clean.csv"
    argv = ["holdout", "--data", str(tmp_path / "mixed.csv"), "--trained-on", str(config),
            "--out", str(out), "--no-progress"]
    assert main(argv) == 0
    report = capsys.readouterr().out
    assert '"in_training_set": 10' in report and '"kept": 10' in report
    np.testing.assert_array_equal(task.read_csv(out).inputs, test.inputs[:10])
    assert main(argv) == 2  # --out exists: nothing overwritten
    assert "exists" in capsys.readouterr().err
    other = _write_config(tmp_path / "sudoku.yaml", "{name: sudoku, size: 4}", tmp_path / "c")
    assert main(argv[:-3] + ["--trained-on", str(other), "--out", str(tmp_path / "x.csv")]) == 2
    assert "one task" in capsys.readouterr().err
    assert not (tmp_path / "x.csv").exists()
    # a CSV all of whose puzzles the run trained on: refused, nothing written
    task.write_csv(tmp_path / "seen.csv", base.PuzzleBatch.concat([
        train.take(slice(0, 3)), base.PuzzleBatch(rotated, rotated_labels,
                                                  np.zeros(5, dtype=np.int64))]))
    seen = ["holdout", "--data", str(tmp_path / "seen.csv"), "--trained-on", str(config),
            "--out", str(tmp_path / "empty.csv"), "--no-progress"]
    assert main(seen) == 2
    err = capsys.readouterr().err
    assert "none of the 8 puzzles of" in err and "nothing was written" in err
    assert not (tmp_path / "empty.csv").exists()


def test_holdout_is_a_function_that_takes_files_or_configs(tmp_path):
    """``hrm_rl.holdout.holdout``: what the command does, for a Python user; a ``RunConfig``
    is taken as it is (``cache_dir`` overrides its cache without changing it)."""
    from hrm_rl.config import load_config
    from hrm_rl.holdout import holdout
    from hrm_rl.tasks.splits import build_splits

    path = _write_config(tmp_path / "run.yaml", "{name: maze, size: 6}", tmp_path / "cache")
    config = load_config(path)
    task = MazeTask(6)
    train, test = build_splits(task, config.data)
    task.write_csv(tmp_path / "mixed.csv", base.PuzzleBatch.concat([test.take(slice(0, 4)),
                                                                   train.take(slice(0, 3))]))
    by_file = holdout(tmp_path / "mixed.csv", [path])
    by_config = holdout(tmp_path / "mixed.csv", [config], cache_dir=tmp_path / "other")
    assert config.data.cache_dir == str(tmp_path / "cache")  # the caller's config untouched
    for result in (by_file, by_config):
        np.testing.assert_array_equal(result.kept.inputs, test.inputs[:4])
        assert result.to_dict()["n"] == 7 and result.trained_on[0]["in_training_set"] == 3
    assert by_config.trained_on[0]["source"] == config.name
    written = by_file.write_csv(tmp_path / "out" / "clean.csv")
    np.testing.assert_array_equal(task.read_csv(written).inputs, test.inputs[:4])


def test_holdout_on_a_full_disk_leaves_no_torn_file_and_names_it(tmp_path, capsys,
                                                                 monkeypatch):
    import errno

    from hrm_rl.cli import main
    from hrm_rl.config import load_config
    from hrm_rl.tasks.splits import build_splits

    config = _write_config(tmp_path / "run.yaml", "{name: maze, size: 6}", tmp_path / "cache")
    task = MazeTask(6)
    _, test = build_splits(task, load_config(config).data)
    task.write_csv(tmp_path / "data.csv", test.take(slice(0, 10)))
    real = MazeTask.write_csv

    def full_disk(self, path, batch):  # half the rows land, then the disk is full
        real(self, path, batch.take(slice(0, 5)))
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(MazeTask, "write_csv", full_disk)
    out = tmp_path / "clean.csv"
    argv = ["holdout", "--data", str(tmp_path / "data.csv"), "--trained-on", str(config),
            "--out", str(out), "--no-progress"]
    assert main(argv) == 2
    assert f"No space left on device while writing: {out}" in capsys.readouterr().err
    assert not out.exists() and not list(tmp_path.glob(".clean.csv.*"))
    monkeypatch.setattr(MazeTask, "write_csv", real)
    assert main(argv) == 0 and len(task.read_csv(out)) == 10  # a rerun is not refused
