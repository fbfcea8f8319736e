"""NIR export (the `nir` package): the SNN as a portable neuromorphic graph (Conv2d / Affine / Scale synapses, average
pools, IF neurons, an integrator readout; a residual add is two edges into one neuron node, which NIR sums), readable by NIR's simulators and hardware toolchains.

NIR's IF neuron fires when v > v_threshold and resets to v_reset: it cannot say "reset by subtraction" or an initial
charge, so both are recorded in the graph's metadata (`edgekit.reset`, `edgekit.v_init`); a strict NIR runtime runs a
subtractive-reset network with reset to zero. The first layer receives the analog image every step (direct encoding).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from edgekit._optional import require


def to_nir(net):
    nir = require("nir", "exporting the SNN to NIR")
    nodes = {"input": nir.Input(input_type={"input": np.array(net.input_shape)})}
    edges, value_of = [], {-1: "input"}  # node index -> the NIR node carrying its value
    for i, lay in enumerate(net.layers):
        srcs = [value_of[s] for s in net.sources(i)]
        if lay["kind"] == "add":  # NIR sums every edge into a node: both branches feed the add's neurons directly
            value_of[i] = _neurons(nir, nodes, i, lay)
            edges += [(s, value_of[i]) for s in srcs]
            continue
        name = f"{i}_{lay['kind']}"
        nodes[name] = _synapse_or_op(nir, net, i, lay)
        edges.append((srcs[0], name))
        value_of[i] = name
        if lay.get("neuron", "none") != "none":
            value_of[i] = _neurons(nir, nodes, i, lay)
            edges.append((name, value_of[i]))
    prev = value_of[len(net.layers) - 1]
    nodes["output"] = nir.Output(output_type={"output": np.array(net.layers[-1]["out_shape"])})
    edges.append((prev, "output"))
    meta = {"edgekit.reset": net.reset, "edgekit.v_init": float(net.v_init), "edgekit.timesteps": int(net.timesteps),
            **({"edgekit.synaptic_delay_steps": 1, "edgekit.readout_warmup": int(net.warmup)} if net.delay else {}),
            "edgekit.output_convention": net.output_convention,
            "edgekit.readout": ("integrator V_T / T, then L2-normalised" if net.normalize_output else
                                "integrator V_T / T = (pitch, yaw) in radians" if net.output_convention == "pitchyaw_rad"
                                else "integrator V_T / T")}
    return nir.NIRGraph(nodes=nodes, edges=edges, metadata=meta)


def _synapse_or_op(nir, net, i: int, lay: dict):
    if lay["kind"] == "flatten":
        return nir.Flatten(input_type={"input": np.array(lay["in_shape"])}, start_dim=0, end_dim=-1)
    if lay["kind"] == "pool":
        return nir.AvgPool2d(kernel_size=np.array(lay["kernel"]), stride=np.array(lay["stride"]), padding=np.array(lay["padding"]))
    w, b = net.weights[i].double().numpy(), net.biases[i].double().numpy()
    if lay["kind"] == "scale":
        assert not b.any(), "an identity shortcut's scale carries no bias (conversion puts biases on conv/linear feeders)"
        # an identity shortcut: lambda_in / lambda_out per channel, no bias; NIR types it by the scale's full shape
        return nir.Scale(scale=w.reshape(-1, *[1] * (len(lay["in_shape"]) - 1)) * np.ones(lay["in_shape"]))
    if lay["kind"] == "conv":
        return nir.Conv2d(input_shape=tuple(lay["in_shape"][1:]), weight=w, stride=tuple(lay["stride"]),
                          padding=tuple(lay["padding"]), dilation=(1, 1), groups=1, bias=b)
    return nir.Affine(weight=w, bias=b)


def _neurons(nir, nodes: dict, i: int, lay: dict) -> str:
    name = f"{i}_{lay['neuron']}"
    ones = np.ones(np.array(lay["out_shape"]))
    nodes[name] = nir.IF(r=ones, v_threshold=ones) if lay["neuron"] == "if" else nir.I(r=ones)
    return name


def write_nir(net, path: Path) -> Path:
    nir = require("nir", "exporting the SNN to NIR")
    nir.write(str(path), to_nir(net))
    return path
