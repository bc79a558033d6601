"""The serving core, on the toy app's ``serve`` verb in a real uvicorn process bound to 127.0.0.1.

Health and readiness, the model card, Prometheus metrics, the API key, client errors as one-line
JSON (never a 500, the server keeps answering), dynamic batching, the bounded queue, and a SIGTERM
that lets the request in flight finish.
"""

from __future__ import annotations

import json
import signal
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest
import torch
from toy_app import TOY_APP, run_toy

from pentad_core.testing import ServerProcess, free_port

pytest.importorskip("fastapi")
pytest.importorskip("uvicorn")

FEATURES = 8


class Server(ServerProcess):
    """The toy app's ``serve`` verb as a subprocess; ``request`` returns (status, JSON or text)."""

    def __init__(self, run, *extra: str, delay: float = 0.0) -> None:
        port = free_port()
        command = [sys.executable, str(TOY_APP), "serve", "--run", str(run), "--port", str(port), *extra]
        super().__init__(command, {"TOY_SERVE_DELAY": str(delay)}, port=port, ready_timeout=120, poll_interval=0.1,
                         merge_output=False)  # fmt: skip

    def predict(self, rows, headers: dict | None = None):
        body = json.dumps({"inputs": rows}).encode()
        return self.request("POST", "/v1/predict", body, {"Content-Type": "application/json", **(headers or {})})


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    run = tmp_path_factory.mktemp("served") / "run"
    result = run_toy("train", "--out", str(run), "--epochs", "2", "--accelerator", "cpu",
                     "--set", "trainer.progress_bar=false")  # fmt: skip
    assert result.returncode == 0, result.stderr
    return run


def expected_outputs(run, rows) -> list[float]:
    state = torch.load(run / "weights_rank0.pt", weights_only=True)
    return (torch.tensor(rows) @ state["layer.weight"].T + state["layer.bias"])[:, 0].tolist()


def test_health_model_card_metrics_and_a_correct_answer(trained):
    server = Server(trained)
    try:
        assert server.request("GET", "/healthz") == (200, {"status": "ok"})
        status, card = server.request("GET", "/v1/model")
        assert status == 200 and card["model"] == "toy-regression" and card["inputs"] == {"features": FEATURES}
        assert "fit/steps" in card["metrics"]
        rows = [[0.5] * FEATURES, [float(i) for i in range(FEATURES)]]
        status, answer = server.predict(rows)
        assert status == 200
        assert answer["outputs"] == pytest.approx(expected_outputs(trained, rows), abs=1e-5)
        status, text = server.request("GET", "/metrics")
        assert status == 200
        assert 'pentad_requests_total{route="/v1/predict",status="200"} 1' in text
        assert "pentad_request_seconds_bucket" in text and "pentad_batch_size_count" in text
        assert "pentad_queue_length 0" in text
        status, page = server.request("GET", "/")
        assert status == 200 and "<h1>toy</h1>" in page
        status, schema = server.request("GET", "/openapi.json")
        assert status == 200 and "/v1/predict" in schema["paths"] and "/readyz" in schema["paths"]
    finally:
        server.stop()


def chunked_post(port: int, path: str, chunks: list[bytes]) -> tuple[int, dict]:
    """POST a JSON body in chunked transfer encoding (no Content-Length for the middleware to check)."""
    import http.client

    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    connection.request("POST", path, body=iter(chunks), headers={"Content-Type": "application/json"},
                       encode_chunked=True)  # fmt: skip
    response = connection.getresponse()
    answer = response.status, json.loads(response.read())
    connection.close()
    return answer


def test_client_errors_are_one_line_json_and_the_server_keeps_answering(trained):
    server = Server(trained, "--max-body-mb", "0.001")
    try:
        cases = [
            (server.request("POST", "/v1/predict", b"{}", {"Content-Type": "text/plain"}), 415),
            (server.request("POST", "/v1/predict", b"not json", {"Content-Type": "application/json"}), 422),
            (server.predict([[1.0] * (FEATURES - 1)]), 422),
            (server.predict([[float("nan")] * FEATURES]), 422),
            (server.request("POST", "/v1/predict", b"x" * 5000, {"Content-Type": "application/json"}), 413),
            (server.request("GET", "/v1/no-such-route"), 404),
        ]
        cases.append((chunked_post(server.port, "/v1/predict", [b"x" * 800] * 3), 413))  # no Content-Length
        for (status, body), expected in cases:
            assert status == expected, (status, body)
            assert isinstance(body, dict) and set(body) == {"error"} and "\n" not in body["error"], body
        rows = [[1.0] * FEATURES]
        status, answer = server.predict(rows)
        assert status == 200 and answer["outputs"] == pytest.approx(expected_outputs(trained, rows), abs=1e-5)
        assert server.process.poll() is None
        assert 'status="500"' not in server.request("GET", "/metrics")[1]
    finally:
        server.stop()


def test_an_api_key_guards_every_route_but_the_health_checks(trained):
    server = Server(trained, "--api-key", "s3cret")
    try:
        assert server.request("GET", "/healthz")[0] == 200 and server.request("GET", "/readyz")[0] == 200
        status, body = server.predict([[1.0] * FEATURES])
        assert status == 401 and "API key" in body["error"]
        assert server.predict([[1.0] * FEATURES], {"Authorization": "Bearer wrong"})[0] == 401
        assert server.request("GET", "/v1/model")[0] == 401
        assert server.predict([[1.0] * FEATURES], {"Authorization": "Bearer s3cret"})[0] == 200
    finally:
        server.stop()


def test_concurrent_requests_share_model_calls(trained):
    server = Server(trained, "--max-batch-size", "8", "--max-wait-ms", "100", delay=0.3)
    try:
        rows = [[float(i)] * FEATURES for i in range(12)]
        with ThreadPoolExecutor(12) as pool:
            answers = list(pool.map(lambda row: server.predict([row]), rows))
        expected = expected_outputs(trained, rows)
        for index, (status, body) in enumerate(answers):
            assert status == 200 and body["outputs"] == pytest.approx([expected[index]], abs=1e-5)
        metrics = server.request("GET", "/metrics")[1]
        count_line = next(line for line in metrics.splitlines() if line.startswith("pentad_batch_size_count"))
        assert int(count_line.split()[-1]) < len(rows)  # several requests shared a model call
    finally:
        server.stop()


def test_a_full_queue_refuses_at_once_and_keeps_serving_the_rest():
    import asyncio

    from pentad_core.serving import Batcher, ClientError, QueueFull

    calls: list[list[int]] = []

    def predict_batch(items: list[int]) -> list[int]:
        if -1 in items:
            raise ClientError("negative", 422)
        calls.append(items)
        time.sleep(0.2)
        return [item * 10 for item in items]

    async def scenario() -> list:
        batcher = Batcher(predict_batch, max_batch_size=2, max_wait_ms=20, max_queue=2)
        await batcher.start()
        first = asyncio.create_task(batcher.submit(0))
        await asyncio.sleep(0.05)  # the first batch is inside the model call
        later = [asyncio.create_task(batcher.submit(i)) for i in (1, 2, 3, 4)]
        bad = asyncio.create_task(batcher.submit(-1))
        results = await asyncio.gather(first, *later, bad, return_exceptions=True)
        await batcher.stop()
        return results

    results = asyncio.run(scenario())
    assert results[0] == 0 and results[1:3] == [10, 20]  # two waited, and were answered
    assert all(isinstance(result, QueueFull) and result.status == 503 for result in results[3:5])
    assert isinstance(results[5], QueueFull)  # the queue was still full when it came
    assert calls[0] == [0] and calls[1] == [1, 2]


def test_sigterm_lets_the_request_in_flight_finish(trained):
    server = Server(trained, delay=1.5)
    answer: dict = {}
    try:
        thread = threading.Thread(target=lambda: answer.update(result=server.predict([[2.0] * FEATURES])))
        thread.start()
        time.sleep(0.5)  # the request is inside the model call
        server.process.send_signal(signal.SIGTERM)
        thread.join(timeout=60)
        # uvicorn drains, then re-raises the SIGTERM it caught: the exit is the signal's
        assert server.process.wait(timeout=60) in (0, -signal.SIGTERM)
        status, body = answer["result"]
        assert status == 200 and body["outputs"] == pytest.approx(
            expected_outputs(trained, [[2.0] * FEATURES]), abs=1e-5
        )
    finally:
        server.stop()


def test_percentiles_by_nearest_rank():
    from pentad_core.loadtest import percentile

    values = [float(v) for v in range(1, 101)]  # 1..100
    assert percentile(values, 0.50) == 50.0 and percentile(values, 0.95) == 95.0 and percentile(values, 0.99) == 99.0
    assert percentile([3.0], 0.99) == 3.0


def test_the_load_test_counts_answers_and_refuses_other_hosts(trained):
    from pentad_core.errors import ConfigError
    from pentad_core.loadtest import load_test

    with pytest.raises(ConfigError, match="this machine only"):
        load_test("http://example.org/v1/predict")
    server = Server(trained)
    try:
        body = json.dumps({"inputs": [[1.0] * FEATURES]}).encode()
        result = load_test(f"http://127.0.0.1:{server.port}/v1/predict", body, concurrency=4, requests=40)
        assert result.requests == 40 and result.errors == 0 and result.p50_ms <= result.p99_ms
        bad = load_test(f"http://127.0.0.1:{server.port}/v1/predict", b"{}", concurrency=2, requests=6)
        assert bad.requests == 6 and bad.errors == 6  # 422s are counted as errors
    finally:
        server.stop()
