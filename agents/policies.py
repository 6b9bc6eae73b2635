"""Halting policies with Stable-Baselines3's ``predict`` signature.

Each policy maps halting-env observations to actions (0 = continue, 1 = halt), batched or
single, exactly like an SB3 model, so ``evaluate_policy`` and ``hrm-rl halt eval`` compare
them with trained PPO/A2C/DQN models::

    policy = ThresholdPolicy(0.9)
    actions, _ = policy.predict(obs)             # obs: (n, 9) features, latent or dict

Observations may come in any of the env's modes (``features``, ``latent``, ``dict``); the
rule-based policies read the ``features`` part (layout: ``hrm_rl.envs.halting.FEATURE_NAMES``).

Policies:

* ``QHeadPolicy``: the core's own learned halting (halt when ``q_halt > q_continue``).
* ``FixedSegmentsPolicy(k)``: always run ``k`` segments (reads the ``segment`` feature).
* ``ThresholdPolicy(t, feature)``: halt once a confidence feature reaches ``t``.
* ``RandomPolicy(p)``: halt with probability ``p`` after each segment.

The oracle (halt at the first right answer) is not a policy: it reads the targets, so
``hrm-rl halt eval`` computes it from the recorded trace (``halting_eval.oracle_on_trace``).

``parse_policy("fixed:4")`` builds one from the strings the CLI takes.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from hrm_rl.envs.halting import FEATURE_NAMES, N_FEATURES

_CONTINUE, _HALT = 0, 1


def features_of(observation: Any) -> tuple[np.ndarray, bool]:
    """The ``(n, N_FEATURES)`` features part of an observation, and whether it was batched.

    Accepts the env's ``features`` and ``features+latent`` arrays (features come first) and
    ``dict`` observations, single (``(N_FEATURES,)``) or batched (``(n, N_FEATURES)``).
    """
    if isinstance(observation, dict):
        if "features" not in observation:
            raise ValueError(f"dict observation without a 'features' entry: keys "
                             f"{sorted(observation)}")
        observation = observation["features"]
    obs = np.asarray(observation, dtype=np.float64)
    if obs.ndim not in (1, 2) or obs.shape[-1] < N_FEATURES:
        raise ValueError(f"expected halting-env observations of shape ({N_FEATURES},) or "
                         f"(n, >={N_FEATURES}); got {obs.shape}")
    batched = obs.ndim == 2
    return (obs if batched else obs[None])[:, :N_FEATURES], batched


class HaltingPolicy:
    """Base class: subclasses implement ``act(features) -> (n,) bool halt``."""

    name = "policy"

    def act(self, features: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def predict(self, observation: Any, state: Any = None,
                episode_start: np.ndarray | None = None,
                deterministic: bool = False) -> tuple[np.ndarray, Any]:
        """SB3's signature: ``(actions, state)``; actions ``(n,)`` int64 (``()`` if single)."""
        feats, batched = features_of(observation)
        actions = np.where(self.act(feats), _HALT, _CONTINUE).astype(np.int64)
        return (actions if batched else actions[0]), state

    def __repr__(self) -> str:
        return self.name


class QHeadPolicy(HaltingPolicy):
    """The core's own halting: halt when ``q_halt > q_continue`` (as HRM evaluates)."""

    name = "qhead"

    def act(self, features: np.ndarray) -> np.ndarray:
        return features[:, 0] > features[:, 1]


class FixedSegmentsPolicy(HaltingPolicy):
    """Halt after exactly ``k`` segments (or at the env's ``max_segments`` if smaller).

    Args:
        k: segments to run, >= 1.
    """

    _SEGMENT = FEATURE_NAMES.index("segment")

    def __init__(self, k: int) -> None:
        if not isinstance(k, (int, np.integer)) or k < 1:
            raise ValueError(f"FixedSegmentsPolicy: k must be an int >= 1, got {k!r}")
        self.k = int(k)
        self.name = f"fixed:{self.k}"

    def act(self, features: np.ndarray) -> np.ndarray:
        return features[:, self._SEGMENT] >= self.k


class ThresholdPolicy(HaltingPolicy):
    """Halt once the prediction's confidence reaches ``threshold``.

    Args:
        threshold: in [0, 1].
        feature: which confidence feature: ``min_confidence`` (default: every cell at
            least this sure) or ``mean_confidence``.
    """

    _FEATURES = ("min_confidence", "mean_confidence")

    def __init__(self, threshold: float, feature: str = "min_confidence") -> None:
        if not 0.0 <= threshold <= 1.0:
            raise ValueError(f"ThresholdPolicy: threshold must be in [0, 1], got {threshold!r}")
        if feature not in self._FEATURES:
            raise ValueError(f"ThresholdPolicy: feature must be one of {self._FEATURES}, "
                             f"got {feature!r}")
        self.threshold, self.feature = float(threshold), feature
        self.index = FEATURE_NAMES.index(feature)
        suffix = "" if feature == "min_confidence" else f":{feature}"
        self.name = f"threshold:{self.threshold:g}{suffix}"

    def act(self, features: np.ndarray) -> np.ndarray:
        return features[:, self.index] >= self.threshold


class RandomPolicy(HaltingPolicy):
    """Halt with probability ``p`` after every segment (``deterministic`` is ignored)."""

    def __init__(self, p: float, seed: int | None = None) -> None:
        if not 0.0 <= p <= 1.0:
            raise ValueError(f"RandomPolicy: p must be in [0, 1], got {p!r}")
        self.p = float(p)
        self.rng = np.random.default_rng(seed)
        self.name = f"random:{self.p:g}"

    def act(self, features: np.ndarray) -> np.ndarray:
        return self.rng.random(len(features)) < self.p


SB3_ALGOS = ("ppo", "a2c", "dqn")


def load_sb3_model(algo: str, path: str | Path, device: str = "cpu") -> Any:
    """Load a saved SB3 model (``ppo``, ``a2c`` or ``dqn``) for use as a halting policy."""
    import stable_baselines3 as sb3

    algo = algo.lower()
    if algo not in SB3_ALGOS:
        raise ValueError(f"unknown SB3 algorithm {algo!r}; expected one of {SB3_ALGOS}")
    path = Path(path)
    if not (path.is_file() or path.with_suffix(".zip").is_file()):
        raise FileNotFoundError(f"no saved {algo.upper()} model at {path}")
    return getattr(sb3, algo.upper()).load(str(path), device=device)


def parse_policy(spec: str, seed: int | None = 0) -> Any:
    """Build a policy from a CLI spec.

    Specs: ``qhead``, ``fixed:K``, ``threshold:T[:mean_confidence]``, ``random:P``,
    ``ppo:PATH`` / ``a2c:PATH`` / ``dqn:PATH`` (a saved SB3 model; its ``predict`` is used
    as is). ``oracle`` is no policy (it reads the targets); ``halt eval`` computes it.
    """
    kind, _, arg = spec.strip().partition(":")
    kind = kind.lower()
    try:
        if kind == "qhead" and not arg:
            return QHeadPolicy()
        if kind == "fixed":
            return FixedSegmentsPolicy(int(arg))
        if kind == "threshold":
            value, _, feature = arg.partition(":")
            return ThresholdPolicy(float(value), feature or "min_confidence")
        if kind == "random":
            return RandomPolicy(float(arg), seed)
        if kind == "oracle":
            raise ValueError("the oracle reads the targets, so it is not a policy; hrm-rl "
                             "halt eval computes it from the trace (halting_eval.oracle_on_trace)")
        if kind in SB3_ALGOS and arg:
            return load_sb3_model(kind, arg)
    except ValueError as err:
        raise ValueError(f"policy {spec!r}: {err}") from None
    raise ValueError(f"unknown policy spec {spec!r}; expected qhead, fixed:K, threshold:T, "
                     "random:P, oracle, ppo:PATH, a2c:PATH or dqn:PATH")
