"""Thin wrapper: ``python bench/env_throughput.py`` is ``hrm-rl bench env`` (see
``hrm_rl.agents.benchmarks.env`` for what it measures and its options)."""

from hrm_rl.agents.benchmarks.env import main

if __name__ == "__main__":
    raise SystemExit(main())
