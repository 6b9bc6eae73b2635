"""The ``hrm-rl`` command line: train, eval, halt, holdout, params, cores, rollouts, demo,
bench.

    hrm-rl train configs/sudoku4-tiny.yaml --set train.steps=500
    hrm-rl eval sudoku4 --data puzzles.csv --max-segments 8
    hrm-rl halt train --algo ppo --timesteps 200000 --env-kwargs step_cost=0.01
    hrm-rl halt eval --policies qhead,fixed:4,threshold:0.9,oracle
    hrm-rl params configs/sudoku9-extreme.yaml
    hrm-rl holdout --data val.csv --trained-on runs/a --trained-on b.yaml --out clean.csv
    hrm-rl cores                # the halting-zoo table of the bundled cores
    hrm-rl rollouts record sudoku4 --split train --out sudoku4-train.npz
    hrm-rl import-reference HRM-checkpoint-sudoku-extreme --task sudoku --out hrm-sudoku
    hrm-rl demo
    hrm-rl bench train          # also: memory, env, all (JSON figures)
"""
# (The docstring above is ``hrm-rl --help``.) Each command is a short call into a library
# function (hrm_rl.holdout.holdout, hrm_rl.agents.sb3.train_and_compare, ...); halt's parsers
# and commands are in hrm_rl.cli_halt, beside this module: about 700 lines, too many to merge.

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from hrm_rl.cli_types import float_list, int_in, positive_int, segment_count

if TYPE_CHECKING:
    from hrm_rl.distributed import DistInfo


def _cmd_train(args: argparse.Namespace) -> int:
    """Train; under ``torchrun`` every process joins a DDP group (see hrm_rl.distributed)."""
    from hrm_rl import distributed
    from hrm_rl.config import load_config

    device = next((item.split("=", 1)[1].strip() for item in reversed(args.set)
                   if item.strip().startswith("train.device=")), None)
    if device is None and args.config and not args.resume:
        device = load_config(args.config, args.set).train.device
    info = distributed.init_distributed(device or "auto")
    try:
        code = _train(args, info)
    except BaseException:
        distributed.cleanup(wait=False)
        raise
    distributed.cleanup()
    return code


def _train(args: argparse.Namespace, info: DistInfo) -> int:
    from hrm_rl import distributed
    from hrm_rl.agents.trainer import ACTTrainer
    from hrm_rl.config import load_config
    from hrm_rl.run_dir import RunLock, check_fresh_run_dir, make_run_dir
    from hrm_rl.tasks import make_task
    from hrm_rl.tasks.splits import build_splits

    log = print if info.is_main else (lambda *a, **k: None)

    if args.resume:
        if args.config or args.run_dir:
            raise ValueError("--resume RUN_DIR takes the config and folder of that run; "
                             "drop the config argument and --run-dir")
        run_dir = Path(args.resume)
        trainer = ACTTrainer.resume(run_dir, args.set, progress=not args.no_progress,
                                    checkpoint=args.from_checkpoint)
        for note in trainer.notes:
            log(f"note: {note}", file=sys.stderr)
        log(f"resuming {run_dir} at step {trainer.step}", file=sys.stderr)
    else:
        if not args.config:
            raise ValueError("give a YAML config (hrm-rl train CONFIG) or --resume RUN_DIR")
        if args.from_checkpoint:
            raise ValueError("--from NAME picks the checkpoint of --resume RUN_DIR; give "
                             "--resume too")
        config = load_config(args.config, args.set)
        run_dir = Path(args.run_dir) if args.run_dir else make_run_dir(config)
        # the trainer refuses a folder that holds a run (RunExistsError: exit 2); asked here
        # too, so that the refusal comes before the puzzles are generated
        check_fresh_run_dir(run_dir)
        lock = RunLock(run_dir) if info.is_main else None  # then no one else writes it
        with distributed.main_first(info):  # rank 0 generates the data cache, the rest read it
            splits = _build_splits(build_splits, make_task(config.task), config.data,
                                   progress=info.is_main and not args.no_progress)
        trainer = ACTTrainer(config, run_dir, progress=not args.no_progress, splits=splits,
                             lock=lock)
        for note in trainer.notes:
            log(f"note: {note}", file=sys.stderr)
    log(f"run folder: {run_dir}  (tensorboard --logdir {run_dir.parent})", file=sys.stderr)
    total = sum(p.numel() for p in trainer.model.parameters())
    trained = trainer.model.num_parameters()
    log(f"model: {total:,} parameters"
        + (f" ({trained:,} trained: train.trainable={trainer.config.train.trainable})"
           if trained != total else "") + f" on {trainer.device}; "
        f"{len(trainer.train_set)} train / {len(trainer.test_set)} test puzzles"
        + (f"; {info.world_size} processes, {trainer.batch_size} rows each" if info.enabled
           else ""), file=sys.stderr)
    summary = trainer.fit()  # TrainingInterrupted on Ctrl-C / SIGTERM: see main()
    summary["run_dir"] = str(run_dir)
    if summary.get("note"):  # nothing left to train (steps reached or time budget spent)
        log(f"hrm-rl train: {summary['note']}", file=sys.stderr)
    log(json.dumps(summary, indent=2))
    return 0


def _build_splits(build_splits, task, data, progress: bool):
    """``build_splits``, with a generator's refusal (constraints it cannot meet) naming the
    ``data.*`` keys it was generating under."""
    try:
        return build_splits(task, data, progress=progress)
    except ValueError as err:
        if (data.train_path and data.test_path) or any(
                path and str(path) in str(err) for path in (data.train_path, data.test_path)):
            raise  # an error of a file read: it names the file
        keys = ", ".join(f"data.{k}={getattr(data, k)}" for k in
                         ("train_size", "test_size", "max_givens", "min_givens",
                          "min_difficulty", "split_by"))
        raise ValueError(f"{err} (generating {task.name} puzzles with {keys})") from None


def _cmd_eval(args: argparse.Namespace) -> int:
    from hrm_rl.checkpoint import load_checkpoint
    from hrm_rl.device import autocast, resolve_device
    from hrm_rl.evaluation import evaluate

    try:
        device = resolve_device(args.device)
    except ValueError as err:
        raise ValueError(f"--device: {err}") from None
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    ckpt = load_checkpoint(args.checkpoint, device)
    if args.no_views and getattr(ckpt.task, "test_views", None):
        ckpt.task.test_views = {}
    if args.check_unique and not ckpt.task.checks_uniqueness:
        raise ValueError(f"--check-unique is not available for task {ckpt.task.name}")
    puzzles = _eval_puzzles(ckpt, args.data, args.check_unique, progress=not args.no_progress)
    if args.limit:
        puzzles = puzzles.take(slice(0, args.limit))
    max_segments = args.max_segments or ckpt.config.train.max_segments
    result = evaluate(ckpt.model, ckpt.task, puzzles, max_segments, args.batch_size,
                      lambda: autocast(device, args.precision), progress=not args.no_progress)
    out = {"checkpoint": str(ckpt.path), "task": ckpt.task.name, "data": str(args.data),
           **result.to_dict()}
    print(json.dumps(out, indent=2))
    return 0


def _cmd_views(args: argparse.Namespace) -> int:
    """Choose an ARC core's test-time views (``hrm_rl.views``) and print (or write) them."""
    import torch

    from hrm_rl.checkpoint import load_checkpoint
    from hrm_rl.views import THRESHOLDS, choose_views, write_views

    if args.threads:
        torch.set_num_threads(args.threads)
    ckpt = load_checkpoint(args.checkpoint)
    if not hasattr(ckpt.task, "with_views"):
        raise ValueError(f"{args.checkpoint}: task {ckpt.task.name} has no test-time views "
                         "(ARC cores have)")
    progress = not args.no_progress
    select, val = ckpt.puzzles(args.select, progress), ckpt.puzzles(args.val, progress)
    if args.limit:
        select, val = select.take(slice(0, args.limit)), val.take(slice(0, args.limit))
    choice = choose_views(ckpt.model, ckpt.task, select, val, ckpt.config.train.max_segments,
                          tuple(args.thresholds or THRESHOLDS), args.batch_size,
                          progress=progress,
                          select_split=args.select, val_split=args.val)
    chosen = "none" if choice.threshold is None else str(choice.threshold)
    for threshold, got in choice.val.items():
        mark = "  <- chosen" if threshold == chosen else ""
        label = "no views" if threshold == "none" else f"threshold {threshold}"
        print(f"{label}: {args.val} pass@2 {got['pairs pass@2']:.3f} of pairs, "
              f"pass@1 {got['pairs pass@1']:.3f}; {got['mean views']:.2f} views a task{mark}")
    for name, views in choice.chosen.items():
        acc = choice.accuracy[name]
        print(f"{name}: views {views} (as drawn {acc[0]:.2f} on {choice.pairs[name]} "
              f"{args.select} pairs; kept {', '.join(f'{acc[v]:.2f}' for v in views[1:]) or '-'})")
    if args.write:
        print(f"wrote {write_views(ckpt.path, choice)}")
    return 0


def _eval_puzzles(ckpt, data: str, check_unique: bool, progress: bool):
    """``eval --data``: a CSV file, or (when no such file exists) a split of the checkpoint:
    ``test`` (its held-out puzzles, ``test.csv`` beside the weights), ``train`` or ``val``."""
    from hrm_rl.checkpoint import HALTING_FILES, TEST_PUZZLES
    from hrm_rl.tasks.base import HALTING_SPLITS

    if data in ckpt.task.extra_splits and not Path(data).is_file():
        return ckpt.puzzles(data)          # e.g. re-arc's official ARC pairs
    if Path(data).is_file() or data not in HALTING_SPLITS:
        return ckpt.task.read_csv(data, check_unique=check_unique)
    shipped = ckpt.path / (TEST_PUZZLES if data == "test" else HALTING_FILES[data])
    if shipped.is_file():
        return ckpt.task.read_csv(shipped, check_unique=check_unique)
    if check_unique:
        raise ValueError(f"--check-unique reads a CSV file, and {ckpt.path} ships no "
                         f"{shipped.name} (its {data!r} split is generated); give a CSV")
    return ckpt.puzzles(data, progress=progress)  # generated, or "no held-out puzzles"


def _cmd_holdout(args: argparse.Namespace) -> int:
    """Write the puzzles of ``--data`` that none of the ``--trained-on`` runs trained on
    (``hrm_rl.holdout.holdout``)."""
    from hrm_rl.holdout import holdout

    out = Path(args.out)
    if out.exists():
        raise ValueError(f"--out {out} exists; give a new file (nothing is overwritten)")
    result = holdout(args.data, args.trained_on, args.cache_dir,
                     progress=not args.no_progress)
    result.write_csv(out)
    print(json.dumps({**result.to_dict(), "out": str(out)}, indent=2))
    return 0


def _cmd_params(args: argparse.Namespace) -> int:
    from hrm_rl.config import load_config
    from hrm_rl.model import build_model
    from hrm_rl.tasks import make_task

    config = load_config(args.config, args.set)
    task = make_task(config.task)
    model = build_model(config.model.fit_to(task))
    total, core = model.num_parameters(), model.num_parameters(include_puzzle_emb=False)
    # the reference counts its puzzle embedding (a buffer there) out: print both
    print(f"{total:,}" if total == core else
          f"{total:,} ({core:,} without the puzzle-embedding table, as the reference counts)")
    return 0


def _cmd_demo(args: argparse.Namespace) -> int:
    """Train a tiny core briefly, then evaluate and show the bundled 4x4 core at work."""
    import torch

    from hrm_rl.agents.trainer import ACTTrainer
    from hrm_rl.checkpoint import load_checkpoint
    from hrm_rl.config import bundled_configs, load_config
    from hrm_rl.evaluation import evaluate

    if not (np.isfinite(args.train_seconds) and args.train_seconds > 0):
        raise ValueError(f"--train-seconds must be a number of seconds > 0, got "
                         f"{args.train_seconds}")
    torch.set_num_threads(args.threads)
    print(f"== 1. training a tiny 4x4 Sudoku core from scratch for {args.train_seconds:.0f} s")
    # the bundled file, not a "demo" in the working folder (load_config's name lookup)
    config = load_config(bundled_configs()["demo"], [f"train.max_time_s={args.train_seconds}",
                                                     f"data.cache_dir={args.cache_dir}"])
    trainer = ACTTrainer(config, run_dir=None, progress=True)
    before = trainer.evaluate()
    first = trainer.train_step().lm_loss
    summary = trainer.fit()
    last = trainer.train_step().lm_loss
    after = trainer.evaluate()
    print(f"   lm loss {first:.3f} -> {last:.3f} in {summary['steps']} steps")
    print(f"   on 200 held-out puzzles, Q-head halting: cells right {before.cell_acc_qhalt:.3f} "
          f"-> {after.cell_acc_qhalt:.3f}, puzzles solved {before.exact_acc_qhalt:.3f} -> "
          f"{after.exact_acc_qhalt:.3f}")
    print("   (the bundled sudoku4 core below trained 4.6 minutes with the same recipe: 99%)")

    print("== 2. the bundled 4x4 core on its 1000 held-out puzzles (no symmetry of a training "
          "puzzle)")
    ckpt = load_checkpoint("sudoku4")
    batch = ckpt.test_puzzles()
    max_k = ckpt.config.train.max_segments
    result = evaluate(ckpt.model, ckpt.task, batch, max_k)
    for k, acc in enumerate(result.exact_by_segment, 1):
        print(f"   after {k} segment(s): exact {acc:.3f}")
    print(f"   Q-head halting: exact {result.exact_acc_qhalt:.3f} using "
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
            out = engine.step().out
            pred = out.logits.argmax(-1)
            ok = bool(ckpt.task.is_correct(pred, engine.labels)[0])
            halt = bool(ckpt.model.halts(out)[0])
            print(f"-- segment {k}: {'correct' if ok else 'wrong'}; Q-head says "
                  f"{'halt' if halt else 'continue'}")
            print(ckpt.task.render(engine.inputs[0].numpy(), pred[0].numpy(),
                                   engine.labels[0].numpy()))
            if halt and ok:
                break


def _cmd_cores(args: argparse.Namespace) -> int:
    """The halting-zoo and difficulty tables for bundled cores (or given checkpoints)."""
    import torch

    from hrm_rl.agents.zoo import (bundled_core_names, core_report, difficulty_figure,
                                   format_difficulty, format_zoo)
    from hrm_rl.checkpoint import atomic_write

    if args.threads:
        torch.set_num_threads(args.threads)
    names = args.cores or bundled_core_names()
    reports = []
    for name in names:
        print(f"recording {name} (val to K, {args.split} to 2K) ...", file=sys.stderr)
        reports.append(core_report(name, args.step_costs, progress=not args.no_progress,
                                   test_split=args.split))
        if args.plots:
            import matplotlib.pyplot as plt

            out = Path(args.plots)
            out.mkdir(parents=True, exist_ok=True)
            fig = difficulty_figure(reports[-1])
            atomic_write(out / f"difficulty-{Path(name).name}.png",
                         lambda tmp: fig.savefig(tmp, format="png"))
            plt.close(fig)
    if args.json:
        print(json.dumps(reports, indent=2))
    else:
        print(f"split: {args.split} (fixed-k and threshold chosen on val); 95% bootstrap "
              "intervals in brackets\n")
        print(format_zoo(reports))
        print()
        print(format_difficulty(reports))
    return 0


def _cmd_rollouts(args: argparse.Namespace) -> int:
    """Record a core's trace over a split for replay (``hrm_rl.envs.rollouts``); an
    existing ``--out`` is refused (exit 2) unless ``--force``."""
    import torch

    from hrm_rl.device import resolve_device
    from hrm_rl.envs.rollouts import partial_path, record_rollouts

    try:
        resolve_device(args.device)  # as eval does: a clear error before any work
    except ValueError as err:
        raise ValueError(f"--device: {err}") from None
    if args.threads:
        torch.set_num_threads(args.threads)
    try:
        path = record_rollouts(args.checkpoint, args.split, args.out, args.episodes,
                               args.max_segments, args.latent, args.batch_size, args.device,
                               progress=not args.no_progress, force=args.force)
    except FileExistsError as err:  # refused input, not a failed write
        print(f"hrm-rl {args.command}: error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        partial = partial_path(args.out)
        kept = f"; the finished batches are kept in {partial}" if partial.is_dir() else ""
        print(f"hrm-rl {args.command}: interrupted{kept}: run the same command again to "
              "continue", file=sys.stderr)
        return 130
    print(json.dumps({"out": str(path), "split": args.split,
                      "bytes": path.stat().st_size}, indent=2))
    return 0


def _cmd_import_reference(args: argparse.Namespace) -> int:
    """Convert a checkpoint of the reference (sapientinc/HRM) into one of our core folders;
    an existing ``--out`` is refused (exit 2)."""
    from hrm_rl.reference_import import import_reference

    try:
        out = import_reference(args.source, args.task, args.out, args.test, args.size)
    except FileExistsError as err:  # refused input, not a failed write
        print(f"hrm-rl {args.command}: error: {err}", file=sys.stderr)
        return 2
    card = json.loads((out / "card.json").read_text())
    print(json.dumps({"out": str(out), "task": card["task"],
                      "reference_weights_sha256": card["reference_weights_sha256"]}, indent=2))
    return 0


_BENCHES = {"train": "training segments/s, FLOPs per segment and MFU (fp32, bf16, compile)",
            "memory": "peak memory of a training step vs H_cycles x L_cycles, 1-step vs BPTT",
            "env": "segments/s of the halting environments",
            "profile": "where a tiny-config training step spends its time (torch.profiler)",
            "recipe": "time-to-accuracy of recipe variants on 6x6 Sudoku, on a validation "
                      "split (not in 'all': hours)",
            "reference": "speed and float64 equality vs a local reference HRM (--reference-dir)",
            "clients": "env steps/s of the RL clients of the README's Works-with table"}


def _bench_parser(name: str):
    """``(module, parser)`` of benchmark ``name``: imported only when it is run."""
    import importlib

    module = importlib.import_module(f"hrm_rl.bench.{name}")
    parser = argparse.ArgumentParser(prog=f"hrm-rl bench {name}", description=module.__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    module.add_arguments(parser)
    return module, parser


def _cmd_bench(args: argparse.Namespace) -> int:
    """Run one benchmark (or all of them, with their defaults) and print its JSON. The
    benchmark's own options are parsed here, so building the CLI imports no benchmark."""
    if args.bench == "all":
        results = {}
        for name in ("train", "memory", "env"):
            module, parser = _bench_parser(name)
            results[name] = module.run_from_args(parser.parse_args(["--threads",
                                                                    str(args.threads)]))
    else:
        module, parser = _bench_parser(args.bench)
        results = module.run_from_args(parser.parse_args(args.bench_args))
    print(json.dumps(results, indent=2))
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="hrm-rl", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("train", help="train a core with the ACT agent from a YAML config")
    p.add_argument("config", nargs="?",
                   help="YAML run config file (e.g. configs/sudoku4-tiny.yaml), or the name of "
                        "a recipe shipped in the package (e.g. sudoku4-tiny, maze6-tiny; a file "
                        "of that name wins)")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="override a config value, e.g. --set train.lr=3e-4 (repeatable; "
                        "with --resume only train.* keys)")
    p.add_argument("--run-dir", help="output folder (default runs/<name>-<timestamp>)")
    p.add_argument("--resume", metavar="RUN_DIR",
                   help="continue RUN_DIR from its latest checkpoint with its saved config "
                        "(and train.* settings edited in RUN_DIR/config.yaml), logging into the "
                        "same folder; Ctrl-C saves a checkpoint to resume from")
    p.add_argument("--from", dest="from_checkpoint", metavar="NAME",
                   help="with --resume: continue from this checkpoint instead of the latest: "
                        "'best' (the best evaluation so far, kept by the rotation) or a folder "
                        "name such as step_0000500; the later checkpoints are removed")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=_cmd_train)

    p = sub.add_parser("eval", help="accuracy by segment and under Q-head halting, as JSON")
    p.add_argument("checkpoint", help="checkpoint folder, run folder (its latest), "
                                      "RUN/checkpoints/best, or bundled name (sudoku4)")
    p.add_argument("--data", required=True,
                   help="CSV file in the task's format, or 'test' for the checkpoint's own "
                        "held-out puzzles (its test.csv; each bundled core ships one, "
                        "hrm_rl/checkpoints/<core>/test.csv), or 'train'/'val' for its "
                        "halting splits, or 'official' for a re-arc core's official ARC "
                        "pairs (voted over variants and the core's test-time views, "
                        "`hrm-rl views`; the exact figures then count each view as a row)")
    p.add_argument("--max-segments", type=segment_count,
                   help="segments to run (default: the config's)")
    p.add_argument("--no-views", action="store_true",
                   help="ignore the core's test-time views (views.json): one row a pair")
    p.add_argument("--batch-size", type=positive_int, default=512)
    p.add_argument("--limit", type=positive_int, help="use only the first N puzzles")
    p.add_argument("--check-unique", action="store_true",
                   help="reject puzzles with more than one solution (exact accuracy is only "
                        "well defined for unique puzzles; runs the solver once per puzzle)")
    p.add_argument("--device", default="auto")
    p.add_argument("--precision", choices=("fp32", "bf16"), default="fp32",
                   help="fp32 (default: as the envs, cores and haltbench run every core, "
                        "whatever precision it trained in) or bf16 autocast")
    p.add_argument("--threads", type=positive_int, default=None, help="torch CPU threads")
    p.add_argument("--no-progress", action="store_true")
    p.set_defaults(func=_cmd_eval)

    from hrm_rl.cli_halt import add_parser as add_halt_parser

    add_halt_parser(sub)

    p = sub.add_parser("views", help="choose an ARC core's test-time views to vote over "
                                     "(on its halting splits)")
    p.add_argument("checkpoint", help="checkpoint folder, run folder or bundled name")
    p.add_argument("--select", default="train",
                   help="split each view's accuracy is measured on (default: train)")
    p.add_argument("--val", default="val", help="split the threshold is chosen on "
                                                "(default: val)")
    p.add_argument("--thresholds", type=float_list(0, 1), default=None,
                   help="comma-separated candidate keep-thresholds in (0, 1]: the share of "
                        "a task's as-drawn accuracy a view must reach (default: "
                        "hrm_rl.views.THRESHOLDS, 1.0 down to 0.7)")
    p.add_argument("--limit", type=positive_int, help="use only the first N pairs of each split")
    p.add_argument("--batch-size", type=positive_int, default=512)
    p.add_argument("--threads", type=positive_int, default=None, help="torch CPU threads")
    p.add_argument("--write", action="store_true",
                   help="write views.json beside the weights (then eval --data official, "
                        "the card and cores vote over the views)")
    p.add_argument("--no-progress", action="store_true")
    p.set_defaults(func=_cmd_views)

    from hrm_rl.agents.haltbench import add_parser as add_haltbench_parser

    add_haltbench_parser(sub)

    p = sub.add_parser("holdout", help="drop from a CSV the puzzles that given runs trained "
                                       "on (up to symmetry), for clean validation sets")
    p.add_argument("--data", required=True, help="CSV file in the task's format")
    p.add_argument("--trained-on", action="append", required=True, metavar="RUN",
                   help="a YAML config, checkpoint, run folder or bundled name whose "
                        "training set (regenerated from its data section) to keep out; "
                        "repeatable")
    p.add_argument("--out", required=True, help="the CSV to write (must not exist)")
    p.add_argument("--cache-dir", help="generated-puzzle cache for every run (default: each "
                                       "run's data.cache_dir)")
    p.add_argument("--no-progress", action="store_true")
    p.set_defaults(func=_cmd_holdout)

    p = sub.add_parser("params", help="print a config's parameter count")
    p.add_argument("config", help="YAML run config file, or a bundled recipe's name")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    p.set_defaults(func=_cmd_params)

    p = sub.add_parser("cores", help="the halting-zoo table: how much halting can gain per core")
    p.add_argument("cores", nargs="*", help="bundled names or checkpoint folders "
                                            "(default: every bundled core)")
    p.add_argument("--split", default="test",
                   help="puzzles to score on: test (default) or a CSV path (an outside set)")
    p.add_argument("--step-costs", type=float_list(0, 1), default="0.01,0.001",
                   help="comma-separated step costs in [0, 1]")
    p.add_argument("--plots", metavar="DIR", help="write difficulty-<core>.png figures here")
    p.add_argument("--threads", type=positive_int, default=None, help="torch CPU threads")
    p.add_argument("--json", action="store_true", help="print JSON instead of tables")
    p.add_argument("--no-progress", action="store_true")
    p.set_defaults(func=_cmd_cores)

    p = sub.add_parser("rollouts", help="record a core's segments once, to replay without it")
    rsub = p.add_subparsers(dest="rollouts_command", required=True)
    r = rsub.add_parser("record", help="run every puzzle of a split to the cap and save it",
                        description="Replay the file with gym.make(ID, rollouts=FILE).")
    r.add_argument("checkpoint", help="checkpoint folder, run folder, or bundled name")
    r.add_argument("--split", default="train", help="train (default), val, test or a CSV path")
    r.add_argument("--episodes", type=positive_int, help="only the first N puzzles of the split")
    r.add_argument("--max-segments", type=segment_count,
                   help="segments per puzzle (default: the core's training cap)")
    r.add_argument("--latent", action="store_true", help="also keep H's state (obs_mode latent)")
    r.add_argument("--out", required=True, help="the .npz file to write")
    r.add_argument("--batch-size", type=positive_int, default=512,
                   help="puzzles per forward; also what an interrupted recording keeps: a "
                        "rerun continues from the last finished batch")
    r.add_argument("--device", default="cpu")
    r.add_argument("--threads", type=positive_int, default=None, help="torch CPU threads")
    r.add_argument("--no-progress", action="store_true")
    r.add_argument("--force", action="store_true", help="overwrite an existing --out file")
    r.set_defaults(func=_cmd_rollouts)

    p = sub.add_parser("import-reference", help="convert a checkpoint of the reference "
                       "implementation (the paper's released models) into a core folder")
    p.add_argument("source", help="a reference checkpoint folder (all_config.yaml and its "
                   "'checkpoint' or step_N weights), one such weights file, or "
                   "hf://sapientinc/HRM-checkpoint-sudoku-extreme (needs huggingface_hub)")
    p.add_argument("--task", required=True, choices=("sudoku", "maze", "arc"),
                   help="the checkpoint's task (arc is refused: see hrm_rl.reference_import)")
    p.add_argument("--out", required=True, help="the core folder to write (must not exist)")
    p.add_argument("--test", metavar="CSV", help="held-out puzzles to ship as the core's "
                   "test.csv (e.g. Sudoku-Extreme's test.csv or a part of it)")
    p.add_argument("--size", type=positive_int,
                   help="maze side (default: from the checkpoint, else 30)")
    p.set_defaults(func=_cmd_import_reference)

    p = sub.add_parser("demo", help="a small end-to-end run on the CPU (about two minutes)")
    p.add_argument("--train-seconds", type=float, default=60.0)
    p.add_argument("--threads", type=int_in(1, 1024), default=2)
    p.add_argument("--cache-dir", default="data")
    p.set_defaults(func=_cmd_demo)

    p = sub.add_parser("bench", help="benchmarks that print JSON (train, memory, env, all)")
    bench = p.add_subparsers(dest="bench", required=True)
    for name, help_text in _BENCHES.items():  # options: ``hrm-rl bench NAME --help``
        b = bench.add_parser(name, help=help_text, add_help=False)
        b.set_defaults(func=_cmd_bench)
    b = bench.add_parser("all", help="train, memory and env with their defaults, one JSON")
    b.add_argument("--threads", type=int_in(0, 1024), default=2,
                   help="torch threads (0: torch's)")
    b.set_defaults(func=_cmd_bench)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run the command; exit codes: 0 done, 2 refused input (a message names the file or
    key), 3 non-finite training, 130 / 143 interrupted by SIGINT (Ctrl-C) / SIGTERM (one
    line, no traceback; ``train`` saves a checkpoint and says how to resume)."""
    try:
        return _run(argv)
    except KeyboardInterrupt:  # Ctrl-C while the command's modules were still importing
        print("hrm-rl: interrupted", file=sys.stderr)
        return 130


def _run(argv: list[str] | None) -> int:
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    if getattr(args, "func", None) is _cmd_bench and args.bench != "all":
        args.bench_args = extra  # the benchmark's own options, parsed when it runs
    elif extra:
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    from hrm_rl.agents.trainer import NonFiniteError, TrainingInterrupted
    from hrm_rl.run_dir import RunLockedError
    from hrm_rl.config import ConfigError

    _quiet_writer_threads()
    if sys.stdout is None or sys.stdout.closed:  # started with stdout closed (``>&-``):
        # print() would drop every result without a word
        print(f"hrm-rl {args.command}: error: standard output is closed; nothing to write "
              "the results to (redirect it to a file instead)", file=sys.stderr)
        return 2
    sys.stdout = _NamedStdout(sys.stdout)
    try:
        code = args.func(args)
        sys.stdout.flush()  # a full disk or a closed pipe shows here, not after exit 0
        return code
    except (ConfigError, FileNotFoundError, ValueError, RunLockedError) as err:
        print(f"hrm-rl {args.command}: error: {err}", file=sys.stderr)
        return 2
    except NonFiniteError as err:
        print(f"hrm-rl {args.command}: error: {err}", file=sys.stderr)
        return 3
    except TrainingInterrupted as err:
        print(f"hrm-rl {args.command}: {err}", file=sys.stderr)
        return err.exit_code
    except KeyboardInterrupt:
        print(f"hrm-rl {args.command}: interrupted", file=sys.stderr)
        return 130
    except OSError as err:  # a path that cannot be written or read (permissions, a file in
        # the way, a full disk): the message names it; FileNotFoundError is handled above
        where = f": {err.filename}" if err.filename else ""
        if err.filename == _NamedStdout.NAME:  # a full disk or a closed pipe
            print(f"hrm-rl {args.command}: error: could not write standard output "
                  f"({err.strerror})", file=sys.stderr)
            _NamedStdout.discard()
        else:
            print(f"hrm-rl {args.command}: error: {err.strerror or err}{where}",
                  file=sys.stderr)
        return 2
    except (MemoryError, RuntimeError) as err:  # an allocation the machine cannot make
        text = str(err) or type(err).__name__
        if not isinstance(err, MemoryError) and not any(
                s in text for s in ("can't allocate memory", "out of memory",
                                    "not enough memory")):
            raise
        print(f"hrm-rl {args.command}: error: out of memory ({text.splitlines()[0]}); lower "
              "the batch size (train.batch_size, train.eval_batch_size, --batch-size, "
              "--num-envs), the model size (model.hidden_size, model.*_layers) or the "
              "segments (--max-segments)", file=sys.stderr)
        return 2
    finally:
        if isinstance(sys.stdout, _NamedStdout):
            sys.stdout = sys.stdout.stream


class _NamedStdout:
    """``sys.stdout`` whose write errors name it: unbuffered (``PYTHONUNBUFFERED``), a
    print meets a full disk or a closed pipe itself, with no file name in the error."""

    NAME = "<standard output>"

    def __init__(self, stream) -> None:
        self.stream = stream

    def write(self, text: str) -> int:
        try:
            return self.stream.write(text)
        except OSError as err:
            raise OSError(err.errno, err.strerror, self.NAME) from err

    def flush(self) -> None:
        try:
            self.stream.flush()
        except OSError as err:
            raise OSError(err.errno, err.strerror, self.NAME) from err

    def __getattr__(self, name: str):
        return getattr(self.stream, name)

    @staticmethod
    def discard() -> None:
        """Point file descriptor 1 at /dev/null, so that the text left in the buffer does
        not fail once more (with Python's own message) when the interpreter exits."""
        try:
            fd = sys.__stdout__.fileno()
        except (AttributeError, OSError, ValueError):
            return
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, fd)
        os.close(devnull)


def _quiet_writer_threads() -> None:
    """A background writer thread (TensorBoard's event writer) that fails for want of
    space ends without its own traceback: the main thread meets the same error at its next
    write or flush and reports it in one line (see main)."""
    import errno
    import threading

    default = threading.excepthook
    if getattr(default, "quiet_on_full_disk", False):  # installed by an earlier main()
        return

    def hook(args: threading.ExceptHookArgs) -> None:
        if isinstance(args.exc_value, OSError) and args.exc_value.errno in (
                errno.ENOSPC, errno.EDQUOT, errno.EFBIG):
            return
        default(args)

    hook.quiet_on_full_disk = True
    threading.excepthook = hook


if __name__ == "__main__":
    sys.exit(main())
