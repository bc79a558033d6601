"""``serve``: the agent over HTTP in a real uvicorn process bound to 127.0.0.1, and its page in Chromium.

One server per trained run for the whole module (CartPole with a 0.05 MB body limit, Connect Four):
actions equal the Predictor's, concurrent requests share model calls, every bad input is a one-line
JSON client error and the process keeps answering; the Connect Four agent only plays legal columns;
the page plays an episode and a game in headless Chromium. In-process: the masking of illegal columns
by the served ONNX scores, and a recurrent policy (exportable=False) served with torch.
"""

from __future__ import annotations

import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("fastapi")
pytest.importorskip("uvicorn")

from pentad_core.testing import ServerProcess, browser_page, free_port, keep_screenshot, requires_chromium
from pentad_rl.cli import main
from pentad_rl.predictor import Predictor

TINY = ["--n-envs", "2", "--set", "policy_kwargs={net_arch: [16]}", "--set", "eval_freq=0", "--set", "eval_episodes=2"]


def train(folder: Path, algo: str, env: str, timesteps: int, *extra: str) -> Path:
    options = ["--set", "model_options={n_steps: 32, batch_size: 64}"] if "ppo" in algo else []
    arguments = ["--algo", algo, "--env", env, "--timesteps", str(timesteps), *TINY, *options, *extra]
    assert main(["train", *arguments, "--out", str(folder)]) == 0
    return folder


class Server(ServerProcess):
    """``python -m pentad_rl serve`` as a subprocess; ``request`` returns (status, JSON or text)."""

    def __init__(self, run: Path, *extra: str) -> None:
        port = free_port()
        command = [sys.executable, "-m", "pentad_rl", "serve", "--run", str(run), "--port", str(port), *extra]
        super().__init__(command, port=port, merge_output=False)

    def post(self, path: str, payload) -> tuple[int, dict]:
        return self.post_json(path, payload)


@pytest.fixture(scope="module")
def cartpole(tmp_path_factory) -> Path:
    return train(tmp_path_factory.mktemp("cartpole") / "run", "ppo", "CartPole-v1", 256)


@pytest.fixture(scope="module")
def connect_four(tmp_path_factory) -> Path:
    return train(tmp_path_factory.mktemp("connect-four") / "run", "ppo", "pentad/ConnectFour-v0", 128)


@pytest.fixture(scope="module")
def cartpole_server(cartpole):
    server = Server(cartpole, "--max-body-mb", "0.05", "--max-wait-ms", "50")
    yield server
    server.stop()


@pytest.fixture(scope="module")
def connect_four_server(connect_four):
    server = Server(connect_four)
    yield server
    server.stop()


def observations(count: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).uniform(-0.3, 0.3, (count, 4)).astype(np.float32)


def empty_board() -> list[list[int]]:
    return [[0] * 7 for _ in range(6)]


# -- CartPole: /v1/act, the model card, batching, bad input --------------------------------------------
def test_act_answers_what_the_predictor_answers_and_concurrent_requests_share_model_calls(cartpole, cartpole_server):
    server, predictor = cartpole_server, Predictor.from_run(cartpole)
    status, card = server.request("GET", "/v1/model")
    assert status == 200 and card["model"] == "ppo" and card["dataset"] == "CartPole-v1"
    assert card["backend"] == "onnx" and card["inputs"]["observation_shape"] == [4] and card["labels"] == ["0", "1"]
    assert "train/timesteps" in card["metrics"] and card["view"] == "cartpole"
    stem = Path(card["checkpoint"]).stem
    assert (cartpole / "serve" / f"{stem}.onnx").is_file()  # exported with the parity check, cached
    assert (cartpole / "serve" / f"{stem}.json").is_file()

    batch = observations(16)
    status, answer = server.post("/v1/act", {"observations": batch.tolist()})
    assert status == 200 and answer["actions"] == predictor.predict(batch).tolist()
    status, answer = server.post("/v1/act", {"observations": batch[0].tolist()})  # one observation
    assert status == 200 and answer["action"] == answer["actions"][0] == int(predictor.predict(batch[0])[0])

    singles = observations(24, seed=1)
    with ThreadPoolExecutor(12) as pool:
        answers = list(pool.map(lambda row: server.post("/v1/act", {"observations": row.tolist()}), singles))
    assert [status for status, _ in answers] == [200] * len(singles)
    assert [body["action"] for _, body in answers] == predictor.predict(singles).tolist()
    metrics = server.request("GET", "/metrics")[1]
    calls = int(next(line.split()[-1] for line in metrics.splitlines() if line.startswith("pentad_batch_size_count")))
    assert calls < 2 + 16 + len(singles), calls  # concurrent requests were batched into fewer model calls


def test_episode_is_played_with_the_agent(cartpole_server):
    status, episode = cartpole_server.request("GET", "/v1/episode?seed=7")
    assert status == 200 and episode["env"] == "CartPole-v1" and episode["view"] == "cartpole"
    assert episode["length"] == len(episode["actions"]) == len(episode["rewards"]) >= 1
    assert episode["return"] == pytest.approx(sum(episode["rewards"])) and episode["finished"]
    assert len(episode["observations"]) == episode["length"] + 1 and len(episode["observations"][0]) == 4
    assert cartpole_server.request("GET", "/v1/episode?seed=7")[1]["actions"] == episode["actions"]


def test_an_episode_of_an_environment_the_page_does_not_draw_comes_as_frames(cartpole):
    from pentad_core.serving import ServeOptions
    from pentad_rl.serving import MAX_FRAMES, Backend, play_episode

    episode = play_episode(Backend(Predictor.from_run(cartpole), ServeOptions()), seed=3, frames=True)
    assert episode["view"] == "frames" and "observations" not in episode
    assert 1 < len(episode["frames"]) <= min(MAX_FRAMES, episode["length"] + 1)
    assert all(frame.startswith("data:image/png;base64,") for frame in episode["frames"])


def test_bad_input_is_a_one_line_client_error_and_the_server_keeps_answering(cartpole, cartpole_server):
    server = cartpole_server
    json_header = {"Content-Type": "application/json"}
    cases = [
        (server.request("POST", "/v1/act", b'{"observations": [0, 0, 0, 0]}', {"Content-Type": "text/plain"}), 415),
        (server.request("POST", "/v1/act", b"not json", json_header), 422),
        (server.post("/v1/act", {"obs": [0, 0, 0, 0]}), 422),
        (server.post("/v1/act", [0, 0, 0, 0]), 422),
        (server.post("/v1/act", {"observations": [0, 0, 0]}), 422),  # wrong observation shape
        (server.post("/v1/act", {"observations": [[0, 0, 0, 0], [0, 0, 0]]}), 422),  # ragged
        (server.post("/v1/act", {"observations": [[[0, 0, 0, 0]]]}), 422),
        (server.post("/v1/act", {"observations": []}), 422),
        (server.post("/v1/act", {"observations": ["a", "b", "c", "d"]}), 422),
        (server.request("POST", "/v1/act", b'{"observations": [0, NaN, 0, 0]}', json_header), 422),
        (server.request("POST", "/v1/act", b'{"observations": [0, Infinity, 0, 0]}', json_header), 422),
        (server.post("/v1/act", {"observations": [0, 1e300, 0, 0]}), 422),  # infinite as float32
        (server.post("/v1/act", {"observations": [[0.0] * 4] * 5000}), 413),  # over --max-body-mb 0.05
        (server.post("/v1/connect-four/move", {"board": empty_board(), "turn": 1}), 404),  # not a Connect Four run
        (server.request("GET", "/v1/episode?seed=-1"), 422),
        (server.request("GET", "/v1/episode?seed=abc"), 422),
        (server.request("GET", "/v1/no-such-route"), 404),
    ]
    for (status, body), expected in cases:
        assert status == expected, (status, body, expected)
        assert isinstance(body, dict) and set(body) == {"error"} and "\n" not in body["error"], body
    good = observations(3, seed=5)
    status, answer = server.post("/v1/act", {"observations": good.tolist()})
    assert status == 200 and answer["actions"] == Predictor.from_run(cartpole).predict(good).tolist()
    assert server.process.poll() is None and server.process.pid == server.pid  # never restarted
    assert server.request("GET", "/healthz") == (200, {"status": "ok"})
    assert 'status="500"' not in server.request("GET", "/metrics")[1]


# -- Connect Four ----------------------------------------------------------------------------------------
def legal_after(before: list[list[int]], answer: dict, turn: int) -> None:
    """The answer is one disc of ``turn`` dropped into a column that had room, where gravity puts it."""
    column, row = answer["column"], answer["row"]
    assert before[0][column] == 0 and answer["player"] == turn
    assert row == max(r for r in range(6) if before[r][column] == 0)
    expected = [list(line) for line in before]
    expected[row][column] = turn
    assert answer["board"] == expected


def test_connect_four_move_is_legal_and_illegal_boards_are_refused(connect_four, connect_four_server):
    server = connect_four_server
    status, card = server.request("GET", "/v1/model")
    assert status == 200 and card["connect_four"] and card["backend"] == "onnx" and len(card["labels"]) == 7
    board = empty_board()
    status, answer = server.post("/v1/connect-four/move", {"board": board, "turn": 1})
    assert status == 200 and not answer["game_over"]
    legal_after(board, answer, 1)
    # Columns 0-2 full (no line of four), player 2 to move: the agent must pick one of 3-6.
    full = empty_board()
    for column in range(3):
        for row in range(6):
            full[row][column] = 1 + (row // 3 + column) % 2
    full[5][3] = 1
    status, answer = server.post("/v1/connect-four/move", {"board": full, "turn": 2})
    assert status == 200 and answer["column"] >= 3
    legal_after(full, answer, 2)

    floating = empty_board()
    floating[2][3] = 1
    won = empty_board()
    won[5][:4], won[4][:3] = [1, 1, 1, 1], [2, 2, 2]
    full_board = [[1 + (row // 2 + column) % 2 for column in range(7)] for row in range(6)]
    cases = [
        {"board": floating, "turn": 2},  # a disc above an empty cell
        {"board": empty_board(), "turn": 3},
        {"board": empty_board(), "turn": True},
        {"board": empty_board()[:5], "turn": 1},
        {"board": [[3] * 7, *empty_board()[1:]], "turn": 1},
        {"board": [[0.5] * 7, *empty_board()[1:]], "turn": 1},
        {"board": [[0] * 6 + [1], *empty_board()[1:]], "turn": 1},  # floating again (top row)
        {"board": [[0] * 7] * 5 + [[1, 1, 0, 0, 0, 0, 0]], "turn": 2},  # 2 discs against 0
        {"board": [[0] * 7] * 5 + [[1, 0, 0, 0, 0, 0, 0]], "turn": 1},  # player 1 has more discs already
        {"board": won, "turn": 2},  # finished: four in a row
        {"board": full_board, "turn": 1},  # finished: full
        {"turn": 1},
    ]
    for payload in cases:
        status, body = server.post("/v1/connect-four/move", payload)
        assert status == 422 and set(body) == {"error"}, (payload, status, body)
    status, body = server.request("POST", "/v1/connect-four/move", b"{}", {"Content-Type": "text/plain"})
    assert status == 415
    status, answer = server.post("/v1/connect-four/move", {"board": board, "turn": 1})
    assert status == 200 and server.process.poll() is None
    assert 'status="500"' not in server.request("GET", "/metrics")[1]


def test_illegal_columns_are_masked_by_the_served_scores(connect_four):
    """Random positions with full columns: the served column is the best legal one by the policy's own scores."""
    import torch

    from pentad_core.serving import ServeOptions
    from pentad_rl.envs.connect_four import drop, is_win, legal_moves
    from pentad_rl.export import action_scores
    from pentad_rl.serving import build_service

    service = build_service(connect_four, ServeOptions())
    assert service.model_card["backend"] == "onnx"
    predictor = Predictor.from_run(connect_four)
    rng = np.random.default_rng(0)
    boards, masked_by_legality = 0, 0
    while boards < 40:
        board, player, finished = np.zeros((6, 7), dtype=np.int8), 1, False
        for _ in range(int(rng.integers(8, 30))):
            legal = np.flatnonzero(legal_moves(board))
            column = int(rng.choice([c for c in legal if c in (0, 1, 2, 3)] or legal))  # fills columns 0-3 first
            row = drop(board, column, player)
            if is_win(board, row, column) or not legal_moves(board).any():
                finished = True
                break
            player = 3 - player
        if finished or legal_moves(board).all():
            continue
        boards += 1
        observation = np.stack([board == player, board == 3 - player]).astype(np.float32)
        column = service.batchers["move"]([(observation, legal_moves(board))])[0]
        with torch.no_grad():
            scores = action_scores(predictor.model.policy, torch.as_tensor(observation[None]))[0].numpy()
        assert legal_moves(board)[column]
        assert column == int(np.where(legal_moves(board), scores, -np.inf).argmax())
        masked_by_legality += int(not legal_moves(board)[int(scores.argmax())])
    assert masked_by_legality > 0  # some positions' favourite column was full: the mask decided


def test_a_recurrent_policy_is_served_with_torch_and_says_so(tmp_path, capsys):
    from pentad_core.serving import ServeOptions
    from pentad_rl.serving import build_service

    run = train(tmp_path / "lstm", "recurrent-ppo", "CartPole-v1", 64, "--set", "policy_kwargs={lstm_hidden_size: 8}")
    messages: list[str] = []
    service = build_service(run, ServeOptions(backend="onnx"), messages.append)
    assert service.model_card["backend"] == "torch" and "exportable=False" in messages[0]
    batch = observations(5)
    assert service.batchers["act"](list(batch)) == Predictor.from_run(run).predict(batch).tolist()
    assert not (run / "serve").exists()


def test_serve_without_a_run_is_a_one_line_error(capsys):
    assert main(["serve"]) == 2
    error = capsys.readouterr().err.strip()
    assert "--run" in error and "\n" not in error


# -- the page in headless Chromium -----------------------------------------------------------------------
@requires_chromium()
def test_the_page_plays_a_cartpole_episode(cartpole_server, tmp_path):
    with browser_page() as page:
        page.goto(cartpole_server.url + "/")
        page.wait_for_function("document.getElementById('model-info').textContent.includes('CartPole-v1')")
        assert page.locator("#connect-four").is_hidden()
        page.click("#play-episode")
        page.wait_for_function("/^Return -?\\d/.test(document.getElementById('episode-summary').textContent)")
        page.wait_for_function("document.getElementById('episode-canvas').dataset.done === 'true'", timeout=60000)
        summary = page.inner_text("#episode-summary")
        shown = float(page.get_attribute("#episode-summary", "data-return"))
        assert shown >= 1 and f"Return {shown:.1f}" in summary and "CartPole-v1" in summary
        assert "step" in page.inner_text("#episode-step")
        # The cart was drawn: the canvas is not blank.
        painted = page.evaluate(
            "(() => { const c = document.getElementById('episode-canvas');"
            " const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;"
            " let n = 0; for (let i = 0; i < d.length; i += 4) if (d[i] < 200) n++; return n; })()"
        )
        assert painted > 500
        keep_screenshot(page, tmp_path, "rl-cartpole-episode.png")


@requires_chromium()
def test_the_page_plays_connect_four_against_the_agent(connect_four_server, tmp_path):
    with browser_page() as page:
        page.goto(connect_four_server.url + "/")
        page.wait_for_selector("#connect-four", state="visible")
        page.click(".cell[data-row='0'][data-col='3']")  # a click anywhere in a column drops into it
        page.wait_for_function("document.getElementById('c4-status').textContent.includes('Agent played column')")
        human = page.locator(".cell.human")
        agent = page.locator(".cell.agent")
        assert human.count() == 1 and agent.count() == 1
        assert (human.get_attribute("data-row"), human.get_attribute("data-col")) == ("5", "3")
        row, column = int(agent.get_attribute("data-row")), int(agent.get_attribute("data-col"))
        assert row == (4 if column == 3 else 5)  # the lowest free cell of its column
        assert f"Agent played column {column}" in page.inner_text("#c4-status")
        page.click("#play-episode")  # a game against the heuristic, replayed on the canvas
        page.wait_for_function("/^Return -?\\d/.test(document.getElementById('episode-summary').textContent)")
        keep_screenshot(page, tmp_path, "rl-connect-four.png")
