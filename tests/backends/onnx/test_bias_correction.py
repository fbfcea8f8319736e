"""edgekit/backends/onnx/bias_correction.py: INT8 biases absorb the mean output shift of rounded weights."""

from __future__ import annotations

import numpy as np
import pytest

onnx = pytest.importorskip("onnx")
pytest.importorskip("onnxruntime")

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402
from onnx import numpy_helper  # noqa: E402

from edgekit.backends.onnx.bias_correction import BiasCorrection, correctable_inputs  # noqa: E402
from edgekit.backends.onnx.qdq import apply_plan, quantizable_layers  # noqa: E402
from edgekit.quant.calibration import calibration_run  # noqa: E402
from edgekit.quant.observers import observe  # noqa: E402
from edgekit.quant.plan import QuantPlan, tensor_key  # noqa: E402
from tests.backends.onnx.test_qdq import export_two_conv, images, quantized_input, run  # noqa: E402


@pytest.fixture(scope="module")
def fp32(tmp_path_factory):
    return export_two_conv(tmp_path_factory.mktemp("bias") / "two_conv.onnx")


@pytest.fixture(scope="module")
def calibrated(fp32):
    """(7-bit all-INT8 plan with minmax ranges, the bias correction from the same calibration run, its inputs)."""
    model = onnx.load(str(fp32))
    x = images("calib", 64) * 0.5 + 1.0  # inputs with a clear nonzero mean: the shift the correction removes
    correctable = correctable_inputs(model)
    stats, _ = calibration_run(fp32, {"image": x}, mean_of=set(correctable.values()))
    producers = {out: tensor_key(n.name, i) for n in model.graph.node for i, out in enumerate(n.output)}
    ranges = {producers.get(t, f"input:{t}"): [float(v) for v in observe(s, "minmax")] for t, s in stats.items()}
    plan = QuantPlan(weights={"bits": 7}, layers=quantizable_layers(fp32), ranges=ranges)
    return plan, BiasCorrection(model, {node: stats[t].mean for node, t in correctable.items()}), x


def _dequantized(model, node_name: str, index: int) -> tuple[np.ndarray, np.ndarray]:
    """A quantized node's weights (index 1) or bias (2) as the runtime sees them (integers times their
    per-output-channel scale), and that scale."""
    values, scale = (a.astype(np.float64) for a in quantized_input(model, node_name, index))
    return values * scale.reshape(-1, *[1] * (values.ndim - 1)), scale


def test_the_first_layers_bias_moves_by_the_mean_shift_of_its_rounded_weights(fp32, calibrated, tmp_path):
    """Checked against torch: conv1's rounded-minus-float weights over every calibration image (padding included),
    averaged per output channel, is what the corrected bias lost."""
    plan, correction, x = calibrated
    plain = onnx.load(str(apply_plan(fp32, plan, tmp_path / "plain.onnx")))
    corrected = onnx.load(str(apply_plan(fp32, plan, tmp_path / "corrected.onnx", [correction])))
    float_weights = numpy_helper.to_array(next(i for i in onnx.load(str(fp32)).graph.initializer
                                               if i.name == "conv1.weight")).astype(np.float64)
    error = torch.from_numpy(_dequantized(plain, "/conv1/Conv", 1)[0] - float_weights)
    shift = F.conv2d(torch.from_numpy(x.astype(np.float64)), error, stride=2, padding=1).mean(dim=(0, 2, 3)).numpy()
    (after, scale), (before, _) = _dequantized(corrected, "/conv1/Conv", 2), _dequantized(plain, "/conv1/Conv", 2)
    assert np.abs(shift).max() > 20 * scale.max()  # 7-bit weights do shift the mean, by many steps of the bias
    assert np.all(np.abs(after - before + shift) <= scale / 2 + 1e-12)  # moved by -shift, rounded to its int32 grid
    assert not np.array_equal(_dequantized(corrected, "/conv2/Conv", 2)[0], _dequantized(plain, "/conv2/Conv", 2)[0])


def test_the_corrected_model_has_a_smaller_mean_output_shift_and_float_layers_are_left_alone(fp32, calibrated, tmp_path):
    plan, correction, x = calibrated
    ref = run(fp32, x)
    shifts = {}
    for label, fix in (("plain", None), ("corrected", correction)):
        out = run(apply_plan(fp32, plan, tmp_path / f"{label}.onnx", [fix] if fix else []), x)
        shifts[label] = float(np.sqrt(np.mean((out - ref).mean(axis=(0, 2, 3)) ** 2)))  # RMS over channels
    assert shifts["corrected"] < 0.5 * shifts["plain"], shifts
    mixed = plan.with_float({"conv2"}, "test")  # a float layer has no rounded weights, so no correction
    a = onnx.load(str(apply_plan(fp32, mixed, tmp_path / "a.onnx")))
    b = onnx.load(str(apply_plan(fp32, mixed, tmp_path / "b.onnx", [correction])))
    assert correction.apply(a) == 1  # conv1 only
    floats = lambda m: {i.name: numpy_helper.to_array(i).tobytes() for i in m.graph.initializer  # noqa: E731
                        if i.name.startswith("conv2")}
    assert floats(a) == floats(b) and floats(b)
