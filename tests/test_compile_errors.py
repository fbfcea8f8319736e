"""Bad input never gives a traceback or a half-written output: one line, exit 2 (or 1 for gates)."""

import json

import pytest

from edgekit.artifact import Format
from edgekit.cli import run
from edgekit.errors import BadInputError
from edgekit.models.io import load_shipped, save_weights
from edgekit.backends.onnx.export import ExportOnnx
from edgekit.passes.fold_bn import FoldBN
from edgekit.pipeline import Pipeline
from tests.fixtures.gaze_models import UnsupportedOpGaze


def _fails(argv, message, capsys, code=2):
    assert run(argv) == code
    err = capsys.readouterr().err
    assert "Traceback" not in err
    errors = [line for line in err.strip().splitlines() if line.startswith("error: ")]
    assert len(errors) == 1 and err.strip().endswith(errors[0]), err  # one error line, last
    assert message in errors[0], errors[0]
    return errors[0]


def test_missing_model_file(tmp_path, capsys):
    out = tmp_path / "out"
    _fails(["compile", str(tmp_path / "nope.safetensors"), "--out", str(out)], "nope.safetensors: no such file", capsys)
    assert not out.exists()


def test_truncated_safetensors(tmp_path, capsys):
    model, _ = load_shipped("tinygaze")
    path = save_weights(model, tmp_path / "w.safetensors")
    path.write_bytes(path.read_bytes()[:4000])
    out = tmp_path / "out"
    _fails(["compile", str(path), "--arch", "tinygaze", "--out", str(out)], "w.safetensors: unreadable safetensors file", capsys)
    assert not out.exists()


def test_state_dict_that_does_not_fit_the_architecture(tmp_path, capsys):
    from edgekit.models import build

    path = save_weights(build("tinygaze", {"width": 8}), tmp_path / "narrow.safetensors")
    _fails(["compile", str(path), "--arch", "tinygaze", "--out", str(tmp_path / "o")],
           "narrow.safetensors: weights do not fit TinyGaze (shape of features.0.0.weight", capsys)


def test_weights_without_arch(tmp_path, capsys):
    model, _ = load_shipped("tinygaze")
    path = save_weights(model, tmp_path / "w.safetensors")
    _fails(["compile", str(path)], "a weights file needs --arch", capsys)


def test_wrong_input_shape(tmp_path, capsys):
    line = _fails(["compile", "tinygaze", "--input-shape", "1x1x32x32", "--out", str(tmp_path / "o")],
                  "tinygaze does not run on input image=1x1x32x32", capsys)
    assert "fix: pass the model's --input-shape" in line
    _fails(["compile", "tinygaze", "--input-shape", "1xAx32"], "--input-shape '1xAx32' is not like", capsys)


def test_unknown_target(capsys):
    line = _fails(["compile", "--target", "pdp11"], "unknown target 'pdp11'; fix: use one of ", capsys)
    assert all(name in line for name in ("onnx", "onnx-int8", "coreml"))


def test_recipe_with_unknown_key_names_file_key_path_and_line(tmp_path, capsys):
    recipe = tmp_path / "typo.yaml"
    recipe.write_text("name: typo\nbackend: onnx\npasses:\n  - fold_bn\n  - export_onnx:\n      opsett: 17\n")
    line = _fails(["compile", "--target", str(recipe), "--out", str(tmp_path / "o")],
                  "typo.yaml: passes[1].export_onnx.opsett (line 6): Extra inputs are not permitted", capsys)
    assert not (tmp_path / "o").exists() and "edgekit schema" in line
    recipe.write_text("name: typo\nbackend: onnx\npasses: [fold_bn, export_onnx]\ngatez:\n  max_diff_deg: 0.1\n")
    _fails(["compile", "--target", str(recipe)], "typo.yaml: gatez (line 4): Extra inputs are not permitted", capsys)
    recipe.write_text("name: typo\nbackend: onnx\npasses: [fold_bn, export_onnx\n")
    _fails(["compile", "--target", str(recipe)], "typo.yaml: not valid YAML (line 4", capsys)
    recipe.write_text("name: typo\nbackend: onnx\npasses: [fold_bn, export_onnx]\ngates:\n  max_diff_deg: -1\n")
    _fails(["compile", "--target", str(recipe)], "typo.yaml: gates.max_diff_deg (line 5): Input should be greater than 0", capsys)


def test_unsupported_operator_names_op_and_module(tmp_path, capsys):
    path = save_weights(UnsupportedOpGaze(), tmp_path / "odd.safetensors")
    out = tmp_path / "o"
    line = _fails(["compile", str(path), "--arch", "tests.fixtures.gaze_models:UnsupportedOpGaze",
                   "--input-shape", "1x1x40x64", "--out", str(out)], "operator aten::cummax (in module odd)", capsys)
    assert "opset 17" in line
    assert not out.exists()


def test_bad_arch_config_and_output_convention(capsys):
    _fails(["compile", "x.safetensors", "--arch-config", "[1]"], "--arch-config '[1]' is not a JSON object", capsys)
    _fails(["compile", "--output-convention", "euler"], "--output-convention 'euler'", capsys)


def test_pipeline_links_are_checked_and_printed():
    with pytest.raises(BadInputError, match="pipeline link export_onnx -> fold_bn is broken: export_onnx produces onnx"):
        Pipeline([ExportOnnx(), FoldBN()])
    assert str(Pipeline([FoldBN(), ExportOnnx(opset=13)])) == "fold_bn | export_onnx(opset=13)"
    with pytest.raises(BadInputError, match="cannot take a onnx input: none of its passes consumes onnx"):
        Pipeline([FoldBN()]).runnable_from(Format.onnx)
    assert Pipeline([FoldBN(), ExportOnnx()]).runnable_from(Format.onnx) == []  # already exported: verify as is


def test_pass_options_are_validated():
    with pytest.raises(ValueError, match="opset"):
        ExportOnnx(opset=7)


@pytest.mark.slow
def test_report_rerenders_without_recompiling(tmp_path, capsys):
    out = tmp_path / "r"
    assert run(["compile", "--out", str(out), "--format", "json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["passed"] and doc["artifact_path"].endswith("model.onnx") and doc["report"]["schema_version"] == 2
    (out / "report.html").unlink()
    assert run(["report", str(out / "report.json"), "--html"]) == 0
    assert "<h1>tinygaze &rarr; onnx" in (out / "report.html").read_text()
    (out / "broken.json").write_text("{}")
    _fails(["report", str(out / "broken.json")], "broken.json: not an edgekit report", capsys)


def test_catalog_commands(capsys):
    assert run(["targets", "--format", "json"]) == 0
    names = {t["name"] for t in json.loads(capsys.readouterr().out)}
    assert {"onnx", "onnx-fp16"} <= names
    assert run(["passes"]) == 0
    assert "fold_bn" in capsys.readouterr().out
    assert run(["schema"]) == 0
    schema = json.loads(capsys.readouterr().out)
    assert "passes" in schema["properties"]


def test_missing_dependency_is_exit_3_with_the_install_command(monkeypatch, capsys):
    import edgekit.compiler
    from edgekit._optional import require
    from edgekit.errors import MissingDependencyError

    with pytest.raises(MissingDependencyError, match=r"needs onnxruntime.no_such_module.*fix: pip install 'edgekit\[onnx\]'"):
        require("onnxruntime.no_such_module", "running ONNX artifacts")

    def recipe_needing_a_missing_package(target):
        return require("onnx.no_such_module", "loading this recipe")

    # the CLI maps the error to exit 3 and one line, wherever it is raised
    monkeypatch.setattr(edgekit.compiler, "load_recipe", recipe_needing_a_missing_package)
    _fails(["compile"], "fix: pip install 'edgekit[onnx]'", capsys, code=3)
