"""Segmentation networks: the project's own U-Net and segmentation-models-pytorch architectures.

Every entry of :data:`pentad_medseg.registry.MODELS` is built as
``MODELS.build(name, in_channels=C, out_channels=K, **options)`` and maps ``(B, C, H, W)`` images of
any size to ``(B, K, H, W)`` logits (``K = 1`` for binary segmentation with a sigmoid).
"""

from pentad_medseg.models.smp_models import SMP_ARCHITECTURES, SMPModel
from pentad_medseg.models.unet import UNet

__all__ = ["SMP_ARCHITECTURES", "SMPModel", "UNet"]
