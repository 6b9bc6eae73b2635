"""The Hierarchical Reasoning Model: a slow planner H and a fast worker L, one segment per call.

One *segment* runs ``H_cycles`` cycles; each cycle runs ``L_cycles`` L-steps
``z_L = L(z_L, z_H + x)`` and then one H-step ``z_H = H(z_H, z_L)``. With HRM's default
``gradient="one_step"`` every step except the final L-step and H-step runs under
``torch.no_grad`` (the 1-step gradient approximation), so training memory does not grow with
the number of cycles; ``gradient="last_recursion"`` backpropagates through the whole last
cycle (TRM's choice) and ``gradient="bptt"`` through all of them (for comparison); see
``steps_with_gradient``.
The carry ``(z_H, z_L)`` leaves a segment detached, so deep supervision over several segments
never backpropagates across segments.

Heads: the LM head reads ``z_H`` at the puzzle positions; the Q-head reads ``z_H`` at position
0 and gives ``(q_halt, q_continue)`` logits for the halting decision.
"""

from __future__ import annotations

import math
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from hrm_rl.config import ModelConfig
from hrm_rl.model.layers import Linear, ReasoningModule, RotaryEmbedding, trunc_normal_


@dataclass
class Carry:
    """Recurrent state of a batch: ``z_H``, ``z_L`` each ``(batch, positions, hidden)``."""

    z_H: torch.Tensor
    z_L: torch.Tensor


@dataclass
class SegmentOutput:
    """What one segment produces.

    Attributes:
        carry: the new (detached) carry.
        logits: ``(batch, seq_len, vocab)`` token logits.
        q_halt: ``(batch,)`` float32 halting logit.
        q_continue: ``(batch,)`` float32 continue logit.
        h_state: ``(batch, hidden)`` ``z_H`` at the Q-head position (with gradient).
    """

    carry: Carry
    logits: torch.Tensor
    q_halt: torch.Tensor
    q_continue: torch.Tensor
    h_state: torch.Tensor


def steps_with_gradient(gradient: str, H_cycles: int, L_cycles: int) -> int:
    """How many of a segment's last steps carry the gradient.

    A segment is ``H_cycles * (L_cycles + 1)`` steps in order (each cycle: ``L_cycles``
    L-steps, then one H-step). ``one_step``: the last L-step and the H-step (2);
    ``last_recursion``: the whole last cycle (``L_cycles + 1``); ``bptt``: every step.
    ``gradient`` is a resolved mode (``ModelConfig.gradient_mode``), not ``auto``.
    """
    total = H_cycles * (L_cycles + 1)
    tails = {"one_step": 2, "last_recursion": L_cycles + 1, "bptt": total}
    if gradient not in tails:
        raise ValueError(f"unknown gradient mode {gradient!r}: use one of {', '.join(tails)}")
    return min(tails[gradient], total)


def grad_context(enabled: bool) -> AbstractContextManager:
    """``nullcontext()`` for a step that carries the gradient, ``torch.no_grad()`` otherwise.

    (Never ``torch.enable_grad``: a caller's ``no_grad``/``inference_mode`` must still win.)
    """
    return nullcontext() if enabled else torch.no_grad()


class HRM(nn.Module):
    """The HRM recurrent core. Build it with a fully resolved ``ModelConfig``."""

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        if config.vocab_size < 1 or config.seq_len < 1:
            raise ValueError("ModelConfig.vocab_size and seq_len must be set (from the task)")
        config.validate()
        if config.kind != "hrm":
            raise ValueError(f"HRM needs model.kind='hrm', got {config.kind!r}; "
                             "use hrm_rl.model.build_model to pick the core from the config")
        self.config = config
        hidden = config.hidden_size
        self.embed_scale = math.sqrt(hidden)
        self.prefix_len = -(-config.puzzle_emb_ndim // hidden)  # ceil division
        positions = config.seq_len + self.prefix_len

        self.embed_tokens = nn.Parameter(
            trunc_normal_(torch.empty(config.vocab_size, hidden), std=1 / self.embed_scale)
        )
        self.lm_head = Linear(hidden, config.vocab_size)
        self.q_head = Linear(hidden, 2, bias=True)
        with torch.no_grad():  # halting starts near "never halt" so the LM learns first
            self.q_head.weight.zero_()
            self.q_head.bias.fill_(-5.0)
        if config.puzzle_emb_ndim > 0:
            self.puzzle_emb = nn.Parameter(
                torch.zeros(max(config.num_puzzle_ids, 1), config.puzzle_emb_ndim)
            )
        if config.pos_encodings == "rope":
            self.rope = RotaryEmbedding(hidden // config.num_heads, positions, config.rope_theta)
        elif config.pos_encodings == "learned":
            self.embed_pos = nn.Parameter(
                trunc_normal_(torch.empty(positions, hidden), std=1 / self.embed_scale)
            )

        def module(layers: int) -> ReasoningModule:
            return ReasoningModule(layers, hidden, config.num_heads, config.expansion,
                                   config.rms_norm_eps)

        self.H_level = module(config.H_layers)
        self.L_level = module(config.L_layers)
        # Fixed (not learned) initial states, saved with the weights.
        self.register_buffer("H_init", trunc_normal_(torch.empty(hidden), std=1.0))
        self.register_buffer("L_init", trunc_normal_(torch.empty(hidden), std=1.0))

    @property
    def positions(self) -> int:
        """Sequence positions the recurrent state covers (puzzle-id prefix + puzzle)."""
        return self.config.seq_len + self.prefix_len

    def num_parameters(self) -> int:
        """Count of trainable parameters."""
        return sum(p.numel() for p in self.parameters() if p.requires_grad)

    def initial_carry(self, batch_size: int, device: torch.device | str | None = None) -> Carry:
        """A carry with every row at the initial states."""
        device = device if device is not None else self.H_init.device
        shape = (batch_size, self.positions, self.config.hidden_size)
        return Carry(self.H_init.to(device).expand(shape).clone(),
                     self.L_init.to(device).expand(shape).clone())

    def reset_carry(self, carry: Carry, rows: torch.Tensor) -> Carry:
        """Rows where ``rows`` (``(batch,)`` bool) is set go back to the initial states."""
        mask = rows.view(-1, 1, 1)
        return Carry(torch.where(mask, self.H_init.to(carry.z_H.dtype), carry.z_H),
                     torch.where(mask, self.L_init.to(carry.z_L.dtype), carry.z_L))

    def input_embeddings(self, inputs: torch.Tensor, puzzle_ids: torch.Tensor) -> torch.Tensor:
        """``(batch, seq_len)`` tokens -> ``(batch, positions, hidden)`` scaled embeddings."""
        emb = F.embedding(inputs, self.embed_tokens)
        if self.prefix_len:
            hidden = self.config.hidden_size
            prefix = self.puzzle_emb[puzzle_ids]
            prefix = F.pad(prefix, (0, self.prefix_len * hidden - prefix.shape[-1]))
            emb = torch.cat((prefix.view(-1, self.prefix_len, hidden).to(emb.dtype), emb), dim=1)
        if self.config.pos_encodings == "learned":
            emb = 0.707106781 * (emb + self.embed_pos)  # keeps the forward variance
        return self.embed_scale * emb

    def forward(self, carry: Carry, inputs: torch.Tensor, puzzle_ids: torch.Tensor) -> SegmentOutput:
        """Run one segment.

        Args:
            carry: state from the previous segment (or ``initial_carry``/``reset_carry``).
            inputs: ``(batch, seq_len)`` int64 tokens.
            puzzle_ids: ``(batch,)`` int64 puzzle identifiers.
        """
        cfg = self.config
        rope = (self.rope.cos, self.rope.sin) if cfg.pos_encodings == "rope" else None
        x = self.input_embeddings(inputs, puzzle_ids)
        z_H, z_L = carry.z_H, carry.z_L
        # Steps numbered from 0; those from ``first_grad`` on carry the gradient.
        first_grad = (cfg.H_cycles * (cfg.L_cycles + 1)
                      - steps_with_gradient(cfg.gradient_mode, cfg.H_cycles, cfg.L_cycles))
        step = 0
        for _ in range(cfg.H_cycles):
            for _ in range(cfg.L_cycles):
                with grad_context(step >= first_grad):
                    z_L = self.L_level(z_L, z_H + x, rope)
                step += 1
            with grad_context(step >= first_grad):
                z_H = self.H_level(z_H, z_L, rope)
            step += 1

        logits = self.lm_head(z_H[:, self.prefix_len:])
        # A copy, not a view of z_H: torch.compile's backward (torch 2.13) fails on a view
        # output whose base gets no gradient ("expected Tensor() for op: input").
        h_state = z_H[:, 0].clone()
        q = self.q_head(h_state).float()
        return SegmentOutput(Carry(z_H.detach(), z_L.detach()), logits, q[:, 0], q[:, 1], h_state)
