"""What the recurrent cores share: the carry, a segment's output, the gradient modes and
``RecurrentBase``, the embeddings, heads, initial states and cycle loop of HRM and TRM.

A core keeps a carry ``(z_H, z_L)`` across segments. One segment runs ``H_cycles`` cycles;
each cycle runs ``L_cycles`` L-steps ``z_L = L(z_L, z_H + x)`` and then one H-step
``z_H = H(z_H, z_L)``. HRM has two networks for ``L`` and ``H``, TRM one network for both.
"""

from __future__ import annotations

import math
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from hrm_rl.config import ModelConfig
from hrm_rl.model.layers import Linear, RotaryEmbedding, trunc_normal_


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

    def take(self, rows: slice | torch.Tensor) -> SegmentOutput:
        """The same outputs for the batch rows ``rows`` only (a slice or an index tensor)."""
        return SegmentOutput(Carry(self.carry.z_H[rows], self.carry.z_L[rows]),
                             self.logits[rows], self.q_halt[rows], self.q_continue[rows],
                             self.h_state[rows])


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


class RecurrentBase(nn.Module):
    """The parts of a core around its networks. Subclasses set ``kind``, build their
    networks in ``_build_networks`` and implement ``forward`` (with ``_run_cycles``).

    Parameters are created in a fixed order (token embedding, LM head, Q-head, puzzle
    embedding, positions, the subclass's networks, initial states), so a seed gives the same
    weights as ever; their names are those of the saved checkpoints.

    Attributes:
        prefix_len: prefix positions in front of the puzzle (puzzle embedding + scratch).
        H_init, L_init: ``(hidden,)`` fixed initial states of ``z_H`` and ``z_L`` (buffers,
            saved with the weights; ``H_init.device`` is the model's device).
    """

    kind: str

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        if config.vocab_size < 1 or config.seq_len < 1:
            raise ValueError("ModelConfig.vocab_size and seq_len must be set (from the task)")
        config.validate()
        if config.kind != self.kind:
            raise ValueError(f"{self.kind.upper()} needs model.kind={self.kind!r}, got "
                             f"{config.kind!r}; use hrm_rl.model.build_model to pick the "
                             "core from the config")
        self.config = config
        hidden = config.hidden_size
        self.embed_scale = math.sqrt(hidden)
        # puzzle_emb_len is TRM's only (validated); by default the embedding's positions.
        self.prefix_len = config.puzzle_emb_len or -(-config.puzzle_emb_ndim // hidden)
        positions = config.seq_len + self.prefix_len

        self.embed_tokens = nn.Parameter(
            trunc_normal_(torch.empty(config.vocab_size, hidden), std=1 / self.embed_scale)
        )
        self.lm_head = Linear(hidden, config.vocab_size)
        # Two logits (q_halt, q_continue); TRM uses and trains only the first, as the
        # reference does (whose count of parameters we match).
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
        if config.edge_positions:   # one more row: positions outside the grid
            side = math.isqrt(config.seq_len)
            self.embed_edge_rows = nn.Parameter(torch.zeros(side + 1, hidden))
            self.embed_edge_cols = nn.Parameter(torch.zeros(side + 1, hidden))
        if config.puzzle_emb_cells:
            self.puzzle_emb_to_cells = Linear(config.puzzle_emb_ndim, hidden)
            with torch.no_grad():
                self.puzzle_emb_to_cells.weight.zero_()
        self._build_networks()
        # Fixed (not learned) initial states, saved with the weights.
        self.register_buffer("H_init", trunc_normal_(torch.empty(hidden), std=1.0))
        self.register_buffer("L_init", trunc_normal_(torch.empty(hidden), std=1.0))

    def _build_networks(self) -> None:
        """Create the core's networks (called once by ``__init__``)."""
        raise NotImplementedError

    def stacks(self) -> dict[str, nn.ModuleList]:
        """The stacks of ``Block``s a fine-tune may deepen (``train.init_from`` onto more
        layers), by the config field that sets each one's depth; none unless a core says."""
        return {}

    def edge_embeddings(self, inputs: torch.Tensor) -> torch.Tensor:
        """``(batch, seq_len)`` canvases -> ``(batch, positions, hidden)``: at each grid
        position the embedding of the rows below it in the grid plus that of the columns right
        of it; outside the grid, each table's last row instead; zeros on the prefix.

        The grid is read off the input: its rows are those whose first cell holds content
        (a token from ``content_token``), its columns those of the first row that do.
        """
        batch, side = inputs.shape[0], math.isqrt(self.config.seq_len)
        content = (inputs >= self.config.content_token).view(batch, side, side)
        height, width = content[:, :, 0].sum(1), content[:, 0, :].sum(1)
        index = torch.arange(side, device=inputs.device)
        below = height[:, None] - 1 - index                       # (batch, side)
        right = width[:, None] - 1 - index
        below = torch.where(below >= 0, below, side)
        right = torch.where(right >= 0, right, side)
        emb = (self.embed_edge_rows[below][:, :, None] + self.embed_edge_cols[right][:, None])
        return F.pad(emb.reshape(batch, side * side, -1), (0, 0, self.prefix_len, 0))

    @property
    def positions(self) -> int:
        """Sequence positions the recurrent state covers (prefix + puzzle)."""
        return self.config.seq_len + self.prefix_len

    def num_parameters(self, include_puzzle_emb: bool = True) -> int:
        """Count of trainable parameters.

        Args:
            include_puzzle_emb: count the per-puzzle embedding table too. The TRM paper's
                figures (e.g. 7M for ARC) leave it out: the reference trains it with a
                separate sparse optimizer and keeps it outside ``parameters()``.
        """
        emb = getattr(self, "puzzle_emb", None)
        table = emb.numel() if emb is not None and emb.requires_grad else 0
        total = sum(p.numel() for p in self.parameters() if p.requires_grad)
        return total if include_puzzle_emb else total - table

    @staticmethod
    def halts(out: SegmentOutput) -> torch.Tensor:
        """``(batch,)`` bool: the core's own halting rule, ``q_halt > q_continue``.

        HRM compares its two Q logits; TRM's ``q_continue`` is ``-q_halt``, so for TRM this
        is its ``q_halt > 0``. The segment engine, evaluation and the Q-head policy all
        halt by this one rule.
        """
        return out.q_halt > out.q_continue

    def initial_carry(self, batch_size: int, device: torch.device | str | None = None) -> Carry:
        """A carry with every row at the initial states, ``(batch, positions, hidden)`` each."""
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
        """``(batch, seq_len)`` tokens -> ``(batch, positions, hidden)`` scaled embeddings.

        The prefix holds the puzzle embedding (zero-padded to ``prefix_len * hidden``), or
        zeros when there is none: scratch positions the network may write to. With
        ``puzzle_emb_cells``, a projection of the puzzle embedding is added to every token's,
        and with ``edge_positions`` the ``edge_embeddings``.
        """
        emb = F.embedding(inputs, self.embed_tokens)
        if self.config.puzzle_emb_cells:
            cells = self.puzzle_emb_to_cells(self.puzzle_emb[puzzle_ids])  # bf16 in autocast
            emb = emb + cells[:, None].to(emb.dtype)
        if self.prefix_len:
            hidden = self.config.hidden_size
            batch = inputs.shape[0]
            if hasattr(self, "puzzle_emb"):
                prefix = self.puzzle_emb[puzzle_ids].to(emb.dtype)
                prefix = F.pad(prefix, (0, self.prefix_len * hidden - prefix.shape[-1]))
            else:
                prefix = emb.new_zeros(batch, self.prefix_len * hidden)
            emb = torch.cat((prefix.view(batch, self.prefix_len, hidden), emb), dim=1)
        if self.config.edge_positions:
            emb = emb + self.edge_embeddings(inputs).to(emb.dtype)
        if self.config.pos_encodings == "learned":
            emb = 0.707106781 * (emb + self.embed_pos)  # keeps the forward variance
        return self.embed_scale * emb

    def _run_cycles(self, carry: Carry, inputs: torch.Tensor, puzzle_ids: torch.Tensor,
                    L_net: nn.Module, H_net: nn.Module) -> tuple[torch.Tensor, torch.Tensor]:
        """A segment's recurrence: ``H_cycles`` cycles of ``L_cycles`` steps
        ``z_L = L_net(z_L, z_H + x, rope)`` and one step ``z_H = H_net(z_H, z_L, rope)``,
        the last ``steps_with_gradient`` of them with the gradient.

        Returns:
            The new ``(z_H, z_L)``, not detached.
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
                    z_L = L_net(z_L, z_H + x, rope)
                step += 1
            with grad_context(step >= first_grad):
                z_H = H_net(z_H, z_L, rope)
            step += 1
        return z_H, z_L
