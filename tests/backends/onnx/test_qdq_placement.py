"""Where apply_plan puts Q/DQ pairs beyond the plan's layers: ops with no integer kernel stay float, a Gemm read only by
float ops keeps a float output, and MatMuls of two activations are plan layers that mixed precision can return to float.
Each case is a small torch model exported to ONNX and run in onnxruntime (well under a second each)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")

import torch  # noqa: E402
from torch import nn  # noqa: E402

from edgekit.backends.onnx.qdq import apply_plan, quantizable_layers, weight_error  # noqa: E402
from edgekit.quant.calibration import collect  # noqa: E402
from edgekit.quant.observers import observe  # noqa: E402
from edgekit.quant.plan import QuantPlan, tensor_key  # noqa: E402


class PreAct(nn.Module):
    """conv + shortcut -> BatchNorm -> ReLU -> conv (a pre-activation block: the BatchNorm reads an Add, no conv to fold
    into)."""

    def __init__(self):
        super().__init__()
        self.conv1, self.bn, self.conv2 = nn.Conv2d(1, 8, 3, 1, 1), nn.BatchNorm2d(8), nn.Conv2d(8, 4, 3, 1, 1)
        with torch.no_grad():
            self.bn.running_mean.uniform_(-1, 1)
            self.bn.running_var.uniform_(0.5, 2)

    def forward(self, x):
        return self.conv2(torch.relu(self.bn(self.conv1(x) + x))).mean((2, 3))


class Head(nn.Module):
    """conv -> pool -> Linear -> x / |x| (the gaze head: the Linear's output is read only by float ops)."""

    def __init__(self, relu: bool = False):
        super().__init__()
        self.conv, self.fc, self.relu = nn.Conv2d(1, 8, 3, 2, 1), nn.Linear(8, 3), relu

    def forward(self, x):
        y = self.fc(torch.relu(self.conv(x)).mean((2, 3)))
        y = torch.relu(y) + 0.1 if self.relu else y
        return y / y.norm(dim=1, keepdim=True)


class Attention(nn.Module):
    def __init__(self):
        super().__init__()
        self.q, self.k, self.v = nn.Linear(8, 8), nn.Linear(8, 8), nn.Linear(8, 8)

    def forward(self, x):
        att = torch.softmax(torch.matmul(self.q(x), self.k(x).transpose(-2, -1)), dim=-1)
        return torch.matmul(att, self.v(x)).mean(1)


def export(module: nn.Module, shape, path: Path) -> Path:
    torch.onnx.export(module.eval(), (torch.zeros(1, *shape),), str(path), input_names=["x"], output_names=["out"],
                      dynamic_axes={"x": {0: "n"}, "out": {0: "n"}}, opset_version=17, dynamo=False)
    return path


def planned(path: Path, x: np.ndarray) -> QuantPlan:
    graph = onnx.load(str(path)).graph
    producers = {out: tensor_key(n.name, i) for n in graph.node for i, out in enumerate(n.output)}
    ranges = {producers.get(t, f"input:{t}"): [float(v) for v in observe(s, "minmax")]
              for t, s in collect(path, {"x": x}).items()}
    # 7-bit weights, the portable profile's: 8-bit ones saturate in onnxruntime's AVX2 kernels (a CPU without VNNI),
    # and the closeness checks failed there
    return QuantPlan(weights={"bits": 7}, layers=quantizable_layers(path), ranges=ranges)


def run(path: Path, x: np.ndarray) -> np.ndarray:
    return ort.InferenceSession(str(path), providers=["CPUExecutionProvider"]).run(None, {"x": x})[0]


def ops(path: Path) -> list[str]:
    return [n.op_type for n in onnx.load(str(path)).graph.node]


def quantized_inputs(path: Path) -> set[str]:
    """Op types that read a DequantizeLinear output (the ops that see 8-bit values)."""
    g = onnx.load(str(path)).graph
    dq = {n.output[0] for n in g.node if n.op_type == "DequantizeLinear"}
    return {n.op_type for n in g.node if any(i in dq for i in n.input) and n.op_type != "QuantizeLinear"}


def test_batchnorm_outside_the_plan_stays_float(tmp_path):
    """BatchNormalization has no integer kernel in onnxruntime's CPU provider: wrapping it in QDQ only adds rounding on a
    tensor (a pre-activation ResNet's residual stream) that no plan decision could return to float."""
    torch.manual_seed(0)
    x = np.random.default_rng(0).normal(size=(16, 1, 8, 8)).astype(np.float32)
    fp32 = export(PreAct(), (1, 8, 8), tmp_path / "preact.onnx")
    assert "BatchNormalization" in ops(fp32)
    plan = planned(fp32, x)
    all_float = apply_plan(fp32, plan.with_float({lp.name for lp in plan.layers}, "test"), tmp_path / "float.onnx")
    assert "QuantizeLinear" not in ops(all_float)  # every layer float: nothing is quantized at all
    np.testing.assert_allclose(run(all_float, x), run(fp32, x), rtol=1e-5, atol=1e-6)
    int8 = apply_plan(fp32, plan, tmp_path / "int8.onnx")
    assert "BatchNormalization" not in quantized_inputs(int8) and "Conv" in quantized_inputs(int8)


def test_a_gemm_read_only_by_float_ops_keeps_a_float_output(tmp_path):
    torch.manual_seed(0)
    x = np.random.default_rng(1).normal(size=(32, 1, 8, 8)).astype(np.float32)
    fp32 = export(Head(), (1, 8, 8), tmp_path / "head.onnx")
    int8 = apply_plan(fp32, planned(fp32, x), tmp_path / "int8.onnx")
    g = onnx.load(str(int8)).graph
    gemm = next(n for n in g.node if n.op_type == "Gemm")
    producer = {o: n for n in g.node for o in n.output}
    assert producer[gemm.input[1]].op_type == "DequantizeLinear"  # the layer is INT8 (weights and input)
    assert producer[gemm.input[0]].op_type == "DequantizeLinear"
    readers = [n for n in g.node if gemm.output[0] in n.input]
    assert readers and all(n.op_type not in ("QuantizeLinear", "DequantizeLinear") for n in readers)
    used = {i for n in g.node for i in n.input}
    assert all(i.name in used for i in g.initializer)  # the dropped pair's scale and zero point went with it
    cos = np.sum(run(int8, x) * run(fp32, x), axis=1)
    assert np.degrees(np.arccos(np.clip(cos, -1, 1))).max() < 2.0


def test_a_relu_folded_into_the_gemm_output_range_keeps_its_qdq_pair(tmp_path):
    """The quantizer removes a Relu after a Gemm and lets the output's uint8 range do it: that pair is the Relu."""
    torch.manual_seed(0)
    x = np.random.default_rng(2).normal(size=(32, 1, 8, 8)).astype(np.float32)
    fp32 = export(Head(relu=True), (1, 8, 8), tmp_path / "head_relu.onnx")
    int8 = apply_plan(fp32, planned(fp32, x), tmp_path / "int8.onnx")
    cos = np.sum(run(int8, x) * run(fp32, x), axis=1)
    assert np.degrees(np.arccos(np.clip(cos, -1, 1))).max() < 2.0  # the relu still acts


def test_matmuls_of_two_activations_are_plan_layers_that_can_go_float(tmp_path):
    torch.manual_seed(0)
    x = np.random.default_rng(3).normal(size=(16, 5, 8)).astype(np.float32)
    fp32 = export(Attention(), (5, 8), tmp_path / "att.onnx")
    layers = quantizable_layers(fp32)
    activations = [lp for lp in layers if lp.weights == 0]
    assert [(lp.name, lp.op) for lp in activations] == [("MatMul", "MatMul"), ("MatMul_1", "MatMul")]
    assert all(lp.macs == 5 * 5 * 8 for lp in activations)  # (5x8)(8x5) and (5x5)(5x8), batch 1
    assert weight_error(fp32, activations[0], 8) == 0.0
    assert {lp.name for lp in layers} == {"q", "k", "v", "MatMul", "MatMul_1"}  # one row each, no collisions
    plan = planned(fp32, x)
    all_float = apply_plan(fp32, plan.with_float({lp.name for lp in plan.layers}, "test"), tmp_path / "float.onnx")
    assert "QuantizeLinear" not in ops(all_float)  # before: q k^T and att v were quantized whatever the plan said
    only_scores = plan.with_float({"q", "k", "v", "MatMul_1"}, "test")
    assert "MatMul" in quantized_inputs(apply_plan(fp32, only_scores, tmp_path / "scores.onnx"))


class PooledHead(nn.Module):
    """conv -> ReLU -> global average pool -> two Linears, concatenated -> Linear: the pooling and the Concat join only
    INT8 tensors. Variants: a residual block before the pooling, a constant in the Concat."""

    def __init__(self, residual: bool = False, constant: bool = False):
        super().__init__()
        self.conv, self.conv2 = nn.Conv2d(1, 8, 3, 2, 1), nn.Conv2d(8, 8, 3, 1, 1)
        self.pool, self.fc, self.fc2 = nn.AdaptiveAvgPool2d(1), nn.Linear(8, 8), nn.Linear(8, 2)
        self.out = nn.Linear(10, 3)
        self.residual, self.constant = residual, constant

    def forward(self, x):
        y = torch.relu(self.conv(x))
        if self.residual:  # a ResNet's last block: its Add read only by the pooling
            y = torch.relu(self.conv2(y) + y)
        y = self.pool(y).flatten(1)
        # a Concat with a constant: rounding the constant to the activations' scale would be new error
        other = torch.full((y.shape[0], 2), 0.37) if self.constant else torch.relu(self.fc2(y))
        return self.out(torch.cat([torch.relu(self.fc(y)), other], dim=1))


def integer_ops(path: Path) -> set[str]:
    """Op types of the model as onnxruntime's CPU provider runs it (after its QDQ fusions)."""
    opts = ort.SessionOptions()
    opts.optimized_model_filepath = str(path.with_suffix(".optimized.onnx"))
    ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
    return {n.op_type for n in onnx.load(opts.optimized_model_filepath).graph.node}


def test_a_pooling_and_a_concat_between_int8_layers_run_in_integer(tmp_path):
    torch.manual_seed(0)
    x = np.random.default_rng(4).normal(size=(32, 1, 8, 8)).astype(np.float32)
    fp32 = export(PooledHead(), (1, 8, 8), tmp_path / "pooled.onnx")
    plan = planned(fp32, x)
    int8 = apply_plan(fp32, plan, tmp_path / "int8.onnx")
    assert {"QLinearGlobalAveragePool", "QLinearConcat"} <= integer_ops(int8)
    np.testing.assert_allclose(run(int8, x), run(fp32, x), atol=0.05 * np.abs(run(fp32, x)).max())
    # the Linear reading the pooling in float: quantizing the pooling would round what that layer reads
    fc_float = apply_plan(fp32, plan.with_float({"fc"}, "test"), tmp_path / "fc_float.onnx")
    assert "GlobalAveragePool" in integer_ops(fc_float) and "QLinearConcat" not in integer_ops(fc_float)


def test_a_join_that_would_round_a_float_tensor_stays_float(tmp_path):
    """The residual Add read only by the pooling (its output would be rounded where FP32 is not), and a Concat with a
    constant, stay float; the layers around them are INT8."""
    torch.manual_seed(0)
    x = np.random.default_rng(5).normal(size=(32, 1, 8, 8)).astype(np.float32)
    for name, module in (("residual", PooledHead(residual=True)), ("constant", PooledHead(constant=True))):
        fp32 = export(module, (1, 8, 8), tmp_path / f"{name}.onnx")
        int8 = apply_plan(fp32, planned(fp32, x), tmp_path / f"{name}_int8.onnx")
        kept = {"residual": {"Add", "GlobalAveragePool"}, "constant": {"Concat"}}[name]
        assert "QLinearConv" in integer_ops(int8) and kept <= integer_ops(int8), name


class Regressor(nn.Module):
    """conv -> pool -> Linear, the Linear's output the graph output (a head regressing pitch and yaw)."""

    def __init__(self):
        super().__init__()
        self.conv, self.fc = nn.Conv2d(1, 8, 3, 2, 1), nn.Linear(8, 2)

    def forward(self, x):
        return self.fc(torch.relu(self.conv(x)).mean((2, 3)))


def test_a_gemm_writing_the_graph_output_is_not_clipped_at_its_calibrated_range(tmp_path):
    """The Gemm writes the graph output in float: an output beyond every calibration output (here: a calibrated output
    range narrowed to +-0.01) comes out as FP32 gives it, not clipped at the range as an output Q/DQ pair would."""
    torch.manual_seed(0)
    x = np.random.default_rng(3).normal(size=(32, 1, 8, 8)).astype(np.float32)
    fp32 = export(Regressor(), (1, 8, 8), tmp_path / "regressor.onnx")
    plan = planned(fp32, x)
    gemm = next(n for n in onnx.load(str(fp32)).graph.node if n.op_type == "Gemm")
    assert tensor_key(gemm.name) in plan.ranges
    plan.ranges[tensor_key(gemm.name)] = [-0.01, 0.01]
    int8 = apply_plan(fp32, plan, tmp_path / "int8.onnx")
    g = onnx.load(str(int8)).graph
    assert [o.name for o in g.output] == ["out"]
    assert next(n for n in g.node if "out" in n.output).op_type == "Gemm"
    ref = run(fp32, x)
    assert np.abs(ref).max() > 0.1
    np.testing.assert_allclose(run(int8, x), ref, atol=0.02 * np.abs(ref).max())
