"""Build, save and load stable-baselines3 agents from an :class:`RLConfig`, without unpickling any file.

An agent file is a stable-baselines3 ``.zip`` (``PPO.load`` still reads it) to which pentad adds its own
members: ``pentad/vecnormalize/*.npy`` (the observation statistics of ``normalize: true``) and, in the
resumable ``last.zip``, the resume state (:mod:`pentad_rl.checkpoints`). One file is one consistent set,
replaced by one atomic rename.

Loading never runs code from the file: stable-baselines3's own ``load`` unpickles the archive's ``data``
with cloudpickle, so pentad does not call it. The agent is rebuilt from the run's config (algorithm,
policy, ``model_options``, ``policy_kwargs``) and given the weights and optimiser states of the
``*.pth`` members, read with ``torch.load(weights_only=True)``; arrays are ``.npy`` members read with
``allow_pickle=False``; the ``data`` member is read as JSON for its plain numbers only.
"""

from __future__ import annotations

import copy
import io
import json
import zipfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch
from stable_baselines3.common.base_class import BaseAlgorithm
from stable_baselines3.common.save_util import recursive_setattr
from stable_baselines3.common.vec_env import VecEnv

from pentad_core.errors import CheckpointError, ConfigError, missing_file
from pentad_core.files import atomic_open
from pentad_rl.algorithms import action_kind, default_policy, is_off_policy
from pentad_rl.config import RLConfig
from pentad_rl.envs.make import make_env, normalization_arrays, read_normalization_arrays
from pentad_rl.hyperparams import build_action_noise, build_model_options, build_policy_kwargs
from pentad_rl.registry import ALGORITHMS

#: Constructor arguments pentad sets itself (from the config's other fields and the env); not model_options.
GIVEN = ("policy", "env", "seed", "device", "tensorboard_log", "verbose", "policy_kwargs", "action_noise")
#: Members of an agent file that pentad writes (stable-baselines3 ignores them).
NORMALIZATION = "pentad/vecnormalize"


def agent_arguments(config: RLConfig, env: VecEnv) -> dict[str, Any]:
    """The algorithm's constructor arguments other than ``policy``/``env``/``seed``/...: ``model_options``
    (schedules and tuples converted), ``policy_kwargs`` and action noise.

    Raises:
        ConfigError: If a ``model_options`` key is not a constructor argument of the algorithm (naming
            it and listing the valid ones), or the algorithm cannot act in ``env``'s action space.
    """
    kind = action_kind(env.action_space)
    tasks = ALGORITHMS.info(config.algo).tasks
    if tasks and kind not in tasks:
        raise ConfigError(
            f"--algo {config.algo} handles {' and '.join(tasks)} actions; --env {config.env} has {kind} ones. "
            "Run `models` for the alternatives."
        )
    options = ALGORITHMS.options(config.algo, build_model_options(config.model_options), given=GIVEN)
    if config.policy_kwargs:
        options["policy_kwargs"] = build_policy_kwargs(config.policy_kwargs)
    noise = build_action_noise(config.noise_type or None, config.noise_std, env.action_space)
    if noise is not None:
        options["action_noise"] = noise
    return options


def build_agent(
    config: RLConfig,
    env: VecEnv,
    seed: int = 0,
    tensorboard_log: str | None = None,
    verbose: int = 0,
) -> BaseAlgorithm:
    """Create the agent of ``config.algo`` on ``env`` with the preset's ``model_options``.

    Args:
        config: Algorithm, policy, ``model_options`` (schedules allowed), policy kwargs, action noise.
        env: The vectorised training environment.
        seed: Seeds the networks, the action sampling and the action-space RNG.
        tensorboard_log: Folder for TensorBoard event files; ``None`` disables them.
        verbose: SB3 verbosity (0 silent, 1 info).

    Raises:
        ConfigError: If a ``model_options`` key is unknown to the algorithm or the algorithm cannot handle
            the environment's action space (e.g. DQN on continuous actions).
    """
    arguments = agent_arguments(config, env)
    policy = config.policy or default_policy(config.algo, env.observation_space)
    try:
        return ALGORITHMS.get(config.algo)(
            policy, env, seed=seed, device=config.device, tensorboard_log=tensorboard_log, verbose=verbose, **arguments
        )
    except TypeError as error:
        raise ConfigError(f"model_options for {config.algo} are not accepted: {error}. Check the preset.") from None
    except (AssertionError, ValueError, KeyError) as error:
        raise ConfigError(f"--algo {config.algo} cannot train on --env {config.env}: {error}") from None


# -- agent files ----------------------------------------------------------------------------------------
def write_arrays(archive: zipfile.ZipFile, prefix: str, arrays: Mapping[str, np.ndarray]) -> None:
    """Write each array as the member ``<prefix>/<name>.npy`` (no pickle; streamed, so large buffers fit)."""
    for name, array in arrays.items():
        with archive.open(f"{prefix}/{name}.npy", "w", force_zip64=True) as member:
            np.lib.format.write_array(member, np.asarray(array), allow_pickle=False)


def read_arrays(path: str | Path, prefix: str) -> dict[str, np.ndarray] | None:
    """The ``<prefix>/*.npy`` members of the agent file ``path`` (``allow_pickle=False``); ``None`` if absent.

    Raises:
        CheckpointError: If a member is not a plain array (e.g. an object array, which would need pickle).
    """
    with _open_archive(path) as archive:
        names = [name for name in archive.namelist() if name.startswith(f"{prefix}/") and name.endswith(".npy")]
        if not names:
            return None
        arrays = {}
        for name in names:
            try:
                with archive.open(name) as member:
                    arrays[name[len(prefix) + 1 : -4]] = np.lib.format.read_array(member, allow_pickle=False)
            except (ValueError, OSError, EOFError) as error:
                raise CheckpointError(f"{path}: member {name} is not a plain array ({_first_line(error)}).") from None
        return arrays


def read_member(path: str | Path, name: str) -> bytes | None:
    """The bytes of member ``name`` of the agent file ``path``, or ``None`` when it has none."""
    with _open_archive(path) as archive:
        return archive.read(name) if name in archive.namelist() else None


def save_agent(
    model: BaseAlgorithm,
    path: str | Path,
    env: VecEnv | None = None,
    extra: Mapping[str, Mapping[str, np.ndarray] | bytes] | None = None,
) -> Path:
    """Save ``model`` to ``path`` (a ``.zip``) in one atomic write, with its normalisation statistics.

    Args:
        model: The agent.
        path: The ``.zip`` to write; a crash during the write leaves the previous file intact.
        env: Whose ``VecNormalize`` statistics go into the file (default: the agent's own env).
        extra: Further members: ``{prefix: {name: array}}`` (``.npy`` members) or ``{name: bytes}``.

    Returns:
        ``path``.
    """
    path = Path(path)
    sb3 = io.BytesIO()
    model.save(sb3)
    statistics = normalization_arrays(env if env is not None else model.get_env())
    with atomic_open(path, "wb") as handle, zipfile.ZipFile(handle, "w") as archive:
        with zipfile.ZipFile(sb3) as source:
            for info in source.infolist():
                archive.writestr(info, source.read(info))
        if statistics is not None:
            write_arrays(archive, NORMALIZATION, statistics)
        for name, content in (extra or {}).items():
            if isinstance(content, bytes):
                archive.writestr(name, content, compress_type=zipfile.ZIP_DEFLATED)
            else:
                write_arrays(archive, name, content)
    return path


def load_agent(
    path: str | Path,
    config: RLConfig,
    env: VecEnv | None = None,
    seed: int | None = None,
    tensorboard_log: str | None = None,
) -> BaseAlgorithm:
    """Rebuild the agent of ``config`` and give it the weights saved at ``path``; nothing is unpickled.

    Args:
        path: An agent ``.zip`` (pentad's or stable-baselines3's format).
        config: The config it was trained with (the run's ``config.yaml``, or ``--algo``/``--env``/options
            for a loose file): the algorithm, policy and network are built from it.
        env: Environment to continue training on; ``None`` builds a one-env copy of ``config``'s
            environment for the spaces (and drops it: the agent then acts without an env).
        seed: Seed of the rebuilt agent (default ``config.seed``).
        tensorboard_log: Folder for TensorBoard event files when training continues.

    Raises:
        DataError: If the file is missing.
        CheckpointError: If it is not an agent file, a member needs unpickling (refused), or the weights
            do not fit the agent ``config`` describes.
    """
    path = Path(path)
    if not path.is_file():
        raise missing_file(path, "agent checkpoint", "Train first or pass the path of a saved .zip.")
    params, variables, counters = _read_weights(path, config.device)
    own_env = env is None
    build_config = config
    if own_env:
        env = make_env(config, n_envs=1, training=False)
        if is_off_policy(config.algo):  # an agent that only acts needs no replay buffer
            build_config = copy.deepcopy(config)
            build_config.model_options = {**config.model_options, "buffer_size": 1}
    try:
        model = build_agent(
            build_config, env, seed=config.seed if seed is None else seed, tensorboard_log=tensorboard_log
        )
        model.set_parameters(params, exact_match=True, device=config.device)
        for name, value in variables.items():
            if value is not None:
                recursive_setattr(model, f"{name}.data", value.data)
    except (ValueError, RuntimeError, KeyError, AttributeError) as error:
        raise CheckpointError(
            f"{path} does not fit a {config.algo} agent built from this config ({_first_line(error)}).",
            "Pass the --algo, --env and options it was trained with (its run's config.yaml).",
        ) from None
    finally:
        if own_env:
            env.close()
    if own_env:
        model.env = None
    model.num_timesteps = int(counters.get("num_timesteps", 0))
    return model


def _read_weights(path: Path, device: str) -> tuple[dict[str, Any], dict[str, Any], dict[str, Any]]:
    """``(state dicts by object name, PyTorch variables, plain numbers of ``data``)`` of an agent file."""
    params: dict[str, Any] = {}
    variables: dict[str, Any] = {}
    with _open_archive(path) as archive:
        names = archive.namelist()
        if "policy.pth" not in names:
            raise CheckpointError(f"{path} is not an agent file (no policy.pth); pass a .zip saved by a run.")
        for name in names:
            if not name.endswith(".pth"):
                continue
            try:
                loaded = torch.load(io.BytesIO(archive.read(name)), map_location=device, weights_only=True)
            except Exception as error:
                raise CheckpointError(
                    f"{path}: member {name} holds more than weights and is refused ({_first_line(error)})."
                ) from None
            if name in ("pytorch_variables.pth", "tensors.pth"):
                variables = dict(loaded)
            else:
                params[name[: -len(".pth")]] = loaded
        counters = {}
        if "data" in names:
            try:
                data = json.loads(archive.read("data"))
            except ValueError:
                data = {}
            # Only plain numbers; the ":serialized:" (cloudpickled) entries are never decoded.
            counters = {k: v for k, v in data.items() if isinstance(v, int | float) and not isinstance(v, bool)}
    return params, variables, counters


class _open_archive:
    """``zipfile.ZipFile(path)`` whose failure is a one-line :class:`CheckpointError`."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)

    def __enter__(self) -> zipfile.ZipFile:
        try:
            self.archive = zipfile.ZipFile(self.path)
        except (zipfile.BadZipFile, OSError) as error:
            raise CheckpointError(f"{self.path} is not a readable agent .zip ({_first_line(error)}).") from None
        return self.archive

    def __exit__(self, *exc: object) -> None:
        self.archive.close()


def _first_line(error: BaseException) -> str:
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__


def normalization_of(path: str | Path) -> dict[str, np.ndarray] | None:
    """The ``VecNormalize`` statistics saved with the agent at ``path``: its ``pentad/vecnormalize`` members,
    else the ``<stem>_vecnormalize.npz`` beside it (runs of earlier releases); ``None`` when it has none."""
    arrays = read_arrays(path, NORMALIZATION)
    if arrays is not None:
        return arrays
    legacy = Path(path).with_name(f"{Path(path).stem}_vecnormalize.npz")
    return read_normalization_arrays(legacy) if legacy.is_file() else None
