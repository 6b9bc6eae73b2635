"""The custom agent: trains the Q-head jointly with the supervised recurrent core, as HRM does.

One training step is one segment for a batch of puzzles (the segment engine):

1. Rows that halted last step get fresh puzzles and the initial carry; all rows run one
   segment (1-step gradient inside; the carry between segments is detached: deep supervision).
2. Loss = LM cross-entropy (mean over a puzzle's cells, summed over rows)
   + ``q_loss_weight`` * (BCE(q_halt, "whole answer correct")
   + BCE(q_continue, sigmoid of the bootstrapped next-segment value)), divided by the batch.
   The bootstrap target is ``q_halt`` of the next segment at the last allowed segment and
   ``max(q_halt, q_continue)`` of the next segment otherwise (one extra no-grad forward).
3. A row halts when ``q_halt > q_continue`` or at ``halt_max_steps``, but never before its
   minimum: with probability ``halt_exploration_prob`` an episode draws a minimum uniformly
   from ``2..halt_max_steps`` (exploration), otherwise 1.

``ACTTrainer.fit`` wraps that in a loop with a progress bar, periodic evaluation (accuracy after
each segment and under Q-head halting), checkpoints and TensorBoard scalars.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
import yaml
from torch.utils.tensorboard import SummaryWriter
from tqdm.auto import tqdm

from hrm_rl.checkpoint import save_run_checkpoint
from hrm_rl.config import RunConfig
from hrm_rl.data import ShuffledSource
from hrm_rl.device import autocast, resolve_device
from hrm_rl.evaluation import EvalResult, evaluate
from hrm_rl.losses import TOKEN_LOSSES
from hrm_rl.model import HRM, SegmentOutput
from hrm_rl.optim import lr_at, make_optimizer
from hrm_rl.segment_engine import SegmentEngine
from hrm_rl.tasks import IGNORE_LABEL, PuzzleBatch, Task, make_task
from hrm_rl.tasks.splits import build_splits


@dataclass
class StepStats:
    """Scalars of one training step (losses per puzzle; accuracy over rows that halted)."""

    lm_loss: float
    q_halt_loss: float
    q_continue_loss: float
    halted: int
    exact_acc: float
    mean_segments: float
    q_halt_accuracy: float


def act_loss(out: SegmentOutput, labels: torch.Tensor, correct: torch.Tensor,
             target_q_continue: torch.Tensor | None, token_loss: str,
             q_loss_weight: float) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """The HRM ACT loss of one segment, averaged over the batch.

    Args:
        out: the segment's outputs (``logits (batch, seq, vocab)``, ``q_halt``/``q_continue``
            ``(batch,)``).
        labels: ``(batch, seq)`` targets with ``IGNORE_LABEL``.
        correct: ``(batch,)`` bool, whether each predicted answer is exactly right.
        target_q_continue: ``(batch,)`` probabilities, or None to skip the continue loss.
        token_loss: ``"stablemax"`` or ``"softmax"``.
        q_loss_weight: weight of the two Q losses.

    Returns:
        The scalar loss and its parts (each summed over rows, detached).
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


class ACTTrainer:
    """Deep-supervision + ACT Q-learning trainer for one run config.

    Args:
        config: the run config.
        run_dir: where TensorBoard events and checkpoints go; None for no outputs (tests).
        progress: show progress bars.
        splits: pre-built ``(train, test)`` puzzle sets; built from ``config.data`` if None.
    """

    def __init__(self, config: RunConfig, run_dir: str | Path | None = None,
                 progress: bool = True,
                 splits: tuple[PuzzleBatch, PuzzleBatch] | None = None) -> None:
        self.config = config
        tcfg = config.train
        if tcfg.threads:
            torch.set_num_threads(tcfg.threads)
        torch.manual_seed(tcfg.seed)
        self.rng = np.random.default_rng(tcfg.seed)
        self.device = resolve_device(tcfg.device)
        self.progress = progress
        self.task: Task = make_task(config.task)
        self.train_set, self.test_set = splits or build_splits(self.task, config.data, progress)
        self.model = HRM(config.model.fit_to(self.task)).to(self.device)
        self.forward_model = torch.compile(self.model) if tcfg.compile else self.model
        self.optimizer = self._make_optimizer()
        augment = self.task.augment if config.data.augment else None
        self.source = ShuffledSource(self.train_set, self.rng, augment)
        self.engine = SegmentEngine(self.forward_model, self.source, tcfg.batch_size, self.device)
        self.halted: torch.Tensor | None = None
        self.min_segments = self._draw_min_segments(tcfg.batch_size)
        self.step = 0
        self._fit_start: float | None = None
        self.run_dir = Path(run_dir) if run_dir is not None else None
        self.writer = SummaryWriter(str(self.run_dir)) if self.run_dir is not None else None

    def time_fraction(self) -> float:
        """Share of ``train.max_time_s`` spent since ``fit`` started (0 without a limit)."""
        t = self.config.train
        if t.max_time_s is None or self._fit_start is None:
            return 0.0
        return (time.perf_counter() - self._fit_start) / t.max_time_s

    def _make_optimizer(self) -> torch.optim.Optimizer:
        t = self.config.train
        return make_optimizer(t.optimizer, self.model.parameters(), t.lr, (t.beta1, t.beta2),
                              t.weight_decay)

    def _precision(self):
        return autocast(self.device, self.config.train.precision)

    def _draw_min_segments(self, n: int) -> torch.Tensor:
        t = self.config.train
        explore = torch.rand(n, device=self.device) < t.halt_exploration_prob
        high = max(t.halt_max_steps, 2)
        drawn = torch.randint(2, high + 1, (n,), device=self.device)
        return torch.where(explore & (t.halt_max_steps > 1), drawn, 1)

    def train_step(self) -> StepStats:
        """One segment on the batch, one optimiser step."""
        t = self.config.train
        lr = lr_at(self.step, t.lr, t.lr_warmup_steps, t.steps, t.lr_min_ratio,
                   self.time_fraction())
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        if self.halted is not None:  # the rows the engine is about to refill
            self.min_segments = torch.where(self.halted, self._draw_min_segments(len(self.halted)),
                                            self.min_segments)
        self.model.train()
        with self._precision():
            out = self.engine.step(self.halted)
        labels, segments = self.engine.labels, self.engine.segments
        with torch.no_grad():
            correct = self.task.is_correct(out.logits.argmax(-1), labels)
            is_last = segments >= t.halt_max_steps
            halted = is_last
            target = None
            if t.halt_max_steps > 1:
                halted = (is_last | (out.q_halt > out.q_continue)) & (segments >= self.min_segments)
                with self._precision():
                    nxt = self.engine.peek()
                target = torch.sigmoid(torch.where(is_last, nxt.q_halt,
                                                   torch.maximum(nxt.q_halt, nxt.q_continue)))
        with self._precision():
            loss, parts = act_loss(out, labels, correct, target, t.loss, t.q_loss_weight)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if t.grad_clip:
            torch.nn.utils.clip_grad_norm_(self.model.parameters(), t.grad_clip)
        self.optimizer.step()
        self.halted = halted
        self.step += 1
        n_halted = int(halted.sum())
        batch = t.batch_size
        return StepStats(
            lm_loss=parts["lm_loss"].item() / batch,
            q_halt_loss=parts["q_halt_loss"].item() / batch,
            q_continue_loss=parts["q_continue_loss"].item() / batch,
            halted=n_halted,
            exact_acc=(correct & halted).sum().item() / max(n_halted, 1),
            mean_segments=segments[halted].float().sum().item() / max(n_halted, 1),
            q_halt_accuracy=((out.q_halt >= 0) == correct).float().mean().item(),
        )

    def evaluate(self, n: int | None = None, max_segments: int | None = None) -> EvalResult:
        """Accuracy after each segment and under Q-head halting on the first ``n`` test puzzles."""
        t = self.config.train
        n = min(n or t.eval_size, len(self.test_set))
        return evaluate(self.model, self.task, self.test_set.take(slice(0, n)),
                        max_segments or t.halt_max_steps, t.eval_batch_size,
                        self._precision, progress=False)

    def _log(self, tag_values: dict[str, float]) -> None:
        if self.writer is not None:
            for tag, value in tag_values.items():
                self.writer.add_scalar(tag, value, self.step)

    def _log_eval(self, result: EvalResult) -> None:
        self._log({"eval/exact_acc_qhalt": result.exact_qhalt,
                   "eval/cell_acc_qhalt": result.cell_acc_qhalt,
                   "eval/mean_segments_qhalt": result.mean_segments_qhalt,
                   "eval/exact_acc_at_max": result.exact_by_segment[-1]})
        self._log({f"eval/exact_acc_at_k/{k + 1}": acc
                   for k, acc in enumerate(result.exact_by_segment)})

    def save(self, meta: dict[str, Any] | None = None) -> Path | None:
        """Checkpoint into the run folder (no-op without one)."""
        if self.run_dir is None:
            return None
        return save_run_checkpoint(self.run_dir, self.step, self.model, self.config,
                                   {"step": self.step, **(meta or {})},
                                   (self.task, self.test_set))

    def fit(self) -> dict[str, Any]:
        """Train for ``train.steps`` steps (or ``train.max_time_s``), evaluating and saving.

        Returns:
            A summary: steps, seconds, segments/s and the final evaluation.
        """
        t = self.config.train
        if self.run_dir is not None:
            self.run_dir.mkdir(parents=True, exist_ok=True)
            (self.run_dir / "config.yaml").write_text(yaml.safe_dump(self.config.to_dict()))
        bar = tqdm(total=t.steps, desc="train", unit="step", disable=not self.progress)
        start = window_start = self._fit_start = time.perf_counter()
        window_steps = 0
        sums: dict[str, float] = {}
        while self.step < t.steps:
            stats = self.train_step()
            window_steps += 1
            for key, value in stats.__dict__.items():
                sums[key] = sums.get(key, 0.0) + value
            bar.update(1)
            if self.step % t.log_every == 0:
                now = time.perf_counter()
                means = {k: v / window_steps for k, v in sums.items()}
                self._log({f"train/{k}": v for k, v in means.items() if k != "halted"})
                self._log({"train/lr": self.optimizer.param_groups[0]["lr"],
                           "perf/segments_per_s": window_steps * t.batch_size / (now - window_start)})
                bar.set_postfix(lm=f"{means['lm_loss']:.3f}", acc=f"{means['exact_acc']:.3f}",
                                segs=f"{means['mean_segments']:.2f}")
                sums, window_steps, window_start = {}, 0, now
            if self.step % t.eval_every == 0:
                self._log_eval(self.evaluate())
            if self.step % t.checkpoint_every == 0:
                self.save()
            if self.time_fraction() >= 1.0:
                break
        bar.close()
        seconds = time.perf_counter() - start
        final = self.evaluate()
        self._log_eval(final)
        summary = {"steps": self.step, "train_seconds": round(seconds, 1),
                   "segments_per_s": round(self.step * t.batch_size / seconds, 1),
                   "parameters": self.model.num_parameters(), "eval": final.to_dict()}
        self.save({"eval": final.to_dict()})
        if self.run_dir is not None:
            (self.run_dir / "summary.json").write_text(json.dumps(summary, indent=2))
        if self.writer is not None:
            self.writer.flush()
        return summary


def make_run_dir(config: RunConfig) -> Path:
    """``<out_dir>/<name>-<YYYYmmdd-HHMMSS>``, not yet created."""
    stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
    return Path(config.out_dir) / f"{config.name}-{stamp}"
