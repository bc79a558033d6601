"""A run you start is a run you can continue: kill and Ctrl-C on the app's own CLI, then `--resume last`.

The runs are subprocesses of ``apps/rl`` (as a user's shell starts them): DQN on CartPole with
``normalize: true``, so the replay buffer, the VecNormalize statistics, the exploration schedule and the
Monitor CSVs all have to survive. A resumed run is compared with an uninterrupted one **exactly** (no
tolerance): the same steps, the same final evaluation, the same weights, the same learning curve and the
same training episodes. On the CPU with one thread stable-baselines3 is bit-reproducible, and the
checkpoint holds every state the run depends on (docs/rl.md, "What survives and what is refused").
"""

from __future__ import annotations

import csv
import io
import json
import os
import random
import signal
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch
from stable_baselines3.common.callbacks import BaseCallback

from pentad_core.errors import CheckpointError, ConfigError
from pentad_rl.agents import read_arrays
from pentad_rl.checkpoints import BUFFER, read_resume_state
from pentad_rl.cli import main
from pentad_rl.config import RLConfig
from pentad_rl.pipeline import train

ROOT = Path(__file__).resolve().parents[3]
APP = ROOT / "apps" / "rl"
TIMESTEPS, EVERY, EVALUATE = 4000, 500, 1000
#: DQN from the CartPole preset, smaller (buffer, network, an update every 4 steps), normalised observations.
OPTIONS = [
    "--algo", "dqn", "--env", "CartPole-v1", "--timesteps", str(TIMESTEPS),
    "--set", "normalize=true", "--set", f"checkpoint_freq={EVERY}", "--set", f"eval_freq={EVALUATE}",
    "--set", "eval_episodes=3", "--set", "policy_kwargs={net_arch: [32]}",
    "--set", "model_options.buffer_size=3000", "--set", "model_options.learning_starts=300",
    "--set", "model_options.train_freq=4", "--set", "model_options.gradient_steps=1",
    "--set", "model_options.target_update_interval=100",
]  # fmt: skip


def start(*arguments: str) -> subprocess.Popen:
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    return subprocess.Popen(
        [sys.executable, str(APP), *arguments],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def finish(process: subprocess.Popen, expected: int = 0) -> str:
    out, err = process.communicate(timeout=600)
    assert process.returncode == expected, f"exit {process.returncode}\n{out[-2000:]}\n{err[-2000:]}"
    return err


def monitor_rows(run: Path) -> list[dict[str, str]]:
    with (run / "monitor" / "0.monitor.csv").open() as handle:
        handle.readline()
        return [row for row in csv.DictReader(handle) if row.get("l")]


def steps_logged(run: Path) -> int:
    """Environment steps of the finished training episodes so far (0 before the Monitor file exists)."""
    try:
        return sum(int(row["l"]) for row in monitor_rows(run))
    except (FileNotFoundError, ValueError, TypeError):
        return 0


def kill_at(process: subprocess.Popen, run: Path, step: int) -> None:
    """SIGKILL ``process`` once its training episodes have passed ``step`` (a point between checkpoints)."""
    while steps_logged(run) < step:
        assert process.poll() is None, f"the run ended before step {step}: {process.communicate()}"
        time.sleep(0.01)
    assert (run / "checkpoints" / "last.zip").is_file()
    process.send_signal(signal.SIGKILL)
    process.wait(timeout=60)
    assert process.returncode == -signal.SIGKILL


def weights(run: Path) -> dict[str, np.ndarray]:
    with zipfile.ZipFile(run / "checkpoints" / "last.zip") as archive:
        state = torch.load(io.BytesIO(archive.read("policy.pth")), weights_only=True)
    return {name: tensor.numpy() for name, tensor in state.items()}


def outcome(run: Path) -> dict:
    metrics = json.loads((run / "metrics.json").read_text())
    return {
        "timesteps": metrics["train/timesteps"],
        "evaluation": {key: value for key, value in metrics.items() if key.startswith("eval/")},
        "curve": [(p["timesteps"], p["mean_return"]) for p in json.loads((run / "learning_curve.json").read_text())],
        "episodes": [(row["r"], row["l"]) for row in monitor_rows(run)],
    }


@pytest.fixture(scope="module")
def reference(tmp_path_factory) -> tuple[Path, dict]:
    """The uninterrupted run (in this process: the same code and seeds as a subprocess, one import less)."""
    run = tmp_path_factory.mktemp("reference") / "run"
    assert main(["train", *OPTIONS, "--out", str(run)]) == 0
    return run, outcome(run)


def test_killed_twice_between_checkpoints_and_resumed_equals_the_uninterrupted_run(reference, tmp_path):
    reference_run, expected = reference
    assert expected["timesteps"] == TIMESTEPS and len(expected["curve"]) == TIMESTEPS // EVALUATE
    # Two kills at random steps past the first checkpoint (each may land between two checkpoints or in a save).
    rng = random.Random()
    first = rng.randrange(EVERY + 50, 3 * EVERY)
    # The killed run's Monitor rows past its checkpoint stay until the resumed run cuts them (an episode is
    # at most 500 steps): the second kill point lies beyond them, so it kills the resumed run mid-training.
    second = rng.randrange(first + 2 * EVERY, 7 * EVERY)
    run = tmp_path / "run"
    kill_at(start("train", *OPTIONS, "--out", str(run)), run, first)
    kill_at(start("train", "--out", str(run), "--resume", "last"), run, second)
    assert main(["train", "--out", str(run), "--resume", "last"]) == 0

    got = outcome(run)
    assert got == expected, f"kills at steps {first} and {second}"
    reference_weights, resumed_weights = weights(reference_run), weights(run)
    for name, value in reference_weights.items():
        np.testing.assert_array_equal(resumed_weights[name], value, err_msg=f"kills at {first}, {second}")
    # The Monitor's clock continues across the kills: its t column never goes back.
    times = [float(row["t"]) for row in monitor_rows(run)]
    assert times == sorted(times)
    assert sorted(p.name for p in (run / "monitor").iterdir()) == ["0.monitor.csv"]
    assert (run / "config.resume-1.yaml").is_file() and (run / "config.resume-2.yaml").is_file()


def test_ctrl_c_writes_a_resumable_checkpoint_and_exits_130(reference, tmp_path):
    _, expected = reference
    run = tmp_path / "run"
    process = start("train", *OPTIONS, "--out", str(run), "--set", "checkpoint_freq=0")  # no periodic save
    while steps_logged(run) < 200:
        assert process.poll() is None, process.communicate()
        time.sleep(0.01)
    process.send_signal(signal.SIGINT)
    error = finish(process, expected=130)
    assert error.strip().splitlines()[-1] == "apps/rl: interrupted; resume with --resume last"
    state = read_resume_state(run / "checkpoints" / "last.zip")
    assert 200 <= state["counters"]["num_timesteps"] < TIMESTEPS
    assert not list((run / "checkpoints").glob(".*.tmp"))  # no half-written file
    assert main(["train", "--out", str(run), "--resume", "last", "--set", "checkpoint_freq=0"]) == 0
    assert outcome(run) == expected


def small_dqn(timesteps: int = 1500) -> RLConfig:
    return RLConfig(
        model="dqn",
        dataset="CartPole-v1",
        timesteps=timesteps,
        normalize=True,
        checkpoint_freq=500,
        eval_freq=0,
        eval_episodes=2,
        model_options={"learning_starts": 100, "buffer_size": 2000, "train_freq": 4, "target_update_interval": 50},
        policy_kwargs={"net_arch": [16]},
    )


def test_a_crash_between_the_writes_of_a_checkpoint_leaves_the_previous_set_whole(tmp_path, monkeypatch):
    """The agent, its replay buffer and its normalisation statistics are one file: a crash after the agent and
    the buffer of the second checkpoint were written (before its resume state) leaves the first checkpoint,
    all of it, and the run resumes from there exactly."""
    import pentad_rl.agents as agents

    expected = train(small_dqn(), tmp_path / "reference", tensorboard=False)
    written, real = [], agents.write_arrays

    def crash_after_the_buffer(archive, prefix, arrays):
        real(archive, prefix, arrays)
        if prefix == BUFFER:
            written.append(prefix)
            if len(written) == 2:
                raise OSError("simulated crash between the writes of a checkpoint")

    monkeypatch.setattr(agents, "write_arrays", crash_after_the_buffer)
    run = tmp_path / "run"
    with pytest.raises(OSError, match="simulated crash"):
        train(small_dqn(), run, tensorboard=False)
    monkeypatch.undo()
    last = run / "checkpoints" / "last.zip"
    assert sorted(p.name for p in (run / "checkpoints").iterdir()) == ["last.zip", "step_500.zip"]
    state = read_resume_state(last)
    steps = state["counters"]["num_timesteps"]
    assert steps == 500 and state["replay_buffer"]["size"] == 500
    assert len(read_arrays(last, BUFFER)["observations"]) == 500  # the buffer of the same checkpoint
    assert float(read_arrays(last, "pentad/vecnormalize")["obs_count"]) == pytest.approx(steps + 1, abs=1)
    with zipfile.ZipFile(last) as archive:
        assert json.loads(archive.read("data"))["num_timesteps"] == steps  # and the agent of that step
    resumed = train(small_dqn(), run, resume="last", tensorboard=False)
    assert resumed.model.num_timesteps == 1500 and resumed.evaluation.returns == expected.evaluation.returns
    for (name, value), other in zip(
        expected.model.policy.state_dict().items(), resumed.model.policy.state_dict().values()
    ):
        assert torch.equal(value, other), name


def test_only_last_zip_resumes_and_an_older_one_says_so(tmp_path, capsys):
    run = tmp_path / "run"
    train(small_dqn(timesteps=600), run, tensorboard=False)
    with pytest.raises(CheckpointError, match="no resume state"):
        train(small_dqn(timesteps=1000), run, resume=run / "checkpoints" / "step_500.zip", tensorboard=False)
    with pytest.raises(ConfigError, match="already"):
        train(small_dqn(timesteps=600), run, resume="last", tensorboard=False)


def test_ctrl_c_in_a_terminal_with_subprocess_envs_writes_the_checkpoint(tmp_path):
    """A terminal's Ctrl-C reaches every process of the group: the env workers ignore it, the main process
    writes the checkpoint (the workers still answer) and exits 130; the run then resumes to the end."""
    run = tmp_path / "run"
    tiny = ["--algo", "ppo", "--env", "CartPole-v1", "--n-envs", "2", "--vec-env", "subproc", "--timesteps", "20000",
            "--set", "model_options={n_steps: 32, batch_size: 64}", "--set", "policy_kwargs={net_arch: [16]}",
            "--set", "eval_freq=0", "--set", "eval_episodes=2", "--set", "checkpoint_freq=0"]  # fmt: skip
    process = subprocess.Popen(
        [sys.executable, str(APP), "train", *tiny, "--out", str(run)],
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True,
    )  # fmt: skip
    while steps_logged(run) < 200:
        assert process.poll() is None, process.communicate()
        time.sleep(0.01)
    os.killpg(process.pid, signal.SIGINT)
    error = finish(process, expected=130)
    assert error.strip().splitlines()[-1] == "apps/rl: interrupted; resume with --resume last"
    steps = read_resume_state(run / "checkpoints" / "last.zip")["counters"]["num_timesteps"]
    assert 200 <= steps < 20000 and steps % 64 == 0  # at a rollout start (2 envs x 32 steps)
    assert main(["train", "--out", str(run), "--resume", "last", "--timesteps", str(steps + 128)]) == 0
    assert json.loads((run / "metrics.json").read_text())["train/timesteps"] == steps + 128


class DieAt(BaseCallback):
    """Stops the process's training abruptly at a step (what a kill leaves: the checkpoints on disk)."""

    def __init__(self, step: int) -> None:
        super().__init__()
        self.step = step

    def _on_step(self) -> bool:
        if self.num_timesteps >= self.step:
            raise SystemExit("killed")
        return True


@pytest.mark.parametrize(
    "fields",
    [
        {"model": "ppo", "n_envs": 2, "normalize": True, "model_options": {"n_steps": 32, "batch_size": 64}},
        {"model": "sac", "dataset": "Pendulum-v1", "model_options": {"learning_starts": 100, "buffer_size": 1000}},
        {
            "model": "ppo", "dataset": "pentad/ConnectFour-v0", "n_envs": 2, "self_play": True,
            "self_play_freq": 200, "model_options": {"n_steps": 32, "batch_size": 64},
        },
    ],
    ids=["ppo-2-envs-normalized", "sac-pendulum", "ppo-connect-four-self-play"],
)  # fmt: skip
def test_other_algorithms_resume_exactly_too(fields, tmp_path):
    """On-policy with parallel normalised envs, off-policy continuous, self-play: interrupted twice between
    checkpoints (in process) and resumed, the run equals the uninterrupted one."""
    base = {"dataset": "CartPole-v1", "timesteps": 1200, "checkpoint_freq": 300, "eval_freq": 400, "eval_episodes": 2}
    config = {**base, **fields, "policy_kwargs": {"net_arch": [16]}}
    expected = train(RLConfig(**config), tmp_path / "reference", tensorboard=False)
    run = tmp_path / "run"
    for resume, step in ((None, 450), ("last", 950)):
        with pytest.raises(SystemExit):
            train(RLConfig(**config), run, resume=resume, tensorboard=False, callbacks=[DieAt(step)])
    resumed = train(RLConfig(**config), run, resume="last", tensorboard=False)
    assert resumed.model.num_timesteps == expected.model.num_timesteps
    assert resumed.evaluation.returns == expected.evaluation.returns
    assert [p["mean_return"] for p in resumed.curve] == [p["mean_return"] for p in expected.curve]
    for (name, value), other in zip(
        expected.model.policy.state_dict().items(), resumed.model.policy.state_dict().values()
    ):
        assert torch.equal(value, other), name
    for i in range(RLConfig(**config).n_envs):
        rows = [
            (tmp_path / name / "monitor" / f"{i}.monitor.csv").read_text().splitlines()[2:]
            for name in ("reference", "run")
        ]
        assert [r.split(",")[:2] for r in rows[0]] == [r.split(",")[:2] for r in rows[1]]
