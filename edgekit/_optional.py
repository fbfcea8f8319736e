"""Lazy imports of optional dependencies with a one-line install hint."""

import importlib
from types import ModuleType

from edgekit.errors import MissingDependencyError

# module name -> the extra that installs it
_EXTRA_FOR = {
    "h5py": "datasets",
    "scipy": "datasets",
    "onnx": "onnx",
    "onnxruntime": "onnx",
    "onnxslim": "onnx",
    "onnxconverter_common": "onnx",
    "coremltools": "coreml",
    "sklearn": "coreml",
    "torch_pruning": "prune",
    "nir": "snn",
    "litert_torch": "tflite",
    "ai_edge_litert": "tflite",
    "ai_edge_quantizer": "tflite",
}


def require(module: str, purpose: str) -> ModuleType:
    """Import `module` or raise MissingDependencyError saying what needs it and how to install it."""
    try:
        if module.split(".")[0] in ("coremltools", "litert_torch", "ai_edge_quantizer"):
            from edgekit.quiet import quiet

            with quiet():  # their imports log version warnings and "Failed to load" lines
                return importlib.import_module(module)
        return importlib.import_module(module)
    except ImportError as exc:
        extra = _EXTRA_FOR.get(module.split(".")[0])
        hint = f"pip install 'edgekit[{extra}]'" if extra else f"pip install {module.split('.')[0]}"
        raise MissingDependencyError(f"{purpose} needs {module}, which is not installed ({exc}); fix: {hint}") from None
