"""Distributed training: two gloo processes on the CPU share each epoch and report the whole held-out set."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from pentad_recsys import pipeline
from pentad_recsys.data import make_split, make_synthetic
from pentad_recsys.module import EpochBatches, shard_batch
from pentad_recsys.predictor import Predictor, Recommender
from pentad_recsys.training import TrainSettings

APP = Path(__file__).resolve().parents[3] / "apps" / "recsys"
SIZES = {"num_users": 50, "num_items": 60, "interactions_per_user": 16}
DATA = ["--set", "dataset_options={num_users: 50, num_items: 60, interactions_per_user: 16}"]
COMMON = ["--dataset", "synthetic", "--model", "mf", *DATA, "--epochs", "3", "--accelerator", "cpu",
          "--set", "trainer.progress_bar=false"]  # fmt: skip
RANKING = ["--task", "ranking", "--set", "negatives=2", "--set", "ks=[5,10]", "--set", "weight_decay=0"]


def run_app(*arguments: str) -> subprocess.CompletedProcess:
    environment = {**os.environ, "PYTHONUNBUFFERED": "1"}
    return subprocess.run([sys.executable, str(APP), *arguments], capture_output=True, text=True, timeout=300,
                          env=environment)  # fmt: skip


def test_ranks_train_on_disjoint_parts_of_the_same_global_batches(tiny, monkeypatch):
    import pentad_recsys.module as module

    _, split = tiny
    settings = TrainSettings(batch_size=8, negatives=2, seed=4)
    recommender = Recommender.for_training("mf", split.train, task="ranking")
    single = list(EpochBatches(recommender, split.train, TrainSettings(**{**settings.__dict__, "batch_size": 16})))
    parts = []
    for rank in (0, 1):
        monkeypatch.setattr(module, "distributed_rank", lambda rank=rank: (rank, 2))
        parts.append(list(EpochBatches(recommender, split.train, settings)))
    assert len(parts[0]) == len(parts[1]) == len(single)  # the same number of steps on every rank
    for global_batch, first, second in zip(single, *parts):
        for whole, a, b in zip(global_batch, first, second):
            torch.testing.assert_close(torch.cat([a, b]), whole, rtol=0, atol=0)  # negatives included
    seen = np.concatenate([torch.stack(batch[:2], 1).numpy() for batch in parts[0] + parts[1]])
    assert len(seen) == len(split.train)  # an epoch once over both ranks, no row twice


def test_a_batch_smaller_than_the_world_still_gives_every_rank_a_row():
    batch = (torch.tensor([7]), torch.tensor([3]))
    assert [shard_batch(batch, rank, 2)[0].tolist() for rank in (0, 1)] == [[7], [7]]


def _split_sizes() -> tuple[int, int]:
    split = make_split(make_synthetic(**SIZES), "random", ratio=0.2, val_ratio=0.1, seed=0)
    return len(split.train), len(split.test)


@pytest.mark.parametrize("task", [[], RANKING], ids=["rating", "ranking"])
def test_two_gloo_processes_report_the_metrics_of_one_process(tmp_path, task):
    """DDP on 2 CPU processes with batch 32 each equals one process with batch 64: the same steps and
    the same val/test metrics (tolerance 1e-4: only the order of the gradient sums differs), and
    the DDP run's test metrics are those of its best checkpoint evaluated in one process (1e-6).

    Without the sharding both ranks would train on the whole epoch (twice the rows per step: other
    weights, other metrics); a metric computed on one rank's share would differ from the one-process
    evaluation of the same checkpoint."""
    train_size, _ = _split_sizes()
    assert train_size % 64 % 2 == 0  # the last global batch splits into equal halves too
    distributed, single = tmp_path / "ddp", tmp_path / "single"
    result = run_app("train", "--out", str(distributed), *COMMON, *task, "--strategy", "ddp", "--devices", "2",
                     "--batch-size", "32")  # fmt: skip
    assert result.returncode == 0, result.stderr
    result = run_app("train", "--out", str(single), *COMMON, *task, "--devices", "1", "--batch-size", "64")
    assert result.returncode == 0, result.stderr

    both, one = (json.loads((run / "metrics.json").read_text()) for run in (distributed, single))
    assert both["fit/steps"] == one["fit/steps"] == 3 * -(-train_size // 64)
    compared = sorted(key for key in one if key.startswith(("val/", "test/")))
    expected = {"test/ndcg@5", "test/hr@10", "test/sampled_ndcg@10", "val/ndcg@5"} if task else {"test/rmse", "val/mae"}
    assert expected <= set(compared)
    for key in compared:
        assert both[key] == pytest.approx(one[key], abs=1e-4), key

    predictor = Predictor.from_run(distributed)  # its best checkpoint, evaluated here in one process
    config = predictor.config
    again = pipeline.evaluate_split(predictor.recommender, pipeline.split_data(config, pipeline.load_data(config)),
                                    config)  # fmt: skip
    for key in (key for key in compared if key.startswith("test/")):
        assert again[key] == pytest.approx(both[key], abs=1e-6), key
