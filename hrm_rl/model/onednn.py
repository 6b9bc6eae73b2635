"""The model's fp32 matrix products on a CPU through oneDNN rather than the BLAS (MKL).

PyTorch's CPU wheels send an fp32 ``F.linear`` to MKL's ``sgemm``. On an AMD CPU with
AVX-512 that runs MKL's AVX2 code (about 105 GFLOP/s a core on this project's EPYC machine),
while oneDNN, which picks its kernels by instruction set, runs AVX-512 (about 225 GFLOP/s at
the tiny model's shapes, 512 x 128 x 512). ``linear`` is ``F.linear`` with its forward and
both backward products done by ``torch.ops.mkldnn._linear_pointwise`` (the oneDNN linear that
``torch.compile`` itself uses on CPUs). Still fp32 arithmetic: only the order of the
additions inside a product differs, so results match ``F.linear`` to fp32 rounding.

It applies to fp32 tensors on the CPU outside autocast; anything else (float64, bf16
autocast, CUDA) takes ``F.linear``, so the float64 equality with the reference HRM does not
depend on it.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def _available() -> bool:
    try:
        return (torch.backends.mkldnn.is_available()
                and hasattr(torch.ops.mkldnn, "_linear_pointwise"))
    except (AttributeError, RuntimeError):
        return False


AVAILABLE = _available()
"""Whether this PyTorch build has oneDNN's linear (``torch.ops.mkldnn._linear_pointwise``)."""


def applies(x: torch.Tensor, weight: torch.Tensor) -> bool:
    """Whether ``linear(x, weight)`` takes oneDNN: fp32 CPU tensors, no autocast, some rows."""
    return (x.device.type == "cpu" and x.dtype == torch.float32 and weight.dtype == torch.float32
            and x.numel() > 0 and not torch.is_autocast_enabled("cpu") and AVAILABLE)


def _onednn_mm(a: torch.Tensor, w: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
    return torch.ops.mkldnn._linear_pointwise(a, w, bias, "none", [], "")


@torch.library.custom_op("hrm_rl::onednn_mm", mutates_args=())
def _onednn_mm_op(a: torch.Tensor, w: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
    """``_onednn_mm`` as an opaque operator, for ``torch.compile`` (whose own lowering of
    ``_linear_pointwise`` expects a pre-packed weight)."""
    return _onednn_mm(a, w, bias)


@_onednn_mm_op.register_fake
def _(a: torch.Tensor, w: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
    return a.new_empty(a.shape[0], w.shape[0])


def _mm(a: torch.Tensor, w: torch.Tensor, bias: torch.Tensor | None = None) -> torch.Tensor:
    """``a @ w.T (+ bias)`` for 2-D ``a: (m, k)``, ``w: (n, k)`` (any strides) by oneDNN;
    through the registered operator while ``torch.compile`` traces (eager skips its
    dispatch cost)."""
    if torch.compiler.is_compiling():
        return _onednn_mm_op(a, w, bias)
    return _onednn_mm(a, w, bias)


class _Linear(torch.autograd.Function):
    """``y = x W^T + b`` whose three products (``y``, ``dx = dy W``, ``dW = dy^T x``) run on
    oneDNN; ``x``: ``(..., in)``, ``W``: ``(out, in)``, ``b``: ``(out,)`` or None."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, weight: torch.Tensor,
                bias: torch.Tensor | None) -> torch.Tensor:
        ctx.save_for_backward(x, weight)
        ctx.has_bias = bias is not None
        y = _mm(x.reshape(-1, x.shape[-1]), weight, bias)
        return y.view(*x.shape[:-1], weight.shape[0])

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        x, weight = ctx.saved_tensors
        grad2 = grad.reshape(-1, grad.shape[-1])
        dx = dw = db = None
        if ctx.needs_input_grad[0]:
            dx = _mm(grad2, weight.t()).view(x.shape)
        if ctx.needs_input_grad[1]:
            dw = _mm(grad2.t(), x.reshape(-1, x.shape[-1]).t())
        if ctx.has_bias and ctx.needs_input_grad[2]:
            db = grad2.sum(0)
        return dx, dw, db


def linear(x: torch.Tensor, weight: torch.Tensor,
           bias: torch.Tensor | None = None) -> torch.Tensor:
    """``F.linear(x, weight, bias)``, by oneDNN where ``applies`` (see the module docstring)."""
    if applies(x, weight):
        return _Linear.apply(x, weight, bias)
    return F.linear(x, weight, bias)
