"""Peak memory of one ACT training step as the recurrence deepens; prints one JSON object.

For each model (``--models``: HRM, and TRM with the same depth of network), each
``H_cycles x L_cycles`` = 1x1, 2x2, 4x4, 8x8 (``--cycles``) and each ``model.gradient`` =
``one_step`` (HRM's 1-step gradient: only the last L and H step), ``last_recursion`` (TRM's:
the whole last H cycle) and ``bptt`` (backpropagation through every step), one
``ACTTrainer.train_step`` (segment forward, bootstrap peek, backward, optimiser step) is
measured as:

- ``saved_mib``: the storage autograd keeps for the backward pass (every tensor packed by
  ``torch.autograd.graph.saved_tensors_hooks``, deduplicated by storage, parameters excluded)
  - exact and independent of the allocator;
- on a CPU, ``peak_rss_delta_mib``: the process's peak resident memory during the *first*
  step above its resident memory before it (``VmHWM`` reset through
  ``/proc/self/clear_refs``; Linux only). Each measurement runs in a fresh subprocess and
  without a warm-up step, because memory freed by an earlier step stays resident in the C
  allocator and would hide the growth. It includes the optimiser state created by that
  first step (2 floats per parameter for AdamW), the same in every row;
- on CUDA, ``peak_alloc_delta_mib``: ``torch.cuda.max_memory_allocated`` during the step
  (after one warm-up step) above ``torch.cuda.memory_allocated`` before it.

The 1-step gradient should stay flat, the last recursion grow with ``L_cycles`` and BPTT
with ``H_cycles * L_cycles``.
The model is a 9x9-Sudoku-shaped core (81 cells; ``--hidden``, ``--layers``, ``--batch``);
puzzles are random tokens (memory does not depend on their content).

    hrm-rl bench memory [--models hrm,trm] [--cycles 1,2,4,8] [--batch 8] [--hidden 128]
"""

from __future__ import annotations

import argparse
import gc
import multiprocessing as mp
import os
import time
from pathlib import Path
from typing import Any

import torch

from hrm_rl.device import resolve_device

_MIB = 2**20
GRADIENTS = ("one_step", "last_recursion", "bptt")
MODELS = ("hrm", "trm")


def memory_config(cycles: int, gradient: str, hidden: int, layers: int, batch: int,
                  device: str, threads: int | None, kind: str = "hrm") -> list[str]:
    """Config overrides of the measured run: a 9x9 Sudoku core ``cycles x cycles`` deep
    (``kind`` ``hrm`` or ``trm``; TRM's one network is ``layers`` deep, with attention)."""
    heads = max(1, hidden // 32)
    return ["task.size=9", f"model.kind={kind}", f"model.hidden_size={hidden}",
            f"model.num_heads={heads}",
            f"model.H_layers={layers}", f"model.L_layers={layers}",
            f"model.H_cycles={cycles}", f"model.L_cycles={cycles}",
            f"model.gradient={gradient}", f"train.batch_size={batch}",
            "train.optimizer=adamw", "train.max_segments=8", f"train.device={device}",
            f"train.threads={threads or 0}"]


def _status_kib(field: str) -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise OSError(f"{field} not in /proc/self/status")


def _reset_peak_rss() -> bool:
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def measure_step(overrides: list[str]) -> dict[str, Any]:
    """Memory figures of one training step of the config ``overrides`` describe (in-process).

    Returns:
        ``saved_mib`` always; ``peak_rss_delta_mib`` on a Linux CPU; ``peak_alloc_delta_mib``
        on CUDA; ``step_s`` the measured step's seconds.
    """
    from hrm_rl.bench.train import make_trainer
    from hrm_rl.config import load_config

    trainer = make_trainer(load_config(None, overrides), n_puzzles=256)
    device = trainer.device
    if device.type != "cpu":
        trainer.train_step()  # warm-up: optimiser state, lazy inits
    gc.collect()
    out: dict[str, Any] = {}
    cpu_peak = device.type == "cpu" and Path("/proc/self/clear_refs").exists()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)
        before = torch.cuda.memory_allocated(device)
    elif cpu_peak:
        cpu_peak = _reset_peak_rss()
        before = _status_kib("VmRSS")
    storages: dict[int, int] = {}
    params = {p.data_ptr() for p in trainer.model.parameters()}

    def pack(t: torch.Tensor) -> torch.Tensor:
        storage = t.untyped_storage()
        if storage.data_ptr() not in params:
            storages[storage.data_ptr()] = storage.nbytes()
        return t

    start = time.perf_counter()
    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        trainer.train_step()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        out["peak_alloc_delta_mib"] = round(
            (torch.cuda.max_memory_allocated(device) - before) / _MIB, 2)
    elif cpu_peak:
        out["peak_rss_delta_mib"] = round((_status_kib("VmHWM") - before) / 1024, 2)
    out["step_s"] = round(time.perf_counter() - start, 2)
    out["saved_mib"] = round(sum(storages.values()) / _MIB, 2)
    return out


def _child(overrides: list[str], queue) -> None:
    try:
        queue.put(measure_step(overrides))
    except BaseException as err:  # report, never hang the parent
        queue.put({"error": f"{type(err).__name__}: {err}"})


def measure_isolated(overrides: list[str], timeout_s: float = 300.0) -> dict[str, Any]:
    """``measure_step`` in a fresh spawned process (clean resident-memory baseline)."""
    ctx = mp.get_context("spawn")
    queue = ctx.Queue()
    proc = ctx.Process(target=_child, args=(overrides, queue))
    proc.start()
    try:
        result = queue.get(timeout=timeout_s)
    finally:
        proc.join(timeout=10)
        if proc.is_alive():
            proc.kill()
    return result


def run(cycles: tuple[int, ...] = (1, 2, 4, 8), batch: int = 8, hidden: int = 128,
        layers: int = 2, threads: int | None = 2, device: str = "auto",
        models: tuple[str, ...] = MODELS) -> dict[str, Any]:
    """Measure every ``model x cycles x gradient``; returns the table and its settings.

    Table rows are named ``"<model> <N>x<N>"`` (e.g. ``"trm 4x4"``), columns ``GRADIENTS``.
    """
    dev = resolve_device(device)
    started = time.perf_counter()
    key = "peak_alloc_delta_mib" if dev.type == "cuda" else "peak_rss_delta_mib"
    table: dict[str, dict[str, Any]] = {}
    growth: dict[str, dict[str, Any]] = {}
    for kind in models:
        first: dict[str, Any] = {}  # this model's figures at cycles[0], per gradient
        for c in cycles:
            row = table[f"{kind} {c}x{c}"] = {}
            ratios = growth[f"{kind} {c}x{c}"] = {}
            for gradient in GRADIENTS:
                overrides = memory_config(c, gradient, hidden, layers, batch, str(dev),
                                          threads, kind)
                figures = row[gradient] = (measure_isolated(overrides) if dev.type == "cpu"
                                           else measure_step(overrides))
                base = first.setdefault(gradient, figures)
                ratios[gradient] = {m: round(figures[m] / base[m], 2)
                                    for m in ("saved_mib", key) if m in figures and base.get(m)}
    return {"device": str(dev), "threads": threads,
            "model": {"hidden_size": hidden, "H_layers": layers, "L_layers": layers,
                      "seq_len": 81, "batch_size": batch},
            "columns": list(GRADIENTS), "table": table,
            f"growth_vs_{cycles[0]}x{cycles[0]}": growth,
            "bench_seconds": round(time.perf_counter() - started, 1),
            "load_average": [round(x, 2) for x in os.getloadavg()]}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The options of ``hrm-rl bench memory``."""
    parser.add_argument("--models", default=",".join(MODELS),
                        help="comma-separated subset of: " + ", ".join(MODELS))
    parser.add_argument("--cycles", default="1,2,4,8",
                        help="comma-separated N for N x N (H_cycles x L_cycles)")
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--hidden", type=int, default=128)
    parser.add_argument("--layers", type=int, default=2, help="H_layers = L_layers")
    parser.add_argument("--threads", type=int, default=2, help="torch threads (0: torch's)")
    parser.add_argument("--device", default="auto")


def run_from_args(args: argparse.Namespace) -> dict[str, Any]:
    """``run`` with the parsed ``add_arguments`` options."""
    cycles = tuple(int(c) for c in args.cycles.split(","))
    models = tuple(m.strip() for m in args.models.split(","))
    unknown = sorted(set(models) - set(MODELS))
    if unknown:
        raise ValueError(f"--models: unknown {', '.join(unknown)}; choose from "
                         f"{', '.join(MODELS)}")
    return run(cycles, args.batch, args.hidden, args.layers, args.threads or None, args.device,
               models)

