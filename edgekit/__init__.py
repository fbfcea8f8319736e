"""edgekit: compile trained PyTorch gaze models into verified edge artifacts with honest reports.

    import edgekit
    result = edgekit.compile("tinygaze", target="onnx", eval="my_eval.npz")
    result.artifact, result.report.accuracy.artifact.mean_deg

Heavy modules (torch, onnxruntime) load on first use, so `import edgekit` is cheap.
"""

from edgekit._version import __version__

__all__ = ["__version__", "compile"]


def __getattr__(name: str):
    if name == "compile":
        from edgekit.compiler import compile  # why: lazy, imports torch; `import edgekit` stays cheap

        return compile
    raise AttributeError(f"module 'edgekit' has no attribute {name!r}")
