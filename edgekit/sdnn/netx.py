"""The sigma-delta network as a netx HDF5 file (lava-dl 0.6.0 lava/lib/dl/netx/hdf5.py), and back.

Neuron type "SDNN" for every layer: netx builds a Delta for the input layer, a Sigma for a layer whose neuron group
holds the key `sigma_output` (the readout: no bias, no ReLU), and a SigmaDelta (ReLU) for every other layer. Only the
fields netx reads for SDNN are written (type, vThMant; never messageBits, which netx would misread); shapes as C,H,W
and kernels in torch's layout, as for the CUBA file (edgekit/snn/netx.py, whose timestamp-free writers this reuses).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from edgekit.sdnn.mirror import SdnnLayer
from edgekit.snn.netx import layer_groups, untimed_dataset, untimed_group, write_netx


def write_network(layers: list[SdnnLayer], path: Path, steps: int, names: list[str]) -> Path:
    """Atomically: a failed write leaves neither the file nor its temporary. A failure names the layer."""
    return write_netx(path, steps, layers, names, _write_layer, "to_sdnn output")


def _write_layer(root, layers: list[SdnnLayer], k: int, index: int) -> int:
    lay = layers[k]
    if lay.flatten_before:
        g = untimed_group(root, str(index))
        untimed_dataset(g, "type", "flatten")
        untimed_dataset(g, "shape", [layers[k - 1].neurons])
        index += 1
    g = untimed_group(root, str(index))
    untimed_dataset(g, "type", lay.kind)
    untimed_dataset(g, "shape", list(lay.shape))
    neuron = untimed_group(g, "neuron")
    untimed_dataset(neuron, "type", "SDNN")
    if lay.neuron == "sigma":
        untimed_dataset(neuron, "sigma_output", True)  # the key's presence selects Sigma; its value is not read
    else:
        untimed_dataset(neuron, "vThMant", int(lay.vth))
    if lay.kind == "input":
        return index + 1
    untimed_dataset(g, "weight", lay.weight.astype(np.int8))  # 8 bits on disk as on the chip (netx reads any int)
    if lay.bias is not None:  # Sigma takes no bias (a TypeError at load): the readout's bias is added on the host
        untimed_dataset(g, "bias", lay.bias.astype(np.int32))
    if lay.kind == "conv":
        untimed_dataset(g, "stride", list(lay.stride))
        untimed_dataset(g, "padding", list(lay.padding))
        untimed_dataset(g, "dilation", [1, 1])
        untimed_dataset(g, "groups", 1)
    return index + 1


def read_network(path: Path) -> list[SdnnLayer]:
    """The layers back from the file: what the mirror runs is the file, not the converter's memory."""
    layers: list[SdnnLayer] = []
    for g, kind, flatten in layer_groups(path):
        neuron = g["neuron"]
        role = "sigma" if "sigma_output" in neuron else "delta" if kind == "input" else "sigma_delta"
        lay = SdnnLayer(kind, role, tuple(int(s) for s in g["shape"][()]),
                        vth=int(neuron["vThMant"][()]) if "vThMant" in neuron else 0, flatten_before=flatten)
        if kind != "input":
            lay.weight = g["weight"][()].astype(np.int64)
            lay.bias = g["bias"][()].astype(np.int64) if "bias" in g else None
        if kind == "conv":
            lay.stride = tuple(int(s) for s in g["stride"][()])
            lay.padding = tuple(int(p) for p in g["padding"][()])
        layers.append(lay)
    return layers
