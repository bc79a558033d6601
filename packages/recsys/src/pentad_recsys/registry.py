"""Registries of the recsys package: models and datasets.

Each model registers itself in its own file under ``models/`` with its :class:`ModelInfo`:
``tasks`` among ``"rating"`` (explicit ratings: RMSE/MAE) and ``"ranking"`` (implicit top-K);
``inputs`` ``"ids"`` (a prediction consumes ``(user, item)`` ids) or ``"sequence"`` (the model
scores from each user's time-ordered history, kept in the model and indexed by user id);
``trainable`` False for the statistics-only baselines. Each dataset registers itself in its own
file under ``data/`` with its :class:`DatasetInfo` (official ``files``, or ``generated=True``).
Importing :mod:`pentad_recsys.models` and :mod:`pentad_recsys.data` fills them.
"""

from __future__ import annotations

from pentad_core.data import DatasetInfo
from pentad_core.registry import ModelInfo, Registry

MODELS: Registry = Registry("model", ModelInfo)
DATASETS: Registry = Registry("dataset", DatasetInfo)

__all__ = ["DATASETS", "MODELS", "DatasetInfo", "ModelInfo"]
