"""Thin wrapper: ``python bench/train_throughput.py`` is ``hrm-rl bench train`` (see
``hrm_rl.agents.benchmarks.train`` for what it measures and its options)."""

from hrm_rl.agents.benchmarks.train import main

if __name__ == "__main__":
    raise SystemExit(main())
