"""Registries of the traffic package: models and datasets.

Every model and dataset registers itself with a decorator in its own file; importing
:mod:`pentad_traffic.models` and :mod:`pentad_traffic.data` fills the registries (the package's
``__init__`` does both, so ``from pentad_traffic.registry import MODELS`` always sees every entry).

Vocabulary of :class:`~pentad_core.registry.ModelInfo` in this domain: ``tasks=("forecast",)`` and
``inputs="window"`` (a window of ``input_len`` readings of every sensor); ``trainable=False`` marks
the baselines that are not trained by gradient descent (persistence, historical average, and the
VAR, fitted in closed form).
"""

from __future__ import annotations

from pentad_core.data import DatasetInfo
from pentad_core.registry import ModelInfo, Registry

#: Forecasting models: factories taking ``num_nodes, input_len, horizon, in_features, adjacency``
#: (given by the package) plus the model's own options (the config's ``model_options``).
MODELS: Registry = Registry("model", ModelInfo)
#: Dataset loaders: factories taking ``root`` (a folder or None; not for ``generated`` datasets) and
#: the config's ``dataset_options``, returning a :class:`pentad_traffic.data.TrafficData`.
DATASETS: Registry = Registry("dataset", DatasetInfo)
