"""The ARC canvas codec: a grid in the top-left corner of a 30x30 canvas with EOS borders,
shape recovery, decoding, and the dihedral and colour transforms of whole canvases.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np
import torch


GRID = 30
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


def encode_grid(grid: np.ndarray, fill: int = PAD) -> np.ndarray:
    """A grid as 900 canvas tokens (``fill`` at the PAD positions), ``(900,)`` int16."""
    h, w = grid.shape
    canvas = np.full((GRID, GRID), fill, dtype=np.int16)
    canvas[:h, :w] = grid + COLOR0
    if h < GRID:
        canvas[h, :w] = EOS
    if w < GRID:
        canvas[:h, w] = EOS
    return canvas.reshape(SEQ_LEN)


def grid_shapes(tokens: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Rows and columns of the grid in each canvas, ``(n,)`` each (0, 0 when empty).

    The grid is the largest-area top-left rectangle made only of colour tokens; anything
    else (EOS, PAD, a stray colour) ends it. For a well-formed encoding this is exactly
    the encoded grid. Accepts ``(n, 900)`` or ``(900,)`` (then returns 0-d arrays).
    """
    tokens = np.asarray(tokens)
    colour = ((tokens >= COLOR0) & (tokens < VOCAB)).reshape(-1, GRID, GRID)
    lead = np.cumprod(colour, axis=2, dtype=np.int16).sum(2)          # (n, 30) leading run
    width = np.minimum.accumulate(lead, axis=1)                       # staircase width
    area = width * np.arange(1, GRID + 1)
    best = area.argmax(1)
    h = np.where(area.max(1) > 0, best + 1, 0)
    w = np.where(h > 0, width[np.arange(len(best)), best], 0)
    if tokens.ndim == 1:
        return h[0], w[0]
    return h.astype(np.int64), w.astype(np.int64)


def decode_grids(tokens: np.ndarray | torch.Tensor) -> list[np.ndarray]:
    """Canvases ``(n, 900)`` -> the cropped grids, a list of ``(rows, cols)`` uint8 arrays."""
    if isinstance(tokens, torch.Tensor):
        tokens = tokens.detach().cpu().numpy()
    tokens = np.asarray(tokens).reshape(-1, SEQ_LEN)
    hs, ws = grid_shapes(tokens)
    canvases = tokens.reshape(-1, GRID, GRID)
    return [(canvases[i, :h, :w] - COLOR0).astype(np.uint8) for i, (h, w) in
            enumerate(zip(hs.tolist(), ws.tolist()))]


@lru_cache(maxsize=1)
def _source_maps() -> np.ndarray:
    """``(8, 31, 31, 900)`` int16: for dihedral d and grid shape (h, w), where each canvas
    position of the transformed canvas takes its token from: a source position, -1 for EOS
    or -2 for padding."""
    d = np.arange(DIHEDRAL)[:, None, None, None, None]
    h = np.arange(GRID + 1)[None, :, None, None, None]
    w = np.arange(GRID + 1)[None, None, :, None, None]
    r = np.arange(GRID)[None, None, None, :, None]
    c = np.arange(GRID)[None, None, None, None, :]
    t, fr, fc = (d >> 2) & 1, (d >> 1) & 1, d & 1
    new_h, new_w = np.where(t, w, h), np.where(t, h, w)
    r1 = np.where(fr, new_h - 1 - r, r)
    c1 = np.where(fc, new_w - 1 - c, c)
    src = np.where(t, c1, r1) * GRID + np.where(t, r1, c1)
    inside = (r < new_h) & (c < new_w)
    eos = ((r == new_h) & (c < new_w)) | ((c == new_w) & (r < new_h))
    out = np.where(inside, src, np.where(eos, -1, -2)).astype(np.int16)
    return out.reshape(DIHEDRAL, GRID + 1, GRID + 1, SEQ_LEN)


def _transform_canvases(tokens: np.ndarray, d: np.ndarray, cmap: np.ndarray,
                        fill: int) -> np.ndarray:
    """Apply dihedral ``d`` (``(n,)``) then colour map ``cmap`` (``(n, 10)``) to the grid in
    each canvas ``(n, 900)``, re-placed top-left with its EOS marks; ``fill`` elsewhere.
    Returns ``(n, 900)`` int16."""
    n = len(tokens)
    h, w = grid_shapes(tokens)
    where = _source_maps()[d, h, w]                                  # (n, 900)
    moved = np.take_along_axis(tokens, np.maximum(where, 0).astype(np.intp), axis=1)
    lut = np.concatenate([np.tile([PAD, EOS], (n, 1)), cmap.astype(np.int16) + COLOR0],
                         axis=1).astype(np.int16)
    coloured = np.take_along_axis(lut, np.clip(moved, 0, VOCAB - 1).astype(np.intp), axis=1)
    return np.where(where >= 0, coloured,
                    np.where(where == -1, EOS, fill)).astype(np.int16)


def _recolor(tokens: np.ndarray, cmap: np.ndarray) -> np.ndarray:
    """Colour tokens of ``tokens`` (``(n, 900)``) mapped through ``cmap`` (``(n, 10)``);
    PAD, EOS and ``IGNORE_LABEL`` stay."""
    lut = np.concatenate([np.tile(np.array([PAD, EOS], np.int16), (len(tokens), 1)),
                          cmap.astype(np.int16) + COLOR0], axis=1)
    mapped = np.take_along_axis(lut, np.clip(tokens, 0, VOCAB - 1).astype(np.intp), axis=1)
    return np.where(tokens >= COLOR0, mapped, tokens)
