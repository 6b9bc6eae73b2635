"""Halting policies with Stable-Baselines3's ``predict`` signature.

Each policy maps halting-env observations to actions (0 = continue, 1 = halt), batched or
single, exactly like an SB3 model, so ``evaluate_policy`` and ``hrm-rl halt eval`` compare
them with trained PPO/A2C/DQN models::

    policy = ThresholdPolicy(0.9)
    actions, _ = policy.predict(obs)             # obs: (n, 9) features, latent or dict

Observations may come in any of the env's modes (``features``, ``features+latent``,
``dict``) and on either track (``verifier-free``: 9 features; ``verifier``: 10): the rule
policies read the first ``N_MODEL_FEATURES`` features, the model's own (layout:
``hrm_rl.trace.FEATURE_NAMES``), so they behave the same on both tracks.

Policies:

* ``QHeadPolicy``: the core's own learned halting (halt when ``q_halt > q_continue``).
* ``FixedSegmentsPolicy(k)``: always run ``k`` segments (reads the ``segment`` feature).
* ``ThresholdPolicy(t, feature)``: halt once a confidence feature reaches ``t``.
* ``QMarginPolicy(m)``: halt once ``q_halt - q_continue >= m`` (``QHeadPolicy`` is ``m``
  just above 0).
* ``RandomPolicy(p)``: halt with probability ``p`` after each segment.
* a saved SB3 model (``load_sb3_model``), with its observation normalization
  (``vecnormalize.pkl`` beside ``model.zip``, from ``hrm-rl halt train``) applied.

The oracle (halt at the first right answer) is not a policy: it reads the targets, so
``hrm-rl halt eval`` computes it from the trace (``hrm_rl.trace.oracle_halt_at``).

``parse_policy("fixed:4")`` builds one from the strings the CLI takes.
"""

from __future__ import annotations

import pickle
from pathlib import Path
from typing import Any

import numpy as np

from hrm_rl.trace import FEATURE_NAMES, N_MODEL_FEATURES

_CONTINUE, _HALT = 0, 1


def features_of(observation: Any) -> tuple[np.ndarray, bool]:
    """The ``(n, N_MODEL_FEATURES)`` model features of an observation (its first columns,
    the same on both tracks), and whether it was batched.

    Accepts the env's ``features`` and ``features+latent`` arrays (features come first) and
    ``dict`` observations, single (``(width,)``) or batched (``(n, width)``), on either track.
    """
    if isinstance(observation, dict):
        if "features" not in observation:
            raise ValueError(f"dict observation without a 'features' entry: keys "
                             f"{sorted(observation)}")
        observation = observation["features"]
    obs = np.asarray(observation, dtype=np.float64)
    if obs.ndim not in (1, 2) or obs.shape[-1] < N_MODEL_FEATURES:
        raise ValueError(f"expected halting-env observations of shape (>={N_MODEL_FEATURES},) "
                         f"or (n, >={N_MODEL_FEATURES}); got {obs.shape}")
    batched = obs.ndim == 2
    return (obs if batched else obs[None])[:, :N_MODEL_FEATURES], batched


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


class QMarginPolicy(HaltingPolicy):
    """Halt once the Q-head's margin ``q_halt - q_continue`` reaches ``m`` (the clipped
    features, as the env shows them; the ``q-margin`` rule family on a trace reads the
    unclipped logits, which differ only beyond +-30).

    Args:
        m: the margin, a finite number (negative halts earlier than the Q-head).
    """

    def __init__(self, m: float) -> None:
        if not np.isfinite(m):
            raise ValueError(f"QMarginPolicy: m must be a finite number, got {m!r}")
        self.m = float(m)
        self.name = f"q-margin:{self.m:g}"

    def act(self, features: np.ndarray) -> np.ndarray:
        return features[:, 0] - features[:, 1] >= self.m


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


def normalization_path(model_path: str | Path) -> Path:
    """Where ``hrm-rl halt train`` keeps a model's observation-normalization statistics:
    ``vecnormalize.pkl`` beside ``model.zip``, ``NAME_vecnormalize.pkl`` beside ``NAME.zip``
    (e.g. ``best_model_vecnormalize.pkl``)."""
    path = Path(model_path)
    stem = path.name[:-4] if path.name.endswith(".zip") else path.name
    return path.parent / ("vecnormalize.pkl" if stem == "model" else f"{stem}_vecnormalize.pkl")


class NormalizedPolicy:
    """An SB3 model behind the observation normalization it was trained with: ``predict``
    normalizes (``VecNormalize.normalize_obs``, which never updates the statistics) and
    asks the model.

    Args:
        model: the SB3 model.
        vec_normalize: the ``VecNormalize`` whose statistics to apply (no env needed).
    """

    def __init__(self, model: Any, vec_normalize: Any) -> None:
        self.model, self.vec_normalize = model, vec_normalize
        self.observation_space = model.observation_space

    def predict(self, observation: Any, state: Any = None,
                episode_start: np.ndarray | None = None,
                deterministic: bool = False) -> tuple[np.ndarray, Any]:
        """SB3's ``predict`` on the normalized observation."""
        return self.model.predict(self.vec_normalize.normalize_obs(observation), state,
                                  episode_start, deterministic)

    def __repr__(self) -> str:
        return f"{type(self.model).__name__}+VecNormalize"


def load_sb3_model(algo: str, path: str | Path, device: str = "cpu") -> Any:
    """Load a saved SB3 model (``ppo``, ``a2c`` or ``dqn``) for use as a halting policy,
    with its observation normalization applied (a ``NormalizedPolicy``) when its statistics
    lie beside it (``normalization_path``)."""
    import stable_baselines3 as sb3

    algo = algo.lower()
    if algo not in SB3_ALGOS:
        raise ValueError(f"unknown SB3 algorithm {algo!r}; expected one of {SB3_ALGOS}")
    path = Path(path)
    if not (path.is_file() or path.with_suffix(".zip").is_file()):
        raise FileNotFoundError(f"no saved {algo.upper()} model at {path}")
    try:
        model = getattr(sb3, algo.upper()).load(str(path), device=device)
    except (ValueError, KeyError, OSError, RuntimeError) as err:
        raise ValueError(f"{path}: not a saved {algo.upper()} model ({type(err).__name__}: "
                         f"{err})") from None
    stats = normalization_path(path if path.suffix == ".zip" else path.with_suffix(".zip"))
    if not stats.is_file():
        return model
    from stable_baselines3.common.vec_env import VecNormalize

    with open(stats, "rb") as f:
        try:
            vec_normalize = pickle.load(f)
        except Exception as err:  # unpickling errors of any kind
            raise ValueError(f"{stats}: unreadable normalization statistics "
                             f"({type(err).__name__}: {err})") from None
    if not isinstance(vec_normalize, VecNormalize):
        raise ValueError(f"{stats}: holds a {type(vec_normalize).__name__}, not SB3's "
                         "VecNormalize statistics")
    if vec_normalize.observation_space != model.observation_space:
        raise ValueError(f"{stats}: its observation space {vec_normalize.observation_space} "
                         f"is not the model's {model.observation_space}")
    return NormalizedPolicy(model, vec_normalize)


def parse_policy(spec: str, seed: int | None = 0) -> Any:
    """Build a policy from a CLI spec.

    Specs: ``qhead``, ``fixed:K``, ``threshold:T[:mean_confidence]``, ``mean-threshold:T``,
    ``q-margin:M``, ``random:P``, ``ppo:PATH`` / ``a2c:PATH`` / ``dqn:PATH`` (a saved SB3
    model, with its observation normalization when saved beside it). ``oracle`` is no
    policy (it reads the targets); ``halt eval`` computes it.
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
        if kind == "mean-threshold":
            return ThresholdPolicy(float(arg), "mean_confidence")
        if kind == "q-margin":
            return QMarginPolicy(float(arg))
        if kind == "random":
            return RandomPolicy(float(arg), seed)
        if kind == "oracle":
            raise ValueError("the oracle reads the targets, so it is not a policy; hrm-rl "
                             "halt eval computes it from the trace (hrm_rl.trace.oracle_halt_at)")
        if kind in SB3_ALGOS and arg:
            return load_sb3_model(kind, arg)
    except ValueError as err:
        raise ValueError(f"policy {spec!r}: {err}") from None
    raise ValueError(f"unknown policy spec {spec!r}; expected qhead, fixed:K, threshold:T, "
                     "mean-threshold:T, q-margin:M, random:P, oracle, ppo:PATH, a2c:PATH or "
                     "dqn:PATH")
