"""The arrows point one way (ARCHITECTURE.md): every import between crm-sync's packages follows
the layers below, and no module imports itself back through others (no cycles, counting imports
made inside functions and under TYPE_CHECKING: they are part of the structure too).

    sync        the cycle, the command line, the daemon       → core, rules, connectors, state
    connectors  the Vitally and Salesforce adapters           → core
    state       the SQLite state database                     → core
    rules       pure decisions                                → core
    core        the record model, errors, record parsing      → (nothing of ours)
    sandbox     the local imitation of both services          → (nothing of ours)

Only the commands that start the sandbox (`demo`, `sandbox`) may import it from the product.
"""

from __future__ import annotations

import ast
import functools
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
ALLOWED: dict[str, set[str]] = {
    "core": set(),
    "rules": {"core"},
    "connectors": {"core"},
    "state": {"core"},
    "sandbox": set(),
    "sync": {"core", "rules", "connectors", "state"},
}
# Product modules that start the sandbox for a user (the `demo` and `sandbox` commands).
SANDBOX_STARTERS = {"sync.demo", "sync.cli"}


def _module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _modules() -> dict[str, Path]:
    return {_module_name(path): path for package in ALLOWED for path in (ROOT / package).rglob("*.py")}


def _imports(name: str, path: Path, known: set[str]) -> Iterator[str]:
    """The crm-sync modules `name` imports, wherever the import statement stands."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:  # a relative import, from the module's own package upwards
                parts = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*parts, base] if base else parts)
            # `from pkg import module` names a module; `from module import name` names the module.
            targets = [f"{base}.{alias.name}" if f"{base}.{alias.name}" in known else base for alias in node.names]
        else:
            continue
        for target in targets:
            while target and target not in known:
                target = target.rpartition(".")[0]
            if target and target != name:
                yield target


@functools.cache  # three tests read it; the tree does not change during a run
def _graph() -> dict[str, set[str]]:
    modules = _modules()
    known = set(modules)
    return {name: set(_imports(name, path, known)) for name, path in modules.items()}


def test_architecture_every_package_is_known() -> None:
    """A new top-level package must be placed in the layers above before it can be imported."""
    packages = {path.parent.name for path in ROOT.glob("*/__init__.py")}
    assert packages == set(ALLOWED)


def test_architecture_imports_follow_the_layers() -> None:
    wrong = sorted(
        f"{source} imports {target}"
        for source, targets in _graph().items()
        for target in targets
        if (layer := target.split(".")[0]) != source.split(".")[0]
        and layer not in ALLOWED[source.split(".")[0]]
        and not (layer == "sandbox" and source in SANDBOX_STARTERS)
    )
    assert wrong == []


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for nxt in sorted(graph.get(node, ())):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def test_architecture_has_no_import_cycles() -> None:
    assert _cycles(_graph()) == []


@pytest.mark.parametrize(
    ("graph", "expected"),
    [
        ({"a": {"b"}, "b": {"c"}, "c": set()}, []),
        ({"a": {"b"}, "b": {"a"}}, [["a", "b"]]),
        ({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}, [["a", "b", "c"]]),
    ],
)
def test_architecture_cycle_finder_finds_cycles(graph: dict[str, set[str]], expected: list[list[str]]) -> None:
    """The check above can fail: the cycle finder sees a loop of two and of three modules."""
    assert _cycles(graph) == expected


def test_architecture_graph_sees_imports_inside_functions_and_type_checking() -> None:
    """The graph counts the imports a lazy or type-only import would hide (sync.cli's sandbox)."""
    graph = _graph()
    assert "sandbox.server" in graph["sync.cli"]  # imported inside the `sandbox` command
    assert "core.errors" in graph["state.lock"]
