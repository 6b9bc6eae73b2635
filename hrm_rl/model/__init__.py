"""Recurrent reasoning cores: HRM and TRM, with one interface (see ``build_model``)."""

from __future__ import annotations

from typing import Union

from hrm_rl.config import ModelConfig
from hrm_rl.model.hrm import HRM, Carry, SegmentOutput
from hrm_rl.model.trm import TRM

RecurrentCore = Union[HRM, TRM]
"""Either core: same constructor, ``initial_carry``, ``reset_carry``, ``forward`` and
``num_parameters``, and an ``H_init`` buffer that tells the model's device."""

CORES: dict[str, type[HRM] | type[TRM]] = {"hrm": HRM, "trm": TRM}


def build_model(config: ModelConfig) -> RecurrentCore:
    """The core ``config.kind`` names (``hrm`` or ``trm``), built from a resolved config.

    Raises:
        ValueError: an unknown ``kind``, or a config without ``vocab_size``/``seq_len``
            (call ``config.fit_to(task)`` first).
    """
    if config.kind not in CORES:
        raise ValueError(f"model.kind must be one of {', '.join(CORES)}, got {config.kind!r}")
    return CORES[config.kind](config)


__all__ = ["HRM", "TRM", "Carry", "SegmentOutput", "RecurrentCore", "CORES", "build_model"]
