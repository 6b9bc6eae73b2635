"""The Maze task: generator, CSV format, answer checks, symmetry and rendering."""

from __future__ import annotations

from collections import deque

import numpy as np
import pytest
import torch

from hrm_rl.config import DataConfig, TaskConfig, load_config
from hrm_rl.tasks import make_task
from hrm_rl.tasks.maze import (CHARSET, GOAL, OPEN, PATH, START, WALL, MazeRecords, MazeTask,
                               canonical_keys, default_min_path, distance_maps,
                               generate, read_csv, write_csv)
from hrm_rl.tasks.maze.bfs import _trace_paths

Q9, A9, L9 = generate(60, 9, np.random.default_rng(0), min_path=16)
Q15, A15, L15 = generate(10, 15, np.random.default_rng(1))          # default min_path (48)
TASK9 = MazeTask(9)


def reference_distances(question: np.ndarray, size: int) -> dict[tuple[int, int], int]:
    """Plain-Python BFS from S: steps to every reachable cell. Independent of maze.py."""
    grid = question.reshape(size, size)
    start = tuple(np.argwhere(grid == START)[0])
    dist = {start: 0}
    queue = deque([start])
    while queue:
        r, c = queue.popleft()
        for nr, nc in ((r - 1, c), (r + 1, c), (r, c - 1), (r, c + 1)):
            if 0 <= nr < size and 0 <= nc < size and grid[nr, nc] != WALL and (nr, nc) not in dist:
                dist[(nr, nc)] = dist[(r, c)] + 1
                queue.append((nr, nc))
    return dist


def reference_bfs(question: np.ndarray, size: int) -> int:
    """Plain-Python BFS: steps from S to G (-1 when unreachable)."""
    goal = tuple(np.argwhere(question.reshape(size, size) == GOAL)[0])
    return reference_distances(question, size).get(goal, -1)


def walk_path(answer: np.ndarray, size: int) -> int:
    """Follow the ``o`` cells from S; returns the steps to G (asserts the path is simple)."""
    grid = answer.reshape(size, size)
    cur, prev, steps = tuple(np.argwhere(grid == START)[0]), None, 0
    while grid[cur] != GOAL:
        r, c = cur
        nxt = [(nr, nc) for nr, nc in ((r - 1, c), (r + 1, c), (r, c - 1), (r, c + 1))
               if 0 <= nr < size and 0 <= nc < size and grid[nr, nc] in (PATH, GOAL)
               and (nr, nc) != prev]
        assert len(nxt) == 1, f"path branches or stops at {cur}"
        prev, cur, steps = cur, nxt[0], steps + 1
    return steps


def grid(text: str) -> np.ndarray:
    """A hand-drawn maze (rows separated by ``|``, ``.`` for open) as tokens."""
    chars = text.replace("|", "").replace(".", " ")
    return np.array(["# SGo".index(ch) + 1 for ch in chars], dtype=np.int64)


# 5x5 open field with one wall in the middle: many shortest paths of 8 steps.
Q5 = grid("S....|.....|..#..|.....|....G")
LABEL5 = grid("Soooo|....o|..#.o|....o|....G")          # along the top and right edges


def check5(*predictions: str) -> list[bool]:
    task = MazeTask(5)
    pred = torch.from_numpy(np.stack([grid(p) for p in predictions]))
    labels = torch.from_numpy(np.stack([LABEL5] * len(predictions)))
    return task.is_correct(pred, labels).tolist()


# ----------------------------------------------------------------------------- generator


def test_generator_is_deterministic_for_a_seed():
    q, a, lengths = generate(60, 9, np.random.default_rng(0), min_path=16)
    assert np.array_equal(q, Q9) and np.array_equal(a, A9) and np.array_equal(lengths, L9)
    other, _, _ = generate(60, 9, np.random.default_rng(5), min_path=16)
    assert not np.array_equal(other, Q9)


@pytest.mark.parametrize("size", [9, 15])
def test_generated_paths_are_shortest_and_at_least_min_path(size):
    q, a, lengths = (Q9, A9, L9) if size == 9 else (Q15, A15, L15)
    min_path = 16 if size == 9 else default_min_path(15)
    assert lengths.min() >= min_path
    for question, answer, length in zip(q, a, lengths):
        assert reference_bfs(question, size) == length          # a shortest path ...
        assert walk_path(answer, size) == length                # ... is what is marked
        assert (answer == PATH).sum() == length - 1             # length counts steps
        assert np.array_equal(np.where(answer == PATH, OPEN, answer), question)
    assert len({row.tobytes() for row in q}) == len(q)


def test_wall_density_and_tokens():
    walls = (Q9 == WALL).mean(1)
    assert walls.min() >= 0.1 and walls.max() <= 0.65       # 30-50 % per-cell probability
    assert set(np.unique(Q9)) == {WALL, OPEN, START, GOAL}
    assert set(np.unique(A9)) == {WALL, OPEN, START, GOAL, PATH}


def test_default_min_path_is_maze_hard_at_30_and_scales_down():
    assert default_min_path(30) == 110
    assert default_min_path(9) == 26 and default_min_path(15) == 48
    assert all(default_min_path(s) < default_min_path(s + 1) for s in range(5, 30))


def test_hard_30x30_mazes_reach_110_steps():
    q, a, lengths = generate(3, 30, np.random.default_rng(0), min_path=110)
    assert lengths.min() >= 110
    assert [reference_bfs(x, 30) for x in q] == lengths.tolist()


def test_impossible_min_path_is_an_error_not_a_hang():
    with pytest.raises(ValueError, match="lower min_path"):
        generate(2, 4, np.random.default_rng(0), min_path=15)
    with pytest.raises(ValueError, match="unsupported maze size"):
        MazeTask(3)


def test_orbit_distinct_mazes_share_no_symmetry_class():
    q, _, _ = generate(40, 5, np.random.default_rng(0), min_path=6, distinct="orbit")
    assert len(set(canonical_keys(q, 5))) == 40


# ----------------------------------------------------------------------------- splits


@pytest.mark.parametrize("split_by", ["exact", "orbit"])
def test_generate_splits_are_disjoint_and_honour_min_difficulty(split_by):
    data = DataConfig(min_difficulty=14, split_by=split_by)
    train, test = TASK9.generate_splits(50, 20, data, np.random.default_rng(0))
    assert len(train) == 50 and len(test) == 20
    assert not {r.tobytes() for r in train.inputs} & {r.tobytes() for r in test.inputs}
    if split_by == "orbit":
        assert not set(canonical_keys(train.inputs, 9)) & set(canonical_keys(test.inputs, 9))
    assert ((train.labels == PATH).sum(1) + 1).min() >= 14
    assert TASK9.vocab_size == 6 and TASK9.seq_len == 81 and TASK9.name == "maze9"


def test_generate_splits_default_difficulty_depends_on_size():
    train, test = MazeTask(7).generate_splits(5, 5, DataConfig(), np.random.default_rng(0))
    steps = (np.concatenate([train.labels, test.labels]) == PATH).sum(1) + 1
    assert steps.min() >= default_min_path(7)


def test_make_task_builds_a_maze():
    task = make_task(TaskConfig(name="maze", size=11))
    assert isinstance(task, MazeTask) and task.seq_len == 121


# ----------------------------------------------------------------------------- CSV


def test_csv_round_trip(tmp_path):
    batch = TASK9.encode(TASK9.to_strings(Q9), TASK9.to_strings(A9))
    TASK9.write_csv(tmp_path / "m.csv", batch)
    back = TASK9.read_csv(tmp_path / "m.csv")
    assert np.array_equal(back.inputs, Q9) and np.array_equal(back.labels, A9)
    records = read_csv(tmp_path / "m.csv")                       # size inferred: 81 chars
    assert np.array_equal(records.ratings, L9)                   # rating = path steps
    header, first = (tmp_path / "m.csv").read_text().splitlines()[:2]
    assert header == "source,question,answer,rating"
    assert first.split(",")[1] == TASK9.to_strings(Q9[:1])[0] and " " in first
    fractional = MazeRecords(records.questions[:2], records.answers[:2],
                             np.array([0.1234567891, 1e-7]), records.sources[:2])
    write_csv(tmp_path / "r.csv", fractional)                    # ratings survive exactly
    assert read_csv(tmp_path / "r.csv").ratings.tolist() == [0.1234567891, 1e-7]
    with pytest.raises(ValueError, match="unsupported maze size 2"):
        read_csv(tmp_path / "m.csv", size=2)                     # an explicit size is checked


def _write(tmp_path, question: str, answer: str, header="source,question,answer,rating"):
    path = tmp_path / "bad.csv"
    path.write_text(f"{header}\nx,{question},{answer},0\n")
    return path


def _strings(index=0):
    return TASK9.to_strings(Q9[index:index + 1])[0], TASK9.to_strings(A9[index:index + 1])[0]


def _replace(text: str, i: int, ch: str) -> str:
    return text[:i] + ch + text[i + 1:]


@pytest.mark.parametrize("case, message", [
    ("short", "answer has 80 characters, expected 81 for 9x9"),
    ("char", "question: invalid character 'x' at position 0"),
    ("two_starts", "question has 2 start 'S' cells"),
    ("no_goal", "has 0 goal 'G' cells"),
    ("path_on_wall", "answer does not match the question"),
    ("broken", "do not form one simple path from S to G"),
    ("header", "expected the header source,question,answer,rating"),
    ("not_square", "not a square grid"),
])
def test_parse_errors_name_the_file_line_and_problem(tmp_path, case, message):
    q, a = _strings()
    header = "source,question,answer,rating"
    wall = q.index("#")
    path_cell = a.index("o")
    if case == "short":
        a = a[:-1]
    elif case == "char":
        q = "x" + q[1:]
    elif case == "two_starts":
        i = q.index(" ")
        q, a = _replace(q, i, "S"), _replace(a, i, "S")
    elif case == "no_goal":
        i = q.index("G")
        q, a = _replace(q, i, " "), _replace(a, i, " ")
    elif case == "path_on_wall":
        a = _replace(a, wall, "o")
    elif case == "broken":
        a = _replace(a, path_cell, " ")
    elif case == "header":
        header = "a,b,c"
    elif case == "not_square":
        q, a = q + "#", a + "#"
    with pytest.raises(ValueError) as err:
        read_csv(_write(tmp_path, q, a, header))
    text = str(err.value)
    assert message in text
    assert text.startswith(f"{tmp_path / 'bad.csv'}:{1 if case == 'header' else 2}:")


def test_parse_error_for_a_path_that_is_not_shortest(tmp_path):
    question = "S....|.....|..#..|.....|....G".replace("|", "").replace(".", " ")
    detour = "Soooo|....o|..#oo|...o.|...oG".replace("|", "").replace(".", " ")
    with pytest.raises(ValueError, match="takes 10 steps but the shortest path from S to G "
                                         "takes 8"):
        read_csv(_write(tmp_path, question, detour))
    assert len(read_csv(_write(tmp_path, question, detour), check_shortest=False)) == 1


def test_wrong_size_file_says_what_it_looks_like(tmp_path):
    write_csv(tmp_path / "m9.csv", MazeRecords(Q9[:2], A9[:2], L9[:2], ["a", "b"]))
    with pytest.raises(ValueError, match=r"m9.csv:2: question has 81 characters, expected 225 "
                                         r"for 15x15; this looks like a 9x9 maze"):
        MazeTask(15).read_csv(tmp_path / "m9.csv")
    with pytest.raises(FileNotFoundError):
        TASK9.read_csv(tmp_path / "missing.csv")


# ----------------------------------------------------------------------------- checks


def test_is_correct_accepts_any_shortest_path():
    assert check5(
        "Soooo|....o|..#.o|....o|....G",      # the label
        "S....|o....|o.#..|o....|ooooG",      # along the left and bottom edges
        "So...|.ooo.|..#o.|...oo|....G",      # a staircase
    ) == [True, True, True]


def test_is_correct_rejects_longer_walled_broken_or_altered_paths():
    assert check5(
        "Soooo|....o|..#oo|...o.|...oG",      # a valid simple path, 10 steps instead of 8
        "So...|.oo..|..oo.|...oo|....G",      # through the wall
        "Sooo.|....o|..#.o|....o|o...G",      # a gap, cell count made up elsewhere
        "Soooo|....o|..#.o|....o|.....",      # goal removed
        "Soooo|....o|..#.o|....o|...#G",      # a wall added
    ) == [False, False, False, False, False]


def test_is_correct_on_generated_mazes_accepts_other_traced_shortest_paths():
    labels = torch.from_numpy(A9)
    assert TASK9.is_correct(labels, labels).all()
    dist = distance_maps((Q9 != WALL).reshape(-1, 9, 9), (Q9 == START).argmax(1))
    other = _trace_paths(dist, (Q9 == GOAL).argmax(1), np.random.default_rng(9)).reshape(60, -1)
    alternative = torch.from_numpy(np.where(other, PATH, Q9))
    assert (alternative != labels).any(1).sum() >= 10          # many differ from the label
    assert TASK9.is_correct(alternative, labels).all()
    assert torch.equal(TASK9.cell_accuracy(alternative, labels), torch.ones(60))
    shifted = torch.from_numpy(np.where(A9 == PATH, OPEN, A9))  # path erased
    assert not TASK9.is_correct(shifted, labels).any()
    assert (TASK9.cell_accuracy(shifted, labels) < 1).all()


def test_violations_are_zero_on_labels_and_count_broken_cells():
    assert TASK9.violations(torch.from_numpy(A9)).eq(0).all()
    broken = A9.copy()
    row = broken[0]
    row[np.flatnonzero(row == PATH)[3]] = OPEN                 # two path ends left dangling
    broken[1][broken[1] == GOAL] = OPEN                        # goal missing: +1, and its
    broken[2][0] = 0                                           # neighbour dangles; padding +1
    v = TASK9.violations(torch.from_numpy(broken))
    assert v[0] == 2 and v[1] == 2 and v[2] >= 1 and v[3:].eq(0).all()


# ----------------------------------------------------------------------------- symmetry


def test_augmentation_keeps_mazes_valid_with_the_same_path_length():
    batch = TASK9.encode(TASK9.to_strings(Q9), TASK9.to_strings(A9))
    aug = TASK9.augment(batch, np.random.default_rng(3))
    assert (aug.inputs != batch.inputs).any(1).mean() > 0.7
    assert np.array_equal(np.where(aug.labels == PATH, OPEN, aug.labels), aug.inputs)
    assert TASK9.violations(torch.from_numpy(aug.labels)).eq(0).all()
    assert [reference_bfs(q, 9) for q in aug.inputs] == L9.tolist()
    assert np.array_equal(np.sort(aug.labels, 1), np.sort(batch.labels, 1))


# ----------------------------------------------------------------------------- display


def test_decode_render_and_cell_colors():
    codes = TASK9.decode(torch.from_numpy(A9[:2]))
    assert codes.shape == (2, 9, 9) and codes.dtype == np.int64
    assert "".join(CHARSET[c] for c in codes[0].ravel()) == TASK9.to_strings(A9[:1])[0]
    assert TASK9.decode(A9[0]).shape == (9, 9)
    assert (TASK9.decode(np.zeros(81, dtype=np.int64)) == -1).all()  # padding
    text = TASK9.render(Q9[0], A9[0], A9[0])
    lines = text.splitlines()
    assert len(lines) == 10 and all(len(line) == 9 for line in lines[1:])
    assert lines[0].endswith("correct") and "x" not in "".join(lines[1:])
    wrong = A9[0].copy()
    wrong[np.flatnonzero(Q9[0] == WALL)[0]] = PATH              # a path cell on a wall
    text = TASK9.render(Q9[0], wrong, A9[0])
    assert text.splitlines()[0].endswith("wrong") and "x" in "".join(text.splitlines()[1:])
    colors = TASK9.cell_colors(Q9[0], A9[0], A9[0])
    assert colors.shape == (9, 9, 3) and colors.dtype == np.uint8
    start = divmod(int(np.argmax(Q9[0] == START)), 9)
    assert tuple(colors[start]) == (40, 170, 70)
    bad = divmod(int(np.flatnonzero(Q9[0] == WALL)[0]), 9)
    assert tuple(TASK9.cell_colors(Q9[0], wrong, A9[0])[bad]) == (255, 100, 20)


# ----------------------------------------------------------------------------- trainer


def test_act_trainer_runs_on_mazes(tmp_path):
    from hrm_rl.agents.trainer import ACTTrainer

    config = load_config(None, [
        "task.name=maze", "task.size=7", "model.hidden_size=32", "model.num_heads=2",
        "model.H_layers=1", "model.L_layers=1", "model.H_cycles=1", "model.L_cycles=1",
        "model.pos_encodings=learned", "train.batch_size=8", "train.steps=3",
        "train.max_segments=2", "train.eval_every=3", "train.eval_size=8",
        "train.eval_batch_size=8", "train.checkpoint_every=100", "train.log_every=1",
        "train.loss=softmax", "data.augment=false", f"data.cache_dir={tmp_path}"])
    task = MazeTask(7)
    splits = task.generate_splits(24, 8, DataConfig(min_difficulty=8),
                                  np.random.default_rng(0))
    summary = ACTTrainer(config, None, progress=False, splits=splits).fit()
    assert summary["steps"] == 3 and summary["eval"]["n"] == 8
    assert len(summary["eval"]["exact_by_segment"]) == 2


# The ``first`` tie-break ------------------------------------------------------------------

def reference_first_path(question: np.ndarray, size: int) -> np.ndarray:
    """Plain Python: BFS from S, then from G step to the first of up, down, left, right that
    is one closer to S, marking the cells walked through (not S) as path."""
    grid = question.reshape(size, size)
    dist = reference_distances(question, size)
    answer = grid.copy()
    cur = tuple(np.argwhere(grid == GOAL)[0])
    while dist[cur] > 1:
        r, c = cur
        cur = next(n for n in ((r - 1, c), (r + 1, c), (r, c - 1), (r, c + 1))
                   if dist.get(n) == dist[cur] - 1)
        answer[cur] = PATH
    return answer.reshape(-1)


def test_first_paths_follow_the_stated_rule_and_are_shortest():
    from hrm_rl.tasks.maze import first_shortest_paths

    first = first_shortest_paths(Q9, 9)
    for q, a in zip(Q9, first):
        np.testing.assert_array_equal(a, reference_first_path(q, 9))
    assert TASK9.is_correct(torch.tensor(first), torch.tensor(A9)).all()
    assert (first != A9).any(), "60 mazes of >= 16 steps without one tie: the test is too weak"


def test_first_tie_break_labels_splits_and_relabels_augmented_mazes():
    from hrm_rl.tasks.maze import first_shortest_paths

    data = DataConfig(min_difficulty=8, layout="mix")
    first, rand = MazeTask(9, "first"), MazeTask(9)
    (train_f, test_f), (train_r, _) = (t.generate_splits(200, 20, data, np.random.default_rng(3))
                                       for t in (first, rand))
    np.testing.assert_array_equal(train_f.inputs, train_r.inputs)  # the same mazes
    np.testing.assert_array_equal(train_f.labels, first_shortest_paths(train_f.inputs, 9))
    np.testing.assert_array_equal(test_f.labels, first_shortest_paths(test_f.inputs, 9))
    moved = first.augment(train_f, np.random.default_rng(4))
    np.testing.assert_array_equal(moved.labels, first_shortest_paths(moved.inputs, 9))
    # Where paths tie, the moved first label is not the moved label: relabelling matters.
    plain = rand.augment(train_f, np.random.default_rng(4))
    np.testing.assert_array_equal(plain.inputs, moved.inputs)
    assert (plain.labels != moved.labels).any()
    assert first.cache_params(data) != rand.cache_params(data)
    assert "tie_break" not in rand.cache_params(data)  # caches made before keep their names


def test_tie_break_is_validated_and_reaches_the_task():
    assert make_task(TaskConfig(name="maze", size=9, tie_break="first")).tie_break == "first"
    with pytest.raises(ValueError, match="tie_break"):
        MazeTask(9, "lowest")
    with pytest.raises(ValueError, match="task.tie_break"):
        load_config(None, ["task.name=maze", "task.size=9", "task.tie_break=lowest"])


def test_wall_density_shapes_the_generated_layouts_and_names_the_cache():
    def wall_share(data):
        train, _ = MazeTask(9).generate_splits(300, 20, data, np.random.default_rng(5))
        inner = np.asarray(train.inputs).reshape(-1, 9, 9)[:, 1:-1, 1:-1]
        return (inner == WALL).mean()

    sparse = DataConfig(min_difficulty=6, layout="mix", wall_density=[0.1, 0.15])
    dense = DataConfig(min_difficulty=6, layout="mix")
    assert wall_share(sparse) < 0.17 < 0.3 < wall_share(dense)
    task = MazeTask(9)
    assert task.cache_params(sparse)["wall_density"] == [0.1, 0.15]
    assert "wall_density" not in task.cache_params(dense)  # caches made before keep their names


@pytest.mark.parametrize("value", ["[0.5, 0.2]", "[0.1, 1.0]", "[0.2]", "0.3", "[a, b]"])
def test_wall_density_is_validated(value):
    with pytest.raises(ValueError, match="data.wall_density"):
        load_config(None, ["task.name=maze", "task.size=9", f"data.wall_density={value}"])


def test_wall_density_is_refused_for_sudoku():
    with pytest.raises(ValueError, match="data.wall_density"):
        load_config(None, ["task.name=sudoku", "data.wall_density=[0.1, 0.2]"])


def test_far_share_moves_the_mix_toward_long_paths_and_names_the_cache():
    from hrm_rl.tasks.maze import generate

    lengths = {share: generate(2000, 9, np.random.default_rng(0), 6, layout="mix",
                               far_share=share)[2] for share in (0.0, 0.5, 1.0)}
    assert lengths[0.0].mean() + 1 < lengths[0.5].mean() < lengths[1.0].mean() - 1
    # the default share draws the stream it drew before the knob existed
    np.testing.assert_array_equal(lengths[0.5], generate(2000, 9, np.random.default_rng(0), 6,
                                                         layout="mix")[2])
    data = DataConfig(min_difficulty=6, layout="mix", far_share=0.85)
    assert MazeTask(9).cache_params(data)["far_share"] == 0.85
    assert "far_share" not in MazeTask(9).cache_params(DataConfig(layout="mix"))


@pytest.mark.parametrize("sets", [["data.layout=mix", "data.far_share=1.5"],
                                  ["data.far_share=0.8"]])  # the hard layout has no share
def test_far_share_is_validated(sets):
    with pytest.raises(ValueError, match="data.far_share"):
        load_config(None, ["task.name=maze", "task.size=9", *sets])


@pytest.mark.parametrize("size", [9, 10])
def test_lattice_walls_are_spanning_trees_with_at_most_max_loops_extra_passages(size):
    from hrm_rl.tasks.maze.bfs import distance_maps
    from hrm_rl.tasks.maze.generator import lattice_walls

    k = (size - 1) // 2
    for loops in (0, 6):
        walls = lattice_walls(200, size, np.random.default_rng(loops), max_loops=loops)
        assert walls[:, 0].all() and walls[:, -1].all() and walls[:, :, 0].all() \
            and walls[:, :, -1].all()
        assert walls[:, 0::2, 0::2].all()  # lattice corners are never opened
        passages = (~walls).reshape(200, -1).sum(1) - k * k
        assert passages.min() >= k * k - 1 and passages.max() <= k * k - 1 + loops
        if loops == 0:
            assert (passages == k * k - 1).all()  # a tree: one fewer edge than cells
        else:
            assert passages.max() > k * k - 1  # some mazes do get loops
        dist = distance_maps(~walls, np.full(200, size + 1))  # from cell (1, 1)
        odd = dist[:, 1:2 * k:2, 1:2 * k:2]
        assert (odd >= 0).all()  # every lattice cell is reachable


def test_lattice_share_draws_corridor_mazes_and_names_the_cache():
    q, a, lengths = generate(300, 9, np.random.default_rng(0), 6, layout="mix",
                             lattice_share=1.0)
    grids = q.reshape(-1, 9, 9)
    assert (grids[:, 0::2, 0::2] == WALL).all()
    for i in range(0, 300, 37):
        assert reference_bfs(q[i], 9) == lengths[i] == walk_path(a[i], 9)
    # no share draws the random-wall stream it drew before the knob existed
    np.testing.assert_array_equal(
        generate(500, 9, np.random.default_rng(1), 6, layout="mix")[0],
        generate(500, 9, np.random.default_rng(1), 6, layout="mix", lattice_share=0.0)[0])
    mixed = generate(2000, 9, np.random.default_rng(2), 6, lattice_share=0.3)[0].reshape(-1, 9, 9)
    share = (mixed[:, 0::2, 0::2] == WALL).all((1, 2)).mean()
    assert 0.2 < share < 0.4  # random walls almost never wall all 25 lattice corners
    assert MazeTask(9).cache_params(DataConfig(lattice_share=0.3))["lattice_share"] == 0.3
    assert "lattice_share" not in MazeTask(9).cache_params(DataConfig())


@pytest.mark.parametrize("sets", [["task.name=maze", "task.size=9", "data.lattice_share=1.5"],
                                  ["task.name=sudoku", "data.lattice_share=0.3"]])
def test_lattice_share_is_validated(sets):
    with pytest.raises(ValueError, match="data.lattice_share"):
        load_config(None, sets)
