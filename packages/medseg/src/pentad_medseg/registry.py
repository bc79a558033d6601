"""The medseg registries: models, datasets and losses.

Each entry registers itself with a decorator in its own file (``models/<name>.py``,
``data/<name>.py``, ``losses.py``); :mod:`pentad_medseg` imports them all, so ``MODELS.names()``
lists every model once the package is imported.

Vocabulary of :class:`~pentad_core.registry.ModelInfo` in medseg: ``tasks`` are ``"binary"`` (one
sigmoid logit) and ``"multiclass"`` (N softmax logits); ``inputs`` is ``"image"`` (a ``(C, H, W)``
image of any size); ``family`` is ``"pentad"`` or ``"smp"`` (segmentation-models-pytorch).
"""

from __future__ import annotations

from pentad_core.data import DatasetInfo
from pentad_core.registry import ModelInfo, Registry

#: ``name -> factory(in_channels, out_channels, **model_options) -> nn.Module`` mapping
#: ``(B, C, H, W)`` images to ``(B, K, H, W)`` logits.
MODELS: Registry = Registry("model", ModelInfo)
#: ``name -> factory(root, classes, **dataset_options) -> SegmentationData``.
DATASETS: Registry = Registry("dataset", DatasetInfo)
#: ``name -> factory(**loss_options) -> nn.Module`` called as ``loss(logits, target, fov)``.
LOSSES: Registry = Registry("loss")
