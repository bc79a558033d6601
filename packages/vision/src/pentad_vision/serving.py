"""``serve``: a trained vision run over HTTP, on core's serving layer (:mod:`pentad_core.serving`).

``POST /v1/classify`` takes one or more images, either as a multipart upload (field ``files``, repeated)
or as a raw body with an image content type (``image/png``, ``image/jpeg``, ...), and answers the
``k`` most probable labels of each image (``?k=5``). ``?gradcam=true`` adds a Grad-CAM overlay of the
top class per image (base64 PNG); Grad-CAM needs gradients, so it is always computed with the torch
network, also when the classification runs on ONNX Runtime (the answer says so).

Preprocessing is the Predictor's: each image is converted to the run's channels (grey or RGB) and
resized to the run's square size (Pillow, bilinear) exactly as ``predict`` reads files, so every
image has the same shape and images of all requests are batched together by the dynamic batcher.
The run's test-time augmentation (flip, shifts) is applied on both backends.

Backends: ``onnx`` (default) runs the network exported with its normalisation (dynamic batch,
parity-checked); the export is made on the first start into ``<run>/serve/<checkpoint>.onnx`` and
reused while the checkpoint is unchanged (size and modification time recorded beside it). When the
run folder is read-only it goes to the system's temporary folder. ``torch`` runs the
:class:`~pentad_vision.predictor.Predictor`. A model registered ``exportable=False``, or whose export
fails (a failed parity check, no writable folder), is served with torch, and the terminal says so.

Client errors: 415 for a content type that is not an image or multipart (or an image format other
than those ``predict`` reads), 422 for an undecodable image, an image whose colour mode cannot be
converted to the run's channels, a multipart body without ``files`` or with more than
:data:`MAX_IMAGES`, 413 for a body over ``--max-body-mb`` (also when sent chunked) or an image over
:data:`MAX_PIXELS` pixels.
"""

from __future__ import annotations

import asyncio
import base64
import copy
import io
from collections.abc import Callable
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np
import torch

from pentad_core.errors import ConfigError, PentadError

try:  # at module level: FastAPI resolves the route's annotations here
    from fastapi import Query, Request
except ModuleNotFoundError:  # without the serve extra, `serve` says what to install (one line, exit 2)
    raise ConfigError("serving needs the serve extra: pip install 'pentad-vision[serve]'.") from None
from pentad_core.serving import (
    ClientError,
    ServeOptions,
    Service,
    media_type,
    onnx_session,
    read_body,
    read_multipart,
    serving_export,
)
from pentad_vision.predictor import Predictor
from pentad_vision.registry import MODELS

#: Images per request at most (422 above).
MAX_IMAGES = 64
#: Largest image accepted, in pixels (413 above): 4096 x 4096. Checked before the pixels are decoded.
MAX_PIXELS = 4096 * 4096
#: Image formats accepted (Pillow's names): what ``predict`` reads.
FORMATS = ("PNG", "JPEG", "BMP", "GIF", "TIFF", "WEBP", "PPM")
#: Colour modes that convert to grey or RGB (Pillow's names); others (LAB, HSV, ...) are 422.
MODES = ("1", "L", "LA", "La", "P", "PA", "RGB", "RGBA", "RGBa", "RGBX", "CMYK", "YCbCr", "I", "F",
         "I;16", "I;16L", "I;16B", "I;16N")  # fmt: skip
#: Longest side of the Grad-CAM overlay PNG, pixels (the upload is scaled to it, up or down).
OVERLAY_SIDE = 224
#: Grad-CAM always runs on the torch network; the answer carries this note.
GRADCAM_NOTE = "Grad-CAM is computed with the torch network (also on the onnx backend): it needs gradients"

#: OpenAPI description of the body (the route reads the body itself, to bound its size).
OPENAPI_BODY = {
    "requestBody": {
        "required": True,
        "content": {
            "multipart/form-data": {
                "schema": {
                    "type": "object",
                    "required": ["files"],
                    "properties": {
                        "files": {
                            "type": "array",
                            "items": {"type": "string", "format": "binary"},
                            "description": f"1 to {MAX_IMAGES} images (PNG, JPEG, ...)",
                        }
                    },
                }
            },
            "image/png": {"schema": {"type": "string", "format": "binary"}},
            "image/jpeg": {"schema": {"type": "string", "format": "binary"}},
        },
    }
}


@dataclass(frozen=True)
class Upload:
    """One decoded image: the network's input and what the Grad-CAM overlay is drawn on.

    Attributes:
        name: The uploaded file name (``"body"`` for a raw body).
        pixels: ``uint8 (C, S, S)`` at the run's channels and size (what the Predictor feeds the network).
        display: ``uint8 (H, W, 3)``: the upload in RGB, its longest side scaled to :data:`OVERLAY_SIDE`.
    """

    name: str
    pixels: np.ndarray
    display: np.ndarray


def decode_upload(name: str, data: bytes, image_size: int, channels: int) -> Upload:
    """Decode an uploaded image as the Predictor reads image files.

    Raises:
        ClientError: 415 for a format other than :data:`FORMATS`, 413 above :data:`MAX_PIXELS`, 422
            for bytes that are not a decodable image or a colour mode that does not convert.
    """
    from PIL import Image, UnidentifiedImageError

    from pentad_vision.data.imagefolder import decode_image

    if not data:
        raise ClientError(f"{name}: the file is empty", 422)
    try:
        with Image.open(io.BytesIO(data)) as image:  # reads the header only
            kind, mode, (width, height) = image.format, image.mode, image.size
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError, Image.DecompressionBombError):
        raise ClientError(f"{name}: not a decodable image (send PNG or JPEG)", 422) from None
    if kind not in FORMATS:
        raise ClientError(f"{name}: image format {kind} is not accepted; send PNG or JPEG", 415)
    if width * height > MAX_PIXELS:
        raise ClientError(f"{name}: {width}x{height} pixels is over the limit of {MAX_PIXELS} pixels", 413)
    if mode not in MODES:
        target = "RGB" if channels == 3 else "grey"
        raise ClientError(f"{name}: colour mode {mode} cannot be converted to {target} for this model", 422)
    try:
        pixels = decode_image(io.BytesIO(data), image_size, channels)  # type: ignore[arg-type]
        with Image.open(io.BytesIO(data)) as image:
            picture = image.convert("RGB")
            scale = OVERLAY_SIDE / max(width, height)
            size = (max(1, round(width * scale)), max(1, round(height * scale)))
            display = np.array(picture.resize(size, Image.BILINEAR), dtype=np.uint8)
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as error:
        raise ClientError(f"{name}: the image cannot be decoded ({type(error).__name__})", 422) from None
    return Upload(name, pixels, display)


def png_base64(array: np.ndarray) -> str:
    """``uint8 (H, W[, 3])`` as a base64 PNG."""
    from PIL import Image

    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format="PNG")
    return base64.b64encode(buffer.getvalue()).decode("ascii")


class OnnxNet:
    """The exported network as a callable on torch tensors, so the run's test-time augmentation wraps it."""

    def __init__(self, session: Any) -> None:
        self.session = session
        self.input = session.get_inputs()[0].name

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        array = x.detach().cpu().float().contiguous().numpy()
        return torch.from_numpy(self.session.run(None, {self.input: array})[0])


def onnx_model(predictor: Predictor, log: Callable[[str], None] = print) -> Path:
    """The run's network as ONNX for serving (core's serve cache; exported with the export verb's parity check)."""
    from pentad_vision import pipeline

    return serving_export(
        predictor.run.folder, predictor.run.checkpoint, lambda path: pipeline.export_onnx(predictor, path), log
    )


class Classifier:
    """The served model: class probabilities of batches of images, and Grad-CAM overlays.

    Args:
        predictor: The run's Predictor (on ``device``).
        backend: ``"onnx"`` or ``"torch"``.
        session: The ONNX Runtime session (``onnx`` backend).
    """

    def __init__(self, predictor: Predictor, backend: str, session: Any = None) -> None:
        self.predictor = predictor
        self.backend = backend
        self.onnx = OnnxNet(session) if session is not None else None
        self._gradcam_net: torch.nn.Module | None = None

    def probabilities(self, uploads: list[Upload]) -> list[list[float]]:
        """Class probabilities per image (one model call for the batch; the run's test-time augmentation)."""
        from pentad_vision.module import to_unit

        batch = torch.from_numpy(np.stack([upload.pixels for upload in uploads]))
        if self.onnx is None:
            return self.predictor.probabilities(batch).tolist()
        with torch.no_grad():
            logits = self.predictor.test_time_augment(self.onnx, to_unit(batch))
        return logits.float().softmax(1).tolist()

    def gradcam(self, items: list[tuple[Upload, int]]) -> list[str]:
        """Grad-CAM overlays (base64 PNG) of the given class per image, with the torch network."""
        import torch.nn.functional as F

        from pentad_vision.gradcam import GradCAM, overlay
        from pentad_vision.module import to_unit

        if self._gradcam_net is None:  # its own copy: the hooks and gradients never touch the classifier's
            self._gradcam_net = copy.deepcopy(self.predictor.net).eval()
        device = self.predictor.device
        batch = to_unit(torch.from_numpy(np.stack([upload.pixels for upload, _ in items]))).to(device)
        classes = torch.tensor([label for _, label in items], device=device)
        heatmaps, _ = GradCAM(self._gradcam_net)(batch, classes)
        answers = []
        for (upload, _), heatmap in zip(items, heatmaps.cpu()):
            height, width = upload.display.shape[:2]
            resized = F.interpolate(heatmap[None, None], size=(height, width), mode="bilinear", align_corners=False)
            picture = torch.from_numpy(upload.display).permute(2, 0, 1).float() / 255
            answers.append(png_base64(overlay(picture, resized[0, 0].clamp(0, 1))))
        return answers


def build_service(source: str | Path, options: ServeOptions, log: Callable[[str], None] = print) -> Service:
    """The vision service of a run folder or checkpoint: ``POST /v1/classify``, the model card, the page.

    Raises:
        ConfigError: ``--device cuda`` without a GPU, or no writable folder for the ONNX export.
        CheckpointError: ``source`` is not a trained vision run.
    """
    if options.device.startswith("cuda") and not torch.cuda.is_available():
        raise ConfigError(f"--device {options.device}: no CUDA GPU is available here.", "Use --device cpu.")
    predictor = Predictor.from_run(source)  # on the CPU first: the ONNX export runs there
    backend = options.backend
    info = MODELS.info(predictor.model_name)
    if backend == "onnx" and not info.exportable:
        log(f"{predictor.model_name} does not export to ONNX (registered exportable=False): serving with torch")
        backend = "torch"
    session = None
    if backend == "onnx":
        try:
            session = onnx_session(onnx_model(predictor, log), options.device)
        except PentadError as error:  # a failed parity check, no writable folder: torch still serves
            log(f"cannot serve with ONNX Runtime ({error}); serving with torch")
            backend = "torch"
    predictor.module.to(options.device)
    predictor.device = options.device
    classifier = Classifier(predictor, backend, session)
    size, channels, classes = predictor.image_size, predictor.in_channels, predictor.classes

    def add_routes(router: Any, serving: Any) -> None:
        @router.post("/v1/classify", openapi_extra=OPENAPI_BODY)
        async def classify(
            request: Request,
            k: int = Query(5, ge=1, description="labels per image (at most the number of classes)"),
            gradcam: bool = Query(False, description="add a Grad-CAM overlay (base64 PNG) of the top class"),
        ) -> dict[str, Any]:
            """Top-k labels and probabilities of each image (multipart ``files`` or a raw image body)."""
            parts = await read_images(request, options)
            uploads = await asyncio.to_thread(lambda: [decode_upload(n, d, size, channels) for n, d in parts])
            rows = await asyncio.gather(*(serving.batchers["classify"].submit(upload) for upload in uploads))
            answers = []
            for upload, row in zip(uploads, rows):
                ranked = np.argsort(-np.asarray(row), kind="stable")[: min(k, len(classes))].tolist()
                labels = [{"label": classes[i], "probability": row[i]} for i in ranked]
                answers.append({"file": upload.name, "labels": labels})
            answer: dict[str, Any] = {"model": predictor.model_name, "backend": backend, "predictions": answers}
            if gradcam:
                items = [
                    (upload, classes.index(found["labels"][0]["label"])) for upload, found in zip(uploads, answers)
                ]
                overlays = await asyncio.gather(*(serving.batchers["gradcam"].submit(item) for item in items))
                for found, png in zip(answers, overlays):
                    found["gradcam_png"] = png
                answer["gradcam_note"] = GRADCAM_NOTE
            return answer

    card = {
        "app": "vision",
        "model": predictor.model_name,
        "dataset": predictor.config.dataset,
        "checkpoint": str(predictor.run.checkpoint),
        "backend": backend,
        "metrics": dict(predictor.metrics),
        "inputs": {
            "kind": "image",
            "multipart_field": "files",
            "raw_body_content_types": ["image/png", "image/jpeg"],
            "formats": list(FORMATS),
            "image_size": size,
            "channels": channels,
            "preprocessing": f"converted to {'RGB' if channels == 3 else 'grey'}, resized to {size}x{size} (bilinear)",
            "max_images": MAX_IMAGES,
            "max_pixels": MAX_PIXELS,
        },
        "labels": classes,
        "test_time_augment": {
            "flip": predictor.test_time_augment.flip,
            "translate": predictor.test_time_augment.translate,
        },
        "gradcam": GRADCAM_NOTE,
    }
    blank = Upload("warmup", np.zeros((channels, size, size), np.uint8), np.zeros((1, 1, 3), np.uint8))
    return Service(
        "vision",
        card,
        add_routes,
        {"classify": classifier.probabilities, "gradcam": classifier.gradcam},
        page=resources.files("pentad_vision").joinpath("static/index.html").read_text(encoding="utf-8"),
        warmup=lambda: classifier.probabilities([blank]),
    )


async def read_images(request: Request, options: ServeOptions) -> list[tuple[str, bytes]]:
    """``(file name, bytes)`` of the images of a request: multipart ``files`` or a raw image body.

    At most ``--max-body-mb`` is read (413 beyond, also for a chunked body).
    """
    kind = media_type(request.headers.get("content-type"))
    if kind != "multipart/form-data" and not kind.startswith("image/"):
        raise ClientError(
            f"content type {kind or 'none'} is not accepted: send multipart/form-data with images in the field "
            "'files', or one image as the body (Content-Type image/png or image/jpeg)",
            415,
        )
    if kind.startswith("image/"):
        return [("body", await read_body(request, options))]
    form = await read_multipart(request, options, max_files=MAX_IMAGES + 1, max_fields=16)
    parts = form.getlist("files")
    if not parts:
        raise ClientError("send one or more images in the multipart field 'files'", 422)
    if len(parts) > MAX_IMAGES:
        raise ClientError(f"at most {MAX_IMAGES} images per request, got {len(parts)}", 422)
    images = []
    for index, part in enumerate(parts):
        if isinstance(part, str):
            raise ClientError("the multipart field 'files' must hold image files, not text", 422)
        name = part.filename or f"file {index + 1}"
        content_type = media_type(part.content_type)
        if content_type and not content_type.startswith("image/") and content_type != "application/octet-stream":
            raise ClientError(f"{name} was sent as {content_type}; send images (image/png, image/jpeg)", 415)
        images.append((name, await part.read()))
    return images


def serve_run(context: Any) -> None:
    """The ``serve`` verb: serve ``--run`` (or ``--checkpoint``) until SIGINT/SIGTERM."""
    from pentad_core.serving import run_server, serve_options

    source = context.args.run or context.checkpoint
    if not source:
        raise ConfigError("`serve` needs --run RUN_DIR (or --checkpoint PATH).", "Give a trained run folder.")
    options = serve_options(context.args)
    run_server(build_service(source, options, context.print), options, context.print)


__all__ = ["MAX_IMAGES", "MAX_PIXELS", "Classifier", "build_service", "decode_upload", "onnx_model", "serve_run"]
