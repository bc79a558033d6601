"""Presets: the tuned settings of an (algorithm, environment) pair, from RL Baselines3 Zoo or pentad's files.

Where they come from, in order (a later source wins key by key):

1. the installed ``rl_zoo3`` package's ``hyperparams/<algo>.yml`` (read by :mod:`pentad_rl.zoo`, not
   copied): the Zoo's entry for the environment, or its ``atari`` entry for an Atari game;
2. pentad's own file ``shared/configs/rl/<env slug>.yaml`` (``cartpole-v1.yaml``,
   ``pentad-connectfour-v0.yaml``), a recipe in core's format: common keys at the top, one section per
   algorithm under ``models:``. It holds what the Zoo lacks (pentad's Connect Four) and deliberate
   overrides, each section stating why in its ``source``. A section may start from another Zoo entry
   of the same file (``zoo: ppo_lstm.yml:CartPoleNoVel-v1``) or from none (``zoo: none``).

A pair with neither runs on stable-baselines3's library defaults, and says so. :class:`RLApp` builds the
recipe of an environment from these sources (:func:`env_recipe`), so ``train --env E --algo A`` and
every other verb apply section ``A`` exactly as core applies any recipe's per-model section.
"""

from __future__ import annotations

import argparse
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from pentad_core.cli import App, Context, find_configs_dir
from pentad_core.config import config_to_dict, load_yaml, merge_dicts, recipe_for_model, resolve_config
from pentad_core.errors import ConfigError
from pentad_core.files import atomic_write_text
from pentad_core.predictor import run_folder_of
from pentad_core.runs import RunDir
from pentad_rl import zoo
from pentad_rl.algorithms import ALGORITHMS
from pentad_rl.config import RLConfig, check_not_legacy
from pentad_rl.registry import ENVIRONMENTS

#: Files of ``shared/configs/rl`` that are not the recipe of an environment.
NOT_ENV_FILES = ("demo.yaml",)
#: What a pair without any preset runs on.
LIBRARY_DEFAULTS = "stable-baselines3's library defaults"


def presets_dir() -> Path | None:
    """``shared/configs/rl`` (``$PENTAD_CONFIGS/rl``, else the one above the working directory or package)."""
    return find_configs_dir("rl")


def env_slug(env: str) -> str:
    """File stem of pentad's preset file for ``env``: ``CartPole-v1`` -> ``cartpole-v1``."""
    return re.sub(r"[^a-z0-9.-]+", "-", env.lower())


def preset_name(algo: str, env: str) -> str:
    """A name for the preset of ``algo`` on ``env``: ``ppo`` + ``CartPole-v1`` -> ``ppo-cartpole-v1``."""
    return f"{algo}-{env_slug(env)}"


def pentad_file(env: str) -> Path | None:
    """pentad's preset file for ``env`` (``shared/configs/rl/<slug>.yaml``), or ``None`` when there is none."""
    folder = presets_dir()
    path = folder / f"{env_slug(env)}.yaml" if folder is not None else None
    return path if path is not None and path.is_file() else None


def pentad_files() -> list[Path]:
    """Every environment file of ``shared/configs/rl``."""
    folder = presets_dir()
    return sorted(p for p in folder.glob("*.yaml") if p.name not in NOT_ENV_FILES) if folder else []


@dataclass(frozen=True)
class Preset:
    """The preset of one pair: config keys (``source`` and ``zoo`` included) and where they came from.

    Attributes:
        algo: Algorithm name.
        env: Environment id.
        values: :class:`RLConfig` keys of the section (``timesteps``, ``model_options``, ...).
        origin: ``rl_zoo3``, ``pentad`` or ``rl_zoo3 + pentad`` (a Zoo entry with pentad's override).
    """

    algo: str
    env: str
    values: dict[str, Any]
    origin: str

    @property
    def source(self) -> str:
        return str(self.values.get("source", ""))


def _zoo_reference(algo: str, env: str, reference: Any, where: str) -> zoo.ZooPreset | None:
    if reference is None:
        return zoo.zoo_preset(algo, env)
    if str(reference).lower() in ("none", ""):
        return None
    file, _, key = str(reference).partition(":")
    if file != zoo.FILES.get(algo) or not key:
        raise ConfigError(f"{where}: zoo {reference!r} must name an entry of {zoo.FILES.get(algo)}, e.g. "
                          f"{zoo.FILES.get(algo)}:CartPole-v1.")  # fmt: skip
    found = zoo.zoo_preset(algo, env, key)
    if found is None:
        raise ConfigError(f"{where}: rl_zoo3 {file} has no entry {key!r}.")
    return found


def find_preset(algo: str, env: str) -> Preset | None:
    """The preset of ``algo`` on ``env`` (the Zoo's entry, pentad's section over it), ``None`` when neither exists.

    Raises:
        ConfigError: If the Zoo entry uses something pentad does not offer (and no pentad section replaces
            it with ``zoo: none``), or pentad's file is malformed.
    """
    path = pentad_file(env)
    section = None
    if path is not None:
        sections = load_yaml(path).get("models") or {}
        section = dict(sections[algo]) if algo in sections else None
    where = f"shared/configs/rl/{path.name}" if path is not None else ""
    base = _zoo_reference(algo, env, (section or {}).pop("zoo", None), f"{where} models.{algo}")
    if base is None and section is None:
        return None
    values = dict(base.values) if base is not None else {}
    zoo_text = f"rl_zoo3 {zoo.version()} hyperparams/{base.where}" if base is not None else ""
    if base is not None and (values.get("env_kwargs") or {}).get("frameskip") == 1 and base.key == "atari":
        zoo_text += " (frameskip=1: AtariWrapper skips the frames)"
    if section is None:
        return Preset(algo, env, {**values, "source": zoo_text, "zoo": base.where}, "rl_zoo3")
    why = str(section.pop("source", "")).strip() or "no reason given"
    values = merge_dicts(values, section)
    if base is None:
        return Preset(algo, env, {**values, "source": f"pentad {where}: {why}"}, "pentad")
    text = f"{zoo_text}, with pentad's override in {where}: {why}"
    return Preset(algo, env, {**values, "source": text, "zoo": base.where}, "rl_zoo3 + pentad")


def env_presets(env: str) -> tuple[dict[str, Preset], dict[str, str]]:
    """Every algorithm's preset for ``env``, and why the Zoo's entry is not usable for the others that have one."""
    presets, problems = {}, {}
    for algo in ALGORITHMS.names():
        try:
            found = find_preset(algo, env)
        except ConfigError as error:
            problems[algo] = error.message
            continue
        if found is not None:
            presets[algo] = found
    return presets, problems


def env_recipe(env: str) -> tuple[dict[str, Any], dict[str, str]]:
    """The recipe of ``env`` in core's format, and the pairs whose Zoo entry pentad cannot use.

    Returns:
        ``(recipe, problems)``: ``recipe`` holds pentad's file's common keys (``model``: the default
        algorithm, ``env_kwargs``, ...) and one ``models`` section per algorithm with a preset;
        ``problems`` maps an algorithm to why the Zoo's entry for it is not usable.
    """
    path = pentad_file(env)
    common = {k: v for k, v in (load_yaml(path) if path is not None else {}).items() if k != "models"}
    presets, problems = env_presets(env)
    sections = {algo: found.values for algo, found in presets.items()}
    return {"model": RLConfig.model, **common, "dataset": env, "models": sections}, problems


def resolve_agent_config(
    algo: str | None = None, env: str | None = None, overrides: dict[str, Any] | None = None
) -> RLConfig:
    """Defaults < the preset of (algo, env) if one exists < ``overrides``: what ``train`` runs with.

    Args:
        algo: Algorithm name; defaults to ``overrides["model"]`` or ``ppo``.
        env: Environment id; defaults to ``overrides["dataset"]`` or ``CartPole-v1``.
        overrides: Further keys of :class:`RLConfig` (e.g. ``{"timesteps": 20000}``), applied last.

    Example:
        >>> config = resolve_agent_config("ppo", "CartPole-v1", {"timesteps": 30_000})
        >>> config.model_options["learning_rate"], config.zoo
        ('lin_0.001', 'ppo.yml:CartPole-v1')
    """
    overrides = dict(overrides or {})
    algo = algo or overrides.get("model") or RLConfig.model
    env = env or overrides.get("dataset") or RLConfig.dataset
    layer, _ = recipe_for_model(env_recipe(env)[0], algo)
    return resolve_config(RLConfig, [layer, {**overrides, "model": algo, "dataset": env}])


def all_presets(envs: list[str] | None = None) -> list[dict[str, str]]:
    """One row per pair with a preset (or an unusable Zoo entry): algorithm, environment, origin, source.

    Args:
        envs: Only these environments (default: every environment of the Zoo files and of pentad's files).
    """
    if envs is None:
        found = {env for algo in zoo.FILES if algo in ALGORITHMS for env in zoo.covered_envs(algo)}
        found |= {str(load_yaml(path).get("dataset", "")) for path in pentad_files()}
        envs = sorted(found - {""}, key=str.lower)
    rows = []
    for env in envs:
        presets, problems = env_presets(env)
        rows += [{"algo": a, "env": env, "origin": p.origin, "source": p.source} for a, p in presets.items()]
        rows += [{"algo": a, "env": env, "origin": "not usable", "source": why} for a, why in problems.items()]
    return rows


def preset_hint(algo: str, env: str) -> str:
    """How to make a tuned config the default preset of ``algo`` on ``env``."""
    return (
        f"to make it the default, put its keys under `models: {{{algo}: ...}}` in "
        f"shared/configs/rl/{env_slug(env)}.yaml with a `source` saying why it overrides the Zoo's."
    )


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

    def check_resume_checkpoint(self, path: Path) -> None:
        """A ``.zip`` that resumes: a readable archive holding pentad-rl's resume state (its arrays are
        read, without pickle, when the agent is rebuilt)."""
        from pentad_rl.checkpoints import read_resume_state

        read_resume_state(path)

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
        """The recipe of the environment ``dataset`` (:func:`env_recipe`); for the demo without --algo/--env,
        ``demo.yaml``'s keys over its model's section."""
        recipe, self.preset_problems = env_recipe(dataset)
        self.recipe_source = pentad_file(dataset)
        if verb == "demo" and not self._algo_hint and dataset == RLConfig.dataset:
            demo = super().recipe(dataset, verb)
            model = str(demo.get("model", recipe["model"]))
            section = merge_dicts(recipe["models"].get(model, {}), {k: v for k, v in demo.items() if k != "model"})
            if demo.get("source") and recipe["models"].get(model, {}).get("source"):
                section["source"] = f"{recipe['models'][model]['source']}; demo.yaml: {demo['source']}"
            recipe = {**recipe, "model": model, "models": {**recipe["models"], model: section}}
        return recipe

    def say_recipe(self, context: Context) -> None:
        """Say where the pair's preset came from, or that the pair runs on the library's defaults."""
        config: RLConfig = context.config
        if getattr(context.args, "resume", None):
            super().say_recipe(context)
        elif config.source:
            if self.recipe_source is not None:  # a pentad file is in force (Connect Four, the demo, an override)
                context.print(f"recipe: {self.recipe_source}")
            context.print(f"preset for {config.algo} on {config.env}: {config.source}")
        else:
            problem = getattr(self, "preset_problems", {}).get(config.algo)
            why = f"rl_zoo3's entry is not usable: {problem}" if problem else "none in rl_zoo3 or shared/configs/rl"
            context.print(f"no preset for {config.algo} on {config.env} ({why}); {LIBRARY_DEFAULTS} apply")

    def models_verb(self, pattern: str) -> int:
        """The algorithms and, per algorithm, how many environments have a preset and from where; naming one
        algorithm lists its pairs."""
        from pentad_core.bench import print_table

        names = ALGORITHMS.names(pattern)
        if not names:
            raise ConfigError(f"no algorithm matches {pattern!r}; run `models` to list all.")
        rows = [row for row in all_presets() if row["algo"] in names]
        table = []
        for name in names:
            origins = [row["origin"] for row in rows if row["algo"] == name and row["origin"] != "not usable"]
            kinds = ("rl_zoo3", "rl_zoo3 + pentad", "pentad")
            counts = ", ".join(f"{origins.count(o)} {o}" for o in kinds if o in origins)
            table.append({"model": name, "description": ALGORITHMS.describe(name), "presets": counts or "none"})
        print_table(table, title="rl algorithms (presets: environments with tuned settings, and where from)")
        if len(names) == 1:
            pairs = [{"env": r["env"], "origin": r["origin"], "source": r["source"]} for r in rows]
            print_table(pairs, title=f"{names[0]}: presets by environment")
        print(f"Any other pair runs on {LIBRARY_DEFAULTS}. `models NAME` lists the presets of one algorithm.")
        return 0

    def data_verb(self, args: argparse.Namespace) -> int:
        """``data list``: the listed environments with the algorithms that have a preset on each, and where
        from; ``download``/``verify`` as core has them (every environment is generated)."""
        if args.action != "list":
            return super().data_verb(args)
        from pentad_core.bench import print_table

        rows = []
        for env in ENVIRONMENTS.names():
            presets, _ = env_presets(env)
            by_origin: dict[str, list[str]] = {}
            for algo, found in presets.items():
                by_origin.setdefault(found.origin, []).append(algo)
            text = "; ".join(f"{', '.join(algos)}: {origin}" for origin, algos in by_origin.items())
            rows.append({"environment": env, "description": ENVIRONMENTS.describe(env), "presets": text or "none"})
        print_table(rows, title="rl environments (generated by their simulators)")
        print(
            f"Other algorithms here, and any other gymnasium id, use rl_zoo3's entry when it has one, else "
            f"{LIBRARY_DEFAULTS}. `models NAME` lists every environment with a preset for one algorithm."
        )
        return 0
