"""Build (vectorised, wrapped, normalised) gymnasium environments from an :class:`RLConfig`.

Optional environment families fail with a message naming what to install: Box2D
(``pip install "pentad-rl[box2d]"``) and Atari (``pip install "pentad-rl[atari]"``, i.e. ale-py).
"""

from __future__ import annotations

import difflib
import json
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium import error as gym_error
from stable_baselines3.common.env_util import make_vec_env
from stable_baselines3.common.vec_env import (
    DummyVecEnv,
    SubprocVecEnv,
    VecEnv,
    VecFrameStack,
    VecNormalize,
    unwrap_vec_normalize,
)

import pentad_rl.envs  # noqa: F401  (registers pentad/ConnectFour-v0)
from pentad_core.errors import ConfigError, missing_file
from pentad_core.files import atomic_write_bytes
from pentad_rl.config import RLConfig
from pentad_rl.registry import ENV_WRAPPERS

BOX2D_HINT = 'it needs Box2D: install the extra with `pip install "pentad-rl[box2d]"`.'
ATARI_HINT = 'it needs the Atari emulator: install the extra with `pip install "pentad-rl[atari]"` (ale-py).'
BOX2D_ENVS = ("LunarLander", "BipedalWalker", "CarRacing")


def _is_atari(env_id: str) -> bool:
    return env_id.startswith("ALE/") or "NoFrameskip" in env_id


def _register_atari(env_id: str) -> None:
    try:
        import ale_py
    except ImportError:
        raise ConfigError(f"--env {env_id}: {ATARI_HINT}") from None
    gym.register_envs(ale_py)


def check_env_id(env_id: str) -> None:
    """Check that ``env_id`` is registered and its dependencies are installed.

    Raises:
        ConfigError: With close matches for an unknown id, or the package to install for Box2D/Atari.
    """
    if _is_atari(env_id):
        _register_atari(env_id)
    if env_id not in gym.registry:
        if any(env_id.startswith(name) for name in BOX2D_ENVS):
            raise ConfigError(f"--env {env_id} is not registered in this gymnasium version; {BOX2D_HINT}")
        close = difflib.get_close_matches(env_id, list(gym.registry), n=3)
        hint = f" Did you mean {', '.join(close)}?" if close else " List them with `gymnasium.pprint_registry()`."
        raise ConfigError(f"--env {env_id!r} is not a registered gymnasium environment.{hint}")
    try:
        gym.spec(env_id).make().close()
    except gym_error.DependencyNotInstalled as error:
        hint = BOX2D_HINT if any(env_id.startswith(n) for n in BOX2D_ENVS) else f"install what it names: {error}"
        raise ConfigError(f"--env {env_id}: {hint}") from None


def _can_fork() -> bool:
    import multiprocessing

    return "fork" in multiprocessing.get_all_start_methods()


def _wrapper_chain(names: list[str]):
    if not names:
        return None
    wrappers = [ENV_WRAPPERS.get(name) for name in names]

    def wrap(env: gym.Env) -> gym.Env:
        for wrapper in wrappers:
            env = wrapper(env)
        return env

    return wrap


def make_env(
    config: RLConfig,
    n_envs: int | None = None,
    seed: int = 0,
    render_mode: str | None = None,
    training: bool = True,
    monitor_dir: str | None = None,
) -> VecEnv:
    """Build the vectorised environment described by ``config``.

    Args:
        config: Environment id and kwargs, wrappers, frame stacking, normalisation, vectorisation.
        n_envs: Overrides ``config.n_envs`` (evaluation uses 1).
        seed: Env ``i`` is seeded with ``seed + i``.
        render_mode: Passed to ``gymnasium.make`` (``rgb_array`` for recording).
        training: For ``VecNormalize``: update statistics and normalise rewards only when training.
        monitor_dir: Folder for the Monitor CSV files (episode returns and lengths).

    Returns:
        A VecEnv; observations are normalised/stacked as the agent expects.
    """
    check_env_id(config.env)
    env_kwargs: dict[str, Any] = dict(config.env_kwargs)
    if render_mode is not None:
        env_kwargs["render_mode"] = render_mode
    count = n_envs or config.n_envs
    vec_cls = SubprocVecEnv if (config.vec_env == "subproc" and count > 1) else DummyVecEnv
    try:
        env = make_vec_env(
            config.env,
            n_envs=count,
            seed=seed,
            env_kwargs=env_kwargs,
            vec_env_cls=vec_cls,
            # fork starts workers in milliseconds; the workers only step environments (no torch work).
            vec_env_kwargs={"start_method": "fork"} if vec_cls is SubprocVecEnv and _can_fork() else None,
            wrapper_class=_wrapper_chain(list(config.env_wrapper)),
            monitor_dir=monitor_dir,
        )
    except TypeError as error:
        raise ConfigError(f"env_kwargs {config.env_kwargs} do not fit {config.env}: {error}") from None
    if config.frame_stack:
        env = VecFrameStack(env, n_stack=config.frame_stack)
    if config.normalize:
        kwargs = dict(config.normalize_kwargs)
        if not training:
            kwargs["norm_reward"] = False
        env = VecNormalize(env, training=training, **kwargs)
    return env


# -- normalisation statistics, stored as arrays (no pickle) -------------------------------------------
def save_normalization(env: VecEnv | None, path: str | Path) -> bool:
    """Write the ``VecNormalize`` running statistics of ``env`` to ``path`` (``.npz``); False if none."""
    env = unwrap_vec_normalize(env)
    if env is None:
        return False
    if isinstance(env.obs_rms, dict):
        raise ConfigError("normalize: true is not supported with dict observations; set normalize: false.")
    import io

    buffer = io.BytesIO()
    np.savez(
        buffer,
        obs_mean=env.obs_rms.mean,
        obs_var=env.obs_rms.var,
        obs_count=np.float64(env.obs_rms.count),
        ret_mean=env.ret_rms.mean,
        ret_var=env.ret_rms.var,
        ret_count=np.float64(env.ret_rms.count),
        settings=np.frombuffer(
            json.dumps({"clip_obs": env.clip_obs, "clip_reward": env.clip_reward, "epsilon": env.epsilon}).encode(),
            dtype=np.uint8,
        ),
    )
    atomic_write_bytes(path, buffer.getvalue())
    return True


def load_normalization(env: VecEnv, path: str | Path) -> None:
    """Restore statistics written by :func:`save_normalization` into the ``VecNormalize`` ``env``.

    Raises:
        DataError: If the file is missing.
        ConfigError: If ``env`` is not normalised or the shapes differ.
    """
    path = Path(path)
    if not path.is_file():
        raise missing_file(path, "normalisation statistics", "Train with the same preset first.")
    env = unwrap_vec_normalize(env)
    if env is None:
        raise ConfigError(f"{path} holds normalisation statistics but the env has normalize: false.")
    with np.load(path, allow_pickle=False) as data:
        if data["obs_mean"].shape != env.obs_rms.mean.shape:
            raise ConfigError(f"{path}: statistics of shape {data['obs_mean'].shape} do not fit this env.")
        env.obs_rms.mean, env.obs_rms.var = data["obs_mean"], data["obs_var"]
        env.obs_rms.count = float(data["obs_count"])
        env.ret_rms.mean, env.ret_rms.var = data["ret_mean"], data["ret_var"]
        env.ret_rms.count = float(data["ret_count"])
