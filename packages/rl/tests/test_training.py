"""Training end to end: learning on an easy task, evaluation, resume, recording, export, tuning."""

from __future__ import annotations

import importlib.util
import sys

import gymnasium as gym
import imageio.v3 as iio
import numpy as np
import pytest
from gymnasium import spaces
from stable_baselines3.common.callbacks import BaseCallback

from pentad_core.errors import CheckpointError, ConfigError
from pentad_rl.agents import load_agent, normalization_of, read_arrays
from pentad_rl.checkpoints import read_resume_state
from pentad_rl.config import RLConfig
from pentad_rl.envs.make import make_env
from pentad_rl.evaluation import evaluate_agent
from pentad_rl.export import export_policy
from pentad_rl.pipeline import best_config, train, trials_table, tune
from pentad_rl.presets import resolve_agent_config
from pentad_rl.recording import record, write_animation


def test_ppo_with_the_zoo_preset_learns_cartpole(tmp_path):
    """A short run of the RL Zoo preset far exceeds a random policy (~22 steps per episode)."""
    config = resolve_agent_config("ppo", "CartPole-v1", {"timesteps": 16_384, "eval_episodes": 5, "eval_freq": 0})
    result = train(config, tmp_path, seed=0, tensorboard=False)
    assert result.model.num_timesteps >= 16_384
    assert result.evaluation.mean_return > 100, result.evaluation
    assert (tmp_path / "checkpoints" / "last.zip").is_file()


class FixedEpisodes(gym.Env):
    """Episodes of exactly ``length`` steps with reward 1 per step; success when action 1 ends it."""

    observation_space = spaces.Box(0, 1, (1,), np.float32)
    action_space = spaces.Discrete(2)

    def __init__(self, length: int = 5) -> None:
        self.length, self.t = length, 0

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self.t = 0
        return np.zeros(1, np.float32), {}

    def step(self, action):
        self.t += 1
        done = self.t >= self.length
        return np.zeros(1, np.float32), 1.0, done, False, {"is_success": done and int(action) == 1}


class ConstantAgent:
    def __init__(self, action: int) -> None:
        self.action = action

    def predict(self, observation, state=None, episode_start=None, deterministic=True):
        return np.full(len(observation), self.action), None


@pytest.mark.parametrize(("n_envs", "action", "success"), [(1, 1, 1.0), (3, 0, 0.0)])
def test_evaluation_statistics_on_a_hand_computed_env(n_envs, action, success):
    from stable_baselines3.common.env_util import make_vec_env

    env = make_vec_env(FixedEpisodes, n_envs=n_envs, seed=0)
    result = evaluate_agent(ConstantAgent(action), env, n_episodes=6)
    assert result.episodes == 6 and result.returns == [5.0] * 6 and result.lengths == [5] * 6
    assert result.mean_return == 5.0 and result.std_return == 0.0 and result.mean_length == 5.0
    assert result.success_rate == success
    assert result.metrics()["eval/success_rate"] == success
    with pytest.raises(ConfigError):
        evaluate_agent(ConstantAgent(0), env, n_episodes=0)


def test_resume_continues_the_step_count_of_an_on_policy_run(tmp_path):
    config = RLConfig(
        dataset="CartPole-v1",
        n_envs=2,
        timesteps=256,
        eval_freq=0,
        eval_episodes=1,
        model_options={"n_steps": 32, "batch_size": 64},
        policy_kwargs={"net_arch": [16]},
    )
    first = train(config, tmp_path, tensorboard=False)
    assert first.model.num_timesteps == 256
    config.timesteps = 512
    resumed = train(config, tmp_path, resume="last", tensorboard=False)
    assert resumed.model.num_timesteps == 512 and resumed.steps_trained == 256
    with pytest.raises(ConfigError, match="already"):
        train(config, tmp_path, resume="last", tensorboard=False)
    with pytest.raises(CheckpointError):
        train(config, tmp_path / "elsewhere", resume="last", tensorboard=False)


def test_resume_restores_the_replay_buffer_of_an_off_policy_run(tmp_path):
    config = RLConfig(
        model="dqn",
        dataset="CartPole-v1",
        timesteps=300,
        eval_freq=0,
        eval_episodes=1,
        model_options={"learning_starts": 50, "buffer_size": 2000, "train_freq": 4},
        policy_kwargs={"net_arch": [16]},
    )
    first = train(config, tmp_path, tensorboard=False)
    saved = first.model.replay_buffer
    assert saved.size() == 300
    config.timesteps = 500
    resumed = train(config, tmp_path, resume="last", tensorboard=False)
    buffer = resumed.model.replay_buffer
    assert resumed.model.num_timesteps == 500 and buffer.size() == 500
    np.testing.assert_array_equal(buffer.observations[:300], saved.observations[:300])
    np.testing.assert_array_equal(buffer.actions[:300], saved.actions[:300])


def test_checkpoints_best_model_and_learning_curve(tmp_path):
    config = RLConfig(
        dataset="CartPole-v1",
        n_envs=2,
        timesteps=256,
        eval_freq=128,
        eval_episodes=2,
        checkpoint_freq=128,
        model_options={"n_steps": 32, "batch_size": 64},
        policy_kwargs={"net_arch": [16]},
    )
    result = train(config, tmp_path, tensorboard=True)
    names = {p.name for p in (tmp_path / "checkpoints").iterdir()}
    assert {"last.zip", "best.zip", "step_128.zip"} <= names
    assert [point["timesteps"] for point in result.curve] == [128.0, 256.0]
    assert list(tmp_path.rglob("events.out.tfevents.*"))


def test_record_gif_and_onnx_export_of_a_normalised_agent(tmp_path):
    config = RLConfig(
        model="sac",
        dataset="Pendulum-v1",
        timesteps=64,
        eval_freq=0,
        eval_episodes=1,
        normalize=True,
        model_options={"learning_starts": 16, "buffer_size": 500},
        policy_kwargs={"net_arch": [16]},
    )
    result = train(config, tmp_path, tensorboard=False)
    statistics = normalization_of(tmp_path / "checkpoints" / "last.zip")
    path, _returns = record(result.model, config, tmp_path / "agent.gif", max_frames=20, normalization=statistics)
    frames = iio.imread(path, index=None)
    assert frames.ndim == 4 and frames.shape[0] == 20 and frames.shape[-1] == 3
    env = make_env(config, n_envs=1, training=False)
    from pentad_rl.envs.make import load_normalization

    load_normalization(env, statistics)
    model = load_agent(tmp_path / "checkpoints" / "last.zip", config)
    metrics = export_policy(model, tmp_path / "policy.onnx", env, batch=32)
    assert metrics["export/action_agreement"] == 1.0 and metrics["export/max_abs_diff"] <= 1e-4


FFMPEG = importlib.util.find_spec("imageio_ffmpeg") is not None


def test_recording_rejects_unsupported_formats(tmp_path):
    frame = np.zeros((8, 8, 3), np.uint8)
    with pytest.raises(ConfigError, match="gif"):
        write_animation([frame], tmp_path / "clip.avi")
    with pytest.raises(ConfigError, match="nothing to record"):
        write_animation([], tmp_path / "clip.gif")


def test_mp4_without_imageio_ffmpeg_says_what_to_install(tmp_path, monkeypatch):
    """Whether or not imageio-ffmpeg is installed here, its absence is simulated: the error names it."""
    monkeypatch.setitem(sys.modules, "imageio_ffmpeg", None)  # `import imageio_ffmpeg` raises ImportError
    with pytest.raises(ConfigError, match="imageio-ffmpeg"):
        write_animation([np.zeros((8, 8, 3), np.uint8)], tmp_path / "clip.mp4")
    assert not (tmp_path / "clip.mp4").exists()


@pytest.mark.skipif(not FFMPEG, reason="MP4 needs imageio-ffmpeg (pip install imageio-ffmpeg), not installed")
def test_mp4_with_imageio_ffmpeg_holds_the_frames(tmp_path):
    frames = [np.full((16, 16, 3), 40 * i, np.uint8) for i in range(5)]
    path = write_animation(frames, tmp_path / "clip.mp4", fps=5)
    read = iio.imread(path, index=None)
    assert read.shape[0] == 5 and read.shape[1:3] == (16, 16)
    assert abs(float(read[4].mean()) - 160.0) < 8  # lossy codec: the last frame's grey level survives


def test_self_play_refreshes_the_opponent_and_is_evaluated_against_the_heuristic(tmp_path):
    config = RLConfig(
        dataset="pentad/ConnectFour-v0",
        n_envs=2,
        timesteps=256,
        eval_freq=0,
        eval_episodes=4,
        self_play=True,
        self_play_freq=128,
        env_kwargs={"difficulty": 0},
        model_options={"n_steps": 32, "batch_size": 64},
        policy_kwargs={"net_arch": [16]},
    )
    snapshots = PolicySnapshots()
    result = train(config, tmp_path, tensorboard=False, callbacks=[snapshots])
    # Two refreshes (steps 128 and 256); the opponent is the frozen policy of step 256 (taken before the
    # update that followed), not the final agent; every training env plays it.
    last = tmp_path / "checkpoints" / "last.zip"
    assert read_resume_state(last)["self_play"] == {"last": 256, "refreshes": 2, "has_opponent": True}
    opponent = read_arrays(last, "pentad/self_play")
    assert set(opponent) == set(snapshots.weights[256])
    for name, value in opponent.items():
        np.testing.assert_array_equal(value, snapshots.weights[256][name])
    final = result.model.policy.state_dict()
    assert any(not np.array_equal(value, final[name].numpy()) for name, value in opponent.items())
    assert snapshots.opponents == [True, True]
    # The final evaluation plays the heuristic (difficulty 0), exactly as a fresh heuristic env does.
    heuristic = make_env(RLConfig(dataset=config.dataset, env_kwargs={"difficulty": 0}), n_envs=1, seed=10_000)
    expected = evaluate_agent(result.model, heuristic, n_episodes=4)
    assert result.evaluation.returns == expected.returns and result.evaluation.success_rate == expected.success_rate
    assert result.evaluation.success_rate == sum(r == 1.0 for r in expected.returns) / 4
    with pytest.raises(ConfigError, match="two-player"):
        train(RLConfig(dataset="CartPole-v1", self_play=True, timesteps=64), tmp_path / "cp", tensorboard=False)


class PolicySnapshots(BaseCallback):
    """The policy's weights at the end of every rollout (before the update); whether each env has an opponent."""

    def __init__(self) -> None:
        super().__init__()
        self.weights: dict[int, dict[str, np.ndarray]] = {}
        self.opponents: list[bool] = []

    def _on_rollout_end(self) -> None:
        self.weights[self.num_timesteps] = {k: v.numpy().copy() for k, v in self.model.policy.state_dict().items()}

    def _on_training_end(self) -> None:
        self.opponents = [env.unwrapped._opponent_policy is not None for env in self.model.get_env().envs]

    def _on_step(self) -> bool:
        return True


def test_tune_runs_trials_and_writes_a_loadable_preset(tmp_path):
    config = RLConfig(dataset="CartPole-v1", n_envs=2, timesteps=256, eval_episodes=2, policy_kwargs={"net_arch": [16]})
    study = tune(config, n_trials=2, n_evaluations=2, seed=0, workdir=tmp_path)
    rows = trials_table(study)
    assert len(rows) == 2 and {"trial", "state", "mean_return", "learning_rate"} <= set(rows[0])
    best = best_config(config, study)
    assert best.model_options["learning_rate"] == study.best_trial.params["learning_rate"]
    from pentad_core.config import load_yaml
    from pentad_rl.presets import write_preset

    written = write_preset(best, tmp_path / "ppo-cartpole-v1.yaml", header="tuned")
    assert load_yaml(written)["model_options"] == best.model_options
