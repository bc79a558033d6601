"""Registries of the traffic package: models and datasets.

Importing :mod:`pentad_traffic.models` and :mod:`pentad_traffic.data` fills them; the package's
``__init__`` does both, so ``from pentad_traffic.registry import MODELS`` always sees every entry.
"""

from __future__ import annotations

from pentad_core.registry import Registry

#: Forecasting models: factories taking ``num_nodes, input_len, horizon, in_features, adjacency``.
MODELS: Registry = Registry("model")
#: Dataset loaders: factories taking ``root`` (a folder or None) and loader options, returning
#: a :class:`pentad_traffic.data.TrafficData`.
DATASETS: Registry = Registry("dataset")
