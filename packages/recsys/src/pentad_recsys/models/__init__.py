"""Recommender models, one file per network, plus their shared layers (``base``, ``layers``, ``sequential``).

Importing this package imports every file in this folder (:func:`~pentad_core.registry.import_submodules`),
so each model registers itself in :data:`pentad_recsys.registry.MODELS` (with its
:class:`~pentad_core.registry.ModelInfo`): adding a model is adding its file. Build one with
:func:`build_model`.
"""

from __future__ import annotations

import inspect
from collections.abc import Mapping, Sequence
from typing import Any

from pentad_core.errors import ConfigError
from pentad_core.registry import import_submodules
from pentad_recsys.models.base import RecModel
from pentad_recsys.registry import MODELS

import_submodules(__name__)


def model_arguments(
    name: str,
    *,
    num_users: int,
    num_items: int,
    task: str,
    user_cardinalities: Sequence[int] = (),
    num_item_tags: int = 0,
) -> dict[str, Any]:
    """The arguments of :func:`build_model` that model ``name``'s constructor takes.

    Models take ``num_users`` and ``num_items``; ``task`` and the side-feature shapes only when
    they use them. These are what the checkpoint records (with the options) to rebuild the model.

    Raises:
        ConfigError: Unknown model, or a task the model does not serve.
    """
    tasks = MODELS.info(name).tasks  # unknown names raise ConfigError listing close matches
    if task not in tasks:
        raise ConfigError(f"model {name!r} does not serve the {task} task; it serves {', '.join(tasks)}.")
    parameters = inspect.signature(MODELS.get(name)).parameters
    candidates: dict[str, Any] = {
        "num_users": num_users,
        "num_items": num_items,
        "task": task,
        "user_cardinalities": list(user_cardinalities),
        "num_item_tags": num_item_tags,
    }
    return {key: value for key, value in candidates.items() if key in parameters}


def build_model(
    name: str,
    options: Mapping[str, Any] | None = None,
    *,
    num_users: int,
    num_items: int,
    task: str,
    user_cardinalities: Sequence[int] = (),
    num_item_tags: int = 0,
) -> RecModel:
    """Build the registered model ``name`` for the data's users, items and side features.

    The network maps internal ids ``users (B,)``, ``items (B,)`` (int64) to scores ``(B,)``: a rating
    residual for ``task="rating"`` (the :class:`~pentad_recsys.predictor.Recommender` adds the global
    mean unless the model's ``absolute_ratings``), a relevance logit for ``"ranking"``;
    ``score_all(users (B,))`` gives ``(B, num_items)``. Statistics-only baselines and models with
    side features still need ``fit_statistics(train)`` / ``set_side_features(features)`` before use.

    Args:
        name: Registered name (see ``apps/recsys models``).
        options: The model's own options (the config's ``model_options``, e.g. ``{"dim": 32}``) on top
            of its registered defaults; a key its constructor does not take raises ConfigError.
        num_users: Users in the id map (from the data).
        num_items: Items in the id map (from the data).
        task: ``"rating"`` or ``"ranking"``; it must be one of the model's ``tasks``.
        user_cardinalities: Values of each categorical user feature (from the data's side features).
        num_item_tags: Item tags, e.g. genres (from the data's side features).

    Raises:
        ConfigError: Unknown model, a task it does not serve, or a misspelled option.

    Example:
        >>> model = build_model("mf", {"dim": 32}, num_users=943, num_items=1682, task="rating")
    """
    arguments = model_arguments(
        name,
        num_users=num_users,
        num_items=num_items,
        task=task,
        user_cardinalities=user_cardinalities,
        num_item_tags=num_item_tags,
    )
    return MODELS.build(name, options=options, **arguments)


__all__ = ["MODELS", "RecModel", "build_model", "model_arguments"]
