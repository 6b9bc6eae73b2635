"""Token losses (softmax and the HRM reference's stablemax cross-entropy) and TRM's halt loss.

The token losses return per-position losses ``(batch, seq)`` with 0 at ignored positions, so
callers choose the reduction (HRM: mean over a puzzle's supervised cells, summed over the
batch). ``halt_bce_loss`` is TRM's halting loss: q_halt toward "the answer is right".
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
    """Per-position stablemax cross-entropy (float64 off MPS, as in the reference).

    Args:
        logits: ``(batch, seq, vocab)``. labels: ``(batch, seq)`` with ``IGNORE_LABEL``.
    """
    dtype = torch.float32 if logits.device.type == "mps" else torch.float64
    logprobs = log_stablemax(logits.to(dtype), dim=-1)
    valid = labels != IGNORE_LABEL
    picked = logprobs.gather(-1, torch.where(valid, labels, 0).unsqueeze(-1)).squeeze(-1)
    return -torch.where(valid, picked, 0).to(torch.float32)


def softmax_cross_entropy(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Per-position softmax cross-entropy in float32, 0 at ignored positions."""
    return F.cross_entropy(logits.float().flatten(0, -2), labels.flatten(), reduction="none",
                           ignore_index=IGNORE_LABEL).view(labels.shape)


TOKEN_LOSSES = {"stablemax": stablemax_cross_entropy, "softmax": softmax_cross_entropy}


def halt_bce_loss(q_halt: torch.Tensor, correct: torch.Tensor,
                  reduction: str = "sum") -> torch.Tensor:
    """TRM's halting loss: BCE of the ``q_halt`` logit toward exact correctness.

    No continue target and no extra forward (TRM's ``no_ACT_continue``); halting is then
    ``q_halt > 0``. HRM's ACT loss uses the same term next to its bootstrapped continue loss.

    Args:
        q_halt: ``(batch,)`` logits (float32). correct: ``(batch,)`` bool, whether each row's
            predicted answer is exactly right (no gradient flows through it).
        reduction: ``"sum"`` (the reference's, divided by the batch by the caller), ``"mean"``
            or ``"none"``.
    """
    return F.binary_cross_entropy_with_logits(q_halt.float(), correct.to(torch.float32),
                                              reduction=reduction)
