"""Where the time of an ACT training step goes; prints one JSON object.

Profiles ``ACTTrainer.train_step`` of the tiny config with ``torch.profiler`` and reports:

- by phase (the trainer's calls, labelled while profiling): the segment forward, the
  bootstrap peek forward, the loss, backward, gradient clipping/norm, the optimiser step and
  the rest of the step (answer checks, halting, row refills, ``.item()`` reads);
- by kind of operator (self CPU time): matmuls, attention (SDPA), the optimiser's
  element-wise kernels, other element-wise/reduction kernels, and memory/view ops; the part
  of the wall time no operator accounts for is Python and dispatch overhead.

The step is one of ``hrm-rl bench train``'s speed variants (``--variant``: ``defaults``,
the ``TrainConfig`` defaults, or e.g. ``plain``, every speed option off); ``--precision`` and
``--compile`` override its settings. ``--shapes`` also lists the costliest operators by
input shape (which product, which copy).

Profiling slows small operators down, so read the shares rather than the absolute times;
``hrm-rl bench train`` measures the unprofiled throughput.

    hrm-rl bench profile [--steps 10] [--threads 2] [--variant defaults] [--precision fp32]
                         [--compile model] [--shapes]
"""

from __future__ import annotations

import argparse
import contextlib
import time
from typing import Any, Callable

import torch
from torch.profiler import ProfilerActivity, profile, record_function

_KINDS: list[tuple[str, tuple[str, ...]]] = [
    ("matmul", ("aten::mm", "aten::addmm", "aten::bmm", "aten::matmul", "aten::linear",
                "aten::baddbmm", "mkldnn")),
    ("attention", ("scaled_dot_product", "flash_attention", "_efficient_attention")),
    ("optimizer", ("_foreach", "adam", "lerp", "addcdiv", "atan2")),
    ("memory_and_views", ("aten::copy_", "aten::to", "aten::_to_copy", "aten::empty",
                          "aten::zeros", "aten::clone", "aten::contiguous", "aten::cat",
                          "aten::index", "aten::index_put", "aten::view", "aten::reshape",
                          "aten::permute", "aten::transpose", "aten::select", "aten::slice",
                          "aten::unbind", "aten::expand", "aten::as_strided", "aten::detach",
                          "aten::t", "aten::chunk", "aten::split", "aten::unsqueeze",
                          "aten::squeeze", "aten::resize_", "aten::fill_", "aten::zero_",
                          "aten::set_", "aten::where", "aten::masked_fill",
                          "aten::embedding", "aten::gather", "aten::pad",
                          "aten::constant_pad_nd", "aten::item", "aten::_local_scalar_dense")),
]
_PHASES = ("forward", "peek", "loss", "backward", "grad_norm", "optimizer")


def _kind(name: str) -> str:
    low = name.lower()
    for kind, keys in _KINDS:
        if any(k.lower() in low for k in keys):
            return kind
    return "elementwise_and_reductions"


def _labelled(label: str, fn: Callable) -> Callable:
    def wrapper(*args, **kwargs):
        with record_function(label):
            return fn(*args, **kwargs)
    return wrapper


@contextlib.contextmanager
def _phase_labels(trainer):
    """Label the trainer's phases for the profiler (restored afterwards)."""
    import hrm_rl.agents.act as act

    saved = [(trainer.engine, "step", trainer.engine.step),
             (trainer.engine, "peek", trainer.engine.peek),
             (trainer.optimizer, "step", trainer.optimizer.step),
             (act, "act_loss", act.act_loss),
             (torch.Tensor, "backward", torch.Tensor.backward),
             (torch.nn.utils, "clip_grad_norm_", torch.nn.utils.clip_grad_norm_)]
    labels = ["forward", "peek", "optimizer", "loss", "backward", "grad_norm"]
    try:
        for (owner, name, fn), label in zip(saved, labels):
            setattr(owner, name, _labelled(label, fn))
        yield
    finally:
        for owner, name, fn in saved:
            if owner is trainer.engine or owner is trainer.optimizer:
                delattr(owner, name)  # back to the class's method
            else:
                setattr(owner, name, fn)


def run(tiny: str | None = None, steps: int = 10, threads: int | None = 2,
        precision: str | None = None, compile_: bool | str | None = None,
        variant: str = "defaults", shapes: bool = False) -> dict[str, Any]:
    """Profile ``steps`` training steps of the tiny config (after warm-up steps) as speed
    variant ``variant``, with ``precision`` and ``compile_`` overriding its own when given."""
    from hrm_rl.bench.train import (SPEED_VARIANTS, TINY_CONFIG, load_bench_config,
                                    make_trainer, with_train)

    if variant not in SPEED_VARIANTS:
        raise ValueError(f"unknown variant {variant!r}: use one of {', '.join(SPEED_VARIANTS)}")
    settings = dict(SPEED_VARIANTS[variant])
    if precision is not None:
        settings["precision"] = precision
    if compile_ is not None:
        settings["compile"] = compile_
    config = with_train(load_bench_config(tiny, TINY_CONFIG, []), threads=threads or None,
                        **settings)
    trainer = make_trainer(config)
    for _ in range(4 if settings["compile"] else 2):
        trainer.train_step()
    start = time.perf_counter()
    for _ in range(steps):
        trainer.train_step()
    unprofiled = (time.perf_counter() - start) / steps
    with _phase_labels(trainer), profile(activities=[ProfilerActivity.CPU],
                                         record_shapes=shapes) as prof:
        start = time.perf_counter()
        for _ in range(steps):
            with record_function("train_step"):
                trainer.train_step()
        wall = time.perf_counter() - start
    events = prof.key_averages()
    phases = {e.key: e.cpu_time_total / 1e6 for e in events if e.key in _PHASES}
    step_total = next(e.cpu_time_total for e in events if e.key == "train_step") / 1e6
    phases["rest_of_step"] = step_total - sum(phases.values())
    kinds: dict[str, float] = {}
    for e in events:
        if e.key in _PHASES or e.key == "train_step" or e.key.startswith("ProfilerStep"):
            continue
        kinds[_kind(e.key)] = kinds.get(_kind(e.key), 0.0) + e.self_cpu_time_total / 1e6
    kinds["python_and_dispatch_overhead"] = max(0.0, wall - sum(kinds.values()))
    top = sorted((e for e in events if e.key not in _PHASES and e.key != "train_step"),
                 key=lambda e: e.self_cpu_time_total, reverse=True)[:12]
    out = {
        "config": "tiny", "variant": variant, **settings,
        "threads": torch.get_num_threads(), "batch_size": config.train.batch_size,
        "steps": steps, "unprofiled_step_ms": round(1000 * unprofiled, 1),
        "profiled_step_ms": round(1000 * wall / steps, 1),
        "share_by_phase": {k: round(v / step_total, 3) for k, v in phases.items()},
        "share_by_kind": {k: round(v / wall, 3) for k, v in
                          sorted(kinds.items(), key=lambda kv: -kv[1])},
        "top_ops_self_ms_per_step": {e.key: round(e.self_cpu_time_total / 1e3 / steps, 2)
                                     for e in top},
    }
    if shapes:
        by_shape = sorted((e for e in prof.key_averages(group_by_input_shape=True)
                           if e.key not in _PHASES and e.key != "train_step"),
                          key=lambda e: e.self_cpu_time_total, reverse=True)[:16]
        out["top_ops_by_shape_self_ms_per_step"] = [
            {"op": e.key, "shapes": str(e.input_shapes), "calls_per_step": e.count / steps,
             "ms": round(e.self_cpu_time_total / 1e3 / steps, 2)} for e in by_shape]
    return out


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The options of ``hrm-rl bench profile``."""
    parser.add_argument("--tiny-config", help="default configs/sudoku4-tiny.yaml")
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--threads", type=int, default=2, help="torch threads (0: torch's)")
    parser.add_argument("--variant", default="defaults",
                        help="a speed variant of hrm-rl bench train (defaults, plain, ...)")
    parser.add_argument("--precision", choices=("fp32", "bf16"), default=None)
    parser.add_argument("--compile", nargs="?", const="model", default=None,
                        choices=("model", "blocks", "max-autotune"),
                        help="compile (alone: model)")
    parser.add_argument("--shapes", action="store_true",
                        help="also the costliest operators by input shape")


def run_from_args(args: argparse.Namespace) -> dict[str, Any]:
    """``run`` with the parsed ``add_arguments`` options."""
    return run(args.tiny_config, args.steps, args.threads or None, args.precision, args.compile,
               args.variant, args.shapes)

