"""Data-parallel training over processes: ``torchrun`` + ``DistributedDataParallel``.

    torchrun --nproc-per-node=4 -m hrm_rl.cli train configs/sudoku9-extreme.yaml

Every process (rank) holds a full copy of the model; DDP averages the gradients, so the
weights stay identical. Backend ``nccl`` on CUDA (rank ``r`` uses GPU ``LOCAL_RANK``), ``gloo``
on the CPU.

Batch and data. ``train.batch_size`` is the *global* batch: each of ``N`` ranks runs
``batch_size / N`` rows (it must divide). The puzzles are sharded so that the ranks together
see exactly what one process with the whole batch would see: every rank holds a replica of
the same seeded ``ShuffledSource``; before each step the ranks exchange how many of their
rows halted (one small all-gather), every rank draws the *global* refill from its replica
(rows of rank 0 first, then rank 1, ...) and keeps its own slice (``ShardedSource``). The
exploration draws (minimum segments per episode) are sliced from a global draw the same way.
A single-process run and an N-rank run with the same config therefore train on the same
rows with the same gradient (the loss is a per-row mean, and DDP averages equal shards), up to
floating-point summation order.

Outputs. Rank 0 alone writes TensorBoard events, metrics, checkpoints and evaluates; the
logged training scalars are means over all ranks. The time budget (``train.max_time_s``) is
rank 0's clock, broadcast, so every rank takes the same learning rate and stops at the same
step.

Not covered: resuming a multi-rank run restores rank 0's rows on every rank (the run goes on,
but not identically).
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel

from hrm_rl.data import PuzzleSource
from hrm_rl.model.compiling import compile_forward
from hrm_rl.tasks.base import PuzzleBatch


@dataclass(frozen=True)
class DistInfo:
    """This process's place in the job (``world_size == 1``: not distributed)."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        """Rank 0: the one that writes outputs and evaluates."""
        return self.rank == 0


def launched_by_torchrun() -> bool:
    """Whether the ``torchrun`` environment (``RANK``, ``WORLD_SIZE``) is set."""
    return "RANK" in os.environ and "WORLD_SIZE" in os.environ


def init_distributed(device: str = "auto") -> DistInfo:
    """Join the process group when launched by ``torchrun`` (no-op otherwise).

    Args:
        device: ``train.device``; ``nccl`` is used when it resolves to CUDA, else ``gloo``.
    """
    if dist.is_available() and dist.is_initialized():
        return current()
    if not launched_by_torchrun() or int(os.environ["WORLD_SIZE"]) == 1:
        return DistInfo()
    if not dist.is_available():
        raise RuntimeError("torch.distributed is not available in this PyTorch build")
    local_rank = int(os.environ.get("LOCAL_RANK", 0))
    use_cuda = device.startswith("cuda") or (device == "auto" and torch.cuda.is_available())
    if use_cuda:
        if local_rank >= torch.cuda.device_count():
            raise RuntimeError(f"LOCAL_RANK {local_rank} but only {torch.cuda.device_count()} "
                               "CUDA devices: use --nproc-per-node <= the GPU count")
        torch.cuda.set_device(local_rank)
    dist.init_process_group("nccl" if use_cuda else "gloo")
    return current()


def current() -> DistInfo:
    """The process group this process is in (``DistInfo()`` when none)."""
    if not (dist.is_available() and dist.is_initialized()):
        return DistInfo()
    return DistInfo(dist.get_rank(), dist.get_world_size(),
                    int(os.environ.get("LOCAL_RANK", dist.get_rank())))


def cleanup(wait: bool = True) -> None:
    """Leave the process group (no-op when not in one).

    Args:
        wait: first wait at a barrier for every rank (a clean finish); pass False after an
            error, when the other ranks may never arrive (torchrun then stops them).
    """
    if dist.is_available() and dist.is_initialized():
        if wait:
            dist.barrier()
        dist.destroy_process_group()


@contextlib.contextmanager
def main_first(info: DistInfo) -> Iterator[None]:
    """Run the block on rank 0 first, then on the other ranks (e.g. generating a data cache
    that the others then read). Must not contain collectives."""
    if info.enabled and not info.is_main:
        dist.barrier()
    yield
    if info.enabled and info.is_main:
        dist.barrier()


def local_device(device: torch.device, info: DistInfo) -> torch.device:
    """On CUDA, rank ``r``'s own GPU (``cuda:LOCAL_RANK``); otherwise ``device``."""
    if info.enabled and device.type == "cuda":
        return torch.device("cuda", info.local_rank)
    return device


def local_batch_size(batch_size: int, info: DistInfo) -> int:
    """Rows on this rank: the global ``batch_size`` split evenly over the ranks."""
    if batch_size % info.world_size:
        raise ValueError(f"train.batch_size={batch_size} must be divisible by the number of "
                         f"processes ({info.world_size}): it is the global batch")
    return batch_size // info.world_size


class _DDP(DistributedDataParallel):
    """DDP that also exposes the wrapped model's attributes (``config``, ``initial_carry``...),
    so the segment engine can drive it like the bare model."""

    def __getattr__(self, name: str):
        try:
            return super().__getattr__(name)
        except AttributeError:
            return getattr(self.module, name)


def wrap_model(model: torch.nn.Module, info: DistInfo,
               compile_: bool | str) -> torch.nn.Module:
    """What the trainer calls for a forward: DDP (when distributed) then ``torch.compile``
    as ``train.compile`` says (``hrm_rl.model.compiling``).

    Buffers are not broadcast on every forward: they are constant (initial states, RoPE
    tables) and identical on every rank.
    """
    forward = model
    if info.enabled:
        device = next(model.parameters()).device
        forward = _DDP(model, device_ids=[device.index] if device.type == "cuda" else None,
                       broadcast_buffers=False)
    return compile_forward(forward, model, compile_)


def _gather_ints(value: int, info: DistInfo, device: torch.device) -> list[int]:
    mine = torch.tensor([value], dtype=torch.long, device=device)
    everyone = [torch.empty_like(mine) for _ in range(info.world_size)]
    dist.all_gather(everyone, mine)
    return [int(t.item()) for t in everyone]


class ShardedSource:
    """Rank ``r``'s slice of every global refill drawn from a replicated source.

    The segment engine calls ``draw(k)`` on every step, with ``k = 0`` when none of this
    rank's rows needs a puzzle; ``draw`` is a collective: the ranks exchange their ``k``,
    every rank draws the global refill from its replica (the same puzzles everywhere) and
    keeps its own slice, so a multi-rank run draws what one process would.

    Args:
        source: this rank's replica of the global source (same seed on every rank).
        rows: this rank's batch rows.
        info: the process group.
        device: where the counts are exchanged (the rank's device: NCCL needs CUDA).
    """

    def __init__(self, source: PuzzleSource, rows: int, info: DistInfo,
                 device: torch.device | str = "cpu") -> None:
        self.source = source
        self.rows = rows
        self.info = info
        self.device = torch.device(device)

    def draw(self, n: int) -> PuzzleBatch:
        """This rank's ``n`` puzzles of the global refill (a collective on every rank)."""
        counts = _gather_ints(n, self.info, self.device)
        total, start = sum(counts), sum(counts[:self.info.rank])
        return self.source.draw(total).take(slice(start, start + n))


def shard_slice(values: torch.Tensor, info: DistInfo) -> torch.Tensor:
    """This rank's equal share of a tensor drawn for the whole global batch (dim 0)."""
    n = values.shape[0] // info.world_size
    return values[info.rank * n:(info.rank + 1) * n]


def mean_over_ranks(values: dict[str, float], info: DistInfo,
                    device: torch.device) -> dict[str, float]:
    """Each value averaged over the ranks (identity when not distributed)."""
    if not info.enabled or not values:
        return values
    keys = sorted(values)
    t = torch.tensor([float(values[k]) for k in keys], dtype=torch.float64, device=device)
    dist.all_reduce(t)
    return {k: v / info.world_size for k, v in zip(keys, t.tolist())}


def broadcast_float(value: float, info: DistInfo, device: torch.device) -> float:
    """Rank 0's ``value`` on every rank (identity when not distributed)."""
    if not info.enabled:
        return value
    t = torch.tensor([value], dtype=torch.float64, device=device)
    dist.broadcast(t, src=0)
    return float(t.item())
