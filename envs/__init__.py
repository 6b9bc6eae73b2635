"""Gymnasium environments over the HRM segment engine.

Importing ``hrm_rl`` registers ``HRM-Sudoku-v0``, ``HRM-Maze-v0`` and ``HRM-ARC-v0`` (single
and vector entry points); each defaults to a small bundled core and takes ``checkpoint=``,
``track=`` (``"verifier-free"``, the default, or ``"verifier"``) and ``rollouts=`` (replay a
trace file instead of running the core):

    import gymnasium as gym, hrm_rl
    env = gym.make("HRM-Sudoku-v0", step_cost=0.01)
    venv = gym.make_vec("HRM-Sudoku-v0", num_envs=256)   # one batched forward per step
"""

from gymnasium.envs.registration import register, registry



class DefaultCheckpoint(str):
    """An env id's default core, as registered (the caller left ``checkpoint=`` out).

    It acts as the name it holds; it only tells the env that nobody chose it, so a recording
    given with ``rollouts=`` defines the core instead (its task family must still be this
    core's). A ``checkpoint=`` the caller passes is a plain ``str`` or ``Path`` and must be
    the recorded core (``hrm_rl.envs.halting``)."""

    __slots__ = ()

    def __reduce__(self) -> tuple:
        return (DefaultCheckpoint, (str(self),))


_ENVS = {  # each default core a DefaultCheckpoint (see above)
    "HRM-Sudoku-v0": {"checkpoint": DefaultCheckpoint("sudoku4")},  # 4x4 Sudoku (sudoku4-tiny)
    "HRM-Maze-v0": {"checkpoint": DefaultCheckpoint("maze6")},      # 6x6 maze (configs/maze6)
    "HRM-ARC-v0": {"checkpoint": DefaultCheckpoint("arc-rearc")},   # 32 ARC-AGI-1 tasks (re-arc)
}

for _env_id, _kwargs in _ENVS.items():
    if _env_id not in registry:
        register(id=_env_id, entry_point="hrm_rl.envs.halting:HaltingEnv",
                 vector_entry_point="hrm_rl.envs.halting:HaltingVectorEnv", kwargs=_kwargs)
