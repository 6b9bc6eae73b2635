"""Pictures of puzzles for ``render_mode="rgb_array"`` (numpy only, no font files).

Symbol grids (Sudoku) are drawn as cells with a 3x5 bitmap digit each: givens black,
predicted cells blue when right and red when wrong (answers unknown to the renderer stay
blue). Colour grids (maze, ARC) come from the task's ``cell_colors``, one pixel per cell,
scaled up here.
"""

from __future__ import annotations

import numpy as np

_GLYPHS = {  # 3x5 bitmaps, rows top to bottom
    "0": ("111", "101", "101", "101", "111"), "1": ("010", "110", "010", "010", "111"),
    "2": ("111", "001", "111", "100", "111"), "3": ("111", "001", "111", "001", "111"),
    "4": ("101", "101", "111", "001", "001"), "5": ("111", "100", "111", "001", "111"),
    "6": ("111", "100", "111", "101", "111"), "7": ("111", "001", "010", "010", "010"),
    "8": ("111", "101", "111", "101", "111"), "9": ("111", "101", "111", "001", "111"),
    "?": ("111", "001", "011", "000", "010"),
}
_BLACK, _BLUE, _RED = (20, 20, 20), (30, 90, 220), (220, 40, 40)
CELL = 24


def _glyph(ch: str) -> np.ndarray:
    return np.array([[c == "1" for c in row] for row in _GLYPHS[ch]])


def render_rgb(task, inputs: np.ndarray, prediction: np.ndarray,
               labels: np.ndarray | None) -> np.ndarray:
    """``(H, W, 3)`` uint8 picture of one grid puzzle and its predicted answer."""
    colors = task.cell_colors(inputs, prediction, labels)
    if colors is not None:
        return _scale_cells(colors)
    given = task.decode(inputs)
    pred = task.decode(prediction)
    truth = task.decode(labels) if labels is not None else None
    size = int(round(len(given) ** 0.5))
    br, bc = task.box_shape or (size, size)
    img = np.full((size * CELL + 1, size * CELL + 1, 3), 255, dtype=np.uint8)
    for i in range(size + 1):
        thick = 2 if i % br == 0 else 1
        img[i * CELL:i * CELL + thick, :] = 0 if thick == 2 else 160
    for j in range(size + 1):
        thick = 2 if j % bc == 0 else 1
        img[:, j * CELL:j * CELL + thick] = 0 if thick == 2 else 160
    scale = 3
    for cell in range(len(given)):
        r, c = divmod(cell, size)
        digit = given[cell] or pred[cell]
        color = _BLACK if given[cell] else (
            _RED if truth is not None and pred[cell] != truth[cell] else _BLUE)
        glyph = np.kron(_glyph(str(digit) if digit else "?"), np.ones((scale, scale), bool))
        y = r * CELL + (CELL - glyph.shape[0]) // 2 + 1
        x = c * CELL + (CELL - glyph.shape[1]) // 2 + 1
        img[y:y + glyph.shape[0], x:x + glyph.shape[1]][glyph] = color
    return img


def _scale_cells(colors: np.ndarray) -> np.ndarray:
    """Blow a one-pixel-per-cell picture up to ``CELL``-pixel cells with grey grid lines."""
    img = np.kron(colors, np.ones((CELL, CELL, 1), dtype=np.uint8)).astype(np.uint8)
    img[::CELL, :] = 128
    img[:, ::CELL] = 128
    return img
