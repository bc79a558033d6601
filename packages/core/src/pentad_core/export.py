"""ONNX export with a dynamic batch axis, and a parity check against onnxruntime."""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from pentad_core.errors import PentadError
from pentad_core.files import atomic_write_bytes


class ParityError(PentadError):
    """The exported model's outputs differ from PyTorch's by more than the tolerance."""

    exit_code = 1


@dataclass(frozen=True)
class ParityReport:
    """Result of :func:`check_onnx_parity`.

    Attributes:
        max_abs_diff: Largest absolute difference over every output element.
        tolerance: The allowed maximum.
        batch_size: Rows compared.
    """

    max_abs_diff: float
    tolerance: float
    batch_size: int

    @property
    def passed(self) -> bool:
        """Whether ``max_abs_diff <= tolerance``."""
        return self.max_abs_diff <= self.tolerance

    def as_metrics(self) -> dict[str, float]:
        """``export/max_abs_diff`` and ``export/tolerance`` for ``metrics.json``."""
        return {"export/max_abs_diff": self.max_abs_diff, "export/tolerance": self.tolerance}


def _as_tuple(inputs: torch.Tensor | tuple[torch.Tensor, ...]) -> tuple[torch.Tensor, ...]:
    return (inputs,) if isinstance(inputs, torch.Tensor) else tuple(inputs)


def export_onnx(
    model: torch.nn.Module,
    example_inputs: torch.Tensor | tuple[torch.Tensor, ...],
    path: str | Path,
    *,
    input_names: list[str] | None = None,
    output_names: list[str] | None = None,
    dynamic_batch: bool = True,
    extra_dynamic_axes: dict[str, dict[int, str]] | None = None,
    opset_version: int = 17,
) -> Path:
    """Export ``model`` (in eval mode, on the CPU) to ONNX, written atomically.

    Args:
        model: The network; its ``forward`` takes ``example_inputs``.
        example_inputs: A tensor or tuple of tensors with the first axis as batch.
        path: Destination ``.onnx`` file.
        input_names: Names of the graph inputs (default ``input``, ``input_1``, ...).
        output_names: Names of the graph outputs (default ``output``).
        dynamic_batch: Make axis 0 of every input and output dynamic.
        extra_dynamic_axes: Further dynamic axes by tensor name, e.g. ``{"input": {2: "height"}}``.
        opset_version: ONNX opset.

    Returns:
        The written path.
    """
    inputs = tuple(t.detach().cpu() for t in _as_tuple(example_inputs))
    input_names = input_names or ["input" if i == 0 else f"input_{i}" for i in range(len(inputs))]
    output_names = output_names or ["output"]
    axes: dict[str, dict[int, str]] = {}
    if dynamic_batch:
        axes = {name: {0: "batch"} for name in [*input_names, *output_names]}
    for name, extra in (extra_dynamic_axes or {}).items():
        axes.setdefault(name, {}).update(extra)
    was_training = model.training
    model = model.cpu().eval()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.tmp")
    try:
        with warnings.catch_warnings(), torch.no_grad():
            warnings.simplefilter("ignore")
            # The TorchScript exporter handles dynamic axes on every model we ship and runs in
            # well under a second; the torch.export path needs per-model shape annotations.
            torch.onnx.export(
                model, inputs, str(temporary), dynamo=False, input_names=input_names,
                output_names=output_names, dynamic_axes=axes or None, opset_version=opset_version,
            )  # fmt: skip
        atomic_write_bytes(path, temporary.read_bytes())
    finally:
        temporary.unlink(missing_ok=True)
        model.train(was_training)
    return path


def check_onnx_parity(
    model: torch.nn.Module,
    onnx_path: str | Path,
    inputs: torch.Tensor | tuple[torch.Tensor, ...],
    *,
    tolerance: float = 1e-4,
    raise_on_failure: bool = True,
) -> ParityReport:
    """Run the same inputs through PyTorch and onnxruntime and compare every output.

    Args:
        model: The PyTorch model that was exported.
        onnx_path: The exported file.
        inputs: A batch (ideally of a different size than the export example, to test the dynamic axis).
        tolerance: Maximum allowed absolute difference.
        raise_on_failure: Raise :class:`ParityError` when the difference exceeds ``tolerance``.

    Returns:
        The report with the maximum absolute difference.
    """
    import onnxruntime

    batch = tuple(t.detach().cpu() for t in _as_tuple(inputs))
    model = model.cpu().eval()
    with torch.no_grad():
        expected: Any = model(*batch)
    expected_list = [expected] if isinstance(expected, torch.Tensor) else list(expected)
    options = onnxruntime.SessionOptions()
    options.log_severity_level = 3
    session = onnxruntime.InferenceSession(str(onnx_path), options, providers=["CPUExecutionProvider"])
    feeds = {node.name: tensor.numpy() for node, tensor in zip(session.get_inputs(), batch)}
    outputs = session.run(None, feeds)
    difference = 0.0
    for reference, produced in zip(expected_list, outputs):
        reference_array = reference.detach().cpu().numpy()
        if reference_array.shape != produced.shape:
            raise ParityError(f"ONNX output shape {produced.shape} differs from PyTorch's {reference_array.shape}.")
        if reference_array.size:
            gap = np.abs(reference_array.astype(np.float64) - produced.astype(np.float64)).max()
            difference = max(difference, float(gap))
    report = ParityReport(difference, tolerance, int(batch[0].shape[0]))
    if raise_on_failure and not report.passed:
        raise ParityError(
            f"ONNX parity check failed for {onnx_path}: max abs difference {difference:.3g} > tolerance {tolerance:g}."
        )
    return report
