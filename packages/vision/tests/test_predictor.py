"""Predictor.from_run: a trained run answers predictions on its own, without the training data."""

from __future__ import annotations

import shutil

import numpy as np
import pytest
import torch
from PIL import Image

from pentad_core.errors import CheckpointError, ConfigError
from pentad_core.runs import RunDir
from pentad_core.training import TrainerConfig
from pentad_vision import pipeline
from pentad_vision.config import AugmentConfig, VisionConfig
from pentad_vision.data.synthetic import make_shapes
from pentad_vision.predictor import Predictor


def _write_image_folder(root, count: int = 96) -> None:
    """Coloured shapes as PNG files in ``<root>/<class>/``: a dataset that lives in files."""
    images, labels, classes = make_shapes(count, image_size=16, num_classes=3, seed=1)
    for index, (image, label) in enumerate(zip(images, labels)):
        folder = root / classes[int(label)]
        folder.mkdir(parents=True, exist_ok=True)
        Image.fromarray(image.permute(1, 2, 0).numpy()).save(folder / f"{index}.png")


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A one-epoch run on an image folder that is deleted afterwards; returns (run, module, test images)."""
    base = tmp_path_factory.mktemp("predictor")
    folder = base / "photos"
    _write_image_folder(folder)
    config = VisionConfig(
        dataset="imagefolder",
        data_dir=str(folder),
        dataset_options={"test_fraction": 0.25},
        model_options={"hidden": 16},
        batch_size=16,
        val_fraction=0.2,
        augment=AugmentConfig(tta_flip=True),
        trainer=TrainerConfig(max_epochs=1, accelerator="cpu", monitor="val/acc", monitor_mode="max",
                              progress_bar=False),
    )  # fmt: skip
    run = RunDir.for_training(base / "run")
    run.write_config(config)
    torch.manual_seed(0)
    data = pipeline.load_data(config, folder)
    module, metrics = pipeline.train(config, run, data)
    assert "test/acc" in metrics
    shutil.rmtree(folder)  # the predictor must not need the training data
    return run, module.eval(), data.test.images[:10], data.classes


def test_from_run_folder_and_checkpoint_match_the_trained_module(trained):
    run, module, images, classes = trained
    with torch.no_grad():
        expected = module(images).softmax(1)
    checkpoint = run.checkpoints / "best.ckpt"
    for source in (run.path, checkpoint):
        predictor = Predictor.from_run(source)
        assert predictor.run.checkpoint == checkpoint
        assert predictor.classes == classes and predictor.image_size == 16 and predictor.in_channels == 3
        assert predictor.config.dataset == "imagefolder"
        torch.testing.assert_close(predictor.probabilities(images), expected)
        top = predictor.predict(images, top_k=2)
        assert len(top) == len(images) and all(len(guesses) == 2 for guesses in top)
        assert [guesses[0][0] for guesses in top] == [classes[i] for i in expected.argmax(1).tolist()]


def test_numpy_hwc_and_float_inputs_give_the_same_probabilities(trained):
    run, _, images, _ = trained
    predictor = Predictor.from_run(run.path)
    expected = predictor.probabilities(images)
    hwc = images.permute(0, 2, 3, 1).numpy()
    torch.testing.assert_close(predictor.probabilities(hwc), expected)
    torch.testing.assert_close(predictor.probabilities([hwc[0], hwc[1]]), expected[:2])
    torch.testing.assert_close(predictor.probabilities(images.float() / 255), expected)
    larger = np.asarray(Image.fromarray(hwc[0]).resize((32, 32), Image.BILINEAR))
    assert predictor.probabilities(larger).shape == (1, 3)  # any size is resized to the run's


def test_wrong_inputs_and_missing_runs_are_reported(trained, tmp_path):
    run, _, images, _ = trained
    predictor = Predictor.from_run(run.path)
    with pytest.raises(ConfigError, match=r"\(N, 3, 16, 16\)"):
        predictor.predict(torch.rand(2, 1, 16, 16))
    with pytest.raises(ConfigError, match="uint8"):
        predictor.predict(np.zeros((16, 16, 3), dtype=np.float32))
    with pytest.raises(ConfigError, match="top_k"):
        predictor.predict(images, top_k=0)
    with pytest.raises(CheckpointError, match="does not exist"):
        Predictor.from_run(tmp_path / "nowhere")
    with pytest.raises(CheckpointError, match="no trained model"):
        Predictor.from_run(tmp_path)


def test_misspelled_dataset_option_names_it(tmp_path):
    config = VisionConfig(dataset="synthetic", dataset_options={"num_trian": 10})
    with pytest.raises(ConfigError, match="'num_trian'.*Did you mean 'num_train'"):
        pipeline.load_data(config, None)
    config = VisionConfig(dataset="synthetic", dataset_options={"seed": 3})
    with pytest.raises(ConfigError, match="'seed' is set by pentad"):
        pipeline.load_data(config, None)
    config = VisionConfig(dataset="cifar10", dataset_options={"image_size": 64})
    with pytest.raises(ConfigError, match="'image_size'"):
        pipeline.load_data(config, tmp_path)
