"""The exponential moving average of the weights: the update and its warm-up, swapping the
average in for evaluation, its state, and checkpoints that hold the average while training
continues from the raw weights."""

from __future__ import annotations

import pytest
import torch

from hrm_rl.agents.trainer import ACTTrainer
from hrm_rl.checkpoint import load_checkpoint
from hrm_rl.ema import EMA
from hrm_rl.envs.halting import HaltingEnv
from hrm_rl.model import HRM, TRM

from conftest import metrics, tiny_model_config, tiny_run_config as tiny
from test_trm import _perturb, _segment, tiny_trm_config


def test_ema_averages_and_swaps_weights_for_evaluation():
    torch.manual_seed(0)
    model = TRM(tiny_trm_config())
    ema = EMA(model, decay=0.9)
    for _ in range(5):
        _perturb(model)
        ema.update(model)
    raw = {n: p.detach().clone() for n, p in model.named_parameters()}
    assert ema.num_updates == 5
    assert all(not torch.equal(ema.shadow[n], raw[n]) for n in raw if raw[n].std() > 0)
    out_raw, _, _ = _segment(model)
    with ema.swapped(model):
        for n, p in model.named_parameters():
            assert torch.equal(p, ema.shadow[n])
        out_ema, _, _ = _segment(model)
    assert not torch.equal(out_raw.logits, out_ema.logits)
    for n, p in model.named_parameters():  # restored
        assert torch.equal(p, raw[n])
    with pytest.raises(RuntimeError), ema.swapped(model):  # restored after an error too
        raise RuntimeError("eval failed")
    assert all(torch.equal(p, raw[n]) for n, p in model.named_parameters())
    ema.copy_to(model)
    assert all(torch.equal(p, ema.shadow[n]) for n, p in model.named_parameters())


def test_ema_update_is_the_exponential_average():
    model = torch.nn.Linear(2, 1, bias=False)
    with torch.no_grad():
        model.weight.fill_(1.0)
    ema = EMA(model, decay=0.75, warmup=False)
    with torch.no_grad():
        model.weight.fill_(5.0)
    ema.update(model)
    torch.testing.assert_close(ema.shadow["weight"], torch.full((1, 2), 2.0))


def test_ema_warmup_forgets_the_start_then_reaches_the_decay():
    model = torch.nn.Linear(1, 1, bias=False)
    with torch.no_grad():
        model.weight.fill_(0.0)
    ema, plain = EMA(model, decay=0.999), EMA(model, decay=0.999, warmup=False)
    with torch.no_grad():
        model.weight.fill_(1.0)
    for _ in range(600):
        ema.update(model), plain.update(model)
    # the untrained start keeps (1 - 1/10) * prod (1 + n)/(10 + n) ~ 0 vs 0.999**600 = 0.55
    assert ema.shadow["weight"].item() > 0.999
    assert abs(plain.shadow["weight"].item() - (1 - 0.999**600)) < 1e-4
    ema.num_updates = 10_000  # long after the warm-up, the configured decay applies
    with torch.no_grad():
        ema.shadow["weight"].fill_(0.0)
    ema.update(model)
    torch.testing.assert_close(ema.shadow["weight"], torch.full((1, 1), 0.001))


def test_ema_state_dict_round_trips_and_rejects_another_model():
    torch.manual_seed(0)
    model = TRM(tiny_trm_config())
    ema = EMA(model)
    _perturb(model)
    ema.update(model)
    fresh = EMA(TRM(tiny_trm_config()), decay=0.5)
    fresh.load_state_dict(ema.state_dict())
    assert fresh.decay == ema.decay and fresh.num_updates == 1
    assert all(torch.equal(fresh.shadow[n], ema.shadow[n]) for n in ema.shadow)
    with pytest.raises(ValueError, match="EMA"):
        EMA(HRM(tiny_model_config())).load_state_dict(ema.state_dict())
    with pytest.raises(ValueError, match="decay"):
        EMA(model, decay=1.0)


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["hrm", "trm"])
def test_ema_checkpoint_holds_the_averaged_weights_and_resume_matches(kind, data_dir, tmp_path):
    """With EMA the checkpoint (what envs and eval load) holds the averaged weights; a
    resumed run still continues from the raw weights and matches an uninterrupted one."""
    extra = ["train.ema_decay=0.9", f"model.kind={kind}", "train.checkpoint_every=4",
             "train.log_every=2"]
    if kind == "trm":
        extra += ["model.H_cycles=2", "model.L_cycles=2"]
    ref = ACTTrainer(tiny(data_dir, "train.steps=8", *extra), tmp_path / "ref", progress=False)
    assert ref.halt_loss == ("bce" if kind == "trm" else "q_learning")
    ref.fit()
    saved = load_checkpoint(tmp_path / "ref")
    shadow = ref.ema.state_dict()["shadow"]
    raw = dict(ref.model.named_parameters())
    differs = False
    for name, param in saved.model.named_parameters():
        assert torch.equal(param.detach(), shadow[name].to(param.dtype))
        differs |= not torch.equal(param.detach(), raw[name].detach())
    assert differs, "EMA weights should differ from the raw weights after training"
    env_model = HaltingEnv(checkpoint=tmp_path / "ref").core.model  # the env loads the EMA
    for name, param in env_model.named_parameters():
        assert torch.equal(param.detach().cpu(), shadow[name].to(param.dtype).cpu())
    part = ACTTrainer(tiny(data_dir, "train.steps=4", *extra), tmp_path / "part", progress=False)
    part.fit()
    resumed = ACTTrainer.resume(tmp_path / "part", ["train.steps=8"], progress=False)
    resumed.fit()
    assert metrics(tmp_path / "part") == metrics(tmp_path / "ref")
    for a, b in zip(ref.model.parameters(), resumed.model.parameters()):
        assert torch.equal(a, b)
