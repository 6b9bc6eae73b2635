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
"""

from __future__ import annotations

from collections import deque
from collections.abc import Sequence
from typing import Any

import gymnasium as gym
import numpy as np
import torch
from stable_baselines3.common.callbacks import BaseCallback
from stable_baselines3.common.vec_env import VecEnv
from stable_baselines3.common.vec_env.base_vec_env import VecEnvIndices, VecEnvStepReturn
from gymnasium.vector import AutoresetMode

from hrm_rl.envs.halting import HaltingVectorEnv

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
