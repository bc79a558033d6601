"""Presets read from the installed rl_zoo3's hyperparams/*.yml, pentad's overrides, library defaults, --time-budget."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import pytest
import yaml

from pentad_core.errors import ConfigError
from pentad_rl import zoo
from pentad_rl.budget import TimeBudget
from pentad_rl.config import RLConfig
from pentad_rl.presets import find_preset, pentad_files, resolve_agent_config

#: Keys of a Zoo entry that are not constructor arguments of the algorithm.
NOT_OPTIONS = {"n_timesteps", "policy", "n_envs", "normalize", "policy_kwargs", "frame_stack", "env_wrapper"}


def zoo_entry(file: str, key: str) -> dict:
    """The entry read straight from the installed package's file, independently of pentad_rl.zoo."""
    folder = Path(next(iter(importlib.util.find_spec("rl_zoo3").submodule_search_locations))) / "hyperparams"
    return yaml.safe_load((folder / file).read_text())[key]


@pytest.mark.parametrize(("algo", "file"), [("ppo", "ppo.yml"), ("a2c", "a2c.yml"), ("dqn", "dqn.yml")])
def test_a_zoo_preset_holds_exactly_the_values_of_the_installed_yml(algo, file):
    entry = zoo_entry(file, "CartPole-v1")
    config = resolve_agent_config(algo, "CartPole-v1")
    assert config.timesteps == int(float(entry["n_timesteps"])) and config.policy == entry["policy"]
    assert config.n_envs == entry.get("n_envs", 1)
    assert config.model_options == {k: v for k, v in entry.items() if k not in NOT_OPTIONS}
    assert config.zoo == f"{file}:CartPole-v1" and f"hyperparams/{file}:CartPole-v1" in config.source
    if algo == "dqn":  # the Zoo writes policy_kwargs as Python text: "dict(net_arch=[256, 256])"
        assert entry["policy_kwargs"] == "dict(net_arch=[256, 256])"
        assert config.policy_kwargs == {"net_arch": [256, 256]}


def test_normalisation_wrappers_and_python_text_are_converted():
    entry = zoo_entry("ppo.yml", "Acrobot-v1")
    acrobot = resolve_agent_config("ppo", "Acrobot-v1")
    assert entry["normalize"] is True and acrobot.normalize
    assert acrobot.normalize_kwargs == {"gamma": entry["gamma"]}  # the Zoo normalises returns with the algo's gamma
    lstm = resolve_agent_config("recurrent-ppo", "MountainCarContinuousNoVel-v0")
    text = zoo_entry("ppo_lstm.yml", "MountainCarContinuousNoVel-v0")["policy_kwargs"]
    assert isinstance(text, str) and lstm.policy_kwargs == zoo.parse_expression(text) and lstm.policy_kwargs
    carracing = zoo.convert({"normalize": "{'norm_obs': False, 'norm_reward': True}", "n_timesteps": 1e3})
    expected = {"timesteps": 1000, "normalize": True, "normalize_kwargs": {"norm_obs": False, "norm_reward": True}}
    assert carracing == expected
    atari = zoo.zoo_preset("a2c", "ALE/Pong-v5")
    assert atari.key == "atari" and atari.values["env_wrapper"] == ["atari"] and atari.values["frame_stack"] == 4
    assert atari.values["policy_kwargs"] == {"optimizer_class": "RMSpropTFLike", "optimizer_kwargs": {"eps": 1e-5}}
    assert atari.values["env_kwargs"] == {"frameskip": 1}  # gymnasium's v5 ids must not skip frames twice


def test_the_zoo_is_read_without_importing_rl_zoo3():
    zoo.read_file.cache_clear()
    resolve_agent_config("ppo", "MountainCar-v0")
    assert zoo.hyperparams_dir() is not None and "rl_zoo3" not in sys.modules


def test_python_text_in_the_zoo_is_parsed_never_evaluated():
    text = "dict(log_std_init=-2, ortho_init=False, activation_fn=nn.ReLU, net_arch=dict(pi=[256, 256], vf=[256]))"
    assert zoo.parse_expression(text) == {
        "log_std_init": -2,
        "ortho_init": False,
        "activation_fn": "relu",
        "net_arch": {"pi": [256, 256], "vf": [256]},
    }
    for unsafe in (
        "__import__('os').system('touch /tmp/pwned')",
        "dict(net_arch=open('/etc/passwd').read())",
        "nn.Module.__subclasses__()",
        "dict(activation_fn=nn.Identity)",
        "[x for x in range(3)]",
        "(lambda: 0)()",
        "dict(**globals())",
        "2 ** 100",
    ):
        with pytest.raises(ConfigError, match="refused"):
            zoo.parse_expression(unsafe)
    with pytest.raises(ConfigError, match="refused"):
        zoo.convert({"policy_kwargs": "dict(net_arch=eval('[64]'))"}, "test entry")


def test_an_entry_pentad_cannot_reproduce_is_reported_not_guessed():
    with pytest.raises(ConfigError, match="FlatObsWrapper, which pentad does not provide"):
        zoo.zoo_preset("ppo", "MiniGrid-Empty-Random-5x5-v0")
    assert find_preset("ppo", "NoSuchEnv-v0") is None and zoo.entry_key("ppo", "NoSuchEnv-v0") is None


@pytest.fixture
def configs(tmp_path, monkeypatch):
    """An empty ``$PENTAD_CONFIGS/rl`` to write override files into."""
    folder = tmp_path / "configs" / "rl"
    folder.mkdir(parents=True)
    monkeypatch.setenv("PENTAD_CONFIGS", str(tmp_path / "configs"))
    return folder


def test_an_override_file_wins_over_the_zoo_and_states_why(configs):
    (configs / "cartpole-v1.yaml").write_text(
        "dataset: CartPole-v1\nmodels:\n  ppo:\n    source: fewer epochs keep the demo fast\n"
        "    model_options: {n_epochs: 5}\n"
    )
    config = resolve_agent_config("ppo", "CartPole-v1")
    assert config.model_options["n_epochs"] == 5 and config.model_options["n_steps"] == 32  # the rest is the Zoo's
    assert config.zoo == "ppo.yml:CartPole-v1"
    assert "hyperparams/ppo.yml:CartPole-v1" in config.source and "fewer epochs keep the demo fast" in config.source
    assert find_preset("ppo", "CartPole-v1").origin == "rl_zoo3 + pentad"
    (configs / "cartpole-v1.yaml").write_text("models:\n  ppo:\n    zoo: none\n    source: mine\n    n_envs: 2\n")
    own = resolve_agent_config("ppo", "CartPole-v1")
    assert own.n_envs == 2 and own.model_options == {} and own.zoo == "" and own.source.endswith("mine")


def test_the_repository_files_hold_only_what_the_zoo_lacks_each_saying_why():
    for path in pentad_files():
        recipe = yaml.safe_load(path.read_text())
        for algo, section in recipe["models"].items():
            assert section.get("source"), f"{path.name} models.{algo} must say why it exists"
            found = find_preset(algo, recipe["dataset"])
            if zoo.entry_key(algo, recipe["dataset"]) is not None:
                assert found.origin == "rl_zoo3 + pentad", f"{path.name} models.{algo} copies the Zoo"
    recurrent = resolve_agent_config("recurrent-ppo", "CartPole-v1")
    assert recurrent.zoo == "ppo_lstm.yml:CartPoleNoVel-v1" and recurrent.normalize  # read, not copied


def test_models_and_data_list_say_where_presets_come_from_and_a_bare_pair_says_library_defaults(tmp_path, capsys):
    from pentad_rl.cli import main

    assert main(["models", "maskable-ppo"]) == 0
    assert "library defaults" in capsys.readouterr().out
    assert main(["models", "dqn"]) == 0
    out = capsys.readouterr().out
    assert "MountainCar-v0" in out and "pentad/ConnectFour-v0" in out and "rl_zoo3" in out
    assert main(["data", "list"]) == 0
    out = capsys.readouterr().out
    assert "recurrent-ppo" in out and "pentad" in out and "Pendulum-v1" in out
    argv = ["train", "--algo", "a2c", "--env", "pentad/ConnectFour-v0", "--timesteps", "64", "--set", "eval_freq=0"]
    assert main([*argv, "--set", "eval_episodes=1", "--out", str(tmp_path / "r")]) == 0
    out = capsys.readouterr().out
    assert "no preset for a2c on pentad/ConnectFour-v0" in out and "stable-baselines3's library defaults apply" in out


def test_a_time_budget_stops_training_cleanly_with_a_saved_evaluated_agent(tmp_path):
    from pentad_rl.pipeline import train

    config = RLConfig(dataset="CartPole-v1", timesteps=10_000_000, eval_freq=0, eval_episodes=2, time_budget="2s")
    config.model_options = {"n_steps": 32}
    result = train(config, tmp_path / "run", tensorboard=False)
    assert result.stopped_by_budget and 0 < result.model.num_timesteps < config.timesteps
    assert (tmp_path / "run" / "checkpoints" / "last.zip").is_file() and result.evaluation.episodes == 2
    assert result.metrics()["train/stopped_by_budget"] == 1.0
    budget = TimeBudget(100.0, steps_per_s=10.0)
    assert not budget.spent(0) and budget.spent(10_000)  # the next rollout would overrun: stop before it
    budget.load_state(None, {"elapsed_s": 99.5}, {})
    assert budget.spent(0) is False and budget.spent(10) is True  # a resumed run counts the time already spent


def test_train_with_a_time_budget_chooses_the_steps_from_a_probe_and_records_why(tmp_path, capsys):
    from pentad_rl.cli import main

    out = tmp_path / "run"
    argv = ["train", "--algo", "ppo", "--env", "CartPole-v1", "--time-budget", "20s", "--out", str(out)]
    assert main([*argv, "--set", "eval_freq=0", "--set", "eval_episodes=2"]) == 0
    saved = yaml.safe_load((out / "config.yaml").read_text())
    choice = saved["self_config"]["choices"]["timesteps"]
    assert saved["timesteps"] == choice["value"] <= 100_000 and "steps/s" in choice["reason"]
    assert saved["self_config"]["fingerprint"]["actions"] == "discrete(2)"
    metrics = json.loads((out / "metrics.json").read_text())
    assert "eval/mean_return" in metrics and (out / "checkpoints" / "last.zip").is_file()
    assert "self-configured" in capsys.readouterr().out
