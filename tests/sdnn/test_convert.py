"""ANN -> sigma-delta conversion: per-channel equalisation keeps the function, integer scales fit 8-bit weights and the
24-bit range, thresholds stay within the error budget, and what netx cannot take is refused by name."""

import numpy as np
import pytest
import torch
from torch import nn
from torch.nn import functional as F

from edgekit.data.metrics import angular_error_deg
from edgekit.errors import BadInputError
from edgekit.data.gaze import readout_vectors
from edgekit.sdnn.convert import (ACT_RANGE, convert, correct_biases, encode_input, float_layers, integer_layers,
                                  scales)
from edgekit.sdnn.mirror import Mirror


def _tiny(seed=0):
    torch.manual_seed(seed)
    model = nn.Sequential(nn.Conv2d(1, 4, 3, 2, 1), nn.ReLU(), nn.Conv2d(4, 6, 3, 2, 1), nn.ReLU(), nn.Flatten(),
                          nn.Linear(6 * 3 * 4, 12), nn.ReLU(), nn.Linear(12, 3)).eval()
    with torch.no_grad():  # channels of very different loudness: what per-channel scales are for
        model[0].weight[1] *= 8
        model[2].weight[:, 1] /= 8
    return model


def _images(n, seed=1):
    g = torch.Generator().manual_seed(seed)
    base = torch.linspace(-1, 1, 16).view(1, 1, 1, 16).expand(n, 1, 12, 16)
    return (base * torch.rand(n, 1, 1, 1, generator=g) + 0.3 * torch.randn(n, 1, 12, 16, generator=g)).clamp(-1, 1)


def _forward(layers, x):
    for lay in layers:
        x = x.flatten(1) if lay.flatten_before else x
        w, b = torch.from_numpy(lay.weight), torch.from_numpy(lay.bias)
        x = F.conv2d(x, w, b, lay.stride, lay.padding) if lay.kind == "conv" else F.linear(x, w, b)
        x = x if lay.readout else F.relu(x)
    return x


def test_equalised_layers_compute_the_same_function_with_every_channel_at_full_range():
    model, x = _tiny(), _images(64).double()
    layers, normalized = float_layers(model, x.float(), 99.9, "unit_vector")
    assert not normalized and [lay.kind for lay in layers] == ["conv", "conv", "dense", "dense"]
    with torch.no_grad():
        assert torch.allclose(_forward(layers, x), model.double()(x), atol=1e-9)
    assert all(abs(max(lay.sum_max, lay.pre_max) - 1) < 1e-9 for lay in layers[:-1])  # loudest channel at 1 per layer


def test_integer_weights_fit_8_bits_and_pre_activations_the_24_bit_range():
    model, x = _tiny(), _images(128)
    layers, _ = float_layers(model, x, 99.9, "unit_vector")
    m = scales(layers, float(x.abs().max()))
    ints = integer_layers(layers, m, (1, 12, 16), [0.0] * 5)
    assert all(-128 <= lay.weight.min() and lay.weight.max() <= 127 for lay in ints[1:])
    assert all(max(lay.sum_max, lay.pre_max) * mk <= ACT_RANGE * (1 + 1e-9) for lay, mk in zip(layers[:-1], m[1:]))
    assert max(int(np.abs(lay.weight).max()) for lay in ints[1:]) == 127  # the bits go somewhere


def test_bias_correction_removes_the_mean_shift_of_8_bit_weights():
    """The 8-bit network (float emulation, the integers' values) misses the ANN's readout by a mean offset per output;
    the corrected biases take it out."""
    model, x = _tiny(), _images(128)
    layers, _ = float_layers(model, x, 99.9, "unit_vector")
    m = scales(layers, float(x.abs().max()))

    def quantised(lays):
        h = torch.from_numpy(encode_input(x.double().numpy(), m[0]) / m[0])
        for k, lay in enumerate(lays, start=1):
            s = 64 * m[k] / m[k - 1]
            w = torch.from_numpy(np.clip(np.rint(lay.weight * s), -128, 127) / s)
            b = torch.from_numpy(lay.bias if lay.readout else np.rint(lay.bias * m[k]) / m[k])
            h = h.flatten(1) if lay.flatten_before else h
            h = F.conv2d(h, w, b, lay.stride, lay.padding) if lay.kind == "conv" else F.linear(h, w, b)
            h = h if lay.readout else F.relu(h)
        return h

    exact = _forward(layers, x.double())
    offset = lambda lays: (quantised(lays) - exact).mean(0).abs().max().item()  # noqa: E731
    fixed = correct_biases(layers, m, x)
    assert offset(fixed) < offset(layers) / 3, (offset(fixed), offset(layers))
    assert all(lay.weight is f.weight for lay, f in zip(layers, fixed))  # only biases change


def test_thresholds_rise_within_the_budget_and_send_fewer_messages():
    model, x = _tiny(), _images(160)
    with torch.no_grad():
        truth = F.normalize(model(x), dim=-1).numpy()  # the ANN is exact: an error increase is the difference from it
    zero = convert(model, x, truth, budget_deg=0.0, search_images=64)
    loose = convert(model, x, truth, budget_deg=1.0, search_images=64)
    assert sum(loose.fractions) > sum(zero.fractions) and loose.meta["increase_deg"] <= 1.0
    assert not any(zero.fractions) and zero.meta["increase_deg"] == zero.meta["quantization_only_increase_deg"] > 0
    assert loose.meta["synops_per_frame"] < zero.meta["synops_per_frame"]
    # the artifact's network on images it was not tuned on: close to the ANN, as the budget says
    x_new = _images(64, seed=9)
    res = Mirror(loose.layers).run(loose.input_integers(x_new.numpy())[:, None], loose.steps_per_frame)
    with torch.no_grad():
        ann = model(x_new).numpy()
    diff = angular_error_deg(readout_vectors(loose.decode(res.readout[:, -1]), "unit_vector"), readout_vectors(ann, "unit_vector"))
    assert float(diff.mean()) < 2.0


@pytest.mark.parametrize("model, match", [
    (nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.ReLU(), nn.AvgPool2d(2), nn.Flatten(), nn.Linear(4 * 6 * 8, 3)),
     r"layer 2 \(average pooling\): the sigma-delta target takes a chain .*fix: distil the model .*loihi-sdnn-distill\), or replace the pooling"),
    (nn.Sequential(nn.Conv2d(1, 4, 3, padding=1, dilation=1, groups=1), nn.ReLU(), nn.Conv2d(4, 4, 3, padding=1, groups=2),
                   nn.ReLU(), nn.Flatten(), nn.Linear(4 * 12 * 16, 3)),
     r"layer 2: grouped, dilated.*not supported by the spiking conversions.*fix: use plain convs"),
    (nn.Sequential(nn.Conv2d(1, 4, 3), nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(), nn.Linear(4, 3)),
     r"layer 2 \(MaxPool2d\): max-pooling does not commute with summing sigma-delta messages .*target loihi-sdnn-distill\)$"),
    (nn.Sequential(nn.Conv2d(1, 4, 3), nn.Hardswish(), nn.Flatten(), nn.Linear(4 * 10 * 14, 3)),  # named for this target
     r"^layer 1 \(Hardswish\): sigma-delta neurons send the changes of ReLU activations only \(not of Hardswish\); "
     r"fix: .*target loihi-sdnn-distill\)$"),
])
def test_what_netx_sdnn_cannot_take_is_refused_by_layer(model, match):
    with pytest.raises(BadInputError, match=match):
        float_layers(model.eval(), _images(8), 99.9, "unit_vector")


def test_a_residual_add_is_refused_naming_the_layer():
    from edgekit.passes.fold_bn import find_conv_bn_pairs, fold_pairs
    from tests.snn.residual_gaze import ResidualGaze

    model = ResidualGaze().eval()
    model = fold_pairs(model, find_conv_bn_pairs(model)[0]).eval()
    with pytest.raises(BadInputError, match=r"layer blocks.0.conv2 \(feeds a residual add\): the sigma-delta target .*fix: distil .*loihi-sdnn-distill\)$"):
        float_layers(model, torch.rand(4, 1, 40, 64), 99.9, "unit_vector")
