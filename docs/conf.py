"""Sphinx configuration of the bpjax documentation site (``make docs``).

Sphinx with autodoc + napoleon (Google-style docstrings) and MyST-NB (MyST-parser's markdown
pages, and notebooks), the stack of JAX, optax and Flax; see ``docs/contributing.md``.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

DOCS = Path(__file__).resolve().parent
ROOT = DOCS.parent
sys.path.insert(0, str(ROOT / "src"))  # the worktree's bpjax, even without an install

import bpjax  # noqa: E402

project = "bpjax"
author = "the bpjax developers"
copyright = "the bpjax developers"
version = release = bpjax.__version__

extensions = [
    "sphinx.ext.autodoc",
    "sphinx.ext.napoleon",
    "sphinx.ext.mathjax",
    "sphinx.ext.viewcode",
    "myst_nb",  # MyST-parser's markdown, and Jupyter notebooks (docs/tutorials/*.ipynb)
]
source_suffix = {".md": "myst-nb", ".ipynb": "myst-nb", ".rst": "restructuredtext"}
root_doc = "index"
exclude_patterns = ["_build"]

myst_enable_extensions = ["dollarmath", "colon_fence"]
myst_heading_anchors = 3
# The notebooks are stored without outputs: the site runs them (in a Jupyter kernel of this
# environment) so that their tables and figures appear; an error in a cell fails the build.
nb_execution_mode = "force"
nb_execution_timeout = 300
nb_execution_raise_on_error = True
nb_execution_show_tb = True

autodoc_member_order = "bysource"
autodoc_typehints = "description"
autodoc_typehints_description_target = "documented"
autodoc_default_options = {"members": False}
napoleon_google_docstring = True
napoleon_numpy_docstring = False
napoleon_use_rtype = False

html_theme = "sphinx_book_theme"
html_title = f"bpjax {release}"
html_theme_options = {"show_toc_level": 2}


# --- the markdown tables of the module docstrings ------------------------------------------
# The modules write their paper <-> code symbol tables as markdown pipe tables, which read well
# in the source and in help(). RST has no pipe tables: turn each into a list-table here.

_SEPARATOR = re.compile(r"^\|\s*:?-{3,}:?\s*(\|\s*:?-{3,}:?\s*)*\|$")
_LIST_MARKER = re.compile(r"^(\(?[0-9A-Za-z#]+[.)]|[-*+])(\s|$)")  # "(2) ..." would be a list


def _cells(line: str) -> list[str]:
    """The cells of ``| a | b |``; a ``|`` inside ````code```` does not split."""
    cells, cell, code = [], [], False
    body = line.strip()[1:-1]
    i = 0
    while i < len(body):
        if body.startswith("``", i):
            code = not code
            cell.append("``")
            i += 2
            continue
        if body[i] == "|" and not code:
            cells.append("".join(cell).strip())
            cell = []
        else:
            cell.append(body[i])
        i += 1
    cells.append("".join(cell).strip())
    return [("\\" + c) if _LIST_MARKER.match(c) else c for c in cells]


def pipe_tables_to_rst(lines: list[str]) -> list[str]:
    """``lines`` with every markdown pipe table (header, ``| --- |`` row, body) as a list-table.

    A body row whose first cell is empty continues the row above it.
    """
    out, i = [], 0
    while i < len(lines):
        line = lines[i]
        stripped = line.strip()
        if (stripped.startswith("|") and stripped.endswith("|") and i + 1 < len(lines)
                and _SEPARATOR.match(lines[i + 1].strip())):
            indent = line[: len(line) - len(line.lstrip())]
            rows = [_cells(line)]
            i += 2
            while i < len(lines) and lines[i].strip().startswith("|"):
                cells = _cells(lines[i])
                if not cells[0] and len(rows) > 1:
                    rows[-1] = [f"{a} {b}".strip() for a, b in zip(rows[-1], cells)]
                else:
                    rows.append(cells)
                i += 1
            out += [f"{indent}.. list-table::", f"{indent}   :header-rows: 1", ""]
            for row in rows:
                for n, cell in enumerate(row):
                    out.append(f"{indent}   {'*' if n == 0 else ' '} - {cell}".rstrip())
            out.append("")
            continue
        out.append(line)
        i += 1
    return out


def _docstring_tables(app, what, name, obj, options, lines):
    lines[:] = pipe_tables_to_rst(lines)


# --- included reports: their HTML anchors as MyST targets ---------------------------------------
# experiments/results/REPORT.md links its sections with <a id="name"></a> anchors, which
# GitHub renders; Sphinx needs a target it knows, "(name)=".

_ANCHOR = re.compile(r'^<a id="([A-Za-z0-9_.-]+)"></a>\s*$', re.M)


def _anchors_as_targets(app, relative_path, parent_docname, content):
    content[0] = _ANCHOR.sub(r"(\1)=", content[0])


# --- the benchmark results: one page per benchmarks/results/*.md ----------------------------


def _benchmark_pages(app):
    """Writes ``docs/_generated/benchmarks/<name>.md``, each including one results file."""
    out = DOCS / "_generated" / "benchmarks"
    out.mkdir(parents=True, exist_ok=True)
    wanted = set()
    for md in sorted((ROOT / "benchmarks" / "results").glob("*.md")):
        if md.stem.endswith("-quick"):  # smoke runs, not committed
            continue
        page = out / md.name
        wanted.add(page)
        text = f"```{{include}} ../../../benchmarks/results/{md.name}\n:relative-images:\n```\n"
        if not page.exists() or page.read_text() != text:
            page.write_text(text)
    for stale in set(out.glob("*.md")) - wanted:
        stale.unlink()


def setup(app):
    app.connect("config-inited", lambda app, config: _benchmark_pages(app))
    app.connect("include-read", _anchors_as_targets)
    app.connect("autodoc-process-docstring", _docstring_tables, priority=400)
