"""``apps/traffic serve`` on a tiny trained run: one real uvicorn process on 127.0.0.1 for the module.

Forecasts from JSON and CSV windows equal the in-process Predictor's; every bad input of issue 19
is answered with one-line JSON (415, 413, 422, 404) and never crashes or restarts the server;
concurrent forecasts share model calls; the page draws the history and forecast of a chosen sensor
in headless Chromium; a run without a sample window, the torch backend and a model that cannot be
exported are served in-process.
"""

from __future__ import annotations

import csv
import io
import json
import shutil
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

pytest.importorskip("fastapi")
pytest.importorskip("uvicorn")

from pentad_core.predictor import locate_run
from pentad_core.testing import ServerProcess, browser_page, free_port, keep_screenshot, requires_chromium
from pentad_traffic.cli import main
from pentad_traffic.predictor import Predictor

TINY = ["--set", "dataset_options.num_nodes=5", "--set", "dataset_options.num_days=3", "--epochs", "1",
        "--set", "model_options.hidden=8", "--set", "time_of_day=true"]  # fmt: skip


class Server(ServerProcess):
    """``apps/traffic serve`` as a subprocess; ``request`` returns (status, JSON or text)."""

    def __init__(self, run: Path, *extra: str) -> None:
        port = free_port()
        command = [sys.executable, "-m", "pentad_traffic", "serve", "--run", str(run), "--port", str(port), *extra]
        super().__init__(command, port=port)

    def post(self, body: bytes | str, content_type: str = "application/json", **headers: str):
        data = body.encode() if isinstance(body, str) else body
        return self.request("POST", "/v1/forecast", data, {"Content-Type": content_type, **headers})

    def forecast(self, payload: dict):
        return self.post(json.dumps(payload))


@pytest.fixture(scope="module")
def run(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("traffic-serve") / "run"
    assert main(["train", "--dataset", "synthetic", "--model", "gcn", "--out", str(out), *TINY]) == 0
    return out


@pytest.fixture(scope="module")
def server(run):
    server = Server(run, "--max-body-mb", "0.05", "--max-wait-ms", "40")
    yield server
    server.stop()


@pytest.fixture(scope="module")
def predictor(run) -> Predictor:
    return Predictor.from_run(run)


@pytest.fixture(scope="module")
def sample(run) -> dict:
    return json.loads((run / "sample_window.json").read_text())


def expected(predictor: Predictor, window, time_of_day) -> np.ndarray:
    return predictor.predict(np.asarray(window, dtype=np.float32), time_of_day=np.asarray(time_of_day))


def to_csv(sensors, window, time_of_day=None, order=None) -> str:
    order = order if order is not None else list(range(len(sensors)))
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(([] if time_of_day is None else ["time_of_day"]) + [sensors[i] for i in order])
    for step, row in enumerate(window):
        writer.writerow(([] if time_of_day is None else [time_of_day[step]]) + [row[i] for i in order])
    return out.getvalue()


def test_the_run_stores_its_last_training_window(run, sample, predictor):
    import pentad_traffic as pt
    from pentad_traffic.protocols import split

    data = pt.load_dataset("synthetic", options={"num_nodes": 5, "num_days": 3})
    end = split(data.num_steps, predictor.protocol).fit_end  # the training part ends here
    assert sample["sensors"] == predictor.sensor_ids and sample["start"] == end - 12
    assert np.allclose(sample["window"], data.speeds[end - 12 : end], atol=1e-3)
    assert np.allclose(sample["time_of_day"], data.time_of_day()[end - 12 : end], atol=1e-5)


def test_json_and_csv_windows_are_forecast_like_the_predictor(server, run, predictor, sample):
    status, card = server.request("GET", "/v1/model")
    assert status == 200 and card["model"] == "gcn" and card["backend"] == "onnx" and card["dataset"] == "synthetic"
    assert card["inputs"]["window"] == [12, 5] and card["inputs"]["time_of_day"] is True
    assert card["labels"] == predictor.sensor_ids and "test/h3/rmse" in card["metrics"]
    stem = locate_run(run).checkpoint.stem
    assert (run / "serve" / f"{stem}.onnx").is_file()  # the ONNX backend exported the run on start
    status, served = server.request("GET", "/v1/sample")
    assert status == 200 and served == sample
    truth = expected(predictor, sample["window"], sample["time_of_day"])

    status, answer = server.forecast({"window": sample["window"], "time_of_day": sample["time_of_day"]})
    assert status == 200, answer
    assert answer["horizons"] == [5 * (h + 1) for h in range(12)] and answer["unit"] == "mph"
    assert answer["sensors"] == predictor.sensor_ids
    assert np.allclose(answer["forecast"], truth, atol=1e-3)

    # CSV with the columns in another order, and the sample route's CSV, give the same forecast.
    order = [3, 0, 4, 1, 2]
    status, answer = server.post(to_csv(sample["sensors"], sample["window"], sample["time_of_day"], order), "text/csv")
    assert status == 200 and np.allclose(answer["forecast"], truth, atol=1e-3)
    status, text = server.request("GET", "/v1/sample?format=csv")
    assert status == 200 and text.startswith("time_of_day,day_of_week,s000")
    status, answer = server.post(text, "text/csv; charset=utf-8")
    assert status == 200 and np.allclose(answer["forecast"], truth, atol=1e-3)
    # A timestamp column gives the time of day; Accept: text/csv answers CSV.
    stamps = [
        str(np.datetime64("2024-05-06T00:00") + np.timedelta64(round(t * 1440), "m")) for t in sample["time_of_day"]
    ]
    lines = to_csv(sample["sensors"], sample["window"]).splitlines()
    body = "\n".join([f"timestamp,{lines[0]}"] + [f"{s},{line}" for s, line in zip(stamps, lines[1:])])
    status, text = server.post(body, "text/csv", Accept="text/csv")
    rows = list(csv.reader(io.StringIO(text)))
    assert status == 200 and rows[0] == ["horizon_minutes", *predictor.sensor_ids] and rows[1][0] == "5"
    assert np.allclose(np.array(rows[1:], dtype=float)[:, 1:], truth, atol=1e-3)


def test_every_bad_input_is_answered_and_the_server_keeps_serving(server, predictor, sample):
    pid = server.process.pid
    window, times = sample["window"], sample["time_of_day"]
    sensors = sample["sensors"]
    good_csv = to_csv(sensors, window, times)

    def with_cell(value: str) -> list[list]:
        rows = [list(row) for row in window]
        rows[3][2] = value
        return rows

    cases = [
        (server.post("{}", "text/plain"), 415, "application/json or text/csv"),
        (server.post(good_csv, "application/x-www-form-urlencoded"), 415, "text/csv"),
        (server.post(b"x" * 60_000), 413, "MB"),
        (server.post("not json"), 422, "JSON"),
        (server.post("[1, 2]"), 422, "window"),
        (server.forecast({"window": []}), 422, "window"),
        (server.forecast({"window": window[:-1], "time_of_day": times[:-1]}), 422, "last 12"),
        (server.forecast({"window": window + window, "time_of_day": times + times}), 422, "last 12"),
        (server.forecast({"window": [row[:4] for row in window], "time_of_day": times}), 422, "5 speeds"),
        (server.forecast({"window": [[*row, 50.0] for row in window], "time_of_day": times}), 422, "5 speeds"),
        (server.forecast({"window": [[float("nan")] * 5, *window[1:]], "time_of_day": times}), 422, "NaN"),
        (server.forecast({"window": [[float("inf")] * 5, *window[1:]], "time_of_day": times}), 422, "NaN"),
        (server.forecast({"window": [["fast"] * 5, *window[1:]], "time_of_day": times}), 422, "numbers"),
        (server.forecast({"window": [[None] * 5, *window[1:]], "time_of_day": times}), 422, "numbers"),
        (server.forecast({"window": [[True] * 5, *window[1:]], "time_of_day": times}), 422, "numbers"),
        (server.forecast({"window": [window[0][:3], *window[1:]], "time_of_day": times}), 422, "same number"),
        (server.forecast({"window": 55.0, "time_of_day": times}), 422, "list of readings"),
        (server.forecast({"window": window}), 422, "time_of_day"),
        (server.forecast({"window": window, "time_of_day": [1.5] * 12}), 422, "[0, 1)"),
        (server.forecast({"window": window, "time_of_day": times[:3]}), 422, "one per reading"),
        (server.forecast({"window": window, "time_of_day": times, "sensors": ["s000"] * 5}), 422, "repeat"),
        (server.forecast({"window": window, "time_of_day": times, "sensors": [*sensors[:4], "x9"]}), 422, "unknown"),
        (server.post(to_csv(sensors[:4], [r[:4] for r in window], times), "text/csv"), 422, "5 sensors"),
        (server.post(to_csv([*sensors[:4], "x9"], window, times), "text/csv"), 422, "unknown: x9"),
        (server.post(to_csv(sensors, window[:-1], times), "text/csv"), 422, "last 12"),
        (server.post(to_csv(sensors, with_cell("fast"), times), "text/csv"), 422, "not a number"),
        (server.post(to_csv(sensors, with_cell("nan"), times), "text/csv"), 422, "NaN"),
        (server.post(to_csv(sensors, with_cell(""), times), "text/csv"), 422, "not a number"),
        (server.post(good_csv.splitlines()[0], "text/csv"), 422, "header"),
        (server.post(good_csv + "1,2\n", "text/csv"), 422, "cells"),
        (server.post(b"\xff\xfe\x00bad", "text/csv"), 422, "UTF-8"),
        (server.post(to_csv(sensors, window), "text/csv"), 422, "timestamp"),
        (server.request("GET", "/v1/sample?format=xml"), 422, "csv"),
        (server.request("GET", "/v1/no-such-route"), 404, ""),
    ]
    for index, ((status, body), code, words) in enumerate(cases):
        assert status == code, (index, status, body)
        assert isinstance(body, dict) and set(body) == {"error"} and "\n" not in body["error"], (index, body)
        assert words in body["error"], (index, body)
    status, answer = server.forecast({"window": window, "time_of_day": times})
    assert status == 200 and np.allclose(answer["forecast"], expected(predictor, window, times), atol=1e-3)
    assert server.process.poll() is None and server.process.pid == pid  # never crashed, never restarted
    metrics = server.request("GET", "/metrics")[1]
    assert 'status="500"' not in metrics and 'route="/v1/forecast",status="422"' in metrics


def test_concurrent_forecasts_share_model_calls(server, predictor, sample):
    def batch_calls() -> int:
        text = server.request("GET", "/metrics")[1]
        return int(next(line.split()[-1] for line in text.splitlines() if line.startswith("pentad_batch_size_count")))

    before = batch_calls()
    windows = [(np.asarray(sample["window"]) + shift).round(3).tolist() for shift in range(16)]
    with ThreadPoolExecutor(16) as pool:
        answers = list(
            pool.map(lambda w: server.forecast({"window": w, "time_of_day": sample["time_of_day"]}), windows)
        )
    for window, (status, answer) in zip(windows, answers):
        assert status == 200, answer
        assert np.allclose(answer["forecast"], expected(predictor, window, sample["time_of_day"]), atol=1e-3)
    assert batch_calls() - before < len(windows)  # several forecasts shared one model call


def test_a_run_without_sample_the_torch_backend_and_an_unexportable_model(
    run, tmp_path, predictor, sample, monkeypatch
):
    from fastapi.testclient import TestClient

    from pentad_core.serving import ServeOptions, create_app
    from pentad_traffic import serving

    old = tmp_path / "old-run"  # a run trained before serve existed: no sample_window.json
    shutil.copytree(run, old, ignore=shutil.ignore_patterns("serve", "sample_window.json"))
    messages: list[str] = []
    service = serving.build_service(old, ServeOptions(backend="torch", device="cuda:0"), messages.append)
    assert service.model_card["backend"] == "torch" and not (old / "serve").exists()
    body = {"window": sample["window"], "time_of_day": sample["time_of_day"]}
    with TestClient(create_app(service, ServeOptions())) as client:
        answer = client.get("/v1/sample")
        assert answer.status_code == 404 and "sample_window.json" in answer.json()["error"]
        answer = client.post("/v1/forecast", json=body)
        truth = expected(predictor, sample["window"], sample["time_of_day"])
        assert answer.status_code == 200 and np.allclose(answer.json()["forecast"], truth, atol=1e-3)
        page = client.get("/").text
        assert (
            "<svg" in page and "v1/forecast" in page and "http" not in page.replace("http://www.w3.org/2000/svg", "")
        )  # no external assets

    class Unexportable:
        def info(self, name):
            return SimpleNamespace(exportable=False)

    monkeypatch.setattr(serving, "MODELS", Unexportable())
    messages.clear()
    service = serving.build_service(old, ServeOptions(), messages.append)
    assert service.model_card["backend"] == "torch" and any("exportable=False" in m for m in messages)
    assert not (old / "serve").exists()


def test_serve_without_a_run_is_a_one_line_error(capsys):
    assert main(["serve"]) == 2
    error = capsys.readouterr().err.strip()
    assert len(error.splitlines()) == 1 and "--run" in error


@requires_chromium()
def test_the_page_draws_history_and_forecast_of_the_chosen_sensor(server, predictor, sample, tmp_path):
    truth = expected(predictor, sample["window"], sample["time_of_day"])
    shifted = (np.asarray(sample["window"]) - 7.0).round(3)
    upload = tmp_path / "window.csv"
    upload.write_text(to_csv(sample["sensors"], shifted.tolist(), sample["time_of_day"], [4, 2, 0, 1, 3]))
    uploaded = expected(predictor, shifted, sample["time_of_day"])
    bad = tmp_path / "short.csv"
    bad.write_text(to_csv(sample["sensors"], sample["window"][:5], sample["time_of_day"][:5]))

    def table(page) -> list[float]:
        return [float(cell) for cell in page.locator("#forecast-table tbody tr td:nth-child(2)").all_inner_texts()]

    with browser_page(width=1000, height=900) as page:
        page.goto(server.url + "/")
        page.wait_for_function("document.querySelectorAll('#forecast-table tbody tr').length === 12")
        assert "gcn" in page.locator("#model").inner_text()
        assert page.locator("#sensor option").all_inner_texts() == predictor.sensor_ids
        assert np.allclose(table(page), truth[:, 0], atol=0.011)  # the first sensor, from the sample window
        page.select_option("#sensor", "s003")
        page.wait_for_function("document.getElementById('status').textContent.includes('s003')")
        assert np.allclose(table(page), truth[:, 3], atol=0.011)
        assert page.locator("#chart polyline.history").count() == 1
        assert page.locator("#chart polyline.forecast").count() == 1
        assert page.locator("#chart circle").count() == 12
        assert "12 readings, forecast 12 steps (60 min)" in page.locator("#status").inner_text()
        screenshot = keep_screenshot(page, tmp_path, "traffic-page.png")

        first = page.locator("#forecast-table tbody td:nth-child(2)").first.inner_text()
        page.set_input_files("#file", str(upload))  # an uploaded CSV is forecast and drawn
        page.wait_for_function(
            f"document.querySelector('#forecast-table tbody td:nth-child(2)').textContent !== '{first}'"
        )
        assert np.allclose(table(page), uploaded[:, 3], atol=0.011)
        page.set_input_files("#file", str(bad))  # a bad upload shows the server's message
        page.wait_for_function("document.getElementById('status').classList.contains('error')")
        assert "Error 422" in page.locator("#status").inner_text()
        assert "12" in page.locator("#status").inner_text()
    assert screenshot.stat().st_size > 10_000
