"""Evaluation's one noun: a **trace**, every puzzle of a set run to a cap without halting.

A segment's result never depends on when anyone halts, so one trace (``n`` puzzles x ``K``
segments: features, correctness, Q logits, predictions and optionally latents, keyed by
puzzle) scores *every* halting rule exactly: a rule halts each puzzle at the first segment
where it says so. The core's own Q-head is one such rule. ``record_trace`` makes a trace
from a core on the segment engine; ``Trace.save``/``load_trace`` put it on disk (the
rollouts ``.npz`` the envs replay); ``score`` and ``choose_on`` are the one scorer and the
one chooser that the zoo, ``hrm-rl halt eval``, ``hrm-rl haltbench`` and the envs share.

    trace = record_trace(ckpt.model, ckpt.task, ckpt.puzzles("test"), max_segments=16)
    k = choose_on(val_trace, "fixed", step_cost=0.01)
    print(score(trace, halts(trace, "fixed", k), step_cost=0.01))

**Features and tracks.** ``FEATURES`` is the one table of named per-segment features, the
envs' ``features`` observation included. All but the last come from the model alone (the
``verifier-free`` track: what HRM's Q-head, or any policy on ARC, proofs or programs, can
see); ``violations`` comes from the task's own constraint checker and is in the
``verifier`` track only. The verifier-free features are a prefix of the verifier ones, so a
column means the same thing in both tracks.
"""

from __future__ import annotations

import contextlib
import csv
import hashlib
import io
import json
import math
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm.auto import tqdm

from hrm_rl.data import ShuffledSource
from hrm_rl.model import SegmentOutput
from hrm_rl.segment_engine import SegmentEngine
from hrm_rl.tasks.base import PuzzleBatch, Task

Q_CLIP = 30.0
"""The ``q_halt``/``q_continue`` features are clipped to +-``Q_CLIP`` (the trace also keeps
them unclipped, in ``Trace.q_halt``/``Trace.q_continue``)."""

FEATURES: tuple[tuple[str, float, float | None], ...] = (
    ("q_halt", -Q_CLIP, Q_CLIP),
    ("q_continue", -Q_CLIP, Q_CLIP),
    ("segment_fraction", 0.0, 1.0),
    ("mean_confidence", 0.0, 1.0),
    ("min_confidence", 0.0, 1.0),
    ("low_confidence_fraction", 0.0, 1.0),
    ("changed_fraction", 0.0, 1.0),
    ("latent_residual", 0.0, 1.0),
    ("segment", 1.0, None),  # None: the cap (the env's max_segments)
    ("violations", 0.0, 4.0),  # the task's checker: verifier track only
)
"""Per-segment features, in order: ``(name, low, high)``.

* ``q_halt``, ``q_continue``: the Q-head's logits (clipped to +-30).
* ``segment_fraction``: segments run / the cap; ``segment``: segments run (1..cap).
* ``mean_confidence``, ``min_confidence``: of the per-cell max softmax probability;
  ``low_confidence_fraction``: cells with confidence < 0.9.
* ``changed_fraction``: cells whose predicted token changed since the previous segment
  (0 on the first).
* ``latent_residual``: the fixed-point residual of H's state at the Q-head position,
  ``|h_k - h_(k-1)| / (|h_k| + |h_(k-1)|)`` (0 on the first segment).
* ``violations``: the task checker's rule violations of the prediction / cells, at most 4
  (``Task.violations``). Only the ``verifier`` track sees it.
"""
FEATURE_NAMES = tuple(name for name, _, _ in FEATURES)
N_FEATURES = len(FEATURES)
VERIFIER_FEATURES = ("violations",)
"""Features computed by the task's checker (not from the model)."""
TRACKS = ("verifier-free", "verifier")
"""``verifier-free``: the policy sees only the model; ``verifier``: the checker too."""
DEFAULT_TRACK = "verifier-free"
"""The default track: the Q-head is verifier-free, and so is every task without a cheap
checker (ARC); on Sudoku and mazes the checker alone nearly solves halting."""
N_MODEL_FEATURES = N_FEATURES - len(VERIFIER_FEATURES)
SEGMENT = FEATURE_NAMES.index("segment")
SEGMENT_FRACTION = FEATURE_NAMES.index("segment_fraction")
FORMAT = "hrm-rl-trace-2"
"""The trace file format (``Trace.save``); ``hrm-rl-rollouts-1`` files predate the tracks."""


def check_track(track: str) -> str:
    """``track`` if it is one of ``TRACKS``, else a ValueError listing them."""
    if track not in TRACKS:
        raise ValueError(f"track must be one of {TRACKS}, got {track!r}")
    return track


def track_features(track: str) -> tuple[str, ...]:
    """The feature names a policy on ``track`` sees, in order (a prefix of ``FEATURE_NAMES``)."""
    check_track(track)
    return FEATURE_NAMES if track == "verifier" else FEATURE_NAMES[:N_MODEL_FEATURES]


def feature_bounds(track: str, max_segments: int) -> tuple[np.ndarray, np.ndarray]:
    """``(low, high)`` float32 bounds of ``track``'s features for a cap of ``max_segments``."""
    rows = FEATURES[:len(track_features(track))]
    low = np.array([lo for _, lo, _ in rows], dtype=np.float32)
    high = np.array([max_segments if hi is None else hi for _, _, hi in rows], dtype=np.float32)
    return low, high


def segment_features(task: Task, out: SegmentOutput, labels: torch.Tensor,
                     segments: torch.Tensor, prev_pred: torch.Tensor,
                     prev_latent: torch.Tensor, first: torch.Tensor, max_segments: int
                     ) -> dict[str, torch.Tensor]:
    """What a segment shows, pays and reports, as a pure function of it (the recorder and
    the live envs both call this, so their features agree).

    Args:
        task: the task (checker, answer checks).
        out: the segment's outputs for ``n`` rows.
        labels: ``(n, seq_len)`` the rows' targets; ``segments``: ``(n,)`` segments run on
            each row's puzzle, this one included.
        prev_pred, prev_latent: ``(n, seq_len)`` and ``(n, hidden)``: each row's prediction
            and H state after the previous segment; ``first``: ``(n,)`` rows whose puzzle
            began with this segment (nothing changed).
        max_segments: the cap (``segment_fraction``'s denominator).

    Returns:
        ``features`` ``(n, N_FEATURES)`` (``FEATURES``), ``latent`` ``(n, hidden)`` (H's
        state, clipped to +-sqrt(hidden)), ``h`` (the unclipped state, for the next
        residual), ``pred`` ``(n, seq_len)``, ``correct`` ``(n,)`` bool, ``cell`` ``(n,)``,
        ``q_halt``/``q_continue`` (unclipped) and ``segments``.
    """
    logits = out.logits.float()
    conf, pred = logits.softmax(-1).max(-1)
    changed = (pred != prev_pred).float().mean(-1)
    h = out.h_state.float()
    step = (h - prev_latent.float()).norm(dim=-1)
    residual = step / (h.norm(dim=-1) + prev_latent.float().norm(dim=-1)).clamp_min(1e-12)
    zero = torch.zeros_like(changed)
    changed, residual = torch.where(first, zero, changed), torch.where(first, zero, residual)
    features = torch.stack([
        out.q_halt.float().clamp(-Q_CLIP, Q_CLIP), out.q_continue.float().clamp(-Q_CLIP, Q_CLIP),
        segments.float() / max_segments, conf.mean(-1), conf.min(-1).values,
        (conf < 0.9).float().mean(-1), changed, residual.clamp(0, 1), segments.float(),
        (task.violations(pred).float() / float(task.seq_len)).clamp(0, 4),
    ], dim=-1)
    bound = math.sqrt(h.shape[-1])
    return {"features": features, "latent": h.clamp(-bound, bound), "h": h, "pred": pred,
            "correct": task.is_correct(pred, labels), "cell": task.cell_accuracy(pred, labels),
            "q_halt": out.q_halt.float(), "q_continue": out.q_continue.float(),
            "segments": segments}


@dataclass(frozen=True)
class Trace:
    """Every puzzle of a set run for ``K`` segments; arrays ``(n, K, ...)`` with column ``k``
    after segment ``k + 1``.

    Attributes:
        features: float32 ``(n, K, N_FEATURES)``: ``FEATURES`` (``segment_fraction``
            against ``K``).
        correct: bool ``(n, K)``: the answer is exactly right (the task's check against the
            target; for scoring, never an observation).
        cell: float32 ``(n, K)``: fraction of supervised cells right.
        q_halt, q_continue: float32 ``(n, K)``: the Q-head's logits, unclipped.
        pred: int16 ``(n, K, seq_len)`` predicted tokens, or None when not kept.
        latent: float32 ``(n, K, hidden)``: H's state at the Q-head position, or None.
        puzzle: int64 ``(n,)``: each row's position in ``puzzles`` (the key that joins a
            trace's rows to puzzle ids and difficulty).
        puzzles: the puzzle set the rows index, or None.
        identity: where the trace came from (core, weights SHA-256, run config, split, cap).
    """

    features: np.ndarray
    correct: np.ndarray
    cell: np.ndarray
    q_halt: np.ndarray
    q_continue: np.ndarray
    pred: np.ndarray | None = None
    latent: np.ndarray | None = None
    puzzle: np.ndarray | None = None
    puzzles: PuzzleBatch | None = field(default=None, repr=False)
    identity: dict[str, Any] = field(default_factory=dict, repr=False)

    def __post_init__(self) -> None:
        if self.correct.ndim != 2:
            raise ValueError(f"correct must be (n, K), got {self.correct.shape}")
        n, k = self.correct.shape
        if n < 1 or k < 1:
            raise ValueError(f"a trace needs at least one puzzle and one segment, got ({n}, {k})")
        expected = {"features": (n, k, N_FEATURES), "cell": (n, k), "q_halt": (n, k),
                    "q_continue": (n, k)}
        for name, shape in expected.items():
            if getattr(self, name).shape != shape:
                raise ValueError(f"trace {name} has shape {getattr(self, name).shape}, "
                                 f"expected {shape}")
        for name in ("pred", "latent"):
            value = getattr(self, name)
            if value is not None and (value.ndim != 3 or value.shape[:2] != (n, k)):
                raise ValueError(f"trace {name} has shape {value.shape}, expected ({n}, {k}, .)")
        if self.puzzle is None:
            object.__setattr__(self, "puzzle", np.arange(n, dtype=np.int64))
        elif self.puzzle.shape != (n,):
            raise ValueError(f"trace puzzle has shape {self.puzzle.shape}, expected ({n},)")

    @property
    def n(self) -> int:
        return int(self.correct.shape[0])

    @property
    def max_segments(self) -> int:
        return int(self.correct.shape[1])

    def feature(self, name: str) -> np.ndarray:
        """``(n, K)`` one feature by name (``FEATURE_NAMES``)."""
        if name not in FEATURE_NAMES:
            raise ValueError(f"unknown feature {name!r}; features: {', '.join(FEATURE_NAMES)}")
        return self.features[:, :, FEATURE_NAMES.index(name)]

    def first(self, mask: np.ndarray, cap: int | None = None) -> np.ndarray:
        """``(n,)`` int64: the first segment (1-based) where ``mask`` ``(n, K)`` holds,
        or ``cap`` (default ``K``) where it holds at none before the cap."""
        cap = self.max_segments if cap is None else cap
        if not 1 <= cap <= self.max_segments:
            raise ValueError(f"cap must be in [1, {self.max_segments}], got {cap}")
        hit = np.asarray(mask, dtype=bool)[:, :cap].copy()
        hit[:, cap - 1] = True
        return hit.argmax(1) + 1

    def qhead_halts(self, cap: int | None = None) -> np.ndarray:
        """``(n,)`` where the core's own rule halts (``q_halt > q_continue``, as
        ``HRM.halts``; for TRM, whose ``q_continue`` is ``-q_halt``, ``q_halt > 0``)."""
        return self.first(self.q_halt > self.q_continue, cap)

    def _index(self, halt_at: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """``(rows, segment index)`` of each puzzle's answer after ``halt_at`` segments."""
        halt_at = np.asarray(halt_at, dtype=np.int64)
        if halt_at.shape != (self.n,) or halt_at.min() < 1 or halt_at.max() > self.max_segments:
            raise ValueError(f"halt_at must be ({self.n},) segments in [1, {self.max_segments}]")
        return np.arange(self.n), halt_at - 1

    def at(self, halt_at: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """``(correct, cell)`` ``(n,)`` of each puzzle's answer after ``halt_at`` segments."""
        index = self._index(halt_at)
        return self.correct[index], self.cell[index]

    def answers(self, halt_at: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """``(pred, q_halt)``: each puzzle's predicted tokens ``(n, seq_len)`` and its
        ``q_halt`` ``(n,)`` after ``halt_at`` segments (a trace recorded with ``keep_pred``)."""
        if self.pred is None:
            raise ValueError("this trace kept no predictions (record_trace(keep_pred=False))")
        index = self._index(halt_at)
        return self.pred[index], self.q_halt[index]

    def take(self, index: np.ndarray | slice) -> Trace:
        """Rows ``index`` of this trace (the puzzle set and keys follow)."""
        def rows(a: np.ndarray | None) -> np.ndarray | None:
            return None if a is None else a[index]

        return replace(self, features=self.features[index], correct=self.correct[index],
                       cell=self.cell[index], q_halt=self.q_halt[index],
                       q_continue=self.q_continue[index], pred=rows(self.pred),
                       latent=rows(self.latent), puzzle=self.puzzle[index])

    def truncate(self, cap: int) -> Trace:
        """The first ``cap`` segments (``segment_fraction`` rescaled to the new cap)."""
        if not 1 <= cap <= self.max_segments:
            raise ValueError(f"cap must be in [1, {self.max_segments}], got {cap}")
        features = self.features[:, :cap].copy()
        features[:, :, SEGMENT_FRACTION] = features[:, :, SEGMENT] / cap
        cut = (lambda a: None if a is None else a[:, :cap])
        return replace(self, features=features, correct=self.correct[:, :cap],
                       cell=self.cell[:, :cap], q_halt=self.q_halt[:, :cap],
                       q_continue=self.q_continue[:, :cap], pred=cut(self.pred),
                       latent=cut(self.latent), identity={**self.identity, "max_segments": cap})

    def observations(self, rows: np.ndarray, segments: np.ndarray, track: str = DEFAULT_TRACK,
                     obs_mode: str = "features", max_segments: int | None = None) -> Any:
        """What a halting env shows for puzzles ``rows`` after ``segments`` (1-based, per
        row) segments, in ``obs_mode`` (``features``, ``features+latent`` or ``dict``) on
        ``track``, for an env cap of ``max_segments`` (default ``K``). Fresh arrays."""
        cap = self.max_segments if max_segments is None else max_segments
        rows, k = np.asarray(rows), np.asarray(segments) - 1
        width = len(track_features(track))
        feats = self.features[rows, k, :width].copy()
        feats[:, SEGMENT_FRACTION] = feats[:, SEGMENT] / cap
        if obs_mode == "features":
            return feats
        if self.latent is None:
            raise ValueError(f"obs_mode={obs_mode!r} needs latents; this trace has none "
                             "(record it with latent=True)")
        latent = self.latent[rows, k].copy()
        if obs_mode == "features+latent":
            return np.concatenate([feats, latent], axis=-1)
        if obs_mode == "dict":
            return {"features": feats, "latent": latent}
        raise ValueError(f"obs_mode must be features, features+latent or dict, got {obs_mode!r}")

    def for_policy(self, track: str, blind: bool = False) -> Trace:
        """This trace as a policy on ``track`` may see it: on ``verifier-free`` the
        checker's features are NaN; with ``blind`` (the set a policy is scored on) the
        answers are hidden too (``correct`` False, ``cell`` 0, no puzzles, so no targets)."""
        width = len(track_features(track))
        features = self.features.copy()
        features[:, :, width:] = np.nan
        if not blind:
            return replace(self, features=features)
        return replace(self, features=features, correct=np.zeros_like(self.correct),
                       cell=np.zeros_like(self.cell), puzzles=None)

    # on disk ------------------------------------------------------------------------------
    def arrays(self) -> dict[str, np.ndarray]:
        """The arrays that go on disk, by name."""
        out = {name: getattr(self, name) for name in
               ("features", "correct", "cell", "q_halt", "q_continue", "puzzle")}
        for name in ("pred", "latent"):
            if getattr(self, name) is not None:
                out[name] = getattr(self, name)
        return out

    def save(self, path: str | Path, task: Task, overwrite: bool = False) -> Path:
        """Write the trace (and its puzzle set, in the task's CSV format) to ``path``
        (``.npz``), through a temporary file and a rename: a killed write never leaves a
        half file. Refuses an existing ``path`` unless ``overwrite``."""
        path = Path(path)
        if path.exists() and not overwrite:
            raise FileExistsError(f"{path} exists; choose another path (or overwrite it: "
                                  "--force / overwrite=True)")
        if self.puzzles is None:
            raise ValueError("a trace without its puzzle set cannot be saved")
        text = _csv_text(task, self.puzzles)
        arrays = self.arrays()
        identity = {**self.identity, "format": FORMAT, "arrays_sha256": arrays_sha256(arrays)}
        from hrm_rl.checkpoint import atomic_write

        def write(tmp: str) -> None:
            with open(tmp, "wb") as f:
                np.savez_compressed(f, puzzles_csv=np.array(text),
                                    identity=np.array(json.dumps(identity)), **arrays)

        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write(path, write)
        return path


def arrays_sha256(arrays: dict[str, np.ndarray]) -> str:
    """One SHA-256 over named arrays (name, dtype, shape and bytes, in name order)."""
    digest = hashlib.sha256()
    for name in sorted(arrays):
        a = np.ascontiguousarray(arrays[name])
        digest.update(f"{name}:{a.dtype.str}:{a.shape}".encode())
        digest.update(a.tobytes())
    return digest.hexdigest()


def _csv_text(task: Task, puzzles: PuzzleBatch) -> str:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "split.csv"
        task.write_csv(path, puzzles)
        return path.read_text()


def csv_questions(text: str) -> list[str]:
    """The question column of a task CSV's text (the second column), row by row."""
    return [row[1] for row in list(csv.reader(io.StringIO(text)))[1:]]


@torch.inference_mode()
def record_trace(model: torch.nn.Module, task: Task, puzzles: PuzzleBatch, max_segments: int,
                 latent: bool = False, keep_pred: bool = True, batch_size: int = 512,
                 precision_context: Callable[[], Any] = contextlib.nullcontext,
                 progress: bool = False, identity: dict[str, Any] | None = None,
                 desc: str = "trace") -> Trace:
    """Run every puzzle for ``max_segments`` segments, never halting, and keep each segment.

    Args:
        model: the core (its device is used).
        task: the task, for features and answer checks.
        puzzles: encoded puzzles (no augmentation), in the trace's row order.
        max_segments: segments to run (the trace's ``K``).
        latent: keep H's state per segment (``Trace.latent``).
        keep_pred: keep the predicted tokens per segment (``Trace.pred``).
        batch_size: puzzles per forward.
        precision_context: factory of the autocast context to run under.
        progress: show a progress bar (segments).
        identity: stored as ``Trace.identity`` (``max_segments`` is added).
    """
    if not isinstance(max_segments, (int, np.integer)) or max_segments < 1:
        raise ValueError(f"max_segments must be an int >= 1, got {max_segments!r}")
    if len(puzzles) == 0:
        raise ValueError("a trace needs at least one puzzle")
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    was_training = model.training
    model.eval()
    device = model.H_init.device
    n, cap, seq = len(puzzles), int(max_segments), task.seq_len
    hidden = model.config.hidden_size
    arrays: dict[str, np.ndarray] = {
        "features": np.zeros((n, cap, N_FEATURES), np.float32),
        "correct": np.zeros((n, cap), bool), "cell": np.zeros((n, cap), np.float32),
        "q_halt": np.zeros((n, cap), np.float32), "q_continue": np.zeros((n, cap), np.float32)}
    if keep_pred:
        arrays["pred"] = np.zeros((n, cap, seq), np.int16)
    if latent:
        arrays["latent"] = np.zeros((n, cap, hidden), np.float32)
    bar = tqdm(total=n * cap, desc=desc, unit="segment", disable=not progress, leave=False)
    try:
        for start in range(0, n, batch_size):
            chunk = puzzles.take(slice(start, start + batch_size))
            rows = slice(start, start + len(chunk))
            engine = SegmentEngine(model, ShuffledSource(chunk, np.random.default_rng(0),
                                                         shuffle=False), len(chunk), device)
            prev = torch.zeros(len(chunk), seq, dtype=torch.long, device=device)
            prev_h = torch.zeros(len(chunk), hidden, device=device)
            for k in range(cap):  # no cap and no halting: every row runs on
                with precision_context():
                    out = engine.step().out
                state = segment_features(task, out, engine.labels, engine.segments, prev,
                                         prev_h, engine.segments == 1, cap)
                prev, prev_h = state["pred"], state["h"]
                for name in arrays:
                    arrays[name][rows, k] = state[name].cpu().numpy()
                bar.update(len(chunk))
    finally:
        bar.close()
        model.train(was_training)
    return Trace(**arrays, puzzle=np.arange(n, dtype=np.int64), puzzles=puzzles,
                 identity={**(identity or {}), "max_segments": cap, "latent": latent,
                           "episodes": n})


# scoring ------------------------------------------------------------------------------------
def bootstrap_ci(values: np.ndarray, seed: int = 0, resamples: int = 1000
                 ) -> tuple[float, float]:
    """95% percentile bootstrap interval of the mean of ``values`` ``(n,)`` over puzzles
    (paired when ``values`` is a per-puzzle difference)."""
    values = np.asarray(values, dtype=np.float64)
    rng = np.random.default_rng(seed)
    means = values[rng.integers(0, len(values), (resamples, len(values)))].mean(1)
    lo, hi = np.percentile(means, [2.5, 97.5])
    return float(lo), float(hi)


def oracle_halt_at(correct: np.ndarray) -> np.ndarray:
    """``(n,)`` the oracle's halting segment from ``(n, K)`` per-segment correctness: the
    first segment (1-based) whose answer is right, or 1 where none is (it reads the
    targets: an upper bound on any halting policy's reward, not a policy)."""
    correct = np.asarray(correct, dtype=bool)
    return np.where(correct.any(1), correct.argmax(1) + 1, 1)


@dataclass
class Score:
    """One halting rule on one trace: figures with 95% bootstrap intervals over puzzles,
    and the per-puzzle values behind them (for paired comparisons)."""

    policy: str
    accuracy: float
    cell_accuracy: float
    mean_segments: float
    reward: float
    n: int
    step_cost: float
    accuracy_ci: tuple[float, float]
    segments_ci: tuple[float, float]
    reward_ci: tuple[float, float]
    halt_at: np.ndarray = field(repr=False)
    per_puzzle_reward: np.ndarray = field(repr=False)

    def to_dict(self) -> dict[str, Any]:
        return {"policy": self.policy, "accuracy": self.accuracy,
                "cell_accuracy": self.cell_accuracy, "mean_segments": self.mean_segments,
                "reward": self.reward, "n": self.n, "step_cost": self.step_cost,
                "accuracy_ci": list(self.accuracy_ci), "segments_ci": list(self.segments_ci),
                "reward_ci": list(self.reward_ci)}


def score(trace: Trace, halt_at: np.ndarray, step_cost: float, policy: str = "",
          reward: str = "exact", seed: int = 0) -> Score:
    """Score halting each puzzle of ``trace`` after ``halt_at`` ``(n,)`` segments: reward =
    1 for an exactly right answer (or the cell accuracy, ``reward="cell"``) minus
    ``step_cost`` per segment."""
    if reward not in ("exact", "cell"):
        raise ValueError(f"reward must be 'exact' or 'cell', got {reward!r}")
    halt_at = np.asarray(halt_at, dtype=np.int64)
    ok, cell = trace.at(halt_at)
    pay = ok.astype(np.float64) if reward == "exact" else cell.astype(np.float64)
    per_puzzle = pay - step_cost * halt_at
    return Score(policy, float(ok.mean()), float(cell.astype(np.float64).mean()),
                 float(halt_at.mean()), float(per_puzzle.mean()), trace.n, float(step_cost),
                 bootstrap_ci(ok, seed), bootstrap_ci(halt_at, seed),
                 bootstrap_ci(per_puzzle, seed), halt_at, per_puzzle)


def mean_reward(trace: Trace, halt_at: np.ndarray, step_cost: float,
                reward: str = "exact") -> float:
    """``score(...).reward`` without the intervals (for choosing settings on val)."""
    ok, cell = trace.at(np.asarray(halt_at, dtype=np.int64))
    pay = ok.astype(np.float64) if reward == "exact" else cell.astype(np.float64)
    return float((pay - step_cost * np.asarray(halt_at, dtype=np.float64)).mean())


def paired_difference(a: Score, b: Score, seed: int = 0) -> tuple[float, tuple[float, float]]:
    """Mean per-puzzle reward of ``a`` minus ``b`` on the same puzzles, with its paired 95%
    bootstrap interval."""
    if a.n != b.n:
        raise ValueError(f"a paired difference needs the same puzzles: {a.n} vs {b.n}")
    gap = a.per_puzzle_reward - b.per_puzzle_reward
    return float(gap.mean()), bootstrap_ci(gap, seed)


# rule families ------------------------------------------------------------------------------
THRESHOLD_GRID = (0.5, 0.6, 0.7, 0.8, 0.9, 0.95, 0.98, 0.99, 0.995, 0.999, 0.9999)
"""Confidence thresholds a threshold rule is chosen from (the one grid everywhere)."""
MARGIN_GRID = (-4.0, -2.0, -1.0, -0.5, 0.0, 0.5, 1.0, 2.0, 4.0)
RESIDUAL_GRID = (0.2, 0.1, 0.05, 0.02, 0.01, 0.005, 0.002, 0.001)
STABLE_GRID = (1, 2, 3, 4)


def _stable_for(trace: Trace, m: int) -> np.ndarray:
    """``(n, K)`` the prediction has not changed for the last ``m`` segments."""
    same = trace.feature("changed_fraction") == 0
    same[:, 0] = False  # the first segment has nothing to compare with
    run = np.zeros_like(same, dtype=np.int64)
    for k in range(trace.max_segments):
        run[:, k] = np.where(same[:, k], (run[:, k - 1] if k else 0) + 1, 0)
    return run >= m


@dataclass(frozen=True)
class Family:
    """A family of halting rules read off a trace: ``halts(trace, param, cap) -> (n,)``
    halting segments; ``grid``: the parameters it is chosen from (None: no parameter, or
    ``fixed``'s 1..cap); ``track``: the least track that may use it."""

    name: str
    halts: Callable[[Trace, Any, int], np.ndarray]
    grid: tuple | None
    track: str = "verifier-free"
    doc: str = ""


FAMILIES: dict[str, Family] = {f.name: f for f in (
    Family("qhead", lambda t, p, cap: t.qhead_halts(cap), None,
           doc="the core's own Q-head (q_halt > q_continue)"),
    Family("fixed", lambda t, k, cap: np.full(t.n, min(int(k), cap), dtype=np.int64), None,
           doc="always k segments"),
    Family("threshold", lambda t, x, cap: t.first(t.feature("min_confidence") >= x, cap),
           THRESHOLD_GRID, doc="every cell's confidence >= t"),
    Family("mean-threshold", lambda t, x, cap: t.first(t.feature("mean_confidence") >= x, cap),
           THRESHOLD_GRID, doc="mean cell confidence >= t"),
    Family("q-margin", lambda t, m, cap: t.first(t.q_halt - t.q_continue >= m, cap),
           MARGIN_GRID, doc="q_halt - q_continue >= m"),
    Family("stable", lambda t, m, cap: t.first(_stable_for(t, int(m)), cap), STABLE_GRID,
           doc="prediction unchanged for m segments"),
    Family("residual", lambda t, e, cap: t.first(
        (t.feature("latent_residual") <= e) & (t.feature("segment") > 1), cap), RESIDUAL_GRID,
        doc="latent fixed-point residual <= eps"),
    Family("checker", lambda t, p, cap: t.first(t.feature("violations") == 0, cap), None,
           track="verifier", doc="the task's checker finds no violation"),
)}
"""The rule families, by name (``choose_on`` picks their parameter on val)."""


def family(name: str) -> Family:
    """The rule family ``name`` (``FAMILIES``), or a ValueError listing them."""
    if name not in FAMILIES:
        raise ValueError(f"unknown rule family {name!r}; families: {', '.join(FAMILIES)}")
    return FAMILIES[name]


def halts(trace: Trace, name: str, param: Any = None, cap: int | None = None) -> np.ndarray:
    """``(n,)`` where the rule ``name`` with ``param`` halts each puzzle of ``trace``."""
    cap = trace.max_segments if cap is None else cap
    return family(name).halts(trace, param, cap)


def grid_of(name: str, cap: int) -> tuple:
    """The parameters family ``name`` is chosen from at a cap of ``cap``."""
    fam = family(name)
    if name == "fixed":
        return tuple(range(1, cap + 1))
    return (None,) if fam.grid is None else fam.grid


def choose_on(val: Trace, name: str, step_cost: float, cap: int | None = None,
              reward: str = "exact") -> Any:
    """The parameter of family ``name`` with the best mean reward on ``val`` (the first of
    its grid on ties; None for a family without one)."""
    cap = val.max_segments if cap is None else cap
    grid = grid_of(name, cap)
    rewards = [mean_reward(val, halts(val, name, p, cap), step_cost, reward) for p in grid]
    return grid[int(np.argmax(rewards))]


def rule_name(name: str, param: Any) -> str:
    """``fixed:4``, ``threshold:0.9``, ``qhead``: a rule's printed name."""
    return name if param is None else f"{name}:{param:g}" if isinstance(param, float) \
        else f"{name}:{param}"


# loading ------------------------------------------------------------------------------------
_DTYPES = {"features": np.float32, "correct": np.bool_, "cell": np.float32,
           "q_halt": np.float32, "q_continue": np.float32, "puzzle": np.int64,
           "pred": np.int16, "latent": np.float32}


def read_trace_file(path: str | Path, keys: set[str] | None = None) -> dict[str, Any]:
    """The arrays of a trace file (only ``keys`` when given) and its parsed ``identity``,
    with the format checked; a clear ValueError for anything else."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"trace file not found: {path}")
    try:
        with np.load(path, allow_pickle=False) as data:
            files = {k: data[k] for k in data.files if keys is None or k in keys}
    except Exception as err:  # zip, pickle and format errors alike
        raise ValueError(f"{path}: not a trace .npz file ({type(err).__name__}: {err})"
                         ) from None
    if "identity" not in files:
        raise ValueError(f"{path}: not a trace file (no identity)")
    try:
        identity = json.loads(str(files["identity"]))
    except ValueError as err:
        raise ValueError(f"{path}: its identity is not valid JSON ({err})") from None
    if not isinstance(identity, dict):
        raise ValueError(f"{path}: its identity is not a JSON object")
    fmt = identity.get("format")
    if fmt == "hrm-rl-rollouts-1":
        raise ValueError(f"{path}: an hrm-rl-rollouts-1 recording (before the verifier-free "
                         "track and the latent residual feature); record it again with "
                         "hrm-rl rollouts record")
    if fmt != FORMAT:
        raise ValueError(f"{path}: trace format {fmt!r}, expected {FORMAT}")
    for key in ("config", "split", "max_segments"):
        if key not in identity:
            raise ValueError(f"{path}: its identity has no {key!r} (not written by hrm-rl)")
    if not isinstance(identity["config"], dict) or not isinstance(
            identity["config"].get("task"), dict):
        raise ValueError(f"{path}: its identity's 'config' is no run config with a task "
                         "section (not written by hrm-rl)")
    files["identity"] = identity
    return files


def load_trace(path: str | Path) -> tuple[Trace, Task]:
    """Read a trace written by ``Trace.save`` (or ``hrm-rl rollouts record``), validated:
    dtypes, shapes, finite values, the arrays' checksum, and ``correct``/``cell`` against
    the stored predictions and the puzzles' answers.

    Returns:
        The trace (with its puzzles and identity) and its task.

    Raises:
        FileNotFoundError: no such file; ValueError: not a trace file, tampered or
            inconsistent (the message names the file and the problem).
    """
    from hrm_rl.config import ConfigError, RunConfig, from_dict
    from hrm_rl.tasks import make_task

    path = Path(path)
    files = read_trace_file(path)
    identity = files.pop("identity")
    text = files.pop("puzzles_csv", None)
    missing = {"features", "correct", "cell", "q_halt", "q_continue", "puzzle"} - set(files)
    if missing or text is None:
        raise ValueError(f"{path}: not a trace file (missing "
                         f"{', '.join(sorted(missing | ({'puzzles_csv'} if text is None else set())))})")
    for name, array in files.items():
        if name not in _DTYPES:
            raise ValueError(f"{path}: unexpected array {name!r}")
        if array.dtype != _DTYPES[name]:
            raise ValueError(f"{path}: {name} is {array.dtype}, expected "
                             f"{np.dtype(_DTYPES[name])}")
        if array.dtype.kind == "f" and not np.isfinite(array).all():
            raise ValueError(f"{path}: {name} holds non-finite values (NaN or inf)")
    if identity.get("arrays_sha256") != arrays_sha256(files):
        raise ValueError(f"{path}: its arrays do not match their checksum (the file was "
                         "changed after it was written); record it again")
    try:
        config = from_dict(RunConfig, identity["config"])
        task = make_task(config.task)
    except (ConfigError, TypeError, ValueError) as err:
        raise ValueError(f"{path}: its run config does not load ({err})") from None
    with tempfile.TemporaryDirectory() as tmp:
        split = Path(tmp) / "split.csv"
        split.write_text(str(text))
        try:
            puzzles = task.read_csv(split)
        except ValueError as err:
            raise ValueError(f"{path}: its puzzles do not load "
                             f"({str(err).replace(str(split), 'puzzles_csv')})") from None
    try:
        trace = Trace(**files, puzzles=puzzles, identity=identity)
    except ValueError as err:
        raise ValueError(f"{path}: {err}") from None
    if trace.max_segments != int(identity["max_segments"]):
        raise ValueError(f"{path}: holds {trace.max_segments} segments, its identity says "
                         f"{identity['max_segments']}")
    if trace.puzzle.min() < 0 or trace.puzzle.max() >= len(puzzles):
        raise ValueError(f"{path}: puzzle keys outside its {len(puzzles)} puzzles")
    if trace.pred is not None:
        if trace.pred.shape[2] != task.seq_len:
            raise ValueError(f"{path}: predictions of {trace.pred.shape[2]} cells, the task "
                             f"has {task.seq_len}")
        labels = torch.from_numpy(puzzles.labels[trace.puzzle])
        for k in range(trace.max_segments):
            pred = torch.from_numpy(trace.pred[:, k].astype(np.int64))
            if not np.array_equal(task.is_correct(pred, labels).numpy(), trace.correct[:, k]):
                raise ValueError(f"{path}: 'correct' disagrees with the stored predictions "
                                 f"and the puzzles' answers (segment {k + 1})")
    return trace, task


def predict_halts(policy: Any, trace: Trace, track: str = DEFAULT_TRACK,
                  obs_mode: str = "features", cap: int | None = None,
                  deterministic: bool = True, name: str | None = None) -> np.ndarray:
    """``(n,)`` where ``policy`` (anything with SB3's ``predict(obs, state, episode_start,
    deterministic) -> (actions, state)``; action 1 = halt) halts each puzzle of ``trace``,
    replayed segment by segment on the observations a halting env with cap ``cap`` (default
    ``K``) on ``track`` shows. Equal to running the policy in that env on the same puzzles.

    Raises:
        ValueError: the policy returns the wrong number of actions, or refuses the
            observations (its message names the policy, the track and the shape).
    """
    cap = trace.max_segments if cap is None else cap
    if not 1 <= cap <= trace.max_segments:
        raise ValueError(f"cap must be in [1, {trace.max_segments}], got {cap}")
    name = name or type(policy).__name__
    halt_at = np.full(trace.n, cap, dtype=np.int64)
    alive = np.arange(trace.n)
    for k in range(cap - 1):
        obs = trace.observations(alive, np.full(len(alive), k + 1), track, obs_mode, cap)
        try:
            actions, _ = policy.predict(obs, episode_start=np.full(len(alive), k == 0),
                                        deterministic=deterministic)
        except (ValueError, RuntimeError, KeyError, IndexError) as err:
            shape = ({key: v.shape for key, v in obs.items()} if isinstance(obs, dict)
                     else obs.shape)
            raise ValueError(f"policy {name} refused the {track} track's {obs_mode!r} "
                             f"observations of shape {shape} ({type(err).__name__}: {err}); "
                             "was it trained on another track or observation mode?") from None
        actions = np.asarray(actions).reshape(-1)
        if actions.shape != alive.shape:
            raise ValueError(f"policy {name} returned {actions.shape} actions for "
                             f"{len(alive)} rows")
        stop = actions == 1
        halt_at[alive[stop]] = k + 1
        alive = alive[~stop]
        if alive.size == 0:
            break
    return halt_at


def record_core_trace(checkpoint: Any, split: str = "test",
                      max_segments: int | None = None, episodes: int | None = None,
                      latent: bool = False, batch_size: int = 512,
                      device: torch.device | str = "cpu", progress: bool = False,
                      name: str | None = None) -> Trace:
    """The trace of a checkpoint (bundled name, run or checkpoint folder) on ``split``
    (``train``, ``val``, ``test`` or a CSV path): its first ``episodes`` puzzles (default
    all) run to ``max_segments`` (default the core's training cap), with an identity naming
    the core, its weights' SHA-256, its run config and the split. ``checkpoint`` may also be
    a loaded ``Checkpoint`` (then ``device`` is its own); ``name``: how the identity names
    the core (default the name or path given)."""
    from hrm_rl.checkpoint import Checkpoint, load_checkpoint

    ckpt = checkpoint if isinstance(checkpoint, Checkpoint) else \
        load_checkpoint(checkpoint, device)
    if name is None:
        name = str(ckpt.path if isinstance(checkpoint, Checkpoint) else checkpoint)
    puzzles, cap, identity = core_trace_plan(ckpt, split, max_segments, episodes, progress,
                                             name)
    return record_trace(ckpt.model, ckpt.task, puzzles, cap, latent=latent,
                        batch_size=batch_size, progress=progress, identity=identity,
                        desc=f"trace {Path(str(name)).name}:{split}")


def core_trace_plan(ckpt: Any, split: str, max_segments: int | None, episodes: int | None,
                    progress: bool, name: str) -> tuple[PuzzleBatch, int, dict[str, Any]]:
    """What ``record_core_trace`` records for a loaded checkpoint: ``(puzzles, cap,
    identity)``, the split's first ``episodes`` puzzles, the cap (default the core's
    training cap) and the identity naming the core (``name``), its weights' SHA-256, its run
    config and the split."""
    from hrm_rl.checkpoint import weights_sha256

    puzzles = ckpt.puzzles(str(split), progress)
    n = len(puzzles) if episodes is None else episodes
    if not isinstance(n, (int, np.integer)) or not 1 <= n <= len(puzzles):
        raise ValueError(f"episodes must be in [1, {len(puzzles)}] (the split's size), "
                         f"got {episodes!r}")
    cap = ckpt.config.train.max_segments if max_segments is None else max_segments
    identity = {"checkpoint": str(name), "checkpoint_path": str(ckpt.path),
                "weights_sha256": weights_sha256(ckpt.path),
                "config": ckpt.config.to_dict(), "task": ckpt.task.name, "split": str(split)}
    return puzzles.take(slice(0, int(n))), cap, identity
