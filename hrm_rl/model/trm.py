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
``hrm_rl.model.hrm.steps_with_gradient``). The carry leaves a segment detached.

Two variants of the network's token mixing:

* attention (default): HRM's post-norm blocks (RoPE or learned positions);
* ``mlp_t``: a SwiGLU across the position axis instead of attention, for fixed-size grids
  (no positional encoding needed: every position has its own weights).

Heads: the LM head reads ``z_H`` at the puzzle positions; the halting head reads ``z_H`` at
position 0 (the first prefix position). TRM trains only ``q_halt`` (BCE toward "the answer
is exactly right", ``hrm_rl.losses.halt_bce_loss``) and halts when ``q_halt > 0``. To keep
HRM's interface, ``q_continue`` is returned as ``-q_halt`` *detached*: the rule
``q_halt > q_continue`` used by the evaluation, the environments and the Q-head policy then
means exactly ``q_halt > 0``, and a continue loss computed on it sends no gradient anywhere.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from hrm_rl.config import ModelConfig
from hrm_rl.model.hrm import Carry, SegmentOutput, grad_context, steps_with_gradient
from hrm_rl.model.layers import (Attention, Linear, RotaryEmbedding, SwiGLU, rms_norm,
                                 trunc_normal_)

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


class TRM(nn.Module):
    """The TRM recurrent core, a drop-in for ``HRM``. Build it with a resolved ``ModelConfig``
    whose ``kind`` is ``trm``.

    Attributes:
        net: the one network (``L_layers`` blocks).
        prefix_len: prefix positions in front of the puzzle (puzzle embedding + scratch).
        H_init, L_init: ``(hidden,)`` fixed initial states of ``z_H`` and ``z_L`` (buffers,
            saved with the weights; ``H_init.device`` is the model's device).
    """

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        if config.vocab_size < 1 or config.seq_len < 1:
            raise ValueError("ModelConfig.vocab_size and seq_len must be set (from the task)")
        config.validate()
        if config.kind != "trm":
            raise ValueError(f"TRM needs model.kind='trm', got {config.kind!r}; "
                             "use hrm_rl.model.build_model to pick the core from the config")
        self.config = config
        hidden = config.hidden_size
        self.embed_scale = math.sqrt(hidden)
        self.prefix_len = config.puzzle_emb_len or -(-config.puzzle_emb_ndim // hidden)
        positions = config.seq_len + self.prefix_len

        self.embed_tokens = nn.Parameter(
            trunc_normal_(torch.empty(config.vocab_size, hidden), std=1 / self.embed_scale)
        )
        self.lm_head = Linear(hidden, config.vocab_size)
        # Two logits as in the reference (whose count of parameters we match); only the
        # first, q_halt, is used and trained.
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
        self.net = TRMNet(config, positions)
        self.register_buffer("H_init", trunc_normal_(torch.empty(hidden), std=1.0))
        self.register_buffer("L_init", trunc_normal_(torch.empty(hidden), std=1.0))

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
        table = self.puzzle_emb.numel() if hasattr(self, "puzzle_emb") else 0
        total = sum(p.numel() for p in self.parameters() if p.requires_grad)
        return total if include_puzzle_emb else total - table

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
        zeros when there is none: scratch positions the network may write to.
        """
        emb = F.embedding(inputs, self.embed_tokens)
        if self.prefix_len:
            hidden = self.config.hidden_size
            batch = inputs.shape[0]
            if hasattr(self, "puzzle_emb"):
                prefix = self.puzzle_emb[puzzle_ids].to(emb.dtype)
                prefix = F.pad(prefix, (0, self.prefix_len * hidden - prefix.shape[-1]))
            else:
                prefix = emb.new_zeros(batch, self.prefix_len * hidden)
            emb = torch.cat((prefix.view(batch, self.prefix_len, hidden), emb), dim=1)
        if self.config.pos_encodings == "learned":
            emb = 0.707106781 * (emb + self.embed_pos)  # keeps the forward variance
        return self.embed_scale * emb

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
                    z_L = self.net(z_L, z_H + x, rope)
                step += 1
            with grad_context(step >= first_grad):
                z_H = self.net(z_H, z_L, rope)
            step += 1

        logits = self.lm_head(z_H[:, self.prefix_len:])
        h_state = z_H[:, 0].clone()  # a copy, not a view (see HRM.forward)
        q_halt = self.q_head(h_state)[:, 0].float()
        return SegmentOutput(Carry(z_H.detach(), z_L.detach()), logits, q_halt,
                             -q_halt.detach(), h_state)
