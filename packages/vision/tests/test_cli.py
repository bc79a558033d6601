"""The app's verbs, end to end in one process on a tiny synthetic run."""

from __future__ import annotations

import json

import pytest
from PIL import Image

from pentad_vision.cli import app

TINY = ["--set", "dataset_options={num_train: 96, num_test: 32, image_size: 16}",
        "--set", "model_options={hidden: 16}", "--set", "trainer.progress_bar=false", "--epochs", "1"]  # fmt: skip


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    out = tmp_path_factory.mktemp("run") / "train"
    code = app.main(["train", "--dataset", "synthetic", "--out", str(out), *TINY])
    assert code == 0
    return out


def test_train_writes_a_complete_run(trained):
    metrics = json.loads((trained / "metrics.json").read_text())
    assert {"test/acc", "test/top5", "fit/images_per_second"} <= set(metrics)
    assert (trained / "checkpoints" / "last.ckpt").is_file()
    assert (trained / "plots" / "confusion_matrix.png").is_file()
    assert list(trained.rglob("events.out.tfevents.*"))


def test_evaluate_with_attack_predict_export_explain_compress(trained, tmp_path, capsys):
    checkpoint = str(trained / "checkpoints" / "last.ckpt")
    common = ["--checkpoint", checkpoint, *TINY[:-2]]
    out = tmp_path / "eval"
    assert app.main(["evaluate", *common, "--out", str(out), "--attack", "fgsm", "--eps", "8/255"]) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert 0.0 <= metrics["test/fgsm_acc"] <= metrics["test/acc"] + 1e-9

    images = tmp_path / "images"
    images.mkdir()
    for i in range(3):
        Image.new("RGB", (40, 30), (i * 80, 20, 200)).save(images / f"{i}.png")
    out = tmp_path / "predict"
    capsys.readouterr()
    assert app.main(["predict", str(images), "--top-k", "2", "--format", "json", *common, "--out", str(out)]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert len(printed) == 3 and len(printed[0]["predictions"]) == 2
    assert (out / "predictions.csv").read_text().count("\n") == 1 + 3 * 2

    out = tmp_path / "export"
    assert app.main(["export", *common, "--out", str(out)]) == 0
    assert (out / "model.onnx").is_file()

    out = tmp_path / "explain"
    assert app.main(["explain", str(images), *common, "--out", str(out)]) == 0
    assert (out / "plots" / "gradcam.png").is_file()

    out = tmp_path / "compress"
    assert app.main(["compress", "--method", "prune", "--amount", "0.3", *common, "--out", str(out)]) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["compress/compressed_sparsity"] == pytest.approx(0.3, abs=0.01)


def test_user_errors_are_one_line_with_exit_2(tmp_path, capsys):
    capsys.readouterr()
    code = app.main(["evaluate", "--checkpoint", str(tmp_path / "missing.ckpt"), "--out", str(tmp_path / "x")])
    assert code == 2 and "missing.ckpt" in capsys.readouterr().err
    code = app.main(
        ["train", "--dataset", "mnist10k", "--data-dir", str(tmp_path / "nowhere"), "--out", str(tmp_path / "y")]
    )
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and "nowhere" in err[0]


def test_misspelled_options_are_one_line_naming_the_key(tmp_path, capsys):
    capsys.readouterr()
    out = str(tmp_path / "z")
    code = app.main(["train", "--dataset", "synthetic", "--out", out, "--set", "dataset_options.num_trian=10"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and "'num_trian'" in err[0] and "num_train" in err[0]
    code = app.main(["train", "--dataset", "synthetic", "--out", out, "--overwrite", "--set", "model_options.hiden=8"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and "'hiden'" in err[0] and "hidden" in err[0]


def test_evaluate_and_predict_take_the_run_folder(trained, tmp_path, capsys):
    images = tmp_path / "images"
    images.mkdir()
    Image.new("RGB", (16, 16), (200, 20, 20)).save(images / "a.png")
    out = tmp_path / "predict"
    capsys.readouterr()
    assert app.main(["predict", str(images), "--checkpoint", str(trained), "--format", "csv", "--out", str(out)]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert lines[0] == "file,rank,label,probability" and len(lines) == 1 + 3
    out = tmp_path / "evaluate"
    assert app.main(["evaluate", "--checkpoint", str(trained), "--out", str(out)]) == 0
    assert json.loads((out / "metrics.json").read_text())["test/acc"] >= 0.0


def _photos(folder, names):
    for index, name in enumerate(names):
        (folder / name).mkdir(parents=True)
        for i in range(6):
            Image.new("RGB", (16, 16), (60 * index, 20 * i, 100)).save(folder / name / f"{i}.png")
    return str(folder)


def test_evaluate_on_other_class_names_names_both_lists(tmp_path, capsys):
    photos = ["--dataset", "imagefolder", "--set", "dataset_options={test_fraction: 0.5}", *TINY[2:]]
    run = str(tmp_path / "run")
    trained_on = _photos(tmp_path / "fruit", ("apple", "pear", "plum"))
    assert app.main(["train", "--data-dir", trained_on, "--out", run, *photos]) == 0
    for names, shown in ((("cat", "dog", "owl"), "[cat, dog, owl]"), (("dog", "cat"), "[cat, dog]")):
        other = _photos(tmp_path / "-".join(names), names)
        capsys.readouterr()
        code = app.main(["evaluate", "--checkpoint", run, "--data-dir", other, "--out", f"{other}-evaluated"])
        err = capsys.readouterr().err.strip().splitlines()
        assert code == 2 and len(err) == 1, err
        assert "[apple, pear, plum]" in err[0] and shown in err[0], err[0]


def test_reading_verbs_write_into_a_new_folder_of_the_run(trained, tmp_path):
    before = {path: path.read_bytes() for path in trained.rglob("*") if path.is_file()}
    common = ["--checkpoint", str(trained), *TINY[:-2]]
    assert app.main(["evaluate", *common]) == 0
    assert app.main(["export", *common]) == 0
    evaluations, exports = list((trained / "evaluate").iterdir()), list((trained / "export").iterdir())
    assert len(evaluations) == 1 and len(exports) == 1
    assert "test/acc" in json.loads((evaluations[0] / "metrics.json").read_text())
    assert (evaluations[0] / "plots" / "confusion_matrix.png").is_file() and (exports[0] / "model.onnx").is_file()
    for path, content in before.items():  # the run that was read is left exactly as it was
        assert path.read_bytes() == content, f"{path} was modified"
    code = app.main(["evaluate", *common, "--out", str(trained)])
    assert code == 2, "evaluate wrote into the trained run"


def test_every_file_is_written_atomically():
    """No file in the package is written in place (a crash would leave half of it): core's writers only.

    Allowed: ``torch.save`` into an in-memory ``buffer`` and writes into the ``handle`` core's
    ``atomic_open``/``atomic_write_with`` give.
    """
    import re
    from pathlib import Path

    import pentad_vision

    in_place = re.compile(
        r"torch\.save\((?!.*(buffer|handle)\))|np\.save[z_compressed]*\((?!handle)|\.savefig\(|\.write_text\(|\.write_bytes\(|os\.replace\(|os\.rename\("
        r"|shutil\.move\(|open\([^)]*[\"'][wa]b?[\"']"
    )
    offenders = [
        f"{path.name}:{number}: {line.strip()}"
        for path in Path(pentad_vision.__file__).parent.rglob("*.py")
        for number, line in enumerate(path.read_text().splitlines(), start=1)
        if in_place.search(line)
    ]
    assert not offenders, offenders


def test_airbench_options_train_and_end_on_the_lookahead_copy(tmp_path):
    """A cifar-fast run with lookahead and scaled norm learning rates: the checkpoint carries the
    slow copy, the trained weights equal it (the last step copies it in), and the run predicts."""
    import torch

    from pentad_vision.predictor import Predictor

    out = tmp_path / "airbench"
    options = ["--model", "cifar-fast", "--set", "model_options={widths: [8, 16, 16]}",
               "--set", "optim={lr: 0.2, lookahead_every: 2, norm_lr_scale: 8.0, warmup_epochs: 1.0,"
               " warmup_start_factor: 0.2, schedule: onecycle}", "--batch-size", "32"]  # fmt: skip
    assert app.main(["train", "--dataset", "synthetic", "--out", str(out), *TINY[:2], *TINY[4:-2],
                     "--epochs", "2", *options]) == 0  # fmt: skip
    state = torch.load(out / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)["state_dict"]
    slow = {k.removeprefix("lookahead.module."): v for k, v in state.items() if k.startswith("lookahead.module.")}
    live = {k.removeprefix("net."): v for k, v in state.items() if k.startswith("net.")}
    assert slow and slow.keys() == live.keys()
    assert all(torch.equal(slow[k], live[k]) for k in slow if slow[k].is_floating_point())
    predictor = Predictor.from_run(out)
    probabilities = predictor.probabilities(torch.rand(2, 3, 16, 16))
    assert probabilities.shape == (2, 4) and torch.allclose(probabilities.sum(1), torch.ones(2))


def test_an_ensemble_trains_each_member_and_predicts_their_mean(tmp_path, capsys):
    """`--set ensemble=2`: the run records it, the checkpoint holds two networks that differ, the
    predictor's logits are their mean, and a size below 1 or a pretrained run of another size is
    one line with exit 2."""
    import torch

    from pentad_vision.predictor import Predictor

    out = tmp_path / "ensemble"
    assert app.main(["train", "--dataset", "synthetic", "--out", str(out), *TINY, "--set", "ensemble=2"]) == 0
    assert "ensemble: 2" in (out / "config.yaml").read_text()
    predictor = Predictor.from_run(out)
    first, second = predictor.module.net.model.members
    assert any(not torch.equal(a, b) for a, b in zip(first.parameters(), second.parameters()))
    images = torch.rand(3, 3, 16, 16)
    with torch.no_grad():
        x = predictor.module.net.normalize(images)
        expected = (first(x) + second(x)) / 2
        torch.testing.assert_close(predictor.module(images), expected)
    assert json.loads((out / "metrics.json").read_text())["test/acc"] >= 0.0

    capsys.readouterr()
    code = app.main(["train", "--dataset", "synthetic", "--out", str(tmp_path / "zero"), *TINY, "--set", "ensemble=0"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and "ensemble" in err[0]
    code = app.main(["train", "--dataset", "synthetic", "--out", str(tmp_path / "ft"), *TINY, "--pretrained", str(out)])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and "ensemble of 2" in err[0]
