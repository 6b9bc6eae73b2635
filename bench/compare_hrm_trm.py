"""Thin wrapper: ``python bench/compare_hrm_trm.py`` is ``hrm-rl bench compare`` (see
``hrm_rl.agents.benchmarks.compare`` for what it measures and its options)."""

from hrm_rl.agents.benchmarks.compare import main

if __name__ == "__main__":
    raise SystemExit(main())
