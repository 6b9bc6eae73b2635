"""Stable-Baselines3 face of the halting envs: a ``VecEnv`` and a TensorBoard callback.

``HaltingSB3VecEnv`` puts SB3's ``VecEnv`` API directly on the batched
``HaltingVectorEnv`` (one model forward per step for all rows; no per-env Python envs)::

    from stable_baselines3 import PPO
    from hrm_rl.agents.sb3 import make_sb3_vec_env, HaltingMetricsCallback

    venv = make_sb3_vec_env("HRM-Sudoku-v0", num_envs=256, step_cost=0.01)
    model = PPO("MlpPolicy", venv, tensorboard_log="runs/halt")
    model.learn(100_000, callback=HaltingMetricsCallback())

SB3 conventions it follows: ``terminal_observation`` and ``TimeLimit.truncated`` in the
info of every row whose episode ended (the returned observation is already the next
puzzle's), ``is_success`` there too so SB3 logs ``rollout/success_rate``, ``reset_infos``,
``seed``. Infos are sparse: rows whose episode did not end get an empty dict.

``get_attr``/``env_method`` reach the one underlying env and give one entry per selected
index: per-row values (arrays or tensors with one row per env, tuples of one entry per
env, dicts of those) are cut to that index's row, shared values are repeated.
``action_masks()`` (and ``env_method("action_masks")``) gives the ``(num_envs, 2)`` masks
sb3-contrib's ``MaskablePPO`` asks for.

``train_halting_policy`` trains PPO/A2C/DQN on the batched env, observations normalized
(``VecNormalize``, statistics saved beside the model), scored periodically on a val trace
(``ValTraceCallback``: ``val/*`` tags, ``best_model.zip``); ``train_and_compare`` is
``hrm-rl halt train`` as a function: that, then the trained policy against the Q-head and
the best fixed k on the val trace (``compare_on_val``; ``record_val_trace`` records one).
"""

from __future__ import annotations

import json
import math
import os
import time
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import torch
from stable_baselines3.common.callbacks import BaseCallback
from stable_baselines3.common.vec_env import VecEnv
from stable_baselines3.common.vec_env.base_vec_env import VecEnvIndices, VecEnvStepReturn
from gymnasium.vector import AutoresetMode

from hrm_rl.checkpoint import atomic_write, atomic_write_text
from hrm_rl.envs.halting import HaltingVectorEnv
from hrm_rl.trace import DEFAULT_TRACK, Score, Trace, predict_halts, score

_EPISODE_KEYS = ("is_success", "segments", "cell_accuracy")


class HaltingSB3VecEnv(VecEnv):
    """SB3 ``VecEnv`` over one ``HaltingVectorEnv`` (all rows share one model forward).

    Args:
        env: the batched halting env (e.g. from ``gym.make_vec(..., num_envs=N)``), in
            same-step autoreset mode (SB3's ``VecEnv`` contract).

    Attribute access (``get_attr``/``set_attr``/``env_method``) reaches the one underlying
    env: per-row values are cut to each selected row, shared ones repeated; ``set_attr`` on
    a subset of rows is refused for shared settings and writes those rows of per-row arrays.
    """

    def __init__(self, env: HaltingVectorEnv) -> None:
        env = env.unwrapped if hasattr(env, "unwrapped") else env
        if not isinstance(env, HaltingVectorEnv):
            raise TypeError(f"HaltingSB3VecEnv wraps a HaltingVectorEnv, got {type(env).__name__}")
        if env.autoreset_mode is not AutoresetMode.SAME_STEP:
            raise ValueError("SB3's VecEnv resets rows in the step that ends them: build the "
                             "env with autoreset_mode=AutoresetMode.SAME_STEP (the default), "
                             f"not {env.autoreset_mode}")
        self.venv = env
        super().__init__(env.num_envs, env.single_observation_space, env.single_action_space)
        self._actions: np.ndarray | None = None
        self._is_dict = isinstance(self.observation_space, gym.spaces.Dict)

    # core API --------------------------------------------------------------------------
    def reset(self) -> Any:
        """Reset every row; the seed from ``seed()`` (its first entry) applies once."""
        seed = self._seeds[0]
        if any(self._options):
            raise ValueError("the batched halting env takes no per-env reset options through "
                             f"SB3; got {self._options[0]!r}")
        obs, infos = self.venv.reset(seed=seed)
        self._reset_seeds()
        self._reset_options()
        self.reset_infos = [{key: _item(infos[key][i]) for key in _EPISODE_KEYS}
                            for i in range(self.num_envs)]
        return obs

    def step_async(self, actions: np.ndarray) -> None:
        self._actions = np.asarray(actions)

    def step_wait(self) -> VecEnvStepReturn:
        if self._actions is None:
            raise RuntimeError("step_wait() called without step_async()")
        actions, self._actions = self._actions, None
        if actions.ndim == 2 and actions.shape[1] == 1:  # some SB3 paths add a trailing axis
            actions = actions[:, 0]
        obs, rewards, terminated, truncated, infos = self.venv.step(actions)
        dones = terminated | truncated
        out_infos: list[dict[str, Any]] = [{} for _ in range(self.num_envs)]
        if dones.any():
            final_obs, final_info = infos["final_obs"], infos["final_info"]
            for i in np.flatnonzero(dones):
                info = out_infos[i]
                info["terminal_observation"] = final_obs[i]
                info["TimeLimit.truncated"] = bool(truncated[i] and not terminated[i])
                for key in _EPISODE_KEYS:
                    info[key] = _item(final_info[key][i])
                self.reset_infos[i] = {key: _item(infos[key][i]) for key in _EPISODE_KEYS}
        return obs, rewards.astype(np.float32), dones, out_infos

    def close(self) -> None:
        self.venv.close()

    # attribute plumbing ------------------------------------------------------------------
    def _lookup(self, name: str) -> Any:
        for owner in (self.venv, self.venv.core):
            if hasattr(owner, name):
                return getattr(owner, name)
        raise AttributeError(f"the halting env has no attribute {name!r}")

    def get_attr(self, attr_name: str, indices: VecEnvIndices = None) -> list[Any]:
        """The attribute for each of ``indices``: its row of a per-row value, else the
        value itself."""
        value = self._lookup(attr_name)
        return [_row(value, i, self.num_envs) for i in self._get_indices(indices)]

    def set_attr(self, attr_name: str, value: Any, indices: VecEnvIndices = None) -> None:
        """Set the ``indices`` rows of a per-row array attribute to ``value``, or a shared
        setting (``step_cost``, ...: all rows only)."""
        rows = list(self._get_indices(indices))
        owner = self.venv.core if hasattr(self.venv.core, attr_name) else self.venv
        current = getattr(owner, attr_name, None)
        if isinstance(current, (np.ndarray, torch.Tensor)) and _per_row(current, self.num_envs):
            updated = current.clone() if isinstance(current, torch.Tensor) else current.copy()
            updated[rows] = (torch.as_tensor(value, dtype=updated.dtype, device=updated.device)
                             if isinstance(updated, torch.Tensor) else value)
            setattr(owner, attr_name, updated)
            return
        if sorted(set(rows)) != list(range(self.num_envs)):
            raise ValueError(f"{attr_name!r} is one setting shared by the halting env's rows; "
                             "set_attr applies to all rows only")
        setattr(owner, attr_name, value)

    def env_method(self, method_name: str, *method_args, indices: VecEnvIndices = None,
                   **method_kwargs) -> list[Any]:
        """Call the method once on the batched env; one result per index (its row of a
        per-row result, e.g. ``env_method("action_masks", indices=[1])`` is ``[masks[1]]``)."""
        result = self._lookup(method_name)(*method_args, **method_kwargs)
        return [_row(result, i, self.num_envs) for i in self._get_indices(indices)]

    def action_masks(self) -> np.ndarray:
        """``(num_envs, 2)`` bool: the actions that mean something for each row now
        (``HaltingVectorEnv.action_masks``), for sb3-contrib's ``MaskablePPO``."""
        return self.venv.action_masks()

    def env_is_wrapped(self, wrapper_class: type[gym.Wrapper],
                       indices: VecEnvIndices = None) -> list[bool]:
        """One ``False`` per row: the rows are not separate Gymnasium envs with wrappers."""
        return [False for _ in self._get_indices(indices)]

    def get_images(self) -> Sequence[np.ndarray | None]:
        if self.venv.render_mode != "rgb_array":
            return [None] * self.num_envs
        return list(self.venv.render())


def _per_row(value: Any, n: int) -> bool:
    """Whether ``value`` holds one entry per env row (arrays/tensors with ``n`` rows,
    tuples of ``n`` entries, non-empty dicts of such values)."""
    if isinstance(value, (np.ndarray, torch.Tensor)):
        return value.ndim >= 1 and value.shape[0] == n
    if isinstance(value, tuple):
        return len(value) == n
    if isinstance(value, dict):
        return bool(value) and all(_per_row(v, n) for v in value.values())
    return False


def _row(value: Any, i: int, n: int) -> Any:
    """Row ``i`` of a per-row ``value`` (see ``_per_row``), else ``value`` itself."""
    if not _per_row(value, n):
        return value
    if isinstance(value, dict):
        return {key: _row(v, i, n) for key, v in value.items()}
    return value[i]


def _item(value: Any) -> Any:
    return value.item() if isinstance(value, np.generic) else value


def make_sb3_vec_env(env_id: str = "HRM-Sudoku-v0", num_envs: int = 256,
                     **env_kwargs: Any) -> HaltingSB3VecEnv:
    """``gym.make_vec(env_id, num_envs, vector_entry_point)`` wrapped for SB3.

    ``env_kwargs`` go to the env (``checkpoint``, ``step_cost``, ``max_segments``,
    ``reward``, ``obs_mode``, ``device``, ...).
    """
    import hrm_rl  # noqa: F401  (registers the envs)

    venv = gym.make_vec(env_id, num_envs=num_envs, vectorization_mode="vector_entry_point",
                        **env_kwargs)
    return HaltingSB3VecEnv(venv)


class HaltingMetricsCallback(BaseCallback):
    """Logs halting metrics of finished episodes to SB3's logger (TensorBoard included).

    Tags, over the last ``window`` finished episodes, written whenever SB3 dumps its logs:
    ``halt/accuracy`` (exactly right on halting), ``halt/mean_segments``, ``halt/reward``
    (episode return), ``halt/cell_accuracy``, and the histogram ``halt/segments``
    (TensorBoard only).
    """

    def __init__(self, window: int = 2000, verbose: int = 0) -> None:
        super().__init__(verbose)
        self.window = window
        self.success: deque[float] = deque(maxlen=window)
        self.segments: deque[int] = deque(maxlen=window)
        self.returns: deque[float] = deque(maxlen=window)
        self.cells: deque[float] = deque(maxlen=window)
        self._running: np.ndarray | None = None

    def _on_training_start(self) -> None:
        self._running = np.zeros(self.training_env.num_envs)

    def _on_step(self) -> bool:
        rewards = np.asarray(self.locals["rewards"], dtype=np.float64).reshape(-1)
        dones = np.asarray(self.locals["dones"], dtype=bool).reshape(-1)
        infos = self.locals["infos"]
        self._running += rewards
        for i in np.flatnonzero(dones):
            info = infos[i]
            if "segments" in info:
                self.success.append(float(info["is_success"]))
                self.segments.append(int(info["segments"]))
                self.cells.append(float(info["cell_accuracy"]))
                self.returns.append(float(self._running[i]))
            self._running[i] = 0.0
        return True

    def _on_rollout_end(self) -> None:
        if not self.segments:
            return
        self.logger.record("halt/accuracy", float(np.mean(self.success)))
        self.logger.record("halt/mean_segments", float(np.mean(self.segments)))
        self.logger.record("halt/reward", float(np.mean(self.returns)))
        self.logger.record("halt/cell_accuracy", float(np.mean(self.cells)))
        self.logger.record("halt/segments", torch.tensor(list(self.segments), dtype=torch.float32),
                           exclude=("stdout", "log", "json", "csv"))


ALGO_DEFAULTS: dict[str, dict[str, Any]] = {
    # Rollouts of num_envs x n_steps; episodes last a few steps, so short rollouts suffice.
    "ppo": {"n_steps": 16, "batch_size": 1024, "n_epochs": 4, "learning_rate": 1e-3,
            "gamma": 1.0, "gae_lambda": 0.95, "ent_coef": 0.0},
    "a2c": {"n_steps": 8, "learning_rate": 1e-3, "gamma": 1.0},
    "dqn": {"learning_starts": 2000, "buffer_size": 200_000, "batch_size": 256,
            "train_freq": 1, "gradient_steps": 4, "target_update_interval": 500,
            "exploration_fraction": 0.3, "learning_rate": 5e-4, "gamma": 1.0},
}
"""Each algorithm's constructor options unless given (``algo_kwargs`` override them)."""


class ValTraceCallback(BaseCallback):
    """Scores the policy being trained on a val trace every ``eval_every`` env steps (at the
    first rollout boundary after each multiple, once the algorithm has updated on those
    steps) and when training ends: ``predict_halts`` + ``score``, as ``hrm-rl halt eval``
    would, with the training env's current observation normalization. Logs ``val/reward``,
    ``val/accuracy`` and ``val/mean_segments``; saves the best model so far (by val reward)
    to ``best_path`` with its normalization statistics beside it (``normalization_path``).

    Args:
        trace: the val trace (at least ``cap`` segments).
        eval_every: env steps (all rows summed) between evaluations.
        step_cost, reward, track, obs_mode, cap: the training env's settings.
        best_path: where the best model goes (None: not saved).

    Attributes:
        history: one dict per evaluation (``timesteps``, ``reward``, ``accuracy``,
            ``mean_segments``); best: the best ``Score`` so far.
    """

    def __init__(self, trace: Trace, eval_every: int, step_cost: float, reward: str = "exact",
                 track: str = DEFAULT_TRACK, obs_mode: str = "features", cap: int | None = None,
                 best_path: str | Path | None = None, verbose: int = 0) -> None:
        super().__init__(verbose)
        if eval_every < 1:
            raise ValueError(f"eval_every must be >= 1, got {eval_every}")
        self.trace, self.eval_every = trace, int(eval_every)
        self.step_cost, self.reward, self.track, self.obs_mode = step_cost, reward, track, obs_mode
        self.cap = trace.max_segments if cap is None else cap
        self.best_path = None if best_path is None else Path(best_path)
        self.history: list[dict[str, float]] = []
        self.best: Score | None = None
        self._next = self.eval_every
        self._last = -1

    def _on_step(self) -> bool:
        return True

    def _on_rollout_start(self) -> None:
        # between rollouts: the policy has had its update from the steps collected so far
        if self.num_timesteps >= self._next:
            self._next = (self.num_timesteps // self.eval_every + 1) * self.eval_every
            self.evaluate_now()

    def _on_training_end(self) -> None:
        if self.num_timesteps != self._last:
            self.evaluate_now()

    def evaluate_now(self) -> Score:
        """Score the current policy on the trace, log it, keep it if best."""
        from hrm_rl.agents.policies import NormalizedPolicy, normalization_path

        vec_normalize = self.model.get_vec_normalize_env()
        policy = (self.model if vec_normalize is None
                  else NormalizedPolicy(self.model, vec_normalize))
        halt_at = predict_halts(policy, self.trace, self.track, self.obs_mode, self.cap,
                                deterministic=True, name="the policy in training")
        result = score(self.trace, halt_at, self.step_cost, "val", self.reward)
        self._last = self.num_timesteps
        self.history.append({"timesteps": int(self.num_timesteps), "reward": result.reward,
                             "accuracy": result.accuracy,
                             "mean_segments": result.mean_segments})
        self.logger.record("val/reward", result.reward)
        self.logger.record("val/accuracy", result.accuracy)
        self.logger.record("val/mean_segments", result.mean_segments)
        self.logger.dump(self.num_timesteps)
        if self.best is None or result.reward > self.best.reward:
            self.best = result
            if self.best_path is not None:
                atomic_write(self.best_path, self.model.save)
                if vec_normalize is not None:
                    atomic_write(normalization_path(self.best_path), vec_normalize.save)
        return result


def default_run_dir(base: str | Path, algo: str) -> Path:
    """``base/halt-<algo>-<timestamp>-<pid>``: a fresh run folder name."""
    return Path(base) / f"halt-{algo}-{datetime.now().strftime('%Y%m%d-%H%M%S')}-{os.getpid()}"


def _env_setting(venv: HaltingSB3VecEnv, name: str, default: Any) -> Any:
    try:
        return venv.get_attr(name, indices=[0])[0]
    except AttributeError:
        return default


def train_halting_policy(env_id: str = "HRM-Sudoku-v0", algo: str = "ppo",
                         timesteps: int = 200_000, num_envs: int = 256,
                         env_kwargs: dict[str, Any] | None = None,
                         algo_kwargs: dict[str, Any] | None = None, seed: int = 0,
                         run_dir: str | Path | None = None, normalize: bool = True,
                         val_trace: Trace | None = None, eval_every: int = 10_000,
                         progress: bool = True, threads: int | None = None
                         ) -> tuple[Any, dict[str, Any]]:
    """Train an SB3 policy (``ppo``, ``a2c`` or ``dqn``) on the batched halting env.

    Args:
        env_id, num_envs, env_kwargs: the env (``gym.make_vec`` options: ``checkpoint``,
            ``split``, ``step_cost``, ``track``, ``obs_mode``, ``rollouts``, ...).
        algo, algo_kwargs: the algorithm and its constructor options (over
            ``ALGO_DEFAULTS``); timesteps: env steps, all rows summed; seed: SB3's seed.
        run_dir: the output folder (default ``runs/halt-<algo>-<timestamp>-<pid>``); it must
            not hold a ``model.zip`` yet, and is locked while training (``RunLock``).
        normalize: wrap the env in ``VecNormalize(norm_obs=True, norm_reward=False)`` and
            save its statistics as ``vecnormalize.pkl`` beside ``model.zip``
            (``load_sb3_model`` applies them).
        val_trace: score the policy on it every ``eval_every`` steps and at the end
            (``ValTraceCallback``: ``val/*`` tags, ``best_model.zip``); None: no val
            evaluation. It must hold at least the env's cap of segments.
        progress: SB3's progress bar; threads: torch CPU threads.

    Returns:
        The policy to score, ready for ``predict_halts`` (its observation normalization
        applied: ``load_sb3_model`` of the saved file): the best model on val when
        ``val_trace`` is given, else the final one; and ``info``: ``run_dir``, ``model``
        (the final model's path), ``best_model`` (or None), ``policy`` (which of the two
        was returned: ``best_model`` or ``model``), ``normalize``, ``train_seconds``,
        ``timesteps``, ``val`` (the evaluations), the env's ``step_cost``/``reward``/
        ``track``/``obs_mode``/``max_segments``.

    Raises:
        ValueError: bad options (the message names them); RunLockedError: the folder is
            in use.
    """
    import stable_baselines3 as sb3
    from stable_baselines3.common.callbacks import CallbackList
    from stable_baselines3.common.vec_env import VecMonitor, VecNormalize

    from hrm_rl.run_dir import RunLock

    if algo not in ALGO_DEFAULTS:
        raise ValueError(f"algo must be one of {tuple(ALGO_DEFAULTS)}, got {algo!r}")
    if not isinstance(timesteps, (int, np.integer)) or timesteps < 1:
        raise ValueError(f"timesteps must be an int >= 1, got {timesteps!r}")
    if not isinstance(eval_every, (int, np.integer)) or eval_every < 1:
        raise ValueError(f"eval_every must be an int >= 1, got {eval_every!r}")
    env_kwargs = dict(env_kwargs or {})
    algo_kwargs = {**ALGO_DEFAULTS[algo], **(algo_kwargs or {})}
    for key, value in algo_kwargs.items():
        if isinstance(value, float) and not math.isfinite(value):
            raise ValueError(f"algo_kwargs: {key}={value} is not a finite number")
    if threads:
        torch.set_num_threads(threads)
    run_dir = default_run_dir("runs", algo) if run_dir is None else Path(run_dir)
    lock = RunLock(run_dir)  # one live training per folder
    try:
        if (run_dir / "model.zip").exists():
            raise ValueError(f"{run_dir} already holds a trained model.zip; choose another "
                             "run folder (or move it away)")
        base = make_sb3_vec_env(env_id, num_envs, **env_kwargs)
        settings = {"step_cost": float(_env_setting(base, "step_cost", 0.01)),
                    "reward": _env_setting(base, "reward", "exact"),
                    "track": _env_setting(base, "track",
                                          env_kwargs.get("track", DEFAULT_TRACK)),
                    "obs_mode": _env_setting(base, "obs_mode", "features"),
                    "max_segments": int(_env_setting(base, "max_segments", 0))}
        if val_trace is not None:
            if val_trace.max_segments < settings["max_segments"]:
                raise ValueError(f"the val trace holds {val_trace.max_segments} segments, the "
                                 f"env's cap is {settings['max_segments']}")
            if settings["obs_mode"] != "features" and val_trace.latent is None:
                raise ValueError(f"obs_mode={settings['obs_mode']!r} needs latents; the val "
                                 "trace has none (record it with latents)")
        venv: Any = VecMonitor(base)
        venv.seed(seed)
        if normalize:
            venv = VecNormalize(venv, norm_obs=True, norm_reward=False)
        policy = ("MultiInputPolicy" if isinstance(venv.observation_space, gym.spaces.Dict)
                  else "MlpPolicy")
        try:
            model = getattr(sb3, algo.upper())(policy, venv, seed=seed, verbose=0, device="cpu",
                                               tensorboard_log=str(run_dir), **algo_kwargs)
        except (AssertionError, TypeError, ValueError) as err:  # SB3's checks of its options
            shown = ",".join(f"{k}={v}" for k, v in algo_kwargs.items())
            raise ValueError(f"algo_kwargs {shown}: {algo} refuses the options: {err}"
                             ) from None
        callbacks: list[BaseCallback] = [HaltingMetricsCallback()]
        val_cb = None
        if val_trace is not None:
            val_cb = ValTraceCallback(val_trace, eval_every, settings["step_cost"],
                                      settings["reward"], settings["track"],
                                      settings["obs_mode"], settings["max_segments"],
                                      best_path=run_dir / "best_model.zip")
            callbacks.append(val_cb)
        start = time.perf_counter()
        model.learn(timesteps, callback=CallbackList(callbacks), tb_log_name=algo,
                    progress_bar=progress)
        seconds = time.perf_counter() - start
        atomic_write(run_dir / "model.zip", model.save)
        if normalize:
            atomic_write(run_dir / "vecnormalize.pkl", venv.save)
        atomic_write_text(run_dir / "train_args.json", json.dumps(
            {"env": env_id, "algo": algo, "timesteps": timesteps, "num_envs": num_envs,
             "env_kwargs": env_kwargs, "algo_kwargs": algo_kwargs, "seed": seed,
             "normalize": normalize, "eval_every": eval_every if val_trace is not None else None,
             "val_trace": None if val_trace is None else val_trace.identity.get("split")},
            indent=2, default=str))
        venv.close()
    finally:
        lock.release()
    from hrm_rl.agents.policies import load_sb3_model

    best = run_dir / "best_model.zip"
    chosen = "best_model" if best.is_file() else "model"
    info = {"run_dir": str(run_dir), "model": str(run_dir / "model.zip"),
            "best_model": str(best) if best.is_file() else None, "policy": chosen,
            "normalize": normalize, "train_seconds": round(seconds, 1),
            "timesteps": int(model.num_timesteps),
            "val": [] if val_cb is None else val_cb.history, **settings}
    return load_sb3_model(algo, run_dir / f"{chosen}.zip"), info


def env_checkpoint(env_id: str, env_kwargs: dict[str, Any] | None = None) -> str:
    """The core a halting env runs: ``env_kwargs["checkpoint"]``, else the registered env's
    default (``gym.spec(env_id).kwargs``)."""
    return str((env_kwargs or {}).get("checkpoint")
               or gym.spec(env_id).kwargs.get("checkpoint"))


def record_val_trace(env_id: str, env_kwargs: dict[str, Any] | None = None,
                     cap: int | None = None, progress: bool = True) -> Trace:
    """The ``val`` split of the env's core (``env_checkpoint``) recorded to ``cap`` segments
    (default: the core's training cap), with H's state when the env's ``obs_mode`` shows it,
    on its ``device``: the trace ``train_halting_policy`` scores on while training."""
    from hrm_rl.trace import record_core_trace

    env_kwargs = env_kwargs or {}
    obs_mode = env_kwargs.get("obs_mode", "features")
    return record_core_trace(env_checkpoint(env_id, env_kwargs), "val", cap,
                             latent=obs_mode != "features",
                             device=env_kwargs.get("device", "cpu"), progress=progress)


def compare_on_val(algo: str, info: dict[str, Any], val: Trace) -> list[Score]:
    """The trained policy against the core's own halting on the val trace: the final model
    (``<algo>:trained``), the best model on val (``<algo>:best``, when kept), the Q-head and
    the best fixed k on val (chosen there: a comparison on val, never on test).

    Args:
        algo: the trained algorithm; info: ``train_halting_policy``'s info (the models'
            paths and the env's settings); val: the val trace it was scored on.
    """
    from hrm_rl.agents.halting_eval import evaluate_policy_on_trace
    from hrm_rl.agents.policies import load_sb3_model
    from hrm_rl.trace import choose_on, halts, rule_name

    cap, step_cost, reward = info["max_segments"], info["step_cost"], info["reward"]
    settings = {"track": info["track"], "obs_mode": info["obs_mode"], "cap": cap,
                "step_cost": step_cost, "reward": reward}
    rows = [evaluate_policy_on_trace(load_sb3_model(algo, info["model"]), val,
                                     f"{algo}:trained", **settings)]
    if info["best_model"]:
        rows.append(evaluate_policy_on_trace(load_sb3_model(algo, info["best_model"]), val,
                                             f"{algo}:best", **settings))
    k = choose_on(val, "fixed", step_cost, cap, reward)
    return rows + [score(val, val.qhead_halts(cap), step_cost, "qhead", reward),
                   score(val, halts(val, "fixed", k, cap), step_cost,
                         f"{rule_name('fixed', k)} (best on val)", reward)]


@dataclass
class HaltTraining:
    """``train_and_compare``'s result: the ``policy`` (as ``train_halting_policy`` returns
    it), its ``info``, and ``comparison`` (``compare_on_val``'s rows; empty without a val
    trace)."""

    policy: Any
    info: dict[str, Any]
    comparison: list[Score]

    def summary(self) -> dict[str, Any]:
        """The JSON ``hrm-rl halt train`` prints: the run's files and time, and with a val
        trace the comparison (``eval``), ``eval_split`` and the evaluations while training
        (``val_history``)."""
        out: dict[str, Any] = {key: self.info[key] for key in
                               ("run_dir", "model", "best_model", "normalize", "train_seconds",
                                "timesteps")}
        if self.comparison:
            out["eval"] = [r.to_dict() for r in self.comparison]
            out["eval_split"] = "val"
            out["val_history"] = self.info["val"]
        return out


def train_and_compare(env_id: str = "HRM-Sudoku-v0", algo: str = "ppo",
                      timesteps: int = 200_000, num_envs: int = 256,
                      env_kwargs: dict[str, Any] | None = None,
                      algo_kwargs: dict[str, Any] | None = None, seed: int = 0,
                      run_dir: str | Path | None = None, normalize: bool = True,
                      val_trace: Trace | None = None, eval_every: int = 10_000,
                      progress: bool = True, threads: int | None = None) -> HaltTraining:
    """``hrm-rl halt train`` as a function: ``train_halting_policy`` (same arguments), then,
    with a ``val_trace``, ``compare_on_val``.

        val = record_val_trace("HRM-Sudoku-v0")
        result = train_and_compare("HRM-Sudoku-v0", "ppo", 20_000, val_trace=val)
        print(format_table(result.comparison)); print(result.summary())
    """
    policy, info = train_halting_policy(
        env_id, algo, timesteps, num_envs, env_kwargs, algo_kwargs, seed, run_dir,
        normalize=normalize, val_trace=val_trace, eval_every=eval_every, progress=progress,
        threads=threads)
    rows = [] if val_trace is None else compare_on_val(algo, info, val_trace)
    return HaltTraining(policy, info, rows)
