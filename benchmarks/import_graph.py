"""Measure edgekit's module structure: files and lines per package, internal imports (module level vs inside
functions), imports that point from a lower layer up, and import cycles. Results: benchmarks/architecture.md.

Usage: python benchmarks/import_graph.py [path/to/edgekit]   (default: the edgekit package beside this folder)

Layers, lowest first (a module may import its own layer and any lower one):
  0 base:      errors, _optional, quiet, fileio, userfile, signals, progress, code_digest, environment, extras, _version
  1 data:      data, models, artifact, energy, quant, snn, context, evalset, torch_module, safe_pt2, trace_check
  2 passes:    passes, backends, finetune
  3 assembly:  pipeline, recipe, cache, report, source (and the top-level report modules report/ replaced)
  4 api:       compiler, build, outdir
  5 cli:       cli
"""

from __future__ import annotations

import ast
import sys
from collections import defaultdict
from pathlib import Path

LAYERS = {
    0: ["errors", "_optional", "quiet", "fileio", "userfile", "signals", "progress", "code_digest", "environment", "extras", "_version"],
    1: ["data", "models", "artifact", "energy", "quant", "snn", "context", "evalset", "torch_module", "safe_pt2", "trace_check",
        ],
    2: ["passes", "backends", "finetune"],
    3: ["pipeline", "recipe", "cache", "report", "source", "verify", "verify_artifact", "evaluate", "parity", "report_cache"],
    4: ["compiler", "build", "outdir"],
    5: ["cli"],
}
LAYER_OF = {name: layer for layer, names in LAYERS.items() for name in names}


def module_name(root: Path, path: Path) -> str:
    parts = list(path.relative_to(root.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def layer(module: str) -> int | None:
    parts = module.split(".")
    return LAYER_OF.get(parts[1]) if len(parts) > 1 else None


def imports(tree: ast.Module, this: str, is_pkg: bool, known: set[str]):
    """(target module, at module level?) for every import of an edgekit module."""
    def resolve(node) -> list[str]:
        if isinstance(node, ast.Import):
            return [a.name for a in node.names]
        base = node.module or ""
        if node.level:
            pkg = this.split(".") if is_pkg else this.split(".")[:-1]
            pkg = pkg[:len(pkg) - node.level + 1]
            base = ".".join(pkg + ([base] if base else []))
        out = []
        for a in node.names:
            full = f"{base}.{a.name}"
            out.append(full if full in known else base)
        return out

    level_nodes = {id(node) for node in tree.body}
    for node in ast.walk(tree):
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            for target in dict.fromkeys(resolve(node)):  # one count per statement and module it names
                if target.split(".")[0] == "edgekit":
                    yield target, id(node) in level_nodes or _at_top(tree, node)


def _at_top(tree: ast.Module, node) -> bool:
    for stmt in tree.body:
        if isinstance(stmt, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            continue
        if any(sub is node for sub in ast.walk(stmt)):
            return True
    return False


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index, low, stack, on, out, counter = {}, {}, [], set(), [], [0]

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in graph.get(v, ()):
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
    for v in list(graph):
        if v not in index:
            visit(v)
    return out


def main(root: Path) -> None:
    files = sorted(root.rglob("*.py"))
    known = {module_name(root, f) for f in files}
    per_package: dict[str, list[int]] = defaultdict(lambda: [0, 0])
    graph: dict[str, set[str]] = defaultdict(set)
    total = lazy = 0
    upward = []
    for f in files:
        mod = module_name(root, f)
        parts = mod.split(".")
        pkg = parts[1] if len(parts) > 2 or (len(parts) == 2 and f.name == "__init__.py") else "(top level)"
        per_package[pkg][0] += 1
        per_package[pkg][1] += len(f.read_text().splitlines())
        tree = ast.parse(f.read_text())
        for target, at_top in imports(tree, mod, f.name == "__init__.py", known):
            if target not in known or target == mod:
                continue
            total += 1
            lazy += not at_top
            graph[mod].add(target)
            # importing edgekit.a.b first runs edgekit/a/__init__.py (unless the importer lives in edgekit.a): an edge too
            parts = target.split(".")
            graph[mod].update(p for p in (".".join(parts[:i]) for i in range(2, len(parts)))
                              if p in known and p != mod and not mod.startswith(p + "."))
            a, b = layer(mod), layer(target)
            if a is not None and b is not None and b > a:
                upward.append(f"{mod} -> {target}")
    print("| package | files | lines |\n|---|---:|---:|")
    for pkg, (n, lines) in sorted(per_package.items()):
        print(f"| {pkg} | {n} | {lines} |")
    print(f"| total | {len(files)} | {sum(v[1] for v in per_package.values())} |\n")
    print(f"internal imports: {total}, inside functions: {lazy}")
    print(f"imports pointing up a layer: {len(upward)}")
    for u in sorted(upward):
        print(f"  {u}")
    cyc = cycles(graph)
    print(f"import cycles: {len(cyc)}")
    for c in cyc:
        print(f"  {len(c)} modules: {', '.join(c)}")


if __name__ == "__main__":
    main(Path(sys.argv[1]) if len(sys.argv) > 1 else Path(__file__).resolve().parents[1] / "edgekit")
