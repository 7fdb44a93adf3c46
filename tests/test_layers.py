"""The package's import graph: layers with every import pointing down, no cycle, a process boundary that holds.

Read from the source (every ``import`` statement, function-level and
``TYPE_CHECKING`` ones included), so an import added anywhere is checked.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "kernel_agent"

#: Bottom to top. A module may import from its own layer or a lower one, never a higher one.
LAYERS: list[tuple[str, ...]] = [
    ("_version", "protocol"),                      # what both processes agree on (standard library only)
    ("errors", "safe_fs", "terminal_text", "kernel"),  # host foundations | the in-kernel runtime
    ("sandbox", "models", "record"),               # confinement, language models, writing and reading records
    ("tools", "kernelspec", "packages"),           # tools and their bridge; the Jupyter kernelspec; host installs
    ("runtime",),                                  # the host's handle on running kernels
    ("session",),                                  # sessions: cells, recording, resume, restore
    ("verify", "agent", "demo", "integrations", "skills"),  # audit and replay; the agent loop; the demo's tools;
                                                   # other frameworks; skills kept across sessions
    ("experiment",),                               # tasks x configurations x repeats of agent runs
    ("mcp_server",),                               # kernel-agent as an MCP server (sessions per client)
    ("cli",),                                      # the command line
]


def _modules() -> dict[str, Path]:
    found = {}
    for path in PACKAGE.rglob("*.py"):
        parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        found[name] = path
    return found


MODULES = _modules()


def _imports(name: str, path: Path) -> set[str]:
    """The kernel_agent modules ``name`` imports, at any depth of its code."""
    found: set[str] = set()
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    for node in ast.walk(ast.parse(path.read_text())):
        targets: list[str] = []
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, base] if base else anchor)
            targets = [f"{base}.{alias.name}" for alias in node.names]
            if not all(target in MODULES for target in targets):
                targets.append(base)  # `from package import name`: the package itself is imported
        for target in targets:
            while target and target not in MODULES:
                target = target.rpartition(".")[0]
            if target.startswith("kernel_agent") and target != name:
                found.add(target)
    return found


GRAPH = {name: _imports(name, path) for name, path in MODULES.items()}


def _layer(name: str) -> int | None:
    """The layer of a module; None for the root package (the public API, which re-exports from every layer)."""
    if name == "kernel_agent":
        return None
    top = name.split(".")[1]
    return next(index for index, layer in enumerate(LAYERS) if top in layer)


def test_every_module_has_a_layer() -> None:
    unplaced = sorted({name.split(".")[1] for name in MODULES if name != "kernel_agent"}
                      - {top for layer in LAYERS for top in layer})
    assert unplaced == [], f"place these in LAYERS (and in docs/architecture.md's diagram): {unplaced}"


def test_imports_point_down() -> None:
    upward = sorted(f"{name} -> {target}" for name, targets in GRAPH.items() for target in targets
                    if _layer(name) is not None and (_layer(target) is None or _layer(target) > _layer(name)))
    assert upward == []


def test_the_import_graph_has_no_cycle() -> None:
    """Tarjan's strongly connected components over the module graph (iterative: no recursion limit)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    cycles: list[list[str]] = []
    counter = 0
    for root in GRAPH:
        if root in index:
            continue
        work = [(root, iter(sorted(GRAPH[root])))]
        index[root] = low[root] = counter
        counter += 1
        stack.append(root)
        on_stack.add(root)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = counter
                    counter += 1
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(GRAPH[child]))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
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
    assert cycles == []


@pytest.mark.parametrize("side", ["protocol", "kernel"])
def test_the_kernel_side_imports_nothing_from_the_host(side: str) -> None:
    """The in-kernel runtime runs in the sandbox and the protocol layer in both processes: neither may depend on
    host code (the host's modules are not even meant to be importable there)."""
    allowed = {"protocol": ("kernel_agent.protocol", "kernel_agent._version"),
               "kernel": ("kernel_agent.kernel", "kernel_agent.protocol", "kernel_agent._version")}[side]
    inside = [name for name in GRAPH if name == f"kernel_agent.{side}" or name.startswith(f"kernel_agent.{side}.")]
    found = sorted(f"{name} -> {target}" for name in inside for target in GRAPH[name]
                   if not any(target == prefix or target.startswith(prefix + ".") for prefix in allowed))
    assert found == []
