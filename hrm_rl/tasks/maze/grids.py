"""Maze text and CSV: the Maze-Hard character codec, checks that name the file and line
(symbols, one S and one G, answer = question + path, the path is a shortest one), and the
CSV reader/writer.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
import torch

from hrm_rl.tasks.csvio import read_rows, write_rows
from hrm_rl.tasks.maze.common import (CHARSET, GOAL, MAZE_HARD_SIZE, OPEN, PATH, START,
                                      VOCAB_SIZE, check_size)
from hrm_rl.tasks.maze.bfs import shortest_path_lengths
from hrm_rl.tasks.maze.rules import rule_breaks


@dataclass
class MazeRecords:
    """Mazes as read from or written to CSV. Arrays are ``(n, S)`` tokens and ``(n,)``."""

    questions: np.ndarray
    answers: np.ndarray
    ratings: np.ndarray
    sources: list[str]

    def __len__(self) -> int:
        return len(self.questions)


def infer_size(length: int) -> int:
    """Maze side from a grid string's length (900 -> 30); ``ValueError`` if not square."""
    side = int(round(length ** 0.5))
    if side * side != length:
        raise ValueError(f"{length} characters is not a square grid (a maze string has "
                         f"size*size characters, e.g. {MAZE_HARD_SIZE ** 2} for "
                         f"{MAZE_HARD_SIZE}x{MAZE_HARD_SIZE})")
    return check_size(side)


def format_grid(tokens: np.ndarray) -> str:
    """Tokens ``(S,)`` -> the Maze-Hard string (padding/unknown tokens as ``?``)."""
    return "".join(_CHARS[np.clip(np.asarray(tokens), 0, VOCAB_SIZE)].tolist())


_CHARS = np.array(["?", *CHARSET, "?"])
_LOOKUP = np.zeros(256, dtype=np.int64)
for _i, _ch in enumerate(CHARSET):
    _LOOKUP[ord(_ch)] = _i + 1


def _where(i: int, size: int) -> str:
    return f"position {i} (row {i // size}, column {i % size}, from 0)"


def _encode_strings(texts: Sequence[str], size: int, what: str, allowed: str,
                    place: list[str]) -> np.ndarray:
    """Strings -> ``(n, S)`` tokens; ``ValueError`` naming ``place[row]`` on a bad character."""
    raw = np.frombuffer("".join(texts).encode("ascii", "replace"), dtype=np.uint8)
    tokens = _LOOKUP[raw].reshape(len(texts), size * size)
    ok = np.isin(tokens, [CHARSET.index(ch) + 1 for ch in allowed])
    if not ok.all():
        row, col = np.argwhere(~ok)[0]
        expected = ", ".join(repr(ch) for ch in allowed)
        raise ValueError(f"{place[row]}: {what}: invalid character {texts[row][col]!r} at "
                         f"{_where(int(col), size)}; expected one of {expected}")
    return tokens


def check_mazes(questions: np.ndarray, answers: np.ndarray, size: int, place: list[str],
                check_shortest: bool = True) -> None:
    """Raise ``ValueError`` (starting with ``place[row]``) at the first maze that is not a
    question with one S and one G whose answer marks one shortest S-to-G path.

    Args:
        questions, answers: ``(n, size*size)`` tokens.
        place: ``n`` labels for messages, e.g. ``"train.csv:12"``.
        check_shortest: also require the path to be a shortest one (one vectorised BFS).
    """
    n = len(questions)
    if n == 0:
        return
    for what, grid in (("question", questions), ("answer", answers)):
        for sym, name in ((START, "start 'S'"), (GOAL, "goal 'G'")):
            count = (grid == sym).sum(1)
            if (count != 1).any():
                i = int(np.argmax(count != 1))
                raise ValueError(f"{place[i]}: {what} has {count[i]} {name} cells; a maze needs "
                                 "exactly one start 'S' and one goal 'G'")
    differ = (answers != questions) & ~((questions == OPEN) & (answers == PATH))
    if differ.any():
        i, j = (int(v) for v in np.argwhere(differ)[0])
        raise ValueError(f"{place[i]}: answer does not match the question at {_where(j, size)}: "
                         f"question {CHARSET[questions[i, j] - 1]!r}, answer "
                         f"{CHARSET[answers[i, j] - 1]!r} (the answer must be the question with "
                         "path cells 'o' on open cells only)")
    breaks = rule_breaks(torch.from_numpy(answers), size).numpy()
    if breaks.any():
        i = int(np.argmax(breaks > 0))
        raise ValueError(f"{place[i]}: answer's path cells 'o' do not form one simple path from "
                         f"S to G ({breaks[i]} cells break the rule: each 'o' has exactly two "
                         "neighbours in o/S/G, S and G exactly one)")
    if check_shortest:
        shortest = shortest_path_lengths(questions, size)
        steps = (answers == PATH).sum(1) + 1
        wrong = steps != shortest
        if wrong.any():
            i = int(np.argmax(wrong))
            raise ValueError(f"{place[i]}: answer's path takes {steps[i]} steps but the shortest "
                             f"path from S to G takes {shortest[i]}; the answer must be a "
                             "shortest path")


def read_csv(path: str | Path, size: int | None = None, limit: int | None = None,
             check_shortest: bool = True) -> MazeRecords:
    """Read a Maze-Hard style CSV (``source,question,answer,rating``).

    Questions use ``# SG``, answers ``# SGo``; each must have exactly one S and one G, and
    the answer must be the question with one shortest S-to-G path marked ``o``.

    Args:
        path: the CSV file (UTF-8, optional byte-order mark).
        size: expected maze side; inferred from the first row when None.
        limit: read at most this many mazes.
        check_shortest: verify that every answer's path is a shortest one (vectorised BFS;
            ``is_correct`` relies on the labelled path being optimal).

    Raises:
        FileNotFoundError: no such file.
        ValueError: anything else wrong with the file (its format, a character, a maze
            without one S and one G, an answer that is not a shortest path); the message
            starts with ``<path>:<line>:`` and says what was expected.
    """
    path = Path(path)
    if size is not None:
        check_size(size)
    rows = read_rows(path, size, limit, "maze", infer_size, _size_hint)
    place = [f"{path}:{line}" for line in rows.lines]
    q = _encode_strings(rows.questions, rows.size, "question", CHARSET[:4], place)
    a = _encode_strings(rows.answers, rows.size, "answer", CHARSET, place)
    check_mazes(q, a, rows.size, place, check_shortest)
    return MazeRecords(q, a, rows.ratings, rows.sources)


def _size_hint(length: int, size: int) -> str:
    """What a string of ``length`` characters looks like, when not ``size x size``."""
    side = int(round(length ** 0.5))
    return (f"; this looks like a {side}x{side} maze, but {size}x{size} is expected"
            if side * side == length else "")


def write_csv(path: str | Path, records: MazeRecords) -> None:
    """Write records as ``source,question,answer,rating`` (Maze-Hard characters)."""
    write_rows(path, records.sources, map(format_grid, records.questions),
               map(format_grid, records.answers), records.ratings)
