"""Record an agent playing as an animated GIF (imageio), or MP4 when imageio-ffmpeg is installed."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
from stable_baselines3.common.base_class import BaseAlgorithm

from pentad_core.errors import ConfigError
from pentad_core.files import atomic_write_bytes
from pentad_rl.config import RLConfig
from pentad_rl.envs.make import load_normalization, make_env


def collect_frames(
    model: BaseAlgorithm,
    config: RLConfig,
    episodes: int = 1,
    seed: int = 0,
    max_frames: int = 500,
    normalization: dict[str, np.ndarray] | None = None,
    deterministic: bool = True,
) -> tuple[list[np.ndarray], list[float]]:
    """Play ``episodes`` episodes in ``rgb_array`` mode and return the frames and episode returns.

    Args:
        model: The agent.
        config: The agent's config (env, wrappers, normalisation).
        episodes: Episodes to play.
        seed: Seed of the recording env.
        max_frames: Stop after this many frames (keeps files small).
        normalization: The statistics saved with the agent (``Predictor.statistics``), needed when
            ``config.normalize``.
        deterministic: Greedy actions.

    Returns:
        ``(frames, returns)``: ``uint8`` images of shape (H, W, 3) and one raw return per finished episode.
    """
    if not os.environ.get("DISPLAY"):
        os.environ.setdefault("SDL_VIDEODRIVER", "dummy")  # pygame renders off-screen without complaints
    env = make_env(config, n_envs=1, seed=seed, render_mode="rgb_array", training=False)
    if config.normalize and normalization is not None:
        load_normalization(env, normalization)
    frames: list[np.ndarray] = []
    returns: list[float] = []
    observation = env.reset()
    frames.append(np.asarray(env.render()))
    state, start, total = None, np.ones(1, dtype=bool), 0.0
    while len(returns) < episodes and len(frames) < max_frames:
        action, state = model.predict(observation, state=state, episode_start=start, deterministic=deterministic)
        observation, reward, done, info = env.step(action)
        total += float(reward[0])
        start = done
        if done[0]:
            # The vec env has already reset; the terminal frame is lost, the next episode's first is shown.
            episode = info[0].get("episode")
            returns.append(float(episode["r"]) if episode else total)
            total = 0.0
        frames.append(np.asarray(env.render()))
    env.close()
    return frames, returns


def write_animation(frames: list[np.ndarray], path: str | Path, fps: int = 30, max_width: int = 320) -> Path:
    """Write ``frames`` to ``path`` (``.gif``; ``.mp4`` needs imageio-ffmpeg), atomically.

    Frames wider than ``max_width`` are downsampled by an integer stride to keep GIFs small.

    Raises:
        ConfigError: For an unsupported suffix, no frames, or MP4 without imageio-ffmpeg.
    """
    import imageio.v3 as iio

    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in (".gif", ".mp4"):
        raise ConfigError(f"recording path {path} must end in .gif or .mp4.")
    if not frames:
        raise ConfigError("nothing to record: the environment produced no frames.")
    stride = max(1, int(np.ceil(frames[0].shape[1] / max_width)))
    clip = np.stack([frame[::stride, ::stride, :3] for frame in frames]).astype(np.uint8)
    if suffix == ".gif":
        data = iio.imwrite("<bytes>", clip, extension=".gif", duration=1000 / fps, loop=0)
    else:
        try:
            import imageio_ffmpeg  # noqa: F401
        except ImportError:
            raise ConfigError(
                "MP4 recording needs imageio-ffmpeg: `pip install imageio-ffmpeg`, or record a .gif instead."
            ) from None
        data = iio.imwrite("<bytes>", clip, extension=".mp4", fps=fps)
    atomic_write_bytes(path, data)
    return path


def record(
    model: BaseAlgorithm,
    config: RLConfig,
    path: str | Path,
    episodes: int = 1,
    seed: int = 0,
    fps: int | None = None,
    max_frames: int = 500,
    normalization: dict[str, np.ndarray] | None = None,
) -> tuple[Path, list[float]]:
    """Record the agent playing ``episodes`` episodes into ``path``; returns the path and the returns."""
    frames, returns = collect_frames(model, config, episodes, seed, max_frames, normalization)
    if fps is None:
        fps = 2 if config.env.startswith("pentad/") else 30
    return write_animation(frames, path, fps=fps), returns
