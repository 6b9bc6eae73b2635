"""What the benchmarks that train several config variants share: finding the configs and
choosing variants on the command line (``hrm-rl bench recipe`` and
``scripts/experiments/compare_hrm_trm.py``)."""

from __future__ import annotations

import argparse
from pathlib import Path


def config_path(name: str, config_dir: str | None) -> Path:
    """``configs/<name>`` of a source checkout, or of ``config_dir`` when given."""
    if config_dir:
        return Path(config_dir) / name
    here = Path(__file__).resolve().parents[1] / "configs" / name  # a source checkout
    if here.is_file():
        return here
    raise FileNotFoundError(f"configs/{name} not found; pass --config-dir")


def add_variant_arguments(p: argparse.ArgumentParser, variants: dict, threads: int,
                          default: list[str] | None = None) -> None:
    """``--threads``, ``--variants`` (``default``: all of ``variants``), ``--config-dir``,
    ``--cache-dir`` and ``--set``."""
    p.add_argument("--threads", type=int, default=threads)
    chosen = default if default is not None else list(variants)
    p.add_argument("--variants", default=",".join(chosen),
                   help=f"comma-separated subset of: {', '.join(variants)} (default: "
                        f"{', '.join(chosen)})")
    p.add_argument("--config-dir", help="folder holding the sudoku6 configs (default: ./configs)")
    p.add_argument("--cache-dir", default="data", help="where generated puzzles are cached")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="extra config override for every variant (repeatable)")


def chosen_variants(args: argparse.Namespace, variants: dict) -> list[str]:
    """The ``--variants`` names, checked against ``variants``."""
    names = [v.strip() for v in args.variants.split(",") if v.strip()]
    unknown = [v for v in names if v not in variants]
    if unknown:
        raise ValueError(f"unknown variant(s) {unknown}; choose from {list(variants)}")
    if not names:
        raise ValueError("--variants is empty")
    return names
