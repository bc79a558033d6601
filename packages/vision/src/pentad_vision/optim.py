"""Optimisers, parameter groups and learning-rate schedules."""

from __future__ import annotations

import math

import torch
from torch import nn

from pentad_core.errors import ConfigError

OPTIMIZERS = ("sgd", "adamw")
SCHEDULES = ("cosine", "onecycle", "constant")


def is_norm(module: nn.Module) -> bool:
    """Whether ``module`` is a normalisation layer (batch, group, instance or layer norm)."""
    return isinstance(module, (nn.modules.batchnorm._NormBase, nn.GroupNorm, nn.LayerNorm))


def param_groups(model: nn.Module, weight_decay: float, norm_lr_scale: float = 1.0) -> list[dict]:
    """Split trainable parameters: weight decay on conv/linear weights, none on norms and biases.

    A parameter with at most one dimension is a bias or a normalisation scale/shift; decaying it
    only pulls the network towards a worse function (the timm and nanoGPT convention).

    With ``norm_lr_scale != 1`` the normalisation layers' parameters form a group of their own
    whose learning rate is multiplied by it (``lr_scale``, read by :func:`build_optimizer`) and
    whose weight decay is ``weight_decay / norm_lr_scale``: SGD's coupled decay then shrinks
    them by the same ``lr * weight_decay`` per step as the weights. This is airbench94's
    treatment of its batch-norm shifts (64x learning rate): they are the only per-channel
    offsets of the network, and a large step lets them follow the fast-moving activations.

    Returns:
        ``[{"params": decayed, "weight_decay": weight_decay}, {"params": others, "weight_decay": 0.0}]``
        plus, with a scale, ``{"params": norms, "weight_decay": ..., "lr_scale": norm_lr_scale}``
        (empty groups are left out).
    """
    if norm_lr_scale <= 0:
        raise ConfigError(f"optim.norm_lr_scale must be positive, got {norm_lr_scale}.")
    norms: set[int] = set()
    if norm_lr_scale != 1.0:
        norms = {id(p) for m in model.modules() if is_norm(m) for p in m.parameters(recurse=False)}
    decay, no_decay, scaled = [], [], []
    for parameter in model.parameters():
        if not parameter.requires_grad:
            continue
        if id(parameter) in norms:
            scaled.append(parameter)
        else:
            (decay if parameter.ndim > 1 else no_decay).append(parameter)
    groups = []
    if decay:
        groups.append({"params": decay, "weight_decay": weight_decay})
    if no_decay:
        groups.append({"params": no_decay, "weight_decay": 0.0})
    if scaled:
        groups.append({"params": scaled, "weight_decay": weight_decay / norm_lr_scale, "lr_scale": norm_lr_scale})
    return groups


def build_optimizer(
    model: nn.Module,
    name: str = "sgd",
    lr: float = 0.05,
    weight_decay: float = 5e-4,
    momentum: float = 0.9,
    nesterov: bool = True,
    betas: tuple[float, float] = (0.9, 0.999),
    norm_lr_scale: float = 1.0,
) -> torch.optim.Optimizer:
    """SGD (momentum, Nesterov) or AdamW over :func:`param_groups` (a group's ``lr_scale`` multiplies ``lr``)."""
    if lr <= 0:
        raise ConfigError(f"optimizer lr must be positive, got {lr}.")
    groups = param_groups(model, weight_decay, norm_lr_scale)
    for group in groups:
        group["lr"] = lr * group.pop("lr_scale", 1.0)
    if name == "sgd":
        return torch.optim.SGD(groups, lr=lr, momentum=momentum, nesterov=nesterov and momentum > 0)
    if name == "adamw":
        return torch.optim.AdamW(groups, lr=lr, betas=tuple(betas))
    raise ConfigError(f"optimizer {name!r} is not one of {', '.join(OPTIMIZERS)}.")


def lr_factor(
    step: int,
    total_steps: int,
    schedule: str,
    warmup_steps: int = 0,
    final_factor: float = 0.0,
    start_factor: float = 0.0,
) -> float:
    """Multiplier of the base learning rate at ``step`` (0-based) of ``total_steps``.

    The warm-up rises linearly from ``start_factor`` (airbench94: 0.2) to 1 over ``warmup_steps``.

    * ``cosine``: linear warm-up, then half a cosine down to ``final_factor``;
    * ``onecycle``: linear warm-up, then linear decay to ``final_factor`` (the airbench triangle);
    * ``constant``: warm-up, then 1.
    """
    if schedule not in SCHEDULES:
        raise ConfigError(f"schedule {schedule!r} is not one of {', '.join(SCHEDULES)}.")
    if warmup_steps > 0 and step < warmup_steps:
        return start_factor + (1.0 - start_factor) * (step + 1) / warmup_steps
    if schedule == "constant":
        return 1.0
    remaining = max(total_steps - warmup_steps, 1)
    progress = min(max(step - warmup_steps, 0) / remaining, 1.0)
    if schedule == "cosine":
        return final_factor + (1 - final_factor) * 0.5 * (1 + math.cos(math.pi * progress))
    return 1.0 - (1.0 - final_factor) * progress


def build_scheduler(
    optimizer: torch.optim.Optimizer,
    total_steps: int,
    schedule: str = "cosine",
    warmup_steps: int = 0,
    final_factor: float = 0.0,
    start_factor: float = 0.0,
) -> torch.optim.lr_scheduler.LambdaLR:
    """A per-step :class:`~torch.optim.lr_scheduler.LambdaLR` following :func:`lr_factor`."""
    lr_factor(0, total_steps, schedule)  # validates the name early

    def factor(step: int) -> float:
        return lr_factor(step, total_steps, schedule, warmup_steps, final_factor, start_factor)

    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)
