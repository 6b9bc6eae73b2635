"""Training throughput of the ACT trainer and its model FLOP utilisation; prints one JSON object.

For the tiny config (``configs/sudoku4-tiny.yaml``) and the paper config
(``configs/sudoku9-extreme.yaml``, a few steps at a small batch on a CPU) it measures, in one
run and on the same threads:

- puzzle-segments/s of ``ACTTrainer.train_step`` (one segment on every row, the bootstrap
  peek, backward and optimiser step) for each speed option (``SPEED_VARIANTS``): the plain
  eager fp32 step (``plain``: ``F.linear`` on the BLAS, the unfused AdamW: the step before
  these options existed), each option alone, the defaults, bf16 autocast and the
  ``torch.compile`` modes; the variants are timed in interleaved rounds, so a change in the
  machine's load affects them alike and their *ratios* (``speed_vs_plain``) stay
  meaningful; each variant's first loss shows that it computes the same step;
- the FLOPs of one training segment counted from the config (``flops.segment_flops``),
  cross-checked against ``torch.utils.flop_counter`` on a real step;
- the machine's ``torch.mm`` peak in fp32 and bf16, fp32 matmuls under bf16 autocast, the
  fp32 peak of the oneDNN product the default ``train.matmul`` uses, and which bf16 matrix
  units the CPU has (``hrm_rl.device.bf16_matmul_units``);
- model FLOP utilisation (MFU): achieved FLOP/s over the ``torch.mm`` peak of the variant's
  precision (``mfu``), and for fp32 also over the oneDNN fp32 peak (``mfu_vs_onednn_peak``:
  where oneDNN beats the BLAS, the attainable fp32 rate). On a shared machine whose speed
  drifts, ``mfu_by_round`` is the steadier figure: a short matmul probe after every round,
  and the median over rounds of each fp32 variant's FLOP/s over that round's probe.

The puzzles are random tokens in the task's vocabulary: what a step costs does not depend on
their content, and no puzzle generation or disk cache is needed.

    hrm-rl bench train [--seconds 6] [--threads 2] [--no-compile] [--no-paper]
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

from hrm_rl.model.flops import (autocast_linear_gflops, counted_train_step_flops,
                                matmul_gflops, matmul_peak_gflops, onednn_mm, segment_flops)
from hrm_rl.cli_types import int_in, positive_float, positive_int
from hrm_rl.config import RunConfig, load_config
from hrm_rl.cpu_defaults import choose_matmul, choose_precision, cpu_info
from hrm_rl.device import bf16_matmul_units, resolve_device
from hrm_rl.model import onednn
from hrm_rl.tasks import PuzzleBatch, make_task

TINY_CONFIG = "configs/sudoku4-tiny.yaml"
PAPER_CONFIG = "configs/sudoku9-extreme.yaml"

PLAIN: dict[str, Any] = {"precision": "fp32", "compile": False, "matmul": "aten",
                         "fused_optimizer": False}
"""The plain eager fp32 step: every speed option off."""
SPEED_VARIANTS: dict[str, dict[str, Any]] = {
    "plain": PLAIN,
    "onednn_matmul": {**PLAIN, "matmul": "onednn"},
    "fused_adamw": {**PLAIN, "fused_optimizer": True},
    "defaults": {**PLAIN, "precision": "auto", "matmul": "auto", "fused_optimizer": True},
    "defaults_fp32": {**PLAIN, "matmul": "auto", "fused_optimizer": True},
    "bf16": {**PLAIN, "precision": "bf16", "fused_optimizer": True},
    "compile_model": {**PLAIN, "matmul": "auto", "fused_optimizer": True, "compile": "model"},
    "compile_blocks": {**PLAIN, "matmul": "auto", "fused_optimizer": True,
                       "compile": "blocks"},
    "compile_model_aten": {**PLAIN, "fused_optimizer": True, "compile": "model"},
    "compile_max_autotune": {**PLAIN, "fused_optimizer": True, "compile": "max-autotune"},
    "compile_blocks_bf16": {**PLAIN, "precision": "bf16", "fused_optimizer": True,
                            "compile": "blocks"},
}
"""``train`` settings of each timed variant (name -> changes); ``defaults`` are the
``TrainConfig`` defaults (bf16 where the CPU has bf16 units), ``defaults_fp32`` the same in
fp32 (what the defaults are on a CPU without them). ``compile_model_aten`` and
``compile_max_autotune`` leave the products to inductor (the BLAS, or inductor's own GEMM
kernels)."""


def random_puzzles(vocab_size: int, seq_len: int, n: int, seed: int = 0) -> PuzzleBatch:
    """``n`` puzzles of random tokens: inputs in ``1..vocab-1``, labels in ``2..vocab-1``."""
    rng = np.random.default_rng(seed)
    return PuzzleBatch(rng.integers(1, vocab_size, (n, seq_len)),
                       rng.integers(2, vocab_size, (n, seq_len)), np.zeros(n, dtype=np.int64))


def load_bench_config(path: str | None, fallback: str, overrides: list[str]) -> RunConfig:
    """``path`` if given, else ``fallback`` (a repo config) if it exists, else a built-in.

    An installed package has no ``configs/`` folder: then the tiny config is the bundled
    ``sudoku4`` checkpoint's (which that YAML produced) and the paper config is the
    ``RunConfig`` defaults (the paper's model) on 9x9 Sudoku.
    """
    if path is not None or Path(fallback).is_file():
        return load_config(path or fallback, overrides)
    if fallback == TINY_CONFIG:
        from hrm_rl.checkpoint import load_checkpoint
        from hrm_rl.config import apply_overrides, from_dict

        base = load_checkpoint("sudoku4").config.to_dict()
        for section in ("vocab_size", "seq_len", "num_puzzle_ids"):
            base["model"][section] = 0
        config = from_dict(RunConfig, apply_overrides(base, overrides))
        config.validate()
        return config
    return load_config(None, ["task.size=9", "train.precision=bf16", "train.max_segments=16",
                              "train.optimizer=adam_atan2", *overrides])


def make_trainer(config: RunConfig, n_puzzles: int = 2048):
    """An ``ACTTrainer`` (no outputs, no progress bar) on random puzzles for ``config``,
    augmentation off (random tokens are not puzzles: a maze's relabelling needs a path)."""
    from hrm_rl.agents.trainer import ACTTrainer

    config = copy.deepcopy(config)
    config.data.augment = False
    task = make_task(config.task)
    puzzles = random_puzzles(task.vocab_size, task.seq_len, n_puzzles, config.train.seed)
    return ACTTrainer(config, None, progress=False, splits=(puzzles, puzzles.take(slice(0, 8))))


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


class _Variant:
    """One trainer being timed: accumulates steps and seconds over the rounds."""

    def __init__(self, name: str, config: RunConfig, warmup: int) -> None:
        """Build the trainer and run ``warmup`` (>= 1) untimed steps."""
        self.name = name
        self.config = config
        self.trainer = make_trainer(config)
        self.config = self.trainer.config   # with train.matmul and precision: auto resolved
        start = time.perf_counter()
        # The first step's loss, identical seeds in every variant: shows whether a precision
        # or compile variant computes the same thing.
        self.first_lm_loss = self.trainer.train_step().lm_loss
        for _ in range(warmup - 1):
            self.trainer.train_step()
        _sync(self.trainer.device)
        self.warmup_s = time.perf_counter() - start
        self.steps = 0
        self.seconds = 0.0
        self.round_rates: list[float] = []  # steps/s of each round

    def run(self, seconds: float, max_steps: int | None) -> None:
        """Time steps until ``seconds`` have passed (at least one step), or, when
        ``max_steps`` is given, until this variant has run that many timed steps in all."""
        start, before = time.perf_counter(), self.steps
        while True:
            self.trainer.train_step()
            self.steps += 1
            _sync(self.trainer.device)
            elapsed = time.perf_counter() - start
            if (self.steps >= max_steps) if max_steps is not None else elapsed >= seconds:
                break
        self.seconds += elapsed
        self.round_rates.append((self.steps - before) / elapsed)

    def result(self, flops_per_segment: int, peaks: dict[str, float]) -> dict[str, Any]:
        """Throughput, achieved GFLOP/s and MFU against the peak of the variant's precision
        (and for fp32 also against ``peaks["fp32_onednn"]``, when given)."""
        t = self.config.train
        segments_per_s = self.steps * t.batch_size / self.seconds
        achieved = segments_per_s * flops_per_segment / 1e9
        peak_gflops = peaks[t.precision]
        extra = ({"mfu_vs_onednn_peak": round(achieved / peaks["fp32_onednn"], 4)}
                 if t.precision == "fp32" and peaks.get("fp32_onednn") else {})
        return {"precision": t.precision, "compile": t.compile, "matmul": t.matmul,
                "fused_optimizer": t.fused_optimizer, "batch_size": t.batch_size,
                "steps": self.steps, "seconds": round(self.seconds, 2),
                "warmup_s": round(self.warmup_s, 1),
                "first_step_lm_loss": round(self.first_lm_loss, 6),
                "segments_per_s": round(segments_per_s, 2),
                "step_ms": round(1000 * self.seconds / self.steps, 1),
                "achieved_gflops": round(achieved, 2),
                "mfu": round(achieved / peak_gflops, 4), **extra}


def with_train(config: RunConfig, **changes: Any) -> RunConfig:
    """A copy of ``config`` with ``train`` fields changed (validated)."""
    config = copy.deepcopy(config)
    for key, value in changes.items():
        setattr(config.train, key, value)
    config.validate()
    return config


def bench_config(label: str, base: RunConfig, variants: dict[str, dict[str, Any]],
                 peaks: dict[str, float], seconds: float, rounds: int = 3,
                 max_steps: int | None = None, warmup: int = 2,
                 probe: Callable[[], dict[str, float]] | None = None) -> dict[str, Any]:
    """Time every variant (name -> ``train`` changes) of one config in interleaved rounds.

    Each variant gets ``seconds / rounds`` per round (at least one step), or stops once it
    has run ``max_steps`` timed steps. The first variant is the reference for the ratios:
    ``speed_vs_<first>`` over all rounds, and ``speed_vs_<first>_by_round`` (median, min
    and max of the ratio within a round, where the machine's load was the same). With a
    ``probe`` (short matmul peaks, ``peak_probe``) run after every round, each fp32
    variant also gets ``mfu_by_round``: the median over rounds of its FLOP/s over that
    round's peaks, which a change of load between the peak and the timing cannot skew.
    """
    built = [_Variant(name, with_train(base, **changes),
                      warmup + (2 if changes.get("compile") else 0))
             for name, changes in variants.items()]
    probes = []
    for _ in range(rounds):
        for v in built:
            v.run(seconds / rounds, max_steps)
        if probe is not None:
            probes.append(probe())
    model = built[0].trainer.model
    flops = segment_flops(model.config, base.train.max_segments, model.prefix_len)
    out: dict[str, Any] = {
        "config": label, "parameters": model.num_parameters(),
        "model": {k: getattr(model.config, k) for k in
                  ("hidden_size", "H_layers", "L_layers", "H_cycles", "L_cycles", "seq_len",
                   "gradient")},
        "halt_max_steps": base.train.max_segments,
        "flops_per_segment": flops.to_dict(),
        "variants": {v.name: v.result(flops.train, peaks) for v in built},
    }
    figures = out["variants"]
    out["fastest"] = max(figures, key=lambda k: figures[k]["segments_per_s"])
    ref = built[0].name
    out[f"speed_vs_{ref}"] = {k: round(v["segments_per_s"] / figures[ref]["segments_per_s"], 3)
                              for k, v in figures.items()}
    out[f"speed_vs_{ref}_by_round"] = {v.name: _spread([mine / theirs for mine, theirs in
                                                       zip(v.round_rates, built[0].round_rates)])
                                       for v in built[1:]}
    if probes:
        out["peak_probe_gflops_by_round"] = {k: _spread([p[k] for p in probes])
                                             for k in probes[0]}
        for v in built:
            if v.config.train.precision != "fp32":
                continue
            achieved = [rate * v.config.train.batch_size * flops.train / 1e9
                        for rate in v.round_rates]
            figures[v.name]["mfu_by_round"] = {
                k: round(float(np.median([a / p[k] for a, p in zip(achieved, probes)])), 4)
                for k in probes[0]}
    return out


def peak_probe(device: torch.device, n: int = 512, seconds: float = 0.15) -> dict[str, float]:
    """A short fp32 matmul peak: ``torch.mm`` (``fp32``) and, on a CPU with oneDNN, its
    linear (``fp32_onednn``), ``n x n``, ``seconds`` each (for ``bench_config``'s rounds)."""
    out = {"fp32": matmul_gflops(device, torch.float32, n, seconds)[0]}
    if device.type == "cpu" and onednn.AVAILABLE:
        out["fp32_onednn"] = matmul_gflops(device, torch.float32, n, seconds, onednn_mm)[0]
    return out


def _spread(ratios: list[float]) -> dict[str, float]:
    return {"median": round(float(np.median(ratios)), 3), "min": round(min(ratios), 3),
            "max": round(max(ratios), 3)}


def flop_check(config: RunConfig, batch_size: int) -> dict[str, Any]:
    """Analytic vs ``FlopCounterMode`` FLOPs of one training step at ``batch_size``."""
    config = with_train(config, batch_size=batch_size, precision="fp32", compile=False)
    trainer = make_trainer(config, n_puzzles=64)
    counted = counted_train_step_flops(trainer)
    model = trainer.model
    analytic = segment_flops(model.config, config.train.max_segments, model.prefix_len).train
    return {"batch_size": batch_size, "analytic": analytic * batch_size, "counted": counted,
            "ratio": round(counted / (analytic * batch_size), 6)}


def run(tiny: str | None = None, paper: str | None = None, seconds: float = 6.0,
        threads: int | None = 2, compile_: bool = True, with_paper: bool = True,
        paper_batch: int = 2, paper_steps: int = 2, paper_bf16: bool | None = None,
        device: str = "auto", omp_probe: bool = True, rounds: int = 6,
        all_compile_modes: bool = False, only: list[str] | None = None) -> dict[str, Any]:
    """Run the whole benchmark and return its figures (see the module docstring).

    The tiny config times ``SPEED_VARIANTS`` (without compile unless ``compile_``; the two
    that leave the products to inductor only with ``all_compile_modes``) in ``rounds``
    interleaved rounds (``only``: those variants, in that order; the first is the
    reference of the ratios); the paper config ``plain`` and ``defaults``.
    ``paper_bf16=None`` times the paper config in bf16 only on CUDA: a CPU without bf16
    matmul units takes minutes for it (the tiny config already measures the bf16 ratio).
    """
    dev = resolve_device(device)
    if threads:
        torch.set_num_threads(threads)
    started = time.perf_counter()
    common = [f"train.device={device}", f"train.threads={threads or 0}"]
    out: dict[str, Any] = {"device": str(dev), "torch": torch.__version__,
                           "threads": torch.get_num_threads(),
                           "omp_wait_policy": os.environ.get("OMP_WAIT_POLICY"),
                           "load_average": _load_average()}
    fp32 = matmul_peak_gflops(dev, torch.float32)
    bf16_sizes = None if dev.type == "cuda" else (256, 512, 1024)
    bf16 = matmul_peak_gflops(dev, torch.bfloat16, bf16_sizes, max_call_s=0.5)
    out["matmul_peak_gflops"] = {"fp32": fp32, "bf16": bf16,
                                 "fp32_linear_under_bf16_autocast":
                                     autocast_linear_gflops(dev)}
    # A bf16 variant's MFU is against the best bf16 path the machine offers.
    peaks = {"fp32": fp32["gflops"],
             "bf16": max(bf16["gflops"], out["matmul_peak_gflops"]
                         ["fp32_linear_under_bf16_autocast"])}
    if dev.type == "cpu" and onednn.AVAILABLE:
        out["matmul_peak_gflops"]["fp32_onednn"] = matmul_peak_gflops(dev, torch.float32,
                                                                      mm=onednn_mm)
        peaks["fp32_onednn"] = out["matmul_peak_gflops"]["fp32_onednn"]["gflops"]
    if dev.type == "cpu":
        out["bf16_matmul_units"] = bf16_matmul_units()
        out["cpu"] = cpu_info().describe()
    tiny_cfg = load_bench_config(tiny, TINY_CONFIG, common)
    # what auto takes for the tiny config's step, as the trainer decides it (rows matter)
    rows = tiny_cfg.train.batch_size * make_task(tiny_cfg.task).seq_len
    out["matmul_auto"] = choose_matmul("auto", dev, rows=rows).describe()
    out["precision_auto"] = choose_precision("auto", dev).describe()

    skipped = set() if all_compile_modes else {"compile_model_aten", "compile_max_autotune"}
    variants = {name: changes for name, changes in SPEED_VARIANTS.items()
                if name not in skipped and (compile_ or not changes["compile"])}
    if only:
        unknown = [name for name in only if name not in SPEED_VARIANTS]
        if unknown:
            raise ValueError(f"unknown variant(s) {', '.join(unknown)}: use "
                             f"{', '.join(SPEED_VARIANTS)}")
        variants = {name: SPEED_VARIANTS[name] for name in only}
    out["flop_check"] = flop_check(tiny_cfg, 4)
    out["tiny"] = bench_config("tiny", tiny_cfg, variants, peaks, seconds, rounds=rounds,
                               warmup=1, probe=lambda: peak_probe(dev))
    if with_paper:
        paper_cfg = with_train(load_bench_config(paper, PAPER_CONFIG, common),
                               batch_size=paper_batch)
        paper_variants = {name: SPEED_VARIANTS[name] for name in ("plain", "defaults")}
        if paper_bf16 or (paper_bf16 is None and dev.type == "cuda"):
            paper_variants["bf16"] = SPEED_VARIANTS["bf16"]
        out["paper"] = bench_config("paper", paper_cfg, paper_variants, peaks, seconds=0.0,
                                    rounds=paper_steps, max_steps=None, warmup=1)
    if dev.type == "cpu" and omp_probe:
        out["tiny_fp32_segments_per_s_by_omp_wait_policy"] = omp_wait_policy_probe(
            tiny, threads or torch.get_num_threads())
    out["bench_seconds"] = round(time.perf_counter() - started, 1)
    out["load_average_after"] = _load_average()
    return out


def omp_wait_policy_probe(tiny: str | None, threads: int, seconds: float = 4.0
                          ) -> dict[str, float]:
    """Tiny-config fp32 segments/s in fresh processes with ``OMP_WAIT_POLICY`` ACTIVE and
    PASSIVE (it must be set before the OpenMP runtime starts, hence the subprocesses).

    With ACTIVE, idle OpenMP threads spin; on a machine whose cores are shared with other
    busy processes a spinning thread can take the core from the one doing the work.
    """
    code = ("import sys, json; from hrm_rl.bench.train import _probe; "
            "print(json.dumps(_probe(sys.argv[1] or None, int(sys.argv[2]), float(sys.argv[3]))))")
    out = {}
    for policy in ("ACTIVE", "PASSIVE"):
        env = {**os.environ, "OMP_WAIT_POLICY": policy}
        done = subprocess.run([sys.executable, "-c", code, tiny or "", str(threads), str(seconds)],
                              env=env, capture_output=True, text=True, timeout=300)
        if done.returncode != 0:
            out[policy] = f"failed: {done.stderr.strip().splitlines()[-1:]}"
            continue
        out[policy] = json.loads(done.stdout.strip().splitlines()[-1])
    return out


def _probe(tiny: str | None, threads: int, seconds: float) -> float:
    """Segments/s of the tiny config in fp32 eager (run by ``omp_wait_policy_probe``)."""
    config = with_train(load_bench_config(tiny, TINY_CONFIG, []), threads=threads,
                        device="cpu", precision="fp32", compile=False)
    v = _Variant("fp32", config, warmup=1)
    v.run(seconds, None)
    return round(v.steps * config.train.batch_size / v.seconds, 2)


def _load_average() -> list[float] | None:
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except OSError:
        return None


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The options of ``hrm-rl bench train``."""
    parser.add_argument("--tiny-config", help=f"default {TINY_CONFIG} (or the bundled core's)")
    parser.add_argument("--paper-config", help=f"default {PAPER_CONFIG} (or the built-in)")
    parser.add_argument("--seconds", type=positive_float, default=6.0,
                        help="timed seconds per tiny-config variant (split over the rounds)")
    parser.add_argument("--threads", type=int_in(0, 1024), default=2,
                        help="torch threads (0: torch's)")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--no-compile", action="store_true", help="skip torch.compile")
    parser.add_argument("--all-compile-modes", action="store_true",
                        help="also compile with the products left to inductor (aten, "
                             "max-autotune; slow to compile on a CPU)")
    parser.add_argument("--variants", type=lambda text: text.split(","), default=None,
                        help="comma-separated tiny-config variants to time, the first the "
                             "reference (default: all but the two slow compile modes)")
    parser.add_argument("--rounds", type=positive_int, default=6,
                        help="interleaved rounds the tiny-config variants are timed in")
    parser.add_argument("--no-paper", action="store_true", help="skip the paper config")
    parser.add_argument("--paper-batch", type=positive_int, default=2)
    parser.add_argument("--paper-steps", type=positive_int, default=2)
    parser.add_argument("--no-omp-probe", action="store_true",
                        help="skip the OMP_WAIT_POLICY ACTIVE/PASSIVE comparison (CPU)")
    parser.add_argument("--paper-bf16", action="store_true",
                        help="also time the paper config in bf16 on a CPU (slow without "
                             "bf16 matmul units; always on with CUDA)")


def run_from_args(args: argparse.Namespace) -> dict[str, Any]:
    """``run`` with the parsed ``add_arguments`` options."""
    return run(args.tiny_config, args.paper_config, args.seconds, args.threads or None,
               not args.no_compile, not args.no_paper, args.paper_batch, args.paper_steps,
               args.paper_bf16 or None, args.device, not args.no_omp_probe, args.rounds,
               args.all_compile_modes, args.variants)
