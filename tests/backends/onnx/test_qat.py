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


def _checks(monkeypatch, *distances):
    """QAT's PTQ checks answer these distances to the targets in turn (the fine-tuning itself still runs)."""
    from edgekit.backends.onnx import qat as qat_mod

    answers = iter(distances)

    def check(self, art, ctx, scratch, ptq):
        d = next(answers)
        missed = ["p95 difference 9.000 > 0.8 deg"] if d > 1 else []
        return qat_mod._Check(0.1 * d, 0.4 * d, 1.0 * d, missed, d, None)

    monkeypatch.setattr(qat_mod.QAT, "_ptq_check", check)


QAT_RECIPE = ("name: qat\nbackend: onnx\ncalibration: synthetic-512\npasses:\n  - fold_bn\n"
              "  - qat: {steps: 2, batch: 8}\n  - export_onnx\n  - ptq: {mixed_precision: false}\n")


def test_qat_that_does_not_bring_ptq_closer_to_its_targets_is_rejected(tmp_path, monkeypatch):
    _checks(monkeypatch, 2.0, 3.0)  # before fine-tuning 2x the worst target, after 3x: worse
    recipe = tmp_path / "qat.yaml"
    recipe.write_text(QAT_RECIPE)
    res = ek.compile(None, str(recipe), out=tmp_path / "o", cache=False)
    steps = {s.pass_.split("(")[0]: s for s in res.report.steps}
    note = steps["qat"].notes[0]
    assert "distilled from the FP32 model" in note and "rejected: no closer to the targets (3.00 vs 2.00" in note
    assert steps["qat"].sha256 == steps["fold_bn"].sha256  # the module before fine-tuning went on, unchanged


def test_qat_that_brings_ptq_closer_is_kept(tmp_path, monkeypatch):
    _checks(monkeypatch, 2.0, 1.5)
    recipe = tmp_path / "qat.yaml"
    recipe.write_text(QAT_RECIPE)
    res = ek.compile(None, str(recipe), out=tmp_path / "o", cache=False)
    steps = {s.pass_.split("(")[0]: s for s in res.report.steps}
    assert "rejected" not in steps["qat"].notes[0] and "still missed: p95 difference 9.000 > 0.8 deg" in steps["qat"].notes[0]
    assert steps["qat"].sha256 != steps["fold_bn"].sha256
