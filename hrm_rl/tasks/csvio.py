"""The ``source,question,answer,rating`` CSV files of Sudoku and Maze (the HRM dataset format).

Both tasks read and write the same layout: a header, then one puzzle a row with its question
and answer as strings of ``size*size`` characters and an optional numeric rating. This module
does the file handling; the tasks decode and check the strings. Every error is a
``ValueError`` whose message starts with ``<path>:<line>:`` (or ``<path>:``) and says what was
expected.
"""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable

import numpy as np

CSV_HEADER = ["source", "question", "answer", "rating"]


@dataclass
class CsvRows:
    """The rows of a file, strings not yet decoded.

    Attributes:
        sources, questions, answers: one string per row.
        ratings: ``(n,)`` float, 0 where a row has no rating.
        lines: the file line of each row, for messages.
        size: the grid side, as given or inferred from the first row.
    """

    sources: list[str]
    questions: list[str]
    answers: list[str]
    ratings: np.ndarray
    lines: list[int]
    size: int


def refuse_nul(path: Path, line: int, row: list[str]) -> None:
    """A ValueError naming the file and line when a field holds a NUL byte (Python's csv
    reader takes them, and no puzzle file of ours has one: a binary or corrupt file)."""
    if any("\x00" in field for field in row):
        raise ValueError(f"{path}:{line}: a NUL byte in the row; this is not a text CSV "
                         "(a binary or corrupt file?)")


def read_rows(path: Path, size: int | None, limit: int | None, noun: str,
              infer_size: Callable[[int], int],
              size_hint: Callable[[int, int], str]) -> CsvRows:
    """Read and check the rows of a ``source,question,answer,rating`` file.

    Each row needs at least three fields, and a question and an answer of ``size*size``
    characters; the characters themselves are the caller's to check.

    Args:
        path: the CSV file (UTF-8, optional byte-order mark).
        size: expected grid side; inferred from the first row's question when None.
        limit: read at most this many rows.
        noun: what a row holds, for messages (``"maze"``: "no such maze file", "no mazes
            in file").
        infer_size: grid side from a string length; raises ``ValueError`` when there is none.
        size_hint: ``(length, size)`` -> text appended to a wrong-length message, e.g.
            ``"; this looks like a 9x9 Sudoku, ..."`` (or ``""``).

    Raises:
        FileNotFoundError: no such file.
        ValueError: anything else wrong with the file.
    """
    if path.is_dir():
        raise ValueError(f"{path} is a directory; give the {noun} CSV file inside it")
    if not path.is_file():
        raise FileNotFoundError(f"no such {noun} file: {path}")
    sources, questions, answers, ratings, lines = [], [], [], [], []
    with path.open(newline="", encoding="utf-8-sig") as f:
        reader = csv.reader(f)
        try:
            header = next(reader, None)
            if header is None or [h.strip() for h in header[:3]] != CSV_HEADER[:3]:
                raise ValueError(f"{path}:1: expected the header {','.join(CSV_HEADER)}, "
                                 f"got {','.join(header or [])!r}")
            for row in reader:
                line = reader.line_num
                if not row:
                    continue
                refuse_nul(path, line, row)
                size = _check_row(path, line, row, size, infer_size, size_hint)
                sources.append(row[0])
                questions.append(row[1])
                answers.append(row[2])
                lines.append(line)
                try:
                    ratings.append(float(row[3]) if len(row) > 3 and row[3] != "" else 0.0)
                except ValueError:
                    raise ValueError(f"{path}:{line}: rating {row[3]!r} is not a number") from None
                if limit is not None and len(questions) >= limit:
                    break
        except UnicodeDecodeError as err:
            raise ValueError(f"{path}: not UTF-8 text ({err.reason}) after line "
                             f"{reader.line_num}; save the file as UTF-8") from None
        except csv.Error as err:
            raise ValueError(f"{path}:{reader.line_num}: malformed CSV: {err}") from None
    if not questions:
        raise ValueError(f"{path}: no {noun}s in file")
    return CsvRows(sources, questions, answers, np.array(ratings), lines, size)


def _check_row(path: Path, line: int, row: list[str], size: int | None,
               infer_size: Callable[[int], int], size_hint: Callable[[int, int], str]) -> int:
    """Field count and string lengths of one CSV row; returns the (inferred) grid side."""
    if len(row) < 3:
        raise ValueError(f"{path}:{line}: expected source,question,answer[,rating]; "
                         f"got {len(row)} field(s)")
    if size is None:
        try:
            size = infer_size(len(row[1]))
        except ValueError as err:
            raise ValueError(f"{path}:{line}: question: {err}") from None
    cells = size * size
    for name, text in (("question", row[1]), ("answer", row[2])):
        if len(text) != cells:
            raise ValueError(f"{path}:{line}: {name} has {len(text)} characters, expected "
                             f"{cells} for {size}x{size}{size_hint(len(text), size)}")
    return size


def write_rows(path: str | Path, sources: Iterable[str], questions: Iterable[str],
               answers: Iterable[str], ratings: Iterable[float]) -> None:
    """Write ``source,question,answer,rating`` rows (grids already as strings)."""
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(CSV_HEADER)
    for src, q, a, r in zip(sources, questions, answers, ratings):
        writer.writerow([src, q, a, _format_rating(r)])
    Path(path).write_text(buf.getvalue())


def _format_rating(rating: float) -> str:
    """``3`` for whole numbers (as the HRM CSVs write them), else the shortest text that
    reads back as the same float (``:g`` would keep only 6 digits)."""
    rating = float(rating)
    return f"{rating:.0f}" if rating.is_integer() and abs(rating) < 1e15 else repr(rating)
