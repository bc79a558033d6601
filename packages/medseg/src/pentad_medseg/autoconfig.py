"""Self-configuration of ``folder`` and ``nifti`` runs from a fingerprint of the training images.

The method follows nnU-Net's experiment planner (Isensee et al., Nature Methods 2021), rewritten for
2D patches and for a CPU as well as a GPU:

1. :func:`fingerprint` measures the training split once: image count, median size, channels, the
   in-plane spacing and slice thickness of NIfTI volumes, intensity percentiles of the foreground
   pixels, and the foreground share inside the field of view.
2. :func:`plan` turns it into :class:`~pentad_core.autoconfig.Choice` s with a reason each:

   - **patch size** = the median image side (the whole image where it fits, as nnU-Net), capped by
     what one step may cost (:data:`MAX_PATCH`: 128 on a CPU, 512 on a GPU), rounded down to a
     multiple of ``2**depth``;
   - **U-Net depth** = down-sampling steps until the deepest feature map is 8 pixels (2..6), **width**
     16 base channels on a CPU (the measured DRIVE recipe), 32 on a GPU (nnU-Net);
   - **batch size** from a pixel budget per step (:data:`STEP_PIXELS`), at least 2, and at most 5 % of
     the training pixels per batch (nnU-Net's cap); **instance norm** for batches under 8;
   - **foreground oversampling**: half of the patches centred on a foreground pixel when foreground
     is rare (< 10 % of the FOV), else a third (nnU-Net's 33 %);
   - **normalisation**: 8-bit and 16-bit images share one scale, so the training set's channel
     z-score (already the default) stays; NIfTI volumes that look like CT (intensities below -500)
     are clipped to the 0.5-99.5 percentiles of their foreground, other volumes are z-scored per
     volume (their scale is arbitrary);
   - **inference window** = the patch size; **threshold** chosen on the validation images;
3. :func:`budget_choices` times a few training steps of the planned network on a throwaway copy and
   one validation image, and sizes ``patches_per_epoch`` and ``trainer.max_epochs`` for the
   ``time_budget`` (default :data:`DEFAULT_BUDGET` for sizing only): validation passes take at most
   15 % of it, the steps between them the rest, with a cosine schedule over the epochs. The budget is
   training time; the test pass comes after it.

Choices for keys the recipe, ``--config``, the options or ``--set`` set are never applied
(:func:`pentad_core.autoconfig.self_configure`).
"""

from __future__ import annotations

import math
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
from pentad_medseg.config import MedsegConfig
from pentad_medseg.data import SegmentationData

#: Datasets that configure themselves (the generic ones; named datasets have tuned recipes).
SELF_CONFIGURED = ("folder", "nifti")
#: Largest patch side per device kind. On a CPU optimiser steps are scarce: at the same pixels per step,
#: 128-pixel patches in batches of 8 beat 256-pixel patches in batches of 2 on the validation images of
#: a generated development set of 500-pixel photographs (Dice 0.78 vs 0.47 after 6 minutes; not the
#: benchmark's images), so a CPU stops at 128; a GPU goes to 512 (nnU-Net's 2D patches).
MAX_PATCH = {"cpu": 128, "gpu": 512}
#: Patch pixels per training step: 32 x 64 x 64 on a CPU (the measured DRIVE recipe), 12 x 512 x 512 on a GPU.
STEP_PIXELS = {"cpu": 32 * 64 * 64, "gpu": 12 * 512 * 512}
#: Base channels of the U-Net per device kind.
BASE_CHANNELS = {"cpu": 16, "gpu": 32}
#: The budget the epochs are sized for when no ``time_budget`` is given (training is not stopped by it).
DEFAULT_BUDGET = "10m"
#: Share of the time budget left unused for noise (a busy machine runs slower than measured).
RESERVE = 0.15
#: Pixels sampled per image for the intensity statistics.
SAMPLE_PIXELS = 20000


def fingerprint(data: SegmentationData) -> dict[str, Any]:
    """What the planner needs to know about the training images (YAML-safe values).

    Keys: ``images``, ``channels``, ``classes``, ``median_size`` ``[H, W]``, ``min_size`` ``[H, W]``,
    ``foreground_share`` (foreground pixels / FOV pixels), ``intensity`` (per channel, over foreground
    pixels: ``p00_5``, ``p99_5``, ``mean``, ``std``; and ``min``/``max`` of all pixels), and for NIfTI
    slices ``spacing`` (median ``[x, y, z]`` from the affines).
    """
    train = data.train
    rng = np.random.default_rng(0)
    sizes = np.array([item.shape for item in train])
    fov_pixels = sum(int(item.fov.sum()) for item in train)
    fg_pixels = sum(int(((item.mask > 0) & item.fov).sum()) for item in train if item.mask is not None)
    samples, everything = [], []
    for item in train:
        flat = item.image.reshape(item.image.shape[0], -1)
        everything.append(flat[:, rng.integers(0, flat.shape[1], min(flat.shape[1], SAMPLE_PIXELS))])
        where = np.flatnonzero(((item.mask > 0) & item.fov).ravel()) if item.mask is not None else np.array([])
        if where.size:
            samples.append(flat[:, rng.choice(where, min(where.size, SAMPLE_PIXELS), replace=False)])
    pixels = np.concatenate(samples or everything, axis=1).astype(np.float64)
    every = np.concatenate(everything, axis=1)
    result: dict[str, Any] = {
        "images": len(train),
        "validation_images": len(data.val),
        "channels": int(data.in_channels),
        "classes": int(data.classes),
        "median_size": [int(v) for v in np.median(sizes, axis=0)],
        "min_size": [int(v) for v in sizes.min(axis=0)],
        "foreground_share": round(fg_pixels / max(fov_pixels, 1), 4),
        "intensity": {
            "min": round(float(every.min()), 4),
            "max": round(float(every.max()), 4),
            "p00_5": [round(float(v), 4) for v in np.percentile(pixels, 0.5, axis=1)],
            "p99_5": [round(float(v), 4) for v in np.percentile(pixels, 99.5, axis=1)],
            "mean": [round(float(v), 4) for v in pixels.mean(axis=1)],
            "std": [round(float(v), 4) for v in pixels.std(axis=1)],
        },
    }
    affines = [item.meta["affine"] for item in train if "affine" in item.meta]
    if affines:
        spacing = np.median([np.linalg.norm(np.asarray(a)[:3, :3], axis=0) for a in affines], axis=0)
        result["spacing"] = [round(float(v), 4) for v in spacing]
    return result


def device_kind(config: MedsegConfig) -> str:
    """``gpu`` when the run will train on a CUDA device, else ``cpu``."""
    accelerator = str(config.trainer.accelerator or "auto").lower()
    return "gpu" if accelerator in ("auto", "gpu", "cuda") and torch.cuda.is_available() else "cpu"


def _is_ct(fp: dict[str, Any]) -> bool:
    return fp["intensity"]["min"] <= -500 and fp["intensity"]["max"] >= 300


def plan(fp: dict[str, Any], config: MedsegConfig, kind: str = "cpu") -> list[Choice]:
    """The static choices (everything but the epochs) for fingerprint ``fp`` on a ``kind`` device."""
    height, width = fp["median_size"]
    side = min(height, width, MAX_PATCH[kind])
    depth = int(np.clip(math.floor(math.log2(max(side, 16) / 8)), 2, 6))
    patch = max(8, side // 2**depth * 2**depth) if side >= 2**depth else side
    size_text = f"median image {height}x{width}"
    whole = patch >= min(height, width) - 2**depth
    cap = " (the whole image)" if whole else f" (capped at {MAX_PATCH[kind]} on {kind})"
    choices = [Choice("patch_size", patch, f"{size_text}{cap}, a multiple of 2^{depth}")]
    total_pixels = fp["images"] * height * width
    batch = int(np.clip(STEP_PIXELS[kind] // (patch * patch), 2, 64))
    coverage_cap = max(2, int(0.05 * total_pixels // (patch * patch)))
    reason = f"{STEP_PIXELS[kind]:,} patch pixels per step on {kind}"
    if coverage_cap < batch:
        batch, reason = coverage_cap, f"a batch covers at most 5 % of the {total_pixels:,} training pixels (nnU-Net)"
    choices.append(Choice("batch_size", batch, reason))
    if config.model == "unet":
        choices += [
            Choice("model_options.depth", depth, f"{depth} poolings take a {patch}-pixel patch to 8 pixels or less"),
            Choice("model_options.base_channels", BASE_CHANNELS[kind], f"nnU-Net width, sized for {kind}"),
            Choice(
                "model_options.norm",
                "instance" if batch < 8 else "batch",
                f"batch of {batch}: " + ("instance norm (nnU-Net)" if batch < 8 else "batch statistics are stable"),
            ),
        ]
    share = fp["foreground_share"]
    fraction = 0.5 if share < 0.1 else 0.33
    choices.append(
        Choice(
            "foreground_fraction",
            fraction,
            f"foreground is {share:.1%} of the FOV: "
            + ("rare, half the patches centred on it" if fraction == 0.5 else "a third of the patches (nnU-Net)"),
        )
    )
    choices.append(Choice("window", patch, "inference windows of the training patch size (nnU-Net)"))
    if "spacing" in fp:
        choices += _intensity_choices(fp)
    choices.append(Choice("augment", ["flip", "rot90"], "mirroring and 90-degree turns of square patches"))
    if fp["classes"] == 2 and fp["validation_images"]:
        choices.append(Choice("threshold", None, "F1-optimal threshold on the validation images"))
    return choices


def _intensity_choices(fp: dict[str, Any]) -> list[Choice]:
    """NIfTI: CT-like volumes are clipped to their foreground percentiles, others z-scored per volume."""
    intensity = fp["intensity"]
    if _is_ct(fp):
        low, high = intensity["p00_5"][0], intensity["p99_5"][0]
        reason = f"CT-like range {intensity['min']:g}..{intensity['max']:g}: clip to the foreground 0.5-99.5 %"
        return [Choice("dataset_options.clip", [low, high], reason)]
    reason = f"range {intensity['min']:g}..{intensity['max']:g} (not CT): scale differs per volume, z-score each"
    return [Choice("dataset_options.zscore", True, reason)]


def budget_choices(
    config: MedsegConfig, data: SegmentationData, explicit: frozenset[str], kind: str = "cpu"
) -> list[Choice]:
    """``patches_per_epoch``, ``trainer.max_epochs`` and ``scheduler`` for the run's ``time_budget``.

    Times 3 training steps (after one warm-up) of a throwaway module built from ``config`` (the planned
    settings), and one sliding-window pass over a validation image; validation passes (one per epoch)
    may take 15 % of the budget, the steps between them fill the rest (10-250 per epoch), and
    :func:`~pentad_core.autoconfig.epochs_for_budget` fits the epochs into the budget (15 % reserve).
    """
    from pentad_medseg.pipeline import build_loaders, build_module

    budget_text = config.time_budget or DEFAULT_BUDGET
    budget = parse_duration(budget_text)
    with preserved_random_state():  # the run starts from the random state it would have had
        module, _ = build_module(config, data)
        device = torch.device("cuda" if kind == "gpu" else "cpu")
        module = module.to(device)
        train_loader, _, _ = build_loaders(config, data, module)
        images, masks, fovs = (t.to(device) for t in next(iter(train_loader)))
        optimizer = torch.optim.Adam(module.parameters(), lr=config.lr)

        def step() -> None:
            loss = module.loss_fn(module(images), masks, fovs)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()

        module.train()
        step_s = seconds_per_step(step)
        module.eval()
        probe = data.val[0] if data.val else data.train[0]
        image = torch.as_tensor(probe.image)[None].to(device)
        val_image_s = seconds_per_step(lambda: module.predict_probabilities(image, tta=False), steps=1, warmup=0)
    val_s = val_image_s * len(data.val)
    usable = budget * (1 - RESERVE)
    if "patches_per_epoch" in explicit:
        steps = max(1, math.ceil(config.patches_per_epoch / config.batch_size))
        choices = []
    else:
        # validation passes take at most 15 % of the budget; the rest is training steps, 10-250 per epoch
        passes = int(np.clip(0.15 * usable // val_s, 1, 100)) if val_s > 0 else 10
        steps = int(np.clip((usable - passes * val_s) / passes / step_s, 10, 250))
        reason = f"{steps} steps of {step_s:.2f} s between validation passes of {val_s:.1f} s"
        choices = [Choice("patches_per_epoch", steps * config.batch_size, reason)]
    epoch_s = steps * step_s + val_s
    epochs = epochs_for_budget(budget, epoch_s, reserve=RESERVE)
    source = f"--time-budget {budget_text}" if config.time_budget else f"no --time-budget: sized for {DEFAULT_BUDGET}"
    choices.append(Choice("trainer.max_epochs", epochs, f"{source} at {epoch_s:.1f} s per epoch (measured steps)"))
    choices.append(Choice("scheduler", "cosine", f"cosine decay over the {epochs} budgeted epochs"))
    return choices


def configure(config: MedsegConfig, data: SegmentationData, explicit: frozenset[str]) -> tuple[dict, list[Choice]]:
    """Fingerprint ``data`` and derive every choice for ``config`` (the caller applies them).

    Returns:
        ``(fingerprint, choices)``; no choices for a dataset that is not self-configured.
    """
    if config.dataset not in SELF_CONFIGURED:
        return {}, []
    fp = fingerprint(data)
    kind = device_kind(config)
    static = plan(fp, config, kind)
    planned, _ = apply_choices(config, static, explicit)
    return fp, static + budget_choices(planned, data, explicit, kind)


def self_configure_run(context: Any, data: SegmentationData) -> SegmentationData:
    """Self-configure ``context``'s run from ``data`` (``folder``, ``nifti``) and return the data to train on.

    Applies :func:`configure`'s choices through :func:`pentad_core.autoconfig.self_configure` (only keys
    nobody set; recorded in ``config.yaml`` with their reasons; printed); reloads the data when a choice
    changed ``dataset_options`` (NIfTI intensity clipping or z-scoring). A resumed run or
    ``self_configure: false`` keeps its config as it is.
    """
    from pentad_core.autoconfig import self_configure

    config = context.config
    if config.dataset not in SELF_CONFIGURED or not config.self_configure or context.resume_path is not None:
        return data
    fp, choices = configure(config, data, context.explicit_keys)
    configured = self_configure(context, fp, choices)
    if configured.dataset_options != config.dataset_options:
        from pentad_medseg.pipeline import load_data

        data = load_data(configured, context.data_root)
    return data
