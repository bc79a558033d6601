"""Per-model recipe sections, the image-folder fingerprint and its choices, and --time-budget."""

from __future__ import annotations

import json

import numpy as np
import pytest
import yaml
from PIL import Image

from pentad_core.config import recipe_for_model
from pentad_vision import autoconfig
from pentad_vision.cli import app
from pentad_vision.models import MODELS, build_model

QUIET = ["--set", "trainer.progress_bar=false", "--accelerator", "cpu"]


def resolve(*argv: str):
    args = app.build_parser().parse_args(["train", *argv])
    return app.resolve_config(args, app._verbs["train"])


def test_train_model_applies_the_models_section_of_the_mnist10k_recipe():
    default = resolve("--dataset", "mnist10k")
    assert (default.model, default.trainer.max_epochs, default.optim.lr) == ("seed-convnet", 8, 0.05)
    alexnet = resolve("--dataset", "mnist10k", "--model", "alexnet")
    assert (alexnet.optim.lr, alexnet.optim.warmup_epochs, alexnet.trainer.max_epochs) == (0.01, 1.0, 3)
    assert alexnet.trainer.precision == "bf16-mixed" and app.recipe_section == "alexnet"
    assert alexnet.optim.label_smoothing == 0.1 and alexnet.augment.crop_padding == 2  # the common keys stay
    narrow = resolve("--dataset", "mnist10k", "--model", "resnet18-cifar")
    assert narrow.model_options == {"width": 16} and narrow.trainer.max_epochs == 3
    assert resolve("--dataset", "mnist10k", "--model", "resnet18-cifar", "--epochs", "1").trainer.max_epochs == 1
    args = app.build_parser().parse_args(["benchmark", "--dataset", "mnist10k", "--model", "alexnet"])
    assert app.resolve_config(args, app._verbs["benchmark"]) == alexnet  # benchmark resolves the same section


@pytest.mark.parametrize("recipe", ["mnist10k", "cifar10_jpeg"])
def test_every_section_names_a_registered_model_whose_options_build(recipe):
    from pentad_core.cli import find_configs_dir

    loaded = yaml.safe_load((find_configs_dir("vision") / f"{recipe}.yaml").read_text())
    assert loaded.get("models"), f"{recipe}.yaml has no per-model sections"
    for name in loaded["models"]:
        layer, section = recipe_for_model(loaded, name)
        assert section == name and name in MODELS.names()
        build_model(name, layer.get("model_options"), num_classes=10, in_channels=1, image_size=28)


def _folder(root, colour: bool, sizes=((12, 10),), per_class: int = 20):
    """Images on a black background (grey) or a textured one (colour), sizes cycling through ``sizes``."""
    rng = np.random.default_rng(0)
    for label in ("a", "b", "c"):
        (root / label).mkdir(parents=True)
        for i in range(per_class):
            width, height = sizes[i % len(sizes)]
            if colour:
                pixels = rng.integers(0, 256, (height, width, 3), dtype=np.uint8)
                Image.fromarray(pixels, "RGB").save(root / label / f"{i}.png")
            else:
                pixels = np.zeros((height, width), np.uint8)
                pixels[2:-2, 2 + (ord(label) - 97) : 5 + (ord(label) - 97)] = 255  # a bar per class
                Image.fromarray(pixels, "L").convert("RGB").save(root / label / f"{i}.jpg")  # grey saved as RGB
    return root


def test_probe_of_a_grey_folder_and_its_choices(tmp_path):
    probe = autoconfig.probe_folder(_folder(tmp_path / "grey", colour=False))
    assert probe == {
        "images": 60, "classes": 3, "imbalance": 1.0, "median_size": "12x10", "median_side": 12,
        "sizes_vary": False, "grey": True, "plain_background": True,
    }  # fmt: skip
    chosen = {c.key: c.value for c in autoconfig.input_choices(probe)}
    assert chosen == {"dataset_options.image_size": 16, "dataset_options.channels": 1}
    config = resolve("--dataset", "imagefolder", "--set", "dataset_options.image_size=16")
    chosen = {c.key: c.value for c in autoconfig.training_choices(probe, config, train_images=43)}
    assert chosen == {
        "batch_size": 16, "augment.flip": False, "augment.crop_padding": 1, "augment.crop_mode": "constant",
        "optim.schedule": "onecycle", "optim.warmup_epochs": 0.5, "optim.label_smoothing": 0.1,
        "model_options.hidden": 128,
    }  # fmt: skip
    assert (
        autoconfig.epochs_wanted(3) == 60
        and autoconfig.epochs_wanted(100) == 40
        and autoconfig.epochs_wanted(900) == 10
    )


def test_probe_of_a_colour_folder_of_mixed_sizes(tmp_path):
    probe = autoconfig.probe_folder(_folder(tmp_path / "colour", colour=True, sizes=((90, 70), (80, 80), (120, 60))))
    assert (probe["grey"], probe["plain_background"], probe["sizes_vary"], probe["median_side"]) == (
        False,
        False,
        True,
        90,
    )
    chosen = {c.key: c.value for c in autoconfig.input_choices(probe)}
    assert chosen == {"dataset_options.image_size": 64, "dataset_options.channels": 3}
    config = resolve("--dataset", "imagefolder", "--set", "dataset_options.image_size=64")
    chosen = {c.key: c.value for c in autoconfig.training_choices(probe, config, train_images=20000)}
    assert (chosen["augment.flip"], chosen["augment.crop_padding"], chosen["augment.crop_mode"]) == (True, 4, "reflect")
    assert (chosen["batch_size"], chosen["model_options.hidden"]) == (128, 512)


def test_without_a_budget_the_epochs_follow_the_step_rule_and_nothing_is_timed(monkeypatch):
    from types import SimpleNamespace

    monkeypatch.setattr(autoconfig, "measure_epoch_seconds", lambda *args: pytest.fail("timed without a budget"))
    config = resolve("--dataset", "imagefolder", "--batch-size", "16")
    choice = autoconfig.epoch_choice(config, SimpleNamespace(train=range(43)))  # 3 steps per epoch
    assert (choice.key, choice.value) == ("trainer.max_epochs", 60) and "about 4,000 steps" in choice.reason


def test_train_records_the_choices_and_the_users_options_win(tmp_path, monkeypatch, capsys):
    folder = str(_folder(tmp_path / "grey", colour=False))
    # a measured 10 ms step and 1 s epoch: a 20 s budget fits floor(20 * 0.85 - 0.5) = 16 epochs
    monkeypatch.setattr(autoconfig, "measure_epoch_seconds", lambda config, data: (0.01, 1.0))
    run = tmp_path / "run"
    argv = ["train", "--dataset", "imagefolder", "--data-dir", folder, "--out", str(run), "--time-budget", "20s"]
    code = app.main([*argv, "--image-size", "20", "--set", "augment.flip=true", "--set", "trainer.max_steps=2", *QUIET])
    assert code == 0
    printed = capsys.readouterr().out
    assert "self-configured from the data" in printed and "(yours)" in printed
    saved = yaml.safe_load((run / "config.yaml").read_text())
    choices = saved["self_config"]["choices"]
    assert saved["self_config"]["fingerprint"]["grey"] is True
    assert "dataset_options.image_size" not in choices and saved["dataset_options"]["image_size"] == 20  # yours
    assert "augment.flip" not in choices and saved["augment"]["flip"] is True  # yours
    assert choices["dataset_options.channels"]["value"] == saved["dataset_options"]["channels"] == 1
    assert choices["trainer.max_epochs"]["value"] == saved["trainer"]["max_epochs"] == 16
    assert "10 ms/step measured: 16 fit --time-budget 20s" in choices["trainer.max_epochs"]["reason"]
    assert saved["augment"]["crop_mode"] == "constant" and saved["batch_size"] == 16
    metrics = json.loads((run / "metrics.json").read_text())
    assert "test/acc" in metrics

    off = tmp_path / "off"
    argv = ["train", "--dataset", "imagefolder", "--data-dir", folder, "--out", str(off), "--image-size", "12"]
    assert app.main([*argv, "--set", "self_configure=false", "--epochs", "1", *QUIET]) == 0
    saved = yaml.safe_load((off / "config.yaml").read_text())
    assert saved["self_config"] == {} and saved["batch_size"] == 128 and "channels" not in saved["dataset_options"]


def test_time_budget_stops_training_cleanly_with_a_tested_checkpoint(tmp_path):
    run = tmp_path / "run"
    tiny = ["--set", "dataset_options={num_train: 256, num_test: 32, image_size: 16}", "--batch-size", "8"]
    argv = ["train", "--dataset", "synthetic", "--out", str(run), "--epochs", "500", "--time-budget", "2s"]
    assert app.main([*argv, *tiny, *QUIET]) == 0
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["fit/epochs"] < 500 and metrics["fit/steps"] > 0 and "test/acc" in metrics
    assert (run / "checkpoints" / "last.ckpt").is_file()
