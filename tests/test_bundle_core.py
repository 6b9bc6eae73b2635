"""scripts/bundle_core.py records a new core's provenance in its card: the config chain from
the runs' saved configs and the weights' SHA-256, with nothing read from the lab's folders."""
from __future__ import annotations

import dataclasses
import json
import shutil

import pytest

from hrm_rl.checkpoint import bundled_checkpoints, file_sha256, read_checkpoint_config

from conftest import load_script


@pytest.fixture(scope="module")
def bundle_core():
    return load_script("bundle_core")


def test_config_chain_holds_what_each_stage_changed_and_where_it_started(bundle_core):
    cores = bundled_checkpoints()
    runs = [str(cores["sudoku4"]), str(cores["sudoku4-trm"])]  # two saved configs, as stages
    stages = [{"checkpoint": "first/step_0000010"}, {"checkpoint": "second/step_0000020"}]
    first, second = bundle_core.config_chain(runs, stages)
    assert (first["stage"], first["extends"], first["init_from"]) == (1, None, None)
    assert (second["stage"], second["extends"], second["init_from"]) == (
        2, first["name"], "first/step_0000010")
    assert first["changes"]["task"]["name"] == "sudoku"  # stage 1: its whole recipe
    # the first config with the second stage's changes applied is the second config
    flat = [bundle_core._flat(dataclasses.asdict(read_checkpoint_config(r)[0])) for r in runs]
    applied = flat[0] | bundle_core._flat(second["changes"])
    assert {k: v for k, v in applied.items() if k not in (*bundle_core.MACHINE_KEYS, "name")} \
        == {k: v for k, v in flat[1].items() if k not in (*bundle_core.MACHINE_KEYS, "name")}
    assert second["changes"] and "cache_dir" not in second["changes"].get("data", {})
    # a stage on a bundled core whose runs are gone continues its card's chain (--after)
    assert bundle_core.config_chain(runs[1:], stages,
                                    after=read_checkpoint_config(runs[0])[0],
                                    earlier=[first]) == [first, second]


def test_weights_sha256_is_recorded_and_checked_before_bundling(bundle_core, tmp_path):
    folder = tmp_path / "core"
    shutil.copytree(bundled_checkpoints()["sudoku4"], folder)
    sha = file_sha256(folder / "model.safetensors")
    assert bundle_core.checked_weights_sha256(folder) == sha
    config = json.loads((folder / "config.json").read_text())
    del config["meta"]["weights_sha256"]  # a checkpoint saved before the hash was recorded
    (folder / "config.json").write_text(json.dumps(config))
    assert bundle_core.checked_weights_sha256(folder) == sha
    assert read_checkpoint_config(folder)[2]["weights_sha256"] == sha  # stamped now
    config["meta"]["weights_sha256"] = "0" * 64  # another file than the one recorded
    (folder / "config.json").write_text(json.dumps(config))
    with pytest.raises(SystemExit, match="restore the weights"):
        bundle_core.checked_weights_sha256(folder)


def test_after_continues_a_bundled_cores_card(bundle_core, tmp_path, monkeypatch):
    """``--after NAME``: a stage trained on a bundled core whose runs are gone is bundled
    over it, its card's stages, commands and chain first, and its halting splits kept."""
    source = bundled_checkpoints()["sudoku4"]
    bundle = tmp_path / "bundle"
    shutil.copytree(source, bundle / "core")
    old = json.loads((bundle / "core" / "card.json").read_text())
    run = tmp_path / "stage2"
    shutil.copytree(source, run)   # stands for the new stage's checkpoint
    config = json.loads((run / "config.json").read_text())
    config["meta"]["train_seconds"] = 12.5
    config["run"]["name"] = "stage2"
    config["run"]["train"]["lr"] = 0.5 * config["run"]["train"]["lr"]
    (run / "config.json").write_text(json.dumps(config))
    monkeypatch.setattr(bundle_core, "BUNDLE", bundle)
    monkeypatch.setattr(bundle_core, "test_figures", lambda folder: {"n": 0})
    monkeypatch.setattr("sys.argv", ["bundle_core.py", str(run), "core", "--after", "core",
                                     "--config", "c.md", "--command", "stage 2: train"])
    bundle_core.main()
    card = json.loads((bundle / "core" / "card.json").read_text())
    assert card["commands"] == [*old["commands"], "stage 2: train"]
    assert [s["train_seconds"] for s in card["stages"]] == [old["train_seconds"], 12.5]
    assert card["steps"] == 2 * config["meta"]["step"]   # the same checkpoint, twice
    assert card["train_seconds"] == pytest.approx(old["train_seconds"] + 12.5)
    first, second = card["config_chain"]
    assert first == old["config_chain"][0] and second["stage"] == 2
    assert second["extends"] == first["name"]
    assert second["init_from"] == card["stages"][0]["checkpoint"] == "core (bundled)"
    assert second["changes"] == {"train": {"lr": config["run"]["train"]["lr"]}}
    for name in ("halting_train.csv", "halting_val.csv"):
        assert (bundle / "core" / name).read_bytes() == (source / name).read_bytes()
    monkeypatch.setattr("sys.argv", ["bundle_core.py", str(run), "core", "--after", "nope",
                                     "--config", "c.md", "--command", "x"])
    with pytest.raises(SystemExit, match="no bundled core with a card"):
        bundle_core.main()
