"""``hrm-rl halt train|eval``: outside policies learn and are compared on halting (the
``halt`` part of the ``hrm-rl`` command line, ``hrm_rl.cli``; agents are imported inside the
command functions, so importing this module stays light).

    hrm-rl halt train --env HRM-Sudoku-v0 --algo ppo --timesteps 200000 --num-envs 256 \\
        --env-kwargs step_cost=0.01
    hrm-rl halt eval --env HRM-Sudoku-v0 --tune-on val \\
        --policies qhead,fixed,threshold,random:0.3,oracle,ppo:runs/halt-ppo-.../model.zip

``train`` (``hrm_rl.agents.sb3.train_and_compare``) trains on the core's ``train`` puzzles
(``--split``) with normalized observations (``vecnormalize.pkl`` beside ``model.zip``;
``--no-normalize`` to train on the raw features), logs SB3's own metrics and ``halt/*``
(accuracy, mean segments, reward, a segments histogram) to TensorBoard, shows a progress
bar, scores the policy on a val trace every ``--eval-every`` steps (``val/*`` tags; the best
one is kept as ``best_model.zip``) and finishes by comparing the trained policy with the
Q-head and the best fixed k on that val trace (never on test).

``eval`` records one trace of the split (``test`` by default; ``hrm_rl.trace``) or reads
one (``--trace F.npz`` or ``--env-kwargs rollouts=F.npz``) and scores every policy on it:
rule families (``hrm_rl.trace.FAMILIES``), given a parameter or chosen on val with
``--tune-on``, SB3 models (their observation mode read from their observation space), the
oracle. It prints a table (or ``--json``) with 95% intervals and the paired reward difference
to ``--baseline``, writes ``pareto.png``, ``difficulty.png`` and TensorBoard images
(``hrm_rl.agents.halting_eval.write_pareto``, ``write_difficulty``), and with ``--per-puzzle``
one CSV row per puzzle. An SB3 model given by a glob (``ppo:runs/halt-ppo-seed*/model.zip``,
one policy trained with several seeds) adds a row per file and one over them: the
interquartile mean with a 95% interval over seeds (``expand_seed_globs``,
``aggregate_seed_groups``).
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import sys
import tempfile
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import yaml

from hrm_rl.cli_types import int_in, positive_int, seed_int

DEFAULT_ENV = "HRM-Sudoku-v0"
"""The env when neither ``--env`` nor a recording names one."""


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
    """``--env-kwargs`` with ``split`` from ``--split`` (giving both is an error) and
    ``track`` from ``--track``, checked against the env id and the env's options. Sets
    ``args.env`` when it was left out (the recording's env, else ``DEFAULT_ENV``) and
    ``args.split`` (the command's default, or a recording's own split)."""
    import gymnasium as gym

    import hrm_rl  # noqa: F401  (registers the envs)
    from hrm_rl.envs.halting import HaltingVectorEnv

    env_kwargs = parse_kwargs(args.env_kwargs, "--env-kwargs")
    if "split" in env_kwargs:
        raise ValueError("give the split as --split, not as --env-kwargs split=...")
    if "track" in env_kwargs:
        raise ValueError("give the track as --track, not as --env-kwargs track=...")
    recording = _recording(args, env_kwargs)
    identity = None if recording is None else _identity(recording)
    if args.env is None:
        args.env = DEFAULT_ENV if identity is None else _env_for(
            identity["config"]["task"].get("name"), recording)
    try:
        gym.spec(args.env)
    except gym.error.Error as err:
        raise ValueError(f"--env {args.env}: {err}") from None
    if args.env not in _halting_envs():
        raise ValueError(f"--env {args.env}: not a halting env (policies here learn when an "
                         f"HRM core halts); give one of {', '.join(_halting_envs())}")
    if identity is None and env_kwargs.get("checkpoint") is not None:
        checkpoint = str(env_kwargs["checkpoint"])
        task, want = _task_of(checkpoint), _halting_envs()[args.env]
        if want is not None and task != want:
            raise ValueError(f"--env-kwargs checkpoint={checkpoint}: a {task} core, and --env "
                             f"{args.env} is for {want} cores; give --env "
                             f"{_env_for(task, checkpoint)}")
    _check_keys(env_kwargs, HaltingVectorEnv.__init__, "--env-kwargs",
                skip=("self", "num_envs", "split", "track"))
    if args.split is None:
        args.split = str(identity["split"]) if identity is not None else args.default_split
    elif identity is not None and str(identity["split"]) != args.split:
        raise ValueError(f"{recording} was recorded on split {identity['split']!r}, not "
                         f"--split {args.split}; leave --split out with a recording")
    return {**env_kwargs, "split": args.split, "track": args.track}


def _recording(args: argparse.Namespace, env_kwargs: dict[str, Any]) -> str | None:
    """The trace file given by ``--trace`` or ``--env-kwargs rollouts=`` (not both)."""
    given = getattr(args, "trace", None)
    rollouts = env_kwargs.get("rollouts")
    if given is not None and rollouts is not None:
        raise ValueError("give the trace file once: --trace or --env-kwargs rollouts=, "
                         "not both")
    return None if given is None and rollouts is None else str(given or rollouts)


def _identity(path: str) -> dict[str, Any]:
    """A trace file's identity (format checked), without loading its arrays."""
    from hrm_rl.trace import read_trace_file

    return read_trace_file(path, keys={"identity"})["identity"]


def _halting_envs() -> dict[str, str | None]:
    """The registered halting env ids and the task (``sudoku``, ``maze``, ``arc``) of
    each one's default core."""
    import gymnasium as gym

    return {env_id: None if spec.kwargs.get("checkpoint") is None
            else _task_of(str(spec.kwargs["checkpoint"]))
            for env_id, spec in gym.registry.items()
            if str(spec.entry_point).startswith("hrm_rl.envs.halting:")}


def _task_of(checkpoint: str) -> str:
    """The task (``sudoku``, ``maze``, ``arc``) a checkpoint's core was trained on."""
    from hrm_rl.checkpoint import read_checkpoint_config, resolve_checkpoint

    return read_checkpoint_config(resolve_checkpoint(checkpoint))[0].task.name


def _env_for(task: str | None, source: str) -> str:
    """The registered halting env whose default core has ``task`` (the task of the core
    ``source`` names or recorded)."""
    for env_id, env_task in _halting_envs().items():
        if env_task == task:
            return env_id
    raise ValueError(f"{source}: no registered halting env is for the core's task {task!r}; "
                     "name one with --env")


def _check_keys(kwargs: dict[str, Any], fn: Any, flag: str, skip: tuple[str, ...] = ()) -> None:
    """A ValueError naming each key of ``kwargs`` that ``fn`` does not take."""
    import inspect

    valid = [p for p in inspect.signature(fn).parameters if p not in skip + ("kwargs", "args")]
    unknown = sorted(set(kwargs) - set(valid))
    if unknown:
        raise ValueError(f"{flag}: unknown option(s) {', '.join(unknown)}; valid: "
                         f"{', '.join(valid)}")


def _env_settings(env_kwargs: dict[str, Any]) -> tuple[float, str, int | None]:
    """``(step_cost, reward, max_segments)`` from the env options (the env's defaults where
    not given), checked as the env checks them."""
    step_cost = env_kwargs.get("step_cost", 0.01)
    if isinstance(step_cost, bool) or not isinstance(step_cost, (int, float)) \
            or not 0 <= step_cost <= 1:
        raise ValueError(f"--env-kwargs: step_cost must be a number in [0, 1], got {step_cost!r}")
    reward = env_kwargs.get("reward", "exact")
    if reward not in ("exact", "cell"):
        raise ValueError(f"--env-kwargs: reward must be exact or cell, got {reward!r}")
    cap = env_kwargs.get("max_segments")
    if cap is not None and (isinstance(cap, bool) or not isinstance(cap, int) or cap < 1):
        raise ValueError(f"--env-kwargs: max_segments must be an int >= 1, got {cap!r}")
    return float(step_cost), reward, cap


# train ----------------------------------------------------------------------------------------
def cmd_train(args: argparse.Namespace) -> int:
    """``halt train``: the options checked, the val trace read or recorded, then
    ``hrm_rl.agents.sb3.train_and_compare``."""
    import stable_baselines3 as sb3

    from hrm_rl.agents.halting_eval import format_table
    from hrm_rl.agents.sb3 import ALGO_DEFAULTS, default_run_dir, train_and_compare

    if args.timesteps < 1:
        raise ValueError(f"--timesteps must be >= 1, got {args.timesteps}")
    env_kwargs = env_kwargs_with_split(args)
    given = parse_kwargs(args.algo_kwargs, "--algo-kwargs")
    algo_kwargs = {**ALGO_DEFAULTS[args.algo], **given}
    for key, value in algo_kwargs.items():
        if isinstance(value, float) and not math.isfinite(value):
            raise ValueError(f"--algo-kwargs: {key}={value} is not a finite number")
    _check_keys(algo_kwargs, getattr(sb3, args.algo.upper()).__init__, "--algo-kwargs",
                skip=("self", "policy", "env", "seed", "verbose", "device", "tensorboard_log"))
    _, _, cap = _env_settings(env_kwargs)
    val = _training_val_trace(args, env_kwargs, cap)
    where = "no evaluation" if val is None else "evaluation on 'val'"
    print(f"training on split {args.split!r}; {where}", file=sys.stderr)
    run_dir = Path(args.run_dir) if args.run_dir else default_run_dir(args.out_dir, args.algo)
    print(f"run folder: {run_dir}  (tensorboard --logdir {run_dir})", file=sys.stderr)
    result = train_and_compare(
        args.env, args.algo, args.timesteps, args.num_envs, env_kwargs, given, args.seed,
        run_dir, normalize=not args.no_normalize, val_trace=val, eval_every=args.eval_every,
        progress=not args.no_progress, threads=args.threads)
    if result.comparison:
        print("split: val", file=sys.stderr)
        print(format_table(result.comparison), file=sys.stderr)
    print(json.dumps(result.summary(), indent=2))
    return 0


def _training_val_trace(args: argparse.Namespace, env_kwargs: dict[str, Any],
                        cap: int | None) -> Any:
    """The val trace ``halt train`` scores on: ``--val-rollouts`` (not a test trace; of the
    replayed core), else the core's val split recorded now (``record_val_trace``), or None
    (``--no-eval``, or a rollouts file without ``--val-rollouts``)."""
    from hrm_rl.agents.sb3 import record_val_trace
    from hrm_rl.trace import load_trace

    replay = env_kwargs.get("rollouts") is not None
    if args.val_rollouts is not None and args.no_eval:
        raise ValueError("--val-rollouts and --no-eval contradict each other")
    if args.val_rollouts is not None:
        val, _ = load_trace(args.val_rollouts)
        if str(val.identity.get("split")) == "test":
            raise ValueError(f"--val-rollouts {args.val_rollouts}: recorded on the test split; "
                             "choose and compare on val (score on test once, with halt eval)")
        if replay:
            _same_core(val.identity, _identity(str(env_kwargs["rollouts"])),
                       f"--val-rollouts {args.val_rollouts}")
        return val
    if not args.no_eval and replay:
        print("a rollouts file holds one split: no evaluation on val while training (give "
              "--val-rollouts F.npz, recorded with 'hrm-rl rollouts record --split val')",
              file=sys.stderr)
    elif not args.no_eval:
        return record_val_trace(args.env, env_kwargs, cap, progress=not args.no_progress)
    return None


def _same_core(a: dict[str, Any], b: dict[str, Any], what: str) -> None:
    """A ValueError when two trace identities name different weights."""
    sa, sb = a.get("weights_sha256"), b.get("weights_sha256")
    if sa and sb and sa != sb:
        raise ValueError(f"{what}: recorded from another core (weights {sa[:12]}...) than the "
                         f"one scored (weights {sb[:12]}...)")


# eval -----------------------------------------------------------------------------------------
@dataclass
class _Entry:
    """One ``--policies`` spec, parsed: ``kind`` is ``oracle``, ``rule`` (a rule family
    with ``param``), ``tuned`` (a family whose parameter ``choose_on`` picks on val) or
    ``policy`` (``random``, an SB3 model: replayed with ``predict_halts``)."""

    spec: str
    kind: str
    family: str | None = None
    param: Any = None
    policy: Any = None
    obs_mode: str = "features"


def _tunable(family: str) -> bool:
    from hrm_rl.trace import FAMILIES

    return family == "fixed" or FAMILIES[family].grid is not None


def _parse_entry(spec: str, seed: int, track: str) -> _Entry:
    """A ``--policies`` spec as an ``_Entry`` (a ValueError naming the spec otherwise)."""
    from hrm_rl.agents.policies import SB3_ALGOS, parse_policy
    from hrm_rl.trace import FAMILIES, check_track

    text = spec.strip()
    kind, _, arg = text.partition(":")
    kind = kind.lower()
    if kind == "oracle" and not arg:
        return _Entry(text, "oracle")
    if kind == "random" or (kind in SB3_ALGOS and arg):
        policy = parse_policy(text, seed)
        entry = _Entry(text, "policy", policy=policy)
        if kind in SB3_ALGOS:
            entry.obs_mode = _sb3_obs_mode(text, policy, track)
        return entry
    if kind == "threshold" and arg.count(":") == 1:  # threshold:T:FEATURE, the policy's form
        policy = parse_policy(text, seed)
        family = "mean-threshold" if policy.feature == "mean_confidence" else "threshold"
        return _Entry(text, "rule", family, policy.threshold)
    if kind not in FAMILIES:
        raise ValueError(f"unknown policy spec {text!r}; expected oracle, random:P, "
                         "ppo:PATH, a2c:PATH, dqn:PATH or a rule: "
                         f"{', '.join(FAMILIES)} (with a parameter, or 'auto' / none with "
                         "--tune-on)")
    fam = FAMILIES[kind]
    if check_track(track) == "verifier-free" and fam.track == "verifier":
        raise ValueError(f"policy {text!r} reads the task's checker: it is on the verifier "
                         "track only (pass --track verifier)")
    if not _tunable(kind):
        if arg:
            raise ValueError(f"policy {text!r}: {kind} takes no parameter")
        return _Entry(text, "rule", kind)
    if arg in ("", "auto"):
        return _Entry(text, "tuned", kind)
    try:
        if kind in ("fixed", "stable"):
            param: Any = int(arg)
            if param < 1:
                raise ValueError(f"{kind} takes an integer >= 1, got {arg!r}")
        else:
            param = float(arg)
            if not math.isfinite(param):
                raise ValueError(f"{kind} takes a finite number, got {arg!r}")
            if kind in ("threshold", "mean-threshold") and not 0 <= param <= 1:
                raise ValueError(f"threshold must be in [0, 1], got {param!r}")
    except ValueError as err:
        raise ValueError(f"policy {text!r}: {err}") from None
    return _Entry(text, "rule", kind, param)


def _sb3_obs_mode(name: str, policy: Any, track: str) -> str:
    """The observation mode an SB3 policy was trained with, read from its observation space
    (``features``, ``features+latent`` or ``dict``), checked against ``track``'s width."""
    import gymnasium as gym

    from hrm_rl.trace import TRACKS, track_features

    width = len(track_features(track))
    other = next(t for t in TRACKS if t != track)
    hint = (f"; it looks trained on the {other} track (pass --track {other})")
    space = policy.observation_space
    if isinstance(space, gym.spaces.Dict):
        keys = set(space.spaces)
        if keys != {"features", "latent"}:
            raise ValueError(f"policy {name!r}: a dict observation space with keys "
                             f"{sorted(keys)}, not a halting env's (features, latent)")
        got = space["features"].shape[0]
        if got != width:
            raise ValueError(f"policy {name!r}: takes {got} features, the {track} track shows "
                             f"{width}" + (hint if got == len(track_features(other)) else ""))
        return "dict"
    if not isinstance(space, gym.spaces.Box) or len(space.shape) != 1:
        raise ValueError(f"policy {name!r}: observation space {space} is no halting env's")
    got = space.shape[0]
    if got == width:
        return "features"
    if got == len(track_features(other)):
        raise ValueError(f"policy {name!r}: takes {got} features, the {track} track shows "
                         f"{width}{hint}")
    if got > len(track_features("verifier")):
        return "features+latent"
    raise ValueError(f"policy {name!r}: observations of width {got}; the {track} track shows "
                     f"{width} features (or {width} + the core's hidden size with latents)")


def _check_latent(entries: list[_Entry], trace: Any, track: str) -> None:
    """Each SB3 entry that sees latents fits the trace's hidden size."""
    from hrm_rl.trace import track_features

    width = len(track_features(track))
    for e in entries:
        if e.kind != "policy" or e.obs_mode == "features":
            continue
        if trace.latent is None:
            raise ValueError(f"policy {e.spec!r} sees H's state ({e.obs_mode}); the trace has "
                             "no latents (record it with 'hrm-rl rollouts record --latent')")
        hidden = trace.latent.shape[2]
        space = e.policy.observation_space
        got = (space["latent"].shape[0] if e.obs_mode == "dict" else space.shape[0] - width)
        if got != hidden:
            raise ValueError(f"policy {e.spec!r}: takes a latent of {got}, the traced core's "
                             f"hidden size is {hidden} (trained on another core or track?)")


def cmd_eval(args: argparse.Namespace) -> int:
    """``halt eval``: one trace recorded or read, every ``--policies`` entry scored on it."""
    from hrm_rl.agents.halting_eval import (aggregate_seed_groups, expand_seed_globs,
                                            family_curves, format_table, trace_title,
                                            write_difficulty, write_pareto)
    from hrm_rl.trace import (choose_on, halts, load_trace, oracle_halt_at, paired_difference,
                              predict_halts, record_core_trace, rule_name, score)

    if args.per_puzzle and Path(args.per_puzzle).exists() and not args.force:
        raise ValueError(f"--per-puzzle {args.per_puzzle} exists; give a new file, or --force "
                         "to replace it")
    env_kwargs = env_kwargs_with_split(args)
    step_cost, reward, cap = _env_settings(env_kwargs)
    track = args.track
    specs = list(dict.fromkeys(s.strip() for s in args.policies.split(",") if s.strip()))
    if not specs:
        raise ValueError("--policies is empty")
    specs, seed_groups = expand_seed_globs(specs)
    entries = [_parse_entry(s, args.seed, track) for s in dict.fromkeys(specs)]
    if any(e.kind == "tuned" for e in entries) and not args.tune_on:
        bare = next(e.spec for e in entries if e.kind == "tuned")
        raise ValueError(f"policy {bare!r}: give its parameter (e.g. fixed:4, threshold:0.9) "
                         "or choose it on val with --tune-on val (or --tune-on VAL.npz)")
    need_latent = any(e.kind == "policy" and e.obs_mode != "features" for e in entries)

    recording = _recording(args, env_kwargs)
    if recording is not None:
        trace, task = load_trace(recording)
        if cap is not None:
            if cap > trace.max_segments:
                raise ValueError(f"--env-kwargs max_segments={cap} exceeds the "
                                 f"{trace.max_segments} segments recorded in {recording}")
            trace = trace.truncate(cap)
        if args.episodes is not None:
            if args.episodes > trace.n:
                raise ValueError(f"--episodes: {recording} holds {trace.n} puzzles, got "
                                 f"{args.episodes}")
            trace = trace.take(slice(0, args.episodes))
        source, checkpoint = recording, trace.identity.get("checkpoint")
        if env_kwargs.get("checkpoint") is not None:
            from hrm_rl.envs.halting import check_recorded_core

            check_recorded_core(Path(recording), trace, task, str(env_kwargs["checkpoint"]))
    else:
        from hrm_rl.agents.sb3 import env_checkpoint

        checkpoint = env_checkpoint(args.env, env_kwargs)
        try:
            trace = record_core_trace(checkpoint, args.split, cap, args.episodes,
                                      latent=need_latent, device=env_kwargs.get("device", "cpu"),
                                      progress=not args.no_progress)
        except ValueError as err:
            if str(err).startswith("episodes must be in"):  # --episodes beyond the split
                raise ValueError(f"--episodes: {err}") from None
            raise
        from hrm_rl.checkpoint import read_checkpoint_config, resolve_checkpoint
        from hrm_rl.tasks import make_task

        task = make_task(read_checkpoint_config(resolve_checkpoint(checkpoint))[0].task)
        source = f"recorded now from {checkpoint}"
    cap = trace.max_segments
    _check_latent(entries, trace, track)
    for e in entries:
        if e.family == "fixed" and e.param is not None and e.param > cap:
            raise ValueError(f"policy {e.spec!r}: k exceeds the env's max_segments={cap} "
                             "(pass --env-kwargs max_segments=K)")

    val = None
    if args.tune_on:
        if args.tune_on == "val":
            if not checkpoint:
                raise ValueError("--tune-on val: the recording names no core to record val "
                                 "from; give a val trace file")
            val = record_core_trace(checkpoint, "val", cap, device=env_kwargs.get("device", "cpu"),
                                    progress=not args.no_progress)
        else:
            val, _ = load_trace(args.tune_on)
            _same_core(val.identity, trace.identity, f"--tune-on {args.tune_on}")
        if str(val.identity.get("split")) == str(trace.identity.get("split")):
            raise ValueError(f"--tune-on: the tuning trace is on split "
                             f"{val.identity.get('split')!r}, the split scored; choose on "
                             "another split (val)")
        if val.max_segments < cap:
            raise ValueError(f"--tune-on: the val trace holds {val.max_segments} segments, "
                             f"fewer than the cap {cap}")

    results, extras = [], {}
    for e in entries:
        if e.kind == "oracle":
            results.append(score(trace, oracle_halt_at(trace.correct), step_cost, "oracle",
                                 reward))
        elif e.kind == "policy":
            halt_at = predict_halts(e.policy, trace, track, e.obs_mode, cap, True, e.spec)
            results.append(score(trace, halt_at, step_cost, e.spec, reward))
        else:
            param, name = e.param, e.spec
            if e.kind == "tuned":
                param = choose_on(val, e.family, step_cost, cap, reward)
                name = f"{rule_name(e.family, param)} (chosen on {val.identity.get('split')})"
                extras[name] = {"spec": e.spec, "param": param,
                                "chosen_on": str(val.identity.get("split"))}
            results.append(score(trace, halts(trace, e.family, param, cap), step_cost, name,
                                 reward))
        if e.kind == "policy" and e.obs_mode != "features":
            extras.setdefault(results[-1].policy, {})["obs_mode"] = e.obs_mode
    results += aggregate_seed_groups(results, seed_groups)  # one row over the seeds, after theirs

    by_name = {r.policy: r for r in results}
    base = by_name.get(args.baseline)
    if base is None:
        try:
            entry = _parse_entry(args.baseline, args.seed, track)
        except ValueError as err:
            raise ValueError(f"--baseline: {err}") from None
        if entry.kind not in ("rule", "oracle"):
            raise ValueError(f"--baseline {args.baseline!r}: not among the policies scored "
                             f"({', '.join(by_name)}); add it to --policies")
        halt_at = (oracle_halt_at(trace.correct) if entry.kind == "oracle"
                   else halts(trace, entry.family, entry.param, cap))
        base = score(trace, halt_at, step_cost, args.baseline, reward)
    paired = {r.policy: paired_difference(r, base) for r in results
              if r.per_puzzle_reward.size == trace.n and r.policy != base.policy}

    curves = family_curves(trace, step_cost, reward, cap)
    out_dir = Path(args.out_dir) if args.out_dir else Path("runs") / \
        f"halt-eval-{datetime.now().strftime('%Y%m%d-%H%M%S')}"
    title = trace_title(trace, f"step cost {step_cost:g}, track {track}")
    png = write_pareto(results, curves, out_dir, title)
    difficulty_png = write_difficulty(trace, task, out_dir)
    per_puzzle = None
    if args.per_puzzle:
        per_puzzle = _write_per_puzzle(Path(args.per_puzzle), trace, task,
                                       [r for r in results if r.halt_at.size == trace.n])
    split = str(trace.identity.get("split", args.split))
    if args.json:
        rows = []
        for r in results:
            row = {**r.to_dict(), **extras.get(r.policy, {})}
            if r.policy in paired:
                mean, (lo, hi) = paired[r.policy]
                row["paired_vs_baseline"] = {"baseline": base.policy, "reward_difference": mean,
                                             "ci": [lo, hi]}
            rows.append(row)
        print(json.dumps({"env": args.env, "env_kwargs": env_kwargs, "split": split,
                          "track": track, "trace": source, "episodes": trace.n,
                          "step_cost": step_cost, "reward": reward, "max_segments": cap,
                          "baseline": base.policy,
                          "tuned_on": None if val is None else str(val.identity.get("split")),
                          "results": rows,
                          "curves": {k: [r.to_dict() for r in v] for k, v in curves.items()},
                          "pareto_png": str(png), "difficulty_png": str(difficulty_png),
                          "per_puzzle_csv": per_puzzle and str(per_puzzle),
                          "tensorboard": str(out_dir)}, indent=2, default=str))
    else:
        print(f"split: {split} ({trace.n} puzzles of {Path(str(checkpoint or '?')).name}, "
              f"cap {cap}, track {track}, step cost {step_cost:g}, reward {reward})")
        print(format_table(results, paired, base.policy))
        if any(e.kind == "oracle" for e in entries):
            print("(oracle reads the targets: an upper bound, not a policy; it halts at the "
                  "first right answer, or after one segment when none is right)")
        if seed_groups:
            print("(a glob's row: the interquartile mean over its seeds, its interval "
                  "resampling seeds)")
        print(f"\nPareto plot: {png}   difficulty and scaling: {difficulty_png}   "
              f"TensorBoard: tensorboard --logdir {out_dir}"
              + (f"   per puzzle: {per_puzzle}" if per_puzzle else ""))
    return 0


def _write_per_puzzle(path: Path, trace: Any, task: Any, results: list[Any]) -> Path:
    """One CSV row per puzzle of the trace: its key (row in the trace's puzzle set), its
    question (the task CSV's question string), its difficulty (where the task has a
    measure), then each policy's halting segment and whether that answer is right."""
    from hrm_rl.trace import csv_questions

    questions = difficulty = None
    if trace.puzzles is not None:
        with tempfile.TemporaryDirectory() as tmp:
            split = Path(tmp) / "split.csv"
            task.write_csv(split, trace.puzzles)
            questions = csv_questions(split.read_text())
        measure = task.difficulty(trace.puzzles)
        difficulty = None if measure is None else [int(v) for v in measure]
    header = ["puzzle"] + (["question"] if questions is not None else []) \
        + ([f"difficulty ({task.difficulty_label(trace.puzzles)})"] if difficulty is not None
           else [])
    for r in results:
        header += [f"halt_at:{r.policy}", f"correct:{r.policy}"]
    correct = [trace.at(r.halt_at)[0] for r in results]
    from hrm_rl.checkpoint import atomic_write

    def write(tmp: str) -> None:
        with open(tmp, "w", newline="") as f:
            writer = csv.writer(f)
            writer.writerow(header)
            for i, key in enumerate(trace.puzzle.tolist()):
                row: list[Any] = [key]
                if questions is not None:
                    row.append(questions[key])
                if difficulty is not None:
                    row.append(difficulty[key])
                for r, ok in zip(results, correct):
                    row += [int(r.halt_at[i]), int(ok[i])]
                writer.writerow(row)

    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(path, write)  # never a torn CSV
    return path


# parsers --------------------------------------------------------------------------------------
def build_halt_parser() -> argparse.ArgumentParser:
    """A stand-alone parser of ``halt``'s arguments (``train ...`` or ``eval ...``)."""
    parser = argparse.ArgumentParser(prog="hrm-rl halt")
    _add_subcommands(parser.add_subparsers(dest="halt_command", required=True))
    return parser


def add_parser(sub: argparse._SubParsersAction) -> None:
    """Add ``halt train`` and ``halt eval`` to the ``hrm-rl`` parser."""
    halt = sub.add_parser("halt", help="outside policies control halting: train and compare")
    _add_subcommands(halt.add_subparsers(dest="halt_command", required=True))


def _add_env_options(p: argparse.ArgumentParser, split_default: str, others: str) -> None:
    """``--split``, ``--track`` and ``--env-kwargs``, which ``train`` and ``eval`` share."""
    from hrm_rl.trace import DEFAULT_TRACK, TRACKS

    p.add_argument("--split", default=None,
                   help=f"puzzles to {split_default}; with a recording the recording's split), "
                        f"{others} or a CSV path")
    p.add_argument("--track", choices=TRACKS, default=DEFAULT_TRACK,
                   help=f"what the policies see: {' or '.join(TRACKS)} (default "
                        f"{DEFAULT_TRACK}: the model's features only; verifier adds the task "
                        "checker's violations)")
    p.add_argument("--env-kwargs", nargs="*", action="extend", default=[], metavar="KEY=VALUE",
                   help="env options, e.g. step_cost=0.01 max_segments=8 checkpoint=maze6 "
                        "(repeatable)")


def _add_subcommands(hsub: argparse._SubParsersAction) -> None:
    from hrm_rl.agents.sb3 import ALGO_DEFAULTS

    env_help = (f"the halting env id (default: a recording's env, else {DEFAULT_ENV})")
    p = hsub.add_parser("train", help="train an SB3 policy on the batched halting env")
    p.add_argument("--env", default=None, help=env_help)
    p.add_argument("--algo", choices=tuple(ALGO_DEFAULTS), default="ppo")
    p.add_argument("--timesteps", type=positive_int, default=200_000,
                   help="env steps, all rows summed")
    p.add_argument("--num-envs", type=int_in(1, 65536), default=256)
    _add_env_options(p, "train on: train (default", "val, test")
    p.add_argument("--algo-kwargs", nargs="*", action="extend", default=[], metavar="KEY=VALUE",
                   help="SB3 constructor options, e.g. learning_rate=3e-4 (repeatable)")
    p.add_argument("--no-normalize", action="store_true",
                   help="train on the raw observations (default: VecNormalize statistics, "
                        "saved as vecnormalize.pkl beside model.zip)")
    p.add_argument("--val-rollouts", metavar="F.npz", default=None,
                   help="the val trace to evaluate on while training (default: the core's val "
                        "split, recorded now; none when training on a rollouts file)")
    p.add_argument("--eval-every", type=positive_int, default=10_000,
                   help="env steps between evaluations on val (best_model.zip keeps the best)")
    p.add_argument("--seed", type=seed_int, default=0)
    p.add_argument("--threads", type=int_in(1, 1024), default=None, help="torch CPU threads")
    p.add_argument("--out-dir", default="runs")
    p.add_argument("--run-dir", help="output folder (default runs/halt-<algo>-<timestamp>)")
    p.add_argument("--no-eval", action="store_true",
                   help="no evaluation on val (while training or after)")
    p.add_argument("--no-progress", action="store_true")
    p.set_defaults(func=cmd_train, default_split="train")

    p = hsub.add_parser("eval", help="compare halting policies on the same held-out puzzles")
    p.add_argument("--env", default=None, help=env_help)
    p.add_argument("--policies", default="qhead,fixed:1,fixed:4,fixed:8,threshold:0.9,"
                   "random:0.3,oracle",
                   help="comma-separated: oracle, random:P, ppo:PATH, a2c:PATH, dqn:PATH (an "
                        "SB3 model; its observation mode is read from it; a glob adds one row "
                        "per seed and their IQM), or a rule: qhead, fixed:K, threshold:T, "
                        "mean-threshold:T, q-margin:M, stable:M, residual:E, checker (verifier "
                        "track); a rule with a parameter given as 'auto' or left out is chosen "
                        "on --tune-on")
    _add_env_options(p, "score on: test (default", "val, train")
    p.add_argument("--trace", metavar="F.npz", default=None,
                   help="score on this trace file (hrm-rl rollouts record) instead of "
                        "recording one now (as --env-kwargs rollouts=F.npz)")
    p.add_argument("--tune-on", metavar="VAL", default=None,
                   help="choose the tunable rules' parameters (fixed, threshold, mean-threshold, "
                        "q-margin, stable, residual) on this trace: 'val' (the core's val "
                        "split, recorded now) or a val trace file")
    p.add_argument("--baseline", default="qhead",
                   help="the policy each row's paired reward difference is against "
                        "(default qhead)")
    p.add_argument("--episodes", type=positive_int, default=None,
                   help="puzzles to score: the split's first N (default: all, each once)")
    p.add_argument("--per-puzzle", metavar="FILE.csv", default=None,
                   help="write one row per puzzle: its key, question, difficulty, and each "
                        "policy's halting segment and correctness")
    p.add_argument("--force", action="store_true", help="replace an existing --per-puzzle file")
    p.add_argument("--seed", type=seed_int, default=0, help="random:P's seed")
    p.add_argument("--out-dir", help="where pareto.png and TensorBoard events go")
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")
    p.add_argument("--no-progress", action="store_true")
    p.set_defaults(func=cmd_eval, default_split="test")
