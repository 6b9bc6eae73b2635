"""Bundle a trained run as a core shipped inside the package, or refresh a bundled core's card.

    python scripts/bundle_core.py runs/sudoku6 sudoku6 --config configs/sudoku6.yaml \\
        --command "hrm-rl train configs/sudoku6.yaml --run-dir runs/sudoku6" \\
        --command "hrm-rl train --resume runs/sudoku6 --set train.threads=1"
    python scripts/bundle_core.py runs/maze9-wide maze9 --config docs/recipes/maze9.md \
        --earlier runs/maze9 --command ...   # a fine-tune (train.init_from) of that run
    python scripts/bundle_core.py runs/arc-rearc-h1 arc-rearc --after arc-rearc --config \
        docs/recipes/arc-rearc.md --command ...   # a stage on a bundled core whose runs are gone
    python scripts/bundle_core.py --refresh sudoku4      # re-measure an existing card

Copies the run's latest checkpoint (weights, config, test puzzles) to
``hrm_rl/checkpoints/NAME/``, writes its halting ``train``/``val`` splits, and writes
``card.json``: the config, the commands, the training seconds (from the run's trainer state)
(with those of ``--earlier`` runs the bundled one was fine-tuned from, summed and listed),
the config chain (each stage's changed settings, from the runs' saved configs), the weights'
SHA-256 (the one ``config.json`` records and loading checks) and the test figures the README
row shows (Q-head exact and mean segments, exact after the cap; for re-arc cores also the
official and evaluation ARC pairs' scores, the official ones voted over the core's
test-time views when it has a ``views.json``, ``--views`` choosing them), which
``tests/test_zoo.py`` checks a 50-puzzle eval against. The runs given are all it reads: no
committed lab folder or stage config file is needed, during bundling or after
(docs/recipes/README.md).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import shutil
from pathlib import Path
from typing import Any

from hrm_rl.checkpoint import (CONFIG, HALTING_FILES, TEST_PUZZLES, TRAINER_STATE, WEIGHTS,
                               WEIGHTS_SHA_KEY, file_sha256, load_checkpoint,
                               load_trainer_state, read_checkpoint_config, resolve_checkpoint,
                               stamp_weights_sha256, weights_sha256, write_halting_splits)
from hrm_rl.config import RunConfig
from hrm_rl.evaluation import evaluate
from hrm_rl.views import choose_views, write_views

BUNDLE = Path(__file__).resolve().parents[1] / "hrm_rl" / "checkpoints"


def test_figures(folder: Path) -> dict:
    """Q-head exact, its mean segments and exact at the cap on the core's test puzzles;
    and, for a task with extra splits (re-arc's ``official`` and ``evaluation`` ARC pairs),
    each one's size and the task's own scores on it under Q-head halting."""
    ckpt = load_checkpoint(folder)
    cap = ckpt.config.train.max_segments
    res = evaluate(ckpt.model, ckpt.task, ckpt.puzzles("test"), cap)
    out = {"n": res.n, "qhead_exact": res.exact_acc_qhalt,
           "qhead_mean_segments": res.mean_segments_qhalt,
           "exact_at_1": res.exact_by_segment[0], "exact_at_K": res.exact_by_segment[-1]}
    for name in ckpt.task.extra_splits:
        puzzles = ckpt.puzzles(name)
        extra = evaluate(ckpt.model, ckpt.task, puzzles, cap)
        if puzzles.views is None:
            out[name] = {"n": extra.n, **extra.task_scores}
            continue
        # voted over the core's test-time views (views.json); n counts pairs, rows views;
        # "without views": the rows as drawn (view 0) alone
        plain = evaluate(ckpt.model, ckpt.task, puzzles.take(puzzles.views == 0), cap)
        out[name] = {"n": plain.n, "rows": extra.n, **extra.task_scores,
                     "without views": plain.task_scores}
    return out


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


MACHINE_KEYS = ("out_dir", "data.cache_dir", "train.init_from")
"""Settings that name places on the training machine; ``init_from`` is the chain itself."""


def _flat(tree: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in tree.items():
        if isinstance(value, dict):
            out |= _flat(value, f"{prefix}{key}.")
        else:
            out[f"{prefix}{key}"] = value
    return out


def _nested(flat: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for dotted, value in flat.items():
        *sections, key = dotted.split(".")
        node = out
        for section in sections:
            node = node.setdefault(section, {})
        node[key] = value
    return out


def config_chain(runs: list[str], stages: list[dict], after: RunConfig | None = None,
                 earlier: list[dict] | None = None) -> list[dict]:
    """The card's ``config_chain``: per stage (``runs`` in order, ``stages`` the
    ``training_of`` of every stage, ``earlier``'s included), its config ``name``, the stage it
    ``extends``, the checkpoint it started from (``init_from``, as ``stages`` names it) and
    ``changes``: the settings its saved config has that the stage before did not (the first
    stage: its task and what it set apart from the defaults, as its recipe file would), as
    YAML sections. Read from the runs' checkpoints, so the card needs none of the files the
    stages were started from. ``after``/``earlier``: the saved config of a bundled core the
    first run started from and its card's chain, which the new stages continue."""
    chain: list[dict] = list(earlier or [])
    before = _flat(dataclasses.asdict(after if after is not None else RunConfig()))
    for run in runs:
        config = read_checkpoint_config(resolve_checkpoint(run))[0]
        now = _flat(dataclasses.asdict(config))
        j = len(chain)
        changed = {k: v for k, v in now.items() if k not in MACHINE_KEYS and k != "name"
                   and (before.get(k) != v or (j == 0 and k == "task.name"))}
        chain.append({"stage": j + 1, "name": config.name,
                      "extends": chain[-1]["name"] if j else None,
                      "init_from": stages[j - 1]["checkpoint"] if j else None,
                      "changes": _nested(changed)})
        before = now
    return chain


def checked_weights_sha256(folder: Path) -> str:
    """The SHA-256 ``folder``'s ``config.json`` records for its weights (recorded now if the
    checkpoint predates it), checked against the file's bytes."""
    if WEIGHTS_SHA_KEY not in read_checkpoint_config(folder)[2]:
        stamp_weights_sha256(folder)
    recorded = weights_sha256(folder)
    actual = file_sha256(folder / WEIGHTS)
    if recorded != actual:
        raise SystemExit(f"{folder / WEIGHTS}: SHA-256 {actual} is not the {recorded} its "
                         f"{CONFIG} records: restore the weights before bundling")
    return recorded


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("run", nargs="?", help="run folder to bundle")
    parser.add_argument("name", nargs="?", help="bundled name, e.g. sudoku6")
    parser.add_argument("--config", help="the config file the run was started from, or the "
                        "recipe page of a staged core (docs/recipes/NAME.md)")
    parser.add_argument("--command", action="append", default=[],
                        help="a command of the run, in order (repeatable)")
    parser.add_argument("--earlier", action="append", default=[], metavar="RUN",
                        help="a run this one started from (train.init_from), in order; its "
                             "training seconds and steps count in the card (repeatable)")
    parser.add_argument("--after", metavar="NAME",
                        help="the bundled core the run (or the first --earlier) started from "
                             "(train.init_from), when its runs are gone: its card's stages, "
                             "commands and config chain come first, and its halting splits "
                             "are kept (the test set must be the same)")
    parser.add_argument("--cores", type=int, default=2, help="CPU cores it trained on")
    parser.add_argument("--splits-from", metavar="DIR",
                        help="copy halting_train.csv/halting_val.csv made earlier for the same "
                             "config and test set (write_halting_splits) instead of generating")
    parser.add_argument("--refresh", metavar="NAME", help="only re-measure NAME's card")
    parser.add_argument("--views", action="store_true",
                        help="choose an ARC core's test-time views on its halting splits "
                             "(hrm_rl.views; the official pairs are then voted over them) "
                             "and write views.json before measuring")
    args = parser.parse_args()
    if args.refresh:
        folder = BUNDLE / args.refresh
        card = json.loads((folder / "card.json").read_text())
    else:
        if not (args.run and args.name and args.config and args.command):
            parser.error("give RUN NAME --config and at least one --command")
        source = resolve_checkpoint(args.run)
        splits = {}
        before: dict[str, Any] = {"stages": [], "commands": [], "config_chain": []}
        after = None
        if args.after:  # read before the old bundle is removed (it may be it)
            if args.splits_from:
                parser.error("--after keeps the splits of the core it names; drop --splits-from")
            old = BUNDLE / args.after
            if not (old / "card.json").is_file():
                raise SystemExit(f"--after {args.after}: no bundled core with a card")
            before = json.loads((old / "card.json").read_text())
            if "stages" not in before:   # a one-stage card (older ones lack some keys)
                before["stages"] = [{
                    "checkpoint": before.get("source_checkpoint", f"{args.after} (bundled)"),
                    "steps": int(before.get("steps", read_checkpoint_config(old)[2]["step"])),
                    "train_seconds": before["train_seconds"]}]
            after = read_checkpoint_config(old)[0]   # its config, for the chain
            args.splits_from = str(old)
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
        stages = list(before["stages"])
        for run in [*args.earlier, args.run]:
            stages.append(training_of(run))
        seconds = sum(stage["train_seconds"] for stage in stages)
        steps = sum(stage["steps"] for stage in stages)
        card = {"config": args.config, "commands": [*before["commands"], *args.command],
                "train_seconds": round(seconds, 1), "cores": args.cores, "steps": steps,
                "summary": (f"{seconds / 60:.0f} min on {args.cores} "
                            f"{'core' if args.cores == 1 else 'cores'}, {steps} steps"
                            + (f" in {len(stages)} stages" if len(stages) > 1 else "")),
                "source_checkpoint": stages[-1]["checkpoint"]}
        if len(stages) > 1:
            card["stages"] = stages
        card["config_chain"] = config_chain([*args.earlier, args.run], stages, after,
                                            before["config_chain"])
    card["weights_sha256"] = checked_weights_sha256(folder)
    if args.views:
        ckpt = load_checkpoint(folder)
        ckpt.task.test_views = {}       # choose afresh, whatever a views.json says
        choice = choose_views(ckpt.model, ckpt.task, ckpt.puzzles("train"),
                              ckpt.puzzles("val"), ckpt.config.train.max_segments,
                              progress=True)
        print(f"views: threshold {choice.threshold}, {write_views(folder, choice)}")
    card["test"] = test_figures(folder)
    (folder / "card.json").write_text(json.dumps(card, indent=2) + "\n")
    print(json.dumps(card, indent=2))


if __name__ == "__main__":
    main()
