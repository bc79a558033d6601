"""The real-data test gate: skip naming the dataset, or fail when CI requires the data."""

from __future__ import annotations

import signal
import subprocess
import sys
import textwrap

import pytest

CASES = [(True, False, "passed"), (False, False, "skipped"), (False, True, "failed"), (True, True, "passed")]


@pytest.mark.parametrize(("present", "required", "outcome"), CASES)
def test_requires_dataset_skips_or_fails_by_the_setting(tmp_path, present, required, outcome):
    home = tmp_path / "datasets"
    (home / ("drive" if present else "other")).mkdir(parents=True)
    test_file = tmp_path / "test_gate.py"
    test_file.write_text(
        textwrap.dedent("""
        from pentad_core.testing import requires_dataset

        @requires_dataset("drive")
        def test_reads_drive(tmp_path):
            assert tmp_path.exists()
    """)
    )
    environment = {"PATH": "/usr/bin:/bin", "PENTAD_DATA": str(home), "PENTAD_REQUIRE_DATA": "1" if required else "0"}
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-rs", "-p", "no:cacheprovider", "-W", "ignore", str(test_file)],
        capture_output=True, text=True, cwd=tmp_path, env=environment, timeout=120,
    )  # fmt: skip
    assert f"1 {outcome}" in result.stdout, result.stdout
    if outcome == "skipped":
        assert f"dataset drive not found at {home}/drive" in result.stdout
    if outcome == "failed":
        assert "PENTAD_REQUIRE_DATA=1 requires it" in result.stdout


def _default_sigint() -> None:
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def test_a_test_that_leaves_sigint_ignored_fails_and_the_next_test_finds_it_restored(tmp_path):
    """The plugin every suite loads (``pentad_core.pytest_plugin``), in a real pytest process."""
    test_file = tmp_path / "test_sigint.py"
    test_file.write_text(
        textwrap.dedent("""
        import signal

        def test_leaves_it_ignored():
            signal.signal(signal.SIGINT, signal.SIG_IGN)

        def test_restores_what_it_changed():
            assert signal.getsignal(signal.SIGINT) is signal.default_int_handler
            previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
            signal.signal(signal.SIGINT, previous)
        """)
    )
    command = [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-p", "pentad_core.pytest_plugin",
               "-p", "no:xdist", "-q", str(test_file)]  # fmt: skip
    # started with the default SIGINT even when this suite runs with it ignored (a job put in the background
    # by a shell without job control, e.g. `nohup .ci/run &`): Python then installs its Ctrl-C handler
    done = subprocess.run(command, capture_output=True, text=True, cwd=tmp_path, preexec_fn=_default_sigint)
    assert "2 passed, 1 error" in done.stdout, done.stdout  # the first passes its call and errs at teardown
    assert "ERROR at teardown of test_leaves_it_ignored" in done.stdout
    assert "the test left the SIGINT handler as <Handlers.SIG_IGN" in done.stdout
