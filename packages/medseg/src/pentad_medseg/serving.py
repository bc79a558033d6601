"""``serve``: a trained medseg run over HTTP, on core's serving layer (:mod:`pentad_core.serving`).

``POST /v1/segment`` takes a multipart upload (field ``image``: PNG, JPEG or TIFF, also GIF and BMP;
optional field ``fov``: a 0/1 or 0/255 mask of the image's size) and answers JSON: the mask,
probability map and overlay as base64 PNGs (exactly what ``predict`` writes), the foreground area in
pixels and as a fraction of the FOV (of the image without one), and the number of connected
components (8-connectivity). Inference is the run's sliding window (window, overlap, blending, flip
TTA and threshold from the checkpoint).

Backends: ``onnx`` (default) runs the run's network exported with its normalisation (dynamic height and
width, parity-checked) under ONNX Runtime inside the same sliding window; the export is made on the
first start into ``<run>/serve/<checkpoint>.onnx`` and reused while the checkpoint is unchanged. ``torch``
runs the :class:`~pentad_medseg.predictor.Predictor`.

Dynamic batching batches whole images: the requests gathered by the batcher are grouped by image
size, and each group runs as one ``(B, C, H, W)`` sliding-window pass, whose windows of all the
group's images share the model calls (``infer_batch_size`` windows per call).
"""

from __future__ import annotations

import asyncio
import base64
import io
from collections.abc import Callable
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np
import torch
from fastapi import Request  # at module level: FastAPI resolves the route's annotations here

from pentad_core.errors import ConfigError, DataError
from pentad_core.serving import (
    ClientError,
    ServeOptions,
    Service,
    media_type,
    onnx_session,
    read_multipart,
    serving_export,
)
from pentad_medseg.data.readers import image_array, label_values, labels_from_values
from pentad_medseg.inference import sliding_window_inference
from pentad_medseg.outputs import display_image, png_bytes, prediction_images
from pentad_medseg.predictor import Predictor
from pentad_medseg.registry import MODELS

#: Largest image accepted, in pixels (413 above): 4096 x 4096. Checked before the image is decoded.
MAX_PIXELS = 4096 * 4096
#: Image formats accepted (Pillow's names): what ``predict --input`` reads.
FORMATS = ("PNG", "JPEG", "TIFF", "GIF", "BMP")
#: Content types accepted for the uploaded files (none or octet-stream: the bytes decide).
CONTENT_TYPES = ("image/png", "image/jpeg", "image/tiff", "image/gif", "image/bmp", "image/x-ms-bmp",
                 "application/octet-stream", "")  # fmt: skip

#: OpenAPI description of the multipart body (the route reads the form itself, to bound its size).
OPENAPI_BODY = {
    "requestBody": {
        "required": True,
        "content": {
            "multipart/form-data": {
                "schema": {
                    "type": "object",
                    "required": ["image"],
                    "properties": {
                        "image": {"type": "string", "format": "binary", "description": "PNG, JPEG or TIFF image"},
                        "fov": {"type": "string", "format": "binary", "description": "optional FOV mask (0/1, 0/255)"},
                        "include_input": {"type": "boolean", "description": "also return the input as PNG"},
                    },
                }
            }
        },
    }
}


@dataclass(frozen=True)
class Upload:
    """One decoded request: the raw image ``(C, H, W)`` float32 and the optional ``(H, W)`` bool FOV."""

    image: np.ndarray
    fov: np.ndarray | None
    include_input: bool


class SegmentationModel:
    """Sliding-window probabilities ``(B, K, H, W)`` of same-size raw images, on PyTorch or ONNX Runtime.

    Args:
        predictor: The trained run (its settings; its network for the torch backend).
        session: An ONNX Runtime session of the exported network (raw image -> logits), or ``None`` for torch.
    """

    def __init__(self, predictor: Predictor, session: Any = None) -> None:
        self.predictor = predictor
        self.session = session

    def _onnx_logits(self, tiles: torch.Tensor) -> torch.Tensor:
        return torch.from_numpy(self.session.run(None, {"image": np.ascontiguousarray(tiles.numpy())})[0])

    def __call__(self, images: torch.Tensor) -> np.ndarray:
        """Probabilities of raw images ``(B, C, H, W)``."""
        if self.session is None:
            return self.predictor.module.predict_probabilities(images, tta=self.predictor.tta).float().cpu().numpy()
        hp = self.predictor.module.hparams
        return sliding_window_inference(
            self._onnx_logits, images, window=hp.window, overlap=hp.overlap, batch_size=hp.infer_batch_size,
            blending=hp.blending, tta=self.predictor.tta,
        ).numpy()  # fmt: skip

    def predict_batch(self, images: list[np.ndarray]) -> list[np.ndarray]:
        """Probabilities ``(K, H, W)`` of each image: images of one size run as one batch."""
        results: list[np.ndarray | None] = [None] * len(images)
        groups: dict[tuple[int, ...], list[int]] = {}
        for index, image in enumerate(images):
            groups.setdefault(image.shape, []).append(index)
        for indexes in groups.values():
            probabilities = self(torch.from_numpy(np.stack([images[index] for index in indexes])))
            for row, index in enumerate(indexes):
                results[index] = probabilities[row]
        return results  # type: ignore[return-value]


def exported_model(predictor: Predictor, log: Callable[[str], None] = print) -> Path:
    """The run's network as ONNX for serving (core's serve cache), exported with the parity check at two
    image sizes when missing or made from another checkpoint.

    Raises:
        ParityError: If the exported model disagrees with PyTorch.
    """
    from pentad_medseg.pipeline import export_network

    window = int(predictor.module.hparams.window)

    def export(path: Path) -> dict[str, Any]:
        return export_network(predictor.network(), predictor.in_channels, path, window).as_metrics()

    return serving_export(predictor.run.folder, predictor.run.checkpoint, export, log)


def label_names(classes: int) -> list[str]:
    """``background`` then ``foreground`` (binary) or ``class 1`` .. ``class N-1``."""
    return ["background", "foreground"] if classes == 2 else ["background", *(f"class {k}" for k in range(1, classes))]


def _undecodable(what: str, error: Exception) -> ClientError:
    return ClientError(f"cannot decode the {what}: {type(error).__name__}: {error}".replace("\n", " "), 422)


def _open(data: bytes, what: str) -> Any:
    """Open uploaded bytes with Pillow (lazily: the pixels are not decoded yet), checking format and size."""
    from PIL import Image

    try:
        opened = Image.open(io.BytesIO(data))
    except Image.DecompressionBombError:
        raise ClientError(f"the {what} is over the limit of {MAX_PIXELS} pixels", 413) from None
    except Exception as error:  # untrusted bytes: whatever Pillow raises, the client sent it
        raise _undecodable(what, error) from None
    if opened.format not in FORMATS:
        raise ClientError(f"the {what} is {opened.format}; send PNG, JPEG or TIFF (also GIF, BMP)", 415)
    width, height = opened.size
    if width * height > MAX_PIXELS:
        raise ClientError(f"the {what} has {width}x{height} pixels, over the limit of {MAX_PIXELS}", 413)
    return opened


def decode_upload(image_bytes: bytes, fov_bytes: bytes | None, channels: int, include_input: bool) -> Upload:
    """Decode and check one request's files.

    Raises:
        ClientError: 415 for a format that is not an image format accepted, 413 for too many pixels, 422
            for bytes that do not decode, a channel count the model does not take, values that are not
            finite, or a FOV mask of another size or with values other than 0/1 or 0/255.
    """
    opened = _open(image_bytes, "image")
    try:
        image = image_array(opened)
    except Exception as error:
        raise _undecodable("image", error) from None
    if image.shape[0] != channels:
        raise ClientError(f"the image has {image.shape[0]} channel(s); this model takes {channels}", 422)
    if not np.isfinite(image).all():
        raise ClientError("the image holds NaN or infinite values", 422)
    fov = None
    if fov_bytes:
        opened_fov = _open(fov_bytes, "FOV mask")
        try:
            values = label_values(opened_fov)
            fov = labels_from_values(values, "the FOV mask", 2, lossy=opened_fov.format == "JPEG").astype(bool)
        except DataError as error:
            raise ClientError(error.message.replace("\n", " "), 422) from None
        except Exception as error:
            raise _undecodable("FOV mask", error) from None
        if fov.shape != image.shape[1:]:
            size, fov_size = f"{image.shape[2]}x{image.shape[1]}", f"{fov.shape[1]}x{fov.shape[0]}"
            raise ClientError(f"the FOV mask is {fov_size} pixels; the image is {size}", 422)
    return Upload(image, fov, include_input)


def count_components(mask: np.ndarray) -> int:
    """Connected components of a boolean mask (8-connectivity: diagonal vessel pixels stay one vessel)."""
    from scipy.ndimage import label

    return int(label(mask, structure=np.ones((3, 3), dtype=int))[1])


def _b64(array: np.ndarray) -> str:
    return base64.b64encode(png_bytes(array)).decode("ascii")


def describe(upload: Upload, probabilities: np.ndarray, threshold: float, names: list[str]) -> dict[str, Any]:
    """The answer of ``POST /v1/segment``: PNGs (base64), foreground area, components, per-class areas."""
    pictures = prediction_images(upload.image, probabilities, threshold, fov=upload.fov)
    labels = pictures["labels"]
    height, width = labels.shape
    region = int(upload.fov.sum()) if upload.fov is not None else height * width

    def area(mask: np.ndarray) -> dict[str, Any]:
        pixels = int(mask.sum())
        return {"pixels": pixels, "fraction": pixels / region if region else 0.0}

    foreground = labels > 0
    answer: dict[str, Any] = {
        "width": width,
        "height": height,
        "channels": int(upload.image.shape[0]),
        "threshold": threshold,
        "region_pixels": region,
        "region": "fov" if upload.fov is not None else "image",
        "foreground": area(foreground),
        "components": count_components(foreground),
        "classes": [
            {"label": k, "name": names[k], **area(labels == k), "components": count_components(labels == k)}
            for k in range(1, len(names))
        ],
        "mask_png": _b64(pictures["mask"]),
        "probability_png": _b64(pictures["prob"]),
        "overlay_png": _b64(pictures["overlay"]),
    }
    if upload.include_input:
        answer["input_png"] = _b64((display_image(upload.image) * 255).round().astype(np.uint8))
    return answer


async def read_form(request: Request, options: ServeOptions) -> Any:
    """The multipart form of ``request`` (``image``, optional ``fov``), its body bounded by ``--max-body-mb``."""
    if media_type(request.headers.get("content-type")) != "multipart/form-data":
        raise ClientError("send multipart/form-data with the image in the field 'image' (optionally 'fov')", 415)
    return await read_multipart(request, options, max_files=2, max_fields=4)


async def _file(form: Any, field: str, required: bool) -> bytes | None:
    part = form.get(field)
    if part is None or isinstance(part, str):
        if required:
            raise ClientError(f"the multipart field {field!r} must hold an image file", 422)
        return None
    content_type = media_type(part.content_type)
    if content_type not in CONTENT_TYPES:
        raise ClientError(f"the {field} was sent as {content_type}; send PNG, JPEG or TIFF (image/png, ...)", 415)
    data = await part.read()
    if not data and required:
        raise ClientError(f"the multipart field {field!r} is empty", 422)
    return data or None


def build_service(run: str | Path, options: ServeOptions, log: Callable[[str], None] = print) -> Service:
    """The medseg service of a trained run folder or checkpoint (``apps/medseg serve``).

    Raises:
        CheckpointError: If ``run`` holds no medseg checkpoint.
        ConfigError: If ``--device cuda`` is asked without a GPU.
    """
    if options.device.startswith("cuda") and not torch.cuda.is_available():
        raise ConfigError(f"--device {options.device}: no GPU is visible here; use --device cpu.")
    backend = options.backend
    predictor = Predictor.from_run(run, device=options.device if backend == "torch" else "cpu")
    model_name = str(predictor.module.hparams.model)
    if backend == "onnx" and model_name in MODELS.names() and not MODELS.info(model_name).exportable:
        log(f"{model_name} cannot be exported to ONNX (registered exportable=False): serving it with --backend torch")
        backend = "torch"
    session = onnx_session(exported_model(predictor, log), options.device) if backend == "onnx" else None
    model = SegmentationModel(predictor, session)
    channels, threshold, names = predictor.in_channels, predictor.threshold, label_names(predictor.classes)
    hp = predictor.module.hparams

    def add_routes(router: Any, serving: Any) -> None:

        @router.post("/v1/segment", openapi_extra=OPENAPI_BODY)
        async def segment(request: Request) -> dict[str, Any]:
            """Segment one image (multipart field ``image``, optional ``fov``): mask, probability map and
            overlay (base64 PNG), foreground area and connected components."""
            form = await read_form(request, serving.options)
            try:
                image_bytes = await _file(form, "image", required=True)
                fov_bytes = await _file(form, "fov", required=False)
                include = str(form.get("include_input", "")).lower() in ("1", "true", "yes", "on")
            finally:
                await form.close()
            assert image_bytes is not None
            upload = await asyncio.to_thread(decode_upload, image_bytes, fov_bytes, channels, include)
            probabilities = await serving.batchers["segment"].submit(upload.image)
            return await asyncio.to_thread(describe, upload, probabilities, threshold, names)

    card = {
        "model": model_name,
        "dataset": predictor.config.dataset,
        "metrics": dict(predictor.metrics),
        "backend": backend,
        "inputs": {
            "image": "multipart field 'image': PNG, JPEG or TIFF (also GIF, BMP), raw values as in training",
            "channels": channels,
            "max_pixels": MAX_PIXELS,
            "fov": "optional multipart field 'fov': a mask of the image's size, 0/1 or 0/255",
        },
        "inference": {
            "window": int(hp.window),
            "overlap": float(hp.overlap),
            "blending": str(hp.blending),
            "tta": predictor.tta,
            "threshold": threshold,
        },
        "labels": names,
    }
    window = int(hp.window)
    page = resources.files("pentad_medseg").joinpath("static", "index.html").read_text(encoding="utf-8")
    return Service(
        "medseg", card, add_routes, {"segment": model.predict_batch}, page=page,
        warmup=lambda: model.predict_batch([np.zeros((channels, window, window), np.float32)]),
    )  # fmt: skip


__all__ = ["MAX_PIXELS", "SegmentationModel", "build_service", "count_components", "decode_upload", "exported_model"]
