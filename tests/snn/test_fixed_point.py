"""edgekit/snn/fixed_point.py: the integer LIF mirror, checked against spike trains worked out by hand.

Per step: v += (W . s_prev) << 6 plus bias << 6; a neuron fires when v > vth << 6 and resets to 0; a spike emitted at
step t reaches the next layer at step t + 1; the readout never fires and reports (V(S+T) - V(S)) / (64 * scale * T)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from edgekit.snn.fixed_point import (UV_MAX, QuantLayer, _synapse, clamp24_, input_bias, run_fixed, synapse_weight,
                                     wrap24_)


def input_layer(n: int, vth: int = 10) -> QuantLayer:
    return QuantLayer(kind="input", out_shape=(n,), vth=vth, bias=np.zeros(n, np.int64))


def readout(weight: list[list[int]], scale: float = 1.0) -> QuantLayer:
    w = np.array(weight, np.int64)
    return QuantLayer(kind="dense", out_shape=(w.shape[0],), vth=0, bias=np.zeros(w.shape[0], np.int64), weight=w,
                      spiking=False, scale=scale)


def test_one_input_neuron_fires_every_third_step():
    # input current 4 (x64 = 256) against threshold 10 (x64 = 640): v = 256, 512, 768 -> fire at t = 3, 6, 9, ...
    res = run_fixed([input_layer(1), readout([[3]])], np.array([[4]]), timesteps=6, keep_trains=True)
    # 7 steps (start S = 1 synaptic layer): spikes at t = 3 and 6
    assert res.trains[0][0, :, 0].tolist() == [False, False, True, False, False, True, False]
    assert res.spikes_per_layer[0] == 2.0
    # they reach the readout at t = 4 and 7, each adding 3 << 6; V(1) = 0
    assert res.v_diff.tolist() == [[2 * 3 * 64]]
    assert res.readout[0, 0] == pytest.approx(2 * 3 / 6)
    assert res.acs_per_layer == [0.0, 2.0]  # two spikes, each with fan-out 1


def test_threshold_is_strict():
    # current 5: v = 320, 640 (equal to the threshold: no spike), 960 -> first spike at t = 3
    res = run_fixed([input_layer(1), readout([[1]])], np.array([[5]]), timesteps=3, keep_trains=True)
    assert res.trains[0][0, :, 0].tolist() == [False, False, True, False]


def test_two_neurons_with_signed_readout_weights():
    # neuron 0 (current 4): spikes at t = 3, 6; neuron 1 (current 7: 448, 896 > 640): spikes at t = 2, 4, 6
    res = run_fixed([input_layer(2), readout([[1, -2]])], np.array([[4, 7]]), timesteps=6, keep_trains=True)
    trains = res.trains[0][0]
    assert np.flatnonzero(trains[:, 0]).tolist() == [2, 5]
    assert np.flatnonzero(trains[:, 1]).tolist() == [1, 3, 5]
    # arrivals at t = 2..7 (after V(1) = 0): +1 at t = 4, 7; -2 at t = 3, 5, 7  ->  2 - 6 = -4
    assert res.v_diff.tolist() == [[-4 * 64]]
    assert res.readout[0, 0] == pytest.approx(-4 / 6)
    assert res.spikes_per_layer[0] == 5.0


def test_samples_run_independently_and_negative_current_never_fires():
    res = run_fixed([input_layer(1), readout([[1]], scale=2.0)], np.array([[4], [-3], [11]]), timesteps=6)
    # sample 0: 2 spikes; sample 1: never; sample 2: 11*64 = 704 > 640 fires every step (t = 1..7, 6 of them arrive
    # at t = 2..7 after V(1))
    assert res.v_diff[:, 0].tolist() == [2 * 64, 0, 6 * 64]
    assert res.readout[:, 0] == pytest.approx([2 / (2 * 6), 0.0, 6 / (2 * 6)])  # divided by scale and T
    assert res.spikes_per_layer[0] == 2 + 0 + 7


def test_start_moves_the_readout_window():
    # the same spikes (t = 3, 6, arriving at 4, 7), with the readout measured from V(4) instead of V(1)
    res = run_fixed([input_layer(1), readout([[3]])], np.array([[4]]), timesteps=3, start=4)
    assert res.v_diff.tolist() == [[3 * 64]]  # only the arrival at t = 7 lies in (4, 7]


def test_hidden_dense_layer_adds_one_step_of_delay():
    hidden = QuantLayer(kind="dense", out_shape=(1,), vth=0, bias=np.zeros(1, np.int64), weight=np.array([[1]]))
    res = run_fixed([input_layer(1, vth=0), hidden, readout([[1]])], np.array([[1]]), timesteps=4, keep_trains=True)
    # input (threshold 0, current 1): fires every step; the hidden layer from t = 2; the readout gets spikes from t = 3
    assert res.trains[0][0, :, 0].all()
    assert res.trains[1][0, :, 0].tolist() == [False, True, True, True, True, True]
    assert res.v_diff.tolist() == [[4 * 64]]  # S = 2: arrivals at t = 3..6


def test_wrap24_and_clamp24_keep_24_bit_signed_values_in_place():
    x = torch.tensor([0.0, 5.0, -5.0, UV_MAX - 1, UV_MAX + 1, -(UV_MAX + 1)], dtype=torch.float64)
    assert wrap24_(x) is x and x.tolist() == [0.0, 5.0, -5.0, UV_MAX - 1, -(UV_MAX - 1), UV_MAX - 1]
    assert clamp24_(torch.tensor([3 * UV_MAX, -3 * UV_MAX, 7.0], dtype=torch.float64)).tolist() == [UV_MAX - 1, -(UV_MAX - 1), 7.0]


def test_voltage_saturates_instead_of_overflowing():
    # current 4095 x 64 per step against an unreachable threshold: v climbs until it saturates at 2^23 - 1
    big = QuantLayer(kind="input", out_shape=(1,), vth=1 << 20, bias=np.zeros(1, np.int64))
    res = run_fixed([big, readout([[1]])], np.array([[4095]]), timesteps=40, keep_trains=True)
    assert not res.trains[0].any()  # 2^23 - 1 < 2^26 threshold: never fires, never wraps negative


def test_conv_synapse_sums_clamp_to_24_bits():
    lay = QuantLayer(kind="conv", out_shape=(1, 1, 1), vth=0, bias=np.zeros(1, np.int64), weight=np.ones((1, 1, 2, 2)))
    s = torch.ones(1, 1, 2, 2, dtype=torch.float64)
    assert _synapse(lay, torch.ones(1, 1, 2, 2, dtype=torch.float64), s).item() == 4.0
    assert _synapse(lay, torch.full((1, 1, 2, 2), float(UV_MAX), dtype=torch.float64), s).item() == UV_MAX - 1
    assert _synapse(lay, torch.full((1, 1, 2, 2), -float(UV_MAX), dtype=torch.float64), s).item() == -UV_MAX


@pytest.mark.parametrize("kind", ["conv", "dense"])
def test_float32_synapses_give_the_float64_sums_and_are_used_only_where_exact(kind):
    rng = np.random.default_rng(5)
    shape = (64, 32, 3, 3) if kind == "conv" else (128, 2560)
    w = rng.integers(-255, 256, shape)
    lay = QuantLayer(kind=kind, out_shape=(64, 5, 8) if kind == "conv" else (128,), vth=0, bias=np.zeros(shape[0], np.int64),
                     weight=w, stride=(2, 2), padding=(1, 1), flatten_before=kind == "dense")
    spikes = torch.from_numpy((rng.random((20, 32, 10, 16) if kind == "conv" else (20, 2560)) < 0.5).astype(np.float64))
    fast = synapse_weight(w)
    assert fast.dtype == torch.float32
    assert torch.equal(_synapse(lay, fast, spikes), _synapse(lay, torch.from_numpy(w.astype(np.float64)), spikes))
    big = np.full((1, 70_000), 255)  # sums up to 17.9 M > 2^24: float32 would round them
    assert synapse_weight(big).dtype == torch.float64


def test_input_bias_rounds_and_clips_to_13_signed_bits():
    got = input_bias(np.array([0.3, 1.26, -0.74, 1000.0, -1000.0]), weight=10, bias=1)
    assert got.tolist() == [4, 14, -6, 4095, -4096]
    assert got.dtype == np.int64
