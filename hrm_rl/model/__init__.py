"""Recurrent reasoning cores."""

from hrm_rl.model.hrm import HRM, Carry, SegmentOutput

__all__ = ["HRM", "Carry", "SegmentOutput"]
