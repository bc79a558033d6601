"""``apps/medseg serve`` as a real process on 127.0.0.1: answers, bad input, both backends, the page in Chromium.

One small grey (1-channel) run is trained once for the module; one ONNX server is shared by the tests
that do not need their own options.
"""

from __future__ import annotations

import base64
import http.client
import io
import json
import os
import sys
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
import torch

pytest.importorskip("fastapi")
pytest.importorskip("uvicorn")

from PIL import Image

from pentad_core.predictor import locate_run
from pentad_core.testing import ServerProcess, browser_page, free_port, keep_screenshot, requires_chromium
from pentad_medseg.cli import main
from pentad_medseg.data.readers import read_image
from pentad_medseg.predictor import Predictor
from pentad_medseg.serving import count_components

SIZE = 64


def multipart(*parts: tuple[str, str, bytes, str]) -> tuple[bytes, str]:
    """``(field, filename, data, content type)`` parts -> (body, Content-Type header)."""
    boundary = uuid.uuid4().hex
    body = b""
    for field, filename, data, kind in parts:
        body += (f'--{boundary}\r\nContent-Disposition: form-data; name="{field}"; filename="{filename}"\r\n'
                 f"Content-Type: {kind}\r\n\r\n").encode() + data + b"\r\n"  # fmt: skip
    return body + f"--{boundary}--\r\n".encode(), f"multipart/form-data; boundary={boundary}"


class Server(ServerProcess):
    """``python -m pentad_medseg serve`` as a subprocess; ``request`` returns (status, JSON or text)."""

    def __init__(self, run: Path, *extra: str) -> None:
        port = free_port()
        command = [sys.executable, "-m", "pentad_medseg", "serve", "--run", str(run), "--port", str(port), *extra]
        super().__init__(command, {"OMP_NUM_THREADS": "1"}, port=port, request_timeout=120, output_tail=3000)

    def segment(self, *parts: tuple[str, str, bytes, str]):
        body, kind = multipart(*parts)
        return self.request("POST", "/v1/segment", body, {"Content-Type": kind})

    def chunked(self, body: bytes, kind: str):
        """POST without Content-Length (chunked transfer): the size limit must hold while reading."""
        connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=60)
        try:
            chunks = (body[start : start + 65536] for start in range(0, len(body), 65536))
            connection.request("POST", "/v1/segment", body=chunks, headers={"Content-Type": kind},
                               encode_chunked=True)  # fmt: skip
            response = connection.getresponse()
            return response.status, json.loads(response.read().decode())
        finally:
            connection.close()

    def metric_lines(self) -> list[str]:
        return self.request("GET", "/metrics")[1].splitlines()


def png(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format="PNG")
    return buffer.getvalue()


def decode_png(text: str) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(base64.b64decode(text))))


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A 1-channel U-Net on generated vessels (so NaN can reach the model's input check), and a test image."""
    root = tmp_path_factory.mktemp("served")
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        code = main(["train", "--dataset", "synthetic", "--out", str(root / "run"), "--epochs", "2",
                     "--set", "model_options={depth: 2, base_channels: 8}", "--set", "patch_size=32",
                     "--set", "window=48", "--set", "patches_per_epoch=96", "--batch-size", "8",
                     "--set", "trainer.progress_bar=false",
                     "--set", f"dataset_options={{image_size: {SIZE}, train_images: 6, val_images: 1, "
                              "test_images: 2, in_channels: 1}"])  # fmt: skip
    finally:
        torch.set_num_threads(threads)
    assert code == 0
    from pentad_medseg import load_dataset

    sample = load_dataset("synthetic", None, image_size=SIZE, in_channels=1, split_seed=7).test[0]
    (root / "eye.png").write_bytes(png((sample.image[0] * 255).round().astype(np.uint8)))
    (root / "fov.png").write_bytes(png(sample.fov.astype(np.uint8) * 255))
    return root


@pytest.fixture(scope="module")
def server(trained):
    server = Server(trained / "run", "--max-body-mb", "0.25", "--max-wait-ms", "100", "--max-batch-size", "8")
    yield server
    server.stop()


def expected(trained: Path):
    """What the Predictor answers in-process for the test image and FOV."""
    predictor = Predictor.from_run(trained / "run")
    image = read_image(trained / "eye.png")
    fov = np.asarray(Image.open(trained / "fov.png")) > 0
    prediction = predictor.predict(image, fov=fov)
    return predictor, image, fov, prediction


def check_answer(answer: dict, trained: Path, exact: bool) -> None:
    predictor, _, fov, prediction = expected(trained)
    assert (answer["width"], answer["height"], answer["channels"]) == (SIZE, SIZE, 1)
    assert answer["threshold"] == pytest.approx(predictor.threshold)
    mask = decode_png(answer["mask_png"]) > 0
    probability = decode_png(answer["probability_png"]).astype(int)
    expected_probability = (np.clip(prediction.foreground * fov, 0, 1) * 255).round().astype(int)
    if exact:  # torch backend: the Predictor's own numbers
        assert np.array_equal(mask, prediction.mask > 0)
        assert np.abs(probability - expected_probability).max() <= 1
    else:  # ONNX Runtime: equal up to float rounding; a pixel may flip only right at the threshold
        assert np.abs(probability - expected_probability).max() <= 1
        uncertain = np.abs(prediction.foreground - predictor.threshold) < 1e-3
        assert np.array_equal(mask[~uncertain], (prediction.mask > 0)[~uncertain])
    assert not mask[~fov].any()
    assert answer["region"] == "fov" and answer["region_pixels"] == int(fov.sum())
    assert answer["foreground"]["pixels"] == int(mask.sum()) > 0
    assert answer["foreground"]["fraction"] == pytest.approx(mask.sum() / fov.sum())
    assert answer["components"] == count_components(mask) >= 1
    assert decode_png(answer["overlay_png"]).shape == (SIZE, SIZE, 3)


def test_segment_answers_what_the_predictor_answers(trained, server):
    status, card = server.request("GET", "/v1/model")
    assert status == 200 and card["model"] == "unet" and card["dataset"] == "synthetic"
    assert card["backend"] == "onnx" and card["inputs"]["channels"] == 1 and "test/dice" in card["metrics"]
    assert card["labels"] == ["background", "foreground"] and card["inference"]["window"] == 48
    stem = locate_run(trained / "run").checkpoint.stem
    assert (trained / "run" / "serve" / f"{stem}.onnx").is_file()  # exported on the first start
    image, fov = (trained / "eye.png").read_bytes(), (trained / "fov.png").read_bytes()
    status, answer = server.segment(("image", "eye.png", image, "image/png"), ("fov", "fov.png", fov, "image/png"))
    assert status == 200, answer
    check_answer(answer, trained, exact=False)
    # concurrent requests share model calls (dynamic batching of whole same-size images)
    calls_before = next(int(x.split()[-1]) for x in server.metric_lines() if x.startswith("pentad_batch_size_count"))
    with ThreadPoolExecutor(6) as pool:
        answers = list(pool.map(lambda _: server.segment(("image", "eye.png", image, "image/png"),
                                                         ("fov", "fov.png", fov, "image/png")), range(6)))  # fmt: skip
    assert all(status == 200 and body == answer for status, body in answers)
    calls = next(int(x.split()[-1]) for x in server.metric_lines() if x.startswith("pentad_batch_size_count"))
    assert calls - calls_before < 6
    # without a FOV the whole image is the region
    status, whole = server.segment(("image", "eye.tif", image, "application/octet-stream"))
    assert status == 200 and whole["region"] == "image" and whole["region_pixels"] == SIZE * SIZE


def test_bad_input_is_answered_and_the_server_keeps_serving(trained, server):
    image, fov = (trained / "eye.png").read_bytes(), (trained / "fov.png").read_bytes()
    good = ("image", "eye.png", image, "image/png")
    buffer = io.BytesIO()
    Image.fromarray(np.zeros((SIZE, SIZE), np.uint8)).save(buffer, format="WEBP")
    webp = buffer.getvalue()
    buffer = io.BytesIO()
    Image.fromarray(np.full((SIZE, SIZE), np.nan, np.float32)).save(buffer, format="TIFF")
    nan_tiff = buffer.getvalue()
    rgb = png(np.zeros((SIZE, SIZE, 3), np.uint8))
    huge = png(np.zeros((5000, 5000), np.uint8))  # about 25 kB of PNG, 25 megapixels decoded
    assert len(huge) < 200_000
    small_fov = ("fov", "f.png", png(np.ones((8, 8), np.uint8)), "image/png")
    odd_fov = ("fov", "f.png", png(np.full((SIZE, SIZE), 7, np.uint8)), "image/png")
    body, kind = multipart(good)
    json_body = {"Content-Type": "application/json"}
    broken = {"Content-Type": "multipart/form-data; boundary=x"}
    cases = {
        "JSON instead of multipart": (server.request("POST", "/v1/segment", b"{}", json_body), 415),
        "the image sent as text": (server.segment(("image", "a.txt", b"hello", "text/plain")), 415),
        "a WebP image": (server.segment(("image", "a.webp", webp, "application/octet-stream")), 415),
        "body over --max-body-mb": (server.segment(("image", "big.png", os.urandom(300_000), "image/png")), 413),
        "chunked body over the limit": (server.chunked(os.urandom(300_000) + body, kind), 413),
        "25 megapixels": (server.segment(("image", "huge.png", huge, "image/png")), 413),
        "undecodable bytes": (server.segment(("image", "bad.png", b"\x89PNG\r\n\x1a\nnot a png", "image/png")), 422),
        "a truncated PNG": (server.segment(("image", "cut.png", image[: len(image) // 2], "image/png")), 422),
        "3 channels for a 1-channel model": (server.segment(("image", "rgb.png", rgb, "image/png")), 422),
        "NaN in a float TIFF": (server.segment(("image", "nan.tif", nan_tiff, "image/tiff")), 422),
        "a FOV of another size": (server.segment(good, small_fov), 422),
        "a FOV holding 0/7": (server.segment(good, odd_fov), 422),
        "no image field": (server.segment(("fov", "fov.png", fov, "image/png")), 422),
        "an empty image": (server.segment(("image", "empty.png", b"", "image/png")), 422),
        "malformed multipart": (server.request("POST", "/v1/segment", b"--x\r\ngarbage", broken), 422),
        "unknown route": (server.request("GET", "/v1/no-such-route"), 404),
    }  # fmt: skip
    for case, ((status, answer), wanted) in cases.items():
        assert status == wanted, (case, status, answer)
        assert isinstance(answer, dict) and set(answer) == {"error"} and "\n" not in answer["error"], (case, answer)
    pid = server.process.pid
    status, answer = server.segment(good, ("fov", "fov.png", fov, "image/png"))
    assert status == 200, answer
    check_answer(answer, trained, exact=False)
    assert server.process.poll() is None and server.process.pid == pid
    assert server.request("GET", "/healthz") == (200, {"status": "ok"})
    metrics = "\n".join(server.metric_lines())
    assert 'status="500"' not in metrics and 'route="/v1/segment",status="422"' in metrics


def test_torch_backend_answers_exactly_what_the_predictor_answers(trained):
    server = Server(trained / "run", "--backend", "torch")
    try:
        assert server.request("GET", "/v1/model")[1]["backend"] == "torch"
        image, fov = (trained / "eye.png").read_bytes(), (trained / "fov.png").read_bytes()
        status, answer = server.segment(("image", "eye.png", image, "image/png"), ("fov", "fov.png", fov, "image/png"))
        assert status == 200, answer
        check_answer(answer, trained, exact=True)
    finally:
        server.stop()


def test_serve_needs_a_run(capsys):
    assert main(["serve"]) == 2
    error = capsys.readouterr().err.strip()
    assert "--run" in error and len(error.splitlines()) == 1


@requires_chromium()
def test_the_page_segments_an_upload_in_a_browser(trained, server, tmp_path):
    status, answer = server.segment(("image", "eye.png", (trained / "eye.png").read_bytes(), "image/png"))
    assert status == 200
    with browser_page(width=1400, height=900) as page:
        page.goto(f"http://127.0.0.1:{server.port}/")
        page.wait_for_function("document.getElementById('model').textContent.includes('unet')")
        page.set_input_files("#image", str(trained / "eye.png"))
        page.click("#segment")
        page.wait_for_selector("#result:not([hidden])", timeout=60_000)
        page.wait_for_function("document.getElementById('overlay-view').naturalWidth > 0")
        assert page.text_content("#components") == str(answer["components"])
        assert page.text_content("#area").startswith(f"{answer['foreground']['pixels']} px")
        assert page.text_content("#error") == ""
        for view in ("input-view", "overlay-view", "probability-view"):
            assert page.evaluate(f"document.getElementById('{view}').naturalWidth") == SIZE
        screenshot = keep_screenshot(page, tmp_path, "medseg-page.png")
        # a bad upload shows the server's message on the page
        (tmp_path / "notes.png").write_bytes(b"not an image")
        page.set_input_files("#image", str(tmp_path / "notes.png"))
        page.click("#segment")
        page.wait_for_function("document.getElementById('error').textContent.length > 0")
        assert "cannot decode the image" in page.text_content("#error")
    assert screenshot.stat().st_size > 10_000
