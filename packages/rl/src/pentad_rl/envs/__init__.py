"""Environments: pentad's own games, the environment registry, ids, wrappers and vectorised builders.

Importing the package imports every module in it (``import_submodules``), so each game's
``@register_env`` registers it with gymnasium and ``ENVIRONMENTS`` (``pentad/ConnectFour-v0``):
an environment of pentad's own is one file here. The ids, the registry of environments and the
named wrappers live in the leaf module :mod:`pentad_rl.envs.registry`;
:mod:`pentad_rl.envs.make` builds the vectorised (wrapped, normalised) environments of a config.
"""

from __future__ import annotations

from pentad_core.registry import import_submodules
from pentad_rl.envs.registry import CONNECT_FOUR_ID, ENV_WRAPPERS, ENVIRONMENTS, check_env_id, register_env

import_submodules(__name__)  # each game's module registers it (an environment is one file in envs/)

from pentad_rl.envs.connect_four import ConnectFourEnv, HeuristicOpponent  # noqa: E402

__all__ = [
    "CONNECT_FOUR_ID",
    "ENVIRONMENTS",
    "ENV_WRAPPERS",
    "ConnectFourEnv",
    "HeuristicOpponent",
    "check_env_id",
    "register_env",
]
