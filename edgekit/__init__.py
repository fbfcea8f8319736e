"""edgekit: compile trained PyTorch gaze models into verified edge artifacts with honest reports.

    import edgekit
    result = edgekit.compile(my_module, target="onnx-int8", input_shape=(1, 1, 40, 64),
                             calib=calib_images, eval={"images": images, "gaze": gaze})
    result.passed, result.error_deg, result.artifact

Heavy modules (torch, onnxruntime) load on first use, so `import edgekit` is cheap. The public API is `__all__`.
"""

from edgekit._version import __version__

# name -> (module, attribute): loaded on first access
_LAZY = {
    "compile": ("edgekit.compiler", "compile"),
    "CompileResult": ("edgekit.compiler", "CompileResult"),
    "targets": ("edgekit.recipe", "list_targets"),
    "load_report": ("edgekit.report.render", "load_report"),
    "Report": ("edgekit.report.model", "Report"),
    "GazeSet": ("edgekit.data.npz", "GazeSet"),
    "read_gazeset": ("edgekit.data.npz", "read_gazeset"),
    "write_gazeset": ("edgekit.data.npz", "write_gazeset"),
    "synthetic_set": ("edgekit.data.synthetic", "synthetic_set"),
    "EdgekitError": ("edgekit.errors", "EdgekitError"),
    "BadInputError": ("edgekit.errors", "BadInputError"),
    "MissingDependencyError": ("edgekit.errors", "MissingDependencyError"),
    "PassFailedError": ("edgekit.errors", "PassFailedError"),
}

__all__ = ["__version__", *_LAZY]


def __getattr__(name: str):
    if name in _LAZY:
        import importlib

        module, attr = _LAZY[name]
        value = getattr(importlib.import_module(module), attr)  # why: lazy, these import torch
        globals()[name] = value
        return value
    raise AttributeError(f"module 'edgekit' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(__all__)
