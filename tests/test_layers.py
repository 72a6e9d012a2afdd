"""The package's layers, read from the source with `ast` (no import runs).

workloads (the attack) < store (schema, spec, rows, SweepStore) < orchestrator (the writer) and
analysis (the reader), which never import each other < dlgsweep.cli and its commands (the top).
`dlgsweep.errors` and `dlgsweep.extras` are the shared bottom. No module imports itself back
through others (no circles), lazy imports inside functions and TYPE_CHECKING blocks included.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("dlgsweep", "workloads", "store", "orchestrator", "analysis")
BOTTOM = ("dlgsweep.errors", "dlgsweep.extras")
CLI = ("dlgsweep.cli", "dlgsweep.commands", "dlgsweep.reference")  # the top
# what each layer may import, beside the standard library, third parties and BOTTOM
ALLOWED = {
    "workloads": {"workloads"},
    "store": {"workloads", "store"},
    "orchestrator": {"workloads", "store", "orchestrator"},
    "analysis": {"workloads", "store", "analysis"},
    "dlgsweep": {"workloads", "store", "orchestrator", "analysis", "dlgsweep"},
}


def modules(root: Path, packages: tuple[str, ...]) -> dict[str, Path]:
    """Dotted module name -> file, for every .py file of `packages` under `root`."""
    out = {}
    for package in packages:
        for path in sorted((root / package).rglob("*.py")):
            parts = list(path.relative_to(root).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts = parts[:-1]
            out[".".join(parts)] = path
    return out


def imports(name: str, path: Path, known: dict[str, Path]) -> set[str]:
    """The project modules `name` imports anywhere in its file. `from pkg import sub` counts as
    an import of the submodule `pkg.sub` where there is one, else of `pkg`."""
    is_package = path.name == "__init__.py"
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = name.split(".") if is_package else name.split(".")[:-1]
                base = base[: len(base) - (node.level - 1)]
                module = ".".join(base + ([node.module] if node.module else []))
            else:
                module = node.module or ""
            for alias in node.names:
                sub = f"{module}.{alias.name}"
                found.add(sub if sub in known else module)
    return {m for m in found if m in known and m != name}


def graph(root: Path, packages: tuple[str, ...]) -> dict[str, set[str]]:
    known = modules(root, packages)
    return {name: imports(name, path, known) for name, path in known.items()}


def circles(edges: dict[str, set[str]]) -> list[list[str]]:
    """The import circles: strongly connected components of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for nxt in sorted(edges.get(node, ())):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = []
            while True:
                top = stack.pop()
                on_stack.discard(top)
                component.append(top)
                if top == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(edges):
        if node not in index:
            visit(node)
    return found


def layer(module: str) -> str:
    return module.split(".")[0]


def crossings(edges: dict[str, set[str]]) -> list[str]:
    """Imports a layer may not make: writer <-> reader, a lower layer reaching up, anything
    importing the CLI, the shared bottom importing a layer."""
    bad = []
    for source, targets in sorted(edges.items()):
        for target in sorted(targets):
            if target.startswith(BOTTOM):
                continue
            below_cli = not source.startswith(CLI)
            if source.startswith(BOTTOM) or (target.startswith(CLI) and below_cli):
                bad.append(f"{source} -> {target}")
            elif layer(target) not in ALLOWED[layer(source)]:
                bad.append(f"{source} -> {target}")
    return bad


@pytest.fixture(scope="module")
def edges() -> dict[str, set[str]]:
    return graph(ROOT, PACKAGES)


def test_the_walk_sees_the_packages(edges: dict[str, set[str]]) -> None:
    # the checks below mean something only if the walk found the modules and their imports
    assert {"store.sweep_store", "orchestrator.sweep", "analysis.report", "dlgsweep.cli"} <= set(
        edges
    )
    assert "store.schema" in edges["store.sweep_store"]
    assert "analysis.charts.derive" in edges["analysis.charts.layout"]  # `from pkg import sub`
    # inside a package: the report's modules and their imports of one another are seen, so a
    # circle among them (or through the package's __init__) would be found
    report = {f"analysis.report.{m}" for m in ("model", "pages", "charts", "export")}
    assert report <= set(edges) and report - {"analysis.report.charts"} <= edges["analysis.report"]
    assert "analysis.report.model" in edges["analysis.report.export"]  # `from pkg import model`


def test_writer_and_reader_never_import_each_other(edges: dict[str, set[str]]) -> None:
    both = [
        f"{source} -> {target}"
        for source, targets in edges.items()
        for target in targets
        if {layer(source), layer(target)} == {"orchestrator", "analysis"}
    ]
    assert both == []


def test_each_layer_imports_only_what_is_below_it(edges: dict[str, set[str]]) -> None:
    assert crossings(edges) == []


def test_no_import_circles(edges: dict[str, set[str]]) -> None:
    assert circles(edges) == []


def test_the_checks_catch_a_circle_and_a_crossing(tmp_path: Path) -> None:
    """The same walk over a small package tree that has both defects finds both."""
    for folder in ("orchestrator", "analysis", "analysis/charts"):
        (tmp_path / folder).mkdir()
        (tmp_path / folder / "__init__.py").write_text("")
    (tmp_path / "orchestrator" / "a.py").write_text("from analysis import b\n")
    (tmp_path / "analysis" / "b.py").write_text("def f():\n    from analysis.charts import c\n")
    (tmp_path / "analysis" / "charts" / "c.py").write_text(
        "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from analysis import b\n"
    )
    found = graph(tmp_path, ("orchestrator", "analysis"))
    assert found["orchestrator.a"] == {"analysis.b"}
    assert circles(found) == [["analysis.b", "analysis.charts.c"]]
    assert crossings(found) == ["orchestrator.a -> analysis.b"]
