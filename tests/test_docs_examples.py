"""The Python examples in the docs run as written, so they cannot go stale.

A fenced ``python`` block whose first line is ``# runs as written`` is executed in a fresh
interpreter, in an empty folder (its runs land there), with no ``$PENTAD_DATA``: such examples use
the generated datasets. Every app page has one, under its "Python API" heading.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys

import pytest
from app_harness import ROOT

MARKER = "# runs as written"
PAGES = sorted((ROOT / "docs").glob("*.md"))
APP_PAGES = [ROOT / "docs" / f"{app}.md" for app in ("vision", "medseg", "recsys", "traffic", "rl")]


def runnable_blocks(page) -> list[str]:
    blocks = re.findall(r"```python\n(.*?)```", page.read_text(encoding="utf-8"), flags=re.S)
    return [block for block in blocks if block.startswith(MARKER)]


EXAMPLES = [(page.stem, index, block) for page in PAGES for index, block in enumerate(runnable_blocks(page))]


@pytest.mark.parametrize("page", APP_PAGES, ids=lambda page: page.stem)
def test_every_app_page_has_a_runnable_python_example(page):
    text = page.read_text(encoding="utf-8")
    api = text.index("## Python API")
    assert runnable_blocks(page), f"{page.name} has no python block starting with {MARKER!r}"
    first = text.index(MARKER)
    assert first > api, f"{page.name}: the runnable example belongs under '## Python API'"


@pytest.mark.slow
@pytest.mark.parametrize(("page", "index", "code"), EXAMPLES, ids=[f"{p}-{i}" for p, i, _ in EXAMPLES])
def test_docs_example_runs(page, index, code, tmp_path):
    environment = {key: value for key, value in os.environ.items() if not key.startswith("PENTAD_")}
    environment["MPLBACKEND"] = "Agg"
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=tmp_path, env=environment, capture_output=True, text=True, timeout=600
    )
    assert result.returncode == 0, f"docs/{page}.md example {index}:\n{result.stderr[-3000:]}"
