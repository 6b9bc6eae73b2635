"""Thin wrapper: ``python bench/recipe.py ARGS`` is ``hrm-rl bench recipe ARGS`` (see
``hrm_rl.agents.benchmarks.recipe`` for what it measures and its options)."""

import sys

from hrm_rl.cli import main

if __name__ == "__main__":
    raise SystemExit(main(["bench", "recipe", *sys.argv[1:]]))
