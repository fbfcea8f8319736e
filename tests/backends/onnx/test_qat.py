"""The qat pass: skipped when PTQ already meets its target, otherwise fine-tunes with fake quantization."""

import pytest

import edgekit.compiler as ek

pytestmark = pytest.mark.slow  # every test compiles onnx-int8 end to end (one fine-tunes)


def test_qat_is_skipped_when_ptq_meets_its_target(tmp_path):
    res = ek.compile(None, "onnx-int8-qat", out=tmp_path / "o")
    qat = next(s for s in res.report.steps if s.pass_.startswith("qat"))
    assert res.passed and qat.notes[0].startswith("qat: not needed, PTQ error increase")


def test_qat_fine_tunes_with_fake_quantization_and_ptq_quantizes_the_result(tmp_path):
    recipe = tmp_path / "qat.yaml"
    recipe.write_text("name: qat\nbackend: onnx\ncalibration: synthetic-512\npasses:\n  - fold_bn\n"
                      "  - qat: {steps: 20, batch: 32, lr: 0.0001, always: true}\n  - export_onnx\n  - ptq: {mixed_precision: false}\n"
                      "gates:\n  max_error_increase_deg: 0.5\n")
    res = ek.compile(None, str(recipe), out=tmp_path / "o")
    steps = {s.pass_.split("(")[0]: s for s in res.report.steps}
    assert "20 steps" in steps["qat"].notes[0] and "->" in steps["qat"].notes[0]
    assert steps["qat"].sha256 != steps["fold_bn"].sha256  # the weights really changed
    assert res.passed and res.report.quantization.int8_mac_fraction == 1.0
    assert res.report.artifact.precision == "int8"
