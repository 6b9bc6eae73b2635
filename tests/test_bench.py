"""Benchmarks: the FLOP formula equals what torch counts, memory figures, the bench CLI."""

from __future__ import annotations

import json

import numpy as np
import pytest

from hrm_rl.model.flops import counted_train_step_flops, segment_flops
from hrm_rl.bench.memory import measure_step, memory_config
from hrm_rl.bench.train import make_trainer
from hrm_rl.cli import main
from hrm_rl.config import load_config

TINY = ["task.size=4", "model.hidden_size=32", "model.num_heads=2", "model.H_layers=1",
        "model.L_layers=2", "model.H_cycles=2", "model.L_cycles=3", "train.batch_size=4",
        "train.device=cpu"]


@pytest.mark.parametrize("gradient", ["one_step", "last_recursion", "bptt"])
@pytest.mark.parametrize("max_segments", [1, 4])  # 1: no bootstrap peek forward
@pytest.mark.parametrize("puzzle_emb_ndim", [0, 48])
def test_analytic_flops_equal_the_flop_counter_on_a_real_step(gradient, max_segments,
                                                              puzzle_emb_ndim):
    config = load_config(None, TINY + [f"model.gradient={gradient}",
                                       f"train.max_segments={max_segments}",
                                       f"model.puzzle_emb_ndim={puzzle_emb_ndim}"])
    trainer = make_trainer(config, n_puzzles=16)
    flops = segment_flops(trainer.model.config, max_segments, trainer.model.prefix_len)
    assert counted_train_step_flops(trainer) == 4 * flops.train
    assert flops.backward == 2 * flops.forward_grad
    assert (flops.peek > 0) == (max_segments > 1)
    if gradient == "bptt":
        assert flops.forward_no_grad == 0


@pytest.mark.parametrize("kind", ["hrm", "trm"])
def test_memory_one_step_is_flat_last_recursion_grows_with_l_and_bptt_with_h_times_l(kind):
    def saved(cycles, gradient):
        return measure_step(memory_config(cycles, gradient, hidden=32, layers=1, batch=2,
                                          device="cpu", threads=1, kind=kind))["saved_mib"]

    assert saved(1, "one_step") == saved(3, "one_step")
    assert saved(1, "last_recursion") < saved(3, "last_recursion") < saved(3, "bptt")
    assert saved(3, "bptt") > 4 * saved(1, "bptt")


@pytest.fixture
def tiny(tmp_path):
    """A tiny-config YAML small enough for a bench to run in seconds."""
    path = tmp_path / "tiny.yaml"
    path.write_text("task: {name: sudoku, size: 4}\n"
                    "model: {hidden_size: 32, num_heads: 2, H_layers: 1, L_layers: 1}\n"
                    "train: {batch_size: 8}\n")
    return path


def test_bench_train_cli_prints_json(tiny, capsys):
    assert main(["bench", "train", "--tiny-config", str(tiny), "--no-paper", "--no-compile",
                 "--no-omp-probe", "--seconds", "0.2", "--threads", "1"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["flop_check"]["ratio"] == 1.0
    assert set(out["tiny"]["variants"]) == {"plain", "onednn_matmul", "fused_adamw", "defaults",
                                            "defaults_fp32", "bf16"}  # no compile variants
    plain = out["tiny"]["variants"]["plain"]
    assert plain["segments_per_s"] > 0 and 0 < plain["mfu"]
    assert out["tiny"]["speed_vs_plain"]["plain"] == 1.0
    assert set(out["tiny"]["speed_vs_plain_by_round"]["defaults"]) == {"median", "min", "max"}
    assert out["matmul_peak_gflops"]["fp32"]["gflops"] > 0
    assert set(out["bf16_matmul_units"]) == {"amx_bf16", "avx512_bf16"}
    assert out["tiny"]["variants"]["plain"]["mfu_by_round"]["fp32"] > 0
    assert "mfu_by_round" not in out["tiny"]["variants"]["bf16"]
    assert out["tiny"]["variants"]["defaults_fp32"]["mfu_by_round"]["fp32"] > 0
    # the defaults resolve train.precision: auto as the trainer does, and say so
    defaults = out["tiny"]["variants"]["defaults"]
    assert defaults["precision"] == out["precision_auto"].split()[0] in ("fp32", "bf16")
    assert ("mfu_by_round" in defaults) == (defaults["precision"] == "fp32")


@pytest.mark.slow
def test_env_roofline_puts_the_batched_env_below_the_matmul_peak():
    from hrm_rl.bench.env import batched_env, roofline

    measured = batched_env(64, "sudoku4", seconds=0.3)
    line = roofline("sudoku4", vector_env_256=measured, sync_vector_env_256=measured / 10)
    per_segment, peak = line["segment_forward_flops"], line["matmul_peak_gflops"]
    # sudoku4's core (h128, 2x2 cycles of 1+1 layers, 16 tokens): 32.3 MFLOP a segment
    assert per_segment == pytest.approx(32.3e6, rel=0.01)
    assert line["vector_env_256_gflops"] == pytest.approx(measured * per_segment / 1e9, abs=0.01)
    assert line["fraction_of_peak"] == pytest.approx(measured * per_segment / (peak * 1e9),
                                                     abs=1e-3)
    assert 0 < line["fraction_of_peak"] < 1.0  # a real env cannot beat the matmul peak
    assert line["segments_per_s_at_peak"] == pytest.approx(peak * 1e9 / per_segment, rel=1e-3)
    assert line["ratio_to_sync_vector_env_256_at_peak"] == pytest.approx(
        10 * line["segments_per_s_at_peak"] / measured, rel=1e-2)


def test_recipe_val_is_drawn_from_the_whole_training_set(tmp_path):
    from hrm_rl.bench.recipe import make_variant
    from hrm_rl.tasks import make_task
    from hrm_rl.tasks.splits import build_splits

    small = ["model.hidden_size=32", "model.num_heads=2", "data.train_size=120",
             "data.test_size=10"]
    trainer = make_variant("base", 2, 1, None, str(tmp_path), 20, small)
    full, _ = build_splits(make_task(trainer.config.task), trainer.config.data)
    rows = {bytes(r): i for i, r in enumerate(full.inputs)}
    val = sorted(rows[bytes(r)] for r in trainer.test_set.inputs)
    train = sorted(rows[bytes(r)] for r in trainer.train_set.inputs)
    assert len(val) == 20 and sorted(val + train) == list(range(120))
    assert val != list(range(100, 120))   # not the tail: an ordered split (re-arc's, by task)
    assert max(val) - min(val) > 60       # would put one task in val
    again = make_variant("lr5e-4", 2, 1, None, str(tmp_path), 20, small)
    assert np.array_equal(again.test_set.inputs, trainer.test_set.inputs)  # same val rows


def test_recipe_bench_alternates_variants_and_scores_on_val(tmp_path, capsys):
    small = ["model.hidden_size=32", "model.num_heads=2", "train.batch_size=8",
             "data.train_size=120", "data.test_size=10", "train.max_segments=2",
             "train.eval_batch_size=64"]
    args = ["bench", "recipe", "--variants", "base,lr5e-4", "--seconds", "2", "--slice-s", "0.5",
            "--eval-every-s", "1", "--val-size", "20", "--cache-dir", str(tmp_path),
            "--cell-targets", "0.05", "--out", str(tmp_path / "recipe.json")]
    for item in small:
        args += ["--set", item]
    assert main(args) == 0
    report = json.loads(capsys.readouterr().out)
    assert [r["variant"] for r in report["results"]] == ["base", "lr5e-4"]
    for r in report["results"]:
        seconds = [p["seconds"] for p in r["curve"]]
        assert len(seconds) >= 2 and seconds == sorted(seconds) and seconds[-1] >= 2
        assert all(0 <= p["exact_acc_qhalt"] <= 1 for p in r["curve"])
    assert "time to 50%" in report["markdown"] and "time to 5% cells" in report["markdown"]
    # cells at the cap are above 5% once trained a little; the written report is the printed one
    assert all(r["time_to_cells"]["0.05"] is not None for r in report["results"])
    assert json.loads((tmp_path / "recipe.json").read_text()) == report
    assert main(["bench", "recipe", "--variants", "nope"]) == 2
    with pytest.raises(SystemExit) as refused:  # a usage error, as the other bench options
        main(["bench", "recipe", "--variants", "base", "--cell-targets", "90"])
    assert refused.value.code == 2
    assert "--cell-targets" in capsys.readouterr().err


def test_bench_profile_cli_prints_shares_by_phase_kind_and_shape(tiny, capsys):
    assert main(["bench", "profile", "--tiny-config", str(tiny), "--steps", "1",
                 "--threads", "1", "--variant", "plain", "--shapes"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert (out["variant"], out["matmul"], out["fused_optimizer"]) == ("plain", "aten", False)
    assert {"forward", "peek", "backward", "optimizer"} <= set(out["share_by_phase"])
    assert out["share_by_kind"]["matmul"] > 0
    assert any(row["op"] == "aten::mm" for row in out["top_ops_by_shape_self_ms_per_step"])
