"""The resumable checkpoint of a training run: ``checkpoints/last.zip``, one file, one atomic rename.

Beside the agent (weights, optimiser states, normalisation statistics; :mod:`pentad_rl.agents`) it holds
everything a resumed run needs to continue the interrupted one step for step:

* ``pentad/resume.json``: the step counters (``num_timesteps``, updates, episodes, DQN's target-update
  count and exploration rate), the random generators (Python's, NumPy's, the action space's, every env's
  and the evaluation env's), how each training env's current episode started and its actions since
  (:class:`~pentad_rl.envs.make.EpisodeRecorder`), the size of each Monitor CSV, and the state of the
  callbacks (evaluation curve and best return, self-play opponent);
* ``pentad/resume/*.npy``: the last observations, torch's generator, ``VecNormalize``'s running returns,
  stacked frames, LSTM states, action noise;
* ``pentad/replay_buffer/*.npy`` (off-policy algorithms): the filled part of the replay buffer.

A checkpoint is taken at the start of a rollout (after the previous update, before the next step), the
one point where all of this is consistent. Everything is JSON or ``.npy`` read with ``allow_pickle=False``:
loading a checkpoint runs no code from it.
"""

from __future__ import annotations

import json
import random
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import torch
from stable_baselines3.common.base_class import BaseAlgorithm
from stable_baselines3.common.off_policy_algorithm import OffPolicyAlgorithm
from stable_baselines3.common.vec_env import DummyVecEnv, VecEnv, VecEnvWrapper, VecFrameStack, VecNormalize

from pentad_core.errors import CheckpointError
from pentad_core.files import atomic_write_bytes
from pentad_rl.agents import load_agent, read_arrays, read_member, save_agent
from pentad_rl.config import RLConfig
from pentad_rl.envs.make import load_normalization

STATE, ARRAYS, BUFFER = "pentad/resume.json", "pentad/resume", "pentad/replay_buffer"
#: Version of the resume state; a checkpoint with another one is refused with a clear message.
FORMAT = 1
#: Counters of the algorithm that a resumed run must continue from (those an algorithm has).
COUNTERS = ("num_timesteps", "_n_updates", "_episode_num", "_n_calls", "exploration_rate")
#: The arrays of a replay buffer, stored up to its filled size.
BUFFER_ARRAYS = ("observations", "next_observations", "actions", "rewards", "dones", "timeouts")


class Resumable(Protocol):
    """A callback with state of its own: JSON-safe values and arrays, restored before training goes on."""

    def state(self) -> tuple[dict[str, Any], dict[str, np.ndarray]]: ...

    def load_state(self, model: BaseAlgorithm, state: dict[str, Any], arrays: dict[str, np.ndarray]) -> None: ...


def _vec_layers(env: VecEnv) -> list[VecEnv]:
    layers = [env]
    while isinstance(layers[-1], VecEnvWrapper):
        layers.append(layers[-1].venv)
    return layers


def _layer(env: VecEnv, kind: type) -> Any:
    return next((layer for layer in _vec_layers(env) if isinstance(layer, kind)), None)


def _flat(prefix: str, value: Any) -> dict[str, np.ndarray]:
    """``{prefix: array}`` or, for dict observations, ``{prefix.key: array}``."""
    if value is None:
        return {}
    if isinstance(value, Mapping):
        return {f"{prefix}.{key}": np.asarray(item) for key, item in value.items()}
    return {prefix: np.asarray(value)}


def _unflat(prefix: str, arrays: Mapping[str, np.ndarray]) -> Any:
    if prefix in arrays:
        return arrays[prefix]
    keyed = {name[len(prefix) + 1 :]: value for name, value in arrays.items() if name.startswith(f"{prefix}.")}
    return keyed or None


def _eval_generator(eval_env: VecEnv | None) -> Any:
    base = _vec_layers(eval_env)[-1] if eval_env is not None else None
    if not isinstance(base, DummyVecEnv):
        return None
    return base.envs[0].unwrapped


def save_checkpoint(
    model: BaseAlgorithm,
    path: str | Path,
    *,
    eval_env: VecEnv | None = None,
    parts: Mapping[str, Resumable] | None = None,
    monitor_dir: str | Path | None = None,
) -> Path:
    """Write the resumable checkpoint of ``model`` (agent, replay buffer, statistics, resume state) to ``path``.

    Call it at the start of a rollout (``BaseCallback._on_rollout_start``) or at the end of training.
    """
    env = model.get_env()
    counters = {name: getattr(model, name) for name in COUNTERS if hasattr(model, name)}
    python_state = random.getstate()
    numpy_state = np.random.get_state()
    eval_base = _eval_generator(eval_env)
    eval_rng = None
    if eval_base is not None and getattr(eval_base, "_np_random", None) is not None:
        eval_rng = eval_base.np_random.bit_generator.state
    state: dict[str, Any] = {
        "format": FORMAT,
        "counters": counters,
        "python_random": [python_state[0], list(python_state[1]), python_state[2]],
        "numpy_random": [numpy_state[0], int(numpy_state[2]), int(numpy_state[3]), float(numpy_state[4])],
        "action_space_random": model.action_space.np_random.bit_generator.state,
        "envs": env.env_method("snapshot"),
        "eval_env": {
            "seeds_spent": eval_base is not None and _vec_layers(eval_env)[-1]._seeds[0] is None,
            "random": eval_rng,
        },
        "monitor": _monitor_sizes(monitor_dir),
    }
    arrays: dict[str, np.ndarray] = {
        **_flat("last_obs", model._last_obs),
        **_flat("last_original_obs", getattr(model, "_last_original_obs", None)),
        "last_episode_starts": np.asarray(model._last_episode_starts),
        "numpy_random_keys": np.asarray(numpy_state[1]),
        "torch_random": torch.get_rng_state().numpy(),
    }
    normalize = _layer(env, VecNormalize)
    if normalize is not None:
        arrays["vecnormalize_returns"] = np.asarray(normalize.returns)
    stack = _layer(env, VecFrameStack)
    if stack is not None and isinstance(getattr(stack.stacked_obs, "stacked_obs", None), np.ndarray):
        arrays["stacked_obs"] = stack.stacked_obs.stacked_obs
    lstm = getattr(model, "_last_lstm_states", None)
    if lstm is not None:
        for head in ("pi", "vf"):
            for index, tensor in enumerate(getattr(lstm, head)):
                arrays[f"lstm_{head}_{index}"] = tensor.detach().cpu().numpy()
    noise = getattr(model, "action_noise", None)
    if noise is not None and hasattr(noise, "noise_prev"):
        arrays["action_noise"] = np.asarray(noise.noise_prev)
    extra: dict[str, Any] = {}
    for name, part in (parts or {}).items():
        part_state, part_arrays = part.state()
        state[name] = part_state
        if part_arrays:
            extra[f"pentad/{name}"] = part_arrays
    if isinstance(model, OffPolicyAlgorithm) and model.replay_buffer is not None:
        buffer = model.replay_buffer
        size = buffer.buffer_size if buffer.full else buffer.pos
        state["replay_buffer"] = {"pos": int(buffer.pos), "full": bool(buffer.full), "size": int(size)}
        stored = {}
        for name in BUFFER_ARRAYS:
            value = getattr(buffer, name, None)
            if isinstance(value, Mapping):
                stored.update({f"{name}.{key}": item[:size] for key, item in value.items()})
            elif isinstance(value, np.ndarray):
                stored[name] = value[:size]
        extra[BUFFER] = stored
    extra[ARRAYS] = arrays
    extra[STATE] = json.dumps(state).encode()
    return save_agent(model, path, env=env, extra=extra)


def _monitor_sizes(monitor_dir: str | Path | None) -> dict[str, int]:
    if monitor_dir is None or not Path(monitor_dir).is_dir():
        return {}
    return {path.name: path.stat().st_size for path in sorted(Path(monitor_dir).glob("*.monitor.csv"))}


def read_resume_state(path: str | Path) -> dict[str, Any]:
    """The resume state of the checkpoint ``path``, checked before anything is built.

    Raises:
        CheckpointError: If ``path`` holds no resume state (a ``best.zip``, a ``step_<N>.zip``, or a
            ``last.zip`` of an earlier pentad-rl), or one of another format.
    """
    raw = read_member(path, STATE)
    if raw is None:
        raise CheckpointError(
            f"{path} holds an agent but no resume state (only checkpoints/last.zip of a run does).",
            "Resume with --resume last, or start a new run; this agent can still be evaluated.",
        )
    try:
        state = json.loads(raw)
    except ValueError as error:
        raise CheckpointError(f"{path}: its resume state is not readable JSON ({error}).") from None
    if not isinstance(state, dict) or state.get("format") != FORMAT:
        raise CheckpointError(f"{path}: resume state of format {state.get('format')!r}; this pentad-rl reads {FORMAT}.")
    return state


def prepare_monitor(monitor_dir: str | Path, state: Mapping[str, Any]) -> None:
    """Cut each Monitor CSV back to its size at the checkpoint (episodes logged after it are logged again
    by the resumed run; a line half-written by a kill goes too), atomically."""
    for name, size in state.get("monitor", {}).items():
        path = Path(monitor_dir) / name
        if path.is_file() and path.stat().st_size > size:
            with path.open("rb") as handle:
                atomic_write_bytes(path, handle.read(size))


def resume_agent(
    path: str | Path,
    config: RLConfig,
    env: VecEnv,
    *,
    eval_env: VecEnv | None = None,
    parts: Mapping[str, Resumable] | None = None,
    seed: int | None = None,
    tensorboard_log: str | None = None,
) -> tuple[BaseAlgorithm, Callable[[], None]]:
    """Rebuild the agent of the checkpoint ``path`` on ``env`` exactly as it was when the checkpoint was taken.

    Returns:
        ``(model, finish)``: call ``finish()`` once ``learn`` has set itself up (a callback's
        ``_on_training_start``): it restores what ``learn`` resets (the action noise).

    Raises:
        CheckpointError: If ``path`` is not a resumable checkpoint of this config (see
            :func:`read_resume_state`), or a member needs unpickling or does not fit.
    """
    state = read_resume_state(path)
    arrays = read_arrays(path, ARRAYS) or {}
    model = load_agent(path, config, env=env, seed=seed, tensorboard_log=tensorboard_log)
    try:
        _restore(path, model, env, state, arrays, eval_env, parts or {})
    except (KeyError, TypeError, ValueError, IndexError, AttributeError, AssertionError, RuntimeError) as error:
        raise CheckpointError(
            f"{path}: its resume state does not fit this run ({type(error).__name__}: {error})."
        ) from None

    def finish() -> None:
        noise = getattr(model, "action_noise", None)
        if noise is not None and "action_noise" in arrays:
            noise.noise_prev = arrays["action_noise"].copy()

    return model, finish


def _restore(
    path: str | Path,
    model: BaseAlgorithm,
    env: VecEnv,
    state: dict[str, Any],
    arrays: dict[str, np.ndarray],
    eval_env: VecEnv | None,
    parts: Mapping[str, Resumable],
) -> None:
    """Put the state of the checkpoint ``path`` into ``model``, its envs, its callbacks and the generators."""
    for name, value in state["counters"].items():
        if name in COUNTERS and hasattr(model, name) and isinstance(value, int | float) and not isinstance(value, bool):
            setattr(model, name, type(getattr(model, name))(value))
    statistics = read_arrays(path, "pentad/vecnormalize")
    normalize = _layer(env, VecNormalize)
    if normalize is not None:
        if statistics is None:
            raise CheckpointError(f"{path} has no normalisation statistics but the run has normalize: true.")
        load_normalization(env, statistics)
        normalize.returns = arrays["vecnormalize_returns"].copy()
    if isinstance(model, OffPolicyAlgorithm) and model.replay_buffer is not None:
        _load_buffer(path, model, state.get("replay_buffer"))
    for name, part in parts.items():
        part.load_state(model, state.get(name, {}), read_arrays(path, f"pentad/{name}") or {})
    # Every training env back in its episode, as it was (the vectorised env's pending seeds are spent).
    for index, snapshot in enumerate(state["envs"]):
        env.env_method("restore", snapshot, indices=[index])
    base = _vec_layers(env)[-1]
    base._reset_seeds()
    base._reset_options()
    stack = _layer(env, VecFrameStack)
    if stack is not None and "stacked_obs" in arrays:
        stack.stacked_obs.stacked_obs = arrays["stacked_obs"].copy()
    model._last_obs = _unflat("last_obs", arrays)
    model._last_original_obs = _unflat("last_original_obs", arrays)
    model._last_episode_starts = arrays["last_episode_starts"].copy()
    lstm = getattr(model, "_last_lstm_states", None)
    if lstm is not None and "lstm_pi_0" in arrays:
        device = model.device
        heads = {
            head: tuple(torch.as_tensor(arrays[f"lstm_{head}_{i}"], device=device) for i in range(2))
            for head in ("pi", "vf")
        }
        model._last_lstm_states = type(lstm)(**heads)
    eval_base = _eval_generator(eval_env)
    if eval_base is not None and state["eval_env"]["seeds_spent"]:
        _vec_layers(eval_env)[-1]._reset_seeds()
        if state["eval_env"]["random"] is not None:
            eval_base.np_random.bit_generator.state = state["eval_env"]["random"]
    model.action_space.np_random.bit_generator.state = state["action_space_random"]
    # The global generators last: building the agent and replaying the episodes drew from them.
    python = state["python_random"]
    random.setstate((python[0], tuple(python[1]), python[2]))
    name, position, has_gauss, cached = state["numpy_random"]
    np.random.set_state((name, arrays["numpy_random_keys"], position, has_gauss, cached))
    torch.set_rng_state(torch.as_tensor(arrays["torch_random"], dtype=torch.uint8))


def _load_buffer(path: str | Path, model: OffPolicyAlgorithm, info: Mapping[str, Any] | None) -> None:
    stored = read_arrays(path, BUFFER)
    if info is None or stored is None:
        raise CheckpointError(f"{path} has no replay buffer; it cannot resume a {type(model).__name__} run.")
    buffer, size = model.replay_buffer, int(info["size"])
    for name in BUFFER_ARRAYS:
        target = getattr(buffer, name, None)
        items = target.items() if isinstance(target, Mapping) else [(None, target)]
        for key, array in items:
            if not isinstance(array, np.ndarray):
                continue
            saved = stored.get(name if key is None else f"{name}.{key}")
            if saved is None or saved.shape[0] != size or saved.shape[1:] != array.shape[1:] or size > len(array):
                raise CheckpointError(
                    f"{path}: its replay buffer ({name}) does not fit buffer_size {buffer.buffer_size} of this run."
                )
            array[:size] = saved
    buffer.pos, buffer.full = int(info["pos"]), bool(info["full"])
