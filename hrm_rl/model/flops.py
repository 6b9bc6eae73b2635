"""FLOPs of one ACT training segment, counted from the config, and measured matmul peaks.

A *training segment* is what ``ACTTrainer.train_step`` spends on one puzzle (one batch row):

- the segment forward: ``H_cycles * L_cycles`` L-steps and ``H_cycles`` H-steps, then the LM
  and Q heads; with ``gradient="one_step"`` all but the last L-step and H-step run without
  gradient (``last_recursion``: all but the last cycle; ``bptt``: none);
- the backward of the part that carries the gradient (those last steps and the heads): twice
  its forward (gradients with respect to both inputs and weights);
- the Q-bootstrap *peek*: one more no-grad segment forward for the ``q_continue`` target
  (only when ``train.max_segments > 1``).

Only matrix products are counted (the projections, SDPA's two batched products, SwiGLU, the
heads); one multiply-add is 2 FLOPs. This is what ``torch.utils.flop_counter`` counts too, so
``counted_train_step_flops`` cross-checks the formula on a real step.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import asdict, dataclass

import torch

from hrm_rl.config import ModelConfig
from hrm_rl.model.base import steps_with_gradient
from hrm_rl.model import onednn
from hrm_rl.model.layers import Linear, set_linear_backend, swiglu_width


@dataclass
class SegmentFlops:
    """FLOPs per puzzle (one batch row) of one training segment, by part.

    Attributes:
        forward_no_grad: forward of the steps that run under ``torch.no_grad``.
        forward_grad: forward of the steps (and heads) that carry the gradient.
        backward: backward of those steps (``2 * forward_grad``).
        peek: the no-grad bootstrap forward for the Q target (0 without one).
        segment_forward: one full segment forward (inference cost of a segment).
        train: everything a training step spends on the row.
    """

    forward_no_grad: int
    forward_grad: int
    backward: int
    peek: int
    segment_forward: int
    train: int

    def to_dict(self) -> dict[str, int]:
        return asdict(self)


def block_flops(cfg: ModelConfig, positions: int) -> int:
    """Forward FLOPs of one transformer block on one sequence of ``positions`` tokens."""
    d, p = cfg.hidden_size, positions
    width = swiglu_width(d, cfg.expansion)
    projections = 2 * p * (3 * d * d + d * d + d * 2 * width + width * d)
    attention = 2 * 2 * p * p * d  # Q K^T and softmax(.) V over all heads
    return projections + attention


def segment_flops(cfg: ModelConfig, max_segments: int, prefix_len: int = 0) -> SegmentFlops:
    """The FLOPs of one training segment per puzzle (see the module docstring).

    Args:
        cfg: a model config fitted to its task (``seq_len`` and ``vocab_size`` set).
        max_segments: ``train.max_segments``; the peek forward runs when it is > 1.
        prefix_len: puzzle-embedding prefix positions (``HRM.prefix_len``).
    """
    if cfg.seq_len < 1 or cfg.vocab_size < 1:
        raise ValueError("segment_flops needs a config fitted to its task (ModelConfig.fit_to)")
    block = block_flops(cfg, cfg.seq_len + prefix_len)
    l_step, h_step = cfg.L_layers * block, cfg.H_layers * block
    heads = 2 * cfg.seq_len * cfg.hidden_size * cfg.vocab_size + 2 * cfg.hidden_size * 2
    forward = cfg.H_cycles * cfg.L_cycles * l_step + cfg.H_cycles * h_step + heads
    # The steps that carry the gradient are the segment's last ones: count them backwards
    # through the order of a cycle (L_cycles L-steps, then the H-step).
    tail = steps_with_gradient(cfg.gradient_mode, cfg.H_cycles, cfg.L_cycles)
    cycle = [l_step] * cfg.L_cycles + [h_step]
    grad = sum((cycle * cfg.H_cycles)[-tail:]) + heads
    peek = forward if max_segments > 1 else 0
    return SegmentFlops(forward_no_grad=forward - grad, forward_grad=grad, backward=2 * grad,
                        peek=peek, segment_forward=forward, train=forward + 2 * grad + peek)


def counted_train_step_flops(trainer) -> int:
    """FLOPs of one ``trainer.train_step()`` as ``torch.utils.flop_counter`` counts them.

    SDPA runs on its math backend and the linears on aten here, because the flop counter has
    no formula for the CPU flash kernel or oneDNN's linear (it would count them as 0); the
    step still changes the trainer's weights and state like any other step.
    """
    from torch.nn.attention import SDPBackend, sdpa_kernel
    from torch.utils.flop_counter import FlopCounterMode

    linears = [m for m in trainer.model.modules() if isinstance(m, Linear)]
    backends = [m.backend for m in linears]
    set_linear_backend(trainer.model, "aten")  # the counter knows aten's products only
    try:
        with sdpa_kernel(SDPBackend.MATH), FlopCounterMode(display=False) as counter:
            trainer.train_step()
    finally:
        for module, backend in zip(linears, backends):
            module.backend = backend
    return int(counter.get_total_flops())


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def matmul_gflops(device: torch.device, dtype: torch.dtype, n: int,
                  min_seconds: float = 0.3, mm: Callable = torch.mm) -> tuple[float, float]:
    """GFLOP/s of ``mm`` (default ``torch.mm``) on two ``n x n`` matrices, and the seconds
    one product took."""
    a = torch.randn(n, n, device=device).to(dtype)
    b = torch.randn(n, n, device=device).to(dtype)
    _sync(device)
    start = time.perf_counter()
    mm(a, b)  # warm-up, also times one call
    _sync(device)
    one = time.perf_counter() - start
    reps, start = 0, time.perf_counter()
    while True:
        mm(a, b)
        reps += 1
        if reps % 4 == 0 or one > 0.05:
            _sync(device)
            if time.perf_counter() - start >= min_seconds:
                break
    _sync(device)
    elapsed = time.perf_counter() - start
    return 2 * n**3 * reps / elapsed / 1e9, elapsed / reps


def matmul_peak_gflops(device: torch.device, dtype: torch.dtype,
                       sizes: tuple[int, ...] | None = None, max_call_s: float = 1.0,
                       min_seconds: float = 0.3, mm: Callable = torch.mm) -> dict[str, float]:
    """The best ``torch.mm`` GFLOP/s over square sizes, stopping when one product gets slow.

    Args:
        device: where to multiply.
        dtype: ``torch.float32`` or ``torch.bfloat16``.
        sizes: matrix sizes to try, smallest first (default 512..2048 on CPU, 2048..8192 on
            CUDA).
        max_call_s: stop trying larger sizes once one product takes longer than this.
        min_seconds: time spent per size.
        mm: the product to time instead of ``torch.mm`` (e.g. ``onednn_mm``).

    Returns:
        ``{"gflops": best, "n": size that gave it, "by_size": {n: gflops}}``.
    """
    if sizes is None:
        sizes = (2048, 4096, 8192) if device.type == "cuda" else (512, 1024, 2048)
    by_size: dict[str, float] = {}
    for n in sizes:
        gflops, per_call = matmul_gflops(device, dtype, n, min_seconds, mm)
        by_size[str(n)] = round(gflops, 2)
        if per_call > max_call_s:
            break
    best = max(by_size, key=by_size.get)
    return {"gflops": by_size[best], "n": int(best), "by_size": by_size}


def onednn_mm(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """``a @ b.T`` by oneDNN's linear, the fp32 product ``Linear`` uses on a CPU
    (``hrm_rl.model.onednn``); for ``matmul_peak_gflops(..., mm=onednn_mm)``."""
    return onednn.linear(a, b)


def autocast_linear_gflops(device: torch.device, tokens: int = 2048, hidden: int = 512,
                           width: int = 1536, min_seconds: float = 0.3) -> float:
    """GFLOP/s of an fp32 ``F.linear`` run under bf16 autocast (what ``precision: bf16``
    actually executes; on some CPUs it takes a faster oneDNN path than a plain bf16 mm)."""
    x = torch.randn(tokens, hidden, device=device)
    w = torch.randn(width, hidden, device=device)
    with torch.autocast(device_type=device.type, dtype=torch.bfloat16):
        torch.nn.functional.linear(x, w)
        _sync(device)
        reps, start = 0, time.perf_counter()
        while time.perf_counter() - start < min_seconds or reps == 0:
            torch.nn.functional.linear(x, w)
            reps += 1
            _sync(device)
        elapsed = time.perf_counter() - start
    return round(2 * tokens * hidden * width * reps / elapsed / 1e9, 2)
