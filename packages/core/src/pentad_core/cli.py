"""CLI scaffolding shared by every app: verbs, common options, config resolution, run folders, errors.

An app builds one :class:`App`, registers its verb handlers, and calls :meth:`App.main`::

    app = App("medseg", "Medical image segmentation.", MedsegConfig, models=MODELS, datasets=DATASETS,
              real_dataset="drive")

    @app.verb("train", "Train a model.", trains=True)
    def train(context: Context) -> None:
        ...

The scaffold resolves the config (defaults < ``shared/configs/<app>/<dataset>.yaml`` recipe <
the checkpoint's run config < ``--config FILE`` < options and ``--set key=value``), seeds, opens the
run folder (refusing to clobber a finished run without ``--resume``/``--overwrite``), writes
``config.yaml`` and ``environment.json``, and applies the error policy: a :class:`PentadError` is one
line on stderr and exit code 2; ``--debug`` shows the traceback.
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib.resources
import os
import sys
import traceback
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from pentad_core.checkpoint import load_checkpoint, resolve_resume
from pentad_core.config import (
    config_to_dict,
    load_yaml,
    nest,
    parse_override,
    recipe_for_model,
    resolve_config,
    save_config,
)
from pentad_core.data import RemoteFile, dataset_folder, download_dataset, verify_dataset
from pentad_core.errors import ConfigError, DataError, PentadError
from pentad_core.registry import Registry
from pentad_core.runs import RunDir, default_run_path, latest_run, timestamp
from pentad_core.training import TrainerConfig

#: Verbs every app provides (DEVELOPERS.md); ``models`` and ``data`` come from the scaffold.
CONTRACT_VERBS = ("demo", "train", "evaluate", "predict", "export", "benchmark", "data", "models")
#: Set in the environment of distributed child processes so every rank uses rank 0's run folder.
RUN_DIR_ENV = "PENTAD_RUN_DIR"
#: Config keys ``--resume`` may change: how long the run goes on and where it runs. Any other change
#: would train something other than what the run's ``config.yaml`` says, and is refused.
RESUME_CHANGES = (
    "trainer.max_epochs",
    "trainer.max_steps",
    "time_budget",
    "trainer.accelerator",
    "trainer.devices",
    "trainer.num_nodes",
    "trainer.strategy",
    "trainer.progress_bar",
    "num_workers",
    "threads",
    "data_dir",
)


@dataclass
class BaseRunConfig:
    """Settings every app shares; an app that does not train with Lightning (rl) subclasses this one."""

    #: Registered model name (see the `models` verb).
    model: str = ""
    #: Registered dataset name (see `data list`); a recipe shared/configs/<app>/<dataset>.yaml applies when present.
    dataset: str = "synthetic"
    #: Folder of the dataset (default: $PENTAD_DATA/<dataset>, else ~/.cache/pentad/<dataset>).
    data_dir: str | None = None
    #: Random seed for Python, NumPy and torch.
    seed: int = 0
    #: Torch CPU threads (null keeps torch's default).
    threads: int | None = None
    #: Training time budget, e.g. "90s", "10m", "1.5h" (null: the recipe's epochs or steps). The app
    #: sizes the run from a measured step time and stops cleanly, with a checkpoint, when it is spent.
    time_budget: str | None = None
    #: Derive the settings nobody set (recipe, --config, options, --set) from a fingerprint of the
    #: dataset (see pentad_core.autoconfig); false keeps the defaults.
    self_configure: bool = True
    #: What self-configuration found and chose, with the reason for each choice (written by the app).
    self_config: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.time_budget is not None:
            from pentad_core.autoconfig import parse_duration

            parse_duration(self.time_budget, key="time_budget")


@dataclass
class RunConfig(BaseRunConfig):
    """Settings of the apps that train with the Lightning trainer; each app subclasses it with its own fields."""

    #: Samples per batch (per device).
    batch_size: int = 32
    #: DataLoader worker processes (0 loads in the main process).
    num_workers: int = 0
    #: Lightning trainer settings.
    trainer: TrainerConfig = field(default_factory=TrainerConfig)


#: Command-line option -> dotted config key, for the common options.
COMMON_OPTION_KEYS = {
    "model": "model",
    "dataset": "dataset",
    "data_dir": "data_dir",
    "epochs": "trainer.max_epochs",
    "batch_size": "batch_size",
    "seed": "seed",
    "accelerator": "trainer.accelerator",
    "devices": "trainer.devices",
    "precision": "trainer.precision",
    "num_nodes": "trainer.num_nodes",
    "strategy": "trainer.strategy",
    "time_budget": "time_budget",
}


class _Parser(argparse.ArgumentParser):
    """argparse with the error policy: one line on stderr, exit code 2."""

    def error(self, message: str) -> None:  # type: ignore[override]
        sys.stderr.write(f"{self.prog}: error: {message} (see --help)\n")
        raise SystemExit(2)


@dataclass
class Context:
    """Everything a verb handler needs.

    Attributes:
        app: The app.
        verb: The verb being run.
        args: Parsed command-line arguments (verb-specific options included).
        config: The resolved, typed config.
        run: The run folder (``None`` for verbs that write nothing).
        resume_path: Checkpoint to resume from (``--resume``), already checked to exist.
        checkpoint: ``--checkpoint`` as a path (a run folder or a checkpoint file), already checked to exist;
            the domain's ``Predictor.from_run`` takes either.
    """

    app: App
    verb: str
    args: argparse.Namespace
    config: Any
    run: RunDir | None = None
    resume_path: Path | None = None
    checkpoint: Path | None = None

    @property
    def data_root(self) -> Path | None:
        """Folder of the configured dataset; ``None`` for a dataset the package generates."""
        return self.app.dataset_folder(self.config.dataset, self.config.data_dir)

    @property
    def explicit_keys(self) -> frozenset[str]:
        """Dotted config keys set by the recipe, ``--config``, the options or ``--set`` (not defaults)."""
        return self.app.explicit_keys

    @property
    def is_main_process(self) -> bool:
        """False in the non-zero ranks of a distributed run."""
        return _rank() == 0

    def print(self, *objects: Any) -> None:
        """Print on stdout (rank 0 only; not when the verb runs from Python through :meth:`App.run`)."""
        if self.is_main_process and not self.app.quiet:
            from rich.console import Console

            Console(highlight=False, soft_wrap=True).print(*objects)


@dataclass
class RunResult:
    """What :meth:`App.run` returns: the run folder it wrote, its metrics and the config it ran with."""

    folder: Path | None
    metrics: dict[str, Any]
    config: Any


@dataclass
class _Verb:
    name: str
    help: str
    handler: Callable[[Context], int | None]
    arguments: Callable[[argparse.ArgumentParser], None] | None
    trains: bool
    writes_run: bool
    needs_checkpoint: bool
    dataset: str | None


@dataclass
class _Option:
    flags: tuple[str, ...]
    key: str
    kwargs: dict[str, Any]


def _rank() -> int:
    for name in ("RANK", "LOCAL_RANK", "NODE_RANK"):
        value = os.environ.get(name)
        if value and value.isdigit() and int(value) != 0:
            return int(value)
    return 0


def find_configs_dir(app: str) -> Path | None:
    """The folder of the app's recipes.

    In order: ``$PENTAD_CONFIGS/<app>``; ``shared/configs/<app>`` in the first folder above the
    working directory or above this package that has one (a source checkout, where recipes are
    written); the ``configs`` folder inside the installed ``pentad_<app>`` package (a wheel carries
    a copy of ``shared/configs/<app>``). ``None`` when there is none.
    """
    configured = os.environ.get("PENTAD_CONFIGS")
    if configured:
        candidate = Path(configured) / app
        return candidate if candidate.is_dir() else None
    for start in (Path.cwd(), Path(__file__).resolve()):
        for folder in (start, *start.parents):
            candidate = folder / "shared" / "configs" / app
            if candidate.is_dir():
                return candidate
    try:
        packaged = Path(str(importlib.resources.files(f"pentad_{app}") / "configs"))
    except ModuleNotFoundError:
        return None
    return packaged if packaged.is_dir() else None


class App:
    """One domain's command-line program.

    Args:
        name: App name (``apps/<name>``); also the run-folder and recipe sub-folder.
        description: One paragraph for ``--help``.
        config_class: The app's config dataclass: a :class:`RunConfig` subclass, or a
            :class:`BaseRunConfig` subclass for an app that does not train with Lightning; such an
            app offers none of the trainer's options (``--epochs``, ``--batch-size``,
            ``--accelerator``, ``--devices``, ``--precision``, ``--num-nodes``, ``--strategy``),
            which it would otherwise accept and ignore.
        models: The model registry listed by ``models``.
        datasets: The dataset registry listed by ``data list``.
        verify_dataset: ``(name, root) -> summary`` that loads a dataset and raises
            :class:`DataError` when it is malformed; used by ``data verify`` and ``data list``.
        real_dataset: The app's main real dataset (help examples; the CLI contract test checks that
            a missing folder for it is reported cleanly).
        resume_changes: Config keys, beyond :data:`RESUME_CHANGES`, that ``--resume`` may change
            (e.g. ``("timesteps",)`` for rl).
        last_checkpoint: File name of the latest checkpoint in ``<run>/checkpoints/`` (``--resume last``).

    Official downloads come from the dataset registry's :class:`~pentad_core.data.DatasetInfo`
    (``files``); a dataset registered with ``generated=True`` has no folder.
    """

    def __init__(
        self,
        name: str,
        description: str,
        config_class: type = RunConfig,
        *,
        models: Registry | None = None,
        datasets: Registry | None = None,
        verify_dataset: Callable[[str, Path], str] | None = None,
        real_dataset: str | None = None,
        resume_changes: tuple[str, ...] = (),
        last_checkpoint: str = "last.ckpt",
    ) -> None:
        if not (dataclasses.is_dataclass(config_class) and issubclass(config_class, BaseRunConfig)):
            raise TypeError("config_class must be a dataclass deriving from RunConfig or BaseRunConfig")
        self.name = name
        self.description = description
        self.config_class = config_class
        self.models = models
        self.datasets = datasets
        self.trainer_options = issubclass(config_class, RunConfig)
        self.verify_hook = verify_dataset
        self.resume_changes = RESUME_CHANGES + tuple(resume_changes)
        self.last_checkpoint = last_checkpoint
        self.real_dataset = real_dataset
        self._verbs: dict[str, _Verb] = {}
        self._options: list[_Option] = []
        #: The recipe file the last resolved config was built on (``None``: no recipe).
        self.recipe_source: Path | None = None
        #: The recipe's per-model section in force (``models.<name>``), or ``None``.
        self.recipe_section: str | None = None
        #: Dotted config keys the recipe, ``--config``, the options or ``--set`` set: self-configuration
        #: (:mod:`pentad_core.autoconfig`) leaves these alone.
        self.explicit_keys: frozenset[str] = frozenset()
        #: Print nothing from verbs (set by :meth:`run`).
        self.quiet = False
        #: The run folder and config of the last verb run (read by :meth:`run`).
        self.last_run: RunDir | None = None
        self.last_config: Any = None

    @property
    def remote_files(self) -> dict[str, list[RemoteFile]]:
        """Official downloads per dataset name (from the registry's ``files``), for ``data download|verify``."""
        if self.datasets is None:
            return {}
        files = {name: list(getattr(self.datasets.info(name), "files", ())) for name in self.datasets.names()}
        return {name: entries for name, entries in files.items() if entries}

    def dataset_folder(self, name: str, data_dir: str | Path | None) -> Path | None:
        """Folder of dataset ``name`` (see :func:`~pentad_core.data.dataset_root`); ``None`` when generated."""
        known = self.datasets is not None and name in self.datasets
        generated = known and getattr(self.datasets.info(name), "generated", False)
        return dataset_folder(name, data_dir, bool(generated))

    # -- registration ------------------------------------------------------------------------------

    def verb(
        self,
        name: str,
        help: str,
        *,
        arguments: Callable[[argparse.ArgumentParser], None] | None = None,
        trains: bool = False,
        writes_run: bool = True,
        needs_checkpoint: bool = False,
        dataset: str | None = None,
    ) -> Callable[[Callable[[Context], int | None]], Callable[[Context], int | None]]:
        """Register a verb handler (decorator).

        Args:
            name: The verb, e.g. ``"train"``.
            help: One line for ``--help``.
            arguments: Adds verb-specific options to the verb's parser.
            trains: The verb trains: the run folder is guarded and ``--resume`` applies.
            writes_run: The verb writes a run folder (config, metrics, plots).
            needs_checkpoint: ``--checkpoint`` is required.
            dataset: Dataset this verb uses unless ``--dataset`` says otherwise (``demo``: synthetic).
        """

        def register(handler: Callable[[Context], int | None]) -> Callable[[Context], int | None]:
            if name in self._verbs or name in ("data", "models"):
                raise ValueError(f"verb {name!r} is already defined")
            self._verbs[name] = _Verb(name, help, handler, arguments, trains, writes_run, needs_checkpoint, dataset)
            return handler

        return register

    def option(self, *flags: str, key: str, **kwargs: Any) -> None:
        """Add an app-specific option (on every verb) that sets config ``key`` (e.g. ``--algo`` -> ``model``)."""
        self._options.append(_Option(tuple(flags), key, kwargs))

    @property
    def verbs(self) -> list[str]:
        """All verbs, the scaffold's included."""
        return [*self._verbs, "data", "models"]

    # -- parsing -----------------------------------------------------------------------------------

    def _common_parser(self) -> argparse.ArgumentParser:
        parser = argparse.ArgumentParser(add_help=False)
        group = parser.add_argument_group("common options")
        group.add_argument("--config", metavar="FILE", help="YAML config (over the dataset's recipe)")
        group.add_argument("--dataset", metavar="NAME", help="dataset name (see `data list`)")
        group.add_argument("--data-dir", metavar="DIR", help="dataset folder (default $PENTAD_DATA/<dataset>)")
        group.add_argument("--model", metavar="NAME", help="model name (see `models`)")
        if self.trainer_options:
            group.add_argument("--epochs", type=int, metavar="N", help="training epochs")
            group.add_argument("--batch-size", type=int, metavar="N", help="samples per batch")
        group.add_argument("--seed", type=int, metavar="N", help="random seed")
        group.add_argument(
            "--time-budget", metavar="T", help="training time, e.g. 90s, 10m, 1h: sizes the run and stops it cleanly"
        )
        group.add_argument(
            "--out", metavar="DIR", help=f"run folder (default runs/{self.name}/<time>-<model>-<dataset>)"
        )
        group.add_argument("--resume", metavar="last|PATH", help="continue an interrupted run")
        group.add_argument("--overwrite", action="store_true", help="replace the run already in --out")
        group.add_argument(
            "--checkpoint", metavar="PATH", help="trained run folder or checkpoint to evaluate, predict with or export"
        )
        if self.trainer_options:
            group.add_argument("--accelerator", metavar="NAME", help="auto, cpu, cuda/gpu or mps")
            group.add_argument("--devices", metavar="N", help="devices per node: count, auto, or indices 0,1")
            group.add_argument("--precision", metavar="P", help="auto, 32-true, bf16-mixed, 16-mixed, ...")
            group.add_argument("--num-nodes", type=int, metavar="N", help="machines for distributed training")
            group.add_argument("--strategy", metavar="NAME", help="auto, ddp, ddp_spawn, fsdp")
        group.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override any config key")
        group.add_argument("--debug", action="store_true", help="show tracebacks and library logs")
        for option in self._options:
            group.add_argument(*option.flags, dest=f"app_option_{option.key.replace('.', '__')}", **option.kwargs)
        return parser

    def build_parser(self) -> argparse.ArgumentParser:
        """The full parser: one sub-command per verb."""
        parser = _Parser(prog=self.prog, description=self.description)
        parser.add_argument("--debug", action="store_true", help="show tracebacks and library logs")
        sub = parser.add_subparsers(dest="verb", metavar="VERB", parser_class=_Parser)
        common = self._common_parser()
        for verb in self._verbs.values():
            verb_parser = sub.add_parser(verb.name, help=verb.help, description=verb.help, parents=[common])
            if verb.arguments is not None:
                verb.arguments(verb_parser)
        models = sub.add_parser("models", help="list registered models", description="List registered models.")
        models.add_argument("pattern", nargs="?", default="*", help="shell-style filter, e.g. 'resnet*'")
        models.add_argument("--debug", action="store_true", help=argparse.SUPPRESS)
        data = sub.add_parser("data", help="list, download or verify datasets", description="Manage datasets.")
        data.add_argument("action", choices=("list", "download", "verify"))
        data.add_argument("name", nargs="?", help="dataset name (download, verify)")
        data.add_argument("--data-dir", metavar="DIR", help="dataset folder (default $PENTAD_DATA/<name>)")
        data.add_argument("--debug", action="store_true", help=argparse.SUPPRESS)
        return parser

    # -- config ------------------------------------------------------------------------------------

    def resolve_config(self, args: argparse.Namespace, verb: _Verb | None = None) -> Any:
        """Merge defaults < recipe < checkpoint's run config < ``--config`` < options < ``--set``.

        With ``--resume`` the run being resumed is the base instead: its ``config.yaml`` (the model,
        dataset, data folder, recipe and options it ran with) < ``--config`` < options < ``--set``,
        and only the keys in ``resume_changes`` may differ from it.
        """
        self.recipe_source = None
        user_yaml = load_yaml(args.config) if getattr(args, "config", None) else {}
        command_line: dict[str, Any] = {}
        for option, key in COMMON_OPTION_KEYS.items():
            value = getattr(args, option, None)
            if value is not None:
                command_line = _merge(command_line, nest(key, value))
        for option in self._options:
            value = getattr(args, f"app_option_{option.key.replace('.', '__')}", None)
            if value is not None:
                command_line = _merge(command_line, nest(option.key, value))
        for text in getattr(args, "set", []) or []:
            key, value = parse_override(text)
            command_line = _merge(command_line, nest(key, value))
        resumed = self.resumed_run(args, verb)
        if resumed is not None:
            saved = load_yaml(resumed / RunDir.CONFIG)
            self.recipe_section = None
            self.explicit_keys = (
                frozenset(_flatten(saved)) | frozenset(_flatten(user_yaml)) | frozenset(_flatten(command_line))
            )
            original = resolve_config(self.config_class, [saved])
            config = resolve_config(self.config_class, [saved, user_yaml, command_line])
            self._check_resume_changes(original, config, resumed)
            return config
        checkpoint_yaml: dict[str, Any] = {}
        checkpoint = getattr(args, "checkpoint", None)
        if checkpoint:
            run_config = _checkpoint_run_folder(Path(checkpoint)) / RunDir.CONFIG
            if run_config.is_file():
                checkpoint_yaml = load_yaml(run_config)
        other_data = command_line.get("dataset") or user_yaml.get("dataset")
        if other_data and checkpoint_yaml.get("dataset") not in (None, other_data):
            # the run's data settings belong to its own dataset; another dataset starts from its recipe
            checkpoint_yaml = {k: v for k, v in checkpoint_yaml.items() if k not in ("dataset_options", "data_dir")}
        dataset = (
            command_line.get("dataset")
            or user_yaml.get("dataset")
            or checkpoint_yaml.get("dataset")
            or (verb.dataset if verb else None)
            or self.config_class().dataset
        )
        recipe = self.recipe(str(dataset), verb.name if verb else None)
        model = command_line.get("model") or user_yaml.get("model") or checkpoint_yaml.get("model")
        recipe, self.recipe_section = recipe_for_model(recipe, model)
        layers = [recipe, checkpoint_yaml, user_yaml, {"dataset": dataset}, command_line]
        self.explicit_keys = frozenset(key for layer in layers for key in _flatten(layer))
        return resolve_config(self.config_class, layers)

    def config_for_model(self, context: Context, model: str) -> Any:
        """The config ``train --model MODEL`` would run with, given the rest of ``context``'s command line.

        For verbs that train several models side by side (``benchmark``): each gets its own section of
        the dataset's recipe exactly as ``train --model MODEL`` does, so both report the same numbers.
        """
        args = argparse.Namespace(**vars(context.args))
        args.model = model
        saved = self.recipe_source, self.recipe_section, self.explicit_keys
        try:
            return self.resolve_config(args, self._verbs.get(context.verb))
        finally:
            self.recipe_source, self.recipe_section, self.explicit_keys = saved

    def resumed_run(self, args: argparse.Namespace, verb: _Verb | None) -> Path | None:
        """The folder of the run ``--resume`` continues, when it has a ``config.yaml``; else ``None``.

        ``--resume last`` continues ``--out`` (or the latest run of the app); ``--resume PATH``
        the run the checkpoint belongs to.

        Raises:
            ConfigError: ``--resume last`` without ``--out`` and no earlier run.
        """
        resume = getattr(args, "resume", None)
        if not resume or verb is None or not verb.trains:
            return None
        if resume == "last":
            folder = Path(args.out) if args.out else latest_run(self.name)
            if folder is None:
                raise ConfigError(f"--resume last found no earlier run under runs/{self.name}; give --out DIR.")
        else:
            folder = _checkpoint_run_folder(Path(resume))
        return folder if (folder / RunDir.CONFIG).is_file() else None

    def _check_resume_changes(self, original: Any, config: Any, folder: Path) -> None:
        """Refuse a resumed config that trains something other than the run in ``folder`` did."""
        before, after = _flatten(config_to_dict(original)), _flatten(config_to_dict(config))
        for key in sorted(set(before) | set(after)):
            if before.get(key) == after.get(key):
                continue
            if any(key == allowed or key.startswith(f"{allowed}.") for allowed in self.resume_changes):
                continue
            raise ConfigError(
                f"--resume continues {folder} as it was configured, but {key} would change "
                f"from {before.get(key)!r} to {after.get(key)!r}.",
                "Drop that option, or start a new run with another --out. "
                f"--resume may change only {', '.join(self.resume_changes)}.",
            )

    def recipe(self, dataset: str, verb: str | None = None) -> dict[str, Any]:
        """The recipe for ``dataset`` (``<configs>/<dataset>.yaml``, dashes may be underscores; ``demo.yaml``
        first for ``demo``), or ``{}``; :attr:`recipe_source` records which file it was."""
        folder = find_configs_dir(self.name)
        self.recipe_source = None
        if folder is None:
            return {}
        # Dataset names use dashes; a recipe file may spell them with underscores
        # (cifar10-jpeg -> cifar10_jpeg.yaml) so that it is never mistaken for the data itself.
        names = [f"{dataset}.yaml", f"{dataset.replace('-', '_')}.yaml"]
        for candidate in ([f"{verb}.yaml"] if verb == "demo" else []) + names:
            path = folder / candidate
            if path.is_file():
                return self.use_recipe(path)
        return {}

    def use_recipe(self, path: Path) -> dict[str, Any]:
        """Load the recipe file ``path`` and record it as the one in force (apps with their own lookup call it)."""
        self.recipe_source = path
        return load_yaml(path)

    def say_recipe(self, context: Context) -> None:
        """Tell the user which recipe a training verb runs with: a missing one is said, never silent.

        A hook: an app whose settings come from elsewhere too (rl's rl-zoo3 presets) overrides it and
        still prints ``recipe: <file>`` when a recipe file is in force."""
        args = context.args
        if getattr(args, "resume", None):
            extra = f" and --config {args.config}" if args.config else ""
            context.print(f"resuming with the run's own config.yaml{extra}")
        elif self.recipe_source is not None:
            section = f" (section models.{self.recipe_section})" if self.recipe_section else ""
            context.print(f"recipe: {self.recipe_source}{section}")
        elif getattr(args, "config", None):
            context.print(f"no recipe for dataset {context.config.dataset!r}: --config {args.config} over the defaults")
        else:
            folder = find_configs_dir(self.name)
            where = f" in {folder}" if folder is not None else ""
            context.print(f"no recipe for dataset {context.config.dataset!r}{where}: the defaults of {self.prog} apply")

    @property
    def prog(self) -> str:
        """How the user started the program: ``apps/<app>``, ``pentad-<app>`` or ``python -m pentad_<app>``."""
        launched = Path(sys.argv[0]) if sys.argv and sys.argv[0] else Path()
        if launched.name == f"pentad-{self.name}":
            return launched.name
        if launched.name == "__main__.py" and launched.parent.name == f"pentad_{self.name}":
            return f"python -m pentad_{self.name}"
        return f"apps/{self.name}"

    # -- running -----------------------------------------------------------------------------------

    def run(
        self, verb: str, config: Any = None, *, out: str | Path | None = None, quiet: bool = True, **options: Any
    ) -> RunResult:
        """Run a verb from Python, exactly as the command line would, and return what it wrote.

        Args:
            verb: ``"train"``, ``"demo"``, ``"evaluate"``, ...
            config: The app's config dataclass, or a (nested) dict of config keys; applied over the
                dataset's recipe like ``--config FILE``.
            out: The run folder (``--out``).
            quiet: Print nothing on the terminal (progress bars follow ``trainer.progress_bar``).
            **options: Command-line options by their long name, e.g. ``checkpoint="runs/x"``,
                ``resume="last"``, ``overwrite=True``, ``epochs=2``.

        Returns:
            The run folder, its ``metrics.json`` and the resolved config.

        Raises:
            PentadError: What the command line reports as a one-line error (exit code 2).

        Example:
            >>> result = app.run("train", {"dataset": "synthetic", "trainer": {"max_epochs": 1}}, out="runs/x")
            >>> result.metrics["test/dice"]
        """
        import tempfile

        from pentad_core.config import config_to_dict

        argv = [verb]
        with tempfile.TemporaryDirectory() as folder:
            if config is not None:
                mapping = config_to_dict(config) if dataclasses.is_dataclass(config) else dict(config)
                path = Path(folder) / "config.yaml"
                path.write_text(yaml.safe_dump(mapping, sort_keys=False), encoding="utf-8")
                argv += ["--config", str(path)]
            if out is not None:
                argv += ["--out", str(out)]
            for name, value in options.items():
                flag = "--" + name.replace("_", "-")
                if value is True:
                    argv.append(flag)
                elif value is not False and value is not None:
                    argv += [flag, str(value)]
            args = self.build_parser().parse_args(argv)
            previous, self.quiet = self.quiet, quiet
            try:
                self._dispatch(args)
            finally:
                self.quiet = previous
        run = self.last_run
        metrics = run.read_metrics() if run is not None else {}
        return RunResult(run.path if run is not None else None, metrics, self.last_config)

    def main(self, argv: Sequence[str] | None = None) -> int:
        """Parse ``argv``, run the verb, apply the error policy; returns the exit code."""
        argv = list(sys.argv[1:] if argv is None else argv)
        debug = "--debug" in argv
        _restartable_main()
        from pentad_core.logs import quiet_libraries

        quiet_libraries(verbose=debug)
        parser = self.build_parser()
        if not argv or argv in (["-h"], ["--help"]):
            parser.print_help()
            return 0
        try:
            args = parser.parse_args(argv)
            if args.verb is None:
                parser.print_help()
                return 0
            return self._dispatch(args) or 0
        except PentadError as error:
            if debug:
                raise
            sys.stderr.write(f"{self.prog}: error: {error.message}\n")
            return error.exit_code
        except KeyboardInterrupt:
            sys.stderr.write(f"{self.prog}: interrupted; resume with --resume last\n")
            return 130
        except Exception as error:
            if debug:
                raise
            where = traceback.extract_tb(error.__traceback__)[-1] if error.__traceback__ else None
            location = f" at {Path(where.filename).name}:{where.lineno}" if where else ""
            first_line = str(error).splitlines()[0] if str(error) else ""
            sys.stderr.write(
                f"{self.prog}: internal error: {type(error).__name__}: {first_line}{location} "
                "(rerun with --debug for the traceback)\n"
            )
            return 1

    def _dispatch(self, args: argparse.Namespace) -> int | None:
        if args.verb == "models":
            return self.models_verb(args.pattern)
        if args.verb == "data":
            return self.data_verb(args)
        verb = self._verbs[args.verb]
        config = self.resolve_config(args, verb)
        if self.models is not None and config.model and config.model not in self.models:
            self.models.get(config.model)  # raises with close matches
        if self.datasets is not None and config.dataset not in self.datasets:
            self.datasets.get(config.dataset)
        self._check_data_dir(getattr(args, "data_dir", None), config.dataset)
        checkpoint = None
        if args.checkpoint:
            checkpoint = Path(args.checkpoint)
            if not checkpoint.exists():
                raise ConfigError(
                    f"--checkpoint {checkpoint} does not exist.",
                    "Give a trained run folder or a checkpoint from a run's checkpoints/.",
                )
        elif verb.needs_checkpoint:
            raise ConfigError(
                f"`{verb.name}` needs --checkpoint PATH (e.g. runs/{self.name}/<run>/checkpoints/best.ckpt)."
            )
        from pentad_core.devices import flush_denormals, seed_everything, set_threads

        set_threads(config.threads)
        flush_denormals()
        trainer = getattr(config, "trainer", None)
        seed_everything(config.seed, bool(trainer and trainer.deterministic))
        context = Context(self, verb.name, args, config, checkpoint=checkpoint)
        if verb.writes_run:
            context.run, context.resume_path = self._open_run(verb, args, config)
        self.last_run, self.last_config = context.run, config
        if verb.trains:
            self.say_recipe(context)
        return verb.handler(context)

    def _check_data_dir(self, data_dir: str | None, dataset: str) -> None:
        """A ``--data-dir`` must exist and belong to a dataset that reads a folder."""
        if not data_dir:
            return
        if self.dataset_folder(dataset, data_dir) is None:
            raise ConfigError(
                f"--data-dir {data_dir}: dataset {dataset!r} is generated by the package and has no folder.",
                "Name the dataset the folder holds with --dataset (see `data list`).",
            )
        if not Path(data_dir).expanduser().exists():
            raise ConfigError(f"--data-dir {data_dir} does not exist.", "Check the path, or leave --data-dir out.")

    def _open_run(self, verb: _Verb, args: argparse.Namespace, config: Any) -> tuple[RunDir, Path | None]:
        inherited = os.environ.get(RUN_DIR_ENV)
        if _rank() != 0 and inherited:
            # A distributed child: rank 0 already prepared the folder and wrote the config.
            resume = resolve_resume(args.resume, inherited, self.last_checkpoint) if verb.trains else None
            return RunDir(inherited), resume
        if args.resume and not verb.trains:
            raise ConfigError(f"--resume applies to training verbs, not `{verb.name}`.")
        if not verb.trains:
            run = self._open_output(verb, args, config)
        else:
            run, resume_path = self._open_training_run(verb, args, config)
        os.environ[RUN_DIR_ENV] = str(run.path.resolve())
        return (run, resume_path) if verb.trains else (run, None)

    def _open_training_run(self, verb: _Verb, args: argparse.Namespace, config: Any) -> tuple[RunDir, Path | None]:
        """The run folder of a training verb: new, replaced (``--overwrite``) or continued (``--resume``).

        A continued run keeps its ``config.yaml`` and ``environment.json``: what the resumed part ran
        with is written beside them as ``config.resume-<n>.yaml`` and ``environment.resume-<n>.json``.
        """
        if args.out:
            out = Path(args.out)
        elif args.resume == "last":
            out = self.resumed_run(args, verb) or latest_run(self.name)
            if out is None:
                raise ConfigError(f"--resume last found no earlier run under runs/{self.name}; give --out DIR.")
        else:
            out = default_run_path(self.name, config.model or "default", config.dataset)
        resume_path = resolve_resume(args.resume, out, self.last_checkpoint)
        if resume_path is not None:
            self.check_resume_checkpoint(resume_path)  # before the run folder is touched
        run = RunDir.for_training(out, resume=resume_path is not None, overwrite=args.overwrite)
        record = {"app": self.name, "verb": verb.name}
        if resume_path is not None and (run.path / RunDir.CONFIG).is_file():
            index = 1 + sum(1 for _ in run.path.glob("config.resume-*.yaml"))
            save_config(config, run.path / f"config.resume-{index}.yaml")
            run.write_environment({**record, "resumed_from": str(resume_path)}, name=f"environment.resume-{index}.json")
        else:
            run.write_config(config)
            run.write_environment(record)
        return run, resume_path

    def check_resume_checkpoint(self, path: Path) -> None:
        """Refuse a checkpoint that ``--resume`` could not continue from, before anything is written
        into the run (``config.resume-<n>.yaml`` would otherwise record a part that never ran).

        A hook next to ``last_checkpoint``: the default reads a Lightning ``.ckpt``'s index without
        its tensors (memory-mapped), which catches a truncated file and one that would run code; an
        app with another checkpoint format (rl's ``.zip``) checks its own.

        Raises:
            CheckpointError: The file is damaged, unsafe, or of the wrong kind.
        """
        load_checkpoint(path, mmap=True)

    def _open_output(self, verb: _Verb, args: argparse.Namespace, config: Any) -> RunDir:
        """The folder a verb that reads a run writes into; the run read is never modified.

        Default: ``<run>/<verb>/<time>/`` for ``--checkpoint`` of a run, else
        ``runs/<app>/<time>-<verb>-<model>-<dataset>``. An ``--out`` that holds a trained run is refused.
        """
        if args.out:
            out = Path(args.out)
            if _holds_checkpoints(out):
                raise ConfigError(
                    f"--out {out} holds a trained run; `{verb.name}` does not write into a run folder.",
                    "Choose a new folder, or leave --out out to write into <run>/" + verb.name + "/<time>/.",
                )
        else:
            if args.checkpoint:
                out = _checkpoint_run_folder(Path(args.checkpoint)) / verb.name / timestamp()
            else:
                out = default_run_path(self.name, config.model or "default", config.dataset, verb=verb.name)
            base, number = out, 1
            while out.exists():  # two reads within a second get two folders
                number += 1
                out = base.with_name(f"{base.name}-{number}")
        run = RunDir(out)
        run.write_config(config)
        run.write_environment({"app": self.name, "verb": verb.name, "read": str(args.checkpoint or "")})
        return run

    # -- scaffold verbs ----------------------------------------------------------------------------

    def models_verb(self, pattern: str) -> int:
        """The ``models [PATTERN]`` verb: a table of the registered models (a hook apps may extend)."""
        from pentad_core.bench import print_table

        if self.models is None:
            raise ConfigError(f"apps/{self.name} has no model registry.")
        names = self.models.names(pattern)
        if not names:
            raise ConfigError(f"no model matches {pattern!r}; run `models` to list all.")
        print_table([{"model": n, "description": self.models.describe(n)} for n in names], title=f"{self.name} models")
        return 0

    def data_verb(self, args: argparse.Namespace) -> int:
        """The ``data list|download|verify`` verb (a hook apps may extend, e.g. with generated environments)."""
        from pentad_core.bench import print_table

        names = self.datasets.names() if self.datasets is not None else sorted(self.remote_files)
        if args.action == "list":
            rows = []
            remote = self.remote_files
            for name in names:
                root = self.dataset_folder(name, None)
                rows.append({
                    "dataset": name,
                    "description": self.datasets.describe(name) if self.datasets is not None else "",
                    "download": "yes" if name in remote else "no",
                    "folder": "generated" if root is None else str(root),
                    "present": "yes" if root is None or root.exists() else "no",
                })  # fmt: skip
            print_table(rows, title=f"{self.name} datasets")
            return 0
        if not args.name:
            raise ConfigError(f"`data {args.action}` needs a dataset name; run `data list`.")
        if self.datasets is not None:
            self.datasets.get(args.name)
        folder = self.dataset_folder(args.name, args.data_dir)
        if folder is None:
            print(f"{args.name} is generated by the package: nothing to {args.action}")
            return 0
        root = folder
        if args.action == "download":
            files = self.remote_files.get(args.name)
            if not files:
                raise DataError(
                    f"dataset {args.name!r} has no official download; put its files in {root} "
                    f"(see docs/{self.name}.md)."
                )
            download_dataset(files, root)
            print(f"downloaded {args.name} into {root}")
            return 0
        if not root.exists():
            raise DataError(
                f"dataset folder not found: {root}.", f"Run `data download {args.name}` or pass --data-dir."
            )
        problems = verify_dataset(self.remote_files.get(args.name, []), root) if args.name in self.remote_files else []
        # A downloaded file whose checksum differs is always reported. A missing one is not, when the
        # dataset has its own check: archives may have been removed after extraction.
        mismatched = [problem for problem in problems if problem.startswith("checksum mismatch")]
        if mismatched:
            raise DataError(
                f"dataset {args.name} at {root}: {'; '.join(mismatched)}.",
                f"Delete the file and run `data download {args.name}` again.",
            )
        if self.verify_hook is not None:
            summary = self.verify_hook(args.name, root)
            print(f"{args.name} at {root}: OK ({summary})")
            return 0
        if problems:
            raise DataError(f"dataset {args.name} at {root}: {'; '.join(problems)}.")
        print(f"{args.name} at {root}: OK")
        return 0


def _restartable_main() -> None:
    """Let Lightning's DDP launcher start the other processes the way this one started.

    Run as a folder (``python apps/<app>``), the main module's spec is named ``__main__``, and the
    launcher would start the other ranks with ``python -m __main__``, which fails; without a spec
    it re-runs the same path.
    """
    main = sys.modules.get("__main__")
    spec = getattr(main, "__spec__", None)
    if spec is not None and spec.name == "__main__":
        main.__spec__ = None


def _checkpoint_run_folder(checkpoint: Path) -> Path:
    """The run folder a ``--checkpoint`` (a run folder or a checkpoint file) belongs to."""
    from pentad_core.predictor import run_folder_of

    return checkpoint if checkpoint.is_dir() else run_folder_of(checkpoint)


def _holds_checkpoints(folder: Path) -> bool:
    """Whether ``folder`` holds the checkpoints of a training run."""
    checkpoints = folder / "checkpoints"
    return checkpoints.is_dir() and any(path.is_file() for path in checkpoints.rglob("*"))


def _flatten(mapping: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """``{"a": {"b": 1}}`` -> ``{"a.b": 1}`` (lists and other values are leaves)."""
    flat: dict[str, Any] = {}
    for key, value in mapping.items():
        if isinstance(value, dict) and value:
            flat.update(_flatten(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value
    return flat


def _merge(base: dict[str, Any], update: dict[str, Any]) -> dict[str, Any]:
    from pentad_core.config import merge_dicts

    return merge_dicts(base, update)
