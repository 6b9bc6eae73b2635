"""What makes a small core learn fast on 2 cores: time-to-accuracy curves of recipe variants
on 6x6 Sudoku, scored on a validation split (never the test puzzles); prints one JSON object.

Every variant is a run config plus ``--set`` overrides. All variants train side by side in
alternating slices of ``--slice-s`` seconds (variant A, B, C, ..., A, B, C, ...), so the
machine's speed drift of 20-40 % within minutes falls on each of them alike; each has a
budget of ``--seconds`` training seconds, and its cosine lr decay follows that budget. After
every ``--eval-every-s`` seconds of its own training a variant is scored on the validation
puzzles: ``--val-size`` puzzles of the config's training set drawn at random (the same for
every variant; re-arc's training set is ordered by task, so its tail would be one task),
held out from its training (6x6 minimal puzzles and generated ARC pairs are distinct, so
they are new to it; the test set is not touched). The curve points are (training seconds,
steps, Q-head exact, exact at the cap, cell accuracy at the cap); the summary gives each
variant's time to reach ``--targets`` (Q-head exact) and ``--cell-targets`` (cells at the
cap, which separate short runs whose exact accuracy is still near 0). ``--out F`` rewrites
the report to F after every evaluation, so a run stopped early keeps its curves.

Default variants (on ``configs/sudoku6-small.yaml``; ``trm`` on ``sudoku6-trm-small.yaml``):
base, lr 5e-4, 500 warm-up steps, weight decay 1.0, stablemax, no augmentation, batch 64,
1-step gradient, the references' exploration rule (minimum segments redrawn every segment),
TRM-MLP, TRM-MLP with 16 scratch prefix positions, TRM with attention.

    hrm-rl bench recipe --seconds 900 --threads 1     # 12 variants x 15 min ~ 3.1 h
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

import numpy as np

from hrm_rl.bench.variants import add_variant_arguments, chosen_variants, config_path
from hrm_rl.checkpoint import atomic_write_text
from hrm_rl.cli_types import float_list

BASE, TRM = "sudoku6-small.yaml", "sudoku6-trm-small.yaml"
VARIANTS: dict[str, tuple[str, list[str]]] = {
    "base": (BASE, []),
    "lr5e-4": (BASE, ["train.lr=5e-4"]),
    "warmup500": (BASE, ["train.lr_warmup_steps=500"]),
    "wd1.0": (BASE, ["train.weight_decay=1.0"]),
    "stablemax": (BASE, ["train.loss=stablemax"]),
    "no-augment": (BASE, ["data.augment=false"]),
    "batch64": (BASE, ["train.batch_size=64"]),
    "one_step": (BASE, ["model.gradient=one_step"]),
    "explore-per-segment": (BASE, ["train.halt_exploration=per_segment"]),
    "trm-mlp_t": (TRM, []),
    "trm-mlp_t-scratch16": (TRM, ["model.puzzle_emb_len=16"]),
    "trm-attention": (TRM, ["model.mlp_t=false", "model.pos_encodings=learned"]),
    # the bundled sudoku6 recipe in each precision (issue T's equal-wall-clock check):
    # `--variants sudoku6-fp32,sudoku6-bf16`; bf16 variants are also scored in fp32
    "sudoku6-fp32": ("sudoku6.yaml", ["train.precision=fp32"]),
    "sudoku6-bf16": ("sudoku6.yaml", ["train.precision=bf16"]),
    # the re-arc ARC recipe (issue S), e.g. continuing a run's weights in each form with
    # `--set train.init_from=RUN/checkpoints/step_N`: its batch, a quarter of it (the lr by
    # the square-root rule); from scratch (other shapes): a wider core, rotary positions,
    # more computation per segment (3 H-cycles of 3 L-steps, not 2 of 2)
    "arc-rearc": ("arc-rearc.yaml", []),
    "arc-rearc-batch32": ("arc-rearc.yaml", ["train.batch_size=32", "train.lr=5e-4"]),
    "arc-rearc-h256": ("arc-rearc.yaml", ["model.hidden_size=256",
                                          "model.puzzle_emb_ndim=256"]),
    "arc-rearc-rope": ("arc-rearc.yaml", ["model.pos_encodings=rope"]),
    "arc-rearc-cycles3": ("arc-rearc.yaml", ["model.H_cycles=3", "model.L_cycles=3"]),
}
DEFAULT_VARIANTS = [name for name, (config, _) in VARIANTS.items() if config in (BASE, TRM)]
"""The 6x6 Sudoku study a plain ``hrm-rl bench recipe`` runs (the variants of its small
configs); the bundled recipes' variants run by ``--variants``."""


VAL_SEED = 0
"""Seed of the rows held out as val: the same rows for every variant of a config."""


def make_variant(name: str, seconds: float, threads: int, config_dir: str | None,
                 cache_dir: str, val_size: int, extra: list[str]):
    """A trainer for variant ``name`` whose evaluation set is the held-out validation part
    of its training set (``val_size`` puzzles), with a time budget of ``seconds``."""
    from hrm_rl.agents.trainer import ACTTrainer
    from hrm_rl.config import load_config
    from hrm_rl.tasks import make_task
    from hrm_rl.tasks.splits import build_splits

    config_name, overrides = VARIANTS[name]
    cfg = load_config(config_path(config_name, config_dir), [
        *overrides, f"train.max_time_s={seconds}", "train.steps=10000000",
        f"train.threads={threads}", "train.device=cpu", f"data.cache_dir={cache_dir}", *extra])
    train, _ = build_splits(make_task(cfg.task), cfg.data)
    if not 0 < val_size < len(train):
        raise ValueError(f"--val-size must be in [1, {len(train) - 1}], got {val_size}")
    held = np.zeros(len(train), dtype=bool)   # rows drawn at random: a split may be ordered
    held[np.random.default_rng(VAL_SEED).choice(len(train), val_size, replace=False)] = True
    cfg.train.eval_size = val_size
    return ACTTrainer(cfg, run_dir=None, progress=False,
                      splits=(train.take(np.flatnonzero(~held)),
                              train.take(np.flatnonzero(held))))


def time_to(curve: list[dict[str, Any]], key: str, target: float) -> float | None:
    """Training seconds of the first curve point with ``key >= target`` (None if never)."""
    return next((p["seconds"] for p in curve if p[key] >= target), None)


def markdown(results: list[dict[str, Any]], targets: list[float],
             cell_targets: list[float]) -> str:
    """One row per variant: its last curve point and its times to the exact and cell targets."""
    head = ("| variant | parameters | steps | Q-head exact (val) | exact at cap | cells at cap | "
            + " | ".join([f"time to {t:.0%}" for t in targets]
                         + [f"time to {t:.0%} cells" for t in cell_targets]) + " |")
    lines = [head, "|" + "---|" * (6 + len(targets) + len(cell_targets))]
    for r in results:
        last = r["curve"][-1]
        times = [r["time_to"][f"{t:g}"] for t in targets] + \
            [r["time_to_cells"][f"{t:g}"] for t in cell_targets]
        timed = " | ".join("—" if t is None else f"{t / 60:.1f} min" for t in times)
        lines.append(f"| {r['variant']} | {r['parameters']:,} | {last['steps']} | "
                     f"{last['exact_acc_qhalt']:.1%} | {last['exact_at_max']:.1%} | "
                     f"{last['cell_at_max']:.1%} | {timed} |")
    return "\n".join(lines)


def add_arguments(p: argparse.ArgumentParser) -> None:
    """The options of ``hrm-rl bench recipe``."""
    p.add_argument("--seconds", type=float, default=900.0, help="training seconds per variant")
    p.add_argument("--slice-s", type=float, default=30.0,
                   help="seconds a variant trains before the next one takes over")
    p.add_argument("--eval-every-s", type=float, default=150.0,
                   help="score a variant on val after this many of its training seconds")
    p.add_argument("--val-size", type=int, default=500)
    p.add_argument("--targets", type=float_list(0, 1, low_open=True), default="0.5,0.9",
                   help="accuracies to time (Q-head exact)")
    p.add_argument("--cell-targets", type=float_list(0, 1, low_open=True), default="0.8,0.9",
                   help="cell accuracies (at the cap) to time: they separate short runs whose "
                        "exact accuracy is still near 0")
    p.add_argument("--out", help="also write the report here, rewritten after every evaluation "
                                 "(so a run stopped early keeps its curves)")
    add_variant_arguments(p, VARIANTS, threads=1, default=DEFAULT_VARIANTS)


def run_from_args(args: argparse.Namespace) -> dict[str, Any]:
    """Train the variants in alternating slices and record their validation curves."""
    names = chosen_variants(args, VARIANTS)
    for flag in ("seconds", "slice_s", "eval_every_s"):
        if not getattr(args, flag) > 0:
            raise ValueError(f"--{flag.replace('_', '-')} must be > 0")
    targets, cell_targets = list(args.targets), list(args.cell_targets)
    trainers = {n: make_variant(n, args.seconds, args.threads, args.config_dir,
                                args.cache_dir, args.val_size, args.set) for n in names}
    curves: dict[str, list[dict[str, Any]]] = {n: [] for n in names}

    def report() -> dict[str, Any]:
        results = [{"variant": n, "config": VARIANTS[n][0], "overrides": VARIANTS[n][1],
                    "parameters": trainers[n].model.num_parameters(), "curve": curves[n],
                    "time_to": {f"{t:g}": time_to(curves[n], "exact_acc_qhalt", t)
                                for t in targets},
                    "time_to_cells": {f"{t:g}": time_to(curves[n], "cell_at_max", t)
                                      for t in cell_targets}}
                   for n in names if curves[n]]
        return {"seconds_per_variant": args.seconds, "slice_s": args.slice_s,
                "threads": args.threads, "val_size": args.val_size, "split": "val (held out "
                "of the training set)", "results": results,
                "markdown": markdown(results, targets, cell_targets)}

    next_eval = {n: args.eval_every_s for n in names}
    active = list(names)
    while active:
        for name in list(active):
            trainer = trainers[name]
            trainer.train_for(min(args.slice_s, max(args.seconds - trainer.elapsed_s(), 0.0)))
            done = trainer.time_fraction() >= 1.0
            if trainer.elapsed_s() >= next_eval[name] or done:
                ev = trainer.evaluate()
                point = {"seconds": round(trainer.elapsed_s(), 1), "steps": trainer.step,
                         "exact_acc_qhalt": round(ev.exact_acc_qhalt, 4),
                         "exact_at_max": round(ev.exact_by_segment[-1], 4),
                         "cell_at_max": round(ev.cell_by_segment[-1], 4),
                         "mean_segments_qhalt": round(ev.mean_segments_qhalt, 3)}
                if trainer.config.train.precision != "fp32":   # as the envs will run the core
                    ev32 = trainer.evaluate(precision="fp32")
                    point.update(exact_acc_qhalt_fp32=round(ev32.exact_acc_qhalt, 4),
                                 exact_at_max_fp32=round(ev32.exact_by_segment[-1], 4))
                curves[name].append(point)
                next_eval[name] += args.eval_every_s
                print(f"[recipe] {name}: {point}", file=sys.stderr)
                if args.out:
                    atomic_write_text(args.out, json.dumps(report(), indent=2))
            if done:
                active.remove(name)
    return report()
