"""A pytest plugin for the pentad test suites (loaded by the root ``pyproject.toml``'s ``addopts``).

:func:`sigint_left_as_found` fails a test that leaves SIGINT handled otherwise than it found it, and
puts the handler back. The reason: a child process inherits an ignored SIGINT, and Python then installs
no Ctrl-C handler in it, so a later test in the same xdist worker that interrupts its child (the
Ctrl-C lifecycle tests) would fail far from the test that caused it.
"""

from __future__ import annotations

import contextlib
import signal
from collections.abc import Iterator

import pytest


@contextlib.contextmanager
def sigint_guard() -> Iterator[None]:
    """Raise AssertionError after the block if it changed the SIGINT handler; the handler found is restored."""
    found = signal.getsignal(signal.SIGINT)
    try:
        yield
    finally:
        left = signal.getsignal(signal.SIGINT)
        if left is not found:
            signal.signal(signal.SIGINT, found)
            raise AssertionError(
                f"the test left the SIGINT handler as {left!r} (it found {found!r}); restore it, since a child "
                "process inherits an ignored SIGINT and cannot be interrupted"
            )


@pytest.fixture(autouse=True)
def sigint_left_as_found() -> Iterator[None]:
    """Every test: :func:`sigint_guard` around it (an error at teardown names the test)."""
    with sigint_guard():
        yield
