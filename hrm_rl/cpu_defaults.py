"""Speed options whose sign flips across CPUs, chosen from what this CPU is.

``train.matmul`` is the one such option today. PyTorch's CPU wheels send an fp32 linear to
MKL, which runs its AVX-512 (and AMX) code only on Intel CPUs and its AVX2 code on AMD ones.
oneDNN picks its kernels by instruction set on either. Measured (interleaved rounds, fp32
training step, ``hrm-rl bench train``):

- AMD EPYC with AVX-512: oneDNN linears 1.5x the BLAS (MKL runs AVX2 code there);
- Intel Xeon with AVX-512 and AMX: oneDNN 0.86x (MKL runs its own AVX-512 code);
- a CPU without AVX-512: both run AVX2 code; nothing to gain.

So ``train.matmul: auto`` (the default) takes oneDNN exactly where MKL leaves AVX-512 unused,
an AMD CPU with AVX-512, and the plain product (``aten``) everywhere else. The rule reads
``/proc/cpuinfo`` (vendor and flags), so it is deterministic per machine, and the run's
saved config holds the chosen value, not ``auto``. Models outside a training run (``eval``,
the envs) use ``auto`` too (``hrm_rl.model.layers.Linear``). A leaf module: it imports
nothing of the project at import time. ``hrm-rl bench train --variants
plain,onednn_matmul`` measures both here and prints the choice beside them.
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


def matmul_rule(cpu: CPUInfo) -> tuple[str, str]:
    """``(backend, reason)`` for ``train.matmul: auto`` on a CPU (see the module docstring).
    Deterministic: it reads nothing but ``cpu``."""
    if cpu.vendor == "AuthenticAMD" and "avx512f" in cpu.flags:
        return "onednn", "AMD with AVX-512: MKL runs AVX2 code here, oneDNN AVX-512"
    if "avx512f" in cpu.flags:
        return "aten", "AVX-512 on an Intel CPU: MKL's own AVX-512 code is the faster"
    return "aten", "no AVX-512: oneDNN and MKL both run AVX2 code"


@dataclass(frozen=True)
class MatmulChoice:
    """The ``train.matmul`` a run uses and why."""

    backend: str
    reason: str

    def describe(self) -> str:
        return f"{self.backend} ({self.reason})"


def choose_matmul(setting: str, device: torch.device, cpu: CPUInfo | None = None
                  ) -> MatmulChoice:
    """``setting`` itself unless it is ``"auto"``; then ``aten`` off the CPU or without
    oneDNN's linear, else ``matmul_rule`` on this machine's CPU (or ``cpu``)."""
    from hrm_rl.model import onednn  # the model's layers import this module

    if setting != "auto":
        return MatmulChoice(setting, "set in the config")
    if device.type != "cpu":
        return MatmulChoice("aten", f"oneDNN's linear is for CPUs; this run is on {device}")
    if not onednn.AVAILABLE:
        return MatmulChoice("aten", "this PyTorch build has no oneDNN linear")
    cpu = cpu or cpu_info()
    backend, reason = matmul_rule(cpu)
    return MatmulChoice(backend, f"{reason}; {cpu.describe()}")
