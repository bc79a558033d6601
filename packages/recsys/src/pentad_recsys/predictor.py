"""A trained model with everything needed to serve it on raw ids, and the run loader.

:class:`Recommender` is a model plus its id vocabularies, rating offset and range, item titles and
the known (training) interactions; its state is saved in every checkpoint (Lightning checkpoints
carry it under ``"recommender"``), so a checkpoint alone answers ``predict``/``recommend``/``similar``.
:class:`Predictor` loads a trained run (a run folder or a checkpoint file) into one::

    from pentad_recsys.predictor import Predictor

    predictor = Predictor.from_run("runs/recsys/<run>")         # or .../checkpoints/best.ckpt
    predictor.predict([196, 22], [242, 377])                     # ratings (rating task) or scores
    predictor.recommend(196, k=10)                               # seen items excluded, with titles
    predictor.similar(242, k=10)                                 # cosine neighbours of the item vectors

None of this reads the training data.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch

from pentad_core.checkpoint import atomic_save, load_checkpoint
from pentad_core.errors import CheckpointError, ConfigError, DataError
from pentad_core.predictor import Predictor as BasePredictor
from pentad_core.predictor import TrainedRun
from pentad_core.runs import BLEND_IN_PROGRESS
from pentad_recsys.blend import Blend, blend_state, build_blend
from pentad_recsys.config import RecsysConfig
from pentad_recsys.data.interactions import IdMap, Interactions, RawId
from pentad_recsys.models import build_model, model_arguments
from pentad_recsys.models.base import RecModel
from pentad_recsys.registry import MODELS

CHECKPOINT_VERSION = 1


def data_arguments(data: Interactions, task: str) -> dict[str, Any]:
    """The keyword arguments of :func:`~pentad_recsys.models.build_model` that pentad derives from
    ``data`` and the ``task``: sizes and side-feature shapes."""
    features = data.features
    return {
        "num_users": data.num_users,
        "num_items": data.num_items,
        "task": task,
        "user_cardinalities": list(features.user_cardinalities) if features else [],
        "num_item_tags": features.num_item_tags if features else 0,
    }


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
        cls, name: str, train: Interactions, task: str = "rating", dataset: str = "", **options: Any
    ) -> Recommender:
        """A fresh (untrained) recommender for ``train``.

        Args:
            name: A name from :data:`~pentad_recsys.registry.MODELS`.
            train: Training interactions (sizes, side features, statistics such as graphs).
            task: ``"rating"`` or ``"ranking"``.
            dataset: Name recorded with the model (default: ``train.source``).
            **options: The model's options (``model_options``, e.g. ``dim=32``), checked against
                its constructor: a misspelled key raises :class:`ConfigError` naming it.
        """
        derived = data_arguments(train, task)
        options = {k: list(v) if isinstance(v, tuple) else v for k, v in options.items()}
        model = build_model(name, options, **derived)
        arguments = model_arguments(name, **derived)  # what the constructor took, saved to rebuild it
        kwargs = {**arguments, **MODELS.options(name, options, given=tuple(arguments))}
        if train.features is not None:
            model.set_side_features(train.features)
        model.fit_statistics(train)
        multitask = hasattr(model, "forward_tasks")
        mean = float(train.ratings.mean()) if task == "rating" or multitask else 0.0
        if task == "rating" and hasattr(model, "init_biases"):
            model.init_biases(train, mean)  # biased MF may start from the baseline predictor
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

    @property
    def trainable(self) -> bool:
        """Whether the model learns by gradient descent (its registry info); baselines only fit statistics."""
        return bool(MODELS.info(self.model_name).trainable) and not isinstance(self.model, Blend)

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
        blend = {"blend": blend_state(self.model)} if isinstance(self.model, Blend) else {}
        return {
            **blend,
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
        if isinstance(state, dict) and BLEND_IN_PROGRESS in state:
            raise CheckpointError(
                "the run is a blend whose models are still training.", "Finish it with `train --resume last --out RUN`."
            )
        if not isinstance(state, dict) or "model_name" not in state or "state_dict" not in state:
            raise CheckpointError("the checkpoint is not a pentad-recsys model (no model_name/state_dict).")
        try:
            if "blend" in state:
                model = build_blend(state["blend"])
            else:
                model = MODELS.get(state["model_name"])(**state["model_kwargs"])
        except (TypeError, KeyError) as error:
            name = state["model_name"]
            raise CheckpointError(f"the checkpoint's options do not fit model {name!r}: {error}") from None
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


class Predictor(BasePredictor):
    """A trained recsys run, served on raw ids.

    Args:
        run: The run's files.
        config: The run's typed config (``config.yaml``; defaults with the checkpoint's model and
            task for a checkpoint outside a run folder).
        recommender: The model with its vocabularies, known items and titles, from the checkpoint.
    """

    config_class = RecsysConfig
    #: In a run folder: the model grown by `update` if the folder holds one, else the best epoch, else the last.
    checkpoint_names = ("updated.ckpt", "best.ckpt", "last.ckpt")

    def __init__(self, run: TrainedRun, config: RecsysConfig, recommender: Recommender) -> None:
        super().__init__(run, config)
        self.recommender = recommender

    @classmethod
    def from_trained_run(cls, run: TrainedRun, **options: Any) -> Predictor:
        """Load the checkpoint of ``run`` (no option is taken; the training data is not read).

        Raises:
            CheckpointError: Missing, unreadable or foreign checkpoint.
            ConfigError: An unreadable ``config.yaml`` or an unknown option.
        """
        if options:
            raise ConfigError(f"the recsys predictor takes no options; got {', '.join(options)}.")
        recommender = Recommender.load(run.checkpoint)
        if run.config:
            config = run.typed_config(RecsysConfig)
        else:
            config = RecsysConfig(model=recommender.model_name, task=recommender.task)
        return cls(run, config, recommender)

    def predict(self, users: Any, items: Any = None) -> np.ndarray:
        """``[N]`` predicted ratings (rating task: clipped to the rating range) or relevance scores.

        Args:
            users: ``N`` raw user ids; or, with ``items`` omitted, ``N`` ``(user, item)`` pairs.
            items: ``N`` raw item ids.

        Raises:
            DataError: A user or item the model was not trained on.
            ConfigError: ``users`` and ``items`` of different lengths.
        """
        if items is None:
            pairs = list(users)
            users, items = [p[0] for p in pairs], [p[1] for p in pairs]
        users, items = list(users), list(items)
        if len(users) != len(items):
            raise ConfigError(f"predict needs as many users as items; got {len(users)} and {len(items)}.")
        return self.recommender.predict(users, items)

    def recommend(self, user: RawId, k: int = 10, exclude_seen: bool = True) -> list[dict[str, Any]]:
        """Top-``k`` items for ``user`` (``[{"item", "score", "title"}]``, best first); the items the
        user interacted with in training are excluded unless ``exclude_seen`` is False."""
        if k < 1:
            raise ConfigError(f"k must be at least 1, got {k}.")
        return self.recommender.recommend(user, k, exclude_seen)

    def similar(self, item: RawId, k: int = 10) -> list[dict[str, Any]]:
        """The ``k`` items nearest to ``item`` by cosine similarity of the item vectors."""
        if k < 1:
            raise ConfigError(f"k must be at least 1, got {k}.")
        return self.recommender.similar_items(item, k)


__all__ = ["DataError", "Predictor", "Recommender", "data_arguments"]
