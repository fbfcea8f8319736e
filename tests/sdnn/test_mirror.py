"""The sigma-delta fixed-point mirror: Lava's arithmetic (wraps, floors, >= thresholds), settling, batching, and the
netx file round trip. Lava itself checks the mirror in tests/backends/sdnn."""

import numpy as np
import pytest
import torch
from torch.nn import functional as F

from edgekit.sdnn.mirror import EXP, Mirror, SdnnLayer, dense_shift, exact_conv, wrap_
from edgekit.sdnn.netx import read_network, write_network


def _net(seed=0, vth=(2, 3, 4), conv_scale=40):
    """input 2x5x6 -> conv 3 (stride (1, 2), pad 1) -> flatten -> dense 7 -> dense 4 readout (the research prototype)."""
    rng = np.random.default_rng(seed)
    return [SdnnLayer("input", "delta", (2, 5, 6), vth=vth[0]),
            SdnnLayer("conv", "sigma_delta", (3, 5, 3), vth=vth[1], weight=rng.integers(-conv_scale, conv_scale + 1, (3, 2, 3, 3)),
                      bias=rng.integers(-40, 41, 3), stride=(1, 2), padding=(1, 1)),
            SdnnLayer("dense", "sigma_delta", (7,), vth=vth[2], weight=rng.integers(-128, 128, (7, 45)),
                      bias=rng.integers(-300, 301, 7), flatten_before=True),
            SdnnLayer("dense", "sigma", (4,), weight=rng.integers(-128, 128, (4, 7)))]


def _frames(n, f, seed=1, hi=40):
    return np.random.default_rng(seed).integers(-hi, hi + 1, (n, f, 2, 5, 6))


def test_wrap_is_modular_and_dense_shift_follows_netx():
    x = torch.tensor([(1 << 23) - 1, 1 << 23, -(1 << 23), -(1 << 23) - 1, 3 * (1 << 23)])
    assert wrap_(x, 24).tolist() == [(1 << 23) - 1, -(1 << 23), -(1 << 23), (1 << 23) - 1, -(1 << 23)]
    assert dense_shift(np.array([[127, -128]])) == 1 and dense_shift(np.array([[3, -2]])) == 6
    assert dense_shift(np.array([[254, 0]])) == 0 and dense_shift(np.array([[-256, -1]])) == 0
    with pytest.raises(ValueError, match="all-zero"):
        dense_shift(np.zeros((2, 2), np.int64))


@pytest.mark.parametrize("top, weight_top, one_float32_conv_is_exact",
                         [(1 << 10, 127, True), (1 << 30, 128, False), (1 << 3, 1 << 20, False)])
def test_the_float32_pieces_of_a_convolution_sum_exactly(top, weight_top, one_float32_conv_is_exact):
    """Messages of 11 bits (one piece) and of 31 (several, where one float32 convolution rounds), and weights too large
    for any float32 piece (float64)."""
    g = torch.Generator().manual_seed(top)
    msg = torch.randint(-top, top + 1, (5, 8, 9, 11), generator=g)
    weight = torch.randint(-weight_top, weight_top + 1, (6, 8, 3, 3), generator=g)
    row_sum = int(weight.abs().reshape(6, -1).sum(1).max())
    exact = F.conv2d(msg.double(), weight.double(), stride=(1, 2), padding=(1, 1))  # below 2^53: exact in float64
    got = exact_conv(msg, weight.float(), row_sum, (1, 2), (1, 1))
    assert got.dtype == torch.int64 and torch.equal(got, exact.to(torch.int64))
    plain = F.conv2d(msg.float(), weight.float(), stride=(1, 2), padding=(1, 1)).double()
    assert torch.equal(plain, exact) == one_float32_conv_is_exact


def test_a_held_frame_settles_after_one_step_per_synaptic_layer():
    layers = _net()
    depth = len(layers) - 1
    frames = _frames(3, 1)
    long = Mirror(layers).run(frames, depth + 6, record=True)
    # after D steps every hidden layer is silent and the readout stops changing, whatever the thresholds
    readout = long.recorded[-1]
    assert np.array_equal(readout[:, depth], readout[:, -1]) and not np.array_equal(readout[:, depth - 1], readout[:, -1])
    assert all(not rec[:, depth + 1:].any() for rec in long.recorded[:-1])
    assert np.array_equal(Mirror(layers).run(frames, depth + 1).readout, long.readout)


def test_each_stream_is_independent_of_the_others_in_its_batch():
    layers, frames = _net(), _frames(5, 4)
    mirror = Mirror(layers)
    together = mirror.run(frames, 4)
    alone = [mirror.run(frames[i:i + 1], 4) for i in range(5)]
    assert np.array_equal(together.readout, np.concatenate([a.readout for a in alone]))
    assert [m.tolist() for m in together.messages] == [sum(a.messages[k] for a in alone).tolist() for k in range(4)]


@pytest.mark.parametrize("vth", [(0, 0, 0), (2, 3, 4), (9, 1, 30), (40, 60, 900)])
def test_layer_by_layer_gives_what_run_gives(vth):
    """The threshold search runs one frame layer by layer (Mirror.layer_alone, keeping the layers it did not change):
    the same messages, readout and synaptic ops as `run`, on a net with other thresholds made by with_thresholds."""
    frames = _frames(6, 1, hi=200)
    expected = Mirror(_net(vth=vth)).run(frames, 5, record=True)
    mirror = Mirror(_net()).with_thresholds([*vth, 0])
    heard, synops = torch.from_numpy(frames[:, 0]), 0.0
    for k in range(4):
        heard, ops = mirror.layer_alone(k, heard, 5)
        sent = np.stack([np.zeros((6, expected.recorded[k].shape[2]), np.int64) if m is None else m.reshape(6, -1).numpy()
                         for m in heard], 1)
        assert np.array_equal(sent, expected.recorded[k]), k
        synops += ops
    assert np.array_equal(heard[-1].numpy(), expected.readout[:, 0]) and synops == sum(s.sum() for s in expected.synops)
    assert Mirror(_net()).layers[1].vth == 3  # with_thresholds made a copy


def test_without_thresholds_the_readout_is_the_integer_network_exactly():
    """vth 0 sends every change: the settled readout is W . relu(...) of the integers, up to the floored message bits."""
    layers = _net(vth=(0, 0, 0))
    frames = _frames(4, 1)
    out = Mirror(layers).run(frames, len(layers)).readout[:, 0].astype(np.float64)
    x = torch.from_numpy(frames[:, 0].astype(np.float64)) * (1 << (EXP - 6))  # messages: act / 64
    w = [None] + [torch.from_numpy(lay.weight.astype(np.float64)) for lay in layers[1:]]
    h = torch.nn.functional.conv2d(x, w[1], stride=(1, 2), padding=1) + torch.from_numpy(layers[1].bias * 4096.0).view(1, 3, 1, 1)
    h = torch.relu(h) / 64
    h = torch.relu(h.flatten(1) @ w[2].T + torch.from_numpy(layers[2].bias * 4096.0)) / 64
    ideal = (h @ w[3].T).numpy()
    assert np.allclose(out, ideal, rtol=1e-3, atol=0.02 * np.abs(ideal).max())


def test_thresholds_cut_messages_and_a_changed_threshold_changes_them():
    frames = _frames(4, 6)
    quiet, busy = Mirror(_net(vth=(20, 30, 40))).run(frames, 4), Mirror(_net(vth=(0, 1, 1))).run(frames, 4)
    assert sum(m.sum() for m in quiet.messages) < 0.7 * sum(m.sum() for m in busy.messages)
    assert sum(s.sum() for s in quiet.synops) < sum(s.sum() for s in busy.synops)


def test_the_netx_file_round_trips_every_field_the_mirror_reads(tmp_path):
    layers = _net()
    path = write_network(layers, tmp_path / "network.net", 8, ["input", "conv", "fc", "head"])
    back = read_network(path)
    assert [(b.kind, b.neuron, b.shape, b.vth, b.stride, b.padding, b.flatten_before) for b in back] == \
           [(a.kind, a.neuron, a.shape, a.vth, a.stride, a.padding, a.flatten_before) for a in layers]
    for a, b in zip(layers[1:], back[1:]):
        assert np.array_equal(a.weight, b.weight) and (a.bias is None) == (b.bias is None)
    import h5py

    with h5py.File(path) as f:  # the readout: netx's Sigma (no bias, no threshold); never messageBits
        head = f["layer/4"]
        assert "sigma_output" in head["neuron"] and "bias" not in head and "vThMant" not in head["neuron"]
        assert all("messageBits" not in f[f"layer/{i}/neuron"] for i in ("0", "1", "3", "4"))
        assert f["layer/1/weight"].dtype == np.int8
    frames = _frames(2, 3)
    assert np.array_equal(Mirror(back).run(frames, 4).readout, Mirror(layers).run(frames, 4).readout)


def test_a_failed_write_names_the_layer_and_leaves_nothing(tmp_path):
    from edgekit.errors import BadInputError

    layers = _net()
    layers[2].weight = np.zeros((7, 45, 2))  # not a dense matrix: h5py writes it, but say which layer went wrong
    layers[1].stride = ("x",)  # an unwritable field: the write fails there
    with pytest.raises(BadInputError, match=r"netx export failed at layer conv \(conv, netx layer 1\)"):
        write_network(layers, tmp_path / "network.net", 8, ["input", "conv", "fc", "head"])
    assert list(tmp_path.iterdir()) == []
