"""Per-model recipe sections, self-configuration and time budgets, through the toy app's CLI."""

from __future__ import annotations

import json
import time

import pytest
import torch
import yaml
from toy_app import app, run_toy

from pentad_core.autoconfig import Choice, apply_choices, epochs_for_budget, parse_duration, seconds_per_step
from pentad_core.config import recipe_for_model
from pentad_core.errors import ConfigError

COMMON = ["--accelerator", "cpu", "--set", "trainer.progress_bar=false"]


def resolve(*argv: str):
    args = app.build_parser().parse_args(["train", *argv])
    return app.resolve_config(args, app._verbs["train"])


RECIPE = {
    "model": "wide",
    "samples": 96,
    "model_options": {"width": 8},
    "models": {"wide": {"learning_rate": 0.02}, "narrow": {"learning_rate": 0.07, "batch_size": 16}},
}


def test_recipe_for_model_picks_the_models_own_section():
    assert recipe_for_model(RECIPE) == (
        {"model": "wide", "samples": 96, "model_options": {"width": 8}, "learning_rate": 0.02},
        "wide",
    )
    # another model: its section over the common keys, without the default model's model_options
    layer, section = recipe_for_model(RECIPE, "narrow")
    assert section == "narrow"
    assert layer == {"model": "wide", "samples": 96, "learning_rate": 0.07, "batch_size": 16}
    # a model without a section: the common keys only
    assert recipe_for_model(RECIPE, "other") == ({"model": "wide", "samples": 96}, None)
    with pytest.raises(ConfigError, match="models"):
        recipe_for_model({"models": {"x": 3}})


def test_train_and_config_for_model_apply_the_same_section(tmp_path, monkeypatch):
    recipes = tmp_path / "configs" / "toy"
    recipes.mkdir(parents=True)
    recipe = {key: value for key, value in RECIPE.items() if key != "model_options"}
    (recipes / "toy-real.yaml").write_text(yaml.safe_dump(recipe))
    monkeypatch.setenv("PENTAD_CONFIGS", str(tmp_path / "configs"))
    default = resolve("--dataset", "toy-real")
    assert (default.model, default.learning_rate, app.recipe_section) == ("wide", 0.02, "wide")
    narrow = resolve("--dataset", "toy-real", "--model", "narrow")
    assert (narrow.learning_rate, narrow.batch_size, app.recipe_section) == (0.07, 16, "narrow")
    assert "batch_size" in app.explicit_keys and "seed" not in app.explicit_keys
    # the command line still wins over the section
    assert resolve("--dataset", "toy-real", "--model", "narrow", "--batch-size", "8").batch_size == 8

    # a verb that trains several models gets each one's section, as `train --model` does
    args = app.build_parser().parse_args(["train", "--dataset", "toy-real", "--batch-size", "8"])
    context = type("C", (), {"args": args, "verb": "train"})()
    app.resolve_config(args, app._verbs["train"])
    other = app.config_for_model(context, "narrow")
    assert (other.model, other.learning_rate, other.batch_size) == ("narrow", 0.07, 8)
    assert app.recipe_section == "wide"  # the verb's own resolution is left as it was


def test_parse_duration():
    assert parse_duration("90s") == 90
    assert parse_duration("10m") == 600
    assert parse_duration("1.5h") == 5400
    assert parse_duration("45") == 45
    for bad in ("ten minutes", "0m", "-3s", "5d"):
        with pytest.raises(ConfigError, match="--time-budget"):
            parse_duration(bad)


def test_a_bad_time_budget_is_one_line_exit_2(tmp_path):
    result = run_toy("train", "--out", str(tmp_path / "run"), "--time-budget", "soon", *COMMON)
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        "apps/toy: error: time_budget 'soon' is not a duration. Write e.g. 90s, 10m or 1.5h."
    ]
    assert not (tmp_path / "run").exists()


def test_apply_choices_leaves_every_explicit_key_alone():
    config = resolve("--dataset", "synthetic")
    choices = [
        Choice("learning_rate", 0.2, "r1"),
        Choice("batch_size", 16, "r2"),
        Choice("trainer.max_epochs", 7, "r3"),
    ]
    new, applied = apply_choices(config, choices, {"batch_size", "trainer"})
    assert [c.key for c in applied] == ["learning_rate"]
    assert (new.learning_rate, new.batch_size, new.trainer.max_epochs) == (0.2, config.batch_size, 10)
    with pytest.raises(ConfigError, match="learnig_rate"):
        apply_choices(config, [Choice("learnig_rate", 1.0, "typo")], set())


def test_epochs_for_budget_and_seconds_per_step():
    assert epochs_for_budget(100, 8.5) == 10  # 85 s usable
    assert epochs_for_budget(100, 8.5, overhead_s=20) == 7
    assert epochs_for_budget(10, 60) == 1  # never zero
    assert epochs_for_budget(1000, 1, maximum=50) == 50
    measured = seconds_per_step(lambda: time.sleep(0.02), steps=3, warmup=0)
    assert 0.015 < measured < 0.2


def test_self_configuration_is_recorded_and_yields_to_the_user(tmp_path):
    run = tmp_path / "run"
    result = run_toy("train", "--out", str(run), "--epochs", "1", *COMMON)
    assert result.returncode == 0, result.stderr
    assert "self-configured from the data" in result.stdout
    saved = yaml.safe_load((run / "config.yaml").read_text())
    record = saved["self_config"]
    assert record["fingerprint"]["samples"] == 256
    chosen = record["choices"]["learning_rate"]
    # what config.yaml says is what ran: the chosen value is the config's own value
    assert saved["learning_rate"] == chosen["value"] == pytest.approx(0.5 / record["fingerprint"]["input_power"], 1e-3)
    assert "mean squared input norm" in chosen["reason"]

    mine = tmp_path / "mine"
    result = run_toy("train", "--out", str(mine), "--epochs", "1", "--set", "learning_rate=0.01", *COMMON)
    assert result.returncode == 0, result.stderr
    saved = yaml.safe_load((mine / "config.yaml").read_text())
    assert saved["learning_rate"] == 0.01 and saved["self_config"]["choices"] == {}
    assert "(yours)" in result.stdout

    off = tmp_path / "off"
    result = run_toy("train", "--out", str(off), "--epochs", "1", "--set", "self_configure=false", *COMMON)
    assert yaml.safe_load((off / "config.yaml").read_text())["learning_rate"] == 0.05


def test_time_budget_sizes_the_run_and_stops_it_cleanly(tmp_path):
    run = tmp_path / "run"
    # 8 steps per epoch of >= 50 ms: a 3 s budget fits a handful of epochs, not the thousand asked by default
    start = time.monotonic()
    result = run_toy(
        "train", "--out", str(run), "--time-budget", "3s", "--batch-size", "32", "--set", "step_delay=0.05", *COMMON
    )
    elapsed = time.monotonic() - start
    assert result.returncode == 0, result.stderr
    saved = yaml.safe_load((run / "config.yaml").read_text())
    epochs = saved["trainer"]["max_epochs"]
    assert 1 <= epochs <= 8, epochs
    assert "s per epoch measured" in saved["self_config"]["choices"]["trainer.max_epochs"]["reason"]
    metrics = json.loads((run / "metrics.json").read_text())
    assert 1 <= metrics["fit/epochs"] <= epochs
    assert (run / "checkpoints" / "last.ckpt").is_file()
    assert elapsed < 60

    # the trainer's own stop: epochs set by hand far beyond the budget, training stops at it with last.ckpt
    hard = tmp_path / "hard"
    result = run_toy(
        "train", "--out", str(hard), "--time-budget", "2s", "--epochs", "500", "--batch-size", "32",
        "--set", "step_delay=0.05", *COMMON,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    metrics = json.loads((hard / "metrics.json").read_text())
    assert metrics["fit/epochs"] < 20
    state = torch.load(hard / "checkpoints" / "last.ckpt", weights_only=False, map_location="cpu")
    assert state["epoch"] + 1 <= 20


def test_a_resumed_run_spends_only_what_is_left_of_its_time_budget(tmp_path):
    """The budget counts the whole run: resuming a run that spent its 2 s goes on for at most the
    step that notices, where a fresh budget would give it 2 s more (5 or more epochs of 8 x 50 ms)."""
    run = tmp_path / "run"
    common = ["--batch-size", "32", "--set", "step_delay=0.05", *COMMON]
    result = run_toy("train", "--out", str(run), "--time-budget", "2s", "--epochs", "500", *common)
    assert result.returncode == 0, result.stderr
    before = torch.load(run / "checkpoints" / "last.ckpt", weights_only=False, map_location="cpu")
    assert before["epoch"] + 1 < 500
    result = run_toy("train", "--out", str(run), "--resume", "last", *common)
    assert result.returncode == 0, result.stderr
    after = torch.load(run / "checkpoints" / "last.ckpt", weights_only=False, map_location="cpu")
    assert before["global_step"] <= after["global_step"] <= before["global_step"] + 8
    assert yaml.safe_load((run / "config.resume-1.yaml").read_text())["time_budget"] == "2s"


def test_preserved_random_state_restores_torch_numpy_and_python_even_on_error():
    import random

    import numpy as np
    import torch

    from pentad_core.autoconfig import preserved_random_state

    def draw() -> tuple[float, float, float]:
        return float(torch.rand(())), float(np.random.rand()), random.random()

    torch.manual_seed(3), np.random.seed(3), random.seed(3)
    expected = draw()
    torch.manual_seed(3), np.random.seed(3), random.seed(3)
    with preserved_random_state():
        draw(), draw()
    assert draw() == expected
    torch.manual_seed(3), np.random.seed(3), random.seed(3)
    with pytest.raises(RuntimeError), preserved_random_state():
        draw()
        raise RuntimeError("timing failed")
    assert draw() == expected
