"""Build (vectorised, wrapped, normalised) gymnasium environments from an :class:`RLConfig`.

Also the ``VecNormalize`` statistics of a run as plain arrays (saved inside each agent ``.zip``, no
pickle), restored into an env for evaluation, or applied by the :class:`~pentad_rl.predictor.Predictor`,
which normalises observations without any env; and :class:`EpisodeRecorder`, which lets a resumed run
rebuild the state of every training env.
"""

from __future__ import annotations

import copy
import functools
import json
import os
import signal
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
from stable_baselines3.common.env_util import make_vec_env
from stable_baselines3.common.monitor import Monitor
from stable_baselines3.common.vec_env import (
    DummyVecEnv,
    SubprocVecEnv,
    VecEnv,
    VecFrameStack,
    VecNormalize,
    unwrap_vec_normalize,
)

from pentad_core.errors import ConfigError, DataError, missing_file
from pentad_rl.config import RLConfig
from pentad_rl.envs.registry import ENV_WRAPPERS, check_env_id


def _can_fork() -> bool:
    import multiprocessing

    return "fork" in multiprocessing.get_all_start_methods()


def _wrapper(item: str | dict[str, dict[str, Any]], in_worker: bool):
    """One ``env_wrapper`` item: a name of ``ENV_WRAPPERS`` or ``{name: {keyword: value}}``."""
    if item == "record":
        return functools.partial(EpisodeRecorder, ignore_interrupt=in_worker)
    if isinstance(item, dict):
        if len(item) != 1:
            raise ConfigError(f"env_wrapper item {item!r} must be a name or {{name: {{keyword: value}}}}.")
        name, kwargs = next(iter(item.items()))
        return functools.partial(ENV_WRAPPERS.get(name), **dict(kwargs or {}))
    return ENV_WRAPPERS.get(item)


def _wrapper_chain(names: list[str | dict[str, dict[str, Any]]], in_worker: bool = False):
    if not names:
        return None
    wrappers = [_wrapper(item, in_worker) for item in names]

    def wrap(env: gym.Env) -> gym.Env:
        for wrapper in wrappers:
            env = wrapper(env)
        return env

    return wrap


class EpisodeRecorder(gym.Wrapper):
    """Records how the current episode started and the actions taken since, to rebuild the env's state.

    A checkpoint stores :meth:`snapshot` of every training env; a resumed run calls :meth:`restore`,
    which starts the episode again (the same seed, or the same state of the env's random generator) and
    replays the actions. A gymnasium env whose randomness all comes from its ``np_random`` is then in
    exactly the state it had at the checkpoint, so the resumed run continues the interrupted one step
    for step. The Monitor beneath it gets its elapsed time back, so its ``t`` column continues.

    Args:
        env: The env.
        ignore_interrupt: In a ``SubprocVecEnv`` worker: ignore Ctrl-C, which a terminal sends to every
            process, so that the main process can answer it (write the checkpoint) with its workers alive.
    """

    def __init__(self, env: gym.Env, ignore_interrupt: bool = False) -> None:
        super().__init__(env)
        self._start: dict[str, Any] | None = None
        self._actions: list[Any] = []
        if ignore_interrupt and threading.current_thread() is threading.main_thread():
            signal.signal(signal.SIGINT, signal.SIG_IGN)

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None):
        base = self.env.unwrapped
        if seed is not None:
            start: dict[str, Any] = {"seed": int(seed)}
        elif getattr(base, "_np_random", None) is not None:
            start = {"rng": copy.deepcopy(base.np_random.bit_generator.state)}
        else:
            start = {}
        self._start = {**start, "options": options or None}
        self._actions = []
        return self.env.reset(seed=seed, options=options)

    def step(self, action):
        self._actions.append(np.asarray(action).tolist())
        return self.env.step(action)

    def _monitor(self) -> Monitor | None:
        env = self.env
        while isinstance(env, gym.Wrapper):
            if isinstance(env, Monitor):
                return env
            env = env.env
        return None

    def snapshot(self) -> dict[str, Any]:
        """How the current episode started, its actions so far, and the Monitor's elapsed seconds (JSON-safe)."""
        monitor = self._monitor()
        return {
            "start": self._start,
            "actions": list(self._actions),
            "monitor_elapsed": time.time() - monitor.t_start if monitor is not None else None,
        }

    def restore(self, snapshot: dict[str, Any]) -> bool:
        """Rebuild the state of :meth:`snapshot` (the Monitor writes nothing: no episode ends in a replay).

        Returns:
            Whether the episode's start was known (else it starts from the env's current generator).
        """
        start = snapshot.get("start") or {}
        options = start.get("options")
        if "seed" in start:
            self.reset(seed=int(start["seed"]), options=options)
        else:
            if "rng" in start:
                self.env.unwrapped.np_random.bit_generator.state = start["rng"]
            self.reset(options=options)
        dtype = self.action_space.dtype
        for action in snapshot.get("actions", []):
            self.step(np.asarray(action, dtype=dtype) if dtype is not None else action)
        monitor = self._monitor()
        if monitor is not None and snapshot.get("monitor_elapsed") is not None:
            monitor.t_start = time.time() - float(snapshot["monitor_elapsed"])
        return "seed" in start or "rng" in start


def check_render_mode(config: RLConfig, mode: str) -> None:
    """Check that ``mode`` (``human``, ``ansi``, ``rgb_array``) can be shown for the env of ``config``.

    Raises:
        ConfigError: For ``human`` without a display, or a mode the environment does not offer.
    """
    if mode == "human" and not (
        os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY") or sys.platform in ("darwin", "win32")
    ):
        raise ConfigError("--render human needs a display (DISPLAY is unset); use --render ansi or `record`.")
    check_env_id(config.env)
    probe = gym.make(config.env, **config.env_kwargs)
    modes = list(probe.metadata.get("render_modes", []))
    probe.close()
    if mode not in modes:
        raise ConfigError(
            f"--render {mode} is not supported by {config.env} (it offers {', '.join(modes)}); use `record` for a GIF."
        )


def make_env(
    config: RLConfig,
    n_envs: int | None = None,
    seed: int = 0,
    render_mode: str | None = None,
    training: bool = True,
    monitor_dir: str | None = None,
    monitor_append: bool = False,
    record_episodes: bool = False,
) -> VecEnv:
    """Build the vectorised environment described by ``config``.

    Args:
        config: Environment id and kwargs, wrappers, frame stacking, normalisation, vectorisation.
        n_envs: Overrides ``config.n_envs`` (evaluation uses 1).
        seed: Env ``i`` is seeded with ``seed + i``.
        render_mode: Passed to ``gymnasium.make`` (``rgb_array`` for recording).
        training: For ``VecNormalize``: update statistics and normalise rewards only when training.
        monitor_dir: Folder for the Monitor CSV files (episode returns and lengths).
        monitor_append: Continue the Monitor CSV files already in ``monitor_dir`` (a resumed run)
            instead of starting them anew.
        record_episodes: Wrap every env in :class:`EpisodeRecorder` (the training env of a run, so that
            ``--resume`` can rebuild its state).

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
            wrapper_class=_wrapper_chain(
                [*config.env_wrapper, *(["record"] if record_episodes else [])], in_worker=vec_cls is SubprocVecEnv
            ),
            monitor_dir=monitor_dir,
            monitor_kwargs={"override_existing": not monitor_append},
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
@dataclass(frozen=True)
class Normalization:
    """``VecNormalize``'s observation statistics as arrays, applied exactly as ``VecNormalize`` does.

    Attributes:
        obs_mean: Running mean of the observations, shape ``observation_shape``.
        obs_var: Running variance, same shape.
        clip_obs: Normalised observations are clipped to ``[-clip_obs, clip_obs]``.
        epsilon: Added to the variance before the square root.
        norm_obs: False when ``VecNormalize`` only normalised rewards: observations pass unchanged.
    """

    obs_mean: np.ndarray
    obs_var: np.ndarray
    clip_obs: float = 10.0
    epsilon: float = 1e-8
    norm_obs: bool = True

    @classmethod
    def from_arrays(cls, arrays: dict[str, np.ndarray]) -> Normalization:
        """The statistics written by :func:`normalization_arrays`."""
        settings = _settings(arrays)
        return cls(
            arrays["obs_mean"],
            arrays["obs_var"],
            float(settings["clip_obs"]),
            float(settings["epsilon"]),
            bool(settings.get("norm_obs", True)),
        )

    def __call__(self, observations: np.ndarray) -> np.ndarray:
        """``clip((obs - mean) / sqrt(var + eps))``, shape ``(N, *observation_shape)`` in and out."""
        if not self.norm_obs:
            return observations
        scaled = (observations - self.obs_mean) / np.sqrt(self.obs_var + self.epsilon)
        return np.clip(scaled, -self.clip_obs, self.clip_obs).astype(np.float32)


def _settings(arrays: dict[str, np.ndarray]) -> dict[str, Any]:
    return json.loads(np.asarray(arrays["settings"], dtype=np.uint8).tobytes().decode())


def normalization_arrays(env: VecEnv | None) -> dict[str, np.ndarray] | None:
    """The ``VecNormalize`` running statistics of ``env`` as plain arrays; ``None`` when it has none."""
    env = unwrap_vec_normalize(env) if env is not None else None
    if env is None:
        return None
    if isinstance(env.obs_rms, dict):
        raise ConfigError("normalize: true is not supported with dict observations; set normalize: false.")
    settings = {
        "clip_obs": env.clip_obs,
        "clip_reward": env.clip_reward,
        "epsilon": env.epsilon,
        "norm_obs": env.norm_obs,
    }
    return {
        "obs_mean": np.asarray(env.obs_rms.mean),
        "obs_var": np.asarray(env.obs_rms.var),
        "obs_count": np.float64(env.obs_rms.count),
        "ret_mean": np.asarray(env.ret_rms.mean),
        "ret_var": np.asarray(env.ret_rms.var),
        "ret_count": np.float64(env.ret_rms.count),
        "settings": np.frombuffer(json.dumps(settings).encode(), dtype=np.uint8),
    }


def read_normalization_arrays(path: str | Path) -> dict[str, np.ndarray]:
    """The statistics of a ``<stem>_vecnormalize.npz`` file (runs of earlier releases), ``allow_pickle=False``.

    Raises:
        DataError: If the file is missing or holds anything but plain arrays (e.g. pickled objects).
    """
    path = Path(path)
    if not path.is_file():
        raise missing_file(path, "normalisation statistics of the agent", "Copy them next to the .zip.")
    try:
        with np.load(path, allow_pickle=False) as data:
            return {key: data[key] for key in data.files}
    except (ValueError, OSError, EOFError) as error:
        first = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise DataError(f"{path} is not a file of plain arrays and is refused ({first}).") from None


def load_normalization(env: VecEnv, arrays: dict[str, np.ndarray]) -> None:
    """Restore statistics from :func:`normalization_arrays` into the ``VecNormalize`` ``env``.

    Raises:
        ConfigError: If ``env`` is not normalised or the shapes differ.
    """
    env = unwrap_vec_normalize(env)
    if env is None:
        raise ConfigError("the agent holds normalisation statistics but the env has normalize: false.")
    if arrays["obs_mean"].shape != env.obs_rms.mean.shape:
        raise ConfigError(f"normalisation statistics of shape {arrays['obs_mean'].shape} do not fit this env.")
    env.obs_rms.mean, env.obs_rms.var = arrays["obs_mean"].copy(), arrays["obs_var"].copy()
    env.obs_rms.count = float(arrays["obs_count"])
    env.ret_rms.mean, env.ret_rms.var = arrays["ret_mean"].copy(), arrays["ret_var"].copy()
    env.ret_rms.count = float(arrays["ret_count"])
