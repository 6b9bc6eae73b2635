"""Checkpoints: safetensors weights with the full run config as JSON beside them.

A checkpoint is a folder holding ``model.safetensors`` and ``config.json``. Each file is
written to a temporary name, fsynced and renamed into place, so a crash never leaves a torn
file; ``config.json`` is always written last, so a folder with a ``config.json`` is complete.
A run checkpoint also holds ``trainer_state.pt``: everything beyond the weights that the
trainer needs to continue identically (see ``ACTTrainer.state_dict``). How a training run
keeps its checkpoints (``<run>/checkpoints/step_XXXXXXX/``, the ``latest`` and ``best``
pointers, rotation, resume, rewind) is ``hrm_rl.run_dir``'s; this module is the format.

``model.safetensors`` carries the architecture it was saved for (the model config's fields
that change what the weights compute, and their sha256) in its metadata; ``load_weights``
refuses a ``config.json`` edited since (``H_cycles`` 2 -> 5 keeps every weight's shape, so
only this check notices). Files without that metadata (older checkpoints) load unchecked;
``stamp_architecture`` adds it.

``load_checkpoint`` accepts a checkpoint folder, a run folder, the ``latest`` pointer's
folder, a pointer file (``<run>/checkpoints/best``), or the name of a checkpoint bundled with
the package (see ``bundled_checkpoints``), or a checkpoint of the reference implementation
as released (``all_config.yaml`` and its weights, or ``hf://``: converted in memory by
``hrm_rl.reference_import``). Files that are missing, corrupt or do not fit their config
raise ``ValueError`` (or ``FileNotFoundError``) naming the file.
"""

from __future__ import annotations

import dataclasses
import hashlib
import io
import json
import os
import tempfile
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

import torch
from safetensors import safe_open
from safetensors.torch import load_file
from safetensors.torch import save as safetensors_bytes

from hrm_rl.config import ConfigError, ModelConfig, RunConfig, from_dict, with_saved_defaults
from hrm_rl.model import RecurrentCore, build_model
from hrm_rl.model.layers import Block
from hrm_rl.tasks import PuzzleBatch, Task, make_task
from hrm_rl.tasks.base import HALTING_SPLITS

WEIGHTS = "model.safetensors"
CONFIG = "config.json"
TEST_PUZZLES = "test.csv"
TRAINER_STATE = "trainer_state.pt"
LATEST = "latest"
BEST = "best"
"""Pointer files in ``<run>/checkpoints``: the newest checkpoint, and the best-evaluated one."""
HALTING_FILES = {"train": "halting_train.csv", "val": "halting_val.csv"}
"""The halting splits a checkpoint may ship beside its weights (``write_halting_splits``)."""
ARCHITECTURE_KEY = "hrm_rl.architecture"
PUZZLE_EMB = "puzzle_emb"  # the per-puzzle embedding table's tensor name
WEIGHTS_SHA_KEY = "weights_sha256"
"""``config.json``'s ``meta`` key for the SHA-256 of ``model.safetensors`` (verified on load)."""
FINGERPRINT_KEY = "hrm_rl.architecture_sha256"
"""safetensors metadata keys: the canonical JSON of ``architecture(config)`` and its sha256."""
_NOT_ARCHITECTURE = frozenset({"gradient"})  # which steps carry the gradient: training only
_SWITCH_FIELDS = {"edge_positions": ("edge_positions", "content_token"),
                  "puzzle_emb_cells": ("puzzle_emb_cells",)}
"""Each of ``SWITCHES`` with the fields it brings, all added after weights first stored their
fingerprint: left out of ``architecture`` while the switch is off, so those weights keep it."""
RECURRENCE = ("H_cycles", "L_cycles")
"""Model settings a fine-tune (``train.init_from``) may change: how many steps each segment
runs, with the same weights (the weights' architecture check holds them otherwise)."""
DEPTH = ("H_layers", "L_layers")
"""Model settings a fine-tune (``train.init_from``) may raise, for a core whose
``stacks()`` name them: the blocks added go after the loaded ones and start with their
residual branches zeroed (``Block.zero_residuals_``), so the loaded function is kept to the
norm's ``eps`` while the new blocks learn."""
SWITCHES = tuple(_SWITCH_FIELDS)
"""Model settings a fine-tune (``train.init_from``) may turn on, not off: the weights they add
start at zero, so the loaded function is kept exactly while they learn
(``switch_tensors``)."""


def architecture(config: ModelConfig) -> dict[str, Any]:
    """The fields of a resolved model config that change what its weights compute: every
    field but ``gradient`` (``H_cycles``, ``L_cycles``, ``rope_theta``, ... leave the weights'
    shapes alone, so a shape check cannot tell them apart). Switches added later are left out
    while off, with the fields they bring, so older weights keep their fingerprint."""
    fields = dataclasses.asdict(config)
    left_out = set(_NOT_ARCHITECTURE)
    for switch, names in _SWITCH_FIELDS.items():
        if not fields[switch]:
            left_out.update(names)
    return {k: v for k, v in sorted(fields.items()) if k not in left_out}


def _canonical(arch: dict[str, Any]) -> str:
    return json.dumps(arch, sort_keys=True, separators=(",", ":"))


def architecture_fingerprint(config: ModelConfig) -> str:
    """sha256 (hex) of the canonical JSON (sorted keys, no spaces) of ``architecture``."""
    return hashlib.sha256(_canonical(architecture(config)).encode()).hexdigest()


def _architecture_metadata(config: ModelConfig) -> dict[str, str]:
    return {ARCHITECTURE_KEY: _canonical(architecture(config)),
            FINGERPRINT_KEY: architecture_fingerprint(config)}


@dataclass
class Checkpoint:
    """A loaded checkpoint: the core (in eval mode), its task and its run config."""

    model: RecurrentCore
    task: Task
    config: RunConfig
    meta: dict[str, Any]
    path: Path

    def test_puzzles(self) -> PuzzleBatch | None:
        """The run's held-out puzzles saved beside the weights, if any."""
        path = self.path / TEST_PUZZLES
        return self.task.read_csv(path) if path.is_file() else None

    def puzzles(self, split: str, progress: bool = False) -> PuzzleBatch:
        """The puzzles of ``split``: ``"test"`` (the core's held-out set), ``"train"`` or
        ``"val"`` (for halting research: disjoint from test up to symmetry, see
        ``Task.halting_split``), one of the task's ``extra_splits`` (re-arc's
        ``"official"``), or the path of a CSV in the task's format.

        ``train`` and ``val`` are read from ``halting_<split>.csv`` beside the weights when
        the checkpoint ships one (the bundled cores do; ``write_halting_splits``), else
        generated from the core's data settings (the same puzzles every time; kept in
        memory for the process).

        Raises:
            ValueError: an unknown split, or a checkpoint without test puzzles.
        """
        if split in HALTING_SPLITS:
            test = self.test_puzzles()
            if test is None:
                raise ValueError(f"checkpoint {self.path} has no held-out puzzles "
                                 f"({TEST_PUZZLES}), so it has no {split!r} split; pass "
                                 "split=<path to a CSV of puzzles>")
            if split == "test":
                return test
            shipped = self.path / HALTING_FILES[split]
            if shipped.is_file():
                return self.task.read_csv(shipped)
            key = (str(self.path.resolve()), split)
            if key not in _HALTING_CACHE:
                _HALTING_CACHE[key] = self.task.halting_split(split, self.config.data, test,
                                                              progress)
            return _HALTING_CACHE[key]
        if split in self.task.extra_splits and not Path(split).is_file():
            return self.task.extra_split(split)
        if Path(split).is_file():
            return self.task.read_csv(split)
        raise ValueError(f"split must be one of "
                         f"{', '.join((*HALTING_SPLITS, *self.task.extra_splits))} or the "
                         f"path of a puzzle CSV, got {split!r}")


_HALTING_CACHE: dict[tuple[str, str], PuzzleBatch] = {}


def write_halting_splits(folder: str | Path, progress: bool = False) -> list[Path]:
    """Generate a checkpoint's halting ``train`` and ``val`` splits once and save them as
    ``halting_train.csv`` / ``halting_val.csv`` beside its weights (as the bundled cores
    ship them), so loading a split is a CSV read. Returns the files written."""
    ckpt = load_checkpoint(folder)
    written = []
    for split, name in HALTING_FILES.items():
        target = ckpt.path / name
        if target.exists():
            raise FileExistsError(f"{target} exists; remove it to regenerate")
        batch = ckpt.task.halting_split(split, ckpt.config.data, ckpt.puzzles("test"),
                                        progress)
        atomic_write(target, lambda tmp, b=batch: ckpt.task.write_csv(tmp, b))
        written.append(target)
    return written


def bundled_checkpoints() -> dict[str, Path]:
    """Names and folders of the checkpoints shipped inside the package."""
    root = Path(str(resources.files("hrm_rl") / "checkpoints"))
    if not root.is_dir():
        return {}
    return {p.name: p for p in sorted(root.iterdir()) if (p / CONFIG).is_file()}


def atomic_write(path: str | Path, write: Callable[[str], Any]) -> None:
    """Write ``path`` through ``write(tmp)`` into a temporary file beside it, fsync, then
    rename: a crash, a kill or a full disk leaves the old file or the new one, never a torn
    one. A failed write raises ``OSError`` naming ``path`` (not the temporary file)."""
    path = Path(path)
    try:
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    except OSError as err:  # no inode left, a read-only or missing folder
        raise OSError(err.errno, f"{err.strerror or err} while writing", str(path)) from err
    os.close(fd)
    try:
        write(tmp)
        with open(tmp, "rb") as f:
            os.fsync(f.fileno())
        os.chmod(tmp, 0o644)  # mkstemp creates 0600; checkpoints are meant to be shared
        os.replace(tmp, path)
    except OSError as err:
        Path(tmp).unlink(missing_ok=True)
        raise OSError(err.errno, f"{err.strerror or err} while writing", str(path)) from err
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write_bytes(path: str | Path, data: bytes | memoryview) -> None:
    """Replace ``path`` by ``data`` atomically. Serialize to bytes first and write them
    here (not through a library's own file writer): a full disk or a file-size limit is then
    an ``OSError`` (ENOSPC, EFBIG) naming ``path``, not torch's or safetensors' own error."""

    def write(tmp: str) -> None:
        with open(tmp, "wb") as f:
            f.write(data)

    atomic_write(path, write)


def atomic_write_text(path: str | Path, text: str) -> None:
    """Replace ``path`` by ``text`` atomically (temporary file, fsync, rename): a crash
    leaves the old file or the new one, never a torn one."""
    atomic_write_bytes(path, text.encode("utf-8"))


def save_checkpoint(folder: str | Path, model: RecurrentCore, config: RunConfig,
                    meta: dict[str, Any] | None = None,
                    test_puzzles: tuple[Task, PuzzleBatch] | None = None,
                    trainer_state: dict[str, Any] | None = None) -> Path:
    """Write ``model.safetensors`` and ``config.json`` into ``folder`` (created if needed),
    ``test.csv`` with the held-out puzzles when ``test_puzzles`` is given, and
    ``trainer_state.pt`` (``torch.save``) when ``trainer_state`` is given (a run's
    checkpoints: ``hrm_rl.run_dir.save_run_checkpoint``).

    ``config.json`` holds ``{"run": <RunConfig>, "model": <resolved ModelConfig>, "meta": ...}``
    and is written last; ``meta["weights_sha256"]`` is the SHA-256 of the weights file,
    which ``load_checkpoint`` verifies. The weights' safetensors metadata holds the model's
    ``architecture`` and its fingerprint (checked by ``load_weights``).
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().to("cpu").contiguous() for k, v in model.state_dict().items()}
    metadata = _architecture_metadata(model.config)
    atomic_write_bytes(folder / WEIGHTS, safetensors_bytes(state, metadata=metadata))
    meta = {**(meta or {}), WEIGHTS_SHA_KEY: file_sha256(folder / WEIGHTS)}
    payload = {"run": config.to_dict(), "model": model.config.__dict__, "meta": meta}
    if test_puzzles is not None:
        task, puzzles = test_puzzles
        atomic_write(folder / TEST_PUZZLES, lambda tmp: task.write_csv(tmp, puzzles))
    if trainer_state is not None:
        buffer = io.BytesIO()
        torch.save(trainer_state, buffer)
        atomic_write_bytes(folder / TRAINER_STATE, buffer.getbuffer())
    atomic_write_text(folder / CONFIG, json.dumps(payload, indent=2, sort_keys=True))
    return folder


def _pointer_target(path: Path) -> Path:
    """The checkpoint folder the pointer file ``path`` names (complete or not).

    Raises:
        ValueError: the file is not a folder name in text (binary, or several lines).
    """
    try:
        name = path.read_text(encoding="utf-8").strip()
    except UnicodeDecodeError:
        name = None
    if name is None or not name or "\n" in name or "/" in name or "\x00" in name:
        raise ValueError(f"{path}: not a checkpoint pointer (it should hold one folder name "
                         f"such as step_0000500); give the checkpoint folder itself, or "
                         f"rewrite it: echo step_NNNNNNN > {path}")
    return path.parent / name


def resolve_checkpoint(name_or_path: str | Path) -> Path:
    """Turn a bundled name, checkpoint folder, run folder (its ``latest``) or pointer file
    (``<run>/checkpoints/latest`` or ``<run>/checkpoints/best``) into a checkpoint folder."""
    if not isinstance(name_or_path, (str, os.PathLike)):
        raise TypeError(f"checkpoint must be a bundled name or a path, got {name_or_path!r}")
    path = Path(name_or_path)
    if path.name in (LATEST, BEST) and path.is_file():
        target = _pointer_target(path)
        if not (target / CONFIG).is_file():
            raise FileNotFoundError(f"{path} names {target.name!r}, which is not a complete "
                                    f"checkpoint (no {CONFIG})")
        return target
    for candidate in (path, path / "checkpoints"):
        if (candidate / CONFIG).is_file():
            return candidate
        if (candidate / LATEST).is_file():
            target = _pointer_target(candidate / LATEST)
            if not (target / CONFIG).is_file():
                raise FileNotFoundError(f"{candidate / LATEST} names {target.name}, which is "
                                        f"not a complete checkpoint (no {CONFIG})")
            return target
    if path.suffix == ".safetensors" and (path.parent / CONFIG).is_file():
        return path.parent
    bundled = bundled_checkpoints()
    if str(name_or_path) in bundled:
        return bundled[str(name_or_path)]
    raise FileNotFoundError(
        f"no checkpoint at {str(name_or_path)!r}: expected a folder with {CONFIG} and {WEIGHTS}, "
        f"a run folder, or a bundled name ({', '.join(bundled) or 'none installed'})"
    )


def read_checkpoint_config(folder: str | Path) -> tuple[RunConfig, ModelConfig, dict[str, Any]]:
    """The run config, resolved model config and meta stored in ``folder/config.json``.

    Raises:
        ValueError: the file is not JSON, lacks a section, or does not fit the schema (a
            ``ConfigError``, which is a ``ValueError``); the message names the file.
    """
    path = Path(folder) / CONFIG
    try:
        payload = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise ValueError(f"{path}: unreadable checkpoint config ({err})") from None
    if not isinstance(payload, dict) or not {"run", "model"} <= set(payload):
        raise ValueError(f"{path}: expected a JSON object with keys 'run' and 'model'")
    try:
        config = from_dict(RunConfig, with_saved_defaults(payload["run"]))
        model_cfg = from_dict(type(config.model), payload["model"], "model.")
    except ConfigError as err:
        raise ConfigError(f"{path}: {err}") from None
    return config, model_cfg, payload.get("meta", {})


def load_weights(model: RecurrentCore, path: str | Path,
                 puzzle_rows: Mapping[int, int] | None = None,
                 saved_as: ModelConfig | None = None) -> None:
    """Load ``model.safetensors`` at ``path`` into ``model``, strictly.

    Args:
        saved_as: the architecture the file must have been saved for, where it may differ
            from ``model.config`` (a fine-tune to another recurrence or depth); default: the
            model's. Where it has fewer layers (``DEPTH``), the model's further blocks keep
            their fresh weights with their residual branches zeroed; where it has a switch of
            ``SWITCHES`` off that the model has on, the model keeps its tables for it (zeros
            in a fresh model).
        puzzle_rows: for weights trained on another selection of puzzles: the file's
            puzzle-embedding table may then have any number of rows, and row ``old`` of it
            becomes row ``new`` of the model's for each ``new: old`` here; the model's other
            rows keep their values. None: the tables must match, as every other tensor.

    Raises:
        ValueError: the file is corrupt, or its tensor names or shapes do not fit ``model``
            (e.g. weights from a different model config or task); the message lists them.
    """
    path = Path(path)
    try:
        state = load_file(path)
    except Exception as err:  # safetensors raises its own error type for torn files
        raise ValueError(f"{path}: unreadable weights ({type(err).__name__}: {err})") from None
    expected = model.state_dict()
    saved_as = saved_as or model.config
    added = _added_blocks(model, saved_as, path)
    for prefix, _ in added:   # the file has none of these: they keep the model's values
        state.update({k: v for k, v in expected.items() if k.startswith(prefix)})
    for field in SWITCHES:
        if getattr(saved_as, field) and not getattr(model.config, field):
            raise ValueError(f"{path}: saved with {field}=true, but the model has it false: a "
                             "fine-tune may turn it on for loaded weights, not off")
    state.update({k: expected[k] for k in switch_tensors(model, saved_as)})
    saved_ids = saved_as.num_puzzle_ids
    if puzzle_rows is not None and PUZZLE_EMB in state and PUZZLE_EMB in expected:
        old = state[PUZZLE_EMB]
        if old.shape[1:] != expected[PUZZLE_EMB].shape[1:] or any(
                not 0 <= o < len(old) or not 0 <= n < len(expected[PUZZLE_EMB])
                for n, o in puzzle_rows.items()):
            raise ValueError(f"{path}: its {PUZZLE_EMB} {tuple(old.shape)} cannot give rows "
                             f"to the model's {tuple(expected[PUZZLE_EMB].shape)}")
        table = expected[PUZZLE_EMB].clone()
        if puzzle_rows:
            table[list(puzzle_rows)] = old[list(puzzle_rows.values())].to(table.dtype)
        saved_ids = len(old)
        state[PUZZLE_EMB] = table
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    shapes = [f"{k} {tuple(state[k].shape)} != {tuple(expected[k].shape)}"
              for k in sorted(set(state) & set(expected)) if state[k].shape != expected[k].shape]
    if missing or unexpected or shapes:
        parts = [f"{name}: {', '.join(items[:5])}{' ...' if len(items) > 5 else ''}"
                 for name, items in (("missing", missing), ("unexpected", unexpected),
                                     ("shape (file != config)", shapes)) if items]
        raise ValueError(f"{path} does not fit the model described by its {CONFIG} "
                         f"({'; '.join(parts)}); were the weights saved from another config?")
    check_architecture(path, dataclasses.replace(saved_as, num_puzzle_ids=saved_ids))
    bad = [k for k, v in state.items() if v.is_floating_point() and not torch.isfinite(v).all()]
    if bad:
        raise ValueError(f"{path}: {len(bad)} tensor(s) hold NaN or inf ({', '.join(bad[:5])}"
                         f"{' ...' if len(bad) > 5 else ''}); refusing weights that cannot "
                         "compute anything")
    model.load_state_dict(state)
    for _, block in added:
        block.zero_residuals_()


def switch_tensors(model: RecurrentCore, saved_as: ModelConfig) -> list[str]:
    """The ``state_dict`` names of the weights ``model`` has and the same core lacks with the
    switches of ``SWITCHES`` that are off in ``saved_as`` turned off, with the fields they
    bring at their defaults (read off a core built on the meta device, so no table is
    allocated and no switch has to list its tensors by hand)."""
    defaults = {f.name: f.default for f in dataclasses.fields(ModelConfig)}
    off = {field: defaults[field] for switch, fields in _SWITCH_FIELDS.items()
           if not getattr(saved_as, switch) and getattr(model.config, switch)
           for field in fields}
    if not off:
        return []
    with torch.device("meta"):
        plain = build_model(dataclasses.replace(model.config, **off))
    return sorted(set(model.state_dict()) - set(plain.state_dict()))


def _added_blocks(model: RecurrentCore, saved_as: ModelConfig,
                  path: Path) -> list[tuple[str, Block]]:
    """The blocks ``model`` has beyond the depth ``saved_as`` gives each of its stacks, with
    their ``state_dict`` key prefixes (``DEPTH``).

    Raises:
        ValueError: ``saved_as`` is deeper than the model in some stack.
    """
    names = {id(module): name for name, module in model.named_modules()}
    added = []
    for field, stack in model.stacks().items():
        old, new = getattr(saved_as, field), getattr(model.config, field)
        if old > new:
            raise ValueError(f"{path}: saved with {field}={old}, but the model has {new}: a "
                             "fine-tune may add layers to loaded weights, not drop them")
        added += [(f"{names[id(stack)]}.{i}.", stack[i]) for i in range(old, new)]
    return added


def check_architecture(path: str | Path, config: ModelConfig) -> None:
    """Refuse the weights file ``path`` when the architecture fingerprint stored in it
    differs from ``config``'s (no check for files saved before fingerprints were stored).

    Raises:
        ValueError: naming the file and each differing key with both values.
    """
    path = Path(path)
    try:
        with safe_open(str(path), framework="pt") as f:
            metadata = f.metadata() or {}
    except Exception as err:
        raise ValueError(f"{path}: unreadable weights ({type(err).__name__}: {err})") from None
    stored = metadata.get(FINGERPRINT_KEY)
    if stored is None or stored == architecture_fingerprint(config):
        return
    now = architecture(config)
    try:
        saved = json.loads(metadata.get(ARCHITECTURE_KEY, ""))
    except json.JSONDecodeError:
        saved = None
    if isinstance(saved, dict):
        absent = "(absent)"
        keys = sorted(k for k in set(saved) | set(now)
                      if (k in saved, saved.get(k)) != (k in now, now.get(k)))
        diff = ", ".join(f"{k}={saved.get(k, absent)!r} in the weights but "
                         f"{now.get(k, absent)!r} in {CONFIG}" for k in keys)
    else:
        diff = (f"fingerprint {stored[:12]} in the weights but "
                f"{architecture_fingerprint(config)[:12]} for {CONFIG}")
    raise ValueError(f"{path} was saved for another model architecture than its {CONFIG} "
                     f"describes ({diff}); was {CONFIG} edited after saving? Restore those "
                     "values: the weights compute what they were trained for only with them")


def stamp_architecture(folder: str | Path) -> bool:
    """Add the architecture metadata ``load_weights`` checks to the weights of a checkpoint
    saved before it was stored (e.g. a bundled core), from its ``config.json``; the tensors
    stay bit for bit. The file is replaced atomically. Returns False when already stamped.

    Raises:
        ValueError: the weights do not fit the config (shapes), or carry another fingerprint.
    """
    ckpt = load_checkpoint(folder)  # checks shapes and any stored fingerprint
    path = ckpt.path / WEIGHTS
    with safe_open(str(path), framework="pt") as f:
        if FINGERPRINT_KEY in (f.metadata() or {}):
            return False
    tensors = load_file(path)
    metadata = _architecture_metadata(ckpt.model.config)
    atomic_write_bytes(path, safetensors_bytes(tensors, metadata=metadata))
    if WEIGHTS_SHA_KEY in ckpt.meta:  # the file's bytes changed: record their new hash
        stamp_weights_sha256(folder)
    return True


def load_trainer_state(folder: str | Path) -> dict[str, Any]:
    """The ``trainer_state.pt`` of a run checkpoint (see ``ACTTrainer.state_dict``).

    Raises:
        FileNotFoundError: the checkpoint has no trainer state (weights-only checkpoints,
            such as the bundled ones, cannot be resumed).
        ValueError: the file is corrupt.
    """
    path = Path(folder) / TRAINER_STATE
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no trainer state in this checkpoint; only run "
                                "checkpoints written by 'hrm-rl train' can be resumed")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:
        first = (str(err).strip().splitlines() or [""])[0]
        raise ValueError(f"{path}: unreadable trainer state ({type(err).__name__}: {first})"
                         ) from None


def load_checkpoint(name_or_path: str | Path, device: torch.device | str = "cpu") -> Checkpoint:
    """Load a checkpoint's core onto ``device`` in eval mode, with its task and config.

    Raises:
        FileNotFoundError: nothing loadable at ``name_or_path``.
        ValueError: a corrupt file, or a config, task and weights that do not fit together.
    """
    from hrm_rl import reference_import

    if reference_import.is_reference_source(name_or_path):  # the paper's checkpoints
        return reference_import.load_reference_checkpoint(name_or_path, device)
    folder = resolve_checkpoint(name_or_path)
    config, model_cfg, meta = read_checkpoint_config(folder)
    task = make_task(config.task)
    for key in ("vocab_size", "seq_len"):
        if getattr(model_cfg, key) != getattr(task, key):
            raise ValueError(f"{folder / CONFIG}: model {key}={getattr(model_cfg, key)} does "
                             f"not match task {task.name} ({key}={getattr(task, key)})")
    model = build_model(model_cfg)
    load_weights(model, folder / WEIGHTS)  # torn files, shapes, architecture, NaN first
    check_weights_sha256(folder, meta)     # then any other change to the bytes
    model.to(device).eval()
    from hrm_rl.views import VIEWS_FILE, read_views

    views = read_views(folder)
    if views is not None:
        if not hasattr(task, "test_views"):
            raise ValueError(f"{folder / VIEWS_FILE}: task {task.name} has no test-time views")
        task.test_views = views
    return Checkpoint(model, task, config, meta, folder)


def file_sha256(path: str | Path) -> str:
    """SHA-256 (hex) of a file's bytes."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def weights_sha256(folder: str | Path) -> str:
    """The SHA-256 of a checkpoint folder's weights: the one its ``config.json`` recorded
    (which loading verifies), else computed from the file; for a reference checkpoint
    (``hrm_rl.reference_import``), its weights file's."""
    from hrm_rl import reference_import

    if reference_import.is_reference_source(folder):
        return reference_import.reference_weights_sha256(folder)
    folder = resolve_checkpoint(folder)
    recorded = read_checkpoint_config(folder)[2].get(WEIGHTS_SHA_KEY)
    return recorded if isinstance(recorded, str) else file_sha256(folder / WEIGHTS)


def check_weights_sha256(folder: str | Path, meta: dict[str, Any]) -> None:
    """Refuse weights whose SHA-256 is not the one ``config.json`` recorded when they were
    saved (flipped bytes, a truncated copy, another file put in their place). Checkpoints
    saved before the hash was recorded load unchecked (``stamp_weights_sha256`` adds it)."""
    expected = meta.get(WEIGHTS_SHA_KEY) if isinstance(meta, dict) else None
    if expected is None:
        return
    path = Path(folder) / WEIGHTS
    actual = file_sha256(path)
    if actual != expected:
        raise ValueError(f"{path}: its SHA-256 {actual[:16]}... is not the {expected[:16]}... "
                         f"recorded in {CONFIG} when it was saved: the weights were changed or "
                         "corrupted since; restore them (or train/copy the checkpoint again)")


def stamp_weights_sha256(folder: str | Path) -> str:
    """Record the SHA-256 of ``folder``'s weights, as they are now, in its ``config.json``
    (for checkpoints saved before it was recorded, and after ``stamp_architecture``
    rewrites the file), once they load: shapes, architecture and finite values are checked,
    a hash recorded before is not."""
    folder = resolve_checkpoint(folder)
    load_weights(build_model(read_checkpoint_config(folder)[1]), folder / WEIGHTS)
    path = folder / CONFIG
    payload = json.loads(path.read_text())
    payload.setdefault("meta", {})[WEIGHTS_SHA_KEY] = sha = file_sha256(folder / WEIGHTS)
    atomic_write_text(path, json.dumps(payload, indent=2, sort_keys=True))
    return sha
