"""TFLite backend: run .tflite artifacts in the LiteRT interpreter (ai-edge-litert, XNNPACK delegate on CPU).

The runner feeds what the I/O sidecar tells a caller to feed: float32 tensors, or for int8 inputs the float
values quantized with the input's scale and zero point; int8 outputs are dequantized the same way. Both
come from the model's own tensors, the same place the sidecar is written from.
"""

from __future__ import annotations

import functools
import re
from contextlib import contextmanager
from pathlib import Path

import numpy as np

from edgekit._optional import require
from edgekit.backends.tflite import graph as tflite_graph
from edgekit.errors import BadInputError
from edgekit.quiet import quiet


def runtime_version() -> str:
    import importlib.metadata

    return importlib.metadata.version("ai-edge-litert")


class LiteRTRunner:
    """One LiteRT interpreter, batch 1 (as converted); run() loops over a batch and returns float64 outputs.
    `xnnpack=False`: LiteRT's builtin kernels only, without its default XNNPACK delegate (benchmarks compare them)."""

    def __init__(self, path: Path, threads: int = 1, xnnpack: bool = True):
        interpreter = require("ai_edge_litert.interpreter", "running TFLite artifacts")
        self.threads, self.xnnpack = threads, xnnpack
        self.path = Path(path)
        resolver = {} if xnnpack else {
            "experimental_op_resolver_type": interpreter.OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES}
        with quiet(), _litert_errors(self.path, "prepare"):  # it prints "Created TensorFlow Lite XNNPACK delegate for CPU"
            self.interpreter = interpreter.Interpreter(model_path=str(path), num_threads=threads, **resolver)
            self.interpreter.allocate_tensors()
        self.inputs = _inputs_in_argument_order(self.interpreter)
        self.output = self.interpreter.get_output_details()[0]

    def run(self, inputs: dict[str, np.ndarray]) -> np.ndarray:
        arrays = list(inputs.values())  # in the model card's order: the torch forward's argument order
        outs = []
        for i in range(len(arrays[0])):
            for detail, array in zip(self.inputs, arrays):
                self.interpreter.set_tensor(detail["index"], _quantize(array[i:i + 1], detail))
            with _litert_errors(self.path, "invoke"):
                self.interpreter.invoke()
            outs.append(_dequantize(self.interpreter.get_tensor(self.output["index"]), self.output))
        return np.concatenate(outs).astype(np.float64)

    def describe(self) -> str:
        kernels = "the XNNPACK delegate" if self.xnnpack else "its builtin kernels (no XNNPACK delegate)"
        return f"LiteRT interpreter (ai-edge-litert {runtime_version()}) with {kernels}, {self.threads} thread(s)"


_NODE = re.compile(r"Node number (\d+) \((\w+)\) failed to (\w+)")
# the output quantization LiteRT's INT8 kernels require (to_tflite's FIXED_OUTPUT_QPARAMS gives each op its own)
_FIXED_OUTPUT = {"SOFTMAX": "1/256, zero point -128", "LOGISTIC": "1/256, zero point -128",
                 "LOG_SOFTMAX": "16/256, zero point 127", "TANH": "1/128, zero point 0"}


def litert_error(exc: BaseException, path: Path, stage: str) -> BadInputError:
    """LiteRT's RuntimeError (`tflite/kernels/activations.cc:560 output->params.scale not near 1.f / 256 (...)Node
    number 11 (SOFTMAX) failed to prepare.`) as one line naming the node, its op, the kernel's check and a fix."""
    text = " ".join(str(exc).split())
    match = _NODE.search(text)
    check = text[:match.start()].strip() if match else text
    where = f"node {match.group(1)} ({match.group(2)})" if match else "a node"
    stage = match.group(3) if match else stage
    required = _FIXED_OUTPUT.get(match.group(2)) if match else None
    fix = (f"LiteRT's INT8 {match.group(2)} needs output scale {required}: keep the layer that feeds it float "
           "(keep_float in the recipe) or use the tflite-fp16 target" if required else
           "try another tflite target (tflite, tflite-fp16), or report it with the model and the recipe")
    return BadInputError(f"{path.name}: LiteRT could not {stage} {where}: {check[:240] or type(exc).__name__}; fix: {fix}")


@contextmanager
def _litert_errors(path: Path, stage: str):
    try:
        yield
    except (RuntimeError, ValueError) as exc:
        raise litert_error(exc, path, stage) from None


def _inputs_in_argument_order(interpreter) -> list[dict]:
    """The input tensors in the order of the converted forward's arguments: litert-torch's signature names them args_0,
    args_1, ...; the interpreter's own input order need not follow it. Without such a signature: the interpreter's order."""
    details = interpreter.get_input_details()
    by_index = {d["index"]: d for d in details}
    try:
        signature = interpreter.get_signature_runner().get_input_details()
    except (ValueError, KeyError):  # no (single) signature
        return details
    args = {int(name.rsplit("_", 1)[1]): d["index"] for name, d in signature.items()
            if name.startswith("args_") and name.rsplit("_", 1)[1].isdigit()}
    if sorted(args) != list(range(len(details))) or set(args.values()) != set(by_index):
        return details
    return [by_index[args[i]] for i in sorted(args)]


def _quantize(x: np.ndarray, detail: dict) -> np.ndarray:
    if detail["dtype"] == np.float32:
        return x.astype(np.float32)
    scale, zero = detail["quantization"]
    info = np.iinfo(detail["dtype"])
    return np.clip(np.rint(x / scale) + zero, info.min, info.max).astype(detail["dtype"])


def _dequantize(y: np.ndarray, detail: dict) -> np.ndarray:
    if detail["dtype"] == np.float32:
        return y.copy()
    scale, zero = detail["quantization"]
    return (y.astype(np.float32) - zero) * scale


@functools.lru_cache(maxsize=8)
def _read(path: str, mtime_ns: int) -> tuple[list[dict], dict]:
    """(layer rows, I/O details) of one file: counts, energy and runtime details read it once between them."""
    model = tflite_graph.read(Path(path))
    return tflite_graph.layer_rows(model), tflite_graph.io_details(model)


def layers_of(path: Path) -> tuple[list[dict], dict]:
    return _read(str(path), Path(path).stat().st_mtime_ns)
