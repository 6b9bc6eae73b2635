"""Gymnasium environments over the HRM segment engine (``HRM-Sudoku-v0`` and friends)."""
