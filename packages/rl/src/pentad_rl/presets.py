"""Presets: tuned ``model_options`` per (algorithm, environment) in ``shared/configs/rl/*.yaml``.

A preset file holds the keys of :class:`~pentad_rl.config.RLConfig`. It is found by name,
``<algo>-<env slug>.yaml`` (``ppo-cartpole-v1.yaml``, ``dqn-pentad-connectfour-v0.yaml``), so that
``--algo ppo --env CartPole-v1`` picks up RL Zoo's tuned values by default: :class:`RLApp` is the
CLI scaffold that uses them as its recipes.
"""

from __future__ import annotations

import argparse
import re
from pathlib import Path
from typing import Any

import yaml

from pentad_core.cli import App, find_configs_dir
from pentad_core.config import config_to_dict, load_yaml, resolve_config
from pentad_core.errors import ConfigError
from pentad_core.files import atomic_write_text
from pentad_core.predictor import run_folder_of
from pentad_core.runs import RunDir
from pentad_rl.config import RLConfig, check_not_legacy


def presets_dir() -> Path | None:
    """``shared/configs/rl`` (``$PENTAD_CONFIGS/rl``, else the one above the working directory or package)."""
    return find_configs_dir("rl")


def preset_name(algo: str, env: str) -> str:
    """File stem of the preset for ``algo`` on ``env``: ``ppo`` + ``CartPole-v1`` -> ``ppo-cartpole-v1``."""
    return f"{algo}-{re.sub(r'[^a-z0-9.-]+', '-', env.lower())}"


def preset_path(algo: str, env: str) -> Path | None:
    """The preset file for ``algo`` on ``env``, or ``None`` when there is none."""
    folder = presets_dir()
    if folder is None:
        return None
    path = folder / f"{preset_name(algo, env)}.yaml"
    return path if path.is_file() else None


def list_presets() -> list[str]:
    """Names of all preset files (without ``.yaml``)."""
    folder = presets_dir()
    return sorted(p.stem for p in folder.glob("*.yaml")) if folder else []


def load_preset_dict(name_or_path: str | Path) -> dict[str, Any]:
    """The raw mapping of a preset given by name (``ppo-cartpole-v1``) or path."""
    path = Path(name_or_path)
    if not path.suffix:
        folder = presets_dir()
        path = (folder or Path(".")) / f"{name_or_path}.yaml"
        if not path.is_file():
            raise ConfigError(f"unknown preset {str(name_or_path)!r}. Known: {', '.join(list_presets())}.")
    return load_yaml(path)


def resolve_agent_config(
    algo: str | None = None, env: str | None = None, overrides: dict[str, Any] | None = None
) -> RLConfig:
    """Defaults < the preset of (algo, env) if one exists < ``overrides``.

    Args:
        algo: Algorithm name; defaults to ``overrides["model"]`` or ``ppo``.
        env: Environment id; defaults to ``overrides["dataset"]`` or ``CartPole-v1``.
        overrides: Further keys of :class:`RLConfig` (e.g. ``{"timesteps": 20000}``), applied last.

    Example:
        >>> config = resolve_agent_config("ppo", "CartPole-v1", {"timesteps": 30_000})
        >>> config.model_options["learning_rate"]
        'lin_0.001'
    """
    overrides = dict(overrides or {})
    algo = algo or overrides.get("model") or RLConfig.model
    env = env or overrides.get("dataset") or RLConfig.dataset
    path = preset_path(algo, env)
    layers = [load_yaml(path)] if path is not None else []
    return resolve_config(RLConfig, [*layers, {**overrides, "model": algo, "dataset": env}])


def write_preset(config: RLConfig, path: str | Path, header: str = "") -> Path:
    """Write ``config`` as a preset YAML (atomically), with an optional comment header."""
    path = Path(path)
    text = yaml.safe_dump(config_to_dict(config), sort_keys=False, default_flow_style=False)
    comment = "".join(f"# {line}\n" for line in header.splitlines())
    atomic_write_text(path, comment + text)
    return path


#: Config keys ``--resume`` may change besides core's ``RESUME_CHANGES``: how long the run goes on
#: (``timesteps``), where and how it runs (``device``, ``vec_env``: the same seeded envs in one process or
#: several) and how often it saves (``checkpoint_freq``). Nothing here changes what is trained.
RESUME_CHANGES = ("timesteps", "device", "vec_env", "checkpoint_freq")


class RLApp(App):
    """The scaffold with RL presets as recipes and ``.zip`` agent checkpoints for ``--resume``."""

    def resolve_config(self, args: argparse.Namespace, verb: Any = None) -> Any:
        if getattr(args, "checkpoint", None):
            checkpoint = Path(args.checkpoint)
            saved = (checkpoint if checkpoint.is_dir() else run_folder_of(checkpoint)) / RunDir.CONFIG
            if saved.is_file():
                check_not_legacy(load_yaml(saved), saved)
        resumed = self.resumed_run(args, verb)
        if resumed is not None:
            # --resume starts from the run's own config.yaml: no preset or recipe is read (core checks
            # that the options given with it change only RESUME_CHANGES).
            check_not_legacy(load_yaml(resumed / RunDir.CONFIG), resumed / RunDir.CONFIG)
        self._algo_hint = self._hint(args, "model")
        return super().resolve_config(args, verb)

    def _hint(self, args: argparse.Namespace, key: str) -> str | None:
        """The value of ``key`` from the command line, ``--config`` or the checkpoint's run config."""
        value = getattr(args, f"app_option_{key}", None) or getattr(args, key, None)
        for text in getattr(args, "set", []) or []:
            if text.startswith(f"{key}="):
                value = text.split("=", 1)[1]
        sources = [Path(args.config)] if getattr(args, "config", None) else []
        if getattr(args, "checkpoint", None):
            checkpoint = Path(args.checkpoint)
            sources.append((checkpoint if checkpoint.is_dir() else run_folder_of(checkpoint)) / RunDir.CONFIG)
        for source in sources:
            if not value and source.is_file():
                value = load_yaml(source).get(key)
        return str(value) if value else None

    def recipe(self, dataset: str, verb: str | None = None) -> dict[str, Any]:
        """``demo.yaml`` for the demo without --algo/--env, else the preset of (algo, env) if any."""
        if verb == "demo" and not self._algo_hint and dataset == RLConfig.dataset:
            return super().recipe(dataset, verb)
        path = preset_path(self._algo_hint or RLConfig.model, dataset)
        return self.use_recipe(path) if path is not None else {}
