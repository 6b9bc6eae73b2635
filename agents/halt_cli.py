"""``hrm-rl halt train|eval``: outside policies learn and are compared on halting.

    hrm-rl halt train --env HRM-Sudoku-v0 --algo ppo --timesteps 200000 --num-envs 256 \\
        --env-kwargs step_cost=0.01
    hrm-rl halt eval --env HRM-Sudoku-v0 \\
        --policies qhead,fixed:1,fixed:8,threshold:0.9,random:0.3,oracle,ppo:runs/halt-ppo-.../model.zip

``train`` trains on the core's ``train`` puzzles (``--split``), logs SB3's own metrics and
``halt/*`` (accuracy, mean segments, reward, a segments histogram) to TensorBoard, shows a
progress bar, saves ``model.zip`` and finishes by scoring the trained policy against the
Q-head and the fixed-k policies on the ``val`` puzzles (never on test). ``eval`` scores on
the ``test`` puzzles by default, prints a table (or ``--json``) and writes ``pareto.png`` plus
the same figure as a TensorBoard image. Both print the split they used. An SB3 model given
by a glob (``ppo:runs/halt-ppo-seed*/model.zip``, one policy trained with several seeds) adds
a row per file and one over them: the interquartile mean with a 95% interval over seeds.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from datetime import datetime
from pathlib import Path
from typing import Any

import yaml

from hrm_rl.cli_types import int_in, positive_int, seed_int

_ALGO_DEFAULTS: dict[str, dict[str, Any]] = {
    # Rollouts of num_envs x n_steps; episodes last a few steps, so short rollouts suffice.
    "ppo": {"n_steps": 16, "batch_size": 1024, "n_epochs": 4, "learning_rate": 1e-3,
            "gamma": 1.0, "gae_lambda": 0.95, "ent_coef": 0.0},
    "a2c": {"n_steps": 8, "learning_rate": 1e-3, "gamma": 1.0},
    "dqn": {"learning_starts": 2000, "buffer_size": 200_000, "batch_size": 256,
            "train_freq": 1, "gradient_steps": 4, "target_update_interval": 500,
            "exploration_fraction": 0.3, "learning_rate": 5e-4, "gamma": 1.0},
}


def parse_kwargs(items: list[str], what: str) -> dict[str, Any]:
    """``["a=1", "b=x"]`` -> ``{"a": 1, "b": "x"}`` (values parsed as YAML scalars)."""
    out: dict[str, Any] = {}
    for item in items:
        for part in item.split(","):
            if not part.strip():
                continue
            key, sep, raw = part.partition("=")
            if not sep or not key.strip():
                raise ValueError(f"{what}: {part!r} must look like key=value")
            if key.strip() in out:
                raise ValueError(f"{what}: {key.strip()} is given twice")
            try:
                out[key.strip()] = yaml.safe_load(raw)
            except yaml.YAMLError as err:
                problem = getattr(err, "problem", None) or str(err).splitlines()[0]
                raise ValueError(f"{what}: {key.strip()}={raw!r} is not a YAML value "
                                 f"({problem}); quote strings") from None
    return out


def env_kwargs_with_split(args: argparse.Namespace) -> dict[str, Any]:
    """``--env-kwargs`` with ``split`` from ``--split`` (giving both is an error), checked
    against the env id and the env's options."""
    import gymnasium as gym

    import hrm_rl  # noqa: F401  (registers the envs)
    from hrm_rl.envs.halting import HaltingVectorEnv

    env_kwargs = parse_kwargs(args.env_kwargs, "--env-kwargs")
    if "split" in env_kwargs:
        raise ValueError("give the split as --split, not as --env-kwargs split=...")
    try:
        gym.spec(args.env)
    except gym.error.Error as err:
        raise ValueError(f"--env {args.env}: {err}") from None
    _check_keys(env_kwargs, HaltingVectorEnv.__init__, "--env-kwargs",
                skip=("self", "num_envs", "split"))
    if args.split is None:  # the command's default, or a recording's own split
        rollouts = env_kwargs.get("rollouts")
        args.split = (_recorded_split(rollouts) if rollouts is not None
                      else args.default_split)
    return {**env_kwargs, "split": args.split}


def _recorded_split(path: Any) -> str:
    """The split a rollouts file was recorded on (its identity), without loading it all."""
    from hrm_rl.envs.rollouts import rollouts_identity

    return str(rollouts_identity(path)["split"])


def _check_keys(kwargs: dict[str, Any], fn: Any, flag: str, skip: tuple[str, ...] = ()) -> None:
    """A ValueError naming each key of ``kwargs`` that ``fn`` does not take."""
    import inspect

    valid = [p for p in inspect.signature(fn).parameters if p not in skip + ("kwargs", "args")]
    unknown = sorted(set(kwargs) - set(valid))
    if unknown:
        raise ValueError(f"{flag}: unknown option(s) {', '.join(unknown)}; valid: "
                         f"{', '.join(valid)}")


def _shown(kwargs: dict[str, Any]) -> str:
    return ",".join(f"{k}={v}" for k, v in kwargs.items())


def _run_dir(base: str, algo: str) -> Path:
    import os

    return Path(base) / f"halt-{algo}-{datetime.now().strftime('%Y%m%d-%H%M%S')}-{os.getpid()}"


def cmd_train(args: argparse.Namespace) -> int:
    import stable_baselines3 as sb3
    import torch
    from stable_baselines3.common.vec_env import VecMonitor

    from hrm_rl.agents.halting_eval import (evaluate_on_trace, family_curves, format_table,
                                            record_trace)
    from hrm_rl.agents.policies import QHeadPolicy
    from hrm_rl.agents.sb3 import HaltingMetricsCallback, make_sb3_vec_env

    if args.timesteps < 1:
        raise ValueError(f"--timesteps must be >= 1, got {args.timesteps}")
    if args.threads:
        torch.set_num_threads(args.threads)
    env_kwargs = env_kwargs_with_split(args)
    print(f"training on split {args.split!r}; final comparison on 'val'", file=sys.stderr)
    given = parse_kwargs(args.algo_kwargs, "--algo-kwargs")
    algo_kwargs = {**_ALGO_DEFAULTS[args.algo], **given}
    for key, value in algo_kwargs.items():
        if isinstance(value, float) and not math.isfinite(value):
            raise ValueError(f"--algo-kwargs: {key}={value} is not a finite number")
    _check_keys(algo_kwargs, getattr(sb3, args.algo.upper()).__init__, "--algo-kwargs",
                skip=("self", "policy", "env", "seed", "verbose", "device", "tensorboard_log"))
    run_dir = Path(args.run_dir) if args.run_dir else _run_dir(args.out_dir, args.algo)
    from hrm_rl.checkpoint import RunLock

    lock = RunLock(run_dir)  # one live training per folder (RunLockedError: exit 2)
    if (run_dir / "model.zip").exists():
        lock.release()
        raise ValueError(f"{run_dir} already holds a trained model.zip; choose another "
                         "--run-dir (or move it away)")
    venv = VecMonitor(make_sb3_vec_env(args.env, args.num_envs, **env_kwargs))
    venv.seed(args.seed)
    policy = "MultiInputPolicy" if env_kwargs.get("obs_mode") == "dict" else "MlpPolicy"
    try:
        model = getattr(sb3, args.algo.upper())(policy, venv, seed=args.seed, verbose=0,
                                                 device="cpu", tensorboard_log=str(run_dir),
                                                 **algo_kwargs)
    except (AssertionError, TypeError, ValueError) as err:  # SB3's checks of its options
        lock.release()
        raise ValueError(f"--algo-kwargs {_shown(given) or '(defaults)'}: {args.algo} "
                         f"refuses the options: {err}") from None
    print(f"run folder: {run_dir}  (tensorboard --logdir {run_dir})", file=sys.stderr)
    start = time.perf_counter()
    model.learn(args.timesteps, callback=HaltingMetricsCallback(), tb_log_name=args.algo,
                progress_bar=not args.no_progress)
    seconds = time.perf_counter() - start
    model.save(run_dir / "model.zip")
    (run_dir / "train_args.json").write_text(json.dumps(
        {"env": args.env, "algo": args.algo, "timesteps": args.timesteps,
         "num_envs": args.num_envs, "env_kwargs": env_kwargs, "algo_kwargs": algo_kwargs,
         "seed": args.seed}, indent=2, default=str))
    summary: dict[str, Any] = {"run_dir": str(run_dir), "model": str(run_dir / "model.zip"),
                               "train_seconds": round(seconds, 1),
                               "timesteps": int(model.num_timesteps)}
    replay = env_kwargs.get("rollouts") is not None
    if replay and not args.no_eval:
        print("a rollouts file holds one split: no final comparison on val (score the "
              "policy with 'halt eval --env-kwargs rollouts=<val or test recording>')",
              file=sys.stderr)
    if not args.no_eval and not replay:
        trace = record_trace(args.env, **{**env_kwargs, "split": "val"})
        fixed = family_curves(trace)["fixed"]
        best_fixed = max(fixed, key=lambda r: r.mean_reward)
        rows = [evaluate_on_trace(model, trace, f"{args.algo}:trained"),
                evaluate_on_trace(QHeadPolicy(), trace, "qhead"), best_fixed]
        print(format_table(rows), file=sys.stderr)
        summary["eval"] = [r.to_dict() for r in rows]
        summary["eval_split"] = "val"
    print(json.dumps(summary, indent=2))
    return 0


def cmd_eval(args: argparse.Namespace) -> int:
    from hrm_rl.agents.halting_eval import (aggregate_seeds, evaluate_on_trace, family_curves,
                                            format_table, oracle_on_trace, record_trace,
                                            write_pareto)
    from hrm_rl.agents.policies import FixedSegmentsPolicy, parse_policy

    env_kwargs = env_kwargs_with_split(args)
    print(f"scoring on split {args.split!r}", file=sys.stderr)
    specs = [s for s in args.policies.split(",") if s.strip()]
    if not specs:
        raise ValueError("--policies is empty")
    try:
        trace = record_trace(args.env, n=args.episodes, seed=args.seed, **env_kwargs)
    except ValueError as err:
        if str(err).startswith("n must be in"):  # --episodes beyond the split
            raise ValueError(f"--episodes: {err}") from None
        raise
    specs, seed_groups = _expand_seed_globs(specs)
    oracle = [s.strip().lower() == "oracle" for s in specs]
    policies = {s.strip(): parse_policy(s, args.seed) for s, o in zip(specs, oracle) if not o}
    for spec, policy in policies.items():
        if isinstance(policy, FixedSegmentsPolicy) and policy.k > trace.max_segments:
            raise ValueError(f"policy {spec!r}: k exceeds the env's max_segments="
                             f"{trace.max_segments} (pass --env-kwargs max_segments=K)")
    results = [oracle_on_trace(trace) if o else evaluate_on_trace(policies[s.strip()], trace,
                                                                   s.strip())
               for s, o in zip(specs, oracle)]
    for pattern, members in seed_groups.items():  # one row over the seeds, after theirs
        rows = [r for r in results if r.policy in members]
        results.append(aggregate_seeds(rows, f"{pattern} (IQM of {len(rows)} seeds)"))
    curves = family_curves(trace)
    out_dir = Path(args.out_dir) if args.out_dir else Path("runs") / \
        f"halt-eval-{datetime.now().strftime('%Y%m%d-%H%M%S')}"
    png = write_pareto(results, curves, out_dir, f"{args.env}: step_cost {trace.step_cost:g}")
    difficulty_png = (None if env_kwargs.get("rollouts") is not None  # no model to run
                      else _write_difficulty(args.env, env_kwargs, out_dir))
    if args.json:
        print(json.dumps({"env": args.env, "env_kwargs": env_kwargs, "split": args.split,
                          "episodes": trace.n,
                          "step_cost": trace.step_cost, "max_segments": trace.max_segments,
                          "results": [r.to_dict() for r in results],
                          "curves": {k: [r.to_dict() for r in v] for k, v in curves.items()},
                          "pareto_png": str(png),
                          "difficulty_png": difficulty_png and str(difficulty_png),
                          "tensorboard": str(out_dir)}, indent=2))
    else:
        print(f"split: {args.split}")
        print(format_table(results))
        if any(oracle):
            print("(oracle reads the targets: an upper bound, not a policy; it halts at the "
                  "first right answer, or after one segment when none is right)")
        print(f"\nPareto plot: {png}   difficulty and scaling: {difficulty_png}   "
              f"TensorBoard: tensorboard --logdir {out_dir}")
    return 0


def _expand_seed_globs(specs: list[str]) -> tuple[list[str], dict[str, list[str]]]:
    """Specs with SB3 models given by a glob (``ppo:runs/halt-ppo-seed*/model.zip``: one
    policy trained with several seeds) replaced by one spec per matching file, and
    ``{pattern spec: [member specs]}`` for the patterns that matched two or more files (their
    rows are aggregated over seeds as rliable recommends: the interquartile mean, with an
    interval that resamples seeds)."""
    import glob

    from hrm_rl.agents.policies import SB3_ALGOS

    out, groups = [], {}
    for spec in specs:
        kind, _, path = spec.strip().partition(":")
        if kind.lower() not in SB3_ALGOS or not any(c in path for c in "*?["):
            out.append(spec)
            continue
        matches = sorted(glob.glob(path))
        if not matches:
            raise ValueError(f"policy {spec.strip()!r}: no file matches {path!r}")
        members = [f"{kind}:{m}" for m in matches]
        out += members
        if len(members) >= 2:
            groups[spec.strip()] = members
    return out, groups


def _write_difficulty(env_id: str, env_kwargs: dict[str, Any], out_dir: Path) -> Path:
    """``difficulty.png`` (and TensorBoard image ``halt/difficulty``): the core's thinking
    time against difficulty and its accuracy to twice the training cap, on the split."""
    import gymnasium as gym
    import matplotlib.pyplot as plt
    from torch.utils.tensorboard import SummaryWriter

    from hrm_rl.agents.zoo import core_report, difficulty_figure

    checkpoint = env_kwargs.get("checkpoint", gym.spec(env_id).kwargs.get("checkpoint"))
    report = core_report(checkpoint, step_costs=(), test_split=env_kwargs["split"])
    fig = difficulty_figure(report)
    png = out_dir / "difficulty.png"
    fig.savefig(png)
    writer = SummaryWriter(str(out_dir))
    writer.add_figure("halt/difficulty", fig, global_step=0, close=False)
    writer.close()
    plt.close(fig)
    return png


def build_halt_parser() -> argparse.ArgumentParser:
    """A stand-alone parser of ``halt``'s arguments (``train ...`` or ``eval ...``)."""
    parser = argparse.ArgumentParser(prog="hrm-rl halt")
    _add_subcommands(parser.add_subparsers(dest="halt_command", required=True))
    return parser


def add_parser(sub: argparse._SubParsersAction) -> None:
    """Add ``halt train`` and ``halt eval`` to the ``hrm-rl`` parser."""
    halt = sub.add_parser("halt", help="outside policies control halting: train and compare")
    _add_subcommands(halt.add_subparsers(dest="halt_command", required=True))


def _add_subcommands(hsub: argparse._SubParsersAction) -> None:
    p = hsub.add_parser("train", help="train an SB3 policy on the batched halting env")
    p.add_argument("--env", default="HRM-Sudoku-v0")
    p.add_argument("--algo", choices=tuple(_ALGO_DEFAULTS), default="ppo")
    p.add_argument("--timesteps", type=positive_int, default=200_000,
                   help="env steps, all rows summed")
    p.add_argument("--num-envs", type=int_in(1, 65536), default=256)
    p.add_argument("--split", default=None,
                   help="puzzles to train on: train (default; with --env-kwargs rollouts=F the "
                        "recording's split), val, test or a CSV path")
    p.add_argument("--env-kwargs", nargs="*", action="extend", default=[], metavar="KEY=VALUE",
                   help="env options, e.g. step_cost=0.01 max_segments=8 (repeatable)")
    p.add_argument("--algo-kwargs", nargs="*", action="extend", default=[], metavar="KEY=VALUE",
                   help="SB3 constructor options, e.g. learning_rate=3e-4 (repeatable)")
    p.add_argument("--seed", type=seed_int, default=0)
    p.add_argument("--threads", type=int_in(1, 1024), default=None, help="torch CPU threads")
    p.add_argument("--out-dir", default="runs")
    p.add_argument("--run-dir", help="output folder (default runs/halt-<algo>-<timestamp>)")
    p.add_argument("--no-eval", action="store_true", help="skip the final comparison")
    p.add_argument("--no-progress", action="store_true")
    p.set_defaults(func=cmd_train, default_split="train")

    p = hsub.add_parser("eval", help="compare halting policies on the same held-out puzzles")
    p.add_argument("--env", default="HRM-Sudoku-v0")
    p.add_argument("--policies", default="qhead,fixed:1,fixed:4,fixed:8,threshold:0.9,"
                   "random:0.3,oracle",
                   help="comma-separated: qhead, fixed:K, threshold:T, random:P, oracle, "
                        "ppo:PATH, a2c:PATH, dqn:PATH")
    p.add_argument("--split", default=None,
                   help="puzzles to score on: test (default; with --env-kwargs rollouts=F the "
                        "recording's split), val, train or a CSV path")
    p.add_argument("--env-kwargs", nargs="*", action="extend", default=[], metavar="KEY=VALUE",
                   help="env options, e.g. step_cost=0.01 max_segments=8 (repeatable)")
    p.add_argument("--episodes", type=positive_int, default=None,
                   help="puzzles to score (default: the whole split, each once)")
    p.add_argument("--seed", type=seed_int, default=0)
    p.add_argument("--out-dir", help="where pareto.png and TensorBoard events go")
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")
    p.set_defaults(func=cmd_eval, default_split="test")
