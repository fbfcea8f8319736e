"""Lazy imports of optional dependencies with a one-line install hint (the extra comes from edgekit.extras)."""

import gc
import importlib
import sys
from types import ModuleType

from edgekit.errors import MissingDependencyError
from edgekit.extras import extra_for_module, install_hint
from edgekit.quiet import quiet

_NOISY = ("coremltools", "litert_torch", "ai_edge_quantizer")  # their imports log version warnings and "Failed to load"


_freezing = False


def freeze_imports() -> None:
    """From now on in this process, after each first import through require(), and once now: every object alive moves
    out of reach of the garbage collector's full collections (gc.freeze), after what is garbage is collected.
    The converters hold hundreds of thousands of objects (torch 0.17 M, with coremltools, litert-torch and executorch
    0.67 M): each full collection traversed them all, 0.3 s here, one every few seconds of a compile (the sample
    report's 13 targets: 16 of them, 3.6 s of 100 s). Only in processes edgekit runs (its CLI, its build workers), not a
    caller's: an object frozen here that dies later in a reference cycle is freed only at exit."""
    global _freezing
    _freezing = True
    _freeze()


def _freeze() -> None:
    gc.collect()
    gc.freeze()


def require(module: str, purpose: str) -> ModuleType:
    """Import `module` or raise MissingDependencyError saying what needs it and how to install it."""
    first = module not in sys.modules
    try:
        if module.split(".")[0] in _NOISY:
            with quiet():
                found = importlib.import_module(module)
        else:
            found = importlib.import_module(module)
    except ImportError as exc:
        extra = extra_for_module(module)
        hint = install_hint(extra) if extra else f"pip install {module.split('.')[0]}"
        raise MissingDependencyError(f"{purpose} needs {module}, which is not installed ({exc}); fix: {hint}") from None
    if first and _freezing:
        _freeze()
    return found
