"""Bias correction: remove through each INT8 layer's bias the mean output shift its rounded weights cause.

Rounding a layer's weights W to W_q moves every output channel's mean by (W_q - W) applied to the mean input. A Conv or
Gemm is linear, so that shift is exactly the layer applied, with weights W_q - W and no bias, to the calibration set's
mean input (a map: padding and borders included), averaged over the output positions. The INT8 bias gets the opposite,
as NNCF's fast bias correction and Nagel et al. 2019 ("Data-Free Quantization", section 4.2, the empirical form) do.
The mean inputs come from the FP32 calibration run (quant.calibration.calibration_run's `mean_of`), one run for every
plan judged, over the even-numbered calibration samples: ptq judges the correction on the others. A prototype that
took them from each quantized model instead (session 30, 4 models, both weight widths) gave mean differences from
FP32 within 0.002 deg of these; the largest moved both ways, by up to 0.18 deg.
ptq judges the corrected plan against the uncorrected one (benchmarks/int8_bias_correction.md says why).
"""

from __future__ import annotations

import numpy as np

CORRECTED_OPS = ("Conv", "Gemm")


def _attributes(node) -> dict:
    from onnx import helper

    return {a.name: helper.get_attribute_value(a) for a in node.attribute}


def correctable_inputs(model) -> dict[str, str]:
    """{node name: its input tensor} for every Conv/Gemm of the FP32 model with constant weights and a constant bias."""
    constants = {i.name for i in model.graph.initializer}
    return {n.name: n.input[0] for n in model.graph.node
            if n.op_type in CORRECTED_OPS and len(n.input) > 2 and n.input[1] in constants and n.input[2] in constants}


class BiasCorrection:
    """The FP32 weights and mean inputs of the correctable layers; `apply` corrects a QDQ model's INT8 biases."""

    def __init__(self, fp32_model, input_means: dict[str, np.ndarray]):
        from onnx import numpy_helper

        constants = {i.name: i for i in fp32_model.graph.initializer}
        nodes = {n.name: n for n in fp32_model.graph.node}
        self.input_means = input_means
        self.weights = {name: numpy_helper.to_array(constants[nodes[name].input[1]]).astype(np.float64)
                        for name in input_means}
        self._shifts: dict[str, np.ndarray | None] = {}  # per node: a layer's rounded weights are the same in every plan

    def apply(self, model) -> int:
        """Correct, in place, the int32 bias of every INT8 Conv/Gemm of `model` (a QDQ ModelProto) it has the mean input
        of; a bias shared by several layers gets their mean correction. Returns how many biases moved."""
        from onnx import numpy_helper

        graph = model.graph
        constants = {i.name: i for i in graph.initializer}
        producer = {o: n for n in graph.node for o in n.output}
        per_bias: dict[str, list[np.ndarray]] = {}
        for node in graph.node:
            if node.name not in self.input_means or node.op_type not in CORRECTED_OPS or len(node.input) < 3:
                continue
            bias = producer.get(node.input[2])
            if bias is None or bias.op_type != "DequantizeLinear" or bias.input[0] not in constants:
                continue  # a float layer (its bias not quantized): nothing rounded its weights
            shift = self._shift(node, producer, constants)
            if shift is not None:
                per_bias.setdefault(node.input[2], []).append(shift)
        for tensor, shifts in per_bias.items():
            bias = producer[tensor]
            stored = constants[bias.input[0]]
            scale = numpy_helper.to_array(constants[bias.input[1]]).astype(np.float64)
            step = np.divide(-np.mean(shifts, axis=0), scale, out=np.zeros_like(shifts[0]), where=scale > 0)
            corrected = numpy_helper.to_array(stored).astype(np.int64) + np.round(step).astype(np.int64)
            info = np.iinfo(np.int32)
            stored.CopyFrom(numpy_helper.from_array(np.clip(corrected, info.min, info.max).astype(np.int32), stored.name))
        return len(per_bias)

    def _shift(self, node, producer, constants) -> np.ndarray | None:
        """The mean output shift per channel that the node's rounded weights cause (None: weights not INT8 constants, or
        a layout not handled)."""
        if node.name not in self._shifts:
            rounded = _dequantized(node.input[1], producer, constants)
            self._shifts[node.name] = None if rounded is None else _layer_shift(
                node, rounded - self.weights[node.name], self.input_means[node.name])
        return self._shifts[node.name]


def _dequantized(tensor: str, producer, constants) -> np.ndarray | None:
    """A DequantizeLinear of constant integers, computed (per-axis scales broadcast along its axis)."""
    from onnx import numpy_helper

    dq = producer.get(tensor)
    if dq is None or dq.op_type != "DequantizeLinear" or any(i and i not in constants for i in dq.input):
        return None
    values = numpy_helper.to_array(constants[dq.input[0]]).astype(np.float64)
    scale = numpy_helper.to_array(constants[dq.input[1]]).astype(np.float64)
    zero = numpy_helper.to_array(constants[dq.input[2]]).astype(np.float64) if len(dq.input) > 2 and dq.input[2] else 0.0
    if scale.ndim == 1:
        shape = [1] * values.ndim
        shape[_attributes(dq).get("axis", 1)] = -1
        scale, zero = scale.reshape(shape), np.reshape(zero, shape) if np.ndim(zero) else zero
    return (values - zero) * scale


def _layer_shift(node, weight_error: np.ndarray, mean_input: np.ndarray) -> np.ndarray | None:
    attrs = _attributes(node)
    if node.op_type == "Gemm":
        if attrs.get("transA", 0) or not attrs.get("beta", 1.0) or mean_input.ndim != 1:
            return None
        per_output = weight_error if attrs.get("transB", 0) else weight_error.T  # [outputs, inputs]
        return per_output @ mean_input * attrs.get("alpha", 1.0) / attrs.get("beta", 1.0)
    if attrs.get("auto_pad", b"NOTSET") not in (b"NOTSET", "NOTSET"):
        return None  # the exporter writes explicit pads; an implicit one's split is not worth guessing here
    import torch
    import torch.nn.functional as F

    dims = weight_error.ndim - 2
    conv = {1: F.conv1d, 2: F.conv2d, 3: F.conv3d}.get(dims)
    if conv is None or mean_input.ndim != dims + 1:
        return None
    pads = attrs.get("pads", [0] * 2 * dims)
    padding = [p for d in reversed(range(dims)) for p in (pads[d], pads[d + dims])]  # F.pad: last axis first
    x = F.pad(torch.from_numpy(mean_input)[None], padding)
    y = conv(x, torch.from_numpy(weight_error), stride=attrs.get("strides", 1), dilation=attrs.get("dilations", 1),
             groups=attrs.get("group", 1))
    return y[0].flatten(1).mean(dim=1).numpy()
