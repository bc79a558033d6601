"""Presets, schedules, hyperparameter conversion and environment construction errors."""

from __future__ import annotations

import importlib.util

import pytest
import torch.nn as nn

from pentad_core.errors import ConfigError
from pentad_rl.agents import build_agent
from pentad_rl.config import RLConfig
from pentad_rl.envs.make import check_env_id, make_env
from pentad_rl.hyperparams import LinearSchedule, build_model_options, build_policy_kwargs, parse_schedule
from pentad_rl.presets import env_presets, preset_name, resolve_agent_config
from pentad_rl.registry import ENVIRONMENTS


def test_linear_schedule_matches_rl_zoo():
    schedule = parse_schedule("lin_0.001")
    assert isinstance(schedule, LinearSchedule)
    assert schedule(1.0) == pytest.approx(0.001) and schedule(0.25) == pytest.approx(0.00025)
    assert schedule(0.0) == 0.0
    assert parse_schedule("3e-4") == pytest.approx(3e-4) and parse_schedule(0.2) == 0.2
    with pytest.raises(ConfigError, match="lin_0.001"):
        parse_schedule("cosine_0.1")


def test_model_options_and_policy_kwargs_conversion():
    converted = build_model_options({"clip_range": "lin_0.2", "train_freq": [4, "step"], "gamma": 0.9})
    assert converted["clip_range"](0.5) == pytest.approx(0.1)
    assert converted["train_freq"] == (4, "step") and converted["gamma"] == 0.9
    assert build_policy_kwargs({"activation_fn": "nn.ReLU", "net_arch": [8]})["activation_fn"] is nn.ReLU
    with pytest.raises(ConfigError, match="activation_fn"):
        build_policy_kwargs({"activation_fn": "swish9"})


def test_preset_is_used_by_default_and_overrides_win():
    config = resolve_agent_config("ppo", "CartPole-v1", {"timesteps": 1000, "model_options": {"n_epochs": 3}})
    assert config.n_envs == 8 and config.model_options["learning_rate"] == "lin_0.001"
    assert config.model_options["n_epochs"] == 3 and config.timesteps == 1000
    assert config.zoo == "ppo.yml:CartPole-v1" and "rl_zoo3" in config.source
    bare = resolve_agent_config("maskable-ppo", "Pendulum-v1")
    assert bare.model_options == {} and bare.n_envs == 1 and bare.source == "" and bare.zoo == ""
    assert preset_name("dqn", "pentad/ConnectFour-v0") == "dqn-pentad-connectfour-v0"


#: The optional extra an environment family needs, and the module that tells whether it is installed.
EXTRAS = {"LunarLander": ("box2d", "Box2D"), "ALE/": ("atari", "ale_py")}


def extra_of(env_id: str) -> tuple[str, bool] | None:
    """``(extra, installed)`` for an env of an optional family, else ``None``."""
    for prefix, (extra, module) in EXTRAS.items():
        if env_id.startswith(prefix):
            return extra, importlib.util.find_spec(module) is not None
    return None


def listed_pairs() -> list[tuple[str, str]]:
    """Every (algorithm, environment) with a preset among the environments ``data list`` shows."""
    return [(algo, env) for env in ENVIRONMENTS.names() for algo in env_presets(env)[0]]


@pytest.mark.parametrize(("algo", "env"), listed_pairs())
def test_every_preset_of_a_listed_environment_builds_its_agent(algo, env):
    """Every preset (the Zoo's or pentad's) of the listed environments builds its environment and agent; one
    whose extra is absent is skipped naming the extra (the error users then get is tested below)."""
    config = resolve_agent_config(algo, env, {"n_envs": 1})
    assert config.source, f"the preset of {algo} on {env} must say where its values come from"
    extra = extra_of(config.env)
    if extra is not None and not extra[1]:
        pytest.skip(f"{config.env} needs the extra pentad-rl[{extra[0]}], which is not installed")
    check_env_id(config.env)
    env_ = make_env(config)
    agent = build_agent(config, env_)
    assert agent.n_envs == 1 and agent.action_space == env_.action_space
    env_.close()


@pytest.mark.parametrize("env_id", ["LunarLander-v3", "ALE/Breakout-v5"])
def test_an_env_of_an_optional_family_names_its_extra_when_absent_and_works_when_present(env_id):
    extra, installed = extra_of(env_id)
    if installed:
        check_env_id(env_id)  # registered and usable: no error
        env = make_env(RLConfig(dataset=env_id, env_wrapper=["atari"] if extra == "atari" else []))
        assert env.num_envs == 1
        env.close()
    else:
        with pytest.raises(ConfigError, match=rf"pentad-rl\[{extra}\]"):
            check_env_id(env_id)


def test_environment_errors_name_the_fix():
    with pytest.raises(ConfigError, match="CartPole-v1"):
        check_env_id("CartPole-v7")
    with pytest.raises(ConfigError, match="env_kwargs"):
        make_env(RLConfig(dataset="CartPole-v1", env_kwargs={"no_such_argument": 1}))


def test_vectorised_envs_dummy_and_subprocess_are_seeded():
    observations = []
    for vec_env in ("dummy", "subproc"):
        env = make_env(RLConfig(dataset="CartPole-v1", n_envs=2, vec_env=vec_env), seed=3)
        assert env.num_envs == 2
        observations.append(env.reset())
        env.close()
    assert (observations[0] == observations[1]).all()


def test_normalisation_and_frame_stacking_wrappers():
    env = make_env(RLConfig(dataset="CartPole-v1", normalize=True, frame_stack=4))
    assert env.observation_space.shape == (16,)
    from stable_baselines3.common.vec_env import VecNormalize

    assert isinstance(env, VecNormalize)
    env.close()


def test_schedules_pickle_under_the_module_name_that_saved_agents_reference():
    """Agents saved by every pentad-rl release pickle ``pentad_rl.hyperparams.LinearSchedule``."""
    assert LinearSchedule.__module__ == "pentad_rl.hyperparams"


def test_a_run_config_from_before_model_options_says_how_to_upgrade(tmp_path):
    import yaml

    from pentad_rl.cli import main

    run = tmp_path / "old"
    (run / "checkpoints").mkdir(parents=True)
    (run / "checkpoints" / "best.zip").write_bytes(b"")
    legacy = {"model": "ppo", "dataset": "CartPole-v1", "batch_size": 32, "hyperparams": {"n_steps": 32}}
    (run / "config.yaml").write_text(yaml.safe_dump(legacy))
    assert main(["evaluate", "--checkpoint", str(run), "--out", str(tmp_path / "e")]) == 2
    from pentad_rl.predictor import Predictor

    with pytest.raises(ConfigError, match="rename `hyperparams:` to `model_options:` and delete batch_size"):
        Predictor.from_run(run)
