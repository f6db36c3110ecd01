"""The package's layout: wings in layers, no import circles (issue 17).

Lower wings never import higher ones: base modules (io, registry, cells, provenance) <
data < models < train < measure < report < papers < the workflow's side (plan, render,
joblog, preload). The import graph is read with ``ast`` (function-local imports included), so a
lazy import cannot hide a circle.
"""

from __future__ import annotations

import ast

import pytest

from kdaug import codehash

PACKAGE = codehash.PACKAGE_DIR
LAYERS = {
    "io": 0, "registry": 0, "cells": 0, "provenance": 0, "codehash": 8,
    "data": 1, "models": 2, "train": 3, "measure": 4, "report": 5, "papers": 6,
    "plan": 7, "render": 8, "joblog": 8, "devices": 8, "verify": 8, "preload": 8,
}  # fmt: skip


def module_names() -> list[str]:
    names = []
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = path.relative_to(PACKAGE).with_suffix("").parts
        names.append(".".join(parts[:-1] if parts[-1] == "__init__" else parts))
    return [n for n in names if n]


def import_graph() -> dict[str, set[str]]:
    """module -> the kdaug modules it imports (not counting parent packages)."""
    graph = {}
    for name in module_names():
        file = codehash._module_file(name)
        package = name if file.name == "__init__.py" else name.rpartition(".")[0]
        graph[name] = {m for m in codehash.kdaug_imports(file, package) if m != name}
    return graph


def strongly_connected(graph: dict[str, set[str]]) -> list[list[str]]:
    """Tarjan's algorithm: the components with more than one module (import circles)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in graph.get(v, ()):
            if w not in index:
                visit(w)
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

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def layer(module: str) -> int:
    return LAYERS[module.split(".")[0]]


def test_every_module_belongs_to_a_wing() -> None:
    assert {n.split(".")[0] for n in module_names()} <= set(LAYERS)


def test_no_import_circles() -> None:
    assert strongly_connected(import_graph()) == []


def test_lower_wings_never_import_higher_ones() -> None:
    upward = [
        f"{m} -> {i}"
        for m, imports in import_graph().items()
        for i in imports
        if layer(i) > layer(m) and i.split(".")[0] != m.split(".")[0]
    ]
    assert upward == []


def test_the_checker_finds_a_circle_and_an_upward_import() -> None:
    assert strongly_connected({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert layer("train.engine") < layer("report.tables")


@pytest.mark.parametrize("paper", ["das2020", "wang2022", "choi2023"])
def test_each_paper_is_one_module_in_the_papers_room(paper: str) -> None:
    source = (PACKAGE / "papers" / f"{paper}.py").read_text()
    assert "register_paper(" in source and "register_report(" in source
    tree = ast.parse(source)
    imported = {n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)}
    assert not {m for m in imported if m and m.startswith(("kdaug.plan", "kdaug.render"))}


if __name__ == "__main__":  # print the module graph's layers and circles
    for module, imports in sorted(import_graph().items(), key=lambda kv: (layer(kv[0]), kv[0])):
        print(f"[{layer(module)}] {module} -> {', '.join(sorted(imports)) or '-'}")
    print("circles:", strongly_connected(import_graph()) or "none")
