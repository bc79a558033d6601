"""Self-configuration of the generic ``csv`` dataset: a fingerprint of the interactions and the
settings derived from it (applied through :func:`pentad_core.autoconfig.self_configure`).

The rules were set on MovieLens 100K's ``u1.base`` validation part (biased MF: 64 factors, per-example
L2 0.1 on the rows in the batch, Adam 0.005, batch 1024, the best of up to 30 epochs by validation
RMSE; for implicit events BPR with 4 negatives, L2 0.003, Adam 0.01) and scaled by the measured
size and density; a setting the recipe, ``--config``, an option or ``--set`` gives always wins.
``--time-budget`` sets the number of epochs from a measured training step (see :func:`choose`).
"""

from __future__ import annotations

import inspect
import math
from typing import Any

import numpy as np
import torch

from pentad_core.autoconfig import Choice, epochs_for_budget, parse_duration, preserved_random_state, seconds_per_step
from pentad_recsys.config import RecsysConfig, task_metric
from pentad_recsys.data.csvfile import column
from pentad_recsys.data.interactions import Interactions
from pentad_recsys.predictor import Recommender
from pentad_recsys.registry import MODELS

#: Density of ml-100k's u1.base (80,000 ratings / (943 x 1,682)), where the rules were set.
REFERENCE_DENSITY = 0.0504
#: Epochs when no time budget is given: the best epoch by validation is kept, so more only costs time.
DEFAULT_EPOCHS = 30
#: At most this many epochs from a time budget (validation RMSE has flattened long before on ml-100k).
MAX_EPOCHS = 200


def fingerprint(data: Interactions, config: RecsysConfig) -> dict[str, Any]:
    """What self-configuration measures on the loaded interactions (YAML-safe values)."""
    users, items, count = data.num_users, data.num_items, len(data)
    explicit = data.rating_range is not None
    low, high = (float(data.ratings.min()), float(data.ratings.max())) if explicit and count else (None, None)
    return {
        "users": users,
        "items": items,
        "interactions": count,
        "density": round(count / max(1, users * items), 6),
        "per_user": round(count / max(1, users), 1),
        "per_item": round(count / max(1, items), 1),
        "feedback": "explicit" if explicit else "implicit",
        "rating_scale": [low, high] if explicit else None,
        "distinct_ratings": len(np.unique(data.ratings)) if explicit else 0,
        "timestamps": column(config.dataset_options.get("time_col")) is not None,
    }


def _dim(count: int) -> int:
    return 32 if count < 20_000 else 64 if count < 2_000_000 else 128


def _batch(count: int) -> int:
    return 256 if count < 10_000 else 512 if count < 50_000 else 1024 if count < 1_000_000 else 4096


_MF_REASON = "; biases start at the baseline estimates and take a tenth of the L2 (chosen on ml-100k)"


def _options(facts: dict[str, Any]) -> dict[str, Any]:
    options: dict[str, Any] = {"dim": _dim(facts["interactions"])}
    if facts["feedback"] == "explicit":
        options.update(init_std=0.01, bias_decay=0.1, baseline_init=True)
    return options


def rule_choices(facts: dict[str, Any]) -> list[Choice]:
    """The settings derived from ``facts`` (a :func:`fingerprint`) by the stated rules, without timing."""
    count, density = facts["interactions"], facts["density"]
    explicit = facts["feedback"] == "explicit"
    size = f"{count:,} interactions"
    if facts["feedback"] == "explicit":
        scale = facts["rating_scale"]
        ratio = (REFERENCE_DENSITY / max(density, 1e-9)) ** 0.25
        decay = float(round(min(0.3, max(0.05, 0.1 * ratio)), 3))
        choices = [
            Choice("task", "rating", f"explicit ratings {scale[0]:g}-{scale[1]:g}: predict them (RMSE)"),
            Choice("model", "mf", "biased MF: the strongest default measured on sparse explicit ratings"),
            Choice("weight_decay", decay, f"0.1 at ml-100k's density 5.0 %, x (5.0 % / {density:.2%})^0.25"),
            Choice("lr", 0.005, "Adam step that converged in 5-20 epochs on ml-100k"),
        ]
    else:
        choices = [
            Choice("task", "ranking", "implicit events (no rating column): top-K ranking"),
            Choice("model", "mf", "biased MF trained with BPR"),
            Choice("loss", "bpr", "pairwise ranking loss for implicit events"),
            Choice("negatives", 4, "4 sampled negatives per event (chosen on ml-100k's validation events)"),
            Choice("weight_decay", 0.003, "BPR-MF's L2 chosen on ml-100k's validation events"),
            Choice("lr", 0.01, "Adam step chosen with that L2"),
        ]
    choices += [
        Choice("model_options", _options(facts), f"{_dim(count)} factors for {size}" + _MF_REASON * explicit),
        Choice("batch_size", _batch(count), f"about {max(1, count // _batch(count))} steps per epoch"),
        Choice("trainer.max_epochs", DEFAULT_EPOCHS, "no --time-budget: the best of 30 by validation is kept"),
    ]
    return choices


def _with(config: RecsysConfig, choices: list[Choice], explicit: frozenset[str]) -> RecsysConfig:
    from pentad_core.autoconfig import apply_choices

    return apply_choices(config, choices, explicit)[0]


def epoch_seconds(config: RecsysConfig, train: Interactions, val: Interactions | None) -> float:
    """Measured seconds of one epoch of ``config`` on ``train`` (a timed step on a throwaway model,
    times the steps per epoch, plus one timed validation pass)."""
    from pentad_recsys.data.sampling import NegativeSampler
    from pentad_recsys.pipeline import train_settings
    from pentad_recsys.training import batch_loss, epoch_batches, evaluate, needs_negatives

    with preserved_random_state():  # the run starts from the random state it would have had
        recommender = Recommender.for_training(config.model, train, task=config.task, dataset=config.dataset,
                                               **config.model_options)  # fmt: skip
        settings = train_settings(config)
        model = recommender.model
        if model.full_batch or not recommender.trainable:
            return 1.0
        optimizer = torch.optim.Adam(model.parameters(), lr=settings.lr)
        sampler = NegativeSampler(train, model.num_items, 0) if needs_negatives(recommender) else None
        batches = epoch_batches(recommender, train, settings, sampler, np.random.default_rng(0))
        pool = [b for b, _ in zip(batches, range(1))]

        def step() -> None:
            optimizer.zero_grad()
            batch_loss(recommender, pool[0], settings).backward()
            optimizer.step()

        per_step = seconds_per_step(step)
        steps = math.ceil(len(train) / settings.batch_size)
        check = 0.0
        if val is not None:
            check = seconds_per_step(lambda: evaluate(recommender, train, val, tuple(config.ks), 0), steps=1)
        return per_step * steps + check


#: Multiples of the density rule's L2 tried on the validation part (explicit ratings).
SEARCH_FACTORS = (0.3, 1.0, 3.0)
#: Epochs of each search run (the best epoch of each counts).
SEARCH_EPOCHS = 12


def search_decay(config: RecsysConfig, train: Interactions, val: Interactions) -> Choice:
    """The L2 (``weight_decay``) with the lowest validation RMSE among :data:`SEARCH_FACTORS` x the
    density rule's, each trained for up to :data:`SEARCH_EPOCHS` epochs with the plain loop (the best
    epoch of each counts); the run itself then trains from scratch."""
    from pentad_recsys.pipeline import train_settings
    from pentad_recsys.training import evaluate_rating, fit

    results = {}
    with preserved_random_state():  # the run itself draws what it would have drawn
        for factor in SEARCH_FACTORS:
            decay = float(round(config.weight_decay * factor, 4))
            settings = train_settings(config, epochs=min(SEARCH_EPOCHS, config.trainer.max_epochs))
            settings.weight_decay = decay
            torch.manual_seed(config.seed)
            recommender = Recommender.for_training(config.model, train, task="rating", dataset=config.dataset,
                                                   **config.model_options)  # fmt: skip
            curve: list[float] = []

            def validate(epoch: int, loss: float, recommender: Recommender = recommender, curve: list = curve) -> None:
                curve.append(evaluate_rating(recommender, val)["rmse"])
                recommender.model.train()

            fit(recommender, train, settings, on_epoch=validate)
            results[decay] = min(curve)
    best = min(results, key=results.get)
    tried = ", ".join(f"{d:g}: {r:.4f}" for d, r in results.items())
    return Choice("weight_decay", best, f"lowest validation RMSE of a short search ({tried})")


def choose(config: RecsysConfig, explicit: frozenset[str], facts: dict[str, Any], train: Interactions,
           val: Interactions | None) -> list[Choice]:  # fmt: skip
    """Every choice for ``config``: the rules of :func:`rule_choices` (the factors only for a model that
    takes ``dim``), the validation metric of the chosen task, and with ``time_budget`` the epochs that
    fit it, from one epoch's time measured with the other choices applied."""
    choices = rule_choices(facts)
    model = config.model if "model" in explicit and config.model else "mf"
    if "dim" not in inspect.signature(MODELS.get(model)).parameters:
        choices = [c for c in choices if c.key != "model_options"]
    elif model != "mf":  # the other options are biased MF's
        choices = [Choice(c.key, {"dim": c.value["dim"]}, c.reason.split(";")[0]) if c.key == "model_options" else c
                   for c in choices]  # fmt: skip
    trial = _with(config, choices, explicit)
    if trial.task != config.task:  # the monitor was resolved for the configured task
        metric, mode = task_metric(trial)
        choices += [Choice("trainer.monitor", metric, f"the {trial.task} task's validation metric"),
                    Choice("trainer.monitor_mode", mode, f"{metric}: {mode}")]  # fmt: skip
    if trial.task == "rating" and val is not None and "weight_decay" not in explicit:
        choices = [c for c in choices if c.key != "weight_decay"] + [search_decay(trial, train, val)]
    if config.time_budget is None:
        return choices
    budget = parse_duration(config.time_budget, key="time_budget")
    seconds = epoch_seconds(trial, train, val)
    epochs = epochs_for_budget(budget, seconds, maximum=MAX_EPOCHS)
    reason = f"{budget:g} s budget / {seconds:.2f} s per measured epoch (15 % kept in reserve, at most {MAX_EPOCHS})"
    return [c for c in choices if c.key != "trainer.max_epochs"] + [Choice("trainer.max_epochs", epochs, reason)]


def apply(context: Any, data: Interactions, train: Interactions, val: Interactions | None) -> RecsysConfig:
    """Fingerprint ``data``, derive the choices and apply them to ``context.config`` through
    :func:`pentad_core.autoconfig.self_configure` (recorded in ``config.yaml``, printed as a table)."""
    from pentad_core.autoconfig import self_configure

    config = context.config
    if not config.self_configure or context.resume_path is not None:
        return config
    facts = fingerprint(data, config)
    choices = []
    if "threads" not in context.explicit_keys:  # before the search and the timing, which it speeds up
        torch.set_num_threads(1)
        choices.append(Choice("threads", 1, "embedding models' small per-batch ops run fastest on one thread"))
    choices += choose(config, context.explicit_keys, facts, train, val)
    return self_configure(context, facts, choices)


__all__ = ["apply", "choose", "epoch_seconds", "fingerprint", "rule_choices", "search_decay"]
