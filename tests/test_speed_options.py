"""Every speed option trains the same model as the plain eager fp32 step, within a tolerance.

The plain step is ``hrm_rl.bench.train.PLAIN``: eager, fp32, every linear through
``F.linear`` (the BLAS), the unfused AdamW. Each option (``SPEED_VARIANTS``) runs three
training steps of the same small HRM from the same seed (no warm-up, lr 1e-3, the bootstrap
peek and the EMA on), and is compared with the plain run:

- fp32 options (oneDNN linears, fused AdamW, both = the defaults, ``torch.compile``): only
  the order of additions differs, so
  - each step's loss within ``rtol = 1e-6`` (measured: <= 1e-7);
  - the first step's gradients within ``1e-5`` of each tensor's largest gradient
    (measured: <= 7e-7);
  - the parameters after three steps within ``1e-4`` absolute, a tenth of one step of
    the lr (measured: <= 1e-5; Adam's normalised step magnifies the rounding of the
    smallest gradients);
- bf16 autocast (8 bits of mantissa): the first loss within 0.5% (measured: 0.1%).

The ``torch.compile`` cases compile for tens of seconds on a CPU and are marked slow.
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from hrm_rl.bench.train import PLAIN, SPEED_VARIANTS, make_trainer, with_train
from hrm_rl.config import ConfigError, load_config
from hrm_rl.model import onednn
from hrm_rl.model.layers import Linear, set_linear_backend

SMALL = ["task.size=4", "model.hidden_size=64", "model.num_heads=2", "model.H_layers=1",
         "model.L_layers=1", "model.H_cycles=2", "model.L_cycles=2",
         "model.gradient=last_recursion", "train.batch_size=16", "train.device=cpu",
         "train.max_segments=4", "train.lr=1e-3", "train.lr_warmup_steps=0",
         "train.ema_decay=0.999"]
LOSS_RTOL, GRAD_TOL, PARAM_ATOL, BF16_LOSS_RTOL = 1e-6, 1e-5, 1e-4, 5e-3
STEPS = 3

needs_onednn = pytest.mark.skipif(not onednn.AVAILABLE, reason="no oneDNN in this PyTorch")


def _train(changes: dict) -> tuple[list[float], dict[str, torch.Tensor], dict[str, torch.Tensor]]:
    """Losses of ``STEPS`` steps, the first step's gradients and the final parameters."""
    torch.manual_seed(0)
    trainer = make_trainer(with_train(load_config(None, SMALL), **changes), n_puzzles=64)
    losses, grads = [], {}
    for i in range(STEPS):
        stats = trainer.train_step()
        losses.append(stats.lm_loss + stats.q_halt_loss + stats.q_continue_loss)
        if i == 0:
            grads = {n: p.grad.clone() for n, p in trainer.model.named_parameters()
                     if p.grad is not None}
    params = {n: p.detach().clone() for n, p in trainer.model.named_parameters()}
    return losses, grads, params


@pytest.fixture(scope="module")
def plain():
    return _train(PLAIN)


def _assert_same_training(run, plain) -> None:
    losses, grads, params = run
    ref_losses, ref_grads, ref_params = plain
    assert losses == pytest.approx(ref_losses, rel=LOSS_RTOL)
    assert grads.keys() == ref_grads.keys()
    for name, grad in grads.items():
        scale = ref_grads[name].abs().max().clamp_min(1e-12)
        assert (grad - ref_grads[name]).abs().max() <= GRAD_TOL * scale, name
    for name, p in params.items():
        assert (p - ref_params[name]).abs().max() <= PARAM_ATOL, name


@pytest.mark.parametrize("option", ["onednn_matmul", "fused_adamw", "defaults_fp32"])
def test_fp32_speed_options_train_as_the_plain_step(option, plain):
    if SPEED_VARIANTS[option]["matmul"] == "onednn" and not onednn.AVAILABLE:
        pytest.skip("no oneDNN in this PyTorch")
    _assert_same_training(_train(SPEED_VARIANTS[option]), plain)


def test_the_defaults_train_as_the_plain_step_within_their_precision(plain):
    """The defaults are fp32 (to the fp32 tolerances) or bf16 (to bf16's), as the CPU has it."""
    from hrm_rl.cpu_defaults import choose_precision

    run = _train(SPEED_VARIANTS["defaults"])
    if choose_precision("auto", torch.device("cpu")).backend == "fp32":
        _assert_same_training(run, plain)
    else:
        assert run[0][0] == pytest.approx(plain[0][0], rel=BF16_LOSS_RTOL)


@pytest.mark.slow
@pytest.mark.parametrize("option", ["compile_model", "compile_blocks"])
def test_compiled_steps_train_as_the_plain_step(option, plain):
    torch._dynamo.reset()
    _assert_same_training(_train(SPEED_VARIANTS[option]), plain)


def test_bf16_autocast_gives_the_plain_loss_to_half_a_percent(plain):
    losses, _, _ = _train(SPEED_VARIANTS["bf16"])
    assert losses[0] == pytest.approx(plain[0][0], rel=BF16_LOSS_RTOL)


def test_bf16_gradients_of_a_trained_core_follow_fp32():
    """On trained weights attention is sharp, so its scores must not be rounded to bf16: they
    once were, and the gradients of the bundled sudoku6 core under bf16 autocast were 35% off
    fp32's (cosine 0.986), which cost bf16 training accuracy per step. With fp32 scores:
    6% (cosine 0.999). One batch of 128 puzzles after 3 segments, all parameters together."""
    import numpy as np

    from hrm_rl.agents.act import act_loss
    from hrm_rl.checkpoint import load_checkpoint

    ckpt = load_checkpoint("sudoku6")
    model, task = ckpt.model.train(), ckpt.task
    batch = task.sample(128, ckpt.config.data, np.random.default_rng(11))
    inputs, labels, ids = (torch.as_tensor(np.asarray(a), dtype=torch.long)
                           for a in (batch.inputs, batch.labels, batch.puzzle_ids))
    carry = model.initial_carry(128)
    with torch.no_grad():
        for _ in range(3):
            carry = model(carry, inputs, ids).carry

    def gradient(precision: str) -> torch.Tensor:
        model.zero_grad()
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=precision == "bf16"):
            out = model(carry, inputs, ids)
        correct = task.is_correct(out.logits.argmax(-1), labels)
        loss, _ = act_loss(out, labels, correct, torch.sigmoid(out.q_continue.detach()),
                           "softmax", 0.5)
        loss.backward()
        return torch.cat([p.grad.flatten() for p in model.parameters() if p.grad is not None])

    fp32, bf16 = gradient("fp32"), gradient("bf16")
    assert ((bf16 - fp32).norm() / fp32.norm()).item() < 0.15
    assert F.cosine_similarity(bf16, fp32, 0).item() > 0.997

def test_the_defaults_are_the_bench_defaults_variant():
    train = load_config(None, []).train  # auto precision and linears, fused AdamW, eager
    assert {key: getattr(train, key) for key in SPEED_VARIANTS["defaults"]} == \
        SPEED_VARIANTS["defaults"]


@needs_onednn
@pytest.mark.parametrize("bias", [False, True])
def test_onednn_linear_matches_f_linear_forward_and_backward(bias):
    torch.manual_seed(0)
    layer = Linear(48, 40, bias=bias)
    with torch.no_grad():
        if bias:
            layer.bias.normal_()
    x = torch.randn(3, 9, 60)[..., 5:53].requires_grad_()  # 3-D and not contiguous
    results = []
    for backend in ("onednn", "aten"):
        set_linear_backend(layer, backend)
        layer.zero_grad(set_to_none=True)
        x.grad = None
        y = layer(x)
        (y * torch.linspace(-1, 1, 40)).sum().backward()
        results.append([y.detach(), x.grad] + [p.grad for p in layer.parameters()])
    for mine, theirs in zip(*results):
        assert torch.allclose(mine, theirs, rtol=1e-5, atol=1e-5)


def test_onednn_linear_leaves_float64_bf16_and_empty_inputs_to_f_linear():
    w = torch.randn(8, 4, dtype=torch.float64)
    x = torch.randn(5, 4, dtype=torch.float64)
    assert not onednn.applies(x, w)
    assert torch.equal(onednn.linear(x, w), F.linear(x, w))  # the reference's float64 path
    assert not onednn.applies(torch.randn(0, 4), w.float())
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert not onednn.applies(x.float(), w.float())


def test_speed_option_values_are_checked():
    for key, value, words in (("compile", "fast", "'blocks'"), ("matmul", "mkl", "'onednn'")):
        with pytest.raises(ConfigError, match=f"train.{key}: must be .*{words}"):
            load_config(None, [f"train.{key}={value}"])
    assert load_config(None, ["train.compile=true"]).train.compile is True
    assert load_config(None, ["train.compile=blocks"]).train.compile == "blocks"


# -- train.matmul: auto (hrm_rl.cpu_defaults) -----------------------------------------------

def test_matmul_rule_reads_only_the_cpu():
    from hrm_rl.cpu_defaults import CPUInfo, matmul_rule

    amd512 = CPUInfo("AuthenticAMD", "AMD EPYC 9R14", frozenset({"avx2", "avx512f"}))
    amd2 = CPUInfo("AuthenticAMD", "AMD EPYC", frozenset({"avx2"}))
    intel = CPUInfo("GenuineIntel", "Intel Xeon", frozenset({"avx2", "avx512f", "amx_bf16"}))
    other = CPUInfo("unknown", "aarch64", frozenset())
    assert [matmul_rule(c)[0] for c in (amd512, amd2, intel, other)] == \
        ["onednn", "aten", "aten", "aten"]
    assert matmul_rule(amd512) == matmul_rule(amd512)   # deterministic
    # products too small to repay oneDNN's re-layout keep MKL, at any CPU
    from hrm_rl.cpu_defaults import ONEDNN_MIN_ROWS
    assert matmul_rule(amd512, rows=ONEDNN_MIN_ROWS)[0] == "onednn"
    assert matmul_rule(amd512, rows=ONEDNN_MIN_ROWS - 1)[0] == "aten"
    assert "too small" in matmul_rule(amd512, rows=512)[1]
    assert matmul_rule(intel, rows=10**6)[0] == "aten"


def test_precision_rule_reads_only_the_cpu():
    from hrm_rl.cpu_defaults import CPUInfo, choose_precision, precision_rule

    amx = CPUInfo("GenuineIntel", "Intel Xeon", frozenset({"avx2", "avx512f", "amx_bf16",
                                                           "avx512_bf16"}))
    zen4 = CPUInfo("AuthenticAMD", "AMD EPYC", frozenset({"avx2", "avx512f", "avx512_bf16"}))
    zen3 = CPUInfo("AuthenticAMD", "AMD EPYC", frozenset({"avx2"}))
    skylake = CPUInfo("GenuineIntel", "Intel Xeon", frozenset({"avx2", "avx512f"}))
    other = CPUInfo("unknown", "aarch64", frozenset())
    assert [precision_rule(c)[0] for c in (amx, zen4, zen3, skylake, other)] == \
        ["bf16", "bf16", "fp32", "fp32", "fp32"]
    cpu = torch.device("cpu")
    assert choose_precision("auto", cpu, zen4).backend == "bf16"
    assert "AVX512-bf16" in choose_precision("auto", cpu, zen4).reason
    assert choose_precision("auto", cpu, zen3).backend == "fp32"
    assert choose_precision("fp32", cpu, zen4).backend == "fp32"      # set: kept
    assert choose_precision("bf16", cpu, zen3).backend == "bf16"
    assert choose_precision("auto", torch.device("meta"), amx).backend == "fp32"  # not a CPU


def test_auto_precision_resolves_into_the_saved_config(tmp_path):
    from hrm_rl.agents.trainer import ACTTrainer
    from hrm_rl.cpu_defaults import cpu_info, precision_rule

    config = load_config("sudoku4-tiny", ["train.steps=1", "train.eval_every=1",
                                          "train.checkpoint_every=1", "train.threads=1",
                                          "train.device=cpu", "train.precision=auto"])
    trainer = ACTTrainer(config, tmp_path / "run", progress=False)
    trainer.fit()
    expected = precision_rule(cpu_info())[0]
    assert trainer.config.train.precision == expected
    # evaluate(precision=) overrides the run's: fp32 is what the envs run a bf16 core in
    from hrm_rl.evaluation import evaluate

    fp32 = trainer.evaluate(n=8, precision="fp32")
    with trainer._ema_weights():
        plain = evaluate(trainer.model, trainer.task, trainer.eval_puzzles(8),
                         trainer.config.train.max_segments, 8, progress=False)
    assert fp32.to_dict() == plain.to_dict()
    assert f"precision: {expected}" in (tmp_path / "run" / "config.yaml").read_text()
    assert load_config(None).train.precision == "auto"      # the default
    with pytest.raises(ValueError, match="train.precision"):
        load_config(None, ["train.precision=fp16"])


def test_auto_matmul_resolves_into_the_saved_config(tmp_path):
    from hrm_rl.agents.trainer import ACTTrainer
    from hrm_rl.cpu_defaults import choose_matmul, cpu_info, matmul_rule
    from hrm_rl.model.layers import Linear

    config = load_config("sudoku4-tiny", ["train.steps=1", "train.eval_every=1",
                                          "train.checkpoint_every=1", "train.threads=1",
                                          "train.device=cpu"])
    assert config.train.matmul == "auto"
    trainer = ACTTrainer(config, tmp_path / "run", progress=False)
    trainer.fit()
    rows = config.train.batch_size * 16      # sudoku4-tiny: 4x4 puzzles
    expected = matmul_rule(cpu_info(), rows)[0] if onednn.AVAILABLE else "aten"
    assert trainer.config.train.matmul == expected
    assert f"matmul: {expected}" in (tmp_path / "run" / "config.yaml").read_text()
    assert {m.backend for m in trainer.model.modules() if isinstance(m, Linear)} == {expected}
    assert choose_matmul("onednn", torch.device("cpu")).backend == "onednn"
    assert choose_matmul("auto", torch.device("meta")).backend == "aten"
