"""Compare halting policies on exactly the same puzzles, and draw the Pareto front.

The core's segments do not depend on when a policy halts: halting only ends the episode.
So one rollout that never halts, recorded segment by segment (observations, exact and
per-cell correctness), replays *every* Markov halting policy exactly: a policy halts at the
first segment where it says so. ``record_trace`` makes that rollout once (every held-out
puzzle, each exactly once); ``evaluate_on_trace`` replays a policy on it in milliseconds.
The result equals running the policy in the env on the same puzzles (a test checks this),
without the noise of different policies seeing different puzzles.

    trace = record_trace("HRM-Sudoku-v0", step_cost=0.01)
    rows = [evaluate_on_trace(p, trace, name) for name, p in policies.items()]
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np

from hrm_rl.envs.halting import HaltingVectorEnv, parse_autoreset_mode
from hrm_rl.agents.policies import FixedSegmentsPolicy, ThresholdPolicy
from hrm_rl.evaluation import bootstrap_ci, oracle_halt_at


@dataclass
class HaltingTrace:
    """Every puzzle of a split run to ``max_segments`` without halting.

    Attributes:
        obs: one observation batch per segment (``obs[k]`` after segment ``k + 1``), in
            the env's ``obs_mode`` (arrays, or dicts of arrays).
        correct: ``(n, max_segments)`` bool, exactly right after each segment.
        cell: ``(n, max_segments)`` per-cell accuracy after each segment.
        step_cost, reward: the env's reward settings (``reward`` is ``exact`` or ``cell``).
    """

    obs: list[Any]
    correct: np.ndarray
    cell: np.ndarray
    step_cost: float
    reward: str

    @property
    def n(self) -> int:
        return int(self.correct.shape[0])

    @property
    def max_segments(self) -> int:
        return int(self.correct.shape[1])


@dataclass
class PolicyResult:
    """What one policy scores on a trace; ``*_ci``: 95% bootstrap intervals over puzzles."""

    policy: str
    accuracy: float
    cell_accuracy: float
    mean_segments: float
    mean_reward: float
    episodes: int
    accuracy_ci: tuple[float, float] = (0.0, 0.0)
    segments_ci: tuple[float, float] = (0.0, 0.0)
    reward_ci: tuple[float, float] = (0.0, 0.0)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _take(obs: Any, index: np.ndarray) -> Any:
    if isinstance(obs, dict):
        return {k: v[index] for k, v in obs.items()}
    return obs[index]


def record_trace(env_id: str = "HRM-Sudoku-v0", n: int | None = None, seed: int = 0,
                 split: str = "test", **env_kwargs: Any) -> HaltingTrace:
    """Run ``n`` puzzles (default: the whole split, each once) to the cap without halting.

    ``split`` is the env's (``test`` here by default: a trace is for scoring; record ``val``
    to choose a policy's settings); ``env_kwargs`` are the env's other options
    (``checkpoint``, ``step_cost``, ``max_segments``, ...).
    """
    env_kwargs = {**env_kwargs, "split": split}
    mode = env_kwargs.pop("autoreset_mode", None)
    if mode is not None and parse_autoreset_mode(mode) is not gym.vector.AutoresetMode.SAME_STEP:
        raise ValueError(f"autoreset_mode={mode!r}: a halting trace runs every puzzle to the "
                         "cap in one episode, so it takes no autoreset mode (leave it out; "
                         "the policies are scored on the trace, not on a live env)")
    import hrm_rl  # noqa: F401  (registers the envs)

    probe = gym.make_vec(env_id, num_envs=1, vectorization_mode="vector_entry_point",
                         **env_kwargs).unwrapped
    total = len(probe.core.puzzles)
    n = total if n is None else n
    if not 1 <= n <= total:
        raise ValueError(f"n must be in [1, {total}] (the split's size), got {n}")
    env: HaltingVectorEnv = gym.make_vec(env_id, num_envs=n,
                                         vectorization_mode="vector_entry_point",
                                         **env_kwargs).unwrapped
    k_max = env.core.max_segments
    obs, info = env.reset(seed=seed)  # the first n draws of a fresh shuffle: n distinct puzzles
    all_obs, correct, cell = [], [], []
    continue_all = np.zeros(n, dtype=np.int64)
    for k in range(k_max):
        all_obs.append(obs)
        correct.append(np.asarray(info["is_success"], dtype=bool))
        cell.append(np.asarray(info["cell_accuracy"], dtype=np.float64))
        if k == k_max - 1:
            break
        obs, _, terminated, _, info = env.step(continue_all)
        if terminated.any():  # the cap: the terminal segment lives in final_obs/final_info
            if not terminated.all():
                raise RuntimeError("rows reached max_segments at different times")
            final = info["final_obs"]
            obs = (np.stack(final) if not isinstance(final[0], dict)
                   else {key: np.stack([o[key] for o in final]) for key in final[0]})
            info = info["final_info"]
    env.close()
    return HaltingTrace(all_obs, np.stack(correct, 1), np.stack(cell, 1), env.core.step_cost,
                        env.core.reward)


def evaluate_on_trace(policy: Any, trace: HaltingTrace, name: str | None = None,
                      deterministic: bool = True) -> PolicyResult:
    """Replay ``policy`` (anything with SB3's ``predict``) on ``trace``."""
    n, k_max = trace.n, trace.max_segments
    halt_at = np.full(n, k_max, dtype=np.int64)
    alive = np.arange(n)
    for k in range(k_max - 1):
        actions, _ = policy.predict(_take(trace.obs[k], alive),
                                    episode_start=np.full(len(alive), k == 0),
                                    deterministic=deterministic)
        actions = np.asarray(actions).reshape(-1)
        if actions.shape != alive.shape:
            raise ValueError(f"policy returned {actions.shape} actions for {len(alive)} rows")
        stop = actions == 1
        halt_at[alive[stop]] = k + 1
        alive = alive[~stop]
        if alive.size == 0:
            break
    return result_at(trace, halt_at, name or str(policy))


def result_at(trace: HaltingTrace, halt_at: np.ndarray, name: str) -> PolicyResult:
    """What halting each puzzle after ``halt_at`` ``(n,)`` segments scores on ``trace``."""
    rows = np.arange(trace.n)
    correct = trace.correct[rows, halt_at - 1]
    cell = trace.cell[rows, halt_at - 1]
    pay = correct.astype(np.float64) if trace.reward == "exact" else cell
    reward = pay - trace.step_cost * halt_at
    return PolicyResult(
        policy=name, accuracy=float(correct.mean()), cell_accuracy=float(cell.mean()),
        mean_segments=float(halt_at.mean()), mean_reward=float(reward.mean()),
        episodes=trace.n, accuracy_ci=bootstrap_ci(correct), segments_ci=bootstrap_ci(halt_at),
        reward_ci=bootstrap_ci(reward))


def interquartile_mean(values: np.ndarray) -> float:
    """The mean of the middle half of ``values``: ``floor(n / 4)`` cut from each end, as
    ``scipy.stats.trim_mean(values, 0.25)`` and rliable's IQM compute it."""
    values = np.sort(np.asarray(values, dtype=np.float64).ravel())
    if values.size == 0:
        raise ValueError("the interquartile mean of no values is undefined")
    cut = values.size // 4
    return float(values[cut:values.size - cut].mean())


def aggregate_seeds(results: list[PolicyResult], name: str, seed: int = 0,
                    resamples: int = 2000) -> PolicyResult:
    """One row for a policy trained with several seeds, scored on the same trace: the
    interquartile mean over seeds of each figure, and a 95% percentile bootstrap interval
    that resamples seeds (the run-to-run spread, which a single seed's interval over puzzles
    does not show). As rliable recommends for a handful of runs."""
    if len(results) < 2:
        raise ValueError(f"aggregating seeds needs at least 2 results, got {len(results)}")
    if len({r.episodes for r in results}) != 1:
        raise ValueError("the seeds' results were scored on traces of different sizes")
    rng = np.random.default_rng(seed)
    picks = rng.integers(0, len(results), (resamples, len(results)))

    def figure(attr: str) -> tuple[float, tuple[float, float]]:
        values = np.array([getattr(r, attr) for r in results], dtype=np.float64)
        boot = [interquartile_mean(values[row]) for row in picks]
        lo, hi = np.percentile(boot, [2.5, 97.5])
        return interquartile_mean(values), (float(lo), float(hi))

    (acc, acc_ci), (seg, seg_ci), (rew, rew_ci) = (figure(a) for a in
                                                    ("accuracy", "mean_segments", "mean_reward"))
    return PolicyResult(policy=name, accuracy=acc, cell_accuracy=interquartile_mean(
        [r.cell_accuracy for r in results]), mean_segments=seg, mean_reward=rew,
        episodes=results[0].episodes, accuracy_ci=acc_ci, segments_ci=seg_ci, reward_ci=rew_ci)


def oracle_on_trace(trace: HaltingTrace) -> PolicyResult:
    """The oracle's row: halt at the first right answer, or after one segment where no
    segment is right (``hrm_rl.evaluation.oracle_halt_at``). It reads the targets, so it
    bounds every policy's reward from above; it is not a policy."""
    return result_at(trace, oracle_halt_at(trace.correct), "oracle")


THRESHOLDS = (0.5, 0.7, 0.8, 0.9, 0.95, 0.98, 0.99, 0.995, 0.999)


def family_curves(trace: HaltingTrace) -> dict[str, list[PolicyResult]]:
    """The fixed-k (k = 1..max) and confidence-threshold families, for Pareto curves."""
    fixed = [evaluate_on_trace(FixedSegmentsPolicy(k), trace, f"fixed:{k}")
             for k in range(1, trace.max_segments + 1)]
    thresholds = [evaluate_on_trace(ThresholdPolicy(t), trace, f"threshold:{t:g}")
                  for t in THRESHOLDS]
    return {"fixed": fixed, "threshold": thresholds}


def format_table(results: list[PolicyResult]) -> str:
    """A plain-text table: policy, accuracy, mean segments, mean reward (each with its 95%
    bootstrap interval over puzzles), episodes."""
    header = (f"{'policy':<28} {'accuracy [95% CI]':>24} {'segments [95% CI]':>24} "
              f"{'reward [95% CI]':>24} {'episodes':>9}")
    lines = [header, "-" * len(header)]

    def cell(value: float, ci: tuple[float, float], digits: int) -> str:
        return f"{value:.{digits}f} [{ci[0]:.{digits}f}, {ci[1]:.{digits}f}]"

    for r in results:
        lines.append(f"{r.policy:<28} {cell(r.accuracy, r.accuracy_ci, 4):>24} "
                     f"{cell(r.mean_segments, r.segments_ci, 3):>24} "
                     f"{cell(r.mean_reward, r.reward_ci, 4):>24} {r.episodes:>9d}")
    return "\n".join(lines)


def pareto_figure(results: list[PolicyResult], curves: dict[str, list[PolicyResult]],
                  title: str = "halting policies"):
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
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="lower right")
    fig.tight_layout()
    return fig


def write_pareto(results: list[PolicyResult], curves: dict[str, list[PolicyResult]],
                 out_dir: str | Path, title: str = "halting policies") -> Path:
    """Save the Pareto plot as ``pareto.png`` and as TensorBoard image ``halt/pareto``."""
    import matplotlib.pyplot as plt
    from torch.utils.tensorboard import SummaryWriter

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    fig = pareto_figure(results, curves, title)
    png = out_dir / "pareto.png"
    fig.savefig(png)
    writer = SummaryWriter(str(out_dir))
    writer.add_figure("halt/pareto", fig, global_step=0, close=False)
    for r in results:
        tag = r.policy.replace(":", "_").replace("/", "_")
        writer.add_scalar(f"halt_eval/{tag}/accuracy", r.accuracy, 0)
        writer.add_scalar(f"halt_eval/{tag}/mean_segments", r.mean_segments, 0)
        writer.add_scalar(f"halt_eval/{tag}/reward", r.mean_reward, 0)
    writer.close()
    plt.close(fig)
    return png
