"""One-way architecture: a module never imports a higher layer, and modules form no import
cycle.

Layers, lowest first (README, "Architecture"): ``models`` -> ``streams`` -> ``workers`` ->
``training`` -> ``dashboard`` -> ``api`` -> ``vigil``. A module may import its own package and
any lower one. The graph is read from the source with :mod:`ast` (nothing is imported): every
absolute ``import`` and ``from ... import`` naming one of the packages, also those inside
functions, which run later but still tie the modules together.

(Named ``test_import_layers.py`` because ``tests/models/test_layers.py`` tests the networks'
layers, and two test files of one name collide in pytest's default import mode.)
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
LAYERS = ("models", "streams", "workers", "training", "dashboard", "api", "vigil")
RANK = {package: rank for rank, package in enumerate(LAYERS)}


def module_files() -> dict[str, Path]:
    """Dotted module name -> file, for every module of the layered packages."""
    modules = {}
    for package in LAYERS:
        for path in sorted((ROOT / package).rglob("*.py")):
            parts = path.relative_to(ROOT).with_suffix("").parts
            if parts[-1] == "__init__":
                parts = parts[:-1]
            modules[".".join(parts)] = path
    return modules


def _resolve(name: str, modules: dict[str, Path]) -> str | None:
    """The module ``name`` is, or the nearest package above it that is one of ours."""
    while name and name not in modules:
        name = name.rpartition(".")[0]
    return name or None


def imports_of(module: str, path: Path, modules: dict[str, Path]
               ) -> Iterator[tuple[str, int]]:
    """(imported module, line) for each import of one of our modules in ``path``."""
    is_package = path.name == "__init__.py"
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:  # relative: resolve against this module's package
                anchor = module.split(".")
                anchor = anchor[: len(anchor) - node.level + (1 if is_package else 0)]
                base = ".".join([*anchor, *([base] if base else [])])
            # `from pkg import sub` imports the submodule when there is one
            targets = [f"{base}.{alias.name}" if f"{base}.{alias.name}" in modules else base
                       for alias in node.names]
        else:
            continue
        for target in targets:
            if target.split(".")[0] not in RANK:
                continue
            resolved = _resolve(target, modules)
            if resolved is not None and resolved != module:
                yield resolved, node.lineno


def import_graph() -> dict[str, dict[str, int]]:
    """module -> {imported module: first line importing it}."""
    modules = module_files()
    graph: dict[str, dict[str, int]] = {}
    for module, path in modules.items():
        edges = graph.setdefault(module, {})
        for target, line in imports_of(module, path, modules):
            edges.setdefault(target, line)
    return graph


def upward_imports(graph: dict[str, dict[str, int]]) -> list[str]:
    found = []
    for module, edges in sorted(graph.items()):
        rank = RANK[module.split(".")[0]]
        for target, line in sorted(edges.items()):
            if RANK[target.split(".")[0]] > rank:
                path = module_files()[module].relative_to(ROOT)
                found.append(f"{path}:{line}: {module} imports {target}")
    return found


def cycles(graph: dict[str, dict[str, int]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan), each with one
    cycle through it, as a list of modules starting and ending with the same one."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    components: list[list[str]] = []

    def visit(start: str) -> None:  # iterative, so deep graphs cannot hit recursion limits
        work = [(start, iter(sorted(graph.get(start, {}))))]
        index[start] = low[start] = len(index)
        stack.append(start)
        on_stack.add(start)
        while work:
            node, children = work[-1]
            for child in children:
                if child not in index:
                    index[child] = low[child] = len(index)
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(graph.get(child, {})))))
                    break
                if child in on_stack:
                    low[node] = min(low[node], index[child])
            else:
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
                        components.append(sorted(component))

    for module in sorted(graph):
        if module not in index:
            visit(module)
    return [_one_cycle(component, graph) for component in sorted(components)]


def _one_cycle(component: list[str], graph: dict[str, dict[str, int]]) -> list[str]:
    """A shortest cycle through the component's first module (breadth-first)."""
    members, start = set(component), component[0]
    parent: dict[str, str] = {}
    frontier = [start]
    while frontier:
        following = []
        for node in frontier:
            for child in sorted(graph.get(node, {})):
                if child not in members:
                    continue
                if child == start:
                    path = [node]
                    while path[-1] != start:
                        path.append(parent[path[-1]])
                    return [start, *reversed(path[:-1]), start]
                if child not in parent:
                    parent[child] = node
                    following.append(child)
        frontier = following
    return component  # unreachable for a strongly connected component


def test_no_module_imports_a_higher_layer() -> None:
    found = upward_imports(import_graph())
    assert not found, "imports of a higher layer:\n" + "\n".join(found)


def test_no_import_cycles() -> None:
    found = cycles(import_graph())
    assert not found, "import cycles:\n" + "\n".join(" -> ".join(c) for c in found)


def test_the_scan_sees_imports_inside_functions(tmp_path: Path) -> None:
    """The scanner itself: a lazy import inside a function is an edge like any other."""
    source = "def f():\n    from dashboard.launch import serve\n    import workers.agent\n"
    path = tmp_path / "probe.py"
    path.write_text(source)
    modules = {"streams.probe": path, "dashboard.launch": path, "workers.agent": path}
    assert sorted(imports_of("streams.probe", path, modules)) == [
        ("dashboard.launch", 2), ("workers.agent", 3)]


if __name__ == "__main__":  # a report of the whole graph: python tests/test_import_layers.py
    graph = import_graph()
    up = upward_imports(graph)
    print(f"{len(graph)} modules, {sum(map(len, graph.values()))} imports between them")
    print(f"{len(up)} upward imports", *up, sep="\n  ")
    found = cycles(graph)
    print(f"{len(found)} cycles", *(" -> ".join(c) for c in found), sep="\n  ")
