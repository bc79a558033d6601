"""Environments: pentad's own games, the environment registry, ids, wrappers and vectorised builders.

Importing the package registers ``pentad/ConnectFour-v0`` with gymnasium. The ids, the registry of
environments and the named wrappers live in the leaf module :mod:`pentad_rl.envs.registry`;
:mod:`pentad_rl.envs.make` builds the vectorised (wrapped, normalised) environments of a config.
"""

from __future__ import annotations

import gymnasium as gym

from pentad_rl.envs.connect_four import ConnectFourEnv, HeuristicOpponent
from pentad_rl.envs.registry import CONNECT_FOUR_ID, ENV_WRAPPERS, ENVIRONMENTS, check_env_id


def register_envs() -> None:
    """Register ``pentad/ConnectFour-v0`` with gymnasium (idempotent)."""
    if CONNECT_FOUR_ID not in gym.registry:
        gym.register(
            id=CONNECT_FOUR_ID,
            entry_point="pentad_rl.envs.connect_four:ConnectFourEnv",
            # 21 moves of the agent fill the board at most; the cap only guards against bugs.
            max_episode_steps=42,
        )


register_envs()

__all__ = [
    "CONNECT_FOUR_ID",
    "ENVIRONMENTS",
    "ENV_WRAPPERS",
    "ConnectFourEnv",
    "HeuristicOpponent",
    "check_env_id",
    "register_envs",
]
