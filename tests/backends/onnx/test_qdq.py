"""edgekit/backends/onnx/qdq.py: a plan applied to a small ONNX conv net as QDQ, run in onnxruntime on renderer images."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")

import torch  # noqa: E402
from onnx import TensorProto, helper, numpy_helper  # noqa: E402
from torch import nn  # noqa: E402

from edgekit.backends.onnx.qdq import apply_plan, quantizable_layers, tensor_ranges, weight_error  # noqa: E402
from edgekit.data.synthetic import standard_set  # noqa: E402
from edgekit.quant.calibration import collect  # noqa: E402
from edgekit.quant.observers import observe  # noqa: E402
from edgekit.quant.plan import LayerPlan, QuantPlan, tensor_key  # noqa: E402

H, W = 40, 64


class TwoConv(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(1, 8, 3, 2, 1)
        self.relu = nn.ReLU()
        self.conv2 = nn.Conv2d(8, 4, 3, 2, 1)

    def forward(self, x):
        return self.conv2(self.relu(self.conv1(x)))


def images(role: str, n: int) -> np.ndarray:
    gs = standard_set(role, n, (H, W))
    return (gs.images[:, None].astype(np.float32) / 255.0 - 0.5) / 0.25


def export_two_conv(path: Path) -> Path:
    torch.manual_seed(0)
    torch.onnx.export(TwoConv().eval(), (torch.zeros(1, 1, H, W),), str(path), input_names=["image"], output_names=["out"],
                      dynamic_axes={"image": {0: "n"}, "out": {0: "n"}}, opset_version=17, dynamo=False)
    return path


@pytest.fixture(scope="module")
def fp32(tmp_path_factory) -> Path:
    return export_two_conv(tmp_path_factory.mktemp("qdq") / "two_conv.onnx")


@pytest.fixture(scope="module")
def plan(fp32) -> QuantPlan:
    """All conv layers INT8 with 7-bit weights (the portable profile: 8-bit ones saturate in onnxruntime's AVX2 kernels,
    a CPU without VNNI, and both closeness checks below failed there), activation ranges from edgekit's minmax observer
    over calibration images."""
    graph = onnx.load(str(fp32)).graph
    producers = {out: tensor_key(n.name, i) for n in graph.node for i, out in enumerate(n.output)}
    stats = collect(fp32, {"image": images("calib", 32)})
    ranges = {producers.get(t, f"input:{t}"): [float(v) for v in observe(s, "minmax")] for t, s in stats.items()}
    return QuantPlan(weights={"bits": 7}, layers=quantizable_layers(fp32), ranges=ranges)


def run(path: Path, x: np.ndarray) -> np.ndarray:
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1
    return ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"]).run(None, {"image": x})[0]


def quantized_input(model, node_name: str, index: int) -> tuple[np.ndarray, np.ndarray]:
    """The stored integers and scale behind a node's input `index` (1: weights, 2: bias), read from its
    DequantizeLinear."""
    inits = {i.name: numpy_helper.to_array(i) for i in model.graph.initializer}
    producer = {o: n for n in model.graph.node for o in n.output}
    dq = producer[next(n for n in model.graph.node if n.name == node_name).input[index]]
    return inits[dq.input[0]], inits[dq.input[1]]


def weight_is_quantized(model, node) -> bool:
    """Whether a node's weight input comes from a DequantizeLinear (QDQ), not straight from a float initializer."""
    producer = {o: n for n in model.graph.node for o in n.output}
    w = producer.get(node.input[1])
    return w is not None and w.op_type == "DequantizeLinear"


def test_quantizable_layers_count_macs_and_weights(fp32):
    layers = quantizable_layers(fp32)
    assert [(lp.name, lp.op) for lp in layers] == [("conv1", "Conv"), ("conv2", "Conv")]
    # conv1: 8 x 20 x 32 outputs, 1*3*3 MACs each; conv2: 4 x 10 x 16 outputs, 8*3*3 each
    assert [lp.macs for lp in layers] == [8 * 20 * 32 * 9, 4 * 10 * 16 * 72]
    assert [lp.weights for lp in layers] == [8 * 9, 4 * 8 * 9]


def test_tensor_ranges_map_plan_keys_to_graph_tensors(fp32, plan):
    ranges = tensor_ranges(fp32, plan)
    graph = onnx.load(str(fp32)).graph
    relu = next(n for n in graph.node if n.op_type == "Relu")
    assert ranges["image"] == tuple(plan.ranges["input:image"])
    lo, hi = ranges[relu.output[0]]
    assert lo == 0.0 and hi > 0  # a ReLU output never goes below zero
    assert set(ranges) <= {"image", *(o for n in graph.node for o in n.output)}


def test_all_int8_plan_puts_qdq_on_both_convs_and_stays_close_to_float(fp32, plan, tmp_path):
    out = apply_plan(fp32, plan, tmp_path / "int8.onnx")
    model = onnx.load(str(out))
    convs = [n for n in model.graph.node if n.op_type == "Conv"]
    assert len(convs) == 2 and all(weight_is_quantized(model, n) for n in convs)
    ops = [n.op_type for n in model.graph.node]
    assert ops.count("QuantizeLinear") >= 2 and ops.count("DequantizeLinear") >= 4
    x = images("eval", 16)
    ref, q = run(fp32, x), run(out, x)
    assert q.shape == ref.shape
    err = np.abs(q - ref).max() / np.abs(ref).max()
    assert 0 < err < 0.05  # quantized (not bit-identical), but within a few percent of the output range


def test_a_tensor_read_only_by_a_relu_gets_no_histogram_and_its_range_is_never_read(fp32, plan, tmp_path):
    """calibration.folded_activation_inputs: conv1's output, read only by its ReLU, which onnxruntime's QDQ quantizer
    folds into conv1 (the ReLU's range is conv1's output quantization). The calibration run collects its range but no
    histogram (every observer then gives its min-max), and a plan with an absurd range for it writes the same QDQ
    model."""
    from edgekit.quant.calibration import calibration_run, folded_activation_inputs

    graph = onnx.load(str(fp32)).graph
    conv1 = next(n for n in graph.node if n.name == "/conv1/Conv")
    relu = next(n for n in graph.node if n.op_type == "Relu")
    assert folded_activation_inputs(onnx.load(str(fp32))) == {conv1.output[0]}
    stats, _ = calibration_run(fp32, {"image": images("calib", 32)})
    hidden, kept = stats[conv1.output[0]], stats[relu.output[0]]
    assert not hidden.hist.any() and hidden.lo < 0 < hidden.hi
    assert observe(hidden, "percentile") == observe(hidden, "mse") == (hidden.lo, hidden.hi)
    assert kept.hist.sum() == 32 * 8 * (H // 2) * (W // 2) and observe(kept, "percentile") != (kept.lo, kept.hi)
    absurd = plan.model_copy(update={"ranges": {**plan.ranges, tensor_key(conv1.name, 0): [-1000.0, 1000.0]}})
    assert apply_plan(fp32, absurd, tmp_path / "absurd.onnx").read_bytes() == \
        apply_plan(fp32, plan, tmp_path / "plan.onnx").read_bytes()


def test_float_layer_of_the_plan_keeps_float_weights(fp32, plan, tmp_path):
    mixed = plan.with_float({"conv2"}, "test")
    out = apply_plan(fp32, mixed, tmp_path / "mixed.onnx")
    model = onnx.load(str(out))
    by_layer = {n.name: n for n in model.graph.node if n.op_type == "Conv"}
    assert weight_is_quantized(model, by_layer["/conv1/Conv"])
    assert not weight_is_quantized(model, by_layer["/conv2/Conv"])
    assert by_layer["/conv2/Conv"].input[1] in {i.name for i in model.graph.initializer}  # float weights as stored
    x = images("eval", 8)
    assert np.abs(run(out, x) - run(fp32, x)).max() / np.abs(run(fp32, x)).max() < 0.05


def _single_node_model(tmp_path: Path, op: str, w: np.ndarray, **attrs) -> Path:
    if op == "Conv":
        x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, w.shape[1], 3, 3])
    else:
        x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, w.shape[1] if attrs.get("transB") else w.shape[0]])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, None)
    node = helper.make_node(op, ["x", "w"], ["y"], name=f"/layer/{op}", **attrs)
    graph = helper.make_graph([node], "g", [x], [y], [numpy_helper.from_array(w.astype(np.float32), "w")])
    path = tmp_path / f"{op}.onnx"
    onnx.save(helper.make_model(graph), str(path))
    return path


def _layer(op: str) -> LayerPlan:
    return LayerPlan(name="layer", op=op, node=f"/layer/{op}", macs=0, weights=0)


def test_weight_error_is_zero_for_weights_on_the_int8_grid(tmp_path):
    w = (np.array([[127, -64, 3], [-127, 1, 0]], np.float32) * 0.01).reshape(2, 3, 1, 1)  # per channel: max -> 127
    assert weight_error(_single_node_model(tmp_path, "Conv", w), _layer("Conv"), 8) == pytest.approx(0.0, abs=1e-7)


def test_weight_error_by_hand(tmp_path):
    # one channel [1.0, 0.3]: scale 1/127, 0.3*127 = 38.1 -> 38; error 0.3 - 38/127
    w = np.array([[1.0, 0.3]], np.float32).reshape(1, 2, 1, 1)
    path = _single_node_model(tmp_path, "Conv", w)
    expected = np.sqrt((0.3 - 38 / 127) ** 2 / 2) / np.sqrt((1.0 + 0.09) / 2)
    assert weight_error(path, _layer("Conv"), 8) == pytest.approx(expected, rel=1e-4)
    # 7 bits: scale 1/63, 0.3*63 = 18.9 -> 19
    expected7 = np.sqrt((0.3 - 19 / 63) ** 2 / 2) / np.sqrt((1.0 + 0.09) / 2)
    assert weight_error(path, _layer("Conv"), 7) == pytest.approx(expected7, rel=1e-4)


def test_weight_error_of_gemm_is_per_output_channel_for_both_layouts(tmp_path):
    """Gemm without transB stores weights (in, out): the output channels are columns. Two columns of very different
    scale are each quantized well per column; per row, the small column would round to zero."""
    w_in_out = np.array([[1.0, 0.001], [0.5, 0.002]])
    plain = weight_error(_single_node_model(tmp_path, "Gemm", w_in_out), _layer("Gemm"), 8)
    (tmp_path / "t").mkdir()
    transposed = weight_error(_single_node_model(tmp_path / "t", "Gemm", w_in_out.T.copy(), transB=1), _layer("Gemm"), 8)
    assert plain == pytest.approx(transposed, rel=1e-6)
    assert plain < 0.01


def test_one_builder_writes_every_plan_as_apply_plan_does_in_its_thread_too(fp32, plan, tmp_path):
    """QDQBuilder infers the model's shapes once and quantizes a copy per plan: a plan built after another, or in the
    builder's thread while the caller goes on, has the same bytes as apply_plan's fresh build (were the shared model
    edited by a build, the next one would differ)."""
    from edgekit.backends.onnx.qdq import QDQBuilder

    mixed = plan.with_float({"conv2"}, "test")
    fresh = [apply_plan(fp32, p, tmp_path / f"fresh{k}.onnx").read_bytes() for k, p in enumerate((plan, mixed))]
    assert fresh[0] != fresh[1]
    with QDQBuilder(fp32) as builder:
        ahead = builder.build_ahead(mixed, tmp_path / "ahead.onnx")
        assert builder.build(plan, tmp_path / "first.onnx").read_bytes() == fresh[0]
        assert ahead.result().read_bytes() == fresh[1]
        assert builder.build(mixed, tmp_path / "again.onnx").read_bytes() == fresh[1]
        assert builder.build(plan, tmp_path / "last.onnx").read_bytes() == fresh[0]


def test_the_histogram_sweep_reads_the_batches_the_range_sweep_kept_and_runs_the_model_only_for_the_rest(fp32, monkeypatch):
    """calibration_run keeps batches' tensors within `retain_bytes` for the histograms: with room for none, two or
    every one of four batches, onnxruntime runs the model 8, 6 or 4 times, and every statistic is the same."""
    from edgekit.quant.calibration import calibration_run

    runs = []
    real_run = ort.InferenceSession.run
    monkeypatch.setattr(ort.InferenceSession, "run", lambda self, *a, **k: runs.append(1) or real_run(self, *a, **k))
    x = {"image": images("calib", 32)}
    per_batch = 8 * (8 * (H // 2) * (W // 2) + 4 * (H // 4) * (W // 4)) * 4  # the ReLU's and conv2's outputs, float32
    results = {}
    for room in (0, 2, 4):
        runs.clear()
        stats, out = calibration_run(fp32, x, batch=8, retain_bytes=int((room + 0.5) * per_batch))
        results[room] = (len(runs), stats, out)
    assert [results[room][0] for room in (0, 2, 4)] == [8, 6, 4]
    for room in (2, 4):
        _, stats, out = results[room]
        assert np.array_equal(out, results[0][2]) and stats.keys() == results[0][1].keys()
        for name, s in stats.items():
            base = results[0][1][name]
            assert (s.lo, s.hi) == (base.lo, base.hi) and np.array_equal(s.hist, base.hist), name
            assert np.array_equal(s.abs_hist, base.abs_hist), name
