"""One shape for five domains: what a reader finds in every domain package, checked on all of them.

docs/architecture.md describes the shape; these tests keep the packages in it: the same files,
typed registry metadata, a Predictor per domain, thin command-line modules, no import cycles and
none of the steps core now writes once.
"""

from __future__ import annotations

import ast
import importlib
from pathlib import Path

import pytest
from app_harness import ROOT

from pentad_core.data import DatasetInfo
from pentad_core.predictor import Predictor
from pentad_core.registry import ModelInfo, Registry, accepted_options

DOMAINS = ("vision", "medseg", "recsys", "traffic", "rl")
#: Where the workflow's pieces live; rl's environments and algorithms stand where data and models do.
DATA_FOLDER = {"rl": "envs"}
#: The command-line module holds verbs only (DEVELOPERS.md: about 250 lines at most).
CLI_MAX_LINES = 260
#: Steps written once in core; a domain module defining or building them again is a second copy.
CORE_ONLY = {
    "def dataset_root(": "pentad_core.data.dataset_root",
    "def write_csv(": "pentad_core.files.atomic_write_csv",
    "TrainingLog(": "PentadModule.log_training",
    "class Source": "pentad_core.data.RemoteFile",
    "class Archive": "pentad_core.data.RemoteFile",
    "MODEL_INFO": "ModelInfo on the model's registration",
    "LEARNED_MODELS": "ModelInfo.trainable",
    "DEFAULT_POLICY": "ModelInfo.defaults",
    "LOS_LOOP_ANCHORS": "nothing (dead code)",
    "load_from_checkpoint(": "pentad_core.checkpoint.load_module",
}


def source_dir(domain: str) -> Path:
    return ROOT / "packages" / domain / "src" / f"pentad_{domain}"


def modules_of(domain: str) -> dict[str, Path]:
    """Dotted module name -> file, for every module of the domain package."""
    base = source_dir(domain)
    found = {}
    for path in sorted(base.rglob("*.py")):
        parts = list(path.relative_to(base.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        found[".".join(parts)] = path
    return found


@pytest.mark.parametrize("domain", DOMAINS)
def test_every_domain_has_the_same_files(domain):
    base = source_dir(domain)
    for name in ("config.py", "pipeline.py", "predictor.py", "cli.py", "registry.py"):
        assert (base / name).is_file(), f"pentad_{domain} has no {name}"
    data = DATA_FOLDER.get(domain, "data")
    assert (base / data / "__init__.py").is_file(), f"pentad_{domain} has no {data}/ package"
    if domain != "rl":
        assert (base / "models" / "__init__.py").is_file(), f"pentad_{domain} has no models/ package"


@pytest.mark.parametrize("domain", DOMAINS)
def test_the_command_line_module_holds_verbs_only(domain):
    lines = (source_dir(domain) / "cli.py").read_text(encoding="utf-8").count("\n")
    assert lines <= CLI_MAX_LINES, f"pentad_{domain}/cli.py has {lines} lines; move workflow into pipeline.py"


@pytest.mark.parametrize("domain", DOMAINS)
def test_every_domain_offers_a_predictor_that_loads_a_run(domain):
    predictor = importlib.import_module(f"pentad_{domain}.predictor").Predictor
    assert issubclass(predictor, Predictor) and predictor is not Predictor
    assert predictor.from_trained_run.__func__ is not Predictor.from_trained_run.__func__
    assert predictor.predict is not Predictor.predict
    config_module = importlib.import_module(f"pentad_{domain}.config")
    assert predictor.config_class.__module__ == config_module.__name__


@pytest.mark.parametrize("domain", DOMAINS)
def test_registered_models_and_datasets_carry_typed_info(domain):
    registry = importlib.import_module(f"pentad_{domain}.registry")
    importlib.import_module(f"pentad_{domain}.cli")  # registers everything
    registries = {name: value for name, value in vars(registry).items() if isinstance(value, Registry)}
    models = [r for r in registries.values() if r.info_class is ModelInfo]
    assert models, f"pentad_{domain}.registry has no registry with ModelInfo"
    for models_registry in models:
        for name in models_registry.names():
            assert isinstance(models_registry.info(name), ModelInfo), name
            assert models_registry.describe(name), f"{domain} {name} has no description"
    if domain != "rl":
        datasets = registries.get("DATASETS")
        assert datasets is not None and datasets.info_class is DatasetInfo
        generated = [name for name in datasets.names() if datasets.info(name).generated]
        assert "synthetic" in generated, f"{domain}: the generated dataset is not registered as generated"


@pytest.mark.parametrize("domain", DOMAINS)
def test_no_factory_swallows_misspelled_options(domain):
    registry = importlib.import_module(f"pentad_{domain}.registry")
    importlib.import_module(f"pentad_{domain}.cli")
    open_ended = []
    for registry_name, value in vars(registry).items():
        if not isinstance(value, Registry) or registry_name == "ENVIRONMENTS":  # gymnasium.make checks its own
            continue
        for name in value.names():
            if accepted_options(value.get(name))[1]:
                open_ended.append(f"{registry_name}[{name}]")
    assert not open_ended, f"factories taking **kwargs (options cannot be checked): {open_ended}"


@pytest.mark.parametrize("domain", DOMAINS)
def test_no_domain_writes_a_step_that_core_writes_once(domain):
    copies = []
    for module, path in modules_of(domain).items():
        text = path.read_text(encoding="utf-8")
        copies += [f"{module}: {p!r} (use {instead})" for p, instead in CORE_ONLY.items() if p in text]
    assert not copies, "\n".join(copies)


def module_imports(module: str, path: Path, known: set[str]) -> set[str]:
    """The package's own modules that ``module`` imports, at import time or inside a function.

    A deferred import inside a function still ties the two modules together: a cycle through one
    is a cycle in the design (the issue's rl example ran through two of them).
    """
    tree = ast.parse(path.read_text(encoding="utf-8"))
    found: set[str] = set()
    is_package = path.name == "__init__.py"
    type_checking = {
        id(inner)
        for node in ast.walk(tree)
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test)
        for inner in ast.walk(node)
    }
    for statement in ast.walk(tree):
        if id(statement) in type_checking:
            continue
        if True:
            if isinstance(statement, ast.Import):
                names = [alias.name for alias in statement.names]
            elif isinstance(statement, ast.ImportFrom):
                if statement.level:
                    anchor = module.split(".") if is_package else module.split(".")[:-1]
                    anchor = anchor[: len(anchor) - statement.level + 1]
                    base = ".".join(anchor + ([statement.module] if statement.module else []))
                else:
                    base = statement.module or ""
                names = [base] + [f"{base}.{alias.name}" for alias in statement.names]
            else:
                continue
            found.update(name for name in names if name in known and name != module)
    return found


@pytest.mark.parametrize("domain", DOMAINS)
def test_no_import_cycles(domain):
    modules = modules_of(domain)
    known = set(modules)
    graph = {module: module_imports(module, path, known) for module, path in modules.items()}
    # A package's __init__ importing its own submodules is how registration happens, not a cycle.
    for module, targets in graph.items():
        graph[module] = {t for t in targets if not t.startswith(module + ".")}
    for module in graph:  # importing a submodule first runs its parents' __init__
        parents = module.split(".")
        graph[module] |= {".".join(parents[:i]) for i in range(2, len(parents))} - {module}
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> None:
        state[node] = 1
        stack.append(node)
        for target in sorted(graph[node]):
            if state.get(target) == 1:
                cycle = [*stack[stack.index(target) :], target]
                pytest.fail(f"import cycle in pentad_{domain}: {' -> '.join(cycle)}")
            if target not in state:
                visit(target)
        stack.pop()
        state[node] = 2

    for module in sorted(graph):
        if module not in state:
            visit(module)


@pytest.mark.parametrize("domain", DOMAINS)
def test_every_registered_download_carries_a_checksum_and_uses_https(domain):
    registry = importlib.import_module(f"pentad_{domain}.registry")
    importlib.import_module(f"pentad_{domain}.cli")
    problems = []
    for value in vars(registry).values():
        if not isinstance(value, Registry) or value.info_class is not DatasetInfo:
            continue
        for name in value.names():
            for remote in value.info(name).files:
                if not (remote.sha256 or remote.md5):
                    problems.append(f"{name}: {remote.filename} has no checksum")
                for url in (remote.url, *remote.mirrors):
                    if not url.startswith("https://"):
                        problems.append(f"{name}: {url} is not https")
    assert not problems, "\n".join(problems)
