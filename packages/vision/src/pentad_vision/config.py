"""Typed settings of training: optimisation and augmentation (nested into the app's config)."""

from __future__ import annotations

from dataclasses import dataclass


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
