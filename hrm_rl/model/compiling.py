"""``train.compile``: how the trainer hands the core to ``torch.compile``.

- ``false``: eager (the default: no compile time, and what the float64 equality with the
  reference HRM is checked on);
- ``model`` (or ``true``): the whole segment forward as one compiled graph per gradient
  mode; inductor fuses the element-wise work (RMSNorm, SwiGLU's gate, residual adds) and
  removes most of the per-operator dispatch. Measured the fastest on the tiny config's
  training step, at tens of seconds of compile time on a CPU before the first step;
- ``blocks`` ("regional"): each transformer block compiled on its own, in place; one block
  code is compiled once and reused by every block, so it compiles in a fraction of
  ``model``'s time but fuses less (nothing across blocks);
- ``max-autotune``: ``model`` with ``mode="max-autotune-no-cudagraphs"``: inductor also
  tries its own GEMM kernels. On this project's CPUs slower than ``model`` with the oneDNN
  linears (``hrm_rl.model.onednn``), which it cannot replace; meant for CUDA.

``hrm-rl bench train`` times each against the eager step.
"""

from __future__ import annotations

import torch
from torch import nn

COMPILE_MODES = ("model", "blocks", "max-autotune")


def resolve(compile_: bool | str) -> str | None:
    """``train.compile`` as one of ``COMPILE_MODES``, or None for eager."""
    if compile_ is False or compile_ is None:
        return None
    mode = "model" if compile_ is True else compile_
    if mode not in COMPILE_MODES:
        raise ValueError(f"unknown compile mode {compile_!r}: use false, true or one of "
                         f"{', '.join(COMPILE_MODES)}")
    return mode


def blocks(model: nn.Module) -> list[nn.Module]:
    """The transformer blocks of a core: the entries of its ``nn.ModuleList`` stacks."""
    return [block for module in model.modules() if isinstance(module, nn.ModuleList)
            for block in module]


def compile_forward(forward: nn.Module, model: nn.Module, compile_: bool | str) -> nn.Module:
    """What to call for a forward under ``compile_`` (see the module docstring).

    Args:
        forward: what the trainer calls (the core, or its DDP wrapper).
        model: the bare core inside it; ``blocks`` compiles its blocks in place.
        compile_: ``train.compile``.
    """
    mode = resolve(compile_)
    if mode is None:
        return forward
    if mode == "blocks":
        for block in blocks(model):
            block.compile()
        return forward
    return torch.compile(forward, mode="max-autotune-no-cudagraphs"
                         if mode == "max-autotune" else None)
