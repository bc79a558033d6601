"""A checkpoint handed to the app is data, never code: a pickle payload in it does not run.

recsys reads checkpoints (its own `Recommender` files and Lightning's) and CSV files from users; it
reads no other pickle, `.npz` or torch file. Every checkpoint goes through pentad_core's
weights-only loader, which these tests hold to that through each verb that takes one.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from pentad_recsys.cli import main


class Payload:
    """Unpickling it creates ``marker``: what a malicious checkpoint would do instead."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (self.marker,))


@pytest.fixture
def malicious(tmp_path) -> tuple[Path, Path]:
    marker = tmp_path / "code-ran"
    path = tmp_path / "model.ckpt"
    torch.save({"recommender": Payload(marker), "state_dict": {}}, path)
    torch.load(path, weights_only=False)  # the payload is live: an unrestricted load runs it
    assert marker.exists()
    marker.unlink()
    return path, marker


TINY = ["--set", "dataset_options={num_users: 30, num_items: 40, interactions_per_user: 8}", "--epochs", "1",
        "--set", "trainer.progress_bar=false"]  # fmt: skip


@pytest.mark.parametrize(
    "verb",
    [
        ["recommend", "--user", "1"],
        ["predict", "--user", "1", "--item", "2"],
        ["evaluate"],
        ["export"],
        ["update", "--interactions", "new.csv"],
        ["train", "--dataset", "synthetic", "--model", "mf", *TINY, "--resume"],
    ],
    ids=["recommend", "predict", "evaluate", "export", "update", "train-resume"],
)
def test_a_pickle_payload_in_a_checkpoint_does_not_run(malicious, tmp_path, capsys, monkeypatch, verb):
    path, marker = malicious
    monkeypatch.chdir(tmp_path)
    (tmp_path / "new.csv").write_text("user,item,rating\n1,2,4\n")
    given = [*verb, str(path)] if verb[0] == "train" else [*verb, "--checkpoint", str(path)]
    assert main([*given, "--out", str(tmp_path / "out")]) == 2
    error = capsys.readouterr().err
    assert not marker.exists()
    assert error.count("\n") == 1 and "cannot be loaded" in error, error
