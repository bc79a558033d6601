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


class Lookahead(nn.Module):
    """airbench94's lookahead: every ``every`` steps the weights are pulled into a slow copy and
    set to it.

    At step ``t`` of ``T`` (a multiple of ``every``) with ``decay = base**every * (t / T)**3``::

        slow = decay * slow + (1 - decay) * weights;  weights = slow

    Early on the decay is near 0 (the slow copy just follows the weights); towards the end it
    approaches ``base**every`` and the weights become an average over the last few hundred
    steps, which removes the noise of the final, small-learning-rate steps. Unlike
    :class:`ModelEMA` the training weights themselves are replaced, and the floating-point
    buffers (batch-norm running statistics) are averaged too. At the last step the weights take
    the slow copy. The slow copy is a submodule, so checkpoints (and ``--resume``) carry it.

    Args:
        model: The model being trained (copied once).
        every: Steps between two updates (airbench94: 5).
        base: Per-step decay at the end of training (airbench94: 0.95).
    """

    def __init__(self, model: nn.Module, every: int = 5, base: float = 0.95) -> None:
        super().__init__()
        if every < 1:
            raise ValueError(f"lookahead interval must be at least 1, got {every}")
        self.module = copy.deepcopy(model)  # never run, so its train/eval mode does not matter
        for parameter in self.module.parameters():
            parameter.requires_grad_(False)
        self.every, self.base = every, base

    def decay(self, step: int, total_steps: int) -> float:
        """The decay of the update at ``step`` (1-based count of optimiser steps)."""
        return self.base**self.every * (min(step, total_steps) / max(total_steps, 1)) ** 3

    @torch.no_grad()
    def sync(self, model: nn.Module) -> None:
        """Make the slow copy equal to ``model`` (after a data-dependent initialisation)."""
        self.module.load_state_dict(model.state_dict())

    @torch.no_grad()
    def step(self, model: nn.Module, step: int, total_steps: int) -> bool:
        """Update after optimiser step ``step`` (1-based) of ``total_steps``; returns whether it did."""
        last = step >= total_steps
        if step % self.every and not last:
            return False
        decay = 1.0 if last else self.decay(step, total_steps)
        for slow, live in zip(self.module.state_dict().values(), model.state_dict().values()):
            if slow.is_floating_point():
                slow.lerp_(live, 1.0 - decay)
                live.copy_(slow)
        return True
