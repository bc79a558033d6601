"""Grad-CAM (Selvaraju et al. 2017): where in the image the evidence for a class lies."""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from pentad_core.errors import ConfigError


def default_target_layer(model: nn.Module) -> nn.Module:
    """The last convolution of ``model`` (the usual Grad-CAM target)."""
    convolutions = [m for m in model.modules() if isinstance(m, nn.Conv2d)]
    if not convolutions:
        raise ConfigError(f"{type(model).__name__} has no convolution for Grad-CAM.")
    return convolutions[-1]


class GradCAM:
    """Class-activation maps from the gradients at a convolutional layer.

    Args:
        model: Network ``(B, C, H, W) -> (B, classes)``.
        target_layer: Module whose output is weighted; default :func:`default_target_layer`.

    Example:
        >>> cam = GradCAM(net)
        >>> heatmaps, classes = cam(images)  # (B, H, W) in [0, 1], (B,)
    """

    def __init__(self, model: nn.Module, target_layer: nn.Module | None = None) -> None:
        self.model = model
        self.layer = target_layer if target_layer is not None else default_target_layer(model)

    def __call__(self, images: torch.Tensor, classes: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Heatmaps for ``classes`` (default: the predicted ones).

        Returns:
            ``(heatmaps (B, H, W) in [0, 1], classes (B,))``.
        """
        stored: dict[str, torch.Tensor] = {}

        def keep(module, inputs, output):
            output.retain_grad()
            stored["activation"] = output

        handle = self.layer.register_forward_hook(keep)
        was_training = self.model.training
        self.model.eval()
        try:
            with torch.enable_grad():
                x = images.detach().clone().requires_grad_(True)  # so the graph exists even for frozen nets
                logits = self.model(x)
                if classes is None:
                    classes = logits.argmax(dim=1)
                logits.gather(1, classes[:, None]).sum().backward()
        finally:
            handle.remove()
            self.model.train(was_training)
        activation = stored["activation"]
        weights = activation.grad.mean(dim=(2, 3), keepdim=True)  # global-average-pooled gradients
        cam = F.relu((weights * activation).sum(dim=1, keepdim=True)).detach()
        cam = F.interpolate(cam, size=images.shape[2:], mode="bilinear", align_corners=False)[:, 0]
        peak = cam.flatten(1).max(dim=1).values.clamp_min(1e-12)[:, None, None]
        self.model.zero_grad(set_to_none=True)
        return cam / peak, classes


def overlay(image: torch.Tensor, heatmap: torch.Tensor, alpha: float = 0.45) -> np.ndarray:
    """Blend a heatmap (jet colours) over an image.

    Args:
        image: ``(C, H, W)`` in ``[0, 1]`` (grey is repeated to RGB).
        heatmap: ``(H, W)`` in ``[0, 1]``.

    Returns:
        ``uint8 (H, W, 3)``.
    """
    from matplotlib import colormaps

    picture = image.detach().cpu().float()
    picture = picture.expand(3, -1, -1) if picture.shape[0] == 1 else picture[:3]
    colours = colormaps["jet"](heatmap.detach().cpu().numpy())[..., :3]
    blended = (1 - alpha) * picture.permute(1, 2, 0).numpy() + alpha * colours
    return (np.clip(blended, 0, 1) * 255).astype(np.uint8)
