"""Our HRM against the reference implementation (sapientinc/HRM) on this machine; one JSON object.

The reference is a local checkout the user supplies (``git clone
https://github.com/sapientinc/HRM``); it is never bundled or downloaded. Its ``models/``
package is imported from ``--reference-dir`` (default: ``$HRM_REFERENCE_DIR``) with two
stand-ins of ours served only while it imports:

- ``flash_attn_interface`` / ``flash_attn``: ``flash_attn_func(q, k, v, causal=False)`` on
  ``(batch, seq, heads, head_dim)`` tensors through ``F.scaled_dot_product_attention``
  (flash-attn has no CPU, fp32 or float64 kernels; this is always used, installed or not);
- ``pydantic.BaseModel`` for its config class, only when pydantic is not installed.

Afterwards ``sys.modules`` holds none of the reference's modules nor the stand-ins. Nothing of
``pretrain.py`` is imported (it needs wandb, hydra, adam-atan2, a dataset); the reference's
training step is rebuilt here from it: ``ACTLossHead`` forward (the segment and, in training,
its no-grad Q-continue bootstrap forward), ``((1 / batch) * loss).backward()``, optimiser
step, ``zero_grad``, metrics to the host.

What it measures:

1. **Equality** (float64, ``--check-steps`` training steps, tiny config at batch 8): the
   reference's weights are loaded into our model (names mapped, see ``to_project_state``);
   exploration off and a random Q-head so that rows halt early. Each step runs our
   ``ACTTrainer.train_step`` and the reference's step on the same puzzles and compares the
   segment forward (logits, q_halt, q_continue, the bootstrap target, both carries), the
   halting decisions and segment counters, the losses, the gradient of every parameter
   tensor and the weights after the optimiser step. Differences are relative to the largest
   magnitude of the reference's tensor; ``equal`` means all of them are within
   ``--tolerance`` and every halting decision agrees. (Both implementations compute RMSNorm
   and the Q-head in float32, so float64 agreement is at float32 resolution there.)
2. **Speed** of three configs (1-step gradient, fp32, no compile, AdamW, random tokens):
   ``tiny4`` (hidden 128, 4 heads, 2+2 layers, 2x2 cycles, 4x4 Sudoku: seq 16, batch 128),
   ``tiny9`` (the same on 9x9 Sudoku: seq 81, batch 64) and ``paper9`` (hidden 512, 8 heads,
   4+4 layers, seq 81, batch 32; 27,275,266 parameters). A training step is one segment on
   every row plus the bootstrap forward, backward and the optimiser step (ours:
   ``ACTTrainer.train_step``); an evaluation round runs ``--eval-segments`` segments on one
   batch from the initial carry without halting (ours: ``trace.record_trace``; the
   reference: its ``evaluate`` loop, ``ACTLossHead`` in eval mode under inference_mode).
   Project and reference alternate in ``--rounds`` rounds; each side's figure is the
   median segments/s over the rounds and ``ratio`` is project / reference (> 1: ours is
   faster). Puzzle augmentation is off (the reference augments in a DataLoader worker).
3. The machine's fp32 ``torch.mm`` peak (``flops.matmul_peak_gflops``), against which both
   sides' FLOP utilisation is given (FLOPs from ``flops.segment_flops``).
4. With ``--check-import [sudoku,maze]``: the reference's checkpoints as our cores
   (``check_import``): reference models at the paper's shapes, trained a few steps and
   saved as ``pretrain.py`` saves them, converted by ``hrm_rl.reference_import``, then both
   run 16 segments on the same puzzles (each side encoding the dataset CSV its own way) in
   float64 and float32: worst logit and Q differences and halting disagreements.

Without a reference directory, or one that lacks the reference's model files, it prints a
``{"skipped": true, "reason": ...}`` object and exits 0.

    hrm-rl bench reference --reference-dir ~/src/HRM [--seconds 20] [--configs tiny4,paper9]
        [--batch paper9=4] [--threads 1] [--device auto] [--check-steps 4] [--no-timing]
        [--check-import sudoku,maze] [--import-segments 16]
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import importlib
import math
import os
import statistics
import subprocess
import sys
import time
import types
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator

import numpy as np
import torch
import torch.nn.functional as F

from hrm_rl.cli_types import int_in
from hrm_rl.config import RunConfig, load_config
from hrm_rl.device import resolve_device
from hrm_rl.model.flops import matmul_peak_gflops, segment_flops
from hrm_rl.cpu_defaults import choose_matmul, cpu_info
from hrm_rl.model.layers import set_linear_backend
from hrm_rl.optim import make_optimizer
from hrm_rl.reference_import import reference_name, to_project_state

ENV_VAR = "HRM_REFERENCE_DIR"
REFERENCE_URL = "https://github.com/sapientinc/HRM"
REFERENCE_FILES = ("models/hrm/hrm_act_v1.py", "models/layers.py", "models/losses.py",
                   "models/common.py", "models/sparse_embedding.py")
_MODEL_MODULE = "models.hrm.hrm_act_v1"
_LOSS_MODULE = "models.losses"
_ACT_CLASS = "HierarchicalReasoningModel_ACTV1"
_LOSS_HEAD = "ACTLossHead"
_LOSS_TYPES = {"stablemax": "stablemax_cross_entropy", "softmax": "softmax_cross_entropy"}
_RETURN_KEYS = ("logits", "q_halt_logits", "q_continue_logits", "target_q_continue")


@dataclass(frozen=True)
class Setup:
    """One timed configuration (a Sudoku size fixes ``seq_len`` and the vocabulary)."""

    name: str
    hidden_size: int
    num_heads: int
    H_layers: int
    L_layers: int
    H_cycles: int
    L_cycles: int
    sudoku_size: int
    batch_size: int


SETUPS = {
    "tiny4": Setup("tiny4", 128, 4, 2, 2, 2, 2, sudoku_size=4, batch_size=128),
    "tiny9": Setup("tiny9", 128, 4, 2, 2, 2, 2, sudoku_size=9, batch_size=64),
    "paper9": Setup("paper9", 512, 8, 4, 4, 2, 2, sudoku_size=9, batch_size=32),
}


# --- finding and importing the reference ----------------------------------------------------
def missing_reference_files(reference_dir: str | Path) -> list[str]:
    """The reference's model files (``REFERENCE_FILES``) absent from ``reference_dir``."""
    root = Path(reference_dir)
    return [name for name in REFERENCE_FILES if not (root / name).is_file()]


def flash_attn_func(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, dropout_p: float = 0.0,
                    softmax_scale: float | None = None, causal: bool = False,
                    **_ignored: Any) -> torch.Tensor:
    """flash-attn's ``flash_attn_func`` through torch SDPA.

    ``q``, ``k``, ``v``: ``(batch, seq, heads, head_dim)`` (flash-attn's layout); returns
    the attention output in the same layout, contiguous (the reference ``view``s it).
    Key/value heads fewer than query heads are repeated (grouped-query attention).
    """
    q, k, v = (t.transpose(1, 2) for t in (q, k, v))  # (batch, heads, seq, head_dim)
    if k.shape[1] != q.shape[1]:
        k = k.repeat_interleave(q.shape[1] // k.shape[1], dim=1)
        v = v.repeat_interleave(q.shape[1] // v.shape[1], dim=1)
    out = F.scaled_dot_product_attention(q, k, v, dropout_p=dropout_p, is_causal=causal,
                                         scale=softmax_scale)
    return out.transpose(1, 2).contiguous()


class _ShimBaseModel:
    """Enough of ``pydantic.BaseModel`` for the reference's config class: keyword fields
    from the class annotations, class-level defaults, unknown keys ignored."""

    def __init__(self, **data: Any) -> None:
        fields: list[str] = []
        for klass in reversed(type(self).__mro__):
            fields += [f for f in getattr(klass, "__annotations__", {}) if f not in fields]
        for name in fields:
            if name in data:
                setattr(self, name, data[name])
            elif hasattr(type(self), name):
                setattr(self, name, getattr(type(self), name))
            else:
                raise TypeError(f"{type(self).__name__}: missing field {name!r}")


def _shim_modules() -> dict[str, types.ModuleType]:
    """The stand-in modules served while the reference imports (see the module docstring)."""
    shims = {}
    for name in ("flash_attn_interface", "flash_attn"):
        module = types.ModuleType(name, "hrm-rl bench reference: flash-attn through torch SDPA")
        module.flash_attn_func = flash_attn_func
        shims[name] = module
    try:
        importlib.import_module("pydantic")
    except ImportError:
        module = types.ModuleType("pydantic", "hrm-rl bench reference: a BaseModel stand-in")
        module.BaseModel = _ShimBaseModel
        shims["pydantic"] = module
    return shims


@contextlib.contextmanager
def _importing_from(reference_dir: Path, shims: dict[str, types.ModuleType]) -> Iterator[None]:
    """``reference_dir`` first on ``sys.path`` and ``shims`` in ``sys.modules`` inside the
    block; afterwards both, and every ``models`` module imported, are as they were."""
    def owned(name: str) -> bool:
        return name == "models" or name.startswith("models.") or name in shims

    saved = {name: mod for name, mod in sys.modules.items() if owned(name)}
    for name in saved:
        del sys.modules[name]
    sys.modules.update(shims)
    sys.path.insert(0, str(reference_dir))
    try:
        yield
    finally:
        sys.path.remove(str(reference_dir))
        for name in [n for n in sys.modules if owned(n)]:
            del sys.modules[name]
        sys.modules.update(saved)


@dataclass
class Reference:
    """The imported reference: its ACT model and loss-head classes and where they came from."""

    path: Path
    act_model: type
    loss_head: type
    shims: tuple[str, ...]
    files_sha256: str
    commit: str | None

    def build(self, config: dict[str, Any], loss: str = "stablemax",
              device: torch.device | str = "cpu") -> torch.nn.Module:
        """``ACTLossHead(HierarchicalReasoningModel_ACTV1(config))`` on ``device``, built
        under ``torch.device`` as ``pretrain.create_model`` does (no ``torch.compile``)."""
        if loss not in _LOSS_TYPES:
            raise ValueError(f"the reference has no {loss!r} loss; use one of {list(_LOSS_TYPES)}")
        with torch.device(device):
            return self.loss_head(self.act_model(config), loss_type=_LOSS_TYPES[loss])


def load_reference(reference_dir: str | Path) -> Reference:
    """Import the reference's model and loss modules from ``reference_dir``.

    Raises:
        FileNotFoundError: ``reference_dir`` lacks one of ``REFERENCE_FILES``.
        ValueError: its modules do not import, or lack the classes used here.
    """
    root = Path(reference_dir).expanduser().resolve()
    missing = missing_reference_files(root)
    if missing:
        raise FileNotFoundError(f"{root} is not a checkout of {REFERENCE_URL}: "
                                f"missing {', '.join(missing)}")
    shims = _shim_modules()
    try:
        with _importing_from(root, shims):
            act = getattr(importlib.import_module(_MODEL_MODULE), _ACT_CLASS)
            head = getattr(importlib.import_module(_LOSS_MODULE), _LOSS_HEAD)
    except (ImportError, AttributeError) as err:
        raise ValueError(f"could not import the reference from {root}: "
                         f"{type(err).__name__}: {err}") from err
    digest = hashlib.sha256()
    for name in REFERENCE_FILES:
        digest.update((root / name).read_bytes())
    return Reference(root, act, head, tuple(sorted(shims)), digest.hexdigest()[:16],
                     _git_commit(root))


def _git_commit(root: Path) -> str | None:
    """The checkout's commit, or None (not a git work tree of its own, or no git)."""
    try:
        done = subprocess.run(["git", "-C", str(root), "rev-parse", "--show-toplevel", "HEAD"],
                              capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return None
    lines = done.stdout.split()
    if done.returncode != 0 or len(lines) != 2 or Path(lines[0]).resolve() != root:
        return None
    return lines[1]


# --- configs and weights --------------------------------------------------------------------
def project_config(setup: Setup, batch_size: int | None = None, device: str = "cpu",
                   threads: int | None = 1, max_segments: int = 16,
                   exploration: float = 0.1, optimizer: str = "adamw",
                   extra: list[str] | None = None) -> RunConfig:
    """Our run config for ``setup``: fp32, no compile, 1-step gradient, no puzzle embedding,
    no augmentation (the model is fitted to the task by the trainer)."""
    return load_config(None, [
        "task.name=sudoku", f"task.size={setup.sudoku_size}", "model.kind=hrm",
        f"model.hidden_size={setup.hidden_size}", f"model.num_heads={setup.num_heads}",
        f"model.H_layers={setup.H_layers}", f"model.L_layers={setup.L_layers}",
        f"model.H_cycles={setup.H_cycles}", f"model.L_cycles={setup.L_cycles}",
        "model.expansion=4", "model.puzzle_emb_ndim=0", "model.pos_encodings=rope",
        "model.gradient=one_step", f"train.batch_size={batch_size or setup.batch_size}",
        f"train.max_segments={max_segments}",
        f"train.halt_exploration_prob={exploration}", "train.halt_loss=q_learning",
        "train.precision=fp32", "train.compile=false", f"train.device={device}",
        f"train.threads={threads or 0}", f"train.optimizer={optimizer}",
        "data.augment=false", *(extra or [])])


def fitted_model(config: RunConfig):
    """``config.model`` fitted to its task (``ModelConfig.fit_to`` returns a copy)."""
    from hrm_rl.tasks import make_task

    return config.model.fit_to(make_task(config.task))


def reference_config(config: RunConfig, forward_dtype: str = "float32") -> dict[str, Any]:
    """The reference's ``HierarchicalReasoningModel_ACTV1Config`` fields for our run config
    (its model fitted to its task, so ``vocab_size`` and ``seq_len`` are the task's)."""
    m, t = fitted_model(config), config.train
    if m.kind != "hrm" or m.gradient_mode != "one_step" or m.pos_encodings == "none":
        raise ValueError("the reference is HRM with the 1-step gradient and rope or learned "
                         "positions")
    return dict(batch_size=t.batch_size, seq_len=m.seq_len, puzzle_emb_ndim=m.puzzle_emb_ndim,
                num_puzzle_identifiers=max(m.num_puzzle_ids, 1), vocab_size=m.vocab_size,
                H_cycles=m.H_cycles, L_cycles=m.L_cycles, H_layers=m.H_layers,
                L_layers=m.L_layers, hidden_size=m.hidden_size, expansion=m.expansion,
                num_heads=m.num_heads, pos_encodings=m.pos_encodings,
                rms_norm_eps=m.rms_norm_eps, rope_theta=m.rope_theta,
                halt_max_steps=t.max_segments, halt_exploration_prob=t.halt_exploration_prob,
                forward_dtype=forward_dtype, causal=False)


def _parameter_count(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters() if p.requires_grad)


# --- the reference's training step and evaluation -------------------------------------------
def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def random_token_batches(vocab_size: int, seq_len: int, n: int,
                         seed: int) -> dict[str, torch.Tensor]:
    """``n`` puzzles of random tokens as the reference's dataset gives them (int32): inputs in
    ``1..vocab-1``, labels in ``2..vocab-1``, puzzle identifier 0."""
    from hrm_rl.bench.train import random_puzzles

    p = random_puzzles(vocab_size, seq_len, n, seed)
    return {"inputs": torch.from_numpy(p.inputs).to(torch.int32),
            "labels": torch.from_numpy(p.labels).to(torch.int32),
            "puzzle_identifiers": torch.from_numpy(p.puzzle_ids).to(torch.int32)}


class ReferenceTrainer:
    """The reference's training step (``pretrain.train_batch``, one process) and evaluation
    loop (``pretrain.evaluate``) around its ``ACTLossHead``.

    Args:
        reference: the imported reference.
        config: our run config with a fitted model (the same architecture is built).
        device: where to run.
        forward_dtype: the reference's ``forward_dtype`` (``float32``; ``float64`` for the
            equality check, which also converts the weights).
        n_puzzles: random puzzles to draw batches from (in order, cycling).
    """

    def __init__(self, reference: Reference, config: RunConfig, device: torch.device,
                 forward_dtype: str = "float32", n_puzzles: int = 2048) -> None:
        t = config.train
        self.device = device
        self.batch_size = t.batch_size
        self.lr = t.lr
        self.model = reference.build(reference_config(config, forward_dtype), t.loss, device)
        if forward_dtype == "float64":
            self.model.double()
        self.optimizer = make_optimizer(t.optimizer, self.model.parameters(), t.lr,
                                        (t.beta1, t.beta2), t.weight_decay)
        self.carry = None
        model = fitted_model(config)  # builds the task once
        self._puzzles = {k: v.to(device) for k, v in random_token_batches(
            model.vocab_size, model.seq_len, max(n_puzzles, t.batch_size), t.seed).items()}
        self._next = 0

    def next_batch(self) -> dict[str, torch.Tensor]:
        """The next ``batch_size`` puzzles (a new batch every step, as the DataLoader gives)."""
        n = self._puzzles["inputs"].shape[0]
        if self._next + self.batch_size > n:
            self._next = 0
        rows = slice(self._next, self._next + self.batch_size)
        self._next += self.batch_size
        return {k: v[rows] for k, v in self._puzzles.items()}

    def train_step(self, batch: dict[str, torch.Tensor] | None = None,
                   keep: bool = False) -> dict[str, Any]:
        """One training step on ``batch`` (default: the next one).

        Returns ``{"metrics": {name: float}}`` and, with ``keep``, also the ``loss``, the
        step's ``outputs`` (detached), the new ``carry`` and the ``grads`` by name (taken
        before the optimiser step clears them).
        """
        batch = batch if batch is not None else self.next_batch()
        self.model.train()
        if self.carry is None:
            with torch.device(self.device):
                self.carry = self.model.initial_carry(batch)
        self.carry, loss, metrics, outputs, _ = self.model(
            carry=self.carry, batch=batch, return_keys=list(_RETURN_KEYS) if keep else [])
        ((1 / self.batch_size) * loss).backward()
        grads = ({name: p.grad.detach().clone() for name, p in self.model.model.named_parameters()
                  if p.grad is not None} if keep else None)
        for group in self.optimizer.param_groups:
            group["lr"] = self.lr
        self.optimizer.step()
        self.optimizer.zero_grad()
        keys = sorted(metrics)  # reduced on the host, as rank 0 does
        values = torch.stack([metrics[k] for k in keys]).cpu().numpy()
        result: dict[str, Any] = {"metrics": {k: float(v) for k, v in zip(keys, values)}}
        if keep:
            result.update(loss=float(loss.detach()), outputs=outputs, carry=self.carry,
                          grads=grads)
        return result

    def evaluate_batch(self, batch: dict[str, torch.Tensor], segments: int) -> int:
        """``segments`` segments of ``batch`` from the initial carry in eval mode (fewer if
        every row halts first, which in eval mode is at ``halt_max_steps``); returns how many
        ran."""
        was_training = self.model.training
        self.model.eval()
        ran = 0
        try:
            with torch.inference_mode():
                with torch.device(self.device):
                    carry = self.model.initial_carry(batch)
                metrics: dict[str, torch.Tensor] = {}
                while ran < segments:
                    carry, _, metrics, _, all_finish = self.model(carry=carry, batch=batch,
                                                                  return_keys=[])
                    ran += 1
                    if all_finish:
                        break
                torch.stack([metrics[k] for k in sorted(metrics)]).cpu()
        finally:
            self.model.train(was_training)
        return ran


# --- 1. equality in float64 -----------------------------------------------------------------
def _difference(ours: torch.Tensor, theirs: torch.Tensor) -> dict[str, float]:
    """``max_abs`` difference and ``max_rel`` (over the reference's largest magnitude)."""
    ours, theirs = ours.detach().double().cpu(), theirs.detach().double().cpu()
    if ours.shape != theirs.shape:
        raise ValueError(f"shapes differ: ours {tuple(ours.shape)}, the reference's "
                         f"{tuple(theirs.shape)}")
    diff = float((ours - theirs).abs().max()) if ours.numel() else 0.0
    scale = float(theirs.abs().max()) if theirs.numel() else 0.0
    return {"max_abs": diff, "max_rel": diff / scale if scale > 0 else diff}


def _scalar_difference(ours: float, theirs: float) -> dict[str, float]:
    return _difference(torch.tensor([ours], dtype=torch.float64),
                       torch.tensor([theirs], dtype=torch.float64))


def _worst(diffs: dict[str, dict[str, float]]) -> dict[str, Any]:
    name = max(diffs, key=lambda k: diffs[k]["max_rel"])
    return {"tensors": len(diffs), "max_rel": diffs[name]["max_rel"],
            "max_abs": max(d["max_abs"] for d in diffs.values()), "worst": name}


def check_equality(reference: Reference, device: torch.device | str = "cpu", steps: int = 4,
                   batch_size: int = 8, max_segments: int = 3, tolerance: float = 1e-6,
                   seed: int = 0) -> dict[str, Any]:
    """Float64 equality of ``steps`` training steps of the tiny config (module docstring).

    Our ``ACTTrainer`` gets the reference's weights; a hook on our model catches each step's
    segment forward and bootstrap forward; the reference is fed the puzzles our engine holds
    after the step (it takes a halted row's new puzzle from the batch, keeps the others).
    """
    from hrm_rl.bench.train import make_trainer

    device = torch.device(device)
    config = project_config(SETUPS["tiny4"], batch_size, str(device), torch.get_num_threads(),
                            max_segments=max_segments, exploration=0.0,
                            extra=["train.lr=1e-3", "train.lr_warmup_steps=0",
                                   "train.weight_decay=0.1", f"train.seed={seed}"])
    torch.manual_seed(seed)
    trainer = make_trainer(config, n_puzzles=4 * batch_size)
    torch.manual_seed(seed)
    ref = ReferenceTrainer(reference, config, device, forward_dtype="float64")
    inner = ref.model.model
    with torch.no_grad():  # a random Q-head (its init is 0): rows halt at different segments
        inner.inner.q_head.weight.normal_(0.0, 0.1)
        inner.inner.q_head.bias.zero_()
    model = trainer.model.double()
    if trainer.forward_model is not model:
        raise ValueError("the equality check needs the trainer's model unwrapped (no compile)")
    model.load_state_dict(to_project_state(inner.state_dict(), model.state_dict()))
    trainer.engine.carry = model.initial_carry(batch_size, device)
    with torch.no_grad():  # shift q_halt so about half the puzzles halt after one segment
        train = trainer.train_set
        tokens = torch.as_tensor(train.inputs, dtype=torch.long, device=device)
        first = model(model.initial_carry(len(tokens), device), tokens,
                      torch.as_tensor(train.puzzle_ids, dtype=torch.long, device=device))
        shift = (first.q_halt - first.q_continue).median().double()
        for head in (model.q_head, inner.inner.q_head):
            head.bias[0] -= shift
    counts = {"project": _parameter_count(model), "reference": _parameter_count(inner),
              "tensors": len(list(model.parameters()))}

    caught: list[Any] = []
    hook = model.register_forward_hook(lambda _m, _args, out: caught.append(out))
    per_step = []
    try:
        for _ in range(steps):
            caught.clear()
            stats = trainer.train_step()
            segment, peek = caught
            engine = trainer.engine
            batch = {"inputs": engine.inputs.to(torch.int32),
                     "labels": engine.labels.to(torch.int32),
                     "puzzle_identifiers": engine.puzzle_ids.to(torch.int32)}
            theirs = ref.train_step(batch, keep=True)
            out, carry, metrics = theirs["outputs"], theirs["carry"], theirs["metrics"]
            is_last = engine.segments >= max_segments
            target = torch.sigmoid(torch.where(is_last, peek.q_halt,
                                               torch.maximum(peek.q_halt, peek.q_continue)))
            forward = {"logits": _difference(segment.logits, out["logits"]),
                       "q_halt": _difference(segment.q_halt, out["q_halt_logits"]),
                       "q_continue": _difference(segment.q_continue, out["q_continue_logits"]),
                       "target_q_continue": _difference(target, out["target_q_continue"]),
                       "z_H": _difference(engine.carry.z_H, carry.inner_carry.z_H),
                       "z_L": _difference(engine.carry.z_L, carry.inner_carry.z_L)}
            b = batch_size
            ours_loss = stats.lm_loss + config.train.q_loss_weight * (stats.q_halt_loss
                                                                       + stats.q_continue_loss)
            losses = {"loss": _scalar_difference(ours_loss, theirs["loss"] / b),
                      "lm_loss": _scalar_difference(stats.lm_loss, metrics["lm_loss"] / b),
                      "q_halt_loss": _scalar_difference(stats.q_halt_loss,
                                                        metrics["q_halt_loss"] / b),
                      "q_continue_loss": _scalar_difference(stats.q_continue_loss,
                                                            metrics["q_continue_loss"] / b)}
            grads = {n: _difference(p.grad, theirs["grads"][reference_name(n)])
                     for n, p in model.named_parameters()}
            ref_params = dict(inner.named_parameters())
            weights = {n: _difference(p, ref_params[reference_name(n)])
                       for n, p in model.named_parameters()}
            halted = engine.pending.cpu()
            halting = {"halted": int(halted.sum()),
                       "mismatches": int((halted != carry.halted.cpu()).sum()),
                       "segment_count_mismatches": int(
                           (engine.segments.cpu() != carry.steps.cpu().long()).sum())}
            dtypes = {"project": str(segment.logits.dtype).removeprefix("torch."),
                      "reference": str(out["logits"].dtype).removeprefix("torch.")}
            per_step.append({"forward": forward, "losses": losses, "gradients": _worst(grads),
                             "weights_after_step": _worst(weights), "halting": halting,
                             "all_gradients": grads})
    finally:
        hook.remove()

    def step_max(step: dict[str, Any]) -> float:
        return max([d["max_rel"] for d in step["forward"].values()]
                   + [d["max_rel"] for d in step["losses"].values()]
                   + [step["gradients"]["max_rel"], step["weights_after_step"]["max_rel"]])

    first = per_step[0]
    equal = all(step_max(s) <= tolerance and s["halting"]["mismatches"] == 0
                and s["halting"]["segment_count_mismatches"] == 0 for s in per_step)
    return {
        "dtype": "float64", "device": str(device), "steps": steps, "batch_size": batch_size,
        "max_segments": max_segments, "tolerance": tolerance, "equal": equal,
        "max_rel_difference": max(step_max(s) for s in per_step),
        "parameters": counts, "logits_dtype": dtypes,
        "first_segment_forward": first["forward"],
        "first_training_step": {"losses": first["losses"], "gradients": first["all_gradients"],
                                "weights_after_step": first["weights_after_step"]},
        "per_step": [{"max_rel": step_max(s), "halted": s["halting"]["halted"],
                      "halting_mismatches": s["halting"]["mismatches"],
                      "segment_count_mismatches": s["halting"]["segment_count_mismatches"],
                      "forward_max_rel": max(d["max_rel"] for d in s["forward"].values()),
                      "loss_max_rel": max(d["max_rel"] for d in s["losses"].values()),
                      "gradients": s["gradients"], "weights_after_step": s["weights_after_step"]}
                     for s in per_step],
    }


# --- 1b. the reference's checkpoints, imported --------------------------------------------
IMPORT_TASKS = {"sudoku": "sudoku9-extreme", "maze": "maze30-hard"}
"""The paper-scale recipes whose shapes the import check builds (vocab 11 / seq 81, vocab 6
/ seq 900; both with the reference's 512-d puzzle embedding)."""
IMPORT_BATCH = {"sudoku": 4, "maze": 1}
_PRETRAIN = {  # cfg_pretrain.yaml with the README's command line for each task
    "sudoku": {"data_path": "data/sudoku-extreme-1k-aug-1000", "global_batch_size": 384,
               "epochs": 20000, "eval_interval": 2000, "lr": 7e-5, "puzzle_emb_lr": 7e-5,
               "weight_decay": 1.0, "puzzle_emb_weight_decay": 1.0},
    "maze": {"data_path": "data/maze-30x30-hard-1k", "global_batch_size": 768,
             "epochs": 20000, "eval_interval": 2000, "lr": 1e-4, "puzzle_emb_lr": 1e-4,
             "weight_decay": 1.0, "puzzle_emb_weight_decay": 1.0},
}


def pretrain_config(task: str, arch: dict[str, Any] | None = None) -> dict[str, Any]:
    """What ``pretrain.py`` dumps as ``all_config.yaml`` (``PretrainConfig.model_dump()``) for
    a run of ``task`` (``sudoku``, ``maze``) with ``config/arch/hrm_v1.yaml`` (its
    ``puzzle_emb_ndim`` resolved to ``hidden_size``), updated by ``arch``."""
    hrm_v1 = {"name": "hrm.hrm_act_v1@HierarchicalReasoningModel_ACTV1",
              "loss": {"name": "losses@ACTLossHead", "loss_type": "stablemax_cross_entropy"},
              "halt_exploration_prob": 0.1, "halt_max_steps": 16, "H_cycles": 2,
              "L_cycles": 2, "H_layers": 4, "L_layers": 4, "hidden_size": 512,
              "num_heads": 8, "expansion": 4, "pos_encodings": "rope"}
    hrm_v1.update(arch or {})
    hrm_v1.setdefault("puzzle_emb_ndim", hrm_v1["hidden_size"])
    run = f"{Path(_PRETRAIN[task]['data_path']).name.capitalize()} ACT-torch"
    return {"arch": hrm_v1, **_PRETRAIN[task], "lr_min_ratio": 1.0, "lr_warmup_steps": 2000,
            "beta1": 0.9, "beta2": 0.95, "project_name": run,
            "run_name": "HierarchicalReasoningModel_ACTV1 hrm-rl-check",
            "checkpoint_path": f"checkpoints/{run}/HierarchicalReasoningModel_ACTV1 hrm-rl-check",
            "seed": 0, "checkpoint_every_eval": True, "eval_save_outputs": []}


def save_as_pretrain(folder: str | Path, state: dict[str, torch.Tensor],
                     config: dict[str, Any], step: int) -> Path:
    """Write ``all_config.yaml`` (``yaml.dump``, as ``save_code_and_config``) and the weights
    as ``step_<step>`` (``torch.save`` of the state dict, as ``save_train_state``) into
    ``folder``; returns the weights file."""
    import yaml

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "all_config.yaml").write_text(yaml.dump(config))
    torch.save(state, folder / f"step_{step}")
    return folder / f"step_{step}"


def reference_encoding(task: str, csv_text: str) -> dict[str, torch.Tensor]:
    """The puzzles of a ``source,question,answer,rating`` CSV as the reference's dataset
    builders encode them (``build_sudoku_dataset.py``: ``.`` -> 0, then + 1;
    ``build_maze_dataset.py``: the index in ``# SGo`` + 1), as its evaluation batch."""
    import csv
    import io

    rows = list(csv.reader(io.StringIO(csv_text)))[1:]
    if task == "sudoku":
        def encode(text: str) -> list[int]:
            return [int(ch) + 1 for ch in text.replace(".", "0")]
    else:
        def encode(text: str) -> list[int]:
            return ["# SGo".index(ch) + 1 for ch in text]
    inputs = torch.tensor([encode(r[1]) for r in rows], dtype=torch.int32)
    return {"inputs": inputs, "labels": torch.tensor([encode(r[2]) for r in rows],
                                                     dtype=torch.int32),
            "puzzle_identifiers": torch.zeros(len(rows), dtype=torch.int32)}


def _run_reference(head: torch.nn.Module, batch: dict[str, torch.Tensor],
                   segments: int) -> list[dict[str, torch.Tensor]]:
    """``segments`` segments of the reference's evaluation loop (``pretrain.evaluate``:
    ``ACTLossHead`` in eval mode from ``initial_carry``), each segment's outputs."""
    head.eval()
    outs = []
    with torch.inference_mode():
        carry = head.initial_carry(batch)
        for _ in range(segments):
            carry, _, _, out, _ = head(carry=carry, batch=batch,
                                       return_keys=["logits", "q_halt_logits",
                                                    "q_continue_logits"])
            outs.append(out)
    return outs


def _run_ours(model: torch.nn.Module, inputs: torch.Tensor, puzzle_ids: torch.Tensor,
              segments: int) -> list[Any]:
    with torch.inference_mode():
        carry, outs = model.initial_carry(len(inputs), inputs.device), []
        for _ in range(segments):
            out = model(carry, inputs, puzzle_ids)
            carry = out.carry
            outs.append(out)
    return outs


def _segment_outputs(out: Any) -> dict[str, torch.Tensor]:
    """Logits and Q logits of one segment, ours (``SegmentOutput``) or the reference's."""
    if isinstance(out, dict):
        return {"logits": out["logits"], "q_halt": out["q_halt_logits"],
                "q_continue": out["q_continue_logits"]}
    return {"logits": out.logits, "q_halt": out.q_halt, "q_continue": out.q_continue}


def _compare_runs(ours: list[Any], theirs: list[Any]) -> dict[str, Any]:
    """Worst differences over the segments (and the worst per segment), and the Q-head's
    halting decisions (``q_halt > q_continue``, HRM's rule and ``model.halts``) compared."""
    diffs: dict[str, dict[str, float]] = {}
    by_segment, mismatches, halted = [], 0, 0
    first_ours = first_theirs = None
    for k, (o, t) in enumerate(zip(ours, theirs), 1):
        o, t = _segment_outputs(o), _segment_outputs(t)
        worst_here = 0.0
        for name in ("logits", "q_halt", "q_continue"):
            d = _difference(o[name], t[name])
            worst = diffs.setdefault(name, {"max_abs": 0.0, "max_rel": 0.0})
            worst.update({key: max(worst[key], d[key]) for key in worst})
            worst_here = max(worst_here, d["max_rel"])
        by_segment.append(float(f"{worst_here:.3g}"))
        mine, ref = ((x["q_halt"] > x["q_continue"]).cpu() for x in (o, t))
        mismatches += int((mine != ref).sum())
        halted += int(ref.sum())
        if first_ours is None:
            first_ours = first_theirs = torch.zeros(len(ref), dtype=torch.long)
        first_ours = torch.where((first_ours == 0) & mine, k, first_ours)
        first_theirs = torch.where((first_theirs == 0) & ref, k, first_theirs)
    return {**diffs, "max_rel": max(d["max_rel"] for d in diffs.values()),
            "max_rel_by_segment": by_segment,
            "halting": {"decisions": len(ours) * len(first_theirs), "halt_decisions": halted,
                        "mismatches": mismatches,
                        "first_halt_mismatches": int((first_ours != first_theirs).sum()),
                        "first_halt_segments": first_theirs.tolist()}}


def write_trained_reference(reference: Reference, config: RunConfig, task: str,
                            folder: Path, train_steps: int, seed: int,
                            device: torch.device) -> tuple[Path, list[float]]:
    """Train the reference model of ``config`` ``train_steps`` steps (``ReferenceTrainer``,
    float32), give its Q-head and puzzle-embedding table random values (the first moves
    little in a few steps, the second is zero-initialised and trained by an optimiser not
    run here), and save it into ``folder`` as ``pretrain.py`` saves (``pretrain_config``; the
    state dict of the compiled loss-head model, ``_orig_mod.model.inner.*``, from a model
    built with the default bfloat16 ``forward_dtype``, so ``H_init``/``L_init`` are
    bfloat16). Returns the weights file and the LM losses of the steps."""
    torch.manual_seed(seed)
    b = config.train.batch_size
    trainer = ReferenceTrainer(reference, config, device, n_puzzles=b * train_steps)
    losses = [trainer.train_step()["metrics"]["lm_loss"] for _ in range(train_steps)]
    inner = trainer.model.model.inner
    with torch.no_grad():
        inner.q_head.weight.normal_(0.0, 0.1)
        inner.q_head.bias.zero_()
        inner.puzzle_emb.weights.normal_(0.0, 1 / math.sqrt(inner.config.hidden_size))
    saved = reference.build(reference_config(config, "bfloat16"), config.train.loss)
    saved.load_state_dict(trainer.model.state_dict())
    weights = save_as_pretrain(folder, torch.compile(saved).state_dict(),
                               pretrain_config(task), train_steps)
    return weights, [round(x, 4) for x in losses]


def _import_config(task: str, batch_size: int, segments: int, device: torch.device,
                   seed: int) -> RunConfig:
    return load_config(IMPORT_TASKS[task], [
        "model.puzzle_emb_ndim=512", f"train.batch_size={batch_size}",
        f"train.max_segments={segments}", "train.precision=fp32", "train.compile=false",
        f"train.device={device}", "train.optimizer=adamw", "train.lr=3e-4",
        "train.lr_warmup_steps=0", f"train.seed={seed}"])


def _both_encodings(task: str, config: RunConfig, n: int, seed: int, folder: Path
                    ) -> tuple[Any, dict[str, torch.Tensor], bool]:
    """``n`` generated puzzles written as the dataset's CSV, read by our task and encoded
    as the reference's builder does; and whether the two encodings agree."""
    from hrm_rl.tasks import make_task

    ours = make_task(config.task)
    path = folder / f"{task}.csv"
    ours.write_csv(path, ours.sample(n, config.data, np.random.default_rng(seed)))
    batch, theirs = ours.read_csv(path), reference_encoding(task, path.read_text())
    same = bool(np.array_equal(batch.inputs, theirs["inputs"].numpy())
                and np.array_equal(batch.labels, theirs["labels"].numpy()))
    return batch, theirs, same


def _compare_outputs(reference: Reference, config: RunConfig, weights: Path, model: Any,
                     ours_batch: Any, theirs_batch: dict[str, torch.Tensor], segments: int,
                     device: torch.device) -> dict[str, Any]:
    """Both sides' ``segments`` segments in float64 and float32 (ours on ``aten``, the
    reference's matmuls, and on ``onednn``), compared (``_compare_runs``)."""
    file_state = {k.removeprefix("_orig_mod."): v
                  for k, v in torch.load(weights, weights_only=True).items()}
    inputs = torch.from_numpy(ours_batch.inputs).to(device)
    ids = torch.from_numpy(ours_batch.puzzle_ids).to(device)
    batch = {k: v.to(device) for k, v in theirs_batch.items()}
    out: dict[str, Any] = {"H_init_dtype": str(file_state["model.inner.H_init"].dtype)
                           .removeprefix("torch."), "weights_tensors": len(file_state)}
    theirs = {}
    for dtype in (torch.float64, torch.float32):
        name = str(dtype).removeprefix("torch.")
        head = reference.build(reference_config(config, name), config.train.loss, device)
        head.load_state_dict(file_state)  # as evaluate.py does, on the compiled names
        theirs[name] = _run_reference(head.to(dtype), batch, segments)
        ours = set_linear_backend(model.to(device=device, dtype=dtype), "aten")
        out[name] = _compare_runs(_run_ours(ours, inputs, ids, segments), theirs[name])
    ours = set_linear_backend(model, "onednn")  # float32 now; restored to "auto" below
    out["float32_onednn"] = _compare_runs(_run_ours(ours, inputs, ids, segments),
                                          theirs["float32"])
    out["reference_float32_vs_float64"] = _compare_runs(theirs["float32"], theirs["float64"])
    set_linear_backend(model, "auto")
    return out


def check_import(reference: Reference, device: torch.device | str = "cpu",
                 tasks: tuple[str, ...] = ("sudoku", "maze"), segments: int = 16,
                 train_steps: int = 2, tolerance: float = 1e-6, tolerance32: float = 1e-5,
                 seed: int = 0, batches: dict[str, int] | None = None,
                 workdir: str | Path | None = None) -> dict[str, Any]:
    """The reference's checkpoints as our cores, verified (``hrm_rl.reference_import``).

    Per task: the reference model at the paper's shape (``IMPORT_TASKS``) trains
    ``train_steps`` steps (its ``ACTLossHead``, float32, random puzzles), its Q-head and
    puzzle-embedding table get random values (the first moves little in a few steps, the
    second is zero-initialised and trained by an optimiser not run here), and it is saved as
    ``pretrain.py`` saves (``all_config.yaml``; the state dict of the compiled loss-head
    model, ``_orig_mod.model.inner.*``, with the default bfloat16 ``H_init``/``L_init``).
    That folder is converted (``convert``) and written as a core (``import_reference``,
    reloaded with ``load_checkpoint``: the same tensors). Then ``segments`` segments of the
    reference's evaluation loop (from ``initial_carry``, loading the file as ``evaluate.py``
    does) and of the converted core run on generated puzzles written in the datasets' CSV
    format and encoded each side's way, in float64 and float32; logits, ``q_halt``,
    ``q_continue`` and the Q-head's halting decisions are compared. ``equal``: float64
    within ``tolerance``, float32 within ``tolerance32`` (relative to the reference's largest
    magnitude), every decision the same, and both encodings equal. Float32 is compared
    with our ``Linear`` on ``aten`` (the reference's matmuls); ``float32_onednn`` uses our
    oneDNN matmuls (which ``auto`` picks on some CPUs), whose different rounding the
    recurrence amplifies on these unconverged weights as much as it does the reference's
    own float32 against float64 (``reference_float32_vs_float64``): reported, not required.
    """
    import tempfile

    from hrm_rl.checkpoint import load_checkpoint
    from hrm_rl.reference_import import convert, import_reference

    device = torch.device(device)
    batches = {**IMPORT_BATCH, **(batches or {})}
    results: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(dir=workdir) as tmp:
        for task in tasks:
            started = time.perf_counter()
            config = _import_config(task, batches[task], segments, device, seed)
            weights, losses = write_trained_reference(reference, config, task,
                                                      Path(tmp) / task, train_steps, seed,
                                                      device)
            converted = convert(weights.parent, task)
            core = load_checkpoint(import_reference(weights.parent, task,
                                                    Path(tmp) / "cores" / task))
            same = all(torch.equal(v, core.model.state_dict()[k])
                       for k, v in converted.model.state_dict().items())
            ours_batch, theirs_batch, encodings_equal = _both_encodings(
                task, config, batches[task], seed, Path(tmp))
            out: dict[str, Any] = {
                "shape": {k: getattr(converted.model.config, k) for k in
                          ("hidden_size", "num_heads", "H_layers", "L_layers", "H_cycles",
                           "L_cycles", "vocab_size", "seq_len", "puzzle_emb_ndim")},
                "parameters": converted.model.num_parameters(include_puzzle_emb=False),
                "train_steps": train_steps, "lm_loss": losses, "weights_file": weights.name,
                "puzzles": batches[task], "segments": segments,
                "encodings_equal": encodings_equal, "core_reloads_identical": same,
                **_compare_outputs(reference, config, weights, converted.model, ours_batch,
                                   theirs_batch, segments, device)}
            out["equal"] = bool(encodings_equal and same
                                and out["float64"]["max_rel"] <= tolerance
                                and out["float32"]["max_rel"] <= tolerance32
                                and out["float64"]["halting"]["mismatches"] == 0
                                and out["float32"]["halting"]["mismatches"] == 0)
            out["seconds"] = round(time.perf_counter() - started, 1)
            results[task] = out
    return {"tolerance_float64": tolerance, "tolerance_float32": tolerance32,
            "equal": all(r["equal"] for r in results.values()), "tasks": results}


# --- 2. speed -------------------------------------------------------------------------------
class _Side:
    """One implementation's timed action: accumulates segments/s per round."""

    def __init__(self, action: Callable[[], int], device: torch.device) -> None:
        self.action, self.device = action, device  # action() -> segments it ran
        self.rounds: list[float] = []

    def run(self, seconds: float) -> None:
        """Repeat the action for ``seconds`` (at least once); record segments/s."""
        segments, start = 0, time.perf_counter()
        while True:
            segments += self.action()
            _sync(self.device)
            elapsed = time.perf_counter() - start
            if elapsed >= seconds:
                break
        self.rounds.append(segments / elapsed)

    def median(self) -> float:
        return statistics.median(self.rounds)


def time_setup(reference: Reference, setup: Setup, device: torch.device, seconds: float,
               rounds: int, eval_segments: int, batch_size: int | None = None,
               optimizer: str = "adamw", peak_gflops: float | None = None) -> dict[str, Any]:
    """Median segments/s of training steps and evaluation rounds, project vs reference,
    timed alternately in ``rounds`` rounds of ``seconds / rounds`` each per side and mode."""
    from hrm_rl.bench.train import make_trainer, random_puzzles
    from hrm_rl.trace import record_trace

    config = project_config(setup, batch_size, str(device), torch.get_num_threads(),
                            optimizer=optimizer)
    torch.manual_seed(config.train.seed)
    trainer = make_trainer(config)
    torch.manual_seed(config.train.seed)
    ref = ReferenceTrainer(reference, config, device)
    model, b = trainer.model, config.train.batch_size
    task = trainer.task
    puzzles = random_puzzles(task.vocab_size, task.seq_len, b, config.train.seed + 1)
    ref_batch = ref.next_batch()

    def ours_train() -> int:
        trainer.train_step()
        return b

    def theirs_train() -> int:
        ref.train_step()
        return b

    def ours_eval() -> int:
        record_trace(model, task, puzzles, eval_segments, keep_pred=False, batch_size=b)
        return b * eval_segments

    def theirs_eval() -> int:
        return b * ref.evaluate_batch(ref_batch, eval_segments)

    started = time.perf_counter()
    sides = {mode: {"project": _Side(ours, device), "reference": _Side(theirs, device)}
             for mode, ours, theirs in (("train", ours_train, theirs_train),
                                        ("eval", ours_eval, theirs_eval))}
    for pair in sides.values():  # warm-up (first-call allocations, lazy init)
        for side in pair.values():
            side.action()
            _sync(device)
    warmup_s = time.perf_counter() - started
    for _ in range(rounds):
        for pair in sides.values():
            pair["project"].run(seconds / rounds)
            pair["reference"].run(seconds / rounds)
    flops = segment_flops(model.config, config.train.max_segments, model.prefix_len)
    out: dict[str, Any] = {
        "model": {k: getattr(model.config, k) for k in
                  ("hidden_size", "num_heads", "H_layers", "L_layers", "H_cycles", "L_cycles",
                   "seq_len", "vocab_size")},
        "batch_size": b, "max_segments": config.train.max_segments,
        "eval_segments_per_round": eval_segments,
        "parameters": {"project": model.num_parameters(),
                       "reference": _parameter_count(ref.model.model)},
        "warmup_s": round(warmup_s, 1)}
    for mode, pair in sides.items():
        per_segment = flops.train if mode == "train" else flops.segment_forward
        figures: dict[str, Any] = {}
        for name, side in pair.items():
            sps = side.median()
            figures[name] = {"segments_per_s": round(sps, 2),
                             "rounds": [round(r, 2) for r in side.rounds],
                             "gflops": round(sps * per_segment / 1e9, 2)}
            if peak_gflops:
                figures[name]["mfu"] = round(sps * per_segment / 1e9 / peak_gflops, 4)
        figures["ratio"] = round(pair["project"].median() / pair["reference"].median(), 3)
        out[mode] = figures
    out["seconds"] = round(time.perf_counter() - started, 1)
    return out


# --- the benchmark --------------------------------------------------------------------------
def skipped(reason: str) -> dict[str, Any]:
    """The result when there is no reference to compare with."""
    return {"skipped": True, "reason": reason,
            "how": f"clone {REFERENCE_URL} and pass --reference-dir PATH (or set {ENV_VAR})"}


def run(reference_dir: str | None, configs: list[str] | None = None, seconds: float = 20.0,
        rounds: int = 5, threads: int | None = 1, device: str = "auto",
        eval_segments: int = 4, batches: dict[str, int] | None = None,
        check_steps: int = 4, tolerance: float = 1e-6, timing: bool = True,
        optimizer: str = "adamw", import_tasks: tuple[str, ...] = (),
        import_segments: int = 16) -> dict[str, Any]:
    """The whole benchmark (see the module docstring); ``skipped`` without a reference.

    Raises:
        ValueError: unknown config names, bad counts, or a reference that does not import.
    """
    configs = configs if configs is not None else list(SETUPS)
    unknown = [c for c in configs if c not in SETUPS]
    if unknown:
        raise ValueError(f"unknown config(s) {unknown}; choose from {', '.join(SETUPS)}")
    batches = batches or {}
    unknown = [c for c in batches if c not in SETUPS]
    if unknown:
        raise ValueError(f"--batch names unknown config(s) {unknown}; choose from "
                         f"{', '.join(SETUPS)}")
    unknown = [t for t in import_tasks if t not in IMPORT_TASKS]
    if unknown:
        raise ValueError(f"--check-import names unknown task(s) {unknown}; choose from "
                         f"{', '.join(IMPORT_TASKS)} (ARC is not imported: "
                         "hrm_rl.reference_import)")
    if rounds < 1 or eval_segments < 1 or seconds < 0 or check_steps < 0:
        raise ValueError("--rounds and --eval-segments must be >= 1, --seconds and "
                         "--check-steps >= 0")
    if not reference_dir:
        return skipped(f"no reference given: --reference-dir is unset and so is {ENV_VAR}")
    root = Path(reference_dir).expanduser()
    if not root.is_dir():
        return skipped(f"{root} is not a directory")
    missing = missing_reference_files(root)
    if missing:
        return skipped(f"{root} does not hold the reference's model files: missing "
                       f"{', '.join(missing)}")
    if threads:
        torch.set_num_threads(threads)
    dev = resolve_device(device)
    started = time.perf_counter()
    reference = load_reference(root)
    out: dict[str, Any] = {
        "reference": {"dir": str(reference.path), "commit": reference.commit,
                      "model_files_sha256": reference.files_sha256,
                      "stand_ins": list(reference.shims)},
        "device": str(dev), "torch": torch.__version__, "threads": torch.get_num_threads(),
        "cpu": cpu_info().describe(), "matmul": choose_matmul("auto", dev).describe(),
        "load_average": _load_average()}
    if check_steps:
        out["equality"] = check_equality(reference, dev, check_steps, tolerance=tolerance)
    if import_tasks:
        out["import"] = check_import(reference, dev, import_tasks, import_segments,
                                     tolerance=tolerance)
    if timing and configs:
        peak = matmul_peak_gflops(dev, torch.float32)
        out["matmul_peak_gflops_fp32"] = peak
        out["timing"] = {"seconds_per_side_and_mode": seconds, "rounds": rounds,
                         "optimizer": optimizer, "precision": "fp32", "compile": False,
                         "gradient": "one_step"}
        out["configs"] = {name: time_setup(reference, SETUPS[name], dev, seconds, rounds,
                                           eval_segments, batches.get(name), optimizer,
                                           peak["gflops"])
                          for name in configs}
        out["ratios"] = {name: {"train": r["train"]["ratio"], "eval": r["eval"]["ratio"]}
                         for name, r in out["configs"].items()}
    out["bench_seconds"] = round(time.perf_counter() - started, 1)
    out["load_average_after"] = _load_average()
    return out


def _load_average() -> list[float] | None:
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except OSError:
        return None


def _batch_override(text: str) -> tuple[str, int]:
    name, sep, value = text.partition("=")
    if not sep or not value.strip().isdigit() or int(value) < 1:
        raise argparse.ArgumentTypeError(f"expected NAME=N (e.g. paper9=4), got {text!r}")
    return name.strip(), int(value)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The options of ``hrm-rl bench reference``."""
    parser.add_argument("--reference-dir", default=os.environ.get(ENV_VAR),
                        help=f"a checkout of {REFERENCE_URL} (default ${ENV_VAR}); without "
                             "one the benchmark prints a 'skipped' object")
    parser.add_argument("--configs", default=",".join(SETUPS),
                        help=f"comma-separated configs to time (default {','.join(SETUPS)}; "
                             "empty: none)")
    parser.add_argument("--seconds", type=float, default=20.0,
                        help="timed seconds per config, side and mode (train/eval), split "
                             "over the rounds")
    parser.add_argument("--rounds", type=int, default=5,
                        help="alternating project/reference rounds (median over them)")
    parser.add_argument("--batch", type=_batch_override, action="append", default=[],
                        metavar="NAME=N", help="batch size of one config (e.g. paper9=4 on a "
                        "CPU, where a batch of 32 takes tens of seconds a step); repeatable")
    parser.add_argument("--eval-segments", type=int, default=4,
                        help="segments per evaluation round (one batch from the initial carry)")
    parser.add_argument("--threads", type=int_in(0, 1024), default=1,
                        help="torch threads (0: torch's)")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--optimizer", choices=("adamw", "adam_atan2"), default="adamw",
                        help="both sides' optimiser (adam_atan2: hrm_rl.optim.AdamATan2)")
    parser.add_argument("--check-steps", type=int, default=4,
                        help="float64 training steps compared (0: no equality check)")
    parser.add_argument("--tolerance", type=float, default=1e-6,
                        help="largest relative difference the equality check accepts")
    parser.add_argument("--no-timing", action="store_true", help="only the equality check")
    parser.add_argument("--check-import", nargs="?", const="sudoku,maze", default="",
                        metavar="TASKS", help="also verify importing the reference's "
                        "checkpoints at the paper's shapes (check_import): sudoku,maze by "
                        "default; minutes on a CPU (the maze has 900 positions)")
    parser.add_argument("--import-segments", type=int_in(1, 64), default=16,
                        help="segments the import check compares")


def run_from_args(args: argparse.Namespace) -> dict[str, Any]:
    """``run`` with the parsed ``add_arguments`` options."""
    configs = [c.strip() for c in args.configs.split(",") if c.strip()]
    tasks = tuple(t.strip() for t in args.check_import.split(",") if t.strip())
    return run(args.reference_dir, configs, args.seconds, args.rounds, args.threads or None,
               args.device, args.eval_segments, dict(args.batch), args.check_steps,
               args.tolerance, not args.no_timing, args.optimizer, tasks,
               args.import_segments)
