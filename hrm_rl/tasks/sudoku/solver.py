"""Sudoku geometry and the bitmask solver: box shapes, constraint propagation (naked and
hidden singles, locked candidates), search with a solution limit, and solver effort as
difficulty.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import lru_cache

import numpy as np


BOX_SHAPES = {4: (2, 2), 6: (2, 3), 9: (3, 3)}


def box_shape(size: int) -> tuple[int, int]:
    """``(rows, cols)`` of a box for a supported grid size."""
    if size not in BOX_SHAPES:
        raise ValueError(f"unsupported Sudoku size {size}; supported sizes: 4, 6, 9")
    return BOX_SHAPES[size]


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
