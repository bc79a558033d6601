"""``serve``: a trained run behind ``POST /v1/classify`` in a real uvicorn process on 127.0.0.1.

One tiny run and one ONNX-backed server are shared by the module (each server start imports torch).
Answers are compared with the :class:`~pentad_vision.predictor.Predictor` in this process; every bad
input of the issue is answered with one-line JSON and the same process keeps answering; the page is
driven in headless Chromium.
"""

from __future__ import annotations

import base64
import http.client
import io
import json
import os
import shutil
import sys
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

pytest.importorskip("fastapi")
pytest.importorskip("uvicorn")

from pentad_core.testing import ServerProcess, browser_page, free_port, keep_screenshot, requires_chromium
from pentad_vision.cli import app
from pentad_vision.predictor import Predictor

CLASSES = 6
MAX_BODY_MB = 0.25


def png_bytes(array: np.ndarray, kind: str = "PNG") -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format=kind)
    return buffer.getvalue()


def multipart(files: list[tuple[str, bytes, str]], field: str = "files") -> tuple[bytes, str]:
    """A multipart/form-data body of ``(file name, bytes, content type)`` parts, and its content type."""
    boundary = uuid.uuid4().hex
    body = b""
    for name, data, content_type in files:
        body += (
            (
                f'--{boundary}\r\nContent-Disposition: form-data; name="{field}"; filename="{name}"\r\n'
                f"Content-Type: {content_type}\r\n\r\n"
            ).encode()
            + data
            + b"\r\n"
        )
    body += f"--{boundary}--\r\n".encode()
    return body, f"multipart/form-data; boundary={boundary}"


class Server(ServerProcess):
    """``python -m pentad_vision serve`` as a subprocess; ``request`` returns (status, JSON or text)."""

    def __init__(self, run: Path, *extra: str) -> None:
        port = free_port()
        command = [sys.executable, "-m", "pentad_vision", "serve", "--run", str(run), "--port", str(port), *extra]
        super().__init__(command, port=port, request_timeout=120)

    def request(self, method: str, path: str, body: bytes | None = None, content_type: str | None = None):
        return super().request(method, path, body, None if content_type is None else {"Content-Type": content_type})

    def classify(self, files: list[tuple[str, bytes, str]], query: str = ""):
        body, content_type = multipart(files)
        return self.request("POST", f"/v1/classify{query}", body, content_type)


@pytest.fixture(scope="module")
def run(tmp_path_factory) -> Path:
    """A one-epoch run on generated shapes (6 classes, 16x16 RGB, flip test-time augmentation)."""
    out = tmp_path_factory.mktemp("serve") / "run"
    config = {
        "dataset": "synthetic",
        "dataset_options": {"num_train": 240, "num_test": 60, "num_classes": CLASSES, "image_size": 16},
        "model_options": {"hidden": 16},
        "augment": {"tta_flip": True},
        "trainer": {"max_epochs": 1, "accelerator": "cpu", "progress_bar": False},
    }
    return app.run("train", config, out=str(out)).folder


@pytest.fixture(scope="module")
def server(run):
    server = Server(run, "--max-body-mb", str(MAX_BODY_MB), "--max-wait-ms", "50")
    yield server
    server.stop()


@pytest.fixture(scope="module")
def images() -> dict[str, bytes]:
    """Test uploads of other sizes than the run's: RGB PNG, grey JPEG, RGBA PNG, palette PNG."""
    generator = np.random.default_rng(0)
    rgb = generator.integers(0, 256, (40, 30, 3), dtype=np.uint8)
    rgb[10:30, 8:22] = (250, 40, 40)
    grey = generator.integers(0, 256, (21, 21), dtype=np.uint8)
    rgba = generator.integers(0, 256, (16, 16, 4), dtype=np.uint8)
    palette = Image.fromarray(generator.integers(0, 256, (12, 20, 3), dtype=np.uint8)).convert("P")
    buffer = io.BytesIO()
    palette.save(buffer, format="PNG")
    return {"red.png": png_bytes(rgb), "grey.jpg": png_bytes(grey, "JPEG"), "alpha.png": png_bytes(rgba),
            "palette.png": buffer.getvalue()}  # fmt: skip


def expected(run: Path, images: dict[str, bytes], tmp_path: Path, k: int = 5) -> list[list[tuple[str, float]]]:
    """The Predictor's top-k for the files, read the way ``predict`` reads them."""
    paths = []
    for name, data in images.items():
        (tmp_path / name).write_bytes(data)
        paths.append(tmp_path / name)
    predictor = Predictor.from_run(run)
    pixels, _ = predictor.load_files(paths)
    return predictor.predict(pixels, top_k=k)


def assert_matches(answer: dict, wanted: list[list[tuple[str, float]]], names: list[str]) -> None:
    assert [p["file"] for p in answer["predictions"]] == names
    for prediction, top in zip(answer["predictions"], wanted):
        assert [item["label"] for item in prediction["labels"]] == [label for label, _ in top]
        got = [item["probability"] for item in prediction["labels"]]
        assert got == pytest.approx([p for _, p in top], abs=1e-4)  # ONNX Runtime vs PyTorch


def test_health_model_card_and_answers_equal_the_predictor(server, run, images, tmp_path):
    assert server.request("GET", "/healthz") == (200, {"status": "ok"})
    status, card = server.request("GET", "/v1/model")
    assert status == 200 and card["model"] == "seed-convnet" and card["dataset"] == "synthetic"
    assert card["backend"] == "onnx" and len(card["labels"]) == CLASSES and "test/acc" in card["metrics"]
    assert card["inputs"]["image_size"] == 16 and card["inputs"]["channels"] == 3
    assert card["test_time_augment"]["flip"] is True
    files = [(name, data, "image/jpeg" if name.endswith(".jpg") else "image/png") for name, data in images.items()]
    status, answer = server.classify(files)
    assert status == 200, answer
    assert answer["backend"] == "onnx" and "gradcam_note" not in answer
    assert_matches(answer, expected(run, images, tmp_path), list(images))
    # a raw image body, and k
    status, answer = server.request("POST", "/v1/classify?k=2", images["red.png"], "image/png")
    assert status == 200, answer
    assert_matches(answer, expected(run, {"red.png": images["red.png"]}, tmp_path, k=2), ["body"])
    status, answer = server.classify(files[:1], "?k=50")  # more than the classes: all of them
    assert status == 200 and len(answer["predictions"][0]["labels"]) == CLASSES
    assert (run / "serve" / "best.onnx").is_file() and (run / "serve" / "best.json").is_file()


def test_gradcam_overlays_are_pngs_computed_with_torch(server, images):
    status, answer = server.classify([("red.png", images["red.png"], "image/png"),
                                      ("grey.jpg", images["grey.jpg"], "image/jpeg")], "?gradcam=true")  # fmt: skip
    assert status == 200, answer
    assert "torch" in answer["gradcam_note"]
    sizes = []
    for prediction in answer["predictions"]:
        overlay = Image.open(io.BytesIO(base64.b64decode(prediction["gradcam_png"])))
        assert overlay.format == "PNG" and overlay.mode == "RGB"
        sizes.append(overlay.size)
        assert np.asarray(overlay).std() > 0
    assert sizes == [(168, 224), (224, 224)]  # the upload's aspect, longest side 224


def huge_png() -> bytes:
    """A 5000x5000 1-bit PNG: a few kilobytes that would decode to 25 megapixels."""
    buffer = io.BytesIO()
    Image.new("1", (5000, 5000)).save(buffer, format="PNG")
    return buffer.getvalue()


def lab_tiff() -> bytes:
    buffer = io.BytesIO()
    Image.new("LAB", (8, 8)).save(buffer, format="TIFF")
    return buffer.getvalue()


def chunked_post(server: Server, size: int) -> tuple[int, dict]:
    """POST ``size`` bytes with Transfer-Encoding: chunked (no Content-Length for core's check)."""
    connection = http.client.HTTPConnection("127.0.0.1", server.port, timeout=60)
    chunks = (b"\x89PNG" + b"0" * 65536 for _ in range(size // 65536 + 1))
    connection.request("POST", "/v1/classify", body=chunks, headers={"Content-Type": "image/png"},
                       encode_chunked=True)  # fmt: skip
    response = connection.getresponse()
    answer = response.status, json.loads(response.read())
    connection.close()
    return answer


def test_bad_input_is_answered_and_the_same_process_keeps_answering(server, run, images, tmp_path):
    good = images["red.png"]
    too_big = int(MAX_BODY_MB * 1024 * 1024) + 1000
    body_without_files, multipart_type = multipart([("note.txt", b"hello", "text/plain")], field="other")
    cases = [
        (server.request("POST", "/v1/classify", good, "text/plain"), 415),
        (server.request("POST", "/v1/classify", good, "application/json"), 415),
        (server.request("POST", "/v1/classify", good), 415),  # urllib's default form encoding
        (server.classify([("note.txt", b"hello", "text/plain")]), 415),
        (server.request("POST", "/v1/classify", b"not an image", "image/png"), 422),
        (server.request("POST", "/v1/classify", good[: len(good) // 2], "image/png"), 422),  # truncated
        (server.request("POST", "/v1/classify", b"", "image/jpeg"), 422),
        (server.classify([("lab.tiff", lab_tiff(), "image/tiff")]), 422),  # a colour mode with no RGB conversion
        (server.request("POST", "/v1/classify", body_without_files, multipart_type), 422),
        (server.request("POST", "/v1/classify", b"--x\r\nbroken", "multipart/form-data; boundary=x"), 422),
        (server.classify([("red.png", good, "image/png")], "?k=0"), 422),
        (server.classify([("red.png", good, "image/png")], "?k=many"), 422),
        (server.request("POST", "/v1/classify", b"\x89PNG" + b"0" * too_big, "image/png"), 413),
        (chunked_post(server, too_big), 413),
        (server.request("POST", "/v1/classify", huge_png(), "image/png"), 413),
        (server.request("GET", "/v1/classify"), 405),
    ]
    for index, ((status, body), wanted) in enumerate(cases):
        assert status == wanted, (index, status, body)
        assert isinstance(body, dict) and set(body) == {"error"} and "\n" not in body["error"], (index, body)
    pid = server.process.pid
    status, answer = server.classify([("red.png", good, "image/png")])
    assert status == 200, answer
    assert_matches(answer, expected(run, {"red.png": good}, tmp_path), ["red.png"])
    assert server.process.poll() is None and server.process.pid == pid
    metrics = server.request("GET", "/metrics")[1]
    assert 'status="500"' not in metrics
    assert 'pentad_requests_total{route="/v1/classify",status="413"} 3' in metrics


def test_concurrent_requests_share_model_calls(server, run, images, tmp_path):
    def batch_calls() -> int:
        text = server.request("GET", "/metrics")[1]
        return int(next(line.split()[-1] for line in text.splitlines() if line.startswith("pentad_batch_size_count")))

    before = batch_calls()
    names = list(images) * 4
    with ThreadPoolExecutor(len(names)) as pool:
        answers = list(pool.map(lambda name: server.request("POST", "/v1/classify", images[name], "image/png"), names))
    wanted = dict(zip(images, expected(run, images, tmp_path)))
    for name, (status, answer) in zip(names, answers):
        assert status == 200, answer
        assert_matches(answer, [wanted[name]], ["body"])
    assert batch_calls() - before < len(names)  # several requests were answered by one model call


def test_torch_backend_serves_the_predictor_itself(run, images, tmp_path):
    server = Server(run, "--backend", "torch")
    try:
        status, answer = server.classify([("red.png", images["red.png"], "image/png")], "?gradcam=true")
        assert status == 200 and answer["backend"] == "torch" and answer["predictions"][0]["gradcam_png"]
        wanted = expected(run, {"red.png": images["red.png"]}, tmp_path)
        assert [(x["label"], x["probability"]) for x in answer["predictions"][0]["labels"]] == [
            (label, pytest.approx(p, abs=1e-6)) for label, p in wanted[0]
        ]
    finally:
        server.stop()


def test_the_onnx_export_is_reused_while_the_checkpoint_is_unchanged(run, tmp_path):
    from pentad_vision.serving import onnx_model

    copy = tmp_path / "run"
    shutil.copytree(run, copy, ignore=shutil.ignore_patterns("serve"))
    said: list[str] = []
    first = onnx_model(Predictor.from_run(copy), said.append)
    assert first == copy / "serve" / "best.onnx" and "parity" in said[-1]
    stamp = first.stat().st_mtime_ns
    assert onnx_model(Predictor.from_run(copy), said.append) == first and "before" in said[-1]
    assert first.stat().st_mtime_ns == stamp
    checkpoint = copy / "checkpoints" / "best.ckpt"
    os.utime(checkpoint, ns=(checkpoint.stat().st_atime_ns, checkpoint.stat().st_mtime_ns + 10**9))
    assert onnx_model(Predictor.from_run(copy), said.append) == first and "before" in said[-1]  # same bytes
    state = torch.load(checkpoint, weights_only=True)  # another checkpoint in the same place: other weights
    name = next(key for key, value in state["state_dict"].items() if value.is_floating_point())
    state["state_dict"][name] = state["state_dict"][name] + 0.01
    torch.save(state, checkpoint)
    assert onnx_model(Predictor.from_run(copy), said.append) == first and "parity" in said[-1]  # exported again


def test_a_failed_export_is_served_with_torch_and_said(run, monkeypatch):
    from pentad_core.export import ParityError
    from pentad_core.serving import ServeOptions
    from pentad_vision import serving

    def fails(predictor, log):
        raise ParityError("max |diff| 0.5 over the tolerance 0.001")

    monkeypatch.setattr(serving, "onnx_model", fails)
    said: list[str] = []
    service = serving.build_service(run, ServeOptions(), said.append)
    assert service.model_card["backend"] == "torch"
    assert "serving with torch" in said[-1] and "0.5" in said[-1]


def test_serve_without_a_run_is_a_one_line_error(capsys):
    assert app.main(["serve"]) == 2
    err = capsys.readouterr().err.strip()
    assert "--run" in err and len(err.splitlines()) <= 2, err


@requires_chromium()
def test_the_page_classifies_an_upload_in_chromium(server, run, images, tmp_path):
    upload = tmp_path / "red.png"
    upload.write_bytes(images["red.png"])
    wanted = expected(run, {"red.png": images["red.png"]}, tmp_path)[0]
    with browser_page(width=1000, height=640) as page:
        page.goto(server.url + "/")
        page.wait_for_function("document.getElementById('model').textContent.includes('seed-convnet')")
        page.set_input_files("#files", str(upload))  # the page classifies on selection
        page.wait_for_selector(".result img.gradcam", timeout=60_000)
        bars = page.locator(".result .bar")
        assert bars.count() == 5
        labels = [bars.nth(i).get_attribute("data-label") for i in range(5)]
        shown = [float(bars.nth(i).get_attribute("data-probability")) for i in range(5)]
        assert labels == [label for label, _ in wanted]
        assert shown == pytest.approx([p for _, p in wanted], abs=1e-4)
        assert page.locator(".result h2").inner_text() == "red.png"
        assert "backend onnx" in page.locator("#status").inner_text()
        assert page.evaluate("document.querySelector('img.gradcam').naturalWidth") == 168
        screenshot = keep_screenshot(page, tmp_path, "vision-page.png")
    assert screenshot.stat().st_size > 0
