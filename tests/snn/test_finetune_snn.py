"""finetune_snn's network in Lava's timing (edgekit/snn/finetune.py) against the fixed-point mirror of the netx file."""

import numpy as np
import pytest
import torch
from torch.nn import functional as F

from edgekit.data import synthetic
from edgekit.errors import BadInputError
from edgekit.evalset import model_inputs
from edgekit.models.io import load_shipped
from edgekit.passes.fold_bn import find_conv_bn_pairs, fold_pairs
from edgekit.snn.convert import convert
from edgekit.snn.finetune import LavaTimed
from edgekit.snn.fixed_point import input_bias, run_fixed
from edgekit.snn.netx import INPUT_SCALE, quantize


def _tinygaze_images(n: int, role: str) -> torch.Tensor:
    _, card = load_shipped("tinygaze")
    return torch.from_numpy(next(iter(model_inputs(card, synthetic.standard_set(role, n, (40, 64))).arrays.values())))


def _folded_tinygaze():
    model, _ = load_shipped("tinygaze")
    return fold_pairs(model, find_conv_bn_pairs(model)[0]).eval()


def _lava_timed_net(timesteps: int = 8, warmup: int = 2):
    return convert(_folded_tinygaze(), 1, _tinygaze_images(48, "calib"), timesteps=timesteps, reset="zero", v_init=0.0,
                   delay=True, warmup=warmup)


def _mirror_readout(net, x: torch.Tensor) -> np.ndarray:
    """The fixed-point mirror on the layers to_netx would write (what Lava runs, checked spike for spike elsewhere)."""
    layers, _ = quantize(net)
    first = net.weighted[0]
    lay = net.layers[first]
    with torch.no_grad():
        current = F.conv2d(x, net.weights[first], net.biases[first], stride=lay["stride"], padding=lay["padding"])
    res = run_fixed(layers, input_bias(current.double().numpy(), INPUT_SCALE, 0), net.timesteps,
                    start=len(layers) - 1 + net.warmup)
    return res.readout


def test_lava_timed_forward_is_the_fixed_point_mirror():
    """Same delays, thresholds (V > vth in integers), 8-bit weights, 13-bit biases and readout window: before any
    training the float network's readout equals the integer one to float precision on every image."""
    net = _lava_timed_net()
    x = _tinygaze_images(24, "eval")
    with torch.no_grad():
        mine = LavaTimed(net)(x).double().numpy()
    mirror = _mirror_readout(net, x)
    assert np.abs(mirror).max() > 0.1
    assert np.abs(mine - mirror).max() < 1e-5


def test_gradients_reach_every_layer_through_the_surrogate():
    net = _lava_timed_net(timesteps=4, warmup=0)
    module = LavaTimed(net)
    module(_tinygaze_images(4, "train")).sum().backward()
    assert all(p.grad is not None and float(p.grad.abs().sum()) > 0 for p in module.weights)


def test_networks_not_in_lavas_timing_are_refused_in_one_line():
    net = convert(_folded_tinygaze(), 1, _tinygaze_images(16, "calib"), timesteps=4, balance="none")  # reset by subtraction
    with pytest.raises(BadInputError, match=r"^finetune_snn trains in Lava's timing.*fix: put finetune_snn after that to_snn"):
        LavaTimed(net)
