"""Inference from a trained run: top-k class probabilities for images, without the training data.

Everything a prediction needs comes from the run: the network and its weights, the class names,
the image size and channels, and the normalisation statistics are all in the checkpoint's
``hyper_parameters`` and ``state_dict`` (the ``Normalized`` wrapper holds mean and std as
buffers); the run's ``config.yaml`` gives the evaluation batch size. ::

    from pentad_vision.predictor import Predictor

    predictor = Predictor.from_run("runs/vision/mnist10k")  # or .../checkpoints/last.ckpt
    predictor.predict(images, top_k=3)  # [[("7", 0.98), ("1", 0.01), ("9", 0.004)], ...]
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from pentad_core.checkpoint import load_module
from pentad_core.errors import ConfigError
from pentad_core.predictor import Predictor as BasePredictor
from pentad_core.predictor import TrainedRun
from pentad_vision.config import VisionConfig
from pentad_vision.module import ImageClassifier
from pentad_vision.transforms import TestTimeAugment

#: What :meth:`Predictor.predict` answers per image: ``(class name, probability)``, most probable first.
TopK = list[tuple[str, float]]


def _build(hyper_parameters: dict[str, Any]) -> ImageClassifier:
    if "model_kwargs" in hyper_parameters:  # checkpoints written before the option was named model_options
        hyper_parameters["model_options"] = hyper_parameters.pop("model_kwargs")
    module = ImageClassifier(**hyper_parameters)
    module.whitened = True  # the stored weights hold the whitening; training from here must not redo it
    return module


class Predictor(BasePredictor):
    """A trained image classifier, loaded from its run folder or checkpoint.

    Attributes:
        module: The :class:`ImageClassifier` in eval mode.
        config: The run's :class:`VisionConfig` (defaults for a checkpoint outside a run folder).
    """

    config_class = VisionConfig

    def __init__(self, run: TrainedRun, config: VisionConfig, module: ImageClassifier, device: str = "cpu") -> None:
        super().__init__(run, config)
        self.module = module.to(device).eval()
        self.device = device

    @classmethod
    def from_trained_run(cls, run: TrainedRun, *, device: str = "cpu") -> Predictor:
        """Load the weights, class names and normalisation from ``run.checkpoint``.

        Args:
            run: The located run files.
            device: Where the network runs (``"cpu"``, ``"cuda"``, ...).

        Raises:
            CheckpointError: The checkpoint is damaged or not one of this app.
            ConfigError: The run's ``config.yaml`` does not fit this version.
        """
        config = run.typed_config(VisionConfig)
        module = load_module(ImageClassifier, run.checkpoint, build=_build)
        return cls(run, config, module, device)

    # -- what the run says about its inputs and outputs ---------------------------------------------
    @property
    def classes(self) -> list[str]:
        """Class names, index = label."""
        return list(self.module.classes)

    @property
    def model_name(self) -> str:
        """The registered model name."""
        return self.module.hparams.model

    @property
    def image_size(self) -> int:
        """Square side of the images the network takes."""
        return int(self.module.hparams.image_size)

    @property
    def in_channels(self) -> int:
        """Channels of the images the network takes (1 grey, 3 RGB)."""
        return int(self.module.hparams.in_channels)

    @property
    def net(self) -> nn.Module:
        """The network taking float images in ``[0, 1]`` (normalisation inside; EMA weights when trained with them)."""
        return self.module.eval_net

    @property
    def test_time_augment(self) -> TestTimeAugment:
        """The test-time augmentation the run was configured with."""
        return self.module.test_time_augment

    # -- inputs ------------------------------------------------------------------------------------
    def to_batch(self, images: np.ndarray | torch.Tensor | Sequence[np.ndarray]) -> torch.Tensor:
        """Images as the network's input: a tensor ``(N, C, S, S)``, ``uint8`` or float in ``[0, 1]``.

        Accepted:
            - a ``torch.Tensor`` ``(N, C, S, S)`` or ``(C, S, S)`` (``uint8``, or float in ``[0, 1]``)
              already at the run's size and channels;
            - a ``uint8`` NumPy array ``(N, H, W, C)``, ``(H, W, C)`` or ``(H, W)``, or a list of
              ``(H, W[, C])`` arrays of any size: converted to the run's channels and resized to its
              size like image files are (Pillow, bilinear).

        Raises:
            ConfigError: A tensor of the wrong shape, or an array that is not ``uint8``.
        """
        expected = (self.in_channels, self.image_size, self.image_size)
        if isinstance(images, torch.Tensor):
            batch = images[None] if images.ndim == 3 else images
            if batch.ndim != 4 or tuple(batch.shape[1:]) != expected:
                raise ConfigError(
                    f"images must be a tensor (N, {expected[0]}, {expected[1]}, {expected[2]}) for this run, "
                    f"got {tuple(images.shape)}.",
                    "Give uint8 HWC NumPy arrays of any size to have them resized.",
                )
            return batch
        if isinstance(images, np.ndarray) and images.ndim == 4:
            images = list(images)
        elif isinstance(images, np.ndarray):
            images = [images]
        return torch.from_numpy(np.stack([self._from_array(image) for image in images]))

    def _from_array(self, image: np.ndarray) -> np.ndarray:
        from PIL import Image

        if image.dtype != np.uint8 or image.ndim not in (2, 3):
            raise ConfigError(f"images must be uint8 arrays (H, W[, C]), got {image.dtype} {image.shape}.")
        if image.ndim == 3 and image.shape[2] == 1:
            image = image[..., 0]
        picture = Image.fromarray(image).convert("RGB" if self.in_channels == 3 else "L")
        if picture.size != (self.image_size, self.image_size):
            picture = picture.resize((self.image_size, self.image_size), Image.BILINEAR)
        array = np.asarray(picture, dtype=np.uint8)
        return array[None] if array.ndim == 2 else array.transpose(2, 0, 1)

    def load_files(self, paths: Sequence[str | Path], skip_bad: bool = False) -> tuple[torch.Tensor, list[Path]]:
        """Image files and folders decoded at the run's size and channels: ``(uint8 (N, C, S, S), files read)``.

        Raises:
            DataError: A path does not exist, no image is found, or a file is unreadable (unless ``skip_bad``).
        """
        from pentad_vision.evaluation import collect_image_files, load_image_files

        files = collect_image_files([str(path) for path in paths])
        return load_image_files(files, self.image_size, self.in_channels, skip_bad)

    # -- outputs -----------------------------------------------------------------------------------
    def logits(self, images: np.ndarray | torch.Tensor | Sequence[np.ndarray]) -> torch.Tensor:
        """Logits ``(N, classes)`` on the CPU, with the run's test-time augmentation."""
        from pentad_vision.evaluation import predict_logits

        batch = self.to_batch(images)
        return predict_logits(self.net, batch, self.config.eval_batch_size, self.test_time_augment, device=self.device)

    def probabilities(self, images: np.ndarray | torch.Tensor | Sequence[np.ndarray]) -> torch.Tensor:
        """Class probabilities ``(N, classes)`` (softmax of :meth:`logits`)."""
        return self.logits(images).softmax(1)

    def predict(self, inputs: np.ndarray | torch.Tensor | Sequence[np.ndarray], top_k: int = 5) -> list[TopK]:
        """The ``top_k`` most probable classes of each image, as ``(class name, probability)``.

        Args:
            inputs: A batch of images (see :meth:`to_batch`).
            top_k: Classes per image (at most the number of classes).

        Raises:
            ConfigError: ``top_k`` below 1, or images of the wrong shape.
        """
        from pentad_vision.evaluation import top_k as best

        if top_k < 1:
            raise ConfigError(f"top_k must be at least 1, got {top_k}.")
        return best(self.probabilities(inputs), self.classes, top_k)


__all__ = ["Predictor", "TopK"]
