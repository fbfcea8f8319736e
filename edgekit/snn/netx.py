"""The `lava` artifact: a netx HDF5 network (lava-dl's exchange format) plus the host-side encoder.

Layout of the folder: network.net (netx HDF5: input, conv, flatten, dense layers with CUBA neurons, 8-bit weights),
encoder.safetensors (the first conv, float: the host computes its output once per image and injects it as the input
neurons' bias, since netx's input layer is driven through its bias), lava.json (timesteps, delay, scales).

Neurons are CUBA with iDecay 4096 and vDecay 0 (integrate-and-fire, reset to zero, as Lava implements it); the last
layer is a non-spiking integrator (threshold never reached). Files are written byte-identically for the same input:
no timestamps (track_times off for datasets and groups), fixed HDF5 format bounds, sorted keys.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import torch

from edgekit._optional import require
from edgekit.errors import BadInputError
from edgekit.fileio import atomic_write_text
from edgekit.snn.fixed_point import UV_MAX, QuantLayer
from edgekit.snn.net import SpikingNet

NETWORK, ENCODER, SPEC = "network.net", "encoder.safetensors", "lava.json"
INPUT_SCALE = 1024  # input neurons: bias_mant = rint(1024 * x), x in thresholds, clipped to [-4, 4)
W_MAX, B_MAX, VTH_MAX = 254, 4095, (1 << 17) - 1


def quantize(net: SpikingNet) -> tuple[list[QuantLayer], dict]:
    """8-bit weights and 13-bit biases per layer; each spiking layer's threshold mantissa is its scale (the largest
    weight maps to 254)."""
    weighted = net.weighted
    layers = [QuantLayer("input", tuple(net.layers[weighted[0]]["out_shape"]), vth=INPUT_SCALE - 1,
                         bias=np.zeros(net.layers[weighted[0]]["out_shape"][0], np.int64), scale=INPUT_SCALE)]
    depth = len(weighted) - 1
    notes = {"clipped_weights": 0, "clipped_biases": 0}
    for k, i in enumerate(weighted[1:], start=1):
        lay, w, b = net.layers[i], net.weights[i].double().numpy(), net.biases[i].double().numpy()
        spiking = lay["neuron"] == "if"
        scale = layer_scale(w, b, spiking, net.timesteps + depth + net.warmup)
        wq, bq = np.rint(w * scale), np.rint(b * scale)
        notes["clipped_weights"] += int((np.abs(wq) > W_MAX).sum())
        notes["clipped_biases"] += int((np.abs(bq) > B_MAX).sum())
        layers.append(QuantLayer(
            "conv" if lay["kind"] == "conv" else "dense", tuple(lay["out_shape"]),
            vth=max(int(round(scale)) - 1, 0) if spiking else VTH_MAX,  # v > vth fires: v >= scale, threshold 1
            bias=np.clip(bq, -B_MAX - 1, B_MAX).astype(np.int64), weight=np.clip(wq, -256, W_MAX).astype(np.int64),
            stride=tuple(lay.get("stride", (1, 1))), padding=tuple(lay.get("padding", (0, 0))),
            flatten_before=net.layers[i - 1]["kind"] == "flatten", spiking=spiking, scale=float(scale)))
    return layers, notes


def layer_scale(w: np.ndarray, b: np.ndarray, spiking: bool, steps: int) -> float:
    """Integer units per float unit of one synaptic layer (weights, bias and, for a spiking layer, its threshold of 1):
    the largest weight maps to 254. Biases beyond +-8 thresholds per step are clipped: such a neuron fires every step
    or never either way. The integrator readout keeps |V| below the 24-bit limit for all `steps` even if every input
    fired. finetune_snn trains against these same scales."""
    scale = min(W_MAX / max(np.abs(w).max(), 1e-12), VTH_MAX)
    if spiking:
        return scale
    scale = min(scale, B_MAX / max(np.abs(b).max(), 1e-12))
    bound = np.abs(w.reshape(w.shape[0], -1)).sum(1).max() + np.abs(b).max()
    return min(scale, (UV_MAX >> 1) / 64 / (bound * steps))


def untimed_group(parent, name: str):
    import h5py

    gcpl = h5py.h5p.create(h5py.h5p.GROUP_CREATE)
    gcpl.set_obj_track_times(False)
    return h5py.Group(h5py.h5g.create(parent.id, name.encode(), gcpl=gcpl))


def untimed_dataset(group, name: str, value) -> None:
    data = np.bytes_(value) if isinstance(value, str) else np.asarray(value)
    group.create_dataset(name, data=data, track_times=False)


def layer_names(net: SpikingNet) -> list[str]:
    """The SNN layer each quantised layer comes from (the input population carries the host encoder's output)."""
    weighted = net.weighted
    return [f"input ({net.layers[weighted[0]]['name']} on the host)"] + [net.layers[i]["name"] for i in weighted[1:]]


def netx_names(layers: list[QuantLayer], names: list[str]) -> list[str]:
    """One name per netx layer index (netx counts the flatten layers too): errors from netx map back to these."""
    out = []
    for lay, name in zip(layers, names):
        out += [f"flatten before {name}"] if lay.flatten_before else []
        out.append(name)
    return out


def write_network(layers: list[QuantLayer], path: Path, steps: int, names: list[str] | None = None) -> Path:
    """Write the netx HDF5 (shapes as C,H,W: netx reverses them to x,y,channel; kernels in torch's layout). A failure
    names the layer (names: one per layer, the SNN's)."""
    return write_netx(path, steps, layers, names, _write_layer, "to_snn output")


def write_netx(path: Path, steps: int, layers: list, names: list[str] | None, write_layer, made_by: str) -> Path:
    """A netx file written atomically (a failed write leaves neither the file nor its temporary), no timestamps.
    write_layer(root, layers, k, index) writes layer k (and a flatten before it) from netx index `index` and returns
    the next index; a failure is one line naming the layer (names: one per layer) and what made it (`made_by`)."""
    h5py = require("h5py", "writing netx HDF5 files")
    tmp = path.with_name(f".{path.name}.tmp")
    try:
        with h5py.File(tmp, "w", libver=("earliest", "v110")) as f:
            sim = untimed_group(f, "simulation")
            untimed_dataset(sim, "Ts", 1)
            untimed_dataset(sim, "tSample", steps)
            root = untimed_group(f, "layer")
            index = 0
            for k, lay in enumerate(layers):
                try:
                    index = write_layer(root, layers, k, index)
                except Exception as exc:  # noqa: BLE001 - named by layer, one line
                    name = names[k] if names else f"#{k}"
                    text = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
                    raise BadInputError(f"netx export failed at layer {name} ({lay.kind}, netx layer {index}): "
                                        f"{type(exc).__name__}: {text}; fix: check that layer's weights and shapes "
                                        f"({made_by})") from None
        tmp.replace(path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return path


def _write_layer(root, layers: list[QuantLayer], k: int, index: int) -> int:
    """Layer k (and the flatten before it) as netx groups from `index`; returns the next index."""
    lay = layers[k]
    if lay.flatten_before:
        g = untimed_group(root, str(index))
        untimed_dataset(g, "type", "flatten")
        untimed_dataset(g, "shape", [int(np.prod(layers[k - 1].out_shape))])
        index += 1
    g = untimed_group(root, str(index))
    index += 1
    untimed_dataset(g, "type", {"input": "input", "conv": "conv", "dense": "dense"}[lay.kind])
    untimed_dataset(g, "shape", list(lay.out_shape))
    neuron = untimed_group(g, "neuron")
    for key, val in (("type", "CUBA"), ("iDecay", 4096), ("vDecay", 0), ("vThMant", lay.vth), ("refDelay", 1),
                     ("gradedSpike", 0)):
        untimed_dataset(neuron, key, val)
    if lay.kind == "input":
        untimed_dataset(g, "weight", int(lay.scale))
        untimed_dataset(g, "bias", 0)
        return index
    untimed_dataset(g, "bias", lay.bias)
    untimed_dataset(g, "weight", lay.weight)  # conv: netx flips it and Lava convolves (flips again): torch's correlation
    if lay.kind == "conv":
        untimed_dataset(g, "stride", list(lay.stride))
        untimed_dataset(g, "padding", list(lay.padding))
        untimed_dataset(g, "dilation", [1, 1])
        untimed_dataset(g, "groups", 1)
    return index


def layer_groups(path: Path) -> Iterator[tuple[object, str, bool]]:
    """Every non-flatten layer group of a netx file in order: (group, type, whether a flatten layer precedes it)."""
    h5py = require("h5py", "reading netx HDF5 files")
    flatten = False
    with h5py.File(path, "r") as f:
        for index in range(len(f["layer"])):
            g = f["layer"][str(index)]
            kind = g["type"][()].decode()
            if kind == "flatten":
                flatten = True
                continue
            yield g, kind, flatten
            flatten = False


def read_network(path: Path, spec: dict) -> list[QuantLayer]:
    """The quantised layers back from a netx file (what the fixed-point model runs: the file, not the SNN)."""
    layers: list[QuantLayer] = []
    for g, kind, flatten in layer_groups(path):
        shape = tuple(int(s) for s in g["shape"][()])
        vth = int(g["neuron/vThMant"][()])
        if kind == "input":
            layers.append(QuantLayer("input", shape, vth=vth, bias=np.zeros(shape[0], np.int64), scale=float(g["weight"][()])))
            continue
        lay = QuantLayer(kind, shape, vth=vth, bias=g["bias"][()].astype(np.int64), flatten_before=flatten,
                         spiking=vth < VTH_MAX, scale=spec["scales"][len(layers)], weight=g["weight"][()].astype(np.int64))
        if kind == "conv":
            lay.stride, lay.padding = tuple(int(s) for s in g["stride"][()]), tuple(int(p) for p in g["padding"][()])
        layers.append(lay)
    return layers


def write_artifact(net: SpikingNet, folder: Path) -> tuple[Path, dict]:
    """network.net + encoder.safetensors + lava.json; returns the folder and the quantisation notes."""
    from safetensors.torch import save_file

    if net.reset != "zero":
        raise BadInputError("Lava's CUBA neuron resets to zero, but this SNN was converted with reset by subtraction; "
                            "fix: set to_snn reset: zero for the loihi target")
    _check_loadable(net)
    folder.mkdir(parents=True, exist_ok=True)
    layers, notes = quantize(net)
    depth = len(layers) - 1
    start = depth + net.warmup  # the readout window opens after the delays and the warm-up
    names = layer_names(net)
    write_network(layers, folder / NETWORK, net.timesteps + start, names)
    first = net.weighted[0]
    save_file({"weight": net.weights[first].contiguous(), "bias": net.biases[first].contiguous()}, str(folder / ENCODER))
    enc = net.layers[first]
    spec = {"format_version": 1, "timesteps": net.timesteps, "delay_steps": depth, "warmup_steps": net.warmup,
            "readout_start": start, "steps": net.timesteps + start,
            "input_shape": net.input_shape, "input_scale": INPUT_SCALE, "normalize_output": net.normalize_output,
            "output_convention": net.output_convention,
            "encoder": {"name": enc["name"], "stride": enc["stride"], "padding": enc["padding"]},
            "scales": [lay.scale for lay in layers], "readout": "(V(S+T) - V(S)) / (scale * T) of the last layer, S = readout_start (delays + warm-up)",
            "layers": [{"kind": lay.kind, "name": name, "shape": list(lay.out_shape), "vth": lay.vth, "spiking": lay.spiking}
                       for lay, name in zip(layers, names)], "netx_layers": netx_names(layers, names),
            "quantization": notes}
    atomic_write_text(folder / SPEC, json.dumps(spec, indent=2, sort_keys=True) + "\n")
    return folder, notes


def _check_loadable(net: SpikingNet) -> None:
    """netx's Network._create builds input, conv, flatten and dense layers in sequence only (pool, average and concat
    raise NotImplementedError, and it has no add): name the first node it cannot load."""
    if net.sequential:
        return
    names = {-1: "the image"} | {i: lay["name"] for i, lay in enumerate(net.layers)}
    i = next((i for i, lay in enumerate(net.layers) if lay["kind"] in ("add", "pool")),
             next(i for i, lay in enumerate(net.layers) if "inputs" in lay))  # a branch always ends in an add
    lay = net.layers[i]
    what = {"add": "residual add", "pool": "average pooling"}.get(lay["kind"], f"{lay['kind']} reading a branch")
    inputs = " and ".join(names[s] for s in net.sources(i))
    raise BadInputError(f"layer {lay['name']} ({what} of {inputs}) cannot be loaded by netx, which runs input, conv, flatten "
                        "and dense layers in sequence; fix: use a sequential model (such as TinyGaze) for the loihi target, "
                        "or the distill pass to train one from this model")


def encoder_current(folder: Path, spec: dict, x: np.ndarray) -> np.ndarray:
    """The first conv's output in threshold units (N, C, H, W), computed on the host."""
    from safetensors.torch import load_file
    from torch.nn import functional as F

    enc = load_file(str(folder / ENCODER))
    with torch.no_grad():
        out = F.conv2d(torch.from_numpy(np.ascontiguousarray(x, np.float32)), enc["weight"], enc["bias"],
                       stride=spec["encoder"]["stride"], padding=spec["encoder"]["padding"])
    return out.double().numpy()
