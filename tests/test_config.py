"""Run configs: YAML + dotted overrides, errors at load time."""

from __future__ import annotations

import json
import re
import warnings
from pathlib import Path

import pytest
import yaml

from hrm_rl.config import ConfigError, load_config

CONFIGS = sorted(Path(__file__).parent.parent.joinpath("configs").glob("*.yaml"))


def test_defaults_are_the_paper_model():
    cfg = load_config(None)
    assert (cfg.model.hidden_size, cfg.model.H_layers, cfg.model.L_layers) == (512, 4, 4)


def test_overrides_parse_yaml_scalars(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("task: {size: 4}\ntrain: {lr: 0.001}\n")
    cfg = load_config(path, ["train.lr=3e-4", "train.max_time_s=10", "data.max_givens=null"])
    assert cfg.train.lr == 3e-4 and cfg.train.max_time_s == 10.0 and cfg.task.size == 4
    assert cfg.data.max_givens is None


def test_unknown_key_names_the_dotted_path(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("train: {lrate: 0.1}\n")
    with pytest.raises(ConfigError, match=r"train\.lrate"):
        load_config(path)


def test_wrong_type_is_an_error_at_load():
    with pytest.raises(ConfigError, match=r"train\.steps: expected int"):
        load_config(None, ["train.steps=many"])


def test_invalid_choice_is_an_error_at_load():
    with pytest.raises(ConfigError, match=r"train\.loss"):
        load_config(None, ["train.loss=hinge"])


def test_missing_file_is_a_clear_error(tmp_path):
    with pytest.raises(ConfigError, match="not found"):
        load_config(tmp_path / "nope.yaml")


@pytest.mark.parametrize("path", CONFIGS, ids=[p.name for p in CONFIGS])
def test_shipped_configs_load(path):
    load_config(path)


def test_a_bundled_recipe_loads_by_name_and_a_file_of_that_name_wins(tmp_path, monkeypatch,
                                                                      capsys):
    from hrm_rl.cli import main
    from hrm_rl.config import bundled_configs, resolve_config

    recipes = bundled_configs()
    assert "sudoku4-tiny" in recipes
    by_name = load_config("sudoku4-tiny", ["train.steps=7"])
    assert by_name == load_config(recipes["sudoku4-tiny"], ["train.steps=7"])
    assert resolve_config("sudoku4-tiny.yaml") == recipes["sudoku4-tiny"]
    monkeypatch.chdir(tmp_path)
    Path("sudoku4-tiny").write_text("name: mine\ntask: {name: maze, size: 6}\n")
    assert load_config("sudoku4-tiny").name == "mine"  # a path that exists wins
    with pytest.raises(ConfigError, match="no bundled recipe has that name .*bundled: .*"
                                          "sudoku4-tiny"):
        load_config("sudoku5-tiny")
    with pytest.raises(ConfigError, match="config file not found"):
        load_config("configs/sudoku4-tiny.yaml")  # a path is a path (none in tmp_path)
    assert main(["params", "maze6-tiny"]) == 0 and capsys.readouterr().out.strip()
    assert main(["params", "sudoku5-tiny"]) == 2
    err_text = capsys.readouterr().err
    assert "bundled: arc-" in err_text and "arc-tiny" in err_text


@pytest.mark.parametrize("override, key", [
    ("train.grad_clip=-1", "train.grad_clip"), ("train.grad_clip=.nan", "train.grad_clip"),
    ("train.lr_min_ratio=-3", "train.lr_min_ratio"), ("train.eval_batch_size=-1",
                                                      "train.eval_batch_size"),
    ("train.eval_size=0", "train.eval_size"), ("train.max_time_s=-1", "train.max_time_s"),
    ("train.max_time_s=.nan", "train.max_time_s"), ("train.max_time_s=0", "train.max_time_s"),
    ("model.expansion=0", "model.expansion"), ("model.expansion=-1", "model.expansion"),
    ("train.threads=-1", "train.threads"), ("train.lr=0", "train.lr"),
    ("train.beta2=1.0", "train.beta2")])
def test_settings_that_would_give_wrong_numbers_are_refused_naming_the_key(override, key):
    with pytest.raises(ConfigError, match=key.replace(".", r"\.")):
        load_config(None, [override])


@pytest.mark.parametrize("content, message", [
    (b"a: [1\nb: 2\n", r"bad.yaml:2:2: YAML syntax error"),
    (b"", "the file is empty"),
    (b"name: a\nname: b\n", "line 2: key 'name' is given twice"),
    (b"name: \xe9t\xe9\n", "not UTF-8")])
def test_unreadable_configs_name_the_file_and_place(tmp_path, content, message):
    path = tmp_path / "bad.yaml"
    path.write_bytes(content)
    with pytest.raises(ConfigError, match=message):
        load_config(path)


def test_fit_to_returns_a_fitted_copy_and_leaves_the_config_alone():
    from hrm_rl.tasks import make_task

    config = load_config(None, ["task.size=6"])
    fitted = config.model.fit_to(make_task(config.task))
    assert (fitted.vocab_size, fitted.seq_len, fitted.num_puzzle_ids) == (8, 36, 1)
    assert (config.model.vocab_size, config.model.seq_len) == (0, 0) and fitted is not config.model
    with pytest.raises(ConfigError, match="model.seq_len"):
        load_config(None, ["task.size=6", "model.seq_len=81"]).model.fit_to(
            make_task(config.task))


# --- renamed keys: train.max_segments was train.halt_max_steps -----------------------------

def test_the_former_name_halt_max_steps_reads_as_max_segments_from_yaml_and_set(tmp_path):
    old, new = tmp_path / "old.yaml", tmp_path / "new.yaml"
    old.write_text("task: {size: 4}\ntrain: {halt_max_steps: 5}\n")
    new.write_text("task: {size: 4}\ntrain: {max_segments: 5}\n")
    with pytest.warns(FutureWarning, match="train.halt_max_steps is now called train.max_segments"):
        from_yaml = load_config(old)
    with pytest.warns(FutureWarning, match="train.max_segments"):
        from_set = load_config(None, ["task.size=4", "train.halt_max_steps=5"])
    wanted = load_config(new).train
    assert from_yaml.train == wanted and from_set.train == wanted
    assert wanted.max_segments == 5 and wanted.halt_max_steps == 5  # read-only alias
    assert "max_segments" in from_yaml.to_dict()["train"]  # written under the new name
    assert "halt_max_steps" not in from_yaml.to_dict()["train"]


@pytest.mark.filterwarnings("ignore::FutureWarning")
def test_both_names_with_different_values_are_refused_and_a_set_replaces_either(tmp_path):
    path = tmp_path / "both.yaml"
    path.write_text("train: {halt_max_steps: 4, max_segments: 6}\n")
    with pytest.raises(ConfigError, match=r"train\.halt_max_steps=4 and train\.max_segments=6"):
        load_config(path)
    path.write_text("train: {halt_max_steps: 6, max_segments: 6}\n")
    assert load_config(path).train.max_segments == 6  # the same value twice: one setting
    old = tmp_path / "old.yaml"
    old.write_text("train: {halt_max_steps: 4}\n")
    assert load_config(old, ["train.max_segments=7"]).train.max_segments == 7
    new = tmp_path / "new.yaml"
    new.write_text("train: {max_segments: 4}\n")
    assert load_config(new, ["train.halt_max_steps=7"]).train.max_segments == 7
    with pytest.raises(ConfigError, match=r"train\.max_segments: must be in \[1, 1024\]"):
        load_config(None, ["train.halt_max_steps=2000"])


def test_saved_configs_with_the_former_name_load_silently(tmp_path):
    saved = tmp_path / "config.yaml"
    saved.write_text(yaml.safe_dump({**load_config(None).to_dict(), "train": {
        **{k: v for k, v in load_config(None).to_dict()["train"].items()
           if k != "max_segments"}, "halt_max_steps": 3}}))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert load_config(saved, saved=True).train.max_segments == 3


BUNDLED = sorted(Path(__file__).parent.parent.joinpath("hrm_rl", "checkpoints").glob(
    "*/config.json"))


@pytest.mark.parametrize("path", BUNDLED, ids=[p.parent.name for p in BUNDLED])
def test_bundled_core_configs_keep_their_cap_under_the_new_name(path):
    from hrm_rl.checkpoint import read_checkpoint_config

    written = json.loads(path.read_text())["run"]["train"]
    cap = written.get("max_segments", written.get("halt_max_steps"))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        config, _, _ = read_checkpoint_config(path.parent)
    assert config.train.max_segments == cap


def test_eval_result_names_its_q_head_accuracy_as_the_trainer_logs_it():
    from hrm_rl.evaluation import EvalResult

    result = EvalResult(n=4, max_segments=2, exact_acc_qhalt=0.75)
    assert result.exact_qhalt == 0.75  # the former name, read-only
    assert "exact_acc_qhalt" in result.to_dict() and "exact_qhalt" not in result.to_dict()


# --- each task reads and checks its own keys ------------------------------------------------

def test_every_task_name_has_an_options_class_that_builds_it():
    from hrm_rl.config import TaskConfig
    from hrm_rl.tasks import TASK_OPTIONS, TASKS, make_task, task_options

    assert TASKS == tuple(TASK_OPTIONS) == ("sudoku", "maze", "arc")
    options = task_options(TaskConfig(name="maze", size=7, tie_break="first"))
    assert (options.size, options.tie_break) == (7, "first")
    assert make_task(TaskConfig(name="maze", size=7)).name == "maze7"
    with pytest.raises(ValueError, match="unknown task 'chess'; available: sudoku, maze, arc"):
        task_options(TaskConfig(name="chess"))


@pytest.mark.parametrize("overrides, key, keys", [
    (["task.tie_break=first"], "task.tie_break", "task.name, task.size, data.max_givens"),
    (["data.layout=mix"], "data.layout", "task.name, task.size, data.max_givens"),
    (["task.name=maze", "data.max_givens=20"], "data.max_givens",
     "task.name, task.size, task.tie_break, data.layout"),
    (["task.name=arc", "task.size=30"], "task.size",
     "task.name, task.dataset, task.data_dir, task.augmentations, task.max_tasks")])
def test_a_key_the_task_does_not_read_is_refused_naming_the_task_and_its_keys(overrides, key,
                                                                              keys):
    with pytest.raises(ConfigError, match=rf"{re.escape(key)}: task \w+ does not read it "
                                          rf"\(its keys: {re.escape(keys)}"):
        load_config(None, overrides)
    load_config(None, overrides[:-1])  # without it, the config loads


def test_a_saved_config_with_a_key_its_task_does_not_read_still_loads(tmp_path):
    saved = tmp_path / "config.yaml"
    data = load_config(None).to_dict()
    data["data"]["layout"] = "mix"  # a Sudoku run saved before keys were checked per task
    saved.write_text(yaml.safe_dump(data))
    assert load_config(saved, saved=True).data.layout == "mix"
    with pytest.raises(ConfigError, match="data.layout: task sudoku does not read it"):
        load_config(saved)


@pytest.mark.parametrize("overrides, message", [
    (["task.size=5"], "task.size: Sudoku comes in sizes 4, 6 and 9, got 5"),
    (["task.size=4", "data.max_givens=3"], "data.max_givens: 3 is infeasible with task.size=4"),
    (["task.size=4", "data.max_givens=100"], "data.max_givens: must be at most the 16 cells"),
    (["task.name=maze", "task.size=6", "data.min_difficulty=1000"],
     "data.min_difficulty: 1000 is infeasible with task.size=6: .* at most 34 steps"),
    (["task.name=maze", "task.size=6", "data.min_difficulty=35"],
     "data.min_difficulty: 35 is infeasible"),
    (["task.name=maze", "task.size=65"], r"task.size: a maze side must be in \[4, 64\]"),
    (["task.name=maze", "data.layout=easy"], "data.layout: must be 'hard' or 'mix'"),
    (["task.name=arc", "task.dataset=arc3"], "task.dataset: must be 'arc1' or 'arc2'"),
    (["task.name=arc", "task.augmentations=-1"], "task.augmentations: must be >= 0")])
def test_each_task_checks_its_own_keys(overrides, message):
    with pytest.raises(ConfigError, match=message):
        load_config(None, overrides)


def test_extends_merges_over_the_base_key_by_key_and_keeps_its_own_name(tmp_path):
    """A stage config that ``extends`` another changes only the keys it gives; the base's
    other settings (nested ones too) are kept, overrides apply last, ``name`` is not
    inherited, and the merged config is what a run saves."""
    (tmp_path / "base").mkdir()
    (tmp_path / "base" / "a.yaml").write_text(yaml.safe_dump({
        "name": "stage-a", "task": {"name": "maze", "size": 6},
        "model": {"hidden_size": 64, "num_heads": 2},
        "train": {"lr": 1e-3, "max_segments": 4, "batch_size": 16}}))
    (tmp_path / "b.yaml").write_text("extends: base/a.yaml\nname: stage-b\n"
                                     "train: {lr: 3.0e-4}\n")
    (tmp_path / "c.yaml").write_text("extends: b.yaml\ntrain: {max_segments: 8}\n")
    a, b = load_config(tmp_path / "base" / "a.yaml"), load_config(tmp_path / "b.yaml")
    c = load_config(tmp_path / "c.yaml", overrides=["train.batch_size=8"])
    assert (b.name, b.train.lr, b.train.max_segments, b.train.batch_size) == \
        ("stage-b", 3e-4, 4, 16)
    assert (c.name, c.train.lr, c.train.max_segments, c.train.batch_size) == \
        ("run", 3e-4, 8, 8)
    assert b.model == a.model and c.task == a.task and c.task.size == 6
    saved = tmp_path / "saved.yaml"
    saved.write_text(yaml.safe_dump(c.to_dict()))
    assert load_config(saved, saved=True) == c


@pytest.mark.parametrize("text, other, message", [
    ("extends: missing.yaml\n", None, "not found"),
    ("extends: 3\n", None, "must name a config file"),
    ("extends: ''\n", None, "must name a config file"),
    ("extends: other.yaml\n", "extends: main.yaml\n", "cycle"),
    ("extends: main.yaml\n", None, "cycle"),
    ("extends: other.yaml\n", "train: {lr: -1}\n", "train.lr"),
    ("extends: other.yaml\n", "train: {nope: 1}\n", "train.nope"),
])
def test_extends_mistakes_are_config_errors_naming_the_file(tmp_path, text, other, message):
    (tmp_path / "main.yaml").write_text(text)
    if other is not None:
        (tmp_path / "other.yaml").write_text(other)
    with pytest.raises(ConfigError, match=re.escape(message)) as err:
        load_config(tmp_path / "main.yaml")
    assert "main.yaml" in str(err.value)


def test_extends_a_former_key_name_is_replaced_by_the_extending_files_setting(tmp_path):
    """A base written with ``train.halt_max_steps`` (the former name) and a stage that sets
    ``train.max_segments``: the stage's value wins, as a ``--set`` of either name does."""
    (tmp_path / "a.yaml").write_text("task: {name: sudoku, size: 4}\n"
                                     "train: {halt_max_steps: 4, lr: 1.0e-3}\n")
    (tmp_path / "b.yaml").write_text("extends: a.yaml\ntrain: {max_segments: 8}\n")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        a, b = load_config(tmp_path / "a.yaml"), load_config(tmp_path / "b.yaml")
    assert (a.train.max_segments, b.train.max_segments, b.train.lr) == (4, 8, 1e-3)


def test_a_typo_in_an_extended_base_is_reported_against_the_base(tmp_path):
    (tmp_path / "base.yaml").write_text("task: {name: sudoku, size: 4}\ntrian: {steps: 1}\n")
    (tmp_path / "child.yaml").write_text("extends: base.yaml\nname: x\n")
    with pytest.raises(ConfigError) as err:
        load_config(tmp_path / "child.yaml")
    text = str(err.value)
    assert text.startswith(f"{tmp_path / 'base.yaml'} (extended by {tmp_path / 'child.yaml'})")
    assert "unknown key(s) trian" in text
