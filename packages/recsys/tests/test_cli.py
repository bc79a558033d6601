"""End-to-end runs of the app's verbs on tiny generated data, and its error policy."""

from __future__ import annotations

import json

import pytest

from pentad_recsys.cli import main

TINY = [
    "--set", "dataset_options={num_users: 40, num_items: 50, interactions_per_user: 10}",
    "--set", "trainer.progress_bar=false", "--epochs", "2", "--batch-size", "64",
]  # fmt: skip


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    out = tmp_path_factory.mktemp("runs") / "mf"
    assert main(["train", "--dataset", "synthetic", "--model", "mf", "--out", str(out), *TINY]) == 0
    return out


def test_train_writes_the_run_folder(trained):
    metrics = json.loads((trained / "metrics.json").read_text())
    assert {"test/rmse", "test/mae", "val/rmse", "train/loss"} <= set(metrics)
    assert (trained / "checkpoints" / "best.ckpt").is_file()
    assert (trained / "config.yaml").is_file()
    assert (trained / "plots" / "learning_curves.png").is_file()
    assert (trained / "plots" / "item_embeddings.png").is_file()


def test_serving_verbs(trained, tmp_path, capsys):
    checkpoint = str(trained / "checkpoints" / "best.ckpt")
    assert main(["recommend", "--checkpoint", checkpoint, "--user", "3", "--k", "4"]) == 0
    assert main(["recommend", "--checkpoint", checkpoint, "--similar-to", "5", "--k", "2"]) == 0
    assert "Synthetic item" in capsys.readouterr().out
    assert (
        main(["predict", "--checkpoint", checkpoint, "--user", "3", "--item", "5", "--out", str(tmp_path / "p")]) == 0
    )
    rows = (tmp_path / "p" / "predictions.csv").read_text().splitlines()
    assert rows[0] == "user,item,prediction" and 1.0 <= float(rows[1].split(",")[2]) <= 5.0
    assert main(["export", "--checkpoint", checkpoint, "--out", str(tmp_path / "e")]) == 0
    exported = tmp_path / "e"
    assert (exported / "model.onnx").is_file()
    assert (exported / "item_embeddings.npy").is_file()
    import numpy as np
    import pyarrow.parquet as pq

    table = pq.read_table(exported / "item_embeddings.parquet")
    vectors = np.load(exported / "item_embeddings.npy")
    assert table.column("id").to_pylist() == json.loads((exported / "item_ids.json").read_text())
    np.testing.assert_array_equal(np.stack(table.column("embedding").to_numpy(zero_copy_only=False)), vectors)
    assert main(["evaluate", "--checkpoint", checkpoint, "--out", str(tmp_path / "v"), *TINY[:2]]) == 0
    assert "test/rmse" in json.loads((tmp_path / "v" / "metrics.json").read_text())


def test_update_grows_for_new_users_and_items(trained, tmp_path, capsys):
    new = tmp_path / "new.csv"
    new.write_text("user,item,rating\n" + "".join(f"1000,{i},4\n" for i in range(1, 11)) + "1,5000,5\n2,5000,4\n")
    checkpoint = str(trained / "checkpoints" / "best.ckpt")
    out = tmp_path / "u"
    assert (
        main(["update", "--checkpoint", checkpoint, "--interactions", str(new), "--out", str(out), "--epochs", "1"])
        == 0
    )
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["update/new_users"] == 1 and metrics["update/new_items"] == 1
    assert "before/rmse" in metrics and "after/rmse" in metrics
    assert main(["recommend", "--checkpoint", str(out / "checkpoints" / "updated.ckpt"), "--user", "1000"]) == 0
    assert main(["recommend", "--checkpoint", str(out), "--user", "1000"]) == 0  # the run folder: updated.ckpt


def test_errors_are_one_line_with_exit_code_2(tmp_path, capsys):
    assert main(["train", "--dataset", "synthetic", "--model", "nosuchmodel", "--out", str(tmp_path / "a")]) == 2
    assert "unknown model" in capsys.readouterr().err
    assert (
        main(["train", "--dataset", "ml-100k", "--data-dir", str(tmp_path / "none"), "--out", str(tmp_path / "b")]) == 2
    )
    assert "does not exist" in capsys.readouterr().err
    empty = tmp_path / "empty"
    empty.mkdir()
    assert main(["train", "--dataset", "ml-100k", "--data-dir", str(empty), "--out", str(tmp_path / "b")]) == 2
    assert "not found" in capsys.readouterr().err
    assert main(["train", "--data-dir", str(empty), "--out", str(tmp_path / "b2")]) == 2  # synthetic has no folder
    assert "generated" in capsys.readouterr().err
    bad = tmp_path / "bad.csv"
    bad.write_text("u,i,r\n1,2,4\n1,3,nan\n")
    args = ["train", "--dataset", "csv", "--data-dir", str(bad), "--model", "mf", "--out", str(tmp_path / "c")]
    assert main(args) == 2
    assert "bad.csv:3" in capsys.readouterr().err
    assert main(["recommend", "--checkpoint", str(bad)]) == 2


def test_export_without_pyarrow_keeps_npy_and_says_parquet_was_skipped(trained, tmp_path, capsys, monkeypatch):
    import pentad_recsys.pipeline

    monkeypatch.setattr(pentad_recsys.pipeline, "parquet_available", lambda: False)
    checkpoint = str(trained / "checkpoints" / "best.ckpt")
    assert main(["export", "--checkpoint", checkpoint, "--out", str(tmp_path / "e")]) == 0
    assert "pentad-recsys[parquet]" in capsys.readouterr().out
    exported = tmp_path / "e"
    assert (exported / "user_embeddings.npy").is_file() and not list(exported.glob("*.parquet"))


def _files(folder):
    return {str(path.relative_to(folder)): path.read_bytes() for path in folder.rglob("*") if path.is_file()}


def test_reading_verbs_write_into_a_new_folder_and_leave_the_run_alone(trained, tmp_path, capsys):
    before = _files(trained)
    new = tmp_path / "new.csv"
    new.write_text("user,item,rating\n" + "".join(f"2000,{i},3\n" for i in range(1, 6)))
    verbs = {
        "evaluate": [*TINY[:2]],
        "predict": ["--user", "3", "--item", "5"],
        "export": [],
        "update": ["--interactions", str(new), "--epochs", "1"],
    }
    for verb, arguments in verbs.items():
        assert main([verb, "--checkpoint", str(trained), *arguments]) == 0, verb
    after = _files(trained)
    assert {name: after[name] for name in before} == before  # config, metrics, checkpoints, plots, logs
    added = sorted(set(after) - set(before))
    assert {name.split("/")[0] for name in added} == set(verbs)  # only <run>/<verb>/<time>/...
    for verb, produced in (("evaluate", "metrics.json"), ("predict", "predictions.csv"), ("export", "model.onnx"),
                           ("update", "checkpoints/updated.ckpt")):  # fmt: skip
        (folder,) = (trained / verb).iterdir()
        assert (folder / produced).is_file() and (folder / "config.yaml").is_file(), verb
    (updated,) = (trained / "update").iterdir()
    assert main(["recommend", "--checkpoint", str(updated), "--user", "2000"]) == 0  # the grown model
    capsys.readouterr()
    for verb in verbs:
        assert main([verb, "--checkpoint", str(trained), *verbs[verb], "--out", str(trained)]) == 2, verb
        assert "holds a trained run" in capsys.readouterr().err
    assert {name: value for name, value in _files(trained).items() if name in before} == before
