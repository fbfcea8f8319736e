"""ANN -> sigma-delta network (SDNN) for Loihi 2: each ReLU layer becomes SigmaDelta neurons that send the graded
change of their activation once it exceeds a threshold, so the network computes the ANN's function with sparse
messages and settles within one step per synaptic layer of a new frame (lava-dl's PilotNet SDNN recipe).

Integer scales (M_l: integer units per unit of layer l's activation; scripts/research/sdnn/README.md section 2):
- input: x_int = round(x * M_0), with M_0 putting the calibration set's largest |pixel| at INPUT_RANGE;
- layer l: W_int = round(w * 64 * M_l / M_(l-1)) in 8 bits, bias = round(b * M_l), vThMant = round(theta_l * M_l);
  every hidden channel is first rescaled to a calibration peak of 1 (float_layers), and the scales M_l share out the
  bits the 24-bit range leaves the 8-bit weights (scales(): the calibration set's largest |pre-activation| at
  ACT_RANGE, half of Lava's 2^11 limit, since act = 4096 * M * x is 24-bit on Loihi);
- readout: a Sigma layer accumulating W . messages = 4096 * M_L * (z - b); the host adds the bias b (Sigma has none)
  and applies the model's own output convention (F.normalize for a vector, nothing for pitch/yaw).
Bias correction: each channel's bias absorbs the mean shift the 8-bit weights cause (measured on calibration).
Thresholds: theta_l = fraction_l * the p-th percentile of layer l's activation on the calibration set. Each layer's
fraction is raised as far as the calibration set's mean angular error (mirror, single frames) stays within
`budget_deg` of the ANN's: larger thresholds send fewer messages.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from edgekit.data.gaze import readout_vectors
from edgekit.data.metrics import angular_error_deg
from edgekit.errors import BadInputError
from edgekit.sdnn.mirror import EXP, WEIGHT_MAX, Mirror, SdnnLayer
from edgekit.snn.graph import IMAGE, Node, spiking_graph

INPUT_RANGE = 128  # largest |x_int| on calibration: 8-bit pixels (Delta: act = x << 12 far below 2^23)
ACT_RANGE = 1024  # largest |pre-activation| * M on calibration (2x headroom under the 24-bit limit 2048)
READOUT_RANGE = 1 << 16  # the readout's sigma is int32: 4096 * M * |z| < 2^31 with 8x headroom
FRACTIONS = (0.0, 0.005, 0.01, 0.02, 0.03, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3)


@dataclass
class FloatLayer:
    """A conv or linear layer of the BN-folded ANN, with what the calibration set drives through it."""

    name: str
    kind: str  # conv | dense
    weight: np.ndarray
    bias: np.ndarray
    stride: tuple[int, int]
    padding: tuple[int, int]
    flatten_before: bool
    readout: bool
    out_shape: tuple[int, ...]
    sum_max: float  # largest |W . x| (without bias) on calibration: the synapse's first-step sum
    pre_max: float  # largest |W . x + b|: sigma + bias
    act_percentile: float  # p-th percentile of the ReLU output (0 for the readout)


@dataclass
class SdnnNet:
    """The integer network and what the host needs around it (sdnn.json)."""

    layers: list[SdnnLayer]
    names: list[str]
    scales: list[float]  # M per layer, input first
    thresholds: list[float]  # theta per layer in activation units (input: pixel units); 0 for the readout
    fractions: list[float]
    readout_bias: list[float]
    normalize_output: bool
    output_convention: str
    meta: dict = field(default_factory=dict)

    @property
    def delay_steps(self) -> int:
        return len(self.layers) - 1  # one step per synaptic layer, the readout's included

    @property
    def steps_per_frame(self) -> int:
        return self.delay_steps + 1  # a held frame has settled every layer after D steps (README section 3)

    def input_integers(self, x: np.ndarray) -> np.ndarray:
        return encode_input(x, self.scales[0])

    def decode(self, readout: np.ndarray) -> np.ndarray:
        return decode(readout, self.scales[-1], self.readout_bias, self.normalize_output)


def decode(readout: np.ndarray, scale: float, bias, normalize: bool) -> np.ndarray:
    """The readout's integer sigma -> the model's output (bias added, normalised when the model normalises)."""
    out = readout.astype(np.float64) / ((1 << EXP) * scale) + np.asarray(bias, np.float64)
    return out / np.maximum(np.linalg.norm(out, axis=-1, keepdims=True), 1e-12) if normalize else out


def encode_input(x: np.ndarray, scale: float) -> np.ndarray:
    return np.clip(np.rint(np.asarray(x, np.float64) * scale), -(1 << 11) + 1, (1 << 11) - 1).astype(np.int64)


def sdnn_wording(refusal: str) -> str:
    """One of the spiking graph's refusals (written for the CUBA target) as it applies to this one: the same construct
    and fix, with this target's neurons, pass and distillation target named."""
    import re

    text = re.sub(r"IF neurons rate-code ReLU only \(a spike rate cannot go negative or bend like ([^)]*)\)",
                  r"sigma-delta neurons send the changes of ReLU activations only (not of \1)", refusal)
    for old, new in (("target loihi-distill", "target loihi-sdnn-distill"), ("to_snn converts", "to_sdnn converts"),
                     ("summing spikes over time", "summing sigma-delta messages over time"),
                     ("are not rate-convertible", "are not convertible to sigma-delta layers")):
        text = text.replace(old, new)
    return text


def float_layers(module: nn.Module, calib: torch.Tensor, percentile: float, output_convention: str,
                 input_names: list[str] | None = None) -> tuple[list[FloatLayer], bool]:
    """The ANN as a chain of conv/linear layers (ReLU after each but the last) with calibration statistics, every
    hidden channel rescaled so that its largest |pre-activation| on the calibration set is 1: ReLU commutes with a
    positive per-channel scale, so the function is the same, but each channel then fills the 24-bit range on its own
    instead of the layer's loudest channel setting one scale for all (the 8-bit weights are what this buys: measured
    in benchmarks/snn.md). Anything else is refused in one line naming the layer."""
    from edgekit.snn.convert import _check_readout

    try:
        nodes, normalized = spiking_graph(module.eval(), 1, input_names)
    except BadInputError as exc:
        raise BadInputError(sdnn_wording(str(exc))) from None
    _check_readout(nodes, normalized, output_convention)
    out, x, flatten = [], calib.double(), False
    gain = torch.ones(x.shape[1], dtype=torch.float64)  # per input feature: equalised = original * gain
    for i, node in enumerate(nodes):
        if node.inputs != [i - 1 if i else IMAGE]:
            raise BadInputError(_not_a_chain(node, nodes))
        if node.kind == "flatten":
            if x.dim() == 4:
                gain = gain.repeat_interleave(x.shape[2] * x.shape[3])  # NCHW flatten: channel-major
            x, flatten = x.flatten(1), True
            continue
        if node.kind not in ("conv", "linear"):
            raise BadInputError(_not_a_chain(node, nodes))
        readout = i == len(nodes) - 1
        if node.neuron != ("integrator" if readout else "if"):
            raise BadInputError(_not_a_chain(node, nodes))
        layer, x, gain = _float_layer(node, x, gain, flatten, readout, percentile)
        out.append(layer)
        flatten = False
    return out, normalized


def _float_layer(node: Node, x: torch.Tensor, gain: torch.Tensor, flatten: bool, readout: bool, percentile: float
                 ) -> tuple[FloatLayer, torch.Tensor, torch.Tensor]:
    """The layer reading equalised inputs (x, gain per input feature), equalised on its output side unless it is the
    readout; returns it, its equalised output (after ReLU) and its output gain."""
    m = node.module  # spiking_graph refused grouped, dilated and non-zero padded convs
    conv = isinstance(m, nn.Conv2d)
    per_in = (lambda v: v.view(1, -1, 1, 1)) if conv else (lambda v: v.view(1, -1))  # noqa: E731
    w = m.weight.detach().double() / per_in(gain)
    b = m.bias.detach().double() if m.bias is not None else torch.zeros(w.shape[0], dtype=torch.float64)
    with torch.no_grad():
        sums = F.conv2d(x, w, None, m.stride, m.padding) if conv else F.linear(x, w)
    z = sums + b.view(1, -1, *([1] * (sums.dim() - 2)))
    out_gain = torch.ones(w.shape[0], dtype=torch.float64)
    if not readout:
        dims = [0, 2, 3] if conv else [0]
        peak = torch.maximum(sums.abs().amax(dims), z.abs().amax(dims))
        # a channel (almost) silent on calibration keeps the layer's scale: a huge gain would blow up its weights
        peak = torch.where(peak < float(peak.max()) * 1e-3, peak.max(), peak)
        out_gain = 1 / peak
        w, b, sums, z = (w * per_in(out_gain).view(-1, *([1] * (w.dim() - 1))), b * out_gain,
                         sums * per_in(out_gain), z * per_in(out_gain))
    act = z if readout else F.relu(z)
    flat = act.reshape(-1)
    p = 0.0 if readout else float(torch.quantile(flat[:: max(1, flat.numel() // 1_000_000)], percentile / 100))
    layer = FloatLayer(node.name, "conv" if conv else "dense", w.numpy(), b.numpy(),
                       tuple(getattr(m, "stride", (1, 1))), tuple(getattr(m, "padding", (0, 0))), flatten, readout,
                       tuple(z.shape[1:]), float(sums.abs().max()), float(z.abs().max()), max(p, 1e-6))
    return layer, act, out_gain


def _not_a_chain(node: Node, nodes: list[Node]) -> str:
    what = {"add": "a residual add", "scale": "a residual shortcut", "pool": "average pooling"}.get(node.kind)
    if what is None:
        what = "feeds a residual add" if node.neuron == "none" else f"{node.kind} reading several layers"
    also = ", or replace the pooling by a stride-2 convolution" if node.kind == "pool" else ""
    return (f"layer {node.name} ({what}): the sigma-delta target takes a chain of conv/linear layers with ReLU and a "
            f"linear readout (netx's SDNN layers); fix: distil the model into a TinyGaze student (target "
            f"loihi-sdnn-distill){also}")


def scales(layers: list[FloatLayer], input_max: float) -> list[float]:
    """M per layer, input first. Every layer's weights would use all 8 bits if M_l = M_(l-1) * r_l with
    r_l = 127 / (64 max|w_l|); but M_l must stay below R_l, its 24-bit range. The bits the ranges take are spread as
    evenly as the ranges allow (the largest common per-layer loss, then the same for the layers after the binding one:
    a taut string in log M), since a product of losses is fixed by the first and last scales."""
    r = [WEIGHT_MAX / (64 * max(float(np.abs(lay.weight).max()), 1e-12)) for lay in layers]
    ranges = [(READOUT_RANGE if lay.readout else ACT_RANGE) / max(lay.sum_max, lay.pre_max, 1e-12) for lay in layers]
    log_full = np.log(INPUT_RANGE / max(input_max, 1e-12)) + np.cumsum(np.log(r))  # log M_l with full 8-bit weights
    room = np.minimum(np.log(ranges) - log_full, 0.0)  # how far below the full path each layer must be (<= 0)
    loss = np.zeros(len(layers) + 1)  # log(M / M_full), input first: 0, non-increasing
    start = 0
    while start < len(layers):
        rest = np.arange(start + 1, len(layers) + 1)
        slopes = (room[rest - 1] - loss[start]) / (rest - start)
        step = min(float(slopes.min()), 0.0)
        end = int(rest[int(np.argmin(slopes))]) if step < 0 else len(layers)
        loss[start + 1:end + 1] = loss[start] + step * (np.arange(start + 1, end + 1) - start)
        start = end
    return [float(np.exp(v)) for v in np.concatenate([[np.log(INPUT_RANGE / max(input_max, 1e-12))], log_full]) + loss]


def correct_biases(layers: list[FloatLayer], m: list[float], x: torch.Tensor) -> list[FloatLayer]:
    """Bias correction (Nagel et al. 2019, "Data-free quantization", section 4.2, here with calibration data): layer
    by layer, each channel's bias absorbs the mean shift its 8-bit weights and rounded bias cause in its
    pre-activation, measured with the quantised network's own inputs (so upstream shifts are corrected too)."""
    from dataclasses import replace

    out, exact, approx = [], x.double(), torch.from_numpy(encode_input(x.double().numpy(), m[0]) / m[0])
    for k, lay in enumerate(layers, start=1):
        scale = 64 * m[k] / m[k - 1]
        w_int = np.clip(np.rint(lay.weight * scale), -WEIGHT_MAX - 1, WEIGHT_MAX) / scale
        b_int = lay.bias if lay.readout else np.rint(lay.bias * m[k]) / m[k]  # the readout's bias stays on the host
        if lay.flatten_before:
            exact, approx = exact.flatten(1), approx.flatten(1)
        z = _apply(lay, lay.weight, lay.bias, exact)
        zq = _apply(lay, w_int, b_int, approx)
        dims = [0, 2, 3] if zq.dim() == 4 else [0]
        shift = (zq - z).mean(dims).numpy()
        fixed = replace(lay, bias=lay.bias - shift)
        out.append(fixed)
        zq = _apply(fixed, w_int, np.asarray(fixed.bias if lay.readout else np.rint(fixed.bias * m[k]) / m[k]), approx)
        exact, approx = (z, zq) if lay.readout else (F.relu(z), F.relu(zq))
    return out


def _apply(lay: FloatLayer, w: np.ndarray, b: np.ndarray, x: torch.Tensor) -> torch.Tensor:
    w, b = torch.from_numpy(np.asarray(w, np.float64)), torch.from_numpy(np.asarray(b, np.float64))
    return F.conv2d(x, w, b, lay.stride, lay.padding) if lay.kind == "conv" else F.linear(x, w, b)


def integer_layers(layers: list[FloatLayer], m: list[float], input_shape: tuple[int, ...], thresholds: list[float]
                   ) -> list[SdnnLayer]:
    """The netx layers for scales m and thresholds (activation units, input first)."""
    out = [SdnnLayer("input", "delta", tuple(input_shape), vth=int(round(thresholds[0] * m[0])))]
    for k, lay in enumerate(layers, start=1):
        w = np.clip(np.rint(lay.weight * 64 * m[k] / m[k - 1]), -WEIGHT_MAX - 1, WEIGHT_MAX).astype(np.int64)
        if not w.any():
            raise BadInputError(f"layer {lay.name}: every weight rounds to zero in 8 bits at this layer's scale; fix: "
                                "retrain without that layer's weights collapsing, or check the model's weights")
        out.append(SdnnLayer(lay.kind, "sigma" if lay.readout else "sigma_delta", lay.out_shape,
                             vth=0 if lay.readout else int(round(thresholds[k] * m[k])), weight=w,
                             bias=None if lay.readout else np.rint(lay.bias * m[k]).astype(np.int64),
                             stride=lay.stride, padding=lay.padding, flatten_before=lay.flatten_before))
    return out


class ThresholdSearch:
    """Scores threshold choices by the mirror on calibration images (single frames, from rest) against the ANN."""

    def __init__(self, layers: list[FloatLayer], m: list[float], x: np.ndarray, truth: np.ndarray, ann_out: np.ndarray,
                 input_p: float, normalized: bool, convention: str):
        self.layers, self.m, self.x_int, self.truth = layers, m, encode_input(x, m[0])[:, None], truth
        self.normalized, self.convention = normalized, convention
        self.ann_error = float(angular_error_deg(readout_vectors(ann_out, convention), truth).mean())
        self.levels = [input_p] + [lay.act_percentile for lay in layers[:-1]] + [0.0]
        self.input_shape = tuple(x.shape[1:])
        self.mirror = Mirror(self.net([0.0] * len(self.levels)))  # thresholds change between trials, nothing else
        # per layer, for the thresholds up to it: what it sent at each step and its synaptic ops. A trial that changes
        # layer k's threshold runs the layers from k on: those before send the same (Mirror.layer_alone)
        self._kept: list[tuple[tuple[int, ...], list, float]] = []

    def net(self, fractions: list[float]) -> list[SdnnLayer]:
        return integer_layers(self.layers, self.m, self.input_shape, [f * p for f, p in zip(fractions, self.levels)])

    def score(self, fractions: list[float]) -> tuple[float, float]:
        """(mean angular error over the ANN's in degrees, synaptic ops per frame) on the calibration images: the
        mirror's run of one frame from rest (len(layers) steps), layer by layer."""
        vths = [lay.vth for lay in self.net(fractions)]
        mirror, steps = self.mirror.with_thresholds(vths), len(vths)
        heard, synops = torch.from_numpy(self.x_int[:, 0].astype(np.int64)), 0.0
        for k in range(len(vths)):
            if k < len(self._kept) and self._kept[k][0] == tuple(vths[:k + 1]):
                _, heard, ops = self._kept[k]
            else:
                del self._kept[k:]
                heard, ops = mirror.layer_alone(k, heard, steps)
                self._kept.append((tuple(vths[:k + 1]), heard, ops))
            synops += ops
        n, last = len(self.x_int), heard[-1]  # the readout's sigma after the last step
        readout = last.reshape(n, -1).numpy() if last is not None else np.zeros((n, mirror.layers[-1].neurons), np.int64)
        out = decode(readout, self.m[-1], self.layers[-1].bias, self.normalized)
        error = float(angular_error_deg(readout_vectors(out, self.convention), self.truth).mean())
        return error - self.ann_error, synops / len(self.x_int)

    def search(self, budget_deg: float, log=lambda message: None) -> tuple[list[float], dict]:
        """A common fraction first (the largest within budget), then each layer's own, input first, raised while the
        error increase stays within budget and the synaptic ops fall."""
        n = len(self.levels)
        best = [0.0] * n
        diff, ops = self.score(best)
        history = [{"fractions": list(best), "increase_deg": diff, "synops": ops}]
        if diff > budget_deg:  # the 8-bit network alone is over budget: no threshold can help
            return best, {"history": history, "quantization_only_increase_deg": diff, "increase_deg": diff,
                          "synops_per_frame": ops, "ann_error_deg": self.ann_error}
        for f in FRACTIONS[1:]:
            trial = [f] * (n - 1) + [0.0]
            d, o = self.score(trial)
            history.append({"fractions": trial, "increase_deg": d, "synops": o})
            log(f"common threshold {f:g}: {d:.3f} deg, {o / 1e6:.2f} M synaptic ops per frame")
            if d > budget_deg:
                break
            best, diff, ops = trial, d, o
        for k in range(n - 1):
            for f in (x for x in FRACTIONS if x > best[k]):
                trial = best[:k] + [f] + best[k + 1:]
                d, o = self.score(trial)
                history.append({"fractions": trial, "increase_deg": d, "synops": o})
                if d > budget_deg or o >= ops:
                    break
                best, diff, ops = trial, d, o
            log(f"layer {k}: threshold {best[k]:g} of its p-level ({diff:.3f} deg, {ops / 1e6:.2f} M synaptic ops)")
        return best, {"history": history, "quantization_only_increase_deg": history[0]["increase_deg"],
                      "increase_deg": diff, "synops_per_frame": ops, "ann_error_deg": self.ann_error}


def convert(module: nn.Module, calib: torch.Tensor, truth: np.ndarray, *, budget_deg: float = 0.15, percentile: float = 99.9,
            output_convention: str = "unit_vector", input_names: list[str] | None = None,
            search_images: int = 256, bias_correction: bool = True, log=lambda message: None) -> SdnnNet:
    """A BN-folded chain CNN -> SdnnNet calibrated on `calib` (preprocessed images, N x C x H x W) whose gaze
    vectors are `truth`: the thresholds are raised while the calibration error stays within `budget_deg` of the ANN's."""
    layers, normalized = float_layers(module, calib, percentile, output_convention, input_names)
    x = calib.double().numpy()
    m = scales(layers, float(np.abs(x).max()))
    if bias_correction:
        layers = correct_biases(layers, m, calib)
    with torch.no_grad():
        ann = module.eval()(calib[:search_images]).double().numpy()
    input_p = float(np.quantile(np.abs(x).reshape(-1)[:: max(1, x.size // 1_000_000)], percentile / 100))
    search = ThresholdSearch(layers, m, x[:search_images], np.asarray(truth, np.float64)[:search_images], ann,
                             max(input_p, 1e-6), normalized, output_convention)
    fractions, how = search.search(budget_deg, log)
    thresholds = [f * p for f, p in zip(fractions, search.levels)]
    names = ["input"] + [lay.name for lay in layers]
    meta = {"budget_deg": budget_deg, "percentile": percentile, "search_images": len(search.x_int),
            "bias_correction": bias_correction,
            "calibration_images": len(calib), **how}
    return SdnnNet(integer_layers(layers, m, tuple(x.shape[1:]), thresholds), names, m, thresholds, fractions,
                   [float(b) for b in layers[-1].bias], normalized, output_convention, meta)
