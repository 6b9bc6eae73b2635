"""Token losses: softmax and the HRM reference's stablemax cross-entropy.

The token losses return per-position losses ``(batch, seq)`` with 0 at ignored positions, so
callers choose the reduction (HRM: mean over a puzzle's supervised cells, summed over the
batch). The halting losses are part of ACT: ``hrm_rl.agents.act.act_loss``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from hrm_rl.tasks.base import IGNORE_LABEL


def _stablemax_s(x: torch.Tensor) -> torch.Tensor:
    """``s(x) = x + 1`` for ``x >= 0`` and ``1 / (1 - x)`` below: positive, grows linearly."""
    return torch.where(x < 0, 1 / (1 - x + 1e-30), x + 1)


def log_stablemax(x: torch.Tensor, dim: int = -1) -> torch.Tensor:
    """Log of the stablemax distribution ``s(x_i) / sum_j s(x_j)``."""
    s = _stablemax_s(x)
    return torch.log(s / s.sum(dim=dim, keepdim=True))


def stablemax_cross_entropy(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Per-position stablemax cross-entropy, computed and returned in float64 as in the
    reference (float32 on MPS, which has no float64), so the loss it enters is float64 too.

    Args:
        logits: ``(batch, seq, vocab)``. labels: ``(batch, seq)`` with ``IGNORE_LABEL``.
    """
    dtype = torch.float32 if logits.device.type == "mps" else torch.float64
    logprobs = log_stablemax(logits.to(dtype), dim=-1)
    valid = labels != IGNORE_LABEL
    picked = logprobs.gather(-1, torch.where(valid, labels, 0).unsqueeze(-1)).squeeze(-1)
    return -torch.where(valid, picked, 0)


def softmax_cross_entropy(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Per-position softmax cross-entropy in float32, 0 at ignored positions."""
    return F.cross_entropy(logits.float().flatten(0, -2), labels.flatten(), reduction="none",
                           ignore_index=IGNORE_LABEL).view(labels.shape)


TOKEN_LOSSES = {"stablemax": stablemax_cross_entropy, "softmax": softmax_cross_entropy}
