"""The trainer: runs ACT (``hrm_rl.agents.act``) step after step into a run folder.

One training step (``ACTTrainer.train_step``) is one segment for a batch of puzzles: the
segment engine runs it, ``act.segment_loss`` gives the ACT loss (the algorithm, readable top
to bottom, is in ``hrm_rl.agents.act``), and the trainer back-propagates, clips, steps the
optimiser and the weight average.

``ACTTrainer.fit`` is the loop around it (set-up in ``__init__``, the loop in ``_fit``): a
progress bar, periodic evaluation (accuracy after each segment and under Q-head halting),
checkpoints, TensorBoard scalars and ``metrics.jsonl`` (one JSON line per logging window, the
same figures as TensorBoard at full precision). What the run keeps on disk (lock, resume
point, rotation, ``best``, metrics, summary) is ``hrm_rl.run_dir``'s; resuming and fault
handling come below the loop in ``ACTTrainer``.

Failure behaviour: a non-finite loss or gradient raises ``NonFiniteError`` before the
optimiser step (the weights stay as they were and no checkpoint is written), after logging
``fault/non_finite`` to TensorBoard. Checkpoints hold the whole training state, so
``ACTTrainer.resume(run_dir)`` continues from the last one as if nothing had happened.

- A fresh trainer refuses a run folder that already holds a run (checkpoints or
  ``metrics.jsonl``: ``RunExistsError``), so training twice into one folder never overwrites
  the first run; ``ACTTrainer.resume(run_dir)`` continues it instead.
- A resume after a kill during the first checkpoint write starts the run afresh (nothing
  was saved to continue from); one whose ``latest`` pointer is missing or torn continues from
  the newest complete checkpoint. Either way ``metrics.jsonl`` keeps no row after the step
  continued from, so no step appears twice.
- Each evaluation that beats the best so far (exact accuracy under Q-head halting, then cell
  accuracy) is checkpointed and named by ``checkpoints/best``, which the rotation never
  removes: after a divergence, ``--resume RUN --from best`` continues from it.
- A resumed run with nothing left (``train.steps`` reached or ``train.max_time_s`` spent)
  trains zero steps and writes nothing; ``fit`` returns a summary whose ``note`` says how to
  give it more.
- SIGINT (Ctrl-C) or SIGTERM during ``fit`` finishes the step in progress, checkpoints it,
  releases the run lock and raises ``TrainingInterrupted`` (the CLI exits 130 or 143); a
  second signal stops at once, without a checkpoint of the step in progress.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import hashlib
import math
import signal
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.tensorboard import SummaryWriter
from tqdm.auto import tqdm

from hrm_rl import distributed
from hrm_rl.agents import act
from hrm_rl.agents.act import StepStats
from hrm_rl.checkpoint import (DEPTH, LATEST, RECURRENCE, SWITCHES, WEIGHTS, check_architecture,
                               check_weights_sha256, load_trainer_state, load_weights,
                               read_checkpoint_config, resolve_checkpoint)
from hrm_rl.cpu_defaults import choose_matmul, choose_precision
from hrm_rl.config import (RENAMED_KEYS, ConfigError, RunConfig, apply_overrides,
                           config_changes, from_dict, load_config)
from hrm_rl.data import ShuffledSource
from hrm_rl.device import autocast, resolve_device
from hrm_rl.evaluation import EvalResult, evaluate
from hrm_rl.ema import EMA
from hrm_rl.model import build_model
from hrm_rl.model.layers import set_linear_backend
from hrm_rl.optim import SignSGD, lr_at, make_optimizer
from hrm_rl.run_dir import (CONFIG_FILE, RunLock, append_metrics, check_fresh_run_dir,
                            find_resume_checkpoint, has_summary, no_space_error, read_pointer,
                            remove_partial_checkpoints, rewind_run, save_run_checkpoint,
                            truncate_metrics, write_run_config, write_summary)
from hrm_rl.segment_engine import SegmentEngine
from hrm_rl.tasks import PuzzleBatch, Task, make_task
from hrm_rl.tasks.splits import build_splits


_STATE_FORMAT = 1
_SHAPE_KEYS = ("optimizer", "batch_size", "max_segments")  # the saved state's shape


class NonFiniteError(RuntimeError):
    """Training produced a NaN or infinite loss or gradient.

    Attributes:
        step: the step that failed (1-based: the step that would have completed).
        what: ``"loss"``, ``"gradient"`` or ``"weights"``.
    """

    def __init__(self, step: int, what: str, detail: str = "") -> None:
        self.step, self.what = step, what
        stopped = ("no checkpoint was written" if what == "weights"
                   else "training stopped before applying the step")
        super().__init__(f"non-finite {what} at step {step}{detail}; {stopped}. Lower train.lr, "
                         "set train.grad_clip or use train.precision=fp32, then resume from the "
                         "last good checkpoint (hrm-rl train --resume RUN_DIR --set train.lr=...)")


class TrainingInterrupted(KeyboardInterrupt):
    """``fit`` stopped on SIGINT (Ctrl-C) or SIGTERM.

    Attributes:
        step: the last completed step.
        signum: the signal (``signal.SIGINT`` also for a plain ``KeyboardInterrupt``).
        checkpoint: the checkpoint folder holding ``step``, or None (no run folder, or
            stopped at once inside a step or a save by a second signal).
        run_dir: the run folder, or None.
        exit_code: ``128 + signum`` (130 for SIGINT, 143 for SIGTERM), for the CLI.
    """

    def __init__(self, step: int, signum: int, checkpoint: Path | None,
                 run_dir: Path | None) -> None:
        self.step, self.signum, self.checkpoint, self.run_dir = step, signum, checkpoint, run_dir
        self.exit_code = 128 + signum
        name = signal.Signals(signum).name
        resume = f"continue with: hrm-rl train --resume {run_dir}"
        if checkpoint is not None:
            text = f"interrupted by {name} at step {step}; saved {checkpoint}; {resume}"
        elif run_dir is None:
            text = f"interrupted by {name} at step {step} (no run folder: nothing saved)"
        else:
            latest = read_pointer(run_dir / "checkpoints", LATEST)
            text = (f"stopped at once by {name} after step {step}, in the middle of what "
                    "followed, which is not saved; "
                    + (f"the latest checkpoint is {latest}; {resume}" if latest else
                       f"no checkpoint yet, so {resume} starts it afresh"))
        super().__init__(text)


class ACTTrainer:
    """Deep-supervision + ACT Q-learning trainer for one run config.

    Args:
        config: the run config.
        run_dir: where TensorBoard events and checkpoints go; None for no outputs (tests).
        progress: show progress bars.
        splits: pre-built ``(train, test)`` puzzle sets; built from ``config.data`` if None.
        init: start from ``train.init_from``'s weights when it is set (``resume`` passes
            False: the run's own checkpoint is loaded instead).
        fresh: a new run (the default): ``run_dir`` must hold no run yet (``resume`` passes
            False). Debris of a save killed before a run's first checkpoint is removed.

    Raises:
        RunExistsError: a fresh run into a ``run_dir`` that holds a run (checkpoints or
            ``metrics.jsonl``); continue that one with ``ACTTrainer.resume(run_dir)``.
        RunLockedError: another live process trains into ``run_dir``.
        FileNotFoundError: ``train.init_from`` names no checkpoint.
        ValueError: its weights do not fit this config's model.
    """

    def __init__(self, config: RunConfig, run_dir: str | Path | None = None,
                 progress: bool = True,
                 splits: tuple[PuzzleBatch, PuzzleBatch] | None = None,
                 lock: RunLock | None = None, init: bool = True, fresh: bool = True) -> None:
        if fresh and run_dir is not None:  # on every rank, before any writes (or collectives)
            check_fresh_run_dir(run_dir)
        self.config = config
        tcfg = config.train
        if tcfg.threads:
            torch.set_num_threads(tcfg.threads)
        torch.manual_seed(tcfg.seed)
        self.rng = np.random.default_rng(tcfg.seed)
        self.dist = distributed.current()  # torchrun + DDP: see hrm_rl.distributed
        self.device = distributed.local_device(resolve_device(tcfg.device), self.dist)
        self.batch_size = distributed.local_batch_size(tcfg.batch_size, self.dist)  # rows here
        self.progress = progress and self.dist.is_main
        progress = self.progress
        self.task: Task = make_task(config.task)
        self.train_set, self.test_set = splits or build_splits(self.task, config.data, progress)
        self.model = build_model(config.model.fit_to(self.task)).to(self.device)
        self.notes: list[str] = []  # what a resume (or a restart) found and did, to print
        if init and tcfg.init_from is not None:
            self._init_weights(tcfg.init_from)
        matmul = choose_matmul(tcfg.matmul, self.device,
                               rows=self.batch_size * self.task.seq_len)
        tcfg.matmul = matmul.backend   # the saved config holds the choice, not "auto"
        precision = choose_precision(tcfg.precision, self.device)
        tcfg.precision = precision.backend
        self.speed_choices = {"matmul": matmul, "precision": precision}
        set_linear_backend(self.model, tcfg.matmul)
        self.forward_model = distributed.wrap_model(self.model, self.dist, tcfg.compile)
        self.optimizer = self._make_optimizer()
        self.ema = EMA(self.model, tcfg.ema_decay) if tcfg.ema_decay is not None else None
        self.halt_loss = tcfg.halt_loss_for(config.model.kind)
        augment = self.task.augment if config.data.augment else None
        self.source = ShuffledSource(self.train_set, self.rng, augment)
        rows_source = (distributed.ShardedSource(self.source, self.batch_size, self.dist,
                                                 self.device)
                       if self.dist.enabled else self.source)
        # The engine owns the ACT episode: the cap, the halting rule after each row's drawn
        # minimum segments (exploration), and refilling the rows that halted.
        self.engine = SegmentEngine(self.forward_model, rows_source, self.batch_size,
                                    self.device, max_segments=tcfg.max_segments,
                                    auto_halt=True, min_segments=self._draw_min_segments,
                                    halts=self.model.halts,
                                    redraw_min_segments=tcfg.halt_exploration == "per_segment")
        self.engine.min_segments = self._draw_min_segments(self.batch_size)
        self.step = 0
        self._fit_start: float | None = None
        self._elapsed_before = 0.0  # training seconds of earlier sessions (resumed runs)
        self._window: dict[str, float] = {}  # sums over the current logging window
        self._window_steps = 0
        self._window_start = 0.0  # perf_counter() when the window opened
        self.best: dict[str, float] | None = None  # the best evaluation so far (see _note_eval)
        self._resumed_meta: dict[str, Any] = {}  # the meta of the checkpoint resumed from
        self._stop_signal: int | None = None  # set by the SIGINT/SIGTERM handler of fit
        self._phase: str | None = None  # "step" or "save" while the state is not whole
        self._saved: tuple[int, Path] | None = None  # (step, folder) of the last save
        if not self.dist.is_main:  # rank 0 alone writes events and checkpoints
            run_dir = None
        self.run_dir = Path(run_dir) if run_dir is not None else None
        # one live process per run folder (RunLockedError otherwise)
        self.lock = lock if lock is not None or self.run_dir is None else RunLock(self.run_dir)
        if fresh and self.run_dir is not None:  # only debris of a killed first save is there
            removed = remove_partial_checkpoints(self.run_dir)
            if removed:
                self.notes.append(f"removed what a killed save left in "
                                  f"{self.run_dir / 'checkpoints'}: {', '.join(removed)}")
        self.writer = SummaryWriter(str(self.run_dir)) if self.run_dir is not None else None
        if self.writer is not None:
            for option, choice in self.speed_choices.items():
                self.writer.add_text(f"speed/{option}", f"{choice.backend}: {choice.reason}", 0)

    def fit(self) -> dict[str, Any]:
        """Train for ``train.steps`` steps (or ``train.max_time_s``), evaluating and saving.

        SIGINT (Ctrl-C) and SIGTERM (in the main thread, unless ignored; SIGTERM only in a
        single process) end the run cleanly: the step in progress finishes, is
        checkpointed, the run lock is released and ``TrainingInterrupted`` is raised. A
        second signal stops at once (``TrainingInterrupted`` without a checkpoint when it
        came inside a step or a save).

        Returns:
            A summary: steps, seconds, segments/s and the final evaluation; with nothing
            left to train (``nothing_to_do``) the checkpoint's evaluation and a ``note``.

        Raises:
            TrainingInterrupted: on SIGINT or SIGTERM (a ``KeyboardInterrupt``).
            NonFiniteError: the loss, a gradient or the weights became NaN or inf.
        """
        if self.run_dir is not None and (self.lock is None or not self.lock.held):
            self.lock = RunLock(self.run_dir)
        try:
            with self._signals_stop_training():
                return self._fit()
        except OSError as err:  # a full disk, a quota or a file-size limit: one line
            full = no_space_error(self.run_dir, err) if self.run_dir is not None else None
            if full is not None:
                raise full from None
            raise
        finally:  # the training ended (or failed): the folder is free for a resume
            if self.lock is not None:
                self.lock.release()

    def _fit(self) -> dict[str, Any]:
        """The training loop: ``train_step`` (one segment and one optimiser step of ACT,
        ``hrm_rl.agents.act``) step after step, and around it the run folder's logging,
        evaluation and checkpoints; then the final evaluation and the summary. ``fit`` adds
        the run lock, the signal handlers and the message for a full disk."""
        t = self.config.train
        done = self.nothing_to_do()
        if done is not None:  # e.g. a resumed run whose budget is spent
            return self._nothing_left(done)
        if self.run_dir is not None:
            write_run_config(self.run_dir, self.config)
        start = self._window_start = self._fit_start = time.perf_counter()
        first_step = self.step
        bar = self._progress_bar()
        try:
            while self.step < t.steps:
                self._phase = "step"
                stats = self.train_step()
                self._phase = None
                self._add_to_window(stats)
                self._advance(bar)
                if self.step % t.log_every == 0:
                    self._log_window(bar)
                result = None
                if self.step % t.eval_every == 0 and self.dist.is_main:
                    result = self.evaluate()
                    self._log_eval(result)
                new_best = result is not None and self._note_eval(result)
                if self.step % t.checkpoint_every == 0 or (new_best and self.run_dir):
                    self.save(None if result is None else {"eval": result.to_dict()},
                              best=new_best)
                if self._should_stop():  # SIGINT or SIGTERM: this step is saved, then stop
                    raise self._interrupted()
                if self.time_fraction() >= 1.0:
                    break
            bar.close()
            summary = self._final_summary(first_step, time.perf_counter() - start)
        except KeyboardInterrupt as err:  # a second signal, or one without our handler
            if isinstance(err, TrainingInterrupted):
                raise
            raise self._interrupted(at_once=self._phase is not None) from None
        finally:
            bar.close()
        self._write_summary(summary)
        return summary

    def train_step(self) -> StepStats:
        """One segment on the batch, one optimiser step."""
        t = self.config.train
        lr = lr_at(self.step, t.lr, t.lr_warmup_steps, t.steps, t.lr_min_ratio,
                   self.time_fraction())
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        if self.emb_optimizer is not None:  # the same schedule from its own base lr
            for group in self.emb_optimizer.param_groups:
                group["lr"] = lr_at(self.step, self._emb_lr(), t.lr_warmup_steps, t.steps,
                                    t.lr_min_ratio, self.time_fraction())
        self.model.train()
        with self._precision():
            step = self.engine.step()
        loss, stats = act.segment_loss(step, self.engine.peek, self.task, t.max_segments,
                                       self.halt_loss == "q_learning", t.loss,
                                       t.q_loss_weight, self._precision)
        if not torch.isfinite(loss):
            self._fault("loss", f" ({loss.item()})")
        self.optimizer.zero_grad(set_to_none=True)
        if self.emb_optimizer is not None:
            self.emb_optimizer.zero_grad(set_to_none=True)
        loss.backward()
        grads = [p.grad for p in self.model.parameters() if p.grad is not None]
        grad_norm = torch.linalg.vector_norm(
            torch.stack([torch.linalg.vector_norm(g.float()) for g in grads]))
        if not torch.isfinite(grad_norm):  # checked before clipping spreads it to every grad
            bad = [n for n, p in self.model.named_parameters()
                   if p.grad is not None and not torch.isfinite(p.grad).all()]
            self._fault("gradient", f" (in {', '.join(bad[:3]) or 'the total norm'})")
        if t.grad_clip:
            torch.nn.utils.clip_grad_norm_(self.model.parameters(), t.grad_clip)
        self.optimizer.step()
        if self.emb_optimizer is not None:
            self.emb_optimizer.step()
        if self.ema is not None:
            self.ema.update(self.model)
        self.step += 1
        return stats

    def eval_puzzles(self, n: int | None = None) -> PuzzleBatch:
        """The ``n`` (default ``train.eval_size``; at most all) test puzzles an evaluation
        scores, spread evenly over the test split: the same ones every time, and a split
        ordered by task (re-arc's) is covered across its tasks, not only its first ones."""
        n = min(n or self.config.train.eval_size, len(self.test_set))
        return self.test_set.take(np.arange(n, dtype=np.int64) * len(self.test_set) // n)

    def evaluate(self, n: int | None = None, max_segments: int | None = None,
                 precision: str | None = None) -> EvalResult:
        """Accuracy after each segment and under Q-head halting on ``eval_puzzles(n)``, in
        ``precision`` (default: the run's ``train.precision``)."""
        t = self.config.train
        context = functools.partial(self._precision, precision)
        with self._ema_weights():
            return evaluate(self.model, self.task, self.eval_puzzles(n),
                            max_segments or t.max_segments, t.eval_batch_size,
                            context, progress=False)

    def save(self, meta: dict[str, Any] | None = None, best: bool = False) -> Path | None:
        """Checkpoint weights and the whole training state into the run folder (no-op
        without one). TensorBoard events logged so far are flushed first, so a resumed run
        finds every event up to its checkpoint. ``best``: also point ``checkpoints/best`` at
        it (the last known good checkpoint, which the rotation keeps).

        Raises:
            NonFiniteError: the weights hold NaN or inf (the last good checkpoint is kept).
        """
        if self.run_dir is None:
            return None
        bad = [n for n, p in self.model.named_parameters() if not torch.isfinite(p).all()]
        if bad:
            self._fault("weights", f" (in {', '.join(bad[:3])})", self.step)
        if self.writer is not None:
            self.writer.flush()
        phase, self._phase = self._phase, "save"  # stays "save" if the save is cut short
        state = self.state_dict()  # holds the raw weights when EMA swaps them out below
        with self._ema_weights():  # the checkpoint's weights are the EMA's (envs load them)
            folder = save_run_checkpoint(self.run_dir, self.step, self.model, self.config,
                                         {"step": self.step,
                                          "train_seconds": round(self.elapsed_s(), 1),
                                          **(meta or {})},
                                         (self.task, self.test_set), state, best=best)
        self._phase = phase
        self._saved = (self.step, folder)
        return folder

    # --- around the step: progress, logging, the best evaluation, the summary

    def _nothing_left(self, done: str) -> dict[str, Any]:
        """``fit`` of a run with no step left (``done``: why, from ``nothing_to_do``): the
        final evaluation and summary when a kill cut them short, else a summary with the
        checkpoint's evaluation and ``note``, writing nothing."""
        if self._owes_summary():  # killed during its final evaluation
            summary = self._final_summary(self.step, 0.0)
            self._write_summary(summary)
            return summary
        return {"steps": self.step, "train_seconds": round(self.elapsed_s(), 1),
                "segments_per_s": 0.0, "parameters": self.model.num_parameters(),
                "eval": self._resumed_meta.get("eval"), "note": done}

    def _progress_bar(self) -> tqdm:
        """The progress bar of ``fit``: steps, or for a time-budgeted run seconds of its
        budget (steps would read 0/100000)."""
        t = self.config.train
        timed = t.max_time_s is not None
        return tqdm(total=int(math.ceil(t.max_time_s)) if timed else t.steps,
                    initial=int(self.elapsed_s()) if timed else self.step, desc="train",
                    unit="s" if timed else "step", disable=not self.progress,
                    bar_format=("{l_bar}{bar}| {n_fmt}/{total_fmt} s of budget "
                                "[{elapsed}<{remaining}{postfix}]") if timed else None)

    def _advance(self, bar: tqdm) -> None:
        """Move the progress bar past the step just taken (or to the seconds spent)."""
        timed = self.config.train.max_time_s is not None
        bar.update(min(int(self.elapsed_s()), bar.total) - bar.n if timed else 1)

    def _add_to_window(self, stats: StepStats) -> None:
        """Add a step's figures to the sums of the open logging window."""
        self._window_steps += 1
        for key, value in stats.__dict__.items():
            self._window[key] = self._window.get(key, 0.0) + value

    def _log_window(self, bar: tqdm) -> None:
        """Log the means over the logging window that ends at this step (all ranks) to
        TensorBoard, ``metrics.jsonl`` and the progress bar, and open the next window."""
        t = self.config.train
        now = time.perf_counter()
        means = distributed.mean_over_ranks(
            {k: v / self._window_steps for k, v in self._window.items()}, self.dist, self.device)
        lr = self.optimizer.param_groups[0]["lr"]
        self._log({f"train/{k}": v for k, v in means.items() if k != "halted"})
        self._log({"train/lr": lr, "perf/segments_per_s":
                   self._window_steps * t.batch_size / max(now - self._window_start, 1e-9)})
        if self.run_dir is not None:
            append_metrics(self.run_dir, {"step": self.step, **means, "lr": lr})
        bar.set_postfix(step=self.step, lm=f"{means['lm_loss']:.3f}",
                        acc=f"{means['exact_acc']:.3f}", segs=f"{means['mean_segments']:.2f}")
        self._window, self._window_steps, self._window_start = {}, 0, now

    def _log(self, tag_values: dict[str, float]) -> None:
        if self.writer is not None:
            for tag, value in tag_values.items():
                self.writer.add_scalar(tag, value, self.step)

    def _log_eval(self, result: EvalResult) -> None:
        self._log({"eval/exact_acc_qhalt": result.exact_acc_qhalt,
                   "eval/cell_acc_qhalt": result.cell_acc_qhalt,
                   "eval/mean_segments_qhalt": result.mean_segments_qhalt,
                   "eval/exact_acc_at_max": result.exact_by_segment[-1]})
        self._log({f"eval/exact_acc_at_k/{k + 1}": acc
                   for k, acc in enumerate(result.exact_by_segment)})
        if result.task_scores:  # the task's own metric, e.g. ARC's eval/pass@1, eval/pass@2
            self._log({f"eval/{name}": value for name, value in result.task_scores.items()})

    def _note_eval(self, result: EvalResult) -> bool:
        """Record ``result`` if it beats the best evaluation so far (exact accuracy under
        Q-head halting, ties broken by cell accuracy); returns whether it did."""
        score = (result.exact_acc_qhalt, result.cell_acc_qhalt)
        if self.best is not None and score <= (self.best["exact_acc_qhalt"],
                                               self.best["cell_acc_qhalt"]):
            return False
        self.best = {"step": self.step, "exact_acc_qhalt": result.exact_acc_qhalt,
                     "cell_acc_qhalt": result.cell_acc_qhalt}
        return True

    def _final_summary(self, first_step: int, seconds: float) -> dict[str, Any]:
        """The final evaluation (rank 0), logged and saved with the last checkpoint, and the
        run's summary."""
        t = self.config.train
        result = self.evaluate() if self.dist.is_main else None  # rank 0 evaluates
        new_best = False
        if result is not None:
            self._log_eval(result)
            new_best = self._note_eval(result)
        final = result.to_dict() if result is not None else None
        summary = {"steps": self.step, "train_seconds": round(self.elapsed_s(), 1),
                   "segments_per_s": round((self.step - first_step) * t.batch_size
                                           / max(seconds, 1e-9), 1),
                   "parameters": self.model.num_parameters(), "eval": final}
        self.save({"eval": final}, best=new_best)
        return summary

    def _write_summary(self, summary: dict[str, Any]) -> None:
        if self.run_dir is not None:
            write_summary(self.run_dir, summary)
        if self.writer is not None:
            self.writer.flush()

    def _owes_summary(self) -> bool:
        """The run trained every step but has no ``summary.json``: it was killed during its
        final evaluation or the save after it, so a resume still owes both."""
        return self.run_dir is not None and self.step > 0 and not has_summary(self.run_dir)

    def nothing_to_do(self) -> str | None:
        """Why ``fit`` would train no step (``train.steps`` reached, or the time budget
        ``train.max_time_s`` spent, e.g. on resuming a finished run), with how to give it
        more; None when there is training left."""
        t = self.config.train
        where = str(self.run_dir) if self.run_dir is not None else "the run"
        more = f"hrm-rl train --resume {self.run_dir} --set" if self.run_dir else "--set"
        if self.step >= t.steps:
            return (f"{where} is at step {self.step} of train.steps={t.steps}: nothing to "
                    f"train (no step, checkpoint or metrics row written); to train longer: "
                    f"{more} train.steps={max(2 * t.steps, self.step + 1)}")
        if t.max_time_s is not None and self.time_fraction() >= 1.0:
            elapsed = self.elapsed_s()
            return (f"{where} has spent its time budget, train.max_time_s={t.max_time_s:g} "
                    f"({elapsed:.1f} s trained over all sessions): nothing to train (no step, "
                    f"checkpoint or metrics row written); to train longer: "
                    f"{more} train.max_time_s={math.ceil(elapsed + t.max_time_s)}")
        return None

    # --- set-up and schedule

    def _init_weights(self, source: str) -> None:
        """Load the weights of checkpoint ``source`` into the fresh model (strictly)."""
        folder = resolve_checkpoint(source)
        saved, saved_model, meta = read_checkpoint_config(folder)
        rows, extra = None, ""
        if saved.task != self.config.task:
            extra = f", trained on another task ({saved.task.name})"
            old_keys = make_task(saved.task).puzzle_id_keys()
            new_keys = self.task.puzzle_id_keys()
            if old_keys != new_keys:   # e.g. another list of ARC tasks: rows go by name
                where = {key: i for i, key in enumerate(old_keys)}
                rows = {i: where[key] for i, key in enumerate(new_keys) if key in where}
                extra += (f"; {len(rows)} of its {len(old_keys)} puzzle identifiers carried "
                         f"over by name, {len(new_keys) - len(rows)} of this run's start "
                         "fresh")
        now = self.model.config
        # The same weights run for another number of steps per segment, with more layers
        # (the added ones start as the identity) or with a switch on (its weights start at 0).
        changed = {k: (getattr(saved_model, k), getattr(now, k))
                   for k in RECURRENCE + DEPTH + SWITCHES
                   if getattr(saved_model, k) != getattr(now, k)}
        if changed:
            extra += "; " + ", ".join(f"{k} {a} -> {b}" for k, (a, b) in changed.items())
        try:
            load_weights(self.model, folder / WEIGHTS, puzzle_rows=rows,
                         saved_as=dataclasses.replace(
                             now, **{k: a for k, (a, _) in changed.items()}))
            check_weights_sha256(folder, meta)
        except ValueError as err:
            raise ValueError(f"train.init_from={source!r}: {err}") from None
        step = meta.get("step")
        self.notes.append(f"weights initialised from {folder}"
                          + (f" (step {step})" if step is not None else "") + extra)

    def _make_optimizer(self) -> torch.optim.Optimizer:
        """The main optimiser; the puzzle-embedding table goes to ``self.emb_optimizer``
        (sign-SGD, as the reference) unless ``train.puzzle_emb_optimizer`` is ``main``.
        ``train.trainable: q_head`` freezes every other weight first."""
        t = self.config.train
        if t.trainable == "q_head":   # only the halting head learns; the answers stay
            for name, p in self.model.named_parameters():
                p.requires_grad_(name.startswith("q_head."))
        emb = getattr(self.model, "puzzle_emb", None)
        self.emb_optimizer = None
        params = [p for p in self.model.parameters() if p.requires_grad]
        if emb is not None and emb.requires_grad and t.puzzle_emb_optimizer == "sign_sgd":
            params = [p for p in params if p is not emb]
            self.emb_optimizer = SignSGD([emb], lr=self._emb_lr(),
                                         weight_decay=t.weight_decay
                                         if t.puzzle_emb_weight_decay is None
                                         else t.puzzle_emb_weight_decay)
        return make_optimizer(t.optimizer, params, t.lr, (t.beta1, t.beta2), t.weight_decay,
                              fused=t.fused_optimizer)

    def _emb_lr(self) -> float:
        t = self.config.train
        return t.lr if t.puzzle_emb_lr is None else t.puzzle_emb_lr

    def _precision(self, precision: str | None = None):
        """The autocast context of ``precision`` (default: the run's ``train.precision``)."""
        return autocast(self.device, precision or self.config.train.precision)

    def _draw_min_segments(self, n: int) -> torch.Tensor:
        """Minimum segments for ``n`` rows of this rank; drawn for the rows of all ranks
        (same seed everywhere) and sliced, so a multi-rank run draws what one process would."""
        t = self.config.train
        drawn = act.draw_min_segments(n * self.dist.world_size, t.max_segments,
                                      t.halt_exploration_prob, self.device)
        return distributed.shard_slice(drawn, self.dist)

    def _ema_weights(self):
        """Context with the EMA weights in the model (a no-op without EMA)."""
        return self.ema.swapped(self.model) if self.ema is not None else contextlib.nullcontext()

    def time_fraction(self) -> float:
        """Share of ``train.max_time_s`` spent since ``fit`` started (0 without a limit)."""
        t = self.config.train
        if t.max_time_s is None:
            return 0.0
        # Rank 0's clock on every rank: the same lr and the same last step everywhere.
        return distributed.broadcast_float(self.elapsed_s(), self.dist, self.device) / t.max_time_s

    def elapsed_s(self) -> float:
        """Training seconds so far, earlier sessions of a resumed run included."""
        now = 0.0 if self._fit_start is None else time.perf_counter() - self._fit_start
        return self._elapsed_before + now

    def train_for(self, seconds: float) -> int:
        """Run ``train_step`` for about ``seconds`` (at least one step), counting the time
        toward ``train.max_time_s`` as ``fit`` does; returns the steps taken. For drivers
        that interleave several trainers (``hrm-rl bench recipe``); no eval or checkpoint."""
        start = time.perf_counter()
        self._fit_start = start
        steps = 0
        try:
            while steps == 0 or (time.perf_counter() - start < seconds
                                 and self.step < self.config.train.steps
                                 and self.time_fraction() < 1.0):
                self.train_step()
                steps += 1
        finally:
            self._elapsed_before += time.perf_counter() - start
            self._fit_start = None
        return steps

    # --- resuming: the training state and the run folder it continues

    def state_dict(self) -> dict[str, Any]:
        """Everything beyond the weights that training needs to continue identically.

        Holds: the optimizer state, the step, elapsed training seconds (for the time-based
        lr schedule), the torch CPU (and CUDA) RNG states, the numpy generator shared by
        the trainer and its ``ShuffledSource`` (shuffling, augmentation), the source's epoch
        order and position, the segment engine's rows (puzzles, carries, segment counters),
        the rows that halted and their drawn minimum segments, the open logging window, the
        best evaluation so far, and a fingerprint of the training puzzles. Not held: the
        puzzle sets themselves (rebuilt from the config and checked against the fingerprint)
        and the MPS RNG.
        """
        return {
            "format": _STATE_FORMAT,
            "step": self.step,
            "elapsed_s": self.elapsed_s(),
            "optimizer": self.optimizer.state_dict(),
            "torch_rng": torch.get_rng_state(),
            "cuda_rng": torch.cuda.get_rng_state_all() if self.device.type == "cuda" else [],
            "numpy_rng": self.rng.bit_generator.state,
            "source": self.source.state_dict(),
            "engine": self.engine.state_dict(),
            "halted": None if self.engine.pending is None else self.engine.pending.cpu(),
            "min_segments": self.engine.min_segments.cpu(),
            "window": {"sums": dict(self._window), "steps": self._window_steps},
            "train_fingerprint": _fingerprint(self.train_set),
            "ema": None if self.ema is None else self.ema.state_dict(),
            "raw_weights": None if self.ema is None else
            {n: p.detach().cpu().clone() for n, p in self.model.named_parameters()},
            "best": None if self.best is None else dict(self.best),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore ``state_dict()`` into a trainer built from the same config (weights are
        loaded separately).

        Training continues from the raw (trained) weights whether or not this trainer keeps
        an EMA: a checkpoint saved with EMA holds the averaged weights in ``model.safetensors``
        and the raw ones in its state. With EMA in this trainer, the saved average continues
        (with this config's ``ema_decay``), or starts from the trained weights when the run
        had none.

        Raises:
            ValueError: the state is from another format, batch size or training set.
        """
        if state.get("format") != _STATE_FORMAT:
            raise ValueError(f"trainer state format {state.get('format')!r} is not "
                             f"{_STATE_FORMAT}; this checkpoint cannot be resumed here")
        if state["train_fingerprint"] != _fingerprint(self.train_set):
            raise ValueError("the training puzzles differ from the ones this run was trained on "
                             "(data.train_path edited, or data.cache_dir regenerated "
                             "differently); restore them to resume")
        self.step = int(state["step"])
        self._elapsed_before = float(state["elapsed_s"])
        kernels = [{k: g[k] for k in ("fused", "foreach") if k in g}
                   for g in self.optimizer.param_groups]
        self.optimizer.load_state_dict(state["optimizer"])
        for group, kernel in zip(self.optimizer.param_groups, kernels):
            group.update(kernel)  # this config's train.fused_optimizer, not the saved one's
        torch.set_rng_state(state["torch_rng"])
        if state["cuda_rng"] and self.device.type == "cuda":
            torch.cuda.set_rng_state_all(state["cuda_rng"])
        self.rng.bit_generator.state = state["numpy_rng"]
        self.source.load_state_dict(state["source"])
        self.engine.load_state_dict(state["engine"])
        halted = state["halted"]
        self.engine.pending = None if halted is None else halted.to(self.device)
        self.engine.min_segments = state["min_segments"].to(self.device)
        self._window = dict(state["window"]["sums"])
        self._window_steps = int(state["window"]["steps"])
        self.best = None if state.get("best") is None else dict(state["best"])
        if self.best is not None and "exact_qhalt" in self.best:  # saved under its former name
            self.best["exact_acc_qhalt"] = self.best.pop("exact_qhalt")
        if state.get("raw_weights") is not None:
            # model.safetensors held the EMA weights; the raw ones continue training (also
            # when EMA is turned off on resume: train.ema_decay=null)
            with torch.no_grad():
                for name, param in self.model.named_parameters():
                    param.copy_(state["raw_weights"][name])
        if self.ema is not None:
            if state.get("ema") is not None:
                self.ema.load_state_dict(state["ema"])
                self.ema.decay = float(self.config.train.ema_decay)  # an edited decay counts
            else:  # EMA turned on on resume: average from the trained weights, not the init
                self.ema = EMA(self.model, self.config.train.ema_decay)

    @classmethod
    def resume(cls, run_dir: str | Path, overrides: list[str] | None = None,
               progress: bool = True, checkpoint: str | None = None) -> ACTTrainer:
        """A trainer that continues ``run_dir`` from its ``latest`` checkpoint (or from
        ``checkpoint``: ``best`` or a folder name such as ``step_0000500``).

        The config is the checkpoint's, with the ``train`` settings edited in the run's
        ``config.yaml`` since (listed in ``notes``) and then ``overrides``
        (``train.key=value``), e.g. a lower lr after a ``NonFiniteError`` (then the
        continuation is no longer identical to an uninterrupted run). Other sections, and
        the train settings the saved state's shape depends on (optimizer, batch_size,
        max_segments), are refused either way. TensorBoard events after the checkpoint's
        step are purged and ``metrics.jsonl`` is cut back to it, so the resumed run's curves
        continue the old ones without duplicates.

        What a killed save left is handled (see ``notes``): torn checkpoint folders and
        temporary files are removed; without a usable ``latest`` the newest complete
        checkpoint is used; without any (killed before or while writing the first one) the
        run starts afresh at step 0 from ``config.yaml``. Resuming from an earlier checkpoint
        than ``latest`` points ``latest`` at it and removes the later ones (``rewind_run``).

        Raises:
            FileNotFoundError: ``run_dir`` is no run folder, or ``checkpoint`` is not one of
                its complete checkpoints.
            ConfigError: an override or ``config.yaml`` edit outside ``train``, or of a
                setting the saved state cannot follow.
            ValueError: a checkpoint that is corrupt or does not fit its config.
            RunLockedError: another live process trains into ``run_dir``.
        """
        run_dir = Path(run_dir)
        root = run_dir / "checkpoints"
        if not root.is_dir() and not (run_dir / CONFIG_FILE).is_file():
            resolve_checkpoint(run_dir)  # "no checkpoint at ..." when there is nothing there
            raise FileNotFoundError(f"{run_dir} is not a run folder (expected "
                                    f"{root / LATEST})")
        for item in overrides or []:
            if not item.strip().startswith("train."):
                raise ConfigError(f"--set {item}: only train.* can change when resuming "
                                  "(model, task and data are fixed by the checkpoint)")
        is_main = distributed.current().is_main
        # before reading the state another resumer may be writing (rank 0 alone writes)
        lock = RunLock(run_dir) if is_main else None
        trainer = None
        try:
            notes = []
            removed = remove_partial_checkpoints(run_dir) if is_main else []
            if removed:
                notes.append(f"removed what a killed save left in {root}: {', '.join(removed)}")
            folder, found = find_resume_checkpoint(run_dir, checkpoint)
            notes += found
            config, meta, edits = _resume_config(run_dir, folder, overrides or [])
            notes += edits
            state = load_trainer_state(folder) if folder is not None else None
            trainer = cls(config, run_dir, progress=progress, lock=lock, init=False,
                          fresh=False)
            if folder is not None:
                load_weights(trainer.model, folder / WEIGHTS)
                trainer.load_state_dict(state)
                latest = read_pointer(root, LATEST)
                if is_main and latest != folder.name:  # --from an earlier one, or a fallback
                    removed, best_dropped = rewind_run(run_dir, folder)
                    if best_dropped:
                        trainer.best = None  # the next evaluation sets a new one
                    if checkpoint not in (None, LATEST):
                        notes.append(
                            f"continuing from {folder.name} instead of {latest}: {LATEST} "
                            f"names it now; removed the later checkpoints "
                            f"{', '.join(removed) or '(none)'}"
                            + (" and the best pointer, which named one" if best_dropped
                               else ""))
            trainer._restart_outputs()
        except BaseException:
            if lock is not None:
                lock.release()
            raise
        trainer.notes = notes
        trainer._resumed_meta = meta
        return trainer

    def _restart_outputs(self) -> None:
        """Cut ``metrics.jsonl`` back to the current step (atomically) and hide TensorBoard
        events after it, so no step appears twice once training goes on from here."""
        if self.run_dir is None:
            return
        if self.writer is not None:
            self.writer.close()
            self.writer = SummaryWriter(str(self.run_dir), purge_step=self.step + 1)
        truncate_metrics(self.run_dir, self.step)

    # --- faults: non-finite values, signals

    def _fault(self, what: str, detail: str, step: int | None = None) -> None:
        """Log a non-finite ``what`` to TensorBoard and stop with ``NonFiniteError``.

        ``step`` defaults to the step in progress (``self.step + 1``).
        """
        step = self.step + 1 if step is None else step
        err = NonFiniteError(step, what, detail)
        if self.writer is not None:
            self.writer.add_scalar("fault/non_finite", 1.0, step)
            self.writer.add_text("fault/message", str(err), step)
            self.writer.flush()
        raise err

    @contextlib.contextmanager
    def _signals_stop_training(self) -> Iterator[None]:
        """Inside, SIGINT/SIGTERM set ``_stop_signal`` (checked between steps); a second
        one raises ``KeyboardInterrupt``. The previous handlers come back on exit."""
        self._stop_signal = None
        if threading.current_thread() is not threading.main_thread():
            yield
            return

        def handler(signum: int, frame: Any) -> None:
            if self._stop_signal is not None:
                raise KeyboardInterrupt
            self._stop_signal = signum

        previous = {}
        # under torchrun SIGTERM is how the launcher ends the workers: keep its meaning there
        for sig in (signal.SIGINT,) + (() if self.dist.enabled else (signal.SIGTERM,)):
            if signal.getsignal(sig) is not signal.SIG_IGN:  # e.g. SIGINT of a nohup job
                previous[sig] = signal.signal(sig, handler)
        try:
            yield
        finally:
            for sig, old in previous.items():
                signal.signal(sig, old)

    def _should_stop(self) -> bool:
        """Whether a signal asked to stop (rank 0's answer on every rank)."""
        if self.dist.enabled:
            signum = int(distributed.broadcast_float(float(self._stop_signal or 0), self.dist,
                                                     self.device))
            self._stop_signal = signum or None
        return self._stop_signal is not None

    def _interrupted(self, at_once: bool = False) -> TrainingInterrupted:
        """Checkpoint the current step (unless ``at_once`` or saved already) and describe it."""
        folder = None
        if self.run_dir is not None and not at_once:
            saved = self._saved
            folder = saved[1] if saved is not None and saved[0] == self.step else self.save()
        return TrainingInterrupted(self.step, self._stop_signal or signal.SIGINT, folder,
                                   self.run_dir)


def _fingerprint(puzzles: PuzzleBatch) -> str:
    """A short hash of a puzzle set's tokens (to check a resumed run sees the same data)."""
    digest = hashlib.sha1()
    for array in (puzzles.inputs, puzzles.labels, puzzles.puzzle_ids):
        digest.update(np.ascontiguousarray(array, dtype=np.int64).tobytes())
    return digest.hexdigest()


def _resume_config(run_dir: Path, folder: Path | None, overrides: list[str]
                   ) -> tuple[RunConfig, dict[str, Any], list[str]]:
    """The config a resume of ``run_dir`` from checkpoint ``folder`` trains with, the
    checkpoint's meta, and notes: the checkpoint's config, then the ``train`` settings edited
    in ``config.yaml`` since (honoured, and listed in a note), then ``overrides``. Without a
    checkpoint (``folder`` None): ``config.yaml`` with ``overrides``, for a fresh start.

    Raises:
        ConfigError: an edit outside ``train``, or of a setting the saved state's shape
            depends on (``optimizer``, ``batch_size``, ``max_segments``), naming the key and
            where it was changed.
        FileNotFoundError: neither a checkpoint nor ``config.yaml``.
    """
    yaml_path = run_dir / CONFIG_FILE
    if folder is None:
        if not yaml_path.is_file():
            raise FileNotFoundError(f"no complete checkpoint in {run_dir / 'checkpoints'} and "
                                    f"no {yaml_path}: nothing to resume; start the run again "
                                    f"with hrm-rl train CONFIG --run-dir {run_dir}")
        note = (f"no complete checkpoint in {run_dir / 'checkpoints'} (the run was killed "
                f"before or while writing its first one): starting it afresh at step 0 with "
                f"{yaml_path}")
        return _saved_yaml(yaml_path, folder, overrides), {}, [note]
    saved, model_config, meta = read_checkpoint_config(folder)
    check_architecture(folder / WEIGHTS, model_config)  # an edited config.json, named as such
    data, notes, edited = saved.to_dict(), [], {}
    if yaml_path.is_file():
        changes = config_changes(saved, _saved_yaml(yaml_path, folder))
        fixed = [c for c in changes if not c[0].startswith("train.")]
        if fixed:
            raise ConfigError(
                f"{yaml_path}: {_describe(fixed)} edited since checkpoint {folder.name}; only "
                "train.* settings can change when resuming (model, task and data are fixed by "
                "the checkpoint): restore them there, or start a new run")
        for key, _, value in changes:
            data["train"][key.split(".", 1)[1]] = value
            edited[key.split(".", 1)[1]] = value
        if changes:
            notes.append(f"{yaml_path} was edited since checkpoint {folder.name}: "
                         f"{_describe(changes)}; resuming with the edited values")
    config = from_dict(RunConfig, apply_overrides(data, overrides))
    config.validate(strict=False)  # the checkpoint's config, as it was saved
    for key in _SHAPE_KEYS:
        before, now = getattr(saved.train, key), getattr(config.train, key)
        if now != before:
            by_set = any(RENAMED_KEYS.get(name, name) == f"train.{key}"
                         for name in (item.split("=", 1)[0].strip() for item in overrides))
            where = (f"--set train.{key}" if by_set or key not in edited
                     else f"{yaml_path}: train.{key}")
            raise ConfigError(f"{where}: cannot change when resuming (the saved optimizer and "
                              f"engine state are for {key}={before!r}); "
                              + ("restore it there or " if not by_set else "") + "start a new run")
    return config, meta, notes


def _saved_yaml(path: Path, folder: Path | None, overrides: list[str] | None = None
                ) -> RunConfig:
    """The run's ``config.yaml`` (``load_config(saved=True)``), with a resume's advice
    when it does not load: with a checkpoint, whose ``config.json`` holds the run's config,
    to fix or delete the file; without one, to start the run again."""
    try:
        config = load_config(path, saved=True)
    except ConfigError as err:
        if folder is not None:
            advice = (f"checkpoint {folder.name} holds the run's config: repair {path} or "
                      f"delete it (it only carries train.* edits) and resume again")
        else:
            advice = ("no checkpoint holds the run's config either (the run was killed before "
                      "its first one): start it again, hrm-rl train CONFIG --run-dir NEW_DIR")
        raise ConfigError(f"{err}; cannot resume from it: {advice}") from None
    return load_config(path, overrides, saved=True) if overrides else config


def _describe(changes: list[tuple[str, Any, Any]]) -> str:
    return ", ".join(f"{key} {old!r} -> {new!r}" for key, old, new in changes)
