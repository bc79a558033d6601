"""The medseg registries: models, datasets and losses.

Modules register their entries on import; :mod:`pentad_medseg` imports them all, so
``MODELS.names()`` lists every model once the package is imported.
"""

from __future__ import annotations

from pentad_core.registry import Registry

#: ``name -> factory(in_channels, out_channels, **options) -> nn.Module``.
MODELS: Registry = Registry("model")
#: ``name -> factory(root, **options) -> SegmentationData``.
DATASETS: Registry = Registry("dataset")
#: ``name -> factory(**options) -> nn.Module`` called as ``loss(logits, target, fov)``.
LOSSES: Registry = Registry("loss")
