"""Benchmarks on MovieLens 100K with the protocols of the reference numbers.

- Explicit: the official ``u1``..``u5`` splits (train on ``uN.base``, RMSE/MAE on ``uN.test``),
  the protocol of the Surprise anchor and of GC-MC / GLocal-K (``u1``).
- Implicit: leave-one-out (each user's latest rating held out, ties by line order; every rating
  is an interaction), full ranking over unseen items and the sampled protocol (99 negatives,
  ``numpy.default_rng(0)``), the protocol of the popularity anchor and of NCF.

Settings are fixed here (no tuning on the test split at run time) and printed with the results.
Training runs through the plain loop of :mod:`pentad_recsys.training` (the same loss code as
the Lightning module) so that the timings measure the model, not the trainer's bookkeeping.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import torch

from pentad_recsys.data import load_dataset, make_split
from pentad_recsys.metrics import evaluate_ranking
from pentad_recsys.recommender import Recommender
from pentad_recsys.training import TrainSettings, evaluate_rating, fit

#: model -> (hyper-parameters, training settings) for the explicit benchmark.
RATING_SETTINGS: dict[str, tuple[dict[str, Any], TrainSettings]] = {
    "glocal-k": ({"hidden": 500, "layers": 2}, TrainSettings(epochs=22, lbfgs_iterations=5)),
    "mf": ({"dim": 64}, TrainSettings(epochs=20, lr=0.005, batch_size=1024, weight_decay=0.05)),
    "fm": ({"dim": 32}, TrainSettings(epochs=20, lr=0.005, batch_size=1024, weight_decay=0.05)),
    "itemknn": ({"k": 40}, TrainSettings(epochs=1)),
    "popularity": ({}, TrainSettings(epochs=1)),
}

#: model -> (hyper-parameters, training settings) for the implicit (leave-one-out) benchmark.
RANKING_SETTINGS: dict[str, tuple[dict[str, Any], TrainSettings]] = {
    "popularity": ({}, TrainSettings(epochs=1)),
    # chosen on the validation split (each user's second-to-last event), not on the test events
    "mf": ({"dim": 64}, TrainSettings(epochs=20, lr=0.01, batch_size=1024, weight_decay=3e-3, negatives=4, loss="bpr")),
    "neumf": ({"dim": 32}, TrainSettings(epochs=10, lr=0.002, batch_size=1024, negatives=4, loss="bce")),
    # epochs chosen on the validation split: full HR@10 0.1113 / 0.1336 / 0.1432 / 0.1474 at
    # 15 / 30 / 50 / 80 epochs (0.1453 at 50 with 4 negatives)
    "lightgcn": (
        {"dim": 64, "layers": 2},
        TrainSettings(epochs=80, lr=0.005, batch_size=2048, weight_decay=1e-4, loss="bpr"),
    ),
    # sequence models: batch_size counts users (whole histories). sasrec's settings were chosen on
    # the validation split among max_len 50/100/200, dropout 0.2/0.5, lr 0.001/0.003 and 5-40
    # epochs (CE loss, dim 64, batch 128); gru4rec reuses them (one validation check, 10-30 epochs)
    "sasrec": (
        {"dim": 64, "max_len": 200, "layers": 2, "heads": 1, "dropout": 0.2},
        TrainSettings(epochs=30, lr=0.003, batch_size=128, loss="ce"),
    ),
    "gru4rec": (
        {"dim": 64, "max_len": 200, "dropout": 0.2},
        TrainSettings(epochs=30, lr=0.003, batch_size=128, loss="ce"),
    ),
}


#: Torch threads per model: the full-batch autoencoder's large matrix products use both cores; the
#: embedding models' small per-batch ops run faster on one thread (no synchronisation overhead).
THREADS = {"glocal-k": 2}


def _timed_fit(recommender: Recommender, train, settings: TrainSettings) -> dict[str, float]:
    previous = torch.get_num_threads()
    torch.set_num_threads(THREADS.get(recommender.model_name, 1))
    try:
        cpu = time.process_time()
        result = fit(recommender, train, settings)
        result["cpu_seconds"] = time.process_time() - cpu
    finally:
        torch.set_num_threads(previous)
    return result


def rating_benchmark(
    data_dir: str | Path | None,
    models: list[str],
    splits: list[str],
    seed: int = 0,
    log=print,
) -> list[dict[str, Any]]:
    """Train each model on each official split; one row per (model, split) plus a mean row."""
    dataset = load_dataset("ml-100k", data_dir)
    rows: list[dict[str, Any]] = []
    for name in models:
        hyper, settings = RATING_SETTINGS.get(name, ({}, TrainSettings()))
        settings = TrainSettings(**{**settings.__dict__, "seed": seed})
        per_split = []
        for split_name in splits:
            torch.manual_seed(seed)
            split = make_split(dataset, split_name)
            rec = Recommender.for_training(name, split.train, task="rating", dataset="ml-100k", **hyper)
            timing = _timed_fit(rec, split.train, settings)
            metrics = evaluate_rating(rec, split.test)
            row = {
                "model": name,
                "split": split_name,
                "rmse": metrics["rmse"],
                "mae": metrics["mae"],
                "train_s": timing["seconds"],
                "cpu_s": timing["cpu_seconds"],
                "interactions/s": timing["interactions_per_second"],
            }
            log(row)
            rows.append(row)
            per_split.append(row)
        if len(per_split) > 1:
            rows.append({
                "model": name,
                "split": f"mean {splits[0]}..{splits[-1]}",
                "rmse": sum(r["rmse"] for r in per_split) / len(per_split),
                "mae": sum(r["mae"] for r in per_split) / len(per_split),
                "train_s": sum(r["train_s"] for r in per_split) / len(per_split),
                "cpu_s": sum(r["cpu_s"] for r in per_split) / len(per_split),
                "interactions/s": sum(r["interactions/s"] for r in per_split) / len(per_split),
            })  # fmt: skip
            log(rows[-1])
    return rows


def ranking_benchmark(data_dir: str | Path | None, models: list[str], seed: int = 0, log=print) -> list[dict[str, Any]]:
    """Leave-one-out ranking on ml-100k: full and sampled-99 HR@10 / NDCG@10 per model."""
    dataset = load_dataset("ml-100k", data_dir)
    split = make_split(dataset, "loo")
    rows = []
    for name in models:
        hyper, settings = RANKING_SETTINGS.get(name, ({}, TrainSettings()))
        settings = TrainSettings(**{**settings.__dict__, "seed": seed})
        torch.manual_seed(seed)
        rec = Recommender.for_training(name, split.train, task="ranking", dataset="ml-100k", **hyper)
        timing = _timed_fit(rec, split.train, settings)
        full = evaluate_ranking(rec.score_all, split.train, split.test, ks=(10,), protocol="full")
        sampled = evaluate_ranking(rec.score_all, split.train, split.test, ks=(10,), protocol="sampled", seed=0)
        row = {
            "model": name,
            "full_hr@10": full["hr@10"],
            "full_ndcg@10": full["ndcg@10"],
            "sampled_hr@10": sampled["hr@10"],
            "sampled_ndcg@10": sampled["ndcg@10"],
            "train_s": timing["seconds"],
            "cpu_s": timing["cpu_seconds"],
            "interactions/s": timing["interactions_per_second"],
        }
        log(row)
        rows.append(row)
    return rows


def throughput_benchmark(
    data_dir: str | Path | None, models: list[str], epochs: int = 1, log=print
) -> list[dict[str, Any]]:
    """Training throughput (interactions/s) of each model on ml-100k u1.base, rating task
    (ranking for models that serve only ranking, with their ranking hyper-parameters), batch 1024
    (users for sequence models), ``epochs`` epochs. Sequence models count the next-item positions
    they predict."""
    from pentad_recsys.registry import MODELS

    dataset = load_dataset("ml-100k", data_dir)
    split = make_split(dataset, "u1")
    rows = []
    for name in models:
        task = "rating" if "rating" in MODELS.get(name).tasks else "ranking"
        hyper = (RATING_SETTINGS if task == "rating" else RANKING_SETTINGS).get(name, ({}, None))[0]
        settings = TrainSettings(epochs=epochs, lr=0.005, batch_size=1024, lbfgs_iterations=5)
        torch.manual_seed(0)
        rec = Recommender.for_training(name, split.train, task=task, dataset="ml-100k", **hyper)
        timing = _timed_fit(rec, split.train, settings)
        row = {
            "model": name,
            "task": task,
            "threads": THREADS.get(name, 1),
            "epochs": epochs,
            "train_s": timing["seconds"],
            "cpu_s": timing["cpu_seconds"],
            "interactions/s": timing["interactions_per_second"],
        }
        log(row)
        rows.append(row)
    return rows
