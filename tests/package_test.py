"""The package's own rule: a module of ``src/bpjax`` uses only the names that another module
makes public (no ``_x`` of another module), so that each idea's module can change its insides
without breaking the others (issue 15: "every module imports only names that are public within
the package")."""

import ast
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src" / "bpjax"
MODULES = {p.stem for p in SRC.glob("*.py")}


def _private(name: str) -> bool:
    return name.startswith("_") and not (name.startswith("__") and name.endswith("__"))


def private_uses(source: str) -> list[str]:
    """Where ``source`` (a module of bpjax) reaches another bpjax module's private names:
    ``from bpjax.m import _x``, ``from . import _x``, or ``m._x`` / ``bpjax.m._x`` for a module
    ``m`` of bpjax however it was imported (``from bpjax import m as _m`` included)."""
    tree = ast.parse(source)
    modules, found = {"bpjax"}, []  # local names bound to bpjax or one of its modules
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and (node.level or (node.module or "").split(".")[0]
                                                 == "bpjax"):
            for alias in node.names:
                if (node.module in (None, "bpjax")) and alias.name in MODULES:
                    modules.add(alias.asname or alias.name)  # a module, not a name
                elif _private(alias.name):
                    where = "." * node.level + (node.module or "")
                    found.append(f"line {node.lineno}: from {where} import {alias.name}")
        elif isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.split(".")[0] == "bpjax":
                    modules.add(alias.asname or alias.name.split(".")[0])
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute) and _private(node.attr):
            base = node.value
            if isinstance(base, ast.Name) and base.id in modules:
                found.append(f"line {node.lineno}: {base.id}.{node.attr}")
            elif (isinstance(base, ast.Attribute) and isinstance(base.value, ast.Name)
                  and base.value.id in modules and base.attr in MODULES):
                found.append(f"line {node.lineno}: {base.value.id}.{base.attr}.{node.attr}")
    return found


@pytest.mark.parametrize("path", sorted(SRC.glob("*.py")), ids=lambda p: p.name)
def test_no_module_uses_another_modules_private_names(path):
    found = private_uses(path.read_text())
    assert not found, (f"{path.name} uses private names of other bpjax modules: {found}; make "
                       f"the name public in the module where its idea lives")


@pytest.mark.parametrize("source, expected", [
    ("from bpjax.network import Network, _is_int", ["line 1: from bpjax.network import _is_int"]),
    ("from .loop import _select", ["line 1: from .loop import _select"]),
    ("from bpjax import activations as _a\n_a._REGISTRY", ["line 2: _a._REGISTRY"]),
    ("import bpjax.training\nbpjax.training._LOOP_STATIC",
     ["line 2: bpjax.training._LOOP_STATIC"]),
    ("from bpjax import loop\nloop._Progress(1)", ["line 2: loop._Progress"]),
    # allowed: public names, dunders, a module's own private names, other packages' names
    ("from bpjax.network import Network, is_int\nx = Network.__name__", []),
    ("def _own():\n    pass\n_own()", []),
    ("import jax\njax._src", []),
    ("from bpjax import activations as _a\n_a.get_activation('tanh')", []),
])
def test_the_check_finds_each_way_of_reaching_a_private_name(source, expected):
    assert private_uses(source) == expected
