"""What the tasks register, below both the config and the tasks.

``hrm_rl.config`` validates a run's ``task`` section through ``TASK_OPTIONS``, and each task
package registers its options class here (``register_task``) when ``hrm_rl.tasks`` is
imported (importing ``hrm_rl`` does). So the config never imports the tasks, which import the
config: this module imports nothing of the project.
"""

from __future__ import annotations

from typing import Callable, TypeVar

T = TypeVar("T", bound=type)

TASK_OPTIONS: dict[str, type] = {}
"""``task.name`` -> the task's options class (a ``hrm_rl.tasks.TaskOptions``)."""


def register_task(name: str) -> Callable[[T], T]:
    """Class decorator: register a ``TaskOptions`` subclass as the options of task ``name``.

    Raises:
        ValueError: another class is registered under ``name``.
    """
    def register(cls: T) -> T:
        if TASK_OPTIONS.get(name, cls) is not cls:
            raise ValueError(f"task {name!r} is registered twice: {TASK_OPTIONS[name]} and {cls}")
        TASK_OPTIONS[name] = cls
        return cls

    return register
