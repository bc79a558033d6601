"""Checkpoints: atomic saves, safe loads (``weights_only=True``) and exact resume.

Lightning writes its checkpoints through :class:`AtomicCheckpointIO`, so an interrupted save never
replaces a good ``last.ckpt`` with a truncated one. :class:`ResumeCallback` stores the Python,
NumPy and torch random states in the checkpoint so a resumed run draws the same shuffles and
augmentations as an uninterrupted one, and keeps the CSV log continuous across the resume.
"""

from __future__ import annotations

import pickle
import random
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytorch_lightning as pl
import torch
from lightning_fabric.plugins.io.torch_io import TorchCheckpointIO

from pentad_core.errors import CheckpointError
from pentad_core.files import atomic_open
from pentad_core.logs import ResumableCSVLogger, pending_epoch_row


def atomic_save(obj: Any, path: str | Path) -> Path:
    """``torch.save`` to a temporary file, fsync, then rename over ``path``.

    Args:
        obj: Tensors, state dicts and plain Python containers (loadable with ``weights_only=True``).
        path: Destination.

    Returns:
        ``path`` as a :class:`~pathlib.Path`.
    """
    path = Path(path)
    with atomic_open(path, "wb") as handle:
        torch.save(obj, handle)
    return path


def load_checkpoint(path: str | Path, map_location: str | torch.device = "cpu", *, mmap: bool = False) -> Any:
    """Load a checkpoint with ``weights_only=True`` (no arbitrary code from pickles).

    ``mmap=True`` maps the tensors' storage instead of reading it: enough to check that a file is a
    complete, safe checkpoint before a run relies on it, without reading it twice.

    Raises:
        CheckpointError: If the file is missing, truncated, not a checkpoint, or holds objects that
            are not allowed in a weights-only load.
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint not found: {path}.", "Check --checkpoint or --resume.")
    try:
        return torch.load(path, map_location=map_location, weights_only=True, mmap=mmap)
    except (pickle.UnpicklingError, zipfile.BadZipFile, EOFError, RuntimeError, ValueError, IndexError, KeyError,
            TypeError, AttributeError, UnicodeDecodeError) as error:  # fmt: skip
        # torch.load surfaces a foreign or damaged file as any of these, depending on where it breaks.
        reason = str(error).strip().splitlines()[0][:160] if str(error).strip() else type(error).__name__
        raise CheckpointError(f"checkpoint {path} cannot be loaded ({reason}).", "Is the file complete?") from None


class AtomicCheckpointIO(TorchCheckpointIO):
    """Lightning checkpoint IO that writes through a temporary file and a rename."""

    def save_checkpoint(self, checkpoint: dict[str, Any], path: str | Path, storage_options: Any = None) -> None:
        """Save ``checkpoint`` to ``path`` atomically."""
        atomic_save(checkpoint, path)

    def load_checkpoint(
        self, path: str | Path, map_location: Any = None, weights_only: bool | None = None
    ) -> dict[str, Any]:
        """Load with ``weights_only=True`` unless the caller explicitly asks otherwise."""
        path = Path(path)
        if not path.is_file():
            raise CheckpointError(f"checkpoint not found: {path}.", "Check --checkpoint or --resume.")
        safe = True if weights_only is None else weights_only
        if not safe:
            return torch.load(path, map_location=map_location or "cpu", weights_only=False)
        return load_checkpoint(path, map_location=map_location or "cpu")


def rng_state() -> dict[str, Any]:
    """The Python, NumPy and torch (CPU and CUDA) random states, in weights-only-loadable types."""
    name, keys, position, has_gauss, cached = np.random.get_state()
    return {
        "python": random.getstate(),
        "numpy": {
            "name": name,
            "keys": torch.from_numpy(np.asarray(keys, dtype=np.int64)),
            "position": int(position),
            "has_gauss": int(has_gauss),
            "cached_gaussian": float(cached),
        },
        "torch": torch.get_rng_state(),
        # A process that never initialised CUDA has drawn no CUDA random numbers; asking
        # `is_available()` instead would load NVML on every save, a cost even without a GPU.
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_initialized() else [],
    }


def set_rng_state(state: dict[str, Any]) -> None:
    """Restore a state captured by :func:`rng_state`."""
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    numpy_state = state["numpy"]
    np.random.set_state(
        (
            numpy_state["name"],
            numpy_state["keys"].numpy().astype(np.uint32),
            numpy_state["position"],
            numpy_state["has_gauss"],
            numpy_state["cached_gaussian"],
        )
    )
    torch.set_rng_state(state["torch"])
    if state.get("cuda") and torch.cuda.is_available() and len(state["cuda"]) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all(state["cuda"])


class ResumeCallback(pl.Callback):
    """What pentad adds to Lightning's checkpoints so that ``--resume last`` continues exactly.

    - The Python, NumPy and torch random states (:func:`rng_state`), restored when Lightning
      restores the callbacks, before the next epoch starts: the resumed run draws the same
      shuffles and augmentations as an uninterrupted one.
    - With a :class:`~pentad_core.logs.ResumableCSVLogger`, the epoch row a checkpoint may be
      written ahead of (:func:`~pentad_core.logs.pending_epoch_row`); on resume the CSV log drops
      the rows logged after the checkpoint and writes that row if it was lost.
    - On Ctrl-C, a checkpoint to resume from (:meth:`on_exception`).

    One callback for all three because all serve ``--resume``, so what resume needs is in one place;
    the number of callbacks barely affects the speed of a step (docs/benchmarks.md).
    """

    pending_row_key = "pentad_pending_epoch_row"

    def __init__(self, csv_logger: ResumableCSVLogger | None = None, last_checkpoint: Path | None = None) -> None:
        self.csv_logger = csv_logger
        self.last_checkpoint = last_checkpoint
        self._pending_row: dict[str, Any] | None = None

    def on_exception(self, trainer: pl.Trainer, pl_module: pl.LightningModule, exception: BaseException) -> None:
        """On Ctrl-C, leave a checkpoint ``--resume last`` can continue from.

        The last end-of-epoch checkpoint is kept when there is one: resuming from it repeats the
        interrupted epoch from its start, so the finished run equals an uninterrupted one. Only an
        interruption in the first epoch writes a checkpoint at the interruption (one process only;
        a distributed save would wait for ranks that are shutting down).
        """
        if not isinstance(exception, KeyboardInterrupt) or self.last_checkpoint is None:
            return
        if trainer.world_size == 1 and not self.last_checkpoint.is_file():
            trainer.save_checkpoint(self.last_checkpoint)

    def state_dict(self) -> dict[str, Any]:
        """The random states, captured at checkpoint time."""
        return rng_state()

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Restore the random states."""
        set_rng_state(state_dict)

    def on_save_checkpoint(self, trainer: pl.Trainer, pl_module: pl.LightningModule, checkpoint: dict) -> None:
        """Store the epoch's training row when the checkpoint comes before it is logged."""
        if self.csv_logger is not None and (row := pending_epoch_row(trainer)) is not None:
            checkpoint[self.pending_row_key] = row

    def on_load_checkpoint(self, trainer: pl.Trainer, pl_module: pl.LightningModule, checkpoint: dict) -> None:
        """Remember the pending row until training starts."""
        self._pending_row = checkpoint.get(self.pending_row_key)

    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        """Called once the checkpoint (if any) has restored ``global_step``: continue the CSV log."""
        if self.csv_logger is not None and trainer.global_step > 0 and trainer.is_global_zero:
            self.csv_logger.continue_from(trainer.global_step, self._pending_row)
        self._pending_row = None


def resolve_resume(resume: str | None, run_path: str | Path, last: str = "last.ckpt") -> Path | None:
    """Turn ``--resume last|PATH`` into a checkpoint path.

    Args:
        resume: ``None``, ``"last"`` or a checkpoint path.
        run_path: The run folder whose ``checkpoints/<last>`` ``"last"`` means.
        last: File name of the latest checkpoint (``last.zip`` for the rl app's agents).

    Raises:
        CheckpointError: If the checkpoint does not exist.
    """
    if resume is None:
        return None
    path = Path(run_path) / "checkpoints" / last if resume == "last" else Path(resume)
    if not path.is_file():
        raise CheckpointError(
            f"no checkpoint to resume from at {path}.", "Give the --out of an interrupted run, or a checkpoint path."
        )
    return path


def load_module(
    module_class: type[pl.LightningModule],
    path: str | Path,
    *,
    build: Callable[[dict[str, Any]], pl.LightningModule] | None = None,
    map_location: str | torch.device = "cpu",
) -> pl.LightningModule:
    """Rebuild a trained LightningModule from a Lightning checkpoint, in eval mode.

    The checkpoint is read with ``weights_only=True``; the module is built from its saved
    ``hyper_parameters`` (``module_class(**hyper_parameters)``, or ``build(hyper_parameters)`` when
    the module needs more than its hyperparameters, e.g. the data's graph) and given its weights.

    Args:
        module_class: The domain's LightningModule class (named in messages).
        path: A ``.ckpt`` written by the trainer.
        build: Optional constructor from the hyperparameters dict.
        map_location: Where the tensors go.

    Raises:
        CheckpointError: If the file is missing or damaged, is not a Lightning checkpoint, or its
            weights do not fit the module its hyperparameters describe.
    """
    checkpoint = load_checkpoint(path, map_location)
    if not isinstance(checkpoint, dict) or "state_dict" not in checkpoint or "hyper_parameters" not in checkpoint:
        raise CheckpointError(f"{path} is not a {module_class.__name__} checkpoint (no state_dict/hyper_parameters).")
    hyper_parameters = dict(checkpoint["hyper_parameters"])
    try:
        module = build(hyper_parameters) if build is not None else module_class(**hyper_parameters)
        module.load_state_dict(checkpoint["state_dict"])
    except (RuntimeError, TypeError, KeyError, ValueError) as error:
        first = str(error).strip().splitlines()[0][:200] if str(error).strip() else type(error).__name__
        raise CheckpointError(f"checkpoint {path} does not fit {module_class.__name__} ({first}).") from None
    return module.eval()


def copy_matching_weights(
    module: torch.nn.Module, path: str | Path, prefix: str = "", exclude: tuple[str, ...] = ()
) -> list[str]:
    """Initialise ``module`` from a checkpoint's tensors whose names (under ``prefix``) and shapes match.

    Used for ``--pretrained``: a network trained on other data lends every layer that fits; the
    rest (typically the output head) keeps its fresh initialisation.

    Args:
        module: The module to initialise in place.
        path: A Lightning checkpoint (its ``state_dict``) or a saved state dict.
        prefix: Only keys starting with it are copied (e.g. ``"net."``: the network, not the loss).
        exclude: Keys never copied (e.g. the new dataset's normalisation buffers).

    Returns:
        The names of the module's tensors that were *not* copied (freshly initialised).

    Raises:
        CheckpointError: If the file cannot be read or no tensor matches.
    """
    state = load_checkpoint(path)
    state = state.get("state_dict", state) if isinstance(state, dict) else {}
    own = module.state_dict()
    matching = {
        key: value
        for key, value in state.items()
        if key.startswith(prefix)
        and key in own
        and key not in exclude
        and getattr(value, "shape", None) == own[key].shape
    }
    if not matching:
        raise CheckpointError(f"--pretrained {path} holds no tensor that fits this model.", "Is it the same network?")
    own.update(matching)
    module.load_state_dict(own)
    return [key for key in own if key not in matching]
