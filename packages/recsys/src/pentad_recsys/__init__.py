"""Pentad recsys: recommender models on MovieLens and CSV data.

Public API::

    from pentad_recsys import load_dataset, make_split, Recommender, TrainSettings, fit
    data = load_dataset("synthetic")
    split = make_split(data, "random")
    rec = Recommender.for_training("mf", split.train, task="rating")
    fit(rec, split.train, TrainSettings(epochs=10, lr=0.01))
    rec.predict([1, 2], [10, 20]); rec.recommend(1, k=10)
"""

from pentad_recsys import models as _models  # noqa: F401  (registers the models)
from pentad_recsys.data import Interactions, RecDataset, Split, load_dataset, make_split, make_synthetic
from pentad_recsys.metrics import evaluate_ranking, mae, rmse
from pentad_recsys.recommender import Recommender, build_model
from pentad_recsys.registry import DATASETS, MODELS
from pentad_recsys.training import TrainSettings, evaluate_rating, fit

__version__ = "0.1.0"

__all__ = [
    "DATASETS",
    "MODELS",
    "Interactions",
    "RecDataset",
    "Recommender",
    "Split",
    "TrainSettings",
    "build_model",
    "evaluate_ranking",
    "evaluate_rating",
    "fit",
    "load_dataset",
    "mae",
    "make_split",
    "make_synthetic",
    "rmse",
]
