"""edgekit's fixed-point mirror of the sigma-delta network Lava builds from a netx SDNN file (lava-dl 0.6.0 netx,
lava-nc 0.10.0 `Loihi2SimCfg(select_tag="fixed_pt")`: PyDeltaModelFixed, PySigmaDeltaModelFixed, PySigmaModelFixed,
PyConvModelFixed, PyDenseModelBitAcc). No Lava needed: it reads the same integers netx reads, and the lava-sdnn
backend checks it message for message against Lava's simulator. The derivation, with file:line references, is in
scripts/research/sdnn/README.md.

Per step t, every layer in the same step (<< 12 is << spike_exp + state_exp, both 6):
  synapse     a_in(t) = Syn(msg of the layer before at t - 1)       one step of delay per synaptic layer
              conv:  exact integer correlation, then a signed 24-bit WRAP (Lava's "signed_clamp" wraps)
              dense: ((W << sb) . msg) wrapping at int32, then >> sb (sb: netx's optimize_weight_bits)
  input       act_new = x << 12                                     (Delta: x is the frame's integer pixel)
  hidden      sigma += a_in;  act_new = max(sigma + (bias << 12), 0)  (SigmaDelta: always ReLU)
  both        delta = act_new - act + residue
              s = delta if |delta| >= vth << 12 else 0                (>=, although Lava's docstrings say >)
              residue = delta - s;  act = act_new;  msg = s >> 6      (floors; the floored bits are lost)
  readout     sigma += a_in;  msg = sigma                             (Sigma: no bias, no ReLU, sent every step)
Integers are held in int64 and wrapped where Lava's int32 arrays wrap; convolutions run in float64, exact for
integers below 2^53 (messages < 2^24, weights < 2^9, fan-in < 2^12).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch
from torch.nn import functional as F

EXP = 12  # spike_exp + state_exp
STATE_EXP = 6
WEIGHT_MIN, WEIGHT_MAX = -128, 127  # 8-bit signed weights (netx accepts [-256, 254]; edgekit stays in 8 bits)


@dataclass
class SdnnLayer:
    """One netx layer as Lava runs it. kind: input | conv | dense; neuron: delta | sigma_delta | sigma."""

    kind: str
    neuron: str
    shape: tuple[int, ...]  # (C, H, W) or (N,)
    vth: int = 0  # threshold mantissa (Lava compares |delta| >= vth << 12); none for the sigma readout
    weight: np.ndarray | None = None  # int, torch layout (out, in[, kh, kw])
    bias: np.ndarray | None = None  # int mantissa per output channel or neuron (Lava adds bias << 12); sigma_delta only
    stride: tuple[int, int] = (1, 1)
    padding: tuple[int, int] = (0, 0)
    flatten_before: bool = False

    @property
    def neurons(self) -> int:
        return int(np.prod(self.shape))


def dense_shift(weight: np.ndarray) -> int:
    """netx's optimize_weight_bits scale bits for a dense layer (lava/lib/dl/netx/utils.py:80-158): Lava holds
    W << sb and shifts the int32 product back, so sb matters only where that product wraps."""
    mx, mn = int(weight.max()), int(weight.min())
    if mx == 0 and mn == 0:
        raise ValueError("all-zero dense weights (netx's optimize_weight_bits divides by zero)")
    if mx < 0:
        scale, signed = -256 / mn, 0
    elif mn >= 0:
        scale, signed = 255 / mx, 0
    else:
        scale, signed = min(127 / mx, -128 / mn), 1
    return int(np.floor(np.log2(scale)) + signed)


def wrap(x: torch.Tensor, bits: int) -> torch.Tensor:
    half = 1 << (bits - 1)
    return torch.remainder(x + half, 2 * half) - half


@dataclass
class MirrorResult:
    """readout: (N, frames, outputs) the readout's sigma at each frame's last step (int). messages: per layer, the
    nonzero messages it sent, summed over samples, (frames,); synops: per synaptic layer, messages in x fan-out,
    summed over samples, (frames,). recorded: per layer (N, steps, neurons) messages, when asked."""

    readout: np.ndarray
    messages: list[np.ndarray]
    synops: list[np.ndarray]
    recorded: list[np.ndarray] | None = None
    steps_per_frame: int = 0
    samples: int = 0
    extras: dict = field(default_factory=dict)


class Mirror:
    """The network's integer state for a batch of independent streams; `run` steps it through frames."""

    def __init__(self, layers: list[SdnnLayer]):
        self.layers = layers
        self.weights = [None if lay.weight is None else torch.from_numpy(lay.weight.astype(np.float64)) for lay in layers]
        self.shifts = [dense_shift(lay.weight) if lay.kind == "dense" else 0 for lay in layers]
        self.fan_outs = [None] + [self._fan_out(k) for k in range(1, len(layers))]

    def _fan_out(self, k: int) -> torch.Tensor:
        """Synapses each neuron of layer k - 1 drives in layer k (nonzero weights; borders and strides included)."""
        from edgekit.snn.simulate import fan_out_of

        lay, before = self.layers[k], self.layers[k - 1]
        fan = fan_out_of(self.weights[k], "conv" if lay.kind == "conv" else "linear", before.shape, lay.stride, lay.padding)
        return fan.reshape(-1)

    def _synapse(self, k: int, msg: torch.Tensor) -> torch.Tensor:
        lay = self.layers[k]
        if lay.kind == "conv":
            a = F.conv2d(msg.to(torch.float64), self.weights[k], stride=lay.stride, padding=lay.padding)
            return wrap(torch.round(a).to(torch.int64), 24)
        a = torch.round(F.linear(msg.flatten(1).to(torch.float64), self.weights[k])).to(torch.int64)
        sb = self.shifts[k]
        return torch.div(wrap(a * (1 << sb), 32), 1 << sb, rounding_mode="floor")

    def _bias(self, k: int, like: torch.Tensor) -> torch.Tensor:
        bias = torch.from_numpy(self.layers[k].bias.astype(np.int64)) << EXP
        return bias.view(1, -1, *([1] * (like.dim() - 2)))

    @torch.no_grad()
    def run(self, frames: np.ndarray, steps_per_frame: int, record: bool = False) -> MirrorResult:
        """frames: (N, F, *input shape) integers, each held for `steps_per_frame` steps, streams starting from rest
        (Lava's initial state: every act, residue, sigma and synaptic buffer zero)."""
        n, n_frames = frames.shape[:2]
        layers = self.layers
        shape = lambda lay: (n, *lay.shape)  # noqa: E731
        sigma = [torch.zeros(shape(lay), dtype=torch.int64) for lay in layers]
        act = [torch.zeros(shape(lay), dtype=torch.int64) for lay in layers]
        residue = [torch.zeros(shape(lay), dtype=torch.int64) for lay in layers]
        prev: list[torch.Tensor | None] = [None] * len(layers)  # messages of the step before (the synapses' buffers)
        messages = [np.zeros(n_frames, np.int64) for _ in layers]
        synops = [np.zeros(n_frames, np.float64) for _ in layers]
        recorded = [[] for _ in layers] if record else None
        readout = np.zeros((n, n_frames, layers[-1].neurons), np.int64)
        x_all = torch.from_numpy(np.ascontiguousarray(frames).astype(np.int64))
        for f in range(n_frames):
            x = x_all[:, f]
            for _ in range(steps_per_frame):
                cur: list[torch.Tensor] = []
                for k, lay in enumerate(layers):
                    if lay.neuron == "delta":
                        new = wrap(x << EXP, 32)
                    else:
                        if prev[k - 1] is not None:
                            sent = prev[k - 1].reshape(n, -1) != 0
                            synops[k][f] += float((sent.to(torch.float64) * self.fan_outs[k]).sum())
                            sigma[k] = wrap(sigma[k] + self._synapse(k, prev[k - 1]), 32)
                        if lay.neuron == "sigma":
                            cur.append(sigma[k].clone())
                            continue
                        new = torch.clamp_min(wrap(sigma[k] + self._bias(k, sigma[k]), 32), 0)
                    delta = wrap(new - act[k] + residue[k], 32)
                    s = torch.where(delta.abs() >= (lay.vth << EXP), delta, torch.zeros_like(delta))
                    residue[k] = delta - s
                    act[k] = new
                    msg = torch.div(s, 1 << STATE_EXP, rounding_mode="floor")
                    messages[k][f] += int((msg != 0).sum())
                    cur.append(msg)
                if record:
                    for k, m in enumerate(cur):
                        recorded[k].append(m.reshape(n, -1).numpy().copy())
                prev = cur
            readout[:, f] = prev[-1].reshape(n, -1).numpy()
        return MirrorResult(readout=readout, messages=messages, synops=synops,
                            recorded=[np.stack(r, 1) for r in recorded] if record else None,
                            steps_per_frame=steps_per_frame, samples=n)
