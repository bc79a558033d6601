"""Helpers for the test suites of pentad packages (imported by tests only; needs pytest).

Real-data tests run when their dataset's folder is present under ``$PENTAD_DATA`` and are skipped,
with the dataset named, when it is not. ``PENTAD_REQUIRE_DATA=1`` (CI sets it) turns a missing
dataset into a failure instead, so a CI run cannot pass by skipping what it was meant to check.

:func:`free_port` and :class:`ServerProcess` run an app's ``serve`` verb as a real subprocess bound to
127.0.0.1 for the serving tests: wait for ``/readyz``, send requests, stop with SIGTERM.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Iterator, Mapping, Sequence
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


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago (bound to port 0, then released)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class ServerProcess:
    """An HTTP server run as a subprocess and served on ``127.0.0.1:<port>``, ready once ``/readyz`` says 200.

    ``command`` must make the server listen on ``port`` (take one from :func:`free_port`). ``env`` adds
    variables to this process's environment (``PYTHONUNBUFFERED=1`` is always set); ``cwd`` is the
    working folder. The constructor polls ``GET /readyz`` every ``poll_interval`` seconds for up to
    ``ready_timeout``; if the process exits first it fails with the process's output (stderr, or the
    merged stdout and stderr with ``merge_output``; only its last ``output_tail`` characters when given),
    and if time runs out it stops the process and fails. Requests time out after ``request_timeout``.
    Use it as a context manager, or call :meth:`stop`.
    """

    def __init__(
        self,
        command: Sequence[str],
        env: Mapping[str, str] | None = None,
        cwd: str | Path | None = None,
        *,
        port: int,
        ready_timeout: float = 180.0,
        poll_interval: float = 0.2,
        request_timeout: float = 60.0,
        merge_output: bool = True,
        output_tail: int | None = None,
    ) -> None:
        self.port = port
        self.url = f"http://127.0.0.1:{port}"
        self.request_timeout = request_timeout
        environment = {**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})}
        self.process = subprocess.Popen(
            list(command),
            env=environment,
            cwd=cwd,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT if merge_output else subprocess.PIPE,
        )
        self.pid = self.process.pid
        deadline = time.monotonic() + ready_timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                stream = self.process.stdout if merge_output else self.process.stderr
                output = stream.read().decode() if stream is not None else ""
                raise AssertionError(output[-output_tail:] if output_tail else output)
            try:
                if self.request("GET", "/readyz")[0] == 200:
                    return
            except OSError:
                pass
            time.sleep(poll_interval)
        self.stop()
        raise AssertionError("the server never became ready")

    def request(
        self, method: str, path: str, body: bytes | None = None, headers: Mapping[str, str] | None = None
    ) -> tuple[int, Any]:
        """Send one request; returns ``(status, body)``, the body decoded as JSON when it parses, else text.

        HTTP error statuses are returned, not raised; connection errors raise ``OSError``.
        """
        request = urllib.request.Request(self.url + path, data=body, method=method)
        for key, value in (headers or {}).items():
            request.add_header(key, value)
        try:
            with urllib.request.urlopen(request, timeout=self.request_timeout) as response:
                status, text = response.status, response.read().decode()
        except urllib.error.HTTPError as error:
            status, text = error.code, error.read().decode()
        try:
            return status, json.loads(text)
        except json.JSONDecodeError:
            return status, text

    def get(self, path: str) -> tuple[int, Any]:
        """``GET path``, as :meth:`request`."""
        return self.request("GET", path)

    def post_json(self, path: str, payload: Any, headers: Mapping[str, str] | None = None) -> tuple[int, Any]:
        """``POST path`` with ``payload`` as a JSON body (``Content-Type: application/json``), as :meth:`request`."""
        merged = {"Content-Type": "application/json", **(headers or {})}
        return self.request("POST", path, json.dumps(payload).encode(), merged)

    def stop(self, timeout: float = 60.0) -> str:
        """Send SIGTERM if the process still runs and wait for it to exit; returns what is left on its stdout."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            self.process.wait(timeout=timeout)
        stdout = self.process.stdout
        return stdout.read().decode() if stdout is not None and not stdout.closed else ""

    def __enter__(self) -> ServerProcess:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()


#: Debian's Chromium, which the browser tests drive (``.ci/run`` installs it).
CHROMIUM = Path("/usr/bin/chromium")
#: Chromium's flags for a headless run on a machine without a network or a screen: without the
#: background-networking ones it keeps trying to reach Google's hosts.
CHROMIUM_FLAGS = (
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
)
#: Set to a folder to keep the browser tests' screenshots there as CI artefacts.
ARTIFACTS_ENV = "PENTAD_ARTIFACTS"


def requires_chromium() -> Any:
    """A pytest mark skipping a browser test, with the reason, where ``/usr/bin/chromium`` is absent."""
    import pytest

    reason = f"{CHROMIUM} is absent (Debian's chromium; .ci/run installs it)"
    return pytest.mark.skipif(not CHROMIUM.exists(), reason=reason)


@contextlib.contextmanager
def browser_page(width: int = 1280, height: int = 900) -> Iterator[Any]:
    """A Playwright page in headless Chromium (``/usr/bin/chromium``), closed afterwards."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=list(CHROMIUM_FLAGS))
        try:
            yield browser.new_page(viewport={"width": width, "height": height})
        finally:
            browser.close()


def keep_screenshot(page: Any, folder: Path, name: str) -> Path:
    """Save a full-page screenshot as ``folder/name``, and a copy under ``$PENTAD_ARTIFACTS`` when it is set."""
    import shutil

    path = Path(folder) / name
    page.screenshot(path=str(path), full_page=True)
    if os.environ.get(ARTIFACTS_ENV):
        target = Path(os.environ[ARTIFACTS_ENV])
        target.mkdir(parents=True, exist_ok=True)
        shutil.copy(path, target / name)
    return path
