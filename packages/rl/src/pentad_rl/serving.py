"""``serve``: a trained agent over HTTP (core's :mod:`pentad_core.serving`), with a page.

Endpoints (besides core's ``/healthz``, ``/readyz``, ``/v1/model``, ``/metrics``, ``/docs``):

- ``POST /v1/act`` ``{"observations": OBS or [OBS, ...]}`` -> ``{"actions": [...]}``: deterministic actions
  for raw observations shaped as the run's observation space (the run's ``VecNormalize`` statistics are
  applied by the model). Concurrent requests share model calls through the ``act`` batcher.
- ``POST /v1/connect-four/move`` ``{"board": 6x7 of 0/1/2, "turn": 1 or 2}`` -> the agent's column,
  chosen among the legal columns (Connect Four runs only; 422 for an impossible or finished board).
- ``GET /v1/episode?seed=N`` plays one episode of the run's environment with the agent and returns what
  the page animates: the raw observations (drawn by the page for CartPole, Pendulum, MountainCar,
  Acrobot and Connect Four) or, for other environments, rendered frames as PNG data URLs.

The backend is ONNX Runtime by default: the policy's deterministic action graph (with per-action
scores for discrete actions), exported by :func:`pentad_rl.export.export_policy` with its parity check
into ``<run>/serve/`` the first time a checkpoint is served. ``--backend torch`` uses the
:class:`~pentad_rl.predictor.Predictor`; algorithms registered ``exportable=False`` (recurrent-ppo) are
always served with torch, which the terminal says.
"""

from __future__ import annotations

import asyncio
import base64
import math
import os
import random
import threading
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np
import torch
from gymnasium import spaces
from stable_baselines3.common.vec_env import unwrap_vec_normalize

from pentad_core.errors import ConfigError, PentadError
from pentad_core.serving import ClientError, ServeOptions, Service, onnx_session, read_json, run_server, serving_export
from pentad_rl.algorithms import algorithm_name
from pentad_rl.envs.connect_four import COLUMNS, ROWS, drop, is_win, legal_moves
from pentad_rl.envs.registry import CONNECT_FOUR_ID
from pentad_rl.export import action_scores, export_policy
from pentad_rl.predictor import Predictor
from pentad_rl.registry import ALGORITHMS

try:
    from fastapi import Request  # at module level: FastAPI reads the routes' annotations from here
except ModuleNotFoundError:  # without the serve extra, `serve` says what to install
    Request = None  # type: ignore[assignment,misc]

#: Environments whose state the page draws from the observations (others are shown as rendered frames).
DRAWN = {
    "CartPole-v0": "cartpole",
    "CartPole-v1": "cartpole",
    "Pendulum-v1": "pendulum",
    "MountainCar-v0": "mountaincar",
    "MountainCarContinuous-v0": "mountaincar",
    "Acrobot-v1": "acrobot",
    CONNECT_FOUR_ID: "connect-four",
}
#: Most observations one ``/v1/act`` request may carry.
MAX_OBSERVATIONS = 4096
#: Longest episode ``/v1/episode`` plays, steps; frames sent at most (evenly subsampled), and their width.
MAX_EPISODE_STEPS, MAX_FRAMES, FRAME_WIDTH = 1000, 150, 240
#: Episodes played at once; more are answered 503.
EPISODE_SLOTS = 2


class Backend:
    """The served policy: raw observations in, deterministic actions (and discrete action scores) out.

    Attributes:
        name: ``"onnx"`` or ``"torch"``.
        note: Why torch serves when ONNX was asked for (empty otherwise).
    """

    def __init__(self, predictor: Predictor, options: ServeOptions, log: Any = print) -> None:
        self.predictor = predictor
        self.log = log
        self.discrete = isinstance(predictor.model.action_space, spaces.Discrete)
        self.session: Any = None
        self.name, self.note = "torch", ""
        algo = algorithm_name(predictor.model)
        if options.backend == "onnx":
            if not ALGORITHMS.info(algo).exportable:
                self.note = f"{algo} is not exportable to ONNX (exportable=False): serving it with torch"
            else:
                try:
                    self.session = onnx_session(self.onnx_path(), options.device)
                    self.name = "onnx"
                except PentadError as error:  # dict observations (no graph), a failed parity check
                    self.note = f"ONNX export failed ({error.message}): serving with torch"
        if self.note:
            log(self.note)
        self.lock = threading.Lock()  # the torch policy is not shared between threads

    def onnx_path(self) -> Path:
        """The policy as ONNX for serving (core's serve cache), exported with the parity check when missing."""

        def export(path: Path) -> dict[str, Any]:
            env = self.predictor.make_env(n_envs=1)
            try:
                export_policy(self.predictor.model, path, env, batch=64, scores=self.discrete)
            finally:
                env.close()
            return {}

        return serving_export(self.predictor.run.folder, self.predictor.run.checkpoint, export, self.log)

    def act(self, observations: np.ndarray) -> np.ndarray:
        """Actions for raw observations ``(N, *observation_shape)``."""
        if self.session is not None:
            return self.session.run(["action"], {"observation": observations.astype(np.float32)})[0]
        with self.lock:
            return self.predictor.predict(observations)

    def scores(self, observations: np.ndarray) -> np.ndarray:
        """Per-action scores ``(N, n_actions)`` (discrete actions only); their argmax is the action."""
        if self.session is not None:
            return self.session.run(["scores"], {"observation": observations.astype(np.float32)})[0]
        predictor = self.predictor
        inputs = predictor.normalization(observations) if predictor.normalization is not None else observations
        with self.lock, torch.no_grad():
            policy = predictor.model.policy
            policy.set_training_mode(False)
            tensor = torch.as_tensor(np.asarray(inputs, dtype=np.float32), device=policy.device)
            return action_scores(policy, tensor).float().cpu().numpy()


# -- request parsing ---------------------------------------------------------------------------------
def parse_observations(body: Any, shape: tuple[int, ...]) -> tuple[np.ndarray, bool]:
    """``(observations (N, *shape) float32, single)`` from ``{"observations": ...}``; 422 when they do not fit."""
    wanted = f"{{'observations': an array of shape {list(shape)} or [N, {', '.join(map(str, shape))}]}}"
    if not isinstance(body, dict) or "observations" not in body:
        raise ClientError(f"the body must be {wanted}", 422)
    try:
        array = np.asarray(body["observations"], dtype=np.float64)
    except (ValueError, TypeError):
        raise ClientError(f"observations must be numbers in a regular array: {wanted}", 422) from None
    single = array.shape == shape
    if single:
        array = array[None]
    if array.ndim != len(shape) + 1 or array.shape[1:] != shape or len(array) == 0:
        raise ClientError(f"observations of shape {list(array.shape)} do not fit: send {wanted}", 422)
    if len(array) > MAX_OBSERVATIONS:
        raise ClientError(f"{len(array)} observations in one request; send at most {MAX_OBSERVATIONS}", 422)
    array = array.astype(np.float32)
    if not np.isfinite(array).all():
        raise ClientError("observations contain NaN or infinite values", 422)
    return array, single


def parse_board(body: Any) -> tuple[np.ndarray, int]:
    """``(board (6, 7) int8, turn)`` from ``{"board": ..., "turn": 1|2}``; 422 for an impossible or finished board."""
    if not isinstance(body, dict) or "board" not in body or "turn" not in body:
        raise ClientError("the body must be {'board': 6 rows of 7 cells (0 empty, 1, 2), 'turn': 1 or 2}", 422)
    turn = body["turn"]
    if isinstance(turn, bool) or turn not in (1, 2):
        raise ClientError(f"turn must be 1 or 2, got {turn!r}", 422)
    try:
        board = np.asarray(body["board"], dtype=np.float64)
    except (ValueError, TypeError):
        raise ClientError("board must be 6 rows of 7 numbers 0, 1 or 2", 422) from None
    if board.shape != (ROWS, COLUMNS):
        raise ClientError(f"board has shape {list(board.shape)}; it must be 6 rows of 7 cells", 422)
    if not np.isin(board, (0, 1, 2)).all():
        raise ClientError("board cells must be 0 (empty), 1 or 2", 422)
    board = board.astype(np.int8)
    if ((board[:-1] != 0) & (board[1:] == 0)).any():
        raise ClientError("illegal board: a disc floats above an empty cell (row 0 is the top row)", 422)
    counts = {player: int((board == player).sum()) for player in (1, 2)}
    if abs(counts[1] - counts[2]) > 1 or counts[turn] > counts[3 - turn]:
        raise ClientError(f"illegal board: player {turn} cannot be to move with {counts[1]} and {counts[2]} discs", 422)
    for row, column in zip(*np.nonzero(board)):
        if is_win(board, int(row), int(column)):
            raise ClientError(f"the game is over: player {int(board[row, column])} has four in a row", 422)
    if not legal_moves(board).any():
        raise ClientError("the game is over: the board is full", 422)
    return board, int(turn)


# -- episodes ----------------------------------------------------------------------------------------
def play_episode(backend: Backend, seed: int, frames: bool) -> dict[str, Any]:
    """One episode of the run's environment with the served agent: what the page animates."""
    predictor = backend.predictor
    recurrent = not ALGORITHMS.info(algorithm_name(predictor.model)).exportable
    if frames:
        os.environ.setdefault("SDL_VIDEODRIVER", "dummy")
    env = predictor.make_env(n_envs=1, seed=seed, render_mode="rgb_array" if frames else None)
    normalizer = unwrap_vec_normalize(env)
    try:
        observation = env.reset()
        raw = normalizer.get_original_obs() if normalizer is not None else observation
        observations, actions, rewards, images = [raw[0].tolist()], [], [], []
        state, start = None, np.ones(1, dtype=bool)
        if frames:
            images.append(np.asarray(env.render()))
        while len(actions) < MAX_EPISODE_STEPS:
            if recurrent:  # the LSTM keeps its state through the episode
                with backend.lock:
                    action, state = predictor.model.predict(
                        observation, state=state, episode_start=start, deterministic=True
                    )
            else:
                action = backend.act(np.asarray(raw, dtype=np.float32))
            observation, reward, done, info = env.step(np.asarray(action))
            start = done
            actions.append(np.asarray(action[0]).tolist())
            rewards.append(float(normalizer.get_original_reward()[0] if normalizer is not None else reward[0]))
            if done[0]:
                final = info[0].get("terminal_observation")
                if final is not None:
                    final = normalizer.unnormalize_obs(final) if normalizer is not None else final
                    observations.append(np.asarray(final).tolist())
                break
            raw = normalizer.get_original_obs() if normalizer is not None else observation
            observations.append(raw[0].tolist())
            if frames:
                images.append(np.asarray(env.render()))
    finally:
        env.close()
    view = "frames" if frames else DRAWN.get(predictor.config.env, "none")
    answer = {
        "env": predictor.config.env,
        "seed": seed,
        "view": view,
        "return": float(sum(rewards)),
        "length": len(actions),
        "finished": len(actions) < MAX_EPISODE_STEPS,
        "actions": actions,
        "rewards": rewards,
    }
    if view == "frames":
        answer["frames"] = [_png_data_url(image) for image in _subsample(images, MAX_FRAMES)]
    elif np.asarray(observations[0]).size <= 512:
        answer["observations"] = observations
    return answer


def _subsample(items: list, count: int) -> list:
    if len(items) <= count:
        return items
    return [items[round(i * (len(items) - 1) / (count - 1))] for i in range(count)]


def _png_data_url(image: np.ndarray) -> str:
    import imageio.v3 as iio

    stride = max(1, math.ceil(image.shape[1] / FRAME_WIDTH))
    data = iio.imwrite(
        "<bytes>", np.ascontiguousarray(image[::stride, ::stride, :3]).astype(np.uint8), extension=".png"
    )
    return "data:image/png;base64," + base64.b64encode(data).decode()


# -- the service -------------------------------------------------------------------------------------
def build_service(path: str | Path, options: ServeOptions, log: Any = print) -> Service:
    """The agent of ``path`` (a run folder or an agent ``.zip``) as a :class:`~pentad_core.serving.Service`.

    Raises:
        ConfigError: Without the serve extra (FastAPI), or when ``path`` holds no agent.
    """
    if Request is None:
        raise ConfigError("serving needs the serve extra: pip install 'pentad-rl[serve]'.")
    device = options.device if options.backend == "torch" else "cpu"  # ONNX Runtime runs the graph on --device
    predictor = Predictor.from_run(path, device=device)
    backend = Backend(predictor, options, log)
    config, model = predictor.config, predictor.model
    shape = tuple(int(size) for size in model.observation_space.shape)
    connect_four = config.env == CONNECT_FOUR_ID
    can_render = "rgb_array" in _render_modes(config)
    slots = threading.Semaphore(EPISODE_SLOTS)

    def act_batch(items: list[np.ndarray]) -> list[Any]:
        return [np.asarray(action).tolist() for action in backend.act(np.stack(items))]

    def move_batch(items: list[tuple[np.ndarray, np.ndarray]]) -> list[int]:
        scores = backend.scores(np.stack([observation for observation, _ in items]))
        masks = np.stack([mask for _, mask in items])
        return [int(column) for column in np.where(masks, scores, -np.inf).argmax(axis=1)]

    def add_routes(router: Any, serving: Any) -> None:
        @router.post("/v1/act")
        async def act(request: Request) -> dict[str, Any]:
            """Deterministic actions for one observation or a batch, shaped as the run's observation space."""
            observations, single = parse_observations(await read_json(request, options), shape)
            actions = await asyncio.gather(*(serving.batchers["act"].submit(row) for row in observations))
            answer: dict[str, Any] = {"actions": list(actions)}
            if single:
                answer["action"] = actions[0]
            return answer

        @router.post("/v1/connect-four/move")
        async def move(request: Request) -> dict[str, Any]:
            """The agent's column for a board (6 rows of 7, row 0 on top; 0 empty, 1, 2) and whose turn it is."""
            if not connect_four:
                raise ClientError(f"this run plays {config.env}, not {CONNECT_FOUR_ID}: use /v1/act", 404)
            board, turn = parse_board(await read_json(request, options))
            observation = np.stack([board == turn, board == 3 - turn]).astype(np.float32)
            column = await serving.batchers["move"].submit((observation, legal_moves(board)))
            after = board.copy()
            row = drop(after, column, turn)
            won = is_win(after, row, column)
            over = won or not legal_moves(after).any()
            return {"column": column, "row": row, "player": turn, "board": after.tolist(), "won": won,
                    "game_over": over, "winner": turn if won else 0}  # fmt: skip

        @router.get("/v1/episode")
        async def episode(seed: int | None = None) -> dict[str, Any]:
            """Play one episode of the run's environment with the agent (observations or frames to animate)."""
            if seed is not None and not 0 <= seed < 2**31:
                raise ClientError("seed must be between 0 and 2**31 - 1", 422)
            if not slots.acquire(blocking=False):
                raise ClientError("the server is busy playing episodes; retry shortly", 503)
            try:
                chosen = random.randrange(2**31) if seed is None else seed
                frames = config.env not in DRAWN and can_render
                return await asyncio.to_thread(play_episode, backend, chosen, frames)
            finally:
                slots.release()

    space = model.action_space
    labels = [f"column {c}" for c in range(COLUMNS)] if connect_four else None
    if labels is None and isinstance(space, spaces.Discrete):
        labels = [str(action) for action in range(int(space.n))]
    card = {
        "name": "rl",
        "model": config.algo,
        "dataset": config.env,
        "metrics": dict(predictor.run.metrics),
        "inputs": {
            "observation_shape": list(shape),
            "observation_space": str(model.observation_space),
            "normalized": predictor.normalization is not None,
        },
        "labels": labels,
        "action_space": str(space),
        "backend": backend.name,
        "backend_note": backend.note,
        "checkpoint": predictor.run.checkpoint.name,
        "connect_four": connect_four,
        "view": DRAWN.get(config.env, "frames" if can_render else "none"),
    }
    batchers = {"act": act_batch}
    if connect_four:
        batchers["move"] = move_batch

    def warmup() -> None:
        sample = np.stack([model.observation_space.sample()]).astype(np.float32)
        backend.act(sample)
        if connect_four:
            backend.scores(sample)

    return Service("rl", card, add_routes, batchers, page=page(), warmup=warmup)


def _render_modes(config: Any) -> list[str]:
    import gymnasium as gym

    try:
        env = gym.make(config.env, **config.env_kwargs)
    except Exception:  # an env that cannot be built here is still served for /v1/act
        return []
    modes = list(env.metadata.get("render_modes", []))
    env.close()
    return modes


def serve(path: str | Path | None, options: ServeOptions, log: Any = print) -> None:
    """The ``serve`` verb: serve the run (or agent ``.zip``) at ``path`` until SIGINT/SIGTERM.

    Raises:
        ConfigError: Without a path (``--run`` or ``--checkpoint``).
    """
    if not path:
        raise ConfigError("`serve` needs --run RUN_DIR (or --checkpoint PATH: a run folder or an agent .zip).")
    run_server(build_service(path, options, log), options, log)


def page() -> str:
    """The HTML of ``GET /`` (self-contained, shipped in the package)."""
    return resources.files("pentad_rl").joinpath("static/index.html").read_text(encoding="utf-8")
