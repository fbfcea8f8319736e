"""TFLite INT8 ops whose output quantization LiteRT fixes (SOFTMAX, LOGISTIC, LOG_SOFTMAX, TANH): to_tflite gives them
the scale and zero point the kernels require (a softmax that took an observed range crashed LiteRT at prepare), a
kept-float layer is left float without crashing, and a LiteRT error at prepare or invoke is one line with a fix; the
options that leave more ops float; average pools observe their own output range; a max pool of a ReLU pads with zeros."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from edgekit._optional import require
from edgekit.backends.base import weight_int8_share
from edgekit.backends.tflite import graph as tflite_graph
from edgekit.backends.tflite.convert import FIXED_OUTPUT_QPARAMS, ToTFLite, _convert, _export, _quantize_pt2e
from edgekit.quant.pt2e import aten_name as _aten_name
from edgekit.backends.tflite.runner import LiteRTRunner, litert_error
from edgekit.errors import BadInputError
from edgekit.quant.plan import LayerPlan, QuantPlan
from edgekit.quiet import quiet

litert_torch = require("litert_torch", "TFLite tests")

SHAPE = (1, 1, 12, 20)


class SoftmaxExpectationHead(nn.Module):
    """L2CS-style: a small conv backbone, two linear heads of bin scores, each angle the softmax expectation over
    the bin centres (tests/zoo/models.py's L2CSBins in miniature, plain torch)."""

    def __init__(self, bins: int = 12, act: str = "softmax"):
        super().__init__()
        self.act = act
        self.backbone = nn.Sequential(nn.Conv2d(1, 8, 3, 2, 1), nn.ReLU(), nn.Conv2d(8, 16, 3, 2, 1), nn.ReLU(),
                                      nn.AdaptiveAvgPool2d(1), nn.Flatten())
        self.fc_pitch = nn.Linear(16, bins)
        self.fc_yaw = nn.Linear(16, bins)
        self.fc_out = nn.Linear(bins, 1)
        self.register_buffer("centres", torch.tensor([math.radians(-3 * bins / 2 + 3 * (i + 0.5)) for i in range(bins)]),
                             persistent=False)

    def angle(self, logits):
        if self.act == "softmax":
            return (F.softmax(logits, dim=1) * self.centres).sum(dim=1, keepdim=True)
        fn = {"sigmoid": torch.sigmoid, "tanh": torch.tanh, "log_softmax": lambda t: F.log_softmax(t, dim=1)}[self.act]
        return self.fc_out(fn(logits))

    def forward(self, x):
        f = self.backbone(x)
        return torch.cat([self.angle(self.fc_pitch(f)), self.angle(self.fc_yaw(f))], dim=1)


def _model(act: str = "softmax") -> nn.Module:
    torch.manual_seed(0)
    model = SoftmaxExpectationHead(act=act).eval()
    with torch.no_grad():  # confident enough bins that the expectation moves with the input
        model.fc_pitch.weight.mul_(40)
        model.fc_yaw.weight.mul_(40)
    return model


def _samples(n: int, seed: int = 0) -> torch.Tensor:
    """Brightness ramps of random direction and strength plus noise: images whose features differ."""
    rng = np.random.default_rng(seed)
    yy, xx = np.meshgrid(np.linspace(-1, 1, SHAPE[2]), np.linspace(-1, 1, SHAPE[3]), indexing="ij")
    a, b = rng.uniform(-1, 1, (2, n, 1, 1, 1))
    x = a * xx + b * yy + 0.2 * rng.standard_normal((n, *SHAPE[1:]))
    return torch.from_numpy(x.astype(np.float32))


def _to_int8_tflite(model: nn.Module, path: Path, plan: QuantPlan | None = None,
                    calib: torch.Tensor | None = None, **options) -> tuple[Path, list[str]]:
    """to_tflite's INT8 route without a card or calibration set: edgekit's quantizer, PT2E, litert-torch, float input.
    options: more ToTFLite fields (fixed_output_ops int8 unless given: these tests are about LiteRT's fixed scales)."""
    from litert_torch.quantize import quant_config

    calib = _samples(64, seed=1) if calib is None else calib
    args = (torch.zeros(1, *calib.shape[1:]),)
    quantizer = ToTFLite(precision="int8", **{"fixed_output_ops": "int8", **options})._quantizer(plan or QuantPlan())
    converted, decisions = _quantize_pt2e(model, args, quantizer, [(calib[i:i + 1],) for i in range(len(calib))])
    edge = _convert(litert_torch, converted, args, quant_config=quant_config.QuantConfig(pt2e_quantizer=quantizer),
                    original=model)
    with quiet():
        edge.export(str(path))
    flat = tflite_graph.read(path)
    tflite_graph.float_inputs(flat)
    tflite_graph.write(flat, path)
    return path, decisions


def _op_outputs(runner: LiteRTRunner, op: str) -> list[tuple[str, tuple[float, int]]]:
    tensors = runner.interpreter.get_tensor_details()
    return [(tensors[o]["dtype"].__name__, tensors[o]["quantization"]) for d in runner.interpreter._get_ops_details()
            if d["op_name"] == op for o in d["outputs"]]


def test_softmax_int_gets_litert_fixed_output_quantization():
    """torch.export writes F.softmax as aten.softmax.int, which litert-torch 0.10's own fixed-qparams annotator misses."""
    from torchao.quantization.pt2e.quantizer import FixedQParamsQuantizationSpec

    model = _model()
    quantizer = ToTFLite(precision="int8", fixed_output_ops="int8")._quantizer(QuantPlan())
    graph = quantizer.annotate(quantizer.transform_for_annotation(_export(model, (torch.zeros(SHAPE),)).module()))
    softmaxes = [n for n in graph.graph.nodes if _aten_name(n) in FIXED_OUTPUT_QPARAMS]
    assert [str(n.target) for n in softmaxes] == ["aten.softmax.int", "aten.softmax.int"]
    for node in softmaxes:
        spec = node.meta["quantization_annotation"].output_qspec
        assert isinstance(spec, FixedQParamsQuantizationSpec)
        assert (spec.scale, spec.zero_point, spec.dtype) == (1 / 256, -128, torch.int8)


class ReshapedSoftmax(nn.Module):
    """A softmax behind a view (quantized only once litert-torch propagates the linear's range through the view) and a
    sigmoid on the raw input (float: nothing quantizes its input)."""

    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(4, 12)

    def forward(self, x):
        p = F.softmax(self.fc(x).view(-1, 2, 6), dim=2).reshape(-1, 12)
        return p + torch.sigmoid(x).sum(dim=1, keepdim=True)


def _annotated(model, args, plan=None, fixed_output_ops="int8", **options):
    quantizer = ToTFLite(precision="int8", fixed_output_ops=fixed_output_ops, **options)._quantizer(plan or QuantPlan())
    graph = quantizer.annotate(quantizer.transform_for_annotation(_export(model, args).module()))
    return {_aten_name(n): n.meta.get("quantization_annotation") for n in graph.graph.nodes
            if _aten_name(n) in FIXED_OUTPUT_QPARAMS}


def test_fixed_output_after_a_view_is_quantized_and_one_on_a_float_input_is_not():
    found = _annotated(ReshapedSoftmax().eval(), (torch.zeros(1, 4),))
    assert (found["softmax"].output_qspec.scale, found["softmax"].output_qspec.zero_point) == (1 / 256, -128)
    assert found["sigmoid"] is None  # its input is the float model input


def test_a_float_layer_from_the_plan_is_accepted():
    """set_module_name(name, None) leaves the layer float (litert-torch 0.10 asserts on None)."""
    plan = QuantPlan(layers=[LayerPlan(name="fc_yaw", op="Gemm", node="fc_yaw", macs=192, weights=192, int8=False)])
    quantizer = ToTFLite(precision="int8")._quantizer(plan)
    assert quantizer.module_name_config == {"fc_yaw": None}


def test_litert_prepare_error_is_one_line_naming_node_op_and_fix(tmp_path):
    exc = RuntimeError("tflite/kernels/activations.cc:560 output->params.scale not near 1.f / 256 (0.001738 != "
                       "0.003906)Node number 11 (SOFTMAX) failed to prepare.\n")
    msg = str(litert_error(exc, tmp_path / "model.tflite", "prepare"))
    assert "\n" not in msg
    assert msg.startswith("model.tflite: LiteRT could not prepare node 11 (SOFTMAX): tflite/kernels/activations.cc:560")
    assert "; fix: " in msg and "1/256, zero point -128" in msg and "keep_float" in msg
    other = str(litert_error(RuntimeError("something else"), tmp_path / "m.tflite", "invoke"))
    assert other.startswith("m.tflite: LiteRT could not invoke a node: something else; fix: ")


def test_runner_turns_a_broken_file_into_bad_input(tmp_path):
    bad = tmp_path / "model.tflite"
    bad.write_bytes(b"not a flatbuffer")
    with pytest.raises(BadInputError) as err:
        LiteRTRunner(bad)
    assert "LiteRT could not prepare" in str(err.value) and "\n" not in str(err.value)


def test_softmax_expectation_head_runs_in_litert_and_matches_float(tmp_path):
    model = _model()
    path, decisions = _to_int8_tflite(model, tmp_path / "m.tflite")
    runner = LiteRTRunner(path)  # crashed here before: SOFTMAX failed to prepare
    assert _op_outputs(runner, "SOFTMAX") == [("int8", (1 / 256, -128))] * 2
    x = _samples(32, seed=2)
    with torch.no_grad():
        ref = model(x).numpy()
    out = runner.run({"image": x.numpy()})
    assert np.ptp(ref, axis=0).min() > 0.05, "the head must respond to the input for the comparison to mean anything"
    assert np.abs(out - ref).max() < 0.02  # radians: about 1 degree, on a +-18 degree bin range
    assert sum("INT8 with the output quantization LiteRT requires (scale 1/256, zero point -128)" in d
               for d in decisions) == 2
    assert all("the top-level module (" in d and "test_fixed_output.py:" in d for d in decisions if "softmax" in d)


@pytest.mark.parametrize("option, why", [("float", "float"),
                                         ("auto", "auto: no INT8 conv, linear or matmul reads it, so no MACs leave INT8")])
def test_fixed_output_ops_float_leaves_the_softmaxes_and_their_readers_float_and_runs(tmp_path, option, why):
    """fixed_output_ops: float (and auto, where only the expectation's MUL reads each softmax): no INT8 SOFTMAX at all
    (not one with the reader's scale, which LiteRT refuses) and the expectation's MUL reads float; the INT8 layers
    before them stay INT8 and the head still matches float."""
    model = _model()
    path, decisions = _to_int8_tflite(model, tmp_path / "m.tflite", fixed_output_ops=option)
    runner = LiteRTRunner(path)
    assert _op_outputs(runner, "SOFTMAX") == [("float32", (0.0, 0))] * 2
    assert {dtype for dtype, _ in _op_outputs(runner, "MUL")} == {"float32"}
    assert {dtype for dtype, _ in _op_outputs(runner, "FULLY_CONNECTED")} == {"int8"}  # the layers before stay INT8
    assert sum(f"kept float (fixed_output_ops: {why})" in d for d in decisions) == 2
    x = _samples(32, seed=2)
    with torch.no_grad():
        ref = model(x).numpy()
    assert np.abs(runner.run({"image": x.numpy()}) - ref).max() < 0.02  # radians, as at the fixed INT8 scale


@pytest.mark.slow
@pytest.mark.parametrize("act, op, qparams, tol", [("sigmoid", "LOGISTIC", (1 / 256, -128), 0.05),
                                                   ("tanh", "TANH", (1 / 128, 0), 0.05),
                                                   ("log_softmax", "LOG_SOFTMAX", (16 / 256, 127), 0.5)])
def test_other_fixed_output_ops_run_with_the_required_quantization(tmp_path, act, op, qparams, tol):
    model = _model(act)
    path, _ = _to_int8_tflite(model, tmp_path / "m.tflite")
    runner = LiteRTRunner(path)
    assert _op_outputs(runner, op) == [("int8", qparams)] * 2
    x = _samples(16, seed=2)
    with torch.no_grad():
        ref = model(x).numpy()
    assert np.abs(runner.run({"image": x.numpy()}) - ref).max() < tol


@pytest.mark.slow
def test_softmax_behind_a_view_runs_in_litert(tmp_path):
    model = ReshapedSoftmax().eval()
    x = torch.from_numpy(np.random.default_rng(0).normal(0, 2, (64, 4)).astype(np.float32))
    path, _ = _to_int8_tflite(model, tmp_path / "m.tflite", calib=x)
    runner = LiteRTRunner(path)
    assert _op_outputs(runner, "SOFTMAX") == [("int8", (1 / 256, -128))]
    with torch.no_grad():
        ref = model(x[:16]).numpy()
    assert np.abs(runner.run({"x": x[:16].numpy()}) - ref).max() < 0.05


@pytest.mark.slow
def test_float_layer_before_a_softmax_keeps_it_float_and_runs(tmp_path):
    """A plan layer returned to float feeds its softmax a float input: the softmax stays float (named in the
    decisions), the other head's stays INT8, and LiteRT runs the mix."""
    model = _model()
    plan = QuantPlan(layers=[LayerPlan(name="fc_yaw", op="Gemm", node="fc_yaw", macs=192, weights=192, int8=False)])
    path, decisions = _to_int8_tflite(model, tmp_path / "m.tflite", plan)
    runner = LiteRTRunner(path)
    assert sorted(_op_outputs(runner, "SOFTMAX")) == [("float32", (0.0, 0)), ("int8", (1 / 256, -128))]
    assert sum("kept float: its input is float" in d for d in decisions) == 1
    x = _samples(16, seed=2)
    with torch.no_grad():
        ref = model(x).numpy()
    assert np.abs(runner.run({"image": x.numpy()}) - ref).max() < 0.02


@pytest.mark.slow
def test_a_float_layer_before_a_softmax_leaves_the_expectation_float_under_auto(tmp_path):
    """auto (the default): a float head's softmax has a float input and no INT8 MAC reader, so the expectation reading
    it (MUL, SUM) reads float too, as behind an INT8 head; before, the MUL quantized the softmax's float output."""
    model = _model()
    plan = QuantPlan(layers=[LayerPlan(name="fc_yaw", op="Gemm", node="fc_yaw", macs=192, weights=192, int8=False)])
    path, decisions = _to_int8_tflite(model, tmp_path / "m.tflite", plan, fixed_output_ops="auto")
    runner = LiteRTRunner(path)
    assert [dtype for dtype, _ in _op_outputs(runner, "MUL") + _op_outputs(runner, "SUM")] == ["float32"] * 4
    assert sum("kept float: its input is float (a float layer), and the ops reading it read float" in d
               for d in decisions) == 1
    assert sum("kept float (fixed_output_ops: auto" in d for d in decisions) == 1
    x = _samples(16, seed=2)
    with torch.no_grad():
        ref = model(x).numpy()
    assert np.abs(runner.run({"image": x.numpy()}) - ref).max() < 0.02


@pytest.mark.slow
def test_l2cs_bins_zoo_model_compiles_for_tflite_int8(tmp_path):
    """The zoo's L2CS model (softmax expectation heads) gets a report with gates, not a LiteRT crash."""
    import edgekit.compiler as ek

    weights = Path(__file__).parents[2] / "zoo" / "weights"
    res = ek.compile(str(weights / "l2cs_bins.safetensors"), "tflite-int8", card=weights / "l2cs_bins.card.json",
                     arch="tests.zoo.models:L2CSBins", out=tmp_path / "l2cs", cache=False)
    assert res.report.gates and res.report.passed, [g for g in res.report.gates if not g.passed]
    assert res.report.accuracy.error_increase_deg <= 0.3
    assert res.report.runtime.op_histogram["SOFTMAX"] == 2
    # fixed_output_ops auto: only the expectation's MUL and sum read each softmax, so both stay float (no MACs move)
    assert sum("softmax" in n and "fixed_output_ops: auto: no INT8 conv, linear or matmul reads it" in n
               for n in res.report.notes) == 2
    # the only MACs out of INT8 are the 1-channel stem's (single_channel_convs), none moved by the softmax choice
    assert [f.name for f in res.report.quantization.float_layers] == ["backbone.0.0"]
    assert res.report.runtime.int8_mac_fraction_measured == pytest.approx(res.report.quantization.int8_mac_fraction)


class Attention(nn.Module):
    """softmax(q k^T * scale) v, as the zoo's GazeTransformer writes it: a matmul reads the softmax, and two matmuls
    multiply activations (no stored weight)."""

    def __init__(self):
        super().__init__()
        self.q, self.k, self.v = nn.Linear(4, 4), nn.Linear(4, 4), nn.Linear(4, 4)

    def forward(self, x):
        scores = torch.matmul(self.q(x), self.k(x).transpose(1, 2)) * 0.5
        return torch.matmul(F.softmax(scores, dim=-1), self.v(x))


def test_fixed_output_ops_auto_is_float_unless_an_int8_mac_op_reads_the_op():
    """auto: an expectation head's softmaxes (read by MUL) float; an attention's float too while its matmuls are float
    (activation_matmuls: float, the default), INT8 at LiteRT's fixed scale when they are INT8; int8 and float as
    configured."""
    head = _annotated(_model(), (torch.zeros(SHAPE),), fixed_output_ops="auto")
    assert head["softmax"].output_qspec is None  # the float choice: no output quantization
    args = (torch.zeros(1, 3, 4),)
    attention = _annotated(Attention().eval(), args, fixed_output_ops="auto", activation_matmuls="int8")
    assert (attention["softmax"].output_qspec.scale, attention["softmax"].output_qspec.zero_point) == (1 / 256, -128)
    assert _annotated(Attention().eval(), args, fixed_output_ops="auto")["softmax"].output_qspec is None
    assert _annotated(Attention().eval(), args, fixed_output_ops="float", activation_matmuls="int8")["softmax"].output_qspec is None
    assert (ToTFLite(precision="int8").fixed_output_ops, ToTFLite(precision="int8").activation_matmuls) == ("auto", "float")


@pytest.mark.parametrize("option", ["float", "int8"])
def test_activation_matmuls_run_in_litert_and_stay_out_of_the_int8_share(tmp_path, option):
    """float (the default): both matmuls, the logit scaling and the softmax compute in float with no INT8 round trip
    between them (no QUANTIZE), the decisions name both matmuls; int8: the softmax INT8 at LiteRT's scale and the
    query x key matmul INT8 (the last one stays float here: litert-torch quantizes a matmul's output only for an INT8
    reader, and this one feeds the model output). Either way the linear layers are INT8, the share
    min_int8_mac_fraction checks is 1.0, the matmuls are reported apart, and LiteRT matches float."""
    torch.manual_seed(0)
    model = Attention().eval()
    x = torch.from_numpy(np.random.default_rng(0).normal(0, 1, (64, 3, 4)).astype(np.float32))
    path, decisions = _to_int8_tflite(model, tmp_path / "m.tflite", calib=x, fixed_output_ops="auto",
                                      activation_matmuls=option)
    assert sum("kept float (activation_matmuls: float)" in d for d in decisions) == (2 if option == "float" else 0)
    runner = LiteRTRunner(path)
    ops = [d["op_name"] for d in runner.interpreter._get_ops_details()]
    if option == "float":  # the scaling feeds the softmax in float: no QUANTIZE / DEQUANTIZE between them
        assert ops[ops.index("SOFTMAX") - 1] == "MUL" and _op_outputs(runner, "MUL")[0][0] == "float32"
        assert _op_outputs(runner, "SOFTMAX")[0][0] == "float32"
    else:
        assert _op_outputs(runner, "SOFTMAX") == [("int8", (1 / 256, -128))]
    share, matmuls = weight_int8_share(tflite_graph.layer_rows(tflite_graph.read(path)))
    assert share == 1.0 and len(matmuls) == 2
    precisions = {m["precision"] for m in matmuls}
    assert (precisions == {"fp32"}) if option == "float" else ("int8" in precisions)
    with torch.no_grad():
        ref = model(x[:16]).numpy()
    assert np.abs(runner.run({"x": x[:16].numpy()}) - ref).max() < 0.05


class ResidualsIntoLayerNorm(nn.Module):
    """A transformer-like residual stream: two adds read only by LayerNorms and the next add (float in LiteRT), and one
    add read by a linear layer (INT8)."""

    def __init__(self):
        super().__init__()
        self.inp, self.skip, self.fc0, self.fc1, self.fc2, self.head = (
            nn.Linear(8, 16), nn.Linear(8, 16), nn.Linear(16, 16), nn.Linear(16, 16), nn.Linear(16, 16), nn.Linear(16, 2))
        self.norm1, self.norm2, self.norm3 = nn.LayerNorm(16), nn.LayerNorm(16), nn.LayerNorm(16)

    def forward(self, x):
        h = self.fc0(self.inp(x) + self.skip(x))
        h = h + self.fc1(self.norm1(h))
        h = h + self.fc2(self.norm2(h))
        return self.head(self.norm3(h))


@pytest.mark.parametrize("option, float_adds", [("int8", 0), ("float", 2), (None, 2)])
def test_adds_into_float_ops_float_leaves_the_residual_stream_float_and_runs(tmp_path, option, float_adds):
    """adds_into_float_ops: float (the default, None here): the two adds read only by LayerNorms (and the next such
    add) stay float, the add read by a linear layer stays INT8, and LiteRT's result matches float; int8: those three
    adds INT8 (the LayerNorms' own adds are float either way)."""
    torch.manual_seed(0)
    model = ResidualsIntoLayerNorm().eval()
    x = torch.from_numpy(np.random.default_rng(0).normal(0, 1, (64, 8)).astype(np.float32))
    options = {} if option is None else {"adds_into_float_ops": option}
    path, decisions = _to_int8_tflite(model, tmp_path / "m.tflite", calib=x, **options)
    runner = LiteRTRunner(path)
    assert [dtype for dtype, _ in _op_outputs(runner, "ADD")].count("int8") == 3 - float_adds
    assert sum("kept float (adds_into_float_ops: float): every op reading it runs in float" in d
               for d in decisions) == float_adds
    with torch.no_grad():
        ref = model(x[:16]).numpy()
    assert np.abs(runner.run({"x": x[:16].numpy()}) - ref).max() < 0.1 * np.abs(ref).max()


def test_adds_into_float_ops_needs_int8():
    with pytest.raises(ValueError, match="adds_into_float_ops=float needs precision int8"):
        ToTFLite(precision="fp32", adds_into_float_ops="float")


class PooledFeatures(nn.Module):
    """A conv feature map averaged twice: nn.AdaptiveAvgPool2d and Tensor.mean, each into a linear layer."""

    def __init__(self):
        super().__init__()
        self.features = nn.Sequential(nn.Conv2d(1, 16, 3, 1, 1), nn.ReLU())
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc_a, self.fc_b = nn.Linear(16, 2), nn.Linear(16, 2)

    def forward(self, x):
        h = self.features(x)
        return self.fc_a(self.pool(h).flatten(1)) + self.fc_b(h.mean((2, 3)))


def test_average_pools_get_their_own_output_range(tmp_path):
    """litert-torch gives an average pool and a mean their input's scale; the average of a ReLU map spans far less than
    the map, so edgekit observes the pooled output itself: each INT8 MEAN's output scale is well below its input's,
    and LiteRT stays close to float."""
    torch.manual_seed(0)
    model = PooledFeatures().eval()
    x = _samples(64, seed=1)
    path, _ = _to_int8_tflite(model, tmp_path / "m.tflite", calib=x)
    runner = LiteRTRunner(path)
    tensors = runner.interpreter.get_tensor_details()
    means = [d for d in runner.interpreter._get_ops_details() if d["op_name"] == "MEAN"]
    assert len(means) == 2
    for op in means:
        (in_scale, _), (out_scale, _) = tensors[op["inputs"][0]]["quantization"], tensors[op["outputs"][0]]["quantization"]
        assert tensors[op["outputs"][0]]["dtype"] == np.int8
        assert 0 < out_scale < in_scale / 2
    with torch.no_grad():
        ref = model(x[:16]).numpy()
    assert np.abs(runner.run({"x": x[:16].numpy()}) - ref).max() < 0.05 * np.abs(ref).max()


class HardswishNet(nn.Module):
    """MobileNetV3-style: convs with a hardswish between them (nn.Hardswish and F.hardswish)."""

    def __init__(self):
        super().__init__()
        self.conv1, self.act, self.conv2 = nn.Conv2d(1, 8, 3, 2, 1), nn.Hardswish(), nn.Conv2d(8, 8, 3, 2, 1)
        self.fc = nn.Linear(8, 3)

    def forward(self, x):
        x = F.hardswish(self.conv2(self.act(self.conv1(x))))
        return self.fc(x.mean((2, 3)))


@pytest.mark.parametrize("option", ["float", "int8"])
def test_hardswish_runs_in_float_between_int8_convs_unless_asked(tmp_path, option):
    """float (the default): no HARD_SWISH op at all (LiteRT runs its INT8 form only in the reference kernel; the
    converter fused a lone float one, and x * relu6(x + 3) / 6, back into it), each hardswish a float chain between
    a dequantize and a quantize, named in the decisions; the convs stay INT8. int8: two INT8 HARD_SWISH ops."""
    torch.manual_seed(0)
    model = HardswishNet().eval()
    x = _samples(64, seed=1)
    path, decisions = _to_int8_tflite(model, tmp_path / "m.tflite", calib=x, reference_kernel_ops=option)
    assert sum("kept float (reference_kernel_ops: float)" in d for d in decisions) == (2 if option == "float" else 0)
    runner = LiteRTRunner(path)
    ops = [d["op_name"] for d in runner.interpreter._get_ops_details()]
    if option == "float":
        assert "HARD_SWISH" not in ops and ops.count("RELU_0_TO_1") == 2
        assert {dtype for dtype, _ in _op_outputs(runner, "RELU_0_TO_1")} == {"float32"}
    else:
        assert _op_outputs(runner, "HARD_SWISH")[0][0] == "int8" and ops.count("HARD_SWISH") == 2
    share, _ = weight_int8_share(tflite_graph.layer_rows(tflite_graph.read(path)))
    assert share == 1.0
    with torch.no_grad():
        ref = model(x[:16]).numpy()
    assert np.abs(runner.run({"x": x[:16].numpy()}) - ref).max() < 0.05


class StemNet(nn.Module):
    """A ResNet stem: conv, ReLU, a padded 3x3 max pool (then a plain one, and one with ceil_mode), a conv."""

    def __init__(self):
        super().__init__()
        self.conv1, self.pool, self.conv2 = nn.Conv2d(1, 8, 3, 1, 1), nn.MaxPool2d(3, 2, 1), nn.Conv2d(8, 8, 3, 1, 1)
        self.fc = nn.Linear(8, 3)

    def forward(self, x):
        x = self.pool(F.relu(self.conv1(x)))
        x = F.max_pool2d(F.max_pool2d(self.conv2(x), 3, 1, 1), 2, 2, 0, ceil_mode=True)
        return self.fc(x.mean((2, 3)))


def test_a_padded_max_pool_of_a_relu_pads_with_zeros_the_same_values():
    """Only the pool reading a ReLU gets a zero pad (its -inf padding never wins: every window holds an input >= 0);
    the pool of a conv's signed output keeps its own padding, the ceil_mode one its windows; outputs bit for bit."""
    from edgekit.backends.tflite.convert import _zero_padded_max_pools

    torch.manual_seed(0)
    model = StemNet().eval()
    exported = _export(model, (torch.zeros(4, *SHAPE[1:]),), strict=True).module()
    x = _samples(4)
    before = exported(x)
    _zero_padded_max_pools(exported)
    pads = [n for n in exported.graph.nodes if _aten_name(n) == "constant_pad_nd"]
    assert [(_aten_name(p.args[0]), p.args[1:], list(next(iter(p.users)).args[3])) for p in pads] == \
        [("relu", ([1, 1, 1, 1], 0.0), [0, 0])]
    assert torch.equal(exported(x), before)


def test_int8_max_pool_after_relu_reads_a_zero_pad_not_padv2(tmp_path):
    """LiteRT runs an INT8 PADV2 (how litert-torch lowers max pooling's padding) only in its reference kernel; the
    zero pad lowers to PAD, INT8 with the ReLU's scale, as is the pool (benchmarks/tflite_zero_pad_pools.md)."""
    torch.manual_seed(0)
    model = StemNet().eval()
    x = _samples(64, seed=1)
    path, _ = _to_int8_tflite(model, tmp_path / "m.tflite", calib=x)
    runner = LiteRTRunner(path)
    ops = [d["op_name"] for d in runner.interpreter._get_ops_details()]
    assert "PADV2" not in ops and ops.count("PAD") == 1
    assert _op_outputs(runner, "PAD")[0] == _op_outputs(runner, "MAX_POOL_2D")[0] and _op_outputs(runner, "PAD")[0][0] == "int8"
    with torch.no_grad():
        ref = model(x[:16]).numpy()
    assert np.abs(runner.run({"x": x[:16].numpy()}) - ref).max() < 0.05 * np.abs(ref).max()
