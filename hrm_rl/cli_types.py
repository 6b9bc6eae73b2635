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


MAX_SEGMENTS = 1024  # as train.max_segments: beyond it a rollout's arrays only grow
segment_count = int_in(1, MAX_SEGMENTS)
seed_int = int_in(0, 2**32 - 1)  # what every seeded library (numpy, SB3, gymnasium) takes
