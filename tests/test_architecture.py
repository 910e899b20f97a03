"""The layer rules of DESIGN.md, enforced with import-linter (contracts in pyproject.toml), and no import
cycle anywhere in the studio."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import grimp

from conftest import REPO


def test_import_contracts_hold():
    exe = shutil.which("lint-imports", path=str(Path(sys.executable).parent))
    assert exe, "import-linter is a dev dependency: run `make setup`"
    proc = subprocess.run([exe, "--config", str(REPO / "pyproject.toml")], cwd=REPO, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "4 kept, 0 broken" in proc.stdout


def import_cycles(graph, package: str) -> list[list[str]]:
    """Strongly connected components of more than one module in ``package``'s import graph (Tarjan),
    counting every import, lazy ones inside functions included."""
    modules = sorted(m for m in graph.modules if m == package or m.startswith(package + "."))
    edges = {m: sorted(d for d in graph.find_modules_directly_imported_by(m) if d in modules) for m in modules}
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    cycles: list[list[str]] = []
    for root in modules:  # iterative Tarjan (no recursion limit on deep graphs)
        if root in index:
            continue
        work = [(root, 0)]
        while work:
            v, i = work.pop()
            if i == 0:
                index[v] = low[v] = len(index)
                stack.append(v)
                on_stack.add(v)
            if i < len(edges[v]):
                w = edges[v][i]
                work.append((v, i + 1))
                if w not in index:
                    work.append((w, 0))
                elif w in on_stack:
                    low[v] = min(low[v], index[w])
                continue
            if low[v] == index[v]:
                comp = []
                while True:
                    w = stack.pop()
                    on_stack.discard(w)
                    comp.append(w)
                    if w == v:
                        break
                if len(comp) > 1:
                    cycles.append(sorted(comp))
            if work:
                parent = work[-1][0]
                low[parent] = min(low[parent], low[v])
    return cycles


def test_the_cycle_finder_finds_a_cycle():
    class Graph:  # a -> b -> c -> a, c -> d
        modules = {"p", "p.a", "p.b", "p.c", "p.d"}

        @staticmethod
        def find_modules_directly_imported_by(m):
            return {"p.a": {"p.b"}, "p.b": {"p.c"}, "p.c": {"p.a", "p.d"}}.get(m, set())

    assert import_cycles(Graph, "p") == [["p.a", "p.b", "p.c"]]


def test_no_import_cycles_in_the_studio():
    cycles = import_cycles(grimp.build_graph("studio"), "studio")
    assert cycles == [], "import cycles: " + "; ".join(" <-> ".join(c) for c in cycles)
