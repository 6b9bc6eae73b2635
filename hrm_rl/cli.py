"""The ``hrm-rl`` command line: train, eval, halt, params, demo.

    hrm-rl train configs/sudoku4-tiny.yaml --set train.steps=500
    hrm-rl eval sudoku4 --data puzzles.csv --max-segments 8
    hrm-rl halt train --algo ppo --timesteps 200000 --env-kwargs step_cost=0.01
    hrm-rl halt eval --policies qhead,fixed:4,threshold:0.9,oracle
    hrm-rl params configs/sudoku9-extreme.yaml
    hrm-rl demo
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np


def _cmd_train(args: argparse.Namespace) -> int:
    from hrm_rl.agents.act_trainer import ACTTrainer, make_run_dir
    from hrm_rl.config import load_config

    config = load_config(args.config, args.set)
    run_dir = Path(args.run_dir) if args.run_dir else make_run_dir(config)
    trainer = ACTTrainer(config, run_dir, progress=not args.no_progress)
    print(f"run folder: {run_dir}  (tensorboard --logdir {run_dir.parent})", file=sys.stderr)
    print(f"model: {trainer.model.num_parameters():,} parameters on {trainer.device}; "
          f"{len(trainer.train_set)} train / {len(trainer.test_set)} test puzzles", file=sys.stderr)
    summary = trainer.fit()
    summary["run_dir"] = str(run_dir)
    print(json.dumps(summary, indent=2))
    return 0


def _cmd_eval(args: argparse.Namespace) -> int:
    from hrm_rl.checkpoint import load_checkpoint
    from hrm_rl.device import autocast, resolve_device
    from hrm_rl.evaluation import evaluate

    device = resolve_device(args.device)
    ckpt = load_checkpoint(args.checkpoint, device)
    puzzles = ckpt.task.read_csv(args.data)
    if args.limit:
        puzzles = puzzles.take(slice(0, args.limit))
    max_segments = args.max_segments or ckpt.config.train.halt_max_steps
    precision = args.precision or ckpt.config.train.precision
    result = evaluate(ckpt.model, ckpt.task, puzzles, max_segments, args.batch_size,
                      lambda: autocast(device, precision), progress=not args.no_progress)
    out = {"checkpoint": str(ckpt.path), "task": ckpt.task.name, "data": str(args.data),
           **result.to_dict()}
    print(json.dumps(out, indent=2))
    return 0


def _cmd_params(args: argparse.Namespace) -> int:
    from hrm_rl.config import load_config
    from hrm_rl.model import HRM
    from hrm_rl.tasks import make_task

    config = load_config(args.config, args.set)
    task = make_task(config.task)
    print(f"{HRM(config.model.fit_to(task)).num_parameters():,}")
    return 0


def _cmd_demo(args: argparse.Namespace) -> int:
    """Train a tiny core briefly, then evaluate and show the bundled 4x4 core at work."""
    import torch

    from hrm_rl.agents.act_trainer import ACTTrainer
    from hrm_rl.checkpoint import load_checkpoint
    from hrm_rl.config import load_config
    from hrm_rl.evaluation import evaluate

    torch.set_num_threads(args.threads)
    print(f"== 1. training a tiny 4x4 Sudoku core from scratch for {args.train_seconds:.0f} s")
    config = load_config(None, ["task.size=4", "model.hidden_size=64", "model.num_heads=2",
                                "model.H_layers=1", "model.L_layers=1", "train.batch_size=128",
                                "train.lr=1e-3", "train.weight_decay=0.1", "train.eval_size=200",
                                "train.lr_warmup_steps=20", "data.train_size=2000",
                                "data.test_size=200", "data.max_givens=6",
                                f"train.max_time_s={args.train_seconds}", "train.steps=100000",
                                "train.eval_every=100000", "train.log_every=10",
                                "train.halt_max_steps=4", f"data.cache_dir={args.cache_dir}"])
    trainer = ACTTrainer(config, run_dir=None, progress=True)
    first = trainer.train_step().lm_loss
    summary = trainer.fit()
    last = trainer.train_step().lm_loss
    print(f"   lm loss {first:.3f} -> {last:.3f} in {summary['steps']} steps; "
          f"held-out exact accuracy (Q-head halting) {summary['eval']['exact_qhalt']:.3f}")

    print("== 2. the bundled 4x4 core on its 1000 held-out puzzles (no symmetry of a training "
          "puzzle)")
    ckpt = load_checkpoint("sudoku4")
    batch = ckpt.test_puzzles()
    max_k = ckpt.config.train.halt_max_steps
    result = evaluate(ckpt.model, ckpt.task, batch, max_k)
    for k, acc in enumerate(result.exact_by_segment, 1):
        print(f"   after {k} segment(s): exact {acc:.3f}")
    print(f"   Q-head halting: exact {result.exact_qhalt:.3f} using "
          f"{result.mean_segments_qhalt:.2f} segments on average")

    print("== 3. one puzzle, segment by segment")
    _show_one(ckpt, batch.take(slice(0, 1)), max_k)
    return 0


def _show_one(ckpt, puzzle, max_k: int) -> None:
    import torch

    from hrm_rl.data import ShuffledSource
    from hrm_rl.segment_engine import SegmentEngine

    engine = SegmentEngine(ckpt.model, ShuffledSource(puzzle, np.random.default_rng(0)), 1, "cpu")
    with torch.inference_mode():
        for k in range(1, max_k + 1):
            out = engine.step()
            pred = out.logits.argmax(-1)
            ok = bool(ckpt.task.is_correct(pred, engine.labels)[0])
            halt = bool(out.q_halt[0] > out.q_continue[0])
            print(f"-- segment {k}: {'correct' if ok else 'wrong'}; Q-head says "
                  f"{'halt' if halt else 'continue'}")
            print(ckpt.task.render(engine.inputs[0].numpy(), pred[0].numpy(),
                                   engine.labels[0].numpy()))
            if halt and ok:
                break


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="hrm-rl", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("train", help="train a core with the ACT agent from a YAML config")
    p.add_argument("config", help="YAML run config, e.g. configs/sudoku4-tiny.yaml")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="override a config value, e.g. --set train.lr=3e-4 (repeatable)")
    p.add_argument("--run-dir", help="output folder (default runs/<name>-<timestamp>)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=_cmd_train)

    p = sub.add_parser("eval", help="accuracy by segment and under Q-head halting, as JSON")
    p.add_argument("checkpoint", help="checkpoint folder, run folder, or bundled name (sudoku4)")
    p.add_argument("--data", required=True, help="CSV file in the task's format")
    p.add_argument("--max-segments", type=int, help="segments to run (default: the config's)")
    p.add_argument("--batch-size", type=int, default=512)
    p.add_argument("--limit", type=int, help="use only the first N puzzles")
    p.add_argument("--device", default="auto")
    p.add_argument("--precision", choices=("fp32", "bf16"))
    p.add_argument("--no-progress", action="store_true")
    p.set_defaults(func=_cmd_eval)

    from hrm_rl.agents.halt_cli import add_parser as add_halt_parser

    add_halt_parser(sub)

    p = sub.add_parser("params", help="print a config's parameter count")
    p.add_argument("config")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    p.set_defaults(func=_cmd_params)

    p = sub.add_parser("demo", help="a small end-to-end run on the CPU (about two minutes)")
    p.add_argument("--train-seconds", type=float, default=60.0)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--cache-dir", default="data")
    p.set_defaults(func=_cmd_demo)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from hrm_rl.config import ConfigError

    try:
        return args.func(args)
    except (ConfigError, FileNotFoundError, ValueError) as err:
        print(f"hrm-rl {args.command}: error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
