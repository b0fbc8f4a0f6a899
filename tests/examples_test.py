"""Every ```python block of README.md and of docs/**/*.md runs, as written, on one device.

The blocks of one file run in order in one shared namespace (a later block may use the names of
an earlier one), in a fresh temporary working directory (examples write files such as
``model.npz``), with ``jax_enable_x64`` off as a user has it (``conftest`` turns it on for the
other tests). A block fenced as ```python no-run is skipped: keep those for what cannot run on a
2-core CPU box (multi-host commands). A divergence warning from ``fit``/``sweep`` is an error
here: an example that diverges does not show what it says.

Pages added to ``docs/`` later are picked up by the glob, nothing to register.

Notebooks (``docs/**/*.ipynb``) run the same way: their code cells in order in one namespace,
in this process. They are read as the JSON they are (nbformat 4), not run through a Jupyter
kernel (nbclient + ipykernel): no kernel process to start per notebook and per xdist worker
(seconds each), no test dependency beyond the library's, tracebacks that name the notebook and
its cell, and the same rules as the pages. What a kernel would add is checked here instead:
no IPython syntax (``%magic``, ``!shell``) in a cell but ``%matplotlib inline`` (a no-op
here, where figures are not shown), and a cell that ends in an expression
is displayed as Jupyter would, through its ``_repr_html_`` when it has one. Notebooks are
stored without outputs (``make docs`` executes them for the site).
"""

from __future__ import annotations

import ast
import json
import re
import warnings
from pathlib import Path
from typing import NamedTuple

import jax
import pytest

import bpjax as bp

ROOT = Path(__file__).resolve().parent.parent
FENCE = re.compile(r"^(?P<indent> {0,3})(?P<fence>`{3,}|~{3,})\s*(?P<info>[^`]*)$")


class Block(NamedTuple):
    """One fenced code block: its first line's number in the file (1-based) and its code."""

    line: int
    code: str
    info: str


def fenced_blocks(text: str) -> list[Block]:
    """The fenced code blocks of a markdown text, with their info strings (CommonMark fences)."""
    blocks, lines, i = [], text.splitlines(), 0
    while i < len(lines):
        m = FENCE.match(lines[i])
        if not m:
            i += 1
            continue
        fence, indent, info = m["fence"], len(m["indent"]), m["info"].strip()
        body, i = [], i + 1
        start = i + 1
        while i < len(lines):
            close = FENCE.match(lines[i])
            if close and close["fence"][0] == fence[0] and len(close["fence"]) >= len(fence) \
                    and not close["info"].strip():
                break
            line = lines[i]
            body.append(line[min(indent, len(line) - len(line.lstrip(" "))):])
            i += 1
        blocks.append(Block(start, "\n".join(body) + "\n", info))
        i += 1
    return blocks


def python_blocks(text: str) -> list[Block]:
    """The blocks to run: info string ``python`` (or ``py``), not marked ``no-run``."""
    out = []
    for b in fenced_blocks(text):
        words = b.info.split()
        if words and words[0] in ("python", "py") and "no-run" not in words[1:]:
            out.append(b)
    return out


def pages() -> list[Path]:
    """README.md and the pages under docs/, not the copies that ``make docs`` leaves in _build."""
    return [ROOT / "README.md", *sorted(p for p in (ROOT / "docs").glob("**/*.md")
                                        if "_build" not in p.relative_to(ROOT).parts)]


def run_page(path: Path, namespace: dict | None = None) -> dict:
    """Runs a page's python blocks in order in one namespace; tracebacks carry the page's lines."""
    namespace = {"__name__": "__main__"} if namespace is None else namespace
    for block in python_blocks(path.read_text(encoding="utf-8")):
        # Pad with blank lines so that a traceback names the line of the markdown file.
        code = compile("\n" * (block.line - 1) + block.code, str(path), "exec")
        exec(code, namespace)  # noqa: S102 - the documentation's own examples
    return namespace


@pytest.mark.parametrize("path", pages(), ids=lambda p: str(p.relative_to(ROOT)))
def test_examples_run_as_written(path, tmp_path, monkeypatch):
    assert python_blocks(path.read_text(encoding="utf-8")) or path.name != "README.md"
    monkeypatch.chdir(tmp_path)
    with jax.enable_x64(False), warnings.catch_warnings():
        warnings.simplefilter("error", bp.DivergenceWarning)
        run_page(path)


# --- the runner itself --------------------------------------------------------------------------

PAGE = """\
text
```python
a = 1
```
   ```python
   b = a + 1
   ```
```python no-run
raise SystemExit("must not run")
```
```bash
exit 1
```
````markdown
```python
inside = "a block quoted in a block: not run"
```
````
~~~py
c = b * 10
~~~
"""


def test_the_runner_finds_blocks_in_order_and_skips_no_run(tmp_path):
    blocks = python_blocks(PAGE)
    assert [b.code for b in blocks] == ["a = 1\n", "b = a + 1\n", "c = b * 10\n"]
    assert [b.line for b in blocks] == [3, 6, 20]
    page = tmp_path / "page.md"
    page.write_text(PAGE)
    assert run_page(page)["c"] == 20


def test_a_failing_block_names_the_page_and_its_line(tmp_path):
    page = tmp_path / "page.md"
    page.write_text("# title\n\n```python\nx = 1\ny = undefined_name\n```\n")
    with pytest.raises(NameError) as info:
        run_page(page)
    frame = info.traceback[-1]
    assert Path(frame.path) == page and frame.lineno + 1 == 5


# --- notebooks ----------------------------------------------------------------------------------

def notebooks() -> list[Path]:
    """The notebooks under docs/, not the executed copies that ``make docs`` leaves in _build."""
    return sorted(p for p in (ROOT / "docs").glob("**/*.ipynb")
                  if "_build" not in p.relative_to(ROOT).parts)


def notebook_cells(path: Path) -> list[Block]:
    """The code cells of a notebook, checked: nbformat 4, stored without outputs, no IPython
    syntax. ``Block.line`` is the cell's index."""
    nb = json.loads(path.read_text(encoding="utf-8"))
    assert nb.get("nbformat") == 4, f"{path.name}: nbformat {nb.get('nbformat')}, expected 4"
    blocks = []
    for i, cell in enumerate(nb["cells"]):
        assert cell["cell_type"] in ("code", "markdown", "raw"), (path.name, i)
        if cell["cell_type"] != "code":
            continue
        assert cell["outputs"] == [] and cell["execution_count"] is None, \
            f"{path.name}, cell {i}: store notebooks without outputs"
        # `%matplotlib inline` makes Jupyter show figures; headless here (Agg), a no-op
        lines = ["" if line.strip() == "%matplotlib inline" else line
                 for line in "".join(cell["source"]).splitlines()]
        magic = [line for line in lines if line.lstrip().startswith(("%", "!"))]
        assert not magic, f"{path.name}, cell {i}: IPython syntax {magic[0]!r}"
        blocks.append(Block(i, "\n".join(lines) + "\n", "python"))
    return blocks


def run_notebook(path: Path) -> dict:
    """Runs a notebook's code cells in order in one namespace; a cell's last expression is
    displayed (its ``_repr_html_`` called) as Jupyter would."""
    namespace = {"__name__": "__main__"}
    for block in notebook_cells(path):
        where = f"{path}, cell {block.line}"
        tree = ast.parse(block.code, where)
        last = tree.body.pop() if tree.body and isinstance(tree.body[-1], ast.Expr) else None
        exec(compile(tree, where, "exec"), namespace)  # noqa: S102 - the docs' own notebook
        if last is not None:
            shown = eval(compile(ast.Expression(last.value), where, "eval"), namespace)  # noqa: S307
            if hasattr(shown, "_repr_html_"):  # None: Jupyter falls back to another form
                assert isinstance(shown._repr_html_(), str | None), where
    return namespace


@pytest.mark.parametrize("path", notebooks(), ids=lambda p: str(p.relative_to(ROOT)))
def test_notebooks_run_as_written(path, tmp_path, monkeypatch):
    pytest.importorskip("matplotlib").use("Agg")
    monkeypatch.chdir(tmp_path)
    x64 = jax.config.jax_enable_x64  # a notebook may turn float64 on, as a user would
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", bp.DivergenceWarning)
            run_notebook(path)
    finally:
        jax.config.update("jax_enable_x64", x64)


def test_there_is_a_notebook_and_the_runner_checks_it(tmp_path):
    assert notebooks(), "docs/tutorials should hold the tutorial notebook"
    cell = {"cell_type": "code", "metadata": {}, "execution_count": None, "outputs": []}
    bad = {"nbformat": 4, "nbformat_minor": 5, "metadata": {},
           "cells": [dict(cell, source=["x = 1\n", "%timeit x"])]}
    page = tmp_path / "bad.ipynb"
    page.write_text(json.dumps(bad))
    with pytest.raises(AssertionError, match="IPython syntax '%timeit x'"):
        run_notebook(page)
    good = dict(bad, cells=[dict(cell, source=["%matplotlib inline\n", "x = 2"]),
                            dict(cell, source=["y = x * 3\n", "y"])])
    page.write_text(json.dumps(good))
    assert run_notebook(page)["y"] == 6
