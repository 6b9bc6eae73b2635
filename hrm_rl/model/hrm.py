"""The Hierarchical Reasoning Model: a slow planner H and a fast worker L, one segment per call.

One *segment* runs ``H_cycles`` cycles; each cycle runs ``L_cycles`` L-steps
``z_L = L(z_L, z_H + x)`` and then one H-step ``z_H = H(z_H, z_L)``. With HRM's default
``gradient="one_step"`` every step except the final L-step and H-step runs under
``torch.no_grad`` (the 1-step gradient approximation), so training memory does not grow with
the number of cycles; ``gradient="last_recursion"`` backpropagates through the whole last
cycle (TRM's choice) and ``gradient="bptt"`` through all of them (for comparison); see
``hrm_rl.model.base.steps_with_gradient``.
The carry ``(z_H, z_L)`` leaves a segment detached, so deep supervision over several segments
never backpropagates across segments.

Heads: the LM head reads ``z_H`` at the puzzle positions; the Q-head reads ``z_H`` at position
0 and gives ``(q_halt, q_continue)`` logits for the halting decision.
"""

from __future__ import annotations

import torch
from torch import nn

from hrm_rl.model.base import Carry, RecurrentBase, SegmentOutput
from hrm_rl.model.layers import ReasoningModule


class HRM(RecurrentBase):
    """The HRM recurrent core. Build it with a fully resolved ``ModelConfig``."""

    kind = "hrm"

    def _build_networks(self) -> None:
        """``H_level`` and ``L_level``: ``H_layers`` and ``L_layers`` post-norm blocks."""
        config = self.config

        def module(layers: int) -> ReasoningModule:
            return ReasoningModule(layers, config.hidden_size, config.num_heads,
                                   config.expansion, config.rms_norm_eps)

        self.H_level = module(config.H_layers)
        self.L_level = module(config.L_layers)

    def stacks(self) -> dict[str, nn.ModuleList]:
        """H's and L's blocks (``hrm_rl.checkpoint.DEPTH``)."""
        return {"H_layers": self.H_level.layers, "L_layers": self.L_level.layers}

    def forward(self, carry: Carry, inputs: torch.Tensor, puzzle_ids: torch.Tensor) -> SegmentOutput:
        """Run one segment.

        Args:
            carry: state from the previous segment (or ``initial_carry``/``reset_carry``).
            inputs: ``(batch, seq_len)`` int64 tokens.
            puzzle_ids: ``(batch,)`` int64 puzzle identifiers.
        """
        z_H, z_L = self._run_cycles(carry, inputs, puzzle_ids, self.L_level, self.H_level)
        logits = self.lm_head(z_H[:, self.prefix_len:])
        # A copy, not a view of z_H: torch.compile's backward (torch 2.13) fails on a view
        # output whose base gets no gradient ("expected Tensor() for op: input").
        h_state = z_H[:, 0].clone()
        q = self.q_head(h_state).float()
        return SegmentOutput(Carry(z_H.detach(), z_L.detach()), logits, q[:, 0], q[:, 1], h_state)
