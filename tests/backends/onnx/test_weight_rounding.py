"""edgekit/backends/onnx/weight_rounding.py: GPTQ rounds INT8 weights so that layer outputs on the calibration inputs
stay closer to FP32 than nearest rounding, with the quantizer's scales."""

from __future__ import annotations

import functools

import numpy as np
import pytest

onnx = pytest.importorskip("onnx")
pytest.importorskip("onnxruntime")

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402
from onnx import helper, numpy_helper  # noqa: E402

from edgekit.backends.onnx.qdq import apply_plan, quantizable_layers  # noqa: E402
from edgekit.backends.onnx.weight_rounding import (GPTQRounding, InputCorrelations, _patches, gptq,  # noqa: E402
                                                   roundable_layers)
from edgekit.quant.calibration import calibration_run  # noqa: E402
from edgekit.quant.observers import observe  # noqa: E402
from edgekit.quant.plan import QuantPlan, tensor_key  # noqa: E402
from tests.backends.onnx.test_qdq import export_two_conv, images, quantized_input  # noqa: E402


def test_gptq_is_nearest_rounding_for_uncorrelated_inputs_and_beats_it_for_correlated_ones():
    rng = np.random.default_rng(1)
    w = rng.normal(size=(16, 40))
    scale = np.abs(w).max(axis=1) / 64
    nearest = np.clip(np.round(w / scale[:, None]), -64, 64)
    # H diagonal: no column can compensate another, so GPTQ rounds each weight to its nearest step
    assert np.array_equal(gptq(w, scale, -64, 64, np.diag(rng.uniform(1, 2, 40))), nearest)
    x = rng.normal(size=(2000, 40)) @ rng.normal(size=(40, 40))  # correlated inputs
    q = gptq(w, scale, -64, 64, x.T @ x)
    assert q.min() >= -64 and q.max() <= 64 and not np.array_equal(q, nearest)
    output_error = lambda ints: float(np.mean((x @ (ints * scale[:, None] - w).T) ** 2))  # noqa: E731
    assert output_error(q) < 0.7 * output_error(nearest), (output_error(q), output_error(nearest))


@pytest.mark.parametrize("stride, pads, dilation, group", [(2, [1, 1, 1, 1], 1, 1), (1, [0, 2, 1, 0], 2, 2)])
def test_conv_patches_are_the_unfolded_input_in_the_weights_order(stride, pads, dilation, group):
    x = np.random.default_rng(0).normal(size=(3, 4, 9, 11)).astype(np.float32)
    weight = np.zeros((6, 4 // group, 3, 2), np.float32)
    node = helper.make_node("Conv", ["x", "w"], ["y"], strides=[stride] * 2, pads=pads, dilations=[dilation] * 2, group=group)
    rows = _patches(node, weight, x, rows=10**6, rng=np.random.default_rng(0))  # more than there are: every patch
    padded = F.pad(torch.from_numpy(x), [pads[1], pads[3], pads[0], pads[2]])
    unfolded = F.unfold(padded, (3, 2), dilation=dilation, stride=stride)  # [image, channel x kh x kw, position]
    assert np.array_equal(rows, unfolded.transpose(1, 2).reshape(-1, unfolded.shape[1]).numpy())
    fewer = _patches(node, weight, x, rows=7, rng=np.random.default_rng(0))
    assert len(fewer) == 7 and all(any(np.array_equal(r, a) for a in rows) for r in fewer)


def test_rounded_layers_keep_their_scales_and_miss_their_float_outputs_by_less(tmp_path):
    fp32 = export_two_conv(tmp_path / "two_conv.onnx")
    model = onnx.load(str(fp32))
    x = images("calib", 64)
    layers = roundable_layers(model)
    assert set(layers) == {"/conv1/Conv", "/conv2/Conv"}
    correlations = InputCorrelations(model, layers, len(x))
    stats, _ = calibration_run(fp32, {"image": x}, also_read={t: functools.partial(correlations.add, t)
                                                              for t in correlations.tensors()})
    producers = {out: tensor_key(n.name, i) for n in model.graph.node for i, out in enumerate(n.output)}
    ranges = {producers.get(t, f"input:{t}"): [float(v) for v in observe(s, "minmax")] for t, s in stats.items()}
    plan = QuantPlan(weights={"bits": 7}, layers=quantizable_layers(fp32), ranges=ranges)
    rounding = GPTQRounding(correlations, bits=7)
    nearest = onnx.load(str(apply_plan(fp32, plan, tmp_path / "nearest.onnx")))
    rounded = onnx.load(str(apply_plan(fp32, plan, tmp_path / "gptq.onnx", [rounding])))
    weight = torch.from_numpy(numpy_helper.to_array(next(i for i in model.graph.initializer if i.name == "conv2.weight")).copy())
    inputs = torch.relu(F.conv2d(torch.from_numpy(x), torch.from_numpy(numpy_helper.to_array(
        next(i for i in model.graph.initializer if i.name == "conv1.weight"))), stride=2, padding=1))
    quantized = {}
    for label, m in (("nearest", nearest), ("gptq", rounded)):
        ints, scale = quantized_input(m, "/conv2/Conv", 1)
        assert ints.dtype == np.int8 and np.abs(ints).max() <= 64  # 7-bit weights: the quantizer's reduce_range
        quantized[label] = (ints, scale)
    assert np.array_equal(quantized["nearest"][1], quantized["gptq"][1])  # the same scales: only the integers moved
    assert not np.array_equal(quantized["nearest"][0], quantized["gptq"][0])
    miss = {label: float(((F.conv2d(inputs, torch.from_numpy(ints * scale[:, None, None, None]), stride=2, padding=1)
                           - F.conv2d(inputs, weight, stride=2, padding=1)) ** 2).mean())
            for label, (ints, scale) in quantized.items()}  # conv2 on its FP32 inputs, the ones H was summed from
    assert miss["gptq"] < 0.8 * miss["nearest"], miss
    mixed = plan.with_float({"conv2"}, "test")  # a float layer has no integers to round
    a = onnx.load(str(apply_plan(fp32, mixed, tmp_path / "a.onnx", [rounding])))
    assert rounding.apply(a) == 1  # conv1 only
