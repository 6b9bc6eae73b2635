"""The reference's released checkpoints (sapientinc/HRM) as our cores, converted losslessly.

A reference checkpoint is a folder as users download it: the ``all_config.yaml`` that the
reference's ``pretrain.py`` dumps (its ``PretrainConfig``: ``arch`` with the model's knobs,
``data_path``, the optimiser's settings) and the weights file it saves with
``torch.save(model.state_dict(), ...)``: ``checkpoint`` in the released Hugging Face repos,
``step_<N>`` in a training run's folder. That state dict is the compiled, loss-head-wrapped
model's, so its names carry ``_orig_mod.`` and ``model.`` before ``inner.<tensor>``. The
sparse puzzle embedding's table (``puzzle_emb.weights``) is a persistent buffer and its
per-batch ``local_weights``/``local_ids`` are not (dropped if present); ``H_init``/``L_init``
are buffers in the reference's ``forward_dtype`` (bfloat16 by default) and become float32
here, exactly.

What is read from where: the vocabulary, the width, the layer counts, the puzzle-embedding
width and the number of puzzle identifiers from the tensors' shapes (checked against
``all_config.yaml``); heads, cycles, expansion, positions, RoPE base, norm epsilon, the
halting cap and the loss from ``all_config.yaml`` (the reference's defaults where absent);
the sequence length from the task (``seq_len`` is the dataset's, not saved). Every tensor
must map onto ours with its shape (``to_project_state``), none left over on either side.

Token encodings: the reference's dataset builders encode Sudoku as PAD 0, blank 1, digits
1-9 as 2-10 (``build_sudoku_dataset.py``: ``.`` -> 0, then +1) and mazes as PAD 0 and
``# SGo`` as 1-5 (``build_maze_dataset.py``: ``CHARSET`` index + 1). Our ``SudokuTask`` and
``MazeTask`` encode the same CSVs to the same tokens, so embedding and LM-head rows are
taken as they are, with no permutation (``tests/test_reference_import.py`` checks both
encodings on the CSV format of Sudoku-Extreme and Maze-30x30-Hard).

ARC is refused: the ARC checkpoint's puzzle embeddings are indexed by the identifiers of the
dataset it was trained on (``identifiers.json`` of ``build_arc_dataset.py``: one per
augmented variant, ``<task>|||t<dihedral>|||<colour permutation>``, drawn with its own seed,
and the grids translated at random on the canvas). Our ARC task numbers its variants from
its own table (``hrm_rl.tasks.arc.variants``), so no row of that table can be matched to
ours without an ARC task that takes its variants from ``identifiers.json``.

The converted core computes what the reference computes in float32 (and float64); the
reference trained and evaluated in bfloat16 (``forward_dtype``), so figures measured here
in float32 may differ from the paper's in the last bits of a logit. ``hrm-rl bench reference
--check-import`` verifies the conversion against the reference's code.

    core = import_reference("HRM-checkpoint-sudoku-extreme", "sudoku", "cores/hrm-sudoku")
    ckpt = load_checkpoint("HRM-checkpoint-sudoku-extreme")  # converted in memory
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import pickle
import re
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import yaml

from hrm_rl.checkpoint import (CONFIG, WEIGHTS_SHA_KEY, Checkpoint, atomic_write_text,
                               file_sha256, save_checkpoint)
from hrm_rl.config import ConfigError, RunConfig, TaskConfig, load_config
from hrm_rl.model import RecurrentCore, build_model
from hrm_rl.tasks import Task, make_task

REFERENCE_CONFIG = "all_config.yaml"
"""The reference's config file beside its weights (``pretrain.save_code_and_config``)."""
IDENTIFIERS = "identifiers.json"
"""The reference dataset's puzzle-identifier names, which index an ARC checkpoint's embeddings."""
RELEASED_WEIGHTS = "checkpoint"
"""The weights file's name in the released Hugging Face repos."""
HF_PREFIX = "hf://"
RELEASED = {"sudoku": "sapientinc/HRM-checkpoint-sudoku-extreme",
            "maze": "sapientinc/HRM-checkpoint-maze-30x30-hard",
            "arc": "sapientinc/HRM-checkpoint-ARC-2"}
"""The paper's released checkpoints on the Hugging Face Hub, by task."""
TASKS = ("sudoku", "maze", "arc")
CARD = "card.json"
_STEP_FILE = re.compile(r"step_(\d+)")
_WRAPPERS = ("_orig_mod.", "module.", "model.")  # torch.compile, DDP, ACTLossHead
_NOT_PERSISTENT = ("inner.puzzle_emb.local_weights", "inner.puzzle_emb.local_ids")
_RECIPES = {"sudoku": "sudoku9-extreme", "maze": "maze30-hard"}
_VOCAB = {11: "sudoku", 6: "maze", 12: "arc"}  # the reference's three datasets
_MAZE_HARD = 30
_ACT_MODEL = "hrm.hrm_act_v1@HierarchicalReasoningModel_ACTV1"
_LOSSES = {"stablemax_cross_entropy": "stablemax", "softmax_cross_entropy": "softmax"}


# --- names ----------------------------------------------------------------------------------
# Our names -> the reference's (inside ``ACTLossHead.model``); the rest only gain "inner.".
_RENAMED = {"embed_tokens": "inner.embed_tokens.embedding_weight",
            "embed_pos": "inner.embed_pos.embedding_weight",
            "puzzle_emb": "inner.puzzle_emb.weights"}
_UNRENAMED = {ref: ours for ours, ref in _RENAMED.items()}


def reference_name(name: str) -> str:
    """The reference's state-dict name of our tensor ``name`` (e.g. ``H_level.layers.0.mlp.
    down_proj.weight`` -> ``inner.H_level.layers.0.mlp.down_proj.weight``)."""
    return _RENAMED.get(name, f"inner.{name}")


def project_name(name: str) -> str:
    """Our state-dict name of the reference's tensor ``name`` (``reference_name`` inverted)."""
    if name in _UNRENAMED:
        return _UNRENAMED[name]
    if not name.startswith("inner."):
        raise ValueError(f"unexpected reference tensor {name!r} (not under 'inner.')")
    return name[len("inner."):]


def to_project_state(reference_state: dict[str, torch.Tensor],
                     project_state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The reference model's state dict under our names, checked against ours: the same
    tensors (none left over on either side) of the same shapes, in our dtypes."""
    mapped = {project_name(k): v for k, v in reference_state.items()}
    extra = sorted(set(mapped) - set(project_state))
    missing = sorted(set(project_state) - set(mapped))
    wrong = [f"{k} {tuple(mapped[k].shape)} vs ours {tuple(project_state[k].shape)}"
             for k in sorted(set(mapped) & set(project_state))
             if mapped[k].shape != project_state[k].shape]
    if extra or missing or wrong:
        raise ValueError("the reference's weights do not map onto ours: "
                         + "; ".join(part for part in (
                             extra and f"only in the reference: {extra}",
                             missing and f"only in ours: {missing}",
                             wrong and f"shapes differ: {wrong}") if part))
    return {k: v.to(project_state[k].dtype) for k, v in mapped.items()}


def strip_wrappers(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """``state`` under the inner model's names (``inner.<tensor>``): the prefixes that
    ``torch.compile`` (``_orig_mod.``), DDP (``module.``) and ``ACTLossHead`` (``model.``)
    add are removed, and the puzzle embedding's non-persistent buffers dropped."""
    out = {}
    for name, tensor in state.items():
        while name.startswith(_WRAPPERS):
            name = name.split(".", 1)[1]
        if name not in _NOT_PERSISTENT:
            out[name] = tensor
    return out


# --- finding the files ----------------------------------------------------------------------
def _weights_files(folder: Path) -> list[Path]:
    """The reference weights files in ``folder``: ``checkpoint`` and ``step_<N>`` files."""
    if not folder.is_dir():
        return []
    return sorted(p for p in folder.iterdir() if p.is_file() and (
        p.name == RELEASED_WEIGHTS or _STEP_FILE.fullmatch(p.name)))


def is_reference_source(path: str | Path) -> bool:
    """Whether ``path`` names a reference checkpoint rather than one of ours: an ``hf://``
    repo, a folder with ``all_config.yaml`` or reference weights files (``checkpoint``,
    ``step_<N>``) and no ``config.json``, or such a weights file."""
    text = str(path)
    if text.startswith(HF_PREFIX):
        return True
    path = Path(path)
    if path.is_file():
        return (path.name == RELEASED_WEIGHTS or bool(_STEP_FILE.fullmatch(path.name))
                or (path.parent / REFERENCE_CONFIG).is_file())
    if not path.is_dir() or (path / CONFIG).is_file():
        return False
    return (path / REFERENCE_CONFIG).is_file() or bool(_weights_files(path))


def download(spec: str) -> Path:
    """The local folder of ``hf://owner/name[@revision]``, downloaded with
    ``huggingface_hub.snapshot_download`` (or found in its cache).

    Raises:
        ValueError: ``huggingface_hub`` missing, no network, or no such repo; the message
            says how to pass a local folder instead.
    """
    repo, _, revision = spec[len(HF_PREFIX):].partition("@")
    instead = (f"download it where the network allows (huggingface-cli download {repo} "
               "--local-dir DIR) and pass the folder DIR instead")
    if repo.count("/") != 1 or not all(repo.split("/")):
        raise ValueError(f"{spec!r}: expected hf://OWNER/NAME[@REVISION], e.g. "
                         f"{HF_PREFIX}{RELEASED['sudoku']}")
    try:
        from huggingface_hub import snapshot_download
    except ImportError:
        raise ValueError(f"{spec}: reading from the Hugging Face Hub needs the huggingface_hub "
                         f"package (pip install huggingface_hub); or {instead}") from None
    try:
        return Path(snapshot_download(repo_id=repo, revision=revision or None))
    except Exception as err:  # offline, no such repo, rate limits: the hub's own error types
        first = (str(err).strip().splitlines() or [""])[0]
        raise ValueError(f"{spec}: could not download from the Hugging Face Hub "
                         f"({type(err).__name__}: {first}); {instead}") from None


def locate(source: str | Path) -> tuple[Path, Path]:
    """``(folder, weights file)`` of a reference checkpoint: a folder (its ``checkpoint``
    file, else its newest ``step_<N>``), a weights file in such a folder, or ``hf://``.

    Raises:
        FileNotFoundError: no such folder, no ``all_config.yaml`` or no weights file; the
            message names what is missing.
        ValueError: both ``checkpoint`` and ``step_<N>`` files (name the one to use).
    """
    path = download(str(source)) if str(source).startswith(HF_PREFIX) else Path(source)
    if path.is_file():
        folder, weights = path.parent, path
    elif path.is_dir():
        folder = path
        found = _weights_files(folder)
        steps = sorted((int(_STEP_FILE.fullmatch(p.name).group(1)), p) for p in found
                       if p.name != RELEASED_WEIGHTS)
        if not found:
            raise FileNotFoundError(
                f"{folder}: no reference weights file in it (expected {RELEASED_WEIGHTS!r}, "
                "as in the released repos, or the step_<N> files pretrain.py saves)")
        if steps and len(steps) != len(found):
            raise ValueError(f"{folder} holds both {RELEASED_WEIGHTS!r} and step_<N> weights; "
                             "pass the weights file to use (DIR/checkpoint or DIR/step_N)")
        weights = steps[-1][1] if steps else found[0]
    else:
        raise FileNotFoundError(f"no reference checkpoint at {str(source)!r}: no such folder")
    if not (folder / REFERENCE_CONFIG).is_file():
        raise FileNotFoundError(
            f"{folder / REFERENCE_CONFIG}: not found; a reference checkpoint folder holds the "
            f"{REFERENCE_CONFIG} that pretrain.py writes beside its weights (the released "
            "repos ship it); without it the heads, cycles and positions are unknown")
    return folder, weights


# --- reading ---------------------------------------------------------------------------------
def read_reference_config(folder: Path) -> dict[str, Any]:
    """``all_config.yaml`` of ``folder``, checked to describe the reference's HRM.

    Raises:
        ValueError: not YAML, no ``arch`` section or a key of it missing, or another model
            than ``hrm_act_v1``; the message names the file.
    """
    path = Path(folder) / REFERENCE_CONFIG
    try:
        data = yaml.safe_load(path.read_text())
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as err:
        raise ValueError(f"{path}: unreadable ({type(err).__name__}: {err})") from None
    arch = data.get("arch") if isinstance(data, dict) else None
    if not isinstance(arch, dict):
        raise ValueError(f"{path}: expected the reference's PretrainConfig (a mapping with an "
                         "'arch' section); is this the all_config.yaml of pretrain.py?")
    if arch.get("name") != _ACT_MODEL:
        raise ValueError(f"{path}: arch.name is {arch.get('name')!r}; only the reference's "
                         f"{_ACT_MODEL} converts")
    needed = ("H_cycles", "L_cycles", "H_layers", "L_layers", "hidden_size", "num_heads",
              "expansion", "pos_encodings", "halt_max_steps")
    missing = [key for key in needed if key not in arch]
    if missing:
        raise ValueError(f"{path}: arch lacks {', '.join(missing)}")
    return data


def read_reference_state(path: Path) -> dict[str, torch.Tensor]:
    """The weights file ``path`` (``torch.load`` with ``weights_only=True``) as the inner
    model's state dict (``strip_wrappers``).

    Raises:
        ValueError: a file that is no torch pickle, that ``weights_only`` refuses (it holds
            objects other than tensors and containers), or that is not a state dict of
            tensors; the message names the file.
    """
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as err:  # torch reports every failure as this
        text = str(err)
        found = re.search(r"Unsupported global: GLOBAL \S+|\S+ was not an allowed global", text)
        if found:
            raise ValueError(f"{path}: refused by torch.load(weights_only=True): it holds "
                             f"objects other than tensors ({found.group(0)}); a reference "
                             "checkpoint is the state dict pretrain.py saves") from None
        detail = text.split("WeightsUnpickler error:", 1)[-1].strip().splitlines()[:1]
        raise ValueError(f"{path}: not a torch weights file (unpickling failed: "
                         f"{detail[0] if detail else 'unreadable'})") from None
    except Exception as err:  # torn zip, not a torch file at all
        raise ValueError(f"{path}: not a torch weights file ({type(err).__name__}: "
                         f"{err})") from None
    if not isinstance(state, dict) or not state or not all(
            isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in state.items()):
        got = "an empty dict" if isinstance(state, dict) and not state else \
            type(state).__name__
        raise ValueError(f"{path}: expected a state dict (tensor names to tensors), got "
                         f"{got}; a reference checkpoint is the "
                         "model.state_dict() that pretrain.py saves")
    state = strip_wrappers(state)
    outside = sorted(k for k in state if not k.startswith("inner."))
    if outside:
        raise ValueError(f"{path}: tensors outside the reference model ({', '.join(outside[:5])}"
                         f"{' ...' if len(outside) > 5 else ''}); expected names ending in "
                         "inner.<tensor>")
    return state


def _shape(state: dict[str, torch.Tensor], name: str, path: Path, ndim: int) -> tuple[int, ...]:
    if name not in state:
        raise ValueError(f"{path}: no tensor {name}; is this an HRM checkpoint?")
    shape = tuple(state[name].shape)
    if len(shape) != ndim:
        raise ValueError(f"{path}: {name} has shape {shape}, expected {ndim} dimensions")
    return shape


def _layers(state: dict[str, torch.Tensor], level: str) -> int:
    found = {int(m.group(1)) for k in state
             if (m := re.match(rf"inner\.{level}_level\.layers\.(\d+)\.", k))}
    return max(found) + 1 if found else 0


@dataclass
class ReferenceShapes:
    """What the tensors say: vocabulary, width, layers, puzzle embedding, learned positions."""

    vocab_size: int
    hidden_size: int
    H_layers: int
    L_layers: int
    puzzle_emb_ndim: int
    num_puzzle_ids: int
    positions: int | None  # rows of the learned position table, None with RoPE


def infer_shapes(state: dict[str, torch.Tensor], path: Path) -> ReferenceShapes:
    """The model's sizes from its tensors (``state`` under ``inner.`` names)."""
    vocab, hidden = _shape(state, "inner.embed_tokens.embedding_weight", path, 2)
    ids, ndim = (_shape(state, "inner.puzzle_emb.weights", path, 2)
                 if "inner.puzzle_emb.weights" in state else (0, 0))
    positions = (_shape(state, "inner.embed_pos.embedding_weight", path, 2)[0]
                 if "inner.embed_pos.embedding_weight" in state else None)
    return ReferenceShapes(vocab, hidden, _layers(state, "H"), _layers(state, "L"), ndim, ids,
                           positions)


# --- converting ------------------------------------------------------------------------------
def task_for(name: str | None, shapes: ReferenceShapes, config: dict[str, Any], folder: Path,
             weights: Path, size: int | None = None) -> tuple[str, Task]:
    """``(name, task)``: our task for the checkpoint, ``name`` (``sudoku``, ``maze``;
    ``arc`` is refused) or, when None, the one its vocabulary names (11: Sudoku, 6: Maze,
    12: ARC). Sudoku is 9x9; a maze's side comes from ``size``, the learned position
    table, ``data_path`` (``...-30x30-...``) or Maze-Hard's 30, in that order.

    Raises:
        FileNotFoundError: ARC without ``identifiers.json`` beside ``all_config.yaml``.
        ValueError: ARC, an unknown name, or a vocabulary that is not the task's.
    """
    guess = _VOCAB.get(shapes.vocab_size)
    name = name or guess
    if name is None:
        raise ValueError(f"{weights}: a vocabulary of {shapes.vocab_size} tokens is none of the "
                         "reference's datasets (Sudoku 11, Maze 6, ARC 12); pass the task")
    if name not in TASKS:
        raise ValueError(f"unknown task {name!r}; choose one of {', '.join(TASKS)}")
    if name == "arc":
        if not (folder / IDENTIFIERS).is_file():
            raise FileNotFoundError(
                f"{folder / IDENTIFIERS}: not found; an ARC checkpoint's puzzle embeddings are "
                "indexed by the identifiers of the dataset it was trained on (the "
                f"{IDENTIFIERS} that dataset/build_arc_dataset.py writes): copy it beside "
                f"{REFERENCE_CONFIG}")
        raise ValueError(f"{folder}: ARC checkpoints cannot be imported faithfully yet: their "
                         f"{shapes.num_puzzle_ids} puzzle embeddings belong to the reference's "
                         f"augmented variants ({IDENTIFIERS}: <task>|||t<dihedral>|||<colour "
                         "permutation>, randomly translated on the canvas), and our ARC task "
                         "numbers its variants from its own table; Sudoku and Maze import")
    if name == "sudoku" and size not in (None, 9):
        raise ValueError(f"the reference's Sudoku is 9x9; size {size} does not apply")
    side = (size or _maze_side(shapes, config)) if name == "maze" else 9
    task = make_task(TaskConfig(name=name, size=side))
    if task.vocab_size != shapes.vocab_size:
        raise ValueError(f"{weights}: the weights have a vocabulary of {shapes.vocab_size} "
                         f"tokens, task {task.name} has {task.vocab_size}"
                         + (f"; is this a {guess} checkpoint?" if guess else ""))
    return name, task


def _maze_side(shapes: ReferenceShapes, config: dict[str, Any]) -> int:
    if shapes.positions is not None:
        prefix = -(-shapes.puzzle_emb_ndim // shapes.hidden_size)
        side = math.isqrt(max(shapes.positions - prefix, 0))
        if side * side == shapes.positions - prefix:
            return side
    found = re.search(r"(\d+)x(\d+)", str(config.get("data_path", "")))
    if found and found.group(1) == found.group(2):
        return int(found.group(1))
    return _MAZE_HARD


_TRAIN_FLOATS = {"lr": "lr", "lr_min_ratio": "lr_min_ratio", "weight_decay": "weight_decay",
                 "beta1": "beta1", "beta2": "beta2", "puzzle_emb_lr": "puzzle_emb_lr",
                 "puzzle_emb_weight_decay": "puzzle_emb_weight_decay"}
_TRAIN_INTS = {"lr_warmup_steps": "lr_warmup_steps", "batch_size": "global_batch_size",
               "seed": "seed"}


def run_config(config: dict[str, Any], shapes: ReferenceShapes, kind: str, task: Task,
               path: Path, name: str | None = None) -> RunConfig:
    """Our run config for the reference's ``all_config.yaml`` (``config``): the task's
    paper-scale recipe (``sudoku9-extreme``, ``maze30-hard``) with the model and training
    settings of the reference (``kind``: the task's name in ``TASKS``), fp32 (the
    reference's bfloat16 ``forward_dtype`` aside).

    Raises:
        ValueError: ``all_config.yaml`` disagrees with the tensors, or holds a value our
            config refuses; the message names the file (``path``).
    """
    arch = config["arch"]
    for key in ("hidden_size", "H_layers", "L_layers"):
        if int(arch[key]) != getattr(shapes, key):
            raise ValueError(f"{path}: arch.{key} is {arch[key]}, the weights have "
                             f"{getattr(shapes, key)}; are they from another run?")
    if isinstance(arch.get("puzzle_emb_ndim"), int) and arch["puzzle_emb_ndim"] != \
            shapes.puzzle_emb_ndim:
        raise ValueError(f"{path}: arch.puzzle_emb_ndim is {arch['puzzle_emb_ndim']}, the "
                         f"weights' puzzle embedding has {shapes.puzzle_emb_ndim} dimensions")
    if shapes.puzzle_emb_ndim and shapes.num_puzzle_ids != task.num_puzzle_ids:
        raise ValueError(f"{path}: the weights embed {shapes.num_puzzle_ids} puzzle "
                         f"identifiers, task {task.name} has {task.num_puzzle_ids}")
    loss = arch["loss"].get("loss_type", "stablemax_cross_entropy") \
        if isinstance(arch.get("loss"), dict) else "stablemax_cross_entropy"
    try:
        base = load_config(_RECIPES[kind], [f"task.size={task.size}"] + (
            ["data.min_difficulty=0"] if kind == "maze" and task.size != _MAZE_HARD
            else []))  # Maze-Hard's 110-step paths fit only 30x30
        model = dataclasses.replace(
            base.model, kind="hrm", hidden_size=shapes.hidden_size,
            num_heads=int(arch["num_heads"]), expansion=float(arch["expansion"]),
            H_layers=shapes.H_layers, L_layers=shapes.L_layers,
            H_cycles=int(arch["H_cycles"]), L_cycles=int(arch["L_cycles"]),
            puzzle_emb_ndim=shapes.puzzle_emb_ndim, pos_encodings=str(arch["pos_encodings"]),
            rope_theta=float(arch.get("rope_theta", 10000.0)),
            rms_norm_eps=float(arch.get("rms_norm_eps", 1e-5)), gradient="one_step")
        train = dataclasses.replace(
            base.train, max_segments=int(arch["halt_max_steps"]),
            halt_exploration_prob=float(arch.get("halt_exploration_prob", 0.1)),
            loss=_LOSSES.get(loss, loss), precision="fp32",
            **{ours: float(config[theirs]) for ours, theirs in _TRAIN_FLOATS.items()
               if config.get(theirs) is not None},
            **{ours: int(config[theirs]) for ours, theirs in _TRAIN_INTS.items()
               if config.get(theirs) is not None})
        run = dataclasses.replace(base, name=name or f"hrm-reference-{task.name}",
                                  model=model, train=train)
        run.validate()
    except (ConfigError, TypeError) as err:
        raise ValueError(f"{path}: {err}") from None
    return run


@dataclass
class ReferenceCheckpoint:
    """A reference checkpoint converted to our core, and where it came from."""

    model: RecurrentCore
    task: Task
    config: RunConfig
    folder: Path
    weights: Path
    weights_sha256: str
    reference_config: dict[str, Any]

    def meta(self) -> dict[str, Any]:
        """The provenance stored in a core's ``config.json`` ``meta`` and its card."""
        return {"reference_weights": self.weights.name,
                "reference_weights_sha256": self.weights_sha256,
                "reference_config_sha256": file_sha256(self.folder / REFERENCE_CONFIG)}


def convert(source: str | Path, task: str | None = None, size: int | None = None,
            name: str | None = None) -> ReferenceCheckpoint:
    """Read the reference checkpoint ``source`` (folder, weights file or ``hf://`` repo) and
    load it into our model (float32, CPU, eval mode) for ``task`` (default: from the
    vocabulary). See the module docstring for what is read from where.

    Raises:
        FileNotFoundError: a missing folder, ``all_config.yaml``, weights or (ARC)
            ``identifiers.json``; ValueError: anything that does not fit, naming the file.
    """
    folder, weights = locate(source)
    config = read_reference_config(folder)
    state = read_reference_state(weights)
    shapes = infer_shapes(state, weights)
    kind, our_task = task_for(task, shapes, config, folder, weights, size)
    run = run_config(config, shapes, kind, our_task, folder / REFERENCE_CONFIG, name)
    model = build_model(run.model.fit_to(our_task))
    if shapes.positions is not None and shapes.positions != model.positions:
        raise ValueError(f"{weights}: the learned position table has {shapes.positions} rows; "
                         f"task {our_task.name} needs {model.positions}")
    try:
        mapped = to_project_state(state, model.state_dict())
    except ValueError as err:
        raise ValueError(f"{weights}: {err} (with {REFERENCE_CONFIG}'s expansion "
                         f"{config['arch']['expansion']})") from None
    bad = [k for k, v in mapped.items() if v.is_floating_point() and not torch.isfinite(v).all()]
    if bad:
        raise ValueError(f"{weights}: {len(bad)} tensor(s) hold NaN or inf ({', '.join(bad[:5])})")
    model.load_state_dict(mapped)
    model.eval()
    return ReferenceCheckpoint(model, our_task, run, folder, weights, file_sha256(weights),
                               config)


def load_reference_checkpoint(source: str | Path,
                              device: torch.device | str = "cpu") -> Checkpoint:
    """``convert(source)`` as a loaded ``Checkpoint`` (what ``load_checkpoint`` returns for
    a reference folder). It has no held-out puzzles: pass a CSV as the split."""
    ref = convert(source)
    ref.model.to(device).eval()
    meta = {**ref.meta(), WEIGHTS_SHA_KEY: ref.weights_sha256}
    return Checkpoint(ref.model, ref.task, ref.config, meta, ref.folder)


def reference_weights_sha256(source: str | Path) -> str:
    """SHA-256 of a reference checkpoint's weights file (what traces record as the core's)."""
    return file_sha256(locate(source)[1])


def import_reference(source: str | Path, task: str, out: str | Path,
                     test_csv: str | Path | None = None, size: int | None = None) -> Path:
    """Convert the reference checkpoint ``source`` to one of our core folders at ``out``
    (``model.safetensors``, ``config.json``, ``card.json`` with the source weights' SHA-256;
    ``test.csv`` from ``test_csv``, read and checked by the task, when given). The folder is
    written under a temporary name beside ``out`` and renamed into place when whole.

    Raises:
        FileExistsError: ``out`` exists (checked before any work).
        FileNotFoundError, ValueError: see ``convert``; a ``test_csv`` the task refuses.
    """
    out = Path(out)
    if out.exists():
        raise FileExistsError(f"{out} exists; choose another --out (nothing is overwritten)")
    ref = convert(source, task, size)
    puzzles = ref.task.read_csv(test_csv) if test_csv is not None else None
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=out.parent, prefix=f".{out.name}.", suffix=".tmp"))
    try:
        meta = {**ref.meta(), "source": str(source)}
        save_checkpoint(tmp, ref.model, ref.config, meta,
                        None if puzzles is None else (ref.task, puzzles))
        arch = ref.reference_config["arch"]
        card = {"source": str(source), "reference": "https://github.com/sapientinc/HRM",
                "commands": [" ".join(["hrm-rl import-reference", str(source), "--task", task,
                                       "--out", str(out)]
                                      + (["--test", str(test_csv)] if test_csv else [])
                                      + (["--size", str(size)] if size else []))],
                **meta, "task": ref.task.name,
                "reference_arch": {k: v for k, v in arch.items() if k != "loss"},
                "summary": f"the reference's {ref.task.name} checkpoint, converted (not "
                           "trained here)",
                "note": f"trained by the reference ({arch.get('forward_dtype', 'bfloat16')} "
                        "forward); this core runs it in float32, which hrm-rl bench "
                        "reference --check-import verifies"}
        atomic_write_text(tmp / CARD, json.dumps(card, indent=2) + "\n")
        os.chmod(tmp, 0o755)  # mkdtemp makes 0700; cores are meant to be shared
        if out.exists():
            raise FileExistsError(f"{out} appeared while converting; nothing was overwritten")
        os.rename(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out

