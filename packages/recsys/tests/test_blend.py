"""Blends of rating models (the config key ``blend``): weights, training through the CLI, errors."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from pentad_core.errors import ConfigError
from pentad_core.testing import ServerProcess, free_port
from pentad_recsys.blend import fit_blend_weights
from pentad_recsys.cli import main
from pentad_recsys.data import load_dataset
from pentad_recsys.pipeline import split_data
from pentad_recsys.predictor import Predictor

DATA = {"num_users": 60, "num_items": 70, "interactions_per_user": 15}
QUIET = ["--set", "trainer.progress_bar=false", "--batch-size", "64"]


def test_fit_blend_weights_recovers_an_exact_linear_blend():
    rng = np.random.default_rng(0)
    members = rng.uniform(1, 5, size=(50, 2))
    ratings = 0.5 + 0.3 * members[:, 0] + 0.7 * members[:, 1]
    np.testing.assert_allclose(fit_blend_weights(members, ratings), [0.5, 0.3, 0.7], atol=1e-9)
    with pytest.raises(ConfigError, match="more than 3 validation ratings"):
        fit_blend_weights(members[:3], ratings[:3])


def write_recipe(root: Path) -> Path:
    """A synthetic recipe whose ``mf`` section blends ``itemknn`` and ``fm``, each with a section of its
    own; returns the folder for ``PENTAD_CONFIGS``."""
    configs = root / "configs" / "recsys"
    configs.mkdir(parents=True)
    recipe = {
        "model": "mf",
        "dataset": "synthetic",
        "task": "rating",
        "val_ratio": 0.2,
        "dataset_options": DATA,
        "trainer": {"max_epochs": 3},
        "models": {
            "mf": {"lr": 0.02, "blend": ["itemknn", "fm"]},
            "itemknn": {"val_ratio": 0, "model_options": {"k": 7}},  # its val_ratio yields to the blend's
            "fm": {"lr": 0.011, "model_options": {"dim": 4}},
        },
    }
    (configs / "synthetic.yaml").write_text(yaml.safe_dump(recipe), encoding="utf-8")
    return root / "configs"


@pytest.fixture(scope="module")
def blended(tmp_path_factory):
    """``mf`` blended with ``itemknn`` and ``fm`` (:func:`write_recipe`), trained in process."""
    root = tmp_path_factory.mktemp("blend")
    configs = write_recipe(root)
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("PENTAD_CONFIGS", str(configs))
        out = root / "run"
        assert main(["train", "--dataset", "synthetic", "--out", str(out), *QUIET]) == 0
    return out


def test_each_blended_model_trains_with_its_recipe_section_on_the_blends_split(blended):
    run = yaml.safe_load((blended / "config.yaml").read_text())
    assert (run["model"], run["blend"], run["lr"]) == ("mf", ["itemknn", "fm"], 0.02)
    for name, own in (("mf", {"lr": 0.02}), ("itemknn", {"model_options": {"k": 7}}), ("fm", {"lr": 0.011})):
        member = yaml.safe_load((blended / "blend" / name / "config.yaml").read_text())
        assert member["model"] == name and member["blend"] == []
        assert {key: member[key] for key in own} == own
        assert {k: member[k] for k in ("split", "val_ratio", "seed", "dataset_options")} == {
            "split": run["split"], "val_ratio": 0.2, "seed": run["seed"], "dataset_options": DATA,
        }  # fmt: skip
        assert (blended / "blend" / name / "checkpoints" / "best.ckpt").is_file()


def test_the_blend_is_the_fitted_combination_of_its_models_and_beats_each_on_validation(blended):
    metrics = json.loads((blended / "metrics.json").read_text())
    names = ["mf", "itemknn", "fm"]
    weights = [metrics["blend/intercept"], *(metrics[f"blend/{n}/weight"] for n in names)]
    predictor = Predictor.from_run(blended)
    config = predictor.config
    split = split_data(config, load_dataset("synthetic", None, **config.dataset_options))
    users = [split.test.user_map.raw(u) for u in split.test.users]
    items = [split.test.item_map.raw(i) for i in split.test.items]
    each = np.column_stack([Predictor.from_run(blended / "blend" / n).predict(users, items) for n in names])
    expected = np.clip(weights[0] + each @ np.array(weights[1:]), 1.0, 5.0)
    np.testing.assert_allclose(predictor.predict(users, items), expected, rtol=1e-5, atol=1e-5)
    # least squares with an intercept on the validation ratings can only match or beat any one model there
    for name in names:
        assert metrics["val/rmse"] <= metrics[f"blend/{name}/val/rmse"] + 1e-6, name
    rmse = float(np.sqrt(np.mean((expected - split.test.ratings) ** 2)))
    assert metrics["test/rmse"] == pytest.approx(rmse, abs=1e-5)
    assert torch.isfinite(predictor.recommender.score_all(torch.arange(3))).all()


def test_a_blended_run_is_evaluated_exported_and_refuses_to_grow(blended, tmp_path, capsys):
    assert main(["evaluate", "--checkpoint", str(blended), "--out", str(tmp_path / "v")]) == 0
    metrics = json.loads((blended / "metrics.json").read_text())
    evaluated = json.loads((tmp_path / "v" / "metrics.json").read_text())
    assert evaluated["test/rmse"] == pytest.approx(metrics["test/rmse"], abs=1e-6)
    assert main(["export", "--checkpoint", str(blended), "--out", str(tmp_path / "e")]) == 0  # ONNX parity inside
    assert (tmp_path / "e" / "model.onnx").is_file()
    new = tmp_path / "new.csv"
    new.write_text("user,item,rating\n9999,1,4\n9999,2,5\n", encoding="utf-8")
    capsys.readouterr()
    assert main(["update", "--checkpoint", str(blended), "--interactions", str(new), "--out", str(tmp_path / "u")]) == 2
    assert "cannot grow incrementally" in capsys.readouterr().err


def test_a_served_blend_scores_and_recommends_as_its_predictor(blended):
    """``serve --run`` on a blended run, in a real server process (its ONNX export is what it serves)."""
    predictor = Predictor.from_run(blended)
    users = [predictor.recommender.user_map.raw(u) for u in range(4)]
    items = [predictor.recommender.item_map.raw(i) for i in (0, 3, 5, 9)]
    port = free_port()
    command = [sys.executable, "-m", "pentad_recsys", "serve", "--run", str(blended), "--port", str(port)]
    with ServerProcess(command, port=port) as server:
        status, body = server.post_json("/v1/score", [list(pair) for pair in zip(users, items, strict=True)])
        assert status == 200, body
        np.testing.assert_allclose(body["scores"], predictor.predict(users, items), rtol=1e-4, atol=1e-4)
        status, body = server.get(f"/v1/recommend?user={users[0]}&k=3")
        assert status == 200, body
        assert [e["item"] for e in body["items"]] == [e["item"] for e in predictor.recommend(users[0], 3)]


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        (["--model", "mf", "--set", "blend=[mf]"], "names a model twice"),
        (["--model", "mf", "--set", "blend=[itemknnn]"], "itemknnn"),
        (["--model", "mf", "--set", "blend=[sasrec]"], "does not predict ratings"),
        (["--model", "mf", "--set", "blend=[fm]", "--set", "val_ratio=0"], "set val_ratio above 0"),
        (["--model", "mf", "--set", "blend=[fm]", "--task", "ranking"], "needs --task rating"),
    ],
)
def test_a_blend_that_cannot_run_is_one_line_with_exit_2(tmp_path, capsys, changes, message):
    data = ["--set", "dataset_options={num_users: 20, num_items: 25, interactions_per_user: 6}", "--epochs", "1"]
    assert main(["train", "--dataset", "synthetic", *changes, *data, "--out", str(tmp_path / "r"), *QUIET]) == 2
    error = capsys.readouterr().err.strip()
    assert message in error and "Traceback" not in error and len(error.splitlines()) == 1


#: Runs `apps/recsys`, SIGKILLing its own process as model KILL_MODEL's training step KILL_AT starts.
WRAPPER = """
import os, signal

import pentad_recsys.module as module

original = module.RecsysModule.training_step


def training_step(self, batch, batch_index):
    if self.recommender.model_name == os.environ["KILL_MODEL"] and self.global_step == int(os.environ["KILL_AT"]):
        os.kill(os.getpid(), signal.SIGKILL)
    return original(self, batch, batch_index)


module.RecsysModule.training_step = training_step
from pentad_recsys.cli import main

raise SystemExit(main())
"""


def test_a_blend_killed_while_its_last_model_trains_resumes_to_the_uninterrupted_result(tmp_path):
    wrapper = tmp_path / "wrapper.py"
    wrapper.write_text(WRAPPER, encoding="utf-8")
    env = {**os.environ, "PENTAD_CONFIGS": str(write_recipe(tmp_path)), "KILL_MODEL": "fm", "KILL_AT": "-1"}

    def app(*arguments: str, kill_at: int = -1) -> subprocess.CompletedProcess:
        command = [sys.executable, str(wrapper), "train", *arguments, "--set", "trainer.progress_bar=false"]
        return subprocess.run(command, capture_output=True, text=True, env={**env, "KILL_AT": str(kill_at)})

    reference, interrupted = tmp_path / "reference", tmp_path / "interrupted"
    done = app("--dataset", "synthetic", "--batch-size", "64", "--out", str(reference))
    assert done.returncode == 0, done.stderr
    steps = json.loads((reference / "blend" / "fm" / "metrics.json").read_text())["fit/steps"]
    killed = app("--dataset", "synthetic", "--batch-size", "64", "--out", str(interrupted), kill_at=int(steps) // 2)
    assert killed.returncode == -9, killed.stderr
    assert (interrupted / "blend" / "fm" / "checkpoints" / "last.ckpt").is_file()
    finished = {
        n: (interrupted / "blend" / n / "checkpoints" / "best.ckpt").stat().st_mtime_ns for n in ("mf", "itemknn")
    }
    assert main(["evaluate", "--checkpoint", str(interrupted), "--out", str(tmp_path / "early")]) == 2

    done = app("--resume", "last", "--out", str(interrupted))
    assert done.returncode == 0, done.stderr
    for name, stamp in finished.items():  # the models that had finished were loaded, not trained again
        assert (interrupted / "blend" / name / "checkpoints" / "best.ckpt").stat().st_mtime_ns == stamp, name
    expected, got = (json.loads((run / "metrics.json").read_text()) for run in (reference, interrupted))
    keys = [k for k in expected if k.startswith(("test/", "val/", "blend/"))]
    assert keys and {k: got[k] for k in keys} == pytest.approx({k: expected[k] for k in keys}, abs=1e-6)
