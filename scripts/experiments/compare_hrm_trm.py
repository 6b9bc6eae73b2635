"""HRM against TRM for the same CPU time on the same puzzles; prints one JSON object.

Each variant trains from scratch with ``train.max_time_s = --seconds`` (the cosine lr decay
follows the time budget), one after the other, then is evaluated on the same held-out
puzzles: exact accuracy after each segment and under its own halting. Variants (all on
the 6x6 data of ``configs/sudoku6-small.yaml``; the TRM configs use the same data section):

* ``hrm/one_step``: HRM with its 1-step gradient (``configs/sudoku6-small.yaml`` with
  2x2 cycles of 1+1 layers);
* ``hrm/last_recursion``: HRM back-propagating through its whole last H cycle;
* ``trm/last_recursion/ema``: TRM as published (``configs/sudoku6-trm-small.yaml``);
* ``trm/last_recursion/no_ema``: the same without the weight average;
* ``trm/one_step/ema``: TRM with HRM's 1-step gradient.

    python scripts/experiments/compare_hrm_trm.py --seconds 240   # about 5 x 4 min + data
"""

from __future__ import annotations

import argparse
import sys
import time
from typing import Any

from hrm_rl.bench.variants import add_variant_arguments, chosen_variants, config_path

# HRM as measured in the README's table: 2x2 cycles of 1+1 layers (so that its gradient
# modes differ at all) and no weight average, pinned here whatever sudoku6-small.yaml holds.
_HRM_2X2 = ["model.H_layers=1", "model.L_layers=1", "model.H_cycles=2", "model.L_cycles=2",
            "train.ema_decay=null"]
VARIANTS: dict[str, tuple[str, list[str]]] = {
    "hrm/one_step": ("sudoku6-small.yaml", [*_HRM_2X2, "model.gradient=one_step"]),
    "hrm/last_recursion": ("sudoku6-small.yaml", [*_HRM_2X2, "model.gradient=last_recursion"]),
    "trm/last_recursion/ema": ("sudoku6-trm-small.yaml", ["model.gradient=last_recursion"]),
    "trm/last_recursion/no_ema": ("sudoku6-trm-small.yaml",
                                  ["model.gradient=last_recursion", "train.ema_decay=null"]),
    "trm/one_step/ema": ("sudoku6-trm-small.yaml", ["model.gradient=one_step"]),
}


def run_variant(name: str, seconds: float, threads: int, config_dir: str | None,
                cache_dir: str, extra: list[str]) -> dict[str, Any]:
    """Train one variant for ``seconds`` and evaluate it."""
    from hrm_rl.agents.trainer import ACTTrainer
    from hrm_rl.config import load_config

    config_name, overrides = VARIANTS[name]
    cfg = load_config(config_path(config_name, config_dir), [
        *overrides, f"train.max_time_s={seconds}", "train.steps=1000000",
        f"train.threads={threads}", "train.device=cpu", "train.eval_every=1000000",
        "train.checkpoint_every=1000000", f"data.cache_dir={cache_dir}", *extra])
    trainer = ACTTrainer(cfg, run_dir=None, progress=False)
    start = time.perf_counter()
    summary = trainer.fit()
    ev = summary["eval"]
    return {"variant": name, "config": config_name, "overrides": overrides,
            "parameters": summary["parameters"], "steps": summary["steps"],
            "train_seconds": round(time.perf_counter() - start, 1),
            "exact_by_segment": [round(a, 4) for a in ev["exact_by_segment"]],
            "exact_acc_qhalt": round(ev["exact_acc_qhalt"], 4),
            "mean_segments_qhalt": round(ev["mean_segments_qhalt"], 3)}


def markdown(rows: list[dict[str, Any]]) -> str:
    """A README-ready table of the results."""
    lines = ["| variant | params | steps | exact @1 | exact @max | own halting (segments) |",
             "|---|---|---|---|---|---|"]
    for r in rows:
        by = r["exact_by_segment"]
        lines.append(f"| {r['variant']} | {r['parameters']:,} | {r['steps']} | {by[0]:.1%} | "
                     f"{by[-1]:.1%} | {r['exact_acc_qhalt']:.1%} "
                     f"({r['mean_segments_qhalt']:.2f}) |")
    return "\n".join(lines)


def add_arguments(p: argparse.ArgumentParser) -> None:
    """The options of this experiment."""
    p.add_argument("--seconds", type=float, default=240.0, help="training seconds per variant")
    add_variant_arguments(p, VARIANTS, threads=2)


def run_from_args(args: argparse.Namespace) -> dict[str, Any]:
    """Train and evaluate the chosen variants one after the other."""
    names = chosen_variants(args, VARIANTS)
    rows = []
    for name in names:
        print(f"[compare] {name}: {args.seconds:g} s ...", file=sys.stderr)
        rows.append(run_variant(name, args.seconds, args.threads, args.config_dir,
                                args.cache_dir, args.set))
        print(markdown(rows[-1:]).splitlines()[-1], file=sys.stderr)
    return {"seconds_per_variant": args.seconds, "threads": args.threads, "results": rows,
            "markdown": markdown(rows)}


if __name__ == "__main__":
    import json

    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    add_arguments(parser)
    print(json.dumps(run_from_args(parser.parse_args()), indent=2))
