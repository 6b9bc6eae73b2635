"""Rank a re-arc core's tasks by how well it learned each: for choosing which ARC tasks a
recipe trains on, from a short pilot run on many of them.

Every task of the checkpoint is scored on ``--pairs`` fresh generated pairs drawn from
re-arc's ``select`` seeds (``RearcTask.draw``; ``hrm_rl.tasks.arc.rearc.SEED_BASE``),
apart from every split a core is trained or scored on, so choosing tasks here leaves the
chosen recipe's held-out figures honest. Each task's exact accuracy under Q-head halting
(ties: its cell accuracy) ranks it; the script prints the ranking and the ``--top`` best as
a ``task.rearc_tasks`` list (sorted by id), and writes both to ``--out`` as JSON.

    python scripts/experiments/rearc_pilot.py runs/pilot98 --pairs 16 --top 32 \\
        --out runs/pilot98/ranking.json

This is how ``configs/arc-rearc.yaml``'s tasks were chosen (its header has the pilot).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import torch

from hrm_rl.checkpoint import load_checkpoint
from hrm_rl.tasks.arc.rearc import RearcTask
from hrm_rl.trace import record_trace


def rank_tasks(checkpoint: str, pairs: int, threads: int | None = None,
               progress: bool = True) -> list[dict]:
    """One row per task of ``checkpoint`` (a re-arc core), best first: ``task``,
    ``exact`` (Q-head halting), ``cell``, ``exact_at_1``, ``segments`` over ``pairs``
    generated pairs of it."""
    if threads:
        torch.set_num_threads(threads)
    ckpt = load_checkpoint(checkpoint)
    task = ckpt.task
    if not isinstance(task, RearcTask):
        raise SystemExit(f"{checkpoint}: a {task.name} core, not a re-arc one "
                         "(task.dataset: rearc)")
    batch = task.draw("select", pairs * len(task.puzzles), progress=progress)
    names = np.asarray([task.puzzles[t].name for t in task.variants.task[batch.puzzle_ids]])
    trace = record_trace(ckpt.model, task, batch, ckpt.config.train.max_segments,
                         keep_pred=False, progress=progress, desc="pilot")
    halt = trace.qhead_halts()
    ok, cell = trace.at(halt)
    rows = []
    for name in dict.fromkeys(names.tolist()):
        m = names == name
        rows.append({"task": name, "exact": float(ok[m].mean()),
                     "cell": float(cell[m].mean()),
                     "exact_at_1": float(trace.correct[m, 0].mean()),
                     "segments": float(halt[m].mean())})
    return sorted(rows, key=lambda r: (-r["exact"], -r["cell"], r["task"]))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("checkpoint", help="a re-arc run folder, checkpoint or bundled core")
    parser.add_argument("--pairs", type=int, default=16, help="generated pairs per task")
    parser.add_argument("--top", type=int, default=32, help="how many tasks to choose")
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--out", type=Path, default=None, help="write the ranking (JSON)")
    parser.add_argument("--no-progress", action="store_true")
    args = parser.parse_args(argv)
    if args.pairs < 1 or args.top < 1:
        parser.error("--pairs and --top must be >= 1")
    rows = rank_tasks(args.checkpoint, args.pairs, args.threads, not args.no_progress)
    print(f"{'rank':>4} {'task':8} {'exact':>6} {'cell':>6} {'@1':>6} {'segs':>5}")
    for i, r in enumerate(rows, 1):
        print(f"{i:4d} {r['task']:8} {r['exact']:6.3f} {r['cell']:6.3f} "
              f"{r['exact_at_1']:6.3f} {r['segments']:5.2f}")
    chosen = sorted(r["task"] for r in rows[:args.top])
    print(f"top {len(chosen)} (mean exact {np.mean([r['exact'] for r in rows[:args.top]]):.3f}"
          f" against {np.mean([r['exact'] for r in rows]):.3f} over all {len(rows)}):")
    print("rearc_tasks: [" + ", ".join(repr(t) for t in chosen) + "]")
    if args.out is not None:
        args.out.write_text(json.dumps({"checkpoint": str(args.checkpoint),
                                        "pairs": args.pairs, "ranking": rows,
                                        "chosen": chosen}, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
