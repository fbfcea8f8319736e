"""edgekit/backends/tflite/convert.py: the to_tflite pass's own logic that runs without litert-torch (options, host
dependence, where an unsupported operator sits, edgekit's error messages, refusals when the recipe loads)."""

from __future__ import annotations

import pytest
import torch
from pydantic import ValidationError
from torch import nn

from edgekit.artifact import Format
from edgekit.artifact import Artifact, ArtifactMeta
from edgekit.backends.tflite.convert import TFLiteFp16, ToTFLite, _convert, _export, op_location
from edgekit.errors import BadInputError
from tests.fixtures.gaze_models import UnsupportedOpGaze

ARGS = (torch.zeros(1, 1, 40, 64),)


@pytest.mark.parametrize("options", [{"precision": "int4"}, {"io": "uint8"}, {"observer": "max"}, {"percision": "fp16"}])
def test_bad_options_are_refused_on_construction(options):
    with pytest.raises(ValidationError):
        ToTFLite(**options)


def test_formats_and_one_line_form():
    assert ToTFLite.consumes == frozenset({Format.torch, Format.exported_program})
    assert ToTFLite.produces == Format.tflite
    assert str(ToTFLite()) == "to_tflite"
    assert str(ToTFLite(precision="fp16")) == "to_tflite(precision=fp16)"


def test_the_fp16_cast_takes_only_an_fp32_tflite(tmp_path):
    assert TFLiteFp16.consumes == frozenset({Format.tflite}) and str(TFLiteFp16()) == "tflite_fp16"
    int8 = Artifact(path=tmp_path / "model.tflite", format=Format.tflite, sha256="0" * 64, meta=ArtifactMeta(precision="int8"))
    with pytest.raises(BadInputError, match="tflite_fp16 needs an FP32 .tflite, got int8; fix: put it right after to_tflite"):
        TFLiteFp16().run(int8, None, tmp_path / "out")


def test_only_int8_depends_on_the_host():
    assert ToTFLite(precision="fp32").host_dependence() is None
    assert ToTFLite(precision="fp16").host_dependence() is None
    assert "calibration" in ToTFLite(precision="int8").host_dependence()


def test_op_location_names_the_module_that_calls_the_operator():
    assert op_location(UnsupportedOpGaze().eval(), ARGS, "cummax") == "odd"
    assert op_location(UnsupportedOpGaze().eval(), ARGS, "no_such_op") == "unknown module"


class DataDependent(nn.Module):
    def forward(self, x):
        if x.sum() > 0:  # control flow on a tensor value: torch.export cannot trace it
            return x.mean((2, 3))
        return x.amax((2, 3))


def test_export_failure_is_one_line_with_the_fix():
    with pytest.raises(BadInputError) as err:
        _export(DataDependent(), ARGS)
    msg = str(err.value)
    assert msg.startswith("to_tflite: torch.export failed (")
    assert msg.endswith("fix: make the model exportable (no data-dependent control flow) or use the onnx target")
    assert "\n" not in msg


class FailingConverter:
    """Stands in for the litert_torch module in _convert's error translation only: it raises the message litert-torch
    gives for an operator without a lowering. Nothing here claims a conversion works."""

    def __init__(self, message: str):
        self.message = message

    def convert(self, module, args, **kwargs):
        raise RuntimeError(self.message)


def test_missing_lowering_is_reported_with_the_operator_and_its_module():
    module = UnsupportedOpGaze().eval()
    with pytest.raises(BadInputError) as err:
        _convert(FailingConverter("Lowering not found: aten.cummax.default"), module, ARGS)
    assert str(err.value) == ("to_tflite: operator aten.cummax (in module odd) has no LiteRT lowering in litert-torch; fix: "
                              "replace that layer with supported ops, or use the onnx or coreml target")


def test_other_converter_failures_keep_their_first_line():
    with pytest.raises(BadInputError, match=r"^to_tflite: litert-torch failed \(boom\); fix: ") as err:
        _convert(FailingConverter("boom\nlong traceback"), UnsupportedOpGaze().eval(), ARGS)
    assert "long traceback" not in str(err.value)


def test_int8_io_needs_int8_precision_when_the_recipe_loads(tmp_path):
    with pytest.raises(ValidationError, match="to_tflite io=int8 needs precision int8, got fp32; fix: set precision: int8"):
        ToTFLite(io="int8")
    recipe = tmp_path / "r.yaml"
    recipe.write_text("name: r\nbackend: tflite\npasses: [fold_bn, {to_tflite: {io: int8}}]\n")
    from edgekit.recipe import load_recipe

    with pytest.raises(BadInputError, match=r"r\.yaml: passes\[1\]\.to_tflite \(line 3\): to_tflite io=int8 needs precision int8"):
        load_recipe(recipe)
    assert ToTFLite(io="int8", precision="int8").io == "int8"


def test_float_fixed_output_ops_need_int8_precision():
    with pytest.raises(ValidationError, match="to_tflite fixed_output_ops=float needs precision int8, got fp16; fix: "):
        ToTFLite(precision="fp16", fixed_output_ops="float")
    assert ToTFLite(precision="int8", fixed_output_ops="float").options() == {"precision": "int8", "fixed_output_ops": "float"}


@pytest.mark.parametrize("option, where", [("single_channel_convs", "from its input on"),
                                           ("output_layers", "up to its output")])
def test_float_single_channel_convs_and_output_layers_need_float_io(option, where):
    """int8 I/O is a full-integer model: a float first conv would make its input float, a float output layer its output
    (the defaults yield there)."""
    with pytest.raises(ValidationError, match=f"to_tflite {option}=float needs io float: with int8 I/O the "
                                              f"model is integer {where}; fix: drop {option}"):
        ToTFLite(precision="int8", io="int8", **{option: "float"})
    assert getattr(ToTFLite(precision="int8", io="int8"), option) == "float"  # the default, set aside at the plan
    with pytest.raises(ValidationError, match=f"to_tflite {option}=float needs precision int8, got fp32"):
        ToTFLite(**{option: "float"})
