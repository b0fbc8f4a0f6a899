"""The documentation site's sources (``make docs`` builds them): every public name and every
module has its place, the docstrings' pipe tables convert to well-formed RST tables, and the
version is written in one place."""

import ast
import importlib.util
import re
import tomllib
from pathlib import Path

import pytest

import bpjax

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"
SRC = ROOT / "src" / "bpjax"


def _conf():
    """docs/conf.py as a module (it imports only bpjax and the standard library)."""
    spec = importlib.util.spec_from_file_location("bpjax_docs_conf", DOCS / "conf.py")
    conf = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(conf)
    return conf


def test_every_public_name_is_in_the_api_reference():
    text = (DOCS / "api.md").read_text()
    documented = re.findall(r"^\.\. auto(?:function|class|exception|data):: bpjax\.(\w+)", text,
                            re.M)
    assert sorted(set(documented)) == sorted(documented), "a name is documented twice"
    missing = sorted(set(bpjax.__all__) - set(documented))
    assert not missing, f"add these names of bpjax.__all__ to docs/api.md: {missing}"
    extra = sorted(set(documented) - set(bpjax.__all__))
    assert not extra, f"docs/api.md documents names that bpjax.__all__ lacks: {extra}"


def test_every_module_is_on_the_paper_page():
    text = (DOCS / "paper.md").read_text()
    listed = set(re.findall(r"^\.\. automodule:: bpjax\.(\w+)", text, re.M))
    modules = {p.stem for p in SRC.glob("*.py") if p.stem != "__init__"}
    assert not modules - listed, f"add these modules to docs/paper.md: {sorted(modules - listed)}"
    assert not listed - modules, f"docs/paper.md lists modules that do not exist: {listed - modules}"
    # bpjax.forward is a module and a function: the modules stay out of the index
    assert text.count(":no-index:") == len(re.findall(r"^\.\. automodule::", text, re.M))


def _module_docstrings():
    for path in sorted(SRC.glob("*.py")):
        doc = ast.get_docstring(ast.parse(path.read_text()), clean=True)
        if doc:
            yield path.stem, doc.splitlines()


@pytest.mark.parametrize("name, lines", list(_module_docstrings()), ids=lambda v: str(v)[:20])
def test_docstring_pipe_tables_become_rectangular_list_tables(name, lines):
    rst = _conf().pipe_tables_to_rst(lines)
    pipes = [line for line in rst if line.strip().startswith("|") and line.strip().endswith("|")]
    assert not pipes, f"{name}: a pipe table was left as it was: {pipes[0]!r}"
    n_tables = sum(".. list-table::" in line for line in rst)
    assert n_tables == sum(bool(re.match(r"\s*\| *-{3,}", line)) for line in lines)
    tables = []  # for each table, the number of cells of each row
    for line in rst:
        body = line.strip()
        if body == ".. list-table::":
            tables.append([])
        elif body.startswith("* - "):  # "   * - a" starts a row, "     - b" adds a cell
            tables[-1].append(1)
        elif body.startswith("- ") and tables and tables[-1]:
            tables[-1][-1] += 1
    for cells in tables:
        assert len(set(cells)) == 1 and cells[0] >= 2, f"{name}: rows of {cells} cells"


def test_pipe_table_conversion_worked_by_hand():
    lines = ["Intro.", "", "| paper | code |", "| --- | --- |",
             "| (2) ``a | b`` | ``x`` |", "| | more |", "| loss (1) | :func:`f` |", "", "After."]
    assert _conf().pipe_tables_to_rst(lines) == [
        "Intro.", "",
        ".. list-table::", "   :header-rows: 1", "",
        "   * - paper", "     - code",
        "   * - \\(2) ``a | b``", "     - ``x`` more",
        "   * - loss (1)", "     - :func:`f`",
        "", "", "After."]


def test_the_version_is_written_once():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())
    assert "version" not in project["project"] and "version" in project["project"]["dynamic"]
    assert project["tool"]["setuptools"]["dynamic"]["version"] == {"attr": "bpjax.__version__"}
    assert re.fullmatch(r"\d+\.\d+\.\d+([a-z]+\d+)?", bpjax.__version__)
    assert "py.typed" in project["tool"]["setuptools"]["package-data"]["bpjax"]
    assert (SRC / "py.typed").is_file()


def test_tutorials_are_found_by_the_glob():
    index = (DOCS / "index.md").read_text()
    assert "tutorials/*" in index
    for page in ("quickstart", "training", "dags_and_paths"):
        assert (DOCS / "tutorials" / f"{page}.md").is_file()
