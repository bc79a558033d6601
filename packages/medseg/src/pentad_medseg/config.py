"""The medseg run configuration (recipes in ``shared/configs/medseg/<dataset>.yaml``)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from pentad_core.cli import RunConfig
from pentad_core.errors import ConfigError
from pentad_core.training import TrainerConfig


def _trainer_defaults() -> TrainerConfig:
    return TrainerConfig(max_epochs=10, monitor="val/dice", monitor_mode="max", log_every_n_steps=5)


@dataclass
class MedsegConfig(RunConfig):
    """Settings of a medseg run: data, model, loss, patch training and sliding-window inference."""

    #: Registered model name (see the `models` verb): unet, smp-unet, smp-unetplusplus, smp-fpn, smp-deeplabv3plus.
    model: str = "unet"
    #: Registered dataset name: drive, folder, nifti or synthetic.
    dataset: str = "synthetic"
    #: Patches per training batch.
    batch_size: int = 32
    #: Label values including background (2 = binary; N for label masks 0..N-1).
    classes: int = 2
    #: Dataset options: val_fraction/test_fraction (folder, nifti), val_images (drive), kind/image_size (synthetic).
    dataset_options: dict[str, Any] = field(default_factory=dict)
    #: Model options, e.g. depth, base_channels, norm (batch|instance|none), dropout, upsampling (transpose|bilinear).
    model_options: dict[str, Any] = field(default_factory=dict)
    #: Train this many independently initialised copies of the network side by side, each on its
    #: own loss, and average their logits (a deep ensemble; 1: one network). Costs about K times
    #: the compute of one network.
    ensemble: int = 1
    #: smp encoder of smp-* models (any name in segmentation_models_pytorch.encoders.get_encoder_names()).
    encoder: str = "resnet34"
    #: Published encoder weights for smp-* models (e.g. imagenet; needs the network); null = random init.
    encoder_weights: str | None = None
    #: Initialise the network from a project checkpoint (.ckpt of an earlier run); matching tensors are copied.
    pretrained: str | None = None
    #: Registered loss: bce, dice, bce-dice, focal, tversky, ce, ce-dice.
    loss: str = "bce-dice"
    #: Loss options, e.g. pos_weight, smooth, gamma, alpha, beta.
    loss_options: dict[str, Any] = field(default_factory=dict)
    #: adam, adamw or sgd (momentum 0.99, Nesterov).
    optimizer: str = "adam"
    #: Learning rate.
    lr: float = 1e-3
    #: Weight decay.
    weight_decay: float = 0.0
    #: Learning-rate schedule: none or cosine (over trainer.max_epochs).
    scheduler: str = "none"
    #: Side of the square training patches.
    patch_size: int = 64
    #: Random patches per training epoch.
    patches_per_epoch: int = 3200
    #: Share of patches centred on a foreground pixel (0 = uniform random crops).
    foreground_fraction: float = 0.0
    #: Augmentations: flip, rot90, affine, elastic, brightness, contrast, gamma.
    augment: list[str] = field(default_factory=lambda: ["flip"])
    #: Sliding-window side for whole-image inference.
    window: int = 128
    #: Overlap of neighbouring windows (fraction of the window).
    overlap: float = 0.5
    #: Window blending: gaussian or constant.
    blending: str = "gaussian"
    #: Flip test-time augmentation when testing and predicting.
    tta: bool = False
    #: Decision threshold of binary models; null = the F1-optimal threshold on the validation images.
    threshold: float | None = 0.5
    #: Windows per forward pass during inference.
    infer_batch_size: int = 16
    #: Compute the 95% Hausdorff distance at test time.
    hd95: bool = True
    #: Test images drawn as overlays in plots/predictions.png.
    plot_examples: int = 3
    #: Lightning trainer settings (best checkpoint by val/dice).
    trainer: TrainerConfig = field(default_factory=_trainer_defaults)

    def __post_init__(self) -> None:
        super().__post_init__()  # checks time_budget
        if self.classes < 2:
            raise ConfigError(f"--classes must be at least 2 (background + foreground), got {self.classes}.")
        if self.patch_size < 8:
            raise ConfigError(f"patch_size must be at least 8, got {self.patch_size}.")
        if self.window < 8:
            raise ConfigError(f"window must be at least 8, got {self.window}.")

    def network_options(self) -> dict[str, Any]:
        """Keyword arguments of the model factory (smp models get the encoder settings)."""
        options = dict(self.model_options)
        if self.model.startswith("smp-"):
            options.setdefault("encoder", self.encoder)
            options.setdefault("encoder_weights", self.encoder_weights)
        return options
