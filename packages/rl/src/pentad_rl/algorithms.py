"""The algorithms of ``--algo``: stable-baselines3 and sb3-contrib classes registered with their metadata.

The classes are not ours, so they cannot carry a registration decorator; each is registered here
with its :class:`~pentad_core.registry.ModelInfo` (``tasks``: the action spaces it handles). A new
algorithm is one ``ALGORITHMS.register`` line here (plus, optionally, its RL Zoo file in
:data:`pentad_rl.zoo.FILES` or a preset in ``shared/configs/rl/``, and a tuning space in
:mod:`pentad_rl.tuning`). Its constructor arguments are the keys a config's ``model_options`` may set;
a misspelled key is a ConfigError listing the valid ones.
"""

from __future__ import annotations

from gymnasium import spaces
from sb3_contrib import QRDQN, TQC, TRPO, MaskablePPO, RecurrentPPO
from stable_baselines3 import A2C, DDPG, DQN, PPO, SAC, TD3
from stable_baselines3.common.base_class import BaseAlgorithm
from stable_baselines3.common.off_policy_algorithm import OffPolicyAlgorithm
from stable_baselines3.common.preprocessing import is_image_space

from pentad_rl.registry import ALGORITHMS

ANY_ACTIONS = ("discrete", "continuous")
SB3 = {"inputs": "observation", "family": "sb3"}
CONTRIB = {"inputs": "observation", "family": "sb3-contrib"}

ALGORITHMS.register(
    "ppo", PPO, description="Proximal Policy Optimization (stable-baselines3)", tasks=ANY_ACTIONS, **SB3
)
ALGORITHMS.register("a2c", A2C, description="Advantage Actor-Critic (stable-baselines3)", tasks=ANY_ACTIONS, **SB3)
ALGORITHMS.register(
    "dqn", DQN, description="Deep Q-Network, discrete actions (stable-baselines3)", tasks=("discrete",), **SB3
)
ALGORITHMS.register(
    "sac", SAC, description="Soft Actor-Critic, continuous actions (stable-baselines3)", tasks=("continuous",), **SB3
)
ALGORITHMS.register(
    "td3", TD3, description="Twin Delayed DDPG, continuous actions (stable-baselines3)", tasks=("continuous",), **SB3
)
ALGORITHMS.register(
    "ddpg", DDPG, description="Deep Deterministic Policy Gradient (stable-baselines3)", tasks=("continuous",), **SB3
)
ALGORITHMS.register("qrdqn", QRDQN, description="Quantile Regression DQN (sb3-contrib)", tasks=("discrete",), **CONTRIB)
ALGORITHMS.register(
    "tqc", TQC, description="Truncated Quantile Critics, continuous actions (sb3-contrib)", tasks=("continuous",),
    **CONTRIB,
)  # fmt: skip
ALGORITHMS.register(
    "trpo", TRPO, description="Trust Region Policy Optimization (sb3-contrib)", tasks=ANY_ACTIONS, **CONTRIB
)
# The LSTM state goes in and out of every step, which the ONNX export does not model.
ALGORITHMS.register(
    "recurrent-ppo",
    RecurrentPPO,
    description="PPO with an LSTM policy (sb3-contrib)",
    tasks=ANY_ACTIONS,
    exportable=False,
    **CONTRIB,
)
ALGORITHMS.register(
    "maskable-ppo",
    MaskablePPO,
    description="PPO with invalid-action masking (sb3-contrib)",
    tasks=("discrete",),
    **CONTRIB,
)


def is_off_policy(algo: str) -> bool:
    """Whether ``algo`` learns from a replay buffer (which resume must restore too)."""
    return issubclass(ALGORITHMS.get(algo), OffPolicyAlgorithm)


def algorithm_name(model: BaseAlgorithm) -> str:
    """The registry name of a model's class (``PPO`` -> ``"ppo"``)."""
    for name in ALGORITHMS.names():
        if type(model) is ALGORITHMS.get(name):
            return name
    raise ValueError(f"{type(model).__name__} is not a registered algorithm")


def default_policy(algo: str, observation_space: spaces.Space) -> str:
    """The algorithm's policy for ``observation_space``: Cnn for images, MultiInput for dicts, else Mlp.

    Taken from the class's own ``policy_aliases`` (RecurrentPPO's are ``MlpLstmPolicy``, ...).
    """
    if isinstance(observation_space, spaces.Dict):
        base = "MultiInput"
    elif is_image_space(observation_space, check_channels=False):
        base = "Cnn"
    else:
        base = "Mlp"
    aliases = list(ALGORITHMS.get(algo).policy_aliases)
    return next((alias for alias in aliases if alias.startswith(base)), f"{base}Policy")


def action_kind(action_space: spaces.Space) -> str:
    """``"continuous"`` for Box actions, else ``"discrete"`` (the vocabulary of ``ModelInfo.tasks``)."""
    return "continuous" if isinstance(action_space, spaces.Box) else "discrete"
