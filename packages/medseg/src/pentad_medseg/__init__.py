"""Pentad medseg: 2D medical image segmentation (DRIVE, image folders, NIfTI) with U-Nets and smp models.

Public API::

    from pentad_medseg import MODELS, DATASETS, LOSSES, Predictor, load_dataset, sliding_window_inference
    from pentad_medseg.models import build_model
    data = load_dataset("drive", "/data/drive")
    model = build_model("unet", {"depth": 3, "base_channels": 16}, in_channels=3, classes=2)  # (B, 1, H, W) logits
    predictor = Predictor.from_run("runs/medseg/<run>")  # a trained run folder or checkpoint
    result = predictor.predict(data.test[0].image, fov=data.test[0].fov)
"""

from importlib.metadata import version as _distribution_version

from pentad_medseg import data, losses, models  # noqa: F401  (register entries)
from pentad_medseg.data import SegImage, SegmentationData, load_dataset
from pentad_medseg.inference import sliding_window_inference
from pentad_medseg.metrics import dataset_metrics, image_metrics
from pentad_medseg.predictor import Predictor
from pentad_medseg.registry import DATASETS, LOSSES, MODELS

__version__ = _distribution_version("pentad-medseg")  # single-sourced: the repository's VERSION file

__all__ = [
    "DATASETS",
    "LOSSES",
    "MODELS",
    "Predictor",
    "SegImage",
    "SegmentationData",
    "__version__",
    "dataset_metrics",
    "image_metrics",
    "load_dataset",
    "sliding_window_inference",
]
