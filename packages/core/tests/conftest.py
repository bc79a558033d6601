"""Shared helpers of the core tests."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

TOY_APP = Path(__file__).with_name("toy_app.py")


def run_toy(*args: str, timeout: float = 300, **kwargs) -> subprocess.CompletedProcess:
    """Run the toy app in a fresh interpreter."""
    environment = {**os.environ, "PYTHONUNBUFFERED": "1"}
    return subprocess.run(
        [sys.executable, str(TOY_APP), *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=environment,
        **kwargs,
    )


@pytest.fixture
def toy():
    return run_toy
