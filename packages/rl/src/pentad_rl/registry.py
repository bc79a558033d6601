"""The registries of pentad-rl: algorithms (``models``), environments (``data list``) and env wrappers.

``ALGORITHMS`` is created here and filled by :mod:`pentad_rl.algorithms` (imported by the package), one
entry per stable-baselines3 / sb3-contrib class with its :class:`~pentad_core.registry.ModelInfo`.
Its vocabulary: ``tasks`` are the action spaces the algorithm handles (``"discrete"``,
``"continuous"``), ``inputs`` is ``"observation"``, ``family`` is ``"sb3"`` or ``"sb3-contrib"``.
The environment registry and the wrappers live in the leaf :mod:`pentad_rl.envs.registry`.
"""

from __future__ import annotations

from stable_baselines3.common.base_class import BaseAlgorithm

from pentad_core.registry import ModelInfo, Registry
from pentad_rl.envs.registry import ENV_WRAPPERS, ENVIRONMENTS

#: Reinforcement-learning algorithms by name: the stable-baselines3 classes themselves.
ALGORITHMS: Registry[BaseAlgorithm] = Registry("algorithm", ModelInfo)

__all__ = ["ALGORITHMS", "ENVIRONMENTS", "ENV_WRAPPERS"]
