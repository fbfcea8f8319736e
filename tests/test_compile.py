"""edgekit compile end to end on real artifacts: onnxruntime runs every one of them."""

import json

import jsonschema
import numpy as np
import onnx
import pytest
import torch

import edgekit.compiler as ek
from edgekit.cli import run
from edgekit.data import synthetic
from edgekit.models.io import load_shipped, save_weights
from edgekit.recipe import list_targets, load_recipe, recipe_schema
from edgekit.report.model import Report
from tests.fixtures.gaze_models import PreActGaze, randomize_batchnorm


@pytest.fixture(scope="module")
def demo_onnx(tmp_path_factory):
    out = tmp_path_factory.mktemp("demo") / "onnx"
    return ek.compile(None, "onnx", out=out)


@pytest.mark.slow
def test_demo_onnx_artifact_is_verified_and_reported(demo_onnx):
    rep, out = demo_onnx.report, demo_onnx.out_dir
    assert rep.passed and rep.pipeline == "fold_bn | export_onnx"
    acc = rep.accuracy
    assert acc.set.n_samples >= 512 and acc.set.source == f"synthetic:v1:seed={synthetic.SEEDS['eval']}"
    assert acc.diff_from_reference.max_deg <= 0.01
    assert acc.artifact.mean_deg < 5 and acc.predict_mean_baseline.mean_deg > 15
    assert rep.latency["p50"].method == "measured" and "200 runs after 20 warm-up" in rep.latency["p50"].how
    # real timings of a ~0.1 ms model, not placeholders (the percentiles themselves: tests/report/test_measure.py)
    assert all(rep.latency[q].method == "measured" and 0 < rep.latency[q].value < 1000 for q in ("p50", "p90", "p99"))
    # folded: BN weight+bias (416) replaced by conv biases (208), plus a constant
    assert 397_600 < rep.compute["params"].value < 397_700 and 4.5e6 < rep.compute["macs"].value < 5.2e6
    assert rep.size["artifact"].value == (out / "model.onnx").stat().st_size
    assert {"avx2"} <= set(rep.host.isa_flags) or rep.host.machine != "x86_64"
    assert "onnxruntime" in rep.tools and "torch" in rep.tools
    # every file written, and the report re-validates against its schema
    for name in ("model.onnx", "io.json", "report.json", "report.md", "report.html"):
        assert (out / name).is_file()
    again = Report.model_validate_json((out / "report.json").read_text())
    assert again.artifact.sha256 == rep.artifact.sha256
    jsonschema.validate(json.loads((out / "report.json").read_text()), Report.model_json_schema(by_alias=True))
    html = (out / "report.html").read_text()
    assert "<script src" not in html and "http" not in html.split("<body>")[1].split("schema")[0]


@pytest.mark.slow
def test_sidecar_states_the_input_contract(demo_onnx):
    io = json.loads((demo_onnx.out_dir / "io.json").read_text())
    (inp,) = io["inputs"]
    assert inp["shape"] == [1, 1, 40, 64] and inp["dtype"] == "float32" and inp["layout"] == "NCHW"
    assert inp["normalization"]["scale"] == pytest.approx(1 / 127.5) and inp["normalization"]["offset"] == -1.0
    assert io["outputs"][0]["convention"] == "unit_vector"
    model = onnx.load(str(demo_onnx.out_dir / "model.onnx"))
    assert [i.name for i in model.graph.input] == ["image"]
    assert io["sha256"] == demo_onnx.report.artifact.sha256


@pytest.mark.slow
def test_second_compile_is_served_from_the_cache(demo_onnx, tmp_path):
    again = ek.compile(None, "onnx", out=tmp_path / "again")
    assert all(s.cached for s in again.report.steps)
    assert again.report.artifact.sha256 == demo_onnx.report.artifact.sha256


@pytest.mark.slow
def test_fp16_target_within_a_tenth_of_a_degree_and_says_how_it_ran(tmp_path):
    res = ek.compile(None, "onnx-fp16", out=tmp_path / "fp16")
    assert res.passed and res.report.artifact.precision == "fp16"
    assert 0 < res.report.accuracy.diff_from_reference.max_deg <= 0.1
    assert res.report.runtime.fp16_execution is not None
    assert any("CPU EP" in n for n in res.report.notes)
    fp32 = onnx.load(str(tmp_path / "fp16" / "model.onnx"))
    assert any(i.data_type == onnx.TensorProto.FLOAT16 for i in fp32.graph.initializer)


@pytest.mark.slow
def test_temporalgaze_exports_and_verifies(tmp_path):
    res = ek.compile("temporalgaze", "onnx", out=tmp_path / "t")
    acc = res.report.accuracy
    assert res.passed and acc.truth.startswith("future gaze") and acc.set.n_samples >= 512
    assert acc.diff_from_reference.max_deg <= 0.01
    assert res.report.compute["macs"].value > 10 * 4.5e6  # ten frames through the backbone, plus the GRU
    assert "GRU" in res.report.compute["macs"].how


def _tiny_weights(tmp_path):
    model, _ = load_shipped("tinygaze")
    return save_weights(model, tmp_path / "tiny.safetensors"), model


@pytest.mark.slow
def test_weights_torchscript_pt2_and_onnx_inputs_all_verify(tmp_path):
    weights, model = _tiny_weights(tmp_path)
    x = torch.zeros(1, 1, 40, 64)
    torch.save(model.state_dict(), tmp_path / "tiny_sd.pt")
    torch.jit.save(torch.jit.trace(model, x), str(tmp_path / "tiny_ts.pt"))
    torch.export.save(torch.export.export(model, (x,)), str(tmp_path / "tiny.pt2"))
    results = {
        "weights": ek.compile(str(weights), "onnx", arch="tinygaze", out=tmp_path / "a"),
        "state_dict": ek.compile(str(tmp_path / "tiny_sd.pt"), "onnx", arch="tinygaze", out=tmp_path / "b"),
        "torchscript": ek.compile(str(tmp_path / "tiny_ts.pt"), "onnx", input_shape=["1x1x40x64"], out=tmp_path / "c"),
        "pt2": ek.compile(str(tmp_path / "tiny.pt2"), "onnx", input_shape=["1x1x40x64"], out=tmp_path / "d"),
    }
    onnx_in = tmp_path / "a" / "model.onnx"
    results["onnx"] = ek.compile(str(onnx_in), "onnx-fp16", out=tmp_path / "e")
    for kind, res in results.items():
        assert res.passed, kind
        assert res.report.accuracy.artifact.mean_deg < 5, kind
    assert results["torchscript"].report.model.kind == "torchscript"
    assert any("skipped fold_bn" in n for n in results["pt2"].report.notes)
    assert results["onnx"].report.pipeline.endswith("onnx_fp16")
    assert any("skipped fold_bn, export_onnx" in n for n in results["onnx"].report.notes)


@pytest.mark.slow
def test_multi_input_pitchyaw_preactivation_model(tmp_path):
    model = randomize_batchnorm(PreActGaze())
    weights = save_weights(model, tmp_path / "preact.safetensors")
    res = ek.compile(str(weights), "onnx", arch="tests.fixtures.gaze_models:PreActGaze",
                     input_shape=["image=1x1x36x60", "head_pose=1x2"], output_convention="pitchyaw", out=tmp_path / "p")
    assert res.passed and res.report.accuracy.diff_from_reference.max_deg <= 0.01
    assert [i.name for i in res.report.model.inputs] == ["image", "head_pose"]
    fold = res.report.steps[0]
    assert fold.pass_ == "fold_bn" and "folded 2 BatchNorm" in fold.notes[0]  # stem.1 and block.bn2 (after conv1)
    assert "kept 1 BatchNorm" in fold.notes[1] and "block.bn1" in fold.notes[1]  # pre-activation: before its conv
    io = json.loads((tmp_path / "p" / "io.json").read_text())
    assert io["inputs"][1]["source"] == "head_pose" and io["outputs"][0]["convention"] == "pitchyaw_rad"
    m = onnx.load(str(tmp_path / "p" / "model.onnx"))
    assert [i.name for i in m.graph.input] == ["image", "head_pose"]


def test_every_shipped_target_validates_against_the_json_schema():
    import yaml

    schema = recipe_schema()
    for name in list_targets():
        path = load_recipe.__globals__["TARGETS_DIR"] / f"{name}.yaml"
        jsonschema.validate(yaml.safe_load(path.read_text()), schema)
        assert str(load_recipe(name).pipeline())


@pytest.mark.slow
def test_gate_failure_exits_1_and_keeps_artifact_and_report(tmp_path, capsys):
    recipe = tmp_path / "strict.yaml"
    recipe.write_text("name: strict\nbackend: onnx\npasses:\n  - fold_bn\n  - export_onnx\n  - onnx_fp16\n"
                      "gates:\n  max_diff_deg: 0.000001\n")
    out = tmp_path / "strict-out"
    assert run(["compile", "--target", str(recipe), "--out", str(out)]) == 1
    captured = capsys.readouterr()
    assert "gate(s) max_diff_deg failed" in captured.err
    report = Report.model_validate_json((out / "report.json").read_text())
    assert not report.passed and (out / "model.onnx").is_file()
    assert report.parity.checked and report.parity.layers_compared >= 5


@pytest.mark.slow
def test_parity_names_the_first_diverging_layer(tmp_path):
    from edgekit.artifact import Artifact, Format
    from edgekit.report.parity import first_divergence
    from edgekit.source import load_source

    res = ek.compile(None, "onnx", out=tmp_path / "ok")
    model = onnx.load(str(res.artifact))
    convs = [n for n in model.graph.node if n.op_type == "Conv"]
    third = next(i for i in model.graph.initializer if i.name == convs[2].input[1])
    arr = onnx.numpy_helper.to_array(third).copy()
    arr[0] *= 1.5  # a wrong weight in the third conv
    third.CopyFrom(onnx.numpy_helper.from_array(arr, third.name))
    broken = tmp_path / "broken.onnx"
    onnx.save(model, str(broken))
    src = load_source(None, tmp_path / "work")
    folds = [[f"features.{i}.0", f"features.{i}.1"] for i in range(5)]  # what fold_bn did to TinyGaze
    art = Artifact.create(broken, Format.onnx, precision="fp32", bn_folds=folds)
    sample = {"image": np.zeros((1, 1, 40, 64), np.float32) + 0.1}
    parity = first_divergence(src, art, sample)
    assert parity["first_divergent_layer"] == "features.2.1"  # the BatchNorm folded into the third conv
