"""Simulate a SpikingNet in PyTorch, batched: integrate-and-fire hidden layers, integrator readout y = V_t / t.

The input is analog: the first layer's current (conv of the image plus bias) is computed once and injected every
step (direct encoding), so it counts as MACs once per inference; every later layer receives binary spikes (ACs).
Readouts are taken at several step counts in one run (the network at step t does not depend on later steps).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch
from torch.nn import functional as F


@dataclass
class SimResult:
    outputs: dict[int, np.ndarray]  # steps -> (N, out) readout V_t / t (before L2 normalisation)
    spikes: dict[int, list[float]] = field(default_factory=dict)  # steps -> total spikes per weighted layer (all samples)
    acs: dict[int, list[float]] = field(default_factory=dict)  # steps -> synaptic ACs into each weighted layer
    n: int = 0


def layer_current(net, i: int, h: torch.Tensor) -> torch.Tensor:
    lay, w, b = net.layers[i], net.weights[i], net.biases[i]
    if lay["kind"] == "conv":
        return F.conv2d(h, w, b, stride=lay["stride"], padding=lay["padding"])
    return F.linear(h, w, b)


def fan_out(net, i: int) -> torch.Tensor:
    """Per input neuron of weighted layer i: how many nonzero synapses it drives (NeuroBench: ACs = spikes x fan-out)."""
    lay = net.layers[i]
    return fan_out_of(net.weights[i], lay["kind"], lay["in_shape"], lay.get("stride", (1, 1)), lay.get("padding", (0, 0)))


def fan_out_of(weight: torch.Tensor, kind: str, in_shape, stride, padding) -> torch.Tensor:
    mask = (weight != 0).to(torch.float64)
    if kind != "conv":
        return mask.sum(0)
    x = torch.ones(1, *in_shape, dtype=torch.float64, requires_grad=True)
    with torch.enable_grad():  # d(sum of outputs)/d(input) = each input's fan-out, borders and strides included
        (grad,) = torch.autograd.grad(F.conv2d(x, mask, stride=tuple(stride), padding=tuple(padding)).sum(), x)
    return grad[0]


@torch.no_grad()
def _steps(net, x: torch.Tensor, steps: int, upto: int | None = None):
    """Advance the network one step at a time; yields (t, inputs, spikes, v): per weighted layer k its input (None for the
    analog first layer), its spikes (None for the integrator) and membrane potentials. upto: last layer index to run."""
    weighted = [i for i in net.weighted if upto is None or i <= upto]
    v: dict[int, torch.Tensor] = {}
    first_current = layer_current(net, weighted[0], x)
    for t in range(1, steps + 1):
        h, inputs, spikes = None, [], []
        for k, i in enumerate(weighted):
            if k and net.layers[i - 1]["kind"] == "flatten":
                h = h.flatten(1)
            inputs.append(h)
            cur = first_current if k == 0 else layer_current(net, i, h)
            if i not in v:
                v[i] = torch.full_like(cur, net.v_init) if net.layers[i]["neuron"] == "if" else torch.zeros_like(cur)
            v[i] += cur
            if net.layers[i]["neuron"] == "integrator":
                spikes.append(None)
                continue
            h = (v[i] >= 1.0).to(cur.dtype)
            v[i] = v[i] - h if net.reset == "subtract" else v[i] * (1.0 - h)
            spikes.append(h)
        yield t, inputs, spikes, v


@torch.no_grad()
def simulate(net, x: torch.Tensor, steps: int, record: tuple[int, ...] = (), count: bool = True) -> SimResult:
    """Run `steps` timesteps on inputs x (N, C, H, W). record: step counts whose readout (and counts) to keep
    besides the last."""
    record = tuple(sorted(set(record) | {steps}))
    weighted = net.weighted
    fans = [None] + [fan_out(net, i) for i in weighted[1:]] if count else []
    spikes, acs = [0.0] * len(weighted), [0.0] * len(weighted)
    res = SimResult(outputs={}, n=len(x))
    for t, inputs, fired, v in _steps(net, x, steps):
        if count:
            for k in range(len(weighted)):
                if k:
                    acs[k] += float((inputs[k] * fans[k]).sum())
                if fired[k] is not None:
                    spikes[k] += float(fired[k].sum())
        if t in record:
            res.outputs[t] = (v[weighted[-1]] / t).numpy().astype(np.float64)
            res.spikes[t], res.acs[t] = list(spikes), list(acs)
    return res


@torch.no_grad()
def rates(net, x: torch.Tensor, steps: int, upto: int) -> torch.Tensor:
    """Spike rate (spikes per step) of weighted layer `upto` over `steps` (calibration: compare with the ANN)."""
    total = 0.0
    for _, _, fired, _ in _steps(net, x, steps, upto):
        total = total + fired[-1]
    return total / steps
