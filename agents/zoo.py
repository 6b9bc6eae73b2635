"""The halting zoo: how much a halting policy can gain on each core, measured honestly.

For a core (a bundled name or any checkpoint) ``core_report`` records two traces that never
halt (``hrm_rl.trace.record_trace``): its ``val`` puzzles to the training cap ``K``, and its
``test`` puzzles to ``2K``. On them it scores (``hrm_rl.trace.score``), at each step cost
``c`` (reward = 1 for an exactly right answer minus ``c`` per segment):

* the Q-head (the core's ``model.halts``: HRM's ``q_halt > q_continue``, TRM's ``q_halt > 0``);
* the best fixed number of segments ``k`` and the best confidence threshold ``t`` (halt once
  every cell's confidence is at least ``t``), each **chosen on val** (``choose_on``, over
  ``1..K`` and ``THRESHOLD_GRID``; the first of the grid on ties) and scored on test;
* the oracle, which reads the targets: it halts at the first right answer, or after one
  segment when no segment is right; an upper bound, not a policy.

``headroom`` is the oracle's test reward minus the best non-oracle test reward: what a
better halting policy could still win. Every test figure carries a 95% bootstrap interval
over puzzles (paired for the headroom). The report also holds accuracy after each segment,
inference-time scaling (the fixed cap ``K`` against ``2K``, and the Q-head given ``2K``),
and thinking time against difficulty (Q-head mean segments and exact@1 per bucket of the
task's difficulty measure: givens for Sudoku, or a file's rating where it has one; path
length for mazes; ``trace_report`` computes these from any trace).

    report = core_report("sudoku4")
    print(format_zoo([report]))
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from hrm_rl.checkpoint import Checkpoint, bundled_checkpoints, load_checkpoint
from hrm_rl.tasks.base import Task
from hrm_rl.trace import (Trace, bootstrap_ci, choose_on, halts, oracle_halt_at, record_trace,
                          rule_name, score)

CARD = "card.json"
"""A bundled core's provenance: config, training commands, CPU time (beside its weights)."""
STEP_COSTS = (0.01, 0.001)


def difficulty_buckets(values: np.ndarray, max_buckets: int = 6) -> list[tuple[int, int]]:
    """Inclusive ``(low, high)`` ranges covering ``values``: one per value when there are at
    most ``max_buckets`` distinct values, else about equal-count quantile ranges."""
    distinct = np.unique(values)
    if len(distinct) <= max_buckets:
        return [(int(v), int(v)) for v in distinct]
    edges = np.unique(np.quantile(values, np.linspace(0, 1, max_buckets + 1),
                                  method="nearest").astype(np.int64))
    ranges, low = [], int(distinct[0])
    for edge in edges[1:]:
        ranges.append((low, int(edge)))
        low = int(edge) + 1
    return [(lo, hi) for lo, hi in ranges if lo <= hi]


def read_card(ckpt: Checkpoint) -> dict[str, Any]:
    """The core's ``card.json`` (training provenance), or {} when it has none."""
    path = ckpt.path / CARD
    if not path.is_file():
        return {}
    try:
        return json.loads(path.read_text())
    except ValueError as err:
        raise ValueError(f"{path}: not valid JSON ({err})") from None


def trace_report(trace: Trace, task: Task, cap: int | None = None) -> dict[str, Any]:
    """What ``difficulty_figure`` draws, from one trace: exact accuracy after each of its
    segments (with 95% bootstrap intervals) and, per bucket of the task's difficulty measure
    (``Task.difficulty`` of the trace's puzzles; none for a task without one), the Q-head's
    thinking time and accuracy when it halts within ``cap`` (default the trace's ``K``).

    Keys: ``exact_by_segment``, ``exact_by_segment_ci``, ``max_segments`` (``cap``),
    ``difficulty_name`` and ``difficulty`` (a list of buckets).
    """
    cap = trace.max_segments if cap is None else cap
    report: dict[str, Any] = {
        "exact_by_segment": trace.correct.mean(0).tolist(),
        "exact_by_segment_ci": [list(bootstrap_ci(trace.correct[:, k]))
                                for k in range(trace.max_segments)],
        "max_segments": cap, "difficulty_name": task.difficulty_label(trace.puzzles),
        "difficulty": []}
    difficulty = None if trace.puzzles is None else task.difficulty(trace.puzzles)
    if difficulty is not None:
        difficulty = np.asarray(difficulty)[trace.puzzle]
        halt_at = trace.qhead_halts(cap)
        ok, _ = trace.at(halt_at)
        for lo, hi in difficulty_buckets(difficulty):
            rows = (difficulty >= lo) & (difficulty <= hi)
            report["difficulty"].append({
                "range": [lo, hi], "n": int(rows.sum()),
                "exact_at_1": float(trace.correct[rows, 0].mean()),
                "exact_at_K": float(trace.correct[rows, cap - 1].mean()),
                "qhead_exact": float(ok[rows].mean()),
                "qhead_mean_segments": float(halt_at[rows].mean()),
            })
    return report


def core_report(checkpoint: str | Path, step_costs: tuple[float, ...] = STEP_COSTS,
                batch_size: int = 512, progress: bool = False,
                test_split: str = "test") -> dict[str, Any]:
    """Everything the zoo table and the difficulty table show for one core, as a dict.

    ``test_split`` may be a CSV path to score on an outside set instead of the core's own
    held-out puzzles (the settings are still chosen on the core's ``val`` split).
    """
    ckpt = load_checkpoint(checkpoint)
    cap = ckpt.config.train.max_segments
    kind = ckpt.config.model.kind
    test_puzzles, val_puzzles = ckpt.puzzles(test_split), ckpt.puzzles("val", progress)
    test = record_trace(ckpt.model, ckpt.task, test_puzzles, 2 * cap, keep_pred=False,
                        batch_size=batch_size, progress=progress, desc="test trace")
    val = record_trace(ckpt.model, ckpt.task, val_puzzles, cap, keep_pred=False,
                       batch_size=batch_size, progress=progress, desc="val trace")
    by_segment = trace_report(test, ckpt.task, cap)
    report: dict[str, Any] = {
        "core": str(checkpoint), "task": ckpt.task.name, "kind": kind,
        "parameters": ckpt.model.num_parameters(), "card": read_card(ckpt),
        "max_segments": cap, "test_split": str(test_split), "n_test": test.n, "n_val": val.n,
        "exact_by_segment": by_segment["exact_by_segment"],
        "exact_by_segment_ci": by_segment["exact_by_segment_ci"],
    }
    qhead = score(test, test.qhead_halts(cap), 0.0, "qhead")
    qhead_2x = score(test, test.qhead_halts(2 * cap), 0.0, "qhead@2K")
    report["qhead"] = {"accuracy": qhead.accuracy, "accuracy_ci": list(qhead.accuracy_ci),
                       "mean_segments": qhead.mean_segments}
    report["scaling"] = {
        "exact_at_K": float(test.correct[:, cap - 1].mean()),
        "exact_at_2K": float(test.correct[:, 2 * cap - 1].mean()),
        "exact_at_2K_ci": list(bootstrap_ci(test.correct[:, 2 * cap - 1])),
        "qhead_2K_accuracy": qhead_2x.accuracy, "qhead_2K_mean_segments": qhead_2x.mean_segments,
    }
    report["costs"] = {}
    for c in step_costs:
        k = choose_on(val, "fixed", c, cap)
        t = choose_on(val, "threshold", c, cap)
        rows = [score(test, test.qhead_halts(cap), c, "qhead"),
                score(test, halts(test, "fixed", k, cap), c, rule_name("fixed", k)),
                score(test, halts(test, "threshold", t, cap), c, rule_name("threshold", t))]
        oracle = score(test, oracle_halt_at(test.correct[:, :cap]), c, "oracle")
        best = max(rows, key=lambda r: r.reward)
        gap = oracle.per_puzzle_reward - best.per_puzzle_reward
        report["costs"][f"{c:g}"] = {
            "step_cost": c, "chosen_on_val": {"fixed_k": k, "threshold": t},
            "rows": [r.to_dict() for r in rows + [oracle]],
            "best": best.policy, "headroom": float(gap.mean()),
            "headroom_ci": list(bootstrap_ci(gap)),
        }
    report["difficulty_name"] = by_segment["difficulty_name"]
    report["difficulty"] = by_segment["difficulty"]
    return report


def _pct(x: float) -> str:
    return f"{100 * x:.1f}%"


def _ci(ci: list[float] | tuple[float, float], scale: float = 100, digits: int = 1) -> str:
    return f"[{ci[0] * scale:.{digits}f}, {ci[1] * scale:.{digits}f}]"


def format_zoo(reports: list[dict[str, Any]]) -> str:
    """The zoo table (Markdown): one row per core and step cost."""
    head = ("| core | task | params | trained | exact@1 / @K / @2K | Q-head exact (segments) "
            "| Q-head, cap 2K | c | Q-head reward | best fixed-k (val) | threshold (val) | oracle "
            "| headroom |")
    lines = [head, "|" + "---|" * (head.count("|") - 1)]
    for r in reports:
        card = r["card"]
        trained = card.get("summary", "—")
        ex = r["exact_by_segment"]
        k = r["max_segments"]
        first = True
        for c, row in r["costs"].items():
            by = {x["policy"].split(":")[0]: x for x in row["rows"]}
            q, f, t, o = by["qhead"], by["fixed"], by["threshold"], by["oracle"]
            lead = (f"| {r['core']} | {r['task']} | {r['parameters']:,} | {trained} | "
                    f"{_pct(ex[0])} / {_pct(ex[k - 1])} / {_pct(ex[2 * k - 1])} | "
                    f"{_pct(r['qhead']['accuracy'])} {_ci(r['qhead']['accuracy_ci'])} "
                    f"({r['qhead']['mean_segments']:.2f}) | "
                    f"{_pct(r['scaling']['qhead_2K_accuracy'])} "
                    f"({r['scaling']['qhead_2K_mean_segments']:.2f}) ") if first else \
                "| | | | | | | "
            lines.append(
                lead + f"| {c} | {q['reward']:.3f} | {f['reward']:.3f} (k={f['policy'][6:]}) | "
                f"{t['reward']:.3f} (t={t['policy'][10:]}) | {o['reward']:.3f} | "
                f"{row['headroom']:.3f} {_ci(row['headroom_ci'], 1, 3)} |")
            first = False
    return "\n".join(lines)


def format_difficulty(reports: list[dict[str, Any]]) -> str:
    """The thinking-time-against-difficulty table (Markdown), one block per core."""
    lines = ["| core | difficulty | n | exact@1 | exact@K | Q-head exact | Q-head mean segments |",
             "|---|---|---|---|---|---|---|"]
    for r in reports:
        for b in r["difficulty"]:
            lo, hi = b["range"]
            span = f"{lo}" if lo == hi else f"{lo}-{hi}"
            lines.append(f"| {r['core']} | {r['difficulty_name']} {span} | {b['n']} | "
                         f"{_pct(b['exact_at_1'])} | {_pct(b['exact_at_K'])} | "
                         f"{_pct(b['qhead_exact'])} | {b['qhead_mean_segments']:.2f} |")
    return "\n".join(lines)


def difficulty_figure(report: dict[str, Any]):
    """A matplotlib figure: Q-head mean segments and exact@1 per difficulty bucket, and
    accuracy by segment to twice the training cap (inference-time scaling)."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(10, 4), dpi=100)
    buckets = report["difficulty"]
    if buckets:
        labels = [f"{b['range'][0]}" if b["range"][0] == b["range"][1]
                  else f"{b['range'][0]}-{b['range'][1]}" for b in buckets]
        x = np.arange(len(buckets))
        ax1.bar(x, [b["qhead_mean_segments"] for b in buckets], color="tab:blue", alpha=0.7)
        ax1.set_xticks(x, labels)
        ax1.set_xlabel(report["difficulty_name"])
        ax1.set_ylabel("Q-head mean segments", color="tab:blue")
        twin = ax1.twinx()
        twin.plot(x, [b["exact_at_1"] for b in buckets], "o-", color="tab:red", label="exact@1")
        twin.plot(x, [b["qhead_exact"] for b in buckets], "s--", color="tab:green",
                  label="Q-head exact")
        twin.set_ylim(0, 1.02)
        twin.set_ylabel("accuracy")
        twin.legend(fontsize=7, loc="lower left")
    ax1.set_title("thinking time against difficulty")
    ex = report["exact_by_segment"]
    ks = np.arange(1, len(ex) + 1)
    ci = np.array(report["exact_by_segment_ci"])
    ax2.plot(ks, ex, "o-", ms=3)
    ax2.fill_between(ks, ci[:, 0], ci[:, 1], alpha=0.2)
    ax2.axvline(report["max_segments"], color="grey", ls=":", label="training cap K")
    ax2.set_xlabel("segments")
    ax2.set_ylabel("exact accuracy")
    ax2.set_title("inference-time scaling (to 2K)" if len(ex) == 2 * report["max_segments"]
                  else "accuracy by segment")
    ax2.legend(fontsize=7)
    ax2.grid(alpha=0.3)
    fig.suptitle(f"{report['core']} ({report['test_split']}, n={report['n_test']})")
    fig.tight_layout()
    return fig


def bundled_core_names() -> list[str]:
    return list(bundled_checkpoints())
