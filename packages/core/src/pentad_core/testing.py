"""Helpers for the test suites of pentad packages (imported by tests only; needs pytest).

Real-data tests run when their dataset's folder is present under ``$PENTAD_DATA`` and are skipped,
with the dataset named, when it is not. ``PENTAD_REQUIRE_DATA=1`` (CI sets it) turns a missing
dataset into a failure instead, so a CI run cannot pass by skipping what it was meant to check.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

#: Set to 1 to fail, rather than skip, real-data tests whose dataset is missing.
REQUIRE_ENV = "PENTAD_REQUIRE_DATA"


def dataset_folder(name: str) -> Path | None:
    """``$PENTAD_DATA/<name>`` when ``PENTAD_DATA`` is set and that folder exists, else ``None``."""
    home = os.environ.get("PENTAD_DATA")
    if not home:
        return None
    folder = Path(home).expanduser() / name
    return folder if folder.is_dir() else None


def requires_dataset(name: str) -> Any:
    """A pytest mark for a test that reads the real dataset ``name`` from ``$PENTAD_DATA/<name>``.

    Skips the test (the reason names the dataset and where it was looked for) when the folder is
    absent, unless ``PENTAD_REQUIRE_DATA=1``: then the test is marked to fail at once, naming it.
    """
    import pytest

    home = os.environ.get("PENTAD_DATA")
    where = f"{home}/{name}" if home else f"$PENTAD_DATA/{name} (PENTAD_DATA is unset)"
    present = dataset_folder(name) is not None
    marks = [pytest.mark.real_data]
    if present:
        return _combine(marks)
    if os.environ.get(REQUIRE_ENV) == "1":
        return _combine(marks, failure=f"dataset {name} not found at {where}, and {REQUIRE_ENV}=1 requires it")
    return _combine([*marks, pytest.mark.skip(reason=f"dataset {name} not found at {where}")])


def _combine(marks: list[Any], failure: str | None = None) -> Any:
    """A decorator applying ``marks``; with ``failure``, the test fails with that message instead of running."""
    import functools

    import pytest

    def apply(function: Any) -> Any:
        if failure is not None:

            @functools.wraps(function)
            def fail(*args: Any, **kwargs: Any) -> None:
                pytest.fail(failure, pytrace=False)

            function = fail
        for mark in marks:
            function = mark(function)
        return function

    return apply
