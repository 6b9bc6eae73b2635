"""Argument types shared by the ``hrm-rl`` command line and its ``halt`` subcommands."""

from __future__ import annotations

import argparse


def positive_int(text: str) -> int:
    """argparse type: an integer >= 1 (else a usage error naming the value)."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer >= 1, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {value}")
    return value


def positive_float(text: str) -> float:
    """argparse type: a finite number > 0 (else a usage error naming the value)."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number > 0, got {text!r}") from None
    if not 0 < value < float("inf"):
        raise argparse.ArgumentTypeError(f"must be a finite number > 0, got {text}")
    return value


def int_in(low: int, high: int):
    """argparse type: an integer in ``[low, high]`` (else a usage error naming the value)."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected an integer in [{low}, {high}], "
                                             f"got {text!r}") from None
        if not low <= value <= high:
            raise argparse.ArgumentTypeError(f"must be in [{low}, {high}], got {value}")
        return value

    parse.__name__ = f"int in [{low}, {high}]"
    return parse


def float_list(low: float, high: float, *, low_open: bool = False):
    """argparse type: comma-separated numbers, at least one, each in ``[low, high]`` (or
    ``(low, high]`` with ``low_open``); a tuple, or a usage error naming the value."""
    interval = f"{'(' if low_open else '['}{low:g}, {high:g}]"

    def parse(text: str) -> tuple[float, ...]:
        try:
            values = tuple(float(t) for t in text.split(",") if t.strip())
        except ValueError:
            values = ()
        if not values or not all((low < v if low_open else low <= v) and v <= high
                                 for v in values):
            raise argparse.ArgumentTypeError(f"expected comma-separated numbers in {interval}, "
                                             f"got {text!r}")
        return values

    parse.__name__ = f"numbers in {interval}"
    return parse


MAX_SEGMENTS = 1024  # as train.max_segments: beyond it a rollout's arrays only grow
segment_count = int_in(1, MAX_SEGMENTS)
seed_int = int_in(0, 2**32 - 1)  # what every seeded library (numpy, SB3, gymnasium) takes
