"""Medseg datasets: one module per dataset (each registers itself in ``DATASETS``) plus the file readers.

- :mod:`.base`: :class:`SegImage`, :class:`SegmentationData` and :func:`load_dataset`;
- :mod:`.readers`: images, masks, NIfTI volumes and input listing;
- :mod:`.drive`, :mod:`.folder`, :mod:`.nifti`, :mod:`.synthetic`: the datasets.

Adding a dataset is one file here, registered with ``@DATASETS.register("name", ...)`` and imported below.
"""

from pentad_medseg.data import drive, folder, nifti, synthetic  # noqa: F401  (register the datasets)
from pentad_medseg.data.base import SegImage, SegmentationData, load_dataset
from pentad_medseg.data.readers import (
    IMAGE_SUFFIXES,
    NIFTI_SUFFIXES,
    list_images,
    nifti_slices,
    read_image,
    read_label,
    read_nifti,
)
from pentad_medseg.data.synthetic import synthetic_image

__all__ = [
    "IMAGE_SUFFIXES",
    "NIFTI_SUFFIXES",
    "SegImage",
    "SegmentationData",
    "list_images",
    "load_dataset",
    "nifti_slices",
    "read_image",
    "read_label",
    "read_nifti",
    "synthetic_image",
]
