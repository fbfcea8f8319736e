"""ONNX backend: run .onnx artifacts in onnxruntime (CPU execution provider) and describe how it executes them."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from edgekit._optional import require

PROVIDER = "CPUExecutionProvider"


def _ort():
    return require("onnxruntime", "running ONNX artifacts")


def runtime_version() -> str:
    return _ort().__version__


class OnnxRunner:
    """An onnxruntime session with a fixed thread count; run() maps input names to arrays, returns output 0."""

    def __init__(self, path: Path, threads: int = 1, optimized_model: Path | None = None):
        ort = _ort()
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = threads
        opts.inter_op_num_threads = 1
        opts.log_severity_level = 3
        if optimized_model is not None:
            opts.optimized_model_filepath = str(optimized_model)
        self.threads = threads
        self.session = ort.InferenceSession(str(path), opts, providers=[PROVIDER])
        self.input_names = [i.name for i in self.session.get_inputs()]

    def run(self, inputs: dict[str, np.ndarray]) -> np.ndarray:
        feed = dict(zip(self.input_names, inputs.values())) if set(inputs) != set(self.input_names) else inputs
        return np.asarray(self.session.run(None, feed)[0], dtype=np.float64)

    def describe(self) -> str:
        return f"onnxruntime {runtime_version()} {PROVIDER}, {self.threads} intra-op thread(s)"


def fp16_execution(path: Path, work: Path) -> dict:
    """How the CPU provider really executes an FP16 model: the float16 share of weights left after its graph
    optimisations (it inserts casts and runs ops without FP16 kernels in FP32)."""
    onnx = require("onnx", "inspecting ONNX graphs")
    optimized = work / "ort_optimized.onnx"
    OnnxRunner(path, optimized_model=optimized)
    graph = onnx.load(str(optimized)).graph
    by_type: dict[str, int] = {}
    for init in graph.initializer:
        name = onnx.TensorProto.DataType.Name(init.data_type).lower()
        by_type[name] = by_type.get(name, 0) + int(np.prod(init.dims)) if init.dims else by_type.get(name, 0) + 1
    casts = sum(1 for n in graph.node if n.op_type == "Cast")
    total = sum(by_type.values()) or 1
    fp16 = by_type.get("float16", 0) / total
    optimized.unlink(missing_ok=True)
    return {"weights_fp16_fraction_after_ort_optimisation": round(fp16, 4), "cast_nodes": casts,
            "note": (f"onnxruntime {runtime_version()} CPU EP: after its graph optimisations {fp16:.0%} of weight values stay "
                     f"float16 and {casts} Cast nodes remain; ops without FP16 CPU kernels run in FP32 on up-cast weights, "
                     "so FP16 here saves file size, not arithmetic")}
