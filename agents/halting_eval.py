"""Compare halting policies on exactly the same puzzles, and draw the Pareto front.

The core's segments do not depend on when a policy halts: halting only ends the episode.
So one trace (``hrm_rl.trace.Trace``: every puzzle run to the cap without halting)
replays *every* Markov halting policy exactly: a policy halts at the first segment where it
says so (``hrm_rl.trace.predict_halts``, equal to running it in the env on the same
puzzles), and ``hrm_rl.trace.score`` scores that. This module is the comparison layer on
one trace: a policy's ``Score``, the rule families' curves, the table, the seed aggregate
(``expand_seed_globs``, ``aggregate_seed_groups``), the Pareto plot and the difficulty
figure.

    trace = record_core_trace("sudoku4", "test")
    rows = [evaluate_policy_on_trace(p, trace, name, step_cost=0.01)
            for name, p in policies.items()]
    print(format_table(rows))
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import numpy as np

from hrm_rl.trace import (DEFAULT_TRACK, THRESHOLD_GRID, Score, Trace, halts, predict_halts,
                          rule_name, score)


def evaluate_policy_on_trace(policy: Any, trace: Trace, name: str | None = None,
                             track: str = DEFAULT_TRACK, obs_mode: str = "features",
                             step_cost: float = 0.01, reward: str = "exact",
                             cap: int | None = None, deterministic: bool = True) -> Score:
    """Replay ``policy`` (anything with SB3's ``predict``: action 1 halts) on ``trace`` as a
    halting env on ``track`` with ``obs_mode`` observations and cap ``cap`` (default the
    trace's ``K``) shows it, and score where it halts (``predict_halts`` + ``score``).

    Args:
        policy: the policy; name: its row name (default its ``repr``).
        trace: the puzzles' segments; step_cost, reward: the env's reward settings.

    Raises:
        ValueError: the policy refuses the observations (the message names it).
    """
    name = name or str(policy)
    cap = trace.max_segments if cap is None else cap
    halt_at = predict_halts(policy, trace, track, obs_mode, cap, deterministic, name)
    return score(trace, halt_at, step_cost, name, reward)


def family_curves(trace: Trace, step_cost: float = 0.01, reward: str = "exact",
                  cap: int | None = None) -> dict[str, list[Score]]:
    """The fixed-k (k = 1..cap) and min-confidence threshold (``THRESHOLD_GRID``) families
    scored on ``trace``, for Pareto curves."""
    cap = trace.max_segments if cap is None else cap
    return {"fixed": [score(trace, halts(trace, "fixed", k, cap), step_cost,
                            rule_name("fixed", k), reward) for k in range(1, cap + 1)],
            "threshold": [score(trace, halts(trace, "threshold", t, cap), step_cost,
                                rule_name("threshold", t), reward) for t in THRESHOLD_GRID]}


def interquartile_mean(values: np.ndarray | list[float]) -> float:
    """The mean of the middle half of ``values``: ``floor(n / 4)`` cut from each end, as
    ``scipy.stats.trim_mean(values, 0.25)`` and rliable's IQM compute it."""
    values = np.sort(np.asarray(values, dtype=np.float64).ravel())
    if values.size == 0:
        raise ValueError("the interquartile mean of no values is undefined")
    cut = values.size // 4
    return float(values[cut:values.size - cut].mean())


def seeds_label(name: str, seeds: int) -> str:
    """The row name of a policy aggregated over ``seeds`` seeds."""
    return f"{name} (IQM over {seeds} seeds, 95% CI over seeds)"


def aggregate_seeds(results: list[Score], name: str, seed: int = 0,
                    resamples: int = 2000) -> Score:
    """One row for a policy trained with several seeds, scored on the same trace: the
    interquartile mean over seeds of each figure, and a 95% percentile bootstrap interval
    that resamples seeds (the run-to-run spread, which a single seed's interval over puzzles
    does not show), as rliable recommends for a handful of runs.

    The row is named ``seeds_label(name, len(results))``. It has no per-puzzle values
    (``halt_at`` and ``per_puzzle_reward`` are empty): an IQM over seeds is no one policy's
    halting, so it takes no paired difference.
    """
    if len(results) < 2:
        raise ValueError(f"aggregating seeds needs at least 2 results, got {len(results)}")
    if len({r.n for r in results}) != 1 or len({r.step_cost for r in results}) != 1:
        raise ValueError("the seeds' results were scored on different traces or step costs")
    rng = np.random.default_rng(seed)
    picks = rng.integers(0, len(results), (resamples, len(results)))

    def figure(attr: str) -> tuple[float, tuple[float, float]]:
        values = np.array([getattr(r, attr) for r in results], dtype=np.float64)
        boot = [interquartile_mean(values[row]) for row in picks]
        lo, hi = np.percentile(boot, [2.5, 97.5])
        return interquartile_mean(values), (float(lo), float(hi))

    (acc, acc_ci), (seg, seg_ci), (rew, rew_ci) = (figure(a) for a in
                                                    ("accuracy", "mean_segments", "reward"))
    empty = np.zeros(0, dtype=np.int64)
    return Score(seeds_label(name, len(results)), acc,
                 interquartile_mean([r.cell_accuracy for r in results]), seg, rew,
                 results[0].n, results[0].step_cost, acc_ci, seg_ci, rew_ci, empty,
                 empty.astype(np.float64))


def expand_seed_globs(specs: list[str]) -> tuple[list[str], dict[str, list[str]]]:
    """Policy specs with SB3 models given by a glob (``ppo:runs/halt-ppo-seed*/model.zip``:
    one policy trained with several seeds) replaced by one spec per matching file (sorted),
    and ``{pattern spec: [member specs]}`` for the patterns that matched two or more files,
    whose rows ``aggregate_seed_groups`` joins. Other specs pass through unchanged.

    Raises:
        ValueError: a glob that matches no file.
    """
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


def aggregate_seed_groups(results: list[Score], groups: dict[str, list[str]]) -> list[Score]:
    """One ``aggregate_seeds`` row per group of ``expand_seed_globs`` (in its order): the
    interquartile mean over the rows of ``results`` named by the group's members, with an
    interval that resamples seeds, as rliable recommends."""
    return [aggregate_seeds([r for r in results if r.policy in members], pattern)
            for pattern, members in groups.items()]


def format_table(results: list[Score],
                 paired: dict[str, tuple[float, tuple[float, float]]] | None = None,
                 baseline: str | None = None) -> str:
    """A plain-text table: policy, accuracy, mean segments, mean reward (each with its 95%
    bootstrap interval over puzzles), puzzles; with ``paired`` (policy name -> mean reward
    difference to ``baseline`` and its paired 95% interval) a column of those (blank for a
    row without one). The name column is as wide as the longest name."""
    width = max([len("policy")] + [len(r.policy) for r in results])

    def cell(value: float, ci: tuple[float, float], digits: int, sign: str = "") -> str:
        return f"{value:{sign}.{digits}f} [{ci[0]:{sign}.{digits}f}, {ci[1]:{sign}.{digits}f}]"

    diff_head = f"reward - {baseline} [95% CI]" if paired is not None else ""
    diff_width = max(len(diff_head), 27)
    header = (f"{'policy':<{width}} {'accuracy [95% CI]':>24} {'segments [95% CI]':>24} "
              f"{'reward [95% CI]':>24}"
              + (f" {diff_head:>{diff_width}}" if paired is not None else "")
              + f" {'puzzles':>8}")
    lines = [header, "-" * len(header)]
    for r in results:
        line = (f"{r.policy:<{width}} {cell(r.accuracy, r.accuracy_ci, 4):>24} "
                f"{cell(r.mean_segments, r.segments_ci, 3):>24} "
                f"{cell(r.reward, r.reward_ci, 4):>24}")
        if paired is not None:
            shown = (cell(paired[r.policy][0], paired[r.policy][1], 4, "+")
                     if r.policy in paired else "")
            line += f" {shown:>{diff_width}}"
        lines.append(line + f" {r.n:>8d}")
    return "\n".join(lines)


def trace_title(trace: Trace, extra: str = "") -> str:
    """``core sudoku4, split test`` (from the trace's identity), then ``extra``."""
    identity = trace.identity
    core = identity.get("checkpoint") or identity.get("task") or "core ?"
    text = f"{Path(str(core)).name}, split {Path(str(identity.get('split', '?'))).name}"
    return f"{text}: {extra}" if extra else text


def pareto_figure(results: list[Score], curves: dict[str, list[Score]], title: str):
    """A matplotlib figure: accuracy vs mean segments, families as curves."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.4, 4.4), dpi=100)
    for label, family in curves.items():
        ax.plot([r.mean_segments for r in family], [r.accuracy for r in family], "-o",
                ms=3, lw=1, alpha=0.7, label=f"{label} family")
    for r in results:
        marker = "*" if r.policy.split(":")[0] in ("ppo", "a2c", "dqn") else "s"
        ax.plot(r.mean_segments, r.accuracy, marker, ms=9 if marker == "*" else 6,
                label=r.policy + (" (reads targets)" if r.policy == "oracle" else ""))
    ax.set_xlabel("mean segments per puzzle (compute)")
    ax.set_ylabel("exact accuracy")
    ax.set_title(title, fontsize=9)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="lower right")
    fig.tight_layout()
    return fig


def write_pareto(results: list[Score], curves: dict[str, list[Score]], out_dir: str | Path,
                 title: str) -> Path:
    """Save the Pareto plot as ``pareto.png`` and as TensorBoard image ``halt/pareto``, with
    each row's figures as ``halt_eval/<policy>/*`` scalars. ``title`` should name the core
    and the split (``trace_title``)."""
    import matplotlib.pyplot as plt
    from torch.utils.tensorboard import SummaryWriter

    from hrm_rl.checkpoint import atomic_write

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    fig = pareto_figure(results, curves, title)
    png = out_dir / "pareto.png"
    atomic_write(png, lambda tmp: fig.savefig(tmp, format="png"))
    writer = SummaryWriter(str(out_dir))
    writer.add_figure("halt/pareto", fig, global_step=0, close=False)
    for r in results:
        tag = re.sub(r"[^A-Za-z0-9_.-]+", "_", r.policy).strip("_")
        writer.add_scalar(f"halt_eval/{tag}/accuracy", r.accuracy, 0)
        writer.add_scalar(f"halt_eval/{tag}/mean_segments", r.mean_segments, 0)
        writer.add_scalar(f"halt_eval/{tag}/reward", r.reward, 0)
    writer.close()
    plt.close(fig)
    return png


def write_difficulty(trace: Trace, task: Any, out_dir: str | Path) -> Path:
    """Save ``difficulty.png`` in ``out_dir`` (created) and as TensorBoard image
    ``halt/difficulty``, drawn from the trace (``hrm_rl.agents.zoo.difficulty_figure``): the
    Q-head's thinking time against ``task``'s difficulty measure (halting within the core's
    training cap, or the trace's ``K`` if fewer) and the accuracy after each recorded
    segment. Returns the PNG's path."""
    import matplotlib.pyplot as plt
    from torch.utils.tensorboard import SummaryWriter

    from hrm_rl.agents.zoo import difficulty_figure, trace_report
    from hrm_rl.checkpoint import atomic_write

    out_dir = Path(out_dir)
    identity = trace.identity
    trained = identity.get("config", {}).get("train", {}).get("max_segments")
    cap = min(int(trained), trace.max_segments) if trained else trace.max_segments
    report = {"core": Path(str(identity.get("checkpoint") or identity.get("task"))).name,
              "test_split": Path(str(identity.get("split", "?"))).name, "n_test": trace.n,
              **trace_report(trace, task, cap)}
    fig = difficulty_figure(report)
    out_dir.mkdir(parents=True, exist_ok=True)
    png = out_dir / "difficulty.png"
    atomic_write(png, lambda tmp: fig.savefig(tmp, format="png"))
    writer = SummaryWriter(str(out_dir))
    writer.add_figure("halt/difficulty", fig, global_step=0, close=False)
    writer.close()
    plt.close(fig)
    return png
