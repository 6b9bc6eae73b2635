"""Thin wrapper: ``python bench/compare_hrm_trm.py ARGS`` is ``hrm-rl bench compare ARGS`` (see
``hrm_rl.agents.benchmarks.compare`` for what it measures and its options)."""

import sys

from hrm_rl.cli import main

if __name__ == "__main__":
    raise SystemExit(main(["bench", "compare", *sys.argv[1:]]))
