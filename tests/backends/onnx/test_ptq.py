"""edgekit/backends/onnx/ptq.py on a tiny ONNX gaze net (well under a second per compile): the plan it builds, the
QDQ model it writes and runs in onnxruntime, keep_float, mixed precision, its refusals and its options."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

onnx = pytest.importorskip("onnx")
pytest.importorskip("onnxruntime")

import torch  # noqa: E402
from onnx import numpy_helper  # noqa: E402
from pydantic import ValidationError  # noqa: E402
from torch import nn  # noqa: E402

import edgekit  # noqa: E402
from edgekit.artifact import Artifact, Format  # noqa: E402
from edgekit.backends.onnx.ptq import PTQ  # noqa: E402
from edgekit.context import Context  # noqa: E402
from edgekit.data.synthetic import standard_set  # noqa: E402
from edgekit.errors import BadInputError  # noqa: E402
from tests import avx2_only  # noqa: E402


@pytest.fixture(scope="module")
def tiny_onnx(tmp_path_factory) -> Path:
    """conv-relu-conv-relu-pool-fc -> (pitch, yaw); ONNX layer names 0, 2 (Conv) and 6 (Gemm)."""
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(1, 8, 3, 2, 1), nn.ReLU(), nn.Conv2d(8, 8, 3, 2, 1), nn.ReLU(), nn.AdaptiveAvgPool2d(1),
                        nn.Flatten(), nn.Linear(8, 2)).eval()
    path = tmp_path_factory.mktemp("ptq") / "tiny.onnx"
    torch.onnx.export(net, (torch.zeros(1, 1, 40, 64),), str(path), input_names=["image"], output_names=["gaze"],
                      dynamic_axes={"image": {0: "n"}, "gaze": {0: "n"}}, opset_version=17, dynamo=False)
    return path


@pytest.fixture(scope="module")
def sets():
    return standard_set("calib", 32), standard_set("eval", 16)


def compile_ptq(tiny_onnx: Path, sets, out: Path, **options):
    opts = {"mixed_precision": False, "sensitivity_samples": 16, "observer": "minmax", **options}
    recipe = out.parent / f"{out.name}.yaml"
    recipe.write_text(json.dumps({"name": "tiny-int8", "backend": "onnx", "passes": [{"ptq": opts}],
                                  "verify": {"eval_images": 16, "latency_runs": 2, "warmup_runs": 0}}))
    calib, ev = sets
    result = edgekit.compile(str(tiny_onnx), target=str(recipe), out=out, eval=ev, calib=calib, cache=False,
                             output_convention="pitchyaw")
    return result, json.loads(result.report.model_dump_json(by_alias=True))


def int8_weights(path: Path) -> dict[str, np.ndarray]:
    """Quantized weight initializers by the layer that consumes them (via their DequantizeLinear)."""
    model = onnx.load(str(path))
    inits = {i.name: numpy_helper.to_array(i) for i in model.graph.initializer}
    dq = {n.output[0]: n.input[0] for n in model.graph.node if n.op_type == "DequantizeLinear"}
    return {n.name: inits[dq[n.input[1]]] for n in model.graph.node
            if n.op_type in ("Conv", "Gemm") and n.input[1] in dq and dq[n.input[1]] in inits}


def test_all_layers_int8_with_7_bit_weights_on_the_portable_profile(tiny_onnx, sets, tmp_path):
    result, doc = compile_ptq(tiny_onnx, sets, tmp_path / "portable")
    q = doc["quantization"]
    assert doc["artifact"]["precision"] == "int8"
    assert [(lp["name"], lp["op"], lp["int8"]) for lp in q["layers"]] == [("0", "Conv", True), ("2", "Conv", True),
                                                                          ("6", "Gemm", True)]
    assert q["int8_mac_fraction"] == 1.0 and q["float_layers"] == []
    assert q["plan"]["weights"]["bits"] == 7 and q["plan"]["isa_profile"] == "portable"
    assert q["plan"]["calibration"]["n"] == 32
    weights = int8_weights(result.artifact)
    assert sorted(weights) == ["/0/Conv", "/2/Conv", "/6/Gemm"]
    for name, w in weights.items():
        assert w.dtype == np.int8
        assert np.abs(w.astype(int)).max() <= 64, name  # 7-bit: cannot saturate u8s8 kernels
    # onnxruntime ran it, and INT8 moved the outputs a little, not a lot
    diff = doc["accuracy"]["diff_from_reference"]
    assert 0 < diff["max_deg"] < 2.0
    assert doc["artifact"]["reproducible"]["across_hosts"] is False  # calibration runs float kernels of this CPU
    assert json.loads((result.out_dir / "report.json").read_text())["quantization"]["layers"] == q["layers"]


def test_vnni_profile_uses_the_full_8_bit_range(tiny_onnx, sets, tmp_path):
    result, doc = compile_ptq(tiny_onnx, sets, tmp_path / "vnni", isa_profile="x86-vnni")
    assert doc["quantization"]["plan"]["weights"]["bits"] == 8
    assert max(int(np.abs(w.astype(int)).max()) for w in int8_weights(result.artifact).values()) == 127


@pytest.fixture(scope="module")
def saturating_onnx(tmp_path_factory) -> Path:
    """A conv whose 3x3 weights are equal within each channel, so as 8-bit weights all are 127: two bright neighbouring
    pixels (u8 near 255) give 2 x 255 x 127 = 64,770, past the 16-bit sum (32,767) at which AVX2's u8s8 multiply-add
    (VPMADDUBSW) saturates; as 7-bit weights (64) 32,640, which fits."""
    net = nn.Sequential(nn.Conv2d(1, 4, 3, 1, 1), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, 2)).eval()
    with torch.no_grad():
        for channel in range(4):
            net[0].weight[channel].fill_(0.05 * (channel + 1))
        net[0].bias.zero_()
        net[4].weight.copy_(torch.tensor([[1.0, -0.5, 0.25, 0.1], [-0.2, 0.4, -1.0, 0.6]]))
    path = tmp_path_factory.mktemp("saturating") / "saturating.onnx"
    torch.onnx.export(net, (torch.zeros(1, 1, 40, 64),), str(path), input_names=["image"], output_names=["gaze"],
                      dynamic_axes={"image": {0: "n"}, "gaze": {0: "n"}}, opset_version=17, dynamo=False)
    return path


def input_range(path: Path) -> tuple[float, float]:
    """The float range the quantized model's uint8 input covers (its first QuantizeLinear's scale and zero point)."""
    model = onnx.load(str(path))
    inits = {i.name: numpy_helper.to_array(i) for i in model.graph.initializer}
    quantize = next(n for n in model.graph.node if n.op_type == "QuantizeLinear" and n.input[0] == "image")
    scale, zero = float(inits[quantize.input[1]]), int(inits[quantize.input[2]])
    return (0 - zero) * scale, (255 - zero) * scale


RUN_ONNX = """
import sys, numpy as np, onnxruntime as ort
from numpy._core._multiarray_umath import __cpu_features__ as seen
opts = ort.SessionOptions(); opts.intra_op_num_threads = 1
sess = ort.InferenceSession(sys.argv[1], opts, providers=["CPUExecutionProvider"])
np.save(sys.argv[3], sess.run(None, {"image": np.load(sys.argv[2])})[0])
print(seen["AVX512F"], seen["AVX512VNNI"])
"""


@pytest.mark.skipif(avx2_only.unavailable() is not None, reason=str(avx2_only.unavailable()))
def test_on_the_kernels_of_a_cpu_without_vnni_8_bit_weights_saturate_and_the_portable_7_bit_ones_do_not(
        saturating_onnx, sets, tmp_path):
    """onnxruntime itself, with CPUID masked (tests/avx2_only.c) so that it runs its AVX2 kernels: the reason the
    portable profile uses 7-bit weights, measured instead of assumed."""
    library = avx2_only.build(tmp_path)
    portable = compile_ptq(saturating_onnx, sets, tmp_path / "portable")[0].artifact
    eight_bit = compile_ptq(saturating_onnx, sets, tmp_path / "vnni", isa_profile="x86-vnni")[0].artifact
    low, high = input_range(portable)  # inputs the calibrated range holds, so that no clipping adds its own error
    x = np.random.default_rng(0).uniform(low, high, (8, 1, 40, 64)).astype(np.float32)
    np.save(tmp_path / "x.npy", x)

    def outputs(model: Path, masked: bool) -> np.ndarray:
        y = tmp_path / f"{model.parent.name}-{masked}.npy"
        seen = subprocess.run([sys.executable, "-c", RUN_ONNX, str(model), str(tmp_path / "x.npy"), str(y)],
                              env=avx2_only.environment(library) if masked else None, capture_output=True, text=True,
                              check=True).stdout.split()
        assert not masked or seen == ["False", "False"]  # the masked child saw no AVX-512 and no VNNI
        return np.load(y)

    float_out = outputs(saturating_onnx, masked=False)
    portable_error = np.abs(outputs(portable, masked=True) - float_out).max()
    eight_bit_error = np.abs(outputs(eight_bit, masked=True) - float_out).max()
    assert eight_bit_error > 10 * portable_error, (eight_bit_error, portable_error)
    # 7-bit weights: exact 32-bit sums on every x86 kernel, so the same outputs as this host's own kernels
    np.testing.assert_allclose(outputs(portable, masked=True), outputs(portable, masked=False), rtol=0, atol=1e-6)


def test_keep_float_leaves_the_matched_layer_float(tiny_onnx, sets, tmp_path):
    result, doc = compile_ptq(tiny_onnx, sets, tmp_path / "keep", keep_float=["6"])
    q = doc["quantization"]
    assert {lp["name"]: lp["int8"] for lp in q["layers"]} == {"0": True, "2": True, "6": False}
    assert q["float_layers"] == [{"name": "6", "reason": "kept float by keep_float ['6']"}]
    macs = {lp["name"]: lp["macs"] for lp in q["layers"]}
    assert q["int8_mac_fraction"] == pytest.approx((macs["0"] + macs["2"]) / sum(macs.values()))
    assert sorted(int8_weights(result.artifact)) == ["/0/Conv", "/2/Conv"]


def test_mixed_precision_returns_layers_to_float_until_the_target_holds(tiny_onnx, sets, tmp_path):
    _, doc = compile_ptq(tiny_onnx, sets, tmp_path / "mixed", mixed_precision=True, target_error_increase_deg=1e-6,
                         min_int8_mac_fraction=0.0)
    q = doc["quantization"]
    decisions = q["plan"]["decisions"]
    # a missed target: every searched observer is judged with all layers in INT8 first, and the closest one kept
    assert decisions[0].startswith(f"observer {q['plan']['activations']['observer']}")
    assert all(f"{obs}: error increase" in decisions[0] for obs in ("minmax", "mse", "percentile"))
    assert decisions[1].startswith("all quantizable layers in INT8: error increase")
    assert "on 32 calibration samples" in decisions[1]  # whole plans: every calibration sample, not 16
    assert q["float_layers"], "an unreachable target must send at least one layer back to float"
    first = decisions[2].split(" -> float")[0]
    assert first in {f["name"] for f in q["float_layers"]}
    sens = {lp["name"]: lp["sensitivity_deg"] for lp in q["layers"]}
    assert all(v is not None and v >= 0 for v in sens.values())  # a mean difference from FP32, never negative
    assert sens[first] == max(sens.values())  # the most sensitive layer goes first
    reason = next(f["reason"] for f in q["float_layers"] if f["name"] == first)
    assert reason.startswith("kept float: most sensitive layer left (")
    assert "error increase" in reason  # and the target it missed when it went


def test_the_observer_is_chosen_by_the_output_and_the_plan_says_why(tiny_onnx, sets, tmp_path):
    _, doc = compile_ptq(tiny_onnx, sets, tmp_path / "holds", mixed_precision=True, observer="percentile",
                         target_error_increase_deg=50.0, min_int8_mac_fraction=0.0)
    q = doc["quantization"]
    first, second = q["plan"]["decisions"]
    assert first.startswith(f"observer {q['plan']['activations']['observer']}") and "among the plans that hold" in first
    assert all(f"{o}: error increase" in first for o in ("percentile", "mse", "minmax"))
    assert second.startswith("all quantizable layers in INT8") and q["float_layers"] == []


def int32_biases(path: Path) -> dict[str, np.ndarray]:
    return {i.name: numpy_helper.to_array(i) for i in onnx.load(str(path)).graph.initializer
            if i.data_type == onnx.TensorProto.INT32 and not i.name.endswith("zero_point")}


@pytest.mark.parametrize("option, on, label, key, constants", [
    ("bias_correction", True, "bias correction", "bias_correction", lambda path: int32_biases(path)),
    ("weight_rounding", "gptq", "GPTQ weight rounding", "rounding", lambda path: int8_weights(path))])
def test_a_weight_edit_is_judged_by_the_output_when_asked_for(tiny_onnx, sets, tmp_path, option, on, label, key, constants):
    with_edit, doc = compile_ptq(tiny_onnx, sets, tmp_path / "on", target_error_increase_deg=50.0, **{option: on})
    plan = doc["quantization"]["plan"]
    judged = next(d for d in plan["decisions"] if d.startswith(label))
    assert "without: mean difference" in judged and f"with {label}: mean difference" in judged
    assert "on the 16 calibration samples they did not fit" in judged  # fitted on the 16 even-numbered of 32
    kept = judged.startswith(f"{label} kept:")
    assert (plan["weights"][key] == on) is kept
    default, doc = compile_ptq(tiny_onnx, sets, tmp_path / "off", target_error_increase_deg=50.0)  # the default: off
    plan = doc["quantization"]["plan"]
    assert plan["weights"][key] != on and not any(d.startswith(label) for d in plan["decisions"])
    # the artifact is the judged plan's: its constants differ from the default's exactly when the edit was kept
    a, b = constants(Path(with_edit.artifact)), constants(Path(default.artifact))
    assert a.keys() == b.keys() and len(a) == 3
    assert any(not np.array_equal(a[k], b[k]) for k in a) is kept


def test_the_weight_edits_fit_the_even_samples_and_are_judged_on_the_odd_ones():
    from edgekit.backends.onnx.ptq import CalibEval, fit_and_held_out
    from edgekit.evalset import ModelInputs

    fit, held_out = fit_and_held_out(7)
    assert fit.tolist() == [0, 2, 4, 6] and held_out.tolist() == [1, 3, 5]
    assert fit_and_held_out(1)[0].tolist() == [0] and fit_and_held_out(1)[1] is None  # one sample: fitted and judged
    # a temporal judge with two gaze vectors per sample keeps each judged sample's own two FP32 vectors
    inputs = ModelInputs({"frames": np.arange(7, dtype=np.float32)[:, None]}, np.zeros((7, 2, 3)))
    ref = np.arange(14 * 3, dtype=np.float64).reshape(14, 3)
    judge = CalibEval(Path("unused.onnx"), inputs, card=None, n=7, ref=ref).subset(held_out)
    assert judge.inputs.arrays["frames"].ravel().tolist() == [1, 3, 5]
    np.testing.assert_array_equal(judge.ref, ref[[2, 3, 6, 7, 10, 11]])


def test_choose_observer_weighs_the_mean_and_the_largest_difference():
    from edgekit.quant.plan import ObserverTrial, QuantPlan, choose_observer

    def trial(observer, mean, largest, distance=0.5):
        return ObserverTrial(observer, QuantPlan(), 0.0, mean, largest, distance)

    # a finer mean that clips a few samples hard loses to a slightly coarser one without the clipping
    chosen, why = choose_observer([trial("percentile", 0.20, 2.0), trial("mse", 0.21, 0.9), trial("minmax", 0.25, 0.8)])
    assert chosen.observer == "mse" and "closest to FP32" in why
    # ties keep the first (the configured observer)
    assert choose_observer([trial("percentile", 0.2, 1.0), trial("mse", 0.2, 1.0)])[0].observer == "percentile"
    # only a plan holding every target can win on closeness; with none holding, the closest to the targets
    assert choose_observer([trial("percentile", 0.1, 0.5, 1.2), trial("minmax", 0.3, 1.0, 0.9)])[0].observer == "minmax"
    chosen, why = choose_observer([trial("percentile", 0.1, 0.5, 1.5), trial("minmax", 0.3, 1.0, 1.3)])
    assert chosen.observer == "minmax" and "closest to the targets" in why


def test_observer_search_can_be_turned_off(tiny_onnx, sets, tmp_path):
    _, doc = compile_ptq(tiny_onnx, sets, tmp_path / "nosearch", mixed_precision=True, observer_search=False,
                         target_error_increase_deg=1e-6, min_int8_mac_fraction=0.0)
    decisions = doc["quantization"]["plan"]["decisions"]
    assert doc["quantization"]["plan"]["activations"]["observer"] == "minmax"
    assert not any(d.startswith("observer ") for d in decisions)


def test_ptq_refuses_to_run_without_a_calibration_set(tmp_path):
    src = tmp_path / "m.onnx"
    src.write_bytes(b"not read")
    with pytest.raises(BadInputError, match="ptq needs a calibration set; fix: declare `calibration:`"):
        PTQ().run(Artifact.create(src, Format.onnx), Context(work_dir=tmp_path, card=None, calib=None), tmp_path / "o")


def test_ptq_refuses_a_model_that_is_not_fp32(tmp_path):
    src = tmp_path / "m.onnx"
    src.write_bytes(b"not read")
    ctx = Context(work_dir=tmp_path, card=None, calib=standard_set("calib", 16))
    with pytest.raises(BadInputError, match="ptq needs an FP32 ONNX model, got fp16; fix: put ptq before onnx_fp16"):
        PTQ().run(Artifact.create(src, Format.onnx, precision="fp16"), ctx, tmp_path / "o")


@pytest.mark.parametrize("options", [{"isa_profile": "xnnpack"}, {"observer": "max"}, {"percentile": 50},
                                     {"percentile": 100.5}, {"sensitivity_samples": 8}, {"target_error_increase_deg": 0},
                                     {"min_int8_mac_fraction": 1.1}, {"keep_floats": ["fc"]}])
def test_ptq_option_validation(options):
    with pytest.raises(ValidationError):
        PTQ(**options)


def test_ptq_options_and_host_dependence():
    p = PTQ(isa_profile="arm64", keep_float=["fc*"])
    assert str(p) == "ptq(keep_float=['fc*'], isa_profile=arm64)" or str(p) == "ptq(isa_profile=arm64, keep_float=['fc*'])"
    assert "onnxruntime" in p.host_dependence()
    assert PTQ.consumes == frozenset({Format.onnx}) and PTQ.produces == Format.onnx


@pytest.mark.slow
def test_a_temporal_model_with_several_gaze_vectors_per_sample_compiles(tmp_path):
    """temporalgaze reads out one vector per frame: the mixed-precision judge's first n samples are n samples' worth of
    vectors (it once sliced n vectors and failed with a shape mismatch)."""
    result = edgekit.compile("temporalgaze", "onnx-int8", out=tmp_path / "out")
    assert result.passed and result.report.artifact.precision == "int8"
