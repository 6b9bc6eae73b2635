"""The model switches a fine-tune may turn on (``hrm_rl.checkpoint.SWITCHES``):
``edge_positions`` (positions counted from an ARC grid's far edges) and ``puzzle_emb_cells``
(the puzzle embedding projected onto every cell)."""

from __future__ import annotations

import dataclasses
import importlib.util

import numpy as np
import pytest
import torch

from hrm_rl.checkpoint import architecture, load_checkpoint, switch_tensors
from hrm_rl.config import ConfigError, ModelConfig, RunConfig, TaskConfig, from_dict
from hrm_rl.model import build_model
from hrm_rl.tasks import make_task
from hrm_rl.tasks.arc.canvas import COLOR0, encode_grid


def _core(side: int = 4, **fields) -> torch.nn.Module:
    config = ModelConfig(hidden_size=8, num_heads=2, H_layers=1, L_layers=1, H_cycles=1,
                         L_cycles=1, puzzle_emb_ndim=8, pos_encodings="learned", vocab_size=12,
                         seq_len=side * side, num_puzzle_ids=2, edge_positions=True,
                         content_token=COLOR0, **fields)
    return build_model(config)


def test_each_cell_gets_the_rows_below_and_the_columns_right_of_it_in_its_grid():
    model = _core()
    with torch.no_grad():   # row i of each table: i in one coordinate, 10 * i in another
        model.embed_edge_rows.zero_()[:, 0] = torch.arange(5.0)
        model.embed_edge_cols.zero_()[:, 1] = 10 * torch.arange(5.0)
    grid = np.array([[1, 2], [3, 4], [5, 6]])            # 3 rows, 2 columns
    inputs = torch.as_tensor(encode_grid(grid, side=4)[None]).long()
    emb = model.edge_embeddings(inputs)
    assert emb.shape == (1, 1 + 16, 8) and not emb[0, 0].any()   # zeros on the prefix
    rows, cols = emb[0, 1:, 0].view(4, 4), emb[0, 1:, 1].view(4, 4)
    outside = 4   # the tables' last row
    assert rows.tolist() == [[2] * 4, [1] * 4, [0] * 4, [outside] * 4]
    assert cols.tolist() == [[10, 0, 10 * outside, 10 * outside]] * 4


@pytest.mark.parametrize("switch", ["edge_positions", "puzzle_emb_cells"])
def test_what_a_switch_adds_starts_at_zero_and_changes_nothing_until_trained(switch):
    torch.manual_seed(0)
    model = _core(puzzle_emb_cells=True)
    with torch.no_grad():
        model.puzzle_emb.normal_()   # a trained table, which the projection must not pass yet
    off = {"edge_positions": {"edge_positions": False, "content_token": 0},
           "puzzle_emb_cells": {"puzzle_emb_cells": False}}[switch]
    plain = build_model(dataclasses.replace(model.config, **off))
    added = switch_tensors(model, plain.config)
    assert added and all(not model.state_dict()[k].any() for k in added)
    plain.load_state_dict({k: v for k, v in model.state_dict().items() if k not in added})
    inputs = torch.randint(0, 12, (3, 16))
    ids = torch.tensor([0, 1, 1])
    with torch.no_grad():
        a, b = plain(plain.initial_carry(3), inputs, ids), model(model.initial_carry(3), inputs, ids)
        torch.testing.assert_close(b.logits, a.logits)
        for name in added:   # this switch's weights only (state_dict shares their storage)
            model.state_dict()[name].fill_(0.1)
        b = model(model.initial_carry(3), inputs, ids)
    assert not torch.allclose(b.logits, a.logits)   # and once trained, they count


def test_config_checks_and_older_fingerprints():
    with pytest.raises(ConfigError, match="model.edge_positions.*no grid in the corner"):
        ModelConfig(edge_positions=True).fit_to(make_task(TaskConfig(name="sudoku", size=4)))
    with pytest.raises(ConfigError, match="model.content_token.*only with model.edge_positions"):
        ModelConfig(content_token=2).validate()
    with pytest.raises(ConfigError, match="model.edge_positions.*square canvas"):
        ModelConfig(edge_positions=True, content_token=2, seq_len=12).validate()
    with pytest.raises(ConfigError, match="model.puzzle_emb_cells.*puzzle_emb_ndim is 0"):
        ModelConfig(puzzle_emb_cells=True).validate()
    # a core without them keeps the fingerprint its weights were stamped with
    off = architecture(ModelConfig())
    assert not {"edge_positions", "content_token", "puzzle_emb_cells"} & set(off)
    assert architecture(ModelConfig(edge_positions=True, content_token=2))["content_token"] == 2


@pytest.mark.skipif(importlib.util.find_spec("reasoning_gym") is None,
                    reason="reasoning-gym is not installed (scripts/venv.sh installs it)")
def test_a_fine_tune_may_turn_the_switches_on_but_not_off(tmp_path):
    from agents.trainer import ACTTrainer

    def config(on: bool, **train):
        return from_dict(RunConfig, {
            "name": "t", "task": {"name": "arc", "dataset": "rearc",
                                  "rearc_tasks": ["68b16354", "3af2c5a8"], "augmentations": 0},
            "model": {"hidden_size": 16, "num_heads": 2, "H_layers": 1, "L_layers": 1,
                      "H_cycles": 1, "L_cycles": 1, "puzzle_emb_ndim": 16,
                      "pos_encodings": "learned", "edge_positions": on,
                      "puzzle_emb_cells": on},
            "data": {"train_size": 8, "test_size": 2, "cache_dir": str(tmp_path / "data")},
            "train": {"batch_size": 4, "steps": 3, "eval_every": 100, "checkpoint_every": 3,
                      "max_segments": 2, "threads": 1, "device": "cpu", "lr": 1e-2,
                      "puzzle_emb_optimizer": "main", **train}})

    ACTTrainer(config(False), tmp_path / "plain", progress=False).fit()
    source = load_checkpoint(tmp_path / "plain").model.eval()
    tuned = ACTTrainer(config(True, init_from=str(tmp_path / "plain")), tmp_path / "edges",
                       progress=False)
    model = tuned.model.eval()
    assert model.config.content_token == COLOR0
    assert any("edge_positions False -> True, puzzle_emb_cells False -> True" in n
               for n in tuned.notes)
    added = ["embed_edge_rows", "embed_edge_cols", "puzzle_emb_to_cells.weight"]
    assert all(not model.state_dict()[k].any() for k in added)
    batch = source_task_batch(tmp_path)
    with torch.no_grad():
        want, got = source.initial_carry(len(batch)), model.initial_carry(len(batch))
        for _ in range(2):
            a, b = source(want, *batch), model(got, *batch)
            torch.testing.assert_close(b.logits, a.logits)
            want, got = a.carry, b.carry
    tuned.fit()
    assert all(tuned.model.state_dict()[k].any() for k in added)
    saved = load_checkpoint(tmp_path / "edges").model.config
    assert saved.edge_positions and saved.puzzle_emb_cells
    with pytest.raises(ValueError, match="edge_positions=true.*not off"):
        ACTTrainer(config(False, init_from=str(tmp_path / "edges")), None, progress=False)


def source_task_batch(tmp_path) -> tuple[torch.Tensor, torch.Tensor]:
    """Inputs and identifiers of the run's held-out pairs."""
    held_out = load_checkpoint(tmp_path / "plain").test_puzzles()
    return (torch.as_tensor(held_out.inputs).long(), torch.as_tensor(held_out.puzzle_ids).long())
