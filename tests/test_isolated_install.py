"""Each domain package installed on its own, as a user of another project would: wheel, fresh venv, CLI.

The six wheels are built once; for each domain a new virtual environment outside the repository
gets ``pentad-core`` and that one wheel (their dependencies come from the package index through
uv's cache, linked rather than copied). From a folder that is not the checkout, the console script
runs the demo on a shortened setting, ``python -m`` answers, and a documented Python call loads the
trained run. The recipe in force must be the one inside the installed package.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from app_harness import ROOT

DOMAINS = ("vision", "medseg", "recsys", "traffic", "rl")
PACKAGES = ("core", *DOMAINS)
#: The demo, shortened: fewer epochs or steps of the demo's own recipe.
SHORT_DEMO = {
    "vision": ["--epochs", "1"],
    "medseg": ["--epochs", "1"],
    "recsys": ["--epochs", "2"],
    "traffic": ["--epochs", "1"],
    "rl": ["--set", "timesteps=4000", "--set", "eval_freq=2000"],
}
#: Recipe keys the shortened demo overrides (everything else must equal the packaged recipe); rl's
#: ``source`` records the whole chain (the RL Zoo entry, then demo.yaml's own line).
OVERRIDDEN = {"trainer.max_epochs", "timesteps", "eval_freq", "source"}

pytestmark = pytest.mark.skipif(shutil.which("uv") is None, reason="uv is not installed")


def run(command: list[str], cwd: Path, env: dict[str, str], timeout: float = 900) -> subprocess.CompletedProcess:
    return subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)


@pytest.fixture(scope="session")
def wheels(tmp_path_factory) -> dict[str, Path]:
    dist = tmp_path_factory.mktemp("dist")
    for package in PACKAGES:
        command = ["uv", "build", "--wheel", "--package", f"pentad-{package}", "-o", str(dist)]
        built = run(command, ROOT, dict(os.environ))
        assert built.returncode == 0, built.stderr[-3000:]
    found = {package: next(dist.glob(f"pentad_{package}-*.whl")) for package in PACKAGES}
    return found


def flatten(mapping: dict, prefix: str = "") -> dict:
    flat = {}
    for key, value in mapping.items():
        if isinstance(value, dict) and value:
            flat.update(flatten(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value
    return flat


@pytest.mark.slow
@pytest.mark.parametrize("domain", DOMAINS)
def test_a_domain_package_installed_alone_works_like_the_app(domain, wheels, tmp_path):
    venv = tmp_path / "venv"
    environment = {key: value for key, value in os.environ.items() if not key.startswith(("PENTAD_", "VIRTUAL_ENV"))}
    environment["MPLBACKEND"] = "Agg"
    assert run(["uv", "venv", "-q", "--python", sys.executable, str(venv)], tmp_path, environment).returncode == 0
    python = venv / "bin" / "python"
    installed = run(
        ["uv", "pip", "install", "-q", "--python", str(python), str(wheels["core"]), str(wheels[domain])],
        tmp_path,
        environment,
    )
    assert installed.returncode == 0, installed.stderr[-3000:]
    names = "sorted(d.metadata['Name'] for d in m.distributions() if d.metadata['Name'].startswith('pentad'))"
    listing = run([str(python), "-c", f"import importlib.metadata as m; print({names})"], tmp_path, environment)
    assert listing.stdout.strip() == str(sorted(["pentad-core", f"pentad-{domain}"])), listing.stdout

    work = tmp_path / "elsewhere"  # not the checkout: no shared/configs above it
    work.mkdir()
    script = venv / "bin" / f"pentad-{domain}"
    demo = run([str(script), "demo", "--out", "run", *SHORT_DEMO[domain]], work, environment)
    assert demo.returncode == 0, demo.stderr[-3000:]
    recipe_line = next(line for line in demo.stdout.splitlines() if line.startswith("recipe: "))
    recipe = Path(recipe_line.removeprefix("recipe: ").strip())
    assert f"site-packages/pentad_{domain}/configs/" in str(recipe), recipe_line
    in_force = flatten(yaml.safe_load((work / "run" / "config.yaml").read_text()))
    for key, value in flatten(yaml.safe_load(recipe.read_text())).items():
        if key not in OVERRIDDEN and key in in_force:
            assert in_force[key] == value, (key, in_force[key], value)
    assert (work / "run" / "metrics.json").is_file() and json.loads((work / "run" / "metrics.json").read_text())
    assert any(path.is_file() for path in (work / "run" / "checkpoints").iterdir())
    assert list((work / "run").rglob("*.png")), "no plot"

    module = run([str(python), "-m", f"pentad_{domain}", "models"], work, environment)
    assert module.returncode == 0 and module.stdout.strip(), module.stderr[-2000:]
    bad = run([str(script), "train", "--no-such-option"], work, environment)
    assert bad.returncode == 2 and bad.stderr.startswith(f"pentad-{domain}: error:"), bad.stderr
    api = run([str(python), "-c", f"from pentad_{domain}.predictor import Predictor\n"
               "predictor = Predictor.from_run('run')\nprint(type(predictor).__name__, bool(predictor.metrics))"],
              work, environment)  # fmt: skip
    assert api.returncode == 0 and api.stdout.strip() == "Predictor True", api.stderr[-2000:]
    # every module imports without the checkout, apps/ or another domain (the serve extra is not installed)
    walk = (
        f"import importlib, pkgutil, sys, pentad_{domain} as p\n"
        "for info in pkgutil.walk_packages(p.__path__, p.__name__ + '.'):\n"
        "    if info.name.endswith('.__main__') or info.name.endswith('.serving'):\n"
        "        continue\n"
        "    importlib.import_module(info.name)\n"
        f"print(sorted({{m.split('.')[0] for m in sys.modules if m.startswith('pentad')}}))"
    )
    walked = run([str(python), "-c", walk], work, environment)
    assert walked.returncode == 0, walked.stderr[-2000:]
    assert walked.stdout.strip() == str(sorted(["pentad_core", f"pentad_{domain}"])), walked.stdout
