"""Full-image inference: sliding window with overlap, Gaussian blending and flip test-time augmentation."""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F

from pentad_core.errors import ConfigError


def gaussian_importance(size: int, sigma_scale: float = 0.125, device: torch.device | None = None) -> torch.Tensor:
    """``(size, size)`` Gaussian weights peaking at the window centre (nnU-Net: sigma = size / 8).

    The minimum is clamped to a small positive value so that every pixel has a non-zero weight.
    """
    coordinates = torch.arange(size, dtype=torch.float32, device=device) - (size - 1) / 2
    sigma = max(size * sigma_scale, 1e-3)
    one_d = torch.exp(-(coordinates**2) / (2 * sigma**2))
    weights = one_d[:, None] * one_d[None, :]
    weights = weights / weights.max()
    return weights.clamp_min(1e-3)


def window_starts(length: int, window: int, step: int) -> list[int]:
    """Start offsets covering ``[0, length)`` with windows of ``window`` every ``step``; the last ends at the edge."""
    if length <= window:
        return [0]
    starts = list(range(0, length - window + 1, step))
    if starts[-1] != length - window:
        starts.append(length - window)
    return starts


def pad_to_multiple(images: torch.Tensor, multiple: int) -> torch.Tensor:
    """Pad ``(B, C, H, W)`` images at the bottom and right to multiples of ``multiple`` (reflect; replicate
    when the image is smaller than the padding).

    While tracing (ONNX export) the padding is always written into the graph, computed from the input's
    height and width, so the exported network takes any size at least ``multiple`` (not only the
    example's); in eager mode an image that needs none is returned as it is.
    """
    height, width = images.shape[-2:]
    pad_h, pad_w = (-height) % multiple, (-width) % multiple
    if not (pad_h or pad_w or torch.jit.is_tracing()):
        return images
    mode = "reflect" if pad_h < height and pad_w < width else "replicate"
    return F.pad(images, (0, pad_w, 0, pad_h), mode=mode)


def _activate(logits: torch.Tensor) -> torch.Tensor:
    return torch.sigmoid(logits) if logits.shape[1] == 1 else torch.softmax(logits, dim=1)


@torch.no_grad()
def sliding_window_inference(
    model: Callable[[torch.Tensor], torch.Tensor],
    images: torch.Tensor,
    window: int = 128,
    overlap: float = 0.5,
    batch_size: int = 16,
    blending: str = "gaussian",
    tta: bool = False,
) -> torch.Tensor:
    """Probabilities for whole images of any size.

    Windows of ``window`` x ``window`` pixels overlap by ``overlap``; their probabilities are blended
    with Gaussian (or constant) weights. Images smaller than the window are padded (reflect) and the
    result cropped back. With ``tta`` each window is also predicted flipped left-right, up-down and
    both, and the four results are averaged.

    Args:
        model: Maps ``(N, C, w, w)`` to logits ``(N, K, w, w)``.
        images: ``(B, C, H, W)``.
        window: Window side.
        overlap: Fraction in ``[0, 1)`` of the window shared by neighbours.
        batch_size: Windows per forward pass.
        blending: ``"gaussian"`` or ``"constant"``.
        tta: Flip test-time augmentation.

    Returns:
        ``(B, K, H, W)`` probabilities (sigmoid for ``K == 1``, softmax otherwise).
    """
    if not 0 <= overlap < 1:
        raise ConfigError(f"inference overlap must be in [0, 1), got {overlap}.")
    if blending not in ("gaussian", "constant"):
        raise ConfigError(f"blending must be 'gaussian' or 'constant', got {blending!r}.")
    if images.ndim != 4:
        raise ConfigError(f"sliding-window inference expects (B, C, H, W) images, got shape {tuple(images.shape)}.")
    batch, _, height, width = images.shape
    pad_h, pad_w = max(0, window - height), max(0, window - width)
    if pad_h or pad_w:
        mode = "reflect" if pad_h < height and pad_w < width else "replicate"
        images = F.pad(images, (0, pad_w, 0, pad_h), mode=mode)
    padded_h, padded_w = images.shape[-2:]
    step = max(1, round(window * (1 - overlap)))
    corners = [
        (top, left) for top in window_starts(padded_h, window, step) for left in window_starts(padded_w, window, step)
    ]
    if blending == "gaussian":
        weights = gaussian_importance(window, device=images.device)
    else:
        weights = torch.ones(window, window, device=images.device)
    flips: list[tuple[int, ...]] = [(), (3,), (2,), (2, 3)] if tta else [()]

    output: torch.Tensor | None = None
    normaliser = torch.zeros(1, 1, padded_h, padded_w, device=images.device)
    for top, left in corners:
        normaliser[..., top : top + window, left : left + window] += weights
    for start in range(0, batch * len(corners), batch_size):
        jobs = [(divmod(job, len(corners))) for job in range(start, min(start + batch_size, batch * len(corners)))]
        tiles = torch.stack(
            [
                images[b, :, corners[c][0] : corners[c][0] + window, corners[c][1] : corners[c][1] + window]
                for b, c in jobs
            ]
        )
        probabilities = 0
        for dims in flips:
            flipped = tiles.flip(dims) if dims else tiles
            result = _activate(model(flipped).float())
            probabilities = probabilities + (result.flip(dims) if dims else result)
        probabilities = probabilities / len(flips)
        if output is None:
            output = torch.zeros(batch, probabilities.shape[1], padded_h, padded_w, device=images.device)
        for (b, c), tile in zip(jobs, probabilities):
            top, left = corners[c]
            output[b, :, top : top + window, left : left + window] += tile * weights
    assert output is not None
    return (output / normaliser)[..., :height, :width]
