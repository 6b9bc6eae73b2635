"""Transformer building blocks of the HRM core, in plain PyTorch.

Matches the reference implementation's details: bias-free linears with truncated LeCun-normal
init, RMSNorm without a learned scale applied *after* each residual (post-norm), SwiGLU whose
width is ``2/3 * expansion * hidden`` rounded up to a multiple of 256, RoPE, and non-causal
attention through ``F.scaled_dot_product_attention`` (no flash-attn dependency; short
sequences on the CPU without autograd use two plain matmuls, which are faster there).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from hrm_rl.cpu_defaults import cpu_info, matmul_rule
from hrm_rl.model import onednn

# Standard deviation of a standard normal truncated to [-2, 2]; dividing by it makes the
# truncated sample have exactly the requested std (the JAX/Flax convention the reference uses).
_TRUNC_STD = 0.87962566103423978


def trunc_normal_(tensor: torch.Tensor, std: float) -> torch.Tensor:
    """Fill ``tensor`` in place from a normal truncated at 2 sigma whose std is ``std``."""
    if std == 0:
        return tensor.zero_()
    scale = std / _TRUNC_STD
    return nn.init.trunc_normal_(tensor, mean=0.0, std=scale, a=-2 * scale, b=2 * scale)


def rms_norm(x: torch.Tensor, eps: float) -> torch.Tensor:
    """RMSNorm without a learned scale, computed in float32. ``x``: ``(..., hidden)``."""
    dtype = x.dtype
    x = x.float()
    x = x * torch.rsqrt(x.square().mean(-1, keepdim=True) + eps)
    return x.to(dtype)


LINEAR_BACKENDS = ("auto", "onednn", "aten")
"""How ``Linear`` multiplies: ``onednn`` (fp32 on a CPU through oneDNN, ``hrm_rl.model.onednn``;
everything else as ``aten``), ``aten`` (always ``F.linear``) or ``auto`` (``onednn`` where
``hrm_rl.cpu_defaults.matmul_rule`` picks it for this machine's CPU, else ``aten``)."""


_AUTO_ONEDNN = onednn.AVAILABLE and matmul_rule(cpu_info())[0] == "onednn"
"""What ``backend = "auto"`` does on this machine (fixed for the process)."""


class Linear(nn.Module):
    """``y = x W^T (+ b)`` with truncated LeCun-normal weights and zero bias.

    ``backend`` is one of ``LINEAR_BACKENDS`` (default ``auto``); ``set_linear_backend``
    sets it for every ``Linear`` of a model.
    """

    backend = "auto"

    def __init__(self, in_features: int, out_features: int, bias: bool = False) -> None:
        super().__init__()
        self.weight = nn.Parameter(
            trunc_normal_(torch.empty(out_features, in_features), std=in_features**-0.5)
        )
        self.bias = nn.Parameter(torch.zeros(out_features)) if bias else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.backend == "onednn" or (self.backend == "auto" and _AUTO_ONEDNN):
            return onednn.linear(x, self.weight, self.bias)
        return F.linear(x, self.weight, self.bias)


def set_linear_backend(model: nn.Module, backend: str) -> nn.Module:
    """Set ``backend`` (one of ``LINEAR_BACKENDS``) on every ``Linear`` in ``model``; returns it."""
    if backend not in LINEAR_BACKENDS:
        raise ValueError(f"unknown linear backend {backend!r}: use one of "
                         f"{', '.join(LINEAR_BACKENDS)}")
    for module in model.modules():
        if isinstance(module, Linear):
            module.backend = backend
    return model


class RotaryEmbedding(nn.Module):
    """Precomputed RoPE tables ``cos, sin``: ``(max_positions, head_dim)`` each."""

    def __init__(self, head_dim: int, max_positions: int, theta: float) -> None:
        super().__init__()
        inv_freq = 1.0 / (theta ** (torch.arange(0, head_dim, 2, dtype=torch.float32) / head_dim))
        freqs = torch.outer(torch.arange(max_positions, dtype=torch.float32), inv_freq)
        emb = torch.cat((freqs, freqs), dim=-1)
        self.register_buffer("cos", emb.cos(), persistent=False)
        self.register_buffer("sin", emb.sin(), persistent=False)


def apply_rope(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Rotate ``x``: ``(batch, heads, seq, head_dim)`` by position tables ``(seq, head_dim)``."""
    half = x.shape[-1] // 2
    rotated = torch.cat((-x[..., half:], x[..., :half]), dim=-1)
    return (x * cos + rotated * sin).to(x.dtype)


# Sequences up to this length attend through plain matmuls on the CPU without autograd.
SHORT_ATTENTION_MAX_LEN = 40
BF16_MATMUL_ATTENTION_MAX_LEN = 256


def _matmul_attention(x: torch.Tensor) -> bool:
    """Whether ``x`` (``(batch, seq, hidden)``) takes the two-matmul attention path: on a CPU,
    short sequences without autograd, and under bf16 autocast sequences up to
    ``BF16_MATMUL_ATTENTION_MAX_LEN`` (SDPA's CPU kernel in bf16 is slower than its fp32
    one at these head sizes: fwd+bwd at 81 positions, 4 heads of 32, 170 ms against 37 ms
    for the matmul path on an AMD EPYC with AVX512-bf16; at 900 positions SDPA is the
    faster)."""
    if x.device.type != "cpu":
        return False
    if torch.is_autocast_enabled("cpu"):
        return x.shape[1] <= BF16_MATMUL_ATTENTION_MAX_LEN
    return x.shape[1] <= SHORT_ATTENTION_MAX_LEN and not torch.is_grad_enabled()


class Attention(nn.Module):
    """Multi-head non-causal self-attention with a fused QKV projection."""

    def __init__(self, hidden_size: int, num_heads: int) -> None:
        super().__init__()
        self.num_heads = num_heads
        self.head_dim = hidden_size // num_heads
        self.qkv_proj = Linear(hidden_size, 3 * hidden_size)
        self.o_proj = Linear(hidden_size, hidden_size)

    def forward(self, x: torch.Tensor, rope: tuple[torch.Tensor, torch.Tensor] | None) -> torch.Tensor:
        """``x``: ``(batch, seq, hidden)`` -> ``(batch, seq, hidden)``."""
        batch, seq, hidden = x.shape
        qkv = self.qkv_proj(x).view(batch, seq, 3, self.num_heads, self.head_dim)
        q, k, v = qkv.permute(2, 0, 3, 1, 4).unbind(0)  # each (batch, heads, seq, head_dim)
        if rope is not None:
            cos, sin = rope
            q, k = apply_rope(q, cos, sin), apply_rope(k, cos, sin)
        if _matmul_attention(x):
            # Same attention as SDPA, as two batched matmuls and a softmax: measured 2x
            # faster than SDPA's CPU kernel at 16 positions, 1.3x at 36, slower from 48 in
            # fp32. Under bf16 autocast the scores and the softmax stay fp32 (as in a fused
            # kernel's fp32 accumulator) and only the product with V runs in bf16: scores
            # rounded to bf16 gave gradients 35% off fp32's (cosine 0.986) on the trained
            # sudoku6 core, fp32 scores 6% (cosine 0.999), and bf16 training learned less
            # per step than fp32 (docs/performance.md).
            if torch.is_autocast_enabled("cpu"):
                with torch.autocast("cpu", enabled=False):
                    scores = q.float() @ k.float().transpose(-1, -2)
            else:
                scores = q @ k.transpose(-1, -2)
            out = (scores * self.head_dim**-0.5).softmax(-1) @ v
        else:
            out = F.scaled_dot_product_attention(q, k, v, is_causal=False)
        return self.o_proj(out.transpose(1, 2).reshape(batch, seq, hidden))


def swiglu_width(hidden_size: int, expansion: float) -> int:
    """The reference's SwiGLU width: ``round(2/3 * expansion * hidden)`` up to a multiple of 256."""
    return math.ceil(round(expansion * hidden_size * 2 / 3) / 256) * 256


class SwiGLU(nn.Module):
    """``down(silu(gate(x)) * up(x))`` with a fused gate/up projection."""

    def __init__(self, hidden_size: int, expansion: float) -> None:
        super().__init__()
        width = swiglu_width(hidden_size, expansion)
        self.gate_up_proj = Linear(hidden_size, 2 * width)
        self.down_proj = Linear(width, hidden_size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        gate, up = self.gate_up_proj(x).chunk(2, dim=-1)
        return self.down_proj(F.silu(gate) * up)


class Block(nn.Module):
    """Post-norm transformer block: ``x = norm(x + attn(x)); x = norm(x + mlp(x))``."""

    def __init__(self, hidden_size: int, num_heads: int, expansion: float, eps: float) -> None:
        super().__init__()
        self.self_attn = Attention(hidden_size, num_heads)
        self.mlp = SwiGLU(hidden_size, expansion)
        self.eps = eps

    def forward(self, x: torch.Tensor, rope: tuple[torch.Tensor, torch.Tensor] | None) -> torch.Tensor:
        x = rms_norm(x + self.self_attn(x, rope), self.eps)
        return rms_norm(x + self.mlp(x), self.eps)

    def zero_residuals_(self) -> None:
        """Zero the output projections of both residual branches. The block then returns an
        input that is already normed (a previous block's output) unchanged, to the norm's
        ``eps``: how ``train.init_from`` adds depth to trained weights without changing what
        they compute; the projections learn from the first step on."""
        with torch.no_grad():
            self.self_attn.o_proj.weight.zero_()
            self.mlp.down_proj.weight.zero_()


class ReasoningModule(nn.Module):
    """A stack of blocks that first adds its input injection: ``blocks(z + injection)``."""

    def __init__(self, num_layers: int, hidden_size: int, num_heads: int, expansion: float,
                 eps: float) -> None:
        super().__init__()
        self.layers = nn.ModuleList(
            Block(hidden_size, num_heads, expansion, eps) for _ in range(num_layers)
        )

    def forward(self, z: torch.Tensor, injection: torch.Tensor,
                rope: tuple[torch.Tensor, torch.Tensor] | None) -> torch.Tensor:
        z = z + injection
        for layer in self.layers:
            z = layer(z, rope)
        return z
