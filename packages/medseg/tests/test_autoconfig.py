"""Self-configuration of folder/nifti runs, time budgets, and the DRIVE recipe's per-model sections."""

from __future__ import annotations

import json

import numpy as np
import pytest
import yaml

from pentad_core.autoconfig import apply_choices
from pentad_medseg.autoconfig import fingerprint, plan
from pentad_medseg.baseline import otsu_baseline, otsu_threshold
from pentad_medseg.cli import app
from pentad_medseg.config import MedsegConfig
from pentad_medseg.data import load_dataset
from pentad_medseg.data.folder import write_folder

QUIET = {"trainer": {"progress_bar": False, "accelerator": "cpu"}, "threads": 1, "hd95": False}


@pytest.fixture(scope="module")
def photo_folder(tmp_path_factory):
    """6 / 2 / 2 generated 96x96 RGB photographs written as a folder dataset."""
    data = load_dataset("synthetic", None, kind="photos", image_size=96, train_images=6, val_images=2,
                        test_images=2, split_seed=3)  # fmt: skip
    return write_folder(data, tmp_path_factory.mktemp("photos"))


def choices_of(fp, config=None, kind="cpu"):
    return {c.key: c.value for c in plan(fp, config or MedsegConfig(dataset="folder"), kind)}


def test_fingerprint_and_choices_on_a_generated_folder(photo_folder):
    data = load_dataset("folder", photo_folder)
    fp = fingerprint(data)
    assert (fp["images"], fp["validation_images"], fp["channels"], fp["classes"]) == (6, 2, 3, 2)
    assert fp["median_size"] == [96, 96] and 0.0 < fp["foreground_share"] < 0.3
    assert len(fp["intensity"]["p99_5"]) == 3 and "spacing" not in fp
    chosen = choices_of(fp)
    # the whole 96-pixel image is one patch; 3 poolings reach 12 pixels; 5 % of 6 x 96 x 96 pixels -> batch 2
    assert chosen["patch_size"] == 96 and chosen["window"] == 96
    assert chosen["model_options.depth"] == 3 and chosen["model_options.base_channels"] == 16
    assert chosen["batch_size"] == 2 and chosen["model_options.norm"] == "instance"
    assert chosen["foreground_fraction"] == (0.5 if fp["foreground_share"] < 0.1 else 0.33)
    assert chosen["threshold"] is None and chosen["augment"] == ["flip", "rot90"]


def test_large_photographs_get_large_patches_not_64_pixels():
    """The issue's failing case: 500-pixel RGB photographs trained with 64-pixel patches learned nothing."""
    fp = {"images": 600, "validation_images": 100, "channels": 3, "classes": 2, "median_size": [500, 530],
          "foreground_share": 0.15, "intensity": {"min": 0.0, "max": 1.0}}  # fmt: skip
    cpu, gpu = choices_of(fp), choices_of(fp, kind="gpu")
    assert (cpu["patch_size"], cpu["model_options.depth"], cpu["batch_size"]) == (128, 4, 8)
    assert (gpu["patch_size"], gpu["model_options.depth"], gpu["batch_size"]) == (480, 5, 13)
    assert gpu["model_options.base_channels"] == 32 and gpu["model_options.norm"] == "batch"
    assert cpu["foreground_fraction"] == 0.33 and cpu["model_options.norm"] == "batch"
    # smp models have no depth/width options to choose
    smp = choices_of(fp, MedsegConfig(dataset="folder", model="smp-unet"))
    assert "model_options.depth" not in smp and smp["patch_size"] == 128


def test_nifti_intensity_choices_ct_clip_or_per_volume_zscore():
    base = {"images": 40, "validation_images": 8, "channels": 1, "classes": 2, "median_size": [128, 128],
            "foreground_share": 0.02, "spacing": [0.8, 0.8, 5.0]}  # fmt: skip
    ct = {**base, "intensity": {"min": -1024.0, "max": 2000.0, "p00_5": [-100.0], "p99_5": [240.0]}}
    mri = {**base, "intensity": {"min": 0.0, "max": 812.0, "p00_5": [40.0], "p99_5": [600.0]}}
    assert choices_of(ct)["dataset_options.clip"] == [-100.0, 240.0] and "dataset_options.zscore" not in choices_of(ct)
    assert choices_of(mri)["dataset_options.zscore"] is True and choices_of(mri)["foreground_fraction"] == 0.5


def test_explicit_keys_beat_choices():
    fp = {"images": 6, "validation_images": 2, "channels": 3, "classes": 2, "median_size": [96, 96],
          "foreground_share": 0.2, "intensity": {"min": 0.0, "max": 1.0}}  # fmt: skip
    config = MedsegConfig(dataset="folder", patch_size=32, model_options={"depth": 2})
    configured, applied = apply_choices(config, plan(fp, config), {"patch_size", "model_options.depth"})
    assert configured.patch_size == 32 and configured.model_options["depth"] == 2
    assert configured.model_options["base_channels"] == 16 and configured.window == 96
    assert {c.key for c in applied}.isdisjoint({"patch_size", "model_options.depth"})


def test_train_self_configures_and_records_reasons_but_keeps_what_the_user_set(photo_folder, tmp_path):
    config = {**QUIET, "dataset": "folder", "data_dir": str(photo_folder), "batch_size": 4, "time_budget": "20s"}
    result = app.run("train", config, out=tmp_path / "run")
    saved = yaml.safe_load((result.folder / "config.yaml").read_text())
    choices = saved["self_config"]["choices"]
    assert saved["batch_size"] == 4 and "batch_size" not in choices  # set by the user: kept
    assert saved["patch_size"] == 96 and choices["patch_size"]["reason"].startswith("median image 96x96")
    assert saved["trainer"]["max_epochs"] == choices["trainer.max_epochs"]["value"] >= 1
    assert "--time-budget 20s" in choices["trainer.max_epochs"]["reason"]
    assert saved["self_config"]["fingerprint"]["median_size"] == [96, 96]
    assert np.isfinite(result.metrics["test/dice"])
    # self_configure: false keeps the defaults
    plain = app.run("train", {**config, "self_configure": False, "trainer": {**QUIET["trainer"], "max_epochs": 1},
                              "patches_per_epoch": 8}, out=tmp_path / "plain")  # fmt: skip
    saved = yaml.safe_load((plain.folder / "config.yaml").read_text())
    assert saved["patch_size"] == 64 and saved["self_config"] == {}


def test_time_budget_stops_cleanly_and_the_checkpoint_is_tested(tmp_path):
    config = {**QUIET, "dataset": "synthetic", "time_budget": "4s", "patches_per_epoch": 16, "batch_size": 8,
              "dataset_options": {"image_size": 48, "train_images": 3, "val_images": 1, "test_images": 1},
              "model_options": {"depth": 2, "base_channels": 4}, "patch_size": 32, "window": 48,
              "trainer": {**QUIET["trainer"], "max_epochs": 100000}}  # fmt: skip
    result = app.run("train", config, out=tmp_path / "run")
    assert (result.folder / "checkpoints" / "last.ckpt").is_file()
    metrics = json.loads((result.folder / "metrics.json").read_text())
    assert np.isfinite(metrics["test/dice"]) and 0 < metrics["fit/patches"] < 100000 * 16
    assert metrics["fit/train_seconds"] < 60


def resolve(*argv: str) -> MedsegConfig:
    args = app.build_parser().parse_args(["train", "--dataset", "drive", *argv])
    return app.resolve_config(args, app._verbs["train"])


def test_drive_recipe_sections_by_train_model():
    default = resolve()
    assert (default.model, default.lr, default.scheduler, app.recipe_section) == ("unet", 0.003, "cosine", "unet")
    assert default.model_options["depth"] == 3 and default.trainer.max_epochs == 56
    assert default.trainer.precision == "bf16-mixed" and default.trainer.channels_last
    assert default.time_budget == "30m" and default.foreground_fraction == 0.5 and default.ensemble == 3
    smp = resolve("--model", "smp-unet")
    assert (smp.encoder, smp.lr, app.recipe_section) == ("resnet18", 0.001, "smp-unet")
    assert smp.model_options == {} and smp.patch_size == 64  # the unet's model_options stay with the unet
    assert smp.ensemble == 1  # so does its ensemble
    assert smp.trainer.precision == "auto" and smp.trainer.max_epochs == 28  # and its trainer settings
    assert resolve("--model", "smp-unet", "--set", "lr=0.01").lr == 0.01


def test_otsu_baseline_picks_channel_and_polarity_on_training_images():
    rng = np.random.default_rng(0)
    assert abs(otsu_threshold(np.r_[rng.normal(0.2, 0.05, 500), rng.normal(0.8, 0.05, 500)]) - 0.5) < 0.05
    data = load_dataset("synthetic", None, kind="cells", image_size=48, train_images=3, test_images=2, in_channels=1)
    metrics, choice = otsu_baseline(data.train, data.test)
    assert choice == {"channel": 0, "polarity": "brighter", "train_dice": choice["train_dice"]}
    assert metrics["dice"] > 0.7 and metrics["auc"] > 0.9


def test_nifti_ct_volumes_are_clipped_to_their_foreground_window(tmp_path):
    import nibabel as nib

    from pentad_medseg.data import synthetic_image
    from pentad_medseg.predictor import Predictor

    rng = np.random.default_rng(0)
    for split in ("images", "labels"):
        (tmp_path / "data" / split).mkdir(parents=True)
    for index in range(4):
        slices = [synthetic_image(rng, 32, "cells", 1, 2) for _ in range(3)]
        volume = np.stack([s[0][0] for s in slices], axis=-1) * 2000 - 1000  # soft tissue in Hounsfield units
        volume[:2] = -1024  # air
        volume[-1, -1] = 1800  # bone
        labels = np.stack([s[1] for s in slices], axis=-1).astype(np.uint8)
        labels[:2], labels[-1, -1] = 0, 0  # air and bone are background
        nib.save(
            nib.Nifti1Image(volume.astype(np.float32), np.eye(4)), tmp_path / "data" / "images" / f"c{index}.nii.gz"
        )
        nib.save(nib.Nifti1Image(labels, np.eye(4)), tmp_path / "data" / "labels" / f"c{index}.nii.gz")
    config = {**QUIET, "dataset": "nifti", "data_dir": str(tmp_path / "data"), "time_budget": "5s",
              "model_options": {"depth": 2, "base_channels": 4},
              "dataset_options": {"val_fraction": 0.25, "test_fraction": 0.25}}  # fmt: skip
    result = app.run("train", config, out=tmp_path / "run")
    saved = yaml.safe_load((result.folder / "config.yaml").read_text())
    low, high = saved["dataset_options"]["clip"]
    assert -1000 < low < high < 1800 and saved["self_config"]["fingerprint"]["spacing"] == [1.0, 1.0, 1.0]
    assert "CT-like" in saved["self_config"]["choices"]["dataset_options.clip"]["reason"]
    assert saved["patch_size"] == 32 and saved["model_options"]["depth"] == 2  # the user's depth is kept
    volume = Predictor.from_run(result.folder).predict_volume(tmp_path / "data" / "images" / "c0.nii.gz")
    assert volume.labels.shape == (32, 32, 3) and np.isfinite(volume.foreground).all()


def test_benchmark_on_a_folder_compares_with_otsu_on_the_same_split(photo_folder, tmp_path):
    config = {**QUIET, "dataset": "folder", "data_dir": str(photo_folder), "time_budget": "5s"}
    result = app.run("benchmark", config, out=tmp_path / "bench")
    table = (result.folder / "benchmark.md").read_text()
    assert "Otsu threshold, channel" in table and "measured, same split" in table
    assert "pentad unet (folder)" in table and np.isfinite(result.metrics["test/dice"])


def test_benchmark_trains_each_model_with_the_section_train_would_use(tmp_path, monkeypatch):
    import pentad_medseg.cli as cli

    seen = []

    def fake_train(context):
        seen.append((context.config, context.run.path))
        context.data = None
        return {"test/auc": 0.9, "test/f1": 0.8}

    monkeypatch.setattr(cli, "_train", fake_train)
    result = app.run("benchmark", {"threads": 1}, out=tmp_path / "bench", models="unet,smp-fpn")
    (unet, unet_run), (fpn, fpn_run) = seen
    assert (unet.model, unet.lr, unet.model_options["depth"]) == ("unet", 0.003, 3)
    assert (fpn.model, fpn.encoder, fpn.lr, fpn.model_options) == ("smp-fpn", "resnet18", 0.001, {})
    train = resolve("--model", "smp-fpn")  # what `train --dataset drive --model smp-fpn` runs with
    fields = ("lr", "encoder", "scheduler", "foreground_fraction", "patch_size", "time_budget", "trainer")
    assert [getattr(train, f) for f in fields] == [getattr(fpn, f) for f in fields]
    assert (unet_run.name, fpn_run.name) == ("unet", "smp-fpn")
    assert "pentad smp-fpn (drive)" in (result.folder / "benchmark.md").read_text()
