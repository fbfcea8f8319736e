"""GPTQ weight rounding: round each INT8 layer's weights so that its outputs on the calibration inputs stay closest.

Rounding every weight to the nearest step ignores that a layer's output errors are sums: rounding one weight up can
be compensated by the weights that read correlated inputs. GPTQ (Frantar et al. 2022, "GPTQ: Accurate Post-Training
Quantization for Generative Pre-trained Transformers", after Optimal Brain Quantization) rounds one input column at a
time and moves the columns not yet rounded by the error times the inverse of H = X^T X, the layer's input
correlations over the calibration set; the scales stay those of the nearest rounding, so only the integers change.
The issue's candidate was AdaRound-style rounding on the calibration set: this is the closed-form member of that
family (no per-layer optimisation loop). Its libraries (AutoGPTQ, GPTQModel, onnxruntime's 4-bit MatMul quantizer)
round transformer MatMuls only, not convolutions in a QDQ model, so it is written here.

X is each layer's input as the layer reads it (a convolution's input patches), from the FP32 calibration run
(quant.calibration.calibration_run's `also_read`) on the even-numbered calibration samples (ptq judges the rounding on
the others); rows are a fixed pseudo-random sample of the (image, position) pairs, at most ROWS_PER_COLUMN per weight
column, so its cost grows with the layer's width squared, not the images'.
"""

from __future__ import annotations

import math

import numpy as np

from edgekit.backends.onnx.bias_correction import _attributes

ROUNDED_OPS = ("Conv", "Gemm", "MatMul")
# Layers wider than this (weights per output channel) keep the nearest rounding: H is columns^2 and GPTQ's cost
# columns^3. On GazeResNet18 (prototype, 2,000 unseen images, 7-bit weights) rounding only the layers up to 1,152
# columns gave a mean difference from FP32 of 0.162 deg, up to 2,304 0.161 and every layer 0.164 (nearest: 0.217),
# while the 4,608-column layers took most of the time.
MAX_COLUMNS = 1152
ROWS_PER_COLUMN = 16  # sampled patches per column of H; 4 (strided) made GazeResNet18 worse than nearest rounding
MIN_ROWS = 4096
DAMPING = 0.01  # of H's mean diagonal, added to its diagonal (GPTQ's own default): H is singular for dead inputs
BLOCK = 128  # columns rounded before the rest are updated at once (GPTQ's lazy batch update)


def _columns(node, weight: np.ndarray) -> int | None:
    """Weights per output channel and group (the width of H), or None when the layer is not handled."""
    if node.op_type == "Conv":
        if weight.ndim not in (3, 4) or _attributes(node).get("auto_pad", b"NOTSET") not in (b"NOTSET", "NOTSET"):
            return None
        return int(np.prod(weight.shape[1:]))
    if weight.ndim != 2 or (node.op_type == "Gemm" and _attributes(node).get("transA", 0)):
        return None
    return int(weight.shape[1] if node.op_type == "Gemm" and _attributes(node).get("transB", 0) else weight.shape[0])


def roundable_layers(model) -> dict[str, str]:
    """{node name: its input tensor} for every Conv/Gemm/MatMul of the FP32 model with constant weights GPTQ handles."""
    from onnx import numpy_helper

    constants = {i.name: i for i in model.graph.initializer}
    found = {}
    for n in model.graph.node:
        if n.op_type in ROUNDED_OPS and len(n.input) > 1 and n.input[1] in constants:
            columns = _columns(n, numpy_helper.to_array(constants[n.input[1]]))
            if columns is not None and columns <= MAX_COLUMNS:
                found[n.name] = n.input[0]
    return found


class InputCorrelations:
    """H = X^T X per layer (and group), summed over the calibration batches handed to `add`."""

    def __init__(self, model, layers: dict[str, str], samples: int):
        from onnx import numpy_helper

        constants = {i.name: i for i in model.graph.initializer}
        self.nodes = {n.name: n for n in model.graph.node if n.name in layers}
        self.weights = {name: numpy_helper.to_array(constants[n.input[1]]) for name, n in self.nodes.items()}
        self.readers: dict[str, list[str]] = {}
        for name, tensor in layers.items():
            self.readers.setdefault(tensor, []).append(name)
        self.samples = samples
        self.sums: dict[str, np.ndarray] = {}
        self._rng = np.random.default_rng(0)  # the same rows on every run: the artifact is reproducible on one host

    def tensors(self) -> set[str]:
        return set(self.readers)

    def add(self, tensor: str, batch: np.ndarray) -> None:
        for name in self.readers.get(tensor, ()):
            node, weight = self.nodes[name], self.weights[name]
            rows = _patches(node, weight, batch, self._rows(node, weight, len(batch)), self._rng)
            groups = _attributes(node).get("group", 1) if node.op_type == "Conv" else 1
            rows = rows.reshape(len(rows), groups, -1).transpose(1, 0, 2)  # [group, rows, columns]
            h = np.matmul(rows.transpose(0, 2, 1), rows).astype(np.float64)
            self.sums[name] = self.sums.get(name, 0) + h

    def _rows(self, node, weight: np.ndarray, batch: int) -> int:
        """This batch's share of the layer's rows."""
        return math.ceil(max(MIN_ROWS, ROWS_PER_COLUMN * _columns(node, weight)) * batch / self.samples)


def _patches(node, weight: np.ndarray, x: np.ndarray, rows: int, rng) -> np.ndarray:
    """`rows` of the layer's input as it multiplies them by its weights ([rows, columns], a convolution's patches in
    its weights' (channel, kernel position) order), sampled without replacement; all of them when there are fewer."""
    x = x.astype(np.float32, copy=False)
    if node.op_type != "Conv":
        flat = x.reshape(-1, x.shape[-1])
        return flat[np.sort(rng.choice(len(flat), rows, replace=False))] if len(flat) > rows else flat
    attrs = _attributes(node)
    if weight.ndim == 3:  # Conv1d as a Conv2d of height 1
        x, kernel = x[:, :, None, :], (1, weight.shape[2])
        strides, dilations = [1, *attrs.get("strides", [1])], [1, *attrs.get("dilations", [1])]
        pads = attrs.get("pads", [0, 0])
        pads = [0, pads[0], 0, pads[1]]
    else:
        kernel = weight.shape[2:]
        strides, dilations = attrs.get("strides", [1, 1]), attrs.get("dilations", [1, 1])
        pads = attrs.get("pads", [0, 0, 0, 0])
    x = np.pad(x, ((0, 0), (0, 0), (pads[0], pads[2]), (pads[1], pads[3])))
    out_h = (x.shape[2] - dilations[0] * (kernel[0] - 1) - 1) // strides[0] + 1
    out_w = (x.shape[3] - dilations[1] * (kernel[1] - 1) - 1) // strides[1] + 1
    total = len(x) * out_h * out_w
    pick = np.sort(rng.choice(total, rows, replace=False)) if total > rows else np.arange(total)
    image, pos = np.divmod(pick, out_h * out_w)
    oy, ox = np.divmod(pos, out_w)
    iy = oy[:, None] * strides[0] + np.arange(kernel[0]) * dilations[0]  # [rows, kh]
    ix = ox[:, None] * strides[1] + np.arange(kernel[1]) * dilations[1]  # [rows, kw]
    patches = x[image[:, None, None], :, iy[:, :, None], ix[:, None, :]]  # [rows, kh, kw, channels]
    return patches.transpose(0, 3, 1, 2).reshape(len(pick), -1)


def gptq(weight: np.ndarray, scale: np.ndarray, qmin: int, qmax: int, h: np.ndarray) -> np.ndarray:
    """Integers for `weight` [outputs, columns] at per-output `scale`, rounded column by column with the rest
    compensated through H's inverse (GPTQ's algorithm 1, lazy batch updates, no column reordering)."""
    w = weight.astype(np.float64, copy=True)
    h = h.astype(np.float64, copy=True)
    dead = np.diag(h) == 0  # an input that was always zero: its weights do not matter, round them to zero
    h[dead, dead] = 1.0
    w[:, dead] = 0.0
    h[np.diag_indices_from(h)] += DAMPING * np.mean(np.diag(h))
    # the upper Cholesky factor of H^-1: with P the reversal, H^-1 = U^T U for U = P L^-1 P where P H P = L L^T
    lower = np.linalg.cholesky(h[::-1, ::-1])
    upper = np.linalg.inv(lower)[::-1, ::-1]  # triangular: a solve would be as slow in numpy for these widths
    q = np.zeros_like(w)
    columns = w.shape[1]
    for start in range(0, columns, BLOCK):
        end = min(start + BLOCK, columns)
        block, errors, hinv = w[:, start:end].copy(), np.zeros((len(w), end - start)), upper[start:end, start:end]
        for i in range(end - start):
            q[:, start + i] = np.clip(np.round(block[:, i] / scale), qmin, qmax)
            errors[:, i] = (block[:, i] - q[:, start + i] * scale) / hinv[i, i]
            block[:, i:] -= np.outer(errors[:, i], hinv[i, i:])
        w[:, end:] -= errors @ upper[start:end, end:]
    return q


class GPTQRounding:
    """The FP32 weights and input correlations of the roundable layers; `apply` re-rounds a QDQ model's INT8 weights."""

    def __init__(self, correlations: InputCorrelations, bits: int):
        from onnx import TensorProto
        from onnxruntime.quantization.quant_utils import get_qmin_qmax_for_qType

        self.correlations = correlations
        # the integers' range is the quantizer's own: 7-bit weights are its reduce_range (-64..64), 8-bit -127..127
        self.qmin, self.qmax = (int(v) for v in get_qmin_qmax_for_qType(TensorProto.INT8, reduce_range=bits < 8,
                                                                         symmetric=True))
        self._done: dict[tuple, np.ndarray] = {}  # per layer and scale: the same integers in every plan judged

    def apply(self, model) -> int:
        """Replace, in place, the INT8 weights of every layer of `model` (a QDQ ModelProto) it has H for, keeping their
        scales. Returns how many layers changed."""
        from onnx import numpy_helper

        constants = {i.name: i for i in model.graph.initializer}
        producer = {o: n for n in model.graph.node for o in n.output}
        readers: dict[str, int] = {}
        for n in model.graph.node:
            for i in n.input:
                readers[i] = readers.get(i, 0) + 1
        changed = 0
        for node in model.graph.node:
            h = self.correlations.sums.get(node.name)
            dq = producer.get(node.input[1]) if h is not None and len(node.input) > 1 else None
            if dq is None or dq.op_type != "DequantizeLinear" or dq.input[0] not in constants:
                continue  # a float layer: nothing was rounded
            stored = constants[dq.input[0]]
            if readers.get(dq.input[0], 0) > 1 or readers.get(node.input[1], 0) > 1:
                continue  # weights shared by several layers: one rounding cannot suit each one's inputs
            values = numpy_helper.to_array(stored)
            scale = numpy_helper.to_array(constants[dq.input[1]]).astype(np.float64)
            zero = numpy_helper.to_array(constants[dq.input[2]]) if len(dq.input) > 2 and dq.input[2] else np.zeros(1)
            if values.dtype != np.int8 or np.any(zero != 0):
                continue  # symmetric INT8 weights only (ptq's): the integers' range is then the quantizer's
            rounded = self._rounded(node, values, scale, h)
            stored.CopyFrom(numpy_helper.from_array(rounded.astype(values.dtype), stored.name))
            changed += 1
        return changed

    def _rounded(self, node, values: np.ndarray, scale: np.ndarray, h: np.ndarray) -> np.ndarray:
        key = (node.name, scale.tobytes())
        if key not in self._done:
            self._done[key] = self._gptq(node, values, scale, h)
        return self._done[key]

    def _gptq(self, node, values: np.ndarray, scale: np.ndarray, h: np.ndarray) -> np.ndarray:
        weight = self.correlations.weights[node.name].astype(np.float64)
        transposed = node.op_type == "MatMul" or (node.op_type == "Gemm" and not _attributes(node).get("transB", 0))
        rows = weight.T if transposed else weight.reshape(len(weight), -1)  # [outputs, columns]
        per_output = np.broadcast_to(scale.reshape(-1), (len(rows),))
        groups = len(h)
        per_group = len(rows) // groups
        q = np.concatenate([gptq(rows[g * per_group:(g + 1) * per_group], per_output[g * per_group:(g + 1) * per_group],
                                 self.qmin, self.qmax, h[g]) for g in range(groups)])
        return q.T if transposed else q.reshape(values.shape)
