"""The reference's checkpoints as cores (``hrm_rl.reference_import``): a folder as pretrain.py
writes it (``all_config.yaml`` + ``step_N``/``checkpoint``, compiled loss-head names, bfloat16
initial states) loads as the model it was made from, converts to a core folder the whole
toolchain uses, and every bad folder is a clear error naming its file. The fake checkpoints
are our own tiny models under the reference's names; with ``$HRM_REFERENCE_DIR`` set, the
paper-shape check against the reference's own code runs too (slow)."""

from __future__ import annotations

import hashlib
import json
import os
import sys
import types

import gymnasium as gym
import numpy as np
import pytest
import torch

import hrm_rl  # noqa: F401  (registers the envs)
from hrm_rl import reference_import as RI
from hrm_rl.bench import reference as R
from hrm_rl.checkpoint import load_checkpoint, weights_sha256
from hrm_rl.cli import main
from hrm_rl.config import ModelConfig, TaskConfig
from hrm_rl.model import build_model
from hrm_rl.tasks import make_task
from hrm_rl.trace import load_trace

ARCH = {"hidden_size": 32, "num_heads": 2, "H_layers": 1, "L_layers": 2, "expansion": 4}
SHAPES = {"sudoku": (11, 81), "maze": (6, 900)}


class NotATensor:
    """Pickled into a weights file: ``torch.load(weights_only=True)`` must refuse it."""


def fake_reference(folder, task="sudoku", arch=None, prefix="_orig_mod.model.",
                   name="step_7", seq_len=None, extra=None):
    """A reference checkpoint folder made from our own tiny model; returns that model (with
    the bfloat16-rounded initial states the file holds)."""
    arch = {**ARCH, **(arch or {})}
    vocab, seq = SHAPES[task]
    torch.manual_seed(0)
    model = build_model(ModelConfig(
        hidden_size=arch["hidden_size"], num_heads=arch["num_heads"],
        H_layers=arch["H_layers"], L_layers=arch["L_layers"], expansion=arch["expansion"],
        puzzle_emb_ndim=arch["hidden_size"], pos_encodings=arch.get("pos_encodings", "rope"),
        vocab_size=vocab, seq_len=seq_len or seq, num_puzzle_ids=1)).eval()
    with torch.no_grad():
        model.puzzle_emb.normal_(0.0, 0.2)
        model.q_head.weight.normal_(0.0, 0.3)
        for init in (model.H_init, model.L_init):  # bfloat16 buffers in the released files
            init.copy_(init.to(torch.bfloat16).float())
    state = {f"{prefix}{R.reference_name(k)}": v.clone() for k, v in model.state_dict().items()}
    for key in state:
        if key.endswith(("H_init", "L_init")):
            state[key] = state[key].to(torch.bfloat16)
    state.update(extra or {})
    config = R.pretrain_config(task, arch)
    R.save_as_pretrain(folder, state, config, 7)
    if name != "step_7":
        (folder / "step_7").rename(folder / name)
    return model


def _same_outputs(a, b, inputs, segments=3):
    carry_a, carry_b = a.initial_carry(len(inputs)), b.initial_carry(len(inputs))
    ids = torch.zeros(len(inputs), dtype=torch.long)
    with torch.inference_mode():
        for _ in range(segments):
            out_a, out_b = a(carry_a, inputs, ids), b(carry_b, inputs, ids)
            assert torch.equal(out_a.logits, out_b.logits)
            assert torch.equal(out_a.q_halt, out_b.q_halt)
            assert torch.equal(out_a.q_continue, out_b.q_continue)
            carry_a, carry_b = out_a.carry, out_b.carry


def _sudoku_csv(path, n=6, ratings=True):
    """``n`` 9x9 puzzles in Sudoku-Extreme's CSV format (``.`` blanks, integer ratings)."""
    task = make_task(TaskConfig(name="sudoku", size=9))
    from hrm_rl.config import DataConfig

    batch = task.sample(n, DataConfig(max_givens=30), np.random.default_rng(1))
    task.write_csv(path, batch)
    if ratings:
        lines = path.read_text().splitlines()
        path.write_text("\n".join([lines[0]] + [line.rsplit(",", 1)[0] + f",{7 * i}"
                                                for i, line in enumerate(lines[1:])]) + "\n")
    return path


# --- names, prefixes, shapes ---------------------------------------------------------------
@pytest.mark.parametrize("prefix", ["_orig_mod.model.", "model.", "", "module._orig_mod.model."])
def test_a_pretrain_folder_loads_as_the_model_it_was_made_from(tmp_path, prefix):
    ours = fake_reference(tmp_path, prefix=prefix)
    ckpt = load_checkpoint(tmp_path)
    assert ckpt.task.name == "sudoku9" and ckpt.path == tmp_path
    assert ckpt.meta["reference_weights"] == "step_7"
    got = ckpt.model.state_dict()
    assert all(torch.equal(v, got[k]) for k, v in ours.state_dict().items())
    _same_outputs(ours, ckpt.model, torch.randint(1, 11, (3, 81)))


def test_shapes_come_from_the_tensors_and_the_rest_from_all_config(tmp_path):
    fake_reference(tmp_path, extra={
        "_orig_mod.model.inner.puzzle_emb.local_weights": torch.zeros(4, 32),  # not persistent
        "_orig_mod.model.inner.puzzle_emb.local_ids": torch.zeros(4, dtype=torch.int32)})
    config = load_checkpoint(tmp_path).config
    m = config.model
    assert (m.hidden_size, m.H_layers, m.L_layers, m.puzzle_emb_ndim, m.num_heads) == \
        (32, 1, 2, 32, 2)
    assert (m.H_cycles, m.L_cycles, m.expansion, m.pos_encodings) == (2, 2, 4.0, "rope")
    t = config.train
    assert (t.max_segments, t.loss, t.lr, t.batch_size, t.precision) == \
        (16, "stablemax", 7e-5, 384, "fp32")


def test_strip_wrappers_reaches_the_inner_names():
    state = {"_orig_mod.model.inner.lm_head.weight": 1, "module.model.inner.H_init": 2,
             "model.inner.puzzle_emb.local_ids": 3, "inner.q_head.bias": 4}
    assert RI.strip_wrappers(state) == {"inner.lm_head.weight": 1, "inner.H_init": 2,
                                        "inner.q_head.bias": 4}


def test_a_maze_checkpoint_takes_its_side_from_learned_positions_else_30(tmp_path):
    fake_reference(tmp_path / "m6", "maze", {"pos_encodings": "learned"}, seq_len=36)
    assert load_checkpoint(tmp_path / "m6").task.name == "maze6"
    ours = fake_reference(tmp_path / "m30", "maze", name="checkpoint")  # as released
    ckpt = load_checkpoint(tmp_path / "m30")
    assert ckpt.task.name == "maze30" and ckpt.model.config.seq_len == 900
    _same_outputs(ours, ckpt.model, torch.randint(1, 6, (1, 900)), segments=1)


def test_both_tasks_encode_the_datasets_csv_as_the_reference_builders_do(tmp_path):
    sudoku = _sudoku_csv(tmp_path / "sudoku.csv")
    assert "." in sudoku.read_text()  # Sudoku-Extreme's blanks
    maze_task = make_task(TaskConfig(name="maze", size=30))
    from hrm_rl.config import load_config

    maze = tmp_path / "maze.csv"
    maze_task.write_csv(maze, maze_task.sample(3, load_config("maze30-hard").data,
                                               np.random.default_rng(0)))
    for name, path, task in (("sudoku", sudoku, make_task(TaskConfig(name="sudoku"))),
                             ("maze", maze, maze_task)):
        ours, theirs = task.read_csv(path), R.reference_encoding(name, path.read_text())
        assert np.array_equal(ours.inputs, theirs["inputs"].numpy())
        assert np.array_equal(ours.labels, theirs["labels"].numpy())


def test_sudoku_extreme_ratings_become_the_difficulty(tmp_path):
    task = make_task(TaskConfig(name="sudoku", size=9))
    rated = task.read_csv(_sudoku_csv(tmp_path / "rated.csv"))
    assert rated.ratings.tolist() == [0, 7, 14, 21, 28, 35]
    assert task.difficulty(rated).tolist() == [0, 7, 14, 21, 28, 35]
    assert task.difficulty_label(rated) == "rating"
    assert task.difficulty(rated.take(slice(2, 4))).tolist() == [14, 21]
    task.write_csv(tmp_path / "again.csv", rated)  # a trace's puzzle CSV keeps them
    assert task.read_csv(tmp_path / "again.csv").ratings.tolist() == rated.ratings.tolist()
    plain = task.read_csv(_sudoku_csv(tmp_path / "plain.csv", ratings=False))
    assert plain.ratings is None and task.difficulty_label(plain) == "givens"
    assert task.difficulty(plain).tolist() == (plain.inputs >= 2).sum(1).tolist()


# --- the core folder and the toolchain on it -----------------------------------------------
def test_import_reference_writes_a_core_the_toolchain_uses(tmp_path, capsys):
    ours = fake_reference(tmp_path / "ref")
    csv = _sudoku_csv(tmp_path / "test.csv")
    core = tmp_path / "cores" / "hrm-sudoku"
    assert main(["import-reference", str(tmp_path / "ref"), "--task", "sudoku", "--out",
                 str(core), "--test", str(csv)]) == 0
    sha = hashlib.sha256((tmp_path / "ref" / "step_7").read_bytes()).hexdigest()
    assert json.loads(capsys.readouterr().out)["reference_weights_sha256"] == sha
    card = json.loads((core / "card.json").read_text())
    assert card["reference_weights_sha256"] == sha and card["task"] == "sudoku9"
    assert "hrm-rl import-reference" in card["commands"][0]
    assert sorted(p.name for p in (tmp_path / "cores").iterdir()) == ["hrm-sudoku"]  # no temp
    assert oct(core.stat().st_mode & 0o777) == "0o755"
    ckpt = load_checkpoint(core)
    _same_outputs(ours, ckpt.model, torch.randint(1, 11, (2, 81)))
    assert weights_sha256(tmp_path / "ref") == sha
    assert ckpt.puzzles("test").ratings is not None

    assert main(["import-reference", str(tmp_path / "ref"), "--task", "sudoku", "--out",
                 str(core)]) == 2  # refused, as every command refuses an existing output
    assert "exists" in capsys.readouterr().err

    assert main(["eval", str(core), "--data", "test", "--max-segments", "2",
                 "--no-progress"]) == 0
    assert json.loads(capsys.readouterr().out)["n"] == 6
    env = gym.make("HRM-Sudoku-v0", checkpoint=str(core), split=str(csv), max_segments=3)
    obs, info = env.reset(seed=0)
    obs, reward, terminated, truncated, info = env.step(1)
    assert terminated and "is_success" in info
    npz = tmp_path / "rollouts.npz"
    assert main(["rollouts", "record", str(core), "--split", str(csv), "--out", str(npz),
                 "--max-segments", "2", "--no-progress"]) == 0
    trace, _ = load_trace(npz)
    assert trace.max_segments == 2 and trace.identity["weights_sha256"] == \
        json.loads((core / "config.json").read_text())["meta"]["weights_sha256"]

    for name in ("halting_train.csv", "halting_val.csv"):  # shipped: nothing is generated
        (core / name).write_bytes(_sudoku_csv(tmp_path / name, n=8).read_bytes())
    from hrm_rl.agents.haltbench import haltbench

    board = haltbench([str(core)], costs=(0.01,), tracks=("verifier-free",), rl="none",
                      cache_dir=None, train_episodes=8, progress=False, log=None)
    assert board["boards"] and board["boards"][0]["entries"]


def test_hf_sources_download_through_huggingface_hub(tmp_path, monkeypatch):
    fake_reference(tmp_path / "snapshot", name="checkpoint")
    calls = []
    hub = types.ModuleType("huggingface_hub")

    def snapshot_download(repo_id, revision=None):
        calls.append((repo_id, revision))
        return str(tmp_path / "snapshot")

    hub.snapshot_download = snapshot_download
    monkeypatch.setitem(sys.modules, "huggingface_hub", hub)
    spec = "hf://sapientinc/HRM-checkpoint-sudoku-extreme"
    assert load_checkpoint(spec).task.name == "sudoku9"
    RI.import_reference(spec + "@main", "sudoku", tmp_path / "core")
    assert calls[-1] == ("sapientinc/HRM-checkpoint-sudoku-extreme", "main")
    assert json.loads((tmp_path / "core" / "card.json").read_text())["source"] == spec + "@main"

    def offline(repo_id, revision=None):
        raise OSError("We couldn't connect to 'https://huggingface.co'")

    hub.snapshot_download = offline
    with pytest.raises(ValueError, match="could not download.*pass the folder DIR instead"):
        RI.convert(spec)
    monkeypatch.setitem(sys.modules, "huggingface_hub", None)  # not installed
    with pytest.raises(ValueError, match="needs the huggingface_hub package.*pass the folder"):
        RI.convert(spec)
    with pytest.raises(ValueError, match="hf://OWNER/NAME"):
        RI.convert("hf://just-a-name")


# --- bad folders: each a clear error naming the file ---------------------------------------
def test_a_folder_without_all_config_is_refused_naming_it(tmp_path, capsys):
    fake_reference(tmp_path)
    (tmp_path / "all_config.yaml").unlink()
    with pytest.raises(FileNotFoundError, match=r"all_config\.yaml: not found"):
        load_checkpoint(tmp_path)
    assert main(["import-reference", str(tmp_path), "--task", "sudoku", "--out",
                 str(tmp_path / "core")]) == 2
    assert str(tmp_path / "all_config.yaml") in capsys.readouterr().err
    assert not (tmp_path / "core").exists()
    with pytest.raises(FileNotFoundError, match=r"all_config\.yaml: not found"):
        load_checkpoint(tmp_path / "step_7")  # the weights file alone


def test_folders_without_weights_or_with_two_kinds_are_refused(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match="no reference weights file"):
        RI.convert(tmp_path / "empty")
    fake_reference(tmp_path / "both")
    (tmp_path / "both" / "checkpoint").write_bytes((tmp_path / "both" / "step_7").read_bytes())
    with pytest.raises(ValueError, match="both 'checkpoint' and step_<N>"):
        RI.convert(tmp_path / "both")
    assert RI.convert(tmp_path / "both" / "step_7").weights.name == "step_7"  # named: fine


def test_newest_step_file_is_taken(tmp_path):
    fake_reference(tmp_path)
    (tmp_path / "step_12").write_bytes((tmp_path / "step_7").read_bytes())
    (tmp_path / "step_12_all_preds.0").write_bytes(b"predictions, not weights")
    assert RI.convert(tmp_path).weights.name == "step_12"


@pytest.mark.parametrize("change, match", [
    ({"expansion": 16}, r"step_7: the reference's weights do not map onto ours.*shapes differ"),
    ({"hidden_size": 64}, r"all_config\.yaml: arch\.hidden_size is 64, the weights have 32"),
    ({"H_layers": 3}, r"all_config\.yaml: arch\.H_layers is 3"),
])
def test_an_all_config_that_does_not_fit_the_tensors_is_refused(tmp_path, change, match):
    fake_reference(tmp_path)
    import yaml

    config = yaml.safe_load((tmp_path / "all_config.yaml").read_text())
    config["arch"].update(change)
    (tmp_path / "all_config.yaml").write_text(yaml.dump(config))
    with pytest.raises(ValueError, match=match):
        load_checkpoint(tmp_path)


@pytest.mark.parametrize("content, match", [
    ([1, 2, 3], r"step_7: expected a state dict .*got list"),
    ({"_orig_mod.model.inner.x": NotATensor()}, r"step_7: refused by torch\.load\(weights_only"),
    (b"\x00garbage", r"step_7: not a torch weights file"),
    ({"optimizer.state": torch.zeros(1)}, r"step_7: tensors outside the reference model"),
])
def test_weights_that_are_no_state_dict_are_refused_naming_the_file(tmp_path, content, match):
    fake_reference(tmp_path)
    path = tmp_path / "step_7"
    if isinstance(content, bytes):
        path.write_bytes(content)
    else:
        torch.save(content, path)
    with pytest.raises(ValueError, match=match):
        load_checkpoint(tmp_path)


def test_a_config_that_is_not_the_references_is_refused(tmp_path):
    fake_reference(tmp_path)
    (tmp_path / "all_config.yaml").write_text("lr: 1.0\n")
    with pytest.raises(ValueError, match=r"all_config\.yaml: expected the reference's "):
        load_checkpoint(tmp_path)
    (tmp_path / "all_config.yaml").write_text("arch: {name: trm@TRM}\n")
    with pytest.raises(ValueError, match="only the reference's hrm.hrm_act_v1"):
        load_checkpoint(tmp_path)


def test_the_wrong_task_is_refused_by_vocabulary(tmp_path):
    fake_reference(tmp_path)
    with pytest.raises(ValueError, match="vocabulary of 11 tokens, task maze30 has 6.*sudoku"):
        RI.convert(tmp_path, "maze")


def test_arc_needs_identifiers_json_and_is_then_refused_saying_why(tmp_path, capsys):
    fake_reference(tmp_path)
    assert main(["import-reference", str(tmp_path), "--task", "arc", "--out",
                 str(tmp_path / "core")]) == 2
    err = capsys.readouterr().err
    assert str(tmp_path / "identifiers.json") in err and "build_arc_dataset.py" in err
    (tmp_path / "identifiers.json").write_text(json.dumps(["<blank>", "007bbfb7|||t1|||0"]))
    with pytest.raises(ValueError, match="ARC checkpoints cannot be imported faithfully"):
        RI.convert(tmp_path, "arc")


# --- against the reference's own code (needs a checkout) ------------------------------------
REFERENCE = os.environ.get(R.ENV_VAR)


@pytest.mark.slow
@pytest.mark.skipif(not REFERENCE or bool(R.missing_reference_files(REFERENCE)),
                    reason=f"set {R.ENV_VAR} to a checkout of {R.REFERENCE_URL}")
@pytest.mark.parametrize("task, batch, segments", [("sudoku", 2, 16), ("maze", 1, 4)])
def test_paper_shape_checkpoints_written_by_the_reference_import_exactly(task, batch, segments):
    torch.set_num_threads(2)
    out = R.check_import(R.load_reference(REFERENCE), "cpu", (task,), segments, train_steps=1,
                         batches={task: batch})
    result = out["tasks"][task]
    assert out["equal"], result
    assert result["float64"]["max_rel"] <= 1e-6 and result["float32"]["max_rel"] <= 1e-5
    assert result["H_init_dtype"] == "bfloat16" and result["encodings_equal"]
    assert result["float64"]["halting"]["decisions"] == batch * segments
