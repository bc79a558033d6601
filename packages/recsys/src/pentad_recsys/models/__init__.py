"""Recommender models, one file per network, plus their shared layers (``base``, ``layers``, ``sequential``).

Importing this package imports every file in this folder (:func:`~pentad_core.registry.import_submodules`),
so each model registers itself in :data:`pentad_recsys.registry.MODELS` (with its
:class:`~pentad_core.registry.ModelInfo`): adding a model is adding its file.
"""

from pentad_core.registry import import_submodules
from pentad_recsys.models.base import RecModel
from pentad_recsys.registry import MODELS

import_submodules(__name__)

__all__ = ["MODELS", "RecModel"]
