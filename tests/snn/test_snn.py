"""ANN -> SNN conversion, its errors, the netx file and the fixed-point model checked against Lava's simulator."""

import time

import numpy as np
import pytest
import torch
from torch import nn

from edgekit.errors import BadInputError
from edgekit.snn.convert import convert
from edgekit.snn.graph import spiking_graph
from edgekit.snn.simulate import simulate


def _tiny(seed=0):
    torch.manual_seed(seed)
    return nn.Sequential(nn.Conv2d(1, 4, 3, 2, 1), nn.ReLU(), nn.Conv2d(4, 6, 3, 2, 1), nn.ReLU(), nn.Flatten(),
                         nn.Linear(6 * 3 * 4, 12), nn.ReLU(), nn.Linear(12, 3)).eval()


def _images(n, seed=1):
    g = torch.Generator().manual_seed(seed)
    base = torch.linspace(-1, 1, 16).view(1, 1, 1, 16).expand(n, 1, 12, 16)
    return (base * torch.rand(n, 1, 1, 1, generator=g) + 0.3 * torch.randn(n, 1, 12, 16, generator=g)).clamp(-1, 1)


def test_maxpool_recurrence_and_multi_input_are_refused_by_name():
    pooled = nn.Sequential(nn.Conv2d(1, 4, 3), nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(), nn.Linear(4, 3))
    with pytest.raises(BadInputError, match=r"layer 2 \(MaxPool2d\).*fix: retrain with nn.AvgPool2d"):
        spiking_graph(pooled, 1)
    from edgekit.models.registry import build

    with pytest.raises(BadInputError, match=r"layer stem.3 \(MaxPool2d\): max-pooling .*fix: retrain with nn.AvgPool2d"):
        spiking_graph(build("gazeresnet18"), 1)
    with pytest.raises(BadInputError, match="takes 2 inputs"):
        spiking_graph(_tiny(), 2)
    with pytest.raises(BadInputError, match=r"layer rnn \(GRU\): recurrent layers .*fix: convert the per-frame backbone only$"):
        spiking_graph(build("temporalgaze"), 1)
    no_relu = nn.Sequential(nn.Conv2d(1, 4, 3), nn.Conv2d(4, 4, 3), nn.ReLU(), nn.Flatten(), nn.Linear(4, 3))
    with pytest.raises(BadInputError, match=r"1 reads 0, which has no ReLU after it"):
        spiking_graph(no_relu, 1)
    with pytest.raises(BadInputError, match=r"layer 2 \(Flatten\) must flatten from dim 1 .*fix: nn.Flatten\(\)"):
        spiking_graph(nn.Sequential(nn.Conv2d(1, 4, 3), nn.ReLU(), nn.Flatten(2), nn.Linear(4, 3)), 1)

    class PreReluReuse(nn.Module):  # the second conv's add reads the first conv before its ReLU
        def __init__(self):
            super().__init__()
            self.a, self.b, self.head = nn.Conv2d(1, 4, 3, padding=1), nn.Conv2d(4, 4, 3, padding=1), nn.Linear(4 * 12 * 16, 3)

        def forward(self, x):
            y = self.a(x)
            return self.head(torch.flatten(torch.relu(self.b(torch.relu(y)) + y), 1))

    with pytest.raises(BadInputError, match=r"add reads a before its ReLU.*fix: read the ReLU's output"):
        spiking_graph(PreReluReuse(), 1)


@pytest.mark.slow
def test_shipped_tinygaze_converts_within_the_issue_targets():
    from edgekit.data import synthetic
    from edgekit.data.metrics import angular_error_deg
    from edgekit.models.card import ModelCard
    from edgekit.models.io import WEIGHTS_DIR, load_into, read_state_dict
    from edgekit.models.registry import build
    from edgekit.passes.fold_bn import find_conv_bn_pairs, fold_pairs

    model = build("tinygaze")
    load_into(model, read_state_dict(WEIGHTS_DIR / "tinygaze.safetensors"), "shipped")
    model = fold_pairs(model.eval(), find_conv_bn_pairs(model)[0]).eval()
    card = ModelCard.load(WEIGHTS_DIR / "tinygaze.json")
    calib, ev = synthetic.standard_set("calib", 128, (40, 64)), synthetic.standard_set("eval", 128, (40, 64))
    xc, xe = (torch.from_numpy(card.preprocessing.apply(s.images, 1, (40, 64))) for s in (calib, ev))
    with torch.no_grad():
        ann = float(angular_error_deg(model(xe).numpy(), ev.gaze).mean())
    curve = {}
    for name, kw in (("converted", {}), ("naive", {"percentile": None, "per_channel": False, "v_init": 0.0, "balance": "none"})):
        net = convert(model, 1, xc, timesteps=32, **kw)
        out = simulate(net, xe, 64, record=(16, 64), count=False).outputs
        curve[name] = {t: float(angular_error_deg(out[t], ev.gaze).mean()) - ann for t in (16, 64)}
    assert curve["converted"][64] <= 0.5 and curve["converted"][16] <= 1.0, curve
    assert curve["naive"][16] > curve["converted"][16] + 2, curve  # the baseline really is worse


def test_subtractive_reset_rates_approach_the_ann_as_t_grows():
    model, x = _tiny(), _images(64)
    net = convert(model, 1, x, timesteps=256, balance="none", percentile=None, per_channel=False)
    with torch.no_grad():
        ann = model(x).numpy()
    res = simulate(net, x, 256, record=(8, 256))
    err = {t: float(np.abs(res.outputs[t] - ann).mean()) for t in (8, 256)}
    assert err[256] < err[8] / 4, err
    assert all(a > 0 for a in res.acs[256][1:]) and res.acs[256][0] == 0  # first layer: analog input, no ACs


def _lava_artifact(tmp_path, timesteps=8, warmup=0):
    from edgekit.snn.netx import write_artifact

    model, x = _tiny(), _images(32)
    net = convert(model, 1, x, timesteps=timesteps, reset="zero", v_init=0.0, balance="none", delay=True, warmup=warmup)
    folder, _ = write_artifact(net, tmp_path / "model.lava")
    return folder, x


def test_netx_file_is_byte_identical_across_writes(tmp_path):
    from edgekit.snn.netx import write_artifact

    folder, _ = _lava_artifact(tmp_path / "a")
    time.sleep(1.1)  # HDF5 object timestamps would differ by now
    model, x = _tiny(), _images(32)
    again, _ = write_artifact(convert(model, 1, x, timesteps=8, reset="zero", v_init=0.0, balance="none"), tmp_path / "b")
    assert (folder / "network.net").read_bytes() == (again / "network.net").read_bytes()
    from edgekit.artifact import digest_path

    assert digest_path(folder) == digest_path(again)  # encoder and lava.json too


def test_reset_by_subtraction_is_refused_for_lava(tmp_path):
    from edgekit.snn.netx import write_artifact

    net = convert(_tiny(), 1, _images(16), timesteps=8, balance="none")
    with pytest.raises(BadInputError, match="fix: set to_snn reset: zero"):
        write_artifact(net, tmp_path / "x")


def test_fixed_point_reads_the_file_and_tracks_the_float_snn(tmp_path):
    """No Lava needed: the fixed-point model runs the netx file; with 8-bit weights it stays near the float SNN."""
    import json

    from edgekit.backends.lava.runner import FixedPointRunner
    from edgekit.backends.snn.runner import normalize
    from edgekit.data.metrics import angular_error_deg

    folder, x = _lava_artifact(tmp_path, timesteps=64, warmup=2)
    spec = json.loads((folder / "lava.json").read_text())
    assert spec["delay_steps"] == 3 and [lay["kind"] for lay in spec["layers"]] == ["input", "conv", "dense", "dense"]
    assert spec["readout_start"] == 5 and spec["steps"] == 64 + 5
    runner = FixedPointRunner(folder)
    fixed = runner.run({"x": x.numpy()})
    timing = {"delay": True, "warmup": 2}  # the float SNN in Lava's timing, and the same net without delays
    flt, undelayed = (normalize(simulate(convert(_tiny(), 1, _images(32), timesteps=64, reset="zero", v_init=0.0,
                                                 balance="none", **kw), x, 64, count=False).outputs[64], True)
                      for kw in (timing, {}))
    gap, gap_undelayed = (float(angular_error_deg(fixed, f).mean()) for f in (flt, undelayed))
    assert gap < 3 and gap < gap_undelayed, (gap, gap_undelayed)
    assert runner.last.spikes_per_layer[0] > 0


@pytest.mark.slow
def test_lava_simulator_matches_the_fixed_point_model_spike_for_spike(tmp_path):
    from edgekit.backends.lava.runner import FixedPointRunner
    from edgekit.backends.lava.simulator import lava_available, run_lava

    ok, why = lava_available()
    if not ok:
        pytest.skip(f"Lava environment unavailable: {why}")
    folder, x = _lava_artifact(tmp_path, warmup=3)  # readout window after delays and warm-up
    runner = FixedPointRunner(folder)
    runner.run({"x": x[:3].numpy()}, keep_trains=True)
    res = run_lava(folder, runner.input_bias(x[:3].numpy()))
    assert len(res.trains) == len(runner.last.trains) == 3
    for lava, mine in zip(res.trains, runner.last.trains):
        assert lava.shape == mine.shape
        assert lava.sum() > 0
        assert np.array_equal(lava, mine)
    assert np.array_equal(res.v_end - res.v_start, runner.last.v_diff)


def test_nir_export_round_trips(tmp_path):
    import nir

    from edgekit.snn.nir_export import write_nir

    net = convert(_tiny(), 1, _images(16), timesteps=8, balance="none")
    graph = nir.read(str(write_nir(net, tmp_path / "model.nir")))
    kinds = [type(graph.nodes[k]).__name__ for k in sorted(graph.nodes)]
    assert kinds.count("IF") == 3 and kinds.count("I") == 1 and kinds.count("Conv2d") == 2
    assert np.allclose(graph.nodes["0_conv"].weight, net.weights[0].numpy())
    assert graph.metadata["edgekit.reset"] == "subtract"
