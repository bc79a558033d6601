"""Registries of pentad-rl: reinforcement-learning algorithms by name.

Each entry is the stable-baselines3 (or sb3-contrib) class itself, so its typed constructor
arguments (``learning_rate``, ``n_steps``, ``buffer_size``, ...) are the hyperparameters a preset sets.
"""

from __future__ import annotations

from sb3_contrib import QRDQN, TRPO, MaskablePPO, RecurrentPPO
from stable_baselines3 import A2C, DDPG, DQN, PPO, SAC, TD3
from stable_baselines3.common.base_class import BaseAlgorithm
from stable_baselines3.common.off_policy_algorithm import OffPolicyAlgorithm

from pentad_core.errors import ConfigError
from pentad_core.registry import Registry

ALGORITHMS: Registry[BaseAlgorithm] = Registry("algorithm")

ALGORITHMS.register("ppo", PPO, description="Proximal Policy Optimization (stable-baselines3)")
ALGORITHMS.register("a2c", A2C, description="Advantage Actor-Critic (stable-baselines3)")
ALGORITHMS.register("dqn", DQN, description="Deep Q-Network, discrete actions (stable-baselines3)")
ALGORITHMS.register("sac", SAC, description="Soft Actor-Critic, continuous actions (stable-baselines3)")
ALGORITHMS.register("td3", TD3, description="Twin Delayed DDPG, continuous actions (stable-baselines3)")
ALGORITHMS.register("ddpg", DDPG, description="Deep Deterministic Policy Gradient (stable-baselines3)")
ALGORITHMS.register("qrdqn", QRDQN, description="Quantile Regression DQN (sb3-contrib)")
ALGORITHMS.register("trpo", TRPO, description="Trust Region Policy Optimization (sb3-contrib)")
ALGORITHMS.register("recurrent-ppo", RecurrentPPO, description="PPO with an LSTM policy (sb3-contrib)")
ALGORITHMS.register("maskable-ppo", MaskablePPO, description="PPO with invalid-action masking (sb3-contrib)")

#: Default policy per algorithm for vector observations (images use ``CnnPolicy``).
DEFAULT_POLICY = {name: "MlpPolicy" for name in ALGORITHMS.names()}
DEFAULT_POLICY["recurrent-ppo"] = "MlpLstmPolicy"


def is_off_policy(algo: str) -> bool:
    """Whether ``algo`` learns from a replay buffer (which resume must restore too)."""
    return issubclass(ALGORITHMS.get(algo), OffPolicyAlgorithm)


def algorithm_name(model: BaseAlgorithm) -> str:
    """The registry name of a model's class (``PPO`` -> ``"ppo"``)."""
    for name in ALGORITHMS.names():
        if type(model) is ALGORITHMS.get(name):
            return name
    raise ValueError(f"{type(model).__name__} is not a registered algorithm")


def _atari_wrapper(env):
    """SB3's AtariWrapper: no-op reset, frame skip 4, 84x84 grey frames, episodic life, reward clipping."""
    from stable_baselines3.common.atari_wrappers import AtariWrapper

    return AtariWrapper(env)


#: Named gymnasium wrappers that presets list under ``env_wrapper``.
ENV_WRAPPERS: Registry = Registry("env wrapper")
ENV_WRAPPERS.register("atari", _atari_wrapper)


class EnvironmentRegistry(Registry):
    """Environments listed by ``data list``; any registered gymnasium id is accepted as well.

    ``name in ENVIRONMENTS`` is true for every id gymnasium knows (after the optional Atari import),
    and ``get`` of an unknown id raises :class:`~pentad_core.errors.ConfigError` naming close matches
    or the extra to install.
    """

    def __contains__(self, name: object) -> bool:
        if not isinstance(name, str):
            return False
        try:
            self.get(name)
        except ConfigError:
            return False
        return True

    def get(self, name: str):
        if name in self._entries:
            return self._entries[name]
        from pentad_rl.environments import check_env_id

        check_env_id(name)
        return _gym_factory(name)


def _gym_factory(env_id: str):
    def make(**kwargs):
        import gymnasium as gym

        return gym.make(env_id, **kwargs)

    make.__doc__ = f"gymnasium environment {env_id}"
    return make


#: Environments with presets (``data list``); ``--env`` accepts any registered gymnasium id.
ENVIRONMENTS: EnvironmentRegistry = EnvironmentRegistry("environment")
for _env_id, _description in (
    ("CartPole-v1", "classic control: balance a pole (discrete, solved at 500)"),
    ("Acrobot-v1", "classic control: swing up a double pendulum (discrete)"),
    ("MountainCar-v0", "classic control: drive up a hill (discrete, sparse reward)"),
    ("Pendulum-v1", "classic control: swing up a pendulum (continuous)"),
    ("pentad/ConnectFour-v0", "pentad's Connect Four against a heuristic opponent (difficulty 0-3)"),
    ("LunarLander-v3", "Box2D: land a lander (needs gymnasium[box2d])"),
    ("ALE/Pong-v5", "Atari Pong from pixels (needs gymnasium[atari])"),
):
    ENVIRONMENTS.register(_env_id, _gym_factory(_env_id), description=_description)
