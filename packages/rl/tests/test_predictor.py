"""Predictor.from_run: a trained run folder or its agent .zip acts like the in-memory agent, without any env."""

from __future__ import annotations

import shutil

import numpy as np
import pytest

from pentad_core.errors import DataError
from pentad_rl.agents import normalization_of
from pentad_rl.config import RLConfig
from pentad_rl.envs.make import make_env
from pentad_rl.pipeline import train
from pentad_rl.predictor import Predictor


def trained_run(tmp_path, **overrides):
    """A short run written like the CLI writes one (config.yaml beside checkpoints/)."""
    from pentad_core.runs import RunDir

    fields = {
        "dataset": "CartPole-v1",
        "n_envs": 2,
        "timesteps": 128,
        "eval_freq": 64,
        "eval_episodes": 1,
        "model_options": {"n_steps": 32, "batch_size": 64},
        "policy_kwargs": {"net_arch": [16]},
        **overrides,
    }
    config = RLConfig(**fields)
    run = RunDir.for_training(tmp_path / "run", resume=False, overwrite=False)
    run.write_config(config)
    result = train(config, run.path, seed=0, tensorboard=False)
    return config, run.path, result


def observations_of(config: RLConfig, count: int = 32) -> np.ndarray:
    """Raw observations from random play (not normalised), shape ``(count, *obs_shape)``."""
    env = make_env(RLConfig(dataset=config.dataset, env_kwargs=config.env_kwargs), n_envs=1, seed=5)
    env.action_space.seed(5)
    rows, observation = [], env.reset()
    while len(rows) < count:
        rows.append(observation[0])
        observation, *_ = env.step(np.array([env.action_space.sample()]))
    env.close()
    return np.stack(rows).astype(np.float32)


def test_from_the_run_folder_and_the_zip_acts_like_the_trained_agent(tmp_path):
    config, folder, result = trained_run(tmp_path)
    observations = observations_of(config)
    expected, _ = result.model.predict(observations, deterministic=True)  # the final agent is last.zip

    from_zip = Predictor.from_run(folder / "checkpoints" / "last.zip")
    np.testing.assert_array_equal(from_zip.predict(observations), expected)
    assert from_zip.config == config and from_zip.run.folder == folder

    from_folder = Predictor.from_run(folder)  # prefers best.zip, the evaluation's best agent
    assert from_folder.run.checkpoint.name == "best.zip"
    best = type(result.model).load(folder / "checkpoints" / "best.zip")
    np.testing.assert_array_equal(from_folder.predict(observations), best.predict(observations, deterministic=True)[0])
    assert from_folder.predict(observations[0]).shape == (1,)  # a single observation is a batch of one


def test_normalisation_statistics_come_from_the_run_and_no_env_or_data_is_needed(tmp_path):
    config, folder, result = trained_run(
        tmp_path, dataset="Pendulum-v1", model="td3", normalize=True, eval_freq=0,
        model_options={"learning_starts": 16, "buffer_size": 500},
    )  # fmt: skip
    moved = tmp_path / "elsewhere"
    shutil.move(folder, moved)  # the run folder alone (no training data exists for rl; no env is built)
    predictor = Predictor.from_run(moved)
    assert predictor.run.checkpoint.name == "last.zip" and predictor.normalization is not None
    observations = observations_of(config) * 3.0
    env = make_env(config, n_envs=1, training=False)
    from pentad_rl.envs.make import load_normalization

    load_normalization(env, normalization_of(moved / "checkpoints" / "last.zip"))
    expected, _ = result.model.predict(env.normalize_obs(observations), deterministic=True)
    np.testing.assert_allclose(predictor.predict(observations), expected, atol=1e-6)
    unnormalised, _ = result.model.predict(observations, deterministic=True)
    assert not np.allclose(unnormalised, expected)  # the statistics matter for these observations


def test_wrong_observations_are_data_errors(tmp_path):
    _, folder, _ = trained_run(tmp_path)
    predictor = Predictor.from_run(folder)
    with pytest.raises(DataError, match=r"\(N, 4\)"):
        predictor.predict(np.zeros((3, 5), np.float32))
    with pytest.raises(DataError, match="NaN"):
        predictor.predict(np.full((2, 4), np.nan, np.float32))


def test_an_environment_that_does_not_fit_the_agent_is_a_checkpoint_error(tmp_path):
    from pentad_core.errors import CheckpointError

    _, folder, _ = trained_run(tmp_path)
    predictor = Predictor.from_run(folder)
    assert predictor.make_env().observation_space == predictor.model.observation_space
    with pytest.raises(CheckpointError, match="Acrobot-v1"):
        predictor.make_env(RLConfig(dataset="Acrobot-v1"))
