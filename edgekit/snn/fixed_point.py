"""edgekit's fixed-point mirror of the network Lava builds from a netx file (lava-nc 0.10, Loihi2SimCfg fixed_pt):
CUBA/LIF `PyLifModelBitAcc` neurons behind Conv/Dense synapses. No Lava needed; it reads the same quantised
tensors that netx.py writes, and tests check it spike for spike against Lava's simulator.

Per neuron and step, in integer arithmetic (Lava scales threshold, bias and input by 2^6; it is kept here):
  a = W . s_prev            synapse output from the previous layer's spikes of the *previous* step (one-step delay
                            per layer); conv sums clamp to signed 24 bits
  u = wrap24(a << 6)        iDecay 4096: the current does not carry over (du = 4095, +1 offset)
  v = sat24(v + u + (bias_mant << 6))      vDecay 0: no leak
  spike = v > (vth << 6); v[spike] = 0     reset to zero
The input layer has no synapse: its current is the bias, bias_mant = clip(rint(weight * x + bias)) per neuron (x: the
first conv's output in threshold units, computed once on the host). The readout is an integrator that never fires.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch
from torch.nn import functional as F

from edgekit.snn.simulate import fan_out_of, synaptic_ops

UV_MAX = 1 << 23  # u and v are 24-bit signed
SHIFT = 6


def wrap24_(x: torch.Tensor) -> torch.Tensor:
    """In place: 2^24 down where above 2^23, then up where at or below -2^23 (one step each, as Lava's fixed-point
    LIF wraps its current); most steps wrap nothing, and then only one pass for the extremes runs."""
    low, high = torch.aminmax(x)  # one pass; what wraps down cannot then wrap up
    if high > UV_MAX:
        x.sub_((x > UV_MAX).to(x.dtype), alpha=2 * UV_MAX)
    if low <= -UV_MAX:
        x.add_((x <= -UV_MAX).to(x.dtype), alpha=2 * UV_MAX)
    return x


def clamp24_(x: torch.Tensor) -> torch.Tensor:
    return x.clamp_(-UV_MAX + 1, UV_MAX - 1)  # in place; PyLifModelBitAcc saturates v symmetrically


@dataclass
class QuantLayer:
    kind: str  # input | conv | dense
    out_shape: tuple[int, ...]  # (C, H, W) or (N,)
    vth: int  # threshold mantissa
    bias: np.ndarray  # bias mantissa per output channel (int)
    weight: np.ndarray | None = None  # int weights (out, in[, kh, kw]) in torch layout
    stride: tuple[int, int] = (1, 1)
    padding: tuple[int, int] = (0, 0)
    flatten_before: bool = False
    spiking: bool = True
    scale: float = 1.0  # integer units per float unit (weights and bias), = threshold mantissa for spiking layers


@dataclass
class FixedResult:
    readout: np.ndarray  # (N, out): (V(S+T) - V(S)) / (2^6 * scale * T), float; S = readout start (delays + warm-up)
    v_diff: np.ndarray  # (N, out) the integer V(S+T) - V(S), as Lava holds it
    spikes_per_layer: list[float] = field(default_factory=list)  # total spikes over all samples and steps
    acs_per_layer: list[float] = field(default_factory=list)  # total synaptic accumulates (spikes x fan-out) into each layer
    trains: list[np.ndarray] | None = None  # per spiking layer (N, steps, neurons) bool, when asked


def input_bias(encoder_current: np.ndarray, weight: int, bias: int) -> np.ndarray:
    """bias_mant of the input neurons: rint(weight * x + bias), clipped to 13 signed bits."""
    return np.clip(np.rint(weight * encoder_current + bias), -4096, 4095).astype(np.int64)


@torch.no_grad()
def run_fixed(layers: list[QuantLayer], input_mant: np.ndarray, timesteps: int, keep_trains: bool = False,
              start: int | None = None) -> FixedResult:
    """Run S + T steps on every sample at once; the readout is V(S + T) - V(S). S (start) defaults to D, the synaptic
    layers (the readout lags the input by D steps); a warm-up adds to it."""
    depth = len(layers) - 1
    start = depth if start is None else start
    steps = timesteps + start
    n = len(input_mant)
    v = [None] * len(layers)
    prev = [None] * len(layers)
    spikes = [0.0] * len(layers)
    trains = [[] for _ in layers] if keep_trains else None
    v_start = None
    weights = [synapse_weight(lay.weight) if lay.weight is not None else None for lay in layers]
    # the bias term added every step, bias << 6: the input neurons' own per sample, a layer's per channel
    biases = [torch.from_numpy(input_mant.astype(np.float64)) * (1 << SHIFT)] + [
        torch.from_numpy(lay.bias.astype(np.float64)).view(1, -1, *([1] * (len(lay.out_shape) - 1))) * (1 << SHIFT)
        for lay in layers[1:]]
    fans = [None] + [fan_out_of(weights[k], lay.kind, layers[k - 1].out_shape, lay.stride, lay.padding).reshape(-1)
                     for k, lay in enumerate(layers) if k]
    acs = [0.0] * len(layers)
    for t in range(1, steps + 1):
        current = [None] * len(layers)
        for k, lay in enumerate(layers):
            if v[k] is None:
                v[k] = torch.zeros((n, *lay.out_shape), dtype=torch.float64)
            heard = prev[k - 1] if k else None  # before the previous layer's first step the synapse's buffer is zero
            # in place: integers in float64, summed in the same order as before, so the same values
            if heard is not None:  # None: no spike the step before (a step without spikes adds exactly zero)
                acs[k] += synaptic_ops(heard, fans[k], binary=True)
                v[k].add_(wrap24_(_synapse(lay, weights[k], heard).mul_(1 << SHIFT)))
            clamp24_(v[k].add_(biases[k]))
            if lay.spiking:
                # spikes as 0/1 in v's float64, reset as v - v * spike (exactly v or 0): with bool masks, masked_fill_
                # and their conversions the mirror took 1.9x as long on one core (benchmarks/compile_time.md)
                fired = torch.gt(v[k], lay.vth * (1 << SHIFT), out=torch.empty_like(v[k]))
                v[k].addcmul_(v[k], fired, value=-1.0)
                count = float(fired.sum())
                spikes[k] += count
                current[k] = fired if count else None  # the next layer's synapse reads them as its weights' dtype
                if keep_trains:
                    trains[k].append((fired.reshape(n, -1) != 0).numpy())
        prev = current
        if t == start:
            v_start = v[-1].clone()
    out = layers[-1]
    v_diff = (v[-1] - v_start).numpy().astype(np.int64)
    return FixedResult(readout=v_diff / (1 << SHIFT) / (out.scale * timesteps), v_diff=v_diff, spikes_per_layer=spikes, acs_per_layer=acs,
                       trains=[np.stack(tr, 1) for tr in trains if tr] if keep_trains else None)


def synapse_weight(weight: np.ndarray) -> torch.Tensor:
    """The integer weights as float32 where every synaptic sum of 0/1 spikes stays an integer below 2^24 in magnitude
    (then float32 sums are exact in any order, and its convolutions run ~2x faster than float64's); else float64."""
    w = torch.from_numpy(weight.astype(np.float64))
    exact = float(w.abs().reshape(len(w), -1).sum(1).max()) < 2 ** 24
    return w.float() if exact else w


def _synapse(lay: QuantLayer, w: torch.Tensor, s: torch.Tensor) -> torch.Tensor:
    s = s.to(w.dtype)
    if lay.kind == "conv":
        a = F.conv2d(s, w, stride=lay.stride, padding=lay.padding).double()
        return a.clamp_(-UV_MAX, UV_MAX - 1)  # PyConvModelFixed: signed 24-bit clamp of the synaptic sum
    if lay.flatten_before:
        s = s.flatten(1)
    return F.linear(s, w).double()
