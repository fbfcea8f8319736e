"""NIR export (the `nir` package): the SNN as a portable neuromorphic graph (Conv2d / Affine synapses, IF neurons, an
integrator readout), readable by NIR's simulators and hardware toolchains.

NIR's IF neuron fires when v > v_threshold and resets to v_reset: it cannot say "reset by subtraction" or an initial
charge, so both are recorded in the graph's metadata (`edgekit.reset`, `edgekit.v_init`); a strict NIR runtime runs a
subtractive-reset network with reset to zero. The first layer receives the analog image every step (direct encoding).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np


def to_nir(net):
    from edgekit._optional import require

    nir = require("nir", "exporting the SNN to NIR")
    nodes = {"input": nir.Input(input_type={"input": np.array(net.input_shape)})}
    edges, prev = [], "input"
    for i, lay in enumerate(net.layers):
        name = f"{i}_{lay['kind']}"
        if lay["kind"] == "flatten":
            nodes[name] = nir.Flatten(input_type={"input": np.array(lay["in_shape"])}, start_dim=0, end_dim=-1)
        else:
            w, b = net.weights[i].double().numpy(), net.biases[i].double().numpy()
            if lay["kind"] == "conv":
                nodes[name] = nir.Conv2d(input_shape=tuple(lay["in_shape"][1:]), weight=w, stride=tuple(lay["stride"]),
                                         padding=tuple(lay["padding"]), dilation=(1, 1), groups=1, bias=b)
            else:
                nodes[name] = nir.Affine(weight=w, bias=b)
            edges.append((prev, name))
            prev = name
            shape = np.array(lay["out_shape"])
            name = f"{i}_{lay['neuron']}"
            ones = np.ones(shape)
            nodes[name] = nir.IF(r=ones, v_threshold=ones) if lay["neuron"] == "if" else nir.I(r=ones)
        edges.append((prev, name))
        prev = name
    nodes["output"] = nir.Output(output_type={"output": np.array(net.layers[-1]["out_shape"])})
    edges.append((prev, "output"))
    meta = {"edgekit.reset": net.reset, "edgekit.v_init": float(net.v_init), "edgekit.timesteps": int(net.timesteps),
            "edgekit.readout": "integrator V_T / T, then L2-normalised" if net.normalize_output else "integrator V_T / T"}
    return nir.NIRGraph(nodes=nodes, edges=edges, metadata=meta)


def write_nir(net, path: Path) -> Path:
    from edgekit._optional import require

    nir = require("nir", "exporting the SNN to NIR")
    nir.write(str(path), to_nir(net))
    return path
