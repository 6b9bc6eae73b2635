"""The HRM core: shapes, reference details, and the 1-step gradient."""

from __future__ import annotations

import pytest
import torch

from hrm_rl.config import ModelConfig
from hrm_rl.losses import softmax_cross_entropy, stablemax_cross_entropy
from hrm_rl.model import HRM
from hrm_rl.model.layers import swiglu_width, trunc_normal_
from tests.conftest import saved_activation_bytes, tiny_model_config


def test_paper_sudoku_config_counts_the_reference_parameters():
    model = HRM(ModelConfig(vocab_size=11, seq_len=81))
    assert model.num_parameters() == 27_275_266


def test_swiglu_width_rounds_like_the_reference():
    assert swiglu_width(512, 4.0) == 1536
    assert swiglu_width(64, 4.0) == 256


def test_trunc_normal_has_requested_std_and_bounds():
    torch.manual_seed(0)
    x = trunc_normal_(torch.empty(200_000), std=0.5)
    assert abs(x.std().item() - 0.5) < 0.01
    assert x.abs().max().item() <= 2 * 0.5 / 0.8796 + 1e-6


def test_segment_shapes_and_q_head_init(tiny_model):
    carry = tiny_model.initial_carry(3)
    out = tiny_model(carry, torch.randint(0, 6, (3, 16)), torch.zeros(3, dtype=torch.long))
    assert out.logits.shape == (3, 16, 6)
    assert out.q_halt.shape == out.q_continue.shape == (3,)
    assert out.h_state.shape == (3, 32)
    assert out.carry.z_H.shape == out.carry.z_L.shape == (3, 16, 32)
    # Q-head starts at zero weights and bias -5, as in the reference.
    assert torch.allclose(out.q_halt, torch.full((3,), -5.0))
    assert not out.carry.z_H.requires_grad and not out.carry.z_L.requires_grad


def test_puzzle_embedding_adds_prefix_positions():
    model = HRM(tiny_model_config(puzzle_emb_ndim=48, num_puzzle_ids=5))
    assert model.prefix_len == 2
    carry = model.initial_carry(2)
    out = model(carry, torch.randint(0, 6, (2, 16)), torch.tensor([1, 4]))
    assert carry.z_H.shape == (2, 18, 32)
    assert out.logits.shape == (2, 16, 6)


def test_reset_carry_touches_only_marked_rows(tiny_model):
    out = tiny_model(tiny_model.initial_carry(2), torch.randint(0, 6, (2, 16)),
                     torch.zeros(2, dtype=torch.long))
    reset = tiny_model.reset_carry(out.carry, torch.tensor([True, False]))
    assert torch.equal(reset.z_H[0], tiny_model.H_init.expand(16, 32))
    assert torch.equal(reset.z_H[1], out.carry.z_H[1])


def test_one_step_gradient_flows_only_through_the_last_l_and_h_step():
    torch.manual_seed(0)
    model = HRM(tiny_model_config(H_cycles=3, L_cycles=3))
    calls = {"L": 0, "H": 0}
    grad_calls = {"L": 0, "H": 0}

    def counter(name):
        def hook(module, args, output):
            calls[name] += 1
            grad_calls[name] += int(output.requires_grad)
        return hook

    model.L_level.register_forward_hook(counter("L"))
    model.H_level.register_forward_hook(counter("H"))
    inputs = torch.randint(0, 6, (2, 16))
    out = model(model.initial_carry(2), inputs, torch.zeros(2, dtype=torch.long))
    assert calls == {"L": 9, "H": 3}
    assert grad_calls == {"L": 1, "H": 1}
    out.logits.square().sum().backward()
    assert all(p.grad is not None for p in model.L_level.parameters())
    assert all(p.grad is not None for p in model.H_level.parameters())


def test_gradient_equals_a_segment_started_from_the_no_grad_states():
    """The 1-step gradient is exactly the gradient of one L-step and one H-step."""
    torch.manual_seed(0)
    model = HRM(tiny_model_config(H_cycles=2, L_cycles=2))
    inputs = torch.randint(0, 6, (2, 16))
    ids = torch.zeros(2, dtype=torch.long)
    carry = model.initial_carry(2)
    model(carry, inputs, ids).logits.square().sum().backward()
    grads = [p.grad.clone() if p.grad is not None else torch.zeros_like(p)
             for p in model.parameters()]
    model.zero_grad()
    # Recompute by hand: no-grad L, L, H, L, then one differentiable L and H step.
    x = model.input_embeddings(inputs, ids)
    with torch.no_grad():
        z_H, z_L = carry.z_H, carry.z_L
        z_L = model.L_level(z_L, z_H + x, (model.rope.cos, model.rope.sin))
        z_L = model.L_level(z_L, z_H + x, (model.rope.cos, model.rope.sin))
        z_H = model.H_level(z_H, z_L, (model.rope.cos, model.rope.sin))
        z_L = model.L_level(z_L, z_H + x, (model.rope.cos, model.rope.sin))
    z_L = model.L_level(z_L, z_H + x, (model.rope.cos, model.rope.sin))
    z_H = model.H_level(z_H, z_L, (model.rope.cos, model.rope.sin))
    model.lm_head(z_H).square().sum().backward()
    for g, p in zip(grads, model.parameters()):
        expected = p.grad if p.grad is not None else torch.zeros_like(g)
        torch.testing.assert_close(g, expected)


def _saved_activation_bytes(gradient: str, cycles: int) -> int:
    """Bytes autograd keeps for the backward pass of one training segment (the activation
    memory, which is what would grow with depth)."""
    torch.manual_seed(0)
    model = HRM(tiny_model_config(hidden_size=64, H_cycles=cycles, L_cycles=cycles,
                                  gradient=gradient, seq_len=81, vocab_size=11))
    inputs = torch.randint(0, 11, (16, 81))
    return saved_activation_bytes(
        lambda: model(model.initial_carry(16), inputs, torch.zeros(16, dtype=torch.long)))


def test_one_step_gradient_memory_is_flat_in_cycles():
    assert _saved_activation_bytes("one_step", 4) == _saved_activation_bytes("one_step", 1)


def test_bptt_memory_grows_with_cycles():
    small = _saved_activation_bytes("bptt", 1)
    assert _saved_activation_bytes("bptt", 4) > 8 * small


def test_stablemax_and_softmax_losses_ignore_masked_positions():
    logits = torch.randn(2, 5, 7)
    labels = torch.tensor([[1, 2, 3, -100, -100], [0, 0, 0, 0, 0]])
    for fn in (stablemax_cross_entropy, softmax_cross_entropy):
        loss = fn(logits, labels)
        assert loss.shape == (2, 5)
        assert torch.all(loss[0, 3:] == 0) and torch.all(loss[:, :3] > 0)


def test_stablemax_is_a_distribution():
    from hrm_rl.losses import log_stablemax

    p = log_stablemax(torch.randn(4, 9).double()).exp()
    torch.testing.assert_close(p.sum(-1), torch.ones(4, dtype=torch.float64))


def test_stablemax_loss_is_float64_as_in_the_reference():
    """The reference casts logits to float64 and returns float64 per-token losses, so its
    ACT loss (which adds the float32 Q losses) is float64 as well."""
    from hrm_rl.agents.act import act_loss
    from hrm_rl.model import SegmentOutput

    logits = torch.randn(3, 4, 6)
    labels = torch.tensor([[1, 2, 3, -100], [0, 5, 4, 1], [2, 2, 2, 2]])
    loss = stablemax_cross_entropy(logits, labels)
    assert loss.dtype == torch.float64
    s = torch.where(logits.double() < 0, 1 / (1 - logits.double()), logits.double() + 1)
    logp = torch.log(s / s.sum(-1, keepdim=True))
    want = -logp.gather(-1, labels.clamp_min(0)[..., None])[..., 0]
    torch.testing.assert_close(loss, torch.where(labels >= 0, want, 0.0), rtol=0, atol=1e-12)
    out = SegmentOutput(logits=logits, q_halt=torch.zeros(3), q_continue=torch.zeros(3),
                        carry=None, h_state=torch.zeros(3, 8))
    total, _ = act_loss(out, labels, torch.zeros(3, dtype=torch.bool), None, "stablemax", 0.5)
    assert total.dtype == torch.float64
    assert act_loss(out, labels, torch.zeros(3, dtype=torch.bool), None, "softmax",
                    0.5)[0].dtype == torch.float32


@pytest.mark.parametrize("seq", [16, 40, 41])
def test_attention_matmul_path_matches_sdpa(seq):
    from hrm_rl.model.layers import SHORT_ATTENTION_MAX_LEN, Attention, _matmul_attention

    torch.manual_seed(0)
    attn = Attention(64, 4)
    x = torch.randn(3, seq, 64)
    with torch.no_grad():
        fast = attn(x, None)
        assert _matmul_attention(x) == (seq <= SHORT_ATTENTION_MAX_LEN)
    reference = attn(x, None)  # with autograd: always SDPA
    assert not _matmul_attention(x)
    torch.testing.assert_close(fast, reference.detach(), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("seq", [36, 81, 256, 257])
def test_bf16_attention_takes_the_matmul_path_with_gradients_as_sdpa_computes(seq):
    """Under CPU bf16 autocast, sequences up to BF16_MATMUL_ATTENTION_MAX_LEN take the
    matmul path (fp32 softmax), with autograd too: output and gradients agree with SDPA's
    within bf16 rounding."""
    from hrm_rl.model.layers import (BF16_MATMUL_ATTENTION_MAX_LEN, Attention,
                                     _matmul_attention)

    torch.manual_seed(0)
    attn = Attention(64, 4)
    x = torch.randn(2, seq, 64)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert _matmul_attention(x) == (seq <= BF16_MATMUL_ATTENTION_MAX_LEN)
        out = attn(x, None)
    out.float().square().sum().backward()
    grads = [p.grad.clone() for p in attn.parameters()]
    attn.zero_grad()
    with torch.autocast("cpu", dtype=torch.bfloat16):   # SDPA on the same bf16 inputs
        qkv = attn.qkv_proj(x).view(2, seq, 3, 4, 16)
        q, k, v = qkv.permute(2, 0, 3, 1, 4).unbind(0)
        ref = torch.nn.functional.scaled_dot_product_attention(q, k, v)
        ref = attn.o_proj(ref.transpose(1, 2).reshape(2, seq, 64))
    ref.float().square().sum().backward()
    torch.testing.assert_close(out.float(), ref.float(), rtol=0.05, atol=0.02)
    for got, want in zip(grads, (p.grad for p in attn.parameters())):
        torch.testing.assert_close(got, want, rtol=0.05, atol=0.05 * want.abs().max().item())
