"""ACT as HRM trains it: the halting decision, the Q-learning targets and the loss of a segment.

Read top to bottom, one training step of the trainer (``hrm_rl.agents.trainer``) is:

1. **The segment.** The segment engine refills the rows that halted last step with fresh
   puzzles and the initial carry, and runs one segment for the batch (the recursion's
   gradient inside it; the carry between segments is detached: deep supervision).
2. **Halting.** A row halts when its Q-head says so (``model.halts``: ``q_halt > q_continue``
   for HRM, ``q_halt > 0`` for TRM) or at ``max_segments``, but never before its minimum
   number of segments. Exploration sets that minimum (``draw_min_segments``): with
   probability ``halt_exploration_prob`` uniformly from ``2..max_segments``, else 1; the
   engine asks for one per row when the row starts its puzzle (``per_episode``) or at every
   segment (``per_segment``, the reference's rule).
3. **Targets.** ``q_halt`` learns "the answer is exactly right" (BCE). HRM also learns
   ``q_continue`` toward the value of going on (``q_continue_target``): ``sigmoid`` of the
   next segment's ``q_halt`` at the last allowed segment, else of its ``max(q_halt,
   q_continue)``, from one extra no-grad forward (``engine.peek()``). TRM (``halt_loss:
   bce``) has no continue target.
4. **The loss** (``act_loss``): LM cross-entropy (mean over a puzzle's supervised cells,
   summed over rows) plus ``q_loss_weight`` times the Q losses, divided by the batch.

Everything here is a pure function of tensors; the trainer owns the optimiser, the loop,
logging and run management.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from hrm_rl.losses import TOKEN_LOSSES
from hrm_rl.model import SegmentOutput
from hrm_rl.segment_engine import SegmentStep
from hrm_rl.tasks import IGNORE_LABEL, Task


def draw_min_segments(n: int, max_segments: int, exploration_prob: float,
                      device: torch.device | str = "cpu") -> torch.Tensor:
    """``(n,)`` int64 minimum segments: uniform on ``2..max_segments`` with probability
    ``exploration_prob``, else 1 (always 1 when ``max_segments`` is 1). Draws from torch's
    global generator: ``n`` uniforms, then ``n`` integers."""
    explore = torch.rand(n, device=device) < exploration_prob
    drawn = torch.randint(2, max(max_segments, 2) + 1, (n,), device=device)
    return torch.where(explore & (max_segments > 1), drawn, 1)


def q_continue_target(nxt: SegmentOutput, segments: torch.Tensor,
                      max_segments: int) -> torch.Tensor:
    """``(batch,)`` probabilities that ``q_continue`` learns: the value of the next segment
    (``nxt``, run without gradient), ``q_halt`` alone once ``segments`` reach the cap."""
    is_last = segments >= max_segments
    return torch.sigmoid(torch.where(is_last, nxt.q_halt, torch.maximum(nxt.q_halt,
                                                                         nxt.q_continue)))


def act_loss(out: SegmentOutput, labels: torch.Tensor, correct: torch.Tensor,
             target_q_continue: torch.Tensor | None, token_loss: str,
             q_loss_weight: float) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """The ACT loss of one segment, averaged over the batch.

    Args:
        out: the segment's outputs (``logits (batch, seq, vocab)``, ``q_halt``/``q_continue``
            ``(batch,)``).
        labels: ``(batch, seq)`` targets with ``IGNORE_LABEL``.
        correct: ``(batch,)`` bool, whether each predicted answer is exactly right.
        target_q_continue: ``(batch,)`` probabilities (HRM), or None: no continue loss (TRM).
        token_loss: ``"stablemax"`` or ``"softmax"``.
        q_loss_weight: weight of the two Q losses.

    Returns:
        The scalar loss (float64 with stablemax, as in the reference) and its parts (each
        summed over rows, detached).
    """
    batch = labels.shape[0]
    per_token = TOKEN_LOSSES[token_loss](out.logits, labels)
    cells = (labels != IGNORE_LABEL).sum(-1).clamp_min(1)
    lm = (per_token.sum(-1) / cells).sum()
    q_halt = F.binary_cross_entropy_with_logits(out.q_halt, correct.float(), reduction="sum")
    q_cont = torch.zeros((), device=labels.device)
    if target_q_continue is not None:
        q_cont = F.binary_cross_entropy_with_logits(out.q_continue, target_q_continue,
                                                    reduction="sum")
    loss = (lm + q_loss_weight * (q_halt + q_cont)) / batch
    return loss, {"lm_loss": lm.detach(), "q_halt_loss": q_halt.detach(),
                  "q_continue_loss": q_cont.detach()}


@dataclass
class StepStats:
    """Scalars of one training step: losses per puzzle; accuracy, segments and Q-head
    accuracy over the rows that halted (as the reference counts them)."""

    lm_loss: float
    q_halt_loss: float
    q_continue_loss: float
    halted: int
    exact_acc: float
    mean_segments: float
    q_halt_accuracy: float


def segment_loss(step: SegmentStep, peek: Callable[[], SegmentOutput], task: Task,
                 max_segments: int, q_learning: bool, token_loss: str,
                 q_loss_weight: float, precision: Callable = contextlib.nullcontext
                 ) -> tuple[torch.Tensor, StepStats]:
    """The loss of one engine step and its statistics.

    Args:
        step: what the segment engine returned for this segment.
        peek: runs the next segment without gradient or state change (``engine.peek``);
            called only for HRM's continue target.
        task: checks answers.
        max_segments: the cap (a single segment has no continue target).
        q_learning: HRM's bootstrapped continue loss (else TRM's halt BCE alone).
        token_loss, q_loss_weight: see ``act_loss``.
        precision: factory of the autocast context for the extra forward and the loss.
    """
    out, labels, segments, halted = step.out, step.labels, step.segments, step.finished
    with torch.no_grad():
        correct = task.is_correct(out.logits.argmax(-1), labels)
        target = None
        if max_segments > 1 and q_learning:
            with precision():
                nxt = peek()
            target = q_continue_target(nxt, segments, max_segments)
    with precision():
        loss, parts = act_loss(out, labels, correct, target, token_loss, q_loss_weight)
    batch = labels.shape[0]
    n_halted = int(halted.sum())
    with torch.no_grad():
        q_right = (out.q_halt >= 0) == correct
    stats = StepStats(
        lm_loss=parts["lm_loss"].item() / batch,
        q_halt_loss=parts["q_halt_loss"].item() / batch,
        q_continue_loss=parts["q_continue_loss"].item() / batch,
        halted=n_halted,
        exact_acc=(correct & halted).sum().item() / max(n_halted, 1),
        mean_segments=segments[halted].float().sum().item() / max(n_halted, 1),
        q_halt_accuracy=(q_right & halted).sum().item() / max(n_halted, 1),
    )
    return loss, stats
