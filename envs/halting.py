"""The halting MDP: one HRM segment per step; the action is continue or halt.

``HaltingEnv`` is one puzzle per episode; ``HaltingVectorEnv`` runs ``num_envs`` puzzles on
the segment engine with one batched forward per step and Gymnasium's three autoreset modes
(``autoreset_mode=``: same-step, the default, next-step or disabled). Both share
``_HaltingCore`` (checkpoint, puzzle source, observations, rewards).

Episode: ``reset`` draws a puzzle and runs its first segment. Action ``0`` = continue (run
one more segment), ``1`` = halt (answer now). When a segment brings the puzzle to
``max_segments`` the env halts by itself (``terminated``).

Reward: every segment costs ``step_cost``; halting pays 1 for an exactly correct answer
(``reward="exact"``) or the fraction of correct cells (``reward="cell"``). Per step:
``-step_cost`` (the segment run before this decision), plus the answer's pay on the step
that ends the episode (and ``-step_cost`` more when that step ran the final segment). The
return of an episode of k segments is ``pay - step_cost * k``.

Observation: the **track**'s features (``track=``), then, per ``obs_mode``, H's state.
The features are ``hrm_rl.trace.FEATURES`` in order (``FEATURE_NAMES``; the trace files and
``hrm-rl haltbench`` read the same table):

======  ======================  ==================================================================
index   name                    meaning
======  ======================  ==================================================================
0, 1    q_halt, q_continue      the core's Q-head logits (clipped to +-30)
2       segment_fraction        segments run / ``max_segments``
3, 4    mean/min_confidence     of the per-cell max softmax probability
5       low_confidence_fraction cells with confidence < 0.9
6       changed_fraction        cells whose predicted token changed since the last segment
7       latent_residual         ``|h_k - h_(k-1)| / (|h_k| + |h_(k-1)|)`` of H's state at the
                                Q-head position (0 on a puzzle's first segment)
8       segment                 segments run on this puzzle, an integer, 1 to ``max_segments``
9       violations              the task's checker: rule violations of the prediction / cells,
                                at most 4 (``verifier`` track only)
======  ======================  ==================================================================

* ``track="verifier-free"`` (the default): features 0-8, all from the model alone; no
  checker output reaches the policy.
* ``track="verifier"``: features 0-9, the checker's ``violations`` last.

Why the default is verifier-free: HRM's own Q-head decides from the model's state alone, as
any halting policy must on ARC (and on proofs or programs), where no cheap checker exists.
On Sudoku and mazes the checker nearly solves halting by itself: "halt once violations ==
0" takes 78-89% of the headroom between the best fixed budget and the oracle, so a policy
that sees it mostly learns to read it. Halting from the model's state is the open problem;
the ``verifier`` track is the reference to measure against.

``obs_mode``, with ``F`` = 9 (verifier-free) or 10 (verifier):

* ``"features"``: ``Box(F,)`` float32, the track's features.
* ``"features+latent"`` (also ``"latent"``): ``Box(F + hidden,)``: the features, then H's
  state at the Q-head position (clipped to +-sqrt(hidden)).
* ``"dict"``: ``{"features": Box(F,), "latent": Box(hidden,)}``.

``info``: ``prediction`` (decoded answer, e.g. digits), ``is_success`` (exactly correct),
``cell_accuracy``, ``segments`` (used so far): numpy values (``np.bool_``, ``np.float64``,
``np.int64``), the vector env's arrays with one entry per row and a ``_key`` mask beside
every key, as Gymnasium's vector envs give them.

Recorded rollouts (``rollouts=FILE``, a trace file, see ``hrm_rl.envs.rollouts``): the env
replays a core's trace instead of running it (no model is loaded; ``split`` is the
recording's and ``max_segments`` at most its cap), with the same observations, rewards and
infos as the live env for the same seed and actions, on either track. Without
``checkpoint=`` the recording defines the core (its task must be the env id's: Sudoku for
``HRM-Sudoku-v0``); a ``checkpoint=`` given with it must be the recorded core (same weights
SHA-256, task and sequence length), else the env refuses, naming both.

Puzzles (``split``): ``"train"`` (the default) and ``"val"`` are fresh puzzles from the core's
generator, none the same as or a symmetry of a test puzzle, and disjoint from each other up
to symmetry (ARC: split by task); ``"test"`` is the core's own held-out set; or the path of a
CSV in the task's format. Train halting policies on ``train``, choose their settings on
``val``, and score them on ``test`` (``Checkpoint.puzzles``, ``Task.halting_split``).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import torch
from gymnasium import spaces
from gymnasium.vector import AutoresetMode, VectorEnv

from hrm_rl.checkpoint import (WEIGHTS, load_checkpoint, read_checkpoint_config,
                               resolve_checkpoint, weights_sha256)
from hrm_rl.data import ShuffledSource
from hrm_rl.device import resolve_device
from hrm_rl.model import SegmentOutput
from hrm_rl.segment_engine import SegmentEngine, SegmentStep
from hrm_rl.tasks.base import PuzzleBatch
from hrm_rl.trace import (DEFAULT_TRACK, FEATURE_NAMES, FEATURES, N_FEATURES,
                          N_MODEL_FEATURES, TRACKS, Trace, feature_bounds,
                          load_trace, segment_features, track_features)
from hrm_rl.envs import DefaultCheckpoint
from hrm_rl.envs.rendering import render_rgb
from hrm_rl.envs.rollouts import TraceCore, TraceRows, replay_puzzles

__all__ = ["FEATURES", "FEATURE_NAMES", "N_FEATURES", "N_MODEL_FEATURES", "TRACKS",
           "DEFAULT_TRACK", "DefaultCheckpoint", "HaltingEnv", "HaltingVectorEnv",
           "RowSeededSource", "parse_autoreset_mode", "step_rewards"]

_OBS_MODES = ("features", "features+latent", "dict")
_OBS_ALIASES = {"latent": "features+latent"}
_REWARDS = ("exact", "cell")


_SHARED: dict[tuple, Any] = {}


def _shared(kind: str, path: Path, device: torch.device, load: Callable[[], Any]) -> Any:
    """One loaded core (or trace) per file, version and device in a process. The envs
    only read it (inference), so ``n`` single envs in one process (SB3's ``make_vec_env``,
    rl-zoo3, ``SyncVectorEnv``) hold one copy of the weights, not ``n``. Keyed by the file's
    size and modification time, so a rewritten file loads afresh."""
    stat = path.stat()
    key = (kind, str(path.resolve()), stat.st_mtime_ns, stat.st_size, str(device))
    if key not in _SHARED:
        _SHARED[key] = load()
    return _SHARED[key]


def _recorded_hidden(identity: dict[str, Any]) -> int:
    """The hidden size of a recorded core (its run config), for the latent's bounds."""
    model = identity.get("config", {}).get("model", {})
    return int(model.get("hidden_size") or 1)


def check_recorded_core(path: Path, trace: Trace, task: Any, checkpoint: str | Path) -> None:
    """Refuse a recording that is not of the env's core.

    With the env id's default core (``DefaultCheckpoint``: the caller chose none) the
    recording defines the core, but its task family must be the env id's (Sudoku, Maze, ARC).
    A ``checkpoint`` the caller chose must be the recorded core: the same weights (SHA-256),
    task and sequence length; the ValueError names both."""
    identity = trace.identity
    folder = resolve_checkpoint(checkpoint)
    config, model_cfg, _ = read_checkpoint_config(folder)
    recorded_family = identity.get("config", {}).get("task", {}).get("name")
    if isinstance(checkpoint, DefaultCheckpoint):
        if recorded_family != config.task.name:
            raise ValueError(f"{path} records a {task.name} core ({recorded_family}); this "
                             f"env is for {config.task.name} (its default core is "
                             f"{checkpoint}); replay it with the env id of its task")
        return
    from hrm_rl.tasks import make_task

    weights = folder / WEIGHTS
    mine = {"weights SHA-256": _shared("sha256", weights, torch.device("cpu"),
                                       lambda: weights_sha256(folder)),
            "task": make_task(config.task).name, "seq_len": int(model_cfg.seq_len)}
    theirs = {"weights SHA-256": identity.get("weights_sha256"), "task": task.name,
              "seq_len": int(task.seq_len)}
    differ = [key for key in mine if mine[key] != theirs[key]]
    if differ:
        def show(d: dict[str, Any]) -> str:
            return (f"task {d['task']}, seq_len {d['seq_len']}, weights "
                    f"{str(d['weights SHA-256'])[:12]}")

        raise ValueError(
            f"rollouts {path} records core {identity.get('checkpoint', '?')} ({show(theirs)}), "
            f"not checkpoint {checkpoint} ({show(mine)}): {', '.join(differ)} differ. Leave "
            f"checkpoint= unset to replay the recorded core, or record this checkpoint "
            f"(hrm-rl rollouts record {checkpoint} --out FILE.npz)")


class _HaltingCore:
    """Checkpoint (or trace), puzzles, engine and the observation/reward maps shared by both
    envs.

    The loaded core or trace is shared by every env of the process that uses the same file
    (``_shared``): do not train ``env.core.model`` in place.

    Live, ``last`` holds what ``hrm_rl.trace.segment_features`` computed for each row's last
    segment; replayed (``trace`` set), each row's place in the trace (``row``, ``segments``)
    and its answer there (``pred``, ``correct``, ``cell``), and observations are
    ``Trace.observations`` at those places."""

    def __init__(self, num_envs: int, checkpoint: str | Path, split: str | None,
                 max_segments: int | None, step_cost: float, reward: str, obs_mode: str,
                 device: str, rollouts: str | Path | None = None,
                 track: str = DEFAULT_TRACK) -> None:
        obs_mode = _OBS_ALIASES.get(obs_mode, obs_mode)
        if obs_mode not in _OBS_MODES:
            raise ValueError(f"obs_mode must be one of {_OBS_MODES} (or 'latent'), "
                             f"got {obs_mode!r}")
        if not isinstance(track, str) or track not in TRACKS:
            raise ValueError(f"track must be one of {TRACKS} ('verifier-free': the model's "
                             f"features only; 'verifier': also the task checker's "
                             f"violations), got {track!r}")
        self.track = track
        if reward not in _REWARDS:
            raise ValueError(f"reward must be one of {_REWARDS}, got {reward!r}")
        if not (isinstance(step_cost, (int, float, np.integer, np.floating))  # numpy
                and not isinstance(step_cost, (bool, np.bool_))  # scalars from sweeps too
                and 0 <= step_cost <= 1):
            raise ValueError(f"step_cost must be a number in [0, 1], got {step_cost!r}")
        if not _is_int(num_envs) or num_envs < 1:
            raise ValueError(f"num_envs must be an int >= 1, got {num_envs!r}")
        if split is not None and not isinstance(split, (str, Path)):
            raise ValueError(f"split must be 'train', 'val', 'test' or a CSV path, got {split!r}")
        self.trace: Trace | None = None
        self.rollouts: Path | None = None
        if rollouts is not None:  # replay: no model, the trace's task and puzzles
            self.device = torch.device("cpu")
            path = self.rollouts = Path(rollouts)
            self.trace, self.task = (_shared("rollouts", path, self.device,
                                             lambda: load_trace(path))
                                     if path.is_file() else load_trace(path))
            identity = self.trace.identity
            if split is not None and str(split) != str(identity["split"]):
                raise ValueError(f"{path} was recorded on split {identity['split']!r}, "
                                 f"not {str(split)!r}; leave split unset with rollouts=")
            check_recorded_core(path, self.trace, self.task, checkpoint)
            if obs_mode != "features" and self.trace.latent is None:
                raise ValueError(f"obs_mode={obs_mode!r} needs latents; {path} was "
                                 "recorded without them (hrm-rl rollouts record --latent)")
            if self.trace.pred is None:
                raise ValueError(f"{path} holds no predictions; the env needs them for its "
                                 "infos (record it with hrm-rl rollouts record)")
            self.model, self.puzzles = TraceCore(self.trace), replay_puzzles(self.trace)
            self.split = str(identity["split"])
            self.hidden = (int(self.trace.latent.shape[2]) if self.trace.latent is not None
                           else _recorded_hidden(identity))
            default_max = cap = self.trace.max_segments
        else:
            self.device = resolve_device(device)
            folder = resolve_checkpoint(checkpoint)
            ckpt = _shared("checkpoint", folder / WEIGHTS, self.device,
                           lambda: load_checkpoint(folder, self.device))
            self.task, self.model = ckpt.task, ckpt.model
            default_max = cap = ckpt.config.train.max_segments
            self.split = "train" if split is None else str(split)
            self.puzzles = ckpt.puzzles(self.split)
            self.hidden = self.model.config.hidden_size
        self.max_segments = default_max if max_segments is None else max_segments
        if not _is_int(self.max_segments) or self.max_segments < 1:
            raise ValueError(f"max_segments must be an int >= 1, got {max_segments!r}")
        if self.trace is not None and self.max_segments > cap:
            raise ValueError(f"max_segments={max_segments} exceeds the {cap} segments "
                             f"recorded in {self.rollouts}")
        self.step_cost, self.reward, self.obs_mode = float(step_cost), reward, obs_mode
        self.num_envs = num_envs
        self.engine: SegmentEngine | None = None  # built by reset(), seeded there
        self.prev_pred = torch.zeros(num_envs, self.task.seq_len, dtype=torch.long,
                                     device=self.device)
        # H's unclipped state after each row's previous segment (the latent residual)
        self.prev_h = torch.zeros(num_envs, self.hidden or 1, device=self.device)
        self.last: dict[str, torch.Tensor] = {}

    @property
    def n_features(self) -> int:
        """The width of the features part of an observation (the track's features)."""
        return len(track_features(self.track))

    # the episodes: the envs drive the engine through these three, never directly ---------
    def start(self, source: ShuffledSource | RowSeededSource, restart_at_cap: bool
              ) -> SegmentStep:
        """Begin every row's episode over ``source``: a fresh engine (the cap is its; the
        vector env in same-step mode restarts rows at the cap in the same step) and every
        row's first segment, recorded. Returns that segment's step."""
        self.engine = SegmentEngine(self.model, source, self.num_envs, self.device,
                                    max_segments=self.max_segments,
                                    restart_at_cap=restart_at_cap)
        with torch.inference_mode():
            step = self.engine.step()
            self.record_step(step)
        return step

    def advance(self, halt: torch.Tensor | None = None, hold: torch.Tensor | None = None
                ) -> SegmentStep:
        """One batched segment forward (``SegmentEngine.step``): rows in ``halt`` start new
        puzzles, rows in ``hold`` sit it out. Not recorded: the env records what it shows."""
        self._require_reset()
        with torch.inference_mode():
            return self.engine.step(halt, hold)

    @property
    def source(self) -> ShuffledSource | RowSeededSource:
        """Where the running episodes draw their puzzles (``start``'s ``source``)."""
        self._require_reset()
        return self.engine.source

    def cap_rewards(self, capped: np.ndarray) -> np.ndarray:
        """``(n,)`` what the rows that reached the cap within this env step add to its
        reward: the segment that reached it (``-step_cost``) and the terminal answer's pay
        (read before their restart is recorded). Zero on the other rows. The one place the
        cap's rule is written; the envs add it to ``step_rewards`` of the decision."""
        return (step_rewards(capped, self.pay().cpu().numpy(), self.step_cost, charge=False)
                - capped * self.step_cost)

    def record_step(self, step: SegmentStep) -> None:
        """``record`` every row of ``step`` (the restarted rows' terminal segments first;
        read what they pay and show before calling this if needed)."""
        self.record(step.out, fresh=step.started, labels=step.labels, segments=step.segments)

    # spaces ------------------------------------------------------------------------
    def observation_space(self) -> spaces.Space:
        low, high = feature_bounds(self.track, self.max_segments)
        features = spaces.Box(low, high, dtype=np.float32)
        if self.obs_mode == "features":
            return features
        bound = math.sqrt(self.hidden) * 1.001
        latent = spaces.Box(-bound, bound, (self.hidden,), dtype=np.float32)
        if self.obs_mode == "features+latent":
            return spaces.Box(np.concatenate([low, latent.low]),
                              np.concatenate([high, latent.high]), dtype=np.float32)
        return spaces.Dict({"features": features, "latent": latent})

    # per-segment bookkeeping -------------------------------------------------------------
    def record(self, out: SegmentOutput | TraceRows, rows: torch.Tensor | None = None,
               fresh: torch.Tensor | None = None, labels: torch.Tensor | None = None,
               segments: torch.Tensor | None = None) -> None:
        """Turn a segment's outputs (or, replayed, its places in the trace) into the state
        behind observations, rewards and infos.

        ``rows`` limits the update to those row indices (``out`` then has those rows only);
        ``fresh`` marks rows whose puzzle just started (nothing "changed" on a first segment).
        ``labels`` and ``segments`` (all rows) stand in for the engine's when some rows have
        moved on to a new puzzle since ``out`` was computed.
        """
        if isinstance(out, TraceRows):
            state = {"row": torch.from_numpy(out.row), "segments": torch.from_numpy(out.segment),
                     "pred": out.pred(), "correct": out.correct(), "cell": out.cell()}
        else:
            if labels is None:
                labels = self.engine.labels if rows is None else self.engine.labels[rows]
            if segments is None:
                segments = self.engine.segments if rows is None else self.engine.segments[rows]
            prev = self.prev_pred if rows is None else self.prev_pred[rows]
            prev_h = self.prev_h if rows is None else self.prev_h[rows]
            first = segments == 1 if fresh is None else fresh
            full = segment_features(self.task, out, labels, segments, prev, prev_h, first,
                                    self.max_segments)
            state = {key: full[key] for key in
                     ("features", "latent", "h", "pred", "correct", "cell", "segments")}
        if rows is None:
            self.last = state
            self.prev_pred = state["pred"]
            if "h" in state:
                self.prev_h = state["h"]
        else:
            for key, value in state.items():
                self.last[key] = self.last[key].index_put((rows,), value)
            self.prev_pred = self.prev_pred.index_put((rows,), state["pred"])
            if "h" in state:
                self.prev_h = self.prev_h.index_put((rows,), state["h"])

    def _require_reset(self) -> None:
        if not self.last:
            raise RuntimeError("the env has not been reset: call reset() first")

    def pay(self) -> torch.Tensor:
        """``(n,)`` what halting now would pay (before step costs)."""
        self._require_reset()
        return self.last["correct"].float() if self.reward == "exact" else self.last["cell"]

    def at_cap(self) -> np.ndarray:
        """``(n,)`` bool, rows whose puzzle has run ``max_segments`` segments (they end on
        the next step whatever the action)."""
        self._require_reset()
        return (self.engine.segments >= self.max_segments).cpu().numpy()

    def observations(self, index: np.ndarray | slice | int = slice(None)) -> Any:
        """The rows' observations (fresh arrays every call): the track's features, and H's
        state per ``obs_mode``; an int ``index`` gives one row's, unbatched."""
        self._require_reset()
        one = _is_int(index)
        if self.trace is not None:
            rows = np.atleast_1d(self.last["row"][index].numpy())
            segments = np.atleast_1d(self.last["segments"][index].numpy())
            obs = self.trace.observations(rows, segments, self.track, self.obs_mode,
                                          self.max_segments)
            if one:
                return {k: v[0] for k, v in obs.items()} if isinstance(obs, dict) else obs[0]
            return obs
        feats = self.last["features"][index][..., :self.n_features].cpu().numpy().copy()
        if self.obs_mode == "features":
            return feats
        latent = self.last["latent"][index].cpu().numpy().copy()
        if self.obs_mode == "features+latent":
            return np.concatenate([feats, latent], axis=-1)
        return {"features": feats, "latent": latent}

    def infos(self, index: np.ndarray | slice = slice(None)) -> dict[str, np.ndarray]:
        self._require_reset()
        return {
            "prediction": self.task.decode(self.last["pred"][index]),
            "is_success": self.last["correct"][index].cpu().numpy().copy(),
            "cell_accuracy": self.last["cell"][index].cpu().numpy().astype(np.float64),
            "segments": self.last["segments"][index].cpu().numpy().copy(),
        }

    def render(self, row: int, mode: str) -> str | np.ndarray:
        self._require_reset()
        inputs = self.engine.inputs[row].cpu().numpy()
        pred = self.last["pred"][row].cpu().numpy()
        labels = self.engine.labels[row].cpu().numpy()
        if mode == "ansi":
            seg = int(self.last["segments"][row])
            verdict = "correct" if bool(self.last["correct"][row]) else "wrong"
            return f"segment {seg}/{self.max_segments} ({verdict})\n" + \
                self.task.render(inputs, pred, labels) + "\n"
        return render_rgb(self.task, inputs, pred, labels)


def step_rewards(halt: np.ndarray, pay: np.ndarray, step_cost: float,
                 charge: bool = True) -> np.ndarray:
    """``(n,)`` float64 rewards of one env step: ``-step_cost`` for the segment run before
    this decision (``charge``), plus ``pay`` (what the current answer is worth) on the rows
    that ``halt``. Pure; the envs add a restarted row's terminal pay and segment cost with
    ``charge=False`` and ``-step_cost``."""
    base = np.full(len(halt), -step_cost if charge else 0.0, dtype=np.float64)
    return base + np.where(halt, pay.astype(np.float64), 0.0)


class RowSeededSource:
    """The vector env's puzzles: one shared shuffled stream, except for rows given a seed of
    their own (``reset(seed=[...])``), which draw from their own stream.

    With no row of its own it hands out exactly what ``ShuffledSource(puzzles, rng)`` does.
    A row seeded with ``s`` gets the puzzles a one-row env reset with ``seed=s`` gets.

    Args:
        puzzles: the split.
        rng: the shared stream's generator (the env's ``np_random``).
        row_rngs: row index -> that row's own generator.
    """

    def __init__(self, puzzles: PuzzleBatch, rng: np.random.Generator,
                 row_rngs: dict[int, np.random.Generator] | None = None) -> None:
        self.puzzles = puzzles
        self.shared = ShuffledSource(puzzles, rng)
        self.own: dict[int, ShuffledSource] = {}
        for row, row_rng in (row_rngs or {}).items():
            self.seed_row(row, row_rng)

    def seed_shared(self, rng: np.random.Generator) -> None:
        """Restart the shared stream on ``rng``."""
        self.shared = ShuffledSource(self.puzzles, rng)

    def seed_row(self, row: int, rng: np.random.Generator | None) -> None:
        """Give ``row`` its own stream on ``rng`` (None: back to the shared stream)."""
        if rng is None:
            self.own.pop(row, None)
        else:
            self.own[row] = ShuffledSource(self.puzzles, rng)

    def draw(self, n: int) -> PuzzleBatch:
        """``n`` puzzles from the shared stream (``PuzzleSource``)."""
        return self.shared.draw(n)

    def draw_indices_for(self, rows: np.ndarray) -> np.ndarray:
        """The positions in ``puzzles`` of the next puzzle of each of ``rows``, in order."""
        rows = np.asarray(rows, dtype=np.int64)
        if not self.own:
            return self.shared.draw_indices(len(rows))
        mine = np.array([int(r) in self.own for r in rows], dtype=bool)
        index = np.zeros(len(rows), dtype=np.int64)
        index[~mine] = self.shared.draw_indices(int((~mine).sum()))
        for j in np.flatnonzero(mine):
            index[j] = self.own[int(rows[j])].draw_indices(1)[0]
        return index

    def draw_for(self, rows: np.ndarray) -> PuzzleBatch:
        """The next puzzle of each of ``rows``, in order (the segment engine asks this)."""
        return self.puzzles.take(self.draw_indices_for(rows))


def _is_int(value: Any) -> bool:
    """An integer (Python or numpy), but not a bool."""
    return isinstance(value, (int, np.integer)) and not isinstance(value, (bool, np.bool_))


def _check_actions(actions: Any, n: int, batched: bool = False) -> np.ndarray:
    """``actions`` as ``(n,)`` int64 in {0, 1}, or a ValueError saying what was wrong.

    ``batched`` (the vector env): a scalar is a TypeError, as in Gymnasium's vector envs,
    even for one row; otherwise a scalar is the one row's action."""
    try:
        a = np.asarray(actions)
    except (TypeError, ValueError, OverflowError):  # ragged nesting, odd objects
        a = np.asarray(None)
    if a.shape == () and batched and a.dtype.kind in "biuf":
        raise TypeError(f"a vector env steps on a batch of actions, shape ({n},); got the "
                        f"scalar {actions!r} (pass np.full({n}, {actions!r}))")
    if a.shape == () and n == 1:
        a = a.reshape(1)
    ok = a.shape == (n,) and a.dtype.kind in "biuf"
    if ok and a.dtype.kind == "f":  # whole numbers only (1.0 is fine, 0.5 and nan are not)
        ok = bool(np.all(np.isfinite(a)) and np.all(a == np.round(a)))
    if not ok:
        raise ValueError(f"actions must be {n} integer(s) in {{0, 1}}; got {actions!r}")
    if np.any((a < 0) | (a > 1)):
        raise ValueError(f"actions must be 0 (continue) or 1 (halt); got {actions!r}")
    return a.astype(np.int64)


class HaltingEnv(gym.Env):
    metadata = {"render_modes": ["human", "ansi", "rgb_array"], "render_fps": 2}

    def __init__(self, checkpoint: str | Path = DefaultCheckpoint("sudoku4"),
                 split: str | None = None, max_segments: int | None = None,
                 step_cost: float = 0.01, reward: str = "exact", obs_mode: str = "features",
                 device: str = "cpu", render_mode: str | None = None,
                 rollouts: str | Path | None = None, track: str = DEFAULT_TRACK) -> None:
        if render_mode is not None and render_mode not in self.metadata["render_modes"]:
            raise ValueError(f"render_mode must be one of {self.metadata['render_modes']} or "
                             f"None, got {render_mode!r}")
        self.core = _HaltingCore(1, checkpoint, split, max_segments, step_cost, reward,
                                 obs_mode, device, rollouts, track)
        self.render_mode = render_mode
        self.observation_space = self.core.observation_space()
        self.action_space = spaces.Discrete(2)
        self._done = True

    def _obs(self) -> Any:
        return self.core.observations(0)

    def _info(self) -> dict[str, Any]:
        # numpy values of the vector env's dtypes (np.bool_, np.float64, np.int64)
        return {key: value[0] for key, value in self.core.infos(slice(0, 1)).items()}

    def action_masks(self) -> np.ndarray:
        """``(2,)`` bool, the actions that mean something now (sb3-contrib's MaskablePPO
        reads this): halting always; continuing unless the puzzle is at the cap, where the
        env halts whatever the action."""
        return np.array([not bool(self.core.at_cap()[0]), True])

    def reset(self, *, seed: int | None = None, options: dict | None = None
              ) -> tuple[Any, dict[str, Any]]:
        """Draw a puzzle and run its first segment; ``options`` must be empty or None."""
        if options:
            raise ValueError(f"unknown reset option(s) {_names(options)}; HaltingEnv takes none")
        super().reset(seed=seed)
        self._last_step = self.core.start(ShuffledSource(self.core.puzzles, self.np_random),
                                          restart_at_cap=False)
        self._done = False
        return self._obs(), self._info()

    def step(self, action: Any) -> tuple[Any, float, bool, bool, dict[str, Any]]:
        """Continue (0: run one more segment) or halt (1); see the module docstring."""
        if self._done:
            raise RuntimeError("the episode has ended: call reset() before step()")
        # A puzzle that reached the cap (possible right after reset when max_segments=1)
        # ends now whatever the action.
        halt = bool(_check_actions(action, 1)[0]) or bool(self._last_step.finished[0])
        core = self.core
        reward = float(step_rewards(np.array([halt]), core.pay().cpu().numpy(),
                                    core.step_cost)[0])
        if not halt:
            self._last_step = core.advance()
            with torch.inference_mode():
                core.record_step(self._last_step)
            halt = bool(self._last_step.finished[0])  # the cap
            if halt:
                reward += float(core.cap_rewards(np.ones(1, dtype=bool))[0])
        self._done = halt
        return self._obs(), reward, halt, False, self._info()

    def render(self) -> str | np.ndarray | None:
        if self.render_mode is None:
            gym.logger.warn("render() called without a render_mode; pass render_mode='human', "
                            "'ansi' or 'rgb_array' to gym.make")
            return None
        if self.render_mode == "human":  # the text frame on stdout (no window needed)
            print(self.core.render(0, "ansi"), flush=True)
            return None
        return self.core.render(0, self.render_mode)


HaltingEnv.__doc__ = "One puzzle per episode, one HRM segment per step.\n" + __doc__


def _names(options: dict) -> str:
    return ", ".join(repr(key) for key in sorted(options, key=str))


def parse_autoreset_mode(value: AutoresetMode | str) -> AutoresetMode:
    """``value`` as an ``AutoresetMode`` (the enum, its value ``"SameStep"``/``"NextStep"``/
    ``"Disabled"`` or its name, any case), or a ValueError listing them."""
    if isinstance(value, AutoresetMode):
        return value
    if isinstance(value, str):
        for mode in AutoresetMode:
            if value.lower() in (mode.value.lower(), mode.name.lower()):
                return mode
    raise ValueError(f"autoreset_mode must be a gymnasium.vector.AutoresetMode or one of "
                     f"{[m.value for m in AutoresetMode]}, got {value!r}")


class HaltingVectorEnv(VectorEnv):
    """``num_envs`` halting episodes with one batched segment forward per step.

    Each row is a ``HaltingEnv`` episode after episode (same observations, rewards and
    infos); the rows share one segment engine, so every step (and every reset) is one
    batched forward over all rows. See ``HaltingEnv`` for the observation layout and reward.

    Autoreset (``autoreset_mode``, also ``metadata["autoreset_mode"]``), as Gymnasium's
    ``SyncVectorEnv`` defines the modes:

    * ``SAME_STEP`` (the default): a row that ends its episode returns the first observation
      of its next puzzle (that puzzle's first segment ran in the same forward), with the
      terminal observation and info in ``infos["final_obs"]`` and ``infos["final_info"]``
      (masks ``_final_obs``/``_final_info``).
    * ``NEXT_STEP``: a row that ends returns its terminal observation and info; on the next
      ``step`` it ignores its action, starts its next puzzle, and returns that first
      observation with reward 0 and ``terminated``/``truncated`` False.
    * ``DISABLED``: rows that end stay ended until ``reset(options={"reset_mask": mask})``
      restarts them; stepping while a row is ended is an error.

    A row whose episode ends and does not restart in that step sits the forward out
    (``SegmentEngine.step(hold=...)``), so it keeps its puzzle and carry.

    ``reset(seed=...)``: an int seeds the env's one generator, from which every row draws
    its puzzles (the same puzzles for the same seed); a list of ``num_envs`` ints or None
    gives each row with an int its own puzzle stream (the puzzles a one-row env reset with
    that seed gets), rows with None keep theirs. ``options={"reset_mask": mask}`` (bool
    ``(num_envs,)``) restarts only those rows (a seed then applies to them: an int reseeds
    the shared generator, list entries seed those rows); the infos then cover those rows.

    Infos carry a ``_key`` bool mask beside every key (the rows that report it).
    """

    metadata = {"render_modes": ["human", "ansi", "rgb_array"], "render_fps": 2,
                "autoreset_mode": AutoresetMode.SAME_STEP}

    def __init__(self, num_envs: int = 1, checkpoint: str | Path = DefaultCheckpoint("sudoku4"),
                 split: str | None = None, max_segments: int | None = None,
                 step_cost: float = 0.01, reward: str = "exact", obs_mode: str = "features",
                 device: str = "cpu", render_mode: str | None = None,
                 rollouts: str | Path | None = None,
                 autoreset_mode: AutoresetMode | str = AutoresetMode.SAME_STEP,
                 track: str = DEFAULT_TRACK) -> None:
        if render_mode is not None and render_mode not in self.metadata["render_modes"]:
            raise ValueError(f"render_mode must be one of {self.metadata['render_modes']} or "
                             f"None, got {render_mode!r}")
        self.autoreset_mode = parse_autoreset_mode(autoreset_mode)
        self.metadata = {**type(self).metadata, "autoreset_mode": self.autoreset_mode}
        self.core = _HaltingCore(num_envs, checkpoint, split, max_segments, step_cost, reward,
                                 obs_mode, device, rollouts, track)
        self.num_envs = num_envs
        self.render_mode = render_mode
        self.single_observation_space = self.core.observation_space()
        self.single_action_space = spaces.Discrete(2)
        self.observation_space = gym.vector.utils.batch_space(self.single_observation_space,
                                                              num_envs)
        self.action_space = gym.vector.utils.batch_space(self.single_action_space, num_envs)
        self._np_random = None
        self._row_rngs: dict[int, np.random.Generator] = {}
        self._autoreset = np.zeros(num_envs, dtype=bool)  # ended, not restarted yet
        self._started = False

    # reset ---------------------------------------------------------------------------------
    def reset(self, *, seed: int | list[int | None] | None = None,
              options: dict[str, Any] | None = None) -> tuple[Any, dict[str, Any]]:
        """Start every row's next puzzle (or the ``reset_mask`` rows'); see the class
        docstring for ``seed`` and ``options``.

        Raises:
            ValueError: a seed list of the wrong length, unknown option keys, a bad
                ``reset_mask`` shape or an all-False one; TypeError: a ``reset_mask`` that
                is not a bool numpy array, a seed that is not an int, list or None.
            RuntimeError: a ``reset_mask`` that leaves rows out before the first reset.
        """
        options = {} if options is None else dict(options)
        reset_mask = options.pop("reset_mask", None)
        if options:
            raise ValueError(f"unknown reset option(s) {_names(options)}; the halting vector "
                             "env takes only 'reset_mask'")
        seed = self._check_seed(seed)
        if reset_mask is not None:
            mask = self._check_mask(reset_mask)
            if self._started:
                return self._reset_rows(mask, seed)
            if not mask.all():
                raise RuntimeError("reset(options={'reset_mask': ...}) restarts some rows of a "
                                   "started env; call reset() once first")
        return self._reset_all(seed)

    def _check_seed(self, seed: Any) -> int | list[int | None] | None:
        if seed is None or _is_int(seed):
            return None if seed is None else int(seed)
        if isinstance(seed, (list, tuple, np.ndarray)):
            seeds = list(seed)
            if len(seeds) != self.num_envs:
                raise ValueError(f"a list of seeds needs one per env: num_envs={self.num_envs}, "
                                 f"got {len(seeds)}")
            bad = [s for s in seeds if s is not None and not _is_int(s)]
            if bad:
                raise TypeError(f"seeds must be ints or None, got {bad[0]!r}")
            return [None if s is None else int(s) for s in seeds]
        raise TypeError(f"seed must be None, an int or a list of num_envs ints or None, "
                        f"got {seed!r}")

    def _check_mask(self, mask: Any) -> np.ndarray:
        """Gymnasium's ``reset_mask`` rules (as ``SyncVectorEnv`` checks them)."""
        if not isinstance(mask, np.ndarray):
            raise TypeError(f"options['reset_mask'] must be a numpy array, got {type(mask)}")
        if mask.shape != (self.num_envs,):
            raise ValueError(f"options['reset_mask'] must have shape ({self.num_envs},), "
                             f"got {mask.shape}")
        if mask.dtype != np.bool_:
            raise TypeError(f"options['reset_mask'] must have dtype bool, got {mask.dtype}")
        if not mask.any():
            raise ValueError("options['reset_mask'] must have at least one True entry")
        return mask.copy()

    def _reset_all(self, seed: int | list[int | None] | None) -> tuple[Any, dict[str, Any]]:
        seeding = gym.utils.seeding
        if isinstance(seed, list):
            if self._np_random is None:
                self._np_random, self._np_random_seed = seeding.np_random()
            for row, row_seed in enumerate(seed):
                if row_seed is not None:
                    self._row_rngs[row] = seeding.np_random(row_seed)[0]
        else:
            if seed is not None or self._np_random is None:  # np_random_seed reads it back
                self._np_random, self._np_random_seed = seeding.np_random(seed)
            if seed is not None:  # one seed for the env: every row draws from it
                self._row_rngs = {}
        core = self.core
        source = RowSeededSource(core.puzzles, self._np_random, self._row_rngs)
        core.start(source, restart_at_cap=self.autoreset_mode is AutoresetMode.SAME_STEP)
        self._started = True
        self._autoreset[:] = False
        return core.observations(), self._infos(np.ones(self.num_envs, dtype=bool))

    def _reset_rows(self, mask: np.ndarray, seed: int | list[int | None] | None
                    ) -> tuple[Any, dict[str, Any]]:
        """Restart the ``mask`` rows only: new puzzles and their first segment; the other
        rows sit the forward out and keep their state."""
        core, seeding = self.core, gym.utils.seeding
        source = core.source
        assert isinstance(source, RowSeededSource)
        rows = np.flatnonzero(mask)
        if seed is not None and not isinstance(seed, list):
            self._np_random, self._np_random_seed = seeding.np_random(seed)
            source.seed_shared(self._np_random)
            for row in rows:  # these rows draw from the reseeded shared stream
                self._row_rngs.pop(int(row), None)
                source.seed_row(int(row), None)
        elif isinstance(seed, list):
            for row in rows:
                if seed[row] is not None:
                    rng = self._row_rngs[int(row)] = seeding.np_random(seed[row])[0]
                    source.seed_row(int(row), rng)
        self._autoreset[mask] = False
        restart = torch.from_numpy(mask).to(core.device)
        step = core.advance(halt=restart, hold=~restart)
        with torch.inference_mode():
            self._record_rows(step, mask)
        return core.observations(), self._infos(mask)

    # step ----------------------------------------------------------------------------------
    def step(self, actions: Any) -> tuple[Any, np.ndarray, np.ndarray, np.ndarray,
                                          dict[str, Any]]:
        """One decision per row (``(num_envs,)`` of 0 = continue, 1 = halt), one batched
        segment forward; returns ``(obs, rewards, terminated, truncated, infos)``.

        Raises:
            RuntimeError: before ``reset()``; in ``DISABLED`` mode, while a row has ended
                and was not reset with ``reset_mask``.
            TypeError: a scalar action; ValueError: actions of the wrong shape or values.
        """
        if not self._started:
            raise RuntimeError("call reset() before step()")
        halt = _check_actions(actions, self.num_envs, batched=True).astype(bool)
        if self.autoreset_mode is AutoresetMode.SAME_STEP:
            return self._step_same(halt)
        if self.autoreset_mode is AutoresetMode.DISABLED and self._autoreset.any():
            raise RuntimeError(
                f"rows {np.flatnonzero(self._autoreset).tolist()} have ended their episodes "
                "and autoreset_mode is DISABLED: restart them with reset(options={'reset_mask'"
                ": terminated | truncated}) before stepping")
        return self._step_next(halt)

    def _step_same(self, halt: np.ndarray) -> tuple[Any, np.ndarray, np.ndarray, np.ndarray,
                                                    dict[str, Any]]:
        core, n = self.core, self.num_envs
        # Rows whose puzzle reached the cap without restarting (max_segments=1 right after a
        # refill) end now whatever the action.
        halt_np = halt | core.at_cap()
        rewards = step_rewards(halt_np, core.pay().cpu().numpy(), core.step_cost)
        done = halt_np.copy()
        final_obs = np.full(n, None, dtype=object)
        final_info: dict[str, np.ndarray] = {}
        if halt_np.any():
            self._put_final(final_obs, final_info, np.flatnonzero(halt_np))
        step = core.advance(torch.from_numpy(halt_np).to(core.device))
        with torch.inference_mode():
            core.record_step(step)
            restarted = step.restarted.cpu().numpy()
            if restarted.any():  # the cap: pay and show the terminal segment, then the new one
                idx = np.flatnonzero(restarted)
                rewards += core.cap_rewards(restarted)
                self._put_final(final_obs, final_info, idx)
                core.record(step.first, rows=torch.from_numpy(idx).to(core.device),
                            fresh=torch.ones(len(idx), dtype=torch.bool, device=core.device))
                done |= restarted
        infos = self._infos(np.ones(n, dtype=bool))
        if done.any():
            infos["final_obs"], infos["_final_obs"] = final_obs, done.copy()
            infos["final_info"], infos["_final_info"] = final_info, done.copy()
        return (core.observations(), rewards, done, np.zeros(n, dtype=bool), infos)

    def _step_next(self, halt: np.ndarray) -> tuple[Any, np.ndarray, np.ndarray, np.ndarray,
                                                    dict[str, Any]]:
        """``NEXT_STEP`` and ``DISABLED``: rows that end keep their terminal segment (held
        out of this step's forward); rows that ended last step (``NEXT_STEP``) restart."""
        core, n = self.core, self.num_envs
        restarting = self._autoreset.copy()  # all False under DISABLED (checked by step)
        ending = (halt | core.at_cap()) & ~restarting  # the cap ends a row whatever it chose
        rewards = step_rewards(ending, core.pay().cpu().numpy(), core.step_cost)
        rewards[restarting] = 0.0
        step = core.advance(halt=torch.from_numpy(restarting).to(core.device),
                            hold=torch.from_numpy(ending).to(core.device))
        with torch.inference_mode():
            ran = ~ending
            self._record_rows(step, ran)
            # a continuing row whose segment reached the cap ends with it
            capped = step.finished.cpu().numpy() & ran & ~restarting
            if capped.any():
                rewards += core.cap_rewards(capped)
        terminated = ending | capped
        self._autoreset = terminated.copy()
        return (core.observations(), rewards, terminated, np.zeros(n, dtype=bool),
                self._infos(np.ones(n, dtype=bool)))

    # helpers -------------------------------------------------------------------------------
    def _record_rows(self, step: SegmentStep, rows: np.ndarray) -> None:
        """``record`` the segment ``step`` ran on the ``rows`` (bool) rows only."""
        core = self.core
        if rows.all():
            core.record_step(step)
            return
        idx = np.flatnonzero(rows)
        if len(idx) == 0:
            return
        index = torch.from_numpy(idx).to(core.device)
        out = step.out.take(idx) if isinstance(step.out, TraceRows) else step.out.take(index)
        core.record(out, rows=index, fresh=step.started[index])

    def _infos(self, rows: np.ndarray) -> dict[str, Any]:
        """The rows' infos with Gymnasium's ``_key`` masks; rows outside ``rows`` report
        nothing (zeros, mask False), as after a ``reset_mask`` reset."""
        infos: dict[str, Any] = {}
        every = bool(rows.all())
        for key, value in self.core.infos().items():
            if not every:
                value = np.where(rows.reshape(-1, *[1] * (value.ndim - 1)), value,
                                 np.zeros_like(value))
            infos[key], infos["_" + key] = value, rows.copy()
        return infos

    def _put_final(self, final_obs: np.ndarray, final_info: dict, idx: np.ndarray) -> None:
        obs = self.core.observations(idx)
        for j, i in enumerate(idx):
            final_obs[i] = ({k: v[j] for k, v in obs.items()} if isinstance(obs, dict)
                            else obs[j])
        for key, value in self.core.infos(idx).items():
            if key not in final_info:
                final_info[key] = np.zeros((self.num_envs, *value.shape[1:]), dtype=value.dtype)
                final_info["_" + key] = np.zeros(self.num_envs, dtype=bool)
            final_info[key][idx] = value
            final_info["_" + key][idx] = True

    def action_masks(self) -> np.ndarray:
        """``(num_envs, 2)`` bool, the actions that mean something for each row now
        (sb3-contrib's MaskablePPO reads this): halting always; continuing unless the
        row's puzzle is at the cap (the env halts it whatever the action). Rows that restart
        on this step (``NEXT_STEP``) ignore their action: both are allowed."""
        if not self._started:
            raise RuntimeError("call reset() before action_masks()")
        masks = np.ones((self.num_envs, 2), dtype=bool)
        masks[:, 0] = ~(self.core.at_cap() & ~self._autoreset)
        return masks

    def render(self) -> tuple | None:
        """Each row's frame (``render_mode`` ``"ansi"``: text, ``"rgb_array"``: image;
        ``"human"``: the text frames printed to stdout, returning None)."""
        if self.render_mode is None:
            gym.logger.warn("render() called without a render_mode")
            return None
        if self.render_mode == "human":
            print("\n\n".join(self.core.render(i, "ansi") for i in range(self.num_envs)),
                  flush=True)
            return None
        return tuple(self.core.render(i, self.render_mode) for i in range(self.num_envs))
