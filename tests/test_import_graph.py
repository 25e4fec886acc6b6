"""No import circles inside a package: two or more of its modules importing each other, counting
function-local and ``TYPE_CHECKING`` imports (a circle is a seam in the wrong place, whether or not
Python happens to resolve it at run time).

The graph is read from the source with ``ast``: nothing is imported, so a package's heavy
dependencies need not load."""

from __future__ import annotations

import ast
import importlib.util
from pathlib import Path

import pytest


def _modules(package: str) -> dict[str, Path]:
    spec = importlib.util.find_spec(package)
    assert spec is not None and spec.submodule_search_locations, f"{package} is not a package"
    modules = {}
    for root in spec.submodule_search_locations:
        for path in Path(root).rglob("*.py"):
            parts = path.relative_to(root).with_suffix("").parts
            if parts[-1] == "__init__":
                parts = parts[:-1]
            modules[".".join((package, *parts))] = path
    return modules


def _imports(name: str, path: Path, known: set[str]) -> set[str]:
    """The package's modules that ``name`` imports anywhere in its source."""
    is_package = path.name == "__init__.py"
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = name.split(".")[: len(name.split(".")) - node.level + is_package]
                base = ".".join(anchor + ([base] if base else []))
            # `from pkg import mod` imports the module pkg.mod when there is one.
            targets = [base, *(f"{base}.{alias.name}" for alias in node.names)]
        else:
            continue
        for target in targets:
            # `import a.b.c` runs a/__init__ and a/b/__init__ too, but a circle through a
            # parent package's __init__ only counts when the module names it.
            if target in known and target != name:
                found.add(target)
    return found


def import_cycles(package: str) -> list[list[str]]:
    """Every strongly connected set of two or more modules of ``package`` (Tarjan)."""
    modules = _modules(package)
    graph = {name: _imports(name, path, set(modules)) for name, path in modules.items()}
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    cycles = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for target in sorted(graph[node]):
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in on_stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                cycles.append(sorted(component))

    for name in sorted(graph):
        if name not in index:
            visit(name)
    return cycles


@pytest.mark.parametrize("package", [
    "scene_rpc", "pointcloud", "depth_service", "segment_service", "imagegen_service",
    "orchestrator", "scene_dev",
])
def test_no_import_circle_in(package):
    assert import_cycles(package) == []
