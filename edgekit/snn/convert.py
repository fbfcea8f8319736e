"""ANN -> rate-coded SNN: weight normalisation by data-based thresholds, then layer-wise balancing.

1. Thresholds (lambda) per layer, or per channel, from the calibration set: a robust percentile of each ReLU's output
   (Rueckauer 2017; the naive baseline uses the plain maximum per layer, Diehl 2015). Weights become
   W' = W * lambda_in / lambda_out and b' = b / lambda_out, so every IF neuron has threshold 1 and a spike stands for
   lambda. BatchNorm must already be folded (fold_bn).
2. Balancing, layer by layer with the SNN built so far simulated at the target T on the calibration set: `gain`
   rescales what one spike of each channel stands for downstream by the least-squares gain between SNN rates and ANN
   activations (the best measured: benchmarks/snn.md); `bias` shifts each channel's bias by the mean rate gap; `scale`
   picks a per-layer threshold scale from a grid by the readout's error against the ANN.
3. The last layer is a non-spiking integrator read as y = V_T / T; its bias gets the same mean correction. Its values
   are the model's output in its card's convention: a gaze vector (L2-normalised when the model ends in F.normalize)
   or pitch and yaw in radians (output_convention pitchyaw_rad; the host turns them into a vector, edgekit.evalset).
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from edgekit.errors import BadInputError
from edgekit.snn.graph import IMAGE, WEIGHTED, Node, spiking_graph
from edgekit.snn.net import SpikingNet
from edgekit.snn.simulate import LayerwiseRates, input_chain, rates, simulate


@torch.no_grad()
def ann_walk(nodes: list[Node], x: torch.Tensor) -> list[torch.Tensor]:
    """Each node's ANN value (post-ReLU for IF nodes, a branch's raw output before its add). Resolves adaptive pools
    into kernel and stride on the way (they need the input size)."""
    values, out = {IMAGE: x}, []
    for node in nodes:
        ins = [values[s] for s in node.inputs]
        if node.kind in ("conv", "linear"):
            h = node.module(ins[0])
        elif node.kind == "scale":
            h = ins[0]
        elif node.kind == "add":
            h = ins[0] + ins[1]
        elif node.kind == "flatten":
            h = ins[0].flatten(1)
        else:
            _resolve_pool(node, ins[0].shape[2:])
            h = F.avg_pool2d(ins[0], node.pool["kernel"], node.pool["stride"], node.pool["padding"])
        if node.neuron == "if":
            h = F.relu(h)
        values[len(out)] = h
        out.append(h)
    return out


def _resolve_pool(node: Node, size) -> None:
    if "output_size" not in node.pool:
        return
    (h, w), (oh, ow) = size, node.pool.pop("output_size")
    if h % oh or w % ow:
        raise BadInputError(f"{node.name}: adaptive average pooling from {h}x{w} to {oh}x{ow} has uneven windows; fix: "
                            "pool to a size that divides the feature map, or pool globally")
    node.pool.update(kernel=[h // oh, w // ow], stride=[h // oh, w // ow], padding=[0, 0])


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


def through(net: SpikingNet, chain: list[int], per_channel: torch.Tensor) -> torch.Tensor:
    """A per-channel vector of a population, carried through flatten/pool nodes to the features a synapse reads."""
    for c in chain:
        if net.layers[c]["kind"] == "flatten" and len(net.layers[c]["in_shape"]) == 3:
            h, w = net.layers[c]["in_shape"][1:]
            per_channel = per_channel.repeat_interleave(h * w)  # NCHW flatten: channel-major
    return per_channel


def convert(module: nn.Module, n_inputs: int, calib: torch.Tensor, *, timesteps: int = 32, reset: str = "subtract",
            percentile: float | None = 99.9, per_channel: bool = True, balance: str = "gain", v_init: float = 0.5,
            threshold_scale: float = 1.0, thresholds: dict[str, float] | None = None, delay: bool = False,
            warmup: int = 0, output_convention: str = "unit_vector", input_names: list[str] | None = None) -> SpikingNet:
    """Convert a BN-folded CNN (sequential or with residual blocks) into a SpikingNet calibrated on `calib`
    (preprocessed images, N x C x H x W). thresholds: per-layer thresholds by ReLU name (learned by the qcfs pass)
    instead of percentiles. delay: simulate (and balance) with one step of synaptic delay per layer, as Lava runs it; warmup: steps
    between the readout's lag and its window. output_convention: what the model outputs (unit_vector: a 3-D gaze vector;
    pitchyaw_rad: pitch and yaw in radians, read out as they are)."""
    if balance not in ("none", "scale", "bias", "gain"):
        raise BadInputError(f"balance {balance!r}; fix: use none, scale, bias or gain")
    module = module.eval()
    nodes, normalized = spiking_graph(module, n_inputs, input_names)
    _check_readout(nodes, normalized, output_convention)
    acts = ann_walk(nodes, calib)
    with torch.no_grad():
        ref = module(calib)
    mine = F.normalize(acts[-1], dim=-1) if normalized else acts[-1]
    if ref.shape != mine.shape or float((ref - mine).abs().max()) > 1e-3:
        raise BadInputError("to_snn's layer walk does not reproduce the model's output; fix: make forward a plain graph "
                            "of the conv/linear/ReLU/pool/flatten modules it owns and residual adds")
    lams = {}  # node index -> threshold per output channel, for nodes with neurons
    for i, node in enumerate(nodes):
        if node.neuron == "if":
            lams[i] = (torch.full((acts[i].shape[1],), thresholds[node.relu_name]) if thresholds and node.relu_name in thresholds
                       else _lambda(acts[i], percentile, per_channel) * threshold_scale)
        elif node.neuron == "integrator":
            lams[i] = torch.ones(acts[i].shape[1])
    specs = [_spec(node, i, nodes, acts, calib) for i, node in enumerate(nodes)]
    net = SpikingNet(layers=specs, weights=[None] * len(nodes), biases=[None] * len(nodes), input_shape=list(calib.shape[1:]),
                     timesteps=timesteps, reset=reset, v_init=v_init, normalize_output=normalized, delay=delay, warmup=warmup,
                     output_convention=output_convention,
                     meta={"thresholds": [{"layer": nodes[i].name, "min": float(lam.min()), "max": float(lam.max())}
                                          for i, lam in lams.items()],
                           "learned_thresholds": bool(thresholds), "percentile": percentile,
                           "per_channel": per_channel, "balanced": balance, "calibration_images": len(calib)})
    for i, node in enumerate(nodes):
        if node.kind in WEIGHTED:
            _normalise(net, i, node, lams, calib.shape[1])
    if balance == "scale":
        _scale_balance(net, acts, calib, timesteps)
    elif balance == "bias":
        _bias_balance(net, acts, lams, calib, timesteps)
    elif balance == "gain":
        _gain_balance(net, acts, lams, calib, timesteps)
    return net


def _check_readout(nodes: list[Node], normalized: bool, convention: str) -> None:
    """The integrator readout carries the card's output: 3 values (a vector) or 2 (pitch, yaw in radians)."""
    want = {"unit_vector": 3, "pitchyaw_rad": 2}.get(convention)
    if want is None:
        raise BadInputError(f"output convention {convention!r}; fix: use unit_vector or pitchyaw_rad")
    last = nodes[-1]
    m = last.module if last.kind != "add" else next((nodes[i].module for i in last.inputs if nodes[i].module is not None), None)
    out = getattr(m, "out_features", getattr(m, "out_channels", None))
    if out is not None and out != want:
        raise BadInputError(f"layer {last.name} outputs {out} values but the card says {convention} ({want} values: "
                            f"{'a 3-D gaze vector' if want == 3 else 'pitch and yaw in radians'}); fix: set the card's "
                            "output.convention to match the model")
    if normalized and convention == "pitchyaw_rad":
        raise BadInputError(f"the model L2-normalises the output of layer {last.name}, but the card says pitchyaw_rad; fix: "
                            "drop the final F.normalize for pitch/yaw, or set output.convention unit_vector")


def _spec(node: Node, i: int, nodes: list[Node], acts: list, calib: torch.Tensor) -> dict:
    src = node.inputs[0]
    spec = {"kind": node.kind, "name": node.name, "in_shape": list((acts[src] if src != IMAGE else calib).shape[1:]),
            "out_shape": list(acts[i].shape[1:])}
    if node.inputs != [i - 1]:
        spec["inputs"] = list(node.inputs)
    if node.kind in WEIGHTED or node.kind == "add":
        spec["neuron"] = node.neuron
    if node.kind == "conv":
        m = node.module
        spec |= {"stride": list(m.stride), "padding": list(m.padding), "kernel": list(m.kernel_size)}
    elif node.kind == "pool":
        spec |= {key: list(node.pool[key]) for key in ("kernel", "stride", "padding")}
    return spec


def _normalise(net: SpikingNet, i: int, node: Node, lams: dict, in_channels: int) -> None:
    """W' = W * lambda_in / lambda_out, b' = b / lambda_out: every neuron's threshold becomes 1 and a spike of channel
    c stands for lambda_c. lambda_out of a residual branch is its add's; an identity shortcut's weight is the ratio."""
    root, chain = input_chain(net, i)
    lam_in = through(net, chain, lams[root] if root != IMAGE else torch.ones(in_channels))
    target = i if node.neuron != "none" else next(j for j in range(i + 1, len(net.layers)) if i in net.sources(j))
    lam_out = lams[target]
    if node.kind == "scale":
        net.weights[i], net.biases[i] = (lam_in / lam_out).contiguous(), torch.zeros_like(lam_out)
        return
    m = node.module
    w = m.weight.detach().float()
    b = m.bias.detach().float() if m.bias is not None else torch.zeros(w.shape[0])
    net.weights[i] = (w * lam_in.view(1, -1, *([1] * (w.dim() - 2))) / lam_out.view(-1, *([1] * (w.dim() - 1)))).contiguous()
    net.biases[i] = (b / lam_out).contiguous()


def populations(net: SpikingNet) -> list[int]:
    """Nodes with IF neurons, in execution order (the ones balancing calibrates)."""
    return [i for i, lay in enumerate(net.layers) if lay.get("neuron") == "if"]


def _rescale(net: SpikingNet, i: int, alpha: float) -> None:
    """Threshold of layer i times alpha, written into the weights (threshold stays 1): the layer's inputs shrink by
    alpha and each of its spikes counts alpha times more downstream."""
    for f in net.feeders(i):
        net.weights[f] /= alpha
        net.biases[f] /= alpha
    for c, _ in net.consumers(i):
        net.weights[c] *= alpha


@torch.no_grad()
def _scale_balance(net: SpikingNet, acts: list, calib: torch.Tensor, steps: int, grid=(0.5, 0.6, 0.7, 0.8, 0.9, 1.0, 1.1)) -> None:
    """Greedy, layer by layer from the input: pick the threshold scale whose SNN readout at `steps` is closest (mean
    squared error) to the ANN's output on the calibration set, with the earlier layers already balanced."""
    target = acts[-1].numpy()
    chosen = []
    for i in populations(net):
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
    net.biases[net.bias_of(len(net.layers) - 1)] += torch.as_tensor(target - out, dtype=torch.float32).mean(0)
    net.meta["balance"] = {"method": "per-layer threshold scale from a grid, chosen greedily from the input by the readout's "
                                     "MSE against the ANN on the calibration set; then the readout bias is re-centred",
                           "steps": steps, "grid": list(grid), "layers": chosen}


@torch.no_grad()
def _bias_balance(net: SpikingNet, acts: list, lams: dict, calib: torch.Tensor, steps: int, iterations: int = 3) -> None:
    """Layer by layer from the input: shift each channel's bias by the mean gap between the ANN's normalised activation
    and the SNN's spike rate at `steps` (earlier layers already corrected). Reset to zero drops each spike's overshoot
    and T steps quantise rates, both biasing rates low; this removes the systematic part (bias calibration)."""
    gaps = []
    for i in populations(net):
        shape = (1, -1) + (1,) * (acts[i].dim() - 2)
        target = (acts[i] / lams[i].view(shape)).clamp(0, 1)
        dims = [0] + list(range(2, target.dim()))
        before = None
        for _ in range(iterations):
            gap = (target - rates(net, calib, steps, i)).mean(dims)
            before = float(gap.abs().mean()) if before is None else before
            net.biases[net.bias_of(i)] += gap
        gaps.append({"layer": net.layers[i]["name"], "mean_abs_rate_gap_before": before,
                     "mean_abs_rate_gap_after": float((target - rates(net, calib, steps, i)).mean(dims).abs().mean())})
    net.meta["balance"] = {"method": "per-channel bias shift by the mean ANN-vs-SNN rate gap, layer by layer",
                           "steps": steps, "iterations": iterations, "layers": gaps}


@torch.no_grad()
def _gain_balance(net: SpikingNet, acts: list, lams: dict, calib: torch.Tensor, steps: int) -> None:
    """Layer by layer from the input: what one spike of channel c stands for downstream is rescaled by the least-squares
    gain between the SNN's rates and the ANN's normalised activations (sum r*a / sum r^2), clamped to [0.5, 4]: reset to
    zero loses each spike's overshoot, so rates run low by a roughly constant factor per channel."""
    gains, layerwise = [], LayerwiseRates(net, calib, steps)
    for i in populations(net):
        shape = (1, -1) + (1,) * (acts[i].dim() - 2)
        target = (acts[i] / lams[i].view(shape)).clamp(0, 1)
        r = layerwise.rates(i)  # rescaling i's consumers below leaves every node up to i as it is
        dims = [0] + list(range(2, target.dim()))
        gain = ((r * target).sum(dims) / (r * r).sum(dims).clamp_min(1e-9)).clamp(0.5, 4.0)
        for c, chain in net.consumers(i):
            per_input = through(net, chain, gain)
            net.weights[c] *= per_input if net.layers[c]["kind"] == "scale" else \
                per_input.view(1, -1, *([1] * (net.weights[c].dim() - 2)))
        gains.append({"layer": net.layers[i]["name"], "gain_min": float(gain.min()), "gain_mean": float(gain.mean()),
                      "gain_max": float(gain.max())})
    net.meta["balance"] = {"method": "per-channel spike value rescaled by the least-squares rate gain, layer by layer",
                           "steps": steps, "layers": gains}
