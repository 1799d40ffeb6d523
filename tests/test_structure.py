"""The package's structure: modules meet at public names only, their imports form no cycle, and importing the
package loads no heavy library that only some functions need.

The first two read the source with :mod:`ast`, so they see every use, lazy imports inside functions included; each
checker is also run on a small fake tree holding one violation, so a test that passes is one that could fail. The
third imports the package in a fresh process and lists what came with it.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = "minivae"

#: Underscore names that are public API: a named tuple's own methods and fields.
NAMEDTUPLE_API = frozenset({"_replace", "_fields", "_asdict", "_make", "_field_defaults"})


def _private(name: str) -> bool:
    """A name another module must not use: one leading underscore, not a dunder, not a named tuple's API."""
    return name.startswith("_") and not (name.startswith("__") and name.endswith("__")) \
        and name not in NAMEDTUPLE_API


def private_uses(files) -> list[str]:
    """Every use in ``files`` (paths of Python sources) of another module's underscore name, as ``path:line: what``.

    Counted: an attribute ``obj._name`` read through anything but ``self`` or ``cls`` (a module, another object),
    and ``from module import _name``. A module's own underscore names, used bare, are its business.
    """
    found = []
    for path in files:
        for node in ast.walk(ast.parse(Path(path).read_text(encoding="utf-8"), filename=str(path))):
            if isinstance(node, ast.Attribute) and _private(node.attr) and not (
                    isinstance(node.value, ast.Name) and node.value.id in ("self", "cls")):
                found.append(f"{path}:{node.lineno}: {ast.unparse(node)}")
            elif isinstance(node, ast.ImportFrom):
                found.extend(f"{path}:{node.lineno}: from {'.' * node.level}{node.module or ''} import {alias.name}"
                             for alias in node.names if _private(alias.name))
    return found


def _module_names(package_dir: Path) -> dict[str, Path]:
    """Every module of the package in ``package_dir`` by its dotted name (a package by its own name)."""
    modules = {}
    for path in sorted(package_dir.rglob("*.py")):
        parts = list(path.relative_to(package_dir.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        modules[".".join(parts)] = path
    return modules


def import_graph(package_dir: Path) -> dict[str, set[str]]:
    """Which of the package's modules each of its modules imports, anywhere in its source (functions too).

    ``from . import x`` and ``from .a import x`` lead to the submodule ``x`` when there is one, else to the module
    they name; an import of a package leads to its ``__init__``.
    """
    modules = _module_names(package_dir)
    graph = {name: set() for name in modules}
    for name, path in modules.items():
        here = name if path.name == "__init__.py" else name.rpartition(".")[0]  # the package it lives in
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), filename=str(path))):
            if isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    package = here.split(".")
                    package = package[:len(package) - (node.level - 1)]
                    base = ".".join(package + ([node.module] if node.module else []))
                targets = [f"{base}.{alias.name}" if f"{base}.{alias.name}" in modules else base
                           for alias in node.names]
            else:
                continue
            graph[name].update(target for target in targets if target in modules and target != name)
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One cycle of ``graph`` as the list of its modules, first repeated at the end, or None."""
    state = dict.fromkeys(graph, 0)  # 0 unseen, 1 on the current path, 2 done
    path = []

    def visit(node):
        state[node] = 1
        path.append(node)
        for target in sorted(graph[node]):
            if state[target] == 1:
                return path[path.index(target):] + [target]
            if state[target] == 0:
                cycle = visit(target)
                if cycle:
                    return cycle
        state[node] = 2
        path.pop()
        return None

    for start in sorted(graph):
        if state[start] == 0:
            cycle = visit(start)
            if cycle:
                return cycle
    return None


# ----------------------------------------------------------------------------- the package


def test_no_module_of_the_package_or_the_benchmarks_uses_another_modules_private_names():
    files = sorted((ROOT / PACKAGE).rglob("*.py")) + sorted((ROOT / "benchmarks").glob("*.py"))
    assert len(files) > 30  # the walk found the sources
    assert private_uses(files) == []


def test_the_packages_imports_form_no_cycle():
    graph = import_graph(ROOT / PACKAGE)
    assert graph[f"{PACKAGE}.serialize"] >= {f"{PACKAGE}.train", f"{PACKAGE}.model"}  # the walk reads imports
    assert f"{PACKAGE}.scoring" in graph[f"{PACKAGE}.model"]  # ... lazy ones too (VAE.log_likelihood)
    assert find_cycle(graph) is None


#: What the package and the command line leave unimported until a function needs it: each costs from a tenth of
#: ``import minivae`` (urllib.request, for a download) to several times all of it, paid by every command and every
#: worker process (scipy.special alone was a third of it).
HEAVY = ("scipy", "sklearn", "matplotlib", "torch", "cupy", "urllib.request")

LOADED = """
import sys
import minivae, minivae.cli
try:
    minivae.cli.main(["--help"])
except SystemExit:
    pass
print("loaded:", *sorted(set(sys.modules) & set(sys.argv[1:])))  # a package is there when any part of it is
"""


def test_importing_the_package_and_its_command_line_loads_no_heavy_library():
    done = subprocess.run([sys.executable, "-c", LOADED, *HEAVY], cwd=ROOT, capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0, done.stderr
    assert "usage: minivae" in done.stdout, done.stdout  # the help was printed: the parser was built
    assert done.stdout.splitlines()[-1] == "loaded:", f"imported with minivae: {done.stdout.splitlines()[-1]}"


def test_the_ring_density_imports_scipy_where_it_is_used():
    code = ("import sys, numpy, minivae; minivae.ring_log_density(numpy.array([[1.0, 0.0]]));"
            "print('scipy.special' in sys.modules)")
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0 and done.stdout.split() == ["True"], done.stdout + done.stderr


# ----------------------------------------------------------------------------- the checkers can fail


def _tree(tmp_path, files: dict) -> Path:
    for name, text in files.items():
        path = tmp_path / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return tmp_path


@pytest.mark.parametrize("source, expected", [
    ("def f(model):\n    return model._weights('encoder')\n", "model._weights"),
    ("from . import scoring\nrows = scoring._Rows\n", "scoring._Rows"),
    ("def f(trainer):\n    trainer.engine._step()\n", "trainer.engine._step"),
    ("from .checkpoint import _pid_alive\n", "import _pid_alive"),
    ("from .checkpoint import load_checkpoint, _pid_alive as alive\n", "import _pid_alive"),
])
def test_the_private_name_check_finds_each_kind_of_use(tmp_path, source, expected):
    tree = _tree(tmp_path, {"pkg/__init__.py": "", "pkg/user.py": source})
    found = private_uses([tree / "pkg/user.py"])
    assert len(found) == 1 and expected in found[0] and found[0].startswith(str(tree / "pkg/user.py")), found


def test_the_private_name_check_allows_own_names_dunders_and_named_tuple_api(tmp_path):
    source = ("class A:\n    def f(self, other):\n        self._x = 1\n        return type(self).__name__\n"
              "    @classmethod\n    def g(cls):\n        return cls._y\n"
              "def h(cache):\n    return cache._replace(a=1)._asdict(), cache._fields, _helper(), obj.__dict__\n"
              "def _helper():\n    return 0\n")
    tree = _tree(tmp_path, {"pkg/ok.py": source})
    assert private_uses([tree / "pkg/ok.py"]) == []


@pytest.mark.parametrize("files, cycle", [
    ({"a.py": "from .b import f\n", "b.py": "def g():\n    from .a import h\n"}, ["a", "b", "a"]),  # a lazy import
    ({"a.py": "from . import b\n", "b.py": "from .c import x\n", "c.py": "import pkg.a\n"}, ["a", "b", "c", "a"]),
    ({"a.py": "from .sub import d\n", "sub/__init__.py": "", "sub/d.py": "from .. import a\n"},
     ["a", "sub.d", "a"]),
])
def test_the_cycle_check_finds_a_cycle_through_any_kind_of_import(tmp_path, files, cycle):
    tree = _tree(tmp_path, {"pkg/__init__.py": "", **{f"pkg/{name}": text for name, text in files.items()}})
    assert find_cycle(import_graph(tree / "pkg")) == [f"pkg.{name}" for name in cycle]


def test_the_cycle_check_passes_a_tree_whose_imports_run_one_way(tmp_path):
    tree = _tree(tmp_path, {"pkg/__init__.py": "from .a import f\n", "pkg/a.py": "from .b import g\nimport os\n",
                            "pkg/b.py": "def g():\n    from . import c\n", "pkg/c.py": "import numpy\n"})
    graph = import_graph(tree / "pkg")
    assert graph == {"pkg": {"pkg.a"}, "pkg.a": {"pkg.b"}, "pkg.b": {"pkg.c"}, "pkg.c": set()}
    assert find_cycle(graph) is None
