"""Exponential moving average of model weights (Polyak averaging)."""

from __future__ import annotations

import copy

import torch
from torch import nn


class ModelEMA(nn.Module):
    """Keeps ``shadow = decay * shadow + (1 - decay) * weights`` after every optimiser step.

    Buffers (BatchNorm running statistics) are copied, not averaged. The effective decay warms up
    as ``min(decay, (1 + updates) / (10 + updates))`` so early, random weights fade quickly.

    Args:
        model: The model being trained (copied; the copy is never trained directly).
        decay: Long-run decay per update, e.g. 0.999.
        warmup: Use the warm-up formula above.
    """

    def __init__(self, model: nn.Module, decay: float = 0.999, warmup: bool = True) -> None:
        super().__init__()
        if not 0.0 <= decay < 1.0:
            raise ValueError(f"EMA decay must lie in [0, 1), got {decay}")
        self.module = copy.deepcopy(model).eval()
        for parameter in self.module.parameters():
            parameter.requires_grad_(False)
        self.decay = decay
        self.warmup = warmup
        self.register_buffer("updates", torch.zeros((), dtype=torch.long))

    def current_decay(self) -> float:
        """The decay the next update will use."""
        n = int(self.updates)
        return min(self.decay, (1 + n) / (10 + n)) if self.warmup else self.decay

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        """Move the shadow weights towards ``model``'s."""
        decay = self.current_decay()
        for shadow, live in zip(self.module.parameters(), model.parameters()):
            shadow.lerp_(live.detach(), 1.0 - decay)
        for shadow, live in zip(self.module.buffers(), model.buffers()):
            shadow.copy_(live)
        self.updates += 1

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.module(x)
