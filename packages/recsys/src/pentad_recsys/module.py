"""The Lightning module and its data loaders: how ``train`` trains through pentad_core's trainer.

Every step calls :func:`pentad_recsys.training.batch_loss` (or the model's full-batch loss), so the
Lightning path and the plain loop used by the benchmarks optimise exactly the same objective.
Validation and test evaluate the whole held-out set once per epoch (one dummy batch), because
ranking metrics need every user's full score row, not per-batch averages. Under DDP every rank
does so with the same (synchronised) weights, so ``val/*`` and ``test/*`` cover the whole held-out
set whatever the number of processes: no rank reports a share of it.
"""

from __future__ import annotations

import dataclasses
import json
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader, IterableDataset

from pentad_core.training import PentadModule
from pentad_recsys.data.interactions import Interactions
from pentad_recsys.data.sampling import NegativeSampler
from pentad_recsys.predictor import Recommender
from pentad_recsys.training import (
    TrainSettings,
    batch_loss,
    epoch_batches,
    evaluate,
    lbfgs,
    needs_negatives,
    reset_lbfgs,
)


def distributed_rank() -> tuple[int, int]:
    """``(rank, world size)`` of this process in ``torch.distributed``, ``(0, 1)`` outside it."""
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        return torch.distributed.get_rank(), torch.distributed.get_world_size()
    return 0, 1


def shard_batch(batch: tuple[torch.Tensor, ...], rank: int, world: int) -> tuple[torch.Tensor, ...]:
    """This rank's part of a global batch: its rows split into ``world`` near-equal parts.

    Every rank gets one part of every global batch, so all ranks take the same number of steps (DDP
    needs that) and no two ranks train on the same rows. A batch with fewer rows than ranks (the last
    one of an epoch, at most) gives the ranks without a row of their own a row from the start of the
    batch, because an empty part has no loss.
    """
    if world == 1:
        return batch
    size = len(batch[0])
    rows = np.array_split(np.arange(size), world)[rank]
    if len(rows) == 0:
        rows = np.array([rank % size])
    index = torch.as_tensor(rows)
    return tuple(part[index] for part in batch)


class EpochBatches(IterableDataset):
    """One epoch of pre-built batches (negatives re-sampled each epoch); a single dummy batch for
    full-batch models.

    Under DDP every rank draws the same global batches of ``batch_size x world size`` rows (the same
    seeds, the same draws) and trains on its own part of each (:func:`shard_batch`), so the ranks
    share an epoch instead of repeating it, and two processes with ``batch_size`` B take the steps
    one process takes with 2B.
    The shuffling and negative-sampling random states are part of every checkpoint
    (:meth:`state_dict`), so a resumed run draws the batches and negatives an uninterrupted one would.
    """

    def __init__(self, recommender: Recommender, train: Interactions, settings: TrainSettings) -> None:
        self.recommender, self.train, self.settings = recommender, train, settings
        self.rng = np.random.default_rng(settings.seed)
        model = recommender.model
        self.sampler = NegativeSampler(train, model.num_items, settings.seed) if needs_negatives(recommender) else None

    def __iter__(self):
        if self.recommender.model.full_batch:
            yield (torch.zeros(1),)
            return
        rank, world = distributed_rank()
        # batch_size is per process (Lightning's convention): a global batch holds batch_size x world
        settings = dataclasses.replace(self.settings, batch_size=self.settings.batch_size * world)
        for batch in epoch_batches(self.recommender, self.train, settings, self.sampler, self.rng):
            yield shard_batch(batch, rank, world)

    def state_dict(self) -> dict[str, str]:
        """The shuffling and negative-sampling generator states (JSON text: loadable weights-only)."""
        state = {"order": json.dumps(self.rng.bit_generator.state)}
        if self.sampler is not None:
            state["negatives"] = json.dumps(self.sampler.rng.bit_generator.state)
        return state

    def load_state_dict(self, state: dict[str, str]) -> None:
        """Continue the random streams saved by :meth:`state_dict`."""
        self.rng.bit_generator.state = json.loads(state["order"])
        if self.sampler is not None and "negatives" in state:
            self.sampler.rng.bit_generator.state = json.loads(state["negatives"])


#: The key of :meth:`EpochBatches.state_dict` in a Lightning checkpoint.
SAMPLING_KEY = "recsys_sampling"


class _Once(torch.utils.data.Dataset):
    def __len__(self) -> int:
        return 1

    def __getitem__(self, index: int) -> torch.Tensor:
        return torch.zeros(1)


def once_loader() -> DataLoader:
    """A loader with one dummy batch (validation/test evaluate the whole set in one step)."""
    return DataLoader(_Once(), batch_size=1)


class RecsysModule(PentadModule):
    """Trains a :class:`Recommender`'s model; logs ``train/loss``, ``val/<metric>``, ``test/<metric>``.

    Args:
        recommender: Built with :meth:`Recommender.for_training`.
        train: Training interactions.
        val: Validation interactions, or ``None``.
        test: Test interactions, or ``None``.
        settings: Optimisation settings.
        ks: Ranking cut-offs.
        sampled_negatives: Negatives of the sampled ranking protocol (0 disables it).
    """

    def __init__(
        self,
        recommender: Recommender,
        train: Interactions,
        val: Interactions | None,
        test: Interactions | None,
        settings: TrainSettings,
        ks: tuple[int, ...] = (10,),
        sampled_negatives: int = 99,
    ) -> None:
        super().__init__()
        self.recommender, self.model = recommender, recommender.model
        self.train_data, self.val_data, self.test_data = train, val, test
        self.settings, self.ks, self.sampled_negatives = settings, tuple(ks), sampled_negatives
        self.automatic_optimization = True
        self.batches = EpochBatches(recommender, train, settings)

    def train_dataloader(self) -> DataLoader:
        return DataLoader(self.batches, batch_size=None)

    def val_dataloader(self) -> DataLoader:
        return once_loader()

    def test_dataloader(self) -> DataLoader:
        return once_loader()

    def on_train_epoch_start(self) -> None:
        finetune = int(getattr(self.model, "finetune_epochs", 0))
        if finetune and self.current_epoch == self.settings.epochs:
            self.model.start_global_stage()
        if self.model.full_batch and self.settings.lbfgs_reset:
            for optimizer in self.trainer.optimizers:
                reset_lbfgs(optimizer)

    def training_step(self, batch: tuple[torch.Tensor, ...], batch_index: int) -> torch.Tensor:
        self.model.train()
        loss = (
            self.model.full_batch_loss()
            if self.model.full_batch
            else batch_loss(self.recommender, batch, self.settings)
        )
        self.log_training("train/loss", loss, batch_size=len(batch[0]), prog_bar=True)
        return loss

    def _evaluate(self, prefix: str, held_out: Interactions | None) -> None:
        if held_out is None:
            return
        metrics = evaluate(self.recommender, self.train_data, held_out, self.ks, self.sampled_negatives, seed=0)
        for name, value in metrics.items():
            self.log(f"{prefix}/{name}", value, prog_bar=name in ("rmse", f"ndcg@{self.ks[0]}"), batch_size=1)
        self.model.train()

    def validation_step(self, batch: Any, batch_index: int) -> None:
        self._evaluate("val", self.val_data)

    def test_step(self, batch: Any, batch_index: int) -> None:
        self._evaluate("test", self.test_data)

    def configure_optimizers(self) -> torch.optim.Optimizer:
        if self.model.full_batch:
            return lbfgs(self.model.parameters(), self.settings)
        return torch.optim.Adam(self.model.parameters(), lr=self.settings.lr)

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        # the serving state (id maps, titles, global mean) travels inside every Lightning checkpoint
        checkpoint["recommender"] = self.recommender.state()
        # where the shuffling and negative sampling stand, so that --resume draws what an
        # uninterrupted run would (checkpoints are written after the epoch's last batch was drawn)
        checkpoint[SAMPLING_KEY] = self.batches.state_dict()

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        if SAMPLING_KEY in checkpoint:
            self.batches.load_state_dict(checkpoint[SAMPLING_KEY])
