"""The house rules, checked on the import graph of the shipped packages (grimp builds it from the source,
imports inside functions included): no cycle, imports pointing one way, no module importing another's private
name."""

from __future__ import annotations

import ast
from pathlib import Path

import grimp
import pytest

PACKAGES = ("continuum", "kvttl", "continuum_agents", "continuum_workloads", "continuum_eval")
ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def graph() -> grimp.ImportGraph:
    return grimp.build_graph(*PACKAGES, include_external_packages=True, exclude_type_checking_imports=True)


def cycles(graph: grimp.ImportGraph, modules: set[str]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    for root in sorted(modules):
        if root in index:
            continue
        work = [(root, iter(sorted(graph.find_modules_directly_imported_by(root) & modules)))]
        index[root] = low[root] = len(index)
        stack.append(root)
        on_stack.add(root)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is None:
                work.pop()
                if work:
                    low[work[-1][0]] = min(low[work[-1][0]], low[node])
                if low[node] == index[node]:
                    component = []
                    while True:
                        m = stack.pop()
                        on_stack.discard(m)
                        component.append(m)
                        if m == node:
                            break
                    if len(component) > 1:
                        found.append(sorted(component))
            elif child not in index:
                index[child] = low[child] = len(index)
                stack.append(child)
                on_stack.add(child)
                work.append((child, iter(sorted(graph.find_modules_directly_imported_by(child) & modules))))
            elif child in on_stack:
                low[node] = min(low[node], index[child])
    return found


def ours(graph: grimp.ImportGraph) -> set[str]:
    return {m for m in graph.modules if m.split(".")[0] in PACKAGES}


def test_no_import_cycle(graph):
    assert cycles(graph, ours(graph)) == []


def test_the_cycle_check_finds_a_cycle():
    g = grimp.ImportGraph()
    for a, b in (("p.a", "p.b"), ("p.b", "p.c"), ("p.c", "p.a"), ("p.c", "p.d")):
        g.add_import(importer=a, imported=b)
    assert cycles(g, set(g.modules)) == [["p.a", "p.b", "p.c"]]


# importer (a package or module) must not reach imported, directly or through others
FORBIDDEN = [
    ("kvttl", "vllm"), ("kvttl", "continuum"),
    ("continuum_workloads", "continuum"), ("continuum_workloads", "kvttl"), ("continuum_workloads", "vllm"),
    ("continuum_agents", "continuum"), ("continuum_agents", "vllm"), ("continuum_agents", "continuum_eval"),
    ("continuum", "continuum_eval"), ("continuum", "continuum_workloads"), ("continuum", "continuum_agents"),
    ("continuum.policy", "vllm"), ("continuum.policy", "continuum.sched"), ("continuum.policy", "continuum.http"),
    ("continuum.policy.registry", "pydantic"), ("continuum.policy.registry", "continuum.policy.config"),
    ("continuum.sched", "continuum.http"), ("continuum.http", "continuum.sched"),
    ("continuum.control", "continuum.http"), ("continuum.control", "continuum.sched"),
]


@pytest.mark.parametrize("importer,imported", FORBIDDEN)
def test_imports_point_one_way(graph, importer, imported):
    assert not graph.chain_exists(importer, imported, as_packages=True), \
        graph.find_shortest_chains(importer, imported, as_packages=True)


def private_imports() -> list[str]:
    """``from ours import _name`` anywhere in the shipped packages or the tests."""
    bad = []
    for folder in ("continuum", "kvttl", "agents", "workloads", "eval", "tests"):
        for path in sorted((ROOT / folder).rglob("*.py")):
            for node in ast.walk(ast.parse(path.read_text(), str(path))):
                if isinstance(node, ast.ImportFrom) and node.module and \
                        node.module.split(".")[0] in PACKAGES + ("tests",):
                    bad += [f"{path.relative_to(ROOT)}: {node.module}.{a.name}" for a in node.names
                            if a.name.startswith("_") and not a.name.startswith("__")]
    return bad


def test_no_module_imports_another_modules_private_name():
    assert private_imports() == []
