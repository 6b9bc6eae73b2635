"""Recorded rollouts: a core's segments over a split, recorded once and replayed without it.

What a segment computes never depends on when a policy halts, so every puzzle of a split can
be run to a cap once, its per-segment observations, predictions and correctness saved, and
the halting envs served from the file at numpy speed and with no model:

    record_rollouts("sudoku4", "train", "sudoku4-train.npz")        # or: hrm-rl rollouts record
    env = gym.make_vec("HRM-Sudoku-v0", num_envs=256, rollouts="sudoku4-train.npz")

A replayed env draws puzzles in the same order as a live one with the same seed and returns
the same observations (to float precision: the live env's batch composition differs from the
recording's), rewards, terminations and infos. Its ``max_segments`` may be at most the
recorded cap. This is what makes halting research possible on cores too large for a CPU:
record a paper-scale core once on a GPU, then study its halting anywhere.

File (``.npz``, written atomically):

* ``questions`` ``(n,)`` str: the puzzles in the task's CSV encoding; ``puzzles_csv`` the
  whole split as that CSV file's text (the replay's puzzles, for labels and rendering);
* ``features`` ``(n, K, N_FEATURES)`` float32, ``pred`` ``(n, K, seq_len)`` int16, ``correct`` ``(n, K)``
  bool, ``cell`` ``(n, K)`` float32, each after segment ``k + 1``; ``latent``
  ``(n, K, hidden)`` float32 when recorded with ``latent=True``;
* ``identity``: JSON with the checkpoint (path, weights SHA-256, run config), the split and
  the cap.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm.auto import tqdm

from hrm_rl.checkpoint import WEIGHTS, load_checkpoint
from hrm_rl.config import RunConfig, from_dict
from hrm_rl.data import ShuffledSource
from hrm_rl.segment_engine import SegmentEngine
from hrm_rl.tasks import PuzzleBatch, Task, make_task

FORMAT = "hrm-rl-rollouts-1"


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _csv_text(task: Task, puzzles: PuzzleBatch) -> str:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "split.csv"
        task.write_csv(path, puzzles)
        return path.read_text()


@torch.inference_mode()
def record_rollouts(checkpoint: str | Path, split: str, out: str | Path,
                    episodes: int | None = None, max_segments: int | None = None,
                    latent: bool = False, batch_size: int = 512, device: str = "cpu",
                    progress: bool = True) -> Path:
    """Run the first ``episodes`` puzzles of ``split`` (default all) for ``max_segments``
    segments (default the core's training cap) and save what the envs need per segment.

    Returns:
        The path written.
    """
    from hrm_rl.envs.halting import N_FEATURES, segment_state

    ckpt = load_checkpoint(checkpoint, device)
    task, model = ckpt.task, ckpt.model
    puzzles = ckpt.puzzles(split, progress)
    n = len(puzzles) if episodes is None else episodes
    if not 1 <= n <= len(puzzles):
        raise ValueError(f"episodes must be in [1, {len(puzzles)}] (the split's size), got {n}")
    puzzles = puzzles.take(slice(0, n))
    cap = ckpt.config.train.max_segments if max_segments is None else max_segments
    if not isinstance(cap, int) or cap < 1:
        raise ValueError(f"max_segments must be an int >= 1, got {max_segments!r}")
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    hidden, seq = model.config.hidden_size, task.seq_len
    arrays: dict[str, np.ndarray] = {
        "features": np.zeros((n, cap, N_FEATURES), np.float32), "pred": np.zeros((n, cap, seq), np.int16),
        "correct": np.zeros((n, cap), bool), "cell": np.zeros((n, cap), np.float32)}
    if latent:
        arrays["latent"] = np.zeros((n, cap, hidden), np.float32)
    bar = tqdm(total=n * cap, desc=f"recording {split}", unit="segment", disable=not progress)
    dev = torch.device(device)
    for start in range(0, n, batch_size):
        chunk = puzzles.take(slice(start, start + batch_size))
        rows = slice(start, start + len(chunk))
        engine = SegmentEngine(model, ShuffledSource(chunk, np.random.default_rng(0),
                                                     shuffle=False), len(chunk), dev)
        prev = torch.zeros(len(chunk), seq, dtype=torch.long, device=dev)
        for k in range(cap):
            seg = engine.step().out  # no cap, no halting: every row runs on
            state = segment_state(task, seg, engine.labels, engine.segments, prev,
                                  engine.segments == 1, cap, hidden)
            prev = state["pred"]
            for name in arrays:
                arrays[name][rows, k] = state[name].cpu().numpy()
            bar.update(len(chunk))
    bar.close()
    text = _csv_text(task, puzzles)
    rows_ = list(csv.reader(io.StringIO(text)))[1:]  # the question is the second column
    questions = np.array([row[1] for row in rows_])
    identity = {"format": FORMAT, "checkpoint": str(checkpoint),
                "checkpoint_path": str(ckpt.path), "weights_sha256": _sha256(ckpt.path / WEIGHTS),
                "config": ckpt.config.to_dict(), "split": str(split), "episodes": n,
                "max_segments": cap, "latent": latent}
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=out.parent, prefix=f".{out.name}.", suffix=".npz")
    os.close(fd)
    try:
        np.savez_compressed(tmp, questions=questions, puzzles_csv=np.array(text),
                            identity=np.array(json.dumps(identity)), **arrays)
        os.replace(tmp, out)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)
    return out


@dataclass
class Recording:
    """A loaded rollouts file (see the module docstring)."""

    path: Path
    identity: dict[str, Any]
    config: RunConfig
    task: Task
    puzzles: PuzzleBatch
    arrays: dict[str, np.ndarray]

    @property
    def max_segments(self) -> int:
        return int(self.identity["max_segments"])

    @property
    def hidden(self) -> int:
        return int(self.config.model.hidden_size)


def _read_npz(path: Path, keys: set[str] | None = None) -> dict[str, np.ndarray]:
    """The arrays of a rollouts file (only ``keys`` when given), with its identity checked."""
    if not path.is_file():
        raise FileNotFoundError(f"rollouts file not found: {path}")
    try:
        with np.load(path, allow_pickle=False) as data:
            files = {k: data[k] for k in data.files if keys is None or k in keys}
    except Exception as err:  # zip, pickle and format errors alike
        raise ValueError(f"{path}: not a rollouts .npz file ({type(err).__name__}: {err})"
                         ) from None
    wanted = {"identity", "puzzles_csv", "features", "pred", "correct", "cell"}
    missing = (wanted if keys is None else wanted & keys) - set(files)
    if missing:
        raise ValueError(f"{path}: not a rollouts file (missing {', '.join(sorted(missing))})")
    identity = json.loads(str(files["identity"]))
    if identity.get("format") != FORMAT:
        raise ValueError(f"{path}: rollouts format {identity.get('format')!r}, expected {FORMAT}")
    files["identity"] = identity
    return files


def rollouts_identity(path: str | Path) -> dict[str, Any]:
    """A rollouts file's identity (checkpoint, config, split, cap) without loading its arrays."""
    return _read_npz(Path(path), {"identity"})["identity"]


def load_rollouts(path: str | Path) -> Recording:
    """Read a file written by ``record_rollouts``.

    Raises:
        FileNotFoundError: no such file; ValueError: not a rollouts file, or inconsistent.
    """
    path = Path(path)
    files = _read_npz(path)
    identity = files.pop("identity")
    config = from_dict(RunConfig, identity["config"])
    task = make_task(config.task)
    with tempfile.TemporaryDirectory() as tmp:
        split = Path(tmp) / "split.csv"
        split.write_text(str(files.pop("puzzles_csv")))
        puzzles = task.read_csv(split)
    files.pop("questions", None)
    n, cap = files["correct"].shape
    if len(puzzles) != n or any(a.shape[:2] != (n, cap) for a in files.values()):
        raise ValueError(f"{path}: arrays do not match its {len(puzzles)} puzzles")
    return Recording(path, identity, config, task, puzzles, files)


class RecordedSegments:
    """A replayed segment for some rows: puzzle indices and the segment each row reached."""

    def __init__(self, recording: Recording, index: np.ndarray, segments: np.ndarray) -> None:
        self.recording, self.index, self.segments = recording, index, segments

    def state(self, segments: torch.Tensor, max_segments: int) -> dict[str, torch.Tensor]:
        """The same entries as ``segment_state`` for these rows, from the file."""
        a, rows, k = self.recording.arrays, self.index, self.segments - 1
        features = torch.from_numpy(a["features"][rows, k])
        features[:, 2] = segments.float() / max_segments  # the env's cap, not the recording's
        latent = a.get("latent")
        return {"features": features,
                "latent": (torch.from_numpy(latent[rows, k]) if latent is not None else
                           torch.zeros(len(rows), self.recording.hidden)),
                "pred": torch.from_numpy(a["pred"][rows, k].astype(np.int64)),
                "correct": torch.from_numpy(a["correct"][rows, k]),
                "cell": torch.from_numpy(a["cell"][rows, k]), "segments": segments}

    def take(self, index: slice) -> RecordedSegments:
        return RecordedSegments(self.recording, self.index[index], self.segments[index])


class ReplayEngine(SegmentEngine):
    """The segment engine's episode (``step(halt, hold) -> SegmentStep``: the cap, the
    same-step restart at the cap, refills, held rows) with each segment served from a
    recording, no model."""

    def __init__(self, recording: Recording, source: ShuffledSource, batch_size: int,
                 max_segments: int | None = None, restart_at_cap: bool = False) -> None:
        """``source`` hands out puzzle positions: ``draw_indices(k)``, or
        ``draw_indices_for(rows)`` when it has one (per-row streams)."""
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        self.recording, self.source, self.batch_size = recording, source, batch_size
        self.device = torch.device("cpu")
        self.max_segments, self.restart_at_cap, self.auto_halt = (max_segments, restart_at_cap,
                                                                  False)
        self._draw_min = None
        self.index = np.zeros(batch_size, dtype=np.int64)
        self.segments = torch.zeros(batch_size, dtype=torch.long)
        self.min_segments = torch.ones(batch_size, dtype=torch.long)
        self.inputs = torch.zeros(batch_size, recording.task.seq_len, dtype=torch.long)
        self.labels = torch.zeros_like(self.inputs)
        self.pending: torch.Tensor | None = None
        self._fresh = True

    def _draw_into(self, rows: np.ndarray) -> None:
        draw_for = getattr(self.source, "draw_indices_for", None)  # per-row puzzle streams
        drawn = draw_for(rows) if draw_for is not None else self.source.draw_indices(len(rows))
        self.index[rows] = drawn
        batch = self.recording.puzzles.take(drawn)
        index = torch.from_numpy(rows)
        self.inputs = self.inputs.index_put((index,), torch.from_numpy(
            np.asarray(batch.inputs, dtype=np.int64)))
        self.labels = self.labels.index_put((index,), torch.from_numpy(
            np.asarray(batch.labels, dtype=np.int64)))

    def _replace(self, rows: torch.Tensor) -> torch.Tensor:
        index = rows.nonzero().squeeze(-1)
        if index.numel():
            self._draw_into(index.numpy())
            self.segments = self.segments.masked_fill(rows, 0)
        return index

    def _forward(self, advance: torch.Tensor | None = None) -> RecordedSegments:
        """Every row's next recorded segment; rows not in ``advance`` (when given) stay
        where they are (their entry repeats their current segment, which the env ignores)."""
        self.segments = self.segments + (1 if advance is None else advance.long())
        reached = self.segments.numpy()
        if reached.max() > self.recording.max_segments:
            raise RuntimeError(f"{self.recording.path} holds {self.recording.max_segments} "
                               "segments per puzzle; a row asked for more")
        return RecordedSegments(self.recording, self.index.copy(), reached.copy())

    def _forward_restarting(self, restart: torch.Tensor, advance: torch.Tensor | None = None
                            ) -> tuple[RecordedSegments, RecordedSegments]:
        out = self._forward(advance)
        index = restart.nonzero().squeeze(-1).numpy()
        self._draw_into(index)
        self.segments = self.segments.masked_fill(restart, 1)
        return out, RecordedSegments(self.recording, self.index[index].copy(),
                                     np.ones(len(index), dtype=np.int64))

    def peek(self):
        raise RuntimeError("a replayed engine has no model to peek with")

    def state_dict(self):
        raise RuntimeError("a replayed engine is not resumable (it trains nothing)")
