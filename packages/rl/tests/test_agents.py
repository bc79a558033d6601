"""Contract tests over every registered algorithm: build, learn a few steps, save/load equality, ONNX export."""

from __future__ import annotations

import numpy as np
import pytest
from stable_baselines3.common.base_class import BaseAlgorithm

from pentad_core.errors import CheckpointError, ConfigError
from pentad_core.registry import ModelInfo
from pentad_rl.agents import build_agent, load_agent, save_agent
from pentad_rl.algorithms import action_kind, default_policy, is_off_policy
from pentad_rl.config import RLConfig
from pentad_rl.envs.make import make_env
from pentad_rl.export import export_policy
from pentad_rl.registry import ALGORITHMS

CONTINUOUS_ONLY = {name for name in ALGORITHMS.names() if ALGORITHMS.info(name).tasks == ("continuous",)}


def small_config(algo: str) -> RLConfig:
    env = "Pendulum-v1" if algo in CONTINUOUS_ONLY else "CartPole-v1"
    if algo == "maskable-ppo":
        env = "pentad/ConnectFour-v0"  # provides action_masks()
    model_options: dict = {}
    if algo in ("ppo", "maskable-ppo", "recurrent-ppo", "trpo"):
        model_options = {"n_steps": 32, "batch_size": 32}
    elif algo == "a2c":
        model_options = {"n_steps": 8}
    elif is_off_policy(algo):
        model_options = {"learning_starts": 16, "buffer_size": 1000, "batch_size": 16}
    policy_kwargs = {"net_arch": [16]} if algo not in ("recurrent-ppo",) else {"lstm_hidden_size": 8}
    return RLConfig(
        model=algo, dataset=env, n_envs=2, timesteps=64, model_options=model_options, policy_kwargs=policy_kwargs
    )


def test_registry_entries_are_sb3_algorithms():
    assert {"ppo", "a2c", "dqn", "sac", "td3", "qrdqn", "trpo", "recurrent-ppo"} <= set(ALGORITHMS.names())
    for name in ALGORITHMS.names():
        assert issubclass(ALGORITHMS.get(name), BaseAlgorithm)


@pytest.mark.parametrize("algo", ALGORITHMS.names())
def test_every_algorithm_has_model_info(algo):
    info = ALGORITHMS.info(algo)
    assert isinstance(info, ModelInfo)
    assert info.inputs == "observation" and info.family in ("sb3", "sb3-contrib")
    assert info.tasks and set(info.tasks) <= {"discrete", "continuous"}
    assert ALGORITHMS.describe(algo)
    # Its default options are constructor arguments of the class (checked against the signature).
    assert ALGORITHMS.options(algo) == dict(info.defaults)


def test_default_policy_comes_from_the_class_and_the_observation_space():
    from gymnasium import spaces

    vector, image = spaces.Box(0, 1, (4,)), spaces.Box(0, 255, (84, 84, 3), dtype=np.uint8)
    assert default_policy("ppo", vector) == "MlpPolicy" and default_policy("dqn", image) == "CnnPolicy"
    assert default_policy("recurrent-ppo", vector) == "MlpLstmPolicy"
    assert default_policy("a2c", spaces.Dict({"x": vector})) == "MultiInputPolicy"


@pytest.mark.parametrize("algo", ALGORITHMS.names())
def test_learns_a_few_steps_and_save_load_gives_identical_actions(algo, tmp_path):
    config = small_config(algo)
    env = make_env(config, seed=0)
    model = build_agent(config, env, seed=0)
    model.learn(64)
    assert model.num_timesteps >= 64
    for parameter in model.policy.parameters():
        assert np.isfinite(parameter.detach().numpy()).all()
    observations = np.stack([env.observation_space.sample() for _ in range(16)])
    before, _ = model.predict(observations, deterministic=True)
    path = save_agent(model, tmp_path / "agent.zip")
    loaded = load_agent(path, config)
    after, _ = loaded.predict(observations, deterministic=True)
    np.testing.assert_array_equal(before, after)
    # Every exportable algorithm exports with the parity check (discrete ones with their action scores,
    # which `serve` masks); one that is not says so and is served with torch.
    if not ALGORITHMS.info(algo).exportable:
        with pytest.raises(ConfigError, match="not supported"):
            export_policy(loaded, tmp_path / "policy.onnx", env)
        env.close()
        return
    discrete = action_kind(env.action_space) == "discrete"
    metrics = export_policy(loaded, tmp_path / "policy.onnx", env, batch=16, scores=discrete)
    assert metrics["export/action_agreement"] == 1.0 and metrics["export/max_abs_diff"] <= 1e-4
    if discrete:
        import onnxruntime

        session = onnxruntime.InferenceSession(str(tmp_path / "policy.onnx"), providers=["CPUExecutionProvider"])
        actions, scores = session.run(None, {"observation": observations.astype(np.float32)})
        np.testing.assert_array_equal(actions, after)
        np.testing.assert_array_equal(scores.argmax(axis=1), after)
    env.close()


def test_wrong_action_space_is_a_config_error():
    config = RLConfig(model="dqn", dataset="Pendulum-v1")
    with pytest.raises(ConfigError, match="dqn"):
        build_agent(config, make_env(config))


def test_misspelled_model_option_is_a_config_error_listing_the_valid_ones():
    config = RLConfig(model="ppo", dataset="CartPole-v1", model_options={"n_stepz": 3})
    with pytest.raises(ConfigError, match="n_stepz") as raised:
        build_agent(config, make_env(config))
    assert "'n_steps'" in raised.value.message and "clip_range" in raised.value.message
    given = RLConfig(model="dqn", dataset="CartPole-v1", model_options={"seed": 3})
    with pytest.raises(ConfigError, match="seed"):
        build_agent(given, make_env(given))


def test_missing_or_foreign_checkpoint(tmp_path):
    with pytest.raises(Exception, match="not found"):
        load_agent(tmp_path / "none.zip", RLConfig())
    junk = tmp_path / "junk.zip"
    junk.write_bytes(b"not a zip")
    with pytest.raises(CheckpointError, match="not a readable agent"):
        load_agent(junk, RLConfig())
