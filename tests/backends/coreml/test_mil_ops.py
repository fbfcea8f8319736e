"""edgekit's MIL interpreter, op by op: each op it implements for the zoo's packages (softmax, layer_norm, gelu,
hardswish/hardsigmoid, batch_norm, batched matmul, lstm, affine/resample, ...) against PyTorch and, where MIL has one,
against coremltools' own value inference; then the zoo's Core ML compiles end to end (slow)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from torch import nn
from torch.nn import functional as F

from edgekit._optional import require
from edgekit.backends.coreml.mil_interpreter import MilInterpreter, UnsupportedMilError
from edgekit.cli import run
from edgekit.quiet import quiet
from tests.zoo import measure, models

ct = require("coremltools", "Core ML tests")
from coremltools.converters.mil import Builder as mb  # noqa: E402  (after the optional-dependency check)

RNG = np.random.default_rng(0)
TIGHT = {"rtol": 1e-5, "atol": 1e-6}


def _interp() -> MilInterpreter:
    """The op methods without a package; MAC-counting ops add to .macs (their energy rows need a real op)."""
    interp = MilInterpreter.__new__(MilInterpreter)
    interp.macs = 0

    def count(op, macs, x, out):
        interp.macs += macs
    interp._count = count
    return interp


class _Op:  # what an op method reads from its MIL op: the name (in refusals) and inputs (in MAC counting)
    name, op_type = "op", "lstm"
    inputs: dict = {}


def _randn(*shape, scale=2.0):
    return (RNG.standard_normal(shape) * scale).astype(np.float32)


def _value_inference(build):
    """coremltools' own value inference of the MIL op `build` makes from constant inputs."""
    got = {}

    @mb.program(input_specs=[mb.TensorSpec(shape=(1,))], opset_version=ct.target.iOS17)
    def _prog(x):
        got["val"] = build().val
        assert got["val"] is not None, "this MIL op has no value inference"
        return x
    return np.asarray(got["val"], np.float32)


# --- elementwise activations and normalisations, against torch and MIL's value inference -------------------------
X = _randn(2, 5, 4, 3)
UNARY = {  # name: (interpreter call, torch reference, coremltools op for value inference or None)
    "softmax axis -1": (lambda i: i._op_softmax(None, X), lambda t: torch.softmax(t, -1), lambda: mb.softmax(x=X)),
    "softmax axis 1": (lambda i: i._op_softmax(None, X, axis=1), lambda t: torch.softmax(t, 1),
                       lambda: mb.softmax(x=X, axis=1)),
    "gelu exact": (lambda i: i._op_gelu(None, X), F.gelu, lambda: mb.gelu(x=X)),
    "gelu tanh": (lambda i: i._op_gelu(None, X, mode="TANH_APPROXIMATION"), lambda t: F.gelu(t, approximate="tanh"),
                  lambda: mb.gelu(x=X, mode="TANH_APPROXIMATION")),
    "gelu sigmoid": (lambda i: i._op_gelu(None, X, mode="SIGMOID_APPROXIMATION"), lambda t: t * torch.sigmoid(1.702 * t),
                     lambda: mb.gelu(x=X, mode="SIGMOID_APPROXIMATION")),
    "sigmoid_hard (hardsigmoid)": (lambda i: i._op_sigmoid_hard(None, X, alpha=1 / 6, beta=0.5), F.hardsigmoid,
                                   lambda: mb.sigmoid_hard(x=X, alpha=1 / 6, beta=0.5)),
    "thresholded_relu * sigmoid_hard (hardswish)": (
        lambda i: (lambda w: w * i._op_sigmoid_hard(None, w, alpha=1 / 6, beta=0.5))(i._op_thresholded_relu(None, X, -3.0)),
        F.hardswish, None),
    "thresholded_relu": (lambda i: i._op_thresholded_relu(None, X, alpha=0.5), lambda t: torch.where(t >= 0.5, t, 0),
                         lambda: mb.thresholded_relu(x=X, alpha=0.5)),
    "relu6": (lambda i: i._op_relu6(None, X), F.relu6, lambda: mb.relu6(x=X)),
    "silu": (lambda i: i._op_silu(None, X), F.silu, None),  # MIL silu has no value inference
    "clip": (lambda i: i._op_clip(None, X, -0.5, 1.5), lambda t: t.clamp(-0.5, 1.5), lambda: mb.clip(x=X, alpha=-0.5, beta=1.5)),
    "reduce_max": (lambda i: i._op_reduce_max(None, X, axes=[1, 3], keep_dims=True), lambda t: t.amax(dim=(1, 3), keepdim=True),
                   lambda: mb.reduce_max(x=X, axes=[1, 3], keep_dims=True)),
    "layer_norm last axis": (
        lambda i: i._op_layer_norm(None, X, axes=[-1], gamma=X[0, 0, 0], beta=X[1, 1, 1], epsilon=1e-5),
        lambda t: F.layer_norm(t, (3,), torch.from_numpy(X[0, 0, 0]), torch.from_numpy(X[1, 1, 1])),
        lambda: mb.layer_norm(x=X, axes=[-1], gamma=X[0, 0, 0], beta=X[1, 1, 1])),
    "layer_norm two axes, no affine": (lambda i: i._op_layer_norm(None, X, axes=[2, 3]), lambda t: F.layer_norm(t, (4, 3)),
                                       lambda: mb.layer_norm(x=X, axes=[2, 3])),
    "batch_norm": (lambda i: i._op_batch_norm(None, X, X[0, :, 0, 0], np.abs(X[1, :, 0, 0]), X[0, :, 1, 1], X[0, :, 2, 2], 1e-3),
                   lambda t: F.batch_norm(t, torch.from_numpy(X[0, :, 0, 0]), torch.from_numpy(np.abs(X[1, :, 0, 0])),
                                          torch.from_numpy(X[0, :, 1, 1]), torch.from_numpy(X[0, :, 2, 2]), eps=1e-3),
                   None),
}


@pytest.mark.parametrize("case", sorted(UNARY))
def test_elementwise_and_normalisation_ops_match_torch_and_mil(case):
    ours, reference, mil = UNARY[case]
    got = ours(_interp())
    assert got.dtype == np.float32
    np.testing.assert_allclose(got, reference(torch.from_numpy(X)).numpy(), **TIGHT)
    if mil is not None:
        np.testing.assert_allclose(got, _value_inference(mil), **TIGHT)


def test_batched_matmul_matches_torch_and_counts_macs():
    q, k = _randn(2, 4, 6, 8), _randn(2, 4, 6, 8)
    interp = _interp()
    got = interp._op_matmul(None, q, k, transpose_y=True)
    np.testing.assert_allclose(got, torch.matmul(torch.from_numpy(q), torch.from_numpy(k).transpose(-2, -1)).numpy(), **TIGHT)
    np.testing.assert_allclose(got, _value_inference(lambda: mb.matmul(x=q, y=k, transpose_y=True)), **TIGHT)
    assert interp.macs == 2 * 4 * 6 * 6 * 8
    np.testing.assert_allclose(interp._op_matmul(None, q[0], k[0, 0], transpose_x=True),  # (4, 8, 6) @ (6, 8): broadcast
                               np.swapaxes(q[0], -1, -2) @ k[0, 0], **TIGHT)


# --- lstm: MIL's gate order (i, f, o, z) and direction layout, against torch's nn.LSTM --------------------------
def _mil_lstm_weights(w: torch.Tensor) -> np.ndarray:
    i, f, g, o = w.detach().numpy().reshape(4, -1, *w.shape[1:])
    return np.concatenate([i, f, o, g]).astype(np.float32)  # torch i, f, g, o -> MIL i, f, o, z


@pytest.mark.parametrize("bidirectional", [False, True])
def test_lstm_matches_torch(bidirectional):
    torch.manual_seed(0)
    rnn = nn.LSTM(5, 4, batch_first=False, bidirectional=bidirectional)
    x, h0, c0 = torch.randn(7, 2, 5), torch.randn(2 if bidirectional else 1, 2, 4), torch.randn(2 if bidirectional else 1, 2, 4)
    want, (hn, cn) = rnn(x, (h0, c0))
    kw = {"weight_ih": _mil_lstm_weights(rnn.weight_ih_l0), "weight_hh": _mil_lstm_weights(rnn.weight_hh_l0),
          "bias": _mil_lstm_weights(rnn.bias_ih_l0 + rnn.bias_hh_l0)}
    if bidirectional:
        kw.update(weight_ih_back=_mil_lstm_weights(rnn.weight_ih_l0_reverse), weight_hh_back=_mil_lstm_weights(rnn.weight_hh_l0_reverse),
                  bias_back=_mil_lstm_weights(rnn.bias_ih_l0_reverse + rnn.bias_hh_l0_reverse))
    interp = _interp()
    flat = lambda s: s.detach().permute(1, 0, 2).reshape(2, -1).numpy()  # noqa: E731  (D, b, H) -> (b, D*H)
    seq, h, c = interp._op_lstm(_Op(), x.numpy(), flat(h0), flat(c0), direction="bidirectional" if bidirectional else "forward",
                                output_sequence=True, **kw)
    np.testing.assert_allclose(seq, want.detach().numpy(), **TIGHT)
    np.testing.assert_allclose(h, flat(hn), **TIGHT)
    np.testing.assert_allclose(c, flat(cn), **TIGHT)
    assert interp.macs == (2 if bidirectional else 1) * 7 * 2 * 4 * 4 * (5 + 4)


def test_lstm_refuses_what_it_does_not_implement():
    w = np.zeros((16, 4), np.float32)
    with pytest.raises(UnsupportedMilError, match="lstm op: activation 'scaled_tanh'"):
        _interp()._op_lstm(_Op(), np.zeros((3, 1, 4), np.float32), np.zeros((1, 4), np.float32), np.zeros((1, 4), np.float32),
                           w, w, activation="scaled_tanh")


# --- grid sampling: affine (affine_grid + grid_sample) and resample (grid_sample), against torch ----------------
IMG = _randn(2, 3, 7, 9, scale=1.0)
THETA = np.array([[[0.9, -0.2, 0.1], [0.15, 1.1, -0.05]], [[1.3, 0.3, -0.4], [-0.1, 0.7, 0.5]]], np.float32)


@pytest.mark.parametrize("align_corners", [False, True])
def test_affine_matches_torch_affine_grid_and_grid_sample(align_corners):
    want = F.grid_sample(torch.from_numpy(IMG), F.affine_grid(torch.from_numpy(THETA), [2, 3, 5, 6], align_corners=align_corners),
                         mode="bilinear", padding_mode="zeros", align_corners=align_corners).numpy()
    got = _interp()._op_affine(_Op(), IMG, THETA.reshape(2, 6), 5, 6, "bilinear", "constant", 0.0,
                               "normalized_minus_one_to_one", align_corners)
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)


# torch's padding modes as coremltools maps them (grid_sampler: reflection without align_corners -> symmetric)
PADDING = {"zeros": "constant", "border": "border"}


@pytest.mark.parametrize("mode", ["bilinear", "nearest"])
@pytest.mark.parametrize("padding", ["zeros", "border", "reflection"])
@pytest.mark.parametrize("align_corners", [False, True])
def test_resample_matches_torch_grid_sample(mode, padding, align_corners):
    grid = RNG.uniform(-1.6, 1.6, (2, 4, 5, 2)).astype(np.float32)
    if mode == "nearest":  # keep away from rounding ties, whose direction Core ML does not document
        size = np.array([9, 7], np.float32)
        pix = ((grid + 1) / 2 * (size - 1)) if align_corners else (((grid + 1) * size - 1) / 2)
        grid = np.where(np.abs(pix - np.floor(pix) - 0.5) < 0.05, grid + 0.02, grid).astype(np.float32)
    want = F.grid_sample(torch.from_numpy(IMG), torch.from_numpy(grid), mode=mode, padding_mode=padding,
                         align_corners=align_corners).numpy()
    mil_padding = PADDING.get(padding, "reflection" if align_corners else "symmetric")
    got = _interp()._op_resample(_Op(), IMG, grid, mode, mil_padding, 0.0, "normalized_minus_one_to_one", align_corners)
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)


def test_resample_unnormalized_coordinates_are_pixels():
    grid = RNG.uniform(0, 6, (2, 3, 4, 2)).astype(np.float32)
    want = F.grid_sample(torch.from_numpy(IMG), torch.from_numpy(grid / np.array([8, 6], np.float32) * 2 - 1),
                         align_corners=True).numpy()
    np.testing.assert_allclose(_interp()._op_resample(_Op(), IMG, grid, coordinates_mode="unnormalized"), want, atol=1e-5)


def test_resample_refuses_an_unimplemented_coordinate_mode():
    with pytest.raises(UnsupportedMilError, match="resample op: coordinates_mode 'normalized_zero_to_one' is not implemented"):
        _interp()._op_resample(_Op(), IMG, np.zeros((2, 1, 1, 2), np.float32), coordinates_mode="normalized_zero_to_one")


# --- the same ops as coremltools emits them from torch: keyword names and defaults as in real packages -----------
class _Attention(nn.Module):
    """LayerNorm, batched q k^T, softmax, GELU (exact and tanh), hardswish, hardsigmoid, batch_norm (not foldable)."""

    def __init__(self):
        super().__init__()
        self.bn = nn.BatchNorm1d(6)
        self.norm = nn.LayerNorm(8)
        self.q, self.k = nn.Linear(8, 8), nn.Linear(8, 8)
        with torch.no_grad():
            self.bn.running_mean.uniform_(-1, 1), self.bn.running_var.uniform_(0.5, 2), self.bn.weight.uniform_(0.5, 2)

    def forward(self, x):
        t = self.norm(self.bn(x))
        q, k = self.q(t).reshape(1, 6, 2, 4).transpose(1, 2), self.k(t).reshape(1, 6, 2, 4).transpose(1, 2)
        att = torch.softmax(torch.matmul(q, k.transpose(-2, -1)) * 0.5, dim=-1)  # (1, 2, 6, 6)
        return F.gelu(att) + F.gelu(att * 3, approximate="tanh") + F.hardswish(att * 4) + F.hardsigmoid(att - 1)


class _Lstm(nn.Module):
    def __init__(self):
        super().__init__()
        self.rnn = nn.LSTM(5, 4, num_layers=2, batch_first=True, bidirectional=True)

    def forward(self, x):
        return self.rnn(x)[0]


class _Affine(nn.Module):  # torch's affine_grid + grid_sample with a computed theta: MIL affine
    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(63, 6)

    def forward(self, x):
        theta = self.fc(x.flatten(1)).view(1, 2, 3) * 0.2 + torch.tensor([[[1.0, 0, 0], [0, 1.0, 0]]])
        return F.grid_sample(x, F.affine_grid(theta, [1, 1, 6, 8], align_corners=False), align_corners=False)


class _Resample(nn.Module):  # grid_sample with a computed grid: MIL resample
    def forward(self, x):
        grid = torch.tanh(x[:, :, :4, :5].permute(0, 2, 3, 1) * torch.tensor([1.5, -1.2]))
        return F.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=False)


CONVERTED = {"attention block": (_Attention, (1, 6, 8), {"softmax", "layer_norm", "gelu", "batch_norm", "matmul",
                                                          "sigmoid_hard", "thresholded_relu"}),
             "2-layer bidirectional lstm": (_Lstm, (1, 7, 5), {"lstm"}),
             "affine_grid + grid_sample": (_Affine, (1, 1, 7, 9), {"affine"}),
             "grid_sample": (_Resample, (1, 2, 7, 9), {"resample"})}


@pytest.mark.parametrize("case", sorted(CONVERTED))
def test_converted_packages_match_torch(case, tmp_path):
    cls, shape, ops = CONVERTED[case]
    torch.manual_seed(0)
    module = cls().eval()
    x = torch.randn(shape)
    with torch.no_grad():
        want = module(x).numpy()
    with quiet():
        model = ct.convert(torch.jit.trace(module, x), convert_to="mlprogram", inputs=[ct.TensorType(name="x", shape=shape)],
                           minimum_deployment_target=ct.target.iOS17, compute_precision=ct.precision.FLOAT32)
        model.save(str(tmp_path / "m.mlpackage"))
    interp = MilInterpreter(tmp_path / "m.mlpackage")
    assert ops <= set(interp.op_histogram())
    np.testing.assert_allclose(interp.run({"x": x.numpy()}), want, rtol=1e-4, atol=1e-5)


# --- the zoo end to end: every architecture whose Core ML package converts, compiled and verified ----------------
ZOO_COREML = ["gaze360_temporal", "gaze_transformer", "l2cs_bins", "mobilegaze", "mpiigaze_lenet", "preact_resnet_gaze",
              "stn_gaze"]


@pytest.mark.slow
@pytest.mark.parametrize("name", ZOO_COREML)
def test_zoo_model_compiles_to_coreml_and_passes(name, tmp_path):
    card = json.loads(measure.card_path(name).read_text())
    out = tmp_path / "o"
    assert run(["compile", str(measure.weights_path(name)), "--card", str(measure.card_path(name)), "--arch", card["arch"],
                "-t", "coreml", "--out", str(out), "--no-cache"]) == 0
    assert (out / "model.mlpackage").exists()


@pytest.mark.slow
@pytest.mark.parametrize("target", ["coreml-fp32", "coreml-int8", "coreml-w8a8", "coreml-palettized"])
def test_stn_gaze_converts_through_torch_export_on_every_coreml_target(target, tmp_path):
    """coremltools 9.0 cannot convert the traced spatial transformer (torch 2.13's traced x.shape[0] -> aten::Int on a
    1-element array; its affine op refuses grid_sample's border padding): to_coreml falls back to the torch.export
    program, affine_grid decomposed into a grid that MIL resample samples with border padding."""
    name = "stn_gaze"
    out = tmp_path / "o"
    assert run(["compile", str(measure.weights_path(name)), "--card", str(measure.card_path(name)), "--arch",
                f"tests.zoo.models:{models.ZOO[name].__name__}", "-t", target, "--out", str(out), "--no-cache"]) == 0
    report = json.loads((out / "report.json").read_text())
    assert any("converted from a torch.export program" in n for step in report["steps"] for n in step["notes"])
    interp = MilInterpreter(out / "model.mlpackage")
    assert [op.padding_mode.val for op in interp.ops if op.op_type == "resample"] == ["border"]
