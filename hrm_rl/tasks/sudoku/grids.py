"""Sudoku text and CSV: parsing and formatting grids, rule checks with messages that name the
row, column or box, and the CSV reader/writer with file:line errors.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from hrm_rl.tasks.csvio import read_rows, write_rows
from hrm_rl.tasks.sudoku.solver import BOX_SHAPES, _geometry, box_shape, solve


_DIGITS = b"0123456789"
_DIGIT_CHARS = "0123456789"


def infer_size(length: int) -> int:
    """Grid size from a puzzle string's length (16 -> 4, 36 -> 6, 81 -> 9)."""
    for size in BOX_SHAPES:
        if size * size == length:
            return size
    raise ValueError(f"a Sudoku string has 16, 36 or 81 cells; got {length} characters")


def _unit_name(unit: int, size: int) -> str:
    kind = ("row", "column", "box")[unit // size]
    return f"{kind} {unit % size + 1}"


def find_conflict(grid: np.ndarray, size: int) -> str | None:
    """Why the givens of ``grid`` (``(size*size,)`` digits, 0 = blank) contradict each
    other, or None when no digit repeats in a row, column or box.

    Rows, columns and boxes are numbered from 1 (boxes row-major); positions are indices
    into the row-major string, from 0.
    """
    grid = np.asarray(grid)
    for u, unit in enumerate(_geometry(size).units):
        seen: dict[int, int] = {}
        for cell in unit:
            d = int(grid[cell])
            if d and d in seen:
                return (f"digit {d} appears twice in {_unit_name(u, size)} "
                        f"(positions {seen[d]} and {cell})")
            seen[d] = cell
    return None


_CHUNK = 65536  # rows per vectorised check (bounds memory on multi-million-row files)


def _has_conflicts(grids: np.ndarray, size: int) -> np.ndarray:
    """``(n,)`` bool: some given digit repeats in a row, column or box (vectorised)."""
    units = np.array(_geometry(size).units)
    out = []
    for start in range(0, len(grids), _CHUNK):
        values = np.sort(np.asarray(grids[start:start + _CHUNK]).astype(np.uint8)[:, units], -1)
        out.append(np.any((values[..., 1:] == values[..., :-1]) & (values[..., 1:] > 0),
                          axis=(1, 2)))
    return np.concatenate(out) if out else np.zeros(0, dtype=bool)


def check_unique(grid: np.ndarray, size: int) -> None:
    """Raise ``ValueError`` unless ``grid`` (digits, 0 = blank) has exactly one solution.

    Cost: one solver run that stops at the second solution (microseconds for 4x4,
    milliseconds for hard 9x9 puzzles).
    """
    found = len(solve(grid, size, limit=2))
    if found == 0:
        raise ValueError("puzzle has no solution")
    if found > 1:
        raise ValueError("puzzle has more than one solution (a unique solution is required)")


def parse_grid(text: str, size: int | None = None, validate: bool = True,
               unique: bool = False) -> np.ndarray:
    """A row-major puzzle string (``.`` or ``0`` for blanks) as ``(size*size,)`` digits.

    Args:
        text: ``size*size`` characters, each an ASCII digit ``1..size`` or a blank.
        size: 4, 6 or 9; inferred from the length when None.
        validate: reject givens that contradict each other (a digit twice in a row,
            column or box).
        unique: also require exactly one solution (runs the solver).

    Raises:
        ValueError: wrong length, an invalid character, contradicting givens, or (with
            ``unique``) no or several solutions; the message says which and where.
    """
    size = size or infer_size(len(text))
    box_shape(size)
    if len(text) != size * size:
        raise ValueError(f"a {size}x{size} Sudoku needs {size * size} characters; got {len(text)}")
    digits = []
    for i, ch in enumerate(text):
        if ch == ".":
            digits.append(0)
        elif ch in _DIGIT_CHARS and int(ch) <= size:
            digits.append(int(ch))
        else:
            raise ValueError(f"invalid character {ch!r} at position {i} of a {size}x{size} "
                             f"Sudoku (expected 1-{size}, '.' or '0')")
    grid = np.array(digits, dtype=np.int64)
    if validate or unique:
        conflict = find_conflict(grid, size)
        if conflict is not None:
            raise ValueError(f"contradicting givens in a {size}x{size} Sudoku: {conflict}")
    if unique:
        check_unique(grid, size)
    return grid


def format_grid(digits: np.ndarray) -> str:
    """Inverse of ``parse_grid``: blanks as ``.``."""
    return "".join("." if d == 0 else str(int(d)) for d in digits)


def is_valid_solution(grids: np.ndarray, size: int) -> np.ndarray:
    """``(n,)`` bool: each ``(n, S)`` grid is complete and breaks no rule."""
    units = np.array(_geometry(size).units)           # (3*size, size)
    digits = np.arange(1, size + 1, dtype=np.uint8)
    grids = np.asarray(grids)
    out = []
    for i in range(0, len(grids), _CHUNK):              # uint8 after clipping: no wrap-around
        chunk = np.clip(grids[i:i + _CHUNK], 0, size + 1).astype(np.uint8)
        out.append(np.all(np.sort(chunk[:, units], axis=-1) == digits, axis=(1, 2)))
    return np.concatenate(out) if out else np.zeros(0, dtype=bool)


@dataclass
class SudokuRecords:
    """Puzzles as read from or written to CSV. Arrays are ``(n, S)`` / ``(n,)``."""

    puzzles: np.ndarray
    solutions: np.ndarray
    ratings: np.ndarray
    sources: list[str]

    def __len__(self) -> int:
        return len(self.puzzles)


def read_csv(path: str | Path, size: int | None = None, limit: int | None = None,
             check_unique: bool = False) -> SudokuRecords:
    """Read a Sudoku-Extreme style CSV (``source,question,answer,rating``).

    Blanks may be ``.`` or ``0``. Every question's givens must be consistent, and every
    answer a valid complete grid that agrees with its question's givens.

    Args:
        path: the CSV file (UTF-8, optional byte-order mark).
        size: expected grid size; inferred from the first row when None.
        limit: read at most this many puzzles.
        check_unique: also require each question to have exactly one solution (one solver
            run per puzzle; use it when exact-match accuracy must be well defined).

    Raises:
        FileNotFoundError: no such file.
        ValueError: anything else wrong with the file (its format, a character,
            contradicting givens, a wrong answer); the message starts with ``<path>:<line>:``
            and says what was expected.
    """
    path = Path(path)
    rows = read_rows(path, size, limit, "puzzle", infer_size, _size_hint)
    size, lines = rows.size, rows.lines
    puzzles = _decode_strings(rows.questions, size, path, lines, "question", blanks_ok=True)
    solutions = _decode_strings(rows.answers, size, path, lines, "answer", blanks_ok=False)
    conflicts = _has_conflicts(puzzles, size)
    if conflicts.any():
        i = int(np.argmax(conflicts))
        raise ValueError(f"{path}:{lines[i]}: contradicting givens in the question: "
                         f"{find_conflict(puzzles[i], size)}")
    valid = is_valid_solution(solutions, size)
    agrees = np.all((puzzles == 0) | (puzzles == solutions), axis=1)
    for ok, what in ((valid, "answer is not a valid complete grid"),
                     (agrees, "answer contradicts the question's givens")):
        if not ok.all():
            raise ValueError(f"{path}:{lines[int(np.argmin(ok))]}: {what}")
    if check_unique:
        for line, puzzle in zip(lines, puzzles):
            if len(solve(puzzle, size, limit=2)) > 1:
                raise ValueError(f"{path}:{line}: question has more than one solution "
                                 "(check_unique requires exactly one)")
    return SudokuRecords(puzzles, solutions, rows.ratings, rows.sources)


def _size_hint(length: int, size: int) -> str:
    """Which other Sudoku a string of ``length`` characters looks like, if any."""
    other = [s for s in BOX_SHAPES if s * s == length]
    return (f"; this looks like a {other[0]}x{other[0]} Sudoku, but the task expects "
            f"{size}x{size}" if other else "")


def _decode_strings(texts: list[str], size: int, path: Path, lines: list[int], name: str,
                    blanks_ok: bool) -> np.ndarray:
    raw = np.frombuffer("".join(texts).encode("ascii", "replace"), dtype=np.uint8)
    raw = raw.reshape(len(texts), size * size)
    digits = raw.astype(np.int64) - ord("0")
    blank = (raw == ord(".")) | (raw == ord("0"))
    bad = ~(blank | ((digits >= 1) & (digits <= size)))
    if not blanks_ok:
        bad |= blank
    if bad.any():
        row, col = np.argwhere(bad)[0]
        ch = texts[row][col]
        expected = f"1-{size}" + (", '.' or '0'" if blanks_ok else "")
        raise ValueError(f"{path}:{lines[row]}: {name}: invalid character {ch!r} at position "
                         f"{col} (expected {expected})")
    return np.where(blank, 0, digits)


def write_csv(path: str | Path, records: SudokuRecords) -> None:
    """Write records as ``source,question,answer,rating`` with ``.`` for blanks."""
    write_rows(path, records.sources, map(format_grid, records.puzzles),
               map(format_grid, records.solutions), records.ratings)
