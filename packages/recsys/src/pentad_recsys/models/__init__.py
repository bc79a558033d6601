"""Recommender models, one file per network; importing this package registers them all in
:data:`pentad_recsys.registry.MODELS` (with their :class:`~pentad_core.registry.ModelInfo`)."""

from pentad_recsys.models import (  # noqa: F401  (each module registers its model)
    afm,
    deepfm,
    fm,
    glocalk,
    gru4rec,
    itemknn,
    lightgcn,
    mf,
    mmoe,
    neumf,
    nfm,
    popularity,
    sasrec,
)
from pentad_recsys.models.base import RecModel

__all__ = ["RecModel"]
