"""The package's module-level imports form no cycle; the environment leaf imports nothing of pentad_rl."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

import pentad_rl

PACKAGE = Path(pentad_rl.__file__).parent


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def top_level_imports(path: Path) -> set[str]:
    """``pentad_rl`` modules imported at module level (not inside functions) by the file at ``path``."""
    found = set()
    for node in ast.parse(path.read_text()).body:
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            found.add(node.module)
            found |= {f"{node.module}.{alias.name}" for alias in node.names}
    modules = {module_name(p) for p in PACKAGE.rglob("*.py")}
    return {name for name in found if name in modules and name != "pentad_rl"}


GRAPH = {module_name(path): top_level_imports(path) for path in PACKAGE.rglob("*.py")}


def test_module_level_imports_have_no_cycle():
    state: dict[str, str] = {}

    def visit(module: str, trail: list[str]) -> None:
        if state.get(module) == "done":
            return
        assert state.get(module) != "open", " -> ".join([*trail, module])
        state[module] = "open"
        for imported in GRAPH.get(module, ()):
            visit(imported, [*trail, module])
        state[module] = "done"

    for module in GRAPH:
        visit(module, [])


def test_the_environment_leaf_imports_nothing_of_pentad_rl_and_a_game_only_the_leaf():
    assert GRAPH["pentad_rl.envs.registry"] == set()
    assert GRAPH["pentad_rl.envs.connect_four"] == {"pentad_rl.envs.registry"}


@pytest.mark.parametrize("module", ["pentad_rl.envs.connect_four", "pentad_rl.envs.registry", "pentad_rl.cli"])
def test_each_module_imports_alone(module):
    result = subprocess.run([sys.executable, "-c", f"import {module}"], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
