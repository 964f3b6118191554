"""The layering of the tree, kept by parsing every import in cnnbench/ and plugins/ (those inside functions
included; those under ``if TYPE_CHECKING:`` excluded, as they never run): no import cycle between modules, no
module outside cnnbench/cli/ importing the command line, and no private name of another module, whether
imported (``from x import _name``) or reached through it (``x._name``)."""

from __future__ import annotations

import ast
import pathlib

import pytest

ROOT = pathlib.Path(__file__).resolve().parent.parent
SOURCES = (("cnnbench", ROOT / "cnnbench"), ("", ROOT / "plugins"))


def module_name(prefix: str, base: pathlib.Path, path: pathlib.Path) -> str:
    parts = list(path.relative_to(base).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(([prefix] if prefix else []) + parts)


def _type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def imports_of(tree: ast.AST, name: str, is_package: bool):
    """(imported module, imported names, line) for every import that runs, at any depth."""
    package = name if is_package else name.rpartition(".")[0]

    def visit(node):
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.If) and _type_checking(child):
                for other in child.orelse:
                    yield from visit_one(other)
                continue
            yield from visit_one(child)

    def visit_one(node):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield alias.name, [], node.lineno
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[:len(base) - (node.level - 1)]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            yield target, [a.name for a in node.names], node.lineno
        yield from visit(node)

    yield from visit(tree)


FRONT_DOOR = "cnnbench (its API functions)"


def prefix_of(name: str) -> str:
    return "cnnbench" if name.split(".")[0] == "cnnbench" else ""


def _in_function(tree: ast.AST, line: int) -> bool:
    return any(isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef))
               and node.lineno <= line <= (node.end_lineno or node.lineno) for node in ast.walk(tree))


def graph(sources=SOURCES) -> tuple[dict[str, set[str]], list[str], list[str]]:
    """The import graph between our modules, and the violations of the two other rules."""
    files = {}
    for prefix, base in sources:
        for path in sorted(base.rglob("*.py")):
            files[module_name(prefix, base, path)] = path
    edges: dict[str, set[str]] = {m: set() for m in files}
    cli_imports, private = [], []
    for name, path in files.items():
        tree = ast.parse(path.read_text(), str(path))
        for target, names, line in imports_of(tree, name, path.name == "__init__.py"):
            where = f"{path}:{line}"
            submodules = [f"{target}.{n}" for n in names if f"{target}.{n}" in files]
            # ``from package import submodule`` depends on the submodule (the package is its parent anyway)
            candidates = submodules + ([target] if len(submodules) < len(names) or not names else [])
            for module in candidates:
                if module in files and module != name:
                    # The package's front door (cnnbench.compare(), ...: a function importing cnnbench.api)
                    # is not what a module that takes ``hookimpl`` or ``__version__`` from the package
                    # depends on: it is a node of its own, above everything.
                    source = FRONT_DOOR if name == prefix_of(name) and _in_function(tree, line) else name
                    edges.setdefault(source, set()).add(module)
            in_cli = name == "cnnbench.cli" or name.startswith("cnnbench.cli.") or name == "cnnbench.__main__"
            if not in_cli and (target == "cnnbench.cli" or target.startswith("cnnbench.cli.")
                               or (target == "cnnbench" and "cli" in names)):
                cli_imports.append(f"{where}: {name} imports {target}")
            if target in files and target != name:
                for n in names:
                    if _private(n) and f"{target}.{n}" not in files:
                        private.append(f"{where}: from {target} import {n}")
        for module, attr, line in private_attributes(tree, files):
            if module != name:
                private.append(f"{path}:{line}: {module}.{attr}")
    return edges, cli_imports, private


def _private(name: str) -> bool:
    return name.startswith("_") and not name.startswith("__")


def private_attributes(tree: ast.AST, files: dict) -> list[tuple[str, str, int]]:
    """``module._name`` where ``module`` is one of ours, reached through an import (``import a.b``,
    ``import a.b as m``, ``from a import b``): a private name of another module all the same."""
    bound: dict[str, str] = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.asname and alias.name in files:
                    bound[alias.asname] = alias.name
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            for alias in node.names:
                if f"{node.module}.{alias.name}" in files:
                    bound[alias.asname or alias.name] = f"{node.module}.{alias.name}"

    def dotted(node) -> str | None:
        if isinstance(node, ast.Name):
            return bound.get(node.id, node.id)
        if isinstance(node, ast.Attribute):
            base = dotted(node.value)
            return f"{base}.{node.attr}" if base else None
        return None

    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute) and _private(node.attr):
            module = dotted(node.value)
            if module in files:
                found.append((module, node.attr, node.lineno))
    return found


def cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan), each a cycle or several."""
    index, low, stack, on_stack, found = {}, {}, [], set(), []

    def connect(v):
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(edges.get(v, ())):
            if w not in index:
                connect(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in sorted(edges):
        if v not in index:
            connect(v)
    return found


def test_no_import_cycles():
    edges, _, _ = graph()
    assert not cycles(edges), f"import cycles: {cycles(edges)}"


def test_no_core_module_imports_the_command_line():
    _, cli_imports, _ = graph()
    assert not cli_imports, "only cnnbench/cli/ may import cnnbench.cli:\n" + "\n".join(cli_imports)


def test_no_private_names_imported_across_modules():
    _, _, private = graph()
    assert not private, "private names imported from another module (make them public):\n" + "\n".join(private)


@pytest.mark.parametrize("files, broken", [
    ({"cnnbench/a.py": "def f():\n    from cnnbench import b\n", "cnnbench/b.py": "import cnnbench.a\n"}, "cycle"),
    ({"cnnbench/a.py": "def f():\n    from cnnbench.cli.grid import plan\n", "cnnbench/cli/__init__.py": "",
      "cnnbench/cli/grid.py": "plan = 1\n"}, "cli"),
    ({"cnnbench/a.py": "from cnnbench.b import _helper\n", "cnnbench/b.py": "_helper = 1\n"}, "private"),
    ({"cnnbench/a.py": "from cnnbench import b\n\nb._helper()\n", "cnnbench/b.py": "def _helper(): pass\n"},
     "private"),
    ({"cnnbench/a.py": "def f():\n    import cnnbench.b\n    return cnnbench.b._state\n",
      "cnnbench/b.py": "_state = 1\n"}, "private"),
])
def test_the_checks_catch_what_they_are_for(tmp_path, files, broken):
    for rel, text in files.items():
        path = tmp_path / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    edges, cli_imports, private = graph((("cnnbench", tmp_path / "cnnbench"),))
    assert bool(cycles(edges)) == (broken == "cycle")
    assert bool(cli_imports) == (broken == "cli")
    assert bool(private) == (broken == "private")
