"""hrm-rl: the Hierarchical Reasoning Model as a halting-decision RL problem.

The core (model, tasks, segment engine, checkpoints, config) lives in ``hrm_rl``; the
Gymnasium environments in ``hrm_rl.envs``; the ACT trainer and halting agents in
``hrm_rl.agents``.
"""

__version__ = "0.1.0"

import os as _os

# Idle OpenMP threads that spin (libgomp's default) can take a shared CPU core from the thread
# doing the work: tiny-config training measured 7-10x slower with ACTIVE than with PASSIVE on
# 2 cores shared with other processes (``hrm-rl bench train`` measures both). This takes effect
# only if torch is not imported yet; set OMP_WAIT_POLICY yourself to choose otherwise.
_os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

from hrm_rl import tasks as _register_tasks  # noqa: E402,F401  (registers the task options)
from hrm_rl import envs as _register_envs  # noqa: E402,F401  (import registers the envs)
