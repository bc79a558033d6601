"""A trained model together with everything needed to serve it on raw ids."""

from __future__ import annotations

import inspect
from pathlib import Path
from typing import Any

import numpy as np
import torch

from pentad_core.checkpoint import atomic_save, load_checkpoint
from pentad_core.errors import CheckpointError, ConfigError, DataError
from pentad_recsys.data.interactions import IdMap, Interactions, RawId
from pentad_recsys.models.base import RecModel
from pentad_recsys.registry import MODELS

CHECKPOINT_VERSION = 1


def model_arguments(name: str, data: Interactions, task: str, **overrides: Any) -> dict[str, Any]:
    """Constructor arguments of model ``name`` for ``data``: sizes, side-feature shapes, task.

    Only arguments the constructor accepts are filled in; ``overrides`` are checked against the
    signature so a typo in a hyper-parameter raises.

    Raises:
        ConfigError: Unknown model or hyper-parameter, or a task the model does not serve.
    """
    factory = MODELS.get(name)
    if task not in getattr(factory, "tasks", ("rating", "ranking")):
        raise ConfigError(f"model {name!r} does not serve the {task} task; it serves {', '.join(factory.tasks)}.")
    parameters = inspect.signature(factory).parameters
    features = data.features
    candidates: dict[str, Any] = {
        "num_users": data.num_users,
        "num_items": data.num_items,
        "task": task,
        "user_cardinalities": list(features.user_cardinalities) if features else [],
        "num_item_tags": features.num_item_tags if features else 0,
    }
    arguments = {k: v for k, v in candidates.items() if k in parameters}
    for key, value in overrides.items():
        if key not in parameters:
            known = ", ".join(p for p in parameters if p not in candidates)
            raise ConfigError(f"model {name!r} has no hyper-parameter {key!r}; known: {known}.")
        arguments[key] = list(value) if isinstance(value, tuple) else value
    return arguments


def build_model(name: str, train: Interactions, task: str = "rating", **overrides: Any) -> RecModel:
    """Build model ``name`` sized for ``train``, with side features and data statistics filled in.

    Args:
        name: A name from :data:`~pentad_recsys.registry.MODELS`.
        train: Training interactions (sizes, side features, statistics such as graphs).
        task: ``"rating"`` or ``"ranking"``.
        **overrides: Hyper-parameters (e.g. ``dim=32``).
    """
    model = MODELS.build(name, **model_arguments(name, train, task, **overrides))
    if train.features is not None:
        model.set_side_features(train.features)
    model.fit_statistics(train)
    return model


class Recommender:
    """A model plus id maps, rating offset and training history: raw ids in, raw ids out.

    Args:
        model: The trained model.
        model_name: Its registry name.
        model_kwargs: Its constructor arguments (saved to rebuild it).
        task: ``"rating"`` or ``"ranking"``.
        user_map: Raw <-> internal user ids.
        item_map: Raw <-> internal item ids.
        global_mean: Added to the model's residual for ratings.
        rating_range: Predictions are clipped to it (``None``: no clipping).
        item_titles: Title per internal item, or ``None``.
        seen_users: Internal users of the known (training) interactions, in time order.
        seen_items: Internal items of the known interactions.
        seen_ratings: Ratings of the known interactions (replayed by incremental updates).
        dataset: Name of the training dataset.
    """

    def __init__(
        self,
        model: RecModel,
        model_name: str,
        model_kwargs: dict[str, Any],
        task: str,
        user_map: IdMap,
        item_map: IdMap,
        global_mean: float = 0.0,
        rating_range: tuple[float, float] | None = None,
        item_titles: list[str] | None = None,
        seen_users: np.ndarray | None = None,
        seen_items: np.ndarray | None = None,
        dataset: str = "",
        seen_ratings: np.ndarray | None = None,
    ) -> None:
        self.model, self.model_name, self.model_kwargs = model, model_name, dict(model_kwargs)
        self.task, self.user_map, self.item_map = task, user_map, item_map
        self.global_mean, self.rating_range, self.item_titles = float(global_mean), rating_range, item_titles
        self.seen_users = np.zeros(0, np.int64) if seen_users is None else np.asarray(seen_users, np.int64)
        self.seen_items = np.zeros(0, np.int64) if seen_items is None else np.asarray(seen_items, np.int64)
        self.dataset = dataset
        self.seen_ratings = (
            np.ones(len(self.seen_users), np.float32) if seen_ratings is None else np.asarray(seen_ratings, np.float32)
        )

    @classmethod
    def for_training(
        cls, name: str, train: Interactions, task: str = "rating", dataset: str = "", **overrides: Any
    ) -> Recommender:
        """A fresh (untrained) recommender for ``train``."""
        kwargs = model_arguments(name, train, task, **overrides)
        model = MODELS.build(name, **kwargs)
        if train.features is not None:
            model.set_side_features(train.features)
        model.fit_statistics(train)
        multitask = hasattr(model, "forward_tasks")
        mean = float(train.ratings.mean()) if task == "rating" or multitask else 0.0
        # the known interactions are kept in time order (ties by row) so that `update` can rebuild
        # the histories of sequential models with old events before new ones
        order = np.lexsort((np.arange(len(train)), train.timestamps))
        return cls(
            model,
            name,
            kwargs,
            task,
            train.user_map,
            train.item_map,
            mean,
            train.rating_range if task == "rating" else None,
            train.item_titles,
            train.users[order],
            train.items[order],
            dataset or train.source,
            train.ratings[order],
        )

    # ----------------------------------------------------------------------------- scoring
    def _output(self, raw: torch.Tensor) -> torch.Tensor:
        if self.task != "rating":
            return raw
        value = raw if self.model.absolute_ratings else raw + self.global_mean
        if self.rating_range is not None:
            value = value.clamp(*self.rating_range)
        return value

    @torch.no_grad()
    def predict_internal(self, users: np.ndarray, items: np.ndarray, batch_size: int = 8192) -> np.ndarray:
        """Predictions (ratings or scores) for internal id pairs, shape ``[N]``."""
        self.model.eval()
        out = []
        for start in range(0, len(users), batch_size):
            u = torch.as_tensor(users[start : start + batch_size], dtype=torch.long)
            i = torch.as_tensor(items[start : start + batch_size], dtype=torch.long)
            out.append(self._output(self.model(u, i)).float().numpy())
        return np.concatenate(out) if out else np.zeros(0, np.float32)

    def predict(self, users: list[RawId] | np.ndarray, items: list[RawId] | np.ndarray) -> np.ndarray:
        """Predicted ratings (rating task) or relevance scores for raw ``(user, item)`` pairs.

        Raises:
            DataError: If a user or item was not in the training data.
        """
        return self.predict_internal(self.user_map.indices(users, "user"), self.item_map.indices(items, "item"))

    @torch.no_grad()
    def score_all(self, users: torch.Tensor) -> torch.Tensor:
        """``[B]`` internal users -> ``[B, num_items]`` scores (ratings for the rating task)."""
        self.model.eval()
        return self._output(self.model.score_all(users))

    def recommend(self, user: RawId, k: int = 10, exclude_seen: bool = True) -> list[dict[str, Any]]:
        """Top-``k`` items for a raw user id, excluding items seen in training.

        Returns:
            ``[{"item": raw id, "score": float, "title": str | None}, ...]`` best first.
        """
        index = self.user_map.index(user, "user")
        scores = self.score_all(torch.tensor([index]))[0].clone()
        if exclude_seen:
            scores[torch.as_tensor(self.seen_items[self.seen_users == index])] = -torch.inf
        top = torch.topk(scores, min(k, int(torch.isfinite(scores).sum()))).indices.tolist()
        return [
            {
                "item": self.item_map.raw(i),
                "score": float(scores[i]),
                "title": self.item_titles[i] if self.item_titles else None,
            }
            for i in top
        ]

    @torch.no_grad()
    def similar_items(self, item: RawId, k: int = 10) -> list[dict[str, Any]]:
        """Item-to-item neighbours of a raw item id by cosine similarity of the item vectors.

        Raises:
            ConfigError: If the model has no item vectors.
        """
        index = self.item_map.index(item, "item")
        vectors = self.model.item_embeddings()
        if vectors is None:
            raise ConfigError(
                f"model {self.model_name!r} has no item vectors; --similar-to needs mf, fm, lightgcn, ..."
            )
        vectors = torch.nn.functional.normalize(vectors.float(), dim=1)
        similarity = vectors @ vectors[index]
        similarity[index] = -torch.inf
        top = torch.topk(similarity, min(k, len(similarity) - 1)).indices.tolist()
        return [
            {
                "item": self.item_map.raw(i),
                "score": float(similarity[i]),
                "title": self.item_titles[i] if self.item_titles else None,
            }
            for i in top
        ]

    # ----------------------------------------------------------------------------- persistence
    def state(self) -> dict[str, Any]:
        """Everything needed to rebuild this recommender, loadable with ``weights_only=True``."""
        return {
            "version": CHECKPOINT_VERSION,
            "model_name": self.model_name,
            "model_kwargs": self.model_kwargs,
            "state_dict": self.model.state_dict(),
            "task": self.task,
            "user_ids": self.user_map.state(),
            "item_ids": self.item_map.state(),
            "global_mean": self.global_mean,
            "rating_range": list(self.rating_range) if self.rating_range else None,
            "item_titles": self.item_titles,
            "seen_users": torch.as_tensor(self.seen_users),
            "seen_items": torch.as_tensor(self.seen_items),
            "dataset": self.dataset,
            "seen_ratings": torch.as_tensor(self.seen_ratings),
        }

    @classmethod
    def from_state(cls, state: dict[str, Any]) -> Recommender:
        """Rebuild from :meth:`state`.

        Raises:
            CheckpointError: If the state is not a recsys checkpoint or does not fit the model.
        """
        if not isinstance(state, dict) or "model_name" not in state or "state_dict" not in state:
            raise CheckpointError("the checkpoint is not a pentad-recsys model (no model_name/state_dict).")
        model = MODELS.build(state["model_name"], **state["model_kwargs"])
        try:
            model.load_state_dict(state["state_dict"])
        except RuntimeError as error:
            raise CheckpointError(f"the checkpoint does not fit model {state['model_name']!r}: {error}") from None
        model.eval()
        rating_range = tuple(state["rating_range"]) if state.get("rating_range") else None
        return cls(
            model,
            state["model_name"],
            state["model_kwargs"],
            state["task"],
            IdMap(state["user_ids"]),
            IdMap(state["item_ids"]),
            state["global_mean"],
            rating_range,
            state.get("item_titles"),
            state["seen_users"].numpy(),
            state["seen_items"].numpy(),
            state.get("dataset", ""),
            state["seen_ratings"].numpy() if "seen_ratings" in state else None,
        )

    def save(self, path: str | Path) -> Path:
        """Write the checkpoint atomically."""
        return atomic_save(self.state(), path)

    @classmethod
    def load(cls, path: str | Path) -> Recommender:
        """Load a checkpoint written by :meth:`save` (or a Lightning checkpoint holding one).

        Raises:
            CheckpointError: Missing, unreadable or foreign file.
        """
        try:
            state = load_checkpoint(path)
        except CheckpointError:
            raise
        except Exception as error:  # a non-checkpoint file can make the unpickler fail in many ways
            raise CheckpointError(f"{path} is not a checkpoint ({type(error).__name__}); give a .ckpt file.") from None
        if isinstance(state, dict) and "recommender" in state:
            state = state["recommender"]
        return cls.from_state(state)

    def encode(self, data: Interactions) -> tuple[np.ndarray, np.ndarray]:
        """Internal ids of ``data``'s raw ids under this recommender's maps.

        Raises:
            DataError: If ``data`` holds users or items unknown to the model.
        """
        if data.user_map is self.user_map and data.item_map is self.item_map:
            return data.users, data.items
        users = self.user_map.indices((data.user_map.raw(u) for u in data.users), "user")
        items = self.item_map.indices((data.item_map.raw(i) for i in data.items), "item")
        return users, items


__all__ = ["DataError", "Recommender", "build_model", "model_arguments"]
