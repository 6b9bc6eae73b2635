"""An exponential moving average (EMA) of a model's weights, for evaluation and checkpoints.

TRM evaluates and checkpoints the EMA of its weights (decay 0.999), which steadies small
models trained on little data. Usage::

    ema = EMA(model, decay=0.999)
    for batch in ...:
        ...; optimizer.step()
        ema.update(model)             # after every optimiser step
    with ema.swapped(model):          # the model holds the averaged weights inside
        evaluate(model, ...)
    # the trained weights are back here

The decay warms up as in TensorFlow's ``ExponentialMovingAverage``: update ``n`` (from 0)
uses ``min(decay, (1 + n) / (10 + n))``, so a short run's average is not dominated by the
untrained start (with a flat 0.999, the initial weights still hold 55% of the average after
600 steps). Pass ``warmup=False`` for the plain average TRM's reference code keeps.

Only trainable parameters are averaged (buffers such as HRM's fixed ``H_init`` are not
trained and stay as they are). ``torch.compile`` and ``DistributedDataParallel`` wrappers
are looked through, so the wrapped or the bare model may be passed.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import torch
from torch import nn


def _unwrap(model: nn.Module) -> nn.Module:
    """The bare module inside ``torch.compile`` (``_orig_mod``) and DDP (``module``) wrappers."""
    while True:
        inner = next((m for m in (getattr(model, "_orig_mod", None), getattr(model, "module", None))
                      if isinstance(m, nn.Module)), None)
        if inner is None:
            return model
        model = inner


def _trainable(model: nn.Module) -> dict[str, torch.Tensor]:
    return {name: p for name, p in _unwrap(model).named_parameters() if p.requires_grad}


class EMA:
    """Shadow copies of a model's trainable parameters, ``shadow = d * shadow + (1 - d) * w``.

    Args:
        model: the model whose weights to average; the shadow starts as a copy of them, on
            their device and in their dtype.
        decay: ``d`` in ``[0, 1)``; 0.999 averages over roughly the last 1000 updates.
        warmup: use ``min(decay, (1 + n) / (10 + n))`` at update ``n`` (see above).
    """

    def __init__(self, model: nn.Module, decay: float = 0.999, warmup: bool = True) -> None:
        if not 0.0 <= decay < 1.0:
            raise ValueError(f"EMA decay must be in [0, 1), got {decay}")
        self.decay = decay
        self.warmup = warmup
        self.num_updates = 0
        self.shadow: dict[str, torch.Tensor] = {
            name: p.detach().clone() for name, p in _trainable(model).items()
        }

    def _params(self, model: nn.Module) -> dict[str, torch.Tensor]:
        params = _trainable(model)
        if params.keys() != self.shadow.keys():
            missing = sorted(self.shadow.keys() - params.keys())
            extra = sorted(params.keys() - self.shadow.keys())
            raise ValueError(f"model does not match the EMA's parameters (missing {missing[:3]}, "
                             f"unexpected {extra[:3]}); was the EMA made for another model?")
        return params

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        """Fold the model's current weights into the average (call after each optimiser step)."""
        n = self.num_updates
        decay = min(self.decay, (1 + n) / (10 + n)) if self.warmup else self.decay
        for name, p in self._params(model).items():
            self.shadow[name].lerp_(p.detach().to(self.shadow[name].dtype), 1.0 - decay)
        self.num_updates += 1

    @torch.no_grad()
    def copy_to(self, model: nn.Module) -> None:
        """Overwrite the model's parameters with the averaged weights (no way back; see
        ``swapped`` for a temporary swap)."""
        for name, p in self._params(model).items():
            p.copy_(self.shadow[name])

    @contextmanager
    def swapped(self, model: nn.Module) -> Iterator[nn.Module]:
        """Inside, ``model`` holds the averaged weights; on exit (even by an exception) its
        own weights are restored. Yields ``model``."""
        params = self._params(model)
        with torch.no_grad():
            backup = {name: p.detach().clone() for name, p in params.items()}
        self.copy_to(model)
        try:
            yield model
        finally:
            with torch.no_grad():
                for name, p in params.items():
                    p.copy_(backup[name])

    def state_dict(self) -> dict[str, Any]:
        """``{"decay", "warmup", "num_updates", "shadow": {name: tensor}}`` (for
        ``torch.save``)."""
        return {"decay": self.decay, "warmup": self.warmup, "num_updates": self.num_updates,
                "shadow": {name: t.detach().clone() for name, t in self.shadow.items()}}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore ``state_dict()``; tensors keep this EMA's device and dtype.

        Raises:
            ValueError: the saved parameter names or shapes differ from this EMA's.
        """
        saved = state["shadow"]
        if saved.keys() != self.shadow.keys():
            raise ValueError("EMA state holds other parameters than this model's "
                             f"({sorted(saved.keys() ^ self.shadow.keys())[:3]} ...)")
        for name, t in saved.items():
            if t.shape != self.shadow[name].shape:
                raise ValueError(f"EMA state {name} has shape {tuple(t.shape)}, "
                                 f"this model needs {tuple(self.shadow[name].shape)}")
        with torch.no_grad():
            for name, t in saved.items():
                self.shadow[name].copy_(t)
        self.decay = float(state["decay"])
        self.warmup = bool(state.get("warmup", False))  # states saved before warm-up existed
        self.num_updates = int(state["num_updates"])
