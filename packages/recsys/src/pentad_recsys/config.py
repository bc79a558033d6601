"""The typed config of the recsys app (recipes in ``shared/configs/recsys/``)."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

from pentad_core.cli import RunConfig


@dataclass
class RecsysConfig(RunConfig):
    """Settings of the recsys app; every field can be set in a recipe, ``--config`` or ``--set``."""

    #: "rating" (explicit: RMSE/MAE) or "ranking" (implicit top-K with negative sampling).
    task: str = "rating"
    #: Split: u1..u5, ua, ub (official ml-100k files), random, temporal or loo.
    split: str = "random"
    #: Test fraction of the random split.
    ratio: float = 0.2
    #: Events per user held out by the temporal split.
    n_test: int = 1
    #: Validation fraction carved from train (random/official) or each user's last train event (temporal/loo); 0: none.
    val_ratio: float = 0.1
    #: Adam learning rate.
    lr: float = 0.005
    #: L2 weight on the embeddings used in each batch.
    weight_decay: float = 0.0
    #: Sampled negatives per positive (ranking and multi-task training).
    negatives: int = 1
    #: Ranking loss: "bpr" or "bce"; sequence models (sasrec, gru4rec) also take "ce" (softmax over all items).
    loss: str = "bpr"
    #: L-BFGS iterations per epoch of full-batch models (glocal-k).
    lbfgs_iterations: int = 5
    #: A fresh L-BFGS every epoch (curvature history cleared), as scipy's minimize(maxiter=N) called each epoch.
    lbfgs_reset: bool = False
    #: Loss evaluations per L-BFGS epoch, line searches included (0: torch's default, 1.25 x lbfgs_iterations).
    lbfgs_max_evals: int = 0
    #: Models trained beside ``model`` and blended with it (rating task), e.g. [deepfm]: each trains as
    #: ``train --model NAME`` would (its recipe section) on this run's split, then an intercept and one weight
    #: per model are fitted by least squares on the validation ratings, which the blend needs (val_ratio > 0).
    blend: list[str] = field(default_factory=list)
    #: Options of the model's constructor, e.g. {dim: 32}; a key the model does not take is an error.
    model_options: dict = field(default_factory=dict)
    #: Options of the dataset loader (csv: user_col, item_col, rating_col, time_col, sep, header, rating_min,
    #: rating_max, encoding; synthetic: num_users, num_items, interactions_per_user, rank, noise, seed).
    dataset_options: dict = field(default_factory=dict)
    #: Cut-offs of the ranking metrics; the first one's NDCG selects the best epoch of a ranking run.
    ks: list[int] = field(default_factory=lambda: [10])
    #: Negatives of the sampled ranking protocol (0 disables it).
    sampled_negatives: int = 99


def task_metric(config: RecsysConfig) -> tuple[str, str]:
    """The validation metric that selects the best epoch of ``config``'s task, and its mode."""
    return ("val/rmse", "min") if config.task == "rating" else (f"val/ndcg@{config.ks[0]}", "max")


def resolve_monitor(config: RecsysConfig) -> RecsysConfig:
    """``config`` with core's default monitor (``val/loss``, which recsys does not log) replaced by
    the task's metric; any other monitor is kept. Applied by the CLI before ``config.yaml`` is
    written, so the saved config is the one that ran; returns a copy, never changes ``config``."""
    if config.trainer.monitor != "val/loss":
        return config
    monitor, mode = task_metric(config)
    trainer = dataclasses.replace(config.trainer, monitor=monitor, monitor_mode=mode)
    return dataclasses.replace(config, trainer=trainer)


__all__ = ["RecsysConfig", "resolve_monitor", "task_metric"]
