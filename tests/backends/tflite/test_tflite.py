"""TFLite: real litert-torch conversions, every artifact run in the LiteRT interpreter (ai-edge-litert)."""

import json

import numpy as np
import pytest
import torch
from torch import nn

import edgekit.compiler as ek
from edgekit._optional import require
from edgekit.backends.tflite import graph as tflite_graph
from edgekit.backends.tflite.runner import LiteRTRunner
from edgekit.cli import run
from edgekit.models.io import save_weights
from edgekit.quiet import quiet
from edgekit.recipe import TARGETS_DIR
from tests.fixtures.gaze_models import UnsupportedOpGaze

litert_torch = require("litert_torch", "TFLite tests")


@pytest.fixture(scope="module")
def compiled(tmp_path_factory):
    out = tmp_path_factory.mktemp("tflite")
    return {t: ek.compile(None, t, out=out / t) for t in ("tflite", "tflite-fp16", "tflite-int8", "tflite-int8-io")}


@pytest.mark.slow
def test_fp32_matches_pytorch_within_the_gate(compiled):
    res = compiled["tflite"]
    acc = res.report.accuracy
    assert res.report.passed and res.artifact.suffix == ".tflite"
    assert acc.diff_from_reference.max_deg <= 0.01 and acc.set.n_images == 512
    assert "LiteRT interpreter" in acc.how and "XNNPACK" in acc.how and "1 thread" in acc.how
    assert res.report.latency["p50"].value > 0 and res.report.latency["p99"].value >= res.report.latency["p50"].value
    assert res.report.compute["macs"].value == pytest.approx(4.84e6, rel=0.01)  # same count as the ONNX graph's
    energy = res.report.energy
    assert set(energy.macs_by_precision) == {"fp32"} and energy.estimates


@pytest.mark.slow
def test_litert_without_xnnpack_runs_the_same_artifacts_in_its_builtin_kernels(compiled):
    """benchmarks/int8_ceiling.py times LiteRT's own kernels beside XNNPACK's: the same model, the same outputs up to
    float rounding (FP32) and one INT8 step (INT8: their requantization rounds differently)."""
    for target, atol in (("tflite", 1e-5), ("tflite-int8", 0.05)):
        artifact = compiled[target].artifact
        builtin = LiteRTRunner(artifact, xnnpack=False)
        shape = (4, *builtin.inputs[0]["shape"][1:])
        x = {"image": np.random.default_rng(0).uniform(0, 1, shape).astype(np.float32)}
        assert "builtin kernels (no XNNPACK delegate)" in builtin.describe()
        np.testing.assert_allclose(builtin.run(x), LiteRTRunner(artifact).run(x), atol=atol)


@pytest.mark.slow
def test_fp16_stores_half_precision_weights(compiled):
    fp32, fp16 = compiled["tflite"], compiled["tflite-fp16"]
    assert fp16.report.passed and fp16.report.accuracy.diff_from_reference.max_deg <= 0.1
    rows = [r for r in tflite_graph.layer_rows(tflite_graph.read(fp16.artifact)) if r["macs"]]
    assert rows and all(r["weight_dtype"] == "float16" for r in rows)
    assert fp16.report.size["artifact"].value < 0.55 * fp32.report.size["artifact"].value
    # the shipped target casts the FP32 conversion, found in the pass cache (converted once for both targets)
    assert [s.pass_ for s in fp16.report.steps] == ["fold_bn", "to_tflite", "tflite_fp16"] and fp16.report.steps[1].cached


@pytest.mark.slow
def test_the_fp16_cast_of_the_fp32_conversion_is_to_tflites_own_fp16(compiled, tmp_path):
    """The same bytes as to_tflite(precision=fp16) converting on its own (what the target ran before, and a user's
    recipe may still ask for)."""
    from tests.determinism_probe import digests

    recipe = tmp_path / "own.yaml"
    recipe.write_text("name: own-fp16\nbackend: tflite\npasses:\n  - fold_bn\n  - to_tflite:\n      precision: fp16\n")
    own = digests(["tinygaze"], [str(recipe)])  # the passes alone: the bytes are the question, not the verification
    assert own == {f"tinygaze/{recipe}": compiled["tflite-fp16"].report.artifact.sha256}


@pytest.mark.slow
def test_int8_is_integer_from_edgekits_plan_but_the_one_channel_stem(compiled):
    res = compiled["tflite-int8"]
    q = res.report.quantization
    assert res.report.passed, [g for g in res.report.gates if not g.passed]
    assert res.report.accuracy.error_increase_deg <= 0.3
    assert q.int8_mac_fraction >= 0.9 and q.int8_mac_fraction_planned >= 0.9
    assert q.plan.activations["observer"] == "percentile" and q.plan.isa_profile == "xnnpack"
    assert {lp.name for lp in q.layers} >= {"features.0.0", "head"}
    # the 1-channel stem is float (single_channel_convs: XNNPACK would pad it to 8 channels), every other layer INT8
    assert [(f.name, f.reason) for f in q.float_layers] == [
        ("features.0.0", "float: one input channel, which XNNPACK's INT8 conv pads to 8 (single_channel_convs)")]
    rows = tflite_graph.layer_rows(tflite_graph.read(res.artifact))
    mac_rows = [r for r in rows if r["macs"]]
    assert [r["precision"] for r in mac_rows[1:]] == ["int8"] * (len(mac_rows) - 1) and mac_rows[0]["precision"] != "int8"
    assert all(r["weight_dtype"] == "int8" for r in mac_rows[1:])
    # the ops that stay float are listed, by name, not silently: the stem's MACs and the output's normalisation
    floats = res.report.runtime.float_ops
    assert {f.op for f in floats} >= {"DIV", "SQRT"} and [f.macs for f in floats if f.macs] == [mac_rows[0]["macs"]]
    assert any("stay float" in n for n in res.report.notes)
    assert set(res.report.energy.macs_by_precision) == {"int8", "fp32"}
    sidecar = json.loads((res.out_dir / "io.json").read_text())
    assert sidecar["inputs"][0]["dtype"] == "float32" and sidecar["inputs"][0]["quantization"] is None


@pytest.mark.slow
def test_int8_io_sidecar_is_what_the_caller_feeds(compiled):
    res = compiled["tflite-int8-io"]
    assert res.report.passed
    sidecar = json.loads((res.out_dir / "io.json").read_text())
    inp, out = sidecar["inputs"][0], sidecar["outputs"][0]
    assert inp["dtype"] == "int8" and out["dtype"] == "int8"
    from ai_edge_litert.interpreter import Interpreter

    with quiet():
        interp = Interpreter(model_path=str(res.artifact))
        interp.allocate_tensors()
    detail, out_detail = interp.get_input_details()[0], interp.get_output_details()[0]
    assert detail["dtype"] == np.int8 and detail["quantization"] == pytest.approx((inp["quantization"]["scale"],
                                                                                  inp["quantization"]["zero_point"]))
    # a caller that follows the sidecar by hand gets what edgekit's verification measured
    x = np.random.default_rng(0).uniform(-1, 1, inp["shape"]).astype(np.float32)
    q = np.clip(np.rint(x / inp["quantization"]["scale"]) + inp["quantization"]["zero_point"], -128, 127).astype(np.int8)
    interp.set_tensor(detail["index"], q)
    interp.invoke()
    y = (interp.get_tensor(out_detail["index"]).astype(np.float32) - out["quantization"]["zero_point"]) * out["quantization"]["scale"]
    np.testing.assert_allclose(y, LiteRTRunner(res.artifact).run({"image": x}), atol=1e-6)
    with pytest.raises(ValueError, match="INT8"):
        interp.set_tensor(detail["index"], x)  # floats are refused: the contract is int8


@pytest.mark.slow
def test_temporal_gru_model_converts_and_verifies(tmp_path):
    res = ek.compile("temporalgaze", "tflite", out=tmp_path / "t")
    assert res.report.passed and res.report.accuracy.diff_from_reference.max_deg <= 0.01
    assert res.report.accuracy.set.n_images > 100


def test_unsupported_operator_names_op_and_layer(tmp_path, capsys):
    path = save_weights(UnsupportedOpGaze(), tmp_path / "odd.safetensors")
    out = tmp_path / "o"
    code = run(["compile", str(path), "--arch", "tests.fixtures.gaze_models:UnsupportedOpGaze", "--input-shape", "1x1x40x64",
                "--target", "tflite", "--out", str(out)])
    err = [line for line in capsys.readouterr().err.splitlines() if line.startswith("error:")]
    assert code == 2 and len(err) == 1
    assert "operator aten.cummax (in module odd)" in err[0] and "fix:" in err[0]
    assert not out.exists()


def test_layer_counts_by_hand(tmp_path):
    """MACs and precision read from the flatbuffer against hand-computed values for a conv and a linear layer."""
    model = nn.Sequential(nn.Conv2d(2, 4, 3, stride=2, padding=1), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 4 * 5, 3)).eval()
    with quiet():
        litert_torch.convert(model, (torch.zeros(1, 2, 8, 10),)).export(str(tmp_path / "m.tflite"))
    rows = {r["op"]: r for r in tflite_graph.layer_rows(tflite_graph.read(tmp_path / "m.tflite")) if r["macs"]}
    assert rows["CONV_2D"]["macs"] == 4 * 4 * 5 * (2 * 3 * 3)  # output elements x (cin x kh x kw)
    assert rows["FULLY_CONNECTED"]["macs"] == 3 * 80
    assert rows["CONV_2D"]["weight_elems"] == 4 * 2 * 3 * 3 + 4 and rows["CONV_2D"]["precision"] == "fp32"
    assert rows["CONV_2D"]["layer"] == "0" and rows["FULLY_CONNECTED"]["layer"] == "3"


@pytest.mark.slow
@pytest.mark.parametrize("target", ["tflite", "tflite-int8-io"])
def test_two_input_model_converts_and_runs(tmp_path, target):
    """Image + head pose through litert-torch, also after edgekit rewrote the int8 I/O: the signature still names both
    inputs in argument order, and the head pose really changes the output."""
    from tests.fixtures.gaze_models import PreActGaze, randomize_batchnorm

    torch.manual_seed(0)
    weights = save_weights(randomize_batchnorm(PreActGaze()), tmp_path / "preact.safetensors")
    res = ek.compile(str(weights), target, arch="tests.fixtures.gaze_models:PreActGaze",
                     input_shape=["image=1x1x36x60", "head_pose=1x2"], output_convention="pitchyaw", out=tmp_path / "p",
                     cache=False)
    assert res.report.accuracy.diff_from_reference.mean_deg < (0.01 if target == "tflite" else 2.0), res.report.accuracy
    runner = LiteRTRunner(res.artifact)
    assert [d["shape"].tolist() for d in runner.inputs] == [[1, 1, 36, 60], [1, 2]]
    assert list(runner.interpreter.get_signature_runner().get_input_details()) == ["args_0", "args_1"]
    image = np.random.default_rng(0).uniform(-1, 1, (1, 1, 36, 60)).astype(np.float32)
    outs = [runner.run({"image": image, "head_pose": np.array([[p, -p]], np.float32)}) for p in (0.0, 0.5)]
    assert np.abs(outs[0] - outs[1]).max() > 1e-3


def test_inputs_follow_the_signatures_argument_order_not_the_interpreters():
    from edgekit.backends.tflite.runner import _inputs_in_argument_order

    class Reordered:  # an interpreter listing its inputs in another order than the forward's arguments
        def get_input_details(self):
            return [{"index": 7, "name": "b"}, {"index": 3, "name": "a"}]

        def get_signature_runner(self):
            return type("Runner", (), {"get_input_details": lambda _: {"args_1": {"index": 7}, "args_0": {"index": 3}}})()

    assert [d["index"] for d in _inputs_in_argument_order(Reordered())] == [3, 7]
    Reordered.get_signature_runner = lambda self: (_ for _ in ()).throw(ValueError("no signature"))
    assert [d["index"] for d in _inputs_in_argument_order(Reordered())] == [7, 3]  # no signature: interpreter order


@pytest.mark.slow
def test_observer_search_judges_every_observer_and_converts_with_the_chosen_one(tmp_path):
    recipe = tmp_path / "search.yaml"
    recipe.write_text((TARGETS_DIR / "tflite-int8.yaml").read_text().replace("name: tflite-int8", "name: search")
                      .replace("      observer: percentile\n", "      observer: minmax\n      observer_search: true\n"))
    res = ek.compile(None, str(recipe), out=tmp_path / "o")
    plan = res.report.quantization.plan
    chosen = plan.activations["observer"]
    assert plan.decisions[0].startswith(f"observer {chosen}") and "torch fake quantization" in plan.decisions[0]
    assert all(f"{o}: error increase" in plan.decisions[0] for o in ("minmax", "mse", "percentile"))
    assert res.report.passed and f"observer {chosen})" in " ".join(n for s in res.report.steps for n in s.notes)
