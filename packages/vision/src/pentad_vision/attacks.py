"""Adversarial robustness: FGSM (Goodfellow et al. 2015) and PGD (Madry et al. 2018), L-infinity.

Attacks work on images in ``[0, 1]`` against a network that takes such images (see
:class:`~pentad_vision.module.Normalized`), so ``eps = 8/255`` means 8 grey levels.
"""

from __future__ import annotations

from fractions import Fraction

import torch
import torch.nn.functional as F
from torch import nn

from pentad_core.errors import ConfigError

ATTACKS = ("fgsm", "pgd")


def parse_eps(text: str | float) -> float:
    """``"8/255"`` or ``"0.03"`` -> float in ``[0, 1]``.

    Raises:
        ConfigError: For anything else or a value outside ``[0, 1]``.
    """
    try:
        value = float(Fraction(str(text).strip()))
    except (ValueError, ZeroDivisionError):
        raise ConfigError(f"--eps {text!r} must be a number or a fraction such as 8/255.") from None
    if not 0.0 <= value <= 1.0:
        raise ConfigError(f"--eps {text} must lie in [0, 1] (images are scaled to [0, 1]).")
    return value


def fgsm(model: nn.Module, images: torch.Tensor, labels: torch.Tensor, eps: float) -> torch.Tensor:
    """One signed-gradient step of size ``eps``; returns adversarial images ``(B, C, H, W)`` in ``[0, 1]``."""
    x = images.detach().clone().requires_grad_(True)
    loss = F.cross_entropy(model(x), labels)
    (gradient,) = torch.autograd.grad(loss, x)
    return (x + eps * gradient.sign()).clamp(0, 1).detach()


def pgd(
    model: nn.Module,
    images: torch.Tensor,
    labels: torch.Tensor,
    eps: float,
    steps: int = 10,
    step_size: float | None = None,
    random_start: bool = True,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Projected gradient descent on the loss inside the ``eps`` L-infinity ball.

    Args:
        model: Network on ``[0, 1]`` images.
        images: ``(B, C, H, W)`` in ``[0, 1]``.
        labels: ``(B,)`` true classes.
        eps: Radius of the ball.
        steps: Gradient steps.
        step_size: Size of each step (default ``2.5 * eps / steps``, Madry et al.).
        random_start: Start from a uniform random point of the ball.
    """
    step_size = 2.5 * eps / steps if step_size is None else step_size
    x = images.detach()
    adversarial = x.clone()
    if random_start:
        noise = torch.rand(x.shape, generator=generator, device=x.device) * 2 - 1
        adversarial = (x + eps * noise).clamp(0, 1)
    for _ in range(steps):
        adversarial.requires_grad_(True)
        loss = F.cross_entropy(model(adversarial), labels)
        (gradient,) = torch.autograd.grad(loss, adversarial)
        adversarial = adversarial.detach() + step_size * gradient.sign()
        adversarial = torch.minimum(torch.maximum(adversarial, x - eps), x + eps).clamp(0, 1)
    return adversarial.detach()


def attack(name: str, model: nn.Module, images: torch.Tensor, labels: torch.Tensor, eps: float, steps: int = 10):
    """Run the attack ``name`` (``fgsm`` or ``pgd``) in eval mode; returns adversarial images."""
    if name not in ATTACKS:
        raise ConfigError(f"--attack {name!r} is not one of {', '.join(ATTACKS)}.")
    was_training = model.training
    model.eval()
    try:
        with torch.enable_grad():
            if name == "fgsm":
                return fgsm(model, images, labels, eps)
            return pgd(model, images, labels, eps, steps)
    finally:
        model.train(was_training)
