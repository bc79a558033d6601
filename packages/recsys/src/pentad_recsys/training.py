"""The training objective, batching, evaluation and the plain training loop.

The Lightning module (:mod:`pentad_recsys.module`, what ``train`` uses) and the plain loop here
(what the benchmarks and ``update`` use) optimise the same objective, :func:`batch_loss`.

Every task trains through :func:`batch_loss`; the batch layout depends on the task:

- ``rating``: ``(users, items, ratings)``; mean squared error on ``rating - global_mean``.
- ``ranking``: ``(users, positives, negatives [B, n])``; BPR or binary cross-entropy.
- models with ``forward_tasks`` (MMoE) get both: the rating MSE on positives and a BCE on
  "rated at all" for positives against sampled negatives.
- sequential models (``sequential = True``: SASRec, GRU4Rec) take ``(users,)`` batches of
  distinct users (:func:`sequence_batches`) and predict every next item of their stored
  histories; given an interaction batch they use its distinct users.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from pentad_core.errors import ConfigError
from pentad_recsys.data.interactions import Interactions
from pentad_recsys.data.sampling import NegativeSampler
from pentad_recsys.metrics import evaluate_ranking, mae, rmse
from pentad_recsys.predictor import Recommender


@dataclass
class TrainSettings:
    """Optimisation settings.

    Attributes:
        epochs: Passes over the training data (L-BFGS steps for full-batch models).
        lr: Adam learning rate.
        batch_size: Interactions per step.
        weight_decay: L2 on the embeddings used in each batch (per example), and Adam's decay of
            dense layers.
        negatives: Sampled negatives per positive (ranking and multi-task).
        loss: Ranking loss, ``"bpr"`` or ``"bce"``; sequential models also take ``"ce"`` (softmax
            over all items).
        lbfgs_iterations: L-BFGS iterations per epoch of full-batch models.
        lbfgs_reset: Start every epoch of a full-batch model with a fresh L-BFGS (its curvature
            history cleared), as calling scipy's ``minimize(maxiter=lbfgs_iterations)`` afresh each
            epoch does; False carries the history across epochs.
        lbfgs_max_evals: Loss evaluations per L-BFGS epoch (line-search steps included); 0: torch's
            default, ``1.25 x lbfgs_iterations``, which cuts an epoch short of its iterations
            whenever a line search takes more than one evaluation.
        seed: Seed of shuffling and sampling.
    """

    epochs: int = 20
    lr: float = 1e-3
    batch_size: int = 1024
    weight_decay: float = 0.0
    negatives: int = 1
    loss: str = "bpr"
    lbfgs_iterations: int = 5
    lbfgs_reset: bool = False
    lbfgs_max_evals: int = 0
    seed: int = 0


def lbfgs(parameters: Iterable[torch.nn.Parameter], settings: TrainSettings) -> torch.optim.LBFGS:
    """The full-batch models' optimiser: one ``step`` is one epoch of ``settings.lbfgs_iterations``
    iterations (at most ``lbfgs_max_evals`` loss evaluations), strong-Wolfe line search, 10 pairs of
    curvature history."""
    return torch.optim.LBFGS(
        parameters,
        lr=1.0,
        max_iter=settings.lbfgs_iterations,
        max_eval=settings.lbfgs_max_evals or None,
        history_size=10,
        line_search_fn="strong_wolfe",
    )


def reset_lbfgs(optimizer: torch.optim.Optimizer) -> None:
    """Clear an L-BFGS optimiser's state (curvature pairs, direction, step, counters): its next
    ``step`` starts as a new optimiser's first one."""
    optimizer.state.clear()


def iterate_batches(
    train: Interactions,
    task: str,
    settings: TrainSettings,
    sampler: NegativeSampler | None,
    rng: np.random.Generator,
    users: np.ndarray | None = None,
    items: np.ndarray | None = None,
) -> Iterator[tuple[torch.Tensor, ...]]:
    """One epoch of shuffled batches (see the module docstring for the layout)."""
    users = train.users if users is None else users
    items = train.items if items is None else items
    order = rng.permutation(len(users))
    for start in range(0, len(order), settings.batch_size):
        rows = order[start : start + settings.batch_size]
        u = torch.as_tensor(users[rows])
        i = torch.as_tensor(items[rows])
        r = torch.as_tensor(train.ratings[rows])
        if sampler is None:
            yield u, i, r
        else:
            yield u, i, r, torch.as_tensor(sampler.sample(users[rows], settings.negatives))


def sequence_batches(
    train: Interactions, settings: TrainSettings, rng: np.random.Generator
) -> Iterator[tuple[torch.Tensor, ...]]:
    """One epoch of sequential-model batches: ``(users,)`` with ``batch_size`` distinct users each,
    in shuffled order, over the users that occur in ``train``."""
    users = rng.permutation(np.unique(train.users))
    for start in range(0, len(users), settings.batch_size):
        yield (torch.as_tensor(users[start : start + settings.batch_size]),)


def is_sequential(model: torch.nn.Module) -> bool:
    """Whether the model trains on user histories (:func:`sequence_batches`)."""
    return bool(getattr(model, "sequential", False))


def epoch_batches(
    recommender: Recommender,
    train: Interactions,
    settings: TrainSettings,
    sampler: NegativeSampler | None,
    rng: np.random.Generator,
) -> Iterator[tuple[torch.Tensor, ...]]:
    """One epoch of the batches the recommender's model trains on."""
    if is_sequential(recommender.model):
        return sequence_batches(train, settings, rng)
    return iterate_batches(train, recommender.task, settings, sampler, rng)


def _embedding_penalty(model: torch.nn.Module, users: torch.Tensor, items: torch.Tensor) -> torch.Tensor:
    penalty = torch.zeros(())
    for module in model.modules():
        axis = getattr(module, "_pentad_axis", None)
        if isinstance(module, torch.nn.Embedding) and axis is not None:
            share = getattr(module, "_pentad_decay", 1.0)  # a table's share of weight_decay (biases)
            if share:
                rows = module(users if axis == "user" else items)
                penalty = penalty + share * rows.square().sum(dim=-1).mean()
    return penalty


def batch_loss(recommender: Recommender, batch: tuple[torch.Tensor, ...], settings: TrainSettings) -> torch.Tensor:
    """Training loss of one batch for the recommender's task and model."""
    model = recommender.model
    if is_sequential(model):
        # weight_decay is not used here: dropout regularises the sequence models
        return model.sequence_loss(torch.unique(batch[0]), settings.loss, settings.negatives)
    users, items, ratings = batch[:3]
    negatives = batch[3] if len(batch) > 3 else None
    penalty = settings.weight_decay * _embedding_penalty(model, users, items) if settings.weight_decay else 0.0
    if hasattr(model, "forward_tasks"):
        rating, logit = model.forward_tasks(users, items)
        loss = F.binary_cross_entropy_with_logits(logit, torch.ones_like(logit))
        if negatives is not None:
            neg_users = users[:, None].expand_as(negatives).reshape(-1)
            _, neg_logit = model.forward_tasks(neg_users, negatives.reshape(-1))
            loss = (
                loss + F.binary_cross_entropy_with_logits(neg_logit, torch.zeros_like(neg_logit)) * settings.negatives
            )
        # both heads always train (the point of the multi-task model); the rating head's weight
        # is 1 for the rating task and 0.1 when ranking is the goal
        mse = F.mse_loss(rating, ratings - recommender.global_mean)
        loss = loss * 0.1 + mse if recommender.task == "rating" else loss + 0.1 * mse
        return loss + penalty
    if recommender.task == "rating":
        prediction = model(users, items)
        target = ratings if model.absolute_ratings else ratings - recommender.global_mean
        return F.mse_loss(prediction, target) + penalty
    if negatives is None:
        raise ConfigError("the ranking task needs negative samples; set negatives >= 1.")
    positive = model(users, items)
    n = negatives.shape[1]
    negative = model(users[:, None].expand_as(negatives).reshape(-1), negatives.reshape(-1)).view(-1, n)
    if settings.loss == "bpr":
        loss = -F.logsigmoid(positive[:, None] - negative).mean()
    elif settings.loss == "bce":
        loss = F.binary_cross_entropy_with_logits(
            positive, torch.ones_like(positive)
        ) + n * F.binary_cross_entropy_with_logits(negative, torch.zeros_like(negative))
    else:
        raise ConfigError(f"ranking loss {settings.loss!r} is not bpr or bce.")
    return loss + penalty


def needs_negatives(recommender: Recommender) -> bool:
    """Whether batches carry sampled negatives (sequential models sample their own)."""
    if is_sequential(recommender.model):
        return False
    return recommender.task == "ranking" or hasattr(recommender.model, "forward_tasks")


def evaluate_rating(recommender: Recommender, test: Interactions) -> dict[str, float]:
    """RMSE and MAE on ``test`` (raw ids are translated through the recommender's maps)."""
    users, items = recommender.encode(test)
    predicted = recommender.predict_internal(users, items)
    return {"rmse": rmse(predicted, test.ratings), "mae": mae(predicted, test.ratings)}


def evaluate(
    recommender: Recommender,
    train: Interactions,
    held_out: Interactions,
    ks: tuple[int, ...] = (10,),
    sampled_negatives: int = 99,
    seed: int = 0,
) -> dict[str, float]:
    """Rating metrics (``rmse``, ``mae``) or ranking metrics (full, and ``sampled_*``) on ``held_out``.

    Ranking ranks every item the user did not interact with in ``train``; the sampled protocol
    ranks the held-out item against ``sampled_negatives`` sampled items (0 skips it).
    """
    if recommender.task == "rating":
        return evaluate_rating(recommender, held_out)
    metrics = evaluate_ranking(recommender.score_all, train, held_out, ks=ks, protocol="full")
    if sampled_negatives > 0:
        sampled = evaluate_ranking(
            recommender.score_all,
            train,
            held_out,
            ks=ks,
            protocol="sampled",
            num_negatives=sampled_negatives,
            seed=seed,
        )
        metrics.update({f"sampled_{k}": v for k, v in sampled.items()})
    return metrics


def fit(
    recommender: Recommender,
    train: Interactions,
    settings: TrainSettings,
    on_epoch: Callable[[int, float], None] | None = None,
) -> dict[str, float]:
    """Train with a plain loop (no Lightning): Adam mini-batches, or L-BFGS for full-batch models.

    Args:
        recommender: Built with :meth:`Recommender.for_training` on ``train``.
        train: Training interactions.
        settings: Optimisation settings.
        on_epoch: Called with ``(epoch, mean loss)`` after each epoch.

    Returns:
        ``{"seconds", "interactions_per_second", "final_loss"}``.
    """
    model = recommender.model
    start = time.perf_counter()
    loss_value = float("nan")
    if not recommender.trainable:
        model.fit_statistics(train)
        return {
            "seconds": time.perf_counter() - start,
            "interactions_per_second": float("nan"),
            "final_loss": loss_value,
        }
    torch.manual_seed(settings.seed)
    rng = np.random.default_rng(settings.seed)
    model.train()
    if model.full_batch:
        stages = [settings.epochs, int(getattr(model, "finetune_epochs", 0))]
        for stage_index, stage_epochs in enumerate(stages):
            if stage_epochs <= 0:
                continue
            if stage_index == 1:
                model.start_global_stage()
            optimizer = lbfgs(model.parameters(), settings)

            def closure(optimizer: torch.optim.Optimizer = optimizer) -> torch.Tensor:
                optimizer.zero_grad()
                loss = model.full_batch_loss()
                loss.backward()
                return loss

            for epoch in range(stage_epochs):
                if settings.lbfgs_reset:
                    reset_lbfgs(optimizer)
                loss_value = float(optimizer.step(closure).detach())
                if on_epoch:
                    on_epoch(epoch + stage_index * settings.epochs, loss_value)
        seen = len(train) * settings.epochs
    else:
        optimizer = torch.optim.Adam(model.parameters(), lr=settings.lr)
        sampler = NegativeSampler(train, model.num_items, settings.seed) if needs_negatives(recommender) else None
        for epoch in range(settings.epochs):
            total, batches = 0.0, 0
            for batch in epoch_batches(recommender, train, settings, sampler, rng):
                optimizer.zero_grad()
                loss = batch_loss(recommender, batch, settings)
                loss.backward()
                optimizer.step()
                total, batches = total + float(loss.detach()), batches + 1
            loss_value = total / max(1, batches)
            if on_epoch:
                on_epoch(epoch, loss_value)
        seen = len(train) * settings.epochs
        if is_sequential(model):
            seen = model.training_positions(torch.as_tensor(np.unique(train.users))) * settings.epochs
    model.eval()
    seconds = time.perf_counter() - start
    return {"seconds": seconds, "interactions_per_second": seen / max(seconds, 1e-9), "final_loss": loss_value}
