"""Self-configuration of the generic ``imagefolder`` dataset: a fingerprint of the images, and rules.

A folder of the user's own images arrives with no recipe. Before decoding it, :func:`probe_folder`
reads the image headers (sizes, colour modes), decodes a small sample (grey stored as RGB? a plain
background?) and counts the images per class; after loading, the split sizes and the per-channel
mean and standard deviation join the fingerprint. The rules below turn it into settings, each with
its reason, and :func:`pentad_core.autoconfig.self_configure` applies the ones nobody set (the
options, ``--set`` and ``--config`` always win), records them in the run's ``config.yaml`` and
prints them. The rules, in one place:

========================  ==========================================================================
setting                   rule
========================  ==========================================================================
input size                the median longest side, kept within 16..64 pixels (two 2x2 poolings of
                          a smaller image leave almost nothing; larger ones cost more than they
                          give on a CPU); every image is resized to it
channels                  1 when every sampled image is grey (grey modes, or RGB files whose three
                          channels agree), else 3
normalisation             per-channel mean and std of the training images (always; in the fingerprint)
flips                     only for colour images: grey images here are mostly glyphs (digits,
                          letters, symbols), which a mirror turns into another or no class
shifts                    random crops after padding by side/16 pixels (at least 1); zero padding
                          when the border is a plain background, reflection otherwise
batch size                the largest power of two <= training images / 16, within 16..128
model width               ``seed-convnet``'s hidden layer: 128 below 2,000 training images, 256 below
                          10,000, else 512
learning-rate schedule    one-cycle (half an epoch of warm-up, linear decay to 0), label smoothing 0.1
epochs                    about 4,000 steps (10..60 epochs); with ``--time-budget``, cut to what
                          fits it at the step time measured on a throwaway copy of the network
========================  ==========================================================================
"""

from __future__ import annotations

import math
import statistics
from pathlib import Path
from typing import Any

import numpy as np
import torch

from pentad_core.autoconfig import (
    Choice,
    apply_choices,
    epochs_for_budget,
    parse_duration,
    preserved_random_state,
    seconds_per_step,
)
from pentad_vision.config import VisionConfig
from pentad_vision.data.base import ImageData

#: Datasets that configure themselves (the generic ones; the named datasets have recipes).
SELF_CONFIGURED = ("imagefolder",)
#: Image headers read at most (sizes and modes), and images decoded at most (grey and background checks).
HEADER_SAMPLE, DECODE_SAMPLE = 2000, 64
GREY_MODES = {"1", "L", "LA", "I", "I;16", "F", "P;grey"}


# ----------------------------------------------------------------------------- fingerprint
def _files_per_class(root: Path) -> tuple[dict[str, int], list[Path]]:
    from pentad_vision.data.imagefolder import _class_files

    folder = root / "train" if (root / "train").is_dir() else root
    classes, files, labels = _class_files(folder)
    counts = np.bincount(np.asarray(labels, dtype=np.int64), minlength=len(classes)).tolist()
    return dict(zip(classes, counts)), files


def _grey_and_border(path: Path) -> tuple[bool, float]:
    """Whether the image's three channels agree (JPEG noise allowed), and its border's spread in [0, 1]."""
    from PIL import Image

    with Image.open(path) as image:
        array = np.asarray(image.convert("RGB"), dtype=np.int16)
    grey = bool(np.abs(array - array.mean(2, keepdims=True)).max() <= 8)
    border = np.concatenate([array[0], array[-1], array[:, 0], array[:, -1]]).astype(np.float32)
    return grey, float(border.std() / 255.0)


def probe_folder(root: str | Path, seed: int = 0) -> dict[str, Any]:
    """What an image folder holds, before decoding it: the pre-load part of the fingerprint.

    Reads the headers of up to :data:`HEADER_SAMPLE` images and decodes up to :data:`DECODE_SAMPLE`
    (a seeded sample of the training images).

    Returns:
        ``images``, ``classes``, ``imbalance`` (largest / smallest class), ``median_size`` ("WxH"),
        ``sizes_vary``, ``grey``, ``plain_background`` and ``median_side`` (the longest side).
    """
    from PIL import Image

    counts, files = _files_per_class(Path(root))
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(files))
    sizes, modes = [], set()
    for index in order[:HEADER_SAMPLE]:
        with Image.open(files[index]) as image:
            sizes.append(image.size)
            mode = image.mode
            if mode == "P":  # a palette of greys is grey
                palette = np.asarray(image.getpalette() or [], dtype=np.int16).reshape(-1, 3)
                mode = "P;grey" if len(palette) and (palette == palette[:, :1]).all() else "P"
            modes.add(mode)
    decoded = [_grey_and_border(files[i]) for i in order[:DECODE_SAMPLE]]
    grey = modes <= GREY_MODES or all(g for g, _ in decoded)
    width = statistics.median(w for w, _ in sizes)
    height = statistics.median(h for _, h in sizes)
    present = [c for c in counts.values() if c > 0]
    return {
        "images": len(files),
        "classes": len(counts),
        "imbalance": round(max(present) / max(min(present), 1), 2),
        "median_size": f"{int(width)}x{int(height)}",
        "median_side": int(max(width, height)),
        "sizes_vary": len(set(sizes)) > 1,
        "grey": bool(grey),
        "plain_background": statistics.median(spread for _, spread in decoded) < 0.05,
    }


def data_facts(data: ImageData) -> dict[str, Any]:
    """The post-load part of the fingerprint: split sizes, normalisation statistics."""
    return {
        "train": len(data.train),
        "val": len(data.val) if data.val is not None else 0,
        "test": len(data.test),
        "mean": [round(v, 3) for v in data.mean],
        "std": [round(v, 3) for v in data.std],
    }


# ----------------------------------------------------------------------------- rules
def input_choices(probe: dict[str, Any]) -> list[Choice]:
    """Input size and channels (dataset options, chosen before decoding)."""
    side, native = min(max(probe["median_side"], 16), 64), probe["median_side"]
    if side > native:
        why = f"median side {native} px < 16: enlarged so two 2x2 poolings keep a 4x4 map"
    elif side < native:
        why = f"median side {native} px > 64: reduced (CPU cost grows with the square of the side)"
    else:
        why = f"median size {probe['median_size']}" + (
            " (sizes vary: every image resized)" if probe["sizes_vary"] else ""
        )
    grey = probe["grey"]
    return [
        Choice("dataset_options.image_size", side, why),
        Choice(
            "dataset_options.channels", 1 if grey else 3, "every sampled image is grey" if grey else "colour images"
        ),
    ]


def _power_of_two_below(value: float) -> int:
    return 2 ** max(0, math.floor(math.log2(max(value, 1.0))))


def training_choices(probe: dict[str, Any], config: VisionConfig, train_images: int) -> list[Choice]:
    """Augmentation, batch size, width and schedule (the epochs come from :func:`epoch_choice`)."""
    grey = probe["grey"]
    side = config.dataset_options.get("image_size") or probe["median_side"]
    batch = min(max(_power_of_two_below(train_images / 16), 16), 128)
    padding = max(1, round(side / 16))
    choices = [
        Choice("batch_size", batch, f"{train_images} training images / 16, a power of two in 16..128"),
        Choice("augment.flip", not grey,
               "grey images (glyphs): a mirror changes the class" if grey else "colour images: mirrors keep the class"),
        Choice("augment.crop_padding", padding, f"random shifts of up to side/16 = {padding} px"),
        Choice("augment.crop_mode", "constant" if probe["plain_background"] else "reflect",
               "plain background: pad with zeros" if probe["plain_background"] else "textured border: reflect"),
        Choice("optim.schedule", "onecycle", "warm-up then linear decay to 0: annealed at any epoch count"),
        Choice("optim.warmup_epochs", 0.5, "half an epoch of warm-up"),
        Choice("optim.label_smoothing", 0.1, "soft targets; few images per class"),
    ]  # fmt: skip
    if config.model == "seed-convnet":
        hidden = 128 if train_images < 2000 else 256 if train_images < 10000 else 512
        choices.append(Choice("model_options.hidden", hidden, f"{train_images} training images"))
    return choices


def epochs_wanted(steps_per_epoch: int) -> int:
    """About 4,000 optimiser steps, within 10..60 epochs."""
    return min(max(math.ceil(4000 / max(steps_per_epoch, 1)), 10), 60)


def measure_epoch_seconds(config: VisionConfig, data: ImageData) -> tuple[float, float]:
    """Seconds per training step, and per epoch (validation included), on a throwaway copy of the network."""
    import torch.nn.functional as F

    from pentad_vision.module import ImageClassifier, to_unit
    from pentad_vision.optim import build_optimizer

    with preserved_random_state():  # the run starts from the random state it would have had
        module = ImageClassifier(
            config.model, data.num_classes, data.in_channels, data.image_size, data.mean, data.std, data.classes,
            augment=vars(config.augment).copy(), model_options=dict(config.model_options),
            ensemble=config.ensemble,
        )  # fmt: skip
        net = module.net.train()
        optimizer = build_optimizer(net, config.optim.name, config.optim.lr, 0.0, config.optim.momentum)
        images, labels = data.train.images[: config.batch_size], data.train.labels[: config.batch_size]
        bf16 = "bf16" in str(config.trainer.precision)

        def step() -> None:
            optimizer.zero_grad()
            with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
                loss = F.cross_entropy(net(module.batch_augment(to_unit(images))), labels)
            loss.backward()
            optimizer.step()

        step_s = seconds_per_step(step, steps=3, warmup=1)
    steps = math.ceil(len(data.train) / config.batch_size)
    val = len(data.val) if data.val is not None else 0
    return step_s, step_s * steps + step_s / 3 * math.ceil(val / config.batch_size)


def epoch_choice(config: VisionConfig, data: ImageData, distributed: bool = False) -> Choice:
    """``trainer.max_epochs``: :func:`epochs_wanted`; with ``--time-budget``, cut to what fits it.

    Without a budget the step rule alone decides (the same epochs on any machine, under any load). With
    one, a training step is timed on a throwaway copy of the network; a distributed run (several processes,
    each would measure its own time) keeps the step rule and lets the trainer stop at the budget.
    """
    steps = math.ceil(len(data.train) / config.batch_size)
    wanted = epochs_wanted(steps)
    rule = f"{steps} steps/epoch: about 4,000 steps (10..60 epochs)"
    if not config.time_budget or distributed:
        return Choice("trainer.max_epochs", wanted, rule)
    step_s, epoch_s = measure_epoch_seconds(config, data)
    fits = epochs_for_budget(parse_duration(config.time_budget), epoch_s, overhead_s=epoch_s / 2)
    if wanted <= fits:
        return Choice(
            "trainer.max_epochs", wanted, f"{rule}; {epoch_s:.0f} s/epoch measured, fits {config.time_budget}"
        )
    why = f"{steps} steps/epoch at {step_s * 1000:.0f} ms/step measured: {fits} fit --time-budget {config.time_budget}"
    return Choice("trainer.max_epochs", fits, why)


# ----------------------------------------------------------------------------- the whole step
def load_self_configured(context: Any, load: Any) -> ImageData:
    """Fingerprint ``context``'s image folder, choose the settings nobody set, load the data with them.

    Args:
        context: The training verb's :class:`~pentad_core.cli.Context` (config, explicit keys, run).
        load: ``load(config, root) -> ImageData`` (:func:`pentad_vision.pipeline.load_data`).

    Returns:
        The data, loaded with the chosen input size and channels; ``context.config`` holds every choice.
    """
    from pentad_core.autoconfig import self_configure

    config: VisionConfig = context.config
    root = context.data_root
    if config.dataset not in SELF_CONFIGURED or not config.self_configure or context.resume_path is not None:
        return load(config, root)
    explicit = context.explicit_keys
    probe = probe_folder(root, config.seed)
    choices = input_choices(probe)
    interim, _ = apply_choices(config, choices, explicit)
    data = load(interim, root)
    choices += training_choices(probe, interim, len(data.train))
    interim, _ = apply_choices(config, choices, explicit)
    if not any(key == "trainer.max_epochs" or key == "trainer" for key in explicit):
        distributed = "ddp" in str(config.trainer.strategy) or str(config.trainer.devices) not in ("1", "auto")
        choices.append(epoch_choice(interim, data, distributed))
    fingerprint = {key: value for key, value in probe.items() if key != "median_side"} | data_facts(data)
    self_configure(context, fingerprint, choices)
    return data
