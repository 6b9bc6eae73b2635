"""Run configs: YAML + dotted overrides, errors at load time."""

from __future__ import annotations

from pathlib import Path

import pytest

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
