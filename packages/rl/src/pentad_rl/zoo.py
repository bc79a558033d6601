"""RL Baselines3 Zoo's tuned hyperparameters, read from the installed ``rl_zoo3`` package's own YAML files.

The Zoo ships one ``hyperparams/<algo>.yml`` per algorithm, mapping a gymnasium id (or ``atari`` for
every Atari game, ``default`` for the rest) to its settings. pentad reads those files where the
package installed them, without importing ``rl_zoo3`` (whose ``__init__`` patches gym and imports the
Hugging Face client), and turns an entry into :class:`~pentad_rl.config.RLConfig` keys:

* ``n_timesteps`` -> ``timesteps``; ``policy``, ``n_envs``, ``frame_stack``, ``noise_type``,
  ``noise_std`` as they are;
* ``normalize`` (``true`` or a mapping, possibly as Python text) -> ``normalize`` + ``normalize_kwargs``,
  with the algorithm's ``gamma`` for the return normalisation, as the Zoo's ``ExperimentManager`` does;
* ``env_wrapper`` class paths -> pentad's named wrappers (:data:`WRAPPERS`);
* ``policy_kwargs`` (Python text in the Zoo, e.g. ``"dict(net_arch=[256, 256], activation_fn=nn.ReLU)"``)
  parsed with :mod:`ast`, never evaluated: only ``dict(...)``, ``{...}``, lists, tuples, numbers, strings,
  booleans, ``None`` and the names of :data:`NAMES` are accepted; anything else is refused;
* every other key (``learning_rate``, ``n_steps``, ``lin_0.001`` schedules, ...) -> ``model_options``.

The ``default`` entries are not presets: they name the library's defaults (and a step budget).
"""

from __future__ import annotations

import ast
import functools
import importlib.metadata
import importlib.util
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from pentad_core.errors import ConfigError

#: pentad algorithm -> the Zoo's hyperparameter file. ``her.yml`` (goal-conditioned replay), ``ars.yml``
#: (Augmented Random Search) and ``crossq.yml`` have no pentad algorithm and are not read.
FILES = {
    "ppo": "ppo.yml",
    "a2c": "a2c.yml",
    "dqn": "dqn.yml",
    "sac": "sac.yml",
    "td3": "td3.yml",
    "ddpg": "ddpg.yml",
    "qrdqn": "qrdqn.yml",
    "trpo": "trpo.yml",
    "tqc": "tqc.yml",
    "recurrent-ppo": "ppo_lstm.yml",
}

#: Zoo wrapper classes -> pentad's named wrappers (``pentad_rl.envs.registry.ENV_WRAPPERS``). An entry that
#: needs any other wrapper (rl_zoo3's own, MiniGrid's, an autoencoder) is reported as not usable.
WRAPPERS = {
    "stable_baselines3.common.atari_wrappers.AtariWrapper": "atari",
    "sb3_contrib.common.wrappers.TimeFeatureWrapper": "time_feature",
    "gymnasium.wrappers.time_limit.TimeLimit": "time_limit",
    "gymnasium.wrappers.TimeLimit": "time_limit",
}

#: The only names a Zoo Python expression may use, and what pentad writes for them in a config
#: (activation names that :mod:`pentad_rl.hyperparams` turns into ``torch.nn`` classes, optimiser names).
NAMES = {
    "nn.ReLU": "relu",
    "nn.Tanh": "tanh",
    "nn.ELU": "elu",
    "nn.GELU": "gelu",
    "nn.LeakyReLU": "leaky_relu",
    "nn.SiLU": "silu",
    "RMSpropTFLike": "RMSpropTFLike",
    "th.optim.Adam": "Adam",
    "th.optim.AdamW": "AdamW",
    "th.optim.RMSprop": "RMSprop",
}

#: Zoo keys that are not constructor arguments of the algorithm.
ENV_KEYS = ("n_timesteps", "policy", "n_envs", "normalize", "frame_stack", "env_wrapper", "noise_type", "noise_std")
#: Zoo keys pentad does not offer; an entry with one of them is not usable.
UNSUPPORTED_KEYS = ("vec_env_wrapper", "callback", "replay_buffer_class", "replay_buffer_kwargs", "model_class")


def hyperparams_dir() -> Path | None:
    """The installed ``rl_zoo3/hyperparams`` folder, found without importing ``rl_zoo3``; ``None`` if absent."""
    spec = importlib.util.find_spec("rl_zoo3")
    if spec is None or not spec.submodule_search_locations:
        return None
    folder = Path(next(iter(spec.submodule_search_locations))) / "hyperparams"
    return folder if folder.is_dir() else None


def version() -> str:
    """The installed rl_zoo3 version (``"?"`` when unknown)."""
    try:
        return importlib.metadata.version("rl_zoo3")
    except importlib.metadata.PackageNotFoundError:
        return "?"


@functools.cache
def read_file(name: str) -> dict[str, dict[str, Any]]:
    """The entries of the Zoo file ``name`` (``ppo.yml``) as loaded by ``yaml.safe_load``; ``{}`` when absent."""
    folder = hyperparams_dir()
    path = folder / name if folder is not None else None
    if path is None or not path.is_file():
        return {}
    loaded = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    return {str(key): dict(value) for key, value in loaded.items() if isinstance(value, Mapping)}


def is_atari(env_id: str) -> bool:
    """Whether ``env_id`` is an Atari game (the Zoo's ``atari`` entries apply to all of them)."""
    return env_id.startswith("ALE/") or "NoFrameskip" in env_id


@dataclass(frozen=True)
class ZooPreset:
    """One usable Zoo entry for an (algorithm, environment) pair, converted to config keys."""

    algo: str
    env: str
    file: str
    key: str
    values: dict[str, Any]

    @property
    def where(self) -> str:
        """``ppo.yml:CartPole-v1``: the file and entry the values were read from."""
        return f"{self.file}:{self.key}"


def entry_key(algo: str, env: str) -> str | None:
    """The key of the Zoo entry for ``algo`` on ``env``: the env id itself, ``atari`` for an Atari game, else
    ``None`` (the ``default`` entries are the library's defaults, not presets)."""
    entries = read_file(FILES[algo]) if algo in FILES else {}
    if env in entries and env not in ("default", "atari"):
        return env
    if is_atari(env) and "atari" in entries:
        return "atari"
    return None


def zoo_preset(algo: str, env: str, key: str | None = None) -> ZooPreset | None:
    """The Zoo's preset for ``algo`` on ``env`` (entry ``key``, default :func:`entry_key`); ``None`` when the Zoo
    has none.

    Raises:
        ConfigError: If the entry exists but uses something pentad does not offer or refuses to read.
    """
    key = key or entry_key(algo, env)
    if key is None or algo not in FILES:
        return None
    raw = read_file(FILES[algo]).get(key)
    if raw is None:
        return None
    where = f"rl_zoo3 {FILES[algo]}:{key}"
    values = convert(raw, where)
    if key == "atari" and re.match(r"ALE/.+-v5$", env):
        # The Zoo trains on NoFrameskip-v4 ids and lets AtariWrapper skip 4 frames; gymnasium's v5 ids skip
        # frames themselves (frameskip=4) and would skip 16. frameskip=1 leaves the skipping to the wrapper.
        values["env_kwargs"] = {"frameskip": 1}
    return ZooPreset(algo, env, FILES[algo], key, values)


def convert(raw: Mapping[str, Any], where: str = "rl_zoo3") -> dict[str, Any]:
    """A Zoo entry as :class:`~pentad_rl.config.RLConfig` keys (see the module docstring).

    Raises:
        ConfigError: For a key, wrapper, policy class or expression pentad does not offer or refuses.
    """
    raw = dict(raw)
    for key in UNSUPPORTED_KEYS:
        if key in raw:
            raise ConfigError(f"{where}: uses {key}, which pentad does not offer.")
    values: dict[str, Any] = {}
    if "n_timesteps" in raw:
        values["timesteps"] = int(float(raw["n_timesteps"]))
    if "policy" in raw:
        policy = str(raw["policy"])
        if "." in policy:
            raise ConfigError(f"{where}: policy {policy!r} is a custom class, which pentad does not load.")
        values["policy"] = policy
    for key in ("n_envs", "frame_stack", "noise_type", "noise_std"):
        if key in raw:
            values[key] = raw[key]
    normalize = raw.get("normalize", False)
    if isinstance(normalize, str):
        normalize = parse_expression(normalize, f"{where} normalize")
    if normalize:
        values["normalize"] = True
        kwargs = dict(normalize) if isinstance(normalize, Mapping) else {}
        if "gamma" in raw:  # the return normalisation discounts as the algorithm does (the Zoo's rule)
            kwargs["gamma"] = raw["gamma"]
        if kwargs:
            values["normalize_kwargs"] = kwargs
    if raw.get("env_wrapper"):
        values["env_wrapper"] = convert_wrappers(raw["env_wrapper"], where)
    if raw.get("policy_kwargs"):
        policy_kwargs = raw["policy_kwargs"]
        if isinstance(policy_kwargs, str):
            policy_kwargs = parse_expression(policy_kwargs, f"{where} policy_kwargs")
        if not isinstance(policy_kwargs, Mapping):
            raise ConfigError(f"{where}: policy_kwargs must be a mapping, got {policy_kwargs!r}.")
        values["policy_kwargs"] = dict(policy_kwargs)
    options = {k: v for k, v in raw.items() if k not in (*ENV_KEYS, "policy_kwargs")}
    if options:
        values["model_options"] = options
    return values


def convert_wrappers(wrappers: Any, where: str) -> list[str | dict[str, dict[str, Any]]]:
    """The Zoo's ``env_wrapper`` (a class path, or a list of paths or ``{path: kwargs}``) as pentad names.

    Raises:
        ConfigError: For a wrapper pentad does not provide.
    """
    items = wrappers if isinstance(wrappers, list) else [wrappers]
    converted: list[str | dict[str, dict[str, Any]]] = []
    for item in items:
        path, kwargs = next(iter(item.items())) if isinstance(item, Mapping) else (item, None)
        name = WRAPPERS.get(str(path))
        if name is None:
            raise ConfigError(f"{where}: needs the wrapper {path}, which pentad does not provide.")
        converted.append({name: dict(kwargs)} if kwargs else name)
    return converted


def parse_expression(text: str, where: str = "expression") -> Any:
    """Read a Zoo Python expression (``"dict(net_arch=[64, 64], activation_fn=nn.ReLU)"``) without running it.

    Only literals (numbers, strings, booleans, ``None``, lists, tuples, ``{...}``), ``dict(key=value, ...)``,
    a leading minus on a number and the names of :data:`NAMES` (returned as pentad's names) are accepted.

    Raises:
        ConfigError: For anything else (calls other than ``dict``, attribute access, operators, imports, ...).
    """
    try:
        tree = ast.parse(text.strip(), mode="eval")
    except SyntaxError as error:
        raise ConfigError(f"{where}: {text!r} is not a Python expression ({error.msg}).") from None
    return _value(tree.body, text, where)


def _refuse(node: ast.AST, text: str, where: str) -> ConfigError:
    part = ast.get_source_segment(text.strip(), node) or type(node).__name__
    allowed = ", ".join(NAMES)
    return ConfigError(
        f"{where}: {part!r} is refused; pentad reads only literals, dict(...) and the names {allowed} (nothing is "
        "evaluated)."
    )


def _dotted(node: ast.AST) -> str | None:
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):
        base = _dotted(node.value)
        return f"{base}.{node.attr}" if base else None
    return None


def _value(node: ast.AST, text: str, where: str) -> Any:
    if isinstance(node, ast.Constant) and isinstance(node.value, int | float | str | bool | type(None)):
        return node.value
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub | ast.UAdd):
        inner = _value(node.operand, text, where)
        if isinstance(inner, int | float) and not isinstance(inner, bool):
            return -inner if isinstance(node.op, ast.USub) else inner
        raise _refuse(node, text, where)
    if isinstance(node, ast.List | ast.Tuple):
        return [_value(item, text, where) for item in node.elts]
    if isinstance(node, ast.Dict):
        if any(key is None for key in node.keys):
            raise _refuse(node, text, where)
        return {_value(k, text, where): _value(v, text, where) for k, v in zip(node.keys, node.values, strict=True)}
    if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "dict" and not node.args:
        if any(keyword.arg is None for keyword in node.keywords):
            raise _refuse(node, text, where)
        return {keyword.arg: _value(keyword.value, text, where) for keyword in node.keywords}
    name = _dotted(node)
    if name is not None and name in NAMES:
        return NAMES[name]
    raise _refuse(node, text, where)


def covered_envs(algo: str) -> list[str]:
    """The environment ids with an entry of their own in the Zoo file of ``algo`` (not ``default``/``atari``)."""
    return [key for key in read_file(FILES[algo]) if key not in ("default", "atari")] if algo in FILES else []
