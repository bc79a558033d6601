"""The CLI scaffold: help, error policy (one line, exit 2), config precedence, run folders."""

from __future__ import annotations

import json

import pytest
import yaml
from toy_app import app, run_toy

QUIET = ["--set", "trainer.progress_bar=false", "--accelerator", "cpu"]


def one_error_line(captured) -> str:
    lines = [line for line in captured.err.splitlines() if line.strip()]
    assert len(lines) == 1, captured.err
    return lines[0]


def test_help_lists_the_verbs(capsys):
    assert app.main([]) == 0
    out = capsys.readouterr().out
    assert "train" in out and "data" in out and "models" in out


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        (["train", "--no-such-option"], "unrecognized arguments: --no-such-option"),
        (["train", "--epochs", "many"], "invalid int value"),
        (["train", "--epochs", "0"], "--epochs must be a positive"),
        (["train", "--set", "nonsense=1"], "unknown config key 'nonsense'"),
        (["train", "--set", "samples=lots"], "'samples' must be an integer"),
        (["train", "--precision", "half"], "--precision 'half'"),
        (["train", "--config", "/no/such/config.yaml"], "config file not found"),
        (["train", "--resume", "last", "--out", "/tmp/pentad-no-such-run"], "no checkpoint to resume"),
        (["data", "verify", "toy-real", "--data-dir", "/no/such/folder"], "dataset folder not found"),
        (["frobnicate"], "invalid choice"),
    ],
)
def test_bad_input_is_one_line_and_exit_code_2(argv, expected, capsys, tmp_path):
    if "--out" not in argv and argv[0] == "train":
        argv = [*argv, "--out", str(tmp_path / "run")]
    with pytest.raises(SystemExit) as exit_info:
        raise SystemExit(app.main(argv))
    assert exit_info.value.code == 2
    assert expected in one_error_line(capsys.readouterr())


def test_corrupt_config_file(tmp_path, capsys):
    corrupt = tmp_path / "corrupt.yaml"
    corrupt.write_text("trainer: {max_epochs: [1,\n")
    assert app.main(["train", "--config", str(corrupt), "--out", str(tmp_path / "run")]) == 2
    assert f"config file {corrupt} is not valid YAML" in one_error_line(capsys.readouterr())
    assert not (tmp_path / "run").exists()


def test_debug_shows_the_traceback(tmp_path):
    result = run_toy("train", "--set", "nonsense=1", "--debug", "--out", str(tmp_path / "run"))
    assert result.returncode != 0 and "Traceback" in result.stderr


def test_config_precedence_and_run_folder(tmp_path, capsys):
    user = tmp_path / "user.yaml"
    user.write_text(yaml.safe_dump({"samples": 64, "learning_rate": 0.01, "trainer": {"max_epochs": 5}}))
    out = tmp_path / "run"
    argv = ["train", "--config", str(user), "--epochs", "1", "--set", "learning_rate=0.02", "--out", str(out), *QUIET]
    assert app.main(argv) == 0
    written = yaml.safe_load((out / "config.yaml").read_text())
    assert written["samples"] == 64  # from --config
    assert written["trainer"]["max_epochs"] == 1  # option beats --config
    assert written["learning_rate"] == 0.02  # --set beats --config
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["fit/epochs"] == 1 and "val/loss" in metrics
    assert all("/" in key for key in metrics), metrics
    assert (out / "logs" / "hparams.yaml").is_file()
    environment = json.loads((out / "environment.json").read_text())
    assert "torch" in environment["packages"] and environment["hardware"]["cpu_count"] >= 1
    assert (out / "checkpoints" / "last.ckpt").exists() and (out / "checkpoints" / "best.ckpt").exists()
    assert any((out / "logs" / "tensorboard").glob("events.out.tfevents.*"))

    # A second train on the same folder is refused, and nothing is lost.
    before = (out / "metrics.json").read_bytes()
    assert app.main(["train", "--out", str(out), "--epochs", "1", *QUIET]) == 2
    assert "already holds a run" in one_error_line(capsys.readouterr())
    assert (out / "metrics.json").read_bytes() == before
    # --overwrite replaces it.
    assert app.main(["train", "--out", str(out), "--epochs", "2", "--overwrite", *QUIET]) == 0
    assert json.loads((out / "metrics.json").read_text())["fit/epochs"] == 2


def test_recipe_for_the_dataset_is_applied(tmp_path, monkeypatch):
    recipes = tmp_path / "configs" / "toy"
    recipes.mkdir(parents=True)
    (recipes / "toy-real.yaml").write_text(yaml.safe_dump({"samples": 96, "learning_rate": 0.03}))
    monkeypatch.setenv("PENTAD_CONFIGS", str(tmp_path / "configs"))
    parser = app.build_parser()
    args = parser.parse_args(["train", "--dataset", "toy-real", "--set", "learning_rate=0.04"])
    config = app.resolve_config(args, app._verbs["train"])
    assert (config.samples, config.learning_rate, config.dataset) == (96, 0.04, "toy-real")
    args = parser.parse_args(["train", "--dataset", "synthetic"])
    assert app.resolve_config(args, app._verbs["train"]).samples == 256
    (recipes / "toy_other.yaml").write_text(yaml.safe_dump({"samples": 48}))
    args = parser.parse_args(["train", "--dataset", "toy-other"])
    assert app.resolve_config(args, app._verbs["train"]).samples == 48
