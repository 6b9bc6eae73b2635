"""Optimisers and the learning-rate schedule used by the trainer."""

from __future__ import annotations

import math
from collections.abc import Iterable

import torch


class AdamATan2(torch.optim.Optimizer):
    """Adam with ``atan2`` in place of the division by ``sqrt(v) + eps`` (no epsilon to tune).

    The update is ``lr * a * atan2(m_hat, b * sqrt(v_hat))`` with decoupled weight decay
    ``p *= 1 - lr * weight_decay``. The defaults ``a = b = 1`` are those of the optimiser the
    HRM and TRM references train with (imoneoi's ``adam-atan2`` CUDA kernel, which has no
    ``a`` or ``b``); the Adam-atan2 paper (Everett et al. 2024) and the
    ``adam-atan2-pytorch`` package use ``a = 1.27``. Pure PyTorch, any device
    (``scripts/experiments/compare_adam_atan2.py`` compares it with that package).
    """

    def __init__(self, params: Iterable[torch.nn.Parameter], lr: float = 1e-4,
                 betas: tuple[float, float] = (0.9, 0.95), weight_decay: float = 0.0,
                 a: float = 1.0, b: float = 1.0) -> None:
        if lr < 0 or weight_decay < 0:
            raise ValueError(f"lr and weight_decay must be >= 0, got {lr}, {weight_decay}")
        super().__init__(params, dict(lr=lr, betas=betas, weight_decay=weight_decay, a=a, b=b))

    @torch.no_grad()
    def step(self, closure=None):  # noqa: D102 - torch.optim.Optimizer.step
        loss = closure() if closure is not None else None
        for group in self.param_groups:
            beta1, beta2 = group["betas"]
            for p in group["params"]:
                if p.grad is None:
                    continue
                state = self.state[p]
                if not state:
                    state["step"] = 0
                    state["m"] = torch.zeros_like(p)
                    state["v"] = torch.zeros_like(p)
                state["step"] += 1
                m, v, t = state["m"], state["v"], state["step"]
                p.mul_(1 - group["lr"] * group["weight_decay"])
                m.lerp_(p.grad, 1 - beta1)
                v.lerp_(p.grad.square(), 1 - beta2)
                m_hat = m / (1 - beta1**t)
                v_hat = v / (1 - beta2**t)
                p.add_(torch.atan2(m_hat, group["b"] * v_hat.sqrt()), alpha=-group["lr"] * group["a"])
        return loss


class SignSGD(torch.optim.Optimizer):
    """Sign-SGD with decoupled weight decay on the rows of an embedding table that a step
    used, as the HRM reference trains its puzzle embedding: for every row whose gradient is
    not all zero (the puzzle identifiers of the batch), ``row <- row * (1 - lr * wd) -
    lr * sign(grad)``; the other rows are left exactly as they are (no decay). Stateless.
    """

    def __init__(self, params: Iterable[torch.nn.Parameter], lr: float = 1e-2,
                 weight_decay: float = 0.0) -> None:
        if lr < 0 or weight_decay < 0:
            raise ValueError(f"lr and weight_decay must be >= 0, got {lr}, {weight_decay}")
        super().__init__(params, dict(lr=lr, weight_decay=weight_decay))

    @torch.no_grad()
    def step(self, closure=None):  # noqa: D102 - torch.optim.Optimizer.step
        loss = closure() if closure is not None else None
        for group in self.param_groups:
            lr, wd = group["lr"], group["weight_decay"]
            for p in group["params"]:
                if p.grad is None:
                    continue
                grad = p.grad.reshape(p.shape[0], -1) if p.dim() > 0 else p.grad.reshape(1, 1)
                rows = grad.ne(0).any(1).nonzero().squeeze(-1)
                if rows.numel() == 0:
                    continue
                table = p.view(p.shape[0], -1) if p.dim() > 0 else p.view(1, 1)
                table[rows] = table[rows] * (1 - lr * wd) - lr * torch.sign(grad[rows])
        return loss


def make_optimizer(name: str, params: Iterable[torch.nn.Parameter], lr: float,
                   betas: tuple[float, float], weight_decay: float,
                   fused: bool = False) -> torch.optim.Optimizer:
    """``"adamw"`` (torch.optim.AdamW) or ``"adam_atan2"`` (``AdamATan2``).

    ``fused``: AdamW's fused kernel (one pass over each tensor instead of one per operation;
    measured 3.8x faster a step on the tiny model, 1 CPU thread), where the parameters are
    floating point on a CPU or CUDA; results equal the unfused ones to rounding. AdamATan2
    has no fused form and ignores it.
    """
    if name == "adamw":
        params = list(params)
        fused = fused and all(p.is_floating_point() and p.device.type in ("cpu", "cuda")
                              for p in params)
        return torch.optim.AdamW(params, lr=lr, betas=betas, weight_decay=weight_decay,
                                 fused=fused or None)
    if name == "adam_atan2":
        return AdamATan2(params, lr=lr, betas=betas, weight_decay=weight_decay)
    raise ValueError(f"unknown optimizer {name!r}: use 'adamw' or 'adam_atan2'")


def lr_at(step: int, base_lr: float, warmup_steps: int, total_steps: int, min_ratio: float,
          time_fraction: float = 0.0) -> float:
    """Linear warm-up to ``base_lr``, then cosine decay to ``min_ratio * base_lr``.

    The decay follows whichever budget is further spent: ``step / total_steps`` or
    ``time_fraction`` (elapsed / time budget), so a time-limited run still anneals.
    """
    if step < warmup_steps:
        return base_lr * (step + 1) / warmup_steps
    progress = (step - warmup_steps) / max(1, total_steps - warmup_steps)
    progress = min(1.0, max(progress, time_fraction))
    return base_lr * (min_ratio + (1 - min_ratio) * 0.5 * (1 + math.cos(math.pi * progress)))
