"""Each distribution stands alone: it depends on pentad-core only and imports without the others."""

from __future__ import annotations

import subprocess
import sys
import tomllib

import pytest
from app_harness import ROOT

DOMAINS = ("vision", "medseg", "recsys", "traffic", "rl")


@pytest.mark.parametrize("package", ("core", *DOMAINS))
def test_declares_no_sibling_domain_dependency(package):
    project = tomllib.loads((ROOT / "packages" / package / "pyproject.toml").read_text())["project"]
    assert project["name"] == f"pentad-{package}"
    names = {dependency.split(">")[0].split("=")[0].split("[")[0].strip() for dependency in project["dependencies"]}
    siblings = {f"pentad-{other}" for other in DOMAINS if other != package}
    assert not names & siblings, f"pentad-{package} depends on {names & siblings}"
    if package != "core":
        assert "pentad-core" in names


@pytest.mark.parametrize("package", DOMAINS)
def test_imports_alone_and_exposes_its_registries(package):
    # The package's CLI module pulls in its models, datasets and core; no other domain may load.
    code = (
        "import sys, importlib\n"
        f"cli = importlib.import_module('pentad_{package}.cli')\n"
        f"registry = importlib.import_module('pentad_{package}.registry')\n"
        "names = [n for n in dir(registry) if n.isupper() and hasattr(getattr(registry, n), 'names')]\n"
        "assert names and all(getattr(registry, n).names() for n in names), names\n"
        f"others = [m for m in sys.modules if m.startswith('pentad_') and m.split('.')[0] "
        f"not in ('pentad_core', 'pentad_{package}')]\n"
        "assert not others, others\n"
        "print('ok', names)\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.startswith("ok")
