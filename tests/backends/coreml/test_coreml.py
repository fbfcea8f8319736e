"""Core ML: real coremltools conversions, verified with edgekit's MIL interpreter (Core ML predicts only on macOS)."""

import json
import re

import numpy as np
import pytest
import torch
from torch import nn

import edgekit.compiler as ek
from edgekit._optional import require
from edgekit.backends.coreml.mil_interpreter import MilInterpreter, UnsupportedMilError
from edgekit.cli import run
from edgekit.quiet import quiet

ct = require("coremltools", "Core ML tests")


def _convert(module: nn.Module, shape, tmp_path, precision="fp32", name="m"):
    with quiet():
        traced = torch.jit.trace(module.eval(), torch.zeros(shape))
        model = ct.convert(traced, convert_to="mlprogram", inputs=[ct.TensorType(name="x", shape=shape, dtype=np.float32)],
                           outputs=[ct.TensorType(name="y", dtype=np.float32)], minimum_deployment_target=ct.target.iOS17,
                           compute_precision=ct.precision.FLOAT16 if precision == "fp16" else ct.precision.FLOAT32)
        model.save(str(tmp_path / f"{name}.mlpackage"))
    return MilInterpreter(tmp_path / f"{name}.mlpackage")


class Lambda(nn.Module):
    def __init__(self, fn):
        super().__init__()
        self.fn = fn

    def forward(self, x):
        return self.fn(x)


OP_CASES = {
    "conv stride 2 pad 1": (nn.Conv2d(3, 8, 3, 2, 1), (1, 3, 12, 16)),
    "conv no bias, 1x1": (nn.Conv2d(3, 8, 1, bias=False), (1, 3, 7, 9)),
    "conv groups 2, valid": (nn.Conv2d(4, 6, 3, 1, 0, groups=2), (1, 4, 9, 9)),
    "conv 5x5 asymmetric stride": (nn.Conv2d(2, 4, 5, (2, 1), 2), (1, 2, 11, 13)),
    "max_pool k3 s2 p1": (nn.MaxPool2d(3, 2, 1), (1, 3, 10, 14)),
    "avg_pool k2 s2": (nn.AvgPool2d(2, 2), (1, 3, 8, 12)),
    "adaptive avg pool -> reduce_mean": (nn.AdaptiveAvgPool2d(1), (1, 5, 4, 6)),
    "linear": (nn.Sequential(nn.Flatten(), nn.Linear(48, 7)), (1, 3, 4, 4)),
    "relu + add residual": (Lambda(lambda x: torch.relu(x) + x), (1, 2, 3, 4)),
    "l2 normalize": (Lambda(lambda x: nn.functional.normalize(x.flatten(1), dim=-1)), (1, 2, 3, 4)),
    "sigmoid * tanh": (Lambda(lambda x: torch.sigmoid(x) * torch.tanh(x)), (1, 8)),
    "permute + concat": (Lambda(lambda x: torch.cat([x.permute(0, 1, 3, 2), x.permute(0, 1, 3, 2)], dim=1)), (1, 2, 3, 4)),
}


@pytest.mark.parametrize("case", sorted(OP_CASES))
def test_interpreter_matches_pytorch_op_by_op(case, tmp_path):
    torch.manual_seed(0)
    module, shape = OP_CASES[case]
    x = torch.randn(shape)
    want = module.eval()(x).detach().numpy()
    interp = _convert(module, shape, tmp_path)
    got = interp.run({"x": x.numpy()})
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5)
    half = _convert(module, shape, tmp_path, "fp16", "h")
    np.testing.assert_allclose(half.run({"x": x.numpy()}), want, rtol=2e-2, atol=2e-2)  # fp16 storage and rounding


def test_unimplemented_attribute_fails_loudly(tmp_path):
    interp = _convert(nn.Conv2d(2, 2, 3, dilation=2), (1, 2, 9, 9), tmp_path)
    with pytest.raises(UnsupportedMilError, match="dilations"):
        interp.run({"x": np.zeros((1, 2, 9, 9), np.float32)})


def test_unknown_op_fails_at_load(tmp_path):
    with pytest.raises(UnsupportedMilError, match="op erf .* is not implemented by edgekit's MIL interpreter"):
        _convert(Lambda(torch.erf), (1, 4), tmp_path)


@pytest.fixture(scope="module")
def fp16_and_fp32(tmp_path_factory):
    root = tmp_path_factory.mktemp("coreml")
    return ek.compile(None, "coreml", out=root / "fp16"), ek.compile(None, "coreml-fp32", out=root / "fp32")


@pytest.mark.slow
def test_coreml_fp16_within_a_tenth_of_a_degree_verified_by_the_interpreter(fp16_and_fp32):
    fp16, fp32 = fp16_and_fp32
    for res, limit in ((fp16, 0.1), (fp32, 0.01)):
        rep = res.report
        assert rep.passed and rep.accuracy.diff_from_reference.max_deg <= limit
        assert "MIL reference interpreter" in rep.accuracy.how
        assert rep.latency["p50"].method == "not_measured" and "macOS" in rep.latency["p50"].how
        assert rep.runtime.op_histogram["conv"] == 5
        assert 4.5e6 < rep.compute["macs"].value < 5.2e6
    assert fp16.report.runtime.weight_dtypes.get("fp16", 0) > 0.99
    assert fp32.report.runtime.weight_dtypes.get("fp32", 0) > 0.99
    assert fp16.report.accuracy.diff_from_reference.max_deg > fp32.report.accuracy.diff_from_reference.max_deg
    ratio = fp32.report.size["artifact"].value / fp16.report.size["artifact"].value
    assert 1.8 < ratio < 2.1  # FP16 storage halves the package
    for res, precision in ((fp16, "fp16"), (fp32, "fp32")):  # energy: counted per op, estimated, never measured here
        energy = res.report.energy
        assert energy.macs_by_precision == {precision: res.report.compute["macs"].value}
        assert energy.estimates and energy.measured.dynamic_uj_per_inference is None
        assert "Apple devices" in energy.measured.how
    weights = [sum(r["weight_bytes"] for r in res.report.energy.layers) for res in (fp16, fp32)]
    assert weights[1] == 2 * weights[0]


@pytest.mark.slow
def test_coreml_package_carries_metadata_and_float32_io(fp16_and_fp32):
    fp16, _ = fp16_and_fp32
    with quiet():
        spec = ct.models.MLModel(str(fp16.artifact), skip_model_load=True).get_spec()
    meta = spec.description.metadata
    assert meta.author == "edgekit" and meta.userDefined["edgekit.pipeline"] == "fold_bn | to_coreml"
    assert json.loads(meta.userDefined["edgekit.preprocessing"])["offset"] == -1.0
    assert spec.description.input[0].type.multiArrayType.dataType == ct.proto.FeatureTypes_pb2.ArrayFeatureType.FLOAT32
    assert "x * 0.0078431373 + -1" in spec.description.input[0].shortDescription
    # nothing that changes from day to day: coremltools stamps a conversion date, which made rebuilds differ
    dated = [k for k, v in meta.userDefined.items() if re.search(r"\d{4}-\d{2}-\d{2}", v)]
    assert not dated and "com.github.apple.coremltools.version" in meta.userDefined


@pytest.mark.slow
def test_gazeresnet18_coreml_fp16(tmp_path):
    from edgekit.data.synthetic import standard_set

    # 128 images (as test_executorch's GazeResNet18 check: the reference's outputs are shared): the interpreter runs
    # the FP16 program one image at a time, and verification on the recipe's 512 took 18 of this test's 20 s
    res = ek.compile("gazeresnet18", "coreml", eval=standard_set("eval", 128, (64, 96)), out=tmp_path / "rn")
    assert res.passed and res.report.runtime.op_histogram["max_pool"] == 1
    assert res.report.accuracy.set.n_images == 128 and 0 < res.report.accuracy.diff_from_reference.max_deg <= 0.1


@pytest.mark.slow
def test_temporalgaze_converts_with_its_gru_unrolled_and_verifies(tmp_path):
    res = ek.compile("temporalgaze", "coreml", out=tmp_path / "t")
    rep = res.report
    assert rep.passed and rep.accuracy.diff_from_reference.max_deg <= 0.1 and rep.accuracy.truth.startswith("future")
    assert any("unrolled" in n for n in rep.steps[-1].notes)
    hist = rep.runtime.op_histogram
    assert hist["sigmoid"] == 20 and hist["tanh"] == 10  # 10 GRU steps: two gates and one candidate each


def test_a_failed_conversion_is_one_line_and_leaves_nothing(tmp_path, capsys):
    from edgekit.models.io import save_weights
    from tests.fixtures.gaze_models import UnsupportedOpGaze

    weights = save_weights(UnsupportedOpGaze(), tmp_path / "odd.safetensors")
    out = tmp_path / "o"
    assert run(["compile", str(weights), "--arch", "tests.fixtures.gaze_models:UnsupportedOpGaze", "--input-shape",
                "1x1x40x64", "-t", "coreml", "--out", str(out)]) == 2
    err = capsys.readouterr().err
    # the op coremltools failed on and the module that calls it (UnsupportedOpGaze.odd runs aten::cummax)
    assert "error: to_coreml: coremltools could not convert op cummax (in module odd)" in err, err
    assert "Converting PyTorch" not in err
    assert not out.exists()


def _constexpr_ops(interp):
    return [op for op in interp.ops if op.op_type.startswith("constexpr_")]


@pytest.mark.slow
@pytest.mark.parametrize("target, op_type, dtype", [("coreml-int8", "constexpr_affine_dequantize", "int8"),
                                                    ("coreml-palettized", "constexpr_lut_to_dense", "lut-fp16")])
def test_compressed_weights_decode_like_coremltools_and_report_their_precision(target, op_type, dtype, tmp_path, fp16_and_fp32):
    res = ek.compile(None, target, out=tmp_path / target)
    rep = res.report
    assert rep.passed and rep.runtime.op_histogram[op_type] == 5  # 7 weight tensors, 2 below weight_threshold 512
    assert rep.runtime.weight_dtypes.get(dtype, 0) > 0.95  # nearly every weight element is stored compressed
    interp = MilInterpreter(res.artifact)
    for op in _constexpr_ops(interp):  # edgekit's decoding against coremltools' own value inference
        args = {k: v.val for k, v in op.inputs.items()}
        np.testing.assert_allclose(getattr(interp, f"_op_{op.op_type}")(op, **args).astype(np.float32),
                                   np.asarray(op.materialized_val_inference(), np.float32), rtol=1e-3, atol=1e-3)
    # decoded at the first run and kept: later runs, on other inputs, give what a fresh interpreter gives
    name = interp.input_names[0]
    images = [np.random.default_rng(seed).random((1, 1, 40, 64), np.float32) for seed in (0, 1)]
    first, second = (interp.run({name: x}) for x in images)
    assert set(interp._constexpr) == {op.outputs[0].name for op in _constexpr_ops(interp)}
    assert np.array_equal(second, MilInterpreter(res.artifact).run({name: images[1]})) and not np.array_equal(first, second)
    fp32_size = fp16_and_fp32[1].report.size["artifact"].value
    ratio = fp32_size / rep.size["artifact"].value
    assert (3.5 < ratio < 4.2) if target == "coreml-int8" else (6.5 < ratio < 8.5)  # ~4x INT8, ~8x 4-bit
    if target == "coreml-int8":
        assert rep.accuracy.error_increase_deg <= 0.3 and rep.runtime.int8_weight_fraction > 0.95
    # energy counts see the compressed storage: weights read from memory shrink, the arithmetic stays FP16
    fp16_energy, energy = fp16_and_fp32[0].report.energy, rep.energy
    assert set(energy.macs_by_precision) == {"fp16"}
    stored = sum(r["weight_bytes"] for r in energy.layers) / sum(r["weight_bytes"] for r in fp16_energy.layers)
    assert (0.45 < stored < 0.55) if target == "coreml-int8" else (0.2 < stored < 0.3)


@pytest.mark.slow
def test_w8a8_quantizes_activations_with_calibrated_ranges(tmp_path):
    res = ek.compile(None, "coreml-w8a8", out=tmp_path / "w8a8")
    rep = res.report
    hist = rep.runtime.op_histogram
    assert hist["quantize"] == hist["dequantize"] == 7  # every conv and linear input: 5 convs + 2 linears
    assert rep.artifact.precision == "w8a8" and rep.runtime.int8_weight_fraction > 0.95
    assert rep.inputs_digest["calib_set"] != rep.inputs_digest["eval_set"]
    assert rep.accuracy.error_increase_deg <= 0.3 and rep.accuracy.diff_from_reference.p95_deg < 1.0
    interp = MilInterpreter(res.artifact)
    q = next(op for op in interp.ops if op.op_type == "quantize")
    assert str(q.output_dtype.val) in ("int8", "uint8")  # coremltools stores quint8 as int8 with the zero point shifted
    assert rep.energy.macs_by_precision == {"int8": rep.compute["macs"].value}  # every MAC op takes dequantized input


def test_quantize_dequantize_ops_match_torch():
    x = np.linspace(-3, 3, 101, dtype=np.float32)
    want = torch.dequantize(torch.quantize_per_tensor(torch.from_numpy(x), 0.03, 100, torch.quint8)).numpy()
    interp = MilInterpreter.__new__(MilInterpreter)
    q = interp._op_quantize(None, x, np.float32(0.03), "uint8", zero_point=np.uint8(100))
    np.testing.assert_allclose(interp._op_dequantize(None, q, np.float32(0.03), zero_point=np.uint8(100)), want, atol=1e-6)


def test_fast_max_pooling_and_fp16_rounding_give_numpys_bits():
    """The interpreter's max pooling (a running maximum over strided views) against numpy's max over the window view,
    NaN included; its float32 <-> float16 casts (through torch) against numpy's astype, the FP16 range's edges and
    subnormals included."""
    from edgekit.backends.coreml.mil_interpreter import _cast, _max_of_windows, _windows

    rng = np.random.default_rng(0)
    for shape, kernel, strides in (((1, 8, 13, 17), (3, 3), (2, 2)), ((2, 3, 9, 7), (2, 2), (2, 2)),
                                   ((1, 5, 10, 11), (3, 2), (1, 3))):
        x = rng.standard_normal(shape).astype(np.float32)
        x[0, 0, 1, 1] = np.nan
        want = _windows(x, kernel, strides).max(axis=(-2, -1))
        assert np.array_equal(_max_of_windows(x, kernel, strides), want, equal_nan=True), (shape, kernel, strides)
    edges = np.array([65504, 65519, 65520, 1e6, 6e-8, 2.9e-8, 3e-5, -0.0, np.inf, -np.inf], np.float32)
    x = np.concatenate([rng.standard_normal(10_000).astype(np.float32) * 100, edges])
    with np.errstate(over="ignore"):
        half = x.astype(np.float16)
    assert np.array_equal(_cast(x, np.float16).view(np.uint16), half.view(np.uint16))
    assert np.array_equal(_cast(half, np.float32).view(np.uint32), half.astype(np.float32).view(np.uint32))
    assert _cast(x[::2], np.float16).shape == (len(x[::2]),) and _cast(np.float32(1.5), np.float16).shape == ()


@pytest.mark.slow
def test_image_input_takes_pixels_and_normalises_inside(tmp_path):
    recipe = tmp_path / "img.yaml"
    recipe.write_text("name: coreml-image\nbackend: coreml\npasses:\n  - fold_bn\n  - to_coreml: {input_type: image}\n"
                      "gates:\n  max_diff_deg: 0.1\n")
    res = ek.compile(None, str(recipe), out=tmp_path / "o")
    assert res.passed and "fed pixel values" in res.report.accuracy.how
    io = json.loads((tmp_path / "o" / "io.json").read_text())
    assert io["inputs"][0]["kind"] == "image" and io["inputs"][0]["normalization"]["applied"] == "inside the model"
    with quiet():
        spec = ct.models.MLModel(str(res.artifact), skip_model_load=True).get_spec()
    assert spec.description.input[0].type.imageType.colorSpace == ct.proto.FeatureTypes_pb2.ImageFeatureType.GRAYSCALE
