"""Surrogate-gradient fine-tuning of a converted reset-to-zero SNN in Lava's exact timing (snntorch neurons).

`LavaTimed` runs a sequential SpikingNet as the netx file will run in Lava (edgekit/snn/fixed_point.py), in float:
  - the host encoder (first conv) in float, its output rounded to the input neurons' 1/1024 bias grid and clipped to
    13 bits; the input neurons fire when V > 1023/1024;
  - every later layer reads the previous layer's spikes of the previous step (one-step synaptic delay, zeros at the
    first step) through weights rounded to the 8-bit grid of netx.layer_scale and biases rounded to 13 bits; it fires
    when V > (round(scale) - 1) / scale, the integer threshold divided by the scale; reset to zero, no leak
    (snntorch Leaky with beta 1, reset_mechanism "zero", reset_delay False: it resets in the step it fires, as CUBA);
  - the readout integrates its input over the window after the delays and the warm-up, divided by T.
Rounding passes the gradient straight through (STE); the spike's gradient is snntorch's fast-sigmoid surrogate.
The trained float weights go back into the SpikingNet; to_netx rounds them onto the same grid.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from edgekit._optional import require
from edgekit.errors import BadInputError
from edgekit.snn.net import SpikingNet
from edgekit.snn.netx import B_MAX, INPUT_SCALE, layer_scale


def _ste_round(x: torch.Tensor) -> torch.Tensor:
    return x + (torch.round(x) - x).detach()


class LavaTimed(nn.Module):
    """The SpikingNet's weights and biases as parameters; forward(x) -> the readout (N, outputs) in the card's convention,
    before any L2 normalisation (the cosine loss does not need it)."""

    def __init__(self, net: SpikingNet, slope: float = 5.0):
        snntorch = require("snntorch", "finetune_snn's spiking neurons")
        from snntorch import surrogate

        super().__init__()
        if not (net.sequential and net.reset == "zero" and net.delay and net.v_init == 0.0):
            raise BadInputError("finetune_snn trains in Lava's timing: a sequential network converted with reset: zero, "
                                "delay: true and v_init: 0 (the loihi recipe's to_snn); fix: put finetune_snn after that "
                                "to_snn, before to_netx")
        self.net, self.layers = net, [net.layers[i] for i in net.weighted]
        self.weights = nn.ParameterList([nn.Parameter(net.weights[i].detach().float().clone()) for i in net.weighted])
        self.biases = nn.ParameterList([nn.Parameter(net.biases[i].detach().float().clone()) for i in net.weighted])
        self.flatten_before = [net.layers[i - 1]["kind"] == "flatten" for i in net.weighted]
        self.start = len(net.weighted) - 1 + net.warmup  # the readout window opens after the delays and the warm-up
        self.steps = net.timesteps + self.start
        # created once: snntorch keeps every neuron it ever made in a class-level list (with its last state and graph)
        self.neurons = nn.ModuleList(
            snntorch.Leaky(beta=1.0, threshold=1.0, reset_mechanism="zero", reset_delay=False,
                           spike_grad=surrogate.fast_sigmoid(slope=slope)) for _ in range(len(self.layers) - 1))

    def _quantised(self, k: int) -> tuple[torch.Tensor, torch.Tensor, float]:
        """Layer k's weight and bias on netx's integer grid (STE), and its firing threshold in float units."""
        w, b = self.weights[k], self.biases[k]
        spiking = self.layers[k]["neuron"] == "if"
        scale = layer_scale(w.detach().double().cpu().numpy(), b.detach().double().cpu().numpy(), spiking, self.steps)
        # rounded in float64 as to_netx rounds them: in float32 a weight within 1e-5 of a half step can round the other way
        wq = (_ste_round(w.double() * scale).clamp(-256, 254) / scale).float()
        bq = (_ste_round(b.double() * scale).clamp(-B_MAX - 1, B_MAX) / scale).float()
        # V > vth in integers is V >= vth + 1: half a unit between keeps float rounding from deciding a tie
        return wq, bq, (max(round(scale) - 1, 0) + 0.5) / scale if spiking else float("inf")

    def _synapse(self, k: int, s: torch.Tensor, w: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        lay = self.layers[k]
        if lay["kind"] == "conv":
            return F.conv2d(s, w, b, stride=lay["stride"], padding=lay["padding"])
        return F.linear(s.flatten(1) if self.flatten_before[k] else s, w, b)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        enc = self._synapse(0, x, self.weights[0], self.biases[0])
        drive = _ste_round(enc * INPUT_SCALE).clamp(-B_MAX - 1, B_MAX) / INPUT_SCALE  # the input neurons' bias
        params = [None] + [self._quantised(k) for k in range(1, len(self.layers))]
        for neuron, threshold in zip(self.neurons, [(INPUT_SCALE - 0.5) / INPUT_SCALE] + [p[2] for p in params[1:-1]]):
            neuron.threshold.fill_(threshold)
        n, hidden = len(x), len(self.layers) - 1
        # what each spiking layer sent at the previous step: zeros before the first (Lava's synapse buffers start empty)
        sent = [torch.zeros(n, *self.layers[k]["out_shape"], device=x.device) for k in range(hidden)]
        mem = [torch.zeros_like(s) for s in sent]
        readout = 0.0
        for t in range(1, self.steps + 1):
            heard = sent
            sent = [None] * hidden
            for k in range(hidden):
                current = drive if k == 0 else self._synapse(k, heard[k - 1], params[k][0], params[k][1])
                sent[k], mem[k] = self.neurons[k](current, mem[k])
            if t > self.start:
                readout = readout + self._synapse(hidden, heard[hidden - 1], params[hidden][0], params[hidden][1])
        for neuron in self.neurons:  # drop the last step's graph the neurons hold
            neuron.mem = neuron.mem.detach()
        return readout / self.net.timesteps

    def write_back(self) -> SpikingNet:
        """The trained weights and biases into the SpikingNet (float; to_netx rounds them onto the same grid)."""
        for k, i in enumerate(self.net.weighted):
            self.net.weights[i] = self.weights[k].detach().float().contiguous()
            self.net.biases[i] = self.biases[k].detach().float().contiguous()
        return self.net


def readout_error_deg(module: LavaTimed, x: torch.Tensor, truth: np.ndarray, convention: str, batch: int = 128) -> float:
    """Mean angular error of the Lava-timed float readout (before and after fine-tuning, on held-out images)."""
    from edgekit.data.gaze import readout_vectors
    from edgekit.data.metrics import angular_error_deg

    with torch.no_grad():
        out = torch.cat([module(x[i:i + batch]) for i in range(0, len(x), batch)]).double().numpy()
    return float(angular_error_deg(readout_vectors(out, convention), truth).mean())
