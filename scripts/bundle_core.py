"""Bundle a trained run as a core shipped inside the package, or refresh a bundled core's card.

    python scripts/bundle_core.py runs/sudoku6 sudoku6 --config configs/sudoku6.yaml \\
        --command "hrm-rl train configs/sudoku6.yaml --run-dir runs/sudoku6" \\
        --command "hrm-rl train --resume runs/sudoku6 --set train.threads=1"
    python scripts/bundle_core.py runs/maze9-wide maze9 --config configs/maze9-wide.yaml \
        --earlier training/maze9 --command ...   # a fine-tune (train.init_from) of that run
    python scripts/bundle_core.py --refresh sudoku4      # re-measure an existing card

Copies the run's latest checkpoint (weights, config, test puzzles) to
``hrm_rl/checkpoints/NAME/``, writes its halting ``train``/``val`` splits, and writes
``card.json``: the config, the commands, the training seconds (from the run's trainer state)
(with those of ``--earlier`` runs the bundled one was fine-tuned from, summed and listed)
and the test figures the README row shows (Q-head exact and mean segments, exact after the
cap), which ``tests/test_zoo.py`` checks a 50-puzzle eval against.
"""

from __future__ import annotations

import argparse
import json
import shutil
from pathlib import Path

from hrm_rl.checkpoint import (CONFIG, HALTING_FILES, TEST_PUZZLES, TRAINER_STATE, WEIGHTS,
                               load_checkpoint, load_trainer_state, read_checkpoint_config,
                               resolve_checkpoint, write_halting_splits)
from hrm_rl.evaluation import evaluate

BUNDLE = Path(__file__).resolve().parents[1] / "hrm_rl" / "checkpoints"


def test_figures(folder: Path) -> dict:
    """Q-head exact, its mean segments and exact at the cap on the core's test puzzles."""
    ckpt = load_checkpoint(folder)
    res = evaluate(ckpt.model, ckpt.task, ckpt.puzzles("test"),
                   ckpt.config.train.max_segments)
    return {"n": res.n, "qhead_exact": res.exact_acc_qhalt,
            "qhead_mean_segments": res.mean_segments_qhalt,
            "exact_at_1": res.exact_by_segment[0], "exact_at_K": res.exact_by_segment[-1]}


def training_of(run: str) -> dict:
    """The checkpoint name, steps and training seconds of ``run``'s checkpoint: from its
    trainer state, or from its meta where only the weights were kept (an earlier stage)."""
    folder = resolve_checkpoint(run)
    if (folder / TRAINER_STATE).is_file():
        state = load_trainer_state(folder)
        steps, seconds = int(state["step"]), float(state["elapsed_s"])
    else:
        meta = read_checkpoint_config(folder)[2]
        if "train_seconds" not in meta:
            raise SystemExit(f"{folder} has neither a trainer state nor train_seconds in "
                             "its meta: how long it trained is unknown")
        steps, seconds = int(meta["step"]), float(meta["train_seconds"])
    return {"checkpoint": f"{Path(run).name}/{folder.name}", "steps": steps,
            "train_seconds": round(seconds, 1)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("run", nargs="?", help="run folder to bundle")
    parser.add_argument("name", nargs="?", help="bundled name, e.g. sudoku6")
    parser.add_argument("--config", help="the config file the run was started from")
    parser.add_argument("--command", action="append", default=[],
                        help="a command of the run, in order (repeatable)")
    parser.add_argument("--earlier", action="append", default=[], metavar="RUN",
                        help="a run this one started from (train.init_from), in order; its "
                             "training seconds and steps count in the card (repeatable)")
    parser.add_argument("--cores", type=int, default=2, help="CPU cores it trained on")
    parser.add_argument("--splits-from", metavar="DIR",
                        help="copy halting_train.csv/halting_val.csv made earlier for the same "
                             "config and test set (write_halting_splits) instead of generating")
    parser.add_argument("--refresh", metavar="NAME", help="only re-measure NAME's card")
    args = parser.parse_args()
    if args.refresh:
        folder = BUNDLE / args.refresh
        card = json.loads((folder / "card.json").read_text())
    else:
        if not (args.run and args.name and args.config and args.command):
            parser.error("give RUN NAME --config and at least one --command")
        source = resolve_checkpoint(args.run)
        splits = {}
        if args.splits_from:  # checked and read before the old bundle is removed (it may be it)
            given = Path(args.splits_from)
            missing = [n for n in (*HALTING_FILES.values(), TEST_PUZZLES)
                       if not (given / n).is_file()]
            if missing:
                raise SystemExit(f"--splits-from {given} lacks {', '.join(missing)}")
            if (given / TEST_PUZZLES).read_bytes() != (source / TEST_PUZZLES).read_bytes():
                raise SystemExit(f"{given} was made for another test set")
            splits = {n: (given / n).read_bytes() for n in HALTING_FILES.values()}
        folder = BUNDLE / args.name
        if folder.exists():
            shutil.rmtree(folder)
        folder.mkdir(parents=True)
        for name in (WEIGHTS, CONFIG, TEST_PUZZLES):
            shutil.copyfile(source / name, folder / name)
        if splits:
            for name, data in splits.items():
                (folder / name).write_bytes(data)
        else:
            write_halting_splits(folder, progress=True)
        stages = []
        for run in [*args.earlier, args.run]:
            stages.append(training_of(run))
        seconds = sum(stage["train_seconds"] for stage in stages)
        steps = sum(stage["steps"] for stage in stages)
        card = {"config": args.config, "commands": args.command,
                "train_seconds": round(seconds, 1), "cores": args.cores, "steps": steps,
                "summary": (f"{seconds / 60:.0f} min on {args.cores} "
                            f"{'core' if args.cores == 1 else 'cores'}, {steps} steps"
                            + (f" in {len(stages)} stages" if len(stages) > 1 else "")),
                "source_checkpoint": stages[-1]["checkpoint"]}
        if len(stages) > 1:
            card["stages"] = stages
    card["test"] = test_figures(folder)
    (folder / "card.json").write_text(json.dumps(card, indent=2) + "\n")
    print(json.dumps(card, indent=2))


if __name__ == "__main__":
    main()
