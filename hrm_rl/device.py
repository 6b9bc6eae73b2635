"""Device and precision selection."""

from __future__ import annotations

import contextlib

import torch


def resolve_device(name: str = "auto") -> torch.device:
    """``"auto"`` picks cuda, then mps, then cpu; any other name is checked and returned."""
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    try:
        device = torch.device(name)
    except RuntimeError as err:
        raise ValueError(f"unknown device {name!r}: use auto, cpu, cuda, cuda:N or mps") from err
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device {name!r} requested but CUDA is not available; use 'auto' or 'cpu'")
    if device.type == "mps" and not torch.backends.mps.is_available():
        raise ValueError(f"device {name!r} requested but MPS is not available; use 'auto' or 'cpu'")
    return device


def bf16_matmul_units() -> dict[str, bool]:
    """The CPU's bf16 matrix instructions, as PyTorch detects them: ``amx_bf16`` (AMX tiles,
    several times the fp32 rate) and ``avx512_bf16`` (bf16 dot products in AVX-512 registers;
    on this project's EPYC machine oneDNN's bf16 matmul runs about 2x its fp32 one); both
    False on other CPUs (bf16 then runs as converted fp32 and gains nothing)."""
    def probe(name: str) -> bool:
        check = getattr(torch.cpu, name, None)
        try:
            return bool(check()) if check is not None else False
        except RuntimeError:
            return False

    return {"amx_bf16": probe("_is_amx_tile_supported"),
            "avx512_bf16": probe("_is_avx512_bf16_supported")}


def autocast(device: torch.device, precision: str) -> contextlib.AbstractContextManager:
    """bf16 autocast on ``device`` for ``precision="bf16"``, a no-op for ``"fp32"``."""
    if precision == "fp32":
        return contextlib.nullcontext()
    if precision == "bf16":
        return torch.autocast(device_type=device.type, dtype=torch.bfloat16)
    raise ValueError(f"precision must be 'fp32' or 'bf16', got {precision!r}")
