"""edgekit/backends/coreml/convert.py: the to_coreml pass's own logic that runs without importing coremltools (about
7 s): options, host dependence, the input contract refusals and the activation-quantization preconditions."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from edgekit.artifact import Format
from edgekit.backends.coreml.convert import ToCoreML, _quantizer_hooks
from edgekit.context import Context
from edgekit.errors import BadInputError


@pytest.fixture(scope="module")
def card(tmp_path_factory):
    """The demo model's card: one NCHW 1x1x40x64 gray image input."""
    from edgekit.source import load_source

    return load_source(None, tmp_path_factory.mktemp("coreml-card"), eval_samples=8).card


@pytest.mark.parametrize("options", [{"precision": "int8"}, {"deployment_target": "iOS15"}, {"weights": "palettize2"},
                                     {"weight_threshold": 0}, {"activations": "fp16"}, {"compute_units": "gpu"},
                                     {"input_typ": "image"}])
def test_bad_options_are_refused_on_construction(options):
    with pytest.raises(ValidationError):
        ToCoreML(**options)


def test_defaults_formats_and_one_line_form():
    p = ToCoreML()
    assert (p.precision, p.weights, p.activations, p.input_type) == ("fp16", "float", "float", "tensor")
    assert ToCoreML.consumes == frozenset({Format.torch, Format.torchscript, Format.exported_program})
    assert ToCoreML.produces == Format.coreml
    assert str(ToCoreML(weights="int8")) == "to_coreml(weights=int8)"


@pytest.mark.parametrize("options, depends", [
    ({}, None), ({"weights": "int8"}, None), ({"weights": "sparse"}, None), ({"precision": "fp32"}, None),
    ({"weights": "palettize4"}, "k-means"), ({"activations": "int8"}, "calibration"),
    ({"weights": "palettize4", "activations": "int8"}, "calibration"),  # the activation ranges are named first
])
def test_host_dependence_follows_the_options(options, depends):
    why = ToCoreML(**options).host_dependence()
    assert why is None if depends is None else depends in why


def test_tensor_inputs_need_no_checks(card):
    class FakeCt:  # only TensorType is read for tensor inputs; no coremltools import needed to check the shapes passed
        @staticmethod
        def TensorType(name, shape, dtype):
            return (name, shape, dtype.__name__)

    assert ToCoreML()._inputs(FakeCt, card) == [("image", (1, 1, 40, 64), "float32")]


def test_image_input_refuses_two_inputs(card):
    two = card.model_copy(update={"inputs": [card.inputs[0], card.inputs[0].model_copy(update={"name": "second"})]})
    with pytest.raises(BadInputError, match="to_coreml input_type=image needs one NCHW image input .*fix: use input_type: tensor"):
        ToCoreML(input_type="image")._inputs(None, two)


def test_image_input_refuses_histogram_equalisation(card):
    eq = card.model_copy(update={"preprocessing": card.preprocessing.model_copy(update={"equalize_hist": True})})
    with pytest.raises(BadInputError, match="no histogram equalisation"):
        ToCoreML(input_type="image")._inputs(None, eq)


def test_image_input_refuses_a_non_nchw_layout(card):
    nhwc = card.model_copy(update={"inputs": [card.inputs[0].model_copy(update={"layout": "NHWC", "shape": [1, 40, 64, 1]})]})
    with pytest.raises(BadInputError, match="NCHW"):
        ToCoreML(input_type="image")._inputs(None, nhwc)


def test_int8_activations_need_a_calibration_set(card, tmp_path):
    import torch

    ctx = Context(work_dir=tmp_path, card=card, calib=None)
    with pytest.raises(BadInputError, match="to_coreml activations=int8 needs a calibration set; fix: add `calibration:`"):
        ToCoreML(activations="int8")._activation_ranges(torch.nn.Conv2d(1, 1, 1), ctx)


def test_int8_activations_refuse_torchscript(card, tmp_path):
    import torch

    from edgekit.data.synthetic import standard_set

    scripted = torch.jit.script(torch.nn.Conv2d(1, 1, 1))
    ctx = Context(work_dir=tmp_path, card=card, calib=standard_set("calib", 8))
    with pytest.raises(BadInputError, match="needs a PyTorch module \\(not TorchScript\\)"):
        ToCoreML(activations="int8")._activation_ranges(scripted, ctx)


def test_int8_activation_hooks_quantize_conv_inputs_to_256_levels(card, tmp_path):
    """The hooks fake-quantize each conv/linear input with its calibrated uint8 range: at most 256 distinct values."""
    import torch

    from edgekit.data.synthetic import standard_set
    from edgekit.evalset import model_inputs

    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Conv2d(1, 4, 3, 2, 1), torch.nn.ReLU(), torch.nn.Conv2d(4, 2, 3, 2, 1)).eval()
    calib = standard_set("calib", 16)
    seen = {}
    net[2].register_forward_hook(lambda m, a, out: seen.__setitem__("conv2_in", a[0].detach().clone()))  # after pre-hooks
    ranges = ToCoreML(activations="int8", observer="minmax")._activation_ranges(net, Context(work_dir=tmp_path, card=card,
                                                                                                 calib=calib))
    hooks = _quantizer_hooks(net, ranges, decomposed=False)
    assert len(hooks) == 2
    x = torch.from_numpy(model_inputs(card, standard_set("eval", 4)).arrays["image"])
    with torch.no_grad():
        net(x)
    assert seen["conv2_in"].unique().numel() <= 256
    for h in hooks:
        h.remove()
    with torch.no_grad():
        net(x)
    assert seen["conv2_in"].unique().numel() > 256  # without the hooks the float activations take many more values


def test_int8_activation_calibration_feeds_every_declared_input(tmp_path):
    """A head-pose model (MPIIGaze-style) is calibrated with its image and its head pose (fed the image alone, its
    forward raises TypeError): one hook per conv/linear."""
    import torch

    from edgekit.data.synthetic import standard_set
    from edgekit.models.card import InputSpec, ModelCard, OutputSpec
    from tests.fixtures.gaze_models import PreActGaze

    card = ModelCard(name="preact", arch="tests.fixtures.gaze_models:PreActGaze",
                     inputs=[InputSpec(name="image", shape=[1, 1, 36, 60]),
                             InputSpec(name="head_pose", shape=[1, 2], source="head_pose")],
                     output=OutputSpec(shape=[1, 2], convention="pitchyaw_rad"))
    torch.manual_seed(0)
    net = PreActGaze().eval()
    calib = standard_set("calib", 16, (36, 60), head_pose=True)
    ranges = ToCoreML(activations="int8", observer="minmax")._activation_ranges(net, Context(work_dir=tmp_path, card=card,
                                                                                                 calib=calib))
    hooks = _quantizer_hooks(net, ranges, decomposed=False)
    assert len(hooks) == 4  # stem conv, block conv1 and conv2, fc
    for h in hooks:
        h.remove()
