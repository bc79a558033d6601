"""End to end through the library and the CLI, on small generated data."""

import json
import math

import numpy as np
import pytest
import torch

from pentad_core.checkpoint import load_module
from pentad_core.runs import RunDir
from pentad_core.testing import dataset_folder, requires_dataset
from pentad_core.training import TrainerConfig
from pentad_medseg.cli import main
from pentad_medseg.config import MedsegConfig
from pentad_medseg.module import SegmentationModule
from pentad_medseg.pipeline import evaluate_images, load_data, train_model
from pentad_medseg.predictor import Predictor

TINY = {
    "dataset_options": {"image_size": 48, "train_images": 6, "val_images": 1, "test_images": 2},
    "model_options": {"depth": 2, "base_channels": 8},
    "batch_size": 8,
    "patch_size": 32,
    "patches_per_epoch": 96,
    "window": 32,
    "lr": 0.005,
    "threads": 1,
}


def tiny_config(**changes) -> MedsegConfig:
    trainer = TrainerConfig(
        max_epochs=3, monitor="val/dice", monitor_mode="max", progress_bar=False, log_every_n_steps=1
    )
    return MedsegConfig(**{**TINY, **changes, "trainer": trainer})


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    torch.manual_seed(0)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # module-scoped fixtures run before the function-scoped thread fixture
    out = tmp_path_factory.mktemp("run")
    config = tiny_config(threshold=None)
    data = load_data(config, None)
    run = RunDir(out)
    try:
        module, metrics = train_model(config, run, data)
    finally:
        torch.set_num_threads(threads)
    return out, module, metrics, data


def test_training_learns_and_writes_a_complete_run(trained):
    out, _, metrics, _ = trained
    assert metrics["test/auc"] > 0.9  # chance is 0.5; this run reached 0.99
    # Vessels cover about 16% of the test FOVs: calling every pixel a vessel scores Dice 0.28; this run reached 0.92.
    assert metrics["test/dice"] > 0.75 and metrics["test/hd95"] < 5
    assert 0 < metrics["test/threshold"] < 1
    lines = (out / "logs" / "metrics.csv").read_text().splitlines()
    header = lines[0].split(",")
    losses = [float(row.split(",")[header.index("train/loss_epoch")]) for row in lines[1:]
              if row.split(",")[header.index("train/loss_epoch")]]  # fmt: skip
    assert losses[-1] < losses[0]
    assert (out / "checkpoints" / "best.ckpt").is_file()
    assert (out / "test_per_image.csv").read_text().startswith("image,dice,f1,iou")
    assert (out / "plots" / "predictions.png").is_file()
    assert all("/" in key for key in json.loads((out / "metrics.json").read_text()))


def test_checkpoint_reload_predicts_identically(trained):
    out, module, _, data = trained
    reloaded = load_module(SegmentationModule, out / "checkpoints" / "best.ckpt")
    image = torch.from_numpy(data.test[0].image)[None]
    assert torch.equal(module.predict_probabilities(image), reloaded.predict_probabilities(image))
    assert float(reloaded.threshold) == float(module.threshold)
    predictor = Predictor.from_run(out, tta=True)
    summary, rows, probabilities, _ = evaluate_images(predictor, data.test)
    assert len(rows) == 2 and probabilities[0].shape == (1, 48, 48) and summary["auc"] > 0.8


def test_predictor_from_run_folder_and_checkpoint_match_the_module(trained):
    out, module, _, data = trained
    item = data.test[0]
    expected = module.predict_probabilities(torch.from_numpy(item.image)[None])[0].numpy()
    for path in (out, out / "checkpoints" / "best.ckpt"):
        predictor = Predictor.from_run(path)
        assert predictor.run.checkpoint == out / "checkpoints" / "best.ckpt"
        assert predictor.config.model_options == TINY["model_options"]  # the run's typed config
        result = predictor.predict(item.image, fov=item.fov)
        assert np.array_equal(result.probabilities, expected)
        assert result.threshold == float(module.threshold)
        assert np.array_equal(result.mask, ((expected[0] > result.threshold) & item.fov).astype(np.int64))
    assert Predictor.from_run(out, threshold=0.99).predict(item.image).mask.sum() < result.mask.sum()


def test_load_predictor_overrides_only_a_threshold_the_run_did_not_use(trained):
    from pentad_medseg.pipeline import load_predictor

    out, module, _, _ = trained
    learned = float(module.threshold)  # chosen on validation data: the run's config says threshold null
    assert load_predictor(tiny_config(threshold=None), out).threshold == learned
    assert load_predictor(tiny_config(threshold=0.3), out).threshold == 0.3


def test_cli_predict_png_and_nifti(trained, tmp_path):
    import nibabel as nib
    from PIL import Image

    out, _, _, data = trained
    inputs = tmp_path / "inputs"
    inputs.mkdir()
    image = (data.test[0].image.transpose(1, 2, 0) * 255).astype(np.uint8)
    Image.fromarray(image).save(inputs / "eye.png")
    code = main(["predict", "--checkpoint", str(out / "checkpoints" / "best.ckpt"), "--input", str(inputs / "eye.png"),
                 "--out", str(tmp_path / "pred")])  # fmt: skip
    assert code == 0
    mask = np.asarray(Image.open(tmp_path / "pred" / "predictions" / "eye_mask.png"))
    assert mask.shape == (48, 48) and set(np.unique(mask)) <= {0, 255}
    assert (tmp_path / "pred" / "predictions" / "eye_overlay.png").is_file()
    # a 3-channel model refuses a 1-channel volume with a clear error
    affine = np.diag([0.7, 0.7, 3.0, 1.0])
    nib.save(nib.Nifti1Image(np.random.rand(48, 48, 2).astype(np.float32), affine), inputs / "vol.nii.gz")
    checkpoint = str(out / "checkpoints" / "best.ckpt")
    code = main(["predict", "--checkpoint", checkpoint, "--input", str(inputs / "vol.nii.gz"),
                 "--out", str(tmp_path / "pred2")])  # fmt: skip
    assert code == 2


def test_nifti_train_and_predict_keeps_affine(tmp_path):
    import nibabel as nib

    from pentad_medseg.data import synthetic_image

    rng = np.random.default_rng(0)
    affine = np.diag([0.8, 0.8, 2.5, 1.0])
    for split in ("images", "labels"):
        (tmp_path / "data" / split).mkdir(parents=True)
    for index in range(4):
        slices = [synthetic_image(rng, 32, "cells", 1, 2) for _ in range(3)]
        volume = np.stack([s[0][0] for s in slices], axis=-1)
        labels = np.stack([s[1] for s in slices], axis=-1).astype(np.uint8)
        nib.save(nib.Nifti1Image(volume, affine), tmp_path / "data" / "images" / f"case{index}.nii.gz")
        nib.save(nib.Nifti1Image(labels, affine), tmp_path / "data" / "labels" / f"case{index}.nii.gz")
    run = tmp_path / "run"
    code = main(["train", "--dataset", "nifti", "--data-dir", str(tmp_path / "data"), "--epochs", "3",
                 "--out", str(run),
                 "--set", "model_options={depth: 2, base_channels: 4}", "--set", "patch_size=32", "--set", "window=32",
                 "--set", "patches_per_epoch=64", "--batch-size", "8", "--set", "trainer.progress_bar=false",
                 "--set", "lr=0.01",
                 "--set", "dataset_options={val_fraction: 0.25, test_fraction: 0.25}"])  # fmt: skip
    assert code == 0
    # Blobs cover about 68% of these slices, so calling every pixel foreground scores Dice about 0.81 (AUC 0.5);
    # 24 steps reached Dice 0.97 and AUC 0.996.
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["test/dice"] > 0.9 and metrics["test/auc"] > 0.9
    code = main(["predict", "--checkpoint", str(run / "checkpoints" / "last.ckpt"),
                 "--input", str(tmp_path / "data" / "images"), "--out", str(tmp_path / "pred")])  # fmt: skip
    assert code == 0
    written = nib.load(tmp_path / "pred" / "predictions" / "case0_mask.nii.gz")
    assert written.shape == (32, 32, 3) and np.allclose(written.affine, affine)


def test_cli_export_onnx(trained, tmp_path):
    out = trained[0]
    assert main(["export", "--checkpoint", str(out / "checkpoints" / "best.ckpt"), "--out", str(tmp_path / "e"),
                 "--size", "32"]) == 0  # fmt: skip
    metrics = json.loads((tmp_path / "e" / "metrics.json").read_text())
    assert metrics["export/max_abs_diff"] <= metrics["export/tolerance"]


def test_reading_verbs_write_into_a_new_folder_and_leave_the_run_alone(trained):
    out, _, metrics, _ = trained
    before = {name: (out / name).read_bytes() for name in ("config.yaml", "metrics.json", "test_per_image.csv")}
    plots = {path.name: path.read_bytes() for path in (out / "plots").iterdir()}
    checkpoint = ["--checkpoint", str(out)]
    assert main(["evaluate", *checkpoint, "--split", "test"]) == 0
    assert main(["predict", *checkpoint]) == 0
    assert main(["export", *checkpoint, "--size", "32"]) == 0
    (evaluated,) = (out / "evaluate").iterdir()  # <run>/<verb>/<time>/
    (predicted,) = (out / "predict").iterdir()
    (exported,) = (out / "export").iterdir()
    # evaluate re-computes, from the saved checkpoint, what training reported for the test split
    evaluation = json.loads((evaluated / "metrics.json").read_text())
    for key in ("test/auc", "test/dice", "test/hd95", "test/threshold"):
        assert abs(evaluation[key] - metrics[key]) < 1e-6, key
    assert (evaluated / "test_per_image.csv").read_text() == before["test_per_image.csv"].decode()
    assert sorted(p.name for p in (predicted / "predictions").iterdir()) == sorted(
        f"test00{i}_{kind}.png" for i in range(2) for kind in ("mask", "overlay", "prob")
    )
    assert (exported / "model.onnx").is_file()
    assert {name: (out / name).read_bytes() for name in before} == before
    assert {path.name: path.read_bytes() for path in (out / "plots").iterdir()} == plots


def test_cli_errors_are_one_line(tmp_path, capsys):
    assert (
        main(["train", "--dataset", "drive", "--data-dir", str(tmp_path / "none"), "--out", str(tmp_path / "r")]) == 2
    )
    assert main(["train", "--loss", "hinge", "--out", str(tmp_path / "r2")]) == 2
    assert main(["train", "--set", "augment=[flip, mixup]", "--out", str(tmp_path / "r3")]) == 2
    assert main(["train", "--model", "smp-unet", "--encoder", "resnet-34", "--out", str(tmp_path / "r4")]) == 2
    assert main(["evaluate", "--out", str(tmp_path / "r5")]) == 2
    errors = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert len(errors) == 5 and all(line.startswith("apps/medseg: error:") for line in errors)
    assert str(tmp_path / "none") in errors[0] and "hinge" in errors[1] and "mixup" in errors[2]


@requires_dataset("drive")
def test_drive_trains_briefly_well_above_chance(tmp_path):
    config = MedsegConfig(
        dataset="drive", model_options={"depth": 3, "base_channels": 8}, batch_size=16, patches_per_epoch=640, lr=0.003,
        foreground_fraction=0.3,
        threads=1, trainer=TrainerConfig(max_epochs=1, monitor="", progress_bar=False),
        dataset_options={"val_images": 1},
    )  # fmt: skip
    data = load_data(config, dataset_folder("drive"))
    data.test = data.test[:2]
    _, metrics = train_model(config, RunDir(tmp_path), data)
    print("brief DRIVE run:", {k: round(v, 4) for k, v in metrics.items() if k.startswith("test/")})
    assert metrics["test/auc"] > 0.85  # chance is 0.5; these 40 steps reached 0.944 when written


def test_folder_multiclass_train_and_pretrained(trained, tmp_path, capsys):
    from PIL import Image

    from pentad_medseg.data import synthetic_image

    rng = np.random.default_rng(1)
    for split, count in (("train", 4), ("val", 1), ("test", 1)):
        for index in range(count):
            image, mask, _ = synthetic_image(rng, 48, "cells", 3, 3)
            for folder, array in (("images", (image.transpose(1, 2, 0) * 255)), ("masks", mask)):
                (tmp_path / "data" / split / folder).mkdir(parents=True, exist_ok=True)
                Image.fromarray(array.astype(np.uint8)).save(tmp_path / "data" / split / folder / f"c{index}.png")
    run = tmp_path / "run"
    code = main(["train", "--dataset", "folder", "--data-dir", str(tmp_path / "data"), "--classes", "3",
                 "--loss", "ce-dice", "--epochs", "3", "--batch-size", "8", "--out", str(run), "--set", "lr=0.01",
                 "--set", "model_options={depth: 2, base_channels: 8}", "--set", "patch_size=32",
                 "--set", "window=32", "--set", "patches_per_epoch=64", "--set", "trainer.progress_bar=false",
                 "--pretrained", str(trained[0] / "checkpoints" / "best.ckpt")])  # fmt: skip
    assert code == 0
    metrics = json.loads((run / "metrics.json").read_text())
    # Chance is 0.5 (one-vs-rest AUC averaged over the 2 foreground classes); 24 steps reached 0.87-0.9.
    assert metrics["test/auc"] > 0.75
    module = load_module(SegmentationModule, run / "checkpoints" / "last.ckpt")
    assert module.hparams.classes == 3 and module.net.head.out_channels == 3
    # --pretrained copied every network tensor of the binary vessel model except the 1-class head's two
    network = [key for key in module.state_dict() if key.startswith("net.")]
    assert f"initialised {len(network) - 2} tensors from" in capsys.readouterr().out
    assert main(["predict", "--checkpoint", str(run), "--out", str(tmp_path / "p"),  # best.ckpt, as from_run(run)
                 "--dataset", "folder", "--data-dir", str(tmp_path / "data")]) == 0  # fmt: skip
    labels = np.asarray(Image.open(tmp_path / "p" / "predictions" / "c0_mask.png"))
    assert labels.max() <= 2
    # the run predicts without its training data: the data folder is gone, the run folder suffices
    image = np.asarray(Image.open(tmp_path / "data" / "test" / "images" / "c0.png"))
    (tmp_path / "data").rename(tmp_path / "moved")
    predictor = Predictor.from_run(run)
    assert predictor.config.data_dir == str(tmp_path / "data") and not (tmp_path / "data").exists()
    result = predictor.predict(image.transpose(2, 0, 1).astype(np.float32) / 255)
    assert result.probabilities.shape == (3, 48, 48) and np.array_equal(result.mask, labels)


# -- bad input: a correct result or one line, exit 2 -------------------------------------------------

CLI_TINY = [
    "--epochs", "1", "--batch-size", "8", "--set", "patches_per_epoch=32", "--set", "patch_size=32",
    "--set", "window=32", "--set", "model_options={depth: 2, base_channels: 4}", "--set", "threads=1",
    "--set", "trainer.progress_bar=false", "--accelerator", "cpu",
]  # fmt: skip


def test_without_a_validation_split_no_training_image_is_validated(tmp_path):
    run = tmp_path / "run"
    code = main(["train", "--out", str(run), *CLI_TINY, "--set", "threshold=null", "--set",
                 "dataset_options={image_size: 48, train_images: 4, val_images: 0, test_images: 2}"])  # fmt: skip
    assert code == 0
    metrics = json.loads((run / "metrics.json").read_text())
    assert not [key for key in metrics if key.startswith("val/")]  # nothing was validated
    assert "val/dice" not in (run / "logs" / "metrics.csv").read_text().splitlines()[0]
    assert metrics["test/threshold"] == 0.5  # no validation images to choose one on: the default stays
    assert (run / "checkpoints" / "last.ckpt").is_file() and not (run / "checkpoints" / "best.ckpt").exists()


def test_nan_validation_metrics_are_logged_as_nan_not_zero(tmp_path):
    from pentad_medseg.data import SegImage

    torch.manual_seed(0)
    config = tiny_config(threshold=0.5)
    data = load_data(config, None)
    image = data.val[0]  # a validation image without foreground: AUC and sensitivity are undefined
    data.val = [SegImage("empty", image.image, np.zeros_like(image.mask), image.fov)]
    _, metrics = train_model(config, RunDir(tmp_path), data)
    assert math.isnan(metrics["val/auc"]) and math.isnan(metrics["val/sensitivity"])
    assert metrics["val/specificity"] > 0.5 and metrics["val/dice"] in (0.0, 1.0)
    header, *rows = (tmp_path / "logs" / "metrics.csv").read_text().splitlines()
    column = header.split(",").index("val/auc")
    logged = [row.split(",")[column] for row in rows if row.split(",")[column]]
    assert len(logged) == 3 and all(value == "nan" for value in logged)


def test_nan_training_loss_is_one_line_naming_the_learning_rate(tmp_path, capsys):
    code = main(["train", "--out", str(tmp_path / "run"), *CLI_TINY, "--set", "lr=1.0e+30", "--set",
                 "dataset_options={image_size: 48, train_images: 4, val_images: 1, test_images: 1}"])  # fmt: skip
    assert code == 2
    errors = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert len(errors) == 1 and errors[0].startswith("apps/medseg: error: the training loss became nan")
    assert "lr=1e+30" in errors[0] and "--set lr=1.0e+29" in errors[0]


def test_outputs_are_written_atomically(tmp_path, monkeypatch):
    """PNG and NIfTI outputs reach the disk through core's atomic writer: a temporary file that is
    fsynced, then renamed over the destination (a crash never leaves half a file)."""
    import os

    import nibabel as nib

    from pentad_medseg.outputs import save_nifti, save_prediction_pngs

    synced: list[str] = []
    real_fsync = os.fsync

    def fsync(descriptor: int) -> None:
        synced.append(os.path.realpath(f"/proc/self/fd/{descriptor}"))
        real_fsync(descriptor)

    monkeypatch.setattr(os, "fsync", fsync)
    affine = np.diag([0.7, 0.7, 3.0, 1.0])
    volume = np.random.default_rng(0).random((6, 5, 2)).astype(np.float32)
    path = save_nifti(volume, affine, tmp_path / "out" / "case_prob.nii.gz")
    written = nib.load(path)
    assert np.array_equal(written.get_fdata(dtype=np.float32), volume) and np.allclose(written.affine, affine)
    image = np.random.default_rng(1).random((3, 8, 8)).astype(np.float32)
    pngs = save_prediction_pngs("eye", image, np.full((1, 8, 8), 0.9, np.float32), 0.5, tmp_path / "out")
    finals = {str(path.resolve()), *(str(p.resolve()) for p in pngs.values())}
    temporaries = [name for name in synced if str(tmp_path) in name and not name.endswith("/out")]
    assert len(temporaries) == 4 and not set(temporaries) & finals  # each synced under a temporary name
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == [
        "case_prob.nii.gz", "eye_mask.png", "eye_overlay.png", "eye_prob.png"
    ]  # fmt: skip


class _RunsCode:
    """Unpickling this object would call ``Path.touch(marker)``: what a malicious checkpoint does."""

    def __init__(self, marker) -> None:
        self.marker = marker

    def __reduce__(self):
        from pathlib import Path

        return (Path.touch, (Path(self.marker),))


def test_files_from_elsewhere_are_data_never_code(trained, tmp_path, capsys):
    """A checkpoint whose unpickling would run code, handed to every verb that loads one
    (--pretrained, --checkpoint, --resume PATH): refused in one line, exit 2, and nothing ran."""
    marker = tmp_path / "code-ran"
    payload = tmp_path / "model.ckpt"
    torch.save({"state_dict": _RunsCode(marker), "hyper_parameters": {}}, payload)
    commands = [
        ["train", "--out", str(tmp_path / "a"), *CLI_TINY, "--pretrained", str(payload)],
        ["predict", "--checkpoint", str(payload), "--out", str(tmp_path / "b")],
        ["evaluate", "--checkpoint", str(payload), "--out", str(tmp_path / "c")],
        ["export", "--checkpoint", str(payload), "--out", str(tmp_path / "d")],
        ["train", "--out", str(tmp_path / "e"), *CLI_TINY, "--resume", str(payload)],
    ]
    for command in commands:
        assert main(command) == 2, command
    errors = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert len(errors) == len(commands) and all(line.startswith("apps/medseg: error:") for line in errors)
    assert all(str(payload) in line for line in errors), errors
    assert not marker.exists()


def test_an_ensemble_trains_every_member_and_segments_with_their_mean(tmp_path):
    """`ensemble: 2` through the CLI: two different U-Nets in one checkpoint, the predictor's logits
    are their mean, and the run still segments well above chance."""
    torch.manual_seed(0)
    out = tmp_path / "ensemble"
    options = [item for key, value in TINY.items() for item in ("--set", f"{key}={json.dumps(value)}")]
    code = main(["train", "--dataset", "synthetic", "--epochs", "3", "--set", "ensemble=2", "--out", str(out),
                 "--set", "trainer.progress_bar=false", *options])  # fmt: skip
    assert code == 0 and "ensemble: 2" in (out / "config.yaml").read_text()
    predictor = Predictor.from_run(out)
    first, second = predictor.module.net.members
    assert any(not torch.equal(a, b) for a, b in zip(first.parameters(), second.parameters()))
    x = torch.randn(1, 3, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(predictor.module(x), (first(x) + second(x)) / 2)
    assert json.loads((out / "metrics.json").read_text())["test/auc"] > 0.8
    assert main(["train", "--dataset", "synthetic", "--set", "ensemble=0", "--out", str(tmp_path / "zero")]) == 2


def test_bf16_run_scores_in_float32_as_its_predictor_does(tmp_path):
    """A bf16-mixed, channels-last run trains, and its validation/test probabilities are float32:
    the Predictor (no autocast) reproduces the run's test metrics, and autocast does not change them."""
    torch.manual_seed(0)
    trainer = TrainerConfig(
        max_epochs=2, monitor="val/auc", monitor_mode="max", progress_bar=False, log_every_n_steps=1,
        precision="bf16-mixed", channels_last=True,
    )  # fmt: skip
    config = MedsegConfig(**{**TINY, "trainer": trainer})
    data = load_data(config, None)
    module, metrics = train_model(config, RunDir(tmp_path), data)
    assert metrics["test/auc"] > 0.8 and math.isfinite(metrics["test/dice"])
    image = torch.from_numpy(data.test[0].image)[None]
    with torch.autocast("cpu", dtype=torch.bfloat16):
        under_autocast = module.predict_probabilities(image)
    assert under_autocast.dtype == torch.float32
    assert torch.equal(under_autocast, module.predict_probabilities(image))
    summary, _, _, _ = evaluate_images(Predictor.from_run(tmp_path), data.test)
    assert summary["auc"] == pytest.approx(metrics["test/auc"], abs=1e-6)
    assert summary["dice"] == pytest.approx(metrics["test/dice"], abs=1e-6)
