"""The shape the code keeps: small modules and functions, an explicit public surface per
module, no import cycles between modules, and a library that never reaches into its CLI."""

from __future__ import annotations

import ast
import importlib
from pathlib import Path

import pytest

import weightspace as ws

SRC = Path(ws.__file__).parent
MODULES = sorted(SRC.rglob("*.py"))
MAX_MODULE_LINES = 400
MAX_FUNCTION_LINES = 80  # code lines: the docstring is not counted
MAX_PARAMETERS = 12  # *args and **kwargs count one each


def module_name(path: Path) -> str:
    parts = path.relative_to(SRC.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def functions(tree: ast.AST):
    return [n for n in ast.walk(tree) if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef))]


def code_lines(fn: ast.FunctionDef) -> int:
    doc = ast.get_docstring(fn, clean=False)
    body = fn.body[1:] if doc is not None else fn.body
    if not body:
        return 0
    return body[-1].end_lineno - fn.lineno + 1 - (len(doc.splitlines()) if doc else 0)


def parameters(fn: ast.FunctionDef) -> int:
    a = fn.args
    names = [p.arg for p in (*a.posonlyargs, *a.args, *a.kwonlyargs)]
    return len([n for n in names if n not in ("self", "cls")]) + bool(a.vararg) + bool(a.kwarg)


def test_modules_and_functions_stay_small():
    big, long, wide = [], [], []
    for path in MODULES:
        text = path.read_text(encoding="utf-8")
        where = str(path.relative_to(SRC))
        if len(text.splitlines()) > MAX_MODULE_LINES:
            big.append(where)
        for fn in functions(ast.parse(text)):
            if code_lines(fn) > MAX_FUNCTION_LINES:
                long.append(f"{where}:{fn.name}")
            if parameters(fn) > MAX_PARAMETERS:
                wide.append(f"{where}:{fn.name}")
    assert (big, long, wide) == ([], [], [])


@pytest.mark.parametrize(
    "path", [p for p in MODULES if not p.name.startswith("_")], ids=lambda p: module_name(p)
)
def test_every_public_module_declares_its_public_names(path):
    module = importlib.import_module(module_name(path))
    names = getattr(module, "__all__", None)
    assert isinstance(names, list) and names, f"{module.__name__} has no __all__"
    assert [n for n in names if not hasattr(module, n)] == []


def relative_imports(path: Path) -> set[str]:
    """The package modules ``path`` imports at module level (not inside functions)."""
    here = module_name(path)
    package = here if path.name == "__init__.py" else here.rpartition(".")[0]
    out = set()
    for node in ast.parse(path.read_text(encoding="utf-8")).body:
        if isinstance(node, ast.ImportFrom) and node.level:
            base = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
            target = f"{base}.{node.module}" if node.module else base
            for alias in node.names:  # "from . import x" imports the module x
                sub = f"{target}.{alias.name}"
                out.add(sub if (SRC.parent / (sub.replace(".", "/") + ".py")).exists() else target)
    return out - {here}


def test_no_import_cycles_between_modules():
    graph = {module_name(p): relative_imports(p) for p in MODULES}
    packages = {m for m, p in zip(graph, MODULES) if p.name == "__init__.py"}
    state: dict[str, int] = {}

    def visit(m: str, path: tuple[str, ...]) -> None:
        if m in packages and path:  # importing a package runs its __init__: not a cycle edge
            return
        assert state.get(m) != 1, "import cycle: " + " -> ".join((*path, m))
        if state.get(m) == 2:
            return
        state[m] = 1
        for dep in sorted(graph.get(m, ())):
            visit(dep, (*path, m))
        state[m] = 2

    for m in sorted(graph):
        if m not in packages:
            visit(m, ())
