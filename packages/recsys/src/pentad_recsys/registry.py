"""Registries of the recsys package: models and datasets.

Importing :mod:`pentad_recsys.models` and :mod:`pentad_recsys.data` fills them.
"""

from __future__ import annotations

from pentad_core.registry import Registry

MODELS: Registry = Registry("model")
DATASETS: Registry = Registry("dataset")
