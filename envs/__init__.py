"""Gymnasium environments over the HRM segment engine.

Importing ``hrm_rl`` registers ``HRM-Sudoku-v0``, ``HRM-Maze-v0`` and ``HRM-ARC-v0`` (single
and vector entry points); each defaults to a small bundled core and takes ``checkpoint=``:

    import gymnasium as gym, hrm_rl
    env = gym.make("HRM-Sudoku-v0", step_cost=0.01)
    venv = gym.make_vec("HRM-Sudoku-v0", num_envs=256)   # one batched forward per step
"""

from gymnasium.envs.registration import register, registry

_ENVS = {
    "HRM-Sudoku-v0": {"checkpoint": "sudoku4"},   # 4x4 Sudoku core (configs/sudoku4-tiny.yaml)
    "HRM-Maze-v0": {"checkpoint": "maze6"},       # 6x6 maze core (configs/maze6.yaml)
    "HRM-ARC-v0": {"checkpoint": "arc-tiny"},     # ARC-AGI-1 smoke core (configs/arc-tiny.yaml)
}

for _env_id, _kwargs in _ENVS.items():
    if _env_id not in registry:
        register(id=_env_id, entry_point="hrm_rl.envs.halting:HaltingEnv",
                 vector_entry_point="hrm_rl.envs.halting:HaltingVectorEnv", kwargs=_kwargs)
