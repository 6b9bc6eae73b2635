"""Sudoku: 4x4 (2x2 boxes), 6x6 (2x3 boxes) and 9x9 (3x3 boxes).

Grids are numpy int arrays ``(n, size*size)``, row-major, digits ``1..size``, ``0`` = blank.
Tokens as in HRM: PAD 0, blank 1, digit d -> d + 1 (vocab ``size + 2``); every cell is
supervised.

The generator fills a random grid, then removes clues in random order while the solution
stays unique, giving minimal puzzles; ``max_givens``/``min_givens`` and ``min_difficulty``
(solver effort, see ``difficulty``) are the difficulty knobs. Everything is pure Python
bitmask search: candidates of a cell are an ``int`` with bit ``d-1`` set when digit d fits.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

from hrm_rl.config import DataConfig
from hrm_rl.tasks.base import PuzzleBatch, Task
from hrm_rl.tasks.csvio import read_rows, write_rows

BOX_SHAPES = {4: (2, 2), 6: (2, 3), 9: (3, 3)}


def box_shape(size: int) -> tuple[int, int]:
    """``(rows, cols)`` of a box for a supported grid size."""
    if size not in BOX_SHAPES:
        raise ValueError(f"unsupported Sudoku size {size}; supported sizes: 4, 6, 9")
    return BOX_SHAPES[size]


# ----------------------------------------------------------------------------- geometry


@dataclass(frozen=True)
class _Geometry:
    size: int
    units: tuple[tuple[int, ...], ...]          # rows, then columns, then boxes
    peers: tuple[tuple[int, ...], ...]          # per cell, the other cells sharing a unit
    intersections: tuple[tuple[tuple[int, ...], tuple[int, ...], tuple[int, ...]], ...]
    full: int = field(default=0)


@lru_cache(maxsize=None)
def _geometry(size: int) -> _Geometry:
    br, bc = box_shape(size)
    rows = [tuple(r * size + c for c in range(size)) for r in range(size)]
    cols = [tuple(r * size + c for r in range(size)) for c in range(size)]
    boxes = [tuple((r0 + r) * size + c0 + c for r in range(br) for c in range(bc))
             for r0 in range(0, size, br) for c0 in range(0, size, bc)]
    units = tuple(rows + cols + boxes)
    peers = tuple(tuple(sorted({p for u in units if cell in u for p in u} - {cell}))
                  for cell in range(size * size))
    inter = []
    for box in boxes:
        for line in rows + cols:
            common = tuple(sorted(set(box) & set(line)))
            if common:
                inter.append((common, tuple(sorted(set(box) - set(common))),
                              tuple(sorted(set(line) - set(common)))))
    return _Geometry(size, units, peers, tuple(inter), (1 << size) - 1)


# ----------------------------------------------------------------------------- solver


class _Contradiction(Exception):
    pass


def _assign(cand: list[int], cell: int, bit: int, geo: _Geometry) -> None:
    """Set ``cell`` to ``bit`` and eliminate it from peers, following naked singles."""
    cand[cell] = bit
    stack = [cell]
    peers = geo.peers
    while stack:
        c = stack.pop()
        b = cand[c]
        for p in peers[c]:
            v = cand[p]
            if v & b:
                v &= ~b
                if not v:
                    raise _Contradiction
                cand[p] = v
                if not v & (v - 1):
                    stack.append(p)


def _hidden_singles(cand: list[int], geo: _Geometry) -> bool:
    """Place every digit that fits in only one cell of a unit. Returns True if any placed."""
    changed = False
    full = geo.full
    for unit in geo.units:
        once = twice = placed = 0
        for c in unit:
            v = cand[c]
            twice |= once & v
            once |= v
            if not v & (v - 1):
                placed |= v
        if placed == full:
            continue
        if once != full:
            raise _Contradiction
        hidden = once & ~twice & ~placed
        while hidden:
            b = hidden & -hidden
            hidden ^= b
            for c in unit:
                if cand[c] & b:
                    if cand[c] != b:
                        _assign(cand, c, b, geo)
                        changed = True
                    break
    return changed


def _locked_candidates(cand: list[int], geo: _Geometry) -> bool:
    """Pointing and claiming eliminations. Returns True if anything was eliminated."""
    changed = False
    for common, box_rest, line_rest in geo.intersections:
        inside = 0
        for c in common:
            v = cand[c]
            if v & (v - 1):
                inside |= v
        if not inside:
            continue
        in_box = in_line = 0
        for c in box_rest:
            in_box |= cand[c]
        for c in line_rest:
            in_line |= cand[c]
        for rest, drop in ((line_rest, inside & ~in_box), (box_rest, inside & ~in_line)):
            if not drop:
                continue
            for c in rest:
                v = cand[c]
                if v & drop and v & (v - 1):
                    v &= ~drop
                    if not v:
                        raise _Contradiction
                    cand[c] = v
                    changed = True
                    if not v & (v - 1):
                        _assign(cand, c, v, geo)
    return changed


def _propagate(cand: list[int], geo: _Geometry, locked: bool) -> None:
    while _hidden_singles(cand, geo) or (locked and _locked_candidates(cand, geo)):
        pass


def _initial(puzzle, geo: _Geometry) -> list[int]:
    cand = [geo.full] * (geo.size * geo.size)
    for cell, d in enumerate(puzzle):
        if d:
            if not cand[cell] & (1 << (d - 1)):
                raise _Contradiction
            _assign(cand, cell, 1 << (d - 1), geo)
    return cand


def _search(cand: list[int], geo: _Geometry, limit: int, out: list[list[int]],
            counter: list[int], locked: bool, rng: np.random.Generator | None) -> None:
    try:
        _propagate(cand, geo, locked)
    except _Contradiction:
        return
    best, best_n = -1, 99
    for i, v in enumerate(cand):
        if v & (v - 1):
            n = v.bit_count()
            if n < best_n:
                best, best_n = i, n
                if n == 2:
                    break
    if best < 0:
        out.append(cand)
        return
    v = cand[best]
    bits = [1 << k for k in range(geo.size) if v >> k & 1]
    if rng is not None:
        rng.shuffle(bits)
    for b in bits:
        counter[0] += 1
        new = cand[:]
        try:
            _assign(new, best, b, geo)
        except _Contradiction:
            continue
        _search(new, geo, limit, out, counter, locked, rng)
        if len(out) >= limit:
            return


def _to_digits(cand: list[int]) -> np.ndarray:
    return np.array([v.bit_length() for v in cand], dtype=np.int64)


def solve(puzzle: np.ndarray, size: int, limit: int = 2) -> list[np.ndarray]:
    """Up to ``limit`` solutions of ``puzzle`` (``(size*size,)`` digits, 0 = blank)."""
    geo = _geometry(size)
    try:
        cand = _initial(np.asarray(puzzle).tolist(), geo)
    except _Contradiction:
        return []
    out: list[list[int]] = []
    _search(cand, geo, limit, out, [0], False, None)
    return [_to_digits(c) for c in out]


def difficulty(puzzle: np.ndarray, size: int) -> int:
    """Solver effort: guesses made by a solver that applies naked singles, hidden singles
    and locked candidates before each guess, while proving the solution unique.

    0 means the puzzle falls to those techniques alone. (A plain fewest-candidates
    backtracker's guess count does not track human or tdoku difficulty; this one does.)
    """
    geo = _geometry(size)
    counter = [0]
    try:
        _search(_initial(np.asarray(puzzle).tolist(), geo), geo, 2, [], counter, True, None)
    except _Contradiction:
        pass
    return counter[0]


def _has_other_solution(clues: list[int], cell: int, value: int, geo: _Geometry) -> bool:
    """Whether the clues (without ``cell``) admit a solution where ``cell != value``."""
    others = 0
    for p in geo.peers[cell]:
        if clues[p]:
            others |= 1 << (clues[p] - 1)
    if others | (1 << (value - 1)) == geo.full:
        return False  # the remaining clues force the value by a naked single
    try:
        cand = _initial(clues, geo)
        v = cand[cell] & ~(1 << (value - 1))
        if not v:
            return False
        cand[cell] = v
        if not v & (v - 1):
            _assign(cand, cell, v, geo)
    except _Contradiction:
        return False
    out: list[list[int]] = []
    _search(cand, geo, 1, out, [0], False, None)
    return bool(out)


def _random_grid(size: int, rng: np.random.Generator) -> list[int]:
    geo = _geometry(size)
    out: list[list[int]] = []
    _search([geo.full] * (size * size), geo, 1, out, [0], False, rng)
    return _to_digits(out[0]).tolist()


def _minimal_puzzle(solution: list[int], size: int, rng: np.random.Generator,
                    min_givens: int) -> list[int]:
    geo = _geometry(size)
    clues = list(solution)
    givens = len(clues)
    for cell in rng.permutation(size * size).tolist():
        if givens <= min_givens:
            break
        value = clues[cell]
        clues[cell] = 0
        if _has_other_solution(clues, cell, value, geo):
            clues[cell] = value
        else:
            givens -= 1
    return clues


def generate(n: int, size: int, rng: np.random.Generator, max_givens: int | None = None,
             min_givens: int | None = None, min_difficulty: int = 0,
             progress: bool = False) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``n`` distinct puzzles with exactly one solution each.

    Clues are removed from a random full grid in random order while the solution stays
    unique; removal stops at ``min_givens`` (the puzzle is then not necessarily minimal),
    otherwise the result is minimal. Puzzles with more than ``max_givens`` givens or a
    ``difficulty`` below ``min_difficulty`` are rejected and another is drawn.

    Returns:
        ``puzzles (n, S)``, ``solutions (n, S)`` and ``ratings (n,)`` (the ``difficulty``).
    """
    box_shape(size)
    cells = size * size
    if max_givens is not None and min_givens is not None and max_givens < min_givens:
        raise ValueError(f"max_givens={max_givens} is below min_givens={min_givens}")
    seen: set[bytes] = set()
    puzzles, solutions, ratings = [], [], []
    repeats = 0
    bar = tqdm(total=n, desc=f"generating {size}x{size} Sudoku", disable=not progress,
               leave=False)
    attempts = 0
    while len(puzzles) < n:
        attempts += 1
        if attempts > 10_000 + 200 * n:
            raise ValueError(f"found only {len(puzzles)} of {n} distinct {size}x{size} puzzles "
                             f"in {attempts - 1} attempts: the givens/difficulty constraints are "
                             "too tight (or ask for fewer)")
        solution = _random_grid(size, rng)
        clues = _minimal_puzzle(solution, size, rng, min_givens or 0)
        givens = cells - clues.count(0)
        if max_givens is not None and givens > max_givens:
            continue
        rating = difficulty(np.array(clues), size)
        if rating < min_difficulty:
            continue
        key = bytes(clues)
        if key in seen:
            repeats += 1
            if repeats > 1000 + 20 * n:
                raise ValueError(f"found only {len(seen)} distinct {size}x{size} puzzles with "
                                 f"these constraints after {repeats} repeats; ask for fewer")
            continue
        seen.add(key)
        puzzles.append(clues)
        solutions.append(solution)
        ratings.append(rating)
        bar.update(1)
    bar.close()
    return (np.array(puzzles, dtype=np.int64).reshape(n, cells),
            np.array(solutions, dtype=np.int64).reshape(n, cells),
            np.array(ratings, dtype=np.int64))


# ----------------------------------------------------------------------------- data I/O

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


# ----------------------------------------------------------------------------- symmetry


def _line_orders(size: int, group: int, rng: np.random.Generator | None, n: int) -> np.ndarray:
    """Orders of rows (or columns) keeping bands of ``group`` lines together.

    With ``rng``: ``(n, size)`` random orders; without: every order, ``(count, size)``.
    """
    bands = size // group
    if rng is None:
        out = []
        for band_order in itertools.permutations(range(bands)):
            for inner in itertools.product(itertools.permutations(range(group)), repeat=bands):
                out.append([band_order[b] * group + inner[b][i] for b in range(bands)
                            for i in range(group)])
        return np.array(out)
    band_order = np.argsort(rng.random((n, bands)), axis=1)
    inner = np.argsort(rng.random((n, bands, group)), axis=2)
    return (band_order[:, :, None] * group + inner).reshape(n, size)


def _cell_index(rows: np.ndarray, cols: np.ndarray, size: int) -> np.ndarray:
    """``(n, S)`` source cell of each new cell for row/column orders ``(n, size)``."""
    return (rows[:, :, None] * size + cols[:, None, :]).reshape(len(rows), size * size)


@lru_cache(maxsize=None)
def _all_geometric(size: int) -> np.ndarray:
    """Every geometric transform of the group, ``(T, S)`` source-cell indices."""
    br, bc = box_shape(size)
    rows, cols = _line_orders(size, br, None, 0), _line_orders(size, bc, None, 0)
    index = _cell_index(np.repeat(rows, len(cols), 0), np.tile(cols, (len(rows), 1)), size)
    if br == bc:
        t = index.reshape(-1, size, size).transpose(0, 2, 1).reshape(-1, size * size)
        index = np.concatenate([index, t])
    return index


def canonical_key(puzzle: np.ndarray, size: int) -> bytes:
    """A key shared by exactly the puzzles equivalent under the augmentation group
    (geometric transforms x digit relabelling). Practical for 4x4 and 6x6 only."""
    if size == 9:
        raise ValueError("canonical_key is only practical for 4x4 and 6x6 (9x9 has 3.4M "
                         "geometric transforms); use exact deduplication for 9x9")
    index = _all_geometric(size)
    views = np.asarray(puzzle)[index]                               # (T, S)
    # Relabel digits by order of first appearance in each view.
    first = np.where(views[:, :, None] == np.arange(1, size + 1), np.arange(size * size)[:, None],
                     size * size).min(axis=1)                       # (T, size)
    rank = np.argsort(np.argsort(first, axis=1), axis=1) + 1        # new label per old digit
    relabelled = np.where(views == 0, 0, np.take_along_axis(rank, np.maximum(views - 1, 0), 1))
    best = relabelled[np.lexsort(relabelled.T[::-1])[0]]
    return best.astype(np.uint8).tobytes()


def split_disjoint(puzzles: np.ndarray, n_test: int, rng: np.random.Generator,
                   by: str = "orbit") -> tuple[np.ndarray, np.ndarray]:
    """Indices ``(train, test)`` with no training puzzle equivalent (``by="orbit"``) or
    identical (``by="exact"``) to a test puzzle. Whole classes go to test until it holds at
    least ``n_test`` puzzles (then it is cut to ``n_test``; the cut rows are dropped)."""
    size = infer_size(puzzles.shape[1])
    if by == "orbit" and size != 9:
        keys = [canonical_key(p, size) for p in puzzles]
    elif by in ("orbit", "exact"):
        keys = [p.astype(np.uint8).tobytes() for p in puzzles]
    else:
        raise ValueError(f"split_disjoint by must be 'orbit' or 'exact', got {by!r}")
    classes: dict[bytes, list[int]] = {}
    for i, k in enumerate(keys):
        classes.setdefault(k, []).append(i)
    groups = list(classes.values())
    if len(groups) < 2:
        raise ValueError("all puzzles are equivalent; cannot make disjoint train/test sets")
    test: list[int] = []
    order = rng.permutation(len(groups))
    taken = 0
    for taken, g in enumerate(order, start=1):
        test.extend(groups[g])
        if len(test) >= n_test:
            break
    if taken >= len(groups):
        raise ValueError(f"only {len(groups)} distinct classes: test would take them all")
    train = [i for g in order[taken:] for i in groups[g]]
    return np.array(sorted(train)), np.array(sorted(test[:n_test]))


# ----------------------------------------------------------------------------- the task


class SudokuTask(Task):
    """Sudoku of side ``size`` (4, 6 or 9) as an HRM task."""

    def __init__(self, size: int = 9) -> None:
        self.box_shape = box_shape(size)
        self.size = size
        self.name = f"sudoku{size}"
        self.vocab_size = size + 2
        self.seq_len = size * size
        self.num_puzzle_ids = 1
        self._units: dict[torch.device, torch.Tensor] = {}

    # encoding ------------------------------------------------------------------
    def encode(self, puzzles: np.ndarray, solutions: np.ndarray) -> PuzzleBatch:
        """Digit grids ``(n, S)`` (0 = blank) and solutions -> tokens."""
        puzzles, solutions = np.asarray(puzzles), np.asarray(solutions)
        shape = (len(puzzles), self.seq_len)
        if puzzles.shape != shape or solutions.shape != shape:
            raise ValueError(f"{self.name}: puzzles and solutions must be {shape}; got "
                             f"{puzzles.shape} and {solutions.shape}")
        if puzzles.min(initial=0) < 0 or puzzles.max(initial=0) > self.size:
            raise ValueError(f"{self.name}: puzzle digits must be 0 (blank) to {self.size}")
        if solutions.min(initial=1) < 1 or solutions.max(initial=1) > self.size:
            raise ValueError(f"{self.name}: solution digits must be 1 to {self.size}")
        inputs = np.where(puzzles == 0, 1, puzzles + 1).astype(np.int64)
        return PuzzleBatch(inputs, (solutions + 1).astype(np.int64),
                           np.zeros(len(puzzles), dtype=np.int64))

    def decode(self, tokens: np.ndarray | torch.Tensor) -> np.ndarray:
        """Tokens -> digits (blank and padding -> 0)."""
        if isinstance(tokens, torch.Tensor):
            tokens = tokens.detach().cpu().numpy()
        return np.where(tokens >= 2, tokens - 1, 0).astype(np.int64)

    # data ------------------------------------------------------------------------
    def read_csv(self, path: str | Path, check_unique: bool = False) -> PuzzleBatch:
        """Load a CSV of ``size x size`` puzzles (see the module function ``read_csv``)."""
        records = read_csv(path, self.size, check_unique=check_unique)
        return self.encode(records.puzzles, records.solutions)

    def write_csv(self, path: str | Path, batch: PuzzleBatch) -> None:
        n = len(batch)
        write_csv(path, SudokuRecords(self.decode(batch.inputs), self.decode(batch.labels),
                                      np.zeros(n), [self.name] * n))

    def generate_splits(self, n_train: int, n_test: int, data: DataConfig,
                        rng: np.random.Generator, progress: bool = False
                        ) -> tuple[PuzzleBatch, PuzzleBatch]:
        """Generate ``n_train + n_test`` distinct puzzles and split them disjointly
        (``data.split_by``); an orbit split may leave somewhat fewer training puzzles."""
        puzzles, solutions, _ = generate(n_train + n_test, self.size, rng, data.max_givens,
                                         data.min_givens, data.min_difficulty, progress)
        train, test = split_disjoint(puzzles, n_test, rng, data.split_by)
        return (self.encode(puzzles[train], solutions[train]),
                self.encode(puzzles[test], solutions[test]))

    def sample(self, n: int, data: DataConfig, rng: np.random.Generator,
               progress: bool = False) -> PuzzleBatch:
        """``n`` fresh minimal puzzles with the givens and difficulty knobs of ``data``."""
        puzzles, solutions, _ = generate(n, self.size, rng, data.max_givens, data.min_givens,
                                         data.min_difficulty, progress)
        return self.encode(puzzles, solutions)

    difficulty_name = "givens"

    def difficulty(self, batch: PuzzleBatch) -> np.ndarray:
        """``(n,)`` number of given digits (fewer givens: harder)."""
        return (np.asarray(batch.inputs) >= 2).sum(1).astype(np.int64)

    def symmetry_keys(self, inputs: np.ndarray) -> list[bytes]:
        """Canonical keys under the augmentation group (geometry x digit relabelling) for
        4x4 and 6x6; identical tokens for 9x9, whose group is too large to canonicalise."""
        if self.size == 9:
            return super().symmetry_keys(inputs)
        return [canonical_key(row, self.size) for row in np.asarray(inputs) - 1]

    # augmentation ------------------------------------------------------------------
    def augment(self, batch: PuzzleBatch, rng: np.random.Generator) -> PuzzleBatch:
        """Per row: random band/row and stack/column permutations, transpose (square boxes
        only) and digit relabelling. Inputs and labels move together."""
        n, size = len(batch), self.size
        br, bc = self.box_shape
        index = _cell_index(_line_orders(size, br, rng, n), _line_orders(size, bc, rng, n), size)
        if br == bc:
            flip = rng.random(n) < 0.5
            t = index.reshape(n, size, size).transpose(0, 2, 1).reshape(n, -1)
            index = np.where(flip[:, None], t, index)
        lut = np.concatenate([np.tile([0, 1], (n, 1)),
                              np.argsort(rng.random((n, size)), axis=1) + 2], axis=1)

        def apply(tokens: np.ndarray) -> np.ndarray:
            return np.take_along_axis(lut, np.take_along_axis(tokens, index, 1), 1)

        return PuzzleBatch(apply(batch.inputs), apply(batch.labels), batch.puzzle_ids.copy())

    # checks ------------------------------------------------------------------------
    def _unit_matrix(self, device: torch.device) -> torch.Tensor:
        if device not in self._units:
            geo = _geometry(self.size)
            m = torch.zeros(len(geo.units), self.seq_len)
            for u, unit in enumerate(geo.units):
                m[u, list(unit)] = 1.0
            self._units[device] = m.to(device)
        return self._units[device]

    def violations(self, tokens: torch.Tensor) -> torch.Tensor:
        """``(n,)`` int64: repeated digits summed over rows, columns and boxes, plus one per
        cell that holds no digit."""
        digits = tokens - 2
        is_digit = (digits >= 0) & (digits < self.size)
        onehot = torch.nn.functional.one_hot(digits.clamp(0, self.size - 1), self.size)
        onehot = (onehot * is_digit.unsqueeze(-1)).float()            # (n, S, size)
        counts = torch.einsum("us,nsd->nud", self._unit_matrix(tokens.device), onehot)
        repeats = (counts - 1).clamp_min(0).sum(dim=(1, 2)).long()
        return repeats + (~is_digit).sum(-1)

    def render(self, inputs: np.ndarray, prediction: np.ndarray,
               labels: np.ndarray | None = None) -> str:
        """The grid: givens plain, predicted digits plain, wrong predictions as ``digit!``,
        cells without a digit as ``?``. Boxes separated by ``|`` and ``-``."""
        size, (br, bc) = self.size, self.box_shape
        given = self.decode(np.asarray(inputs))
        pred = self.decode(np.asarray(prediction))
        truth = self.decode(np.asarray(labels)) if labels is not None else None
        lines = []
        for r in range(size):
            if r and r % br == 0:
                lines.append("+".join(["-" * (3 * bc)] * (size // bc)))
            cells = []
            for c in range(size):
                i = r * size + c
                d = given[i] or pred[i]
                wrong = not given[i] and truth is not None and pred[i] != truth[i]
                text = (str(d) if d else "?") + ("!" if wrong else " ")
                cells.append((" " + text) + ("|" if c % bc == bc - 1 and c < size - 1 else ""))
            lines.append("".join(cells).rstrip())
        return "\n".join(lines)
