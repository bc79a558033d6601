"""Pentad recsys: recommender models on MovieLens and CSV data.

Public API::

    from pentad_recsys import Predictor, Recommender, TrainSettings, fit, load_dataset, make_split

    data = load_dataset("synthetic")
    split = make_split(data, "random")
    rec = Recommender.for_training("mf", split.train, task="rating", dim=32)
    fit(rec, split.train, TrainSettings(epochs=10, lr=0.01))
    rec.predict([1, 2], [10, 20]); rec.recommend(1, k=10)

    predictor = Predictor.from_run("runs/recsys/<run>")  # a trained run, without its data
    predictor.predict([1, 2], [10, 20]); predictor.recommend(1, k=10); predictor.similar(10, k=5)

The workflow the app runs (load, split, train, evaluate, update, export, benchmark) is in
:mod:`pentad_recsys.pipeline`.
"""

from importlib.metadata import version as _distribution_version

from pentad_recsys import models as _models  # noqa: F401  (registers the models)
from pentad_recsys.config import RecsysConfig
from pentad_recsys.data import Interactions, RecDataset, Split, load_dataset, make_split, make_synthetic
from pentad_recsys.metrics import evaluate_ranking, mae, rmse
from pentad_recsys.predictor import Predictor, Recommender
from pentad_recsys.registry import DATASETS, MODELS
from pentad_recsys.training import TrainSettings, evaluate_rating, fit

__version__ = _distribution_version("pentad-recsys")  # single-sourced: the repository's VERSION file

__all__ = [
    "DATASETS",
    "MODELS",
    "Interactions",
    "Predictor",
    "RecDataset",
    "Recommender",
    "RecsysConfig",
    "Split",
    "TrainSettings",
    "evaluate_ranking",
    "evaluate_rating",
    "fit",
    "load_dataset",
    "mae",
    "make_split",
    "make_synthetic",
    "rmse",
]
