"""Run directories: where every run writes its config, metrics, checkpoints, logs and plots.

Layout::

    <out>/config.yaml         the resolved config (defaults < recipe < --config < options)
    <out>/environment.json    package versions, hardware, git commit, command line
    <out>/metrics.json        "<split>/<metric>" -> value, merged by every verb that measures
    <out>/checkpoints/        best.ckpt, last.ckpt (Lightning) or the domain's own files
    <out>/logs/               TensorBoard events and metrics.csv
    <out>/plots/              PNG figures
"""

from __future__ import annotations

import datetime as _dt
import json
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Sequence
from importlib import metadata
from pathlib import Path
from typing import Any, TypeVar

from pentad_core.config import config_from_dict, load_yaml, save_config
from pentad_core.errors import ConfigError
from pentad_core.files import atomic_write_json

C = TypeVar("C")

#: Packages whose versions go into every environment record.
RECORDED_PACKAGES = (
    "torch", "pytorch-lightning", "torchmetrics", "numpy", "torchvision", "segmentation-models-pytorch",
    "stable-baselines3", "gymnasium", "onnx", "onnxruntime", "pentad-core", "pentad-vision", "pentad-medseg",
    "pentad-recsys", "pentad-traffic", "pentad-rl",
)  # fmt: skip


def timestamp() -> str:
    """Sortable local time stamp used in run-directory names, e.g. ``20261129-071502``."""
    return _dt.datetime.now().strftime("%Y%m%d-%H%M%S")


def slug(text: str) -> str:
    """File-name-safe version of ``text`` (``"pentad/ConnectFour-v0"`` -> ``"pentad-ConnectFour-v0"``)."""
    return re.sub(r"[^A-Za-z0-9._-]+", "-", text).strip("-") or "run"


def default_run_path(app: str, model: str, dataset: str, root: str | Path = "runs", verb: str | None = None) -> Path:
    """``runs/<app>/<timestamp>-<model>-<dataset>`` (with ``-<verb>`` for non-training verbs)."""
    parts = [timestamp(), *([verb] if verb else []), slug(model), slug(dataset)]
    return Path(root) / app / "-".join(parts)


class RunDir:
    """A run's output folder.

    Args:
        path: The folder; created when missing.
    """

    CONFIG = "config.yaml"
    METRICS = "metrics.json"
    ENVIRONMENT = "environment.json"

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        for folder in (self.path, self.checkpoints, self.logs, self.plots):
            folder.mkdir(parents=True, exist_ok=True)

    @property
    def checkpoints(self) -> Path:
        """Folder of checkpoints."""
        return self.path / "checkpoints"

    @property
    def logs(self) -> Path:
        """Folder of TensorBoard and CSV logs."""
        return self.path / "logs"

    @property
    def plots(self) -> Path:
        """Folder of PNG plots."""
        return self.path / "plots"

    @property
    def last_checkpoint(self) -> Path:
        """Where the most recent training checkpoint is kept."""
        return self.checkpoints / "last.ckpt"

    @property
    def best_checkpoint(self) -> Path:
        """Where the best checkpoint by the monitored metric is kept."""
        return self.checkpoints / "best.ckpt"

    def plot_path(self, name: str) -> Path:
        """``plots/<name>.png``."""
        return self.plots / f"{slug(name)}.png"

    @staticmethod
    def holds_run(path: str | Path) -> bool:
        """Whether ``path`` already holds the results of a training run."""
        path = Path(path)
        checkpoints = path / "checkpoints"
        return (path / RunDir.CONFIG).exists() or (checkpoints.is_dir() and any(checkpoints.iterdir()))

    @classmethod
    def for_training(cls, path: str | Path, *, resume: bool = False, overwrite: bool = False) -> RunDir:
        """Open a run folder for training, refusing to clobber an earlier run.

        Args:
            path: The ``--out`` folder.
            resume: Continuing the run in ``path`` (``--resume``).
            overwrite: Replace the earlier run's checkpoints, logs and metrics (``--overwrite``).

        Raises:
            ConfigError: If ``path`` holds a run and neither ``resume`` nor ``overwrite`` is set.
        """
        path = Path(path)
        if cls.holds_run(path) and not resume:
            if not overwrite:
                raise ConfigError(
                    f"{path} already holds a run; pass --resume last to continue it, "
                    "--overwrite to replace it, or choose another --out."
                )
            for entry in path.iterdir():  # everything the earlier run wrote: exports, CSVs, monitors too
                if entry.is_dir() and not entry.is_symlink():
                    shutil.rmtree(entry)
                else:
                    entry.unlink()
        return cls(path)

    def write_config(self, config: Any) -> Path:
        """Save the resolved config as ``config.yaml``."""
        target = self.path / self.CONFIG
        save_config(config, target)
        return target

    def read_config(self, config_class: type[C]) -> C:
        """The config this run was set up with (``config.yaml``), to continue it as configured.

        Raises:
            ConfigError: Naming the file, if it is missing or has keys or values this version does not accept.
        """
        path = self.path / self.CONFIG
        if not path.is_file():
            raise ConfigError(
                f"{path} is missing: the run cannot continue as configured.", "Train it again (--overwrite)."
            )
        try:
            return config_from_dict(config_class, load_yaml(path))
        except ConfigError as error:
            raise ConfigError(f"{path}: {error.message}") from None

    def read_metrics(self) -> dict[str, Any]:
        """The metrics recorded so far (empty when none)."""
        target = self.path / self.METRICS
        if not target.exists():
            return {}
        try:
            return json.loads(target.read_text(encoding="utf-8"))
        except json.JSONDecodeError:
            raise ConfigError(f"{target} is not valid JSON; move it away and rerun.") from None

    def write_metrics(self, metrics: dict[str, Any]) -> dict[str, Any]:
        """Merge ``metrics`` into ``metrics.json`` (atomic) and return the merged dict."""
        merged = {**self.read_metrics(), **{key: _plain(value) for key, value in metrics.items()}}
        atomic_write_json(self.path / self.METRICS, merged)
        return merged

    def write_environment(self, extra: dict[str, Any] | None = None, name: str = ENVIRONMENT) -> dict[str, Any]:
        """Record package versions, hardware, git commit and command line in ``environment.json`` (or ``name``)."""
        record = environment_record()
        record.update(extra or {})
        atomic_write_json(self.path / name, record)
        return record

    def __repr__(self) -> str:
        return f"RunDir({str(self.path)!r})"


def _plain(value: Any) -> Any:
    if hasattr(value, "item") and getattr(value, "ndim", 0) == 0:
        return value.item()
    return value


def package_versions(names: tuple[str, ...] = RECORDED_PACKAGES) -> dict[str, str]:
    """Installed versions of ``names`` (missing packages are left out)."""
    versions = {}
    for name in names:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return versions


def git_commit(folder: str | Path = ".") -> str | None:
    """The git commit of ``folder`` with ``-dirty`` when there are local changes, or ``None``."""
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=folder, capture_output=True, text=True, timeout=5, check=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=folder, capture_output=True, text=True, timeout=5, check=True,
        ).stdout.strip()  # fmt: skip
    except (OSError, subprocess.SubprocessError):
        return None
    return commit + ("-dirty" if dirty else "")


def environment_record() -> dict[str, Any]:
    """Versions, hardware, git commit, command line and time of this process."""
    from pentad_core.devices import describe_hardware

    return {
        "time": _dt.datetime.now().astimezone().isoformat(timespec="seconds"),
        "command": [Path(sys.argv[0]).name, *sys.argv[1:]],
        "cwd": os.getcwd(),
        "python": sys.version.split()[0],
        "packages": package_versions(),
        "hardware": describe_hardware().as_dict(),
        "git_commit": git_commit(),
    }


def latest_run(app: str, root: str | Path = "runs") -> Path | None:
    """The most recent run folder of ``app`` that holds a last checkpoint, or ``None``."""
    folder = Path(root) / app
    if not folder.is_dir():
        return None
    candidates = sorted((p for p in folder.iterdir() if (p / "checkpoints").is_dir()), reverse=True)
    for candidate in candidates:
        if any((candidate / "checkpoints").iterdir()):
            return candidate
    return None


#: Key of the marker a blend's ``checkpoints/last.ckpt`` holds until every model has trained.
BLEND_IN_PROGRESS = "blend_in_progress"


def blend_runs(
    run: RunDir, names: Sequence[str], config_class: type[C], configs: Sequence[C] | None = None
) -> tuple[list[RunDir], list[C]]:
    """The run folders ``<run>/blend/<name>/`` of the models of a blend, and the config each trains with.

    Starting a blend (``configs`` given, one per name): every model's config is written before the first
    model trains, and ``run``'s ``checkpoints/last.ckpt`` becomes a marker (``{BLEND_IN_PROGRESS: names}``)
    that the verbs reading a run refuse, so that ``--resume`` continues the blend as configured.
    Resuming (``configs`` None): the configs written at the start are read back (:meth:`RunDir.read_config`).
    """
    from pentad_core.checkpoint import atomic_save  # torch and Lightning only where a blend trains

    runs = [RunDir(run.path / "blend" / name) for name in names]
    if configs is None:
        return runs, [member.read_config(config_class) for member in runs]
    for config, member in zip(configs, runs, strict=True):
        member.write_config(config)
    atomic_save({BLEND_IN_PROGRESS: list(names)}, run.last_checkpoint)
    return runs, list(configs)
