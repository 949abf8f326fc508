"""The package's layering holds: no import cycles, and components import nothing from data or tasks.

Read from the source with ``ast`` (every ``import`` statement, at module level or inside a function), so
a cycle hidden behind a lazy import counts too; ``importlib.import_module`` (task discovery) does not.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "nlpkit"


def _module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def import_graph() -> dict[str, set[str]]:
    """nlpkit module -> the nlpkit modules it imports (``from a.b import c`` counts ``a.b``, and
    ``a.b.c`` when that is a module)."""
    modules = {_module_name(p): p for p in PACKAGE.rglob("*.py")}
    graph: dict[str, set[str]] = {}
    for name, path in modules.items():
        targets: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                targets.update(alias.name for alias in node.names)
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                targets.add(node.module)
                targets.update(f"{node.module}.{alias.name}" for alias in node.names)
        graph[name] = {t for t in targets if t in modules and t != name}
    return graph


def _cycle(graph: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                return stack[stack.index(nxt) :] + [nxt]
            if nxt not in state and (found := visit(nxt)):
                return found
        stack.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state and (found := visit(node)):
            return found
    return None


def _is_package_init(name: str) -> bool:
    return (PACKAGE.parent / name.replace(".", "/") / "__init__.py").exists()


def test_no_import_cycles():
    graph = import_graph()
    # a package's __init__ re-exporting its own sub-modules is not a dependency of theirs on it
    for name in graph:
        graph[name] = {
            t for t in graph[name] if not (_is_package_init(t) and name.startswith(t + ".") and t != "nlpkit")
        }
    assert _cycle(graph) is None, f"import cycle: {' -> '.join(_cycle(graph))}"


@pytest.mark.parametrize("forbidden", ["nlpkit.data", "nlpkit.tasks", "nlpkit.training", "nlpkit.export"])
def test_components_import_nothing_from_the_layers_above(forbidden):
    graph = import_graph()
    offenders = {
        module: sorted(t for t in targets if t == forbidden or t.startswith(forbidden + "."))
        for module, targets in graph.items()
        if module.startswith("nlpkit.modules")
    }
    assert not {m: t for m, t in offenders.items() if t}
