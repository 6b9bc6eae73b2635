"""HaltBench: every halting baseline on the same puzzles, one leaderboard per core, cost and track.

For each core, three traces (``hrm_rl.trace``) are recorded once (or read from the cache):
its ``train`` puzzles (a subset, for the learned baselines), ``val`` (to choose every
setting) and ``test`` (to score), each run to the core's training cap with latents. On them,
at each step cost ``c`` (reward = 1 for an exactly right answer minus ``c`` per segment) and
on each track, every baseline is fitted on train, chosen on val and scored on test:

* rules (``hrm_rl.trace.FAMILIES``): fixed k, min and mean confidence thresholds, the core's
  Q-head, Q-margin, convergence (prediction unchanged for m segments, latent residual below
  eps) and, on the verifier track only, the checker rule (``violations == 0``);
* classifiers (logistic regression and an MLP) predicting "the answer is right now" from
  the track's features, and from features + H's latent, halting once the predicted
  probability reaches a threshold chosen on val;
* a risk-controlled confidence threshold (Learn-then-Test): calibrated on val so that the
  accuracy lost against running to the cap stays <= epsilon with probability >= 1 - delta;
  the test figures say whether the guarantee held;
* PPO (and DQN with ``rl="full"``) through Stable-Baselines3 on the replayed env, several
  seeds, reported as the interquartile mean over seeds;
* researchers' own policies (``--policy module:factory``);
* the oracle (reads the targets: an upper bound, not a policy).

Each leaderboard gives reward, accuracy and mean segments with 95% intervals over puzzles,
the paired reward difference to the best non-oracle entry (with its paired interval), and
the headroom: oracle minus the best non-oracle entry.

Tracks: ``verifier-free`` (the policy sees only the model's own state) and ``verifier``
(the task's checker too). On Sudoku and mazes the checker rule alone takes most of the
headroom, so the verifier-free track is the open problem.

A custom policy (``--policy my_module:make``): ``make()`` returns either an object with
``fit(train, val)`` and ``halts(trace) -> (n,) halting segments (1..K)``, given
``hrm_rl.trace.Trace`` objects (on the verifier-free track the checker's feature is NaN;
``halts`` gets the test trace with the answers hidden), or any object with SB3's
``predict(obs, ...)`` on the env's ``features`` observations of the track.

    board = haltbench(["maze6"], costs=(0.01,), tracks=("verifier-free",))
    print(format_markdown(board))
"""

from __future__ import annotations

import importlib
import json
import math
import re
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from hrm_rl.trace import (DEFAULT_TRACK, FAMILIES, THRESHOLD_GRID, TRACKS, Score, Trace,
                          bootstrap_ci, check_track, choose_on, halts, load_trace, mean_reward,
                          oracle_halt_at, paired_difference, predict_halts,
                          record_core_trace, rule_name, score, track_features)

DEFAULT_COSTS = (0.001, 0.01, 0.05)
DEFAULT_RL_COST = 0.01
PROB_GRID = (0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.85, 0.9, 0.95, 0.98, 0.99)
"""Probability thresholds a classifier's halting rule is chosen from."""
RISK_GRID = (0.99999, 0.9999, 0.999, 0.995, 0.99, 0.98, 0.95, 0.9, 0.8, 0.7, 0.6, 0.5)
"""Confidence thresholds the risk-controlled rule tests, most conservative first."""
ENV_IDS = {"sudoku": "HRM-Sudoku-v0", "maze": "HRM-Maze-v0", "arc": "HRM-ARC-v0"}
DEFAULT_CORES = ("arc-rearc", "maze6", "maze9", "sudoku6")
"""The cores a plain ``hrm-rl haltbench`` ranks: the research cores of each task family
(``arc-rearc``: ARC, whose checker sees only a well-formed grid, not a right one; the mazes
and Sudoku, whose checkers see nearly every wrong answer)."""
SPLITS = ("train", "val", "test")


# traces ---------------------------------------------------------------------------------------
def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", text).strip("_") or "core"


def core_traces(core: str | Path, cache_dir: str | Path | None = None,
                train_episodes: int = 1000, eval_episodes: int | None = None,
                batch_size: int = 512, progress: bool = False
                ) -> dict[str, tuple[Trace, Path | None]]:
    """The core's ``train`` (first ``train_episodes`` puzzles), ``val`` and ``test`` (all,
    or the first ``eval_episodes``) traces to its training cap, with latents: read from ``cache_dir`` when recorded there before
    for the same weights (the file name carries the weights' SHA-256), else recorded (and
    saved there when ``cache_dir`` is given). Returns ``{split: (trace, path or None)}``."""
    from hrm_rl.checkpoint import load_checkpoint, weights_sha256

    sha = weights_sha256(core)[:12]
    out: dict[str, tuple[Trace, Path | None]] = {}
    ckpt = None  # loaded once, when a trace has to be recorded
    for split in SPLITS:
        episodes = train_episodes if split == "train" else eval_episodes
        path = None
        if cache_dir is not None:
            tag = f"-n{episodes}" if episodes else ""
            path = Path(cache_dir) / f"{_slug(Path(str(core)).name)}-{sha}-{split}{tag}.npz"
        if path is not None and path.is_file():
            trace, _ = load_trace(path)
        else:
            ckpt = ckpt or load_checkpoint(core)
            if episodes is not None:
                episodes = min(episodes, len(ckpt.puzzles(split)))
            trace = record_core_trace(ckpt, split, episodes=episodes, latent=True,
                                      batch_size=batch_size, progress=progress,
                                      name=str(core))
            if path is not None:
                trace.save(path, ckpt.task, overwrite=True)
        out[split] = (trace, path)
    return out


# classifiers -----------------------------------------------------------------------------------
def _inputs(trace: Trace, track: str, latent: bool) -> np.ndarray:
    """``(n, K, d)`` float32 inputs: the track's features, then the latent when asked."""
    feats = trace.features[:, :, :len(track_features(track))]
    if not latent:
        return feats
    if trace.latent is None:
        raise ValueError("features+latent classifiers need a trace recorded with latents")
    return np.concatenate([feats, trace.latent], axis=-1)


@dataclass
class Classifier:
    """P(the answer after this segment is exactly right | inputs), fitted on a trace.

    Args:
        kind: ``logistic`` (linear) or ``mlp`` (two hidden layers of 64, ReLU).
        track: whose features it reads; ``latent``: also H's latent.
    """

    kind: str
    track: str = DEFAULT_TRACK
    latent: bool = False
    seed: int = 0
    epochs: int = 30
    mean: np.ndarray | None = field(default=None, repr=False)
    std: np.ndarray | None = field(default=None, repr=False)
    net: torch.nn.Module | None = field(default=None, repr=False)

    @property
    def name(self) -> str:
        return f"{self.kind}({'features+latent' if self.latent else 'features'})"

    def fit(self, train: Trace) -> Classifier:
        """Fit on every (puzzle, segment) of ``train``: inputs -> ``correct``."""
        if self.kind not in ("logistic", "mlp"):
            raise ValueError(f"kind must be 'logistic' or 'mlp', got {self.kind!r}")
        x = _inputs(train, self.track, self.latent).reshape(-1, self._width(train))
        y = train.correct.reshape(-1).astype(np.float32)
        self.mean = x.mean(0)
        self.std = x.std(0) + 1e-6
        generator = torch.Generator().manual_seed(self.seed)
        torch.manual_seed(self.seed)
        d = x.shape[1]
        self.net = (torch.nn.Linear(d, 1) if self.kind == "logistic" else
                    torch.nn.Sequential(torch.nn.Linear(d, 64), torch.nn.ReLU(),
                                        torch.nn.Linear(64, 64), torch.nn.ReLU(),
                                        torch.nn.Linear(64, 1)))
        xt = torch.from_numpy((x - self.mean) / self.std)
        yt = torch.from_numpy(y)
        opt = torch.optim.Adam(self.net.parameters(), lr=3e-3 if self.kind == "mlp" else 1e-2,
                               weight_decay=1e-4)
        loss_fn = torch.nn.BCEWithLogitsLoss()
        batch = 1024
        for _ in range(self.epochs):
            order = torch.randperm(len(xt), generator=generator)
            for start in range(0, len(xt), batch):
                rows = order[start:start + batch]
                opt.zero_grad()
                loss_fn(self.net(xt[rows]).squeeze(-1), yt[rows]).backward()
                opt.step()
        self.net.eval()
        return self

    def _width(self, trace: Trace) -> int:
        return len(track_features(self.track)) + (trace.latent.shape[-1] if self.latent else 0)

    @torch.no_grad()
    def prob(self, trace: Trace) -> np.ndarray:
        """``(n, K)`` predicted probability that each segment's answer is right."""
        if self.net is None:
            raise RuntimeError("fit() the classifier first")
        x = _inputs(trace, self.track, self.latent)
        z = torch.from_numpy(((x - self.mean) / self.std).astype(np.float32))
        return torch.sigmoid(self.net(z).squeeze(-1)).numpy()


# risk control ----------------------------------------------------------------------------------
def binomial_cdf(k: int, n: int, p: float) -> float:
    """``P(Binomial(n, p) <= k)``, exactly (log-space sum)."""
    if k < 0:
        return 0.0
    if k >= n or p <= 0.0:
        return 1.0
    if p >= 1.0:
        return 0.0
    logs = [math.lgamma(n + 1) - math.lgamma(j + 1) - math.lgamma(n - j + 1)
            + j * math.log(p) + (n - j) * math.log1p(-p) for j in range(k + 1)]
    top = max(logs)
    return float(min(1.0, math.exp(top) * sum(math.exp(v - top) for v in logs)))


def accuracy_loss(trace: Trace, halt_at: np.ndarray) -> np.ndarray:
    """``(n,)`` 1 where the answer is right at the cap but not where the rule halted."""
    ok, _ = trace.at(halt_at)
    return (trace.correct[:, -1] & ~ok).astype(np.float64)


@dataclass
class RiskControl:
    """A confidence threshold calibrated by Learn-then-Test (fixed-sequence testing).

    For each threshold of ``grid`` (most conservative first) it tests the null "the rate
    of puzzles right at the cap but wrong where the rule halts exceeds ``epsilon``" with the
    exact binomial p-value, and keeps going while it rejects at level ``delta``. The chosen
    threshold is the last rejected one (the cheapest certified), or none (run to the cap).
    With probability >= 1 - delta over the calibration set, the chosen rule's accuracy loss
    on new puzzles from the same distribution is <= epsilon.
    """

    epsilon: float = 0.01
    delta: float = 0.1
    feature: str = "min_confidence"
    grid: tuple[float, ...] = RISK_GRID
    threshold: float | None = None
    p_values: list[float] = field(default_factory=list)

    @property
    def name(self) -> str:
        return f"risk(eps={self.epsilon:g},delta={self.delta:g})"

    def fit(self, val: Trace) -> RiskControl:
        if not (0 < self.epsilon < 1 and 0 < self.delta < 1):
            raise ValueError(f"epsilon and delta must be in (0, 1), got {self.epsilon}, "
                             f"{self.delta}")
        self.threshold, self.p_values = None, []
        for t in self.grid:
            loss = accuracy_loss(val, self._halts(val, t))
            p = binomial_cdf(int(loss.sum()), val.n, self.epsilon)
            self.p_values.append(p)
            if p > self.delta:
                break
            self.threshold = t
        return self

    def _halts(self, trace: Trace, t: float | None) -> np.ndarray:
        if t is None:
            return np.full(trace.n, trace.max_segments, dtype=np.int64)
        return trace.first(trace.feature(self.feature) >= t)

    def halts(self, trace: Trace) -> np.ndarray:
        return self._halts(trace, self.threshold)

    def guarantee(self, test: Trace) -> dict[str, Any]:
        """What the guarantee promised and what happened on ``test``."""
        loss = accuracy_loss(test, self.halts(test))
        ok, _ = test.at(self.halts(test))
        return {"epsilon": self.epsilon, "delta": self.delta, "threshold": self.threshold,
                "test_accuracy_loss": float(loss.mean()),
                "test_accuracy_change_vs_cap": float(ok.mean() - test.correct[:, -1].mean()),
                "met": bool(loss.mean() <= self.epsilon)}


# leaderboard -----------------------------------------------------------------------------------
@dataclass
class Entry:
    """One row of a leaderboard."""

    name: str
    kind: str  # rule | classifier | risk | rl | custom | oracle
    score: Score
    chosen_on_val: Any = None
    note: str = ""
    seeds: list[float] | None = None
    reward_ci_over_seeds: tuple[float, float] | None = None

    def to_dict(self) -> dict[str, Any]:
        out = {"name": self.name, "kind": self.kind, **self.score.to_dict(),
               "chosen_on_val": self.chosen_on_val, "note": self.note}
        if self.seeds is not None:
            out["seed_rewards"] = self.seeds
            out["reward_ci_over_seeds"] = list(self.reward_ci_over_seeds)
        return out


def _threshold_entry(name: str, kind: str, val_score: np.ndarray, test_score: np.ndarray,
                     val: Trace, test: Trace, c: float, grid: Sequence[float]) -> Entry:
    """Halt once ``score >= t``, ``t`` chosen on val."""
    rewards = [mean_reward(val, val.first(val_score >= t), c) for t in grid]
    t = grid[int(np.argmax(rewards))]
    return Entry(f"{name}:{t:g}", kind, score(test, test.first(test_score >= t), c,
                                              f"{name}:{t:g}"), t)


def rule_entries(val: Trace, test: Trace, track: str, c: float) -> list[Entry]:
    """Every rule family the track allows, chosen on val, scored on test."""
    rows = []
    for fam in FAMILIES.values():
        if fam.track == "verifier" and track != "verifier":
            continue
        param = choose_on(val, fam.name, c)
        name = rule_name(fam.name, param)
        rows.append(Entry(name, "rule", score(test, halts(test, fam.name, param), c, name),
                          param, fam.doc))
    return rows


def classifier_entries(classifiers: Sequence[Classifier], val: Trace, test: Trace,
                       c: float) -> list[Entry]:
    return [_threshold_entry(clf.name, "classifier", clf.prob(val), clf.prob(test), val, test,
                             c, PROB_GRID) for clf in classifiers]


def _iqm(values: Sequence[float]) -> float:
    from hrm_rl.agents.halting_eval import interquartile_mean

    return interquartile_mean(np.asarray(values))


def rl_entry(algo: str, train_path: Path, val: Trace, test: Trace, env_id: str, track: str,
             c: float, seeds: Sequence[int], timesteps: int, obs_mode: str = "features",
             out_dir: Path | None = None, progress: bool = False) -> Entry:
    """``algo`` (ppo or dqn) trained on the replayed train trace with each seed (observation
    normalization on, best model chosen on val), scored on test: the IQM over seeds, with an
    interval that resamples seeds; the per-puzzle reward (for paired differences) is the
    mean over seeds."""
    from hrm_rl.agents.sb3 import train_halting_policy

    per_seed: list[Score] = []
    for seed in seeds:
        run_dir = None if out_dir is None else \
            out_dir / f"{algo}-{_slug(obs_mode)}-{_slug(track)}-c{c:g}-s{seed}"
        policy, _ = train_halting_policy(
            env_id, algo, timesteps, num_envs=256,
            env_kwargs={"rollouts": str(train_path), "step_cost": c, "track": track,
                        "obs_mode": obs_mode},
            seed=seed, run_dir=run_dir, val_trace=val, progress=progress)
        halt_at = predict_halts(policy, test.for_policy(track, blind=True), track, obs_mode,
                                name=f"{algo} seed {seed}")
        per_seed.append(score(test, halt_at, c, f"{algo}:seed{seed}"))
    rewards = [s.reward for s in per_seed]
    mean_halt = np.mean([s.halt_at for s in per_seed], axis=0)
    base = per_seed[0]
    per_puzzle = np.mean([s.per_puzzle_reward for s in per_seed], axis=0)
    boot = np.random.default_rng(0).integers(0, len(rewards), (2000, len(rewards)))
    lo, hi = np.percentile([_iqm(np.asarray(rewards)[row]) for row in boot], [2.5, 97.5])
    agg = Score(f"{algo} ({obs_mode}, IQM of {len(seeds)} seeds)",
                _iqm([s.accuracy for s in per_seed]), _iqm([s.cell_accuracy for s in per_seed]),
                _iqm([s.mean_segments for s in per_seed]), _iqm(rewards), base.n, c,
                bootstrap_ci(np.mean([test.at(s.halt_at)[0] for s in per_seed], 0)),
                bootstrap_ci(mean_halt), bootstrap_ci(per_puzzle), mean_halt, per_puzzle)
    return Entry(agg.policy, "rl", agg, None, "IQM over seeds; reward CI over puzzles of the "
                 "seed-mean per-puzzle reward", rewards, (float(lo), float(hi)))


def load_factory(spec: str) -> Any:
    """``module:factory`` -> ``factory()`` (a custom halting policy)."""
    module, sep, attr = spec.partition(":")
    if not sep or not module or not attr:
        raise ValueError(f"--policy {spec!r}: give module:factory (e.g. my_halting:make)")
    try:
        factory = getattr(importlib.import_module(module), attr)
    except (ImportError, AttributeError) as err:
        raise ValueError(f"--policy {spec!r}: cannot load it ({type(err).__name__}: {err})"
                         ) from None
    return factory()


def custom_entry(spec: str, policy: Any, train: Trace, val: Trace, test: Trace, track: str,
                 c: float) -> Entry:
    """A researcher's policy: ``fit(train, val)`` + ``halts(trace)``, or SB3-style ``predict``
    (``features`` observations of the track)."""
    blind = test.for_policy(track, blind=True)
    if hasattr(policy, "halts") and hasattr(policy, "fit"):
        if hasattr(policy, "step_cost"):
            policy.step_cost = c
        policy.fit(train.for_policy(track), val.for_policy(track))
        halt_at = np.asarray(policy.halts(blind), dtype=np.int64)
        if halt_at.shape != (test.n,) or halt_at.min() < 1 or halt_at.max() > test.max_segments:
            raise ValueError(f"--policy {spec}: halts() must return ({test.n},) segments in "
                             f"[1, {test.max_segments}], got shape {halt_at.shape}")
    elif hasattr(policy, "predict"):
        halt_at = predict_halts(policy, blind, track, "features", name=spec)
    else:
        raise ValueError(f"--policy {spec}: the factory's object has neither fit()+halts() "
                         "nor predict()")
    name = getattr(policy, "name", spec)
    return Entry(str(name), "custom", score(test, halt_at, c, str(name)))


def board_for(core: str, traces: dict[str, tuple[Trace, Path | None]], c: float, track: str,
              classifiers: Sequence[Classifier], risk: RiskControl,
              rl: Sequence[Entry] = (), custom: Sequence[Entry] = ()) -> dict[str, Any]:
    """One leaderboard (a dict): entries sorted by test reward, the best non-oracle entry,
    each entry's paired difference to it, and the headroom."""
    val, test = traces["val"][0], traces["test"][0]
    entries = rule_entries(val, test, track, c)
    entries += classifier_entries(classifiers, val, test, c)
    entries.append(Entry(risk.name, "risk", score(test, risk.halts(test), c, risk.name),
                         risk.threshold, json.dumps(risk.guarantee(test))))
    entries += list(rl) + list(custom)
    oracle = Entry("oracle", "oracle", score(test, oracle_halt_at(test.correct), c, "oracle"),
                   note="reads the targets: an upper bound, not a policy")
    best = max(entries, key=lambda e: e.score.reward)
    qhead = next(e for e in entries if e.name == "qhead")
    rows = []
    for e in sorted(entries, key=lambda e: -e.score.reward) + [oracle]:
        diff, ci = paired_difference(e.score, best.score)
        dq, dq_ci = paired_difference(e.score, qhead.score)
        rows.append({**e.to_dict(), "diff_to_best": diff, "diff_to_best_ci": list(ci),
                     "diff_to_qhead": dq, "diff_to_qhead_ci": list(dq_ci)})
    head, head_ci = paired_difference(oracle.score, best.score)
    return {"core": core, "track": track, "step_cost": c, "n_test": test.n,
            "n_val": val.n, "n_train": traces["train"][0].n,
            "max_segments": test.max_segments, "best": best.name,
            "headroom": head, "headroom_ci": list(head_ci),
            "risk_guarantee": risk.guarantee(test), "entries": rows}


def haltbench(cores: Sequence[str], costs: Sequence[float] = DEFAULT_COSTS,
              tracks: Sequence[str] = TRACKS, policies: Sequence[str] = (),
              rl: str = "default", rl_seeds: Sequence[int] = (0, 1, 2),
              rl_timesteps: int = 60_000, rl_cost: float = DEFAULT_RL_COST,
              cache_dir: str | Path | None = "runs/haltbench/traces",
              out_dir: str | Path | None = None, train_episodes: int = 1000,
              eval_episodes: int | None = None,
              epsilon: float = 0.01, delta: float = 0.1, progress: bool = True,
              log: Any = sys.stderr) -> dict[str, Any]:
    """Run the benchmark (see the module docstring) and return ``{"boards": [...], ...}``.

    Args:
        cores: bundled names or checkpoint folders.
        costs: step costs; tracks: ``verifier-free`` and/or ``verifier``.
        policies: ``module:factory`` specs of custom policies.
        rl: ``default`` (PPO on features, verifier-free track, at ``rl_cost`` only),
            ``full`` (PPO and DQN on features and features+latent, every cost and track)
            or ``none``.
        rl_seeds, rl_timesteps: seeds per RL baseline and env steps per seed.
        cache_dir: where traces are kept between runs (None: record every time).
        out_dir: where SB3 runs go, in a ``<timestamp>/<core>/`` folder per invocation
            (None: ``runs/halt-...`` folders).
        train_episodes: train puzzles recorded for the learned baselines.
        eval_episodes: val and test puzzles (default all: the core's 1000 each); fewer
            for a quick look, never for reported figures.
        epsilon, delta: the risk-controlled rule's target.
    """
    for track in tracks:
        check_track(track)
    if rl not in ("none", "default", "full"):
        raise ValueError(f"rl must be none, default or full, got {rl!r}")
    if not costs or any(not 0 <= c <= 1 for c in costs):
        raise ValueError(f"costs must be numbers in [0, 1], got {costs}")
    if rl == "default" and not any(math.isclose(c, rl_cost) for c in costs):
        raise ValueError(f"the RL baselines run at rl_cost={rl_cost:g}, which is not among "
                         f"the costs {list(costs)}: add it, or pass rl='none'")
    custom = [(spec, load_factory(spec)) for spec in policies]
    started = time.perf_counter()
    stamp = time.strftime("%Y%m%d-%H%M%S")  # one folder of SB3 runs per invocation
    boards, timings = [], {}
    for core in cores:
        t0 = time.perf_counter()
        traces = core_traces(core, cache_dir, train_episodes, eval_episodes,
                             progress=progress)
        t1 = time.perf_counter()
        train, val, test = (traces[s][0] for s in SPLITS)
        task = test.identity["config"]["task"]["name"]
        env_id = ENV_IDS[task]
        risk = RiskControl(epsilon, delta).fit(val)
        for track in tracks:
            classifiers = [Classifier(kind, track, latent).fit(train)
                           for kind in ("logistic", "mlp") for latent in (False, True)]
            for c in costs:
                rl_rows = []
                run_rl = rl == "full" or (rl == "default" and track == DEFAULT_TRACK
                                          and math.isclose(c, rl_cost))
                if run_rl:
                    if traces["train"][1] is None:
                        raise ValueError("RL baselines replay the train trace from a file: "
                                         "give a cache_dir (or rl='none')")
                    algos = ("ppo", "dqn") if rl == "full" else ("ppo",)
                    modes = ("features", "features+latent") if rl == "full" else ("features",)
                    for algo in algos:
                        for mode in modes:
                            print(f"haltbench {core}: {algo} ({mode}, {track}, c={c:g}), "
                                  f"{len(rl_seeds)} seeds", file=log)
                            rl_rows.append(rl_entry(
                                algo, traces["train"][1], val, test, env_id, track, c, rl_seeds,
                                rl_timesteps, mode, None if out_dir is None else
                                Path(out_dir) / stamp / _slug(str(core)), progress))
                own = [custom_entry(spec, pol, train, val, test, track, c)
                       for spec, pol in custom]
                boards.append(board_for(str(core), traces, c, track, classifiers, risk,
                                        rl_rows, own))
        timings[str(core)] = {"traces_s": round(t1 - t0, 1),
                              "baselines_s": round(time.perf_counter() - t1, 1)}
    return {"boards": boards, "seconds": round(time.perf_counter() - started, 1),
            "timings": timings, "settings": {
                "costs": list(costs), "tracks": list(tracks), "rl": rl,
                "rl_seeds": list(rl_seeds), "rl_timesteps": rl_timesteps, "rl_cost": rl_cost,
                "train_episodes": train_episodes, "eval_episodes": eval_episodes,
                "epsilon": epsilon, "delta": delta}}


# output ----------------------------------------------------------------------------------------
def _ci(ci: Sequence[float], digits: int = 3) -> str:
    return f"[{ci[0]:.{digits}f}, {ci[1]:.{digits}f}]"


def format_board(board: dict[str, Any], top: int | None = None) -> str:
    """One leaderboard as Markdown."""
    lines = [f"**{board['core']}**, track `{board['track']}`, step cost {board['step_cost']:g} "
             f"(test n={board['n_test']}, chosen on val n={board['n_val']}, cap "
             f"{board['max_segments']}): headroom {board['headroom']:.3f} "
             f"{_ci(board['headroom_ci'])} over `{board['best']}`",
             "",
             "| # | policy | reward [95% CI] | accuracy | segments | vs best (paired) "
             "| vs Q-head (paired) |",
             "|---|---|---|---|---|---|---|"]
    entries = board["entries"]
    shown = entries if top is None else entries[:top] + [
        e for e in entries[top:] if e["name"] in ("qhead", "oracle")]
    for i, e in enumerate(shown, 1):
        rank = "—" if e["kind"] == "oracle" else str(entries.index(e) + 1)
        seeds = (f" (seeds {_ci(e['reward_ci_over_seeds'])})"
                 if e.get("reward_ci_over_seeds") else "")
        lines.append(f"| {rank} | {e['name']} | {e['reward']:.3f} {_ci(e['reward_ci'])}{seeds} | "
                     f"{100 * e['accuracy']:.1f}% | {e['mean_segments']:.2f} | "
                     f"{e['diff_to_best']:+.3f} {_ci(e['diff_to_best_ci'])} | "
                     f"{e['diff_to_qhead']:+.3f} {_ci(e['diff_to_qhead_ci'])} |")
    return "\n".join(lines)


def format_markdown(result: dict[str, Any], top: int | None = None) -> str:
    """Every leaderboard of a ``haltbench`` result, as Markdown."""
    return "\n\n".join(format_board(b, top) for b in result["boards"])


def write_outputs(result: dict[str, Any], out: str | Path) -> tuple[Path, Path]:
    """``haltbench.json`` and ``haltbench.md`` under ``out``."""
    from hrm_rl.checkpoint import atomic_write_text

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    js, md = out / "haltbench.json", out / "haltbench.md"
    atomic_write_text(js, json.dumps(result, indent=1, default=float))
    atomic_write_text(md, format_markdown(result) + "\n")
    return js, md


README_BEGIN = "<!-- haltbench:begin (generated by hrm-rl haltbench --readme; do not edit) -->"
README_END = "<!-- haltbench:end -->"


def write_readme_section(result: dict[str, Any], readme: str | Path, command: str,
                         top: int | None = 6) -> None:
    """Replace the text between ``README_BEGIN`` and ``README_END`` in ``readme`` with the
    verifier-free leaderboards of ``result`` at the RL baselines' step cost (the ``top``
    entries, the Q-head and the oracle) and the command that made them."""
    from hrm_rl.checkpoint import atomic_write_text

    path = Path(readme)
    text = path.read_text()
    if README_BEGIN not in text or README_END not in text:
        raise ValueError(f"{path}: no haltbench section (lines {README_BEGIN!r} and "
                         f"{README_END!r})")
    cost = result["settings"]["rl_cost"]
    boards = [b for b in result["boards"] if b["track"] == DEFAULT_TRACK
              and math.isclose(b["step_cost"], cost)] or result["boards"]
    body = "\n\n".join(format_board(b, top) for b in boards)
    traces = sum(t["traces_s"] for t in result["timings"].values())
    section = (f"{README_BEGIN}\n`{command}`: {result['seconds'] / 60:.1f} min on "
               f"{_cpu_name()}, of which {traces / 60:.1f} min recording traces.\n\n"
               f"{body}\n{README_END}")
    head, rest = text.split(README_BEGIN, 1)
    atomic_write_text(path, head + section + rest.split(README_END, 1)[1])


def _cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    import platform

    return platform.processor() or "an unknown CPU"


def cmd_haltbench(args: Any) -> int:
    from hrm_rl.checkpoint import bundled_checkpoints

    if args.threads:
        torch.set_num_threads(args.threads)
    cores = args.cores or [c for c in bundled_checkpoints() if c in DEFAULT_CORES]
    result = haltbench(cores, costs=args.costs, tracks=args.tracks, policies=args.policy,
                       rl=args.rl, rl_seeds=tuple(range(args.rl_seeds)),
                       rl_timesteps=args.rl_timesteps, rl_cost=args.rl_cost,
                       cache_dir=None if args.no_cache else args.cache_dir,
                       out_dir=args.sb3_dir, train_episodes=args.train_episodes,
                       eval_episodes=args.eval_episodes,
                       epsilon=args.epsilon, delta=args.delta, progress=not args.no_progress)
    js, md = write_outputs(result, args.out)
    if args.readme:
        command = "hrm-rl haltbench " + " ".join(sys.argv[2:]) if len(sys.argv) > 2 else \
            "hrm-rl haltbench"
        write_readme_section(result, args.readme, command)
    if args.json:
        print(json.dumps(result, indent=1, default=float))
    else:
        print(format_markdown(result))
        print(f"\n{result['seconds'] / 60:.1f} min; written: {js}, {md}", file=sys.stderr)
    return 0


def add_parser(sub: Any) -> None:
    """Add ``haltbench`` to the ``hrm-rl`` parser."""
    import argparse

    from hrm_rl.cli_types import float_list, int_in, positive_int

    p = sub.add_parser(
        "haltbench", help="every halting baseline on the same puzzles: one leaderboard per "
                          "core, step cost and track",
        description=__doc__.split("\n\n")[0] + " Default: " + ", ".join(DEFAULT_CORES)
        + "; PPO at one cost on the verifier-free track (--rl full: PPO and DQN, features and "
        "features+latent, every cost and track).",
        formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("cores", nargs="*", help="bundled names or checkpoint folders "
                                            f"(default: {' '.join(DEFAULT_CORES)})")
    p.add_argument("--costs", type=float_list(0, 1), default=DEFAULT_COSTS,
                   help="comma-separated step costs (default 0.001,0.01,0.05)")
    p.add_argument("--tracks", type=_tracks, default=TRACKS,
                   help="comma-separated: verifier-free,verifier (default both)")
    p.add_argument("--policy", action="append", default=[], metavar="MODULE:FACTORY",
                   help="your own policy: FACTORY() returns an object with fit(train, val) "
                        "and halts(trace), or SB3's predict(); repeatable")
    p.add_argument("--rl", choices=("none", "default", "full"), default="default",
                   help="RL baselines: default = PPO on features at --rl-cost on the "
                        "verifier-free track; full = PPO+DQN, both observation modes, every "
                        "cost and track; none")
    p.add_argument("--rl-seeds", type=int_in(1, 100), default=3,
                   help="seeds per RL baseline (the row is their IQM)")
    p.add_argument("--rl-timesteps", type=positive_int, default=60_000)
    p.add_argument("--rl-cost", type=float, default=DEFAULT_RL_COST)
    p.add_argument("--train-episodes", type=positive_int, default=1000,
                   help="train puzzles recorded for the learned baselines")
    p.add_argument("--eval-episodes", type=positive_int, default=None,
                   help="val and test puzzles (default all; fewer only for a quick look)")
    p.add_argument("--epsilon", type=float, default=0.01,
                   help="risk control: accuracy loss against the cap allowed")
    p.add_argument("--delta", type=float, default=0.1,
                   help="risk control: probability that the bound may fail")
    p.add_argument("--cache-dir", default="runs/haltbench/traces",
                   help="traces kept between runs (keyed by the weights' SHA-256)")
    p.add_argument("--no-cache", action="store_true", help="record every trace afresh")
    p.add_argument("--out", default="runs/haltbench", help="haltbench.json and .md go here")
    p.add_argument("--sb3-dir", default="runs/haltbench/sb3",
                   help="the RL baselines' SB3 run folders (TensorBoard, models)")
    p.add_argument("--readme", metavar="README.md",
                   help="also rewrite the generated leaderboard section of this file")
    p.add_argument("--threads", type=positive_int, default=None, help="torch CPU threads")
    p.add_argument("--json", action="store_true", help="print JSON instead of tables")
    p.add_argument("--no-progress", action="store_true")
    p.set_defaults(func=cmd_haltbench)


def _tracks(text: str) -> tuple[str, ...]:
    import argparse

    tracks = tuple(t.strip() for t in text.split(",") if t.strip())
    bad = [t for t in tracks if t not in TRACKS]
    if not tracks or bad:
        raise argparse.ArgumentTypeError(f"tracks must be a comma-separated subset of "
                                         f"{','.join(TRACKS)}, got {text!r}")
    return tracks
