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

Observation (``obs_mode``):

* ``"features"``: ``Box(9,)`` float32 = ``FEATURES`` in order: ``[q_halt, q_continue,
  segment / max_segments, mean confidence, min confidence, fraction of cells with
  confidence < 0.9, fraction of cells changed since the last segment, constraint violations /
  cells, segment]`` (confidence = max softmax probability per cell; q logits clipped to +-30;
  violations from the task's verifier, at most 4; ``segment`` is the integer number of
  segments run on this puzzle, 1 to ``max_segments``).
* ``"features+latent"`` (also ``"latent"``): ``Box(9 + hidden,)``: the features, then H's
  state at the Q-head position.
* ``"dict"``: ``{"features": Box(9,), "latent": Box(hidden,)}``.

``info``: ``prediction`` (decoded answer, e.g. digits), ``is_success`` (exactly correct),
``cell_accuracy``, ``segments`` (used so far): numpy values (``np.bool_``, ``np.float64``,
``np.int64``), the vector env's arrays with one entry per row and a ``_key`` mask beside
every key, as Gymnasium's vector envs give them.

Recorded rollouts (``rollouts=FILE``, see ``hrm_rl.envs.rollouts``): the env replays a
core's recorded segments instead of running it (no model is loaded; ``split`` is the
recording's and ``max_segments`` at most its cap), with the same observations, rewards and
infos as the live env for the same seed and actions.

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
                               resolve_checkpoint)
from hrm_rl.data import ShuffledSource
from hrm_rl.device import resolve_device
from hrm_rl.model import SegmentOutput
from hrm_rl.segment_engine import SegmentEngine, SegmentStep
from hrm_rl.tasks.base import PuzzleBatch
from hrm_rl.envs.rendering import render_rgb
from hrm_rl.envs.rollouts import RecordedSegments, Recording, ReplayEngine, load_rollouts

_Q_CLIP = 30.0
FEATURES: tuple[tuple[str, float, float | None], ...] = (
    ("q_halt", -_Q_CLIP, _Q_CLIP),
    ("q_continue", -_Q_CLIP, _Q_CLIP),
    ("segment_fraction", 0.0, 1.0),
    ("mean_confidence", 0.0, 1.0),
    ("min_confidence", 0.0, 1.0),
    ("low_confidence_fraction", 0.0, 1.0),
    ("changed_fraction", 0.0, 1.0),
    ("violations", 0.0, 4.0),
    ("segment", 1.0, None),  # None: the env's max_segments
)
"""The ``features`` observation entries in order: ``(name, low, high)``."""
FEATURE_NAMES = tuple(name for name, _, _ in FEATURES)
"""Names of the ``features`` entries, in order (policies index by name)."""
N_FEATURES = len(FEATURES)
_OBS_MODES = ("features", "features+latent", "dict")
_OBS_ALIASES = {"latent": "features+latent"}
_REWARDS = ("exact", "cell")


def segment_state(task, out: SegmentOutput, labels: torch.Tensor, segments: torch.Tensor,
                  prev_pred: torch.Tensor, first: torch.Tensor, max_segments: int,
                  hidden: int) -> dict[str, torch.Tensor]:
    """What the envs observe, pay and report after a segment, as a pure function of it.

    Args:
        task: the task (verifier, answer checks).
        out: the segment's outputs for ``n`` rows.
        labels: ``(n, seq_len)`` the rows' targets; ``segments``: ``(n,)`` segments run on
            each row's puzzle, this one included.
        prev_pred: ``(n, seq_len)`` each row's prediction after the previous segment;
            ``first``: ``(n,)`` rows whose puzzle began with this segment (nothing changed).
        max_segments, hidden: the env's cap and the core's hidden size (bounds).

    Returns:
        ``features`` ``(n, N_FEATURES)`` (``FEATURES``), ``latent`` ``(n, hidden)``,
        ``pred`` ``(n, seq_len)``, ``correct`` ``(n,)`` bool, ``cell`` ``(n,)`` and
        ``segments``.
    """
    logits = out.logits.float()
    conf, pred = logits.softmax(-1).max(-1)
    changed = (pred != prev_pred).float().mean(-1)
    changed = torch.where(first, torch.zeros_like(changed), changed)
    cells = float(task.seq_len)
    features = torch.stack([
        out.q_halt.clamp(-_Q_CLIP, _Q_CLIP), out.q_continue.clamp(-_Q_CLIP, _Q_CLIP),
        segments.float() / max_segments, conf.mean(-1), conf.min(-1).values,
        (conf < 0.9).float().mean(-1), changed,
        (task.violations(pred).float() / cells).clamp(0, 4), segments.float(),
    ], dim=-1)
    bound = math.sqrt(hidden)
    return {"features": features, "latent": out.h_state.float().clamp(-bound, bound),
            "pred": pred, "correct": task.is_correct(pred, labels),
            "cell": task.cell_accuracy(pred, labels), "segments": segments}


_SHARED: dict[tuple, Any] = {}


def _shared(kind: str, path: Path, device: torch.device, load: Callable[[], Any]) -> Any:
    """One loaded core (or recording) per file, version and device in a process. The envs
    only read it (inference), so ``n`` single envs in one process (SB3's ``make_vec_env``,
    rl-zoo3, ``SyncVectorEnv``) hold one copy of the weights, not ``n``. Keyed by the file's
    size and modification time, so a rewritten file loads afresh."""
    stat = path.stat()
    key = (kind, str(path.resolve()), stat.st_mtime_ns, stat.st_size, str(device))
    if key not in _SHARED:
        _SHARED[key] = load()
    return _SHARED[key]


class _HaltingCore:
    """Checkpoint, puzzles, engine and the observation/reward maps shared by both envs.

    The loaded core or recording is shared by every env of the process that uses the same
    file (``_shared``): do not train ``env.core.model`` in place."""

    def __init__(self, num_envs: int, checkpoint: str | Path, split: str | None,
                 max_segments: int | None, step_cost: float, reward: str, obs_mode: str,
                 device: str, rollouts: str | Path | None = None) -> None:
        obs_mode = _OBS_ALIASES.get(obs_mode, obs_mode)
        if obs_mode not in _OBS_MODES:
            raise ValueError(f"obs_mode must be one of {_OBS_MODES} (or 'latent'), "
                             f"got {obs_mode!r}")
        if reward not in _REWARDS:
            raise ValueError(f"reward must be one of {_REWARDS}, got {reward!r}")
        if not (isinstance(step_cost, (int, float)) and not isinstance(step_cost, bool)
                and 0 <= step_cost <= 1):
            raise ValueError(f"step_cost must be a number in [0, 1], got {step_cost!r}")
        if not _is_int(num_envs) or num_envs < 1:
            raise ValueError(f"num_envs must be an int >= 1, got {num_envs!r}")
        if split is not None and not isinstance(split, (str, Path)):
            raise ValueError(f"split must be 'train', 'val', 'test' or a CSV path, got {split!r}")
        self.recording: Recording | None = None
        if rollouts is not None:  # replay: no model, the recording's task and puzzles
            self.device = torch.device("cpu")
            path = Path(rollouts)
            rec = self.recording = (_shared("rollouts", path, self.device,
                                            lambda: load_rollouts(path))
                                    if path.is_file() else load_rollouts(path))
            if split is not None and str(split) != rec.identity["split"]:
                raise ValueError(f"{rec.path} was recorded on split {rec.identity['split']!r}, "
                                 f"not {str(split)!r}; leave split unset with rollouts=")
            expected = read_checkpoint_config(resolve_checkpoint(checkpoint))[0].task.name
            if rec.config.task.name != expected:
                raise ValueError(f"{rec.path} records a {rec.config.task.name} core; this env "
                                 f"is for {expected} (checkpoint {checkpoint})")
            if obs_mode != "features" and "latent" not in rec.arrays:
                raise ValueError(f"obs_mode={obs_mode!r} needs latents; {rec.path} was "
                                 "recorded without them (hrm-rl rollouts record --latent)")
            self.task, self.model, self.puzzles = rec.task, None, rec.puzzles
            self.split, self.hidden, cap = rec.identity["split"], rec.hidden, rec.max_segments
            default_max = cap
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
        if self.recording is not None and self.max_segments > cap:
            raise ValueError(f"max_segments={max_segments} exceeds the {cap} segments "
                             f"recorded in {self.recording.path}")
        self.step_cost, self.reward, self.obs_mode = float(step_cost), reward, obs_mode
        self.num_envs = num_envs
        self.engine: SegmentEngine | ReplayEngine | None = None  # built by reset(), seeded there
        self.prev_pred = torch.zeros(num_envs, self.task.seq_len, dtype=torch.long,
                                     device=self.device)
        self.last: dict[str, torch.Tensor] = {}

    def _new_engine(self, source: ShuffledSource | RowSeededSource, restart_at_cap: bool
                    ) -> SegmentEngine | ReplayEngine:
        """The episode's engine over ``source``: the cap is its, and the vector env in
        same-step mode restarts rows at the cap in the same step; a policy's halt is the
        ``halt`` mask, an episode that ended without a restart is held (``hold``)."""
        if self.recording is not None:
            return ReplayEngine(self.recording, source, self.num_envs, self.max_segments,
                                restart_at_cap)
        return SegmentEngine(self.model, source, self.num_envs, self.device,
                             max_segments=self.max_segments, restart_at_cap=restart_at_cap)

    def record_step(self, step: SegmentStep) -> None:
        """``record`` every row of ``step`` (the restarted rows' terminal segments first;
        read what they pay and show before calling this if needed)."""
        self.record(step.out, fresh=step.started, labels=step.labels, segments=step.segments)

    # spaces ------------------------------------------------------------------------
    def observation_space(self) -> spaces.Space:
        low = np.array([lo for _, lo, _ in FEATURES], dtype=np.float32)
        high = np.array([self.max_segments if hi is None else hi for _, _, hi in FEATURES],
                        dtype=np.float32)
        features = spaces.Box(low, high, dtype=np.float32)
        bound = math.sqrt(self.hidden) * 1.001
        latent = spaces.Box(-bound, bound, (self.hidden,), dtype=np.float32)
        if self.obs_mode == "features":
            return features
        if self.obs_mode == "features+latent":
            return spaces.Box(np.concatenate([low, latent.low]),
                              np.concatenate([high, latent.high]), dtype=np.float32)
        return spaces.Dict({"features": features, "latent": latent})

    # per-segment bookkeeping -------------------------------------------------------------
    def record(self, out: SegmentOutput | RecordedSegments, rows: torch.Tensor | None = None,
               fresh: torch.Tensor | None = None, labels: torch.Tensor | None = None,
               segments: torch.Tensor | None = None) -> None:
        """Turn a segment's outputs into the state behind observations, rewards and infos.

        ``rows`` limits the update to those row indices (``out`` then has those rows only);
        ``fresh`` marks rows whose puzzle just started (nothing "changed" on a first segment).
        ``labels`` and ``segments`` (all rows) stand in for the engine's when some rows have
        moved on to a new puzzle since ``out`` was computed.
        """
        if labels is None:
            labels = self.engine.labels if rows is None else self.engine.labels[rows]
        if segments is None:
            segments = self.engine.segments if rows is None else self.engine.segments[rows]
        prev = self.prev_pred if rows is None else self.prev_pred[rows]
        first = segments == 1 if fresh is None else fresh
        if isinstance(out, RecordedSegments):
            state = out.state(segments, self.max_segments)
        else:
            state = segment_state(self.task, out, labels, segments, prev, first,
                                  self.max_segments, self.hidden)
        if rows is None:
            self.last = state
            self.prev_pred = state["pred"]
        else:
            for key, value in state.items():
                self.last[key] = self.last[key].index_put((rows,), value)
            self.prev_pred = self.prev_pred.index_put((rows,), state["pred"])

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

    def observations(self, index: np.ndarray | slice = slice(None)) -> Any:
        self._require_reset()
        feats = self.last["features"][index].cpu().numpy().copy()  # fresh arrays every call
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

    def __init__(self, checkpoint: str | Path = "sudoku4", split: str | None = None,
                 max_segments: int | None = None, step_cost: float = 0.01,
                 reward: str = "exact", obs_mode: str = "features", device: str = "cpu",
                 render_mode: str | None = None, rollouts: str | Path | None = None) -> None:
        if render_mode is not None and render_mode not in self.metadata["render_modes"]:
            raise ValueError(f"render_mode must be one of {self.metadata['render_modes']} or "
                             f"None, got {render_mode!r}")
        self.core = _HaltingCore(1, checkpoint, split, max_segments, step_cost, reward,
                                 obs_mode, device, rollouts)
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
        self.core.engine = self.core._new_engine(ShuffledSource(self.core.puzzles,
                                                                self.np_random),
                                                 restart_at_cap=False)
        with torch.inference_mode():
            self._last_step = self.core.engine.step()
            self.core.record_step(self._last_step)
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
        reward = -core.step_cost
        if not halt:
            with torch.inference_mode():
                self._last_step = core.engine.step()
                core.record_step(self._last_step)
            halt = bool(self._last_step.finished[0])  # the cap
            if halt:
                reward -= core.step_cost
        if halt:
            reward += float(core.pay()[0])
            self._done = True
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

    def __init__(self, num_envs: int = 1, checkpoint: str | Path = "sudoku4",
                 split: str | None = None, max_segments: int | None = None,
                 step_cost: float = 0.01, reward: str = "exact", obs_mode: str = "features",
                 device: str = "cpu", render_mode: str | None = None,
                 rollouts: str | Path | None = None,
                 autoreset_mode: AutoresetMode | str = AutoresetMode.SAME_STEP) -> None:
        if render_mode is not None and render_mode not in self.metadata["render_modes"]:
            raise ValueError(f"render_mode must be one of {self.metadata['render_modes']} or "
                             f"None, got {render_mode!r}")
        self.autoreset_mode = parse_autoreset_mode(autoreset_mode)
        self.metadata = {**type(self).metadata, "autoreset_mode": self.autoreset_mode}
        self.core = _HaltingCore(num_envs, checkpoint, split, max_segments, step_cost, reward,
                                 obs_mode, device, rollouts)
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
        core.engine = core._new_engine(
            source, restart_at_cap=self.autoreset_mode is AutoresetMode.SAME_STEP)
        with torch.inference_mode():
            core.record_step(core.engine.step())
        self._started = True
        self._autoreset[:] = False
        return core.observations(), self._infos(np.ones(self.num_envs, dtype=bool))

    def _reset_rows(self, mask: np.ndarray, seed: int | list[int | None] | None
                    ) -> tuple[Any, dict[str, Any]]:
        """Restart the ``mask`` rows only: new puzzles and their first segment; the other
        rows sit the forward out and keep their state."""
        core, seeding = self.core, gym.utils.seeding
        source: RowSeededSource = core.engine.source
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
        with torch.inference_mode():
            step = core.engine.step(halt=restart, hold=~restart)
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
        with torch.inference_mode():
            step = core.engine.step(torch.from_numpy(halt_np).to(core.device))
            core.record_step(step)
            restarted = step.restarted.cpu().numpy()
            if restarted.any():  # the cap: pay and show the terminal segment, then the new one
                idx = np.flatnonzero(restarted)
                rewards += step_rewards(restarted, core.pay().cpu().numpy(), core.step_cost,
                                        charge=False) - restarted * core.step_cost
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
        with torch.inference_mode():
            step = core.engine.step(halt=torch.from_numpy(restarting).to(core.device),
                                    hold=torch.from_numpy(ending).to(core.device))
            ran = ~ending
            self._record_rows(step, ran)
            # a continuing row whose segment reached the cap ends with it
            capped = step.finished.cpu().numpy() & ran & ~restarting
            if capped.any():
                rewards += step_rewards(capped, core.pay().cpu().numpy(), core.step_cost,
                                        charge=False) - capped * core.step_cost
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
        out = step.out.take(idx) if isinstance(step.out, RecordedSegments) else step.out.take(index)
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
