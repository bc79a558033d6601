"""``serve`` as a real process on 127.0.0.1 (one server for the module): the endpoints answer what the
Predictor answers in-process, unknown users get the cold-start list, every bad request gets its 4xx and
the process keeps serving; concurrent recommendations share one model call; the page works in Chromium.
In-process: both backends agree, a stale export is not served, a model without item vectors says 501."""

from __future__ import annotations

import json
import shutil
import sys
import urllib.error
import urllib.parse
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("fastapi")
pytest.importorskip("uvicorn")

from pentad_core.serving import ServeOptions
from pentad_core.testing import ServerProcess, browser_page, free_port, keep_screenshot, requires_chromium
from pentad_recsys.cli import app, main
from pentad_recsys.predictor import Predictor
from pentad_recsys.serving import build_service, popular_items

SIZES = {"num_users": 40, "num_items": 50, "interactions_per_user": 12}


def train(out: Path, model: str = "mf", task: str = "ranking", **options) -> Path:
    config = {
        "model": model,
        "dataset": "synthetic",
        "task": task,
        "split": "loo" if task == "ranking" else "random",
        "batch_size": 128,
        "model_options": {"dim": 8} if model == "mf" else {},
        "dataset_options": SIZES,
        "sampled_negatives": 0,
        "trainer": {"max_epochs": 2, "progress_bar": False},
        **options,
    }
    return Path(app.run("train", config, out=str(out)).folder)


class Server(ServerProcess):
    """``python -m pentad_recsys serve`` as a subprocess; ``request`` returns (status, JSON or text)."""

    def __init__(self, run: Path, *extra: str) -> None:
        port = free_port()
        command = [sys.executable, "-m", "pentad_recsys", "serve", "--run", str(run), "--port", str(port), *extra]
        super().__init__(command, port=port)

    def get(self, path: str, **query):
        return self.request("GET", f"{path}?{urllib.parse.urlencode(query)}")

    def score(self, body, content_type: str = "application/json"):
        data = body if isinstance(body, bytes) else json.dumps(body).encode()
        return self.request("POST", "/v1/score", data, {"Content-Type": content_type})


@pytest.fixture(scope="module")
def run(tmp_path_factory) -> Path:
    return train(tmp_path_factory.mktemp("serve") / "mf")


@pytest.fixture(scope="module")
def predictor(run) -> Predictor:
    return Predictor.from_run(run)


@pytest.fixture(scope="module")
def server(run):
    # a small body limit for the 413 case; a batching window wide enough to gather concurrent requests
    server = Server(run, "--max-body-mb", "0.01", "--max-wait-ms", "40", "--max-batch-size", "16")
    yield server
    server.stop()


def same_entries(served: list[dict], expected: list[dict]) -> None:
    assert [row["item"] for row in served] == [row["item"] for row in expected]
    assert [row["title"] for row in served] == [row["title"] for row in expected]
    np.testing.assert_allclose([r["score"] for r in served], [r["score"] for r in expected], rtol=1e-4, atol=1e-5)


def test_model_card_and_the_onnx_export_written_into_the_run(server, run, predictor):
    status, card = server.request("GET", "/v1/model")
    assert status == 200
    assert card["model"] == "mf" and card["task"] == "ranking" and card["dataset"] == "synthetic"
    assert card["backend"] == "onnx" and card["exportable"] is True
    assert card["metrics"]["test/hr@10"] == pytest.approx(json.loads((run / "metrics.json").read_text())["test/hr@10"])
    assert card["inputs"]["items"] == len(predictor.recommender.item_map)
    assert (run / "serve" / "model.onnx").is_file()  # no export in the run: exported with the parity check


def test_recommend_similar_and_score_match_the_predictor(server, predictor):
    user = predictor.recommender.user_map.raw(3)
    status, body = server.get("/v1/recommend", user=user, k=7)
    assert status == 200 and body["cold_start"] is False and body["user"] == user and body["k"] == 7
    same_entries(body["items"], predictor.recommend(user, 7))
    assert all(row["title"].startswith("Synthetic item") for row in body["items"])
    status, body = server.get("/v1/recommend", user=user, k=5, exclude_seen="false")
    same_entries(body["items"], predictor.recommend(user, 5, exclude_seen=False))

    item = predictor.recommender.item_map.raw(4)
    status, body = server.get("/v1/similar", item=item, k=6)
    assert status == 200 and body["item"] == item and body["title"] == f"Synthetic item {item}"
    same_entries(body["items"], predictor.similar(item, 6))

    users = [predictor.recommender.user_map.raw(u) for u in (0, 5, 9)]
    items = [predictor.recommender.item_map.raw(i) for i in (1, 7, 2)]
    status, body = server.score([[u, i] for u, i in zip(users, items)])
    assert status == 200 and body["task"] == "ranking"
    np.testing.assert_allclose(body["scores"], predictor.predict(users, items), rtol=1e-4, atol=1e-5)
    as_objects = [{"user": str(u), "item": i} for u, i in zip(users, items)]  # string ids of an int map
    assert server.score({"pairs": as_objects})[1]["scores"] == body["scores"]


def test_an_unknown_user_gets_the_most_popular_items(server, predictor):
    status, body = server.get("/v1/recommend", user="someone-new", k=4)
    assert status == 200 and body["cold_start"] is True and body["user"] == "someone-new"
    order, counts = popular_items(predictor.recommender)
    assert [row["item"] for row in body["items"]] == [predictor.recommender.item_map.raw(i) for i in order[:4]]
    assert [row["score"] for row in body["items"]] == [float(c) for c in counts[:4]]
    assert counts[0] == max(np.bincount(predictor.recommender.seen_items))


def test_concurrent_recommendations_share_one_model_call(server, predictor):
    def batches() -> tuple[float, float]:
        text = server.request("GET", "/metrics")[1]
        values = dict(line.rsplit(" ", 1) for line in text.splitlines() if line.startswith("pentad_batch_size_"))
        return float(values["pentad_batch_size_sum"]), float(values["pentad_batch_size_count"])

    users = [predictor.recommender.user_map.raw(u) for u in range(16)]
    before = batches()
    with ThreadPoolExecutor(16) as pool:
        answers = list(pool.map(lambda u: server.get("/v1/recommend", user=u, k=3), users))
    requests, calls = (now - then for now, then in zip(batches(), before))
    assert requests == 16 and calls < 16, (requests, calls)  # fewer model calls than requests
    for user, (status, body) in zip(users, answers):
        assert status == 200
        same_entries(body["items"], predictor.recommend(user, 3))


def test_every_bad_request_is_answered_and_the_server_keeps_serving(server, predictor):
    pid = server.process.pid
    known_item = predictor.recommender.item_map.raw(0)
    cases = [
        (server.get("/v1/recommend", user=3, k="ten"), 422),  # non-integer k
        (server.get("/v1/recommend", user=3, k=0), 422),  # k out of range
        (server.get("/v1/recommend", user=3, k=10_000), 422),
        (server.get("/v1/recommend", user=3, k=2.5), 422),
        (server.get("/v1/recommend", k=3), 422),  # no user
        (server.get("/v1/recommend", user=" ", k=3), 422),
        (server.get("/v1/recommend", user=3, exclude_seen="maybe"), 422),
        (server.get("/v1/similar", item=999_999, k=3), 404),  # unknown item
        (server.get("/v1/similar", item="not-an-item"), 404),
        (server.get("/v1/similar", item=known_item, k=-1), 422),
        (server.score([[3, known_item]], content_type="text/csv"), 415),  # non-JSON body
        (server.score(b"3,5", content_type="text/plain"), 415),
        (server.score(b"[[3, 5]", content_type="application/json"), 422),  # undecodable
        (server.score(b"\xff\xfe", content_type="application/json"), 422),
        (server.score({"pairs": "3,5"}), 422),  # wrongly shaped
        (server.score([[3, known_item, 1]]), 422),
        (server.score([3, known_item]), 422),
        (server.score([{"user": 3}]), 422),
        (server.score([[3, 5.5]]), 422),  # an id that is neither an integer nor a string
        (server.score([[True, known_item]]), 422),
        (server.score(b"[[3, NaN]]", content_type="application/json"), 422),
        (server.score([]), 422),
        (server.score([[999_999, known_item]]), 404),  # unknown user
        (server.score([[3, 999_999]]), 404),  # unknown item
        (server.score([[3, known_item]] * 2000), 413),  # over --max-body-mb 0.01
    ]
    for index, ((status, body), expected) in enumerate(cases):
        assert status == expected, (index, status, body)
        assert isinstance(body, dict) and set(body) == {"error"} and body["error"], (index, body)
    user = predictor.recommender.user_map.raw(2)
    status, body = server.get("/v1/recommend", user=user, k=5)
    assert status == 200
    same_entries(body["items"], predictor.recommend(user, 5))
    status, body = server.score([[user, known_item]])
    np.testing.assert_allclose(body["scores"], predictor.predict([user], [known_item]), rtol=1e-4, atol=1e-5)
    assert server.process.poll() is None and server.process.pid == pid
    assert server.request("GET", "/healthz") == (200, {"status": "ok"})
    metrics = server.request("GET", "/metrics")[1]
    assert 'status="500"' not in metrics
    assert 'route="/v1/score",status="413"' in metrics and 'route="/v1/similar",status="404"' in metrics


@requires_chromium()
def test_the_page_recommends_for_a_chosen_user_and_shows_similar_items(server, predictor, tmp_path):
    user = predictor.recommender.user_map.raw(0)
    expected = predictor.recommend(user, 10)
    with browser_page(width=1100, height=800) as page:
        page.goto(server.url + "/")
        page.wait_for_selector("body[data-state=ready]", timeout=30_000)
        assert "mf (ranking) on synthetic" in page.inner_text("#card")
        page.select_option("#user-choice", str(user))
        page.wait_for_selector("#recommendations li", timeout=30_000)
        shown = page.locator("#recommendations li").all_inner_texts()
        assert len(shown) == 10
        assert [row.split(" (item")[0] for row in shown] == [row["title"] for row in expected]
        first = expected[0]["item"]
        page.click("#recommendations li:first-child button")
        page.wait_for_selector("body[data-state=similar]", timeout=30_000)
        similar = page.locator("#similar li").all_inner_texts()
        assert [row.split(" (item")[0] for row in similar] == [row["title"] for row in predictor.similar(first, 10)]
        assert f"item {first}" in page.inner_text("#similar-title")
        page.fill("#user", "a-new-user")
        page.click("#go")
        page.wait_for_selector("#cold-start", timeout=30_000)
        shot = keep_screenshot(page, tmp_path, "recsys-page.png")
    assert shot.stat().st_size > 0


# ------------------------------------------------------------------------------------ in-process


def test_torch_and_onnx_backends_agree_and_a_stale_export_is_not_served(run, tmp_path):
    copy = tmp_path / "run"
    shutil.copytree(run, copy, ignore=shutil.ignore_patterns("serve"))
    other = train(tmp_path / "other", model_options={"dim": 4}, seed=7)  # another model: its export must not be used
    stale = copy / "export" / "20000101-000000" / "model.onnx"
    stale.parent.mkdir(parents=True)
    assert main(["export", "--checkpoint", str(other), "--out", str(tmp_path / "e")]) == 0
    shutil.copy(tmp_path / "e" / "model.onnx", stale)
    said: list[str] = []
    onnx = build_service(copy, ServeOptions(), said.append)
    assert any("does not match" in line for line in said) and onnx.model_card["onnx"].endswith("serve/model.onnx")
    torch_service = build_service(copy, ServeOptions(backend="torch"))
    assert torch_service.model_card["backend"] == "torch" and onnx.model_card["backend"] == "onnx"
    requests = [(u, 5, True) for u in range(8)]
    for served, reference in zip(onnx.batchers["recommend"](requests), torch_service.batchers["recommend"](requests)):
        same_entries(served, reference)
    pairs = [(np.arange(6), np.arange(6)[::-1].copy()), (np.array([1]), np.array([3]))]
    for a, b in zip(onnx.batchers["score"](pairs), torch_service.batchers["score"](pairs)):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5)
    said.clear()
    build_service(copy, ServeOptions(), said.append)  # the checked cache is reused, not exported again
    assert not any("exporting" in line for line in said)


def test_a_rating_run_without_item_vectors_answers_501_for_similar(tmp_path):
    from fastapi.testclient import TestClient

    from pentad_core.serving import create_app

    run = train(tmp_path / "pop", model="popularity", task="rating")
    predictor = Predictor.from_run(run)
    with TestClient(create_app(build_service(run, ServeOptions()), ServeOptions())) as client:
        item = predictor.recommender.item_map.raw(0)
        response = client.get("/v1/similar", params={"item": item})
        assert response.status_code == 501 and "no item vectors" in response.json()["error"]
        user = predictor.recommender.user_map.raw(1)
        body = client.post("/v1/score", json=[[user, item]]).json()
        assert body["task"] == "rating"
        np.testing.assert_allclose(body["scores"], predictor.predict([user], [item]), rtol=1e-5)
        body = client.get("/v1/recommend", params={"user": user, "k": 3}).json()
        same_entries(body["items"], predictor.recommend(user, 3))


def test_a_read_only_run_is_served_from_a_temporary_export_and_a_missing_gpu_falls_back(run, tmp_path, monkeypatch):
    import torch

    copy = tmp_path / "run"
    shutil.copytree(run, copy, ignore=shutil.ignore_patterns("serve"))
    touch = Path.touch

    def read_only(path, *args, **kwargs):  # chmod does not stop root: the run refuses the write probe instead
        if path.name.startswith(".write-test"):
            raise PermissionError(13, "Read-only file system", str(path))
        return touch(path, *args, **kwargs)

    said: list[str] = []
    with monkeypatch.context() as patch:
        patch.setattr(Path, "touch", read_only)
        service = build_service(copy, ServeOptions(), said.append)
    assert any("not writable" in line for line in said) and not (copy / "serve" / "model.onnx").exists()
    assert Path(service.model_card["onnx"]).is_file()
    if not torch.cuda.is_available():
        said.clear()
        service = build_service(run, ServeOptions(backend="torch", device="cuda"), said.append)
        assert any("no GPU" in line for line in said) and service.model_card["backend"] == "torch"
        assert len(service.batchers["recommend"]([(0, 3, True)])[0]) == 3


def test_serve_without_a_run_is_a_one_line_error(capsys):
    assert main(["serve"]) == 2
    assert "serve needs --run" in capsys.readouterr().err
