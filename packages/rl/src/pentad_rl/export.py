"""Export an agent's policy to ONNX: observations in, the actions ``model.predict`` would take out.

The exported graph contains everything between the raw observation and the action, so it runs
without stable-baselines3: ``VecNormalize`` observation scaling (when the agent was trained with
``normalize: true``), image scaling, the policy network, the greedy action choice (argmax /
distribution mode), and action clipping or un-squashing to the action space's bounds. With
``scores=True`` a discrete policy's graph has a second output, ``scores``: its preference for every
action (logits, or Q-values for DQN / QR-DQN), whose argmax is the action; ``serve`` masks illegal
Connect Four columns with it.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from gymnasium import spaces
from stable_baselines3.common.base_class import BaseAlgorithm
from stable_baselines3.common.vec_env import VecEnv, unwrap_vec_normalize
from torch import nn

from pentad_core.errors import ConfigError


class OnnxablePolicy(nn.Module):
    """The deterministic action of an SB3 policy as a plain ``nn.Module``.

    Args:
        model: A trained (non-recurrent) agent.
        obs_mean: Running mean of observations when the agent used ``VecNormalize``, else ``None``.
        obs_var: Running variance of observations (same shape as ``obs_mean``).
        clip_obs: ``VecNormalize``'s clipping of normalised observations.
        epsilon: ``VecNormalize``'s variance epsilon.
        scores: Also return the per-action scores (:func:`action_scores`) of a discrete policy.

    Shapes:
        forward: ``(batch, *observation_shape)`` float32 -> ``(batch,)`` int64 for discrete actions or
        ``(batch, *action_shape)`` float32 for continuous ones; with ``scores``, the pair
        ``(actions, scores (batch, n_actions) float32)``.
    """

    def __init__(
        self,
        model: BaseAlgorithm,
        obs_mean: np.ndarray | None = None,
        obs_var: np.ndarray | None = None,
        clip_obs: float = 10.0,
        epsilon: float = 1e-8,
        scores: bool = False,
    ) -> None:
        super().__init__()
        from pentad_rl.algorithms import algorithm_name
        from pentad_rl.registry import ALGORITHMS

        name = algorithm_name(model)
        if not ALGORITHMS.info(name).exportable:
            raise ConfigError(f"export of {name} (state in and out of every step) is not supported; use ppo.")
        if isinstance(model.observation_space, spaces.Dict):
            raise ConfigError("export of agents with dict observations is not supported.")
        self.policy = model.policy
        self.policy.set_training_mode(False)
        self.normalize = obs_mean is not None
        self.register_buffer("obs_mean", torch.as_tensor(obs_mean if self.normalize else 0.0, dtype=torch.float32))
        self.register_buffer(
            "obs_std", torch.as_tensor(np.sqrt(obs_var + epsilon) if self.normalize else 1.0, dtype=torch.float32)
        )
        self.clip_obs = float(clip_obs)
        action_space = model.action_space
        self.continuous = isinstance(action_space, spaces.Box)
        if self.continuous:
            self.register_buffer("low", torch.as_tensor(action_space.low, dtype=torch.float32))
            self.register_buffer("high", torch.as_tensor(action_space.high, dtype=torch.float32))
            self.squash = bool(getattr(self.policy, "squash_output", False))
        if scores and self.continuous:
            raise ConfigError("action scores exist for discrete actions only.")
        self.scores = scores

    def forward(self, observation: torch.Tensor) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        if self.normalize:
            observation = torch.clamp((observation - self.obs_mean) / self.obs_std, -self.clip_obs, self.clip_obs)
        action = self.policy._predict(observation, deterministic=True)
        if self.scores:
            return action, action_scores(self.policy, observation).float()
        if self.continuous:
            if self.squash:
                return self.low + 0.5 * (action + 1.0) * (self.high - self.low)
            return torch.maximum(torch.minimum(action, self.high), self.low)
        return action


def action_scores(policy: nn.Module, observation: torch.Tensor) -> torch.Tensor:
    """A discrete policy's preference for each action, ``(batch, n_actions)``: its argmax is the greedy action.

    Logits of actor-critic policies (PPO, A2C, TRPO, MaskablePPO; a recurrent policy from a fresh LSTM
    state), Q-values of DQN, mean quantiles of QR-DQN. ``observation`` is normalised already.
    """
    if hasattr(policy, "q_net"):  # DQN
        return policy.q_net(observation)
    if hasattr(policy, "quantile_net"):  # QR-DQN
        return policy.quantile_net(observation).mean(dim=1)
    if hasattr(policy, "lstm_actor"):  # RecurrentPPO: every observation starts a fresh episode
        lstm, count = policy.lstm_actor, observation.shape[0]
        zeros = torch.zeros(lstm.num_layers, count, lstm.hidden_size, device=observation.device)
        starts = torch.ones(count, device=observation.device)
        return policy.get_distribution(observation, (zeros, zeros), starts)[0].distribution.logits
    return policy.get_distribution(observation).distribution.logits


def onnxable_policy(model: BaseAlgorithm, env: VecEnv | None = None, scores: bool = False) -> OnnxablePolicy:
    """Wrap ``model`` (and the observation statistics of ``env`` if it is normalised) for export."""
    normalizer = unwrap_vec_normalize(env) if env is not None else None
    if normalizer is not None and normalizer.norm_obs:
        return OnnxablePolicy(
            model,
            normalizer.obs_rms.mean,
            normalizer.obs_rms.var,
            normalizer.clip_obs,
            normalizer.epsilon,
            scores=scores,
        )
    return OnnxablePolicy(model, scores=scores)


def sample_observations(env: VecEnv, count: int = 64, seed: int = 0) -> np.ndarray:
    """Raw observations from random play in ``env`` (for parity checks), shape ``(count, *obs_shape)``."""
    normalizer = unwrap_vec_normalize(env)
    was_training = normalizer.training if normalizer is not None else False
    if normalizer is not None:
        normalizer.training = False  # sampling must not move the statistics being exported
    env.seed(seed)
    env.action_space.seed(seed)
    observations = []
    observation = env.reset()
    while len(observations) * env.num_envs < count:
        raw = normalizer.get_original_obs() if normalizer is not None else observation
        observations.append(np.asarray(raw, dtype=np.float32))
        actions = np.stack([env.action_space.sample() for _ in range(env.num_envs)])
        observation, _, _, _ = env.step(actions)
    if normalizer is not None:
        normalizer.training = was_training
    return np.concatenate(observations)[:count]


def predict_actions(model: BaseAlgorithm, observations: np.ndarray, env: VecEnv | None = None) -> np.ndarray:
    """``model.predict`` on raw observations, normalised first as during training."""
    normalizer = unwrap_vec_normalize(env) if env is not None else None
    inputs = normalizer.normalize_obs(observations) if normalizer is not None else observations
    actions, _ = model.predict(inputs, deterministic=True)
    return actions


def export_policy(
    model: BaseAlgorithm,
    path: str | Path,
    env: VecEnv | None = None,
    batch: int = 64,
    seed: int = 0,
    scores: bool = False,
) -> dict[str, float]:
    """Export the policy of ``model`` to ONNX at ``path`` and check it takes the same actions.

    The check runs a batch of raw observations from random play in ``env`` through onnxruntime and
    through ``model.predict`` (with the env's normalisation), and compares the actions: identical
    for discrete actions, within 1e-4 for continuous ones (core's parity check on the network adds
    the maximum absolute difference of the graph's output).

    Args:
        model: A trained non-recurrent agent.
        path: Destination ``.onnx``.
        env: The agent's environment (needed for observations and ``VecNormalize`` statistics).
        batch: Observations in the parity batch.
        seed: Seed of the random play.
        scores: Add the ``scores`` output (discrete actions; :func:`action_scores`), checked too.

    Returns:
        ``export/max_abs_diff``, ``export/tolerance``, ``export/action_agreement`` (fraction of equal
        actions) and ``export/batch``.

    Raises:
        ParityError: If the exported graph's actions differ from ``model.predict``.
    """
    import onnxruntime

    from pentad_core.export import ParityError, check_onnx_parity, export_onnx

    if env is None:
        observations = np.stack([model.observation_space.sample() for _ in range(batch)]).astype(np.float32)
    else:
        observations = sample_observations(env, batch, seed)
    module = onnxable_policy(model, env, scores=scores)
    example = torch.as_tensor(observations[:2])
    outputs = ["action", "scores"] if scores else ["action"]
    export_onnx(module, example, path, input_names=["observation"], output_names=outputs)
    report = check_onnx_parity(module, path, torch.as_tensor(observations), tolerance=1e-4)
    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    onnx_actions = session.run(["action"], {"observation": observations})[0]
    expected = np.asarray(predict_actions(model, observations, env)).reshape(onnx_actions.shape)
    if isinstance(model.action_space, spaces.Box):
        agreement = float(np.mean(np.all(np.abs(onnx_actions - expected) <= 1e-4, axis=tuple(range(1, expected.ndim)))))
    else:
        agreement = float(np.mean(onnx_actions == expected))
    if agreement < 1.0:
        raise ParityError(
            f"ONNX policy {path} chose different actions than the agent on {1 - agreement:.1%} of the parity batch."
        )
    return {**report.as_metrics(), "export/action_agreement": agreement, "export/batch": float(len(observations))}
