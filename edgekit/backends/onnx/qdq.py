"""Apply a quantization plan to an FP32 ONNX model as QDQ, with onnxruntime's QDQ quantizer.

edgekit computes the ranges (its observers) and decides the layers (the plan); onnxruntime's
quantizer places QuantizeLinear/DequantizeLinear pairs the way its kernels fuse them.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

from edgekit._optional import require
from edgekit.backends.onnx.graph import onnx_counts
from edgekit.quant.plan import QUANTIZABLE_OPS, LayerPlan, QuantPlan, layer_name, tensor_key


def quantizable_layers(path: Path) -> list[LayerPlan]:
    """Conv/Gemm/MatMul nodes with constant weights, as plan layers with their MACs and weight counts."""
    onnx = require("onnx", "quantization")
    model = onnx.load(str(path))
    inits = {i.name: int(np.prod(i.dims)) for i in model.graph.initializer}
    macs = onnx_counts(path)["macs_by_node"]
    return [LayerPlan(name=layer_name(n.name), op=n.op_type, node=n.name, macs=macs.get(n.name, 0), weights=inits[n.input[1]])
            for n in model.graph.node if n.op_type in QUANTIZABLE_OPS and len(n.input) > 1 and n.input[1] in inits]


def tensor_ranges(path: Path, plan: QuantPlan) -> dict[str, tuple[float, float]]:
    """Plan ranges keyed by this graph's tensor names."""
    onnx = require("onnx", "quantization")
    model = onnx.load(str(path))
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


def apply_plan(fp32: Path, plan: QuantPlan, out: Path) -> Path:
    require("onnxruntime", "quantization")
    from onnxruntime.quantization import QuantType
    from onnxruntime.quantization.calibrate import CalibrationMethod, TensorData, TensorsData
    from onnxruntime.quantization.qdq_quantizer import QDQQuantizer
    from onnxruntime.quantization.quant_utils import load_model_with_shape_infer
    from onnxruntime.quantization.registry import QDQRegistry

    ranges = tensor_ranges(fp32, plan)
    data = TensorsData(CalibrationMethod.MinMax, {k: TensorData(lowest=np.float32(lo), highest=np.float32(hi))
                                                  for k, (lo, hi) in ranges.items()})
    excluded = [lp.node for lp in plan.layers if not lp.int8]
    logging.getLogger("root").setLevel(logging.ERROR)  # the quantizer logs a pre-processing hint on every call
    quantizer = QDQQuantizer(load_model_with_shape_infer(Path(fp32)), True, plan.weights.get("bits", 8) < 8,
                             QuantType.QInt8, QuantType.QUInt8, data, [], excluded, list(QDQRegistry),
                             {"WeightSymmetric": True, "ActivationSymmetric": False})
    quantizer.quantize_model()
    out.parent.mkdir(parents=True, exist_ok=True)
    quantizer.model.save_model_to_file(str(out), False)
    return out


def weight_error(fp32: Path, layer: LayerPlan, bits: int) -> float:
    """Relative RMS error of per-output-channel symmetric INT8 (or 7-bit) weights of one layer."""
    onnx = require("onnx", "quantization")
    model = onnx.load(str(fp32))
    node = next(n for n in model.graph.node if n.name == layer.node)
    w = next(onnx.numpy_helper.to_array(i) for i in model.graph.initializer if i.name == node.input[1]).astype(np.float64)
    axis = 1 if node.op_type == "Gemm" and not any(a.name == "transB" and a.i for a in node.attribute) else 0
    wm = np.moveaxis(w, axis, 0).reshape(w.shape[axis], -1)
    qmax = 2 ** (bits - 1) - 1
    scale = np.maximum(np.abs(wm).max(axis=1, keepdims=True), 1e-12) / qmax
    deq = np.clip(np.round(wm / scale), -qmax, qmax) * scale
    return float(np.sqrt(np.mean((deq - wm) ** 2)) / max(np.sqrt(np.mean(wm**2)), 1e-12))
