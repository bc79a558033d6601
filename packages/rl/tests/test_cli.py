"""The apps/rl verbs end to end, in-process (the subprocess contract is in tests/test_apps_contract.py)."""

from __future__ import annotations

import importlib.util
import json

import numpy as np
import pytest

from pentad_rl.cli import app, main
from pentad_rl.predictor import Predictor

TINY = [
    "--set",
    "model_options={n_steps: 32, batch_size: 64}",
    "--set",
    "policy_kwargs={net_arch: [16]}",
    "--set",
    "eval_freq=0",
    "--set",
    "eval_episodes=2",
]


def expected_config(run):
    from pentad_rl.config import RLConfig

    return Predictor.from_run(run).config if run else RLConfig()


def metrics(folder):
    return json.loads((folder / "metrics.json").read_text())


def test_every_contract_verb_and_the_extra_verbs_exist():
    assert {
        "demo",
        "train",
        "evaluate",
        "predict",
        "export",
        "benchmark",
        "data",
        "models",
        "record",
        "play",
        "tune",
    } <= set(app.verbs)


def test_train_evaluate_predict_export_record_and_resume(tmp_path, capsys):
    run = tmp_path / "run"
    args = ["--algo", "ppo", "--env", "pentad/ConnectFour-v0", "--n-envs", "2", "--timesteps", "128", *TINY]
    assert main(["train", *args, "--out", str(run)]) == 0
    assert metrics(run)["train/timesteps"] == 128
    assert (run / "plots" / "learning_curve.png").is_file() and (run / "config.yaml").is_file()
    assert main(["train", *args, "--out", str(run)]) == 2  # refuses to clobber the run
    assert main(["train", *args[: -len(TINY)], *TINY, "--timesteps", "256", "--out", str(run), "--resume", "last"]) == 0
    assert metrics(run)["train/timesteps"] == 256

    checkpoint = str(run / "checkpoints" / "last.zip")
    evaluation = tmp_path / "evaluation"
    assert main(["evaluate", "--checkpoint", checkpoint, "--episodes", "3", "--out", str(evaluation)]) == 0
    scores = metrics(evaluation)
    assert {f"eval/difficulty{level}/success_rate" for level in range(4)} <= set(scores)
    returns = json.loads((evaluation / "evaluation.json").read_text())["returns"]
    assert len(returns) == 3 and scores["eval/mean_return"] == pytest.approx(np.mean(returns))
    assert scores["eval/success_rate"] == sum(r == 1.0 for r in returns) / 3  # a success is a win (+1)

    observations = np.zeros((5, 2, 6, 7), np.float32)
    np.save(tmp_path / "observations.npy", observations)
    prediction = tmp_path / "prediction"
    assert (
        main(
            [
                "predict",
                "--checkpoint",
                checkpoint,
                "--observations",
                str(tmp_path / "observations.npy"),
                "--out",
                str(prediction),
            ]
        )
        == 0
    )
    actions = np.load(prediction / "predictions.npy")
    expected = Predictor.from_run(checkpoint).predict(observations)
    assert actions.shape == (5,) and actions.tolist() == expected.tolist()
    np.save(tmp_path / "wrong.npy", np.zeros((5, 3), np.float32))
    assert (
        main(
            [
                "predict",
                "--checkpoint",
                checkpoint,
                "--observations",
                str(tmp_path / "wrong.npy"),
                "--out",
                str(tmp_path / "p2"),
            ]
        )
        == 2
    )

    exported = tmp_path / "export"
    assert main(["export", "--checkpoint", str(run), "--out", str(exported)]) == 0  # a run folder works too
    assert (exported / "policy.onnx").is_file() and metrics(exported)["export/action_agreement"] == 1.0

    recorded = tmp_path / "record"
    assert main(["record", "--checkpoint", checkpoint, "--max-frames", "10", "--out", str(recorded)]) == 0
    import imageio.v3 as iio

    from pentad_rl.recording import collect_frames

    frames = iio.imread(recorded / "agent.gif", index=None)
    played, returns = collect_frames(Predictor.from_run(checkpoint).model, expected_config(run), seed=0, max_frames=10)
    assert frames.shape == (len(played), 240, 280, 3)  # the frames of the episode played, until it ends or 10
    assert len(played) == 10 or len(returns) == 1  # cut at --max-frames, or the episode ended
    assert np.abs(frames[0].astype(int) - played[0]).max() <= 8  # the same picture (GIF palette rounding)
    assert main(["play", "--checkpoint", checkpoint, "--render", "ansi"]) == 0
    assert "0 1 2 3 4 5 6" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        (["--algo", "ppx"], "ppo"),
        (["--env", "CartPole-v7"], "CartPole-v1"),
        pytest.param(
            ["--env", "ALE/Breakout-v5"],
            "pentad-rl[atari]",
            marks=pytest.mark.skipif(
                importlib.util.find_spec("ale_py") is not None, reason="ale-py is installed: Breakout is valid"
            ),
        ),
        (["--algo", "dqn", "--env", "Pendulum-v1"], "dqn"),
        (["--set", "n_env=4"], "n_envs"),
        (["--set", "model_options.n_stepz=4"], "n_steps"),
    ],
)
def test_user_mistakes_are_one_line_errors(arguments, message, tmp_path, capsys):
    assert main(["train", *arguments, "--timesteps", "64", "--out", str(tmp_path / "run")]) == 2
    error = capsys.readouterr().err.strip()
    assert len(error.splitlines()) == 1 and message in error


@pytest.mark.parametrize(
    "option", ["--epochs", "--batch-size", "--accelerator", "--devices", "--precision", "--num-nodes", "--strategy"]
)
def test_lightning_only_options_are_not_accepted(option, capsys):
    """SB3 has its own loop: the trainer's options would be ignored, so the parser rejects them."""
    with pytest.raises(SystemExit) as exited:
        main(["train", option, "2"])
    assert exited.value.code == 2
    error = capsys.readouterr().err.strip()
    assert len(error.splitlines()) == 1 and f"unrecognized arguments: {option}" in error


def test_play_without_a_display_says_what_to_do(tmp_path, capsys, monkeypatch):
    from pentad_rl.agents import build_agent, save_agent
    from pentad_rl.config import RLConfig
    from pentad_rl.envs.make import make_env

    config = RLConfig(policy_kwargs={"net_arch": [8]})
    checkpoint = save_agent(build_agent(config, make_env(config)), tmp_path / "agent.zip")
    monkeypatch.delenv("DISPLAY", raising=False)
    monkeypatch.delenv("WAYLAND_DISPLAY", raising=False)
    assert main(["play", "--checkpoint", str(checkpoint), "--render", "human"]) == 2
    assert "--render ansi" in capsys.readouterr().err


def test_benchmark_compares_with_plain_sb3(tmp_path):
    out = tmp_path / "bench"
    assert (
        main(
            [
                "benchmark",
                "--algo",
                "ppo",
                "--env",
                "CartPole-v1",
                "--n-envs",
                "2",
                "--timesteps",
                "128",
                *TINY,
                "--seeds",
                "0",
                "--episodes",
                "2",
                "--out",
                str(out),
            ]
        )
        == 0
    )
    summary = metrics(out)
    assert {"bench/pentad_mean_return", "bench/sb3_mean_return", "bench/time_ratio"} <= set(summary)
    report = json.loads((out / "benchmark.json").read_text())
    pentad, sb3 = (
        next(r for r in report["rows"] if r["implementation"] == name) for name in ("pentad", "stable-baselines3")
    )
    assert summary["bench/time_ratio"] == pytest.approx(pentad["wall_s"] / sb3["wall_s"])
    assert (
        summary["bench/pentad_mean_return"] == pentad["mean_return"]
        and summary["bench/sb3_mean_return"] == sb3["mean_return"]
    )


def test_benchmark_against_the_bare_library_defaults(tmp_path):
    """``--baseline defaults``: plain SB3 with nothing of the preset (1 env, its own defaults), same steps."""
    from pentad_rl.pipeline import bare_defaults
    from pentad_rl.presets import resolve_agent_config

    bare = bare_defaults(resolve_agent_config("dqn", "CartPole-v1", {"timesteps": 500}))
    assert (bare.n_envs, bare.model_options, bare.policy_kwargs, bare.timesteps) == (1, {}, {}, 500)
    out = tmp_path / "bench"
    argv = ["benchmark", "--algo", "ppo", "--env", "CartPole-v1", "--timesteps", "256", *TINY, "--seeds", "0"]
    assert main([*argv, "--episodes", "2", "--baseline", "defaults", "--out", str(out)]) == 0
    rows = json.loads((out / "benchmark.json").read_text())["rows"]
    assert [r["implementation"] for r in rows] == ["pentad", "sb3 defaults"]
    assert metrics(out)["bench/defaults_mean_return"] == rows[1]["mean_return"]


def test_tune_writes_the_trials_table_and_the_best_preset(tmp_path):
    out = tmp_path / "tune"
    arguments = [
        "tune",
        "--algo",
        "ppo",
        "--env",
        "CartPole-v1",
        "--n-envs",
        "2",
        "--timesteps",
        "256",
        "--set",
        "policy_kwargs={net_arch: [16]}",
        "--set",
        "eval_episodes=2",
    ]
    assert main([*arguments, "--trials", "2", "--evaluations", "2", "--out", str(out)]) == 0
    rows = json.loads((out / "tune.json").read_text())
    assert len(rows) == 2 and (out / "tune.md").is_file()
    import yaml

    from pentad_rl.presets import resolve_agent_config

    preset = yaml.safe_load((out / "preset.yaml").read_text())
    assert preset["model"] == "ppo" and "learning_rate" in preset["model_options"]
    assert resolve_agent_config(overrides=preset).model_options == preset["model_options"]


def test_resume_continues_the_run_as_configured_and_refuses_other_changes(tmp_path, capsys):
    """`--resume last` with only --timesteps trains the run's own config (its algorithm, options and
    network), not the default preset; an option that changes what is trained is refused by name."""
    import yaml

    run = tmp_path / "run"
    # a2c on Acrobot-v1 has the Zoo's preset (16 envs, normalize: true); the run changes its envs and n_steps.
    args = ["--algo", "a2c", "--env", "Acrobot-v1", "--n-envs", "2", "--set", "model_options={n_steps: 8}", *TINY[2:]]
    assert main(["train", *args, "--timesteps", "64", "--out", str(run)]) == 0
    first = (run / "config.yaml").read_text()
    assert main(["train", "--out", str(run), "--resume", "last", "--timesteps", "128"]) == 0
    assert metrics(run)["train/timesteps"] == 128
    assert (run / "config.yaml").read_text() == first  # the original is kept; the continuation is recorded
    continued = yaml.safe_load((run / "config.resume-1.yaml").read_text())
    assert continued["model"] == "a2c" and continued["dataset"] == "Acrobot-v1" and continued["timesteps"] == 128
    assert continued["policy_kwargs"] == {"net_arch": [16]} and continued["n_envs"] == 2 and continued["normalize"]
    capsys.readouterr()
    assert main(["train", "--out", str(run), "--resume", "last", "--timesteps", "192", "--set", "normalize=false"]) == 2
    error = capsys.readouterr().err.strip()
    assert len(error.splitlines()) == 1 and "normalize would change from True to False" in error


def test_reading_verbs_write_into_a_new_folder_and_never_into_the_run(tmp_path, capsys):
    run = tmp_path / "run"
    assert main(["train", "--n-envs", "2", "--timesteps", "64", *TINY, "--out", str(run)]) == 0
    before = {name: (run / name).read_bytes() for name in ("config.yaml", "metrics.json", "environment.json")}
    assert main(["evaluate", "--checkpoint", str(run), "--episodes", "2"]) == 0
    assert main(["record", "--checkpoint", str(run), "--max-frames", "5"]) == 0
    (evaluation,) = (run / "evaluate").iterdir()
    assert metrics(evaluation)["eval/episodes"] == 2.0 and (evaluation / "evaluation.json").is_file()
    assert (next((run / "record").iterdir()) / "agent.gif").is_file()
    assert {name: (run / name).read_bytes() for name in before} == before
    assert not (run / "evaluation.json").exists() and not (run / "agent.gif").exists()
    capsys.readouterr()
    assert main(["evaluate", "--checkpoint", str(run), "--out", str(run)]) == 2
    assert "holds a trained run" in capsys.readouterr().err


def test_overwrite_and_stale_monitor_files_do_not_reach_the_learning_curve(tmp_path):
    from pentad_rl.plots import read_monitor

    run = tmp_path / "run"
    assert main(["train", "--n-envs", "3", "--timesteps", "384", *TINY, "--out", str(run)]) == 0
    assert sorted(p.name for p in (run / "monitor").iterdir()) == [f"{i}.monitor.csv" for i in range(3)]
    assert main(["train", "--n-envs", "1", "--timesteps", "96", *TINY, "--out", str(run), "--overwrite"]) == 0
    assert sorted(p.name for p in (run / "monitor").iterdir()) == ["0.monitor.csv"]
    episodes = read_monitor(run / "monitor", n_envs=1)
    assert 0 < episodes["timesteps"][-1] <= 96  # only the new run's episodes
    # A Monitor file of another run copied into the folder is not mixed into this run's curve.
    stale = (run / "monitor" / "0.monitor.csv").read_text() + "500.0,500,1.0\n"
    (run / "monitor" / "5.monitor.csv").write_text(stale)
    assert read_monitor(run / "monitor", n_envs=1)["returns"].tolist() == episodes["returns"].tolist()
    assert 500.0 in read_monitor(run / "monitor")["returns"]  # (every file, when asked for all)
