"""The halting MDP: one HRM segment per step; the action is continue or halt.

``HaltingEnv`` is one puzzle per episode; ``HaltingVectorEnv`` runs ``num_envs`` puzzles on
the segment engine with one batched forward per step and same-step autoreset. Both share
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
``cell_accuracy``, ``segments`` (used so far).

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
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import torch
from gymnasium import spaces
from gymnasium.vector import AutoresetMode, VectorEnv

from hrm_rl.checkpoint import load_checkpoint, read_checkpoint_config, resolve_checkpoint
from hrm_rl.data import ShuffledSource
from hrm_rl.device import resolve_device
from hrm_rl.model import SegmentOutput
from hrm_rl.segment_engine import SegmentEngine, SegmentStep
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


class _HaltingCore:
    """Checkpoint, puzzles, engine and the observation/reward maps shared by both envs."""

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
            rec = self.recording = load_rollouts(rollouts)
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
            ckpt = load_checkpoint(checkpoint, self.device)
            self.task, self.model = ckpt.task, ckpt.model
            default_max = cap = ckpt.config.train.halt_max_steps
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

    def _new_engine(self, rng: np.random.Generator, restart_at_cap: bool
                    ) -> SegmentEngine | ReplayEngine:
        """The episode's engine: the cap is its, and the vector env restarts rows at the
        cap in the same step (same-step autoreset); a policy's halt is the ``halt`` mask."""
        source = ShuffledSource(self.puzzles, rng)
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

    def pay(self) -> torch.Tensor:
        """``(n,)`` what halting now would pay (before step costs)."""
        return self.last["correct"].float() if self.reward == "exact" else self.last["cell"]

    def observations(self, index: np.ndarray | slice = slice(None)) -> Any:
        feats = self.last["features"][index].cpu().numpy().copy()  # fresh arrays every call
        if self.obs_mode == "features":
            return feats
        latent = self.last["latent"][index].cpu().numpy().copy()
        if self.obs_mode == "features+latent":
            return np.concatenate([feats, latent], axis=-1)
        return {"features": feats, "latent": latent}

    def infos(self, index: np.ndarray | slice = slice(None)) -> dict[str, np.ndarray]:
        return {
            "prediction": self.task.decode(self.last["pred"][index]),
            "is_success": self.last["correct"][index].cpu().numpy().copy(),
            "cell_accuracy": self.last["cell"][index].cpu().numpy().astype(np.float64),
            "segments": self.last["segments"][index].cpu().numpy().copy(),
        }

    def render(self, row: int, mode: str) -> str | np.ndarray:
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


def _is_int(value: Any) -> bool:
    """An integer (Python or numpy), but not a bool."""
    return isinstance(value, (int, np.integer)) and not isinstance(value, (bool, np.bool_))


def _check_actions(actions: Any, n: int) -> np.ndarray:
    """``actions`` as ``(n,)`` int64 in {0, 1}, or a ValueError saying what was wrong."""
    try:
        a = np.asarray(actions)
    except (TypeError, ValueError, OverflowError):  # ragged nesting, odd objects
        a = np.asarray(None)
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
    metadata = {"render_modes": ["ansi", "rgb_array"], "render_fps": 2}

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
        info = self.core.infos(0)
        return {"prediction": info["prediction"], "is_success": bool(info["is_success"]),
                "cell_accuracy": float(info["cell_accuracy"]), "segments": int(info["segments"])}

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        super().reset(seed=seed)
        self.core.engine = self.core._new_engine(self.np_random, restart_at_cap=False)
        with torch.inference_mode():
            self._last_step = self.core.engine.step()
            self.core.record_step(self._last_step)
        self._done = False
        return self._obs(), self._info()

    def step(self, action: Any):
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
            gym.logger.warn("render() called without a render_mode; pass render_mode='ansi' "
                            "or 'rgb_array' to gym.make")
            return None
        return self.core.render(0, self.render_mode)


HaltingEnv.__doc__ = "One puzzle per episode, one HRM segment per step.\n" + __doc__


class HaltingVectorEnv(VectorEnv):
    """``num_envs`` halting episodes with one batched segment forward per step.

    Same-step autoreset: a row that ends its episode returns the first observation of its
    next puzzle, with the terminal observation and info in ``infos["final_obs"]`` and
    ``infos["final_info"]`` (masks ``_final_obs``/``_final_info``). See ``HaltingEnv`` for
    the observation layout and reward.
    """

    metadata = {"render_modes": ["ansi", "rgb_array"], "render_fps": 2,
                "autoreset_mode": AutoresetMode.SAME_STEP}

    def __init__(self, num_envs: int = 1, checkpoint: str | Path = "sudoku4",
                 split: str | None = None, max_segments: int | None = None,
                 step_cost: float = 0.01, reward: str = "exact", obs_mode: str = "features",
                 device: str = "cpu", render_mode: str | None = None,
                 rollouts: str | Path | None = None) -> None:
        if render_mode is not None and render_mode not in self.metadata["render_modes"]:
            raise ValueError(f"render_mode must be one of {self.metadata['render_modes']} or "
                             f"None, got {render_mode!r}")
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
        self._started = False

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        if seed is not None or self._np_random is None:  # np_random_seed reads the seed back
            self._np_random, self._np_random_seed = gym.utils.seeding.np_random(seed)
        self.core.engine = self.core._new_engine(self._np_random, restart_at_cap=True)
        with torch.inference_mode():
            self._last_step = self.core.engine.step()
            self.core.record_step(self._last_step)
        self._started = True
        return self.core.observations(), self.core.infos()

    def step(self, actions: Any):
        if not self._started:
            raise RuntimeError("call reset() before step()")
        core, n = self.core, self.num_envs
        # Rows whose puzzle reached the cap without restarting (max_segments=1 right after a
        # refill) end now whatever the action.
        forced = (self._last_step.finished & ~self._last_step.restarted).cpu().numpy()
        halt_np = _check_actions(actions, n).astype(bool) | forced
        rewards = step_rewards(halt_np, core.pay().cpu().numpy(), core.step_cost)
        done = halt_np.copy()
        final_obs = np.full(n, None, dtype=object)
        final_info: dict[str, np.ndarray] = {}
        if halt_np.any():
            self._put_final(final_obs, final_info, np.flatnonzero(halt_np))
        with torch.inference_mode():
            step = core.engine.step(torch.from_numpy(halt_np).to(core.device))
            self._last_step = step
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
        infos: dict[str, Any] = core.infos()
        if done.any():
            infos["final_obs"], infos["_final_obs"] = final_obs, done.copy()
            infos["final_info"], infos["_final_info"] = final_info, done.copy()
        return (core.observations(), rewards, done, np.zeros(n, dtype=bool), infos)

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

    def render(self) -> tuple | None:
        if self.render_mode is None:
            gym.logger.warn("render() called without a render_mode")
            return None
        return tuple(self.core.render(i, self.render_mode) for i in range(self.num_envs))
