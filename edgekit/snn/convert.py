"""ANN -> rate-coded SNN: weight normalisation by data-based thresholds, then layer-wise balancing.

1. Thresholds (lambda) per layer, or per channel, from the calibration set: a robust percentile of each ReLU's output
   (Rueckauer 2017; the naive baseline uses the plain maximum per layer, Diehl 2015). Weights become
   W' = W * lambda_in / lambda_out and b' = b / lambda_out, so every IF neuron has threshold 1 and a spike stands for
   lambda. BatchNorm must already be folded (fold_bn).
2. Balancing, layer by layer with the SNN built so far simulated at the target T on the calibration set: `gain`
   rescales what one spike of each channel stands for downstream by the least-squares gain between SNN rates and ANN
   activations (the best measured: benchmarks/snn.md); `bias` shifts each channel's bias by the mean rate gap; `scale`
   picks a per-layer threshold scale from a grid by the readout's error against the ANN.
3. The last layer is a non-spiking integrator read as y = V_T / T; its bias gets the same mean correction.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from edgekit.errors import BadInputError
from edgekit.snn.graph import Layer, sequential_layers
from edgekit.snn.net import SpikingNet
from edgekit.snn.simulate import rates, simulate


@torch.no_grad()
def ann_walk(layers: list[Layer], x: torch.Tensor) -> list[torch.Tensor | None]:
    """Activations after each layer (post-ReLU for hidden layers, raw for the last), following the layer list."""
    out, h = [], x
    for lay in layers:
        if lay.kind == "flatten":
            h = h.flatten(1)
            out.append(None)
            continue
        h = lay.module(h)
        if lay.relu:
            h = F.relu(h)
        out.append(h)
    return out


def _lambda(act: torch.Tensor, percentile: float | None, per_channel: bool) -> torch.Tensor:
    """Threshold per output channel (a vector even when one value is shared)."""
    channels = act.shape[1]
    flat = act.transpose(0, 1).reshape(channels, -1) if per_channel else act.reshape(1, -1)
    lam = flat.amax(1) if percentile is None else torch.quantile(flat[:, :: max(1, flat.shape[1] // 200_000)],
                                                                   percentile / 100, dim=1)
    # a channel (almost) silent on the calibration set gets the layer's largest threshold: a tiny one would blow its
    # normalised weights up (and with them the 8-bit weight scale of the whole layer on Loihi)
    lam = torch.where(lam < float(lam.max()) * 0.05, lam.max(), lam).clamp_min(1e-6)
    return lam.expand(channels).clone()


def convert(module: nn.Module, n_inputs: int, calib: torch.Tensor, *, timesteps: int = 32, reset: str = "subtract",
            percentile: float | None = 99.9, per_channel: bool = True, balance: str = "gain", v_init: float = 0.5,
            threshold_scale: float = 1.0, thresholds: dict[str, float] | None = None) -> SpikingNet:
    """Convert a BN-folded sequential CNN into a SpikingNet calibrated on `calib` (preprocessed images, N x C x H x W).
    thresholds: per-layer thresholds by ReLU module name (learned by the qcfs pass) instead of percentiles."""
    if balance not in ("none", "scale", "bias", "gain"):
        raise BadInputError(f"balance {balance!r}; fix: use none, scale, bias or gain")
    module = module.eval()
    layers, normalized = sequential_layers(module, n_inputs)
    acts = ann_walk(layers, calib)
    with torch.no_grad():
        ref = module(calib)
    mine = F.normalize(acts[-1], dim=-1) if normalized else acts[-1]
    if ref.shape != mine.shape or float((ref - mine).abs().max()) > 1e-3:
        raise BadInputError("to_snn's layer walk does not reproduce the model's output; fix: make forward a plain sequence "
                            "of the conv/linear/ReLU/flatten modules it owns")
    specs, weights, biases, lambdas, lams = [], [], [], [], {}
    lam_prev = torch.ones(calib.shape[1])
    shape = list(calib.shape[1:])
    for lay, act in zip(layers, acts):
        if lay.kind == "flatten":
            specs.append({"kind": "flatten", "name": lay.name, "in_shape": shape, "out_shape": [int(torch.tensor(shape).prod())]})
            lam_prev = lam_prev.repeat_interleave(shape[1] * shape[2])  # NCHW flatten: channel-major
            shape = specs[-1]["out_shape"]
            weights.append(None), biases.append(None)
            continue
        m = lay.module
        w, b = m.weight.detach().float(), (m.bias.detach().float() if m.bias is not None else torch.zeros(m.weight.shape[0]))
        if thresholds and lay.relu_name in thresholds:
            lam = torch.full((w.shape[0],), thresholds[lay.relu_name])
        else:
            lam = _lambda(act, percentile, per_channel) * threshold_scale if lay.relu else torch.ones(w.shape[0])
        scale_in = lam_prev.view(1, -1, *([1] * (w.dim() - 2)))
        scale_out = lam.view(-1, *([1] * (w.dim() - 1)))
        weights.append((w * scale_in / scale_out).contiguous())
        biases.append((b / lam).contiguous())
        spec = {"kind": lay.kind, "name": lay.name, "neuron": "if" if lay.relu else "integrator", "in_shape": shape,
                "out_shape": list(act.shape[1:])}
        if lay.kind == "conv":
            spec |= {"stride": list(m.stride), "padding": list(m.padding), "kernel": list(m.kernel_size)}
        specs.append(spec)
        lambdas.append({"layer": lay.name, "min": float(lam.min()), "max": float(lam.max())})
        lams[len(specs) - 1] = lam
        lam_prev, shape = lam, spec["out_shape"]
    net = SpikingNet(layers=specs, weights=weights, biases=biases, input_shape=list(calib.shape[1:]), timesteps=timesteps,
                     reset=reset, v_init=v_init, normalize_output=normalized,
                     meta={"thresholds": lambdas, "learned_thresholds": bool(thresholds), "percentile": percentile,
                           "per_channel": per_channel, "balanced": balance, "calibration_images": len(calib)})
    if balance == "scale":
        _scale_balance(net, acts, calib, timesteps)
    elif balance == "bias":
        _bias_balance(net, acts, lams, calib, timesteps)
    elif balance == "gain":
        _gain_balance(net, acts, lams, calib, timesteps)
    return net


def _rescale(net: SpikingNet, i: int, alpha: float) -> None:
    """Threshold of layer i times alpha, written into the weights (threshold stays 1): the layer's inputs shrink by
    alpha and each of its spikes counts alpha times more downstream."""
    net.weights[i] /= alpha
    net.biases[i] /= alpha
    nxt = next(j for j in net.weighted if j > i)
    net.weights[nxt] *= alpha


@torch.no_grad()
def _scale_balance(net: SpikingNet, acts: list, calib: torch.Tensor, steps: int, grid=(0.5, 0.6, 0.7, 0.8, 0.9, 1.0, 1.1)) -> None:
    """Greedy, layer by layer from the input: pick the threshold scale whose SNN readout at `steps` is closest (mean
    squared error) to the ANN's output on the calibration set, with the earlier layers already balanced."""
    target = acts[-1].numpy()
    chosen = []
    for i in net.weighted[:-1]:
        errors = {}
        for alpha in grid:
            _rescale(net, i, alpha)
            out = simulate(net, calib, steps, count=False).outputs[steps]
            errors[alpha] = float(((out - target) ** 2).mean())
            _rescale(net, i, 1 / alpha)
        best = min(errors, key=errors.get)
        _rescale(net, i, best)
        chosen.append({"layer": net.layers[i]["name"], "scale": best, "mse": errors[best], "mse_unscaled": errors[1.0]})
    out = simulate(net, calib, steps, count=False).outputs[steps]
    net.biases[net.weighted[-1]] += torch.as_tensor(target - out, dtype=torch.float32).mean(0)
    net.meta["balance"] = {"method": "per-layer threshold scale from a grid, chosen greedily from the input by the readout's "
                                     "MSE against the ANN on the calibration set; then the readout bias is re-centred",
                           "steps": steps, "grid": list(grid), "layers": chosen}


@torch.no_grad()
def _bias_balance(net: SpikingNet, acts: list, lams: dict, calib: torch.Tensor, steps: int, iterations: int = 3) -> None:
    """Layer by layer from the input: shift each channel's bias by the mean gap between the ANN's normalised activation
    and the SNN's spike rate at `steps` (earlier layers already corrected). Reset to zero drops each spike's overshoot
    and T steps quantise rates, both biasing rates low; this removes the systematic part (bias calibration)."""
    gaps = []
    for i in net.weighted[:-1]:
        shape = (1, -1) + (1,) * (acts[i].dim() - 2)
        target = (acts[i] / lams[i].view(shape)).clamp(0, 1)
        dims = [0] + list(range(2, target.dim()))
        before = None
        for _ in range(iterations):
            gap = (target - rates(net, calib, steps, i)).mean(dims)
            before = float(gap.abs().mean()) if before is None else before
            net.biases[i] += gap
        gaps.append({"layer": net.layers[i]["name"], "mean_abs_rate_gap_before": before,
                     "mean_abs_rate_gap_after": float((target - rates(net, calib, steps, i)).mean(dims).abs().mean())})
    net.meta["balance"] = {"method": "per-channel bias shift by the mean ANN-vs-SNN rate gap, layer by layer",
                           "steps": steps, "iterations": iterations, "layers": gaps}


@torch.no_grad()
def _gain_balance(net: SpikingNet, acts: list, lams: dict, calib: torch.Tensor, steps: int) -> None:
    """Layer by layer from the input: what one spike of channel c stands for downstream is rescaled by the least-squares
    gain between the SNN's rates and the ANN's normalised activations (sum r*a / sum r^2), clamped to [0.5, 4]: reset to
    zero loses each spike's overshoot, so rates run low by a roughly constant factor per channel."""
    gains = []
    for i in net.weighted[:-1]:
        shape = (1, -1) + (1,) * (acts[i].dim() - 2)
        target = (acts[i] / lams[i].view(shape)).clamp(0, 1)
        r = rates(net, calib, steps, i)
        dims = [0] + list(range(2, target.dim()))
        gain = ((r * target).sum(dims) / (r * r).sum(dims).clamp_min(1e-9)).clamp(0.5, 4.0)
        nxt = next(j for j in net.weighted if j > i)
        if net.layers[nxt - 1]["kind"] == "flatten":
            per_input = gain.repeat_interleave(net.weights[nxt].shape[1] // gain.numel())
        else:
            per_input = gain
        net.weights[nxt] *= per_input.view(1, -1, *([1] * (net.weights[nxt].dim() - 2)))
        gains.append({"layer": net.layers[i]["name"], "gain_min": float(gain.min()), "gain_mean": float(gain.mean()),
                      "gain_max": float(gain.max())})
    net.meta["balance"] = {"method": "per-channel spike value rescaled by the least-squares rate gain, layer by layer",
                           "steps": steps, "layers": gains}
