"""hrm-rl: the Hierarchical Reasoning Model as a halting-decision RL problem.

The core (model, tasks, segment engine, checkpoints, config) lives in ``hrm_rl``; the
Gymnasium environments in ``hrm_rl.envs``; the ACT trainer and halting agents in
``hrm_rl.agents``.
"""

__version__ = "0.1.0"

from hrm_rl import envs as _register_envs  # noqa: E402,F401  (import registers the envs)
