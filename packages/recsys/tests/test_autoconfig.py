"""Per-model recipe sections, self-configuration of the csv dataset, and --time-budget."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from pentad_core.testing import requires_dataset
from pentad_recsys.autoconfig import rule_choices
from pentad_recsys.cli import main

QUIET = ["--set", "trainer.progress_bar=false"]


def ratings_csv(folder: Path, users: int = 30, items: int = 20, per_user: int = 10) -> Path:
    """A hand-made explicit file: user u rates items u..u+per_user-1 (mod items), rating 1 + (7u + k) mod 5."""
    lines = ["user,item,rating"]
    for u in range(users):
        for k in range(per_user):
            lines.append(f"u{u},i{(u + k) % items},{1 + (7 * u + k) % 5}")
    path = folder / "ratings.csv"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def run_config(folder: Path) -> dict:
    return yaml.safe_load((folder / "config.yaml").read_text(encoding="utf-8"))


def test_recipe_section_of_the_model_asked_for_is_applied(tmp_path, monkeypatch):
    configs = tmp_path / "configs" / "recsys"
    configs.mkdir(parents=True)
    recipe = {
        "model": "fm",
        "dataset": "synthetic",
        "model_options": {"dim": 6},
        "dataset_options": {"num_users": 30, "num_items": 40, "interactions_per_user": 8},
        "trainer": {"max_epochs": 1},
        "models": {"mf": {"lr": 0.0123, "weight_decay": 0.07, "model_options": {"dim": 5}}, "fm": {"lr": 0.002}},
    }
    (configs / "synthetic.yaml").write_text(yaml.safe_dump(recipe), encoding="utf-8")
    monkeypatch.setenv("PENTAD_CONFIGS", str(tmp_path / "configs"))
    out = tmp_path / "mf"
    assert main(["train", "--dataset", "synthetic", "--model", "mf", "--out", str(out), *QUIET]) == 0
    config = run_config(out)
    assert (config["model"], config["lr"], config["weight_decay"]) == ("mf", 0.0123, 0.07)
    assert config["model_options"] == {"dim": 5}
    out = tmp_path / "fm"  # the recipe's own model: its section over the top level
    assert main(["train", "--dataset", "synthetic", "--out", str(out), *QUIET]) == 0
    config = run_config(out)
    assert (config["model"], config["lr"], config["model_options"]) == ("fm", 0.002, {"dim": 6})


def test_ml100k_recipe_sections_resolve_for_every_model_they_name():
    from pentad_recsys.cli import app
    from pentad_recsys.registry import MODELS

    recipe = yaml.safe_load(Path(__file__).parents[3].joinpath("shared/configs/recsys/ml-100k.yaml").read_text())
    assert recipe["model"] in recipe["models"]
    for name in recipe["models"]:
        args = app.build_parser().parse_args(["train", "--dataset", "ml-100k", "--model", name])
        config = app.resolve_config(args, app._verbs["train"])
        assert config.model == name and config.task in MODELS.info(name).tasks
        assert config.trainer.monitor == ("val/rmse" if config.task == "rating" else "val/ndcg@10")


def test_csv_fingerprint_and_choices_of_a_hand_made_file(tmp_path):
    out = tmp_path / "run"
    path = ratings_csv(tmp_path)
    assert main(["train", "--dataset", "csv", "--data-dir", str(path), "--out", str(out), "--epochs", "2", *QUIET]) == 0
    config = run_config(out)
    record = config["self_config"]
    assert record["fingerprint"] == {
        "users": 30, "items": 20, "interactions": 300, "density": 0.5, "per_user": 10.0, "per_item": 15.0,
        "feedback": "explicit", "rating_scale": [1.0, 5.0], "distinct_ratings": 5, "timestamps": False,
    }  # fmt: skip
    chosen = {key: entry["value"] for key, entry in record["choices"].items()}
    # the density rule's L2, 0.1 x (0.0504 / 0.5) ** 0.25 = 0.056, is searched x 0.3, 1, 3 on validation
    decay = chosen.pop("weight_decay")
    assert decay in (0.0168, 0.056, 0.168) and "short search" in record["choices"]["weight_decay"]["reason"]
    assert [c.value for c in rule_choices(record["fingerprint"]) if c.key == "weight_decay"] == [0.056]
    # 32 factors under 20,000 ratings; batch 256 under 10,000
    assert chosen == {"task": "rating", "model": "mf", "lr": 0.005, "threads": 1,
                      "model_options": {"dim": 32, "init_std": 0.01, "bias_decay": 0.1, "baseline_init": True},
                      "batch_size": 256}  # fmt: skip
    assert (config["model"], config["weight_decay"], config["batch_size"]) == ("mf", decay, 256)
    assert config["trainer"]["max_epochs"] == 2  # --epochs was given: the choice of 30 is not applied
    assert all(entry["reason"] for entry in record["choices"].values())
    assert "test/rmse" in json.loads((out / "metrics.json").read_text())


def test_an_explicit_setting_wins_over_a_choice(tmp_path, capsys):
    out = tmp_path / "run"
    path = ratings_csv(tmp_path)
    argv = ["train", "--dataset", "csv", "--data-dir", str(path), "--out", str(out), "--epochs", "1",
            "--set", "weight_decay=0.2", "--set", "model_options={dim: 4}", *QUIET]  # fmt: skip
    assert main(argv) == 0
    config = run_config(out)
    assert (config["weight_decay"], config["model_options"]) == (0.2, {"dim": 4})
    assert "weight_decay" not in config["self_config"]["choices"]
    assert "model_options" not in config["self_config"]["choices"]
    assert "kept as set" in capsys.readouterr().out


def test_implicit_events_choose_the_ranking_task_and_its_metric(tmp_path):
    out = tmp_path / "run"
    path = ratings_csv(tmp_path)
    argv = ["train", "--dataset", "csv", "--data-dir", str(path), "--rating-col", "none", "--out", str(out),
            "--epochs", "1", "--set", "sampled_negatives=0", *QUIET]  # fmt: skip
    assert main(argv) == 0
    config = run_config(out)
    assert (config["task"], config["loss"], config["trainer"]["monitor"]) == ("ranking", "bpr", "val/ndcg@10")
    assert "test/hr@10" in json.loads((out / "metrics.json").read_text())


@pytest.mark.parametrize("explicit_epochs", [True, False])
def test_time_budget_stops_cleanly_with_a_tested_checkpoint(tmp_path, explicit_epochs):
    out = tmp_path / "run"
    path = ratings_csv(tmp_path, users=200, items=100, per_user=30)
    epochs = ["--epochs", "100000"] if explicit_epochs else []
    argv = ["train", "--dataset", "csv", "--data-dir", str(path), "--out", str(out), "--time-budget", "3s",
            *epochs, *QUIET]  # fmt: skip
    assert main(argv) == 0
    config = run_config(out)
    metrics = json.loads((out / "metrics.json").read_text())
    assert (out / "checkpoints" / "last.ckpt").is_file() and "test/rmse" in metrics
    if explicit_epochs:  # Lightning's timer stopped the run long before 100,000 epochs
        assert config["trainer"]["max_epochs"] == 100000
    else:  # the epochs were chosen from a measured step time
        choice = config["self_config"]["choices"]["trainer.max_epochs"]
        assert 1 <= choice["value"] <= 200 and "per measured epoch" in choice["reason"]
    lines = (out / "logs" / "metrics.csv").read_text().splitlines()
    assert len(lines) > 1


@requires_dataset("ml-100k")
def test_benchmark_trains_each_model_with_the_config_train_gives_it(tmp_path):
    from pentad_recsys.cli import app

    bench, run = tmp_path / "bench", tmp_path / "train"
    argv = ["--protocol", "rating", "--models", "popularity,itemknn", "--splits", "u1", *QUIET]
    assert main(["benchmark", "--out", str(bench), *argv]) == 0
    for name in ("popularity", "itemknn"):
        args = app.build_parser().parse_args(["train", "--dataset", "ml-100k", "--model", name, "--split", "u1"])
        expected = app.resolve_config(args, app._verbs["train"])
        ran = run_config(bench / f"{name}-u1")
        assert (ran["model_options"], ran["val_ratio"]) == (expected.model_options, expected.val_ratio)
    out = run / "popularity"
    assert (
        main(["train", "--dataset", "ml-100k", "--model", "popularity", "--split", "u1", "--out", str(out), *QUIET])
        == 0
    )
    benchmark = json.loads((bench / "metrics.json").read_text())["u1/popularity/rmse"]
    assert benchmark == json.loads((out / "metrics.json").read_text())["test/rmse"]  # 1.0422 when written
