"""Time the Maze generator on one core; prints one JSON object.

    python bench/maze_generator.py                       # 1000 30x30 (min 110) and 1000 9x9
    python bench/maze_generator.py --n 200 --sizes 30:110 15

Each ``--sizes`` entry is ``SIZE`` (default minimum path for that size) or ``SIZE:MIN_PATH``.
Path lengths are in steps (``o`` cells + 1), Maze-Hard's measure.
"""

from __future__ import annotations

import argparse
import json
import os
import time

import numpy as np

from hrm_rl.tasks.maze import (PATH, WALL, default_min_path, generate,
                               shortest_path_lengths)


def _one_core() -> bool:
    """Pin this process to one CPU core (Linux); False where that is not possible."""
    try:
        os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})
        return True
    except (AttributeError, OSError):
        return False


def bench(n: int, size: int, min_path: int, seed: int, bin_width: int) -> dict:
    start = time.perf_counter()
    questions, answers, lengths = generate(n, size, np.random.default_rng(seed), min_path)
    seconds = time.perf_counter() - start
    edges = np.arange(min_path, int(lengths.max()) + bin_width + 1, bin_width)
    counts, _ = np.histogram(lengths, edges)
    return {
        "size": size, "min_path": min_path, "n": n, "seconds": round(seconds, 2),
        "mazes_per_s": round(n / seconds, 1),
        "path_mean": round(float(lengths.mean()), 2), "path_min": int(lengths.min()),
        "path_max": int(lengths.max()),
        "path_histogram": {f"{a}-{a + bin_width - 1}": int(c)
                           for a, c in zip(edges[:-1].tolist(), counts.tolist())},
        "wall_fraction_mean": round(float((questions == WALL).mean()), 3),
        "labels_are_shortest": bool(np.array_equal(shortest_path_lengths(questions, size),
                                                   (answers == PATH).sum(1) + 1)),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=1000)
    parser.add_argument("--sizes", nargs="+", default=["30:110", "9"])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--bin-width", type=int, default=5)
    args = parser.parse_args()
    pinned = _one_core()
    results = []
    for spec in args.sizes:
        size, _, min_path = spec.partition(":")
        size = int(size)
        results.append(bench(args.n, size, int(min_path) if min_path else default_min_path(size),
                             args.seed, args.bin_width))
    print(json.dumps({"one_core": pinned, "results": results}))


if __name__ == "__main__":
    main()
