"""Apply a quantization plan to an FP32 ONNX model as QDQ, with onnxruntime's QDQ quantizer.

edgekit computes the ranges (its observers) and decides the layers (the plan); onnxruntime's
quantizer places QuantizeLinear/DequantizeLinear pairs the way its kernels fuse them.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Protocol

import numpy as np

from edgekit._optional import require
from edgekit.backends.onnx.graph import onnx_counts
from edgekit.quant.plan import QUANTIZABLE_OPS, LayerPlan, QuantPlan, layer_name, module_paths, tensor_key


class QDQEdit(Protocol):
    """A change to a QDQ model's quantized constants (BiasCorrection, GPTQRounding); returns how many layers moved."""

    def apply(self, model) -> int: ...


def quantizable_layers(path: Path) -> list[LayerPlan]:
    """Conv/Gemm/MatMul nodes with constant weights, as plan layers with their MACs and weight counts, and MatMuls of two
    activations (attention's q k^T and softmax(.) v: onnxruntime quantizes both inputs), with no weights, named
    `<module>/<op>` (one module holds two of them), so mixed precision can return them to float like any layer."""
    onnx = require("onnx", "quantization")
    model = onnx.load(str(path))
    inits = {i.name: int(np.prod(i.dims)) for i in model.graph.initializer}
    macs = onnx_counts(path)["macs_by_node"]
    layers = []
    for n in model.graph.node:
        if n.op_type not in QUANTIZABLE_OPS or len(n.input) < 2:
            continue
        if n.input[1] in inits:
            layers.append(LayerPlan(name=layer_name(n.name), op=n.op_type, node=n.name, macs=macs.get(n.name, 0),
                                    weights=inits[n.input[1]]))
        elif n.op_type == "MatMul" and n.input[0] not in inits:
            paths, op = module_paths(n.name), (n.name.strip("/").split("/") or [n.name])[-1]
            name = f"{paths[-1]}/{op}" if paths else op
            layers.append(LayerPlan(name=name, op=n.op_type, node=n.name, macs=macs.get(n.name, 0), weights=0))
    return layers


def tensor_ranges(fp32, plan: QuantPlan) -> dict[str, tuple[float, float]]:
    """Plan ranges keyed by this graph's tensor names. `fp32`: the model's path, or the model loaded."""
    onnx = require("onnx", "quantization")
    model = onnx.load(str(fp32)) if isinstance(fp32, (str, Path)) else fp32
    out = {}
    for inp in model.graph.input:
        if f"input:{inp.name}" in plan.ranges:
            out[inp.name] = tuple(plan.ranges[f"input:{inp.name}"])
    for node in model.graph.node:
        for i, name in enumerate(node.output):
            key = tensor_key(node.name, i)
            if key in plan.ranges:
                out[name] = tuple(plan.ranges[key])
    return out


# Ops onnxruntime's QDQ quantizer would wrap that the CPU execution provider has no integer kernel for: it runs them as
# DequantizeLinear -> float op -> QuantizeLinear, so QDQ around them only adds rounding (and clipping) error, on tensors
# the plan cannot return to float (a pre-activation ResNet's BatchNorm on the residual stream, a transformer's LayerNorm).
NO_INTEGER_KERNEL = ("BatchNormalization", "LayerNormalization", "InstanceNormalization")
# Layers whose QDQ form runs in integer with a float output (QGemm without an output scale, MatMulIntegerToFloat):
# quantizing their output only to dequantize it for a float consumer costs accuracy and buys nothing.
FLOAT_OUTPUT_OK = ("Gemm", "MatMul")


# Ops that join or pool tensors, which onnxruntime's QDQ registry leaves out but its CPU execution provider runs in
# integer (QLinearAdd, QLinearConcat, QLinearGlobalAveragePool) when the tensors around them are quantized; its
# quantize_static quantizes them by default. edgekit quantizes one only where that adds no rounding (integer_joins).
JOINING_OPS = ("Add", "Concat", "GlobalAveragePool")


def quantized_op_types() -> list[str]:
    from onnxruntime.quantization.registry import QDQRegistry

    return [op for op in QDQRegistry if op not in NO_INTEGER_KERNEL]


def integer_joins(model, float_nodes: set[str]) -> set[str]:
    """Names of the JOINING_OPS nodes whose quantization adds no rounding step, only removes a DequantizeLinear ->
    float op -> QuantizeLinear detour: every tensor a join reads is rounded already (an INT8 layer's output, a kept
    join's, or either through ops that pass quantized values on: ReLU, reshapes, max-pooling), and every op its
    output reaches through such ops is an INT8 layer or a kept join, at least one of them a layer, which rounds it
    anyway. The largest set that holds, found by dropping the joins that break it until none does.

    Measured (2026-12-05, 2,000 unseen images): gaze360_temporal's and l2cs_bins' pooling between an INT8 conv and an
    INT8 linear layer now runs in integer, the same mean, p99 and largest difference from FP32, 2-3% faster. Quantizing
    every join instead, as ORT's quantize_static does: GazeResNet18's last residual Add and pooling (rounding the
    block's output before the pooling) cost 0.019 deg of mean difference for 1.5% of latency, and StnGaze's pooling
    read by a float layer raised its largest difference from 4.6 to 12.4 deg."""
    integer = set(quantized_op_types())
    graph = model.graph
    producer = {o: n for n in graph.node for o in n.output}
    readers: dict[str, list] = {}
    for n in graph.node:
        for i in n.input:
            readers.setdefault(i, []).append(n)
    outputs = {o.name for o in graph.output}
    initializers = {i.name for i in graph.initializer}
    joins = {n.name for n in graph.node if n.op_type in JOINING_OPS and n.name not in float_nodes}

    def is_layer(node) -> bool:
        return node.op_type in QUANTIZABLE_OPS and node.name not in float_nodes

    def passes_on(node) -> bool:
        return node.op_type in integer and node.op_type not in QUANTIZABLE_OPS and node.name not in float_nodes

    def rounded(tensor: str) -> bool:
        """Whether the tensor is an INT8 tensor before any join is quantized (or a kept join's output). A graph
        input is when an INT8 layer reads it; a constant never is (a join would round it to the activations' scale)."""
        node = producer.get(tensor)
        if node is None:
            return tensor not in initializers and any(is_layer(r) for r in readers.get(tensor, []))
        if node.name in joins:
            return True
        if is_layer(node):
            # a Gemm/MatMul read only by float ops keeps a float output (_float_outputs_for_float_consumers)
            return node.op_type not in FLOAT_OUTPUT_OK or any(
                is_layer(r) or passes_on(r) for r in readers.get(tensor, []))
        return passes_on(node) and bool(node.input) and rounded(node.input[0])

    def reached(tensor: str) -> list | None:
        """The ops `tensor` reaches through ops that pass quantized values on; None when it reaches a graph output."""
        if tensor in outputs:
            return None
        found = []
        for r in readers.get(tensor, []):
            if passes_on(r):
                further = [reached(o) for o in r.output]
                if any(f is None for f in further):
                    return None
                found += [node for f in further for node in f]
            else:
                found.append(r)
        return found

    changed = True
    while changed:
        changed = False
        for n in [n for n in graph.node if n.name in joins]:
            reads = all(rounded(i) for i in n.input if i)
            ends = [reached(o) for o in n.output]
            if not (reads and all(e is not None and e and all(is_layer(r) or r.name in joins for r in e)
                                  and any(is_layer(r) for r in e) for e in ends)):
                joins.discard(n.name)
                changed = True
    return joins


def _with_inferred_shapes(model):
    """onnxruntime's load_model_with_shape_infer, in memory: it writes the inferred copy with onnx's C++ writer, which
    on a full disk leaves a truncated file without an error, and the quantizer then failed on "Wire format was
    corrupt" instead of the disk (measured on a 16 MB tmpfs). Models over 2 GB would need its file round trip."""
    from onnxruntime.quantization.quant_utils import add_infer_metadata

    inferred = require("onnx", "quantization").shape_inference.infer_shapes(model)
    add_infer_metadata(inferred)
    return inferred


class QDQBuilder:
    """QDQ models of one FP32 ONNX model, one per plan: the model is loaded and its shapes inferred once, and each plan
    quantizes a copy (GazeResNet18: 0.16 s of each 0.48 s model; ptq builds one per observer and per layer it judges)."""

    def __init__(self, fp32: Path):
        require("onnxruntime", "quantization")
        self.fp32 = require("onnx", "quantization").load(str(fp32))
        self._inferred = _with_inferred_shapes(self.fp32)
        self._thread: ThreadPoolExecutor | None = None

    def __enter__(self) -> QDQBuilder:
        return self

    def __exit__(self, *exc) -> None:
        if self._thread is not None:
            self._thread.shutdown(wait=True, cancel_futures=True)

    def build_ahead(self, plan: QuantPlan, out: Path, edits: Sequence[QDQEdit] = ()) -> Future[Path]:
        """build() in the builder's own thread: quantizing is Python, while onnxruntime leaves the interpreter free as
        it runs, so the next plan's model builds on the other core while the caller judges this one."""
        if self._thread is None:
            self._thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="qdq-builder")
        return self._thread.submit(self.build, plan, out, edits)

    def build(self, plan: QuantPlan, out: Path, edits: Sequence[QDQEdit] = ()) -> Path:
        """The plan as a QDQ model written to `out`, `edits` applied to it in order: GPTQ's rounding of the INT8
        weights (weight_rounding.py), then bias correction (bias_correction.py), which reads the weights as rounded."""
        onnx = require("onnx", "quantization")
        from onnxruntime.quantization import QuantType
        from onnxruntime.quantization.calibrate import CalibrationMethod, TensorData, TensorsData
        from onnxruntime.quantization.qdq_quantizer import QDQQuantizer
        ranges = tensor_ranges(self.fp32, plan)
        data = TensorsData(CalibrationMethod.MinMax, {k: TensorData(lowest=np.float32(lo), highest=np.float32(hi))
                                                      for k, (lo, hi) in ranges.items()})
        model = onnx.ModelProto()
        model.CopyFrom(self._inferred)  # the quantizer edits the model it is given
        excluded = {lp.node for lp in plan.layers if not lp.int8}
        joins = integer_joins(model, excluded)
        excluded |= {n.name for n in model.graph.node if n.op_type in JOINING_OPS and n.name not in joins}
        logging.getLogger("root").setLevel(logging.ERROR)  # the quantizer logs a pre-processing hint on every call
        quantizer = QDQQuantizer(model, True, plan.weights.get("bits", 8) < 8,
                                 QuantType.QInt8, QuantType.QUInt8, data, [], sorted(excluded),
                                 quantized_op_types() + list(JOINING_OPS),
                                 {"WeightSymmetric": True, "ActivationSymmetric": False})
        quantizer.quantize_model()
        _float_outputs_for_float_consumers(quantizer.model.model, self.fp32)
        for edit in edits:
            edit.apply(quantizer.model.model)
        out.parent.mkdir(parents=True, exist_ok=True)
        quantizer.model.save_model_to_file(str(out), False)
        return out


def apply_plan(fp32: Path, plan: QuantPlan, out: Path, edits: Sequence[QDQEdit] = ()) -> Path:
    """The plan as a QDQ model of the FP32 model at `fp32`, written to `out` (QDQBuilder.build)."""
    return QDQBuilder(fp32).build(plan, out, edits)


def _float_outputs_for_float_consumers(model, fp32_model) -> None:
    """Drop the Q/DQ pair on a Gemm/MatMul output read only by float ops (the gaze head feeding the output
    normalisation, a projection feeding Softmax) or that is the graph output itself (a head regressing pitch and yaw):
    the layer still runs in integer (QGemm with a float output), its output is not rounded to 8 bits nor clipped at the
    calibrated range (which clips every sample beyond the calibration extremes: the largest differences from FP32;
    mpiigaze_lenet's yaw of -0.745 rad was clipped at -0.685, 3.3 deg). Conv outputs keep theirs: onnxruntime's
    integer Conv needs a quantized output. Nor when the quantizer folded a following Relu/Clip into the output's range
    (the layer then writes the activation's tensor): the Q/DQ pair is that activation. (A quantized join never reads
    such an output alone: integer_joins counts a Gemm/MatMul output as INT8 only when an op quantized anyway reads it
    too.)"""
    graph = model.graph
    own_output = {n.name: n.output[0] for n in fp32_model.graph.node}
    producer = {o: n for n in graph.node for o in n.output}
    consumers: dict[str, list] = {}
    for n in graph.node:
        for i in n.input:
            consumers.setdefault(i, []).append(n)
    quantized = set(quantized_op_types()) | {"QuantizeLinear", "DequantizeLinear"}
    graph_outputs = {o.name for o in graph.output}
    drop = []
    for q in [n for n in graph.node if n.op_type == "QuantizeLinear"]:
        src = producer.get(q.input[0])
        if src is None or src.op_type not in FLOAT_OUTPUT_OK:
            continue
        dqs = consumers.get(q.output[0], [])
        if len(dqs) != 1 or dqs[0].op_type != "DequantizeLinear" or len(consumers.get(q.input[0], [])) != 1:
            continue
        # the layer's own output (for a graph output the quantizer renames the layer's side: DequantizeLinear writes it)
        graph_output = dqs[0].output[0] if dqs[0].output[0] in graph_outputs else None
        if own_output.get(src.name) not in (q.input[0], graph_output):
            continue
        readers = consumers.get(dqs[0].output[0], [])
        if any(r.op_type in quantized for r in readers):
            continue
        if graph_output:
            src.output[0] = graph_output  # the layer writes the graph output itself (its readers read it by name)
        else:
            for r in readers:
                for k, name in enumerate(r.input):
                    if name == dqs[0].output[0]:
                        r.input[k] = q.input[0]
        drop += [q, dqs[0]]
    for n in drop:
        graph.node.remove(n)
    used = {i for n in graph.node for i in n.input}
    for init in [i for i in graph.initializer if i.name not in used and any(i.name in n.input for n in drop)]:
        graph.initializer.remove(init)


def weight_error(fp32, layer: LayerPlan, bits: int) -> float:
    """Relative RMS error of per-output-channel symmetric INT8 (or 7-bit) weights of one layer. `fp32`: the model's
    path, or the model loaded once for every layer (GazeResNet18's 21 loads took 0.4 s)."""
    onnx = require("onnx", "quantization")
    model = onnx.load(str(fp32)) if isinstance(fp32, (str, Path)) else fp32
    node = next(n for n in model.graph.node if n.name == layer.node)
    w = next((onnx.numpy_helper.to_array(i) for i in model.graph.initializer if i.name == node.input[1]), None)
    if w is None:
        return 0.0  # a MatMul of two activations: no weights to round
    w = w.astype(np.float64)
    axis = 1 if node.op_type == "Gemm" and not any(a.name == "transB" and a.i for a in node.attribute) else 0
    wm = np.moveaxis(w, axis, 0).reshape(w.shape[axis], -1)
    qmax = 2 ** (bits - 1) - 1
    scale = np.maximum(np.abs(wm).max(axis=1, keepdims=True), 1e-12) / qmax
    deq = np.clip(np.round(wm / scale), -qmax, qmax) * scale
    return float(np.sqrt(np.mean((deq - wm) ** 2)) / max(np.sqrt(np.mean(wm**2)), 1e-12))
