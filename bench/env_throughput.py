"""Thin wrapper: ``python bench/env_throughput.py ARGS`` is ``hrm-rl bench env ARGS`` (see
``hrm_rl.agents.benchmarks.env`` for what it measures and its options)."""

import sys

from hrm_rl.cli import main

if __name__ == "__main__":
    raise SystemExit(main(["bench", "env", *sys.argv[1:]]))
