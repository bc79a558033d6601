"""Loading a trained run for inference: the part of every domain's ``Predictor`` that is the same.

A run folder holds what a prediction needs: ``config.yaml`` (the resolved config it ran with),
``metrics.json`` and ``checkpoints/`` (the weights, with the preprocessing statistics the domain
stores in them). :func:`locate_run` finds these from either a run folder or a checkpoint file, and
:class:`Predictor` is the base each domain's ``predictor.py`` subclasses::

    from pentad_medseg.predictor import Predictor

    predictor = Predictor.from_run("runs/medseg/2026-12-01-unet-drive")  # or .../checkpoints/best.ckpt
    masks = predictor.predict(images)

A predictor never needs the training data: everything comes from the run.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, TypeVar

from pentad_core.config import config_from_dict, load_yaml
from pentad_core.errors import CheckpointError, ConfigError

C = TypeVar("C")
P = TypeVar("P", bound="Predictor")

#: Checkpoint files a run folder is searched for, in order of preference.
CHECKPOINT_NAMES = ("best.ckpt", "last.ckpt")


@dataclass(frozen=True)
class TrainedRun:
    """The files of a trained run.

    Attributes:
        folder: The run folder (``config.yaml`` lives there; for a loose checkpoint, its folder).
        checkpoint: The weights file.
        config: ``config.yaml`` as written by the run (empty when the checkpoint has no run folder).
        metrics: ``metrics.json`` (empty when absent).
    """

    folder: Path
    checkpoint: Path
    config: Mapping[str, Any] = field(default_factory=dict)
    metrics: Mapping[str, Any] = field(default_factory=dict)

    def typed_config(self, config_class: type[C]) -> C:
        """The run's config as the domain's config dataclass (validated like any config file).

        Raises:
            ConfigError: If ``config.yaml`` has keys or values this version does not accept.
        """
        try:
            return config_from_dict(config_class, self.config)
        except ConfigError as error:
            raise ConfigError(f"{self.folder / 'config.yaml'}: {error.message}") from None


def run_folder_of(checkpoint: Path) -> Path:
    """``<run>/checkpoints/x.ckpt`` -> ``<run>``; any other file -> its folder."""
    parent = checkpoint.resolve().parent
    return parent.parent if parent.name == "checkpoints" else parent


def locate_run(path: str | Path, checkpoint_names: tuple[str, ...] = CHECKPOINT_NAMES) -> TrainedRun:
    """Find the checkpoint, config and metrics of a run from a run folder or a checkpoint file.

    Args:
        path: A run folder (``--out`` of a training run) or a checkpoint inside one (or anywhere).
        checkpoint_names: For a folder: the files looked for in ``checkpoints/``, first found wins.

    Raises:
        CheckpointError: If ``path`` does not exist or a folder holds none of ``checkpoint_names``.
        ConfigError: If the run's ``config.yaml`` or ``metrics.json`` is unreadable.
    """
    path = Path(path)
    if path.is_dir():
        candidates = [path / "checkpoints" / name for name in checkpoint_names]
        checkpoint = next((candidate for candidate in candidates if candidate.is_file()), None)
        if checkpoint is None:
            looked = ", ".join(f"checkpoints/{name}" for name in checkpoint_names)
            raise CheckpointError(
                f"{path} holds no trained model (looked for {looked}).",
                "Give the --out folder of a finished training run, or a checkpoint file.",
            )
        folder = path
    elif path.is_file():
        checkpoint, folder = path, run_folder_of(path)
    else:
        raise CheckpointError(f"{path} does not exist.", "Give a run folder or a checkpoint file.")
    config_file = folder / "config.yaml"
    config = load_yaml(config_file) if config_file.is_file() else {}
    metrics: dict[str, Any] = {}
    metrics_file = folder / "metrics.json"
    if metrics_file.is_file():
        try:
            metrics = json.loads(metrics_file.read_text(encoding="utf-8"))
        except (json.JSONDecodeError, UnicodeDecodeError):
            raise ConfigError(f"{metrics_file} is not valid JSON; move it away or fix it.") from None
    return TrainedRun(folder=folder, checkpoint=checkpoint, config=config, metrics=metrics)


class Predictor:
    """Base of the domain predictors: load a trained run, answer ``predict(inputs)``.

    A domain subclass sets :attr:`config_class` (and :attr:`checkpoint_names` when its weights
    are not Lightning checkpoints) and implements :meth:`from_trained_run` and :meth:`predict`.

    Attributes:
        run: The files the predictor was loaded from.
        config: The run's typed config.
    """

    #: The domain's config dataclass.
    config_class: ClassVar[type] = object
    #: Checkpoint files looked for in a run folder, in order of preference.
    checkpoint_names: ClassVar[tuple[str, ...]] = CHECKPOINT_NAMES

    def __init__(self, run: TrainedRun, config: Any) -> None:
        self.run = run
        self.config = config

    @classmethod
    def from_run(cls: type[P], path: str | Path, **options: Any) -> P:
        """Load the run in ``path`` (a run folder or a checkpoint file).

        Args:
            path: Run folder or checkpoint.
            **options: Inference options of the domain (device, threshold, ...).
        """
        return cls.from_trained_run(locate_run(path, cls.checkpoint_names), **options)

    @classmethod
    def from_trained_run(cls: type[P], run: TrainedRun, **options: Any) -> P:
        """Build the predictor from located run files (the domain's loading logic)."""
        raise NotImplementedError

    def predict(self, inputs: Any) -> Any:
        """Predictions for ``inputs`` (the domain's input type; see the subclass)."""
        raise NotImplementedError

    @property
    def metrics(self) -> Mapping[str, Any]:
        """The run's recorded metrics."""
        return self.run.metrics

    def __repr__(self) -> str:
        return f"{type(self).__name__}({str(self.run.checkpoint)!r})"


__all__ = ["CHECKPOINT_NAMES", "Predictor", "TrainedRun", "locate_run", "run_folder_of"]
