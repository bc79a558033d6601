"""Pentad traffic: spatio-temporal traffic forecasting (T-GCN, STGCN, Graph WaveNet, baselines).

Public API::

    from pentad_traffic import MODELS, DATASETS, load_dataset, build_model, TGCN_PROTOCOL
"""

from importlib.metadata import version as _distribution_version

from pentad_traffic import data as _data  # noqa: F401  (fills DATASETS)
from pentad_traffic import models as _models  # noqa: F401  (fills MODELS)
from pentad_traffic.data import TrafficData, load_dataset
from pentad_traffic.models import build_model
from pentad_traffic.protocols import DCRNN_PROTOCOL, TGCN_PROTOCOL, Protocol, prepare
from pentad_traffic.registry import DATASETS, MODELS

__version__ = _distribution_version("pentad-traffic")  # single-sourced: the repository's VERSION file

__all__ = [
    "DATASETS",
    "DCRNN_PROTOCOL",
    "MODELS",
    "TGCN_PROTOCOL",
    "Protocol",
    "TrafficData",
    "build_model",
    "load_dataset",
    "prepare",
]
