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
Integers are held in int64 and wrapped where Lava's int32 arrays wrap; convolutions run in float32 pieces small
enough to be exact (exact_conv), dense layers in float64, exact for integers below 2^53 (messages < 2^24, weights
< 2^9, fan-in < 2^12).
"""

from __future__ import annotations

import copy
import dataclasses
from dataclasses import dataclass, field

import numpy as np
import torch
from torch.nn import functional as F

from edgekit.snn.simulate import fan_out_of, synaptic_ops

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


def wrap_(x: torch.Tensor, bits: int) -> torch.Tensor:
    """x (int64) wrapped in place to a signed `bits`-bit integer, as Lava's int32 arrays and 24-bit synapses wrap, and
    returned: the shifts up and back keep the low `bits` bits and sign-extend them (two's complement): two passes in
    place instead of three that each allocated a tensor (measured 12x faster on a 256-image batch)."""
    shift = 64 - bits
    return x.bitwise_left_shift_(shift).bitwise_right_shift_(shift)


F32_EXACT = 1 << 24  # float32 holds every integer below 2^24 in magnitude, and integer sums below it are exact


def exact_conv(msg: torch.Tensor, weight: torch.Tensor, row_sum: int, stride, padding) -> torch.Tensor:
    """The correlation of int64 messages with integer weights (float32, `row_sum` = the largest sum of |weights| into
    one output), exact, in float32 pieces: a piece of the messages below 2^b, with 2^b * row_sum <= 2^24, keeps every
    partial sum an integer below 2^24, exact in any order; the pieces shifted back add up in int64. Two or three
    float32 convolutions cost less than one in float64 (5-8x slower here: no oneDNN kernel for it)."""
    bits = (F32_EXACT // max(row_sum, 1)).bit_length() - 1
    if bits < 1:  # weights too large for any piece (never with 8-bit weights and fan-in below 2^16)
        return torch.round(F.conv2d(msg.double(), weight.double(), stride=stride, padding=padding)).to(torch.int64)
    out, shift, rest = None, 0, msg
    while True:
        last = int(rest.abs().max()) * row_sum < F32_EXACT
        piece = rest if last else rest & ((1 << bits) - 1)  # the low bits, 0 .. 2^b - 1 (two's complement)
        part = F.conv2d(piece.to(torch.float32), weight, stride=stride, padding=padding).to(torch.int64)
        out = part if out is None else out.add_(part.bitwise_left_shift_(shift))
        if last:
            return out
        rest, shift = rest >> bits, shift + bits  # floor: rest = (rest >> b) * 2^b + its low bits


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
        # convolutions run in float32 pieces (exact_conv): the weights in float32 and each output's sum of |weights|
        self.conv_weights = [w.float() if lay.kind == "conv" else None for w, lay in zip(self.weights, layers)]
        self.row_sums = [int(w.abs().reshape(len(w), -1).sum(1).max()) if lay.kind == "conv" else 0
                         for w, lay in zip(self.weights, layers)]
        self.shifts = [dense_shift(lay.weight) if lay.kind == "dense" else 0 for lay in layers]
        self.fan_outs = [None] + [self._fan_out(k) for k in range(1, len(layers))]

    def _fan_out(self, k: int) -> torch.Tensor:
        """Synapses each neuron of layer k - 1 drives in layer k (nonzero weights; borders and strides included)."""
        lay, before = self.layers[k], self.layers[k - 1]
        fan = fan_out_of(self.weights[k], "conv" if lay.kind == "conv" else "linear", before.shape, lay.stride, lay.padding)
        return fan.reshape(-1)

    def _synapse(self, k: int, msg: torch.Tensor) -> torch.Tensor:
        lay = self.layers[k]
        if lay.kind == "conv":
            return wrap_(exact_conv(msg, self.conv_weights[k], self.row_sums[k], lay.stride, lay.padding), 24)
        a = F.linear(msg.flatten(1).to(torch.float64), self.weights[k]).round_().to(torch.int64)
        sb = self.shifts[k]
        return wrap_(a.mul_(1 << sb), 32).bitwise_right_shift_(sb)  # an arithmetic shift: the floor of the division

    def _bias(self, k: int, like: torch.Tensor) -> torch.Tensor:
        bias = torch.from_numpy(self.layers[k].bias.astype(np.int64)) << EXP
        return bias.view(1, -1, *([1] * (like.dim() - 2)))

    def with_thresholds(self, vths: list[int]) -> Mirror:
        """The same network with other thresholds (weights, shifts and fan-outs shared, not recomputed)."""
        other = copy.copy(self)
        other.layers = [dataclasses.replace(lay, vth=v) for lay, v in zip(self.layers, vths)]
        return other

    def _rest(self, k: int, n: int) -> dict[str, torch.Tensor]:
        """Layer k's state for n streams at rest (Lava's initial state: act, residue and sigma zero)."""
        zeros = lambda: torch.zeros((n, *self.layers[k].shape), dtype=torch.int64)  # noqa: E731
        return {"sigma": zeros(), "act": zeros(), "residue": zeros()}

    def _step(self, k: int, state: dict, heard: torch.Tensor | None) -> tuple[torch.Tensor, float]:
        """One step of layer k: heard is the frame (input layer) or what layer k - 1 sent the step before (None: it
        sent nothing, which adds nothing). Returns what layer k sends (the readout: its sigma) and its synaptic ops."""
        lay = self.layers[k]
        ops = 0.0
        # in place wherever a tensor is this step's own: a fresh 20 MB int64 tensor per operation cost more than the
        # arithmetic (the threshold search steps 256 images at a time)
        if lay.neuron == "delta":
            new = wrap_(heard << EXP, 32)
        else:
            sigma = state["sigma"]
            if heard is not None:
                ops = synaptic_ops(heard, self.fan_outs[k])
                wrap_(sigma.add_(self._synapse(k, heard)), 32)
            if lay.neuron == "sigma":
                return sigma.clone(), ops
            new = wrap_(sigma + self._bias(k, sigma), 32).clamp_min_(0)
        delta = wrap_((new - state["act"]).add_(state["residue"]), 32)
        # s = delta where |delta| >= vth << 12, else 0, in one new tensor (int64 0/1 times delta): bool masks with where()
        # and masked_fill_ took 3x longer on one core (the threshold search runs this step hundreds of times)
        s = delta.abs().ge_(lay.vth << EXP).mul_(delta)
        state["residue"], state["act"] = delta.sub_(s), new  # what did not fire stays as residue
        return s.bitwise_right_shift_(STATE_EXP), ops  # the floor of s / 2^6

    @torch.no_grad()
    def run(self, frames: np.ndarray, steps_per_frame: int, record: bool = False) -> MirrorResult:
        """frames: (N, F, *input shape) integers, each held for `steps_per_frame` steps, streams starting from rest
        (Lava's initial state: every act, residue, sigma and synaptic buffer zero)."""
        n, n_frames = frames.shape[:2]
        layers = self.layers
        state = [self._rest(k, n) for k in range(len(layers))]
        prev: list[torch.Tensor | None] = [None] * len(layers)  # messages of the step before (the synapses' buffers)
        messages = [np.zeros(n_frames, np.int64) for _ in layers]
        synops = [np.zeros(n_frames, np.float64) for _ in layers]
        recorded = [[] for _ in layers] if record else None
        readout = np.zeros((n, n_frames, layers[-1].neurons), np.int64)
        x_all = torch.from_numpy(np.ascontiguousarray(frames).astype(np.int64))
        for f in range(n_frames):
            for _ in range(steps_per_frame):
                cur: list[torch.Tensor] = []
                for k, lay in enumerate(layers):
                    msg, ops = self._step(k, state[k], x_all[:, f] if k == 0 else _unless_silent(prev[k - 1]))
                    synops[k][f] += ops
                    if lay.neuron != "sigma":
                        messages[k][f] += int(torch.count_nonzero(msg))
                    cur.append(msg)
                if record:
                    for k, m in enumerate(cur):
                        recorded[k].append(m.reshape(n, -1).numpy().copy())
                prev = cur
            readout[:, f] = prev[-1].reshape(n, -1).numpy()
        return MirrorResult(readout=readout, messages=messages, synops=synops,
                            recorded=[np.stack(r, 1) for r in recorded] if record else None,
                            steps_per_frame=steps_per_frame, samples=n)

    @torch.no_grad()
    def layer_alone(self, k: int, heard, steps: int) -> tuple[list[torch.Tensor | None], float]:
        """Layer k over one frame of `steps` steps from rest, as `run` steps it, but by itself: a layer depends on the
        layers before it only, so a threshold search can keep what the layers it did not change sent. heard: the frame
        (N, *input shape) integers for the input layer, else what layer k - 1 sent at each step (this method's own
        output for it). Returns what layer k sends at each step (None: nothing) and its synaptic ops."""
        n = len(heard) if k == 0 else next(len(m) for m in heard if m is not None)
        state, sent, ops = self._rest(k, n), [], 0.0
        for t in range(steps):
            msg, step_ops = self._step(k, state, heard if k == 0 else (heard[t - 1] if t else None))
            sent.append(_unless_silent(msg))
            ops += step_ops
        return sent, ops


def _unless_silent(msg: torch.Tensor | None) -> torch.Tensor | None:
    """None for a step in which no neuron sent: its synapse adds exactly zero, and the convolution is skipped."""
    return msg if msg is not None and bool(torch.count_nonzero(msg)) else None  # count_nonzero: faster than any() here
