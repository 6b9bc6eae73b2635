"""Thin wrapper: ``python bench/memory.py ARGS`` is ``hrm-rl bench memory ARGS`` (see
``hrm_rl.agents.benchmarks.memory`` for what it measures and its options)."""

import sys

from hrm_rl.cli import main

if __name__ == "__main__":
    raise SystemExit(main(["bench", "memory", *sys.argv[1:]]))
