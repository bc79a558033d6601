"""Helpers of the integration tests: find the apps and run them."""

from __future__ import annotations

import importlib
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
APPS_DIR = ROOT / "apps"
APPS = sorted(p.name for p in APPS_DIR.iterdir() if (p / "__main__.py").is_file()) if APPS_DIR.is_dir() else []


def run_app(app: str, *args: str, timeout: float = 600, cwd: Path | None = None) -> subprocess.CompletedProcess:
    """``python apps/<app> ARGS`` (what ``uv run apps/<app> ARGS`` runs) in a fresh interpreter."""
    environment = {**os.environ, "PYTHONUNBUFFERED": "1", "COLUMNS": "120"}
    return subprocess.run(
        [sys.executable, str(ROOT / "apps" / app), *args],
        capture_output=True, text=True, timeout=timeout, env=environment, cwd=cwd or ROOT,
    )  # fmt: skip


def app_object(app: str):
    """The :class:`pentad_core.cli.App` behind ``apps/<app>``."""
    from pentad_core.cli import App

    module = importlib.import_module(f"pentad_{app}.cli")
    found = [value for value in vars(module).values() if isinstance(value, App)]
    assert len(found) == 1, f"pentad_{app}.cli should define exactly one App"
    return found[0]
