"""Every domain's LightningModule stands on pentad's module base, so each app trains with its savings."""

from __future__ import annotations

import importlib
import inspect
import pkgutil
from pathlib import Path

import pytorch_lightning as pl

from pentad_core.training import PentadModule

PACKAGES = sorted(path.name for path in (Path(__file__).parents[1] / "packages").iterdir() if path.is_dir())


def lightning_modules_defined_in(package_name: str) -> list[type]:
    """The LightningModule subclasses defined in any module of ``package_name`` (all are imported)."""
    package = importlib.import_module(package_name)
    found = []
    for info in pkgutil.walk_packages(package.__path__, prefix=f"{package_name}."):
        if info.name.endswith(".__main__"):  # `python -m pentad_<app>` runs the program on import
            continue
        module = importlib.import_module(info.name)
        for _, value in inspect.getmembers(module, inspect.isclass):
            if issubclass(value, pl.LightningModule) and value.__module__ == info.name:
                found.append(value)
    return found


def test_every_domain_lightning_module_inherits_pentad_module():
    found = {name: lightning_modules_defined_in(f"pentad_{name}") for name in PACKAGES if name != "core"}
    assert {name for name, classes in found.items() if classes} >= {"vision", "medseg", "recsys", "traffic"}
    for module_class in (module_class for classes in found.values() for module_class in classes):
        assert issubclass(module_class, PentadModule), (
            f"{module_class.__module__}.{module_class.__qualname__} should inherit "
            "pentad_core.training.PentadModule rather than pl.LightningModule"
        )
