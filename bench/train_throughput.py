"""Thin wrapper: ``python bench/train_throughput.py ARGS`` is ``hrm-rl bench train ARGS`` (see
``hrm_rl.agents.benchmarks.train`` for what it measures and its options)."""

import sys

from hrm_rl.cli import main

if __name__ == "__main__":
    raise SystemExit(main(["bench", "train", *sys.argv[1:]]))
