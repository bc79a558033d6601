"""The project's own gymnasium environments, registered under the ``pentad/`` namespace on import."""

from __future__ import annotations

import gymnasium as gym

from pentad_rl.envs.connect_four import ConnectFourEnv, HeuristicOpponent

CONNECT_FOUR_ID = "pentad/ConnectFour-v0"


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

__all__ = ["CONNECT_FOUR_ID", "ConnectFourEnv", "HeuristicOpponent", "register_envs"]
