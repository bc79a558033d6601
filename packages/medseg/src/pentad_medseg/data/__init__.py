"""Medseg datasets: one module per dataset (each registers itself in ``DATASETS``) plus the file readers.

- :mod:`.base`: :class:`SegImage`, :class:`SegmentationData` and :func:`load_dataset`;
- :mod:`.readers`: images, masks, NIfTI volumes and input listing;
- :mod:`.drive`, :mod:`.folder`, :mod:`.nifti`, :mod:`.synthetic`: the datasets.

Importing this package imports every file in this folder (:func:`~pentad_core.registry.import_submodules`),
so adding a dataset is one file here, registered with ``@DATASETS.register("name", ...)``.
"""

from pentad_core.registry import import_submodules
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

import_submodules(__name__)

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
