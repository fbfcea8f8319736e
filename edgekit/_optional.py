"""Lazy imports of optional dependencies with a one-line install hint (the extra comes from edgekit.extras)."""

import importlib
from types import ModuleType

from edgekit.errors import MissingDependencyError
from edgekit.extras import extra_for_module, install_hint
from edgekit.quiet import quiet

_NOISY = ("coremltools", "litert_torch", "ai_edge_quantizer")  # their imports log version warnings and "Failed to load"


def require(module: str, purpose: str) -> ModuleType:
    """Import `module` or raise MissingDependencyError saying what needs it and how to install it."""
    try:
        if module.split(".")[0] in _NOISY:
            with quiet():
                return importlib.import_module(module)
        return importlib.import_module(module)
    except ImportError as exc:
        extra = extra_for_module(module)
        hint = install_hint(extra) if extra else f"pip install {module.split('.')[0]}"
        raise MissingDependencyError(f"{purpose} needs {module}, which is not installed ({exc}); fix: {hint}") from None
