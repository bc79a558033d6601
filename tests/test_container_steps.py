"""The container's install and start steps (deploy/container.sh, which deploy/Dockerfile runs), run here.

No Docker daemon is available to CI, so the image itself is not built; the same script is run in a
fresh copy of the repository instead: it installs one app from uv.lock without dev tools or the other
apps, and its start step serves a trained run that answers /healthz and /readyz.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import time
import urllib.request

import pytest
from app_harness import ROOT

pytestmark = pytest.mark.skipif(shutil.which("uv") is None, reason="uv is not installed")
APP = "medseg"


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.mark.slow
def test_the_container_script_installs_one_app_and_serves_a_run(tmp_path):
    copy = tmp_path / "app"
    tracked = subprocess.run(["git", "ls-files", "-z"], cwd=ROOT, capture_output=True, check=True).stdout
    for name in filter(None, tracked.decode().split("\0")):
        source = ROOT / name
        if source.is_file():
            (copy / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, copy / name)
    environment = {key: value for key, value in os.environ.items() if not key.startswith(("PENTAD_", "VIRTUAL_ENV"))}
    environment["MPLBACKEND"] = "Agg"
    install = subprocess.run(["deploy/container.sh", "install", APP], cwd=copy, env=environment,
                             capture_output=True, text=True, timeout=900)  # fmt: skip
    assert install.returncode == 0, install.stderr[-3000:]
    site = next((copy / ".venv" / "lib").glob("python*/site-packages"))
    installed = sorted(path.name for path in site.glob("pentad_*") if not path.name.endswith(".dist-info"))
    assert installed == ["pentad_core", f"pentad_{APP}"], installed
    assert not (site / "pytest").exists(), "dev tools were installed"
    assert (site / f"pentad_{APP}" / "configs").is_dir(), "the installed package lacks its recipes"

    demo = subprocess.run([str(copy / ".venv" / "bin" / f"pentad-{APP}"), "demo", "--out", "run", "--epochs", "1"],
                          cwd=copy, env=environment, capture_output=True, text=True, timeout=900)  # fmt: skip
    assert demo.returncode == 0, demo.stderr[-3000:]
    port = free_port()
    server = subprocess.Popen(["deploy/container.sh", "serve", APP, "run"], cwd=copy,
                              env={**environment, "HOST": "127.0.0.1", "PORT": str(port)},
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE)  # fmt: skip
    try:
        deadline, ready = time.monotonic() + 300, False
        while time.monotonic() < deadline and not ready:
            assert server.poll() is None, server.stderr.read().decode()[-3000:]
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=5) as response:
                    ready = response.status == 200
            except OSError:
                time.sleep(0.5)
        assert ready, "the served run never became ready"
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=5) as response:
            assert response.status == 200
    finally:
        server.send_signal(signal.SIGTERM)
        server.wait(timeout=60)
