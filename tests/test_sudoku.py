"""The Sudoku task: generator, solver, difficulty, augmentation, checks and CSV format."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from hrm_rl.config import DataConfig
from hrm_rl.tasks.sudoku import (SudokuTask, canonical_key, difficulty, generate,
                                 is_valid_solution, parse_grid, read_csv, solve,
                                 split_disjoint, write_csv, SudokuRecords)

RNG = np.random.default_rng(1234)
P4, S4, R4 = generate(200, 4, np.random.default_rng(0), max_givens=5)
P6, S6, R6 = generate(60, 6, np.random.default_rng(0))
P9, S9, R9 = generate(15, 9, np.random.default_rng(0), max_givens=25)
SETS = {4: (P4, S4), 6: (P6, S6), 9: (P9, S9)}


@pytest.mark.parametrize("size", [4, 6, 9])
def test_generated_puzzles_have_exactly_one_solution_and_it_is_the_given_one(size):
    puzzles, solutions = SETS[size]
    assert len({p.tobytes() for p in puzzles}) == len(puzzles)
    assert is_valid_solution(solutions, size).all()
    for p, s in zip(puzzles[:30], solutions[:30]):
        found = solve(p, size, limit=2)
        assert len(found) == 1 and np.array_equal(found[0], s)


@pytest.mark.parametrize("size", [4, 6, 9])
def test_generated_puzzles_are_minimal(size):
    puzzles, _ = SETS[size]
    for p in puzzles[:5]:
        for cell in np.flatnonzero(p):
            q = p.copy()
            q[cell] = 0
            assert len(solve(q, size, limit=2)) == 2


def test_givens_bounds_are_honoured():
    assert (P4 > 0).sum(1).max() <= 5 and (P9 > 0).sum(1).max() <= 25
    p, _, _ = generate(20, 6, np.random.default_rng(3), min_givens=14)
    assert (p > 0).sum(1).min() >= 14


def test_difficulty_knob_selects_harder_puzzles():
    easy = np.mean([difficulty(p, 9) for p in P9])
    hard, _, ratings = generate(5, 9, np.random.default_rng(5), max_givens=25, min_difficulty=3)
    assert ratings.min() >= 3 and [difficulty(p, 9) for p in hard] == ratings.tolist()
    assert ratings.mean() > easy


def test_difficulty_is_zero_for_a_singles_only_puzzle_and_more_givens_mean_easier():
    solution = S9[0]
    nearly_full = solution.copy()
    nearly_full[:10] = 0
    assert difficulty(nearly_full, 9) == 0


def test_impossible_request_is_an_error_not_a_hang():
    with pytest.raises(ValueError, match="too tight"):
        generate(5, 4, np.random.default_rng(0), max_givens=3)


@pytest.mark.parametrize("size", [4, 6, 9])
def test_augmentation_keeps_puzzles_valid_and_consistent(size):
    task = SudokuTask(size)
    puzzles, solutions = SETS[size]
    batch = task.encode(puzzles, solutions)
    aug = task.augment(batch, np.random.default_rng(7))
    p, s = task.decode(aug.inputs), task.decode(aug.labels)
    assert is_valid_solution(s, size).all()
    assert np.all((p == 0) | (p == s))
    assert np.array_equal((p > 0).sum(1), (puzzles > 0).sum(1))
    assert (aug.inputs != batch.inputs).any(axis=1).mean() > 0.9
    for q, t in zip(p[:10], s[:10]):
        found = solve(q, size, limit=2)
        assert len(found) == 1 and np.array_equal(found[0], t)


def test_transpose_only_for_square_boxes():
    task = SudokuTask(6)
    batch = task.encode(P6, S6)
    for seed in range(5):
        aug = task.decode(task.augment(batch, np.random.default_rng(seed)).labels)
        # 6x6 rows stay rows of 6 distinct digits inside 2x3 boxes: validity checks that.
        assert is_valid_solution(aug, 6).all()


@pytest.mark.parametrize("size", [4, 9])
def test_canonical_key_is_invariant_under_augmentation(size):
    if size == 9:
        with pytest.raises(ValueError, match="4x4 and 6x6"):
            canonical_key(P9[0], 9)
        return
    task = SudokuTask(size)
    batch = task.encode(P4[:20], S4[:20])
    aug = task.decode(task.augment(batch, np.random.default_rng(2)).inputs)
    for a, b in zip(P4[:20], aug):
        assert canonical_key(a, size) == canonical_key(b, size)


def test_orbit_split_shares_no_class():
    train, test = split_disjoint(P4, 50, np.random.default_rng(0), by="orbit")
    assert len(test) == 50 and len(set(train) & set(test)) == 0
    keys_train = {canonical_key(P4[i], 4) for i in train}
    assert not keys_train & {canonical_key(P4[i], 4) for i in test}


def test_generate_splits_encodes_tokens_like_hrm():
    task = SudokuTask(4)
    data = DataConfig(max_givens=5, split_by="exact")
    train, test = task.generate_splits(40, 10, data, np.random.default_rng(0))
    assert len(test) == 10 and len(train) == 40
    assert set(np.unique(train.inputs)) <= {1, 2, 3, 4, 5}
    assert set(np.unique(train.labels)) == {2, 3, 4, 5}
    assert task.vocab_size == 6 and task.seq_len == 16


@pytest.mark.parametrize("size", [4, 6, 9])
def test_violations_zero_on_solutions_and_count_repeats(size):
    task = SudokuTask(size)
    _, solutions = SETS[size]
    tokens = torch.from_numpy(task.encode(solutions, solutions).labels)
    assert torch.all(task.violations(tokens) == 0)
    broken = tokens.clone()
    broken[:, 0] = torch.where(broken[:, 0] == 2, 3, 2)   # one cell changed: row, column and
    assert torch.all(task.violations(broken) == 3)        # box each repeat a digit once
    broken[:, -1] = 1                                     # a blank (far cell) counts one
    assert torch.all(task.violations(broken) == 4)


def test_render_marks_wrong_cells():
    task = SudokuTask(4)
    batch = task.encode(P4[:1], S4[:1])
    pred = batch.labels[0].copy()
    blank = int(np.flatnonzero(P4[0] == 0)[0])
    pred[blank] = 2 if pred[blank] != 2 else 3
    text = task.render(batch.inputs[0], pred, batch.labels[0])
    assert text.count("!") == 1 and len(text.splitlines()) == 5


def test_csv_round_trip(tmp_path):
    records = SudokuRecords(P9, S9, R9.astype(float), ["gen"] * len(P9))
    write_csv(tmp_path / "s.csv", records)
    back = read_csv(tmp_path / "s.csv")
    assert np.array_equal(back.puzzles, P9) and np.array_equal(back.solutions, S9)
    assert np.array_equal(back.ratings, R9) and back.sources == ["gen"] * len(P9)


def test_csv_accepts_zero_blanks(tmp_path):
    q = "".join(str(d) for d in P4[0])
    a = "".join(str(d) for d in S4[0])
    (tmp_path / "z.csv").write_text(f"source,question,answer,rating\nx,{q},{a},0\n")
    back = read_csv(tmp_path / "z.csv")
    assert np.array_equal(back.puzzles[0], P4[0])


@pytest.mark.parametrize("row, message", [
    ("x,1234,1234,0", "4 characters"),
    ("x,1................,1234341221434321,0", "question has 17 characters"),
    ("x,1a..............,1234341221434321,0", "invalid character 'a' at position 1"),
    ("x,1...............,1234341221434312,0", "not a valid complete grid"),
    ("x,2...............,1234341221434321,0", "contradicts the question"),
    ("x,1...............,1234341221434321,hard", "not a number"),
])
def test_csv_errors_name_the_line(tmp_path, row, message):
    good = "x,1...............,1234341221434321,0"
    (tmp_path / "bad.csv").write_text(f"source,question,answer,rating\n{good}\n{row}\n")
    with pytest.raises(ValueError, match=message) as err:
        read_csv(tmp_path / "bad.csv")
    assert "bad.csv:3" in str(err.value)


def test_csv_without_header_is_rejected(tmp_path):
    (tmp_path / "h.csv").write_text("a,b,c\n")
    with pytest.raises(ValueError, match="header"):
        read_csv(tmp_path / "h.csv")


def test_parse_grid_errors():
    assert parse_grid("1.3.....2.......").tolist()[:3] == [1, 0, 3]
    with pytest.raises(ValueError, match="16, 36 or 81"):
        parse_grid("123")
    with pytest.raises(ValueError, match="invalid character '7'"):
        parse_grid("7" + "." * 15)


def test_unsupported_size():
    with pytest.raises(ValueError, match="supported sizes: 4, 6, 9"):
        SudokuTask(5)
