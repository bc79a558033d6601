"""The vision app's typed config: :class:`VisionConfig`, with its optimisation and augmentation parts.

What ``config.yaml`` of a run records; the pipeline and the predictor read it, and nothing changes
it after it is written.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from pentad_core.cli import RunConfig
from pentad_core.training import TrainerConfig


@dataclass
class OptimConfig:
    """Optimiser, schedule and loss settings."""

    #: Optimiser: sgd (momentum, optionally Nesterov) or adamw.
    name: str = "sgd"
    #: Peak learning rate (reached after the warm-up).
    lr: float = 0.05
    #: Weight decay of conv/linear weights (never applied to norms and biases).
    weight_decay: float = 5e-4
    #: SGD momentum.
    momentum: float = 0.9
    #: Use Nesterov momentum with SGD.
    nesterov: bool = True
    #: Learning-rate schedule per step: cosine, onecycle (linear up, linear down) or constant.
    schedule: str = "cosine"
    #: Linear warm-up length in epochs (fractions allowed).
    warmup_epochs: float = 0.0
    #: The schedule ends at this fraction of the peak learning rate.
    final_lr_factor: float = 0.0
    #: Label smoothing of the cross-entropy loss.
    label_smoothing: float = 0.0
    #: Exponential moving average of the weights for evaluation (0 disables it; e.g. 0.999).
    ema_decay: float = 0.0
    #: The warm-up starts at this fraction of the peak learning rate (airbench94: 0.2).
    warmup_start_factor: float = 0.0
    #: Learning-rate multiplier of the normalisation layers' parameters, which then also take weight
    #: decay divided by it (airbench94: 64 for its batch-norm shifts; 1: one group like the biases).
    norm_lr_scale: float = 1.0
    #: airbench94's lookahead: every this many steps the weights move into a slow copy and are set
    #: to it, with a decay rising as 0.95**k * (t/T)**3 (0 disables it; airbench94: 5).
    lookahead_every: int = 0


@dataclass
class AugmentConfig:
    """Training-time augmentation (evaluation never augments, except test-time flips)."""

    #: Random crop after padding by this many pixels (0 disables it).
    crop_padding: int = 0
    #: Padding mode of the random crop: reflect or constant (zeros).
    crop_mode: str = "reflect"
    #: Random horizontal flips (leave off for digits and text).
    flip: bool = False
    #: Side of the square cut out of each image (0 disables cutout).
    cutout: int = 0
    #: TrivialAugmentWide on each training image.
    trivial_augment: bool = False
    #: MixUp Beta(alpha, alpha) parameter (0 disables it).
    mixup_alpha: float = 0.0
    #: CutMix Beta(alpha, alpha) parameter (0 disables it).
    cutmix_alpha: float = 0.0
    #: Average the logits of each test image and its mirror image.
    tta_flip: bool = False
    #: Also average over copies shifted by this many pixels up-left and down-right (airbench94: 1; 0 disables).
    tta_translate: int = 0


def _vision_trainer() -> TrainerConfig:
    return TrainerConfig(max_epochs=10, monitor="val/acc", monitor_mode="max")


@dataclass
class VisionConfig(RunConfig):
    """Settings of the vision app (the common ones are in RunConfig)."""

    #: Registered model name (see `models`).
    model: str = "seed-convnet"
    #: Samples per training batch.
    batch_size: int = 128
    #: Samples per evaluation batch.
    eval_batch_size: int = 256
    #: Share of the training images held out for validation (0: train on all, keep the last checkpoint).
    val_fraction: float = 0.1
    #: Skip unreadable images (listed in the log) instead of failing, in datasets and in `predict` inputs.
    skip_bad: bool = False
    #: Options of the model factory, checked against it (e.g. {hidden: 256} for seed-convnet,
    #: {weights: DEFAULT} for torchvision's published weights).
    model_options: dict = field(default_factory=dict)
    #: Train this many independently initialised copies of the network side by side, each on its
    #: own loss, and average their logits at inference (a deep ensemble; 1: one network). Costs
    #: about K times the compute and parameters of one network.
    ensemble: int = 1
    #: Options of the dataset loader, checked against it (e.g. {image_size: 64, channels: 1} for imagefolder,
    #: {num_train: 2000, num_test: 500, num_classes: 4, image_size: 32} for synthetic).
    dataset_options: dict = field(default_factory=dict)
    #: Fine-tune from a checkpoint of an earlier pentad run (new head when the class count differs).
    pretrained: str | None = None
    #: With --pretrained: train only the head for this many epochs first.
    freeze_backbone_epochs: int = 0
    #: Optimiser, schedule and loss.
    optim: OptimConfig = field(default_factory=OptimConfig)
    #: Training augmentation and test-time flips.
    augment: AugmentConfig = field(default_factory=AugmentConfig)
    #: Lightning trainer settings.
    trainer: TrainerConfig = field(default_factory=_vision_trainer)
