"""Predictor.from_run on a short trained run: same answers as the in-memory model, no data needed;
the config that is saved is the one that ran."""

from __future__ import annotations

import shutil

import numpy as np
import pytest
import torch

from pentad_core.config import load_yaml
from pentad_core.errors import CheckpointError, ConfigError, DataError
from pentad_core.runs import RunDir
from pentad_recsys import pipeline
from pentad_recsys.cli import main
from pentad_recsys.config import RecsysConfig, resolve_monitor
from pentad_recsys.data import make_synthetic
from pentad_recsys.predictor import Predictor, Recommender


def write_csv(path, num_users=30, num_items=40, per_user=10):
    """A synthetic ratings file in a folder of its own (so it can be removed after training)."""
    data = make_synthetic(num_users=num_users, num_items=num_items, interactions_per_user=per_user, seed=4)
    inter = data.interactions
    lines = ["user,item,rating,time"] + [
        f"u{inter.user_map.raw(u)},i{inter.item_map.raw(i)},{int(r)},{t}"
        for u, i, r, t in zip(inter.users, inter.items, inter.ratings, inter.timestamps)
    ]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines) + "\n")
    return path


@pytest.fixture(scope="module")
def run_on_removed_data(tmp_path_factory):
    """A ranking run trained on a CSV file that is deleted afterwards, and the in-memory model."""
    root = tmp_path_factory.mktemp("predictor")
    data_file = write_csv(root / "data" / "events.csv")
    config = resolve_monitor(
        RecsysConfig(
            model="mf",
            dataset="csv",
            data_dir=str(data_file),
            task="ranking",
            split="loo",
            batch_size=64,
            model_options={"dim": 8},
            dataset_options={"time_col": "time"},
            sampled_negatives=0,
        )
    )
    config.trainer.max_epochs, config.trainer.progress_bar = 2, False
    run = RunDir.for_training(root / "run", resume=False, overwrite=False)
    run.write_config(config)
    split = pipeline.split_data(config, pipeline.load_data(config))
    recommender, _ = pipeline.train(config, run, split)
    shutil.rmtree(data_file.parent)
    return run, recommender, split


def test_from_run_folder_and_checkpoint_match_the_trained_model_without_the_data(run_on_removed_data):
    run, recommender, split = run_on_removed_data
    assert not (run.path.parent / "data").exists()
    users = [split.test.user_map.raw(u) for u in split.test.users[:15]]
    items = [split.test.item_map.raw(i) for i in split.test.items[:15]]
    expected = recommender.predict(users, items)
    for source in (run.path, run.checkpoints / "best.ckpt"):
        predictor = Predictor.from_run(source)
        assert predictor.config.model == "mf" and predictor.config.task == "ranking"
        np.testing.assert_allclose(predictor.predict(users, items), expected, rtol=1e-6, atol=1e-6)
        np.testing.assert_allclose(predictor.predict(list(zip(users, items))), expected, rtol=1e-6, atol=1e-6)
        assert predictor.recommend(users[0], k=5) == recommender.recommend(users[0], k=5)
        assert predictor.similar(items[0], k=3) == recommender.similar_items(items[0], k=3)


def test_recommend_excludes_the_users_training_items_stored_in_the_run(run_on_removed_data):
    run, _, split = run_on_removed_data
    predictor = Predictor.from_run(run.path)
    user = split.train.user_map.raw(int(split.train.users[0]))
    seen = {split.train.item_map.raw(int(i)) for i in split.train.items[split.train.users == split.train.users[0]]}
    every = predictor.recommend(user, k=predictor.recommender.model.num_items)
    assert seen and not seen & {row["item"] for row in every}
    assert len(every) == predictor.recommender.model.num_items - len(seen)


def test_predictor_errors(run_on_removed_data, tmp_path):
    run, _, _ = run_on_removed_data
    predictor = Predictor.from_run(run.path)
    with pytest.raises(DataError, match="unknown user"):
        predictor.predict(["nobody"], ["i1"])
    with pytest.raises(ConfigError):
        predictor.predict(["u1", "u2"], ["i1"])
    with pytest.raises(CheckpointError):
        Predictor.from_run(tmp_path)  # a folder without checkpoints/
    with pytest.raises(ConfigError, match="takes no options"):
        Predictor.from_run(run.path, device="cuda")


def test_the_saved_config_names_the_monitor_that_ran(tmp_path):
    out = tmp_path / "run"
    tiny = ["--set", "dataset_options={num_users: 30, num_items: 40, interactions_per_user: 8}", "--epochs", "1",
            "--set", "sampled_negatives=0"]  # fmt: skip
    args = ["train", "--dataset", "synthetic", "--model", "mf", "--task", "ranking", "--out", str(out)]
    assert main([*args, *tiny]) == 0
    saved = load_yaml(out / "config.yaml")
    assert (saved["trainer"]["monitor"], saved["trainer"]["monitor_mode"]) == ("val/ndcg@10", "max")
    assert (out / "checkpoints" / "best.ckpt").is_file()
    chosen = RecsysConfig(task="ranking")
    chosen.trainer.monitor = "val/hr@10"
    assert resolve_monitor(chosen).trainer.monitor == "val/hr@10"  # a monitor the user chose is kept
    default = RecsysConfig()
    assert resolve_monitor(default).trainer.monitor == "val/rmse" and default.trainer.monitor == "val/loss"


def test_misspelled_model_and_dataset_options_name_the_key(tiny):
    _, split = tiny
    with pytest.raises(ConfigError, match="'dimm'.*Did you mean 'dim'"):
        Recommender.for_training("mf", split.train, task="rating", dimm=8)
    with pytest.raises(ConfigError, match="num_users"):
        Recommender.for_training("mf", split.train, task="rating", num_users=8)  # derived from the data
    config = RecsysConfig(model="mf", dataset="synthetic", dataset_options={"num_user": 10})
    with pytest.raises(ConfigError, match="'num_user'.*Did you mean 'num_users'"):
        pipeline.load_data(config)
    with pytest.raises(ConfigError, match="'sepp'"):
        pipeline.load_data(RecsysConfig(dataset="csv", data_dir="x.csv", dataset_options={"sepp": ";"}))


def test_checkpoint_rebuilds_with_the_options_it_was_trained_with(tiny, tmp_path):
    _, split = tiny
    torch.manual_seed(0)
    rec = Recommender.for_training("neumf", split.train, task="ranking", dim=4, hidden=(8, 4))
    loaded = Recommender.load(rec.save(tmp_path / "model.ckpt"))
    assert loaded.model_kwargs["dim"] == 4 and loaded.model_kwargs["hidden"] == [8, 4]
    assert loaded.model.gmf_user.embedding_dim == 4
