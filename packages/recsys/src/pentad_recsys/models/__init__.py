"""Recommender models; importing this module registers them all in :data:`pentad_recsys.registry.MODELS`."""

from pentad_recsys.models import afm, baselines, deepfm, fm, glocalk, lightgcn, mf, mmoe, neumf, nfm, sequential
from pentad_recsys.models.base import TASKS, RecModel

__all__ = [
    "TASKS",
    "RecModel",
    "afm",
    "baselines",
    "deepfm",
    "fm",
    "glocalk",
    "lightgcn",
    "mf",
    "mmoe",
    "neumf",
    "nfm",
    "sequential",
]
