"""Post-training compression: dynamic int8, static int8 (FX graph mode) and magnitude pruning."""

from __future__ import annotations

import copy
import gzip
import io
from collections.abc import Iterable

import torch
from torch import nn
from torch.nn.utils import prune

from pentad_core.errors import ConfigError

METHODS = ("dynamic-int8", "static-int8", "prune")


def state_dict_bytes(model: nn.Module) -> int:
    """Size of the serialised ``state_dict`` in bytes."""
    buffer = io.BytesIO()
    torch.save(model.state_dict(), buffer)
    return buffer.getbuffer().nbytes


def compressed_bytes(model: nn.Module) -> int:
    """Size of the gzip-compressed ``state_dict``: what pruning's zeros save on disk."""
    buffer = io.BytesIO()
    torch.save(model.state_dict(), buffer)
    return len(gzip.compress(buffer.getvalue(), compresslevel=6))


def sparsity(model: nn.Module) -> float:
    """Share of zero weights over all conv and linear weights."""
    total = zeros = 0
    for module in model.modules():
        if isinstance(module, nn.Conv2d | nn.Linear):
            total += module.weight.numel()
            zeros += int((module.weight == 0).sum())
    return zeros / max(total, 1)


def prune_model(model: nn.Module, amount: float) -> nn.Module:
    """Remove the ``amount`` share of conv/linear weights with the smallest magnitude (globally).

    Returns:
        A pruned copy; the zeros are made permanent (no pruning masks remain).
    """
    if not 0.0 <= amount < 1.0:
        raise ConfigError(f"--amount {amount} must lie in [0, 1).")
    pruned = copy.deepcopy(model)
    targets = [(m, "weight") for m in pruned.modules() if isinstance(m, nn.Conv2d | nn.Linear)]
    if not targets:
        raise ConfigError(f"{type(model).__name__} has no conv or linear layer to prune.")
    prune.global_unstructured(targets, pruning_method=prune.L1Unstructured, amount=amount)
    for module, name in targets:
        prune.remove(module, name)
    return pruned


def dynamic_int8(model: nn.Module) -> nn.Module:
    """Linear layers with int8 weights, activations quantised on the fly (CPU inference)."""
    return torch.ao.quantization.quantize_dynamic(copy.deepcopy(model).eval(), {nn.Linear}, dtype=torch.qint8)


def static_int8(model: nn.Module, calibration: Iterable[torch.Tensor], example: torch.Tensor) -> nn.Module:
    """FX graph-mode post-training static quantisation, calibrated on a few batches.

    Args:
        model: Float network in eval mode.
        calibration: Input batches (as the model takes them) used to observe activation ranges.
        example: One input batch for tracing.

    Raises:
        ConfigError: When the network cannot be traced symbolically (data-dependent control flow).
    """
    from torch.ao.quantization import get_default_qconfig_mapping
    from torch.ao.quantization.quantize_fx import convert_fx, prepare_fx

    engine = "x86" if "x86" in torch.backends.quantized.supported_engines else "qnnpack"
    torch.backends.quantized.engine = engine
    float_model = copy.deepcopy(model).eval()
    try:
        prepared = prepare_fx(float_model, get_default_qconfig_mapping(engine), example_inputs=(example,))
    except Exception as error:  # torch.fx raises many kinds of errors for untraceable code
        raise ConfigError(
            f"static-int8 cannot trace {type(model).__name__} ({type(error).__name__}).", "Use dynamic-int8 or prune."
        ) from None
    with torch.no_grad():
        for batch in calibration:
            prepared(batch)
    return convert_fx(prepared)


def compress(
    model: nn.Module,
    method: str,
    *,
    amount: float = 0.5,
    calibration: Iterable[torch.Tensor] | None = None,
    example: torch.Tensor | None = None,
) -> nn.Module:
    """Compress ``model`` by ``method`` (one of :data:`METHODS`); the original is left untouched."""
    if method == "prune":
        return prune_model(model, amount)
    if method == "dynamic-int8":
        return dynamic_int8(model)
    if method == "static-int8":
        if calibration is None or example is None:
            raise ConfigError("static-int8 needs calibration batches and an example input.")
        return static_int8(model, calibration, example)
    raise ConfigError(f"--method {method!r} is not one of {', '.join(METHODS)}.")
