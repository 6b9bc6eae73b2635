"""Speed options whose sign flips across CPUs, chosen from what this CPU is.

Two options with an ``auto`` value (the defaults of ``train.matmul`` and
``train.precision``); a run resolves them at start and saves the concrete values in its
config (and the TensorBoard text ``speed/*``), so a resumed run keeps them.

``train.matmul`` (fp32 linears). PyTorch's CPU wheels send an fp32 linear to MKL, which
runs its AVX-512 (and AMX) code only on Intel CPUs and its AVX2 code on AMD ones. oneDNN
picks its kernels by instruction set on either. Measured (interleaved rounds, fp32 training
step, ``hrm-rl bench train``):

- AMD EPYC with AVX-512: oneDNN linears 1.1-1.5x the BLAS (MKL runs AVX2 code there);
- Intel Xeon with AVX-512 and AMX: oneDNN 0.86x (MKL runs its own AVX-512 code);
- a CPU without AVX-512: both run AVX2 code; oneDNN 0.76x on an AMD EPYC Zen 3.

So ``auto`` takes oneDNN exactly where MKL leaves AVX-512 unused, an AMD CPU with AVX-512,
for products of at least ``ONEDNN_MIN_ROWS`` rows (a training step's batch x sequence; the
tiny config's 512 rows do not repay oneDNN's per-call weight re-layout), and the plain
product (``aten``) everywhere else.

``train.precision`` (bf16 autocast, fp32 master weights). bf16 pays only where the CPU
multiplies bf16 in hardware: AMX tiles (``amx_bf16``; a ``torch.mm`` peak 7.3x fp32 on issue
32's Intel Xeon) or AVX-512 bf16 dot products (``avx512_bf16``; 2.2x on an AMD EPYC Zen 4).
Elsewhere bf16 runs as converted fp32 (0.10x). ``auto`` is ``bf16`` on a CPU with either
instruction set and ``fp32`` on other CPUs and on other devices (not measured here: set
``bf16`` for GPUs, as the paper configs do). On the Zen 4, with the model's bf16 attention
path (``hrm_rl.model.layers``: two matmuls, the scores and softmax in fp32), the default step
ran 2.16x plain fp32 on the maze9 shape and 1.41x on the tiny config, and the sudoku6 recipe
trained for the same 45 minutes solved 91.8% of its validation puzzles in bf16 against
21.6% in fp32 (docs/performance.md).

Both rules read ``/proc/cpuinfo`` (vendor and flags) only, so they are deterministic per
machine. Models outside a training run (``eval``, the envs) use the matmul rule too
(``hrm_rl.model.layers.Linear``) and run fp32. A leaf module: it imports nothing of the
project at import time. ``hrm-rl bench train --variants
plain,onednn_matmul,bf16,defaults,defaults_fp32`` measures them here and prints the choices
beside them.
"""

from __future__ import annotations

import platform
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

import torch


@dataclass(frozen=True)
class CPUInfo:
    """What the rule reads: ``vendor`` (``/proc/cpuinfo``'s ``vendor_id``, e.g.
    ``AuthenticAMD``, ``GenuineIntel``), ``model`` (its model name) and ``flags``."""

    vendor: str
    model: str
    flags: frozenset[str] = field(default_factory=frozenset)

    def describe(self) -> str:
        isa = [f for f in ("avx2", "avx512f", "avx512_bf16", "amx_bf16") if f in self.flags]
        return f"{self.model} ({self.vendor}; {', '.join(isa) or 'no AVX2'})"


@lru_cache(maxsize=1)
def cpu_info() -> CPUInfo:
    """This machine's CPU, from ``/proc/cpuinfo`` (``platform`` where there is none)."""
    fields: dict[str, str] = {}
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            key, _, value = line.partition(":")
            key = key.strip()
            if key in ("vendor_id", "model name", "flags") and key not in fields:
                fields[key] = value.strip()
    except OSError:
        pass
    return CPUInfo(fields.get("vendor_id", "unknown"),
                   fields.get("model name") or platform.processor() or platform.machine(),
                   frozenset(fields.get("flags", "").split()))


ONEDNN_MIN_ROWS = 2048
"""Rows per product (batch x sequence) from which oneDNN's linears repay their per-call
weight re-layout on an AMD CPU with AVX-512: measured on an EPYC Zen 4, 512 rows (the tiny
config) 0.95-1.07x MKL, 4608 (sudoku6) 1.15-1.17x, 10368 (maze9) 1.03-1.11x, 12800 (ARC
re-arc) 1.17x."""


def matmul_rule(cpu: CPUInfo, rows: int | None = None) -> tuple[str, str]:
    """``(backend, reason)`` for ``train.matmul: auto`` on a CPU (see the module docstring),
    for products of ``rows`` rows (None: unknown, taken as large). Deterministic: it reads
    nothing but its arguments."""
    if cpu.vendor == "AuthenticAMD" and "avx512f" in cpu.flags:
        if rows is not None and rows < ONEDNN_MIN_ROWS:
            return "aten", (f"AMD with AVX-512, but products of {rows} rows are too small to "
                            f"repay oneDNN's weight re-layout (from {ONEDNN_MIN_ROWS})")
        return "onednn", "AMD with AVX-512: MKL runs AVX2 code here, oneDNN AVX-512"
    if "avx512f" in cpu.flags:
        return "aten", "AVX-512 on an Intel CPU: MKL's own AVX-512 code is the faster"
    return "aten", "no AVX-512: oneDNN and MKL both run AVX2 code"


def precision_rule(cpu: CPUInfo) -> tuple[str, str]:
    """``(precision, reason)`` for ``train.precision: auto`` on a CPU (see the module
    docstring). Deterministic: it reads nothing but ``cpu``."""
    if "amx_bf16" in cpu.flags:
        return "bf16", "AMX bf16 tiles: bf16 products several times the fp32 rate"
    if "avx512_bf16" in cpu.flags:
        return "bf16", "AVX512-bf16 dot products: bf16 products about 2x the fp32 rate"
    return "fp32", "no bf16 matrix instructions: bf16 would run as converted fp32"


@dataclass(frozen=True)
class Choice:
    """The value a run uses for an ``auto`` speed option (``backend``) and why."""

    backend: str
    reason: str

    def describe(self) -> str:
        return f"{self.backend} ({self.reason})"


def choose_matmul(setting: str, device: torch.device, cpu: CPUInfo | None = None,
                  rows: int | None = None) -> Choice:
    """``setting`` itself unless it is ``"auto"``; then ``aten`` off the CPU or without
    oneDNN's linear, else ``matmul_rule`` on this machine's CPU (or ``cpu``) for products of
    ``rows`` rows (a training step's batch x sequence length)."""
    from hrm_rl.model import onednn  # the model's layers import this module

    if setting != "auto":
        return Choice(setting, "set in the config")
    if device.type != "cpu":
        return Choice("aten", f"oneDNN's linear is for CPUs; this run is on {device}")
    if not onednn.AVAILABLE:
        return Choice("aten", "this PyTorch build has no oneDNN linear")
    cpu = cpu or cpu_info()
    backend, reason = matmul_rule(cpu, rows)
    return Choice(backend, f"{reason}; {cpu.describe()}")


def choose_precision(setting: str, device: torch.device, cpu: CPUInfo | None = None) -> Choice:
    """``setting`` itself unless it is ``"auto"``; then ``fp32`` off the CPU, else
    ``precision_rule`` on this machine's CPU (or ``cpu``)."""
    if setting != "auto":
        return Choice(setting, "set in the config")
    if device.type != "cpu":
        return Choice("fp32", f"auto picks bf16 on CPUs with bf16 units only; this run is on "
                              f"{device} (set train.precision: bf16 there)")
    cpu = cpu or cpu_info()
    precision, reason = precision_rule(cpu)
    return Choice(precision, f"{reason}; {cpu.describe()}")
