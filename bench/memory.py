"""Thin wrapper: ``python bench/memory.py`` is ``hrm-rl bench memory`` (see
``hrm_rl.agents.benchmarks.memory`` for what it measures and its options)."""

from hrm_rl.agents.benchmarks.memory import main

if __name__ == "__main__":
    raise SystemExit(main())
