"""The ARC canvas codec: a grid in the top-left corner of a square canvas (30x30 as in HRM,
or smaller for small-grid runs) with EOS borders, shape recovery, decoding, and the
dihedral and colour transforms of whole canvases. Functions of encoded canvases read the
canvas side from the token count (``canvas_side``).
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np
import torch


GRID = 30
"""HRM's canvas side (the largest ARC grid); ``ARCTask(canvas=...)`` may use a smaller one."""
SEQ_LEN = GRID * GRID
PAD, EOS, COLOR0 = 0, 1, 2
VOCAB = 12
NUM_COLORS = 10
DIHEDRAL = 8


def dihedral(grid: np.ndarray, d: int) -> np.ndarray:
    """One of the 8 symmetries of the square: transpose if bit 2, flip rows if bit 1,
    flip columns if bit 0 (in that order). ``d = 0`` is the identity."""
    g = grid.T if d & 4 else grid
    if d & 2:
        g = g[::-1]
    if d & 1:
        g = g[:, ::-1]
    return np.ascontiguousarray(g)


def inverse_dihedral(d: np.ndarray | int) -> np.ndarray | int:
    """The transform undoing ``d``: flips are involutions; after a transpose the row flip
    and the column flip trade places."""
    d = np.asarray(d)
    swapped = 4 | ((d & 1) << 1) | ((d >> 1) & 1)
    out = np.where(d & 4, swapped, d)
    return int(out) if out.ndim == 0 else out


def canvas_side(tokens: np.ndarray | torch.Tensor) -> int:
    """The side of the square canvases in ``tokens`` (``(..., side * side)``).

    Raises:
        ValueError: the last dimension is not a square number.
    """
    n = tokens.shape[-1]
    side = int(np.sqrt(n) + 0.5)
    if side * side != n or side == 0:
        raise ValueError(f"ARC canvases have side * side tokens; got rows of {n}")
    return side


def encode_grid(grid: np.ndarray, fill: int = PAD, side: int = GRID) -> np.ndarray:
    """A grid as ``side * side`` canvas tokens (``fill`` at the PAD positions), int16.

    Raises:
        ValueError: the grid does not fit the canvas.
    """
    h, w = grid.shape
    if h > side or w > side:
        raise ValueError(f"a {h}x{w} grid does not fit a {side}x{side} canvas")
    canvas = np.full((side, side), fill, dtype=np.int16)
    canvas[:h, :w] = grid + COLOR0
    if h < side:
        canvas[h, :w] = EOS
    if w < side:
        canvas[:h, w] = EOS
    return canvas.reshape(side * side)


def grid_shapes(tokens: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Rows and columns of the grid in each canvas, ``(n,)`` each (0, 0 when empty).

    The grid is the largest-area top-left rectangle made only of colour tokens; anything
    else (EOS, PAD, a stray colour) ends it. For a well-formed encoding this is exactly
    the encoded grid. Accepts ``(n, side * side)`` or ``(side * side,)`` (then returns 0-d
    arrays).
    """
    tokens = np.asarray(tokens)
    side = canvas_side(tokens)
    colour = ((tokens >= COLOR0) & (tokens < VOCAB)).reshape(-1, side, side)
    lead = np.cumprod(colour, axis=2, dtype=np.int16).sum(2)          # (n, side) leading run
    width = np.minimum.accumulate(lead, axis=1)                       # staircase width
    area = width * np.arange(1, side + 1)
    best = area.argmax(1)
    h = np.where(area.max(1) > 0, best + 1, 0)
    w = np.where(h > 0, width[np.arange(len(best)), best], 0)
    if tokens.ndim == 1:
        return h[0], w[0]
    return h.astype(np.int64), w.astype(np.int64)


def decode_grids(tokens: np.ndarray | torch.Tensor) -> list[np.ndarray]:
    """Canvases ``(n, side * side)`` -> the cropped grids, a list of ``(rows, cols)`` uint8
    arrays."""
    if isinstance(tokens, torch.Tensor):
        tokens = tokens.detach().cpu().numpy()
    side = canvas_side(tokens)
    tokens = np.asarray(tokens).reshape(-1, side * side)
    hs, ws = grid_shapes(tokens)
    canvases = tokens.reshape(-1, side, side)
    return [(canvases[i, :h, :w] - COLOR0).astype(np.uint8) for i, (h, w) in
            enumerate(zip(hs.tolist(), ws.tolist()))]


@lru_cache(maxsize=4)
def _source_maps(side: int = GRID) -> np.ndarray:
    """``(8, side + 1, side + 1, side * side)`` int16: for dihedral d and grid shape (h, w),
    where each canvas position of the transformed canvas takes its token from: a source
    position, -1 for EOS or -2 for padding."""
    d = np.arange(DIHEDRAL)[:, None, None, None, None]
    h = np.arange(side + 1)[None, :, None, None, None]
    w = np.arange(side + 1)[None, None, :, None, None]
    r = np.arange(side)[None, None, None, :, None]
    c = np.arange(side)[None, None, None, None, :]
    t, fr, fc = (d >> 2) & 1, (d >> 1) & 1, d & 1
    new_h, new_w = np.where(t, w, h), np.where(t, h, w)
    r1 = np.where(fr, new_h - 1 - r, r)
    c1 = np.where(fc, new_w - 1 - c, c)
    src = np.where(t, c1, r1) * side + np.where(t, r1, c1)
    inside = (r < new_h) & (c < new_w)
    eos = ((r == new_h) & (c < new_w)) | ((c == new_w) & (r < new_h))
    out = np.where(inside, src, np.where(eos, -1, -2)).astype(np.int16)
    return out.reshape(DIHEDRAL, side + 1, side + 1, side * side)


def _transform_canvases(tokens: np.ndarray, d: np.ndarray, cmap: np.ndarray,
                        fill: int) -> np.ndarray:
    """Apply dihedral ``d`` (``(n,)``) then colour map ``cmap`` (``(n, 10)``) to the grid in
    each canvas ``(n, side * side)``, re-placed top-left with its EOS marks; ``fill``
    elsewhere. Returns ``(n, side * side)`` int16."""
    n = len(tokens)
    h, w = grid_shapes(tokens)
    where = _source_maps(canvas_side(tokens))[d, h, w]               # (n, side * side)
    moved = np.take_along_axis(tokens, np.maximum(where, 0).astype(np.intp), axis=1)
    lut = np.concatenate([np.tile([PAD, EOS], (n, 1)), cmap.astype(np.int16) + COLOR0],
                         axis=1).astype(np.int16)
    coloured = np.take_along_axis(lut, np.clip(moved, 0, VOCAB - 1).astype(np.intp), axis=1)
    return np.where(where >= 0, coloured,
                    np.where(where == -1, EOS, fill)).astype(np.int16)


def _recolor(tokens: np.ndarray, cmap: np.ndarray) -> np.ndarray:
    """Colour tokens of ``tokens`` (``(n, side * side)``) mapped through ``cmap`` (``(n, 10)``);
    PAD, EOS and ``IGNORE_LABEL`` stay."""
    lut = np.concatenate([np.tile(np.array([PAD, EOS], np.int16), (len(tokens), 1)),
                          cmap.astype(np.int16) + COLOR0], axis=1)
    mapped = np.take_along_axis(lut, np.clip(tokens, 0, VOCAB - 1).astype(np.intp), axis=1)
    return np.where(tokens >= COLOR0, mapped, tokens)
