"""Segment images with a trained run: ``Predictor.from_run(path)`` then ``predict(image, fov=None)``.

Everything a prediction needs comes from the run: the network and its weights, the training set's
channel statistics (buffers of the checkpoint, so raw images go in), the decision threshold (fixed,
or the one chosen on validation data, also a buffer) and the sliding-window settings (the
checkpoint's hyperparameters). The training data is never read::

    from pentad_medseg.predictor import Predictor

    predictor = Predictor.from_run("runs/medseg/2026-12-01-unet-drive")  # or .../checkpoints/best.ckpt
    result = predictor.predict(image, fov=fov)  # image (C, H, W) raw, fov (H, W) bool
    result.probabilities, result.mask           # (K, H, W) float32, (H, W) int64 labels
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from pentad_core.checkpoint import load_module
from pentad_core.errors import ConfigError, DataError
from pentad_core.predictor import Predictor as BasePredictor
from pentad_core.predictor import TrainedRun
from pentad_medseg.config import MedsegConfig
from pentad_medseg.data.readers import file_stem, nifti_slices
from pentad_medseg.module import SegmentationModule
from pentad_medseg.outputs import labels_from_probabilities


@dataclass(frozen=True)
class Prediction:
    """The segmentation of one image.

    Attributes:
        probabilities: ``(K, H, W)`` float32: the foreground probability (``K == 1``, binary) or
            the class probabilities (``K`` classes).
        mask: ``(H, W)`` int64 labels (threshold for binary models, argmax otherwise); 0 outside the FOV.
        threshold: The binary decision threshold used.
    """

    probabilities: np.ndarray
    mask: np.ndarray
    threshold: float

    @property
    def foreground(self) -> np.ndarray:
        """``(H, W)`` probability of any foreground class."""
        return self.probabilities[0] if self.probabilities.shape[0] == 1 else 1 - self.probabilities[0]


@dataclass(frozen=True)
class VolumePrediction:
    """The slice-wise segmentation of a NIfTI volume.

    Attributes:
        name: The volume's file stem.
        foreground: ``(X, Y, Z)`` float32 probability of any foreground class.
        labels: ``(X, Y, Z)`` uint8 labels.
        affine: The input's 4x4 affine (written unchanged with the outputs).
    """

    name: str
    foreground: np.ndarray
    labels: np.ndarray
    affine: np.ndarray


class NormalizedNetwork(torch.nn.Module):
    """Raw image ``(B, C, H, W)`` -> logits ``(B, K, H, W)``: the training-set normalisation is part of the graph.

    What ``export`` writes to ONNX, so that the exported model takes the same raw images as the predictor.
    """

    def __init__(self, module: SegmentationModule) -> None:
        super().__init__()
        self.net = module.net
        self.register_buffer("mean", module.norm_mean.clone())
        self.register_buffer("std", module.norm_std.clone())

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        """Logits of raw images."""
        return self.net((image - self.mean) / self.std)


class Predictor(BasePredictor):
    """A trained medseg run, ready to segment raw images and NIfTI volumes.

    Args:
        run: The run's files.
        config: The run's typed config (defaults for a checkpoint outside a run folder).
        module: The trained module (eval mode).
        threshold: Binary threshold; ``None`` keeps the checkpoint's (fixed or chosen on validation data).
        tta: Flip test-time augmentation; ``None`` keeps the run's setting.
    """

    config_class = MedsegConfig

    def __init__(
        self,
        run: TrainedRun,
        config: MedsegConfig,
        module: SegmentationModule,
        threshold: float | None = None,
        tta: bool | None = None,
    ) -> None:
        super().__init__(run, config)
        if threshold is not None and not 0 < threshold < 1:
            raise ConfigError(f"threshold must be in (0, 1), got {threshold}.")
        self.module = module
        self.threshold = float(module.threshold) if threshold is None else float(threshold)
        self.tta = bool(module.hparams.tta) if tta is None else bool(tta)

    @classmethod
    def from_trained_run(
        cls, run: TrainedRun, *, threshold: float | None = None, tta: bool | None = None, device: str = "cpu"
    ) -> Predictor:
        """Load the run's checkpoint (see :meth:`from_run`, which takes a run folder or a checkpoint).

        Raises:
            CheckpointError: If the checkpoint is missing, damaged or not a medseg checkpoint.
        """
        module = load_module(SegmentationModule, run.checkpoint, map_location=device)
        config = run.typed_config(MedsegConfig)
        return cls(run, config, module, threshold=threshold, tta=tta)

    @property
    def in_channels(self) -> int:
        """Image channels the network takes."""
        return int(self.module.hparams.in_channels)

    @property
    def classes(self) -> int:
        """Label values including background (2: binary)."""
        return int(self.module.hparams.classes)

    def probabilities(self, image: np.ndarray | torch.Tensor) -> np.ndarray:
        """Sliding-window probabilities ``(K, H, W)`` float32 of one raw image ``(C, H, W)`` (or ``(H, W)``).

        Raises:
            DataError: If the image's channel count is not the network's.
        """
        tensor = torch.as_tensor(np.asarray(image, dtype=np.float32) if isinstance(image, np.ndarray) else image)
        if tensor.ndim == 2:
            tensor = tensor[None]
        if tensor.ndim != 3 or tensor.shape[0] != self.in_channels:
            raise DataError(f"the image has shape {tuple(tensor.shape)}; the model expects ({self.in_channels}, H, W).")
        return self.module.predict_probabilities(tensor[None].float(), tta=self.tta)[0].float().cpu().numpy()

    def predict(self, image: np.ndarray | torch.Tensor, fov: np.ndarray | None = None) -> Prediction:
        """Segment one raw image ``(C, H, W)`` (values as in training, e.g. ``[0, 1]``).

        Args:
            image: The image; ``(H, W)`` is read as one channel.
            fov: ``(H, W)`` bool field of view; labels outside it are 0.
        """
        probabilities = self.probabilities(image)
        mask = labels_from_probabilities(probabilities, self.threshold)
        if fov is not None:
            mask = mask * np.asarray(fov, bool)
        return Prediction(probabilities, mask, self.threshold)

    def predict_volume(self, path: str | Path) -> VolumePrediction:
        """Segment a NIfTI volume slice by slice along its last axis (single-channel models).

        Raises:
            DataError: If the file is unreadable or the model does not take one channel.
        """
        path = Path(path)
        if self.in_channels != 1:
            raise DataError(f"{path} is a single-channel volume; the model expects {self.in_channels} channels.")
        options = self.config.dataset_options if self.config.dataset == "nifti" else {}
        slices = nifti_slices(path, None, self.classes, clip=options.get("clip"), zscore=bool(options.get("zscore")))
        first = slices[0].meta
        channels = 1 if self.classes == 2 else self.classes
        probabilities = np.zeros((*first["volume_shape"], channels), np.float32)
        for item in slices:
            probabilities[:, :, item.meta["slice"], :] = self.probabilities(item.image).transpose(1, 2, 0)
        labels = labels_from_probabilities(probabilities.transpose(3, 0, 1, 2), self.threshold).astype(np.uint8)
        foreground = probabilities[..., 0] if channels == 1 else 1 - probabilities[..., 0]
        return VolumePrediction(file_stem(path), foreground.astype(np.float32), labels, first["affine"])

    def network(self) -> NormalizedNetwork:
        """The network with its normalisation, raw image -> logits (for export)."""
        return NormalizedNetwork(self.module).eval()


__all__ = ["NormalizedNetwork", "Prediction", "Predictor", "VolumePrediction"]
