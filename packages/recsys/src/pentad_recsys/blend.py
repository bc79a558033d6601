"""Blending trained rating models (stacking): ``rating = w0 + sum_k w_k * rating_k``.

Models that err differently (an autoencoder over whole item columns, a factorisation machine over
single pairs) average to a better forecaster than either alone. Each model is trained on its own;
the weights are then fitted by least squares on ratings none of them trained on (the run's
validation part), so a weak model gets a small weight instead of an equal share.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch import nn

from pentad_core.errors import ConfigError
from pentad_recsys.models.base import RecModel
from pentad_recsys.registry import MODELS


def fit_blend_weights(predictions: np.ndarray, ratings: np.ndarray) -> np.ndarray:
    """Least-squares weights of a blend: ``[N, K]`` member ratings, ``[N]`` true ratings -> ``[K + 1]``
    (the intercept first, then one weight per member).

    Raises:
        ConfigError: Fewer ratings than weights to fit.
    """
    predictions = np.asarray(predictions, np.float64)
    count, members = predictions.shape
    if count <= members + 1:
        raise ConfigError(
            f"blending {members} models needs more than {members + 1} validation ratings; got {count}.",
            "Raise val_ratio.",
        )
    design = np.column_stack([np.ones(count), predictions])
    weights, *_ = np.linalg.lstsq(design, np.asarray(ratings, np.float64), rcond=None)
    return weights


class Blend(RecModel):
    """``forward(users [B], items [B]) -> [B]``: ``w0 + sum_k w_k * clamp(member_k + mean_k)``.

    Each member's output is made a rating as its own recommender serves it (its global mean added
    unless the member's ratings are absolute, clipped to the rating range); the blend's output is
    itself a rating (``absolute_ratings``), clipped again by the recommender that holds it.

    Args:
        num_users: Users of the shared id map.
        num_items: Items of the shared id map.
        members: The trained member models (all on the same id maps).
        means: Each member's global mean (0 for absolute models).
        weights: ``[K + 1]`` intercept and member weights (:func:`fit_blend_weights`).
        rating_range: ``(low, high)`` that each member's rating is clipped to, or ``None``.
        names: Each member's registry name, recorded to rebuild the blend from a checkpoint.
        member_kwargs: Each member's constructor arguments, recorded likewise.
    """

    absolute_ratings = True

    def __init__(
        self,
        num_users: int,
        num_items: int,
        members: list[RecModel],
        means: list[float],
        weights: np.ndarray | torch.Tensor,
        rating_range: tuple[float, float] | None = None,
        names: list[str] | None = None,
        member_kwargs: list[dict[str, Any]] | None = None,
    ) -> None:
        super().__init__(num_users, num_items)
        self.names = list(names or [])
        self.member_kwargs = [dict(k) for k in member_kwargs or []]
        if len(weights) != len(members) + 1 or len(means) != len(members):
            raise ConfigError(f"a blend of {len(members)} models needs {len(members) + 1} weights and a mean each.")
        self.members = nn.ModuleList(members)
        self.register_buffer("means", torch.tensor([float(m) for m in means], dtype=torch.float32))
        self.register_buffer("weights", torch.as_tensor(np.asarray(weights), dtype=torch.float32).clone())
        self.rating_range = tuple(float(v) for v in rating_range) if rating_range else None

    def _combine(self, outputs: list[torch.Tensor]) -> torch.Tensor:
        total = self.weights[0]
        for k, raw in enumerate(outputs):
            rating = raw.float() + self.means[k]
            if self.rating_range is not None:
                rating = rating.clamp(*self.rating_range)
            total = total + self.weights[k + 1] * rating
        return total

    def forward(self, users: torch.Tensor, items: torch.Tensor) -> torch.Tensor:
        return self._combine([member(users, items) for member in self.members])

    def score_all(self, users: torch.Tensor, chunk: int = 65536) -> torch.Tensor:
        """``[B] -> [B, num_items]``: every member's own ``score_all``, blended."""
        return self._combine([member.score_all(users) for member in self.members])

    def serving_module(self) -> nn.Module:
        """The same blend over each member's serving module (e.g. glocal-k's frozen table)."""
        served = Blend(self.num_users, self.num_items, [m.serving_module() for m in self.members],
                       self.means.tolist(), self.weights, self.rating_range, self.names)  # fmt: skip
        return served.eval()

    def item_embeddings(self) -> torch.Tensor | None:
        """The item vectors of the first member that has any (for ``--similar-to`` and export)."""
        return next((v for v in (m.item_embeddings() for m in self.members) if v is not None), None)

    def user_embeddings(self) -> torch.Tensor | None:
        """The user vectors of the first member that has any."""
        return next((v for v in (m.user_embeddings() for m in self.members) if v is not None), None)

    def grow(self, num_users: int, num_items: int) -> None:
        """Refused: the weights were fitted for these members as trained; new rows would void them."""
        raise ConfigError("a blended model cannot grow incrementally; retrain it with `train`.")


def blend_state(model: Blend) -> dict[str, Any]:
    """What a checkpoint records to rebuild ``model``: its members' names and constructor arguments."""
    return {
        "names": list(model.names),
        "kwargs": [dict(k) for k in model.member_kwargs],
        "rating_range": list(model.rating_range) if model.rating_range else None,
        "num_users": model.num_users,
        "num_items": model.num_items,
    }


def build_blend(state: dict[str, Any]) -> Blend:
    """An untrained :class:`Blend` shaped as :func:`blend_state` recorded (load the state dict into it).

    Raises:
        TypeError: A member's arguments do not fit its model (the caller reports the checkpoint).
    """
    members = [MODELS.get(name)(**kwargs) for name, kwargs in zip(state["names"], state["kwargs"], strict=True)]
    count = len(members)
    rating_range = tuple(state["rating_range"]) if state.get("rating_range") else None
    return Blend(state["num_users"], state["num_items"], members, [0.0] * count, np.zeros(count + 1), rating_range,
                 state["names"], state["kwargs"])  # fmt: skip


__all__ = ["Blend", "blend_state", "build_blend", "fit_blend_weights"]
