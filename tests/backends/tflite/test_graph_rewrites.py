"""to_tflite's INT8 route on graph shapes from the model zoo that PT2E or litert-torch got wrong:

- a conv whose output feeds a BatchNorm and something else (a pre-activation ResNet's stem feeds block 1's BN and its
  identity shortcut): torchao's conv-BN fusion changed the shortcut too (preact_resnet_gaze missed by 40 deg);
- a module called twice (iTracker's eye tower, shared by both eyes): the second call stayed float;
- max pool then relu: litert-torch fused the relu into the pool and the conversion failed on the same-scale rule."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from edgekit._optional import require
from edgekit.backends.tflite import graph as tflite_graph
from edgekit.backends.tflite.convert import ToTFLite, _export, _quantize_pt2e
from edgekit.quant.pt2e import aten_name as _aten_name
from edgekit.quant.pt2e import relu_before_max_pool as _relu_before_max_pool
from edgekit.quant.pt2e import unfuse_shared_conv_bn as _unfuse_shared_conv_bn
from edgekit.backends.tflite.runner import LiteRTRunner
from edgekit.quant.plan import QuantPlan
from tests.backends.tflite.test_fixed_output import SHAPE, _samples, _to_int8_tflite

require("litert_torch", "TFLite tests")


class PreActStem(nn.Module):
    """stem conv -> (BN -> ReLU -> conv) + identity: the stem's output is both the BN's input and the shortcut."""

    def __init__(self):
        super().__init__()
        self.stem = nn.Conv2d(1, 8, 3, 2, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(8)
        self.conv1 = nn.Conv2d(8, 8, 3, 1, 1, bias=False)
        self.fc = nn.Linear(8, 2)

    def forward(self, x):
        x = self.stem(x)
        x = self.conv1(F.relu(self.bn1(x))) + x
        return self.fc(x.mean(dim=(2, 3)))


def _preact() -> nn.Module:
    torch.manual_seed(0)
    model = PreActStem()
    with torch.no_grad():  # a BN far from the identity, so that normalising the shortcut shows
        model.bn1.running_mean.uniform_(-1, 1)
        model.bn1.running_var.uniform_(0.05, 0.2)
        model.bn1.weight.uniform_(0.5, 2)
        model.bn1.bias.uniform_(-1, 1)
    return model.eval()


def _qdq(model, calib):
    args = (torch.zeros(1, *calib.shape[1:]),)
    quantizer = ToTFLite(precision="int8")._quantizer(QuantPlan())
    return _quantize_pt2e(model, args, quantizer, [(calib[i:i + 1],) for i in range(len(calib))])


@pytest.mark.slow
def test_a_conv_with_other_consumers_keeps_its_batchnorm():
    model, calib, test = _preact(), _samples(64, seed=1), _samples(32, seed=2)
    converted, decisions = _qdq(model, calib)
    with torch.no_grad():
        ref, out = model(test), torch.cat([converted(test[i:i + 1]) for i in range(len(test))])
    # INT8 noise is a few percent of the output's spread; the normalised shortcut was off by the output's size
    assert float((out - ref).abs().max()) < 0.1 * float(ref.abs().max())
    assert any("BatchNorm" in line and "bn1" in line and "stem" in line for line in decisions), decisions


def test_the_rewrite_leaves_a_conv_with_one_consumer_to_the_fusion():
    class ConvBN(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv, self.bn = nn.Conv2d(1, 4, 3), nn.BatchNorm2d(4)

        def forward(self, x):
            return self.bn(self.conv(x))

    gm = _export(ConvBN().eval(), (torch.zeros(SHAPE),)).module()
    assert _unfuse_shared_conv_bn(gm) == []
    gm = _export(_preact(), (torch.zeros(SHAPE),)).module()
    assert len(_unfuse_shared_conv_bn(gm)) == 1
    assert [_aten_name(n) for n in gm.graph.nodes if _aten_name(n) == "clone"] == ["clone"]


class SharedTower(nn.Module):
    """iTracker in miniature: one conv tower applied to two crops of the image, features concatenated."""

    def __init__(self):
        super().__init__()
        self.eye = nn.Sequential(nn.Conv2d(1, 8, 3, 2, 1), nn.ReLU(), nn.Conv2d(8, 8, 3, 2, 1), nn.ReLU(),
                                 nn.AdaptiveAvgPool2d(1), nn.Flatten())
        self.fc = nn.Linear(16, 2)

    def forward(self, x):
        return self.fc(torch.cat([self.eye(x[..., :10]), self.eye(x[..., 10:])], dim=1))


def test_a_module_called_twice_is_int8_at_both_calls(tmp_path):
    torch.manual_seed(0)
    model = SharedTower().eval()
    path, _ = _to_int8_tflite(model, tmp_path / "m.tflite")
    rows = [r for r in tflite_graph.layer_rows(tflite_graph.read(path)) if r["macs"]]
    assert len(rows) == 5  # 2 convs x 2 calls + fc
    assert {r["precision"] for r in rows} == {"int8"}, rows
    test = _samples(16, seed=2)
    runner = LiteRTRunner(path)
    out = np.concatenate([runner.run({"args_0": test[i:i + 1].numpy()}) for i in range(len(test))])
    with torch.no_grad():
        ref = model(test).numpy()
    assert np.abs(out - ref).max() < 0.1 * np.abs(ref).max()


class PoolThenRelu(nn.Module):
    """A spatial transformer's localisation net: conv -> max pool -> relu -> conv."""

    def __init__(self):
        super().__init__()
        self.net = nn.Sequential(nn.Conv2d(1, 8, 5, 2, 2), nn.MaxPool2d(2), nn.ReLU(), nn.Conv2d(8, 8, 3, 1, 1),
                                 nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8, 2))

    def forward(self, x):
        return self.net(x)


def test_relu_after_max_pool_moves_before_it_with_the_same_values():
    torch.manual_seed(0)
    model, test = PoolThenRelu().eval(), _samples(8, seed=2)
    gm = _export(model, (torch.zeros(SHAPE),)).module()
    with torch.no_grad():
        before = torch.cat([gm(t[None]) for t in test])
    lines = _relu_before_max_pool(gm)
    order = [_aten_name(n) for n in gm.graph.nodes if _aten_name(n) in ("relu", "max_pool2d")]
    assert len(lines) == 1 and order[:2] == ["relu", "max_pool2d"], (lines, order)
    with torch.no_grad():
        assert torch.equal(torch.cat([gm(t[None]) for t in test]), before)


def test_max_pool_then_relu_converts_to_int8(tmp_path):
    torch.manual_seed(0)
    model = PoolThenRelu().eval()
    path, decisions = _to_int8_tflite(model, tmp_path / "m.tflite")  # failed: same scale constraint on max_pool_2d
    rows = tflite_graph.layer_rows(tflite_graph.read(path))
    assert {r["precision"] for r in rows if r["op"] in ("MAX_POOL_2D", "CONV_2D", "DEPTHWISE_CONV_2D")} == {"int8"}
    assert any("max pool" in line for line in decisions)


@pytest.mark.slow
def test_preact_stem_converts_close_to_pytorch(tmp_path):
    model = _preact()
    path, _ = _to_int8_tflite(model, tmp_path / "m.tflite")
    test = _samples(32, seed=2)
    runner = LiteRTRunner(path)
    out = np.concatenate([runner.run({"args_0": test[i:i + 1].numpy()}) for i in range(len(test))])
    with torch.no_grad():
        ref = model(test).numpy()
    assert np.abs(out - ref).max() < 0.1 * np.abs(ref).max()


def test_a_recurrent_layer_is_named_as_kept_float():
    class Recurrent(nn.Module):
        def __init__(self):
            super().__init__()
            self.lstm, self.fc = nn.LSTM(4, 3, batch_first=True), nn.Linear(3, 2)

        def forward(self, x):
            seq, _ = self.lstm(x)
            return self.fc(seq[:, -1])

    from edgekit.backends.tflite.convert import recurrent_decisions

    lines = recurrent_decisions(_export(Recurrent().eval(), (torch.zeros(1, 5, 4),), strict=True).module())
    assert len(lines) == 1 and lines[0].startswith("LSTM `lstm` in module lstm") and "kept float" in lines[0], lines


def _plain_cnn() -> nn.Module:
    """No BatchNorm left: convert_pt2e then skips its conv-BN QAT patterns (15 s each time)."""
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.ReLU(), nn.Conv2d(4, 4, 3, padding=1), nn.ReLU(),
                         nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, 2)).eval()


def test_weight_observers_run_once_and_the_calibration_is_unchanged():
    """calibrate_observers freezes the weights' observers after the first sample: the converted model is the one a
    sweep with every observer on every sample gives, value for value."""
    from torchao.quantization.pt2e.quantize_pt2e import convert_pt2e, prepare_pt2e

    from edgekit.quant import torch_plan

    model = _plain_cnn()
    calib = _samples(12, seed=3)
    samples = [(calib[i:i + 1],) for i in range(len(calib))]
    args = (torch.zeros(1, *calib.shape[1:]),)

    def calibrated(freeze: bool):
        quantizer = ToTFLite(precision="int8")._quantizer(QuantPlan())
        prepared = prepare_pt2e(_export(model, args, strict=True).module(), quantizer)
        if freeze:
            torch_plan.calibrate_observers(prepared, samples)
        else:
            for sweep in ("range", "hist"):
                for obs in (m for m in prepared.modules() if type(m).__name__ == "EdgekitRangeObserver"):
                    obs.sweep = sweep
                with torch.no_grad():
                    for s in samples:
                        prepared(*s)
        return prepared

    fast, slow = calibrated(True), calibrated(False)
    frozen = [node.target for node in fast.graph.nodes if node.op == "call_module"
              and vars(fast.get_submodule(node.target)).get("forward") is torch_plan._pass_through]
    assert len(frozen) == 3  # the two convs' and the linear's weights; activation observers see every sample
    x = _samples(4, seed=9)
    with torch.no_grad():
        np.testing.assert_array_equal(convert_pt2e(fast)(x[:1]).numpy(), convert_pt2e(slow)(x[:1]).numpy())


def test_pt2e_calibrates_a_batched_twin_and_gets_the_batch_one_model(monkeypatch):
    """pt2e.quantize calibrates a twin of the batch-1 graph exported at the calibration batch and moves its statistics
    over: the converted model is the one a sweep of one sample per call gives (to float rounding)."""
    from edgekit.quant import pt2e, torch_plan

    model = _plain_cnn()
    calib = _samples(24, seed=4)
    samples = [(calib[i:i + 1],) for i in range(len(calib))]
    args = (torch.zeros(1, *calib.shape[1:]),)
    calls = []
    calibrate = torch_plan.calibrate_observers
    monkeypatch.setattr(pt2e, "calibrate_observers", lambda g, s, count=None: calls.append(len(s)) or calibrate(g, s, count))

    def quantized():
        converted, _ = pt2e.quantize(model, args, ToTFLite(precision="int8")._quantizer(QuantPlan()), samples,
                                     "to_tflite", "onnx-int8")
        return converted

    batched = quantized()
    twin = pt2e.batched_twin
    monkeypatch.setattr(pt2e, "batched_twin", lambda *a, **k: None)
    one_by_one = quantized()
    monkeypatch.setattr(pt2e, "batched_twin", twin)
    assert calls == [1, 24]  # one batch of 24, then 24 calls of one sample
    x = _samples(6, seed=9)
    with torch.no_grad():
        for i in range(len(x)):
            np.testing.assert_allclose(batched(x[i:i + 1]).numpy(), one_by_one(x[i:i + 1]).numpy(), atol=1e-3)
