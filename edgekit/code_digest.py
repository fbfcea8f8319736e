"""A digest of the source code a module runs: the module and every edgekit module it imports, transitively.

The pass cache keys each pass on this digest of the pass's own module, so a changed pass (or a helper it imports)
never serves an artifact its old code made. Imports are read from the source text (module level and inside
functions), so nothing is imported to compute it.
"""

from __future__ import annotations

import ast
import functools
import hashlib
import importlib.util
from pathlib import Path

PACKAGE = "edgekit"


@functools.cache
def code_digest(module: str) -> str:
    h = hashlib.sha256()
    for name in sorted(_closure(module)):
        h.update(name.encode() + b"\0" + _source_path(name).read_bytes())
    return h.hexdigest()


def _closure(module: str) -> set[str]:
    seen, todo = set(), [module]
    while todo:
        name = todo.pop()
        if name in seen or _source_path(name) is None:
            continue
        seen.add(name)
        todo.extend(_imports(name))
    return seen


@functools.cache
def _source_path(module: str) -> Path | None:
    if module != PACKAGE and not module.startswith(PACKAGE + "."):
        return None
    try:
        spec = importlib.util.find_spec(module)
    except (ImportError, ValueError):
        return None
    return Path(spec.origin) if spec and spec.origin and spec.origin.endswith(".py") else None


def _imports(module: str) -> set[str]:
    """edgekit modules named by the import statements of MODULE. `from pkg import mod` counts as mod alone: a package's
    __init__ (which may import every submodule) does not decide what one of its modules computes."""
    path = _source_path(module)
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(parts + ([node.module] if node.module else []))
            submodules = {f"{base}.{a.name}" for a in node.names if _source_path(f"{base}.{a.name}") is not None}
            found.update(submodules)
            if len(submodules) < len(node.names):  # names defined in `base` itself (not only its submodules)
                found.add(base)
    return {name for name in found if _source_path(name) is not None}
