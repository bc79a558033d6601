"""Every file recsys writes goes through pentad_core's atomic writers (no half-written file after a kill).

A static check of the package's source: the calls that write a file in place are refused, so a new
writer has to use ``pentad_core.files`` (``atomic_write_bytes/text/json/csv``, ``atomic_open``),
``pentad_core.checkpoint.atomic_save`` or ``pentad_core.plotting.save_figure``. Serialisers that
need a file (``np.save``, ``pyarrow.parquet.write_table``) write into an in-memory ``buffer``
handed to ``atomic_write_bytes``.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pentad_recsys

SOURCE = Path(pentad_recsys.__file__).parent
#: method or function names that write a file in place, whatever they are called on
IN_PLACE = {"write_text", "write_bytes", "savefig", "to_csv", "to_parquet", "savez", "savez_compressed",
            "savetxt", "dump", "copyfile", "copy", "copy2", "move"}  # fmt: skip
#: (owner, name) -> position of the file argument: these write a file unless it is an in-memory buffer
TO_BUFFER_ONLY = {("np", "save"): 0, ("numpy", "save"): 0, ("torch", "save"): 1, ("pq", "write_table"): 1}


def _name(node: ast.expr) -> str:
    return node.attr if isinstance(node, ast.Attribute) else node.id if isinstance(node, ast.Name) else ""


def in_place_writes(tree: ast.AST) -> list[str]:
    found = []
    for node in ast.walk(tree):
        if not isinstance(node, ast.Call):
            continue
        name = _name(node.func)
        owner = _name(node.func.value) if isinstance(node.func, ast.Attribute) else ""
        where = f"line {node.lineno}: {owner + '.' if owner else ''}{name}"
        if (name in IN_PLACE and owner not in ("json", "yaml")) or (name, owner) == ("rename", "os"):
            found.append(where)
        elif (owner, name) in TO_BUFFER_ONLY:
            position = TO_BUFFER_ONLY[owner, name]
            if len(node.args) <= position or _name(node.args[position]) not in ("buffer", "handle"):
                found.append(where)
        elif name == "open":
            modes = [arg for arg in node.args if isinstance(arg, ast.Constant) and isinstance(arg.value, str)]
            modes += [kw.value for kw in node.keywords if kw.arg == "mode" and isinstance(kw.value, ast.Constant)]
            if any(set(str(mode.value)) & set("wax+") for mode in modes):
                found.append(where)
    return found


def test_no_file_is_written_in_place():
    offending = {}
    for path in sorted(SOURCE.rglob("*.py")):
        found = in_place_writes(ast.parse(path.read_text(), str(path)))
        if found:
            offending[str(path.relative_to(SOURCE))] = found
    assert offending == {}


def test_the_check_finds_in_place_writes():
    code = """
path.write_text("x")
np.save(path, array)
np.save(buffer, array)
torch.save(state, path)
figure.savefig(path)
open(path, "w")
path.open(mode="a")
path.open()
json.dumps(x)
"""
    assert [line.split(":")[0] for line in in_place_writes(ast.parse(code))] == [
        "line 2", "line 3", "line 5", "line 6", "line 7", "line 8",
    ]  # fmt: skip
