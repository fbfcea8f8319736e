"""INT8 on the real runtime: onnxruntime runs the QDQ artifact; errors are measured in degrees."""

import json

import numpy as np
import onnx
import pytest

import edgekit.compiler as ek
from edgekit.cli import run
from edgekit.data import synthetic
from edgekit.data.npz import write_gazeset


@pytest.fixture(scope="module")
def int8(tmp_path_factory):
    return ek.compile(None, "onnx-int8", out=tmp_path_factory.mktemp("int8") / "o")


@pytest.mark.slow
def test_default_int8_recipe_holds_the_gate_on_tinygaze(int8):
    rep = int8.report
    assert rep.passed and rep.pipeline.startswith("fold_bn | export_onnx | ptq")
    assert rep.accuracy.error_increase_deg <= 0.3
    assert rep.accuracy.diff_from_reference.p95_deg <= 1.0
    q = rep.quantization
    assert q.int8_mac_fraction >= 0.9 and q.plan.weights["granularity"] == "per_output_channel"
    assert q.plan.calibration["digest"] != rep.inputs_digest["eval_set"]
    assert rep.inputs_digest["calib_set"] == q.plan.calibration["digest"]
    assert "this host" in q.host_vs_profile
    c = rep.comparison
    assert c.size_ratio > 3.5  # int8 weights: about 4x smaller than fp32
    assert "interleaved" in c.latency_int8["p50"].how
    assert {lp.name for lp in q.layers} >= {"features.0.0", "head"}
    # every layer in INT8 held the targets on the calibration set: no per-layer sensitivity runs were needed
    assert q.float_layers == [] and all(lp.sensitivity_deg is None for lp in q.layers)
    assert q.plan.decisions[0].startswith(f"observer {q.plan.activations['observer']}")  # chosen by the output
    assert q.plan.decisions[1].startswith("all quantizable layers in INT8: error increase")


@pytest.mark.slow
def test_artifact_is_qdq_with_per_channel_int8_weights(int8):
    model = onnx.load(str(int8.artifact))
    ops = [n.op_type for n in model.graph.node]
    assert "QuantizeLinear" in ops and "DequantizeLinear" in ops
    inits = {i.name: i for i in model.graph.initializer}
    conv = next(n for n in model.graph.node if n.op_type == "Conv")
    dq = next(n for n in model.graph.node if n.output[0] == conv.input[1])
    w = inits[dq.input[0]]
    assert w.data_type == onnx.TensorProto.INT8
    scales = onnx.numpy_helper.to_array(inits[dq.input[1]])
    assert scales.shape == (w.dims[0],)  # one scale per output channel
    qw = onnx.numpy_helper.to_array(w)
    assert np.abs(qw).max() <= 64  # 7-bit weights: the portable profile cannot saturate u8s8 kernels
    md = (int8.out_dir / "report.md").read_text()
    assert "## Quantization" in md and "sensitivity alone in INT8" in md


def test_calibration_overlapping_evaluation_is_refused(tmp_path, capsys):
    evals = tmp_path / "eval.npz"
    write_gazeset(synthetic.standard_set("eval", 64), evals)
    assert run(["compile", "-t", "onnx-int8", "--calib-set", str(evals), "--eval-set", str(evals), "--out", str(tmp_path / "o")]) == 2
    assert "the calibration set is the evaluation set" in capsys.readouterr().err
    same_seed = tmp_path / "calib.npz"
    write_gazeset(synthetic.standard_set("eval", 32), same_seed)
    assert run(["compile", "-t", "onnx-int8", "--calib-set", str(same_seed), "--eval-set", str(evals)]) == 2
    assert "share renderer seed 3" in capsys.readouterr().err
    assert not (tmp_path / "o").exists()


def _recipe(tmp_path, ptq_options: str, gates: str = "max_error_increase_deg: 0.3") -> str:
    path = tmp_path / "r.yaml"
    path.write_text(f"name: custom-int8\nbackend: onnx\ncalibration: synthetic-512\npasses:\n  - fold_bn\n  - export_onnx\n"
                    f"  - ptq: {ptq_options}\ngates:\n  {gates}\n")
    return str(path)


@pytest.mark.slow
def test_keep_float_override_by_module_pattern(tmp_path):
    res = ek.compile(None, _recipe(tmp_path, "{keep_float: ['head', 'features.0.*']}"), out=tmp_path / "o")
    floats = {f.name: f.reason for f in res.report.quantization.float_layers}
    assert set(floats) == {"head", "features.0.0"} and "keep_float" in floats["head"]
    assert res.report.quantization.int8_mac_fraction < 1.0


@pytest.mark.slow
def test_mixed_precision_returns_most_sensitive_layers_until_the_mac_floor(tmp_path):
    res = ek.compile(None, _recipe(tmp_path, "{target_error_increase_deg: 0.00001, min_int8_mac_fraction: 0.6}"),
                     out=tmp_path / "o")
    q = res.report.quantization
    decisions = q.plan.decisions
    assert decisions[0].startswith("observer ")  # the observers are compared first
    decisions = decisions[1:]
    assert decisions[0].startswith("all quantizable layers in INT8")
    assert q.int8_mac_fraction >= 0.6
    assert any(d.startswith("stopped:") for d in decisions) or len(q.float_layers) >= 1
    sens = {lp.name: lp.sensitivity_deg for lp in q.layers}
    floats = [f.name for f in q.float_layers]
    if floats:  # the first one sent back to float is the most sensitive of all that fit above the MAC floor
        first = decisions[1].split(" -> float")[0] if " -> float" in decisions[1] else None
        assert first in floats and all(sens[first] >= sens[lp.name] for lp in q.layers
                                       if lp.int8 or lp.name == first) or decisions[1].endswith("below 60%")


@pytest.mark.slow
def test_int8_gate_failure_names_the_costliest_layers(tmp_path, capsys):
    # a calibration target out of reach with no room to leave INT8: the sensitivity is measured, nothing goes float
    recipe = _recipe(tmp_path, "{target_error_increase_deg: 0.000001, min_int8_mac_fraction: 1.0, observer_search: false}",
                     gates="max_error_increase_deg: 0.000001")
    # error increase can be negative by chance; p95 difference from FP32 cannot be tiny for INT8
    recipe_text = open(recipe).read().replace("max_error_increase_deg: 0.000001", "p95_diff_deg: 0.000001")
    open(recipe, "w").write(recipe_text)
    out = tmp_path / "o"
    assert run(["compile", "-t", recipe, "--out", str(out)]) == 1
    report = json.loads((out / "report.json").read_text())
    assert any(n.startswith("the most sensitive layers in INT8") for n in report["notes"])
    assert (out / "model.onnx").is_file()


def test_unknown_calibration_set(tmp_path, capsys):
    path = tmp_path / "r.yaml"
    path.write_text("name: x\nbackend: onnx\ncalibration: nope\npasses: [fold_bn, export_onnx, ptq]\n")
    assert run(["compile", "-t", str(path)]) == 2
    assert "unknown calibration set 'nope'" in capsys.readouterr().err


@pytest.mark.slow
def test_onnx_input_quantized_by_ptq_is_compared_with_itself_in_fp32(tmp_path):
    fp32 = ek.compile(None, "onnx", out=tmp_path / "fp32")
    res = ek.compile(str(fp32.artifact), "onnx-int8", out=tmp_path / "int8")
    assert res.report.pipeline.split(" | ")[-1].startswith("ptq(") and res.report.steps[0].pass_.startswith("ptq")
    c = res.report.comparison
    assert c.fp32_sha256 == fp32.report.artifact.sha256 and c.size_ratio > 3.5
