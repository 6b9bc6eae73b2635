"""Our ``AdamATan2`` against the ``adam-atan2-pytorch`` package; prints one JSON object.

Both optimisers start from the same parameters (the tiny sudoku4 HRM's 13 tensors) and get
the same gradients (random, of the size a training gradient has) for ``--steps`` steps; the
figure is the largest absolute difference of any parameter afterwards, in float32 and
float64, for:

* ``same_constants``: ours with the package's ``a = 1.27, b = 1`` (their default) against
  theirs: the same update, so only rounding should differ;
* ``hrm_reference_constants``: ours and theirs both at ``a = b = 1``, the update of
  imoneoi's ``adam-atan2`` CUDA kernel that the HRM reference trains with;
* ``defaults``: each at its own default (ours ``a = 1``, theirs ``a = 1.27`` and betas
  ``(0.9, 0.99)``): what swapping one for the other would change, for scale.

The package is not a dependency: ``pip install adam-atan2-pytorch`` first (it is pure
PyTorch and installs on a CPU).

    python scripts/experiments/compare_adam_atan2.py [--steps 5]
"""

from __future__ import annotations

import argparse
import json
from typing import Any

import torch

from hrm_rl.optim import AdamATan2

LR, WEIGHT_DECAY, BETAS = 1e-3, 0.1, (0.9, 0.95)


def tiny_parameters(dtype: torch.dtype) -> list[torch.Tensor]:
    """The tiny sudoku4 HRM's parameters (h128, 1+1 layers), as ``dtype`` leaves."""
    from hrm_rl.config import load_config
    from hrm_rl.model import build_model
    from hrm_rl.tasks import make_task

    config = load_config("configs/sudoku4-tiny.yaml")
    torch.manual_seed(0)
    model = build_model(config.model.fit_to(make_task(config.task)))
    return [p.detach().to(dtype) for p in model.parameters()]


def run_pair(ours_kw: dict[str, Any], theirs_kw: dict[str, Any], steps: int,
             dtype: torch.dtype) -> float:
    """Largest absolute parameter difference after ``steps`` steps on the same gradients."""
    from adam_atan2_pytorch import AdamAtan2

    start = tiny_parameters(dtype)
    mine = [torch.nn.Parameter(p.clone()) for p in start]
    theirs = [torch.nn.Parameter(p.clone()) for p in start]
    opt_mine = AdamATan2(mine, lr=LR, weight_decay=WEIGHT_DECAY, **ours_kw)
    opt_theirs = AdamAtan2(theirs, lr=LR, weight_decay=WEIGHT_DECAY, **theirs_kw)
    gen = torch.Generator().manual_seed(1)
    for _ in range(steps):
        for a, b in zip(mine, theirs):
            grad = torch.randn(a.shape, generator=gen, dtype=torch.float64).to(dtype) * 1e-2
            a.grad, b.grad = grad.clone(), grad.clone()
        opt_mine.step()
        opt_theirs.step()
    return max((a - b).abs().max().item() for a, b in zip(mine, theirs))


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=5)
    args = parser.parse_args(argv)
    try:
        import adam_atan2_pytorch  # noqa: F401
        from importlib.metadata import version
        package = version("adam-atan2-pytorch")
    except ImportError:
        out = {"skipped": "adam-atan2-pytorch is not installed (pip install adam-atan2-pytorch)"}
        print(json.dumps(out))
        return out
    pairs = {
        "same_constants": ({"betas": BETAS, "a": 1.27, "b": 1.0},
                           {"betas": BETAS, "a": 1.27, "b": 1.0}),
        "hrm_reference_constants": ({"betas": BETAS, "a": 1.0, "b": 1.0},
                                    {"betas": BETAS, "a": 1.0, "b": 1.0}),
        "defaults": ({"betas": BETAS}, {}),
    }
    out: dict[str, Any] = {"package_version": package, "steps": args.steps, "lr": LR,
                           "weight_decay": WEIGHT_DECAY, "max_abs_param_difference": {}}
    for name, (ours_kw, theirs_kw) in pairs.items():
        out["max_abs_param_difference"][name] = {
            str(dtype).removeprefix("torch."): run_pair(ours_kw, theirs_kw, args.steps, dtype)
            for dtype in (torch.float32, torch.float64)}
    print(json.dumps(out, indent=2))
    return out


if __name__ == "__main__":
    main()
