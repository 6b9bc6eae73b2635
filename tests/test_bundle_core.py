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
    assert bundle_core.config_chain(runs[1:], stages, after=cores["sudoku4"],
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
