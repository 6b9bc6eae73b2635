"""Time the Sudoku generator; prints one JSON object.

    python bench/sudoku_generator.py --n 1000 --size 9 --max-givens 25
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np

from hrm_rl.tasks.sudoku import generate, solve


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--n", type=int, default=1000)
    parser.add_argument("--size", type=int, default=9)
    parser.add_argument("--max-givens", type=int, default=25)
    parser.add_argument("--min-difficulty", type=int, default=0)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--verify", type=int, default=100, help="re-check uniqueness of N")
    args = parser.parse_args()
    start = time.perf_counter()
    puzzles, _, ratings = generate(args.n, args.size, np.random.default_rng(args.seed),
                                   max_givens=args.max_givens, min_difficulty=args.min_difficulty,
                                   progress=True)
    seconds = time.perf_counter() - start
    givens = (puzzles > 0).sum(1)
    unique = all(len(solve(p, args.size, limit=2)) == 1 for p in puzzles[:args.verify])
    print(json.dumps({
        "n": args.n, "size": args.size, "max_givens": args.max_givens, "seconds": round(seconds, 2),
        "puzzles_per_s": round(args.n / seconds, 1),
        "givens_mean": round(float(givens.mean()), 2),
        "givens_histogram": {int(k): int(v) for k, v in zip(*np.unique(givens, return_counts=True))},
        "rating_mean": round(float(ratings.mean()), 2), "rating_median": float(np.median(ratings)),
        "rating_max": int(ratings.max()), f"unique_first_{args.verify}": unique,
    }))


if __name__ == "__main__":
    main()
