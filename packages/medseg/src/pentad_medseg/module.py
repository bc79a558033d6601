"""The LightningModule: patch training, full-image sliding-window validation/testing inside the FOV."""

from __future__ import annotations

import time
from typing import Any

import numpy as np
import torch

from pentad_core.ensemble import build_ensemble, each_member
from pentad_core.errors import ConfigError
from pentad_core.training import PentadModule
from pentad_medseg.inference import sliding_window_inference
from pentad_medseg.losses import build_loss
from pentad_medseg.metrics import best_f1_threshold, dataset_metrics
from pentad_medseg.models import build_model
from pentad_medseg.sampling import PatchOrder

OPTIMIZERS = ("adam", "adamw", "sgd")
SCHEDULERS = ("none", "cosine")


class SegmentationModule(PentadModule):
    """Trains a segmentation network on patches and evaluates it on whole images.

    Batches: training ``(image (B, C, P, P) normalised, mask (B, P, P), fov (B, P, P))``; validation
    and test ``(image (1, C, H, W) raw, mask (1, H, W), fov (1, H, W), index)`` — whole images are
    normalised here with the stored training statistics, so a checkpoint predicts on raw images.
    A checkpoint is reloaded with ``pentad_core.checkpoint.load_module(SegmentationModule, path)``, or
    used through :class:`pentad_medseg.predictor.Predictor`.

    Logs ``train/loss``, ``val/{auc,dice,...}`` and ``test/{auc,dice,f1,iou,sensitivity,specificity,
    accuracy,hd95,dice_per_image}`` (pooled over the split's FOV pixels; see :mod:`pentad_medseg.metrics`).

    Args:
        model: Registered model name.
        in_channels: Image channels.
        classes: Label values including background (2: binary).
        model_options: Keyword arguments of the model factory (depth, base_channels, encoder, ...).
        loss: Registered loss name.
        loss_options: Keyword arguments of the loss.
        optimizer: ``adam``, ``adamw`` or ``sgd``.
        lr: Learning rate.
        weight_decay: Weight decay.
        scheduler: ``none`` or ``cosine`` (over ``max_epochs``).
        max_epochs: For the cosine schedule.
        mean: Per-channel normalisation mean from the training set.
        std: Per-channel normalisation std from the training set.
        window: Sliding-window side for whole-image inference.
        overlap: Window overlap.
        blending: ``gaussian`` or ``constant``.
        tta: Flip test-time augmentation at test time.
        threshold: Binary threshold; ``None`` picks the F1-optimal one on the validation images.
        infer_batch_size: Windows per forward pass.
        hd95: Compute the 95% Hausdorff distance at test time.
        ensemble: Independently initialised copies of the network, each trained on its own loss,
            whose logits are averaged (:mod:`pentad_core.ensemble`; 1: one network).
        val_names: Names of validation images (for messages).
        test_names: Names of test images (for the per-image CSV).
    """

    #: Checkpoint key of the training counters (patches seen, seconds of training steps).
    COUNTERS_KEY = "medseg_training_counters"

    def __init__(
        self,
        model: str = "unet",
        in_channels: int = 3,
        classes: int = 2,
        model_options: dict[str, Any] | None = None,
        loss: str = "bce-dice",
        loss_options: dict[str, Any] | None = None,
        optimizer: str = "adam",
        lr: float = 1e-3,
        weight_decay: float = 0.0,
        scheduler: str = "none",
        max_epochs: int = 10,
        mean: list[float] | None = None,
        std: list[float] | None = None,
        window: int = 128,
        overlap: float = 0.5,
        blending: str = "gaussian",
        tta: bool = False,
        threshold: float | None = 0.5,
        infer_batch_size: int = 16,
        hd95: bool = True,
        ensemble: int = 1,
    ) -> None:
        super().__init__()
        if optimizer not in OPTIMIZERS:
            raise ConfigError(f"optimizer must be one of {', '.join(OPTIMIZERS)}, got {optimizer!r}.")
        if scheduler not in SCHEDULERS:
            raise ConfigError(f"scheduler must be one of {', '.join(SCHEDULERS)}, got {scheduler!r}.")
        if threshold is not None and not 0 < threshold < 1:
            raise ConfigError(f"threshold must be in (0, 1) or null (chosen on validation data), got {threshold}.")
        # logger=False: the hyper-parameters live in the checkpoint and config.yaml, not in the CSV/TB logs.
        self.save_hyperparameters(logger=False)
        self.net = build_ensemble(
            lambda: build_model(model, model_options, in_channels=in_channels, classes=classes), ensemble
        )
        self.loss_fn = build_loss(loss, loss_options)
        mean_t = torch.tensor(mean if mean is not None else [0.0] * in_channels, dtype=torch.float32)
        std_t = torch.tensor(std if std is not None else [1.0] * in_channels, dtype=torch.float32)
        self.register_buffer("norm_mean", mean_t.view(1, -1, 1, 1))
        self.register_buffer("norm_std", std_t.view(1, -1, 1, 1))
        # Chosen on validation data when threshold is None; kept in checkpoints with the weights.
        self.register_buffer("threshold", torch.tensor(threshold if threshold is not None else 0.5))
        self._outputs: list[tuple[int, np.ndarray, np.ndarray, np.ndarray]] = []
        self.test_rows: list[dict[str, Any]] = []
        self.test_probabilities: list[np.ndarray] = []
        self.train_seconds = 0.0
        self.train_patches = 0
        self._batch_start = 0.0

    # -- inference -------------------------------------------------------------------------------

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """Logits ``(B, K, H, W)`` of normalised images ``(B, C, H, W)``."""
        return self.net(images)

    def normalize(self, images: torch.Tensor) -> torch.Tensor:
        """Apply the training-set channel statistics to raw images ``(B, C, H, W)``."""
        return (images - self.norm_mean) / self.norm_std

    @torch.no_grad()
    def predict_probabilities(self, images: torch.Tensor, tta: bool | None = None) -> torch.Tensor:
        """Probabilities ``(B, K, H, W)`` of raw whole images ``(B, C, H, W)`` by sliding window.

        Always in float32, also inside a bf16-mixed run's validation and test: bf16 logits keep 8
        bits of mantissa, so many pixels would tie and AUC would lose its ranking resolution; the
        :class:`~pentad_medseg.predictor.Predictor` (no autocast) then gives the same numbers.
        """
        hp = self.hparams
        with torch.autocast(self.device.type, enabled=False):
            return sliding_window_inference(
                self.net, self.normalize(images.to(self.device, torch.float32)), window=hp.window,
                overlap=hp.overlap, batch_size=hp.infer_batch_size, blending=hp.blending,
                tta=hp.tta if tta is None else tta,
            )  # fmt: skip

    # -- training --------------------------------------------------------------------------------

    def on_train_batch_start(self, batch: Any, batch_idx: int) -> None:
        self._batch_start = time.perf_counter()

    def on_train_batch_end(self, outputs: Any, batch: Any, batch_idx: int) -> None:
        self.train_seconds += time.perf_counter() - self._batch_start
        patches = int(batch[0].shape[0])
        self.train_patches += patches
        order = getattr(self.trainer.train_dataloader, "sampler", None)
        if isinstance(order, PatchOrder):  # the checkpoint then knows the next patch to draw
            order.advance(patches, epoch_done=batch_idx + 1 >= self.trainer.num_training_batches)

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        # Counters behind fit/patches and fit/patches_per_s, so a resumed run reports the whole run.
        checkpoint[self.COUNTERS_KEY] = {"seconds": self.train_seconds, "patches": self.train_patches}

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        counters = checkpoint.get(self.COUNTERS_KEY, {})
        self.train_seconds = float(counters.get("seconds", 0.0))
        self.train_patches = int(counters.get("patches", 0))

    def training_step(self, batch: tuple[torch.Tensor, ...], batch_idx: int) -> torch.Tensor:
        images, masks, fovs = batch
        # each ensemble member on its own loss, summed: members train as they would alone
        each = each_member(self.net, images)
        loss = torch.stack([self.loss_fn(logits, masks, fovs) for logits in each]).sum()
        if not torch.isfinite(loss):
            hp = self.hparams
            raise ConfigError(
                f"the training loss became {loss.item()} at step {self.global_step}: the learning rate "
                f"(lr={hp.lr:g}) is likely too high for {hp.optimizer}, or the images' scale is extreme "
                "(they are normalised with the training set's channel mean and std); try a lower lr, e.g. "
                f"--set lr={hp.lr / 10:.1e}."
            )
        mean_loss = loss.detach() / len(each)
        self.log_training("train/loss", mean_loss, batch_size=images.shape[0], on_step=True, prog_bar=True)
        return loss

    # -- evaluation ------------------------------------------------------------------------------

    def _collect(self, batch: tuple[torch.Tensor, ...], tta: bool) -> np.ndarray:
        images, masks, fovs, indices = batch
        probabilities = self.predict_probabilities(images, tta=tta).float().cpu().numpy()
        for row in range(images.shape[0]):
            self._outputs.append(
                (int(indices[row]), probabilities[row], masks[row].cpu().numpy(), fovs[row].cpu().numpy())
            )
        return probabilities

    def _gathered(self) -> list[tuple[np.ndarray, np.ndarray, np.ndarray]]:
        """Every process's ``(probabilities, mask, fov)``, one per image, in the split's order.

        Under DDP each process evaluated its share of the images (:class:`~pentad_medseg.sampling.ImageShard`);
        they are gathered here, so every process computes the metrics of the whole split. An image
        seen twice (a sampler that pads) counts once.
        """
        outputs, self._outputs = self._outputs, []
        if torch.distributed.is_available() and torch.distributed.is_initialized():
            parts: list[Any] = [None] * torch.distributed.get_world_size()
            torch.distributed.all_gather_object(parts, outputs)
            outputs = [item for part in parts for item in part]
        by_index = {index: (probabilities, mask, fov) for index, probabilities, mask, fov in outputs}
        return [by_index[index] for index in sorted(by_index)]

    def _log_split(self, split: str, summary: dict[str, float]) -> None:
        """Log ``<split>/<key>``. Every process holds the same values (computed from the gathered
        images); ``sync_dist`` averages equal numbers, which leaves them exactly as they are."""
        for key, value in summary.items():
            self.log(f"{split}/{key}", float(value), prog_bar=split == "val" and key in ("auc", "dice"), sync_dist=True)

    def on_validation_epoch_start(self) -> None:
        self._outputs = []

    def validation_step(self, batch: tuple[torch.Tensor, ...], batch_idx: int) -> None:
        self._collect(batch, tta=False)

    def on_validation_epoch_end(self) -> None:
        if self.trainer.sanity_checking:
            self._outputs = []
            return
        gathered = self._gathered()  # every process takes part, also one that had no image
        if not gathered:
            return
        probabilities, masks, fovs = zip(*gathered)
        if self.hparams.threshold is None and probabilities[0].shape[0] == 1:
            scores = np.concatenate([p[0][f] for p, f in zip(probabilities, fovs)])
            truth = np.concatenate([m[f] > 0 for m, f in zip(masks, fovs)])
            self.threshold.fill_(best_f1_threshold(scores, truth))
        summary, _ = dataset_metrics(
            probabilities, masks, fovs, [str(i) for i in range(len(masks))], float(self.threshold), hd95=False
        )
        # NaN (e.g. AUC or sensitivity of validation images without foreground) is logged as NaN:
        # the checkpoint callback ranks it last, and the log shows it was undefined, not 0.
        self._log_split("val", {k: summary[k] for k in ("auc", "dice", "iou", "sensitivity", "specificity",
                                                         "accuracy", "threshold")})  # fmt: skip

    def on_test_epoch_start(self) -> None:
        self._outputs = []
        self.test_rows = []
        self.test_probabilities = []

    def test_step(self, batch: tuple[torch.Tensor, ...], batch_idx: int) -> None:
        self._collect(batch, tta=bool(self.hparams.tta))

    def on_test_epoch_end(self) -> None:
        gathered = self._gathered()
        if not gathered:
            return
        probabilities, masks, fovs = zip(*gathered)
        names = list(self.test_names) if hasattr(self, "test_names") else [str(i) for i in range(len(masks))]
        summary, rows = dataset_metrics(
            probabilities, masks, fovs, names[: len(masks)], float(self.threshold), hd95=bool(self.hparams.hd95)
        )
        self._log_split("test", summary)
        self.test_rows = rows
        self.test_probabilities = list(probabilities)

    # -- optimisation ----------------------------------------------------------------------------

    def configure_optimizers(self) -> Any:
        hp = self.hparams
        if hp.optimizer == "adam":
            optimizer = torch.optim.Adam(self.parameters(), lr=hp.lr, weight_decay=hp.weight_decay)
        elif hp.optimizer == "adamw":
            optimizer = torch.optim.AdamW(self.parameters(), lr=hp.lr, weight_decay=hp.weight_decay)
        else:
            optimizer = torch.optim.SGD(
                self.parameters(), lr=hp.lr, momentum=0.99, nesterov=True, weight_decay=hp.weight_decay
            )
        if hp.scheduler == "cosine":
            scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=max(1, hp.max_epochs))
        else:
            scheduler = torch.optim.lr_scheduler.ConstantLR(optimizer, factor=1.0, total_iters=0)
        # The name makes Lightning's LR monitor log "train/lr" (metrics keys are "<split>/<metric>").
        return {
            "optimizer": optimizer,
            "lr_scheduler": {"scheduler": scheduler, "interval": "epoch", "name": "train/lr"},
        }
