"""The TRM core beside HRM: shapes, gradient modes, EMA, engine and checkpoints, sizes."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from hrm_rl.agents.act import act_loss
from hrm_rl.checkpoint import load_checkpoint, save_checkpoint
from hrm_rl.config import ConfigError, ModelConfig, RunConfig, TaskConfig, load_config
from hrm_rl.data import ShuffledSource
from hrm_rl.model import HRM, TRM, build_model
from hrm_rl.segment_engine import SegmentEngine
from hrm_rl.tasks import make_task
from tests.conftest import random_puzzles, saved_activation_bytes, tiny_model_config

CONFIGS = Path(__file__).parent.parent / "configs"


def tiny_trm_config(**overrides) -> ModelConfig:
    base = dict(kind="trm", L_layers=2, H_cycles=2, L_cycles=3)
    base.update(overrides)
    return tiny_model_config(**base)


def _segment(model, batch: int = 2):
    torch.manual_seed(1)
    inputs = torch.randint(0, model.config.vocab_size, (batch, model.config.seq_len))
    ids = torch.zeros(batch, dtype=torch.long)
    return model(model.initial_carry(batch), inputs, ids), inputs, ids


# --- interface and shapes -------------------------------------------------------------------

@pytest.mark.parametrize("variant", [dict(), dict(mlp_t=True, pos_encodings="none"),
                                     dict(pos_encodings="learned", puzzle_emb_len=3)],
                         ids=["attention", "mlp_t", "learned+scratch"])
def test_trm_segment_shapes(variant):
    torch.manual_seed(0)
    model = build_model(tiny_trm_config(**variant))
    assert isinstance(model, TRM)
    prefix = variant.get("puzzle_emb_len", 0)
    out, _, _ = _segment(model, batch=3)
    assert out.logits.shape == (3, 16, 6)
    assert out.q_halt.shape == out.q_continue.shape == (3,)
    assert out.q_halt.dtype == torch.float32
    assert out.h_state.shape == (3, 32)
    assert out.carry.z_H.shape == out.carry.z_L.shape == (3, 16 + prefix, 32)
    assert not out.carry.z_H.requires_grad and not out.carry.z_L.requires_grad
    assert torch.allclose(out.q_halt, torch.full((3,), -5.0))  # the reference's Q init


def test_mlp_t_mixes_tokens_across_positions_without_attention():
    model = TRM(tiny_trm_config(mlp_t=True, pos_encodings="none", puzzle_emb_len=4))
    block = model.net.layers[0]
    assert not hasattr(block, "self_attn") and not hasattr(model, "rope")
    # The token-mixing SwiGLU maps the 4 + 16 positions to themselves.
    assert block.mlp_t.gate_up_proj.weight.shape[1] == 20
    assert block.mlp_t.down_proj.weight.shape[0] == 20


def test_puzzle_embedding_fills_the_first_prefix_positions():
    model = TRM(tiny_trm_config(puzzle_emb_ndim=48, puzzle_emb_len=4, num_puzzle_ids=5))
    assert model.prefix_len == 4 and model.positions == 20
    with torch.no_grad():
        model.puzzle_emb.normal_()
    x = model.input_embeddings(torch.randint(0, 6, (2, 16)), torch.tensor([1, 4]))
    assert x.shape == (2, 20, 32)
    assert torch.count_nonzero(x[:, 1, 16:]) == 0 and torch.count_nonzero(x[:, 2:4]) == 0
    assert torch.count_nonzero(x[:, 0]) > 0


def test_q_continue_is_minus_q_halt_so_the_halting_rule_is_q_halt_positive():
    model = TRM(tiny_trm_config())
    with torch.no_grad():
        model.q_head.bias.copy_(torch.tensor([0.5, 9.0]))  # the 2nd logit is never used
    out, _, _ = _segment(model)
    torch.testing.assert_close(out.q_continue, -out.q_halt.detach())
    assert not out.q_continue.requires_grad  # a continue loss can send no gradient
    assert torch.equal(out.q_halt > out.q_continue, out.q_halt > 0)


def test_reset_carry_touches_only_marked_rows():
    model = TRM(tiny_trm_config())
    out, _, _ = _segment(model)
    reset = model.reset_carry(out.carry, torch.tensor([True, False]))
    assert torch.equal(reset.z_L[0], model.L_init.expand(16, 32))
    assert torch.equal(reset.z_H[1], out.carry.z_H[1])


def test_build_model_picks_the_core_by_kind():
    assert type(build_model(tiny_model_config())) is HRM
    assert type(build_model(tiny_trm_config())) is TRM
    with pytest.raises(ValueError, match="kind='trm'"):
        TRM(tiny_model_config())


@pytest.mark.parametrize("bad, match", [
    (dict(kind="hrm", mlp_t=True, pos_encodings="none"), "mlp_t"),
    (dict(kind="trm", mlp_t=True, pos_encodings="rope"), "pos_encodings"),
    (dict(kind="hrm", puzzle_emb_len=4), "puzzle_emb_len"),
    (dict(kind="trm", puzzle_emb_ndim=100, puzzle_emb_len=1), "puzzle_emb_len"),
    (dict(kind="trm", gradient="full"), "gradient"),
    (dict(kind="xrm"), "kind"),
])
def test_invalid_model_configs_fail_at_load(bad, match):
    with pytest.raises(ConfigError, match=match):
        tiny_model_config(**bad).validate()


def test_auto_gradient_is_each_papers_choice():
    assert tiny_model_config().gradient_mode == "one_step"
    assert tiny_trm_config().gradient_mode == "last_recursion"
    assert tiny_trm_config(gradient="bptt").gradient_mode == "bptt"


# --- gradient modes -------------------------------------------------------------------------

def _grad_pattern(model) -> list[tuple[str, bool]]:
    """(level, output requires grad) for every network call of one segment, in order."""
    calls: list[tuple[str, bool]] = []

    def hook(name):
        return lambda module, args, output: calls.append((name, output.requires_grad))

    if isinstance(model, TRM):
        handles = [model.net.register_forward_hook(hook("net"))]
    else:
        handles = [model.L_level.register_forward_hook(hook("L")),
                   model.H_level.register_forward_hook(hook("H"))]
    out, _, _ = _segment(model)
    for h in handles:
        h.remove()
    out.logits.square().sum().backward()
    return calls


def _expected(kind: str, H: int, L: int, tail: int) -> list[tuple[str, bool]]:
    names = (["net"] * (L + 1)) if kind == "trm" else (["L"] * L + ["H"])
    steps = names * H
    return [(n, i >= len(steps) - tail) for i, n in enumerate(steps)]


@pytest.mark.parametrize("kind", ["hrm", "trm"])
@pytest.mark.parametrize("gradient, tail", [("one_step", lambda L: 2),
                                            ("last_recursion", lambda L: L + 1),
                                            ("bptt", lambda L: 3 * (L + 1))],
                         ids=["one_step", "last_recursion", "bptt"])
def test_each_gradient_mode_builds_a_graph_for_exactly_its_steps(kind, gradient, tail):
    torch.manual_seed(0)
    make = tiny_trm_config if kind == "trm" else tiny_model_config
    model = build_model(make(kind=kind, H_cycles=3, L_cycles=3, gradient=gradient))
    assert _grad_pattern(model) == _expected(kind, 3, 3, tail(3))
    assert all(p.grad is not None for p in model.parameters() if p is not model.q_head.weight
               and p is not model.q_head.bias)


@pytest.mark.parametrize("kind", ["hrm", "trm"])
@pytest.mark.parametrize("gradient", ["one_step", "last_recursion", "bptt"])
def test_no_grad_callers_get_no_graph_in_any_mode(kind, gradient):
    make = tiny_trm_config if kind == "trm" else tiny_model_config
    model = build_model(make(kind=kind, gradient=gradient))
    with torch.no_grad():
        out, _, _ = _segment(model)
    assert not out.logits.requires_grad and not out.q_halt.requires_grad


def _levels(model):
    if isinstance(model, TRM):
        return model.net, model.net
    return model.L_level, model.H_level


@pytest.mark.parametrize("kind", ["hrm", "trm"])
def test_last_recursion_gradient_equals_one_cycle_from_the_no_grad_states(kind):
    """``last_recursion`` is exactly the gradient of the last cycle started from the states
    the earlier (no-grad) cycles reached; nothing flows into those earlier cycles."""
    torch.manual_seed(0)
    make = tiny_trm_config if kind == "trm" else tiny_model_config
    model = build_model(make(kind=kind, H_cycles=3, L_cycles=2, gradient="last_recursion"))
    out, inputs, ids = _segment(model)
    (out.logits.square().sum() + out.q_halt.sum()).backward()
    grads = {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}
    model.zero_grad()

    L_net, H_net = _levels(model)
    rope = (model.rope.cos, model.rope.sin)
    x = model.input_embeddings(inputs, ids)
    carry = model.initial_carry(2)
    z_H, z_L = carry.z_H, carry.z_L
    with torch.no_grad():
        for _ in range(2):
            for _ in range(2):
                z_L = L_net(z_L, z_H + x, rope)
            z_H = H_net(z_H, z_L, rope)
    for _ in range(2):
        z_L = L_net(z_L, z_H + x, rope)
    z_H = H_net(z_H, z_L, rope)
    q = model.q_head(z_H[:, 0])[:, 0].float()
    (model.lm_head(z_H[:, model.prefix_len:]).square().sum() + q.sum()).backward()
    expected = {n: p.grad for n, p in model.named_parameters() if p.grad is not None}
    assert grads.keys() == expected.keys()
    for name in grads:
        torch.testing.assert_close(grads[name], expected[name], msg=name)


def _saved_bytes(kind: str, gradient: str, H_cycles: int, L_cycles: int) -> int:
    """Bytes autograd keeps for the backward of one segment (the activation memory)."""
    torch.manual_seed(0)
    make = tiny_trm_config if kind == "trm" else tiny_model_config
    model = build_model(make(kind=kind, H_cycles=H_cycles, L_cycles=L_cycles,
                             gradient=gradient))
    return saved_activation_bytes(lambda: _segment(model, batch=4)[0])


@pytest.mark.parametrize("kind", ["hrm", "trm"])
def test_last_recursion_memory_is_flat_in_H_cycles_and_grows_with_L_cycles(kind):
    base = _saved_bytes(kind, "last_recursion", 1, 2)
    assert _saved_bytes(kind, "last_recursion", 4, 2) == base
    assert _saved_bytes(kind, "last_recursion", 1, 4) > base
    assert _saved_bytes(kind, "one_step", 4, 4) == _saved_bytes(kind, "one_step", 1, 1)
    assert _saved_bytes(kind, "bptt", 4, 2) > 3 * base


# --- halting loss ---------------------------------------------------------------------------

def test_trms_halt_loss_trains_q_halt_toward_correctness_only():
    model = TRM(tiny_trm_config())
    out, labels, _ = _segment(model)
    correct = torch.tensor([True, False])
    loss, parts = act_loss(out, labels, correct, None, "softmax", 0.5)  # no continue target
    torch.testing.assert_close(parts["q_halt_loss"], F.binary_cross_entropy_with_logits(
        out.q_halt, correct.float(), reduction="sum").detach())
    assert parts["q_continue_loss"] == 0
    torch.testing.assert_close(loss, (parts["lm_loss"] + 0.5 * parts["q_halt_loss"]) / 2)
    loss.backward()
    assert model.q_head.weight.grad[1].abs().sum() == 0  # the unused continue row
    assert model.q_head.bias.grad[0] != 0 and model.q_head.bias.grad[1] == 0


def _perturb(model, scale: float = 0.1) -> None:
    with torch.no_grad():
        for p in model.parameters():
            p.add_(scale * torch.randn_like(p))


# --- with the rest of the core --------------------------------------------------------------

def test_segment_engine_runs_a_trm_with_halting_and_refills():
    torch.manual_seed(0)
    model = TRM(tiny_trm_config(mlp_t=True, pos_encodings="none", puzzle_emb_len=2))
    source = ShuffledSource(random_puzzles(12), np.random.default_rng(0), shuffle=False)
    engine = SegmentEngine(model, source, 4, "cpu")
    out = engine.step().out
    for _ in range(3):
        halted = model.halts(out)
        halted[0] = True
        out = engine.step(halted).out
    assert out.logits.shape == (4, 16, 6)
    assert engine.carry.z_H.shape == (4, 18, 32)
    assert engine.segments[0] == 1 and source.drawn == 7
    with torch.inference_mode():
        assert engine.peek().logits.shape == (4, 16, 6)


def test_trm_checkpoint_round_trip(tmp_path):
    torch.manual_seed(0)
    config = RunConfig(task=TaskConfig(name="sudoku", size=4),
                       model=tiny_trm_config(mlp_t=True, pos_encodings="none",
                                             puzzle_emb_len=2, puzzle_emb_ndim=16))
    model = build_model(config.model.fit_to(make_task(config.task)))
    _perturb(model)
    save_checkpoint(tmp_path / "ckpt", model, config)
    loaded = load_checkpoint(tmp_path / "ckpt").model
    assert isinstance(loaded, TRM) and loaded.config == model.config
    model.eval()
    for (a, b) in zip(model.state_dict().values(), loaded.state_dict().values()):
        assert torch.equal(a, b)
    out_a, _, _ = _segment(model)
    out_b, _, _ = _segment(loaded)
    torch.testing.assert_close(out_a.logits, out_b.logits)


# --- sizes ----------------------------------------------------------------------------------

SUDOKU_TRM_MLP_NETWORK = 5_028_866   # the paper's "5M" (TRM-MLP, Sudoku-Extreme)
ARC_TRM_ATT_NETWORK = 6_829_058      # the paper's "7M" (TRM-Att, ARC-AGI)


def test_shipped_sudoku_trm_config_has_the_papers_size():
    config = load_config(CONFIGS / "sudoku9-extreme-trm.yaml")
    model = build_model(config.model.fit_to(make_task(config.task)))
    total, network = model.num_parameters(), model.num_parameters(include_puzzle_emb=False)
    print(f"\nTRM-MLP Sudoku: {network:,} network + {total - network:,} puzzle embedding "
          f"= {total:,}")
    assert network == SUDOKU_TRM_MLP_NETWORK
    assert total == network + 512  # one puzzle id of 512
    assert abs(total - 5.0e6) / 5.0e6 < 0.01


def test_arc_trm_attention_has_the_papers_size_without_the_puzzle_table():
    ids = 1000  # the table grows by 512 per puzzle id (ARC-AGI-1 + augmentations: ~1M ids)
    model = TRM(ModelConfig(kind="trm", hidden_size=512, num_heads=8, expansion=4.0,
                            L_layers=2, H_cycles=3, L_cycles=4, pos_encodings="rope",
                            puzzle_emb_ndim=512, puzzle_emb_len=16, vocab_size=12,
                            seq_len=900, num_puzzle_ids=ids))
    total, network = model.num_parameters(), model.num_parameters(include_puzzle_emb=False)
    print(f"\nTRM-Att ARC: {network:,} network + {total - network:,} puzzle embedding "
          f"({ids} ids x 512) = {total:,}")
    assert network == ARC_TRM_ATT_NETWORK
    assert total == network + ids * 512
    assert abs(network - 6.8e6) / 6.8e6 < 0.01
