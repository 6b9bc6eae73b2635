"""The Tiny Recursive Model (TRM): one small network that refines a latent and an answer.

TRM ("Less is More: Recursive Reasoning with Tiny Networks", Jolicoeur-Martineau 2025)
replaces HRM's two networks with a single one, ``L_layers`` deep, used for both updates. In
HRM's vocabulary the carry is ``(z_H, z_L)``: ``z_H`` is TRM's current answer ``y`` and
``z_L`` its latent reasoning state ``z``. One *segment* runs ``H_cycles`` (T) cycles; each
cycle updates the latent ``L_cycles`` (n) times and then the answer once::

    for _ in range(T):
        for _ in range(n):
            z_L = net(z_L, z_H + x)      # recursive reasoning on the latent
        z_H = net(z_H, z_L)              # refine the answer

With TRM's default ``gradient="last_recursion"`` the first ``T - 1`` cycles run under
``torch.no_grad`` and the whole last cycle (its n latent steps and the answer step) carries
the gradient; ``one_step`` and ``bptt`` are available as for HRM (see
``hrm_rl.model.base.steps_with_gradient``). The carry leaves a segment detached.

Two variants of the network's token mixing:

* attention (default): HRM's post-norm blocks (RoPE or learned positions);
* ``mlp_t``: a SwiGLU across the position axis instead of attention, for fixed-size grids
  (no positional encoding needed: every position has its own weights).

Heads: the LM head reads ``z_H`` at the puzzle positions; the halting head reads ``z_H`` at
position 0 (the first prefix position). TRM trains only ``q_halt`` (BCE toward "the answer
is exactly right": ``hrm_rl.agents.act.act_loss`` without a continue target) and halts when
``q_halt > 0``. To keep HRM's interface, ``q_continue`` is returned as ``-q_halt`` *detached*: the rule
``q_halt > q_continue`` used by the evaluation, the environments and the Q-head policy then
means exactly ``q_halt > 0``, and a continue loss computed on it sends no gradient anywhere.
"""

from __future__ import annotations

import torch
from torch import nn

from hrm_rl.config import ModelConfig
from hrm_rl.model.base import Carry, RecurrentBase, SegmentOutput
from hrm_rl.model.layers import Attention, SwiGLU, rms_norm

Rope = tuple[torch.Tensor, torch.Tensor] | None


class TRMBlock(nn.Module):
    """Post-norm block: token mixing (attention or ``mlp_t``), then a channel SwiGLU.

    Args:
        positions: the sequence length the block sees; given, the block mixes tokens with a
            SwiGLU across positions (``mlp_t``), otherwise with self-attention.
    """

    def __init__(self, hidden_size: int, num_heads: int, expansion: float, eps: float,
                 positions: int | None = None) -> None:
        super().__init__()
        self.eps = eps
        if positions is not None:
            self.mlp_t = SwiGLU(positions, expansion)
        else:
            self.self_attn = Attention(hidden_size, num_heads)
        self.mlp = SwiGLU(hidden_size, expansion)

    def forward(self, x: torch.Tensor, rope: Rope) -> torch.Tensor:
        """``x``: ``(batch, positions, hidden)`` -> same shape."""
        if hasattr(self, "mlp_t"):
            # As in the TRM reference, the residual and its RMSNorm are taken in the
            # transposed layout, so this norm runs over the position axis.
            t = x.transpose(1, 2)  # (batch, hidden, positions)
            x = rms_norm(t + self.mlp_t(t), self.eps).transpose(1, 2)
        else:
            x = rms_norm(x + self.self_attn(x, rope), self.eps)
        return rms_norm(x + self.mlp(x), self.eps)


class TRMNet(nn.Module):
    """TRM's single network: ``blocks(z + injection)``, used for both updates."""

    def __init__(self, config: ModelConfig, positions: int) -> None:
        super().__init__()
        mix_positions = positions if config.mlp_t else None
        self.layers = nn.ModuleList(
            TRMBlock(config.hidden_size, config.num_heads, config.expansion,
                     config.rms_norm_eps, mix_positions)
            for _ in range(config.L_layers)
        )

    def forward(self, z: torch.Tensor, injection: torch.Tensor, rope: Rope) -> torch.Tensor:
        """``z``, ``injection``: ``(batch, positions, hidden)`` -> the same shape."""
        z = z + injection
        for layer in self.layers:
            z = layer(z, rope)
        return z


class TRM(RecurrentBase):
    """The TRM recurrent core, a drop-in for ``HRM``. Build it with a resolved ``ModelConfig``
    whose ``kind`` is ``trm``.

    Attributes:
        net: the one network (``L_layers`` blocks).
        prefix_len: prefix positions in front of the puzzle (puzzle embedding + scratch).
        H_init, L_init: ``(hidden,)`` fixed initial states of ``z_H`` and ``z_L`` (buffers,
            saved with the weights; ``H_init.device`` is the model's device).
    """

    kind = "trm"

    def _build_networks(self) -> None:
        """``net``: the one network, ``L_layers`` blocks over ``positions`` positions."""
        self.net = TRMNet(self.config, self.positions)

    def forward(self, carry: Carry, inputs: torch.Tensor,
                puzzle_ids: torch.Tensor) -> SegmentOutput:
        """Run one segment (``H_cycles`` cycles of ``L_cycles`` latent steps + one answer step).

        Args:
            carry: state from the previous segment (or ``initial_carry``/``reset_carry``).
            inputs: ``(batch, seq_len)`` int64 tokens.
            puzzle_ids: ``(batch,)`` int64 puzzle identifiers.

        Returns:
            ``SegmentOutput``; ``q_continue`` is ``-q_halt`` detached (see the module doc).
        """
        z_H, z_L = self._run_cycles(carry, inputs, puzzle_ids, self.net, self.net)
        logits = self.lm_head(z_H[:, self.prefix_len:])
        h_state = z_H[:, 0].clone()  # a copy, not a view (see HRM.forward)
        q_halt = self.q_head(h_state)[:, 0].float()
        return SegmentOutput(Carry(z_H.detach(), z_L.detach()), logits, q_halt,
                             -q_halt.detach(), h_state)
