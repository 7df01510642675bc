"""Print the import graph of the cmhash package (every intra-package import, lazy ones inside functions too)
and its cycles; exit 1 if there is a cycle or a report module imports a sibling of its layer.

    python benchmarks/import_graph.py            # the whole package
    python benchmarks/import_graph.py report     # only modules under cmhash.report
"""

from __future__ import annotations

import ast
import sys
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src"


def module_name(path: Path) -> str:
    parts = list(path.relative_to(SRC).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _resolve(name: str, modules: set[str]) -> str | None:
    while name and name not in modules:
        name = name.rpartition(".")[0]
    return name or None


def import_graph() -> dict[str, set[str]]:
    files = {module_name(p): p for p in sorted(SRC.joinpath("cmhash").rglob("*.py"))}
    modules = set(files)
    graph: dict[str, set[str]] = {m: set() for m in modules}
    for mod, path in files.items():
        package = mod if path.name == "__init__.py" else mod.rpartition(".")[0]
        for node in ast.walk(ast.parse(path.read_text())):
            targets = []
            if isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                if node.level:
                    base = package.split(".")[: len(package.split(".")) - node.level + 1]
                    stem = ".".join(base + ([node.module] if node.module else []))
                else:
                    stem = node.module or ""
                targets = [f"{stem}.{a.name}" for a in node.names] if stem.startswith("cmhash") else []
            for target in targets:
                hit = _resolve(target, modules)
                # `from . import x` names a module; `from .m import f` names m; a package __init__ counts
                # only when it is itself the target (every submodule import runs it anyway)
                if hit is not None and hit != mod and not mod.startswith(hit + "."):
                    graph[mod].add(hit)
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index, low, stack, on, out, counter = {}, {}, [], set(), [], [0]

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in sorted(graph[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    sys.setrecursionlimit(10000)
    for v in sorted(graph):
        if v not in index:
            visit(v)
    return out


def layer_violations(graph: dict[str, set[str]]) -> list[str]:
    """Report modules importing a module of their own layer or of a higher one (cmhash.report.BOTTOM / TOP)."""
    sys.path.insert(0, str(SRC))
    from cmhash.report import BOTTOM, TOP

    layer = {f"cmhash.report.{m}": 0 for m in BOTTOM} | {f"cmhash.report.{m}": 1 for m in TOP}
    bad = []
    for mod, deps in graph.items():
        for dep in deps:
            if mod in layer and dep in layer and layer[dep] >= layer[mod] and layer[mod] == 1:
                bad.append(f"{mod} -> {dep} (both top layer)")
            if mod in layer and dep in layer and layer[mod] == 0 and layer[dep] == 1:
                bad.append(f"{mod} -> {dep} (bottom imports top)")
    unlisted = sorted(m for m in graph if m.startswith("cmhash.report.") and m not in layer)
    bad += [f"{m}: in neither cmhash.report.BOTTOM nor TOP" for m in unlisted]
    return bad


def main(argv: list[str]) -> int:
    graph = import_graph()
    prefix = "cmhash." + argv[0] if argv else "cmhash"
    for mod in sorted(graph):
        if mod == prefix or mod.startswith(prefix + "."):
            print(f"{mod} -> {', '.join(sorted(graph[mod])) or '(nothing in cmhash)'}")
    found, bad = cycles(graph), layer_violations(graph)
    print(f"\n{len(graph)} modules, {sum(map(len, graph.values()))} imports; cycles: {found or 'none'}; "
          f"report layer violations: {bad or 'none'}")
    return 1 if found or bad else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
